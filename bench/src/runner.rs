//! Running the load generator against a started target: the readiness probe, the steps of a
//! scenario (a ladder stops at the first step that does not hold), and one run measured from the
//! outside (the broker's CPU time and the store requests counted around it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::hgrm;
use crate::process;
use crate::report::{self, Measured, Row, Status};
use crate::scenario::{Load, Scenario};
use crate::step_cleanup::{Cleaner, step_topic};
use crate::targets::Running;

/// Load-generator runs per step. Retried only when a run produced no summary at all (seen on
/// Kafka: the load generator creates the topic, sees leaders in the metadata, and its consumer's
/// first ListOffsets still answers NotLeaderForPartition; on the existing topic the next run
/// works). A run that completed is never re-run to get better numbers.
pub const STEP_ATTEMPTS_MAX: u32 = 3;

/// Attempts of the readiness probe; a broker that fails them all gets a failed row.
pub const PROBE_ATTEMPTS_MAX: u32 = 6;

/// A listening port does not mean a ready broker (Kafka accepts connections before its partitions
/// have leaders), so a tiny produce-and-consume run must succeed first. It also warms up both.
pub fn probe(running: &Running, loadgen: &Path, dir: &Path) -> anyhow::Result<()> {
    let load = Load {
        partitions: 1,
        records_per_sec: Some(100),
        mb_per_sec: None,
        record_bytes: 1024,
        linger_ms: 5,
        duration_s: 1,
        warmup_s: 1,
        consumers: 1,
        drain_timeout_s: crate::scenario::DRAIN_TIMEOUT_S,
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
/// With a `cleaner`, each step's topic is deleted once the step is measured, and the row says what
/// that left on disk.
pub fn run_target(
    name: &str,
    running: &Running,
    steps: &[Load],
    loadgen: &Path,
    out: &Path,
    scenario: Scenario,
    cleaner: Option<&Cleaner>,
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
        let topic = step_topic(scenario, index);
        if cleaner.is_some() {
            settings.insert(
                "step_cleanup".into(),
                serde_json::json!(crate::step_cleanup::setting(name)),
            );
        }
        let (outcome, attempts) = run_with_retries(
            running,
            load,
            loadgen,
            &|attempt| out.join(format!("{name}-{index}-try{attempt}")),
            &topic,
            &label,
        );
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
        if let Some(cleaner) = cleaner {
            let cleanup = cleaner.after_step(&running.admin_bootstrap, &topic);
            eprintln!("sluice-bench: {label}: {}", cleanup.describe());
            row.cleanup = Some(cleanup);
        }
        rows.push(row);
        if !held {
            break;
        }
    }
    rows
}

/// Runs one load-generator step, again (at most [`STEP_ATTEMPTS_MAX`] times in all) while it
/// ends without a summary. Returns the outcome and the number of runs it took.
pub fn run_with_retries(
    running: &Running,
    load: &Load,
    loadgen: &Path,
    run_dir: &dyn Fn(u32) -> std::path::PathBuf,
    topic: &str,
    label: &str,
) -> (anyhow::Result<Measured>, u32) {
    let mut outcome = Err(anyhow::anyhow!("not run"));
    let mut attempts = 0;
    while attempts < STEP_ATTEMPTS_MAX && outcome.is_err() {
        // A fresh directory per attempt: a failed attempt must not leave a summary.json that
        // a later one could be read as. The same topic: the failure seen is a topic that
        // is too new, and records of an earlier attempt carry another run id, which the
        // load generator counts apart (`foreign_records`).
        outcome = run_loadgen(running, load, loadgen, &run_dir(attempts), topic);
        if let Err(error) = &outcome {
            eprintln!("sluice-bench: {label}: attempt {attempts} failed: {error:#}");
        }
        attempts += 1;
    }
    (outcome, attempts)
}

/// One produce (and consume) run of the load generator at `load`.
pub fn run_loadgen(
    running: &Running,
    load: &Load,
    loadgen: &Path,
    run_dir: &Path,
    topic: &str,
) -> anyhow::Result<Measured> {
    let args = load.args(&running.bootstrap, topic, &run_dir.to_string_lossy());
    run_measured(
        running,
        &args,
        loadgen,
        run_dir,
        Duration::from_secs(load.limit_s()),
    )
}

/// Runs the load generator with `args` (which must name `run_dir` as `--out`), at most `limit`,
/// and reads its `summary.json`, with the broker's CPU time and the store requests around it.
/// A run that exits non-zero but wrote a summary is measured (a replay that found records
/// missing says so in its summary); one that wrote none is an error.
pub fn run_measured(
    running: &Running,
    args: &[String],
    loadgen: &Path,
    run_dir: &Path,
    limit: Duration,
) -> anyhow::Result<Measured> {
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)?;
    }
    std::fs::create_dir_all(run_dir)?;
    let mut command = Command::new(loadgen);
    command.args(args);
    for property in &running.librdkafka_properties {
        command.args(["--client-property", property]);
    }
    let store_before = running
        .store_counters
        .as_ref()
        .map(|counters| counters.snapshot());
    let cpu_before = running.cpu_seconds();
    let started = Instant::now();
    let mut child =
        process::Guarded::spawn("sluice-loadgen", command, &run_dir.join("loadgen.log"))?;
    let status = child.wait_with_limit(limit)?;
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_after = running.cpu_seconds();
    let store = running
        .store_counters
        .as_ref()
        .zip(store_before)
        .map(|(counters, before)| counters.snapshot().since(&before));
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
