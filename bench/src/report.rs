//! Report rows: built from one load-generator run plus what the harness measured around it.
//!
//! Everything here is pure (no I/O) so it is unit-tested. Denominators: "per GB" divides by the
//! value bytes the brokers acknowledged over the whole load-generator run (warm-up included, since
//! the PUTs and CPU seconds are counted over the same span), GB = 10^9 bytes; "per second" divides
//! by that run's wall time.

use serde::Serialize;
use serde_json::Value;

use crate::hgrm::Point;
use crate::proxy::CountSnapshot;

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub count: u64,
}

/// Object-store traffic during the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StoreRates {
    pub counts: CountSnapshot,
    pub puts_per_sec: f64,
    pub gets_per_sec: f64,
    pub puts_per_gb: f64,
    pub gets_per_gb: f64,
}

/// Whether a target produced numbers; a row that did not says why, never disappears.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Ran,
    NotInstalled(String),
    Failed(String),
    NotImplemented(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub target: String,
    pub status: Status,
    /// Every setting used (scenario, broker, store, latency profile).
    pub settings: serde_json::Map<String, Value>,
    pub records_per_sec: Option<f64>,
    pub mb_per_sec: Option<f64>,
    pub produce: Option<Latency>,
    pub end_to_end: Option<Latency>,
    /// Why `end_to_end` is missing, or a caveat on it.
    pub end_to_end_note: Option<String>,
    /// `None` where the store is not behind the harness's proxy (Kafka: local disk).
    pub store: Option<StoreRates>,
    pub store_note: Option<String>,
    pub cpu_seconds_per_gb: Option<f64>,
    pub errors: u64,
    /// Records acknowledged in the measured window but never consumed back (`None`: no
    /// consumer).
    pub missing_records: Option<u64>,
    /// `replay` scenario rows only: what the read found.
    pub replay: Option<ReplayStats>,
    /// How late the load generator itself handed records to the client (p99, max): large values
    /// mean the machine, not the broker, set the tail.
    pub send_lag_p99_ms: Option<f64>,
    pub send_lag_max_ms: Option<f64>,
    /// Ladder steps only: whether the step kept its rate with produce P99 under 1 s.
    pub held: Option<bool>,
    /// Ladder steps only: the step's topic deleted afterwards, and the target's bytes on disk.
    pub cleanup: Option<crate::step_cleanup::StepCleanup>,
    #[serde(skip)]
    pub produce_curve: Vec<Point>,
    #[serde(skip)]
    pub end_to_end_curve: Vec<Point>,
}

impl Row {
    /// A row for a target that produced no numbers.
    pub fn without_numbers(
        target: &str,
        status: Status,
        settings: serde_json::Map<String, Value>,
    ) -> Row {
        Row {
            target: target.to_owned(),
            status,
            settings,
            records_per_sec: None,
            mb_per_sec: None,
            produce: None,
            end_to_end: None,
            end_to_end_note: None,
            store: None,
            store_note: None,
            cpu_seconds_per_gb: None,
            errors: 0,
            missing_records: None,
            replay: None,
            send_lag_p99_ms: None,
            send_lag_max_ms: None,
            held: None,
            cleanup: None,
            produce_curve: Vec::new(),
            end_to_end_curve: Vec::new(),
        }
    }
}

/// What the harness measured around one load-generator run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The loadgen's `summary.json`.
    pub summary: Value,
    pub wall_s: f64,
    /// Broker process CPU (user + system) during the run.
    pub cpu_s: Option<f64>,
    pub store: Option<CountSnapshot>,
    pub produce_curve: Vec<Point>,
    pub end_to_end_curve: Vec<Point>,
}

fn number(value: &Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(Value::as_f64)
}

fn latency(summary: &Value, section: &str) -> Option<Latency> {
    let at = |field: &str| number(summary, &format!("/{section}/latency_us/{field}"));
    let count = summary
        .pointer(&format!("/{section}/latency_us/count"))
        .and_then(Value::as_u64)?;
    if count == 0 {
        return None;
    }
    Some(Latency {
        p50_ms: at("p50")? / 1000.0,
        p99_ms: at("p99")? / 1000.0,
        p999_ms: at("p999")? / 1000.0,
        max_ms: at("max")? / 1000.0,
        count,
    })
}

/// Samples in a section's latency histogram (0 if absent).
pub fn latency_count(summary: &Value, section: &str) -> u64 {
    summary
        .pointer(&format!("/{section}/latency_us/count"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

const BYTES_PER_GB: f64 = 1e9;

/// Builds the row of a target that ran.
pub fn build_row(
    target: &str,
    settings: serde_json::Map<String, Value>,
    measured: Measured,
) -> Row {
    let summary = &measured.summary;
    let record_bytes = number(summary, "/settings/record_bytes").unwrap_or(0.0);
    let acked = number(summary, "/produce/acked_records").unwrap_or(0.0);
    let gb = acked * record_bytes / BYTES_PER_GB;
    let per_gb = |count: f64| (gb > 0.0).then(|| count / gb);
    let per_sec = |count: f64| {
        if measured.wall_s > 0.0 {
            count / measured.wall_s
        } else {
            0.0
        }
    };
    #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
    let store = measured.store.map(|counts| StoreRates {
        counts,
        puts_per_sec: per_sec(counts.puts as f64),
        gets_per_sec: per_sec(counts.gets as f64),
        puts_per_gb: per_gb(counts.puts as f64).unwrap_or(0.0),
        gets_per_gb: per_gb(counts.gets as f64).unwrap_or(0.0),
    });
    let end_to_end = latency(summary, "end_to_end");
    let consumers = number(summary, "/settings/consumers").unwrap_or(1.0);
    let end_to_end_note = match end_to_end {
        Some(_) => None,
        None if consumers == 0.0 => Some("not measured: no consumer in this scenario".to_owned()),
        None => Some(format!(
            "unavailable: no record consumed back ({} consume errors)",
            number(summary, "/end_to_end/error_count").unwrap_or(0.0)
        )),
    };
    let errors = [
        "/produce/error_records",
        "/produce/unacked_records",
        "/produce/unsent_records",
    ]
    .iter()
    .filter_map(|pointer| summary.pointer(pointer).and_then(Value::as_u64))
    .sum();
    Row {
        target: target.to_owned(),
        status: Status::Ran,
        settings,
        records_per_sec: number(summary, "/produce/achieved_records_per_sec"),
        mb_per_sec: number(summary, "/produce/achieved_mb_per_sec"),
        produce: latency(summary, "produce"),
        end_to_end,
        end_to_end_note,
        store,
        store_note: None,
        cpu_seconds_per_gb: measured.cpu_s.and_then(per_gb),
        errors,
        missing_records: (consumers > 0.0)
            .then(|| {
                summary
                    .pointer("/end_to_end/missing_records")
                    .and_then(Value::as_u64)
            })
            .flatten(),
        replay: None,
        send_lag_p99_ms: number(summary, "/produce/send_lag_us/p99").map(|us| us / 1000.0),
        send_lag_max_ms: number(summary, "/produce/send_lag_us/max").map(|us| us / 1000.0),
        held: None,
        cleanup: None,
        produce_curve: measured.produce_curve,
        end_to_end_curve: measured.end_to_end_curve,
    }
}

/// One read of the `replay` scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayStats {
    /// `after fill` (before any restart), `cold` (first read after a broker restart) or `warm`
    /// (the same read again).
    pub phase: String,
    pub records_expected: u64,
    pub records_read: u64,
    pub records_missing: u64,
    pub offset_gaps: u64,
    pub value_bytes_read: u64,
    pub time_to_first_record_ms: Option<f64>,
    pub elapsed_s: f64,
    /// Records the fill acknowledged, and how many distinct ones of its sequence numbers the
    /// read found (must be at least the acknowledged count).
    pub fill_acked_records: u64,
    pub fill_sequences_found: u64,
    /// Every expected record read once, nothing acknowledged missing.
    pub verified: bool,
    /// Why not, when not verified.
    pub verification_note: Option<String>,
}

/// Builds the row of one replay read. `summary` is the load generator's replay `summary.json`,
/// `fill` the fill's (produce) summary; store requests per second divide by the reading time,
/// per GB by the value bytes read.
pub fn build_replay_row(
    target: &str,
    phase: &str,
    settings: serde_json::Map<String, Value>,
    measured: &Measured,
    fill: &Value,
) -> Row {
    let summary = &measured.summary;
    let count = |pointer: &str| {
        summary
            .pointer(&format!("/replay/{pointer}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let elapsed_s = number(summary, "/replay/elapsed_s").unwrap_or(0.0);
    let value_bytes_read = count("value_bytes_read");
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let gb = value_bytes_read as f64 / BYTES_PER_GB;
    let seconds = if elapsed_s > 0.0 {
        elapsed_s
    } else {
        measured.wall_s
    };
    let per_sec = |count: f64| if seconds > 0.0 { count / seconds } else { 0.0 };
    let per_gb = |count: f64| (gb > 0.0).then(|| count / gb);
    #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
    let store = measured.store.map(|counts| StoreRates {
        counts,
        puts_per_sec: per_sec(counts.puts as f64),
        gets_per_sec: per_sec(counts.gets as f64),
        puts_per_gb: per_gb(counts.puts as f64).unwrap_or(0.0),
        gets_per_gb: per_gb(counts.gets as f64).unwrap_or(0.0),
    });
    let fill_run = fill
        .get("run_id")
        .and_then(Value::as_u64)
        .map(|id| format!("{id:08x}"));
    let fill_acked_records = fill
        .pointer("/produce/acked_records")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let fill_sequences_found = summary
        .pointer("/replay/runs")
        .and_then(Value::as_array)
        .and_then(|runs| {
            runs.iter()
                .find(|run| run.get("run_id").and_then(Value::as_str) == fill_run.as_deref())
        })
        .and_then(|run| run.get("distinct_sequences").and_then(Value::as_u64))
        .unwrap_or(0);
    let complete = summary
        .pointer("/replay/complete")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let replay = ReplayStats {
        phase: phase.to_owned(),
        records_expected: count("records_expected"),
        records_read: count("records_read"),
        records_missing: count("records_missing"),
        offset_gaps: count("offset_gaps"),
        value_bytes_read,
        time_to_first_record_ms: number(summary, "/replay/time_to_first_record_ms"),
        elapsed_s,
        fill_acked_records,
        fill_sequences_found,
        verified: false,
        verification_note: None,
    };
    let note = if !complete {
        Some(format!(
            "incomplete: read {} of {} records ({} offsets skipped{})",
            replay.records_read,
            replay.records_expected,
            replay.offset_gaps,
            if summary.pointer("/replay/timed_out") == Some(&Value::Bool(true)) {
                ", timed out"
            } else {
                ""
            }
        ))
    } else if fill_sequences_found < fill_acked_records {
        Some(format!(
            "the fill acknowledged {fill_acked_records} records, the read found {fill_sequences_found} of them"
        ))
    } else {
        None
    };
    let replay = ReplayStats {
        verified: note.is_none(),
        verification_note: note,
        ..replay
    };
    let mut row = Row::without_numbers(target, Status::Ran, settings);
    row.records_per_sec = number(summary, "/replay/records_per_sec");
    row.mb_per_sec = number(summary, "/replay/mb_per_sec");
    row.store = store;
    row.cpu_seconds_per_gb = measured.cpu_s.and_then(per_gb);
    row.replay = Some(replay);
    row
}

/// Why the run should fail: targets that did not run, records lost or never acknowledged, reads
/// that were not verified. The step that ended a ladder is expected to fall short and is not a
/// failure; a step that held is.
pub fn failures(report: &Report) -> Vec<String> {
    row_failures(&report.rows)
}

/// [`failures`] of a list of rows (the `soak` scenario has its own report around them).
pub fn row_failures(rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if row.status != Status::Ran {
            failures.push(format!("{}: {:?}", row.target, row.status));
            continue;
        }
        if row.held == Some(false) {
            continue;
        }
        if row.errors > 0 {
            failures.push(format!(
                "{}: {} records failed, were not acknowledged or not sent",
                row.target, row.errors
            ));
        }
        if let Some(missing) = row.missing_records.filter(|missing| *missing > 0) {
            failures.push(format!(
                "{}: {missing} acknowledged records never consumed",
                row.target
            ));
        }
        if let Some(replay) = row.replay.as_ref().filter(|replay| !replay.verified) {
            failures.push(format!(
                "{} ({}): {}",
                row.target,
                replay.phase,
                replay
                    .verification_note
                    .as_deref()
                    .unwrap_or("not verified")
            ));
        }
    }
    failures
}

/// For a ladder: the highest step that held, and whether the ladder ran out before a step failed
/// (then the true limit is higher than measured). `None` when the rows are not a ladder.
pub fn sustained_finding(target: &str, rows: &[Row]) -> Option<String> {
    let steps: Vec<&Row> = rows.iter().filter(|row| row.held.is_some()).collect();
    let last = steps.last()?;
    let best = steps
        .iter()
        .filter(|row| row.held == Some(true))
        .filter_map(|row| row.mb_per_sec)
        .fold(None, |best: Option<f64>, rate| {
            Some(best.map_or(rate, |b| b.max(rate)))
        });
    let ending = if last.held == Some(true) {
        "every step held: the limit is above the ladder's top".to_owned()
    } else {
        format!("the next step ({}) did not", last.target)
    };
    Some(match best {
        Some(rate) => format!(
            "{target}: highest sustained {rate:.2} MB/s with produce P99 under 1 s; {ending}"
        ),
        None => format!("{target}: no step held (P99 under 1 s at 90 % of the target rate)"),
    })
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub quick: bool,
    pub command: String,
    pub started_at_unix_ms: u64,
    pub machine: String,
    /// Conclusions drawn across rows (the highest sustained rate of a ladder).
    pub findings: Vec<String>,
    pub rows: Vec<Row>,
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
