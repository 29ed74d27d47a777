//! Percentile curves: read from the load generator's `.hgrm` files and merged onto common ticks.
//!
//! The loadgen writes HdrHistogram's percentile-distribution text (values in milliseconds). The
//! harness does not re-record samples: the `.hgrm` rows already are the curve HdrHistogram's own
//! plotter draws, and reading them keeps the harness independent of the loadgen's internals.
//! Several targets' curves are compared at the same percentiles ([`merge`]): each curve is read
//! as a step function ("the value at percentile p is the first row whose percentile reaches p"),
//! which is how HdrHistogram defines `valueAtPercentile`.

use serde::Serialize;

/// One point of a latency curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// 0.0 ..= 1.0.
    pub percentile: f64,
    pub value_ms: f64,
}

/// Parses the rows of an `.hgrm` text (`Value Percentile TotalCount 1/(1-Percentile)`); headers,
/// blank lines and `#[...]` footers are skipped, as is any row that does not parse.
pub fn parse(text: &str) -> Vec<Point> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let value_ms: f64 = fields.next()?.parse().ok()?;
            let percentile: f64 = fields.next()?.parse().ok()?;
            let valid = value_ms.is_finite() && (0.0..=1.0).contains(&percentile);
            valid.then_some(Point {
                percentile,
                value_ms,
            })
        })
        .collect()
}

/// The value at `percentile` of a curve sorted by percentile: the first point that reaches it,
/// or the last point (the maximum) if none does. `None` for an empty curve.
pub fn value_at(curve: &[Point], percentile: f64) -> Option<f64> {
    curve
        .iter()
        .find(|point| point.percentile >= percentile)
        .or_else(|| curve.last())
        .map(|point| point.value_ms)
}

/// The ticks the report compares targets at.
pub const TICKS: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// For each tick, each curve's value there (`None` where a curve is empty).
pub fn merge(curves: &[&[Point]], ticks: &[f64]) -> Vec<(f64, Vec<Option<f64>>)> {
    ticks
        .iter()
        .map(|&tick| {
            (
                tick,
                curves.iter().map(|curve| value_at(curve, tick)).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const SAMPLE: &str = "       Value     Percentile TotalCount 1/(1-Percentile)

       1.000 0.000000000000          1           1.00
       2.000 0.500000000000         50           2.00
       5.000 0.900000000000         90          10.00
      40.000 0.990000000000         99         100.00
     100.000 1.000000000000        100
#[Mean    =        3.000, StdDeviation   =        1.000]
#[Max     =      100.000, Total count    =          100]
";

    #[test]
    fn parses_rows_and_skips_the_rest() {
        let curve = parse(SAMPLE);
        assert_eq!(curve.len(), 5);
        assert_eq!(
            curve[1],
            Point {
                percentile: 0.5,
                value_ms: 2.0
            }
        );
        assert_eq!(curve[4].value_ms, 100.0);
    }

    #[test]
    fn value_at_is_the_first_row_reaching_the_percentile() {
        let curve = parse(SAMPLE);
        assert_eq!(value_at(&curve, 0.5), Some(2.0));
        assert_eq!(value_at(&curve, 0.95), Some(40.0));
        assert_eq!(value_at(&curve, 0.999), Some(100.0));
        assert_eq!(value_at(&[], 0.5), None);
    }

    #[test]
    fn merge_aligns_curves_on_ticks() {
        let a = parse(SAMPLE);
        let b: Vec<Point> = a
            .iter()
            .map(|p| Point {
                value_ms: p.value_ms * 2.0,
                ..*p
            })
            .collect();
        let merged = merge(&[&a, &b, &[]], &[0.5, 0.99]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], (0.5, vec![Some(2.0), Some(4.0), None]));
        assert_eq!(merged[1], (0.99, vec![Some(40.0), Some(80.0), None]));
    }
}
