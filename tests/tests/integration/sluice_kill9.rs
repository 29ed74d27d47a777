//! Scenario: kill -9 the agent while a producer is running, start a fresh agent on the same bucket,
//! and find every acknowledged record at the offset it was acknowledged with, byte for byte
//! (DESIGN.md, invariant 3).
//!
//! franz-go produces (it retries through the outage and logs each acknowledgement with its offset
//! as it arrives); after the restart and the end of the producer, franz-go reads everything back and
//! the report is checked with [`Expectation::AcknowledgedSurvive`]: records never acknowledged may be
//! missing or, retried without idempotence, present twice, but no acknowledged one may be lost or
//! moved and every offset holds intact data.
//!
//! One test per object-store server (`s3s-fs`, SeaweedFS, fake-gcs-server, Azurite): the bucket
//! is where the records must survive, so each server's create-only writes, listings and reads are
//! what recovery relies on. A server that is not installed, or an agent that does not advertise
//! Produce and Fetch, skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use sluice_tests::api_versions::{MATRIX_APIS, missing};
use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require, skip_or_fail};
use sluice_tests::verify::{Expectation, verify};

/// Enough that the producer is still sending when the agent dies.
const RECORDS: u64 = 200_000;
/// The agent is killed once this many acknowledgements are in the producer's report.
const ACKS_BEFORE_KILL: usize = 20_000;
const ACK_WAIT_TIMEOUT_S: u64 = 120;

#[test]
fn acknowledged_records_survive_kill_9_and_restart() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    survive_kill_9_on(StoreServerKind::S3sFs);
}

#[test]
fn acknowledged_records_survive_kill_9_and_restart_on_seaweedfs() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    survive_kill_9_on(StoreServerKind::SeaweedFs);
}

#[test]
fn acknowledged_records_survive_kill_9_and_restart_on_fake_gcs_server() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    survive_kill_9_on(StoreServerKind::FakeGcs);
}

#[test]
fn acknowledged_records_survive_kill_9_and_restart_on_azurite() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    survive_kill_9_on(StoreServerKind::Azurite);
}

/// The same scenario for an agent of a cluster (`--metadata`): its windows go to its own keys and
/// their commit records to PostgreSQL; the restarted agent recovers from the newest checkpoint
/// (if any) and the sequencer's records after it. Small checkpoint intervals, so that recovery
/// starts from a checkpoint and the sequencer's log has been truncated behind it.
#[test]
fn acknowledged_records_survive_kill_9_and_restart_with_postgres_metadata() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "sluice kill -9 with --metadata postgres";
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let args = [
        "--metadata".to_owned(),
        postgres.url(),
        "--checkpoint-interval-entries".to_owned(),
        "2".to_owned(),
    ];
    survive_kill_9_with(StoreServerKind::S3sFs, test, &args);
    let records = postgres.query_i64("SELECT count(*) FROM sluice_log");
    let checkpointed = postgres.query_i64("SELECT min(position) FROM sluice_log");
    loud(&format!(
        "{test}: {records} records left in the sequencer's log, the oldest at position {checkpointed}"
    ));
    assert!(
        checkpointed > 1,
        "the sequencer's log was never truncated behind a checkpoint"
    );
}

fn survive_kill_9_on(kind: StoreServerKind) {
    let test = format!("sluice kill -9 on {}", kind.name());
    survive_kill_9_with(kind, &test, &[]);
}

fn survive_kill_9_with(kind: StoreServerKind, test: &str, args: &[String]) {
    let client = ClientKind::Go;
    if !require(test, &client.tools()) {
        return;
    }
    let Some(store) = start_or_skip(kind, test) else {
        return;
    };
    let mut agent = SluiceAgent::start_with_args(&*store, "kill9", args).unwrap();
    let absent = missing(&agent.advertised_apis().unwrap(), &MATRIX_APIS);
    if !absent.is_empty() {
        skip_or_fail(&format!(
            "{test}: sluice does not advertise {} (sluice_kill9 needs Produce and Fetch)",
            absent.join(", ")
        ));
        return;
    }
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-kill9-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();
    let generator = RecordGenerator {
        seed: 9,
        partitions: PARTITIONS,
        timestamp_base_ms: timestamp_base_ms(),
    };
    let produce = ClientRun {
        client,
        bootstrap: agent.bootstrap(),
        topic: "e2e-kill9".to_string(),
        records: RECORDS,
        codec: Codec::Lz4,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed: generator.seed,
        timestamp_base_ms: generator.timestamp_base_ms,
        timeout_s: PHASE_TIMEOUT_S,
        report: work_dir.path().join("produce.jsonl"),
    };
    let mut producer = produce.spawn().unwrap();

    // The report is flushed in 1 MiB blocks, so what is on disk trails what was acknowledged: the
    // kill comes a little later than ACKS_BEFORE_KILL, never earlier.
    let deadline = Instant::now() + Duration::from_secs(ACK_WAIT_TIMEOUT_S);
    let acks_at_kill = loop {
        let acks = std::fs::read_to_string(&produce.report)
            .map(|text| text.matches("\"kind\":\"ack\"").count())
            .unwrap_or(0);
        if acks >= ACKS_BEFORE_KILL {
            break acks;
        }
        assert!(
            producer.try_status().unwrap().is_none(),
            "the producer finished before the kill; raise RECORDS. Its log:\n{}",
            sluice_tests::process::log_tail(&produce.log_path())
        );
        assert!(
            Instant::now() < deadline,
            "fewer than {ACKS_BEFORE_KILL} acks after {ACK_WAIT_TIMEOUT_S} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    agent.kill9().unwrap();
    loud(&format!(
        "{test}: agent killed with {acks_at_kill} of {RECORDS} acknowledgements in the report"
    ));
    std::thread::sleep(Duration::from_millis(500));
    agent.restart().unwrap();

    let status = producer
        .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
        .unwrap();
    let produced = Report::read(&produce.report).unwrap();
    loud(&format!(
        "{test}: producer exited with {status}, {} acks, errors {:?}",
        produced.acks.len(),
        produced.errors
    ));
    assert!(
        produced.acks.len() >= ACKS_BEFORE_KILL,
        "acks were lost from the report itself"
    );

    let consume = ClientRun {
        mode: Mode::Consume,
        report: work_dir.path().join("consume.jsonl"),
        ..produce.clone()
    };
    let (consumed, status) = consume.run().unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "the consumer failed ({status}): {:?}; agent log:\n{}",
        consumed.errors,
        agent.log_tail()
    );
    let summary = verify(
        &generator,
        &produced.acks,
        &consumed.records,
        Expectation::AcknowledgedSurvive,
    )
    .unwrap_or_else(|problems| panic!("after kill -9 and restart:\n{problems}"));
    loud(&format!(
        "{test}: {} acknowledged records all served at their offsets ({} served in total)",
        summary.acknowledged, summary.consumed
    ));
}
