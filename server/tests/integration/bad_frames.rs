//! Requests the agent cannot answer close only their own connection; pipelined requests are
//! answered in order.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::net::Shutdown;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use sluice_server::protocol::client_codec::encode_request;

const REQUEST_BYTES_MAX: u64 = 64 * 1024;

/// Sends `bad` on one connection while another connection (opened before and used before and
/// after) keeps working; the bad connection must be closed by the agent.
fn assert_closes_only_its_connection(name: &str, bad: &[u8], half_close: bool) {
    let agent = common::start_agent(|config| config.request_bytes_max = REQUEST_BYTES_MAX);
    let mut good = common::RawClient::connect(agent.addr());
    let _: ApiVersionsResponse = good.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());

    let mut victim = common::RawClient::connect(agent.addr());
    victim.send_raw(bad);
    if half_close {
        victim.stream.shutdown(Shutdown::Write).unwrap();
    }
    assert!(
        victim.is_closed_by_agent(),
        "{name}: the agent should close the connection"
    );

    let response: MetadataResponse = good.call(ApiKey::Metadata, 9, &MetadataRequest::default());
    assert_eq!(
        response.brokers.len(),
        1,
        "{name}: the other connection still works"
    );
    let mut fresh = common::RawClient::connect(agent.addr());
    let _: ApiVersionsResponse = fresh.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

#[test]
fn truncated_frame() {
    // A size prefix promising 100 bytes, 10 delivered, then the client stops sending.
    let mut bytes = 100_i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 10]);
    assert_closes_only_its_connection("truncated frame", &bytes, true);
    // A complete frame too short to hold a request header.
    assert_closes_only_its_connection("short frame", &framed(&[0, 18, 0]), false);
}

#[test]
fn garbage_frame() {
    let garbage: Vec<u8> = (0..200_u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Metadata v1 header, then nonsense where the topic array should be.
    let mut body = encode_request(
        ApiKey::Metadata,
        1,
        7,
        Some("x"),
        &MetadataRequest::default(),
    )
    .unwrap()[4..14]
        .to_vec();
    body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert_closes_only_its_connection("garbage body", &framed(&body), false);
    assert_closes_only_its_connection("garbage bytes", &garbage, false);
}

#[test]
fn unknown_api_key() {
    let mut frame = encode_request(
        ApiKey::ApiVersions,
        0,
        1,
        None,
        &ApiVersionsRequest::default(),
    )
    .unwrap()
    .to_vec();
    frame[4..6].copy_from_slice(&9_999_i16.to_be_bytes());
    assert_closes_only_its_connection("unknown API key", &frame, false);
}

#[test]
fn unsupported_version_or_api() {
    let mut frame = encode_request(ApiKey::Metadata, 12, 1, None, &MetadataRequest::default())
        .unwrap()
        .to_vec();
    frame[6..8].copy_from_slice(&99_i16.to_be_bytes());
    assert_closes_only_its_connection("Metadata v99", &frame, false);
    // A known API the agent does not implement (share groups, KIP-932).
    let share_fetch = encode_request(
        ApiKey::ShareFetch,
        1,
        1,
        None,
        &kafka_protocol::messages::ShareFetchRequest::default(),
    )
    .unwrap();
    assert_closes_only_its_connection("ShareFetch (not implemented)", &share_fetch, false);
    // Produce v13 (topics by id) is past the table.
    let produce = encode_request(
        ApiKey::Produce,
        13,
        1,
        None,
        &kafka_protocol::messages::ProduceRequest::default(),
    )
    .unwrap();
    assert_closes_only_its_connection("Produce v13", &produce, false);
}

#[test]
fn a_nested_array_length_beyond_the_frame_is_refused_before_decoding() {
    // One topic with an empty partition array, whose count (the frame's last 4 bytes in v3) is
    // then claimed to be i32::MAX: decoding it as is would try to allocate ~100 GB.
    let request = common::produce_request(1, &[]).with_topic_data(vec![
        kafka_protocol::messages::produce_request::TopicProduceData::default()
            .with_name(common::topic_name("t")),
    ]);
    let mut frame = encode_request(ApiKey::Produce, 3, 1, None, &request)
        .unwrap()
        .to_vec();
    let end = frame.len();
    frame[end - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_closes_only_its_connection("Produce with a huge nested array", &frame, false);
}

#[test]
fn oversized_and_negative_frames() {
    let too_big = ((REQUEST_BYTES_MAX + 1) as i32).to_be_bytes();
    assert_closes_only_its_connection("oversized frame", &too_big, false);
    assert_closes_only_its_connection("negative frame size", &(-5_i32).to_be_bytes(), false);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let agent = common::start_agent(|_| {});
    let mut client = common::RawClient::connect(agent.addr());
    // Every request written before any response is read, in one write.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for correlation_id in 0..50 {
        let (api_key, version) = if correlation_id % 2 == 0 {
            (ApiKey::Metadata, 12)
        } else {
            (ApiKey::ApiVersions, 3)
        };
        let frame = if api_key == ApiKey::Metadata {
            encode_request(
                api_key,
                version,
                correlation_id,
                None,
                &MetadataRequest::default(),
            )
            .unwrap()
        } else {
            encode_request(
                api_key,
                version,
                correlation_id,
                None,
                &ApiVersionsRequest::default(),
            )
            .unwrap()
        };
        batch.extend_from_slice(&frame);
        expected.push((api_key, version, correlation_id));
    }
    client.send_raw(&batch);
    for (api_key, version, correlation_id) in expected {
        if api_key == ApiKey::Metadata {
            let _: MetadataResponse = client.receive(api_key, version, correlation_id);
        } else {
            let _: ApiVersionsResponse = client.receive(api_key, version, correlation_id);
        }
    }
    // A bad request after good ones in the same write: the good ones are still answered.
    let mut batch = encode_request(
        ApiKey::ApiVersions,
        3,
        500,
        None,
        &ApiVersionsRequest::default(),
    )
    .unwrap()
    .to_vec();
    batch.extend_from_slice(&(-1_i32).to_be_bytes());
    client.send_raw(&batch);
    let _: ApiVersionsResponse = client.receive(ApiKey::ApiVersions, 3, 500);
    assert!(client.is_closed_by_agent());
}
