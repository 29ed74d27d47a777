//! Values over time as plain SVG, in the style of `plot.rs` (same size, margins, colours and
//! legend): linear axes, the y axis from 0 so that "flat" and "growing" look like what they are,
//! one polyline per series, and dashed vertical markers for events (a restart, the end of the
//! first retention period).

use std::fmt::Write as _;

use crate::plot::{BOTTOM, COLOURS, HEIGHT, LEFT, RIGHT, TOP, WIDTH, escape};

/// One line: a label and (seconds, value) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A tick step of 1, 2 or 5 × 10^k that splits `span` into at most about `ticks` steps.
pub fn nice_step(span: f64, ticks: f64) -> f64 {
    if !(span > 0.0 && span.is_finite()) {
        return 1.0;
    }
    let raw = span / ticks.max(1.0);
    let magnitude = 10_f64.powf(raw.log10().floor());
    // A little slack, so that 4.999999 (floating-point division) is 5.
    let normalised = raw / magnitude * (1.0 - 1e-9);
    let factor = if normalised <= 1.0 {
        1.0
    } else if normalised <= 2.0 {
        2.0
    } else if normalised <= 5.0 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// A tick label without trailing zeros (`0.5`, `250`, `1.2e6` stays `1200000`).
fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One SVG document. `markers` are (seconds, label) drawn as dashed vertical lines.
pub fn over_time(title: &str, y_axis: &str, lines: &[Line], markers: &[(f64, String)]) -> String {
    let t_max = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(t, _)| *t))
        .chain(markers.iter().map(|(t, _)| *t))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let v_max = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    // Minutes on the axis past ten minutes, seconds below.
    let (time_unit, time_scale) = if t_max > 600.0 {
        ("min", 60.0)
    } else {
        ("s", 1.0)
    };
    let x_step = nice_step(t_max / time_scale, 8.0);
    let x_high = (t_max / time_scale / x_step).ceil() * x_step * time_scale;
    let y_step = nice_step(v_max, 6.0);
    let y_high = ((v_max / y_step).ceil() * y_step).max(y_step);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let to_x = |t: f64| LEFT + (t / x_high).clamp(0.0, 1.0) * plot_w;
    let to_y = |v: f64| TOP + plot_h - (v / y_high).clamp(0.0, 1.0) * plot_h;
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
    let mut tick = 0.0;
    while tick <= x_high / time_scale * 1.0001 {
        let x = to_x(tick * time_scale);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            tick_label(tick)
        );
        tick += x_step;
    }
    let mut tick = 0.0;
    while tick <= y_high * 1.0001 {
        let y = to_y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            tick_label(tick)
        );
        tick += y_step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the load started ({time_unit})</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_axis)
    );
    for (t, label) in markers {
        let x = to_x(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="5,4"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r##"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
            x - 4.0,
            TOP + 6.0,
            escape(label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    for (index, line) in lines.iter().enumerate() {
        let colour = COLOURS
            .get(index % COLOURS.len())
            .copied()
            .unwrap_or("black");
        let points: Vec<String> = line
            .points
            .iter()
            .filter(|(t, v)| t.is_finite() && v.is_finite())
            .map(|(t, v)| format!("{:.1},{:.1}", to_x(*t), to_y(*v)))
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
            escape(&line.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn steps_are_one_two_or_five() {
        assert!((nice_step(100.0, 5.0) - 20.0).abs() < 1e-9);
        assert!((nice_step(180.0, 8.0) - 50.0).abs() < 1e-9);
        assert!((nice_step(7.0, 6.0) - 2.0).abs() < 1e-9);
        assert!((nice_step(0.3, 6.0) - 0.05).abs() < 1e-12);
        assert!((nice_step(0.0, 6.0) - 1.0).abs() < 1e-9);
        assert_eq!(tick_label(0.05), "0.05");
        assert_eq!(tick_label(250.0), "250");
    }

    #[test]
    fn lines_markers_and_empty_series() {
        let svg = over_time(
            "RSS <agent>",
            "MiB",
            &[
                Line {
                    label: "sluice".into(),
                    points: vec![(0.0, 10.0), (90.0, 300.0), (180.0, 310.0)],
                },
                Line {
                    label: "none".into(),
                    points: Vec::new(),
                },
            ],
            &[(60.0, "restart".into())],
        );
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("none (no data)"));
        assert!(svg.contains("RSS &lt;agent&gt;"));
        assert!(svg.contains("stroke-dasharray") && svg.contains(">restart</text>"));
        assert!(svg.contains("time since the load started (s)"));
        // The highest point sits at or below the top of the y axis (0 … 350 in steps of 50).
        let polyline = svg
            .lines()
            .find(|line| line.starts_with("<polyline"))
            .unwrap();
        let ys: Vec<f64> = polyline
            .split("points=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"/>")
            .split(' ')
            .map(|point| point.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(
            ys.iter().all(|y| *y >= TOP && *y <= HEIGHT - BOTTOM),
            "{ys:?}"
        );
        let long = over_time(
            "t",
            "v",
            &[Line {
                label: "a".into(),
                points: vec![(0.0, 1.0), (1800.0, 1.0)],
            }],
            &[],
        );
        assert!(long.contains("time since the load started (min)"));
    }
}
