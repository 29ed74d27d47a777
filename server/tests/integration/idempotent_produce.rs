//! Idempotent producers end to end with the raw client codec: InitProducerId, deduplicated
//! retries, sequence and epoch errors, and producer state across an agent restart.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use bytes::{Bytes, BytesMut};
use std::sync::Arc;

use common::{CountingStore, RawClient, batch, produce_request, produce_results};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceResponse, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{BatchBuilder, split_batches};
use sluice_engine::store::{ObjectStorage, StoreConfig, open_store};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const TOPIC: &str = "idem";

/// A batch of `records` records from producer `producer_id` at `epoch`, starting at `sequence`.
fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(1_000).producer(producer_id, epoch, sequence);
    for index in 0..records {
        builder = builder.record(
            index as i64,
            None,
            format!("s{sequence}-{index}").as_bytes(),
        );
    }
    builder.encode()
}

fn init_producer_id(client: &mut RawClient, version: i16) -> InitProducerIdResponse {
    client.call(
        ApiKey::InitProducerId,
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    )
}

fn fresh_producer_id(client: &mut RawClient) -> i64 {
    let response = init_producer_id(client, 5);
    assert_eq!(
        (response.error_code, response.producer_epoch),
        (0, 0),
        "{response:?}"
    );
    response.producer_id.0
}

/// `(error code, base offset)` of producing `records` to partition 0.
fn produce(client: &mut RawClient, records: Bytes) -> (i16, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[(TOPIC, 0, records)]),
    );
    let results = produce_results(&response);
    (results[0].2, results[0].3)
}

#[test]
fn init_producer_id_hands_out_distinct_ids_at_every_version() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    let mut ids = Vec::new();
    for version in 0..=5 {
        let response = init_producer_id(&mut client, version);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.producer_epoch, 0, "v{version}");
        assert!(response.producer_id.0 >= 0, "v{version}");
        ids.push(response.producer_id.0);
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    let transactional: InitProducerIdResponse = client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(
        transactional.error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(transactional.producer_id.0, -1);
}

#[test]
fn retries_get_the_original_offsets_and_errors_follow_the_java_broker() {
    let agent = common::start_agent(|_| {});
    agent.create_topic(TOPIC, 1);
    let mut client = RawClient::connect(agent.addr());
    let producer = fresh_producer_id(&mut client);

    // Sequences 0..3 and 3..5.
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 0, 3)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 3, 2)),
        (0, 3)
    );
    // The same requests again (a retry after a lost response): same offsets, no new ones.
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 0, 3)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 3, 2)),
        (0, 3)
    );
    assert_eq!(
        produce(&mut client, batch(1, 1)),
        (0, 5),
        "duplicates took no offsets"
    );

    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER, and nothing appended.
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // The producer bumps its epoch (KIP-360) and restarts at 0; the old epoch is then refused.
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 1, 0, 1)),
        (0, 6)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 5, 1)).0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(produce(&mut client, batch(1, 1)), (0, 7));
}

/// A retry pipelined right behind its original (the same window, so the same segment) and another
/// producer's batches around it: each produce is answered from its own batch.
#[test]
fn pipelined_retries_and_other_producers_share_a_segment_safely() {
    let store_dir = tempfile::tempdir().unwrap();
    let inner = open_store(
        &StoreConfig::from_url(&format!(
            "file://{}?fsync=false",
            store_dir.path().display()
        ))
        .unwrap(),
    )
    .unwrap();
    let counting = CountingStore::wrap(inner);
    let store: Arc<dyn ObjectStorage> = counting.clone();
    // Fixed windows: with group commit the first request would go out alone.
    let agent = common::start_agent_with_store(store, |config| {
        config.flush_interval_ms = 500;
        config.flush_group_commit = false;
    });
    agent.create_topic(TOPIC, 1);
    let mut client = RawClient::connect(agent.addr());
    let (a, b) = (
        fresh_producer_id(&mut client),
        fresh_producer_id(&mut client),
    );
    let requests = [
        idempotent_batch(a, 0, 0, 2),
        idempotent_batch(b, 0, 0, 3),
        idempotent_batch(a, 0, 0, 2),
        idempotent_batch(b, 0, 3, 1),
    ];
    let puts_before = counting.put_count();
    let correlation_ids: Vec<i32> = requests
        .iter()
        .map(|records| {
            client.send(
                ApiKey::Produce,
                9,
                &produce_request(-1, &[(TOPIC, 0, records.clone())]),
            )
        })
        .collect();
    let answers: Vec<(i16, i64)> = correlation_ids
        .into_iter()
        .map(|correlation_id| {
            let response: ProduceResponse = client.receive(ApiKey::Produce, 9, correlation_id);
            let results = produce_results(&response);
            (results[0].2, results[0].3)
        })
        .collect();
    // One object: the scenario really put a retry and new batches into one segment.
    assert_eq!(counting.put_count() - puts_before, 1, "one window");
    assert_eq!(answers, vec![(0, 0), (0, 2), (0, 0), (0, 5)]);
    assert_eq!(produce(&mut client, batch(1, 1)), (0, 6));
    // A read serves each batch once, at its offset: the retry's bytes are in an object but not
    // indexed.
    let fetched = fetch_from_zero(&mut client);
    let expected = [(0, &requests[0]), (2, &requests[1]), (5, &requests[3])];
    assert!(fetched.len() >= expected.len(), "{fetched:?}");
    for ((offset, bytes), (want_offset, want_bytes)) in fetched.iter().zip(expected) {
        assert_eq!(*offset, want_offset);
        // Only the broker-owned fields (base offset, partition leader epoch) may differ.
        assert_eq!(bytes.len(), want_bytes.len());
        assert_eq!(bytes[16..], want_bytes[16..]);
    }
    assert_eq!(fetched.last().unwrap().0, 6);
}

/// `(base offset, bytes)` of every batch of partition 0 from offset 0 (Fetch v12, by name).
fn fetch_from_zero(client: &mut RawClient) -> Vec<(i64, Bytes)> {
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(common::topic_name(TOPIC))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(0)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let records = partition.records.clone().unwrap_or_default();
    split_batches(records, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(header, bytes)| (header.base_offset, bytes))
        .collect()
}

#[test]
fn producer_state_survives_a_restart() {
    let agent = common::start_agent(|_| {});
    agent.create_topic(TOPIC, 1);
    let mut client = RawClient::connect(agent.addr());
    let producer = fresh_producer_id(&mut client);
    // Two batches in one request, as a client with linger may send after a retry.
    let mut two = BytesMut::new();
    two.extend_from_slice(&idempotent_batch(producer, 0, 0, 2));
    two.extend_from_slice(&idempotent_batch(producer, 0, 2, 2));
    assert_eq!(produce(&mut client, two.clone().freeze()), (0, 0));
    drop(client);
    let data_dir = agent.stop().unwrap();

    let agent = common::start_agent_in(data_dir, |_| {});
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(
        produce(&mut client, two.freeze()),
        (0, 0),
        "the retry is still recognised after the restart"
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 4, 1)),
        (0, 4)
    );
    assert_eq!(
        produce(&mut client, idempotent_batch(producer, 0, 9, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let next = fresh_producer_id(&mut client);
    assert!(
        next > producer,
        "ids are never handed out twice: {next} after {producer}"
    );
}
