//! Scenario: PostgreSQL stopped for 10 s under load (issue 15). Two agents of one cluster with
//! the default lease (10 s) on one bucket; an idempotent franz-go producer writes through both.
//!
//! 1. A topic is produced and committed first; then the idempotent producer starts.
//! 2. PostgreSQL is stopped as `pg_ctl stop -m fast` does, with the producer running. While it is
//!    down, a franz-go consumer reads the committed topic from agent `b`: fetches of committed
//!    data keep working without the database. No window is appended while it is down (the
//!    agents' `sluice_log_entries_appended_total` stands still): no produce is acknowledged
//!    without a commit.
//! 3. It stays down at least 10 s, and until both agents have said `LEASE LOST`: a lease
//!    (10 s, renewed every third) cannot be renewed without the database, and at its local
//!    deadline an agent stops appending for good (docs/cluster.md). Then PostgreSQL starts again
//!    on the same data directory and port. Agent `a`, fenced, still serves the committed topic
//!    before that.
//! 4. While the database is down the fenced agents say so (`sluice_log_fenced` 1, `sluice_ready`
//!    0). Once it is back they rejoin by themselves, each as a new incarnation (a new
//!    registration and data token, the log caught up): their logs say `rejoined`, the gauges go
//!    back (fenced 0, ready 1), and the producer finishes through them — no restart. The test
//!    prints how long after the database's start each agent rejoined and the first window was
//!    appended (its produces acknowledged).
//! 5. Every record is acknowledged once and served once, at contiguous offsets, by both agents
//!    (the idempotent producer's retries are deduplicated by the state machine); the committed
//!    topic is intact too. The test prints how long appends stalled.
//!
//!
//! The second test runs the same with `lease_ms = 30000`, longer than the outage: no agent loses
//! its lease (renewals fail retriably until the database is back, and the lease's local deadline
//! is never reached), neither is fenced or restarted, and the producer resumes through the same
//! agents as soon as the database is back.
//!
//! PostgreSQL, the store server or the Go toolchain missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::report::Report;
use sluice_tests::sluice::{Cluster, metric_sum, scrape};
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

/// Records of the committed topic, read while the database is down.
const COMMITTED_RECORDS: u64 = 20_000;
/// Records of the idempotent producer: enough that it is still sending when the database stops.
const LOAD_RECORDS: u64 = 100_000;
/// The database is stopped once the agents have appended this many windows of the load.
const WINDOWS_BEFORE_STOP: f64 = 10.0;
/// The outage the issue asks for.
const OUTAGE: Duration = Duration::from_secs(10);
/// Limit of each wait for an event (a lease lost, windows appended).
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Windows appended by each agent, sampled over time (a failed scrape is `None`).
type Samples = Vec<(Instant, Vec<Option<f64>>)>;

fn windows_appended(address: SocketAddr) -> Option<f64> {
    scrape(address)
        .ok()
        .map(|text| metric_sum(&text, "sluice_log_entries_appended_total", ""))
}

/// Scrapes every agent each [`SAMPLE_INTERVAL`] until `done`.
fn spawn_sampler(
    addresses: Vec<SocketAddr>,
    samples: Arc<Mutex<Samples>>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            let sample: Vec<Option<f64>> = addresses.iter().map(|a| windows_appended(*a)).collect();
            let mut samples = samples.lock().unwrap();
            // Bounded: one sample per interval for the test's few minutes at most.
            if samples.len() < 100_000 {
                samples.push((Instant::now(), sample));
            }
            drop(samples);
            std::thread::sleep(SAMPLE_INTERVAL);
        }
    })
}

/// The first sample after `after` in which some agent's count is above the highest count read
/// from that agent since `baseline_from` (the stop: nothing is appended while the database is
/// down, so growth over such a read happened after it came back). A failed scrape (`None`) is
/// skipped, not compared, so growth across it still counts; a read below an earlier one (a bad
/// read) never lowers the baseline.
fn first_growth_after(
    samples: &Samples,
    baseline_from: Instant,
    after: Instant,
) -> Option<Instant> {
    let mut highest: Vec<Option<f64>> = Vec::new();
    for (at, sample) in samples.iter().filter(|(at, _)| *at >= baseline_from) {
        highest.resize(sample.len().max(highest.len()), None);
        let mut grew = false;
        for (now, highest) in sample.iter().zip(highest.iter_mut()) {
            if let Some(now) = *now {
                grew |= highest.is_some_and(|highest| now > highest);
                *highest = Some(highest.map_or(now, |highest| highest.max(now)));
            }
        }
        if grew && *at > after {
            return Some(*at);
        }
    }
    None
}

/// The samples from a second before `from` on (at most 300), one line each, for a failure message.
fn samples_around(samples: &Samples, from: Instant) -> String {
    let start = from.checked_sub(Duration::from_secs(1)).unwrap_or(from);
    samples
        .iter()
        .filter(|(at, _)| *at >= start)
        .take(300)
        .map(|(at, sample)| {
            let offset_s = if *at >= from {
                (*at - from).as_secs_f64()
            } else {
                -(from - *at).as_secs_f64()
            };
            format!("{offset_s:+.2} s: {sample:?}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn log_says(agent: &sluice_tests::sluice::SluiceAgent, text: &str) -> bool {
    std::fs::read_to_string(agent.log()).is_ok_and(|log| log.contains(text))
}

#[test]
fn postgres_stopped_for_10_s_under_load_loses_and_duplicates_nothing() {
    stop_postgres_under_load("cluster with PostgreSQL stopped under load", None);
}

#[test]
fn a_lease_longer_than_the_outage_rides_it_out_without_a_restart() {
    stop_postgres_under_load(
        "cluster with PostgreSQL stopped under load, 30 s lease",
        Some(30_000),
    );
}

/// The scenario of the module, with the default lease (`None`: both agents lose it and rejoin
/// once the database is back) or with `lease_ms` longer than the outage (no agent loses it).
fn stop_postgres_under_load(test: &str, lease_ms: Option<u64>) {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let client = ClientKind::Go;
    if !require(test, &client.tools()) {
        return;
    }
    let Some(mut postgres) = TestPostgres::start_or_skip(test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, test) else {
        return;
    };
    let toml = lease_ms.map_or(String::new(), |ms| format!("lease_ms = {ms}\n"));
    let cluster = Cluster::start(&*store, "pg-stop", &postgres.url(), &toml, &[], 2).unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-pg-stop-")
        .tempdir()
        .unwrap();
    client.build(work_dir.path()).unwrap();
    let run = |topic: &str, seed: u64, records: u64, bootstrap: String| {
        let generator = RecordGenerator {
            seed,
            partitions: PARTITIONS,
            timestamp_base_ms: timestamp_base_ms(),
        };
        let run = ClientRun {
            client,
            bootstrap,
            topic: topic.to_owned(),
            records,
            codec: Codec::Lz4,
            mode: Mode::Produce,
            partitions: PARTITIONS,
            seed,
            timestamp_base_ms: generator.timestamp_base_ms,
            timeout_s: PHASE_TIMEOUT_S,
            report: work_dir.path().join(format!("produce-{topic}.jsonl")),
        };
        (generator, run)
    };

    // 1. A committed topic, then the load.
    let (committed_generator, committed) = run(
        "pg-stop-committed",
        50,
        COMMITTED_RECORDS,
        cluster.agents[0].bootstrap(),
    );
    let (committed_produced, status) = committed.run().unwrap();
    assert!(
        status.success() && committed_produced.errors.is_empty(),
        "{status}: {:?}",
        committed_produced.errors
    );
    let (load_generator, load) = run("pg-stop-load", 51, LOAD_RECORDS, cluster.bootstrap());
    let samples = Arc::new(Mutex::new(Samples::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = spawn_sampler(
        cluster.metrics_addresses(),
        Arc::clone(&samples),
        Arc::clone(&done),
    );
    let windows_now = |cluster: &Cluster| -> f64 {
        (0..cluster.agents.len())
            .map(|agent| {
                metric_sum(
                    &cluster.metrics(agent).unwrap(),
                    "sluice_log_entries_appended_total",
                    "",
                )
            })
            .sum()
    };
    let windows_before_load = windows_now(&cluster);
    let mut producer = load.spawn_with(&["--idempotent".to_owned()]).unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while windows_now(&cluster) < windows_before_load + WINDOWS_BEFORE_STOP {
        assert!(
            producer.try_status().unwrap().is_none(),
            "the producer finished before the database stopped; raise LOAD_RECORDS"
        );
        assert!(
            Instant::now() < deadline,
            "the load appended too few windows"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // 2. Stop the database under load; read committed data meanwhile.
    let stopping_at = Instant::now();
    postgres.stop().unwrap();
    let stopped_at = Instant::now();
    loud(&format!(
        "{test}: PostgreSQL stopped (fast shutdown took {:.2} s) with {} windows of the load appended",
        (stopped_at - stopping_at).as_secs_f64(),
        windows_now(&cluster) - windows_before_load
    ));
    assert!(
        producer.try_status().unwrap().is_none(),
        "the producer finished before the database stopped; raise LOAD_RECORDS"
    );
    let consume = ClientRun {
        bootstrap: cluster.agents[1].bootstrap(),
        mode: Mode::Consume,
        report: work_dir
            .path()
            .join("consume-committed-during-outage.jsonl"),
        ..committed.clone()
    };
    let (consumed, status) = consume
        .run_with(&[
            "--client-id".to_owned(),
            "e2e-reader,sluice_az=b".to_owned(),
        ])
        .unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading committed data with the database down failed ({status}): {:?}; b's log:\n{}",
        consumed.errors,
        cluster.agents[1].log_tail()
    );
    verify(
        &committed_generator,
        &committed_produced.acks,
        &consumed.records,
        Expectation::ExactlyOnce {
            records: COMMITTED_RECORDS,
        },
    )
    .unwrap_or_else(|problems| panic!("committed topic read during the outage:\n{problems}"));
    let read_during_outage_s = stopped_at.elapsed().as_secs_f64();
    // From here until the database is back, no window may be appended.
    let windows_while_down = windows_now(&cluster);

    // 3. Down for at least 10 s, and (default lease) until both agents lost their lease.
    let deadline = stopped_at + EVENT_TIMEOUT;
    let mut lost_after: Vec<Option<f64>> = vec![None; cluster.agents.len()];
    let expect_lost = lease_ms.is_none();
    while stopped_at.elapsed() < OUTAGE || (expect_lost && lost_after.iter().any(Option::is_none)) {
        for (agent, lost) in cluster.agents.iter().zip(&mut lost_after) {
            if lost.is_none() && log_says(agent, "LEASE LOST") {
                *lost = Some(stopped_at.elapsed().as_secs_f64());
            }
        }
        assert!(
            Instant::now() < deadline,
            "an agent kept its lease with the database down: {lost_after:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        expect_lost || lost_after.iter().all(Option::is_none),
        "an agent lost a lease longer than the outage: {lost_after:?}"
    );
    // Agent a (fenced, with the default lease) still serves what it has applied, with the
    // database still down.
    let consume = ClientRun {
        bootstrap: cluster.agents[0].bootstrap(),
        mode: Mode::Consume,
        report: work_dir.path().join("consume-committed-fenced.jsonl"),
        ..committed.clone()
    };
    let (consumed, status) = consume
        .run_with(&[
            "--client-id".to_owned(),
            "e2e-reader,sluice_az=a".to_owned(),
        ])
        .unwrap();
    assert!(
        status.success() && consumed.errors.is_empty(),
        "reading committed data from a after its lease ran out failed ({status}): {:?}",
        consumed.errors
    );
    verify(
        &committed_generator,
        &committed_produced.acks,
        &consumed.records,
        Expectation::ExactlyOnce {
            records: COMMITTED_RECORDS,
        },
    )
    .unwrap_or_else(|problems| panic!("committed topic read from a:\n{problems}"));
    assert_eq!(
        windows_now(&cluster),
        windows_while_down,
        "a window was appended with the database down"
    );
    assert!(
        producer.try_status().unwrap().is_none(),
        "the producer gave up during the outage; its log:\n{}",
        sluice_tests::process::log_tail(&load.log_path())
    );
    if expect_lost {
        // Fenced while the database is down: not ready, as /readyz says.
        for agent in 0..cluster.agents.len() {
            let text = cluster.metrics(agent).unwrap();
            assert_eq!(
                metric_sum(&text, "sluice_log_fenced", ""),
                1.0,
                "agent {agent} fenced"
            );
            assert_eq!(
                metric_sum(&text, "sluice_ready", ""),
                0.0,
                "agent {agent} ready"
            );
        }
    }
    postgres.start_again().unwrap();
    let started_at = Instant::now();
    loud(&format!(
        "{test}: committed data read from b {read_during_outage_s:.1} s into the outage; \
         LEASE LOST {lost_after:?} s after the stop; PostgreSQL down {:.1} s",
        (started_at - stopped_at).as_secs_f64()
    ));

    // 4. With the default lease the agents rejoin by themselves once the database is back; with
    //    the longer lease neither was fenced.
    let mut rejoined_after: Vec<Option<f64>> = vec![None; cluster.agents.len()];
    if expect_lost {
        let deadline = started_at + EVENT_TIMEOUT;
        while rejoined_after.iter().any(Option::is_none) {
            for (agent, rejoined) in cluster.agents.iter().zip(&mut rejoined_after) {
                if rejoined.is_none() && log_says(agent, "rejoined the cluster") {
                    *rejoined = Some(started_at.elapsed().as_secs_f64());
                }
            }
            assert!(
                Instant::now() < deadline,
                "an agent did not rejoin with the database back: {rejoined_after:?}; a's log:\n{}",
                cluster.agents[0].log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        loud(&format!(
            "{test}: the agents rejoined {rejoined_after:?} s after PostgreSQL started"
        ));
    }
    for agent in 0..cluster.agents.len() {
        let text = cluster.metrics(agent).unwrap();
        assert_eq!(
            metric_sum(&text, "sluice_log_fenced", ""),
            0.0,
            "agent {agent}'s fenced gauge with the database back"
        );
        // `sluice_ready` is 1 exactly when `/readyz` answers 200.
        assert_eq!(
            metric_sum(&text, "sluice_ready", ""),
            1.0,
            "agent {agent}'s readiness with the database back"
        );
    }

    // 5. The producer finishes; everything once, at contiguous offsets, on both agents.
    let status = producer
        .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
        .unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let produced = Report::read(&load.report).unwrap();
    assert!(
        status.success() && produced.errors.is_empty(),
        "the producer failed after the outage ({status}): {:?}; its log:\n{}",
        produced.errors,
        sluice_tests::process::log_tail(&load.log_path())
    );
    let samples = samples.lock().unwrap();
    let resumed_at = first_growth_after(&samples, stopping_at, started_at).unwrap_or_else(|| {
        panic!(
            "no window appended after the database came back; windows appended per agent, \
             from a second before PostgreSQL started:\n{}",
            samples_around(&samples, started_at)
        )
    });
    let last_before = samples
        .iter()
        .filter(|(at, _)| *at <= stopping_at)
        .map(|(at, _)| *at)
        .next_back()
        .unwrap_or(stopping_at);
    if !expect_lost {
        for agent in &cluster.agents {
            assert!(
                !log_says(agent, "LEASE LOST"),
                "an agent lost a lease longer than the outage after the database came back; its log:\n{}",
                agent.log_tail()
            );
        }
    }
    loud(&format!(
        "{test}: appends stalled {:.1} s (last sample before the stop to the first window after); \
         the first window after the outage (its produces acknowledged) {:.1} s after PostgreSQL \
         started, no agent restarted",
        (resumed_at - last_before).as_secs_f64(),
        (resumed_at - started_at).as_secs_f64(),
    ));
    for (agent, name) in cluster.agents.iter().zip(["a", "b"]) {
        for ((generator, run), produced, records) in [
            ((&load_generator, &load), &produced, LOAD_RECORDS),
            (
                (&committed_generator, &committed),
                &committed_produced,
                COMMITTED_RECORDS,
            ),
        ] {
            let consume = ClientRun {
                bootstrap: agent.bootstrap(),
                mode: Mode::Consume,
                report: work_dir
                    .path()
                    .join(format!("consume-{}-{name}.jsonl", run.topic)),
                ..run.clone()
            };
            let (consumed, status) = consume
                .run_with(&[
                    "--client-id".to_owned(),
                    format!("e2e-reader,sluice_az={name}"),
                ])
                .unwrap();
            assert!(
                status.success() && consumed.errors.is_empty(),
                "reading {} from {name} failed ({status}): {:?}",
                run.topic,
                consumed.errors
            );
            verify(
                generator,
                &produced.acks,
                &consumed.records,
                Expectation::ExactlyOnce { records },
            )
            .unwrap_or_else(|problems| panic!("{} read from {name}:\n{problems}", run.topic));
        }
    }
    loud(&format!(
        "{test}: {LOAD_RECORDS} records of the load each acknowledged once and served once by both \
         agents at contiguous offsets, and the {COMMITTED_RECORDS} committed before"
    ));
}

#[test]
fn growth_across_a_failed_scrape_is_found() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    // Agent 0 grows while its scrape fails; agent 1 never grows.
    let samples: Samples = vec![
        (at(0), vec![Some(20.0), Some(5.0)]),
        (at(100), vec![None, Some(5.0)]),
        (at(200), vec![Some(27.0), Some(5.0)]),
        (at(300), vec![Some(27.0), Some(5.0)]),
    ];
    assert_eq!(first_growth_after(&samples, at(0), at(50)), Some(at(200)));
    assert_eq!(first_growth_after(&samples, at(0), at(250)), None);
    let flat: Samples = vec![(at(0), vec![Some(1.0)]), (at(100), vec![Some(1.0)])];
    assert_eq!(first_growth_after(&flat, at(0), at(0)), None);
}

#[test]
fn neither_a_bad_read_nor_a_read_before_the_stop_makes_growth() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    // A bad read (0) between two equal reads is not growth.
    let bad_read: Samples = vec![
        (at(0), vec![Some(20.0)]),
        (at(100), vec![Some(0.0)]),
        (at(200), vec![Some(20.0)]),
    ];
    assert_eq!(first_growth_after(&bad_read, at(0), at(50)), None);
    // The last good read before the stop (at 100) is no baseline: what came after it may have
    // been appended before the stop.
    let gap_over_the_stop: Samples = vec![
        (at(0), vec![Some(20.0)]),
        (at(100), vec![None]),
        (at(200), vec![None]),
        (at(300), vec![Some(25.0)]),
        (at(400), vec![Some(25.0)]),
    ];
    assert_eq!(
        first_growth_after(&gap_over_the_stop, at(100), at(250)),
        None
    );
    assert_eq!(
        first_growth_after(&gap_over_the_stop, at(0), at(250)),
        Some(at(300))
    );
}
