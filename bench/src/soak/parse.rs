//! Reading what the soak samples: `/proc/<pid>/status`, the agent's log lines (tracing's default
//! text format, colour codes stripped first) and the load generator's progress lines. Pure
//! functions of text, unit-tested in `parse_tests.rs`.

use serde::Serialize;

use crate::process::strip_ansi;

/// Resident set size in bytes from a `/proc/<pid>/status` text (`VmRSS:  123456 kB`).
pub fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line.trim_start_matches("VmRSS:").split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        Some("kB") => 1024,
        Some("mB") => 1024 * 1024,
        Some("B") | None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// The `key=value` fields of a tracing line whose value is an unsigned number.
fn number_field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
}

/// Unix seconds of a tracing line's leading UTC timestamp (`2026-12-05T04:44:38.674120Z`).
pub fn line_unix_s(line: &str) -> Option<f64> {
    let line = strip_ansi(line);
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.split(':');
    let hours: i64 = time.next()?.parse().ok()?;
    let minutes: i64 = time.next()?.parse().ok()?;
    let seconds: f64 = time.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(0..24).contains(&hours) {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's `days_from_civil`).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    #[expect(clippy::cast_precision_loss, reason = "seconds since 1970 fit in 2^52")]
    let whole = (days * 86_400 + hours * 3_600 + minutes * 60) as f64;
    Some(whole + seconds)
}

/// The message of both housekeeping lines; the one that did something is at INFO, the one that
/// did not at DEBUG (the soak turns DEBUG on for that module only, to see every round).
const HOUSEKEEPING_ACTED: &str = "housekeeping: retention and garbage collection";
const HOUSEKEEPING_IDLE: &str = "housekeeping: nothing to do";

/// One housekeeping round as the agent logged it
/// (`server/src/metadata_core/housekeeping.rs`). Fields only the INFO line carries are `None`
/// on the DEBUG one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HousekeepingLine {
    /// Index entries across every partition after the round's retention.
    pub index_entries: u64,
    pub entries_listed: u64,
    pub checkpoints_listed: u64,
    /// Objects the collector is waiting to delete (the delay has not passed).
    pub waiting: Option<u64>,
    pub partitions_trimmed: Option<u64>,
    pub entries_deleted: Option<u64>,
    /// Compacted objects deleted (replaced or orphaned; agents with object compaction).
    pub compacted_deleted: Option<u64>,
    pub checkpoints_deleted: Option<u64>,
    pub delete_errors: Option<u64>,
}

impl HousekeepingLine {
    pub fn parse(line: &str) -> Option<HousekeepingLine> {
        let line = strip_ansi(line);
        if !line.contains(HOUSEKEEPING_ACTED) && !line.contains(HOUSEKEEPING_IDLE) {
            return None;
        }
        let field = |key: &str| number_field(&line, key);
        Some(HousekeepingLine {
            index_entries: field("index_entries")?,
            entries_listed: field("entries_listed")?,
            checkpoints_listed: field("checkpoints_listed")?,
            waiting: field("waiting"),
            partitions_trimmed: field("partitions_trimmed"),
            entries_deleted: field("entries_deleted"),
            compacted_deleted: field("compacted_deleted"),
            checkpoints_deleted: field("checkpoints_deleted"),
            delete_errors: field("delete_errors"),
        })
    }
}

/// The agent's "metadata log open" line: what recovery did (`RecoveryStats`, Debug-printed).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LogOpenLine {
    /// The checkpoint recovery started from.
    pub checkpoint_seq: Option<u64>,
    /// Log entries read after it.
    pub entries_replayed: Option<u64>,
    /// Size of the checkpoint loaded.
    pub checkpoint_bytes: Option<u64>,
    /// Seconds to read and decode the checkpoint (agents since the stats carry it).
    pub checkpoint_load_s: Option<f64>,
    /// Seconds to list and replay the entries after it.
    pub replay_s: Option<f64>,
    /// The stats as printed, for the report.
    pub stats: String,
}

const LOG_OPEN: &str = "metadata log open";

impl LogOpenLine {
    pub fn parse(line: &str) -> Option<LogOpenLine> {
        let line = strip_ansi(line);
        let (_, after) = line.split_once(LOG_OPEN)?;
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return None;
        }
        let stats = after
            .trim()
            .trim_start_matches("stats=")
            .trim_matches('"')
            .to_owned();
        // `entries_replayed: 12,` and `checkpoint_seq: Some(LogSeq(1000)),` in Debug output.
        let debug_number = |key: &str| {
            let (_, rest) = stats.split_once(&format!("{key}: "))?;
            let digits: String = rest
                .trim_start_matches("Some(")
                .trim_start_matches("LogSeq(")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        // `checkpoint_load: 12.5ms,`: a `Duration` in Debug output.
        let debug_seconds = |key: &str| {
            let (_, rest) = stats.split_once(&format!("{key}: "))?;
            debug_duration_s(rest.split([',', ' ', '}']).next()?)
        };
        Some(LogOpenLine {
            checkpoint_seq: debug_number("checkpoint_seq"),
            entries_replayed: debug_number("entries_replayed"),
            checkpoint_bytes: debug_number("checkpoint_bytes"),
            checkpoint_load_s: debug_seconds("checkpoint_load"),
            replay_s: debug_seconds("replay"),
            stats,
        })
    }
}

/// Seconds of a `Duration` as its Debug output prints it (`1.5s`, `12.25ms`, `80µs`, `7ns`).
pub fn debug_duration_s(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" | "us" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(value * scale)
}

/// The agent's "compaction job" line (object compaction): the jobs done since it started.
pub fn compaction_jobs_done(line: &str) -> Option<u64> {
    let line = strip_ansi(line);
    line.contains("compaction job ")
        .then(|| number_field(&line, "jobs_done"))
        .flatten()
}

/// One of the load generator's once-a-second progress lines (`loadgen/src/progress.rs`):
/// percentiles of that second only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressLine {
    /// Seconds since the schedule's origin.
    pub elapsed_s: f64,
    /// After the warm-up (the measured window, and the drain after it).
    pub measured: bool,
    pub acked_per_sec: f64,
    pub produce_p99_ms: Option<f64>,
    pub end_to_end_p99_ms: Option<f64>,
}

impl ProgressLine {
    /// `[  12.0s run   ] sent 60000 acked 59000 (5000/s) behind 10 err 0 | produce p50 1.50ms
    /// p99 1.99ms max 2.00ms | consumed 58000 e2e p50 … p99 … max …` (`-` for an empty second).
    pub fn parse(line: &str) -> Option<ProgressLine> {
        let line = strip_ansi(line);
        let (head, rest) = line.trim().strip_prefix('[')?.split_once(']')?;
        let elapsed_s = head
            .split_whitespace()
            .next()?
            .strip_suffix('s')?
            .parse()
            .ok()?;
        let measured = match head.split_whitespace().nth(1)? {
            "run" => true,
            "warmup" => false,
            _ => return None,
        };
        let mut sections = rest.split(" | ");
        let counts = sections.next()?;
        let acked_per_sec = counts
            .split_once('(')?
            .1
            .split_once("/s)")?
            .0
            .parse()
            .ok()?;
        let mut produce_p99_ms = None;
        let mut end_to_end_p99_ms = None;
        for section in sections {
            let p99 = p99_ms(section);
            if section.starts_with("produce") {
                produce_p99_ms = p99;
            } else if section.starts_with("consumed") {
                end_to_end_p99_ms = p99;
            }
        }
        Some(ProgressLine {
            elapsed_s,
            measured,
            acked_per_sec,
            produce_p99_ms,
            end_to_end_p99_ms,
        })
    }
}

/// The value after `p99` in a section (`p99 1.99ms`), in ms.
fn p99_ms(section: &str) -> Option<f64> {
    let mut words = section.split_whitespace();
    words.find(|word| *word == "p99")?;
    words.next()?.strip_suffix("ms")?.parse().ok()
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

/// The metrics endpoint an "agent listening" line names (`metrics_addr=Some(127.0.0.1:9644)`);
/// `None` for any other line, or an agent without an endpoint.
pub fn metrics_addr(line: &str) -> Option<std::net::SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains("agent listening") {
        return None;
    }
    let (_, rest) = line.split_once("metrics_addr=Some(")?;
    let (address, _) = rest.split_once(')')?;
    address.parse().ok()
}
