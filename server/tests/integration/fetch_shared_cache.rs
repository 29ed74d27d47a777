//! One cache budget for the agent: every block is owned by one network core, and a block read
//! from the store for a connection on one core is served to a connection on the other core from
//! the owner's cache — no second GET (`server/src/fetch/owners.rs`). A compaction of cached data
//! reads its sources from the caches and hands the compacted object's bytes to the owners'
//! caches, so neither the job nor reading it back costs a GET.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support::*;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{RawClient, TestAgent};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use sluice_engine::store::ObjectStorage;

const BATCHES: usize = 8;
const RECORDS_PER_BATCH: usize = 10;

/// A connection served by network core `core`. SO_REUSEPORT picks a connection's core by its
/// address hash, so connect until one lands there: the agent counts a connection when it accepts
/// it, before it answers the connection's first request.
fn connection_on_core(agent: &TestAgent, core: usize) -> RawClient {
    let metrics = agent.agent.as_ref().unwrap().metrics();
    let accepted = || -> Vec<u64> {
        metrics
            .cores
            .iter()
            .map(|core| core.connections_accepted.load(Ordering::SeqCst))
            .collect()
    };
    for _ in 0..256 {
        let before = accepted();
        let mut client = RawClient::connect(agent.addr());
        let _: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        if accepted()[core] > before[core] {
            return client;
        }
    }
    panic!("no connection landed on core {core} in 256 attempts");
}

/// Fetches both partitions from offset 0 and checks every batch against what was produced.
fn fetch_all(client: &mut RawClient, topic_id: uuid::Uuid, produced: &[Vec<Bytes>; 2]) {
    fetch_all_of(client, "shared", topic_id, produced);
}

fn fetch_all_of(
    client: &mut RawClient,
    topic: &str,
    topic_id: uuid::Uuid,
    produced: &[Vec<Bytes>; 2],
) {
    let wants = [want(0, 0), want(1, 0)];
    let response = fetch(client, 13, &fetch_request(topic, topic_id, &wants, 0, 0));
    for (partition, data) in partitions(&response).into_iter().enumerate() {
        assert_eq!(data.error_code, 0, "partition {partition}");
        let fetched = batches_of(&data.records);
        assert_eq!(fetched.len(), BATCHES, "partition {partition}");
        for (index, (base, bytes)) in fetched.iter().enumerate() {
            assert_eq!(*base, (index * RECORDS_PER_BATCH) as i64);
            assert_same_batch(bytes, &produced[partition][index], *base);
        }
    }
}

#[test]
fn a_block_read_through_one_core_is_served_to_the_other_without_a_second_get() {
    let online = std::thread::available_parallelism().map_or(1, usize::from);
    if online < 2 {
        sluice_tests::tools::skip_or_fail(&format!(
            "a_block_read_through_one_core_is_served_to_the_other: needs two CPUs, {online} here"
        ));
        return;
    }
    let store_dir = tempfile::tempdir().unwrap();
    let (topic_id, produced) =
        fill_two_partitions(store_dir.path(), "shared", BATCHES, RECORDS_PER_BATCH);

    // A fresh two-core agent on the same bucket: both caches are cold.
    let store = GetCountingStore::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |config| {
            config.cpus = Some(vec![0, 1]);
        });
    let mut on_zero = connection_on_core(&agent, 0);
    let mut on_one = connection_on_core(&agent, 1);

    let before = store.range_gets();
    fetch_all(&mut on_zero, topic_id, &produced);
    let read = store.range_gets() - before;
    // The objects are owned by both cores (by hash), so this read went to both, and each owner
    // read its objects from the store once.
    assert!(
        (1..=BATCHES as u64).contains(&read),
        "{read} GETs for {BATCHES} objects"
    );

    // The same history through the other core: every block comes from its owner's cache.
    fetch_all(&mut on_one, topic_id, &produced);
    assert_eq!(
        store.range_gets() - before,
        read,
        "a connection on core 1 read again from the store"
    );
    // And back on the first core, after a new connection there.
    let mut again = connection_on_core(&agent, 0);
    fetch_all(&mut again, topic_id, &produced);
    assert_eq!(store.range_gets() - before, read);
}

/// Data compacted while the agent had it cached costs no GET: the job takes its sources from the
/// caches the windows were written through to, and hands each compacted entry's bytes to the
/// core that owns it once the swap is applied, so the swap does not turn a replay that would
/// have been served from memory into GETs.
#[test]
fn data_compacted_while_cached_is_read_back_without_a_get() {
    let online = std::thread::available_parallelism().map_or(1, usize::from);
    if online < 2 {
        sluice_tests::tools::skip_or_fail(&format!(
            "data_compacted_while_cached_is_read_back_without_a_get: needs two CPUs, {online} here"
        ));
        return;
    }
    let store_dir = tempfile::tempdir().unwrap();
    let store = GetCountingStore::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |config| {
            config.cpus = Some(vec![0, 1]);
            config.flush_interval_ms = 5;
            config.compaction_interval_ms = 100;
            // No retention or garbage collection while the test runs: only compaction.
            config.log_retention_check_interval_ms = 3_600_000;
        });
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "compacted-cache", 2);
    // Batches older than a run needs to settle, so the windows are merged at once.
    let old = common::now_ms() - 120_000;
    let mut produced = [Vec::new(), Vec::new()];
    for index in 0..BATCHES {
        for (partition, batches) in produced.iter_mut().enumerate() {
            let records = common::batch(RECORDS_PER_BATCH, old + index as i64);
            let base = produce(
                &mut producer,
                "compacted-cache",
                partition as i32,
                records.clone(),
            );
            assert_eq!(base, (index * RECORDS_PER_BATCH) as i64);
            batches.push(records);
        }
    }
    let produced_bytes: u64 = produced
        .iter()
        .flatten()
        .map(|batch| batch.len() as u64)
        .sum();

    // Every batch is now in a compacted object, and in its owner's cache.
    let metrics = Arc::clone(agent.agent.as_ref().unwrap().metrics());
    common::wait_for(
        "the compacted bytes in the owners' caches",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(20),
        || {
            let cached = metrics.log.compacted_bytes_cached.load(Ordering::SeqCst);
            (cached >= produced_bytes).then_some(())
        },
    );
    // The job took its sources from the caches the windows were written through to.
    assert_eq!(store.range_gets(), 0, "the compaction job read its sources");
    let mut on_zero = connection_on_core(&agent, 0);
    fetch_all_of(&mut on_zero, "compacted-cache", topic_id, &produced);
    let mut on_one = connection_on_core(&agent, 1);
    fetch_all_of(&mut on_one, "compacted-cache", topic_id, &produced);
    assert_eq!(
        store.range_gets(),
        0,
        "reading back compacted data that was cached made GETs"
    );
}
