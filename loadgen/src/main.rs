//! `sluice-loadgen` command line: parse options, run, print where the results are.

use clap::Parser;
use sluice_loadgen::options::{Mode, Options};
use sluice_loadgen::run::run;
use sluice_loadgen::run_replay::run_replay;

/// Send lag p99 above which the run warns that the generator, not only the broker, was late.
const SEND_LAG_WARNING_US: u64 = 1_000;
/// Exit code of a replay that did not read every expected record (its summary is still written).
const INCOMPLETE_REPLAY_EXIT_CODE: i32 = 2;

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let settings = options.validate()?;
    // Two worker threads are plenty: the runtime only hosts the control plane (progress, Ctrl-C,
    // joins); producers and consumers are OS threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if settings.mode == Mode::Replay {
        let summary = runtime.block_on(run_replay(settings))?;
        let replay = &summary.replay;
        println!(
            "replay: read {} of {} records ({} value bytes) in {:.2} s: {:.0} records/s, {:.2} MB/s; first record after {} ms",
            replay.records_read,
            replay.records_expected,
            replay.value_bytes_read,
            replay.elapsed_s,
            replay.records_per_sec,
            replay.mb_per_sec,
            replay
                .time_to_first_record_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
        );
        println!(
            "replay: missing {}, offset gaps {}, duplicate offsets {}, partitions incomplete {}, consumer errors {}{}",
            replay.records_missing,
            replay.offset_gaps,
            replay.duplicate_offsets,
            replay.partitions_incomplete,
            replay.consumer_errors,
            if replay.timed_out { ", timed out" } else { "" }
        );
        for run in &replay.runs {
            println!(
                "replay: run {}: {} records, {} distinct sequences, {} holes, {} duplicates",
                run.run_id,
                run.records,
                run.distinct_sequences,
                run.sequence_holes,
                run.duplicate_sequences
            );
        }
        println!("results in {}", summary.settings.out.display());
        if !replay.complete {
            eprintln!("error: the replay is incomplete (see summary.json)");
            std::process::exit(INCOMPLETE_REPLAY_EXIT_CODE);
        }
        return Ok(());
    }
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
