//! A latency histogram that one thread records into and another reads, without locks: fixed
//! buckets (Prometheus's cumulative `le` buckets), each an atomic counter.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs to 60 s, roughly ×2–2.5 apart (a produce is
/// a few milliseconds on loopback and tens of milliseconds on S3 Standard; a long poll is up to
/// its `max_wait`).
pub const LATENCY_BUCKETS_SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Counts of observations per bucket (not cumulative; made cumulative when rendered), their
/// count and their sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    /// Observations above the last bound.
    overflow: AtomicU64,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound);
        match slot.and_then(|slot| self.buckets.get(slot)) {
            Some(bucket) => bucket.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines of `name{labels}`; `labels` is
    /// `key="value",…` without braces (may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (bound, bucket) in LATENCY_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
        );
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum_seconds}");
        // The count after the buckets: an observation recorded meanwhile may make it larger
        // than +Inf's, never smaller (each is incremented before the count).
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_only_reaches_inf() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(120));
        let mut out = String::new();
        histogram.render(&mut out, "t", "api=\"Produce\"");
        assert!(
            out.contains("t_bucket{api=\"Produce\",le=\"0.0001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("t_bucket{api=\"Produce\",le=\"0.0025\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("t_bucket{api=\"Produce\",le=\"0.005\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("t_bucket{api=\"Produce\",le=\"60\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("t_bucket{api=\"Produce\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(out.contains("t_count{api=\"Produce\"} 4\n"), "{out}");
        assert!(out.contains("t_sum{api=\"Produce\"} 120.00605\n"), "{out}");
        let mut bare = String::new();
        Histogram::default().render(&mut bare, "u", "");
        assert!(bare.contains("u_bucket{le=\"+Inf\"} 0\n") && bare.contains("u_count 0\n"));
    }
}
