#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

#[test]
fn rss_in_kilobytes() {
    let status = "Name:\tsluice\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 1 kB\n";
    assert_eq!(rss_bytes(status), Some(123_456 * 1024));
    assert_eq!(rss_bytes("Name:\tzombie\n"), None);
    assert_eq!(rss_bytes("VmRSS:\t lots kB\n"), None);
}

/// Lines as tracing's default formatter writes them to a file: timestamp, level, thread name,
/// target, message, fields; with colour codes, which it writes to files too.
const ACTED: &str = "\u{1b}[2m2026-12-05T10:00:05.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
    sluice-metadata-0 \u{1b}[2msluice_server::metadata_core::housekeeping\u{1b}[0m\u{1b}[2m:\u{1b}[0m \
    housekeeping: retention and garbage collection \u{1b}[3mpartitions_trimmed\u{1b}[0m\u{1b}[2m=\u{1b}[0m12 \
    \u{1b}[3mretention_failures\u{1b}[0m\u{1b}[2m=\u{1b}[0m0 \u{1b}[3mentries_deleted\u{1b}[0m\u{1b}[2m=\u{1b}[0m480 \
    \u{1b}[3mcheckpoints_deleted\u{1b}[0m\u{1b}[2m=\u{1b}[0m1 \u{1b}[3mdelete_errors\u{1b}[0m\u{1b}[2m=\u{1b}[0m0 \
    \u{1b}[3mwaiting\u{1b}[0m\u{1b}[2m=\u{1b}[0m500 \u{1b}[3mentries_listed\u{1b}[0m\u{1b}[2m=\u{1b}[0m4100 \
    \u{1b}[3mcheckpoints_listed\u{1b}[0m\u{1b}[2m=\u{1b}[0m3 \u{1b}[3mindex_entries\u{1b}[0m\u{1b}[2m=\u{1b}[0m41234";

#[test]
fn housekeeping_line_with_colours() {
    let line = HousekeepingLine::parse(ACTED).unwrap();
    assert_eq!(
        line,
        HousekeepingLine {
            index_entries: 41_234,
            entries_listed: 4_100,
            checkpoints_listed: 3,
            waiting: Some(500),
            partitions_trimmed: Some(12),
            entries_deleted: Some(480),
            compacted_deleted: None,
            checkpoints_deleted: Some(1),
            delete_errors: Some(0),
        }
    );
}

#[test]
fn housekeeping_idle_line_has_the_counts_only() {
    let idle = "2026-12-05T10:00:00.1Z DEBUG sluice-metadata-0 sluice_server::metadata_core::housekeeping: \
                housekeeping: nothing to do waiting=0 entries_listed=900 checkpoints_listed=0 index_entries=10800";
    let line = HousekeepingLine::parse(idle).unwrap();
    assert_eq!(
        (
            line.index_entries,
            line.entries_listed,
            line.checkpoints_listed
        ),
        (10_800, 900, 0)
    );
    assert_eq!((line.waiting, line.entries_deleted), (Some(0), None));
}

#[test]
fn other_lines_are_not_housekeeping() {
    assert_eq!(
        HousekeepingLine::parse("2026-12-05T10:00:00Z  INFO x: agent listening index_entries=3"),
        None
    );
    // The message without its counts (a format change) is not read as zeros.
    assert_eq!(
        HousekeepingLine::parse("INFO x: housekeeping: nothing to do waiting=0"),
        None
    );
}

#[test]
fn log_open_line_gives_the_checkpoint_and_the_entries_replayed() {
    let line = "\u{1b}[2m2026-12-05T10:01:00.5Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m main sluice_server::net::agent: \
        metadata log open \u{1b}[3mstats\u{1b}[0m\u{1b}[2m=\u{1b}[0mRecoveryStats { checkpoint_seq: Some(LogSeq(6000)), \
        checkpoints_skipped: 0, entries_replayed: 412, entries_ignored: 0, first_free: LogSeq(6413), \
        max_seen_seq: Some(LogSeq(6412)), max_seen_epoch: 1 } epoch 2";
    let open = LogOpenLine::parse(line).unwrap();
    assert_eq!(open.checkpoint_seq, Some(6_000));
    assert_eq!(open.entries_replayed, Some(412));
    assert!(open.stats.starts_with("RecoveryStats {"), "{}", open.stats);
    assert!(open.stats.ends_with("epoch 2"), "{}", open.stats);
    let fresh = LogOpenLine::parse(
        "INFO main a: metadata log open stats=RecoveryStats { checkpoint_seq: None, checkpoints_skipped: 0, \
         entries_replayed: 0, entries_ignored: 0, first_free: LogSeq(0), max_seen_seq: None, max_seen_epoch: 0 } epoch 1",
    )
    .unwrap();
    assert_eq!(
        (fresh.checkpoint_seq, fresh.entries_replayed),
        (None, Some(0))
    );
    assert_eq!(LogOpenLine::parse("INFO a: metadata log opening"), None);
    // Since the stats carry the checkpoint's size and the two phases' times.
    let timed = LogOpenLine::parse(
        "INFO main a: metadata log open stats=RecoveryStats { checkpoint_seq: Some(LogSeq(9000)), \
         checkpoints_skipped: 0, entries_replayed: 695, entries_ignored: 0, first_free: LogSeq(9696), \
         max_seen_seq: Some(LogSeq(9695)), max_seen_epoch: 3, checkpoint_bytes: 61234, \
         checkpoint_load: 21.5ms, replay: 132.25ms } epoch 4",
    )
    .unwrap();
    assert_eq!(timed.checkpoint_bytes, Some(61_234));
    assert!(close(timed.checkpoint_load_s, 0.0215), "{timed:?}");
    assert!(close(timed.replay_s, 0.132_25), "{timed:?}");
    assert_eq!(
        (
            fresh.checkpoint_load_s,
            fresh.replay_s,
            fresh.checkpoint_bytes
        ),
        (None, None, None)
    );
}

fn close(value: Option<f64>, expected: f64) -> bool {
    value.is_some_and(|value| (value - expected).abs() < 1e-12)
}

#[test]
fn durations_as_debug_prints_them() {
    assert!(close(debug_duration_s("1.5s"), 1.5));
    assert!(close(debug_duration_s("250ms"), 0.25));
    assert!(close(debug_duration_s("80µs"), 80e-6));
    assert!(close(debug_duration_s("7ns"), 7e-9));
    assert_eq!(debug_duration_s("3min"), None);
    assert_eq!(debug_duration_s("ms"), None);
}

#[test]
fn progress_lines_of_the_load_generator() {
    let run = ProgressLine::parse(
        "[  12.0s run   ] sent 60000 acked 59000 (5000/s) behind 10 err 0 | produce p50 1.50ms p99 1.99ms \
         max 2.00ms | consumed 58000 e2e p50 3.00ms p99 14.25ms max 20.00ms",
    )
    .unwrap();
    assert!(run.measured);
    assert!((run.elapsed_s - 12.0).abs() < 1e-9);
    assert!((run.acked_per_sec - 5000.0).abs() < 1e-9);
    assert_eq!(run.produce_p99_ms, Some(1.99));
    assert_eq!(run.end_to_end_p99_ms, Some(14.25));
    let warmup = ProgressLine::parse(
        "[   1.0s warmup] sent 5000 acked 0 (0/s) behind 0 err 0 | produce - | consumed 0 e2e -",
    )
    .unwrap();
    assert!(!warmup.measured);
    assert_eq!(
        (warmup.produce_p99_ms, warmup.end_to_end_p99_ms),
        (None, None)
    );
    let no_consumer = ProgressLine::parse(
        "[   3.0s run   ] sent 1 acked 1 (1/s) behind 0 err 0 | produce p50 1.00ms p99 2.00ms max 2.00ms",
    )
    .unwrap();
    assert_eq!(no_consumer.end_to_end_p99_ms, None);
    assert_eq!(ProgressLine::parse("%4|1733|librdkafka: something"), None);
    assert_eq!(ProgressLine::parse("sluice-loadgen: wrote /tmp/x"), None);
}

#[test]
fn timestamps_of_log_lines() {
    // 2026-12-05T04:44:38.674120Z = 1796445878.674120 (date -u -d @1796445878).
    let at = line_unix_s(
        "\u{1b}[2m2026-12-05T04:44:38.674120Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m main x: y",
    )
    .unwrap();
    assert!((at - 1_796_445_878.674_12).abs() < 1e-6, "{at}");
    assert_eq!(line_unix_s("1970-01-01T00:00:00Z"), Some(0.0));
    // Leap day, and a January date (month shift).
    assert_eq!(line_unix_s("2024-02-29T12:00:00Z"), Some(1_709_208_000.0));
    assert_eq!(line_unix_s("2000-01-01T00:00:00Z"), Some(946_684_800.0));
    assert_eq!(line_unix_s("[  12.0s run   ] sent 1"), None);
    assert_eq!(line_unix_s("2026-13-05T04:44:38Z x"), None);
}

#[test]
fn compaction_job_lines() {
    let line = "\u{1b}[2m2026-12-05T04:47:39.043283Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m sluice-metadata-0 \
        \u{1b}[2msluice_server::metadata_core::housekeeping\u{1b}[0m\u{1b}[2m:\u{1b}[0m compaction job \
        \u{1b}[3minputs\u{1b}[0m\u{1b}[2m=\u{1b}[0m11 \u{1b}[3mjobs_done\u{1b}[0m\u{1b}[2m=\u{1b}[0m119";
    assert_eq!(compaction_jobs_done(line), Some(119));
    assert_eq!(
        compaction_jobs_done("INFO x: compaction job failed; planned again next tick"),
        None
    );
    assert_eq!(compaction_jobs_done(ACTED), None);
}

#[test]
fn the_metrics_endpoint_is_read_from_the_agent_listening_line() {
    let line = "2026-12-06T15:05:30.755614Z  INFO main sluice_server::net::agent: agent listening \
                local_addr=127.0.0.1:39669 listeners=[(\"PLAINTEXT\", 127.0.0.1:39669)] \
                metrics_addr=Some(127.0.0.1:40111) network_cpus=[0, 1] metadata_cpu=0";
    assert_eq!(metrics_addr(line), Some("127.0.0.1:40111".parse().unwrap()));
    let coloured = "\u{1b}[2m2026-12-06T15:05:30Z\u{1b}[0m INFO x: agent listening \
                    \u{1b}[3mmetrics_addr\u{1b}[0m\u{1b}[2m=\u{1b}[0mSome(127.0.0.1:9)";
    assert_eq!(metrics_addr(coloured), Some("127.0.0.1:9".parse().unwrap()));
    assert_eq!(
        metrics_addr("2026-12-06T15:05:30Z INFO x: agent listening metrics_addr=None"),
        None
    );
    assert_eq!(
        metrics_addr("2026-12-06T15:05:30Z INFO x: other metrics_addr=Some(127.0.0.1:9)"),
        None
    );
}
