#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use super::super::stats::{Call, OffsetCheck};
use super::*;

fn measured(target: &str, commit_ms: u64, stable: usize) -> Measured<'_> {
    let good = OffsetCheck {
        groups: 100,
        partitions: 1_200,
        behind: 0,
        missing: 0,
    };
    let plan = Plan::new(true);
    let mut steady = Stats::default();
    for _ in 0..1_000 {
        steady.record_latency(Call::OffsetCommit, Duration::from_millis(commit_ms));
        steady.committed_partitions += 4;
    }
    for _ in 0..100 {
        steady.record_latency(Call::Heartbeat, Duration::from_millis(2));
    }
    steady.record_code(Call::Heartbeat, 27);
    let mut forming = Stats::default();
    forming.record_code(Call::JoinGroup, 79);
    forming.record_latency(Call::JoinGroup, Duration::from_millis(40));
    Measured {
        target,
        settings: plan.settings(),
        plan,
        groups_stable: stable,
        all_stable_after_s: (stable == plan.groups).then_some(4.5),
        stable_at_end: stable,
        forming,
        forming_s: 4.6,
        forming_cpu_per_s: Some(0.8),
        steady,
        steady_s: 10.0,
        steady_started_unix_ms: 1_700_000_000_000,
        steady_cpu_per_s: Some(0.25),
        broker_cpu_wait_per_s: Some(0.125),
        harness_cpu_wait_per_s: None,
        store: Some(CountSnapshot {
            puts: 700,
            gets: 0,
            heads: 0,
            lists: 0,
            deletes: 0,
            others: 0,
            put_bytes: 1,
            get_bytes: 0,
            put_conflicts: 100,
        }),
        offsets: Ok(good),
    }
}

#[test]
fn sluice_rows_are_held_to_the_flush_window_plus_20_ms() {
    let fast = build_row(measured("sluice", 12, 100));
    assert_eq!(fast.status, Status::Ran);
    assert_eq!(fast.commit_p99_target_ms, Some(30.0));
    assert_eq!(fast.commit_p99_target_met, Some(true));
    assert!((fast.commits_per_second - 100.0).abs() < 1e-9);
    assert!((fast.committed_partitions_per_second - 400.0).abs() < 1e-9);
    assert!((fast.puts_per_second.unwrap() - 70.0).abs() < 1e-9);
    assert!((fast.stored_puts_per_second.unwrap() - 60.0).abs() < 1e-9);
    assert_eq!(
        fast.errors.get("Heartbeat: REBALANCE_IN_PROGRESS (27)"),
        Some(&1)
    );
    assert_eq!(
        fast.forming_errors
            .get("JoinGroup: MEMBER_ID_REQUIRED (79)"),
        Some(&1)
    );

    let slow = build_row(measured("sluice-s3-express", 45, 100));
    assert_eq!(slow.commit_p99_target_met, Some(false));
    let found = findings(&[fast, slow]);
    assert_eq!(found.len(), 2);
    assert!(found[0].ends_with("met"), "{found:?}");
    assert!(found[1].ends_with("missed"), "{found:?}");

    let kafka = build_row(measured("kafka", 45, 100));
    assert_eq!(kafka.commit_p99_target_ms, None, "the target is Sluice's");
    assert!(findings(&[kafka]).is_empty());
}

#[test]
fn groups_that_never_formed_fail_the_row_but_keep_the_numbers() {
    let row = build_row(measured("kafka", 3, 97));
    assert!(matches!(&row.status, Status::Failed(reason) if reason.contains("97 of 100")));
    assert_eq!(row.all_stable_after_s, None);
    assert!(row.offset_commit.is_some());
}

#[test]
fn stalled_seconds_are_listed_with_their_time() {
    assert_eq!(stalls(&[]), "");
    let line = stalls(&[12.0, 250.0, 14.0, 1_200.4]);
    assert!(
        line.contains("over 100 ms: 2 of 4 (at 1 s: 250, 3 s: 1200 ms)"),
        "{line}"
    );
    let many: Vec<f64> = (0..20).map(|_| 500.0).collect();
    assert!(stalls(&many).contains(", 8 more)"));
    assert!(stalls(&[1.0, 2.0]).contains("0 of 2  "));
}

#[test]
fn a_lost_commit_fails_the_row() {
    let mut lost = measured("sluice", 12, 100);
    lost.offsets = Ok(OffsetCheck {
        groups: 100,
        partitions: 1_200,
        behind: 3,
        missing: 1,
    });
    let row = build_row(lost);
    assert!(
        matches!(&row.status, Status::Failed(reason) if reason.contains("3 of 1200 partitions behind")),
        "{:?}",
        row.status
    );
    let mut unread = measured("kafka", 3, 100);
    unread.offsets = Err("connection refused".into());
    assert!(matches!(build_row(unread).status, Status::Failed(_)));
}

#[test]
fn markdown_has_a_line_per_target_and_the_reason_for_missing_ones() {
    let rows = vec![
        build_row(measured("sluice", 12, 100)),
        build_row(measured("kafka", 3, 100)),
        GroupsRow::without_numbers(
            "tansu",
            Status::NotInstalled("cargo install tansu".into()),
            Map::new(),
        ),
    ];
    let report = GroupsReport {
        scenario: "groups".into(),
        quick: true,
        command: "sluice-bench --scenario groups --quick".into(),
        started_at_unix_ms: 0,
        machine: "2 CPUs".into(),
        findings: findings(&rows),
        rows,
    };
    let text = render(&report);
    assert!(text.contains("| sluice | 100 / 100 | 4.5 | 2.0 / 2.0 / 2.0 / 2.0 | 12.0 / 12.0 / 12.0 / 12.0 | < 30: met | 0.250 | 70.0 (60.0) | 1 |"), "{text}");
    assert!(text.contains("| kafka | 100 / 100 |"), "{text}");
    assert!(
        text.contains("**not installed**: cargo install tansu"),
        "{text}"
    );
    assert!(
        text.contains("**sluice: offset commit P99 12.0 ms, target < 30 ms"),
        "{text}"
    );
    assert!(
        text.contains("JoinGroup: MEMBER_ID_REQUIRED (79) × 1"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"][0]["offset_commit"]["count"], 1_000);
    assert_eq!(json["rows"][2]["status"]["state"], "not_installed");
}
