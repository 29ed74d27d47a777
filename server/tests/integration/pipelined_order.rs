//! One connection's requests take effect in order, as on Kafka: a client that pipelines a change
//! and then a read of it — both frames written in one go, before any answer is read — reads its
//! change (`net/request_order.rs`, `docs/agent.md` "A connection's requests, in order").
//!
//! Each pair's first request waits on the metadata log (a flush window and a PUT), its second
//! would be answered at once: before connections ordered their requests, every pair read the
//! state from before its change. No timing is asserted; the outcome is the order.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, CreateTopicsResponse,
    DescribeClientQuotasRequest, DescribeClientQuotasResponse, FetchResponse, GroupId,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_server::protocol::client_codec::encode_request;

use crate::common::{self, RawClient};
use crate::fetch_support::{self, want};

const TOPIC: &str = "ordered";

fn string(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One request's frame (size prefix included) with `correlation_id`.
fn frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    encode_request(
        api_key,
        version,
        correlation_id,
        Some("raw-test-client"),
        body,
    )
    .unwrap()
}

/// Writes both frames with one write, so the agent reads them together, before either answer.
fn pipeline(client: &mut RawClient, first: Bytes, second: Bytes) {
    client.send_raw(&[first, second].concat());
}

/// An agent that creates no topic by itself, and a connection to it.
fn agent() -> (common::TestAgent, RawClient) {
    let agent = common::start_agent(|config| config.auto_create_topics = false);
    let client = RawClient::connect(agent.addr());
    (agent, client)
}

/// [`agent`] with [`TOPIC`] (one partition) created beforehand; the topic's id.
fn agent_with_topic() -> (common::TestAgent, RawClient, uuid::Uuid) {
    let (agent, mut client) = agent();
    let topic_id = fetch_support::create_topic(&mut client, TOPIC, 1);
    (agent, client, topic_id)
}

/// CreateTopics, then Metadata of that topic (no auto-creation: only the create makes it).
#[test]
fn metadata_sees_the_topic_created_before_it() {
    let (_agent, mut client) = agent();
    let create = common::create_topics_request(&[(TOPIC, 1)]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(common::topic_name(TOPIC))),
        ]))
        .with_allow_auto_topic_creation(false);
    pipeline(
        &mut client,
        frame(ApiKey::CreateTopics, 7, 1, &create),
        frame(ApiKey::Metadata, 12, 2, &metadata),
    );
    let created: CreateTopicsResponse = client.receive(ApiKey::CreateTopics, 7, 1);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    let listed: MetadataResponse = client.receive(ApiKey::Metadata, 12, 2);
    assert_eq!(
        (
            listed.topics[0].error_code,
            listed.topics[0].partitions.len()
        ),
        (0, 1),
        "Metadata after CreateTopics on one connection: {:?}",
        listed.topics[0]
    );
}

/// AlterClientQuotas, then DescribeClientQuotas (for a client id this connection does not use, so
/// nothing here is throttled).
#[test]
fn describe_client_quotas_sees_the_quota_altered_before_it() {
    let (_agent, mut client) = agent();
    let alter = AlterClientQuotasRequest::default().with_entries(vec![
        EntryData::default()
            .with_entity(vec![
                EntityData::default()
                    .with_entity_type(string("client-id"))
                    .with_entity_name(Some(string("someone-else"))),
            ])
            .with_ops(vec![
                OpData::default()
                    .with_key(string("producer_byte_rate"))
                    .with_value(4_096.0),
            ]),
    ]);
    let describe =
        DescribeClientQuotasRequest::default().with_components(Vec::<ComponentData>::new());
    pipeline(
        &mut client,
        frame(ApiKey::AlterClientQuotas, 1, 1, &alter),
        frame(ApiKey::DescribeClientQuotas, 1, 2, &describe),
    );
    let altered: AlterClientQuotasResponse = client.receive(ApiKey::AlterClientQuotas, 1, 1);
    assert_eq!(altered.entries[0].error_code, 0, "{:?}", altered.entries[0]);
    let described: DescribeClientQuotasResponse =
        client.receive(ApiKey::DescribeClientQuotas, 1, 2);
    assert_eq!(described.error_code, 0);
    let quotas: Vec<(String, f64)> = described
        .entries
        .unwrap_or_default()
        .iter()
        .flat_map(|entry| &entry.values)
        .map(|value| (value.key.to_string(), value.value))
        .collect();
    assert_eq!(
        quotas,
        [("producer_byte_rate".to_owned(), 4_096.0)],
        "DescribeClientQuotas after AlterClientQuotas on one connection"
    );
}

/// OffsetCommit (no group membership: generation -1), then OffsetFetch.
#[test]
fn offset_fetch_sees_the_offset_committed_before_it() {
    let (_agent, mut client, _) = agent_with_topic();
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(string("readers")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(string(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(common::topic_name(TOPIC))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42),
                ]),
        ]);
    let offset_fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(string("readers")))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(common::topic_name(TOPIC))
                    .with_partition_indexes(vec![0]),
            ])),
    ]);
    pipeline(
        &mut client,
        frame(ApiKey::OffsetCommit, 9, 1, &commit),
        frame(ApiKey::OffsetFetch, 8, 2, &offset_fetch),
    );
    let committed: OffsetCommitResponse = client.receive(ApiKey::OffsetCommit, 9, 1);
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let fetched: OffsetFetchResponse = client.receive(ApiKey::OffsetFetch, 8, 2);
    let group = &fetched.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(
        group.topics[0].partitions[0].committed_offset, 42,
        "OffsetFetch after OffsetCommit on one connection"
    );
}

/// Produce (acks=1), then a Fetch from the offset it gets (0: the topic is new) that does not wait
/// for data: only the produce having completed can give it records.
#[test]
fn fetch_sees_the_records_produced_before_it() {
    let (_agent, mut client, topic_id) = agent_with_topic();
    let records = common::batch(3, common::now_ms());
    let produce = common::produce_request(1, &[(TOPIC, 0, records)]);
    let fetch = fetch_support::fetch_request(TOPIC, topic_id, &[want(0, 0)], 0, 1);
    pipeline(
        &mut client,
        frame(ApiKey::Produce, 9, 1, &produce),
        frame(ApiKey::Fetch, 13, 2, &fetch),
    );
    let produced: ProduceResponse = client.receive(ApiKey::Produce, 9, 1);
    assert_eq!(common::produce_results(&produced)[0].2, 0);
    assert_eq!(common::produce_results(&produced)[0].3, 0);
    let read: FetchResponse = client.receive(ApiKey::Fetch, 13, 2);
    let partition = fetch_support::partitions(&read)[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(
        partition.high_watermark, 3,
        "Fetch after Produce on one connection"
    );
    let batches = fetch_support::batches_of(&partition.records);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].0, 0);
}
