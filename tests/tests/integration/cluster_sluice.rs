//! Scenario: two agents of one cluster (`--metadata postgres://…`) on one bucket and one
//! PostgreSQL, each tailing the sequencer and applying every agent's records.
//!
//! 1. franz-go produces through agent A; franz-go reads everything back through agent B: every
//!    acknowledged record is served by B at the offset A acknowledged it with.
//! 2. Two franz-go producers (idempotent, as franz-go is by default) write to the *same* topic at
//!    once, one through each agent; offsets come from the shared order, so no offset is
//!    acknowledged twice, each partition's offsets are contiguous, and both agents serve the same
//!    records at the same offsets, each producer's records intact at the offsets it was told.
//!
//! PostgreSQL, the store server or the Go toolchain missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::{ConsumedRecord, Report};
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

const RECORDS: u64 = 20_000;

fn cluster_args(postgres: &TestPostgres, agent: &str, zone: &str) -> Vec<String> {
    [
        "--metadata",
        &postgres.url(),
        "--agent-id",
        agent,
        "--zone",
        zone,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
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
    let mut producers: Vec<_> = runs.iter().map(|(_, run)| run.spawn().unwrap()).collect();
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
        served_by_agent.push(consumed.records);
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
    // Each producer's records, intact at the offsets it was told: its records and its acks with
    // offsets renumbered densely per partition (order kept), so `verify`'s contiguity check
    // applies to one producer's share of a partition.
    for ((generator, _), report) in runs.iter().zip(&reports) {
        let ours: HashSet<(i32, i64)> = report
            .acks
            .iter()
            .map(|ack| (ack.partition, ack.offset))
            .collect();
        let mut dense: BTreeMap<(i32, i64), i64> = BTreeMap::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut records: Vec<ConsumedRecord> = Vec::new();
        for record in served {
            if !ours.contains(&(record.partition, record.offset)) {
                continue;
            }
            let slot = next.entry(record.partition).or_insert(0);
            dense.insert((record.partition, record.offset), *slot);
            records.push(ConsumedRecord {
                offset: *slot,
                ..record.clone()
            });
            *slot += 1;
        }
        let acks: Vec<_> = report
            .acks
            .iter()
            .map(|ack| {
                let offset = *dense.get(&(ack.partition, ack.offset)).unwrap_or_else(|| {
                    panic!(
                        "partition {} offset {} acknowledged (seed {}) but not served",
                        ack.partition, ack.offset, generator.seed
                    )
                });
                sluice_tests::report::Ack { offset, ..*ack }
            })
            .collect();
        verify(
            generator,
            &acks,
            &records,
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
