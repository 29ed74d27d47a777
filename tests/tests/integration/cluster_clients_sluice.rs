//! Scenario: three agents of one cluster (`--metadata postgres://…`, zones `a`, `b` and `c`) on
//! one bucket of the S3-API test server and one PostgreSQL, and three client libraries writing
//! one 24-partition topic through them at once (issue 15's "three agents, three clients").
//!
//! Each producer says its zone in its `client.id` (`sluice_az=ZONE`): the Java client `a`,
//! librdkafka `b`, franz-go `c`. Every agent names a partition's leader by rendezvous hashing
//! over the live agents of the client's zone, so each client sends every partition to the agent
//! of its zone — three agents appending windows for the same partitions at once, their offsets
//! assigned by the one order of the sequencer. The producers start once every agent's Metadata
//! lists all three (an agent learns of the agents started after it at its next lease renewal, a
//! third of a lease later). The agents' metrics show that each of them took produces and
//! appended windows.
//!
//! Then a franz-go consumer reads the whole topic from each agent in turn (its `client.id`
//! naming that agent's zone, so every fetch goes to that agent): the three agents serve the same
//! records at the same offsets, every partition's offsets are contiguous from 0, no offset was
//! acknowledged twice, the topic holds exactly the records acknowledged, and each producer's
//! records are intact, byte for byte, at the offsets it was told.
//!
//! PostgreSQL, the store server, a JVM and Maven, Go, or Python with confluent-kafka missing
//! skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::{Cluster, metric_sum};
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify_share};

/// Records each client produces.
const RECORDS_PER_CLIENT: u64 = 20_000;
const PARTITIONS: u32 = 24;

#[test]
fn three_agents_take_three_clients_on_one_topic_and_serve_the_same_records() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "three agents, three clients";
    // The producers, the agent (zone) each says it is near, and the codec it compresses with.
    let producers = [
        (ClientKind::Java, 0usize, Codec::Zstd),
        (ClientKind::Librdkafka, 1, Codec::Lz4),
        (ClientKind::Go, 2, Codec::Snappy),
    ];
    let tools: Vec<_> = producers
        .iter()
        .flat_map(|(client, _, _)| client.tools())
        .collect();
    if !require(test, &tools) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let cluster = Cluster::start(&*store, "three", &postgres.url(), "", &[], 3).unwrap();
    let zones = ["a", "b", "c"];
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-three-")
        .tempdir()
        .unwrap();
    for (client, _, _) in &producers {
        client.build(work_dir.path()).unwrap();
    }
    let produce_requests = |agent: usize| {
        let text = cluster.metrics(agent).unwrap();
        (
            metric_sum(&text, "sluice_requests_total", "request=\"Produce\""),
            metric_sum(&text, "sluice_log_entries_appended_total", ""),
        )
    };
    let before: Vec<(f64, f64)> = (0..3).map(produce_requests).collect();
    // Until an agent has listed the others (at its next renewal), its Metadata would send a
    // client of another zone's agent to the agents it knows.
    let listing = Instant::now();
    cluster
        .wait_until_all_listed(Duration::from_secs(60))
        .unwrap();
    loud(&format!(
        "{test}: every agent lists all three {:.1} s after the last one started",
        listing.elapsed().as_secs_f64()
    ));

    // All three producers at once, bootstrapped with every agent.
    let topic = "cluster-three-clients";
    let runs: Vec<(RecordGenerator, ClientRun, Vec<String>)> = producers
        .iter()
        .enumerate()
        .map(|(number, (client, agent, codec))| {
            let generator = RecordGenerator {
                seed: 40 + number as u64,
                partitions: PARTITIONS,
                timestamp_base_ms: timestamp_base_ms(),
            };
            let run = ClientRun {
                client: *client,
                bootstrap: cluster.bootstrap(),
                topic: topic.to_owned(),
                records: RECORDS_PER_CLIENT,
                codec: *codec,
                mode: Mode::Produce,
                partitions: PARTITIONS,
                seed: generator.seed,
                timestamp_base_ms: generator.timestamp_base_ms,
                timeout_s: PHASE_TIMEOUT_S,
                report: work_dir
                    .path()
                    .join(format!("produce-{}.jsonl", client.name())),
            };
            let client_id = vec![
                "--client-id".to_owned(),
                format!("e2e-{},sluice_az={}", client.name(), zones[*agent]),
            ];
            (generator, run, client_id)
        })
        .collect();
    let started = Instant::now();
    let mut children: Vec<_> = runs
        .iter()
        .map(|(_, run, client_id)| run.spawn_with(client_id).unwrap())
        .collect();
    let mut reports = Vec::new();
    for (child, (_, run, _)) in children.iter_mut().zip(&runs) {
        let status = child
            .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
            .unwrap();
        let report = Report::read(&run.report).unwrap();
        assert!(
            status.success() && report.errors.is_empty(),
            "the {} producer failed ({status}): {:?}; its log:\n{}",
            run.client.name(),
            report.errors,
            sluice_tests::process::log_tail(&run.log_path())
        );
        assert_eq!(report.acks.len() as u64, RECORDS_PER_CLIENT);
        reports.push(report);
    }
    loud(&format!(
        "{test}: {} records from three clients acknowledged in {:.1} s",
        3 * RECORDS_PER_CLIENT,
        started.elapsed().as_secs_f64()
    ));

    // Every agent took produces (its zone's client sent it every partition) and appended windows.
    for (agent, (produces_before, windows_before)) in before.iter().enumerate() {
        let (produces, windows) = produce_requests(agent);
        loud(&format!(
            "{test}: agent {} answered {} Produce requests and appended {} windows",
            zones[agent],
            produces - produces_before,
            windows - windows_before
        ));
        assert!(
            produces > *produces_before && windows > *windows_before,
            "agent {} took no produce ({produces} requests, {windows} windows); its log:\n{}",
            zones[agent],
            cluster.agents[agent].log_tail()
        );
    }

    // Read the whole topic from each agent: a client in the agent's zone fetches from it alone.
    let mut served_by_agent = Vec::new();
    for (agent, zone) in zones.iter().enumerate() {
        let consume = ClientRun {
            client: ClientKind::Go,
            bootstrap: cluster.agents[agent].bootstrap(),
            mode: Mode::Consume,
            report: work_dir.path().join(format!("consume-{zone}.jsonl")),
            ..runs[0].1.clone()
        };
        let (consumed, status) = consume
            .run_with(&[
                "--client-id".to_owned(),
                format!("e2e-reader,sluice_az={zone}"),
            ])
            .unwrap();
        assert!(
            status.success() && consumed.errors.is_empty(),
            "reading the topic from agent {zone} failed ({status}): {:?}; its log:\n{}",
            consumed.errors,
            cluster.agents[agent].log_tail()
        );
        let mut records = consumed.records;
        records.sort_by_key(|record| (record.partition, record.offset));
        served_by_agent.push(records);
    }
    for (agent, records) in served_by_agent.iter().enumerate().skip(1) {
        assert!(
            records == &served_by_agent[0],
            "agent {} serves other records than agent a ({} against {})",
            zones[agent],
            records.len(),
            served_by_agent[0].len()
        );
    }
    let served = &served_by_agent[0];
    assert_eq!(
        served.len() as u64,
        3 * RECORDS_PER_CLIENT,
        "records served"
    );
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in served {
        offsets
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    assert_eq!(
        offsets.len(),
        PARTITIONS as usize,
        "partitions with records"
    );
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
    for ((generator, run, _), report) in runs.iter().zip(&reports) {
        verify_share(
            generator,
            &report.acks,
            served,
            Expectation::ExactlyOnce {
                records: RECORDS_PER_CLIENT,
            },
        )
        .unwrap_or_else(|problems| panic!("the {} producer:\n{problems}", run.client.name()));
    }
    loud(&format!(
        "{test}: {} records in {PARTITIONS} partitions, contiguous, served alike by all three agents; \
         every record of every client intact at its offset ({:.1} s in all)",
        served.len(),
        started.elapsed().as_secs_f64()
    ));
}
