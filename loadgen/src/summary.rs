//! The run's `summary.json`: settings, counts, achieved rate and latency percentiles.
//!
//! Only records whose *intended* time falls in the measured window (after the warm-up) count
//! towards rates and percentiles. The achieved rate divides by the window's length or, when the
//! broker could not keep up, by the time until the window's last record was acknowledged — so a
//! broker that acknowledges a 20-second window's records over 40 seconds shows half the rate.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::options::{BYTES_PER_MB, Settings};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest sample.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of a histogram (all zero if it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self {
                count: 0,
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
            };
        }
        Self {
            count: histogram.len(),
            min: histogram.min(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            // The highest value equivalent to the largest sample, as HdrHistogram reports it.
            max: histogram.max(),
        }
    }
}

/// What the producers counted over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceCounts {
    /// Records the schedule held (warm-up and measured).
    pub intended: u64,
    /// Records handed to the client.
    pub sent: u64,
    /// Records acknowledged (warm-up and measured).
    pub acked: u64,
    /// Records acknowledged whose intended time is in the measured window.
    pub measured_acked: u64,
    /// Records that failed, by error kind (failures are never retried by this tool).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Records the schedule held that were never handed to the client before the drain limit.
    pub unsent: u64,
    /// Records handed to the client whose acknowledgement never came before the drain limit.
    pub unacked: u64,
    /// Nanoseconds from the measured window's start to the last measured acknowledgement.
    pub last_measured_ack_offset_ns: u64,
}

impl ProduceCounts {
    /// Failed records over all kinds.
    pub fn errors(&self) -> u64 {
        self.errors_by_kind.values().sum()
    }
}

/// What the consumers counted over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumeCounts {
    /// Records of this run consumed (warm-up and measured).
    pub consumed: u64,
    /// Records of this run consumed whose intended time is in the measured window.
    pub measured_consumed: u64,
    /// Well-formed loadgen records of another run (another process on the same topic).
    pub foreign: u64,
    /// Values that are not loadgen records at all.
    pub undecodable: u64,
    /// Consumer errors reported by the client.
    pub errors: u64,
}

/// Everything [`Summary::build`] needs.
#[derive(Debug)]
pub struct SummaryInput<'a> {
    /// The run's settings.
    pub settings: &'a Settings,
    /// The run's id, carried in every record.
    pub run_id: u32,
    /// Wall-clock start of the run's schedule, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Producer counts.
    pub produce: &'a ProduceCounts,
    /// Consumer counts.
    pub consume: &'a ConsumeCounts,
    /// Measured produce latency, µs.
    pub produce_latency: &'a Histogram<u64>,
    /// Measured end-to-end latency, µs.
    pub end_to_end_latency: &'a Histogram<u64>,
    /// How late the generator itself handed measured records to the client, µs.
    pub send_lag: &'a Histogram<u64>,
    /// Length of the measured window: the configured duration, or less if interrupted.
    pub measured_window_ns: u64,
    /// True if the run was interrupted before its schedule ended.
    pub interrupted: bool,
}

/// The JSON document written to `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always "sluice-loadgen".
    pub tool: &'static str,
    /// This crate's version.
    pub version: &'static str,
    /// The run's id.
    pub run_id: u32,
    /// Wall-clock start of the schedule, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// True if interrupted (Ctrl-C) before the schedule ended: the window is then shorter.
    pub interrupted: bool,
    /// The run's settings.
    pub settings: Settings,
    /// Producer results.
    pub produce: ProduceSummary,
    /// End-to-end results (empty when `consumers` is 0).
    pub end_to_end: EndToEndSummary,
}

/// Producer results.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceSummary {
    /// Records the schedule held, warm-up included.
    pub intended_records: u64,
    /// Records handed to the client.
    pub sent_records: u64,
    /// Records acknowledged, warm-up included.
    pub acked_records: u64,
    /// Records acknowledged in the measured window.
    pub measured_records: u64,
    /// Records that failed.
    pub error_records: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Records never sent before the drain limit.
    pub unsent_records: u64,
    /// Records sent but never acknowledged before the drain limit.
    pub unacked_records: u64,
    /// Seconds over which the measured records were acknowledged (at least the window).
    pub measured_elapsed_s: f64,
    /// Measured records per second acknowledged.
    pub achieved_records_per_sec: f64,
    /// Measured MB (1,048,576 bytes) of values per second acknowledged.
    pub achieved_mb_per_sec: f64,
    /// Acknowledgement time minus intended send time, µs.
    pub latency_us: Percentiles,
    /// Hand-off to the client minus intended send time, µs: the generator's own lateness. If
    /// this is large the generator, not the broker, was the bottleneck.
    pub send_lag_us: Percentiles,
}

/// End-to-end results.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndSummary {
    /// Records of this run consumed, warm-up included.
    pub consumed_records: u64,
    /// Measured records consumed.
    pub measured_records: u64,
    /// Measured records acknowledged but never consumed before the drain limit.
    pub missing_records: u64,
    /// Records of other runs seen on the topic.
    pub foreign_records: u64,
    /// Values that were not loadgen records.
    pub undecodable_records: u64,
    /// Consumer errors.
    pub error_count: u64,
    /// Consume time minus intended send time, µs.
    pub latency_us: Percentiles,
}

impl Summary {
    /// Builds the summary; pure.
    pub fn build(input: &SummaryInput<'_>) -> Self {
        let settings = input.settings;
        let elapsed_ns = input
            .measured_window_ns
            .max(input.produce.last_measured_ack_offset_ns);
        let measured_elapsed_s = elapsed_ns as f64 / 1e9;
        let measured = input.produce.measured_acked;
        let achieved_records_per_sec = if measured_elapsed_s > 0.0 {
            measured as f64 / measured_elapsed_s
        } else {
            0.0
        };
        let produce = ProduceSummary {
            intended_records: input.produce.intended,
            sent_records: input.produce.sent,
            acked_records: input.produce.acked,
            measured_records: measured,
            error_records: input.produce.errors(),
            errors_by_kind: input.produce.errors_by_kind.clone(),
            unsent_records: input.produce.unsent,
            unacked_records: input.produce.unacked,
            measured_elapsed_s,
            achieved_records_per_sec,
            achieved_mb_per_sec: achieved_records_per_sec * settings.record_bytes as f64
                / BYTES_PER_MB,
            latency_us: Percentiles::of(input.produce_latency),
            send_lag_us: Percentiles::of(input.send_lag),
        };
        let end_to_end = EndToEndSummary {
            consumed_records: input.consume.consumed,
            measured_records: input.consume.measured_consumed,
            missing_records: if settings.consumers == 0 {
                0
            } else {
                measured.saturating_sub(input.consume.measured_consumed)
            },
            foreign_records: input.consume.foreign,
            undecodable_records: input.consume.undecodable,
            error_count: input.consume.errors,
            latency_us: Percentiles::of(input.end_to_end_latency),
        };
        Self {
            tool: "sluice-loadgen",
            version: env!("CARGO_PKG_VERSION"),
            run_id: input.run_id,
            started_at_unix_ms: input.started_at_unix_ms,
            interrupted: input.interrupted,
            settings: settings.clone(),
            produce,
            end_to_end,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use clap::Parser;

    use super::*;
    use crate::latency::new_histogram;
    use crate::options::Options;

    fn settings(arguments: &[&str]) -> Settings {
        Options::try_parse_from(std::iter::once("loadgen").chain(arguments.iter().copied()))
            .unwrap()
            .validate()
            .unwrap()
    }

    fn build(
        settings: &Settings,
        produce: &ProduceCounts,
        consume: &ConsumeCounts,
        latencies_us: &[u64],
    ) -> Summary {
        let mut histogram = new_histogram();
        for &latency_us in latencies_us {
            histogram.saturating_record(latency_us);
        }
        Summary::build(&SummaryInput {
            settings,
            run_id: 3,
            started_at_unix_ms: 1_000,
            produce,
            consume,
            produce_latency: &histogram,
            end_to_end_latency: &histogram,
            send_lag: &new_histogram(),
            measured_window_ns: settings.duration_s * 1_000_000_000,
            interrupted: false,
        })
    }

    #[test]
    fn rates_use_the_window_when_the_broker_kept_up() {
        let settings = settings(&[
            "--duration-s",
            "10",
            "--record-bytes",
            "1048576",
            "--rate",
            "2",
        ]);
        let produce = ProduceCounts {
            measured_acked: 20,
            last_measured_ack_offset_ns: 9_900_000_000,
            ..Default::default()
        };
        let summary = build(
            &settings,
            &produce,
            &ConsumeCounts {
                measured_consumed: 18,
                ..Default::default()
            },
            &[],
        );
        assert_eq!(summary.produce.measured_elapsed_s, 10.0);
        assert_eq!(summary.produce.achieved_records_per_sec, 2.0);
        assert_eq!(summary.produce.achieved_mb_per_sec, 2.0);
        assert_eq!(summary.end_to_end.missing_records, 2);
    }

    #[test]
    fn a_slow_broker_lowers_the_achieved_rate() {
        let settings = settings(&["--duration-s", "10", "--rate", "100"]);
        let produce = ProduceCounts {
            measured_acked: 1_000,
            last_measured_ack_offset_ns: 20_000_000_000,
            ..Default::default()
        };
        let summary = build(&settings, &produce, &ConsumeCounts::default(), &[]);
        assert_eq!(summary.produce.measured_elapsed_s, 20.0);
        assert_eq!(summary.produce.achieved_records_per_sec, 50.0);
    }

    #[test]
    fn percentiles_and_counts_reach_the_json() {
        let settings = settings(&["--consumers", "0"]);
        let mut produce = ProduceCounts {
            intended: 7,
            sent: 6,
            acked: 5,
            unsent: 1,
            unacked: 1,
            ..Default::default()
        };
        produce
            .errors_by_kind
            .insert("MessageTimedOut".to_owned(), 2);
        let latencies_us: Vec<u64> = (1..=1_000).collect();
        let summary = build(
            &settings,
            &produce,
            &ConsumeCounts::default(),
            &latencies_us,
        );
        let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["produce"]["error_records"], 2);
        assert_eq!(json["produce"]["errors_by_kind"]["MessageTimedOut"], 2);
        assert_eq!(json["produce"]["unsent_records"], 1);
        assert_eq!(json["produce"]["latency_us"]["count"], 1_000);
        assert_eq!(json["produce"]["latency_us"]["p50"], 500);
        assert_eq!(json["produce"]["latency_us"]["p99"], 990);
        assert_eq!(json["produce"]["latency_us"]["max"], 1_000);
        assert_eq!(
            json["end_to_end"]["missing_records"], 0,
            "no consumers, nothing missing"
        );
        assert_eq!(json["settings"]["acks"], "all");
        assert_eq!(json["settings"]["records_per_sec"], 1_000.0);
        assert_eq!(json["tool"], "sluice-loadgen");
    }

    #[test]
    fn empty_histograms_give_zero_percentiles() {
        assert_eq!(Percentiles::of(&new_histogram()).p999, 0);
    }
}
