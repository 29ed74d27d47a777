//! Two agents on one store: the second one's claim fences the first, which then refuses writes
//! with a retriable code while the second continues the offsets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use common::{RawClient, batch, create_topics_request, produce_request, produce_results};
use kafka_protocol::messages::{ApiKey, CreateTopicsResponse, ProduceResponse};
use sluice_server::{Agent, Config};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn produce_one(client: &mut RawClient) -> (i16, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[("shared", 0, batch(2, 1))]),
    );
    let result = &produce_results(&response)[0];
    (result.2, result.3)
}

#[test]
fn a_second_agent_fences_the_first() {
    let first = common::start_agent(|_| {});
    first.create_topic("shared", 1);
    let mut first_client = RawClient::connect(first.addr());
    assert_eq!(produce_one(&mut first_client), (0, 0));

    // The second agent opens the same store: its claim fences the first writer.
    let store_dir = first.data_dir.as_ref().unwrap().path().join("store");
    let second_dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        io_memory_bytes: 64 * 1024,
        data_dir: second_dir.path().to_owned(),
        store: Some(format!("file://{}?fsync=false", store_dir.display())),
        ..Config::default()
    };
    let second = Agent::start(&config).unwrap();

    // The first agent's next entry lands on a taken position: fenced, retriable for the client.
    assert_eq!(produce_one(&mut first_client).0, NOT_LEADER_OR_FOLLOWER);
    // And it stays refused, without touching the store again.
    assert_eq!(produce_one(&mut first_client).0, NOT_LEADER_OR_FOLLOWER);
    let response: CreateTopicsResponse = first_client.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[("other", 1)]),
    );
    assert_eq!(response.topics[0].error_code, NOT_LEADER_OR_FOLLOWER);

    // The second agent continues where the acknowledged offsets ended.
    let mut second_client = RawClient::connect(second.local_addr());
    assert_eq!(produce_one(&mut second_client), (0, 2));
    drop(second_client);
    second.shutdown().unwrap();
}
