//! Helpers shared by the `fetch_*` tests: topics with their ids, fetch requests, byte
//! comparisons, and a store wrapper that counts ranged GETs.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceResponse,
};
use sluice_engine::batch::split_batches;
use sluice_engine::store::{ObjectInfo, ObjectStorage, StoreConfig, StoreResult, open_store};
use uuid::Uuid;

use crate::common::{self, RawClient, create_topics_request, produce_request, produce_results};

/// Creates `name` and returns its topic id.
pub fn create_topic(client: &mut RawClient, name: &str, partitions: i32) -> Uuid {
    let response: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[(name, partitions)]),
    );
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    response.topics[0].topic_id
}

/// Produces `records` (acks=all) to one partition; returns its base offset.
pub fn produce(client: &mut RawClient, topic: &str, partition: i32, records: Bytes) -> i64 {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[(topic, partition, records)]),
    );
    let results = produce_results(&response);
    assert_eq!(results[0].2, 0, "{results:?}");
    results[0].3
}

/// History in a store for a fresh agent to read: an agent (one network core, 5 ms windows) on the
/// local store at `store_dir` produces `batches` rounds of one batch of `records_per_batch` records
/// to each of the two partitions of a new topic `topic` (both partitions in one request, so one
/// object holds a segment of each), checks each round's base offsets, and stops. Returns the
/// topic id and each partition's batches in order.
pub fn fill_two_partitions(
    store_dir: &std::path::Path,
    topic: &str,
    batches: usize,
    records_per_batch: usize,
) -> (Uuid, [Vec<Bytes>; 2]) {
    let store = open_store(
        &StoreConfig::from_url(&format!("file://{}?fsync=false", store_dir.display())).unwrap(),
    )
    .unwrap();
    let agent = common::start_agent_with_store(store, |config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, topic, 2);
    let mut produced = [Vec::new(), Vec::new()];
    for index in 0..batches {
        let records: Vec<Bytes> = (0..2)
            .map(|partition| common::batch(records_per_batch, (index * 10 + partition) as i64))
            .collect();
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &produce_request(
                -1,
                &[
                    (topic, 0, records[0].clone()),
                    (topic, 1, records[1].clone()),
                ],
            ),
        );
        for (_, _, error_code, base) in produce_results(&response) {
            assert_eq!((error_code, base), (0, (index * records_per_batch) as i64));
        }
        for (batches, records) in produced.iter_mut().zip(records) {
            batches.push(records);
        }
    }
    drop(client);
    agent.stop();
    (topic_id, produced)
}

/// One partition to fetch.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub partition: i32,
    pub offset: i64,
    pub partition_max_bytes: i32,
}

pub fn want(partition: i32, offset: i64) -> Want {
    Want {
        partition,
        offset,
        partition_max_bytes: 1 << 20,
    }
}

/// A fetch of `topic` (named by both name and id; the version decides which is sent).
pub fn fetch_request(
    topic: &str,
    topic_id: Uuid,
    wants: &[Want],
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_topic(topic, topic_id, wants)])
}

pub fn fetch_topic(topic: &str, topic_id: Uuid, wants: &[Want]) -> FetchTopic {
    FetchTopic::default()
        .with_topic(crate::common::topic_name(topic))
        .with_topic_id(topic_id)
        .with_partitions(
            wants
                .iter()
                .map(|want| {
                    FetchPartition::default()
                        .with_partition(want.partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(want.offset)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(want.partition_max_bytes)
                })
                .collect(),
        )
}

pub fn forgotten(topic: &str, topic_id: Uuid, partitions: &[i32]) -> ForgottenTopic {
    ForgottenTopic::default()
        .with_topic(crate::common::topic_name(topic))
        .with_topic_id(topic_id)
        .with_partitions(partitions.to_vec())
}

pub fn fetch(client: &mut RawClient, version: i16, request: &FetchRequest) -> FetchResponse {
    client.call(ApiKey::Fetch, version, request)
}

/// Every partition of the response, in order.
pub fn partitions(response: &FetchResponse) -> Vec<&PartitionData> {
    response
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .collect()
}

/// `(base offset, bytes)` of each batch in `records`.
pub fn batches_of(records: &Option<Bytes>) -> Vec<(i64, Bytes)> {
    let Some(records) = records.as_ref().filter(|records| !records.is_empty()) else {
        return Vec::new();
    };
    split_batches(records.clone(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(header, bytes)| (header.base_offset, bytes))
        .collect()
}

/// Asserts that `fetched` is `produced` with only the broker-owned fields changed: baseOffset
/// (checked against `base_offset`) and partitionLeaderEpoch.
pub fn assert_same_batch(fetched: &Bytes, produced: &Bytes, base_offset: i64) {
    assert_eq!(fetched.len(), produced.len());
    assert_eq!(
        i64::from_be_bytes(fetched[0..8].try_into().unwrap()),
        base_offset
    );
    assert_eq!(fetched[8..12], produced[8..12], "batchLength");
    assert_eq!(
        fetched[16..],
        produced[16..],
        "magic, crc, attributes, records"
    );
}

/// A store wrapper counting ranged GETs of log entries (what a fetch miss costs).
#[derive(Debug)]
pub struct GetCountingStore {
    pub inner: Arc<dyn ObjectStorage>,
    pub range_gets: AtomicU64,
}

impl GetCountingStore {
    /// Over a local directory store (no fsync).
    pub fn local(dir: &std::path::Path) -> Arc<GetCountingStore> {
        std::fs::create_dir_all(dir).unwrap();
        let url = format!("file://{}?fsync=false", dir.display());
        let inner = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
        Arc::new(GetCountingStore {
            inner,
            range_gets: AtomicU64::new(0),
        })
    }

    pub fn range_gets(&self) -> u64 {
        self.range_gets.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ObjectStorage for GetCountingStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        self.range_gets.fetch_add(1, Ordering::SeqCst);
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
