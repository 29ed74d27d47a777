//! `report.md`: the headline table, then each row's settings and notes.

use std::fmt::Write as _;

use crate::hgrm::{self, Point};
use crate::report::{Latency, Report, Row, Status};

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |value| format!("{value:.digits$}"))
}

fn percentiles(latency: Option<&Latency>) -> String {
    latency.map_or_else(
        || "—".to_owned(),
        |l| {
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            )
        },
    )
}

fn status_text(status: &Status) -> String {
    match status {
        Status::Ran => "ran".to_owned(),
        Status::NotInstalled(reason) => format!("**not installed**: {reason}"),
        Status::Failed(reason) => format!("**failed**: {reason}"),
        Status::NotImplemented(reason) => format!("**not implemented**: {reason}"),
    }
}

fn headline(row: &Row) -> String {
    if row.status != Status::Ran {
        // A reason may quote a log whose lines were joined with " | ": escaped, so the cell
        // stays one cell.
        return format!(
            "| {} | {} | | | | | | | |\n",
            row.target,
            status_text(&row.status).replace('|', "\\|")
        );
    }
    let store = row.store.as_ref();
    format!(
        "| {} | {} rec/s, {} MB/s | {} | {} | {} | {} | {} | {} | {} |\n",
        row.target,
        opt(row.records_per_sec, 0),
        opt(row.mb_per_sec, 2),
        percentiles(row.produce.as_ref()),
        percentiles(row.end_to_end.as_ref()),
        opt(store.map(|s| s.puts_per_sec), 1),
        opt(store.map(|s| s.gets_per_sec), 1),
        opt(store.map(|s| s.puts_per_gb), 0),
        opt(store.map(|s| s.gets_per_gb), 0),
        opt(row.cpu_seconds_per_gb, 1),
    )
}

/// The headline table of load-generator rows: throughput, latencies, store calls, CPU.
pub fn headline_table(rows: &[&Row]) -> String {
    let mut out = String::from(
        "| target | throughput | produce p50 / p99 / p99.9 / max (ms) | end-to-end p50 / p99 / p99.9 / max (ms) \
         | PUT/s | GET/s | PUT/GB | GET/GB | CPU s/GB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&headline(row));
    }
    out
}

/// The `replay` scenario's reads, one line each (empty when there are none).
fn replay_table(report: &Report) -> String {
    let reads: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.replay.is_some())
        .collect();
    if reads.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nReads from offset 0 to the end (after fill: before any restart; cold: the first read \
         after a broker restart; warm: the same read again). MB/s and records/s over the time from the \
         first fetch to the last record; GET/s over that time, GET/GB and CPU s/GB per 10^9 bytes \
         of values read; verified: every offset read once and every record the fill acknowledged \
         found:\n\n| target | records read / expected | MB/s | records/s | first record (ms) \
         | GET/s | GET/GB | CPU s/GB | verified |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in reads {
        let Some(replay) = &row.replay else {
            continue;
        };
        let store = row.store.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            row.target,
            replay.records_read,
            replay.records_expected,
            opt(row.mb_per_sec, 1),
            opt(row.records_per_sec, 0),
            opt(replay.time_to_first_record_ms, 1),
            opt(store.map(|s| s.gets_per_sec), 1),
            opt(store.map(|s| s.gets_per_gb), 0),
            opt(row.cpu_seconds_per_gb, 1),
            if replay.verified {
                "yes".to_owned()
            } else {
                format!(
                    "**no**: {}",
                    replay.verification_note.as_deref().unwrap_or("")
                )
            },
        );
    }
    out
}

/// One column per target that ran, one line per percentile tick (read from the `.hgrm` curves).
fn side_by_side(report: &Report, title: &str, pick: fn(&Row) -> &[Point]) -> String {
    let ran: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| !pick(row).is_empty())
        .collect();
    if ran.is_empty() {
        return String::new();
    }
    let curves: Vec<&[Point]> = ran.iter().map(|row| pick(row)).collect();
    let mut out = format!("\n{title}:\n\n| percentile |");
    for row in &ran {
        let _ = write!(out, " {} |", row.target);
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(ran.len()));
    out.push('\n');
    for (tick, values) in hgrm::merge(&curves, &hgrm::TICKS) {
        let _ = write!(out, "| {} |", tick * 100.0);
        for value in values {
            let _ = write!(out, " {} |", opt(value, 2));
        }
        out.push('\n');
    }
    out
}

/// Renders the report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# sluice-bench: scenario `{}`{}\n",
        report.scenario,
        if report.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        out,
        "Command: `{}`  \nMachine: {}\n",
        report.command, report.machine
    );
    let produced: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.replay.is_none())
        .collect();
    out.push_str(&headline_table(&produced));
    out.push_str(&replay_table(report));
    for finding in &report.findings {
        let _ = writeln!(out, "\n**{finding}**");
    }
    for (title, pick) in [
        (
            "Produce latency (ms) by percentile",
            (|row: &Row| row.produce_curve.as_slice()) as fn(&Row) -> &[Point],
        ),
        ("End-to-end latency (ms) by percentile", |row: &Row| {
            row.end_to_end_curve.as_slice()
        }),
    ] {
        out.push_str(&side_by_side(report, title, pick));
    }
    out.push_str(
        "\nGB = 10^9 bytes of record values acknowledged during the whole load-generator run; \
                  PUT/GET per second over the same run. `—` = not available (see notes).\n",
    );
    for row in &report.rows {
        let _ = writeln!(
            out,
            "\n## {}\n\nStatus: {}  ",
            row.target,
            status_text(&row.status)
        );
        if row.errors > 0 {
            let _ = writeln!(
                out,
                "Errors (failed, unacknowledged or unsent records): {}  ",
                row.errors
            );
        }
        if let Some(replay) = &row.replay {
            let _ = writeln!(
                out,
                "Read ({}): {} of {} records, {} value bytes in {:.2} s, {} offsets skipped; \
                 the fill acknowledged {} records and the read found {} of them  ",
                replay.phase,
                replay.records_read,
                replay.records_expected,
                replay.value_bytes_read,
                replay.elapsed_s,
                replay.offset_gaps,
                replay.fill_acked_records,
                replay.fill_sequences_found
            );
        }
        if let (Some(p99), Some(max)) = (row.send_lag_p99_ms, row.send_lag_max_ms) {
            let _ = writeln!(
                out,
                "Load generator send lag p99 / max: {p99:.1} / {max:.1} ms  "
            );
        }
        if let Some(cleanup) = &row.cleanup {
            let _ = writeln!(out, "After the step: {}  ", cleanup.describe());
        }
        for note in [&row.end_to_end_note, &row.store_note]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "Note: {note}  ");
        }
        if let Some(store) = &row.store {
            let c = &store.counts;
            let _ = writeln!(
                out,
                "Object-store calls: {} PUT ({} bytes; {} answered 412, create-only on an existing key), {} GET ({} bytes), {} HEAD, {} LIST, {} DELETE, {} other  ",
                c.puts,
                c.put_bytes,
                c.put_conflicts,
                c.gets,
                c.get_bytes,
                c.heads,
                c.lists,
                c.deletes,
                c.others
            );
        }
        let settings: Vec<String> = row
            .settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(out, "Settings: {}", settings.join(", "));
    }
    out
}
