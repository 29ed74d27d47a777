//! The `replay` scenario for one target: fill a 64-partition topic at the client's top speed,
//! read it from offset 0 to its end (`sluice-loadgen --mode replay`), restart the broker, and
//! read it twice more.
//!
//! Why a restart: an agent keeps the objects it wrote in its block cache, so a read right after
//! the fill would partly measure memory. After a restart Sluice's cache is empty and every byte
//! of the first read ("cold") comes from the object store through ranged GETs, counted by the
//! proxy. The second read ("warm") shows what the cache then holds (all of a quick run's 205 MB,
//! a slice of the full run's 5 GB). Kafka and Tansu are restarted the same way; Kafka's log stays
//! in the operating system's page cache across its restart (the harness does not drop the
//! machine's caches, which would slow every other process on it), and so do the loopback S3
//! server's files — "cold" means "not in the broker's own memory", for every target.
//!
//! The read before the restart ("after fill") tells a broker that never stored what it
//! acknowledged from one that lost it in the restart.
//!
//! Rows: `<target> fill` (a produce row), `<target> after fill`, `<target> cold`, `<target> warm`
//! (replay rows, each verified: every offset read once and every record the fill acknowledged
//! found).
//!
//! **After compaction** (every Sluice target: on the loopback S3 server, and on the
//! local-directory store, whose GETs are file reads — what reading compacted objects costs
//! without the S3 stand-in's HTTP on the same CPUs): the agent is restarted with compaction
//! every 200 ms and its housekeeping round every second, logging each round's index entry
//! count; once the whole topic is merged into compacted objects (below), it is restarted
//! once more (empty cache) and the topic read twice: `<target> compacted cold`,
//! `<target> compacted warm`. "Merged" is read from the agent's own log, never assumed after a
//! sleep: the index entries of every partition of the agent, as its housekeeping rounds count
//! them, are at most [`compacted_entries_max`] and have not changed over
//! [`SETTLED_ROUNDS`] rounds with no compaction job logged in between, and the fill ended long
//! enough ago that no run is still waiting for its age ([`settle_not_before`]).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::{self, Row, Status};
use crate::runner;
use crate::scenario::ReplayPlan;
use crate::targets::Running;

const TOPIC: &str = "bench-replay";

pub fn run_target(
    name: &str,
    running: &mut Running,
    plan: &ReplayPlan,
    loadgen: &Path,
    out: &Path,
) -> Vec<Row> {
    let mut settings = running.settings.clone();
    settings.extend(plan.settings());
    let failed = |label: &str, reason: String| {
        Row::without_numbers(label, Status::Failed(reason), settings.clone())
    };
    let fill_label = format!("{name} fill");
    if let Err(error) = runner::probe(running, loadgen, &out.join(format!("{name}-probe"))) {
        let reason = format!(
            "not ready after {} probe runs: {error:#}",
            runner::PROBE_ATTEMPTS_MAX
        );
        return vec![failed(&fill_label, reason)];
    }
    eprintln!(
        "sluice-bench: {fill_label}: {} records of {} bytes",
        plan.records(),
        plan.record_bytes
    );
    let (outcome, attempts) = runner::run_with_retries(
        running,
        &plan.fill(),
        loadgen,
        &|attempt| out.join(format!("{name}-fill-try{attempt}")),
        TOPIC,
        &fill_label,
    );
    let mut fill_settings = settings.clone();
    fill_settings.insert("loadgen_attempts".into(), serde_json::json!(attempts));
    let fill = match outcome {
        Ok(measured) => measured,
        Err(error) => return vec![failed(&fill_label, format!("{error:#}"))],
    };
    let fill_ended = Instant::now();
    let fill_summary = fill.summary.clone();
    let mut fill_row = report::build_row(&fill_label, fill_settings, fill);
    fill_row.store_note.clone_from(&running.store_note);
    // The fill's latencies are queueing behind an open-loop schedule far above any broker's
    // rate: meaningless as latency, so they are not reported.
    fill_row.produce = None;
    fill_row.produce_curve.clear();
    fill_row.end_to_end_note = Some(
        "fill: produce only, at the client's top speed; its latencies are queueing, not reported"
            .to_owned(),
    );
    let mut rows = vec![fill_row];

    rows.push(read(
        name,
        "after fill",
        running,
        plan,
        loadgen,
        out,
        &fill_summary,
        &settings,
    ));
    eprintln!("sluice-bench: {name}: restarting the broker for a cold read");
    if let Err(error) = running.restart() {
        for phase in ["cold", "warm"] {
            rows.push(failed(
                &format!("{name} {phase}"),
                format!("broker did not restart: {error:#}"),
            ));
        }
        return rows;
    }
    for phase in ["cold", "warm"] {
        rows.push(read(
            name,
            phase,
            running,
            plan,
            loadgen,
            out,
            &fill_summary,
            &settings,
        ));
    }
    if name.starts_with("sluice") {
        rows.extend(after_compaction(
            name,
            running,
            plan,
            loadgen,
            out,
            &Fill {
                summary: &fill_summary,
                ended: fill_ended,
            },
            &settings,
        ));
    }
    rows
}

/// The agent's settings while it compacts (the defaults compact every 10 s, 8 jobs a tick, and
/// log a round's index entries only when it deleted something).
const COMPACTING_ENV: [(&str, &str); 2] = [
    ("SLUICE_COMPACTION_INTERVAL_MS", "200"),
    ("SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS", "1000"),
];
/// Added to the agent's log filter (`SLUICE_LOG` from the harness's environment, else `info`):
/// every housekeeping round with its index entry count.
const HOUSEKEEPING_DEBUG: &str = "sluice_server::metadata_core::housekeeping=debug";
/// Housekeeping rounds with the same index entry count, and no compaction job in between, that
/// say compaction has nothing left to merge.
pub const SETTLED_ROUNDS: usize = 3;
/// The agent's default `compaction_object_bytes_target`.
const COMPACTED_OBJECT_BYTES: u64 = 32 * 1024 * 1024;
/// How long after the fill the count may first be taken as settled: a run of windows that
/// reaches the live edge is merged only once its newest record is
/// [`sluice_engine::compact::RUN_SETTLE_MS`] old, so until then a steady count can be runs
/// waiting for their age (a quick fill's runs all do), not a finished compaction. The margin
/// covers the ticks that merge them and [`SETTLED_ROUNDS`] rounds after.
fn settle_not_before() -> Duration {
    let age = u64::try_from(sluice_engine::compact::RUN_SETTLE_MS).unwrap_or(60_000);
    Duration::from_millis(age) + Duration::from_secs(5 + SETTLED_ROUNDS as u64)
}
/// Index entries allowed besides the topic's (the probe's topic).
const OTHER_ENTRIES_MAX: u64 = 64;

/// Index entries of the whole agent once the fill is compacted: per partition its bytes in
/// entries of at least half the object target (a merged run grows to the target, or stops at a
/// neighbour), plus three (the last, smaller run; a single window no run could join; a run cut
/// at the partition's span boundary, `compact::run_phase_ms`, one every 21 hours at the default
/// retention), plus the probe topic's.
pub fn compacted_entries_max(plan: &ReplayPlan) -> u64 {
    let partitions = u64::from(plan.partitions);
    let partition_bytes = plan.records() * u64::from(plan.record_bytes) / partitions.max(1);
    partitions * (partition_bytes.div_ceil(COMPACTED_OBJECT_BYTES / 2) + 3) + OTHER_ENTRIES_MAX
}

/// What the agent's log says about compaction, from its lines since a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionProgress {
    /// Index entries of each housekeeping round, in order.
    pub rounds: Vec<u64>,
    /// Compaction jobs logged, and the round count when the last one was logged.
    pub jobs: u64,
    pub rounds_at_last_job: usize,
    pub bytes_compacted: u64,
}

impl CompactionProgress {
    pub fn parse(log: &str) -> CompactionProgress {
        let mut progress = CompactionProgress::default();
        for line in log.lines() {
            let line = crate::process::strip_ansi(line);
            let field = |key: &str| {
                line.split_whitespace()
                    .filter_map(|word| word.split_once('='))
                    .find(|(name, _)| *name == key)
                    .and_then(|(_, value)| value.parse::<u64>().ok())
            };
            let round = line.contains("housekeeping: nothing to do")
                || line.contains("housekeeping: retention and garbage collection");
            if round {
                if let Some(entries) = field("index_entries") {
                    progress.rounds.push(entries);
                }
            } else if line.contains(" compaction job ")
                && !line.contains("key compaction job")
                && !line.contains("failed")
            {
                progress.jobs += 1;
                progress.rounds_at_last_job = progress.rounds.len();
                progress.bytes_compacted += field("bytes").unwrap_or(0);
            }
        }
        progress
    }

    /// The index entry count once compaction is done: the last [`SETTLED_ROUNDS`] rounds agree,
    /// no job was logged after the first of them, and the count is at most `entries_max`.
    pub fn settled(&self, entries_max: u64) -> Option<u64> {
        let last = self.rounds.len().checked_sub(SETTLED_ROUNDS)?;
        let window = self.rounds.get(last..)?;
        let first = *window.first()?;
        (window.iter().all(|entries| *entries == first)
            && self.rounds_at_last_job <= last + 1
            && first <= entries_max)
            .then_some(first)
    }
}

/// The fill's summary (what every read verifies against) and when it ended.
struct Fill<'a> {
    summary: &'a serde_json::Value,
    ended: Instant,
}

/// Restarts the agent compacting, waits until the topic is compacted, restarts it again (empty
/// cache) and reads the topic twice.
fn after_compaction(
    name: &str,
    running: &mut Running,
    plan: &ReplayPlan,
    loadgen: &Path,
    out: &Path,
    fill: &Fill<'_>,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Vec<Row> {
    let labels = ["compacted cold", "compacted warm"];
    let failed_all = |reason: String| -> Vec<Row> {
        labels
            .iter()
            .map(|phase| {
                Row::without_numbers(
                    &format!("{name} {phase}"),
                    Status::Failed(reason.clone()),
                    settings.clone(),
                )
            })
            .collect()
    };
    let log_filter = format!(
        "{},{HOUSEKEEPING_DEBUG}",
        std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".to_owned())
    );
    let agent_env: Vec<(&str, String)> = COMPACTING_ENV
        .iter()
        .map(|(key, value)| (*key, (*value).to_owned()))
        .chain([("SLUICE_LOG", log_filter)])
        .collect();
    for (key, value) in &agent_env {
        running.launch = running.launch.clone().env(key, value.as_str());
    }
    let log_from = std::fs::metadata(&running.launch.log).map_or(0, |meta| meta.len());
    eprintln!("sluice-bench: {name}: restarting the agent to compact the topic");
    let started = Instant::now();
    if let Err(error) = running.restart() {
        return failed_all(format!("agent did not restart to compact: {error:#}"));
    }
    let entries_max = compacted_entries_max(plan);
    let limit = Duration::from_secs(u64::from(plan.replay_timeout_s));
    let (settled, progress) = loop {
        let log = std::fs::read(&running.launch.log).unwrap_or_default();
        let since = log
            .get(usize::try_from(log_from).unwrap_or(0)..)
            .unwrap_or_default();
        let progress = CompactionProgress::parse(&String::from_utf8_lossy(since));
        if let Some(entries) = progress.settled(entries_max)
            && fill.ended.elapsed() >= settle_not_before()
        {
            break (entries, progress);
        }
        if started.elapsed() > limit {
            return failed_all(format!(
                "the topic was not compacted within {} s: {} jobs, index entries by round {:?} \
                 (at most {entries_max} expected)",
                limit.as_secs(),
                progress.jobs,
                progress.rounds.iter().rev().take(10).collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let compact_s = started.elapsed().as_secs_f64();
    eprintln!(
        "sluice-bench: {name}: compacted in {compact_s:.1} s: {} jobs, {} bytes, {settled} index \
         entries; restarting for a cold read",
        progress.jobs, progress.bytes_compacted
    );
    let mut settings = settings.clone();
    settings.insert(
        "compaction".into(),
        serde_json::json!({
            "agent_env": agent_env.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>(),
            "seconds_to_settle": (compact_s * 10.0).round() / 10.0,
            "jobs_after_restart": progress.jobs,
            "bytes_compacted_after_restart": progress.bytes_compacted,
            "index_entries": settled,
            "index_entries_max": entries_max,
        }),
    );
    if let Err(error) = running.restart() {
        return failed_all(format!("agent did not restart after compaction: {error:#}"));
    }
    labels
        .iter()
        .map(|phase| {
            read(
                name,
                phase,
                running,
                plan,
                loadgen,
                out,
                fill.summary,
                &settings,
            )
        })
        .collect()
}

/// One read of the whole topic, as a row.
#[expect(
    clippy::too_many_arguments,
    reason = "one caller; the read's whole context"
)]
fn read(
    name: &str,
    phase: &str,
    running: &Running,
    plan: &ReplayPlan,
    loadgen: &Path,
    out: &Path,
    fill_summary: &serde_json::Value,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Row {
    let label = format!("{name} {phase}");
    let run_dir = out.join(format!("{name}-replay-{}", phase.replace(' ', "-")));
    let args = plan.replay_args(&running.bootstrap, TOPIC, &run_dir.to_string_lossy());
    let limit = Duration::from_secs(plan.replay_limit_s());
    let row = match runner::run_measured(running, &args, loadgen, &run_dir, limit) {
        Ok(measured) => {
            let mut row =
                report::build_replay_row(&label, phase, settings.clone(), &measured, fill_summary);
            row.store_note.clone_from(&running.store_note);
            row
        }
        Err(error) => Row::without_numbers(
            &label,
            Status::Failed(format!("{error:#}")),
            settings.clone(),
        ),
    };
    eprintln!(
        "sluice-bench: {label}: {:.1} MB/s, verified {:?}",
        row.mb_per_sec.unwrap_or(0.0),
        row.replay.as_ref().map(|replay| replay.verified)
    );
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUND: &str = "2026-12-05T10:00:00.1Z DEBUG sluice_server::metadata_core::housekeeping: \
                         housekeeping: nothing to do waiting=0 entries_listed=9 \
                         checkpoints_listed=1 index_entries=";
    const JOB: &str = "2026-12-05T10:00:00.2Z  INFO sluice_server::metadata_core::housekeeping: \
                       compaction job inputs=500 partitions=1 bytes=33000000 objects_read=500";

    fn log(lines: &[String]) -> String {
        lines.join("\n")
    }

    #[test]
    fn compaction_is_settled_only_after_rounds_without_jobs_at_a_low_count() {
        let round = |entries: u64| format!("{ROUND}{entries}");
        let mut lines = vec![round(40_000), JOB.to_owned(), round(30_000), JOB.to_owned()];
        let busy = CompactionProgress::parse(&log(&lines));
        assert_eq!((busy.jobs, busy.bytes_compacted), (2, 66_000_000));
        assert_eq!(busy.settled(500), None);
        lines.extend([round(300), round(300)]);
        assert_eq!(
            CompactionProgress::parse(&log(&lines)).settled(500),
            None,
            "two rounds"
        );
        lines.push(round(300));
        assert_eq!(
            CompactionProgress::parse(&log(&lines)).settled(500),
            Some(300)
        );
        assert_eq!(
            CompactionProgress::parse(&log(&lines)).settled(299),
            None,
            "too many entries"
        );
        // A job after the first of the rounds: not settled yet.
        lines.insert(lines.len() - 1, JOB.to_owned());
        assert_eq!(CompactionProgress::parse(&log(&lines)).settled(500), None);
        // Coloured output parses the same.
        let coloured = format!("\u{1b}[2m{}\u{1b}[0m", round(7));
        assert_eq!(CompactionProgress::parse(&coloured).rounds, vec![7]);
    }

    #[test]
    fn the_compacted_bound_follows_the_fill() {
        // Quick: 3.2 MB per partition, one merged entry of it (+3) per partition.
        assert_eq!(compacted_entries_max(&ReplayPlan::new(true)), 64 * 4 + 64);
        // Full: 80 MB per partition, at least 16 MiB per merged entry.
        assert_eq!(compacted_entries_max(&ReplayPlan::new(false)), 64 * 8 + 64);
    }
}
