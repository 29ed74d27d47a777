//! Is a series flat once retention has had time to act? The rule: over the verdict window (the
//! last half of the run, which starts after the first retention period), the largest sample is
//! within [`FLAT_RATIO_MAX`] of the smallest, or no more than the series' resolution above it (a
//! count of three or four checkpoints differs by 33 % and by one object: flat). A series that is not flat is described instead: its
//! mean in the window's first and second halves and its least-squares slope say whether it grows,
//! falls, or only varies. Pure and unit-tested.
//!
//! Retention, garbage collection and compaction act in rounds, so a bounded series is a sawtooth:
//! index entries drop at every retention check, objects at every sweep and every job. A series
//! whose samples swing more than 10 % but whose mean over each period (the topic's retention
//! period, passed by the caller) stays within 10 % is [`Shape::FlatOnAverage`]: its level does
//! not move; it is reported as such, next to its range, never as plain flat.

use serde::Serialize;

/// Largest max/min ratio still called flat (10 %).
pub const FLAT_RATIO_MAX: f64 = 1.10;
/// Fewest samples a verdict is drawn from.
pub const SAMPLES_MIN: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Flat,
    /// Samples swing more than 10 %, but the means over consecutive periods (at least two whole
    /// ones) are within 10 % of each other.
    FlatOnAverage,
    /// The second half's mean is more than 10 % above the first half's.
    Growing,
    Falling,
    /// Not flat, but neither half's mean is 10 % above the other's.
    Varies,
    /// Fewer than [`SAMPLES_MIN`] samples in the window.
    TooFewSamples,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub series: String,
    pub unit: String,
    pub window_from_s: f64,
    pub window_to_s: f64,
    pub samples: usize,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `max / min`; `None` when min is 0 and max is not.
    pub max_over_min: Option<f64>,
    pub first_half_mean: Option<f64>,
    pub second_half_mean: Option<f64>,
    /// Least-squares slope over the window, per minute.
    pub slope_per_min: Option<f64>,
    /// The period the means below are taken over, and max/min of those means (whole periods
    /// from the window's start only; `None` with fewer than two).
    pub period_s: Option<f64>,
    pub period_means_max_over_min: Option<f64>,
    pub shape: Shape,
    /// One sentence for the report.
    pub text: String,
}

/// A number with as many decimals as its size deserves.
pub fn figure(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "a few hundred samples")]
    let count = values.len() as f64;
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / count)
}

/// Least-squares slope of `points` (seconds, value), per second.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let times: Vec<f64> = points.iter().map(|(t, _)| *t).collect();
    let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    let (t_mean, v_mean) = (mean(&times)?, mean(&values)?);
    let spread: f64 = times.iter().map(|t| (t - t_mean).powi(2)).sum();
    let covariance: f64 = points
        .iter()
        .map(|(t, v)| (t - t_mean) * (v - v_mean))
        .sum();
    (spread > 0.0).then(|| covariance / spread)
}

/// The verdict on `points` (run seconds, value) over the samples at or after `from_s`;
/// `resolution` is the smallest difference that means something (1 for a count of objects, 0
/// for a measurement).
#[cfg(test)]
pub fn judge(
    series: &str,
    unit: &str,
    points: &[(f64, f64)],
    from_s: f64,
    resolution: f64,
) -> Verdict {
    judge_with_period(series, unit, points, from_s, resolution, None)
}

/// Means of `window`'s samples over consecutive whole periods of `period_s` from `from_s`, and
/// the periods' bounds.
fn period_means(window: &[(f64, f64)], from_s: f64, period_s: f64) -> Vec<f64> {
    let Some(&(last_s, _)) = window.last() else {
        return Vec::new();
    };
    if period_s <= 0.0 {
        return Vec::new();
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative count of periods in a run of minutes"
    )]
    let whole = ((last_s - from_s) / period_s).floor().max(0.0) as usize;
    (0..whole)
        .filter_map(|index| {
            #[expect(clippy::cast_precision_loss, reason = "a handful of periods")]
            let start = from_s + index as f64 * period_s;
            let values: Vec<f64> = window
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + period_s)
                .map(|(_, v)| *v)
                .collect();
            mean(&values)
        })
        .collect()
}

/// [`judge`], also calling a series [`Shape::FlatOnAverage`] when its means over consecutive
/// periods of `period_s` stay within 10 %.
pub fn judge_with_period(
    series: &str,
    unit: &str,
    points: &[(f64, f64)],
    from_s: f64,
    resolution: f64,
    period_s: Option<f64>,
) -> Verdict {
    let window: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| *t >= from_s && v.is_finite())
        .collect();
    let to_s = window.last().map_or(from_s, |(t, _)| *t);
    let values: Vec<f64> = window.iter().map(|(_, v)| *v).collect();
    let min = values.iter().copied().reduce(f64::min);
    let max = values.iter().copied().reduce(f64::max);
    let max_over_min = match (min, max) {
        (Some(min), Some(max)) if min > 0.0 => Some(max / min),
        (Some(min), Some(max)) if min == 0.0 && max == 0.0 => Some(1.0),
        _ => None,
    };
    let (first, second) = values.split_at(values.len() / 2);
    let first_half_mean = mean(first);
    let second_half_mean = mean(second);
    let slope_per_min = slope(&window).map(|per_s| per_s * 60.0);
    let means = period_s.map_or_else(Vec::new, |period| period_means(&window, from_s, period));
    let means_min = means.iter().copied().reduce(f64::min);
    let means_max = means.iter().copied().reduce(f64::max);
    let period_means_max_over_min = match (means_min, means_max) {
        (Some(min), Some(max)) if means.len() >= 2 && min > 0.0 => Some(max / min),
        _ => None,
    };
    let shape = if values.len() < SAMPLES_MIN {
        Shape::TooFewSamples
    } else if max_over_min.is_some_and(|ratio| ratio <= FLAT_RATIO_MAX)
        || min
            .zip(max)
            .is_some_and(|(min, max)| max - min <= resolution)
    {
        Shape::Flat
    } else if period_means_max_over_min.is_some_and(|ratio| ratio <= FLAT_RATIO_MAX) {
        Shape::FlatOnAverage
    } else {
        match (first_half_mean, second_half_mean) {
            (Some(a), Some(b)) if b > a * FLAT_RATIO_MAX && b > a => Shape::Growing,
            (Some(a), Some(b)) if b * FLAT_RATIO_MAX < a => Shape::Falling,
            _ => Shape::Varies,
        }
    };
    let span = format!("{}–{} s", figure(from_s), figure(to_s));
    let range = match (min, max) {
        (Some(min), Some(max)) => format!(
            "{}–{} {unit}{}",
            figure(min),
            figure(max),
            max_over_min.map_or_else(
                || " (min 0)".to_owned(),
                |ratio| format!(" (max/min {ratio:.2})")
            )
        ),
        _ => "no samples".to_owned(),
    };
    let halves = match (first_half_mean, second_half_mean) {
        (Some(a), Some(b)) => {
            let change = if a > 0.0 {
                format!(" ({:+.0} %)", (b / a - 1.0) * 100.0)
            } else {
                String::new()
            };
            format!(
                "mean {} → {} {unit}{change} from the first to the second half",
                figure(a),
                figure(b)
            )
        }
        _ => String::new(),
    };
    let per_min = slope_per_min.map_or_else(String::new, |slope| {
        format!(", slope {} {unit}/min", figure(slope))
    });
    let text = match shape {
        Shape::Flat if max_over_min.is_some_and(|ratio| ratio <= FLAT_RATIO_MAX) => {
            format!("flat over {span}: {range}")
        }
        Shape::Flat => format!(
            "flat over {span}: {range}, within {} {unit} of each other",
            figure(resolution)
        ),
        Shape::FlatOnAverage => format!(
            "flat on average over {span}: the means of {} whole {} s periods are {}–{} {unit} \
             (max/min {:.2}); samples {range}, a sawtooth of rounds",
            means.len(),
            figure(period_s.unwrap_or(0.0)),
            figure(means_min.unwrap_or(0.0)),
            figure(means_max.unwrap_or(0.0)),
            period_means_max_over_min.unwrap_or(0.0)
        ),
        Shape::Growing => format!("**growing** over {span}: {halves}{per_min}; {range}"),
        Shape::Falling => format!("falling over {span}: {halves}{per_min}; {range}"),
        Shape::Varies => format!("not flat, no trend over {span}: {range}; {halves}"),
        Shape::TooFewSamples => format!(
            "too few samples over {span} ({} of {SAMPLES_MIN})",
            values.len()
        ),
    };
    Verdict {
        series: series.to_owned(),
        unit: unit.to_owned(),
        window_from_s: from_s,
        window_to_s: to_s,
        samples: values.len(),
        min,
        max,
        max_over_min,
        first_half_mean,
        second_half_mean,
        slope_per_min,
        period_s,
        period_means_max_over_min,
        shape,
        text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn series(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| (index as f64 * 10.0, *value))
            .collect()
    }

    #[test]
    fn a_sawtooth_with_a_steady_level_is_flat_on_average_and_a_rising_one_is_not() {
        // Samples every 10 s, a 40 s period: 100, 130, 100, 130, ... swings 30 % but every
        // period's mean is 115.
        let saw: Vec<f64> = (0..16)
            .map(|at| if at % 2 == 0 { 100.0 } else { 130.0 })
            .collect();
        let verdict = judge_with_period("objects", "objects", &series(&saw), 0.0, 0.0, Some(40.0));
        assert_eq!(verdict.shape, Shape::FlatOnAverage, "{}", verdict.text);
        assert_eq!(verdict.period_means_max_over_min, Some(1.0));
        // Without a period it is only "not flat".
        assert_eq!(
            judge("objects", "objects", &series(&saw), 0.0, 0.0).shape,
            Shape::Varies
        );
        // The same sawtooth on a level rising 5 % per period: means 115 → 115 × 1.05³ (+16 %).
        let rising: Vec<f64> = saw
            .iter()
            .enumerate()
            .map(|(at, value)| value * 1.05f64.powi((at / 4) as i32))
            .collect();
        let verdict =
            judge_with_period("objects", "objects", &series(&rising), 0.0, 0.0, Some(40.0));
        assert_ne!(verdict.shape, Shape::FlatOnAverage, "{}", verdict.text);
        // One whole period is not enough to say.
        let short = judge_with_period(
            "objects",
            "objects",
            &series(&saw[..6]),
            0.0,
            0.0,
            Some(40.0),
        );
        assert_eq!(short.period_means_max_over_min, None);
    }

    #[test]
    fn within_ten_percent_is_flat_and_only_the_window_counts() {
        // A climb during the first retention period, then a plateau within 8 %.
        let points = series(&[0.0, 50.0, 90.0, 100.0, 104.0, 99.0, 107.0, 101.0, 103.0]);
        let verdict = judge("rss", "MiB", &points, 30.0, 0.0);
        assert_eq!(verdict.shape, Shape::Flat, "{}", verdict.text);
        assert_eq!(verdict.samples, 6);
        assert_eq!((verdict.min, verdict.max), (Some(99.0), Some(107.0)));
        assert!(
            verdict
                .text
                .starts_with("flat over 30.0–80.0 s: 99.0–107 MiB"),
            "{}",
            verdict.text
        );
        // The same series judged from the start is not flat: it grows.
        assert_eq!(judge("rss", "MiB", &points, 0.0, 0.0).shape, Shape::Growing);
    }

    #[test]
    fn eleven_percent_is_not_flat() {
        let verdict = judge("x", "", &series(&[100.0, 111.0, 100.0, 111.0]), 0.0, 0.0);
        assert_eq!(verdict.shape, Shape::Varies, "{}", verdict.text);
        assert!((verdict.max_over_min.unwrap() - 1.11).abs() < 1e-9);
        assert!(verdict.text.contains("no trend"), "{}", verdict.text);
    }

    #[test]
    fn steady_growth_is_named_with_its_slope() {
        // +1 per 10 s sample = 6 per minute, from 100 to 107.
        let values: Vec<f64> = (0..8).map(|i| 100.0 + f64::from(i) * 1.0).collect();
        let flat_enough = judge("index", "entries", &series(&values), 0.0, 0.0);
        assert_eq!(flat_enough.shape, Shape::Flat, "7 % is within the rule");
        let values: Vec<f64> = (0..8).map(|i| 100.0 + f64::from(i) * 10.0).collect();
        let verdict = judge("index", "entries", &series(&values), 0.0, 0.0);
        assert_eq!(verdict.shape, Shape::Growing);
        assert!((verdict.slope_per_min.unwrap() - 60.0).abs() < 1e-9);
        assert!(verdict.text.contains("**growing**"), "{}", verdict.text);
        assert!(
            verdict.text.contains("slope 60.0 entries/min"),
            "{}",
            verdict.text
        );
        assert!(
            verdict.text.contains("115 → 155 entries (+35 %)"),
            "{}",
            verdict.text
        );
        let falling: Vec<f64> = values.iter().rev().copied().collect();
        assert_eq!(
            judge("x", "", &series(&falling), 0.0, 0.0).shape,
            Shape::Falling
        );
    }

    #[test]
    fn zeros_and_short_windows() {
        let zeros = judge("deletes", "/s", &series(&[0.0; 5]), 0.0, 0.0);
        assert_eq!(zeros.shape, Shape::Flat);
        assert_eq!(zeros.max_over_min, Some(1.0));
        let from_zero = judge("x", "", &series(&[0.0, 5.0, 0.0, 5.0]), 0.0, 0.0);
        assert_eq!(from_zero.max_over_min, None);
        assert_eq!(from_zero.shape, Shape::Varies);
        assert!(from_zero.text.contains("(min 0)"), "{}", from_zero.text);
        let short = judge("x", "", &series(&[1.0, 1.0, 1.0]), 0.0, 0.0);
        assert_eq!(short.shape, Shape::TooFewSamples);
        let none = judge("x", "", &[], 0.0, 0.0);
        assert_eq!((none.shape, none.min), (Shape::TooFewSamples, None));
        assert_eq!(
            judge("x", "", &series(&[1.0, f64::NAN, 1.0, 1.0, 1.0]), 0.0, 0.0).samples,
            4,
            "a missing value is not a sample"
        );
    }

    #[test]
    fn a_difference_within_the_resolution_is_flat() {
        let counts = series(&[3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
        let verdict = judge("checkpoints", "objects", &counts, 0.0, 1.0);
        assert_eq!(verdict.shape, Shape::Flat);
        assert!(
            verdict.text.ends_with("within 1.00 objects of each other"),
            "{}",
            verdict.text
        );
        assert_eq!(
            judge("checkpoints", "objects", &counts, 0.0, 0.0).shape,
            Shape::Varies
        );
        let two_apart = series(&[3.0, 5.0, 3.0, 5.0]);
        assert_ne!(
            judge("checkpoints", "objects", &two_apart, 0.0, 1.0).shape,
            Shape::Flat
        );
    }

    #[test]
    fn figures_round_by_size() {
        assert_eq!(figure(1234.56), "1235");
        assert_eq!(figure(12.345), "12.3");
        assert_eq!(figure(1.2345), "1.23");
    }
}
