//! Scenario: garbage collection of a cluster's window objects (`data/…`), with two agent
//! processes on one bucket (the loopback S3 server) and one PostgreSQL.
//!
//! 1. An object is planted under a token no agent holds (`data/0000000001/…`): a killed agent's
//!    window whose record never reached the sequencer.
//! 2. A franz-go producer bootstrapped with both agents writes records stamped an hour ago, under
//!    a retention of an hour and a minute; agent A is killed with kill -9 mid-run (its windows in
//!    flight are left behind) and the producer finishes through B. B serves every acknowledged
//!    record at its offset.
//! 3. Retention then drops every one of them. The test waits (polling, with a deadline) until the
//!    bucket's `data/` holds exactly what the cluster's state references — the planted object,
//!    A's leftovers, the expired windows and the retention commands' own windows all gone — and
//!    checks at every poll that no object the state references is missing. The state is read as
//!    a new agent would: a fresh recovery from the newest checkpoint and the sequencer's records.
//! 4. A second producer writes records stamped now (inside retention) through B; after the bucket
//!    settles again, B serves every one of them at its offset.
//!
//! PostgreSQL or the Go toolchain missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_engine::log::data_gc::list_agent_objects;
use sluice_engine::log::{LogConfig, SequencedLog};
use sluice_engine::sequencer::{SequencerClient, SequencerConfig};
use sluice_engine::store::{
    ObjectStorage, S3TestServer, StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store,
};
use sluice_engine::types::{LogSeq, agent_object_id, object_key};
use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::{ClusterPair, fast_housekeeping_args};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

const PREFIX: &str = "cluster-gc";
const RECORDS: u64 = 60_000;
const ACKS_BEFORE_KILL: usize = 10_000;
const ACK_WAIT_TIMEOUT_S: u64 = 120;
/// Records stamped [`timestamp_base_ms`] (an hour ago) expire a minute after they were written.
const RETENTION_MS: i64 = 3_660_000;
/// Retention a minute after the first phase, then the record grace (a 3 s lease plus twice the
/// sequencer's 10 s operation timeout) and the 2 s delete delay, on a loaded machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

fn store_of(server: &S3TestServer) -> Arc<dyn ObjectStorage> {
    let inner = open_store(&StoreConfig::from_url(&server.store_url(PREFIX)).unwrap()).unwrap();
    StoreRuntime::start(
        inner,
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 16,
            ..StoreRuntimeConfig::default()
        },
    )
    .unwrap()
}

/// The window objects the cluster's state references, recovered as a new agent would, and the
/// `data/` objects in the bucket.
fn references_and_listing(
    store: &Arc<dyn ObjectStorage>,
    sequencer: &SequencerClient,
) -> (BTreeSet<LogSeq>, BTreeSet<LogSeq>) {
    // Listed first: whatever the recovery then references was committed before it was listed, so
    // a referenced object missing from the listing was deleted.
    let listed: BTreeSet<LogSeq> = futures::executor::block_on(list_agent_objects(store.as_ref()))
        .unwrap()
        .into_iter()
        .collect();
    let (log, _) = futures::executor::block_on(SequencedLog::open(
        Arc::clone(store),
        sequencer.clone(),
        LogConfig::default(),
    ))
    .unwrap();
    let referenced = log.with_state(|state| state.referenced_agent_objects());
    (referenced, listed)
}

/// Polls until `data/` holds exactly what the state references (and `gone` is gone; with
/// `empty`, until it holds nothing at all), asserting at every poll that nothing referenced is
/// missing. Returns the objects left.
fn wait_until_settled(
    store: &Arc<dyn ObjectStorage>,
    sequencer: &SequencerClient,
    gone: LogSeq,
    empty: bool,
    stage: &str,
    agent_log: &dyn Fn() -> String,
) -> usize {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let started = Instant::now();
    loop {
        let (referenced, listed) = references_and_listing(store, sequencer);
        let missing: Vec<&LogSeq> = referenced.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "{stage}: referenced objects were deleted: {:?}",
            missing
                .iter()
                .map(|id| object_key(**id))
                .collect::<Vec<_>>()
        );
        let unreferenced: Vec<&LogSeq> = listed.difference(&referenced).collect();
        if unreferenced.is_empty() && !listed.contains(&gone) && (!empty || listed.is_empty()) {
            loud(&format!(
                "cluster gc: {stage}: settled after {:.1} s, {} objects, all referenced",
                started.elapsed().as_secs_f64(),
                listed.len()
            ));
            return listed.len();
        }
        assert!(
            Instant::now() < deadline,
            "{stage}: {} unreferenced and {} referenced objects still in data/ after {SETTLE_TIMEOUT:?} (planted one there: {}): {:?}; b's log:\n{}",
            unreferenced.len(),
            referenced.len(),
            listed.contains(&gone),
            unreferenced
                .iter()
                .take(8)
                .map(|id| object_key(**id))
                .collect::<Vec<_>>(),
            agent_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn data_objects_nobody_references_are_collected_and_nothing_referenced_is() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "cluster garbage collection of data/";
    let client = ClientKind::Go;
    if !require(test, &client.tools()) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let server = S3TestServer::start().unwrap();
    let store = store_of(&server);
    // A window a killed agent PUT and never committed, under a token no agent will take (an
    // agent chooses a token whose folder is empty).
    let planted = agent_object_id(1, 0);
    futures::executor::block_on(store.put_create(
        &object_key(planted),
        vec![b"an orphaned window".to_vec().into()],
    ))
    .unwrap();

    let toml = format!("lease_ms = 3000\nlog_retention_ms = {RETENTION_MS}\n");
    let mut pair = ClusterPair::start(
        &server,
        PREFIX,
        &postgres.url(),
        &toml,
        &fast_housekeeping_args(),
    )
    .unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-cluster-gc-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();

    // 1. Produce through both; kill -9 A mid-run.
    let expiring = ClientRun {
        client,
        bootstrap: format!("{},{}", pair.a.bootstrap(), pair.b.bootstrap()),
        topic: "cluster-gc-expiring".to_string(),
        records: RECORDS,
        codec: Codec::Lz4,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed: 31,
        timestamp_base_ms: timestamp_base_ms(),
        timeout_s: PHASE_TIMEOUT_S,
        report: work_dir.path().join("expiring.jsonl"),
    };
    let mut producer = expiring.spawn().unwrap();
    let acks = || {
        std::fs::read_to_string(&expiring.report)
            .map(|text| text.matches("\"kind\":\"ack\"").count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(ACK_WAIT_TIMEOUT_S);
    while acks() < ACKS_BEFORE_KILL {
        assert!(
            producer.try_status().unwrap().is_none(),
            "the producer finished before the kill; raise RECORDS"
        );
        assert!(Instant::now() < deadline, "too few acks before the kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    pair.a.kill9().unwrap();
    loud(&format!("{test}: agent a killed after {} acks", acks()));
    let status = producer
        .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
        .unwrap();
    let produced = Report::read(&expiring.report).unwrap();
    assert!(
        produced.acks.len() as u64 == RECORDS,
        "the producer ({status}) did not finish through b: {} of {RECORDS}; b's log:\n{}",
        produced.acks.len(),
        pair.b.log_tail()
    );
    // The producer may have had every acknowledgement before the kill (its report is written in
    // 1 MiB blocks): wait until B no longer lists A (A's lease ran out and B renewed since), or
    // B's Metadata would still send the reader to A's closed port.
    let deadline = Instant::now() + Duration::from_secs(ACK_WAIT_TIMEOUT_S);
    while sluice_tests::api_versions::metadata_brokers(pair.b.address())
        .unwrap()
        .len()
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "b still lists a long after the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let consume = ClientRun {
        bootstrap: pair.b.bootstrap(),
        mode: Mode::Consume,
        report: work_dir.path().join("expiring.consume.jsonl"),
        ..expiring.clone()
    };
    let (consumed, status) = consume.run().unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading through b failed ({status}): {:?}",
        consumed.errors
    );
    let generator = RecordGenerator {
        seed: expiring.seed,
        partitions: PARTITIONS,
        timestamp_base_ms: expiring.timestamp_base_ms,
    };
    verify(
        &generator,
        &produced.acks,
        &consumed.records,
        Expectation::AcknowledgedSurvive,
    )
    .unwrap_or_else(|problems| panic!("before retention, read through b:\n{problems}"));

    // 2. Retention drops them all; the bucket settles to what the state references.
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), "sluice")).unwrap();
    let (referenced, listed) = references_and_listing(&store, &sequencer);
    loud(&format!(
        "{test}: after the first phase data/ holds {} objects, {} referenced",
        listed.len(),
        referenced.len()
    ));
    let b_log = || pair.b.log_tail();
    let left = wait_until_settled(&store, &sequencer, planted, true, "after retention", &b_log);
    assert_eq!(left, 0, "every window of the first phase expired");
    let b_said = std::fs::read_to_string(pair.b.log()).unwrap();
    assert!(
        b_said.contains("data_deleted"),
        "b never logged a data sweep; its log:\n{}",
        pair.b.log_tail()
    );

    // 3. Records inside retention: written, collected around, read back.
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let kept = ClientRun {
        bootstrap: pair.b.bootstrap(),
        topic: "cluster-gc-kept".to_string(),
        records: 20_000,
        seed: 32,
        timestamp_base_ms: now_ms,
        report: work_dir.path().join("kept.jsonl"),
        ..expiring.clone()
    };
    let (produced, status) = kept.run().unwrap();
    assert!(status.success() && produced.errors.is_empty(), "{status}");
    let left = wait_until_settled(
        &store,
        &sequencer,
        planted,
        false,
        "after the kept phase",
        &b_log,
    );
    assert!(left > 0, "the kept records' windows are in data/");
    let consume = ClientRun {
        mode: Mode::Consume,
        report: work_dir.path().join("kept.consume.jsonl"),
        ..kept.clone()
    };
    let (consumed, status) = consume.run().unwrap();
    assert!(status.success() && consumed.errors.is_empty(), "{status}");
    let generator = RecordGenerator {
        seed: kept.seed,
        partitions: PARTITIONS,
        timestamp_base_ms: kept.timestamp_base_ms,
    };
    let summary = verify(
        &generator,
        &produced.acks,
        &consumed.records,
        Expectation::ExactlyOnce { records: 20_000 },
    )
    .unwrap_or_else(|problems| panic!("inside retention, after collection:\n{problems}"));
    loud(&format!(
        "{test}: {} records inside retention all served at their offsets; {left} objects in data/, all referenced",
        summary.acknowledged
    ));
}
