//! The soak's report: `report.json` (every sample, verdict and restart), `report.md`, and one
//! SVG over time per quantity. Rendering is pure; `write` does the file I/O.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::parse::LogOpenLine;
use super::sample::Sample;
use super::verdict::{Verdict, figure, judge_with_period};
use super::{Plan, Restart, Stop};
use crate::plot_time::{Line, over_time};
use crate::report::{Row, Status};

const MIB: f64 = 1_048_576.0;
const MB: f64 = 1e6;
/// Recovery times within this ratio of each other, or this close, are "not growing".
const RECOVERY_RATIO_MAX: f64 = 1.10;
const RECOVERY_SLACK_S: f64 = 0.1;
/// Issue 13's goal for a restart: serving within a second.
const RECOVERY_SERVING_MAX_S: f64 = 1.0;

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub scenario: String,
    pub quick: bool,
    pub command: String,
    pub started_at_unix_ms: u64,
    pub machine: String,
    pub settings: Map<String, Value>,
    pub targets: Vec<SoakTarget>,
}

/// One target's soak.
#[derive(Clone, Debug, Serialize)]
pub struct SoakTarget {
    pub target: String,
    pub status: Status,
    pub settings: Map<String, Value>,
    /// The two load-generator runs (before and after the mid-run restart).
    pub rows: Vec<Row>,
    pub samples: Vec<Sample>,
    pub verdicts: Vec<Verdict>,
    pub recoveries: Vec<Recovery>,
    /// Whether recovery grew from the mid-run restart to the final one.
    pub recovery_finding: Option<String>,
    pub notes: Vec<String>,
}

/// One restart on the same bucket, with the state it recovered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Recovery {
    /// The restart's name in the plan (`mid-run`, `end`).
    pub kind: String,
    /// How the agent was stopped (`SIGTERM`, a clean stop, or `SIGKILL`, a crash).
    pub stop: Stop,
    /// Run seconds when the agent was stopped.
    pub at_s: f64,
    pub index_entries: Option<u64>,
    pub bucket_objects: u64,
    pub bucket_bytes: u64,
    pub newest_checkpoint_bytes: Option<u64>,
    pub rss_before_bytes: Option<u64>,
    /// The signal ([`Recovery::stop`]) until the process exited.
    pub stop_s: f64,
    /// Process start until the "metadata log open" line: the line's own timestamp against the
    /// wall clock just before the process was spawned.
    pub log_open_s: Option<f64>,
    /// Process start until a Metadata request named a leader for every partition of the topic.
    pub serving_s: Option<f64>,
    pub log_open: Option<LogOpenLine>,
    pub rss_after_bytes: Option<u64>,
    pub error: Option<String>,
}

impl Recovery {
    /// A restart about to happen, with the state the last sample saw.
    pub fn before(restart: Restart, sample: &Sample) -> Recovery {
        Recovery {
            kind: restart.name.to_owned(),
            stop: restart.stop,
            at_s: sample.t_s,
            index_entries: sample.index_entries,
            bucket_objects: sample.bucket_objects(),
            bucket_bytes: sample.bucket_bytes(),
            newest_checkpoint_bytes: sample.newest_checkpoint_bytes,
            rss_before_bytes: sample.rss_bytes,
            ..Recovery::default()
        }
    }
}

/// A quantity sampled over time: its name, unit, plot file and how to read it from a sample.
struct Series {
    name: &'static str,
    unit: &'static str,
    value: fn(&Sample) -> Option<f64>,
    /// The smallest difference that means something (see `verdict::judge`).
    resolution: f64,
}

#[expect(
    clippy::cast_precision_loss,
    reason = "sizes and counts far below 2^52"
)]
fn as_f64(value: u64) -> f64 {
    value as f64
}

const RSS: Series = Series {
    name: "agent RSS",
    unit: "MiB",
    value: |s| s.rss_bytes.map(|bytes| as_f64(bytes) / MIB),
    resolution: 0.0,
};
const INDEX_ENTRIES: Series = Series {
    name: "index entries",
    unit: "entries",
    value: |s| s.index_entries.map(as_f64),
    resolution: 0.0,
};
const LOG_OBJECTS: Series = Series {
    name: "log/ objects",
    unit: "objects",
    value: |s| Some(as_f64(s.log_objects)),
    resolution: 1.0,
};
const COMPACTED_OBJECTS: Series = Series {
    name: "compacted/ objects",
    unit: "objects",
    value: |s| Some(as_f64(s.compacted_objects)),
    resolution: 1.0,
};
const BUCKET_OBJECTS: Series = Series {
    name: "bucket objects",
    unit: "objects",
    value: |s| Some(as_f64(s.bucket_objects())),
    resolution: 1.0,
};
const COMPACTED_BYTES: Series = Series {
    name: "compacted/ bytes",
    unit: "MB",
    value: |s| Some(as_f64(s.compacted_bytes) / MB),
    resolution: 0.0,
};
const CHECKPOINT_OBJECTS: Series = Series {
    name: "checkpoint/ objects",
    unit: "objects",
    value: |s| Some(as_f64(s.checkpoint_objects)),
    resolution: 1.0,
};
const LOG_BYTES: Series = Series {
    name: "log/ bytes",
    unit: "MB",
    value: |s| Some(as_f64(s.log_bytes) / MB),
    resolution: 0.0,
};
const CHECKPOINT_BYTES: Series = Series {
    name: "checkpoint/ bytes",
    unit: "MB",
    value: |s| Some(as_f64(s.checkpoint_bytes) / MB),
    resolution: 0.0,
};
const BUCKET_BYTES: Series = Series {
    name: "bucket bytes",
    unit: "MB",
    value: |s| Some(as_f64(s.bucket_bytes()) / MB),
    resolution: 0.0,
};
const CHECKPOINT_SIZE: Series = Series {
    name: "newest checkpoint",
    unit: "kB",
    value: |s| s.newest_checkpoint_bytes.map(|bytes| as_f64(bytes) / 1e3),
    resolution: 0.0,
};
const CHECKPOINT_RATE: Series = Series {
    name: "checkpoint bytes written",
    unit: "kB/s",
    value: |s| s.checkpoint_bytes_per_sec.map(|rate| rate / 1e3),
    resolution: 0.0,
};
const ACKED: Series = Series {
    name: "records acknowledged",
    unit: "records/s",
    value: |s| s.acked_per_sec,
    resolution: 0.0,
};
const PRODUCE_P99: Series = Series {
    name: "produce P99",
    unit: "ms",
    value: |s| s.produce_p99_ms_max,
    resolution: 0.0,
};
const END_TO_END_P99: Series = Series {
    name: "end-to-end P99",
    unit: "ms",
    value: |s| s.end_to_end_p99_ms_max,
    resolution: 0.0,
};

/// The series judged for flatness, in report order.
const JUDGED: [&Series; 14] = [
    &RSS,
    &INDEX_ENTRIES,
    &BUCKET_OBJECTS,
    &LOG_OBJECTS,
    &COMPACTED_OBJECTS,
    &CHECKPOINT_OBJECTS,
    &BUCKET_BYTES,
    &LOG_BYTES,
    &COMPACTED_BYTES,
    &CHECKPOINT_SIZE,
    &CHECKPOINT_RATE,
    &ACKED,
    &PRODUCE_P99,
    &END_TO_END_P99,
];

/// The plots: file, title, y axis, series.
const PLOTS: [(&str, &str, &str, &[&Series]); 6] = [
    ("soak-rss.svg", "agent RSS", "MiB", &[&RSS]),
    (
        "soak-index-entries.svg",
        "index entries (sluice_index_entries gauge)",
        "entries",
        &[&INDEX_ENTRIES],
    ),
    (
        "soak-objects.svg",
        "objects in the bucket",
        "objects",
        &[
            &BUCKET_OBJECTS,
            &LOG_OBJECTS,
            &COMPACTED_OBJECTS,
            &CHECKPOINT_OBJECTS,
        ],
    ),
    (
        "soak-bucket-bytes.svg",
        "bytes in the bucket",
        "MB (10^6 bytes)",
        &[
            &BUCKET_BYTES,
            &LOG_BYTES,
            &COMPACTED_BYTES,
            &CHECKPOINT_BYTES,
        ],
    ),
    (
        "soak-checkpoint-bytes-per-sec.svg",
        "checkpoint bytes written per second",
        "kB/s",
        &[&CHECKPOINT_RATE],
    ),
    (
        "soak-p99.svg",
        "latency: highest per-second P99 in each sample",
        "ms",
        &[&PRODUCE_P99, &END_TO_END_P99],
    ),
];

fn points(samples: &[Sample], series: &Series) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|sample| (series.value)(sample).map(|value| (sample.t_s, value)))
        .collect()
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SoakTarget {
    pub fn new(target: &str, settings: Map<String, Value>) -> SoakTarget {
        SoakTarget {
            target: target.to_owned(),
            status: Status::Ran,
            settings,
            rows: Vec::new(),
            samples: Vec::new(),
            verdicts: Vec::new(),
            recoveries: Vec::new(),
            recovery_finding: None,
            notes: Vec::new(),
        }
    }

    /// Draws the verdicts and the recovery finding from the samples and restarts.
    pub fn finish(&mut self, plan: &Plan) {
        self.verdicts = JUDGED
            .iter()
            .map(|series| {
                judge_with_period(
                    series.name,
                    series.unit,
                    &points(&self.samples, series),
                    plan.verdict_from_s(),
                    series.resolution,
                    Some(plan.level_period_s()),
                )
            })
            .collect();
        self.recovery_finding = recovery_finding(&self.recoveries, plan.tail_entries_max());
    }
}

/// Compares the first and the last restart's time to serving. A restart's time has a part that
/// grows with the state (process start, reading and decoding the checkpoint, the cores' start)
/// and the replay of the log tail after the checkpoint, which the checkpoint policy bounds
/// whatever the run time and which a clean stop makes nothing (it writes a checkpoint): the
/// plan's clean mid-run stop and final crash differ in it by design. So the growth is judged on
/// start → serving less the replay, when the agent reports its replay time (older agents: on
/// the whole time, which then compares a clean stop with a crash). That bound is checked too: a
/// restart that replayed more than `tail_entries_max` entries counts as growing (a tail the
/// checkpoints no longer bound grows with run time). Any restart slower than the goal's second is
/// marked.
pub fn recovery_finding(recoveries: &[Recovery], tail_entries_max: u64) -> Option<String> {
    let (first, last) = (recoveries.first()?, recoveries.last()?);
    if recoveries.len() < 2 {
        return None;
    }
    let (a, b) = (first.serving_s?, last.serving_s?);
    let open = |recovery: &Recovery| recovery.log_open.clone().unwrap_or_default();
    let (first_open, last_open) = (open(first), open(last));
    let fixed = first_open
        .replay_s
        .zip(last_open.replay_s)
        .map(|(first_replay, last_replay)| (a - first_replay, b - last_replay));
    let (judged_a, judged_b) = fixed.unwrap_or((a, b));
    let tail_max_seen = recoveries
        .iter()
        .filter_map(|recovery| recovery.log_open.as_ref()?.entries_replayed)
        .max();
    let tail_over = tail_max_seen.is_some_and(|entries| entries > tail_entries_max);
    let growing = tail_over
        || (judged_b > judged_a * RECOVERY_RATIO_MAX && judged_b - judged_a > RECOVERY_SLACK_S);
    let replayed = |open: &LogOpenLine| {
        open.entries_replayed
            .map_or_else(|| "?".to_owned(), |count| count.to_string())
    };
    let verdict = if growing {
        "**growing** with run time"
    } else {
        "not growing with run time"
    };
    let mut finding = format!(
        "recovery (process start → serving) {} s after {} s of run and {} s after {} s ({} and {} \
         log entries replayed after the checkpoint)",
        seconds(a),
        figure(first.at_s),
        seconds(b),
        figure(last.at_s),
        replayed(&first_open),
        replayed(&last_open),
    );
    match (fixed, first_open.replay_s, last_open.replay_s) {
        (Some((fixed_a, fixed_b)), Some(replay_a), Some(replay_b)) => {
            let _ = write!(
                finding,
                "; less the tail's replay ({} s and {} s) {} s and {} s: {verdict}",
                seconds(replay_a),
                seconds(replay_b),
                seconds(fixed_a),
                seconds(fixed_b),
            );
        }
        _ => {
            let _ = write!(finding, ": {verdict}");
        }
    }
    if let (Some(load_a), Some(load_b)) =
        (first_open.checkpoint_load_s, last_open.checkpoint_load_s)
    {
        let kb = |open: &LogOpenLine| opt(open.checkpoint_bytes.map(|bytes| as_f64(bytes) / 1e3));
        let _ = write!(
            finding,
            "; checkpoint read and decoded: {} kB in {} s, {} kB in {} s",
            kb(&first_open),
            seconds(load_a),
            kb(&last_open),
            seconds(load_b),
        );
    }
    if let Some(entries) = tail_max_seen {
        let _ = write!(
            finding,
            "; the longest tail replayed, {entries} entries, is {} the checkpoint rule's bound \
             ({tail_entries_max})",
            if tail_over { "**above**" } else { "within" },
        );
    }
    let slow = recoveries
        .iter()
        .filter(|recovery| {
            recovery
                .serving_s
                .is_some_and(|serving| serving >= RECOVERY_SERVING_MAX_S)
        })
        .count();
    if slow > 0 {
        let _ = write!(
            finding,
            "; **{slow} restart(s) took {RECOVERY_SERVING_MAX_S} s or more** to serve"
        );
    }
    Some(finding)
}

/// Seconds to the millisecond: recovery's parts are tens of milliseconds.
fn seconds(value: f64) -> String {
    format!("{value:.3}")
}

/// Why the run fails: a target that did not run, a load run that lost or failed records, a
/// restart that did not come back.
pub fn failures(report: &SoakReport) -> Vec<String> {
    let mut failures = Vec::new();
    for target in &report.targets {
        if target.status != Status::Ran {
            failures.push(format!("{}: {:?}", target.target, target.status));
        }
        failures.extend(crate::report::row_failures(&target.rows));
        for recovery in &target.recoveries {
            if let Some(error) = &recovery.error {
                failures.push(format!(
                    "{}: {} restart: {error}",
                    target.target, recovery.kind
                ));
            }
        }
    }
    failures.dedup();
    failures
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), figure)
}

fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|bytes| as_f64(bytes) / MIB)
}

fn restarts_table(recoveries: &[Recovery]) -> String {
    let mut out = String::from(
        "| restart | at (s) | index entries | bucket objects | bucket MB | newest checkpoint kB \
         | stop (s) | start → log open (s) | start → serving (s) | from checkpoint, entries replayed \
         | checkpoint kB read: s | replay (s) | RSS before → after (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for recovery in recoveries {
        let open = recovery.log_open.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} → {} |",
            recovery.kind,
            figure(recovery.at_s),
            recovery
                .index_entries
                .map_or_else(|| "—".to_owned(), |count| count.to_string()),
            recovery.bucket_objects,
            figure(as_f64(recovery.bucket_bytes) / MB),
            opt(recovery
                .newest_checkpoint_bytes
                .map(|bytes| as_f64(bytes) / 1e3)),
            figure(recovery.stop_s),
            opt(recovery.log_open_s),
            recovery.serving_s.map_or_else(
                || format!("**{}**", recovery.error.as_deref().unwrap_or("—")),
                figure
            ),
            open.map_or_else(
                || "—".to_owned(),
                |open| format!(
                    "{}, {}",
                    open.checkpoint_seq
                        .map_or_else(|| "none".to_owned(), |seq| seq.to_string()),
                    open.entries_replayed
                        .map_or_else(|| "?".to_owned(), |count| count.to_string())
                )
            ),
            open.and_then(|open| open.checkpoint_load_s.map(|load| (open, load)))
                .map_or_else(
                    || "—".to_owned(),
                    |(open, load)| format!(
                        "{}: {}",
                        opt(open.checkpoint_bytes.map(|bytes| as_f64(bytes) / 1e3)),
                        seconds(load)
                    )
                ),
            open.and_then(|open| open.replay_s)
                .map_or_else(|| "—".to_owned(), seconds),
            opt(mib(recovery.rss_before_bytes)),
            opt(mib(recovery.rss_after_bytes)),
        );
    }
    out
}

/// At most about `rows_max` samples, evenly strided, the last one always included.
fn strided(samples: &[Sample], rows_max: usize) -> Vec<&Sample> {
    let stride = samples.len().div_ceil(rows_max.max(1)).max(1);
    let mut picked: Vec<&Sample> = samples.iter().step_by(stride).collect();
    if let Some(last) = samples.last()
        && picked
            .last()
            .is_none_or(|sample| !std::ptr::eq(*sample, last))
    {
        picked.push(last);
    }
    picked
}

fn samples_table(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| t (s) | agent run | RSS (MiB) | index entries | log/ objects | compacted/ objects \
         | checkpoint/ objects | bucket MB | newest checkpoint kB | checkpoint kB/s | records/s \
         | produce P99 (ms) | end-to-end P99 (ms) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for sample in strided(samples, 60) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            figure(sample.t_s),
            sample.agent_run,
            opt((RSS.value)(sample)),
            sample
                .index_entries
                .map_or_else(|| "—".to_owned(), |entries| entries.to_string()),
            sample.log_objects,
            sample.compacted_objects,
            sample.checkpoint_objects,
            opt((BUCKET_BYTES.value)(sample)),
            opt((CHECKPOINT_SIZE.value)(sample)),
            opt((CHECKPOINT_RATE.value)(sample)),
            opt(sample.acked_per_sec),
            opt(sample.produce_p99_ms_max),
            opt(sample.end_to_end_p99_ms_max),
        );
    }
    out
}

/// Renders the report as Markdown.
pub fn render(report: &SoakReport, plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# sluice-bench: scenario `soak`{}\n",
        if report.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Command: `{}`  \nMachine: {}\n",
        report.command, report.machine
    );
    let _ = writeln!(
        out,
        "The fraud load for {} s on a topic with `retention.ms` = {} ms, retention checked every {} ms, \
         unneeded objects deleted after {} ms; the agent restarted on the same bucket at about {} s \
         (between two load-generator runs) and at the end. Sampled every {} s. A series is **flat** \
         when, over the last half of the run (from {} s, after the first retention period), its \
         largest sample is within 10 % of its smallest.\n",
        plan.duration_s,
        plan.retention_ms,
        plan.retention_check_interval_ms,
        plan.segment_delete_delay_ms,
        plan.restart_at_s,
        plan.sample_interval.as_secs(),
        figure(plan.verdict_from_s()),
    );
    let rows: Vec<&Row> = report
        .targets
        .iter()
        .flat_map(|target| target.rows.iter())
        .collect();
    out.push_str(&crate::markdown::headline_table(&rows));
    let plots: Vec<&str> = PLOTS.iter().map(|(file, ..)| *file).collect();
    let _ = writeln!(out, "\nPlots: {}", plots.join(", "));
    for target in &report.targets {
        let _ = writeln!(out, "\n## {}\n", target.target);
        let status = match &target.status {
            Status::Ran => "ran".to_owned(),
            other => format!("**{other:?}**"),
        };
        let _ = writeln!(out, "Status: {status}\n");
        if !target.verdicts.is_empty() {
            out.push_str("| series | after the first retention period |\n|---|---|\n");
            for verdict in &target.verdicts {
                let _ = writeln!(out, "| {} | {} |", verdict.series, verdict.text);
            }
        }
        if !target.recoveries.is_empty() {
            out.push_str("\nRestarts on the same bucket:\n\n");
            out.push_str(&restarts_table(&target.recoveries));
        }
        if let Some(finding) = &target.recovery_finding {
            let _ = writeln!(out, "\n**{finding}**");
        }
        if !target.samples.is_empty() {
            out.push_str(
                "\nSamples (P99s: the highest per-second P99 the load generator printed since \
                 the previous sample, an upper bound of the sample window's P99):\n\n",
            );
            out.push_str(&samples_table(&target.samples));
        }
        for note in &target.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        let settings: Vec<String> = target
            .settings
            .iter()
            .map(|(key, value)| format!("`{key}={value}`"))
            .collect();
        let _ = writeln!(out, "\nSettings: {}", settings.join(", "));
    }
    out
}

/// The plots' SVG documents: (file name, document).
pub fn plots(report: &SoakReport, plan: &Plan) -> Vec<(String, String)> {
    let several = report.targets.len() > 1;
    PLOTS
        .iter()
        .map(|(file, title, y_axis, series)| {
            let mut lines = Vec::new();
            let mut markers = vec![
                (
                    as_f64(plan.retention_ms) / 1000.0,
                    "retention.ms".to_owned(),
                ),
                (plan.verdict_from_s(), "verdict window".to_owned()),
            ];
            for target in &report.targets {
                // Every restart but the last, which ends the run.
                let mid_run = target.recoveries.len().saturating_sub(1);
                for recovery in target.recoveries.iter().take(mid_run) {
                    markers.push((recovery.at_s, "restart".to_owned()));
                }
                for one in *series {
                    let label = match (several, series.len() > 1) {
                        (true, true) => format!("{}: {}", target.target, one.name),
                        (true, false) => target.target.clone(),
                        (false, _) => one.name.to_owned(),
                    };
                    lines.push(Line {
                        label,
                        points: points(&target.samples, one),
                    });
                }
            }
            let title = format!(
                "soak{}: {title}",
                if report.quick { " (quick)" } else { "" }
            );
            (
                (*file).to_owned(),
                over_time(&title, y_axis, &lines, &markers),
            )
        })
        .collect()
}

pub fn write(report: &SoakReport, plan: &Plan, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.md"), render(report, plan))?;
    for (file, svg) in plots(report, plan) {
        std::fs::write(out.join(file), svg)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
