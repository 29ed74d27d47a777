//! Scenario: two agents of one cluster (`--metadata postgres://…`) on one bucket and one
//! PostgreSQL, each tailing the sequencer and applying every agent's records.
//!
//! 1. franz-go produces through agent A; franz-go reads everything back through agent B: every
//!    acknowledged record is served by B at the offset A acknowledged it with.
//! 2. Two idempotent franz-go producers (`--idempotent`) write to the *same* topic at
//!    once, one through each agent; offsets come from the shared order, so no offset is
//!    acknowledged twice, each partition's offsets are contiguous, and both agents serve the same
//!    records at the same offsets, each producer's records intact at the offsets it was told.
//!
//! 3. Failover: a franz-go producer bootstrapped with both agents; agent A is killed with kill -9
//!    mid-run and not restarted. A's lease runs out, B's Metadata then names only B, and the
//!    producer finishes through B; every record acknowledged by either agent is served by B at its
//!    offset.
//!
//! 4. A paused agent: A is stopped with SIGSTOP until the database's clock has expired its lease,
//!    then resumed. It must not take another write (its next renewal finds the lease lost, and no
//!    append starts past its lease's local deadline meanwhile), and it stops naming itself in
//!    Metadata: a producer bootstrapped with A alone finishes through B. No offset is assigned
//!    twice: records written before the pause and after it are all served at their offsets.
//!    Then A rejoins by itself as a new incarnation (its log says `rejoined`, with a new data
//!    token) and takes produce again: a producer in A's zone, bootstrapped with A alone, is sent
//!    to A for every partition, A appends its windows, and B serves those records at their
//!    offsets too.
//!
//! PostgreSQL, the store server or the Go toolchain missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::{Cluster, ClusterPair, SluiceAgent, metric_sum};
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify, verify_share};

const RECORDS: u64 = 20_000;

fn cluster_args(postgres: &TestPostgres, agent: &str, zone: &str) -> Vec<String> {
    sluice_tests::sluice::cluster_args(&postgres.url(), agent, zone, &[])
}

#[test]
fn two_agents_serve_one_log_and_accept_produce_for_the_same_partitions() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "two sluice agents on one cluster";
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
    let a = SluiceAgent::start_with_args(&*store, "cluster", &cluster_args(&postgres, "a", "a"))
        .unwrap();
    let b = SluiceAgent::start_with_args(&*store, "cluster", &cluster_args(&postgres, "b", "b"))
        .unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-cluster-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();

    // 1. Produce through A, read through B.
    let generator = RecordGenerator {
        seed: 15,
        partitions: PARTITIONS,
        timestamp_base_ms: timestamp_base_ms(),
    };
    let produce = ClientRun {
        client,
        bootstrap: a.bootstrap(),
        topic: "cluster-a-to-b".to_string(),
        records: RECORDS,
        codec: Codec::Zstd,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed: generator.seed,
        timestamp_base_ms: generator.timestamp_base_ms,
        timeout_s: PHASE_TIMEOUT_S,
        report: work_dir.path().join("produce-a.jsonl"),
    };
    let (produced, status) = produce.run().unwrap();
    assert!(
        status.success() && produced.errors.is_empty(),
        "producing through A failed ({status}): {:?}; A's log:\n{}",
        produced.errors,
        a.log_tail()
    );
    let consume = ClientRun {
        bootstrap: b.bootstrap(),
        mode: Mode::Consume,
        report: work_dir.path().join("consume-b.jsonl"),
        ..produce.clone()
    };
    let (consumed, status) = consume.run().unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading through B failed ({status}): {:?}; B's log:\n{}",
        consumed.errors,
        b.log_tail()
    );
    let summary = verify(
        &generator,
        &produced.acks,
        &consumed.records,
        Expectation::ExactlyOnce { records: RECORDS },
    )
    .unwrap_or_else(|problems| panic!("produced through A, read through B:\n{problems}"));
    loud(&format!(
        "{test}: {} records acknowledged by A all served by B at their offsets",
        summary.acknowledged
    ));

    // 2. Both agents take produce for the same topic at once.
    let topic = "cluster-both".to_string();
    let runs: Vec<(RecordGenerator, ClientRun)> = [(&a, 16, "a"), (&b, 17, "b")]
        .into_iter()
        .map(|(agent, seed, name)| {
            let generator = RecordGenerator {
                seed,
                partitions: PARTITIONS,
                timestamp_base_ms: timestamp_base_ms(),
            };
            let run = ClientRun {
                client,
                bootstrap: agent.bootstrap(),
                topic: topic.clone(),
                records: RECORDS,
                codec: Codec::Lz4,
                mode: Mode::Produce,
                partitions: PARTITIONS,
                seed,
                timestamp_base_ms: generator.timestamp_base_ms,
                timeout_s: PHASE_TIMEOUT_S,
                report: work_dir.path().join(format!("produce-both-{name}.jsonl")),
            };
            (generator, run)
        })
        .collect();
    let mut producers: Vec<_> = runs
        .iter()
        .map(|(_, run)| run.spawn_with(&["--idempotent".to_owned()]).unwrap())
        .collect();
    let mut reports = Vec::new();
    for (producer, (_, run)) in producers.iter_mut().zip(&runs) {
        let status = producer
            .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
            .unwrap();
        let report = Report::read(&run.report).unwrap();
        assert!(
            status.success() && report.errors.is_empty(),
            "a producer through {} failed ({status}): {:?}",
            run.bootstrap,
            report.errors
        );
        assert_eq!(report.acks.len() as u64, RECORDS);
        reports.push(report);
    }
    let mut served_by_agent = Vec::new();
    for (agent, name) in [(&a, "a"), (&b, "b")] {
        let consume = ClientRun {
            bootstrap: agent.bootstrap(),
            mode: Mode::Consume,
            report: work_dir.path().join(format!("consume-both-{name}.jsonl")),
            ..runs[0].1.clone()
        };
        let (consumed, status) = consume.run().unwrap();
        assert!(
            status.success() && consumed.errors.is_empty(),
            "reading the shared topic through {name} failed ({status}): {:?}",
            consumed.errors
        );
        // The consumer reads partitions concurrently: compare in (partition, offset) order.
        let mut records = consumed.records;
        records.sort_by_key(|record| (record.partition, record.offset));
        served_by_agent.push(records);
    }
    assert_eq!(
        served_by_agent[0], served_by_agent[1],
        "the two agents serve different records for the same topic"
    );
    let served = &served_by_agent[0];
    assert_eq!(served.len() as u64, 2 * RECORDS, "records served");
    // Every partition's offsets contiguous from 0, and every offset acknowledged exactly once,
    // to one producer or the other.
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in served {
        offsets
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    for (partition, offsets) in &offsets {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, &expected, "partition {partition}'s offsets");
    }
    let mut acknowledged = HashSet::new();
    for report in &reports {
        for ack in &report.acks {
            assert!(
                acknowledged.insert((ack.partition, ack.offset)),
                "partition {} offset {} acknowledged twice",
                ack.partition,
                ack.offset
            );
        }
    }
    // Each producer's records, intact at the offsets it was told.
    for ((generator, _), report) in runs.iter().zip(&reports) {
        verify_share(
            generator,
            &report.acks,
            served,
            Expectation::ExactlyOnce { records: RECORDS },
        )
        .unwrap_or_else(|problems| panic!("producer with seed {}:\n{problems}", generator.seed));
    }
    loud(&format!(
        "{test}: {} records from two producers through two agents, one order, the same on both",
        served.len()
    ));
    // Both agents registered, and both are live.
    assert_eq!(
        postgres.query_i64(
            "SELECT count(*) FROM sluice_agents WHERE lease_expires_at > now() AND agent_id IN ('a', 'b')"
        ),
        2
    );
}

/// Records of the failover run: enough that the producer is still sending when A dies.
const FAILOVER_RECORDS: u64 = 200_000;
/// A is killed once this many acknowledgements are in the producer's report.
const ACKS_BEFORE_KILL: usize = 20_000;
const ACK_WAIT_TIMEOUT_S: u64 = 120;

#[test]
fn kill_9_of_one_agent_moves_producers_to_the_other() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster failover after kill -9";
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
    // A lease of 3 s (renewed every second): the dead agent leaves the others' Metadata within
    // about 4 s of its last renewal.
    let mut pair = ClusterPair::start(
        &*store,
        "failover",
        &postgres.url(),
        "lease_ms = 3000\n",
        &[],
    )
    .unwrap();
    let (a, b) = (&mut pair.a, &pair.b);
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-failover-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();
    let generator = RecordGenerator {
        seed: 18,
        partitions: PARTITIONS,
        timestamp_base_ms: timestamp_base_ms(),
    };
    let produce = ClientRun {
        client,
        bootstrap: format!("{},{}", a.bootstrap(), b.bootstrap()),
        topic: "cluster-failover".to_string(),
        records: FAILOVER_RECORDS,
        codec: Codec::Lz4,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed: generator.seed,
        timestamp_base_ms: generator.timestamp_base_ms,
        timeout_s: PHASE_TIMEOUT_S,
        report: work_dir.path().join("produce.jsonl"),
    };
    let mut producer = produce.spawn().unwrap();
    let acks_in_report = || {
        std::fs::read_to_string(&produce.report)
            .map(|text| text.matches("\"kind\":\"ack\"").count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(ACK_WAIT_TIMEOUT_S);
    let acks_at_kill = loop {
        let acks = acks_in_report();
        if acks >= ACKS_BEFORE_KILL {
            break acks;
        }
        assert!(
            producer.try_status().unwrap().is_none(),
            "the producer finished before the kill ({} acks); raise FAILOVER_RECORDS. Its log:\n{}",
            acks_in_report(),
            sluice_tests::process::log_tail(&produce.log_path())
        );
        assert!(Instant::now() < deadline, "too few acks before the kill");
        std::thread::sleep(Duration::from_millis(50));
    };
    a.kill9().unwrap();
    let killed_at = Instant::now();
    loud(&format!(
        "{test}: agent a killed with {acks_at_kill} of {FAILOVER_RECORDS} acknowledgements in the report"
    ));
    let status = producer
        .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
        .unwrap();
    let produced = Report::read(&produce.report).unwrap();
    loud(&format!(
        "{test}: producer exited with {status} {:.1} s after the kill, {} acks, errors {:?}",
        killed_at.elapsed().as_secs_f64(),
        produced.acks.len(),
        produced.errors
    ));
    assert!(
        produced.acks.len() as u64 == FAILOVER_RECORDS,
        "the producer did not finish through b: {} of {FAILOVER_RECORDS} acknowledged; b's log:\n{}",
        produced.acks.len(),
        b.log_tail()
    );
    let consume = ClientRun {
        bootstrap: b.bootstrap(),
        mode: Mode::Consume,
        report: work_dir.path().join("consume.jsonl"),
        ..produce.clone()
    };
    let (consumed, status) = consume.run().unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading through b failed ({status}): {:?}; b's log:\n{}",
        consumed.errors,
        b.log_tail()
    );
    let summary = verify(
        &generator,
        &produced.acks,
        &consumed.records,
        Expectation::AcknowledgedSurvive,
    )
    .unwrap_or_else(|problems| panic!("after kill -9 of a, read through b:\n{problems}"));
    loud(&format!(
        "{test}: {} acknowledged records (by a or b) all served by b at their offsets ({} served)",
        summary.acknowledged, summary.consumed
    ));
    assert_eq!(
        postgres.query_i64(
            "SELECT count(*) FROM sluice_agents WHERE lease_expires_at > now() AND agent_id = 'a'"
        ),
        0,
        "the killed agent still holds a lease"
    );
}

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

#[test]
fn an_agent_paused_past_its_lease_stops_taking_writes_then_rejoins() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster agent paused past its lease";
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
        "paused",
        &postgres.url(),
        "lease_ms = 3000\n",
        &[],
        2,
    )
    .unwrap();
    let (a, b) = (&cluster.agents[0], &cluster.agents[1]);
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-paused-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();

    let (before_generator, before) = produce_run(
        client,
        a.bootstrap(),
        "paused-before",
        19,
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
    let deadline = paused_at + Duration::from_secs(60);
    while postgres.query_i64(
        "SELECT count(*) FROM sluice_agents WHERE agent_id = 'a' AND lease_expires_at < now()",
    ) == 0
    {
        assert!(Instant::now() < deadline, "a's lease never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    loud(&format!(
        "{test}: a's lease expired {:.1} s after SIGSTOP",
        paused_at.elapsed().as_secs_f64()
    ));
    let incarnation_paused =
        postgres.query_i64("SELECT incarnation FROM sluice_agents WHERE agent_id = 'a'");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let resumed_at = Instant::now();

    // Bootstrapped with the resumed agent alone: nothing is appended under its old lease; the
    // producer finishes through b, or through a once it has rejoined.
    let (after_generator, after) = produce_run(
        client,
        a.bootstrap(),
        "paused-after",
        20,
        RECORDS,
        work_dir.path().join("after.jsonl"),
    );
    // Idempotent, as are the next: while a rejoins, the agents' views differ for up to a third
    // of a lease (b lists a again only at its next renewal), so the producer may drop its
    // connection to a with a request in flight and send it again elsewhere — a duplicate for a
    // producer without idempotence, deduplicated by the state machine for one with it.
    let (produced_after, status) = after.run_with(&["--idempotent".to_owned()]).unwrap();
    assert!(
        status.success() && produced_after.errors.is_empty(),
        "producing after the pause failed ({status}): {:?}; a's log:\n{}",
        produced_after.errors,
        a.log_tail()
    );
    assert!(
        std::fs::read_to_string(a.log())
            .unwrap()
            .contains("LEASE LOST"),
        "a never noticed its lease was lost; its log:\n{}",
        a.log_tail()
    );
    // a rejoins by itself, as a new incarnation, and takes produce again: a producer in a's
    // zone is sent to a for every partition.
    let deadline = resumed_at + Duration::from_secs(60);
    while !std::fs::read_to_string(a.log())
        .unwrap()
        .contains("rejoined the cluster")
    {
        assert!(
            Instant::now() < deadline,
            "a never rejoined; its log:\n{}",
            a.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let windows_before = metric_sum(&a_metrics, "sluice_log_entries_appended_total", "");
    let (rejoined_generator, rejoined) = produce_run(
        client,
        a.bootstrap(),
        "paused-rejoined",
        21,
        RECORDS,
        work_dir.path().join("rejoined.jsonl"),
    );
    let (produced_rejoined, status) = rejoined
        .run_with(&[
            "--idempotent".to_owned(),
            "--client-id".to_owned(),
            "e2e,sluice_az=a".to_owned(),
        ])
        .unwrap();
    assert!(
        status.success() && produced_rejoined.errors.is_empty(),
        "producing through a after its rejoin failed ({status}): {:?}; a's log:\n{}",
        produced_rejoined.errors,
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
    loud(&format!(
        "{test}: a rejoined as incarnation {incarnation_rejoined} (paused as {incarnation_paused}) \
         and appended {} windows of the producer sent to it",
        windows_after - windows_before
    ));
    for ((generator, run), produced) in [
        ((&before_generator, &before), &produced_before),
        ((&after_generator, &after), &produced_after),
        ((&rejoined_generator, &rejoined), &produced_rejoined),
    ] {
        let consume = ClientRun {
            bootstrap: b.bootstrap(),
            mode: Mode::Consume,
            report: work_dir.path().join(format!("consume-{}.jsonl", run.topic)),
            ..run.clone()
        };
        let (consumed, status) = consume.run().unwrap();
        assert!(status.success() && consumed.errors.is_empty(), "{status}");
        verify(
            generator,
            &produced.acks,
            &consumed.records,
            Expectation::ExactlyOnce { records: RECORDS },
        )
        .unwrap_or_else(|problems| panic!("{}:\n{problems}", run.topic));
    }
    loud(&format!(
        "{test}: {RECORDS} records before the pause, {RECORDS} after and {RECORDS} through a after \
         its rejoin, all at their offsets"
    ));
}

/// A lease lost to another registration of the same agent id (a restart elsewhere, say) belongs
/// to that process: the agent must not rejoin, or the two would take the id from each other in
/// turn. Here "another process" is a registration written straight into the database.
#[test]
fn an_agent_whose_id_another_process_registered_does_not_rejoin() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster agent superseded by another registration of its id";
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let cluster = Cluster::start(
        &*store,
        "superseded",
        &postgres.url(),
        "lease_ms = 3000\n",
        &[],
        1,
    )
    .unwrap();
    let a = &cluster.agents[0];
    let log_says =
        |text: &str| std::fs::read_to_string(a.log()).is_ok_and(|log| log.contains(text));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_says("registered with the cluster") {
        assert!(Instant::now() < deadline, "a never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the registration statement does for another process with the same agent id.
    let superseding = postgres.query_i64(
        "WITH registered AS (UPDATE sluice_agents SET incarnation = incarnation + 1, \
         lease_expires_at = now() + INTERVAL '1 hour', roles = ARRAY['broker'] \
         WHERE agent_id = 'a' RETURNING incarnation) SELECT incarnation FROM registered",
    );
    while !log_says("not rejoining the cluster") {
        assert!(
            Instant::now() < deadline,
            "a did not give its id up; its log:\n{}",
            a.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log_says("LEASE LOST"), "{}", a.log_tail());
    assert!(!log_says("rejoined the cluster"), "{}", a.log_tail());
    assert_eq!(
        postgres.query_i64("SELECT incarnation FROM sluice_agents WHERE agent_id = 'a'"),
        superseding,
        "a registered its id again"
    );
    let metrics = cluster.metrics(0).unwrap();
    assert_eq!(metric_sum(&metrics, "sluice_log_fenced", ""), 1.0);
    assert_eq!(metric_sum(&metrics, "sluice_ready", ""), 0.0);
    loud(&format!(
        "{test}: a lost its lease to incarnation {superseding} and stayed out"
    ));
}
