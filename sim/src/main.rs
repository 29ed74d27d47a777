//! `sluice-sim`: runs seeds of the deterministic simulation until one fails or the budget ends.
//!
//! ```text
//! sluice-sim --seeds 1000000                 # seeds 0.. (or --start S), a progress line per second
//! sluice-sim --seconds 600                   # as many seeds as fit in ten minutes
//! sluice-sim --seed 1234 --verbose           # replay one seed, with its scenario and counts
//! sluice-sim --plant ack-before-put --seeds 200   # a planted bug: the first seed that catches it
//! ```
//!
//! Exit status 1 when a seed fails; its number and the command that replays it are printed.

use std::io::Write;
use std::time::{Duration, Instant};

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sluice_sim::{Options, PlantedBug, run_seed};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-sim",
    about = "Deterministic simulation of the Sluice engine"
)]
struct Args {
    /// Run exactly this seed (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// First seed of a range.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Seeds to run from --start (default: unbounded, until --seconds or a failure).
    #[arg(long)]
    seeds: Option<u64>,
    /// Stop starting new seeds after this many wall-clock seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Virtual milliseconds of workload per seed.
    #[arg(long, default_value_t = Options::default().duration_ms)]
    duration_ms: u64,
    /// Plant a bug (repeatable): ack-before-put, trust-already-exists, skip-chain-rule,
    /// skip-idempotence-check, claim-past-gap.
    #[arg(long)]
    plant: Vec<String>,
    /// Keep going after a failing seed (count failures instead of stopping at the first).
    #[arg(long)]
    keep_going: bool,
    /// Print each seed's scenario and counts.
    #[arg(long)]
    verbose: bool,
    /// Print every event of every seed (store calls, landings, acknowledgements, crashes) to
    /// stderr: for replaying one failing seed.
    #[arg(long)]
    trace: bool,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut plant = Vec::new();
    for name in &args.plant {
        let bug = PlantedBug::parse(name).with_context(|| {
            let known: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown bug {name:?}; known: {}", known.join(", "))
        })?;
        plant.push(bug);
    }
    let options = Options {
        duration_ms: args.duration_ms,
        plant,
    };
    let (first, count) = match args.seed {
        Some(seed) => (seed, Some(1)),
        None => (args.start, args.seeds),
    };
    sluice_sim::print_trace(args.trace);
    let budget = args.seconds.map(Duration::from_secs);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut ran = 0u64;
    let mut failed = Vec::new();
    let mut acks = 0u64;
    let mut virtual_ms = 0u64;
    let mut seed = first;
    loop {
        if count.is_some_and(|count| ran >= count) {
            break;
        }
        if budget.is_some_and(|budget| started.elapsed() >= budget) {
            break;
        }
        let report = run_seed(seed, &options);
        ran += 1;
        acks += report.summary.acks;
        virtual_ms += report.summary.virtual_ms;
        if args.verbose {
            println!(
                "seed {seed}: trace {:016x}, {:?}",
                report.trace_hash, report.summary
            );
        }
        if let Some(failure) = &report.failure {
            println!(
                "FAILED seed {seed} at {} virtual ms: {}",
                failure.at_ms, failure.message
            );
            println!(
                "replay: cargo run -p sluice-sim -- --seed {seed}{}{}",
                if args.duration_ms == Options::default().duration_ms {
                    String::new()
                } else {
                    format!(" --duration-ms {}", args.duration_ms)
                },
                args.plant
                    .iter()
                    .map(|name| format!(" --plant {name}"))
                    .collect::<String>()
            );
            failed.push(seed);
            if !args.keep_going {
                break;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let elapsed = started.elapsed().as_secs_f64();
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let rate = ran as f64 / elapsed.max(1e-9);
            print!(
                "\r{ran} seeds ({first}..={seed}), {rate:.1} seeds/s, {acks} acks, {:.0} virtual s, \
                 {} failed   ",
                virtual_ms as f64 / 1_000.0,
                failed.len()
            );
            std::io::stdout().flush().ok();
        }
        seed = seed.wrapping_add(1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let rate = ran as f64 / elapsed.max(1e-9);
    println!(
        "\n{ran} seeds in {elapsed:.1} s ({rate:.1} seeds/s), {acks} acknowledged batches, \
         {:.0} virtual seconds, {} failed{}",
        virtual_ms as f64 / 1_000.0,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
