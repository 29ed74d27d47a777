//! `sluice-bench`: sets up each target on loopback, runs `sluice-loadgen` against it, and writes
//! `report.json`, `report.md` and latency plots. See `docs/benchmarks.md` ("Bench harness").
//!
//! Targets run one after another, never side by side: on a 2-core machine two brokers would
//! measure each other. Every requested target gets a row, with numbers or with the reason it has
//! none.

mod groups;
mod hgrm;
mod markdown;
mod plot;
mod process;
mod proxy;
mod report;
mod scenario;
mod targets;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use crate::report::{Measured, Report, Row, Status};
use crate::scenario::{Load, Scenario};
use crate::targets::{Env, Running, StartError};

#[derive(Debug, Parser)]
#[command(about = "Benchmark Sluice, Apache Kafka and Tansu on loopback")]
struct Args {
    /// fraud, throughput, partitions, replay or groups.
    #[arg(long)]
    scenario: String,
    /// Output directory for report.json, report.md, plots and raw load-generator output.
    #[arg(long)]
    out: PathBuf,
    /// Short runs (about a minute per target) for smoke tests; not headline numbers.
    #[arg(long)]
    quick: bool,
    /// Comma list of: sluice, sluice-s3-express, sluice-s3-standard, sluice-external, kafka, tansu.
    #[arg(
        long,
        default_value = "sluice,sluice-s3-express,sluice-s3-standard,kafka,tansu"
    )]
    targets: String,
    /// An S3 or MinIO store for the `sluice-external` target (added to the targets when given);
    /// credentials from AWS_* environment variables.
    #[arg(long)]
    store: Option<String>,
    /// The `sluice` binary (default: next to this one).
    #[arg(long)]
    sluice_bin: Option<PathBuf>,
    /// The `sluice-loadgen` binary (default: next to this one).
    #[arg(long)]
    loadgen_bin: Option<PathBuf>,
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from("target/release").join(name))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = Scenario::parse(&args.scenario).with_context(|| {
        format!(
            "unknown scenario {:?} (fraud, throughput, partitions, replay, groups)",
            args.scenario
        )
    })?;
    let mut target_names: Vec<String> = args
        .targets
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if let Some(unknown) = target_names
        .iter()
        .find(|name| !targets::ALL.contains(&name.as_str()))
    {
        anyhow::bail!(
            "unknown target {unknown:?} (known: {})",
            targets::ALL.join(",")
        );
    }
    if args.store.is_some() && !target_names.iter().any(|name| name == "sluice-external") {
        target_names.push("sluice-external".to_owned());
    }
    std::fs::create_dir_all(&args.out)?;
    let out = args.out.canonicalize()?;
    let work = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = Env {
        repo: repo.canonicalize().unwrap_or(repo),
        sluice_bin: args.sluice_bin.clone().unwrap_or_else(|| sibling("sluice")),
        work_dir: work.path().to_owned(),
        external_store: args.store.clone(),
        runtime: runtime.handle().clone(),
    };
    if scenario == Scenario::Groups {
        // Simulated group members, not the load generator: its own driver and report.
        return groups::run(&env, &target_names, args.quick, &out);
    }
    let loadgen = args
        .loadgen_bin
        .clone()
        .unwrap_or_else(|| sibling("sluice-loadgen"));
    let steps = scenario.steps(args.quick);
    let mut rows = Vec::new();
    let mut findings = Vec::new();
    for name in &target_names {
        eprintln!("sluice-bench: {name}: starting");
        let steps = match &steps {
            Ok(steps) => steps,
            Err(reason) => {
                rows.push(Row::without_numbers(
                    name,
                    Status::NotImplemented(reason.clone()),
                    serde_json::Map::new(),
                ));
                continue;
            }
        };
        match targets::start(name, &env) {
            Ok(running) => {
                let target_rows = run_target(name, &running, steps, &loadgen, &out, scenario);
                findings.extend(report::sustained_finding(name, &target_rows));
                rows.extend(target_rows);
            }
            Err(error) => {
                let status = match error {
                    StartError::NotInstalled(hint) => Status::NotInstalled(hint),
                    StartError::Failed(reason) => {
                        Status::Failed(format!("could not start: {reason}"))
                    }
                };
                eprintln!("sluice-bench: {name}: {status:?}");
                let settings = steps.first().map(Load::settings).unwrap_or_default();
                rows.push(Row::without_numbers(name, status, settings));
            }
        }
        // Broker logs live in the temporary work dir; keep them next to the report.
        for suffix in ["", "-stderr"] {
            let log = work.path().join(format!("{name}{suffix}.log"));
            let _ = std::fs::copy(&log, out.join(format!("{name}{suffix}.log")));
        }
    }
    let report = Report {
        scenario: scenario.name().to_owned(),
        quick: args.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        machine: machine(),
        findings,
        rows,
    };
    write_outputs(&report, &out)?;
    println!("{}", markdown::render(&report));
    println!("sluice-bench: wrote {}", out.display());
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    format!("{cpus} CPUs, load average {load} at the end of the run")
}

/// Load-generator runs per step. Retried only when a run produced no summary at all (seen on
/// Kafka: the load generator creates the topic, sees leaders in the metadata, and its consumer's
/// first ListOffsets still answers NotLeaderForPartition; on the existing topic the next run
/// works). A run that completed is never re-run to get better numbers.
const STEP_ATTEMPTS_MAX: u32 = 3;

/// Attempts of the readiness probe; a broker that fails them all gets a failed row.
const PROBE_ATTEMPTS_MAX: u32 = 6;

/// A listening port does not mean a ready broker (Kafka accepts connections before its partitions
/// have leaders), so a tiny produce-and-consume run must succeed first. It also warms up both.
fn probe(running: &Running, loadgen: &Path, dir: &Path) -> anyhow::Result<()> {
    let load = Load {
        partitions: 1,
        records_per_sec: Some(100),
        mb_per_sec: None,
        record_bytes: 1024,
        linger_ms: 5,
        duration_s: 1,
        warmup_s: 1,
        consumers: 1,
    };
    let mut last_error = None;
    for attempt in 0..PROBE_ATTEMPTS_MAX {
        let run_dir = dir.join(format!("attempt-{attempt}"));
        match run_loadgen(
            running,
            &load,
            loadgen,
            &run_dir,
            &format!("bench-ready-{attempt}"),
        ) {
            Ok(measured) if report::latency_count(&measured.summary, "end_to_end") > 0 => {
                return Ok(());
            }
            Ok(_) => {
                last_error = Some(anyhow::anyhow!(
                    "no record consumed back (see {})",
                    run_dir.display()
                ))
            }
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("readiness probe never ran")))
}

/// Runs every step against one target; for a ladder, stops after the first step that did not hold.
fn run_target(
    name: &str,
    running: &Running,
    steps: &[Load],
    loadgen: &Path,
    out: &Path,
    scenario: Scenario,
) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Err(error) = probe(running, loadgen, &out.join(format!("{name}-probe"))) {
        let settings = steps.first().map(Load::settings).unwrap_or_default();
        let reason = format!("not ready after {PROBE_ATTEMPTS_MAX} probe runs: {error:#}");
        rows.push(Row::without_numbers(name, Status::Failed(reason), settings));
        return rows;
    }
    for (index, load) in steps.iter().enumerate() {
        let label = if steps.len() > 1 {
            format!("{name} @ {} MB/s", load.mb_per_sec.unwrap_or(0))
        } else {
            name.to_owned()
        };
        let mut settings = running.settings.clone();
        settings.extend(load.settings());
        let mut outcome = Err(anyhow::anyhow!("not run"));
        let mut attempts = 0;
        while attempts < STEP_ATTEMPTS_MAX && outcome.is_err() {
            // A fresh directory per attempt: a failed attempt must not leave a summary.json that
            // a later one could be read as. The same topic: the failure seen is a topic that
            // is too new, and records of an earlier attempt carry another run id, which the
            // load generator counts apart (`foreign_records`).
            let run_dir = out.join(format!("{name}-{index}-try{attempts}"));
            let topic = format!("bench-{}-{index}", scenario.name());
            outcome = run_loadgen(running, load, loadgen, &run_dir, &topic);
            if let Err(error) = &outcome {
                eprintln!("sluice-bench: {label}: attempt {attempts} failed: {error:#}");
            }
            attempts += 1;
        }
        settings.insert("loadgen_attempts".into(), serde_json::json!(attempts));
        let row = match outcome {
            Ok(measured) => {
                let mut row = report::build_row(&label, settings, measured);
                row.store_note.clone_from(&running.store_note);
                row
            }
            Err(error) => {
                Row::without_numbers(&label, Status::Failed(format!("{error:#}")), settings)
            }
        };
        let held = row.status == Status::Ran
            && row.produce.is_some_and(|p| p.p99_ms < 1000.0)
            && match (row.mb_per_sec, load.mb_per_sec) {
                (Some(achieved), Some(wanted)) => {
                    #[expect(clippy::cast_precision_loss, reason = "small rates")]
                    let wanted = wanted as f64;
                    achieved >= 0.9 * wanted
                }
                _ => true,
            };
        eprintln!("sluice-bench: {label}: {:?} held={held}", row.status);
        let mut row = row;
        if steps.len() > 1 {
            row.held = Some(held);
        }
        rows.push(row);
        if !held {
            break;
        }
    }
    rows
}

fn run_loadgen(
    running: &Running,
    load: &Load,
    loadgen: &Path,
    run_dir: &Path,
    topic: &str,
) -> anyhow::Result<Measured> {
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)?;
    }
    std::fs::create_dir_all(run_dir)?;
    let mut command = Command::new(loadgen);
    command.args(load.args(&running.bootstrap, topic, &run_dir.to_string_lossy()));
    let store_before = running
        .proxy
        .as_ref()
        .map(|proxy| proxy.counters().snapshot());
    let cpu_before = running.broker.cpu_seconds();
    let started = Instant::now();
    let mut child =
        process::Guarded::spawn("sluice-loadgen", command, &run_dir.join("loadgen.log"))?;
    let status = child.wait_with_limit(Duration::from_secs(load.limit_s()))?;
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_after = running.broker.cpu_seconds();
    let store = running
        .proxy
        .as_ref()
        .zip(store_before)
        .map(|(proxy, before)| proxy.counters().snapshot().since(&before));
    let summary_path = run_dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path).with_context(|| {
        format!(
            "load generator exited with {status}, no {}: {}",
            summary_path.display(),
            child.log_tail()
        )
    })?;
    let read_curve =
        |file: &str| hgrm::parse(&std::fs::read_to_string(run_dir.join(file)).unwrap_or_default());
    Ok(Measured {
        summary: serde_json::from_str(&text)?,
        wall_s,
        cpu_s: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
        store,
        produce_curve: read_curve("produce.hgrm"),
        end_to_end_curve: read_curve("e2e.hgrm"),
    })
}

fn write_outputs(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.md"), markdown::render(report))?;
    let ran: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.status == Status::Ran)
        .collect();
    for (file, title, pick) in [
        (
            "produce-latency.svg",
            "produce latency",
            (|row: &Row| row.produce_curve.clone()) as fn(&Row) -> Vec<hgrm::Point>,
        ),
        ("e2e-latency.svg", "end-to-end latency", |row: &Row| {
            row.end_to_end_curve.clone()
        }),
    ] {
        let series: Vec<(String, Vec<hgrm::Point>)> = ran
            .iter()
            .map(|row| (row.target.clone(), pick(row)))
            .collect();
        let title = format!(
            "{title}, scenario {}{}",
            report.scenario,
            if report.quick { " (quick)" } else { "" }
        );
        std::fs::write(out.join(file), plot::render(&title, &series))?;
    }
    Ok(())
}
