//! DeleteRecords over a real socket, on the loopback S3-API server: Kafka's per-partition answers,
//! what ListOffsets, Fetch and Produce see afterwards, and the new log start offsets surviving a
//! restart on the same bucket (recovery replays the commands).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{RawClient, batch, produce_request, produce_results, topic_name};
use fetch_support::{batches_of, create_topic, fetch, fetch_request, partitions, produce, want};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::store::S3TestServer;
use uuid::Uuid;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const POLICY_VIOLATION: i16 = 44;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Record timestamps of now: far from any retention limit.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends one DeleteRecords; returns `(topic, partition, error code, low watermark)` in response
/// order.
fn delete_records(
    client: &mut RawClient,
    version: i16,
    topics: &[(&str, &[(i32, i64)])],
) -> Vec<(String, i32, i16, i64)> {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    DeleteRecordsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(partition, offset)| {
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(*partition)
                                        .with_offset(*offset)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response: DeleteRecordsResponse = client.call(ApiKey::DeleteRecords, version, &request);
    response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.as_str().to_owned(),
                    partition.partition_index,
                    partition.error_code,
                    partition.low_watermark,
                )
            })
        })
        .collect()
}

/// `(error code, offset)` of ListOffsets for one partition.
fn list_offset(client: &mut RawClient, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 6, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}

/// `(error code, log start offset, high watermark, batch base offsets)` of one fetch.
fn fetch_at(
    client: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    offset: i64,
) -> (i16, i64, i64, Vec<i64>) {
    let response = fetch(
        client,
        12,
        &fetch_request(topic, topic_id, &[want(0, offset)], 0, 0),
    );
    let partition = partitions(&response)[0];
    let bases = batches_of(&partition.records)
        .iter()
        .map(|(base, _)| *base)
        .collect();
    (
        partition.error_code,
        partition.log_start_offset,
        partition.high_watermark,
        bases,
    )
}

#[test]
fn delete_records_moves_the_log_start_and_it_survives_a_restart() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("delete-records");
    let agent = common::start_agent(|config| config.store = Some(url.clone()));
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "ledger", 3);
    // Partition 0: four batches of 5 (0..20); partition 1: one batch of 3; partition 2: empty.
    for _ in 0..4 {
        produce(&mut client, "ledger", 0, batch(5, now_ms()));
    }
    produce(&mut client, "ledger", 1, batch(3, now_ms()));

    // One request, every partition answered on its own: the middle of a batch, the high
    // watermark (-1), an empty partition (a no-op at 0), an unknown partition, an unknown topic.
    let answers = delete_records(
        &mut client,
        2,
        &[
            ("ledger", &[(0, 7), (1, -1), (2, 0), (9, 1)]),
            ("nope", &[(0, 1)]),
        ],
    );
    assert_eq!(
        answers,
        [
            ("ledger".to_owned(), 0, 0, 7),
            ("ledger".to_owned(), 1, 0, 3),
            ("ledger".to_owned(), 2, 0, 0),
            ("ledger".to_owned(), 9, UNKNOWN_TOPIC_OR_PARTITION, -1),
            ("nope".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION, -1),
        ]
    );

    // ListOffsets earliest is the new log start, latest unchanged.
    assert_eq!(list_offset(&mut client, "ledger", 0, EARLIEST), (0, 7));
    assert_eq!(list_offset(&mut client, "ledger", 0, LATEST), (0, 20));
    assert_eq!(list_offset(&mut client, "ledger", 1, EARLIEST), (0, 3));
    assert_eq!(list_offset(&mut client, "ledger", 1, LATEST), (0, 3));

    // A fetch below the log start is out of range. Offsets are not reported with the error: a
    // Kafka broker answers -1 for both too (ReplicaManager.createLogReadResult), and consumers
    // reset through ListOffsets.
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 6),
        (OFFSET_OUT_OF_RANGE, -1, -1, vec![])
    );
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 0).0,
        OFFSET_OUT_OF_RANGE
    );
    // At the new log start: the batch holding offset 7 (5..10) and the rest, with the new log
    // start offset.
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 7),
        (0, 7, 20, vec![5, 10, 15])
    );
    // Produce answers carry it too.
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[("ledger", 0, batch(2, now_ms()))]),
    );
    assert_eq!(produce_results(&response)[0].3, 20);
    assert_eq!(
        response.responses[0].partition_responses[0].log_start_offset,
        7
    );

    // Past the high watermark (now 22), a negative offset other than -1, and a lower offset (a
    // no-op answering the current log start), at v0 and v1.
    for version in [0, 1] {
        assert_eq!(
            delete_records(&mut client, version, &[("ledger", &[(0, 23), (1, -2)])]),
            [
                ("ledger".to_owned(), 0, OFFSET_OUT_OF_RANGE, -1),
                ("ledger".to_owned(), 1, OFFSET_OUT_OF_RANGE, -1),
            ],
            "v{version}"
        );
        assert_eq!(
            delete_records(&mut client, version, &[("ledger", &[(0, 2)])]),
            [("ledger".to_owned(), 0, 0, 7)],
            "v{version}"
        );
    }
    assert_eq!(list_offset(&mut client, "ledger", 0, EARLIEST), (0, 7));

    // A compacted topic refuses, as Kafka's broker does.
    let compacted = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name("compacted"))
                .with_num_partitions(1)
                .with_replication_factor(-1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("cleanup.policy"))
                        .with_value(Some(StrBytes::from_static_str("compact"))),
                ]),
        ]);
    let created: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &compacted);
    assert_eq!(created.topics[0].error_code, 0);
    produce(&mut client, "compacted", 0, batch(4, now_ms()));
    assert_eq!(
        delete_records(&mut client, 2, &[("compacted", &[(0, 2)])]),
        [("compacted".to_owned(), 0, POLICY_VIOLATION, -1)]
    );
    assert_eq!(list_offset(&mut client, "compacted", 0, EARLIEST), (0, 0));

    // A fresh agent on the same bucket replays the commands.
    drop(client);
    drop(agent.stop());
    let agent = common::start_agent(|config| config.store = Some(url.clone()));
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(list_offset(&mut client, "ledger", 0, EARLIEST), (0, 7));
    assert_eq!(list_offset(&mut client, "ledger", 0, LATEST), (0, 22));
    assert_eq!(list_offset(&mut client, "ledger", 1, EARLIEST), (0, 3));
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 6).0,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 7),
        (0, 7, 22, vec![5, 10, 15, 20])
    );
    assert_eq!(
        delete_records(&mut client, 2, &[("ledger", &[(0, 10)])]),
        [("ledger".to_owned(), 0, 0, 10)]
    );
    assert_eq!(
        fetch_at(&mut client, "ledger", topic_id, 10),
        (0, 10, 22, vec![10, 15, 20])
    );
}

#[test]
fn a_partition_named_twice_is_deleted_once_to_the_last_offset() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    create_topic(&mut client, "twice", 1);
    produce(&mut client, "twice", 0, batch(10, now_ms()));
    assert_eq!(
        delete_records(
            &mut client,
            2,
            &[("twice", &[(0, 8)]), ("twice", &[(0, 4)])]
        ),
        [("twice".to_owned(), 0, 0, 4)]
    );
    assert_eq!(list_offset(&mut client, "twice", 0, EARLIEST), (0, 4));
}
