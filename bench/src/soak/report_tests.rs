#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::soak::parse::HousekeepingLine;
use crate::soak::verdict::Shape;

/// A quick soak's samples: state climbing for 45 s, then flat; index entries growing by 1 %
/// per sample throughout (not merged).
fn samples() -> Vec<Sample> {
    (0..=90)
        .map(|i| {
            let t_s = f64::from(i) * 2.0;
            let fill = (t_s / 45.0).min(1.0);
            Sample {
                t_s,
                agent_run: if t_s < 60.0 { 1 } else { 2 },
                rss_bytes: Some(100 << 20),
                index_entries: (t_s >= 5.0).then_some(10_000 + u64::try_from(i).unwrap() * 100),
                housekeeping: (t_s >= 5.0).then_some(HousekeepingLine {
                    index_entries: 10_000 + u64::try_from(i).unwrap() * 100,
                    ..HousekeepingLine::default()
                }),
                compaction_jobs_done: None,
                log_objects: (fill * 4_500.0) as u64,
                log_bytes: (fill * 225e6) as u64,
                compacted_objects: 10,
                compacted_bytes: 50_000_000,
                checkpoint_objects: 3,
                checkpoint_bytes: 3_000_000,
                newest_checkpoint_bytes: Some(1_000_000),
                checkpoint_bytes_new: 0,
                checkpoint_bytes_per_sec: Some(100_000.0),
                acked_per_sec: Some(5_000.0),
                produce_p99_ms_max: Some(20.0 + f64::from(i % 3)),
                end_to_end_p99_ms_max: None,
            }
        })
        .collect()
}

fn recovery(kind: &str, at_s: f64, serving_s: f64, replayed: u64) -> Recovery {
    Recovery {
        kind: kind.to_owned(),
        at_s,
        serving_s: Some(serving_s),
        log_open_s: Some(serving_s - 0.05),
        log_open: Some(LogOpenLine {
            checkpoint_seq: Some(6_000),
            entries_replayed: Some(replayed),
            stats: String::new(),
            ..LogOpenLine::default()
        }),
        ..Recovery::default()
    }
}

fn report() -> (SoakReport, Plan) {
    let plan = Plan::new(true);
    let mut target = SoakTarget::new("sluice", Map::new());
    target.samples = samples();
    target.recoveries = vec![
        recovery("mid-run", 62.0, 0.40, 500),
        recovery("end", 183.0, 0.42, 700),
    ];
    target.finish(&plan);
    let report = SoakReport {
        scenario: "soak".into(),
        quick: true,
        command: "sluice-bench --scenario soak --quick".into(),
        started_at_unix_ms: 0,
        machine: "2 CPUs".into(),
        settings: Map::new(),
        targets: vec![target],
    };
    (report, plan)
}

#[test]
fn verdicts_judge_the_last_half() {
    let (report, _) = report();
    let verdicts = &report.targets[0].verdicts;
    let shape = |name: &str| verdicts.iter().find(|v| v.series == name).unwrap().shape;
    assert_eq!(shape("agent RSS"), Shape::Flat);
    assert_eq!(
        shape("log/ objects"),
        Shape::Flat,
        "the climb ends before 90 s"
    );
    assert_eq!(shape("bucket bytes"), Shape::Flat);
    // 14,500 → 19,000 over the window (max/min 1.31); the half means differ by 15 %.
    assert_eq!(shape("index entries"), Shape::Growing);
    assert_eq!(shape("produce P99"), Shape::Flat, "20–22 ms is within 10 %");
    assert_eq!(shape("end-to-end P99"), Shape::TooFewSamples);
    assert!(verdicts.iter().all(|v| v.window_from_s == 90.0));
}

#[test]
fn recovery_that_does_not_grow_and_one_that_does() {
    let (report, _) = report();
    let finding = report.targets[0].recovery_finding.as_deref().unwrap();
    assert!(finding.contains("not growing"), "{finding}");
    assert!(
        finding.contains("500 and 700 log entries replayed"),
        "{finding}"
    );
    let grew = recovery_finding(
        &[
            recovery("mid-run", 62.0, 0.40, 500),
            recovery("end", 183.0, 0.90, 900),
        ],
        2_000,
    )
    .unwrap();
    assert!(grew.contains("**growing**"), "{grew}");
    // Within the 0.1 s slack: noise, not growth.
    let noise = recovery_finding(
        &[
            recovery("mid-run", 62.0, 0.20, 1),
            recovery("end", 183.0, 0.28, 1),
        ],
        2_000,
    )
    .unwrap();
    assert!(noise.contains("not growing"), "{noise}");
    assert_eq!(
        recovery_finding(&[recovery("end", 1.0, 1.0, 1)], 2_000),
        None
    );
}

/// An agent that reports its replay time: the growth is judged without the tail's replay, so a
/// clean stop (nothing replayed) and a crash (a tail replayed) compare like for like.
#[test]
fn recovery_is_judged_without_the_tails_replay() {
    let timed = |kind: &str, at_s: f64, serving_s: f64, replayed: u64, replay_s: f64| {
        let mut restart = recovery(kind, at_s, serving_s, replayed);
        if let Some(open) = restart.log_open.as_mut() {
            open.replay_s = Some(replay_s);
            open.checkpoint_load_s = Some(0.021);
            open.checkpoint_bytes = Some(61_000);
        }
        restart
    };
    // The soak's clean stop and crash: 0.08 s and 0.24 s in all, 0.15 s of it the crash's tail.
    let like_for_like = recovery_finding(
        &[
            timed("mid-run", 600.0, 0.08, 0, 0.001),
            timed("end", 1_800.0, 0.24, 695, 0.15),
        ],
        2_000,
    )
    .unwrap();
    assert!(
        like_for_like.contains(
            "less the tail's replay (0.001 s and 0.150 s) 0.079 s and 0.090 s: not growing"
        ),
        "{like_for_like}"
    );
    assert!(
        like_for_like.contains("checkpoint read and decoded: 61.0 kB in 0.021 s"),
        "{like_for_like}"
    );
    // The same totals without the replay times: judged on the totals, growing.
    let untimed = recovery_finding(
        &[
            recovery("mid-run", 600.0, 0.08, 0),
            recovery("end", 1_800.0, 0.24, 695),
        ],
        2_000,
    )
    .unwrap();
    assert!(untimed.contains("**growing**"), "{untimed}");
    // What grows besides the replay still counts.
    let grew = recovery_finding(
        &[
            timed("mid-run", 600.0, 0.08, 0, 0.001),
            timed("end", 1_800.0, 0.45, 695, 0.15),
        ],
        2_000,
    )
    .unwrap();
    assert!(grew.contains("**growing**"), "{grew}");
    // A tail above the checkpoint rule's bound grows with run time, whatever the rest.
    let long_tail = recovery_finding(
        &[
            timed("mid-run", 600.0, 0.08, 0, 0.001),
            timed("end", 1_800.0, 0.40, 2_500, 0.31),
        ],
        2_000,
    )
    .unwrap();
    assert!(long_tail.contains("**growing**"), "{long_tail}");
    assert!(
        long_tail.contains("2500 entries, is **above** the checkpoint rule's bound (2000)"),
        "{long_tail}"
    );
    assert!(
        like_for_like.contains("is within the checkpoint rule's bound"),
        "{like_for_like}"
    );
    // Slower than a second: said so.
    let slow = recovery_finding(
        &[
            timed("mid-run", 600.0, 0.08, 0, 0.001),
            timed("end", 1_800.0, 1.2, 900, 0.15),
        ],
        2_000,
    )
    .unwrap();
    assert!(slow.contains("**1 restart(s) took 1 s or more**"), "{slow}");
    assert!(!like_for_like.contains("or more"), "{like_for_like}");
}

#[test]
fn markdown_tables_have_their_shape() {
    let (report, plan) = report();
    let markdown = render(&report, &plan);
    assert!(markdown.contains("# sluice-bench: scenario `soak` (quick)"));
    assert!(
        markdown.contains("| index entries | **growing** over 90.0–180 s"),
        "{markdown}"
    );
    assert!(markdown.contains("| mid-run | 62.0 |"), "{markdown}");
    // Every table row has as many cells as its header.
    let mut columns = None;
    for line in markdown.lines() {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells = line.matches('|').count();
        match columns {
            None => columns = Some(cells),
            Some(expected) => assert_eq!(cells, expected, "{line}"),
        }
    }
    assert!(strided(&report.targets[0].samples, 60).len() <= 61);
    assert_eq!(
        strided(&report.targets[0].samples, 60).last().unwrap().t_s,
        180.0,
        "the last sample is always shown"
    );
}

#[test]
fn plots_have_a_line_per_series_and_the_events() {
    let (report, plan) = report();
    let plots = plots(&report, &plan);
    assert_eq!(plots.len(), 6);
    let (_, objects) = plots
        .iter()
        .find(|(file, _)| file == "soak-objects.svg")
        .unwrap();
    assert_eq!(objects.matches("<polyline").count(), 4);
    assert!(objects.contains(">restart</text>") && objects.contains(">retention.ms</text>"));
    let (_, latency) = plots
        .iter()
        .find(|(file, _)| file == "soak-p99.svg")
        .unwrap();
    assert!(latency.contains("end-to-end P99 (no data)"));
}

#[test]
fn lost_records_and_failed_restarts_fail_the_run() {
    let (mut report, _) = report();
    assert!(failures(&report).is_empty());
    let mut row = Row::without_numbers("sluice run 2", Status::Ran, Map::new());
    row.missing_records = Some(3);
    report.targets[0].rows.push(row);
    report.targets[0].recoveries[1].error = Some("not serving".into());
    let failures = failures(&report);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("3 acknowledged records never consumed"));
    assert!(failures[1].contains("end restart: not serving"));
}

#[test]
fn a_restart_records_how_it_stopped_whatever_its_name() {
    let sample = samples().pop().unwrap();
    let restart = Restart {
        name: "renamed",
        stop: Stop::Kill,
    };
    let recovery = Recovery::before(restart, &sample);
    assert_eq!(
        (recovery.kind.as_str(), recovery.stop),
        ("renamed", Stop::Kill)
    );
    let json = serde_json::to_value(&recovery).unwrap();
    assert_eq!(
        (&json["kind"], &json["stop"]),
        (&"renamed".into(), &"SIGKILL".into())
    );
    let clean = Recovery::before(
        Restart {
            name: "end",
            stop: Stop::Term,
        },
        &sample,
    );
    assert_eq!(serde_json::to_value(&clean).unwrap()["stop"], "SIGTERM");
}
