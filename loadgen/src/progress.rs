//! The live progress line printed once per second on stderr.
//!
//! Percentiles on the line are of the last interval only, so a stall shows up the second it
//! happens instead of being averaged into the run so far. `behind` is how many due records the
//! producers have not yet handed to the client: a growing number means the generator or the
//! client queue cannot keep the rate.

use hdrhistogram::Histogram;

/// Counters and interval histograms at one tick.
#[derive(Debug)]
pub struct ProgressSnapshot<'a> {
    /// Seconds since the schedule's origin.
    pub elapsed_s: f64,
    /// Warm-up length in seconds (the line says `warmup` until it is over).
    pub warmup_s: u64,
    /// Records handed to the client so far.
    pub sent: u64,
    /// Records due so far by the schedule.
    pub due: u64,
    /// Records acknowledged so far.
    pub acked: u64,
    /// Records acknowledged in the previous snapshot.
    pub acked_before: u64,
    /// Seconds since the previous snapshot.
    pub interval_s: f64,
    /// Produce failures so far.
    pub errors: u64,
    /// Records of this run consumed so far.
    pub consumed: u64,
    /// Produce latency of the interval, µs.
    pub produce_interval: &'a Histogram<u64>,
    /// End-to-end latency of the interval, µs (`None` without consumers).
    pub end_to_end_interval: Option<&'a Histogram<u64>>,
}

/// One progress line, without a trailing newline.
pub fn format_line(snapshot: &ProgressSnapshot<'_>) -> String {
    let phase = if snapshot.elapsed_s < snapshot.warmup_s as f64 {
        "warmup"
    } else {
        "run"
    };
    let acked_per_sec = if snapshot.interval_s > 0.0 {
        snapshot.acked.saturating_sub(snapshot.acked_before) as f64 / snapshot.interval_s
    } else {
        0.0
    };
    let mut line = format!(
        "[{:>6.1}s {phase:<6}] sent {} acked {} ({acked_per_sec:.0}/s) behind {} err {} | produce {}",
        snapshot.elapsed_s,
        snapshot.sent,
        snapshot.acked,
        snapshot.due.saturating_sub(snapshot.sent),
        snapshot.errors,
        describe(snapshot.produce_interval),
    );
    if let Some(end_to_end) = snapshot.end_to_end_interval {
        line.push_str(&format!(
            " | consumed {} e2e {}",
            snapshot.consumed,
            describe(end_to_end)
        ));
    }
    line
}

fn describe(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return "-".to_owned();
    }
    format!(
        "p50 {} p99 {} max {}",
        milliseconds(histogram.value_at_quantile(0.5)),
        milliseconds(histogram.value_at_quantile(0.99)),
        milliseconds(histogram.max())
    )
}

fn milliseconds(latency_us: u64) -> String {
    format!("{:.2}ms", latency_us as f64 / 1_000.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::latency::new_histogram;

    #[test]
    fn line_shows_rate_backlog_and_interval_percentiles() {
        let mut produce = new_histogram();
        for latency_us in 1_000..=2_000 {
            produce.saturating_record(latency_us);
        }
        let end_to_end = new_histogram();
        let line = format_line(&ProgressSnapshot {
            elapsed_s: 12.0,
            warmup_s: 5,
            sent: 60_000,
            due: 60_010,
            acked: 59_000,
            acked_before: 54_000,
            interval_s: 1.0,
            errors: 0,
            consumed: 58_000,
            produce_interval: &produce,
            end_to_end_interval: Some(&end_to_end),
        });
        assert!(line.starts_with("[  12.0s run   ]"), "{line}");
        assert!(line.contains("acked 59000 (5000/s)"), "{line}");
        assert!(line.contains("behind 10"), "{line}");
        assert!(
            line.contains("produce p50 1.50ms p99 1.99ms max 2.00ms"),
            "{line}"
        );
        assert!(line.ends_with("consumed 58000 e2e -"), "{line}");
    }

    #[test]
    fn warmup_is_labelled_and_no_consumers_means_no_e2e() {
        let empty = new_histogram();
        let line = format_line(&ProgressSnapshot {
            elapsed_s: 1.0,
            warmup_s: 5,
            sent: 0,
            due: 0,
            acked: 0,
            acked_before: 0,
            interval_s: 0.0,
            errors: 0,
            consumed: 0,
            produce_interval: &empty,
            end_to_end_interval: None,
        });
        assert!(line.contains("warmup"), "{line}");
        assert!(!line.contains("e2e"), "{line}");
    }
}
