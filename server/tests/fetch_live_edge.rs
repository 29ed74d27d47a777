//! The live edge: a long poll is woken by the commit (not by its timer), waits out `max_wait_ms`
//! when nothing arrives, and is served from the block cache without a single store GET; after a
//! restart the cache is cold and the same bytes come from the store.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
mod fetch_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RawClient, batch};
use fetch_support::*;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use sluice_engine::store::ObjectStorage;

const FLUSH_INTERVAL_MS: u64 = 50;

#[test]
fn a_long_poll_is_answered_by_the_commit_well_before_max_wait() {
    let agent = common::start_agent(|config| config.flush_interval_ms = FLUSH_INTERVAL_MS);
    let mut consumer = RawClient::connect(agent.addr());
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "live", 1);
    produce(&mut producer, "live", 0, batch(2, 1));

    let started = Instant::now();
    let request = fetch_request("live", topic_id, &[want(0, 2)], 5_000, 1);
    let correlation_id = consumer.send(ApiKey::Fetch, 12, &request);
    std::thread::sleep(Duration::from_millis(300));
    let produced_at = Instant::now();
    let produced = batch(3, 2);
    assert_eq!(produce(&mut producer, "live", 0, produced.clone()), 2);
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, correlation_id);
    let waited = started.elapsed();
    let after_produce = produced_at.elapsed();
    let partition = partitions(&response)[0];
    let fetched = batches_of(&partition.records);
    assert_eq!(fetched.len(), 1);
    assert_same_batch(&fetched[0].1, &produced, 2);
    assert_eq!(partition.high_watermark, 5);
    assert!(
        waited >= Duration::from_millis(300),
        "it did wait for data: {waited:?}"
    );
    // The produce itself takes about one flush window; the fetch answers with its commit.
    assert!(
        after_produce < Duration::from_millis(FLUSH_INTERVAL_MS + 1_000),
        "{after_produce:?} after the produce"
    );
    assert!(
        waited < Duration::from_millis(2_500),
        "well under max_wait (5 s): {waited:?}"
    );
    eprintln!(
        "long poll answered {after_produce:?} after the produce started (flush window {FLUSH_INTERVAL_MS} ms)"
    );
}

#[test]
fn a_long_poll_with_nothing_arriving_waits_max_wait() {
    let agent = common::start_agent(|config| config.flush_interval_ms = FLUSH_INTERVAL_MS);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "quiet", 2);
    let started = Instant::now();
    let response = fetch(
        &mut client,
        12,
        &fetch_request("quiet", topic_id, &[want(0, 0), want(1, 0)], 800, 1),
    );
    let waited = started.elapsed();
    assert!(
        partitions(&response)
            .iter()
            .all(|partition| partition.error_code == 0)
    );
    assert!(
        partitions(&response)
            .iter()
            .all(|partition| batches_of(&partition.records).is_empty())
    );
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_millis(1_600), "{waited:?}");
    // min_bytes 0 (or max_wait 0) answers at once.
    let started = Instant::now();
    fetch(
        &mut client,
        12,
        &fetch_request("quiet", topic_id, &[want(0, 0)], 5_000, 0),
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    // Re-polling an idle partition many times is fine (abandoned waits do not pile up).
    for _ in 0..20 {
        fetch(
            &mut client,
            12,
            &fetch_request("quiet", topic_id, &[want(0, 0)], 10, 1),
        );
    }
}

#[test]
fn the_live_edge_costs_no_store_get_and_a_restart_reads_the_same_bytes_back() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = GetCountingStore::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |config| {
            config.flush_interval_ms = FLUSH_INTERVAL_MS
        });
    let mut consumer = RawClient::connect(agent.addr());
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "cached", 2);
    let gets_before = store.range_gets();

    // A consumer parked at the live edge, woken by each produce, like a tailing consumer.
    let mut offset = 0;
    let mut fetched_bytes = Vec::new();
    for round in 0..5 {
        let correlation_id = consumer.send(
            ApiKey::Fetch,
            13,
            &fetch_request("cached", topic_id, &[want(0, offset)], 5_000, 1),
        );
        produce(&mut producer, "cached", 0, batch(4, round));
        produce(&mut producer, "cached", 1, batch(1, round));
        let response: FetchResponse = consumer.receive(ApiKey::Fetch, 13, correlation_id);
        let fetched = batches_of(&partitions(&response)[0].records);
        assert!(!fetched.is_empty(), "round {round}");
        for (base, bytes) in fetched {
            assert_eq!(base, offset);
            offset += 4;
            fetched_bytes.push(bytes);
        }
    }
    assert_eq!(offset, 20);
    // Catching up from the start is served from the cache too.
    let response = fetch(
        &mut consumer,
        13,
        &fetch_request("cached", topic_id, &[want(0, 0), want(1, 0)], 0, 0),
    );
    let from_start: Vec<_> = batches_of(&partitions(&response)[0].records)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    assert_eq!(from_start, fetched_bytes);
    assert_eq!(batches_of(&partitions(&response)[1].records).len(), 5);
    assert_eq!(
        store.range_gets(),
        gets_before,
        "live-edge fetches read no object from the store"
    );
    drop(consumer);
    drop(producer);
    agent.stop();

    // Same bucket, new agent: the cache is cold.
    let store = GetCountingStore::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |_| {});
    let mut consumer = RawClient::connect(agent.addr());
    let gets_before = store.range_gets();
    let response = fetch(
        &mut consumer,
        13,
        &fetch_request("cached", topic_id, &[want(0, 0)], 0, 0),
    );
    let after_restart: Vec<_> = batches_of(&partitions(&response)[0].records)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    assert_eq!(
        after_restart, fetched_bytes,
        "the same bytes, offsets included"
    );
    let cold_gets = store.range_gets() - gets_before;
    assert!(cold_gets >= 1, "a cold cache reads the store");
    // Those ranges are cached now.
    fetch(
        &mut consumer,
        13,
        &fetch_request("cached", topic_id, &[want(0, 0)], 0, 0),
    );
    assert_eq!(store.range_gets() - gets_before, cold_gets);
}

#[test]
fn a_long_poll_waits_until_min_bytes_have_accumulated() {
    let agent = common::start_agent(|config| config.flush_interval_ms = FLUSH_INTERVAL_MS);
    let mut consumer = RawClient::connect(agent.addr());
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "accumulate", 2);
    let first = batch(3, 1);
    let second = batch(3, 2);
    // More than one batch: the first commit alone does not satisfy it.
    let min_bytes = (first.len() + 1) as i32;
    let started = Instant::now();
    let request = fetch_request(
        "accumulate",
        topic_id,
        &[want(0, 0), want(1, 0)],
        5_000,
        min_bytes,
    );
    let correlation_id = consumer.send(ApiKey::Fetch, 12, &request);
    produce(&mut producer, "accumulate", 0, first.clone());
    std::thread::sleep(Duration::from_millis(300));
    produce(&mut producer, "accumulate", 0, second.clone());
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, correlation_id);
    let waited = started.elapsed();
    let fetched = batches_of(&partitions(&response)[0].records);
    assert_eq!(fetched.len(), 2, "answered once both batches were there");
    assert_same_batch(&fetched[1].1, &second, 3);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(2_500), "{waited:?}");
}
