//! The live edge: a long poll is woken by the commit (not by its timer), waits out `max_wait_ms`
//! when nothing arrives, and is served from the block cache without a single store GET; after a
//! restart the cache is cold and the same bytes come from the store.
//!
//! Nothing here decides pass or fail by how fast a loaded machine is. A poll that must be woken by
//! a commit asks for a `max_wait_ms` three times longer than the test's patience (the client's read
//! timeout), so an answer the test receives at all cannot have come from the poll's timer; that it
//! came from the commit is shown by the order of events: no answer before the produce, the produce
//! acknowledged (committed), then an answer holding exactly the produced batch.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RawClient, batch};
use fetch_support::*;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use sluice_engine::store::ObjectStorage;

const FLUSH_INTERVAL_MS: u64 = 50;
/// A long poll's wait that the test never reaches: the agent's cap on `max_wait_ms`
/// (`MAX_WAIT_MS_MAX`, 60 s).
const MAX_WAIT_MS_UNREACHED: i32 = 60_000;
/// How long the test waits for any answer (the read timeout of its client): a third of
/// [`MAX_WAIT_MS_UNREACHED`].
const PATIENCE: Duration = Duration::from_secs(20);

/// A client whose reads give up after [`PATIENCE`] (a failed test, never a timer's answer).
fn patient_client(agent: &common::TestAgent) -> RawClient {
    let client = RawClient::connect(agent.addr());
    client.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

/// Whether the agent has sent anything on `client` that was not read yet.
fn answered_yet(client: &RawClient) -> bool {
    client.stream.set_nonblocking(true).unwrap();
    let mut byte = [0_u8; 1];
    let peeked = client.stream.peek(&mut byte);
    client.stream.set_nonblocking(false).unwrap();
    match peeked {
        // Bytes waiting, or the agent closed the connection: either way it did not keep waiting.
        Ok(_) => true,
        Err(error) if error.kind() == ErrorKind::WouldBlock => false,
        Err(error) => panic!("peeking at the connection: {error}"),
    }
}

#[test]
fn a_long_poll_is_answered_by_the_commit_not_by_its_timer() {
    let agent = common::start_agent(|config| config.flush_interval_ms = FLUSH_INTERVAL_MS);
    let mut consumer = patient_client(&agent);
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "live", 1);
    produce(&mut producer, "live", 0, batch(2, 1));

    let request = fetch_request("live", topic_id, &[want(0, 2)], MAX_WAIT_MS_UNREACHED, 1);
    let correlation_id = consumer.send(ApiKey::Fetch, 12, &request);
    // Time for the poll to park at the live edge; a slow machine only makes this check weaker,
    // never wrong: with nothing past offset 2 there is nothing to answer with.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !answered_yet(&consumer),
        "the long poll was answered before anything was produced"
    );
    let produced = batch(3, 2);
    let produced_at = Instant::now();
    // Acknowledged with acks=-1: the batch is committed when this returns.
    assert_eq!(produce(&mut producer, "live", 0, produced.clone()), 2);
    // Within PATIENCE, so long before the poll's own timer could have fired.
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, correlation_id);
    let after_produce = produced_at.elapsed();
    let partition = partitions(&response)[0];
    let fetched = batches_of(&partition.records);
    assert_eq!(fetched.len(), 1, "the answer holds the committed batch");
    assert_same_batch(&fetched[0].1, &produced, 2);
    assert_eq!(partition.high_watermark, 5);
    eprintln!(
        "long poll answered {after_produce:?} after the produce started (flush window {FLUSH_INTERVAL_MS} ms)"
    );
}

#[test]
fn a_long_poll_with_nothing_arriving_waits_max_wait() {
    let agent = common::start_agent(|config| config.flush_interval_ms = FLUSH_INTERVAL_MS);
    let mut client = patient_client(&agent);
    let topic_id = create_topic(&mut client, "quiet", 2);
    let started = Instant::now();
    // Answered by its timer: not before max_wait, and (the read does not time out) within PATIENCE.
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
    // min_bytes 0 answers at once: with a max_wait the test never reaches, any answer is that.
    fetch(
        &mut client,
        12,
        &fetch_request("quiet", topic_id, &[want(0, 0)], MAX_WAIT_MS_UNREACHED, 0),
    );
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
    let mut consumer = patient_client(&agent);
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
            &fetch_request(
                "cached",
                topic_id,
                &[want(0, offset)],
                MAX_WAIT_MS_UNREACHED,
                1,
            ),
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
    let mut consumer = patient_client(&agent);
    let mut producer = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut producer, "accumulate", 2);
    let first = batch(3, 1);
    let second = batch(3, 2);
    // More than one batch: the first commit alone does not satisfy it.
    let min_bytes = (first.len() + 1) as i32;
    let request = fetch_request(
        "accumulate",
        topic_id,
        &[want(0, 0), want(1, 0)],
        MAX_WAIT_MS_UNREACHED,
        min_bytes,
    );
    let correlation_id = consumer.send(ApiKey::Fetch, 12, &request);
    produce(&mut producer, "accumulate", 0, first.clone());
    // The first commit has woken the poll by now (or will: a slow machine only weakens the
    // check); it must have gone back to waiting.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !answered_yet(&consumer),
        "answered with fewer than min_bytes"
    );
    produce(&mut producer, "accumulate", 0, second.clone());
    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, correlation_id);
    let fetched = batches_of(&partitions(&response)[0].records);
    assert_eq!(fetched.len(), 2, "answered once both batches were there");
    assert_same_batch(&fetched[1].1, &second, 3);
}
