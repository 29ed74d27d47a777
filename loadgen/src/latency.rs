//! Latency recording in HDR histograms and their standard text output.
//!
//! Values are recorded in microseconds with 3 significant digits from 1 µs to 1 hour: constant
//! memory (about 200 KiB per histogram) and constant-time recording whatever the rate, with a
//! relative error below 0.1 % at every magnitude — a tail at 2 s is as precise as a median at 2 ms.
//! Anything above an hour is clamped to an hour (and then visibly wrong, not silently dropped).
//!
//! The `.hgrm` files use HdrHistogram's `outputPercentileDistribution` text layout (values in
//! milliseconds, 5 ticks per half distance) so HdrHistogram's plotter and the usual scripts read
//! them unchanged.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Largest recordable latency: one hour, in microseconds.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits kept by every latency histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram (µs, 1 µs ..= 1 h, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that meet the constructor's preconditions (low >= 1, high >= 2 * low,
    // sigfig <= 5): this cannot fail for any input, so an `expect` is the honest spelling.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
        .expect("valid constant bounds")
}

/// A total histogram for the run plus an interval histogram the progress line drains each second.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// Empty histograms.
    pub fn new() -> Self {
        Self {
            total: new_histogram(),
            interval: new_histogram(),
        }
    }

    /// Records one latency, clamped into 1 µs ..= 1 h.
    pub fn record_us(&mut self, latency_us: u64) {
        let clamped_us = latency_us.clamp(1, LATENCY_US_MAX);
        self.total.saturating_record(clamped_us);
        self.interval.saturating_record(clamped_us);
    }

    /// Everything recorded so far.
    pub fn total(&self) -> &Histogram<u64> {
        &self.total
    }

    /// What was recorded since the last call, then starts a new interval.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        let interval = self.interval.clone();
        self.interval.reset();
        interval
    }
}

/// Number of sub-buckets HdrHistogram uses for `significant_digits` (reported in the footer).
fn sub_bucket_count(significant_digits: u8) -> u64 {
    let largest_single_unit_resolution = 2 * 10_u64.pow(u32::from(significant_digits));
    largest_single_unit_resolution.next_power_of_two()
}

/// Microseconds per output unit: `.hgrm` values are milliseconds.
const OUTPUT_SCALE_US_PER_MS: f64 = 1_000.0;

/// The histogram as HdrHistogram's percentile distribution text (values in milliseconds).
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let digits = usize::from(histogram.sigfig());
    let mut text = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        text,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !histogram.is_empty() {
        let mut total_count_to_value = 0_u64;
        for step in histogram.iter_quantiles(5) {
            total_count_to_value += step.count_since_last_iteration();
            let value_ms = to_f64(step.value_iterated_to()) / OUTPUT_SCALE_US_PER_MS;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let _ = writeln!(
                    text,
                    "{value_ms:>12.digits$} {quantile:>2.12} {total_count_to_value:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(
                    text,
                    "{value_ms:>12.digits$} {quantile:>2.12} {total_count_to_value:>10}"
                );
            }
        }
    }
    let mean_ms = histogram.mean() / OUTPUT_SCALE_US_PER_MS;
    let deviation_ms = histogram.stdev() / OUTPUT_SCALE_US_PER_MS;
    let max_ms = to_f64(histogram.max()) / OUTPUT_SCALE_US_PER_MS;
    let _ = writeln!(
        text,
        "#[Mean    = {mean_ms:>12.digits$}, StdDeviation   = {deviation_ms:>12.digits$}]"
    );
    let _ = writeln!(
        text,
        "#[Max     = {max_ms:>12.digits$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        text,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    text
}

/// Microsecond counts fit f64 exactly below 2^53 (285 years).
fn to_f64(value: u64) -> f64 {
    value as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn recorder_keeps_totals_and_drains_intervals() {
        let mut recorder = LatencyRecorder::new();
        for latency_us in 1..=1_000 {
            recorder.record_us(latency_us);
        }
        let interval = recorder.take_interval();
        assert_eq!(interval.len(), 1_000);
        recorder.record_us(5_000);
        assert_eq!(recorder.take_interval().len(), 1);
        assert_eq!(recorder.total().len(), 1_001);
        assert!(
            recorder
                .total()
                .equivalent(recorder.total().value_at_quantile(0.5), 501)
        );
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut recorder = LatencyRecorder::new();
        recorder.record_us(0);
        recorder.record_us(u64::MAX);
        assert_eq!(recorder.total().len(), 2);
        assert_eq!(recorder.total().min(), 1);
        assert!(
            recorder
                .total()
                .equivalent(recorder.total().max(), LATENCY_US_MAX)
        );
    }

    #[test]
    fn distribution_text_has_the_standard_shape() {
        let mut histogram = new_histogram();
        for latency_us in 1..=10_000 {
            histogram.saturating_record(latency_us);
        }
        let text = percentile_distribution(&histogram);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        // Data rows: value, quantile, cumulative count, and 1/(1-q) except on the last row.
        let rows: Vec<Vec<&str>> = lines
            .iter()
            .skip(2)
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20);
        let first = &rows[0];
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "0.001");
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        // Like HdrHistogram, rows report the highest value equivalent to the bucket: 10 ms falls
        // in a bucket 8 µs wide.
        let expected_max_ms = histogram.highest_equivalent(10_000) as f64 / 1_000.0;
        assert_eq!(expected_max_ms, 10.007);
        assert_eq!(last[0].parse::<f64>().unwrap(), expected_max_ms);
        // Counts never decrease and the median row sits near 5 ms.
        let counts: Vec<u64> = rows.iter().map(|row| row[2].parse().unwrap()).collect();
        assert!(counts.windows(2).all(|pair| pair[0] <= pair[1]));
        let median = rows
            .iter()
            .find(|row| row[1].parse::<f64>().unwrap() >= 0.5)
            .unwrap();
        assert!(
            (median[0].parse::<f64>().unwrap() - 5.0).abs() < 0.01,
            "{median:?}"
        );
        assert_eq!(
            median[2], "5003",
            "cumulative count up to the median bucket"
        );
        assert!(
            text.contains("#[Max     =       10.007, Total count    =        10000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histograms_still_produce_a_readable_file() {
        let text = percentile_distribution(&new_histogram());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }
}
