//! Read-ahead: a consumer replaying history from the store finds each next fetch's bytes already
//! read, so the store's latency overlaps the client's own work instead of adding to every fetch;
//! the bytes and offsets are exactly those produced; a consumer at the live edge starts none.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]

use crate::common;
use crate::fetch_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RawClient, batch, produce_request, produce_results};
use fetch_support::*;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use sluice_engine::store::{ObjectInfo, ObjectStorage, StoreConfig, StoreResult, open_store};

/// What one ranged GET takes in [`SlowGets`]: far above what the rest of a fetch costs here.
const GET_DELAY: Duration = Duration::from_millis(300);

/// A local store whose ranged GETs take [`GET_DELAY`] (the agent runs it on its tokio store
/// runtime), counting them.
#[derive(Debug)]
struct SlowGets {
    inner: Arc<dyn ObjectStorage>,
    range_gets: AtomicU64,
}

impl SlowGets {
    fn local(dir: &std::path::Path) -> Arc<SlowGets> {
        let url = format!("file://{}?fsync=false", dir.display());
        Arc::new(SlowGets {
            inner: open_store(&StoreConfig::from_url(&url).unwrap()).unwrap(),
            range_gets: AtomicU64::new(0),
        })
    }

    fn range_gets(&self) -> u64 {
        self.range_gets.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ObjectStorage for SlowGets {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        if key.contains("log/") {
            self.range_gets.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(GET_DELAY).await;
        }
        self.inner.get_range(key, range).await
    }
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
}

const BATCHES: usize = 6;
const RECORDS_PER_BATCH: usize = 10;

#[test]
fn a_replay_from_the_store_finds_the_next_fetch_already_read() {
    let store_dir = tempfile::tempdir().unwrap();
    let (topic_id, produced) =
        fill_two_partitions(store_dir.path(), "history", BATCHES, RECORDS_PER_BATCH);
    let batch_bytes = produced[0][0].len() as i32;

    // A fresh agent on the same bucket: its cache is cold, every byte comes from the store.
    let store = SlowGets::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |_| {});
    let mut client = RawClient::connect(agent.addr());
    let mut offsets = [0_i64; 2];
    let mut fetch_times = Vec::new();
    let mut gets_when_answered = Vec::new();
    for round in 0..BATCHES {
        let wants: Vec<Want> = (0..2)
            .map(|partition| Want {
                partition,
                offset: offsets[partition as usize],
                // One batch per partition per fetch.
                partition_max_bytes: batch_bytes,
            })
            .collect();
        let started = Instant::now();
        let response = fetch(
            &mut client,
            13,
            &fetch_request("history", topic_id, &wants, 0, 0),
        );
        fetch_times.push(started.elapsed());
        gets_when_answered.push(store.range_gets());
        for (partition, data) in partitions(&response).into_iter().enumerate() {
            assert_eq!(data.error_code, 0, "round {round}");
            let fetched = batches_of(&data.records);
            assert_eq!(fetched.len(), 1, "round {round} partition {partition}");
            let (base, bytes) = &fetched[0];
            assert_eq!(
                *base, offsets[partition],
                "round {round} partition {partition}"
            );
            assert_same_batch(bytes, &produced[partition][round], *base);
            offsets[partition] += RECORDS_PER_BATCH as i64;
        }
        // The client's own work on what it received, during which the agent reads the next
        // fetch's object ahead: wait for that GET to start (the event itself, so a loaded machine
        // only makes the test slower). The next fetch is then sent with its bytes requested by
        // nobody but the read-ahead: objects 0..=round+1 asked for, one GET each.
        if round + 1 < BATCHES {
            let deadline = Instant::now() + Duration::from_secs(30);
            while store.range_gets() < (round + 2) as u64 {
                assert!(
                    Instant::now() < deadline,
                    "no read-ahead after fetch {round}: {} GETs",
                    store.range_gets()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    assert_eq!(offsets, [(BATCHES * RECORDS_PER_BATCH) as i64; 2]);
    // Safe on any machine: a lower bound.
    assert!(
        fetch_times[0] >= GET_DELAY,
        "the first fetch reads the store: {fetch_times:?}"
    );
    eprintln!(
        "fetch times {fetch_times:?}, GETs started when each was answered {gets_when_answered:?}"
    );
    // Each entry was read once: one GET per object (both partitions' segments coalesced), no
    // read twice by a fetch and its read-ahead. With the wait above, this is what shows that
    // every fetch after the first found its bytes read ahead: had one read them itself, its
    // object would have been read twice.
    assert!(
        store.range_gets() <= BATCHES as u64,
        "{} GETs for {BATCHES} objects",
        store.range_gets()
    );
}

#[test]
fn a_fetch_arriving_during_its_read_ahead_waits_for_it_instead_of_reading_again() {
    let store_dir = tempfile::tempdir().unwrap();
    let (topic_id, produced) =
        fill_two_partitions(store_dir.path(), "history", BATCHES, RECORDS_PER_BATCH);
    let batch_bytes = produced[0][0].len() as i32;
    let store = SlowGets::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |_| {});
    let mut client = RawClient::connect(agent.addr());
    let mut offset = 0_i64;
    for round in 0..BATCHES {
        let wants = [Want {
            partition: 0,
            offset,
            partition_max_bytes: batch_bytes,
        }];
        // No pause: each fetch comes while the read-ahead for it is still running.
        let response = fetch(
            &mut client,
            13,
            &fetch_request("history", topic_id, &wants, 0, 0),
        );
        let fetched = batches_of(&partitions(&response)[0].records);
        assert_eq!(fetched.len(), 1, "round {round}");
        assert_eq!(fetched[0].0, offset);
        assert_same_batch(&fetched[0].1, &produced[0][round], offset);
        offset += RECORDS_PER_BATCH as i64;
    }
    assert!(
        store.range_gets() <= BATCHES as u64,
        "{} GETs for {BATCHES} objects: a range was read twice",
        store.range_gets()
    );
}

#[test]
fn a_consumer_at_the_live_edge_reads_nothing_ahead() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = SlowGets::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |config| {
            config.flush_interval_ms = 5
        });
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "tail", 1);
    let mut offset = 0_i64;
    for round in 0..4 {
        let records = batch(RECORDS_PER_BATCH, round);
        produce(&mut client, "tail", 0, records.clone());
        let response = fetch(
            &mut client,
            13,
            &fetch_request("tail", topic_id, &[want(0, offset)], 0, 0),
        );
        let fetched = batches_of(&partitions(&response)[0].records);
        assert_eq!(fetched.len(), 1);
        assert_same_batch(&fetched[0].1, &records, offset);
        offset += RECORDS_PER_BATCH as i64;
    }
    std::thread::sleep(GET_DELAY);
    assert_eq!(store.range_gets(), 0, "served by the write-through cache");
}

#[test]
fn a_cold_fetch_reads_every_partition_it_answers_in_one_round_of_gets() {
    // Each object holds two batches of each of 8 partitions; a fetch's budget takes one batch
    // per partition. Counting whole entries, the prefetch would read only half the partitions
    // the answer then fills, and the others one GET round after another.
    const PARTITIONS: i32 = 8;
    let store_dir = tempfile::tempdir().unwrap();
    let store = open_store(
        &StoreConfig::from_url(&format!(
            "file://{}?fsync=false",
            store_dir.path().display()
        ))
        .unwrap(),
    )
    .unwrap();
    let agent = common::start_agent_with_store(store, |config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "wide", PARTITIONS);
    let batches: Vec<[Bytes; 2]> = (0..PARTITIONS)
        .map(|partition| {
            [
                batch(RECORDS_PER_BATCH, i64::from(partition)),
                batch(RECORDS_PER_BATCH, 100 + i64::from(partition)),
            ]
        })
        .collect();
    let records: Vec<(&str, i32, Bytes)> = batches
        .iter()
        .enumerate()
        .map(|(partition, [first, second])| {
            (
                "wide",
                partition as i32,
                [first.clone(), second.clone()].concat().into(),
            )
        })
        .collect();
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &produce_request(-1, &records));
    assert!(
        produce_results(&response)
            .iter()
            .all(|(_, _, error_code, base)| (*error_code, *base) == (0, 0))
    );
    drop(client);
    agent.stop();

    let store = SlowGets::local(store_dir.path());
    let agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |_| {});
    let mut client = RawClient::connect(agent.addr());
    let batch_bytes = batches.iter().map(|pair| pair[0].len()).max().unwrap() as i32;
    let wants: Vec<Want> = (0..PARTITIONS)
        .map(|partition| Want {
            partition,
            offset: 0,
            partition_max_bytes: batch_bytes,
        })
        .collect();
    let request =
        fetch_request("wide", topic_id, &wants, 0, 0).with_max_bytes(PARTITIONS * batch_bytes);
    let started = Instant::now();
    let response = fetch(&mut client, 13, &request);
    let took = started.elapsed();
    let answered = partitions(&response);
    assert_eq!(answered.len(), PARTITIONS as usize);
    for (partition, data) in answered.into_iter().enumerate() {
        let fetched = batches_of(&data.records);
        assert_eq!(
            fetched.len(),
            1,
            "partition {partition}: one batch fits its budget"
        );
        assert_same_batch(&fetched[0].1, &batches[partition][0], 0);
    }
    assert!(
        took < GET_DELAY * 2,
        "one round of GETs for all {PARTITIONS} partitions, not several: {took:?}"
    );
}
