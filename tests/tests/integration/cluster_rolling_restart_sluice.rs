//! Scenario: a rolling restart of a three-agent cluster under load (zones `a`, `b`, `c`,
//! `lease_ms = 3000`, one PostgreSQL, one bucket of the S3-API test server).
//!
//! A first idempotent franz-go producer creates a 12-partition topic and writes 1,200 records. A
//! consumer group of three Java members (classic protocol, cooperative-sticky), each bootstrapped
//! at a different agent, consumes it, committing after every batch. Once the group has settled,
//! two idempotent franz-go producers, bootstrapped at all three agents, write 8,000 records
//! each at 400 records/s (20 s), and once the group has processed 800 of their records the
//! agents are restarted one after the other: SIGTERM (a graceful
//! stop: the last window settles, the agent deregisters), which must exit 0; once the other two
//! no longer list it (their next renewal: the groups it coordinated have moved to them), the same
//! agent is started again on the same bucket, database, port and agent id; once every agent's
//! Metadata lists all three again (its groups move back), the next one. The producers must still be running when the last
//! agent is back (else the restarts were not under load).
//!
//! What must hold: no client gives up (the producers exit 0 with every record acknowledged and no
//! error; no member reports an error or exits by itself, and each closes cleanly at the end); the
//! group processes every acknowledged record, never a committed one again, never commits
//! backwards, has no commit fail and no rebalance once it has settled (its coordinator moves
//! away and back with its state), and commits every partition to its end; and a franz-go consumer reading the topic
//! afterwards finds every acknowledged record exactly once, intact, at the offset its producer was
//! told, with contiguous offsets in every partition. Per restart the test prints how long the stop
//! and the start took and the longest pause in the group's processing from the stop until the
//! next restart (what the restart cost the consumers; the producers' own reports are written at
//! their end, so their pauses are not seen).
//!
//! PostgreSQL, the store server, Java and Maven, or Go missing skips loudly, or fails under
//! `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use sluice_tests::api_versions::metadata_brokers;
use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::groups::cluster_failover::{
    LEASE_MS, RollingGroup, check_group_consumed_every_ack, longest_pause_us,
};
use sluice_tests::groups::member::{GroupClient, now_us};
use sluice_tests::groups::scenario::{PARTITIONS, SLUICE_FLAGS};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::Cluster;
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify_share};

/// Records of the first producer, written before the group starts (it creates the topic).
const RECORDS_BEFORE: u64 = 1_200;
/// Records of each producer running through the restarts, and their pace: 20 s each, longer
/// than three restarts take here (1–2 s each).
const RECORDS_UNDER_LOAD: u64 = 8_000;
const RATE_PER_S: u32 = 400;
/// A graceful stop settles the last window and deregisters: well under a second, plus slack.
const STOP_TIMEOUT_S: u64 = 30;
/// Limit of each client run.
const CLIENT_TIMEOUT_S: u64 = 120;

#[test]
fn rolling_restart_of_three_agents_under_producers_and_a_group() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = "rolling restart";
    let client = GroupClient::JavaCooperative;
    let mut tools = client.library().tools();
    tools.extend(ClientKind::Go.tools());
    if !require(test, &tools) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let flags: Vec<String> = SLUICE_FLAGS
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        &*store,
        "rolling",
        &postgres.url(),
        &format!("lease_ms = {LEASE_MS}\n"),
        &flags,
        3,
    )
    .unwrap();
    cluster
        .wait_until_all_listed(Duration::from_secs(60))
        .unwrap();
    // Where each agent writes its logs (one file per start), copied beside the clients' reports
    // when the test fails.
    let agent_log_dirs: Vec<std::path::PathBuf> = cluster
        .agents
        .iter()
        .filter_map(|agent| agent.log().parent().map(std::path::Path::to_path_buf))
        .collect();
    let mut kept = KeptOnPanic(
        Some(
            tempfile::Builder::new()
                .prefix("sluice-e2e-rolling-")
                .tempdir()
                .unwrap(),
        ),
        agent_log_dirs,
    );
    let work_dir = kept.0.as_ref().unwrap();
    ClientKind::Go.build(work_dir.path()).unwrap();
    let topic = "rolling-restart";
    let run = |number: u64, records: u64, rate: u32, bootstrap: String| {
        let generator = RecordGenerator {
            seed: 70 + number,
            partitions: PARTITIONS,
            timestamp_base_ms: sluice_tests::matrix::timestamp_base_ms(),
        };
        let run = ClientRun {
            client: ClientKind::Go,
            bootstrap,
            topic: topic.to_owned(),
            records,
            codec: Codec::Lz4,
            mode: Mode::Produce,
            partitions: PARTITIONS,
            seed: generator.seed,
            timestamp_base_ms: generator.timestamp_base_ms,
            timeout_s: CLIENT_TIMEOUT_S,
            report: work_dir.path().join(format!("produce-{number}.jsonl")),
        };
        let mut flags = vec!["--idempotent".to_owned()];
        if rate > 0 {
            flags.extend(["--rate".to_owned(), rate.to_string()]);
        }
        (generator, run, flags)
    };
    let check_producer = |run: &ClientRun, status: std::process::ExitStatus, records: u64| {
        let report = Report::read(&run.report).unwrap();
        assert!(
            status.success() && report.errors.is_empty() && report.acks.len() as u64 == records,
            "producer {} gave up or failed ({status}; {} of {records} acknowledged): {:?}; its log:\n{}",
            run.report.display(),
            report.acks.len(),
            report.errors,
            sluice_tests::process::log_tail(&run.log_path())
        );
        report
    };
    let mut producers = vec![run(0, RECORDS_BEFORE, 0, cluster.bootstrap())];
    let (_, first, first_flags) = &producers[0];
    let (_, status) = first.run_with(first_flags).unwrap();
    let mut reports = vec![check_producer(first, status, RECORDS_BEFORE)];

    // The group, one member per agent.
    let mut group = RollingGroup::start(&cluster, client, topic, work_dir.path()).unwrap();
    group.settle().unwrap();

    // Two producers under load, bootstrapped at every agent, then the restarts, once both are
    // producing (the group has processed 800 of their records). A connection a client opens to
    // an agent as it stops is refused or reset, which franz-go retries (docs/cluster.md, "What
    // is left").
    producers.push(run(1, RECORDS_UNDER_LOAD, RATE_PER_S, cluster.bootstrap()));
    producers.push(run(2, RECORDS_UNDER_LOAD, RATE_PER_S, cluster.bootstrap()));
    let mut children: Vec<_> = producers[1..]
        .iter()
        .map(|(_, run, flags)| run.spawn_with(flags).unwrap())
        .collect();
    group
        .wait_until_processed(RECORDS_BEFORE as usize + 800, Duration::from_secs(30))
        .unwrap();
    let load_began = Instant::now();
    let mut restarts: Vec<(usize, i64, [f64; 3])> = Vec::new();
    for index in 0..cluster.agents.len() {
        group.health().unwrap();
        let stop_us = now_us();
        let stopping = Instant::now();
        let status = cluster.agents[index]
            .stop(Duration::from_secs(STOP_TIMEOUT_S))
            .unwrap();
        let stopped_s = stopping.elapsed().as_secs_f64();
        assert!(
            status.success(),
            "agent {index} exited {status} after SIGTERM; its log:\n{}",
            cluster.agents[index].log_tail()
        );
        // The others drop it at their next renewal (a graceful stop deregisters): its groups
        // move to them, and move back once it is listed again.
        let others: Vec<usize> = (0..cluster.agents.len())
            .filter(|other| *other != index)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !others.iter().all(|other| {
            metadata_brokers(cluster.agents[*other].address())
                .is_ok_and(|brokers| brokers.len() == others.len())
        }) {
            assert!(
                Instant::now() < deadline,
                "the other agents still list agent {index} 30 s after its graceful stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let dropped_s = stopping.elapsed().as_secs_f64();
        cluster.agents[index].start_again().unwrap();
        cluster
            .wait_until_all_listed(Duration::from_secs(60))
            .unwrap();
        restarts.push((
            index,
            stop_us,
            [stopped_s, dropped_s, stopping.elapsed().as_secs_f64()],
        ));
    }
    let restarts_end_us = now_us();
    let restarts_s = load_began.elapsed().as_secs_f64();
    for (child, (_, run, _)) in children.iter_mut().zip(&producers[1..]) {
        if let Some(status) = child.try_status().unwrap() {
            // Gave up (the check says how), or done too early to have been under load.
            check_producer(run, status, RECORDS_UNDER_LOAD);
            panic!(
                "a producer finished before the last agent was back ({restarts_s:.1} s): the restarts were not under load; raise RECORDS_UNDER_LOAD"
            );
        }
    }
    for (child, (_, run, _)) in children.iter_mut().zip(&producers[1..]) {
        let status = child
            .wait_with_timeout(Duration::from_secs(CLIENT_TIMEOUT_S + 60))
            .unwrap();
        reports.push(check_producer(run, status, RECORDS_UNDER_LOAD));
    }
    loud(&format!(
        "{test}: three agents restarted in {restarts_s:.1} s under two producers of {RATE_PER_S} records/s; \
         every producer exited 0 with all {} records acknowledged",
        2 * RECORDS_UNDER_LOAD
    ));

    // The group drains everything acknowledged; then its checks.
    let all_acks: Vec<_> = reports
        .iter()
        .flat_map(|report| report.acks.clone())
        .collect();
    let views = group.drain_and_stop(&all_acks).unwrap();
    let summary = check_group_consumed_every_ack(&views, &all_acks).unwrap();
    let mut bounds: Vec<i64> = restarts.iter().map(|(_, stop_us, _)| *stop_us).collect();
    bounds.push(restarts_end_us.max(bounds.last().copied().unwrap_or(0)) + 5_000_000);
    for (number, (index, stop_us, [stopped_s, dropped_s, back_s])) in restarts.iter().enumerate() {
        let pause = longest_pause_us(&views, *stop_us, bounds[number + 1]);
        loud(&format!(
            "{test}: agent {index} stopped in {stopped_s:.2} s, dropped by the others at {dropped_s:.2} s, listed again by all {back_s:.2} s after the SIGTERM; \
             longest pause in the group's processing from the stop until the next restart {:.2} s",
            pause as f64 / 1e6
        ));
    }
    loud(&format!("{test}: the group: {summary}"));

    // Read everything back once more, from the cluster.
    let (consumed, status) = ClientRun {
        mode: Mode::Consume,
        report: work_dir.path().join("consume.jsonl"),
        ..producers[0].1.clone()
    }
    .run()
    .unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading the topic back failed ({status}): {:?}",
        consumed.errors
    );
    let mut served = consumed.records;
    served.sort_by_key(|record| (record.partition, record.offset));
    let total = RECORDS_BEFORE + 2 * RECORDS_UNDER_LOAD;
    assert_eq!(served.len() as u64, total, "records served");
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in &served {
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
    for ack in &all_acks {
        assert!(
            acknowledged.insert((ack.partition, ack.offset)),
            "partition {} offset {} acknowledged twice",
            ack.partition,
            ack.offset
        );
    }
    let records: HashMap<usize, u64> = HashMap::from([
        (0, RECORDS_BEFORE),
        (1, RECORDS_UNDER_LOAD),
        (2, RECORDS_UNDER_LOAD),
    ]);
    for (number, ((generator, _, _), report)) in producers.iter().zip(&reports).enumerate() {
        verify_share(
            generator,
            &report.acks,
            &served,
            Expectation::ExactlyOnce {
                records: records[&number],
            },
        )
        .unwrap_or_else(|problems| panic!("producer {number}:\n{problems}"));
    }
    loud(&format!(
        "{test}: {total} records served once each at their offsets, contiguous; {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
    if sluice_tests::groups::scenario::keep_reports()
        && let Some(dir) = kept.0.take()
    {
        loud(&format!("reports kept in {}", dir.keep().display()));
    }
}

/// Copies every `agent-N.log` of each agent (`dirs`, in the order a, b, c) into `into` as
/// `agent-{letter}-N.log`.
fn keep_agent_logs(dirs: &[std::path::PathBuf], into: &std::path::Path) {
    for (dir, letter) in dirs.iter().zip('a'..='z') {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(start) = name.strip_prefix("agent-") {
                let _ = std::fs::copy(entry.path(), into.join(format!("agent-{letter}-{start}")));
            }
        }
    }
}

/// The clients' reports and logs, kept with every agent's logs (the directories in `.1`) when the
/// test fails (a panic) so that the failure can be read.
struct KeptOnPanic(Option<tempfile::TempDir>, Vec<std::path::PathBuf>);

impl Drop for KeptOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            keep_agent_logs(&self.1, dir.path());
            loud(&format!("reports kept in {}", dir.keep().display()));
        }
    }
}
