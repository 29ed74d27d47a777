//! Produce end to end over a real socket, on a local-directory store: offsets, errors, acks,
//! pipelining, and a restart on the same store.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use bytes::Bytes;
use common::{RawClient, batch, produce_request, produce_results};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceResponse};

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;

fn produce(
    client: &mut RawClient,
    version: i16,
    acks: i16,
    partitions: &[(&str, i32, Bytes)],
) -> ProduceResponse {
    client.call(ApiKey::Produce, version, &produce_request(acks, partitions))
}

#[test]
fn base_offsets_are_contiguous_per_partition_at_every_version_and_ack_level() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("orders", 2);
    let mut client = RawClient::connect(agent.addr());
    let mut next = [0_i64; 2];
    for (round, version) in (3..=12).enumerate() {
        let acks = if round % 2 == 0 { 1 } else { -1 };
        let records = [3_usize, 5];
        let response = produce(
            &mut client,
            version,
            acks,
            &[
                ("orders", 0, batch(records[0], 1_000)),
                ("orders", 1, batch(records[1], 1_000)),
            ],
        );
        let results = produce_results(&response);
        assert_eq!(results.len(), 2, "v{version}");
        for (name, partition, error_code, base_offset) in results {
            assert_eq!(
                (name.as_str(), error_code),
                ("orders", 0),
                "v{version} p{partition}"
            );
            let partition = partition as usize;
            assert_eq!(base_offset, next[partition], "v{version} p{partition}");
            next[partition] += records[partition] as i64;
        }
    }
    // Two batches of one partition in one request: the base offset is the first one's.
    let mut two = batch(2, 5).to_vec();
    two.extend_from_slice(&batch(4, 6));
    let response = produce(&mut client, 9, 1, &[("orders", 0, Bytes::from(two))]);
    assert_eq!(produce_results(&response)[0].3, next[0]);
    let response = produce(&mut client, 9, 1, &[("orders", 0, batch(1, 7))]);
    assert_eq!(produce_results(&response)[0].3, next[0] + 6);
}

#[test]
fn bad_produces_get_kafka_error_codes_and_do_not_disturb_good_partitions() {
    let agent = common::start_agent(|config| config.auto_create_topics = false);
    agent.create_topic("orders", 1);
    let mut client = RawClient::connect(agent.addr());
    let mut bad_crc = batch(2, 1).to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    let mut magic_1 = batch(1, 1).to_vec();
    magic_1[16] = 1;
    let response = produce(
        &mut client,
        9,
        -1,
        &[
            ("orders", 0, Bytes::from(bad_crc)),
            ("nope", 0, batch(1, 1)),
            ("orders", 7, batch(1, 1)),
            ("legacy", 0, Bytes::from(magic_1)),
        ],
    );
    let codes: Vec<i16> = produce_results(&response)
        .iter()
        .map(|result| result.2)
        .collect();
    assert_eq!(
        codes,
        vec![
            CORRUPT_MESSAGE,
            UNKNOWN_TOPIC_OR_PARTITION,
            UNKNOWN_TOPIC_OR_PARTITION,
            UNSUPPORTED_FOR_MESSAGE_FORMAT
        ]
    );
    // Nothing was appended: the next good batch starts at offset 0.
    let response = produce(&mut client, 9, 1, &[("orders", 0, batch(2, 1))]);
    assert_eq!(produce_results(&response)[0].2, 0);
    assert_eq!(produce_results(&response)[0].3, 0);
}

#[test]
fn acks_zero_is_not_answered_and_pipelined_requests_are_answered_in_order() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 20);
    agent.create_topic("events", 1);
    let mut client = RawClient::connect(agent.addr());
    // acks=0 first: no response may come back for it.
    client.send(
        ApiKey::Produce,
        9,
        &produce_request(0, &[("events", 0, batch(4, 1))]),
    );
    // Then 20 pipelined acks=1 requests before reading any answer.
    let ids: Vec<i32> = (0..20)
        .map(|_| {
            client.send(
                ApiKey::Produce,
                9,
                &produce_request(1, &[("events", 0, batch(1, 1))]),
            )
        })
        .collect();
    let mut offsets = Vec::new();
    for id in ids {
        let response: ProduceResponse = client.receive(ApiKey::Produce, 9, id);
        let result = produce_results(&response)[0].clone();
        assert_eq!(result.2, 0);
        offsets.push(result.3);
    }
    // The acks=0 batch took offsets 0..4 (it was appended, just not answered).
    assert_eq!(offsets, (4..24).collect::<Vec<i64>>());
}

#[test]
fn a_restarted_agent_on_the_same_store_keeps_topics_and_continues_offsets() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("durable", 3);
    let mut client = RawClient::connect(agent.addr());
    let response = produce(&mut client, 9, -1, &[("durable", 2, batch(10, 1))]);
    assert_eq!(produce_results(&response)[0].3, 0);
    drop(client);
    let data_dir = agent.stop().unwrap();

    let agent = common::start_agent_in(data_dir, |_| {});
    let mut client = RawClient::connect(agent.addr());
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(
        metadata.topics[0].name.as_ref().unwrap().as_str(),
        "durable"
    );
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    assert!(!metadata.topics[0].topic_id.is_nil());
    let response = produce(&mut client, 9, -1, &[("durable", 2, batch(1, 1))]);
    assert_eq!(produce_results(&response)[0].2, 0);
    assert_eq!(
        produce_results(&response)[0].3,
        10,
        "offsets continue after the restart"
    );
}
