//! Scenario `soak`: does the agent's state stay bounded when retention is on? The `fraud` load
//! (5,000 records/s of 1 KiB on 12 partitions, acks=all) runs for 30 minutes (quick: 3) on a
//! topic with `retention.ms` = 2 minutes (quick: 30 s), the agent checking retention every 10 s
//! (quick: 5 s) and deleting unneeded objects 10 s after it finds them.
//!
//! Every second the harness samples, from the outside ([`sample`]): the agent's RSS,
//! its index entries (its `sluice_index_entries` gauge, scraped from its metrics endpoint; an
//! agent without the gauge: the newest housekeeping line of its log), the objects and bytes under
//! `log/` (window objects), `compacted/` (object compaction's merged objects) and `checkpoint/`
//! in the bucket (the loopback S3 server's directory, or the directory store of `sluice-file`),
//! the checkpoint bytes written per second, and the load generator's per-second P99s. Object
//! compaction runs with the agent's defaults. After the first retention period each of these
//! should stop growing; [`verdict`] says, per series, whether the last half of the run is flat.
//!
//! Recovery must not grow with run time either: the agent is restarted at a third of the run and
//! at its end, on the same bucket, and each restart is timed from process start to the "metadata
//! log open" line and to the first Metadata answer naming a leader for every partition. The
//! mid-run restart falls between two load-generator runs (the load pauses for it) rather than
//! under load: each run then checks its own records, and a restart slower than librdkafka's
//! message timeout cannot be mistaken for loss. A third, not a half: the verdict window (the last
//! half) then starts after the agent's caches have refilled.
//!
//! A record acknowledged and never consumed fails the run, as in every scenario.

pub(crate) mod admin;
mod parse;
mod report;
mod sample;
mod verdict;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::report::{Row, Status};
use crate::runner;
use crate::scenario::{Load, fraud_load};
use crate::targets::{self, Env, Running};
use parse::LogOpenLine;
pub use report::{Recovery, SoakTarget};
use sample::{LogTail, Sample, Sampler};

const TOPIC: &str = "bench-soak";
/// Limit on a restarted agent becoming ready (as `targets`' start limit).
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);
/// How often a restart's progress is polled.
const RECOVERY_POLL: Duration = Duration::from_millis(10);
const TOPIC_SETUP_LIMIT: Duration = Duration::from_secs(60);

/// How a restart stops the agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Stop {
    /// A clean stop: the agent writes a checkpoint as it stops, so the next start replays
    /// nothing.
    #[default]
    #[serde(rename = "SIGTERM")]
    Term,
    /// A crash: the next start replays the log tail since the last periodic checkpoint, the
    /// recovery a lost agent costs.
    #[serde(rename = "SIGKILL")]
    Kill,
}

/// The agent's default `checkpoint_interval_entries`, which the soak leaves as it is.
pub use sluice_engine::log::CHECKPOINT_INTERVAL_ENTRIES_DEFAULT as CHECKPOINT_INTERVAL_ENTRIES;

/// One restart of the agent on the same bucket: its name in the report, and how it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    pub name: &'static str,
    pub stop: Stop,
}

/// The sizes and settings of one soak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// The fraud load; its duration and warm-up are split over the two runs by [`Plan::phases`].
    pub load: Load,
    pub duration_s: u32,
    /// When the load pauses for the mid-run restart.
    pub restart_at_s: u32,
    /// The restarts after the first and the second load-generator run.
    pub restarts: [Restart; 2],
    /// The topic's `retention.ms`.
    pub retention_ms: u64,
    pub retention_check_interval_ms: u64,
    pub segment_delete_delay_ms: u64,
    pub sample_interval: Duration,
    /// Trailing window of the checkpoint-rate series (see `sample::checkpoint_rate`).
    pub checkpoint_rate_window_s: f64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        let duration_s = if quick { 180 } else { 1_800 };
        Plan {
            load: fraud_load(quick),
            duration_s,
            restart_at_s: duration_s / 3,
            restarts: [
                Restart {
                    name: "mid-run",
                    stop: Stop::Term,
                },
                Restart {
                    name: "end",
                    stop: Stop::Kill,
                },
            ],
            retention_ms: if quick { 30_000 } else { 120_000 },
            retention_check_interval_ms: if quick { 5_000 } else { 10_000 },
            segment_delete_delay_ms: 10_000,
            // Every second: the bucket's objects are a sawtooth with the housekeeping's period
            // (a round's work plus its 10 s sleep, ~10.8 s), and 5 s samples walked through its
            // phase once every ~135 s, about one retention period, so a period's mean depended
            // on where the beat fell: about ±1 % (a run's every fifth sample, at each of the five
            // phases, gave means 1.079–1.103 apart; all its samples 1.088). A second is
            // small against every period, and the sampling costs the harness a directory
            // listing and one metrics request.
            sample_interval: Duration::from_secs(1),
            checkpoint_rate_window_s: if quick { 30.0 } else { 60.0 },
        }
    }

    /// The two load-generator runs: up to the restart, and after it; each with the fraud
    /// warm-up, so that the measured windows add up to the run less two warm-ups.
    pub fn phases(&self) -> [Load; 2] {
        let warmup = self.load.warmup_s;
        let first = self.restart_at_s.saturating_sub(warmup).max(1);
        let second = (self.duration_s - self.restart_at_s)
            .saturating_sub(warmup)
            .max(1);
        [
            Load {
                duration_s: first,
                ..self.load
            },
            Load {
                duration_s: second,
                ..self.load
            },
        ]
    }

    /// The verdicts judge the samples from here on: the last half of the run.
    /// The period a series' level is averaged over ([`verdict::Shape::FlatOnAverage`]): the
    /// topic's retention period, a whole number of every housekeeping round's period.
    pub fn level_period_s(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "minutes in milliseconds")]
        let period_s = self.retention_ms as f64 / 1_000.0;
        period_s
    }

    /// The most log entries a restart should replay: with compaction on, the agent writes a
    /// checkpoint after a tick once half the interval has passed, and on the count alone at
    /// twice the interval (`metadata_core::flusher::CheckpointPolicy`).
    pub fn tail_entries_max(&self) -> u64 {
        2 * CHECKPOINT_INTERVAL_ENTRIES
    }

    pub fn verdict_from_s(&self) -> f64 {
        f64::from(self.duration_s) / 2.0
    }

    pub fn settings(&self) -> Map<String, Value> {
        let mut map = self.load.settings();
        map.remove("duration_s");
        map.insert("soak_s".into(), json!(self.duration_s));
        map.insert("restart_at_s".into(), json!(self.restart_at_s));
        map.insert("topic_retention_ms".into(), json!(self.retention_ms));
        map.insert(
            "log_retention_check_interval_ms".into(),
            json!(self.retention_check_interval_ms),
        );
        map.insert(
            "log_segment_delete_delay_ms".into(),
            json!(self.segment_delete_delay_ms),
        );
        map.insert(
            "checkpoint_interval_entries".into(),
            json!(format!("agent default ({CHECKPOINT_INTERVAL_ENTRIES})")),
        );
        map.insert("checkpoints_retained".into(), json!("agent default (2)"));
        // The agent inherits the harness's environment: a comparison run without compaction is
        // `SLUICE_COMPACTION_INTERVAL_MS=0 sluice-bench --scenario soak ...`, and says so here.
        let compaction = match std::env::var("SLUICE_COMPACTION_INTERVAL_MS") {
            Ok(value) if value.trim() == "0" => "off (SLUICE_COMPACTION_INTERVAL_MS=0)".to_owned(),
            Ok(value) => {
                format!("every {value} ms (SLUICE_COMPACTION_INTERVAL_MS), 32 MiB objects")
            }
            Err(_) => "agent defaults (every 10000 ms, 32 MiB objects)".to_owned(),
        };
        map.insert("object_compaction".into(), json!(compaction));
        map.insert(
            "sample_interval_s".into(),
            json!(self.sample_interval.as_secs()),
        );
        map
    }
}

/// The agent's environment for a soak: the retention settings, the housekeeping module's DEBUG
/// line (every round, including those that delete nothing), and a metrics endpoint.
pub fn agent_env(plan: &Plan) -> Vec<(String, String)> {
    vec![
        (
            "SLUICE_LOG".to_owned(),
            "info,sluice_server::metadata_core::housekeeping=debug".to_owned(),
        ),
        (
            "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS".to_owned(),
            plan.retention_check_interval_ms.to_string(),
        ),
        (
            "SLUICE_LOG_SEGMENT_DELETE_DELAY_MS".to_owned(),
            plan.segment_delete_delay_ms.to_string(),
        ),
        // The metrics endpoint on a free port of each start's own choosing (its "agent listening"
        // line names it): every sample reads the `sluice_index_entries` gauge there.
        ("SLUICE_METRICS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
    ]
}

/// Runs the soak against every target, writes the report, returns the exit code.
pub fn run(
    env: &Env,
    target_names: &[String],
    quick: bool,
    loadgen: &Path,
    out: &Path,
) -> anyhow::Result<i32> {
    let plan = Plan::new(quick);
    let load_at_start = crate::load_average();
    let mut results = Vec::new();
    for name in target_names {
        eprintln!("sluice-bench: {name}: starting the soak");
        results.push(run_target(name, env, &plan, loadgen, out));
        for suffix in ["", "-stderr"] {
            let log = env.work_dir.join(format!("{name}{suffix}.log"));
            let _ = std::fs::copy(&log, out.join(format!("{name}{suffix}.log")));
        }
    }
    let report = report::SoakReport {
        scenario: "soak".to_owned(),
        quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix_ms: report::unix_ms(),
        machine: format!(
            "{} CPUs, load average {load_at_start} at the start and {} at the end of the run",
            std::thread::available_parallelism().map_or(0, usize::from),
            crate::load_average()
        ),
        settings: plan.settings(),
        targets: results,
    };
    report::write(&report, &plan, out)?;
    println!("{}", report::render(&report, &plan));
    println!("sluice-bench: wrote {}", out.display());
    let failures = report::failures(&report);
    for failure in &failures {
        eprintln!("sluice-bench: FAILED: {failure}");
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn run_target(name: &str, env: &Env, plan: &Plan, loadgen: &Path, out: &Path) -> SoakTarget {
    let mut target = SoakTarget::new(name, plan.settings());
    if !name.starts_with("sluice") {
        target.status = Status::NotImplemented(
            "the soak reads the Sluice agent's log and lists its bucket".to_owned(),
        );
        return target;
    }
    let mut running = match targets::start(name, env) {
        Ok(running) => running,
        Err(error) => {
            target.status = match error {
                targets::StartError::NotInstalled(hint) => Status::NotInstalled(hint),
                targets::StartError::Failed(reason) => {
                    Status::Failed(format!("could not start: {reason}"))
                }
            };
            return target;
        }
    };
    target.settings.extend(running.settings.clone());
    let Some(bucket_dir) = running.sluice_bucket_dir() else {
        target.status = Status::NotImplemented(
            "no bucket on this machine to list (the soak needs the loopback S3 server \
                 or a directory store)"
                .to_owned(),
        );
        return target;
    };
    if let Err(error) = set_up(&running, env, plan, loadgen, out, name) {
        target.status = Status::Failed(format!("{error:#}"));
        return target;
    }
    let mut sampler = Sampler::new(
        Instant::now(),
        running.broker.pid(),
        &running.launch.log,
        &bucket_dir,
        None,
        plan.checkpoint_rate_window_s,
    );
    target.samples.push(sampler.sample());
    let [first, second] = plan.phases();
    for ((index, load), restart) in [first, second].iter().enumerate().zip(plan.restarts) {
        let label = format!("{name} run {}", index + 1);
        let run_dir = out.join(format!("{name}-soak-{}", index + 1));
        eprintln!(
            "sluice-bench: {label}: {} s of load after {} s of warm-up",
            load.duration_s, load.warmup_s
        );
        let outcome = load_phase(
            &running,
            &mut sampler,
            &mut target.samples,
            load,
            loadgen,
            &run_dir,
            plan.sample_interval,
        );
        let mut settings = target.settings.clone();
        settings.extend(load.settings());
        let row = match outcome {
            Ok(measured) => {
                let mut row = crate::report::build_row(&label, settings, measured);
                row.store_note.clone_from(&running.store_note);
                row
            }
            Err(error) => {
                Row::without_numbers(&label, Status::Failed(format!("{error:#}")), settings)
            }
        };
        let ran = row.status == Status::Ran;
        target.rows.push(row);
        if !ran {
            target.status = Status::Failed(format!("{label} did not run (see its row)"));
            return target;
        }
        let kind = restart.name;
        eprintln!("sluice-bench: {name}: {kind} restart");
        let recovery = restart_timed(&mut running, &mut sampler, env, plan, restart);
        eprintln!("sluice-bench: {name}: {kind} restart: {recovery:?}");
        let recovered = recovery.error.is_none();
        target.recoveries.push(recovery);
        if !recovered {
            target.status = Status::Failed(format!("the {kind} restart failed"));
            return target;
        }
    }
    if let Some(server) = &running.server {
        let (count, bytes) = sample::server_sidecar_files(server.data_dir());
        target.notes.push(format!(
            "The loopback S3 server (s3s-fs) keeps a `.bucket-….internal.json` file per object \
             written at its root and does not remove it on delete: {count} files, {bytes} bytes \
             at the end. They are the test server's, not objects in the bucket, and are not counted above."
        ));
    }
    target.finish(plan);
    target
}

/// The readiness probe, then the topic with its `retention.ms`.
fn set_up(
    running: &Running,
    env: &Env,
    plan: &Plan,
    loadgen: &Path,
    out: &Path,
    name: &str,
) -> anyhow::Result<()> {
    runner::probe(running, loadgen, &out.join(format!("{name}-probe")))?;
    let partitions = i32::try_from(plan.load.partitions)?;
    env.runtime.block_on(admin::create_topic(
        &running.bootstrap,
        TOPIC,
        partitions,
        &[("retention.ms", plan.retention_ms.to_string())],
        TOPIC_SETUP_LIMIT,
    ))
}

/// One load-generator run on the soak topic, sampled every `interval` on a thread of its own
/// until the run ends (one more sample then).
fn load_phase(
    running: &Running,
    sampler: &mut Sampler,
    samples: &mut Vec<Sample>,
    load: &Load,
    loadgen: &Path,
    run_dir: &Path,
    interval: Duration,
) -> anyhow::Result<crate::report::Measured> {
    sampler.follow_loadgen(
        &run_dir.join("loadgen.log"),
        f64::from(load.warmup_s + load.duration_s),
    );
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampling = scope.spawn(|| sample_until(sampler, samples, &done, interval));
        let outcome = runner::run_loadgen(running, load, loadgen, run_dir, TOPIC);
        done.store(true, Ordering::Relaxed);
        if sampling.join().is_err() {
            eprintln!("sluice-bench: soak: the sampling thread panicked");
        }
        outcome
    })
}

/// Samples at every multiple of `interval` since the soak started, until `done`.
fn sample_until(
    sampler: &mut Sampler,
    samples: &mut Vec<Sample>,
    done: &AtomicBool,
    interval: Duration,
) {
    let interval_s = interval.as_secs_f64();
    let mut next_s = ((sampler.elapsed_s() / interval_s).floor() + 1.0) * interval_s;
    loop {
        while sampler.elapsed_s() < next_s {
            if done.load(Ordering::Relaxed) {
                samples.push(sampler.sample());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let sample = sampler.sample();
        // About every half minute a line on stderr, to follow a long run.
        if (sample.t_s / 30.0).floor() > ((sample.t_s - interval_s) / 30.0).floor() {
            eprintln!(
                "sluice-bench: soak {:.0} s: RSS {:.0} MiB, index entries {}, {} log + {} compacted + {} checkpoint objects, {:.1} MB",
                sample.t_s,
                sample
                    .rss_bytes
                    .map_or(0.0, |bytes| bytes as f64 / 1_048_576.0),
                sample
                    .index_entries
                    .map_or_else(|| "?".to_owned(), |entries| entries.to_string()),
                sample.log_objects,
                sample.compacted_objects,
                sample.checkpoint_objects,
                sample.bucket_bytes() as f64 / 1e6,
            );
        }
        samples.push(sample);
        next_s += interval_s;
    }
}

/// Stops the agent and starts it again on the same bucket, timing each step.
fn restart_timed(
    running: &mut Running,
    sampler: &mut Sampler,
    env: &Env,
    plan: &Plan,
    restart: Restart,
) -> Recovery {
    let before = sampler.sample();
    let mut recovery = Recovery::before(restart, &before);
    let log = running.launch.log.clone();
    let log_offset = std::fs::metadata(&log).map_or(0, |metadata| metadata.len());
    let stopping = Instant::now();
    match restart.stop {
        Stop::Term => {
            if running.broker.stop() {
                // Still running after the grace: it was killed, and its restart is a crash's.
                eprintln!("sluice-bench: soak: the agent did not stop on SIGTERM; killed");
                recovery.stop = Stop::Kill;
            }
        }
        Stop::Kill => {
            if let Err(error) = running.broker.kill_now() {
                recovery.error = Some(format!("{error:#}"));
                return recovery;
            }
        }
    }
    recovery.stop_s = stopping.elapsed().as_secs_f64();
    let spawned = Instant::now();
    let spawned_unix_s = unix_s();
    running.broker = match running.launch.spawn() {
        Ok(broker) => broker,
        Err(error) => {
            recovery.error = Some(format!("{error:#}"));
            return recovery;
        }
    };
    sampler.restarted(running.broker.pid(), log_offset);
    let partitions = i32::try_from(plan.load.partitions).unwrap_or(i32::MAX);
    let bootstrap = running.bootstrap.clone();
    // Asked on the harness runtime while this thread watches the process: a Metadata request
    // sent before the agent serves waits in its listen backlog (the port is bound before the
    // log opens) and is answered the moment it does.
    let serving = env.runtime.spawn(async move {
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            match admin::serving(&bootstrap, TOPIC, partitions).await {
                Ok(true) => return Ok(Instant::now()),
                Ok(false) if Instant::now() < deadline => {
                    tokio::time::sleep(RECOVERY_POLL).await;
                }
                Ok(false) => return Err(format!("not serving {TOPIC} after {RECOVERY_LIMIT:?}")),
                Err(error) => return Err(format!("{error:#}")),
            }
        }
    });
    while !serving.is_finished() {
        if let Some(status) = running.broker.exited() {
            recovery.error = Some(format!(
                "the agent exited ({status}): {}",
                running.broker.log_tail()
            ));
            serving.abort();
            return recovery;
        }
        std::thread::sleep(RECOVERY_POLL);
    }
    match env.runtime.block_on(serving) {
        Ok(Ok(at)) => {
            recovery.serving_s = Some(at.saturating_duration_since(spawned).as_secs_f64());
        }
        Ok(Err(message)) => recovery.error = Some(message),
        Err(error) => recovery.error = Some(format!("serving check: {error}")),
    }
    // The line's own timestamp (µs) against the wall clock at spawn: no polling in between.
    if let Some((line, open)) = LogTail::new(&log, log_offset)
        .lines()
        .into_iter()
        .find_map(|line| LogOpenLine::parse(&line).map(|open| (line, open)))
    {
        recovery.log_open_s = parse::line_unix_s(&line).map(|at| at - spawned_unix_s);
        recovery.log_open = Some(open);
    }
    recovery.rss_after_bytes =
        std::fs::read_to_string(format!("/proc/{}/status", running.broker.pid()))
            .ok()
            .and_then(|status| parse::rss_bytes(&status));
    recovery
}

fn unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_plan_is_the_fraud_load_for_longer_with_short_retention() {
        let quick = Plan::new(true);
        let fraud = fraud_load(true);
        assert_eq!(
            (
                quick.load.partitions,
                quick.load.records_per_sec,
                quick.load.record_bytes
            ),
            (fraud.partitions, fraud.records_per_sec, fraud.record_bytes)
        );
        assert_eq!((quick.duration_s, quick.retention_ms), (180, 30_000));
        assert_eq!(
            (
                quick.retention_check_interval_ms,
                quick.segment_delete_delay_ms
            ),
            (5_000, 10_000)
        );
        let [first, second] = quick.phases();
        assert_eq!(
            first.warmup_s + first.duration_s + second.warmup_s + second.duration_s,
            180
        );
        assert_eq!(first.warmup_s + first.duration_s, quick.restart_at_s);
        // The mid-run restart is a clean stop, the end one a crash.
        assert_eq!(
            quick.restarts.map(|restart| (restart.name, restart.stop)),
            [("mid-run", Stop::Term), ("end", Stop::Kill)]
        );
        let full = Plan::new(false);
        assert_eq!((full.duration_s, full.retention_ms), (1_800, 120_000));
        assert_eq!(
            (quick.sample_interval, full.sample_interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        // The verdict window starts after the first retention period and after the restart.
        for plan in [quick, full] {
            let retention_done_s = (plan.retention_ms
                + plan.retention_check_interval_ms
                + plan.segment_delete_delay_ms) as f64
                / 1000.0;
            assert!(plan.verdict_from_s() > retention_done_s);
            assert!(plan.verdict_from_s() > f64::from(plan.restart_at_s));
        }
        let env = agent_env(&quick);
        assert!(env.contains(&(
            "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS".to_owned(),
            "5000".to_owned()
        )));
        assert!(
            env.iter()
                .any(|(key, value)| key == "SLUICE_LOG" && value.contains("housekeeping=debug"))
        );
    }
}
