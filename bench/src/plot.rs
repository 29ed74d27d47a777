//! Latency-by-percentile plots as plain SVG, HdrHistogram style: the x axis is `1/(1-p)` on a
//! log scale (so 90 %, 99 %, 99.9 % ... are evenly spaced and the tail gets the room), the y
//! axis latency in ms on a log scale, one line per target.
//!
//! Written by hand rather than with `plotters`: the plot is a few polylines and labels, and a
//! plotting crate (fonts, raster backends) would cost more build time on a 2-core machine than
//! this whole file. Any browser, and ImageMagick's `convert`, renders it.

use std::fmt::Write as _;

use crate::hgrm::Point;

pub const WIDTH: f64 = 900.0;
pub const HEIGHT: f64 = 520.0;
pub const LEFT: f64 = 80.0;
pub const RIGHT: f64 = 220.0;
pub const TOP: f64 = 50.0;
pub const BOTTOM: f64 = 60.0;
/// Rightmost x: 99.999 %.
const X_DECADES: f64 = 5.0;
pub const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn x_decades(percentile: f64) -> f64 {
    let tail = (1.0 - percentile).max(10_f64.powf(-X_DECADES));
    (-tail.log10()).clamp(0.0, X_DECADES)
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One SVG document; `series` are (label, curve). Empty curves are listed in the legend as "no data".
pub fn render(title: &str, series: &[(String, Vec<Point>)]) -> String {
    let values = series
        .iter()
        .flat_map(|(_, curve)| curve.iter().map(|point| point.value_ms))
        .filter(|value| *value > 0.0);
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_low, y_high) = if low <= high {
        (
            10_f64.powf(low.log10().floor()),
            10_f64.powf(high.log10().ceil()).max(low * 10.0),
        )
    } else {
        (0.1, 1000.0)
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let to_x = |percentile: f64| LEFT + x_decades(percentile) / X_DECADES * plot_w;
    let to_y = |value: f64| {
        let span = (y_high / y_low).log10();
        TOP + plot_h - (value.max(y_low) / y_low).log10() / span * plot_h
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="17" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    let x_ticks = [
        (0.0, "0%"),
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (0.99999, "99.999%"),
    ];
    for (percentile, label) in x_ticks {
        let x = to_x(percentile);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + plot_h + 18.0
        );
    }
    let mut tick = y_low;
    while tick <= y_high * 1.0001 {
        for multiple in [1.0, 2.0, 5.0] {
            let value = tick * multiple;
            if value > y_high * 1.0001 {
                break;
            }
            let y = to_y(value);
            let stroke = if multiple == 1.0 { "#bbb" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                LEFT + plot_w
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{value}</text>"#,
                LEFT - 6.0,
                y + 4.0
            );
        }
        tick *= 10.0;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    for (index, (label, curve)) in series.iter().enumerate() {
        let colour = COLOURS
            .get(index % COLOURS.len())
            .copied()
            .unwrap_or("black");
        let points: Vec<String> = curve
            .iter()
            .filter(|point| point.value_ms > 0.0)
            .map(|point| format!("{:.1},{:.1}", to_x(point.percentile), to_y(point.value_ms)))
            .collect();
        if !points.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
        #[expect(clippy::cast_precision_loss, reason = "a handful of series")]
        let y = TOP + 10.0 + index as f64 * 20.0;
        let x = LEFT + plot_w + 12.0;
        let suffix = if points.is_empty() { " (no data)" } else { "" };
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/>"#,
            x + 22.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{}{suffix}</text>"#,
            x + 28.0,
            y + 4.0,
            escape(label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A horizontal bar chart (one bar per label, linear scale from 0), for figures that have one
/// value per row, such as the replay's MB/s.
pub fn bars(title: &str, axis: &str, bars: &[(String, f64)]) -> String {
    const BAR_H: f64 = 26.0;
    const LABEL_W: f64 = 260.0;
    let plot_w = WIDTH - LABEL_W - 100.0;
    #[expect(clippy::cast_precision_loss, reason = "a handful of bars")]
    let height = TOP + BOTTOM + BAR_H * bars.len().max(1) as f64;
    let high = bars
        .iter()
        .map(|(_, value)| *value)
        .filter(|value| value.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if high > 0.0 { plot_w / high } else { 0.0 };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="17" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (index, (label, value)) in bars.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "a handful of bars")]
        let y = TOP + index as f64 * BAR_H;
        let colour = COLOURS
            .get(index % COLOURS.len())
            .copied()
            .unwrap_or("black");
        let width = (value.max(0.0) * scale).max(1.0);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + BAR_H * 0.65,
            escape(label)
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{LABEL_W}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{colour}"/>"#,
            y + 3.0,
            BAR_H - 6.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{value:.1}</text>"#,
            LABEL_W + width + 6.0,
            y + BAR_H * 0.65
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LABEL_W + plot_w / 2.0,
        height - 20.0,
        escape(axis)
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn draws_one_line_per_series_and_marks_empty_ones() {
        let curve = vec![
            Point {
                percentile: 0.0,
                value_ms: 1.0,
            },
            Point {
                percentile: 0.99,
                value_ms: 10.0,
            },
            Point {
                percentile: 1.0,
                value_ms: 100.0,
            },
        ];
        let svg = render(
            "produce <latency>",
            &[("a".into(), curve.clone()), ("b".into(), Vec::new())],
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("b (no data)"));
        assert!(svg.contains("produce &lt;latency&gt;"));
        assert!(x_decades(0.99) > x_decades(0.9));
        assert!((x_decades(1.0) - X_DECADES).abs() < 1e-9);
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bars(
            "replay <MB/s>",
            "MB/s",
            &[("sluice cold".into(), 200.0), ("kafka cold".into(), 100.0)],
        );
        assert_eq!(svg.matches("<rect x=").count(), 2);
        let widths: Vec<f64> = svg
            .lines()
            .filter(|line| line.starts_with("<rect x="))
            .map(|line| {
                let start = line.find("width=\"").unwrap() + 7;
                line[start..].split('"').next().unwrap().parse().unwrap()
            })
            .collect();
        assert!((widths[0] - 2.0 * widths[1]).abs() < 0.2, "{widths:?}");
        assert!(svg.contains("replay &lt;MB/s&gt;"));
        assert!(bars("empty", "MB/s", &[]).ends_with("</svg>\n"));
    }
}
