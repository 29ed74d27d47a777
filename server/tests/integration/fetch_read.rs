//! Fetch reads what Produce wrote: same bytes (only baseOffset and partitionLeaderEpoch set by the
//! agent), from the middle of a batch, within byte limits, across many partitions, in every
//! advertised version, and with the Java broker's error codes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use bytes::Bytes;
use common::{RawClient, batch};
use fetch_support::*;
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

#[test]
fn fetch_from_zero_returns_the_produced_batches_with_offsets_assigned() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "orders", 1);
    let produced: Vec<Bytes> = (0..4)
        .map(|index| batch(3 + index, 1_000 + index as i64))
        .collect();
    let mut bases = Vec::new();
    for records in &produced {
        bases.push(produce(&mut client, "orders", 0, records.clone()));
    }
    assert_eq!(bases, vec![0, 3, 7, 12]);

    for version in [4, 7, 11, 12, 13, 15, 16, 17] {
        let response = fetch(
            &mut client,
            version,
            &fetch_request("orders", topic_id, &[want(0, 0)], 0, 0),
        );
        let partitions = partitions(&response);
        assert_eq!(partitions.len(), 1, "v{version}");
        let partition = partitions[0];
        assert_eq!(partition.error_code, 0, "v{version}");
        assert_eq!(partition.high_watermark, 18);
        assert_eq!(partition.last_stable_offset, 18);
        if version >= 5 {
            assert_eq!(partition.log_start_offset, 0);
        }
        if version >= 13 {
            assert_eq!(response.responses[0].topic_id, topic_id);
        } else {
            assert_eq!(response.responses[0].topic.as_str(), "orders");
        }
        let fetched = batches_of(&partition.records);
        assert_eq!(fetched.len(), produced.len(), "v{version}");
        for ((base, bytes), (produced, expected_base)) in
            fetched.iter().zip(produced.iter().zip(&bases))
        {
            assert_eq!(base, expected_base);
            assert_same_batch(bytes, produced, *expected_base);
        }
    }
}

#[test]
fn fetch_from_the_middle_of_a_batch_starts_with_that_whole_batch() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "mid", 1);
    produce(&mut client, "mid", 0, batch(5, 1));
    produce(&mut client, "mid", 0, batch(5, 2));
    produce(&mut client, "mid", 0, batch(5, 3));
    let response = fetch(
        &mut client,
        12,
        &fetch_request("mid", topic_id, &[want(0, 7)], 0, 0),
    );
    let bases: Vec<i64> = batches_of(&partitions(&response)[0].records)
        .iter()
        .map(|(base, _)| *base)
        .collect();
    assert_eq!(
        bases,
        vec![5, 10],
        "the batch holding offset 7 and the rest"
    );
    // At the high watermark: nothing, no error.
    let response = fetch(
        &mut client,
        12,
        &fetch_request("mid", topic_id, &[want(0, 15)], 0, 0),
    );
    let partition = partitions(&response)[0];
    assert_eq!(partition.error_code, 0);
    assert!(batches_of(&partition.records).is_empty());
    assert_eq!(partition.high_watermark, 15);
}

#[test]
fn byte_limits_keep_whole_batches_and_let_only_the_first_one_overflow() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "limits", 2);
    let one = batch(20, 1);
    let batch_len = one.len() as i32;
    for partition in 0..2 {
        for _ in 0..3 {
            produce(&mut client, "limits", partition, one.clone());
        }
    }
    let count = |response: &kafka_protocol::messages::FetchResponse, index: usize| {
        batches_of(&partitions(response)[index].records).len()
    };
    // partition_max_bytes below one batch: still the first batch (KIP-74).
    let tiny = Want {
        partition_max_bytes: 10,
        ..want(0, 0)
    };
    let response = fetch(
        &mut client,
        12,
        &fetch_request("limits", topic_id, &[tiny], 0, 0),
    );
    assert_eq!(count(&response, 0), 1);
    // Room for two and a half batches: two.
    let two = Want {
        partition_max_bytes: batch_len * 5 / 2,
        ..want(0, 0)
    };
    let response = fetch(
        &mut client,
        12,
        &fetch_request("limits", topic_id, &[two], 0, 0),
    );
    assert_eq!(count(&response, 0), 2);
    // The request's max_bytes spans partitions: partition 0 takes it all, partition 1 gets
    // nothing rather than a batch over the limit (only the first partition may overflow).
    let request = fetch_request("limits", topic_id, &[want(0, 0), want(1, 0)], 0, 0)
        .with_max_bytes(batch_len / 2);
    let response = fetch(&mut client, 12, &request);
    assert_eq!(count(&response, 0), 1);
    assert_eq!(count(&response, 1), 0);
    assert_eq!(partitions(&response)[1].error_code, 0);
    assert_eq!(partitions(&response)[1].high_watermark, 60);
    let request = fetch_request("limits", topic_id, &[want(0, 0), want(1, 0)], 0, 0)
        .with_max_bytes(batch_len * 4);
    let response = fetch(&mut client, 12, &request);
    assert_eq!((count(&response, 0), count(&response, 1)), (3, 1));
}

#[test]
fn one_request_reads_many_partitions() {
    const PARTITIONS: i32 = 64;
    let agent = common::start_agent(|config| config.flush_interval_ms = 20);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "wide", PARTITIONS);
    // One produce request for all partitions: one object.
    let records: Vec<(&str, i32, Bytes)> = (0..PARTITIONS)
        .map(|partition| {
            (
                "wide",
                partition,
                batch(1 + partition as usize % 3, partition.into()),
            )
        })
        .collect();
    let response: kafka_protocol::messages::ProduceResponse =
        client.call(ApiKey::Produce, 9, &common::produce_request(-1, &records));
    assert!(
        common::produce_results(&response)
            .iter()
            .all(|result| result.2 == 0)
    );
    let wants: Vec<Want> = (0..PARTITIONS)
        .map(|partition| want(partition, 0))
        .collect();
    let response = fetch(
        &mut client,
        13,
        &fetch_request("wide", topic_id, &wants, 0, 0),
    );
    let partitions = partitions(&response);
    assert_eq!(partitions.len(), PARTITIONS as usize);
    for (partition, (_, _, produced)) in partitions.iter().zip(&records) {
        let fetched = batches_of(&partition.records);
        assert_eq!(fetched.len(), 1, "partition {}", partition.partition_index);
        assert_same_batch(&fetched[0].1, produced, 0);
        assert_eq!(
            partition.high_watermark,
            1 + i64::from(partition.partition_index) % 3
        );
    }
}

#[test]
fn errors_are_the_java_brokers_codes() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "errs", 1);
    produce(&mut client, "errs", 0, batch(3, 1));
    let code = |client: &mut RawClient, version: i16, request| {
        partitions(&fetch(client, version, &request))[0].error_code
    };
    // Past the high watermark and negative: OFFSET_OUT_OF_RANGE.
    assert_eq!(
        code(
            &mut client,
            12,
            fetch_request("errs", topic_id, &[want(0, 4)], 0, 0)
        ),
        1
    );
    assert_eq!(
        code(
            &mut client,
            12,
            fetch_request("errs", topic_id, &[want(0, -1)], 0, 0)
        ),
        1
    );
    // Unknown partition and unknown topic name: UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        code(
            &mut client,
            12,
            fetch_request("errs", topic_id, &[want(1, 0)], 0, 0)
        ),
        3
    );
    assert_eq!(
        code(
            &mut client,
            12,
            fetch_request("nope", topic_id, &[want(0, 0)], 0, 0)
        ),
        3
    );
    // Unknown topic id (v13+): UNKNOWN_TOPIC_ID.
    assert_eq!(
        code(
            &mut client,
            13,
            fetch_request("errs", Uuid::from_u128(7), &[want(0, 0)], 0, 0)
        ),
        100
    );
    // An error answers at once even with a long max_wait: one of 60 s (the agent's cap), which the
    // client's read timeout (10 s) would not wait out, so any answer at all is that.
    assert_eq!(
        code(
            &mut client,
            12,
            fetch_request("errs", topic_id, &[want(0, 9)], 60_000, 1)
        ),
        1
    );
}

#[test]
fn a_fetch_claiming_a_huge_topic_array_closes_only_that_connection() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    // Fetch v12 (flexible): header, then replica id, max wait, min bytes, max bytes, isolation,
    // session id, epoch, and a compact array length claiming ~2^31 topics with no bytes behind it.
    let mut frame = Vec::new();
    frame.extend_from_slice(&1_i16.to_be_bytes()); // Fetch
    frame.extend_from_slice(&12_i16.to_be_bytes());
    frame.extend_from_slice(&7_i32.to_be_bytes()); // correlation id
    frame.extend_from_slice(&(-1_i16).to_be_bytes()); // null client id
    frame.push(0); // header tagged fields
    for value in [-1_i32, 500, 1, 1 << 20] {
        frame.extend_from_slice(&value.to_be_bytes());
    }
    frame.push(0);
    frame.extend_from_slice(&0_i32.to_be_bytes());
    frame.extend_from_slice(&(-1_i32).to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    let mut bytes = (frame.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    client.send_raw(&bytes);
    assert!(client.is_closed_by_agent());
    // The agent still serves others.
    let mut other = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut other, "alive", 1);
    let response = fetch(
        &mut other,
        12,
        &fetch_request("alive", topic_id, &[want(0, 0)], 0, 0),
    );
    assert_eq!(partitions(&response)[0].error_code, 0);
}
