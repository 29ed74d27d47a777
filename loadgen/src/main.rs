//! `sluice-loadgen` command line: parse options, run, print where the results are.

use clap::Parser;
use sluice_loadgen::options::Options;
use sluice_loadgen::run::run;

/// Send lag p99 above which the run warns that the generator, not only the broker, was late.
const SEND_LAG_WARNING_US: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let settings = options.validate()?;
    // Two worker threads are plenty: the runtime only hosts the control plane (progress, Ctrl-C,
    // joins); producers and consumers are OS threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let summary = runtime.block_on(run(settings))?;
    let produce = &summary.produce;
    let end_to_end = &summary.end_to_end;
    println!(
        "produce: {} measured records, {:.0} records/s, {:.2} MB/s, errors {}, unsent {}, unacked {}",
        produce.measured_records,
        produce.achieved_records_per_sec,
        produce.achieved_mb_per_sec,
        produce.error_records,
        produce.unsent_records,
        produce.unacked_records
    );
    println!(
        "produce latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
        produce.latency_us.p50,
        produce.latency_us.p90,
        produce.latency_us.p99,
        produce.latency_us.p999,
        produce.latency_us.max
    );
    if summary.settings.consumers > 0 {
        println!(
            "end-to-end latency µs: p50 {} p90 {} p99 {} p99.9 {} max {} (consumed {}, missing {})",
            end_to_end.latency_us.p50,
            end_to_end.latency_us.p90,
            end_to_end.latency_us.p99,
            end_to_end.latency_us.p999,
            end_to_end.latency_us.max,
            end_to_end.measured_records,
            end_to_end.missing_records
        );
    }
    // The generator's own lateness is part of every latency above; say so when it is not small.
    if produce.send_lag_us.p99 > SEND_LAG_WARNING_US {
        eprintln!(
            "warning: the generator itself sent late (send lag p99 {} µs, max {} µs): the machine or the \
             client queue could not keep the schedule, and that delay is included in the latencies",
            produce.send_lag_us.p99, produce.send_lag_us.max
        );
    }
    println!("results in {}", summary.settings.out.display());
    Ok(())
}
