#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::json;

use super::*;
use crate::markdown;

fn summary(e2e_count: u64, consumers: u64) -> Value {
    json!({
        "settings": { "record_bytes": 1000, "consumers": consumers },
        "produce": {
            "acked_records": 2_000_000, "error_records": 1, "unacked_records": 2, "unsent_records": 0,
            "achieved_records_per_sec": 5000.0, "achieved_mb_per_sec": 4.77,
            "latency_us": { "count": 100, "p50": 4000, "p99": 9000, "p999": 15000, "max": 20000 },
            "send_lag_us": { "count": 100, "p50": 10, "p99": 1500, "p999": 2000, "max": 3000 }
        },
        "end_to_end": {
            "error_count": 3,
            "latency_us": { "count": e2e_count, "p50": 5000, "p99": 10000, "p999": 16000, "max": 21000 }
        }
    })
}

fn measured(e2e_count: u64, consumers: u64) -> Measured {
    Measured {
        summary: summary(e2e_count, consumers),
        wall_s: 20.0,
        cpu_s: Some(10.0),
        store: Some(CountSnapshot {
            puts: 400,
            gets: 40,
            put_bytes: 2_000_000_000,
            ..CountSnapshot::default()
        }),
        produce_curve: Vec::new(),
        end_to_end_curve: Vec::new(),
    }
}

#[test]
fn rates_per_second_and_per_gb() {
    let row = build_row("sluice", serde_json::Map::new(), measured(10, 1));
    // 2,000,000 records × 1,000 bytes = 2 GB over 20 s.
    let store = row.store.unwrap();
    assert!((store.puts_per_sec - 20.0).abs() < 1e-9);
    assert!((store.gets_per_sec - 2.0).abs() < 1e-9);
    assert!((store.puts_per_gb - 200.0).abs() < 1e-9);
    assert!((store.gets_per_gb - 20.0).abs() < 1e-9);
    assert!((row.cpu_seconds_per_gb.unwrap() - 5.0).abs() < 1e-9);
    let produce = row.produce.unwrap();
    assert_eq!(
        (produce.p50_ms, produce.p999_ms, produce.max_ms),
        (4.0, 15.0, 20.0)
    );
    assert_eq!(row.end_to_end.unwrap().p99_ms, 10.0);
    assert_eq!(row.errors, 3);
    assert_eq!(
        (row.send_lag_p99_ms, row.send_lag_max_ms),
        (Some(1.5), Some(3.0))
    );
    assert_eq!(row.end_to_end_note, None);
}

#[test]
fn missing_end_to_end_is_explained_not_faked() {
    let row = build_row("sluice", serde_json::Map::new(), measured(0, 1));
    assert!(row.end_to_end.is_none());
    assert!(row.end_to_end_note.unwrap().contains("3 consume errors"));
    let row = build_row("sluice", serde_json::Map::new(), measured(0, 0));
    assert!(row.end_to_end_note.unwrap().contains("no consumer"));
}

#[test]
fn nothing_acknowledged_gives_no_per_gb_figures() {
    let mut m = measured(0, 1);
    m.summary["produce"]["acked_records"] = json!(0);
    let row = build_row("kafka", serde_json::Map::new(), m);
    assert_eq!(row.cpu_seconds_per_gb, None);
    assert_eq!(row.store.unwrap().puts_per_gb, 0.0);
}

#[test]
fn every_target_appears_in_the_markdown_and_json() {
    let mut settings = serde_json::Map::new();
    settings.insert("partitions".into(), json!(12));
    let report = Report {
        scenario: "fraud".into(),
        quick: true,
        command: "sluice-bench --scenario fraud --quick".into(),
        started_at_unix_ms: 0,
        machine: "test".into(),
        findings: vec!["sluice: highest sustained".into()],
        rows: vec![
            build_row("sluice", settings.clone(), measured(10, 1)),
            Row::without_numbers(
                "tansu",
                Status::NotInstalled("run cargo install".into()),
                settings.clone(),
            ),
            Row::without_numbers(
                "kafka",
                Status::Failed("log ends: 28: main | at ./start.c".into()),
                settings,
            ),
        ],
    };
    let text = markdown::render(&report);
    assert_tables_well_formed(&text);
    assert!(
        text.contains("| sluice | 5000 rec/s, 4.77 MB/s | 4.0 / 9.0 / 15.0 / 20.0 |"),
        "{text}"
    );
    assert!(
        text.contains("| tansu | **not installed**: run cargo install |"),
        "{text}"
    );
    assert!(text.contains("`partitions=12`"));
    assert!(text.contains("**sluice: highest sustained**"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"][1]["status"]["state"], "not_installed");
    assert_eq!(json["rows"][0]["store"]["counts"]["puts"], 400);
}

#[test]
fn ladder_reports_the_highest_step_that_held() {
    let step = |mb: f64, held: bool| {
        let mut m = measured(10, 1);
        m.summary["produce"]["achieved_mb_per_sec"] = json!(mb);
        let mut row = build_row(&format!("sluice @ {mb} MB/s"), serde_json::Map::new(), m);
        row.held = Some(held);
        row
    };
    let rows = vec![step(5.0, true), step(10.0, true), step(14.0, false)];
    let text = sustained_finding("sluice", &rows).unwrap();
    assert!(text.contains("highest sustained 10.00 MB/s"), "{text}");
    assert!(text.contains("sluice @ 14 MB/s) did not"), "{text}");
    let all_held = sustained_finding("sluice", &rows[..2]).unwrap();
    assert!(all_held.contains("above the ladder's top"), "{all_held}");
    assert!(
        sustained_finding("sluice", &[step(5.0, false)])
            .unwrap()
            .contains("no step held")
    );
    let single = build_row("sluice", serde_json::Map::new(), measured(10, 1));
    assert_eq!(sustained_finding("sluice", &[single]), None);
}

fn replay_measured(records_read: u64, complete: bool, fill_sequences: u64) -> Measured {
    Measured {
        summary: json!({
            "mode": "replay",
            "replay": {
                "records_expected": 1_000_000, "records_read": records_read,
                "records_missing": 1_000_000 - records_read, "offset_gaps": 0,
                "value_bytes_read": records_read * 1_000, "time_to_first_record_ms": 12.5,
                "elapsed_s": 4.0, "records_per_sec": records_read as f64 / 4.0, "mb_per_sec": 238.4,
                "complete": complete, "timed_out": !complete,
                "runs": [
                    { "run_id": "0000abcd", "distinct_sequences": fill_sequences },
                    { "run_id": "00000001", "distinct_sequences": 5 }
                ]
            }
        }),
        wall_s: 10.0,
        cpu_s: Some(2.0),
        store: Some(CountSnapshot {
            gets: 400,
            get_bytes: 1_000_000_000,
            ..CountSnapshot::default()
        }),
        produce_curve: Vec::new(),
        end_to_end_curve: Vec::new(),
    }
}

fn fill_summary(acked: u64) -> Value {
    json!({ "run_id": 0xabcd, "produce": { "acked_records": acked } })
}

#[test]
fn replay_rows_rate_gets_over_the_read_and_verify_the_fill() {
    let row = build_replay_row(
        "sluice cold",
        "cold",
        serde_json::Map::new(),
        &replay_measured(1_000_000, true, 1_000_000),
        &fill_summary(1_000_000),
    );
    let replay = row.replay.as_ref().unwrap();
    assert!(replay.verified, "{replay:?}");
    assert_eq!(replay.fill_sequences_found, 1_000_000);
    // 400 GETs over 4 s of reading (not the 10 s process), 1 GB of values read.
    let store = row.store.unwrap();
    assert!((store.gets_per_sec - 100.0).abs() < 1e-9);
    assert!((store.gets_per_gb - 400.0).abs() < 1e-9);
    assert!((row.cpu_seconds_per_gb.unwrap() - 2.0).abs() < 1e-9);
    assert_eq!(row.mb_per_sec, Some(238.4));

    let lost = build_replay_row(
        "tansu cold",
        "cold",
        serde_json::Map::new(),
        &replay_measured(1_000_000, true, 999_998),
        &fill_summary(1_000_000),
    );
    let note = lost.replay.as_ref().unwrap().verification_note.clone();
    assert!(note.unwrap().contains("found 999998"));
    let short = build_replay_row(
        "kafka warm",
        "warm",
        serde_json::Map::new(),
        &replay_measured(900_000, false, 900_000),
        &fill_summary(1_000_000),
    );
    assert!(
        short
            .replay
            .as_ref()
            .unwrap()
            .verification_note
            .as_deref()
            .unwrap()
            .contains("read 900000 of 1000000 records (0 offsets skipped, timed out)")
    );

    let report = Report {
        scenario: "replay".into(),
        quick: true,
        command: String::new(),
        started_at_unix_ms: 0,
        machine: String::new(),
        findings: Vec::new(),
        rows: vec![row, lost, short],
    };
    let failures = failures(&report);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].starts_with("tansu cold (cold)"));
    let text = markdown::render(&report);
    assert_tables_well_formed(&text);
    assert!(
        text.contains(
            "| sluice cold | 1000000 / 1000000 | 238.4 | 250000 | 12.5 | 100.0 | 400 | 2.0 | yes |"
        ),
        "{text}"
    );
    assert!(text.contains("| kafka warm | 900000 / 1000000 |"), "{text}");
}

#[test]
fn failures_name_lost_records_but_not_the_step_that_ended_a_ladder() {
    let clean = {
        let mut m = measured(10, 1);
        m.summary["produce"]["error_records"] = json!(0);
        m.summary["produce"]["unacked_records"] = json!(0);
        m.summary["end_to_end"]["missing_records"] = json!(0);
        build_row("sluice", serde_json::Map::new(), m)
    };
    let report = |rows: Vec<Row>| Report {
        scenario: "fraud".into(),
        quick: true,
        command: String::new(),
        started_at_unix_ms: 0,
        machine: String::new(),
        findings: Vec::new(),
        rows,
    };
    assert_eq!(failures(&report(vec![clean.clone()])), Vec::<String>::new());
    let mut missing = clean.clone();
    missing.missing_records = Some(7);
    let found = failures(&report(vec![missing.clone()]));
    assert!(
        found[0].contains("7 acknowledged records never consumed"),
        "{found:?}"
    );
    // The same shortfall on the step where a ladder stopped climbing is its expected end.
    missing.held = Some(false);
    assert_eq!(failures(&report(vec![missing])), Vec::<String>::new());
    // Errors (the common summary has 3: failed, unacked) count on any step that held.
    let errors = build_row("sluice", serde_json::Map::new(), measured(10, 1));
    assert!(failures(&report(vec![errors]))[0].contains("3 records failed"));
}

/// Cells of a Markdown table line (`\|` is text, not a separator).
fn table_cells(line: &str) -> usize {
    line.replace("\\|", "")
        .matches('|')
        .count()
        .saturating_sub(1)
}

/// Every table's delimiter row and body rows have as many cells as its header (GitHub renders
/// no table otherwise).
fn assert_tables_well_formed(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let mut tables = 0;
    for (index, line) in lines.iter().enumerate() {
        if !line.starts_with("|---") {
            continue;
        }
        tables += 1;
        let header = table_cells(lines[index - 1]);
        assert_eq!(
            table_cells(line),
            header,
            "delimiter of {:?}",
            lines[index - 1]
        );
        for row in lines[index + 1..]
            .iter()
            .take_while(|row| row.starts_with('|'))
        {
            assert_eq!(
                table_cells(row),
                header,
                "row {row:?} under {:?}",
                lines[index - 1]
            );
        }
    }
    assert!(tables > 0, "{text}");
}
