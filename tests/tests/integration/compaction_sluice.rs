//! Scenario: object compaction under load with real clients and kill -9 at random instants.
//!
//! The Java client and librdkafka produce to two topics at once while the agent compacts every
//! 200 ms (small targets so that jobs run all the time) and collects garbage every second. The
//! agent is killed with SIGKILL three times, each at a random instant after it has run a
//! compaction job since its last start, so the kills land before, during and after PUTs, swaps
//! and deletions. After the producers end, each topic is read back: every acknowledged record
//! must be served at its acknowledged offset, byte for byte. Then the bucket must settle to hold
//! no object that nothing needs (the collector's own rule, recomputed from the recovered state),
//! while every record stays readable — nothing needed was deleted.
//!
//! The random instants come from a seed printed at the start (`SLUICE_E2E_SEED` replays it).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_engine::log::gc::{GcCandidates, GcConfig, GcListing, GcReferences};
use sluice_engine::log::{LogConfig, recover};
use sluice_engine::store::{
    ObjectStorage, S3TestServer, StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store,
};
use sluice_tests::clients::{ClientKind, ClientRun, Codec, Mode};
use sluice_tests::generator::RecordGenerator;
use sluice_tests::matrix::{PARTITIONS, PHASE_TIMEOUT_S, timestamp_base_ms};
use sluice_tests::report::Report;
use sluice_tests::sluice::{SluiceAgent, fast_housekeeping_args};
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

const RECORDS: u64 = 60_000;
const KILLS: usize = 3;
const JOB_WAIT_TIMEOUT: Duration = Duration::from_secs(120);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A small xorshift: the kill instants, reproducible from the printed seed.
struct Instants(u64);

impl Instants {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn seed() -> u64 {
    std::env::var("SLUICE_E2E_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn compaction_jobs_logged(agent: &SluiceAgent) -> usize {
    std::fs::read_to_string(agent.log())
        .map(|log| log.matches("compaction job").count())
        .unwrap_or(0)
}

fn store_of(server: &S3TestServer, prefix: &str) -> Arc<dyn ObjectStorage> {
    let inner = open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap();
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

#[test]
fn compaction_under_load_with_kill_9_loses_nothing_and_leaves_no_garbage() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let clients = [ClientKind::Java, ClientKind::Librdkafka];
    let tools: Vec<_> = clients.iter().flat_map(|client| client.tools()).collect();
    if !require("sluice compaction under load", &tools) {
        return;
    }
    let seed = seed();
    loud(&format!(
        "sluice compaction: seed {seed} (SLUICE_E2E_SEED={seed} replays the kill instants)"
    ));
    let mut instants = Instants(seed);
    let server = S3TestServer::start().unwrap();
    let mut agent =
        SluiceAgent::start_with_args(&server, "compaction", &fast_housekeeping_args()).unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-compaction-")
        .tempdir()
        .unwrap();
    let timestamp_base_ms = timestamp_base_ms();
    let mut runs = Vec::new();
    let mut producers = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        client.build(work_dir.path()).unwrap();
        let run = ClientRun {
            client: *client,
            bootstrap: agent.bootstrap(),
            topic: format!("e2e-compaction-{}", client.name()),
            records: RECORDS,
            codec: if index == 0 { Codec::Zstd } else { Codec::Lz4 },
            mode: Mode::Produce,
            partitions: PARTITIONS,
            seed: 40 + index as u64,
            timestamp_base_ms,
            timeout_s: PHASE_TIMEOUT_S,
            report: work_dir
                .path()
                .join(format!("produce-{}.jsonl", client.name())),
        };
        producers.push(run.spawn().unwrap());
        runs.push(run);
    }

    let mut jobs_seen = 0;
    for kill in 1..=KILLS {
        let deadline = Instant::now() + JOB_WAIT_TIMEOUT;
        let jobs_wanted = 1 + instants.next_ms(3) as usize;
        while compaction_jobs_logged(&agent) < jobs_wanted {
            assert!(
                Instant::now() < deadline,
                "no compaction job within {JOB_WAIT_TIMEOUT:?} of start {kill}; agent log:\n{}",
                agent.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(instants.next_ms(400)));
        jobs_seen += compaction_jobs_logged(&agent);
        agent.kill9().unwrap();
        loud(&format!(
            "sluice compaction: kill {kill} of {KILLS} after {jobs_seen} compaction jobs"
        ));
        std::thread::sleep(Duration::from_millis(200 + instants.next_ms(300)));
        agent.restart().unwrap();
    }

    for (run, mut producer) in runs.iter().zip(producers) {
        let status = producer
            .wait_with_timeout(Duration::from_secs(PHASE_TIMEOUT_S + 60))
            .unwrap();
        loud(&format!(
            "sluice compaction: {} producer exited with {status}",
            run.client.name()
        ));
    }
    // Read everything back. (No wait for a job after the last restart: when the producers end
    // soon after it, what is left may be too little to merge; the settle check below still
    // requires compacted objects in use.)
    let verify_all = |agent: &SluiceAgent, stage: &str| {
        for run in &runs {
            let produced = Report::read(&run.report).unwrap();
            assert!(
                !produced.acks.is_empty(),
                "{}: nothing acknowledged",
                run.client.name()
            );
            let consume = ClientRun {
                mode: Mode::Consume,
                bootstrap: agent.bootstrap(),
                report: run.report.with_extension(format!("{stage}.consume.jsonl")),
                ..run.clone()
            };
            let (consumed, status) = consume.run().unwrap();
            assert!(
                status.success() && consumed.errors.is_empty(),
                "{stage}: the {} consumer failed ({status}): {:?}; agent log:\n{}",
                run.client.name(),
                consumed.errors,
                agent.log_tail()
            );
            let generator = RecordGenerator {
                seed: run.seed,
                partitions: PARTITIONS,
                timestamp_base_ms,
            };
            let summary = verify(
                &generator,
                &produced.acks,
                &consumed.records,
                Expectation::AcknowledgedSurvive,
            )
            .unwrap_or_else(|problems| panic!("{stage}, {}:\n{problems}", run.client.name()));
            loud(&format!(
                "sluice compaction: {stage}: {}: {} acknowledged records all served at their offsets",
                run.client.name(),
                summary.acknowledged
            ));
        }
    };
    verify_all(&agent, "after the kills");

    // The bucket settles: nothing that nothing needs is left (the collector's rule, from the
    // state a fresh recovery builds), compacted objects are in use.
    let store = store_of(&server, "compaction");
    let gc = GcConfig::default();
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (compacted_in_use, windows_left) = loop {
        let (state, _) =
            futures::executor::block_on(recover(store.as_ref(), &LogConfig::default(), None))
                .unwrap();
        let listing = futures::executor::block_on(GcListing::read(store.as_ref())).unwrap();
        let references = GcReferences::of(&state, listing.floor(&gc));
        let garbage = GcCandidates::from_listing(&listing, &gc, &references);
        if garbage.is_empty() {
            break (references.compacted.len(), listing.entries.len());
        }
        assert!(
            Instant::now() < deadline,
            "objects nothing needs are still there after {SETTLE_TIMEOUT:?}: {} checkpoints, {} entries, {} compacted",
            garbage.checkpoints.len(),
            garbage.entries.len(),
            garbage.compacted.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(compacted_in_use > 0, "no compacted object is in use");
    loud(&format!(
        "sluice compaction: bucket settled with {compacted_in_use} compacted objects in use and {windows_left} log entries"
    ));
    verify_all(&agent, "after garbage collection");
}
