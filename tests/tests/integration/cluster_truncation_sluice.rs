//! Scenario: an agent of a cluster falls behind the truncation of the cluster's log and carries
//! on from the newest checkpoint.
//!
//! Two agents (`lease_ms = 3000`, a checkpoint every 2 records). franz-go produces through A;
//! then A is stopped with SIGSTOP; once B's view has dropped A (its lease expired), a producer
//! in B's zone writes 8,000 records through B at 2,000/s, and B's checkpoints truncate the
//! sequencer's log several checkpoint intervals past every position A could have applied (the
//! head when A stopped). A is resumed: the records after its state are gone (`Truncated`), so it
//! fences itself, and its rejoin swaps in the newest checkpoint and catches up from it — its log
//! says `swapped in the newest checkpoint` and `rejoined the cluster` with the checkpoint's
//! position, it is not fenced and ready again, and a producer in its zone is sent to it and
//! acknowledged. Every record acknowledged before, during and after the pause is then read back
//! *from A* (consumers in A's zone: every partition's leader is A), once, at its offset.
//!
//! The second test pauses A for less than its lease (a fraction of a second, until the log was
//! truncated past it, with B writing throughout): A's lease still holds when it resumes, so only
//! its tailer's `Truncated` can send it to the rejoin (no `LEASE LOST` in its log).
//!
//! Before the reload was built, A said `not rejoining … restart it` and stayed fenced (or, with
//! its lease held, stayed fenced without a word): both tests fail waiting for `rejoined the
//! cluster`.
//!
//! PostgreSQL, the store server or the Go toolchain missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use sluice_tests::api_versions::metadata_brokers;
use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::{Cluster, metric_sum};
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

const RECORDS: u64 = 20_000;
/// Records written through B while A is stopped, paced so that they make many windows (each
/// one a record of the sequencer, and every second one a checkpoint).
const RECORDS_DURING: u64 = 8_000;
const RECORDS_DURING_PER_SECOND: u64 = 2_000;
/// A's zone: a client that names it is sent to A for every partition.
const ZONE_A_CLIENT_ID: &str = "e2e,sluice_az=a";

fn produce_run(
    client: ClientKind,
    bootstrap: String,
    topic: &str,
    seed: u64,
    records: u64,
    report: std::path::PathBuf,
) -> (RecordGenerator, ClientRun) {
    let generator = RecordGenerator {
        seed,
        partitions: PARTITIONS,
        timestamp_base_ms: timestamp_base_ms(),
    };
    let run = ClientRun {
        client,
        bootstrap,
        topic: topic.to_string(),
        records,
        codec: Codec::Lz4,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed,
        timestamp_base_ms: generator.timestamp_base_ms,
        timeout_s: PHASE_TIMEOUT_S,
        report,
    };
    (generator, run)
}

/// Waits (polling the file, up to a minute) until the agent's log holds `line`.
fn wait_for_log_line(log: &std::path::Path, line: &str, tail: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.contains(line) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's log never said `{line}`:\n{}",
            tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_behind_the_truncation_rejoins_from_the_newest_checkpoint() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster agent behind the truncation";
    let client = ClientKind::Go;
    if !require(test, &client.tools()) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let cluster = Cluster::start(
        &*store,
        "truncation",
        &postgres.url(),
        "lease_ms = 3000\n",
        &["--checkpoint-interval-entries".to_owned(), "2".to_owned()],
        2,
    )
    .unwrap();
    let (a, b) = (&cluster.agents[0], &cluster.agents[1]);
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-truncation-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();

    let (before_generator, before) = produce_run(
        client,
        a.bootstrap(),
        "truncation-before",
        31,
        RECORDS,
        work_dir.path().join("before.jsonl"),
    );
    let (produced_before, status) = before.run().unwrap();
    assert!(
        status.success() && produced_before.errors.is_empty(),
        "{status}"
    );

    let pid = i32::try_from(a.pid().unwrap()).unwrap();
    // SAFETY: signals to a child process this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let paused_at = Instant::now();
    // A stopped: it cannot have applied anything past the head as of now.
    let head_at_pause = postgres.query_i64("SELECT next_position - 1 FROM sluice_clusters");

    // B's view drops A once A's lease has expired (at B's next renewal): from then on nothing
    // B tells a client names the stopped agent.
    let deadline = paused_at + Duration::from_secs(60);
    while !metadata_brokers(b.address()).is_ok_and(|brokers| brokers.len() == 1) {
        assert!(
            Instant::now() < deadline,
            "b still lists a 60 s after SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    loud(&format!(
        "{test}: b dropped a from its view {:.1} s after SIGSTOP",
        paused_at.elapsed().as_secs_f64()
    ));

    // Under load through B while A is stopped: B's checkpoints truncate the log past A.
    let (during_generator, during) = produce_run(
        client,
        b.bootstrap(),
        "truncation-during",
        32,
        RECORDS_DURING,
        work_dir.path().join("during.jsonl"),
    );
    // In b's zone: every partition's leader is b, so no request waits on the stopped agent.
    let (produced_during, status) = during
        .run_with(&[
            "--idempotent".to_owned(),
            "--client-id".to_owned(),
            "e2e,sluice_az=b".to_owned(),
            "--rate".to_owned(),
            RECORDS_DURING_PER_SECOND.to_string(),
        ])
        .unwrap();
    assert!(
        status.success() && produced_during.errors.is_empty(),
        "producing through b while a is stopped failed ({status}): {:?}",
        produced_during.errors
    );
    let log_start = postgres.query_i64("SELECT coalesce(min(position), 0) FROM sluice_log");
    let head = postgres.query_i64("SELECT next_position - 1 FROM sluice_clusters");
    // Several checkpoint intervals (2 records each) past the last position a could have applied.
    assert!(
        log_start > head_at_pause + 1 + 4,
        "b's checkpoints did not truncate the log past a (a stopped at head {head_at_pause}, the \
         log starts at {log_start})"
    );
    loud(&format!(
        "{test}: a stopped at head {head_at_pause} for {:.1} s; b appended up to {head} and the \
         log now starts at {log_start}",
        paused_at.elapsed().as_secs_f64()
    ));
    let incarnation_paused =
        postgres.query_i64("SELECT incarnation FROM sluice_agents WHERE agent_id = 'a'");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let resumed_at = Instant::now();

    check_rejoined_from_a_checkpoint(test, &cluster, &postgres, incarnation_paused, resumed_at);

    produce_through_a_and_read_back_from_a(
        client,
        &cluster,
        work_dir.path(),
        vec![
            (before_generator, before, produced_before),
            (during_generator, during, produced_during),
        ],
    );
    loud(&format!(
        "{test}: {RECORDS} records before the pause, {RECORDS_DURING} through b during it and \
         {RECORDS} through a after its rejoin, all read back from a at their offsets"
    ));
}

/// The same with A paused for less than its lease (the default 10 s): when it resumes its lease
/// still holds, so nothing but its tailer's `Truncated` tells it that it fell behind. The tailer
/// stops appends and hands over to the lease loop, which fences A and rejoins from the newest
/// checkpoint without the lease ever being lost (no `LEASE LOST` in A's log).
#[test]
fn an_agent_behind_the_truncation_within_its_lease_rejoins_from_the_newest_checkpoint() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster agent behind the truncation within its lease";
    let client = ClientKind::Go;
    if !require(test, &client.tools()) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let cluster = Cluster::start(
        &*store,
        "truncation-lease",
        &postgres.url(),
        "",
        &["--checkpoint-interval-entries".to_owned(), "2".to_owned()],
        2,
    )
    .unwrap();
    let (a, b) = (&cluster.agents[0], &cluster.agents[1]);
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-truncation-lease-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();
    let head =
        || postgres.query_i64("SELECT coalesce(max(next_position), 1) - 1 FROM sluice_clusters");

    // A paced producer in B's zone writes through B, before, during and after A's pause.
    let (during_generator, during) = produce_run(
        client,
        b.bootstrap(),
        "truncation-during",
        34,
        RECORDS_DURING,
        work_dir.path().join("during.jsonl"),
    );
    let producing = {
        let during = during.clone();
        std::thread::spawn(move || {
            during.run_with(&[
                "--idempotent".to_owned(),
                "--client-id".to_owned(),
                "e2e,sluice_az=b".to_owned(),
                "--rate".to_owned(),
                RECORDS_DURING_PER_SECOND.to_string(),
            ])
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while head() < 10 {
        assert!(Instant::now() < deadline, "b appended nothing in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }

    let pid = i32::try_from(a.pid().unwrap()).unwrap();
    // SAFETY: signals to a child process this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let paused_at = Instant::now();
    let head_at_pause = head();
    // Until B's checkpoints have truncated several intervals past anything A could have applied.
    let log_start = || postgres.query_i64("SELECT coalesce(min(position), 0) FROM sluice_log");
    while log_start() <= head_at_pause + 1 + 4 {
        assert!(
            Instant::now() < paused_at + Duration::from_secs(60),
            "b's checkpoints did not truncate the log past a in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lease_held = postgres.query_i64(
        "SELECT count(*) FROM sluice_agents WHERE agent_id = 'a' AND lease_expires_at > now()",
    );
    let incarnation_paused =
        postgres.query_i64("SELECT incarnation FROM sluice_agents WHERE agent_id = 'a'");
    let paused_for = paused_at.elapsed();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let resumed_at = Instant::now();
    assert_eq!(
        lease_held,
        1,
        "a's lease expired while it was stopped ({:.1} s): this test needs it held",
        paused_for.as_secs_f64()
    );
    loud(&format!(
        "{test}: a stopped at head {head_at_pause} for {:.2} s, its lease held; the log then \
         started at {}",
        paused_for.as_secs_f64(),
        log_start()
    ));

    let a_log =
        check_rejoined_from_a_checkpoint(test, &cluster, &postgres, incarnation_paused, resumed_at);
    assert!(
        a_log.contains("BEHIND THE LOG'S TRUNCATION"),
        "a's tailer did not report the truncation; its log:\n{}",
        a.log_tail()
    );
    assert!(
        !a_log.contains("LEASE LOST"),
        "a lost its lease: this test is about a lease that holds; its log:\n{}",
        a.log_tail()
    );
    let (produced_during, status) = producing.join().unwrap().unwrap();
    assert!(
        status.success() && produced_during.errors.is_empty(),
        "producing through b failed ({status}): {:?}",
        produced_during.errors
    );
    produce_through_a_and_read_back_from_a(
        client,
        &cluster,
        work_dir.path(),
        vec![(during_generator, during, produced_during)],
    );
    loud(&format!(
        "{test}: {RECORDS_DURING} records through b around the pause and {RECORDS} through a after \
         its rejoin, all read back from a at their offsets"
    ));
}

/// After A's resume: its log says it rejoined, from a checkpoint, as a newer incarnation than
/// `incarnation_paused`, and it is neither fenced nor unready. Returns A's log.
fn check_rejoined_from_a_checkpoint(
    test: &str,
    cluster: &Cluster,
    postgres: &TestPostgres,
    incarnation_paused: i64,
    resumed_at: Instant,
) -> String {
    let a = &cluster.agents[0];
    let a_log = wait_for_log_line(&a.log(), "rejoined the cluster", || a.log_tail());
    let rejoined_after = resumed_at.elapsed();
    assert!(
        a_log.contains("swapped in the newest checkpoint"),
        "a rejoined without reloading a checkpoint; its log:\n{}",
        a.log_tail()
    );
    assert!(
        !a_log.contains("not rejoining"),
        "a refused to rejoin; its log:\n{}",
        a.log_tail()
    );
    let rejoin_line = a_log
        .lines()
        .find(|line| line.contains("rejoined the cluster"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        rejoin_line.contains("checkpoint_reloaded=Some("),
        "the rejoin did not say which checkpoint it reloaded: {rejoin_line}"
    );
    let incarnation_rejoined = postgres.query_i64(
        "SELECT coalesce(max(incarnation), 0) FROM sluice_agents WHERE agent_id = 'a' AND lease_expires_at > now()",
    );
    assert!(
        incarnation_rejoined > incarnation_paused,
        "a rejoined as incarnation {incarnation_rejoined}, not after {incarnation_paused}"
    );
    let a_metrics = cluster.metrics(0).unwrap();
    assert_eq!(metric_sum(&a_metrics, "sluice_log_fenced", ""), 0.0);
    assert_eq!(metric_sum(&a_metrics, "sluice_ready", ""), 1.0);
    let rejoin_fields = rejoin_line
        .split_once("accepting writes again")
        .map_or(rejoin_line.as_str(), |(_, fields)| fields);
    loud(&format!(
        "{test}: a rejoined {:.2} s after SIGCONT as incarnation {incarnation_rejoined} \
         (paused as {incarnation_paused}):{rejoin_fields}",
        rejoined_after.as_secs_f64()
    ));
    a_log
}

/// A takes produce again — a producer in its zone is sent to it for every partition, and A
/// appends windows — and every record acknowledged in `earlier` and now is read back from A
/// (consumers in A's zone), once, at its offset.
fn produce_through_a_and_read_back_from_a(
    client: ClientKind,
    cluster: &Cluster,
    work_dir: &std::path::Path,
    mut runs: Vec<(RecordGenerator, ClientRun, Report)>,
) {
    let a = &cluster.agents[0];
    let windows_before = metric_sum(
        &cluster.metrics(0).unwrap(),
        "sluice_log_entries_appended_total",
        "",
    );
    let (after_generator, after) = produce_run(
        client,
        a.bootstrap(),
        "truncation-after",
        33,
        RECORDS,
        work_dir.join("after.jsonl"),
    );
    let (produced_after, status) = after
        .run_with(&[
            "--idempotent".to_owned(),
            "--client-id".to_owned(),
            ZONE_A_CLIENT_ID.to_owned(),
        ])
        .unwrap();
    assert!(
        status.success() && produced_after.errors.is_empty(),
        "producing through a after its rejoin failed ({status}): {:?}; a's log:\n{}",
        produced_after.errors,
        a.log_tail()
    );
    let windows_after = metric_sum(
        &cluster.metrics(0).unwrap(),
        "sluice_log_entries_appended_total",
        "",
    );
    assert!(
        windows_after > windows_before,
        "a appended no window after its rejoin ({windows_before} before, {windows_after} after)"
    );
    runs.push((after_generator, after, produced_after));
    for (generator, run, produced) in &runs {
        let consume = ClientRun {
            bootstrap: a.bootstrap(),
            mode: Mode::Consume,
            report: work_dir.join(format!("consume-{}.jsonl", run.topic)),
            ..run.clone()
        };
        let (consumed, status) = consume
            .run_with(&["--client-id".to_owned(), ZONE_A_CLIENT_ID.to_owned()])
            .unwrap();
        assert!(
            status.success() && consumed.errors.is_empty(),
            "consuming {} from a failed ({status}): {:?}",
            run.topic,
            consumed.errors
        );
        verify(
            generator,
            &produced.acks,
            &consumed.records,
            Expectation::ExactlyOnce {
                records: run.records,
            },
        )
        .unwrap_or_else(|problems| panic!("{}:\n{problems}", run.topic));
    }
}
