//! `message.timestamp.type=LogAppendTime`: the agent stamps every batch of such a topic with its own
//! clock (timestamp-type bit, `maxTimestamp`, CRC), answers the produce with that time, serves and
//! stores the stamped bytes (also after a restart), and finds offsets by the stamped time. CreateTime
//! topics keep the producer's bytes; a config change applies to the next produce; a producer may not
//! set LogAppendTime itself.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{RawClient, create_topics_request, produce_request, topic_name};
use fetch_support::{assert_same_batch, batches_of, fetch, fetch_request, partitions, want};
use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ListOffsetsRequest, ListOffsetsResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::batch::{BatchBuilder, BatchHeader, TimestampType, validate_batch};
use uuid::Uuid;

/// The producers' CreateTime: 9 September 2001, far from any clock the agent could have.
const PRODUCER_TIMESTAMP_MS: i64 = 1_000_000_000_000;
const INVALID_TIMESTAMP: i16 = 32;
const RESOURCE_TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Creates a one-partition topic with `configs`; returns its id.
fn create_topic(client: &mut RawClient, name: &str, configs: &[(&str, &str)]) -> Uuid {
    let mut request = create_topics_request(&[(name, 1)]);
    request.topics[0].configs = configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(text(name))
                .with_value(Some(text(value)))
        })
        .collect();
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    response.topics[0].topic_id
}

/// Sets (`Some`) or removes (`None`) a topic's `message.timestamp.type`.
fn set_timestamp_type(client: &mut RawClient, topic: &str, value: Option<&str>) {
    let config = AlterableConfig::default()
        .with_name(text("message.timestamp.type"))
        .with_config_operation(if value.is_some() { SET } else { DELETE })
        .with_value(value.map(text));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(text(topic))
            .with_configs(vec![config]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        client.call(ApiKey::IncrementalAlterConfigs, 1, &request);
    assert_eq!(
        response.responses[0].error_code, 0,
        "{:?}",
        response.responses[0]
    );
}

/// A batch of `records` records stamped by a producer at [`PRODUCER_TIMESTAMP_MS`].
fn producer_batch(records: usize, seed: u8) -> Bytes {
    let mut builder = BatchBuilder::new(PRODUCER_TIMESTAMP_MS);
    for index in 0..records {
        builder = builder.record(index as i64 * 7, Some(&[seed]), &[seed; 40]);
    }
    builder.encode()
}

/// One produce of `records` (acks=all, v9) to partition 0 of `topic`; returns
/// `(error code, base offset, log_append_time_ms)`.
fn produce(client: &mut RawClient, topic: &str, records: Bytes) -> (i16, i64, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[(topic, 0, records)]),
    );
    let answer = &response.responses[0].partition_responses[0];
    (
        answer.error_code,
        answer.base_offset,
        answer.log_append_time_ms,
    )
}

/// Every batch of partition 0 from offset 0, as `(base offset, header, bytes)`; each must pass
/// its CRC check.
fn fetch_all(
    client: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
) -> Vec<(i64, BatchHeader, Bytes)> {
    let response = fetch(
        client,
        12,
        &fetch_request(topic, topic_id, &[want(0, 0)], 0, 0),
    );
    let partition = partitions(&response)[0];
    assert_eq!(partition.error_code, 0);
    batches_of(&partition.records)
        .into_iter()
        .map(|(base, bytes)| {
            (
                base,
                validate_batch(&bytes).expect("CRC and header valid"),
                bytes,
            )
        })
        .collect()
}

/// ListOffsets v6 by timestamp on partition 0: `(error code, offset, timestamp)`.
fn offset_for_timestamp(client: &mut RawClient, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp),
                ]),
        ]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 6, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset, answer.timestamp)
}

/// A stamped batch: `produced` with the LogAppendTime bit, `maxTimestamp` = `append_time_ms` and a
/// new CRC; baseTimestamp and the records are the producer's.
fn assert_stamped(header: &BatchHeader, bytes: &Bytes, produced: &Bytes, append_time_ms: i64) {
    let original = validate_batch(produced).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.attributes & (1 << 3), 1 << 3);
    assert_eq!(header.max_timestamp, append_time_ms);
    assert_eq!(header.base_timestamp, PRODUCER_TIMESTAMP_MS);
    assert_ne!(header.crc, original.crc);
    assert_eq!(bytes.len(), produced.len());
    assert_eq!(
        bytes[43..],
        produced[43..],
        "producer id onwards, records included"
    );
    assert_eq!(
        bytes[23..35],
        produced[23..35],
        "lastOffsetDelta and baseTimestamp"
    );
}

#[test]
fn log_append_time_topics_store_and_serve_the_agents_time() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let stamped_id = create_topic(
        &mut client,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let plain_id = create_topic(&mut client, "plain", &[]);

    // Three produces, a little apart so their append times differ.
    let produced: Vec<Bytes> = (0..3)
        .map(|seed| producer_batch(2 + seed as usize, seed))
        .collect();
    let mut appended = Vec::new();
    for records in &produced {
        let before = now_ms();
        let (code, base_offset, log_append_time_ms) =
            produce(&mut client, "stamped", records.clone());
        let after = now_ms();
        assert_eq!(code, 0);
        assert!(
            (before..=after).contains(&log_append_time_ms),
            "log_append_time_ms {log_append_time_ms} not in [{before}, {after}]"
        );
        appended.push((base_offset, log_append_time_ms));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        appended.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
        vec![0, 2, 5]
    );
    assert!(
        appended[0].1 < appended[1].1 && appended[1].1 < appended[2].1,
        "{appended:?}"
    );

    let fetched = fetch_all(&mut client, "stamped", stamped_id);
    assert_eq!(fetched.len(), 3);
    for ((base, header, bytes), (produced, (base_offset, append_time))) in
        fetched.iter().zip(produced.iter().zip(&appended))
    {
        assert_eq!(base, base_offset);
        assert_stamped(header, bytes, produced, *append_time);
    }

    // ListOffsets goes by the stamped time: the producer's 2001 timestamps are in no index.
    assert_eq!(
        offset_for_timestamp(&mut client, "stamped", PRODUCER_TIMESTAMP_MS + 1_000),
        (0, 0, appended[0].1)
    );
    assert_eq!(
        offset_for_timestamp(&mut client, "stamped", appended[0].1 + 1),
        (0, 2, appended[1].1)
    );
    assert_eq!(
        offset_for_timestamp(&mut client, "stamped", appended[2].1),
        (0, 5, appended[2].1)
    );
    assert_eq!(
        offset_for_timestamp(&mut client, "stamped", appended[2].1 + 1),
        (0, -1, -1)
    );

    // A CreateTime topic: the producer's bytes, byte for byte, and no append time.
    let plain = producer_batch(3, 9);
    assert_eq!(produce(&mut client, "plain", plain.clone()), (0, 0, -1));
    let fetched = fetch_all(&mut client, "plain", plain_id);
    assert_same_batch(&fetched[0].2, &plain, 0);
    assert_eq!(fetched[0].1.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(
        offset_for_timestamp(&mut client, "plain", PRODUCER_TIMESTAMP_MS),
        (0, 0, PRODUCER_TIMESTAMP_MS + 14)
    );

    // What is stored is the stamped batch: a fresh agent reads it from the store.
    let data_dir = agent.stop().unwrap();
    let agent = common::start_agent_in(data_dir, |_| {});
    let mut client = RawClient::connect(agent.addr());
    let fetched = fetch_all(&mut client, "stamped", stamped_id);
    for ((_, header, bytes), (produced, (_, append_time))) in
        fetched.iter().zip(produced.iter().zip(&appended))
    {
        assert_stamped(header, bytes, produced, *append_time);
    }
    assert_eq!(
        offset_for_timestamp(&mut client, "stamped", appended[0].1 + 1),
        (0, 2, appended[1].1)
    );
}

#[test]
fn a_config_change_applies_to_the_next_produce() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "switch", &[]);

    let first = producer_batch(1, 1);
    assert_eq!(produce(&mut client, "switch", first.clone()), (0, 0, -1));

    set_timestamp_type(&mut client, "switch", Some("LogAppendTime"));
    let second = producer_batch(2, 2);
    let before = now_ms();
    let (code, base_offset, append_time) = produce(&mut client, "switch", second.clone());
    assert_eq!((code, base_offset), (0, 1));
    assert!((before..=now_ms()).contains(&append_time));

    set_timestamp_type(&mut client, "switch", None);
    let third = producer_batch(1, 3);
    assert_eq!(produce(&mut client, "switch", third.clone()), (0, 3, -1));

    let fetched = fetch_all(&mut client, "switch", topic_id);
    assert_eq!(fetched.len(), 3);
    assert_same_batch(&fetched[0].2, &first, 0);
    assert_stamped(&fetched[1].1, &fetched[1].2, &second, append_time);
    assert_same_batch(&fetched[2].2, &third, 3);
}

#[test]
fn a_producer_may_not_choose_log_append_time() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let stamped_id = create_topic(
        &mut client,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let plain_id = create_topic(&mut client, "plain", &[]);
    let claims_log_append_time = |max_timestamp_base: i64| {
        BatchBuilder::new(max_timestamp_base)
            .attributes(1 << 3)
            .record(5, None, b"forged")
            .encode()
    };

    // Refused on a LogAppendTime topic (Kafka's INVALID_TIMESTAMP), the partition's whole produce.
    let mut two = producer_batch(1, 1).to_vec();
    two.extend_from_slice(&claims_log_append_time(PRODUCER_TIMESTAMP_MS));
    let (code, base_offset, append_time) = produce(&mut client, "stamped", Bytes::from(two));
    assert_eq!(
        (code, base_offset, append_time),
        (INVALID_TIMESTAMP, -1, -1)
    );
    assert!(fetch_all(&mut client, "stamped", stamped_id).is_empty());

    // On a CreateTime topic Kafka keeps it as CreateTime with its maxTimestamp; without a
    // timestamp (-1) it is refused too.
    assert_eq!(
        produce(&mut client, "plain", claims_log_append_time(-6)).0,
        INVALID_TIMESTAMP
    );
    let forged = claims_log_append_time(PRODUCER_TIMESTAMP_MS);
    assert_eq!(produce(&mut client, "plain", forged.clone()), (0, 0, -1));
    let fetched = fetch_all(&mut client, "plain", plain_id);
    let (_, header, bytes) = &fetched[0];
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(header.max_timestamp, PRODUCER_TIMESTAMP_MS + 5);
    assert_eq!(bytes[43..], forged[43..]);
}
