//! Metadata over a real socket: broker list, cluster id, controller, topics from the source.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

fn named(names: &[&str], allow_auto_topic_creation: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(allow_auto_topic_creation)
}

#[test]
fn reports_this_agent_and_the_sources_topics_at_every_version() {
    let agent = common::start_agent(|_| {});
    agent.create_topic("orders", 4);
    let mut client = common::RawClient::connect(agent.addr());
    for version in 0..=13 {
        // v0 has no null list; an empty one means all topics there.
        let all = if version == 0 {
            named(&[], true)
        } else {
            MetadataRequest::default().with_topics(None)
        };
        let response: MetadataResponse = client.call(ApiKey::Metadata, version, &all);
        assert_eq!(response.brokers.len(), 1, "v{version}");
        assert_eq!(response.brokers[0].node_id, BrokerId(0));
        assert_eq!(response.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(
            response.brokers[0].port,
            i32::from(agent.addr().port()),
            "advertises the bound port"
        );
        if version >= 1 {
            assert_eq!(response.controller_id, BrokerId(0), "v{version}");
        }
        if version >= 2 {
            assert_eq!(
                response.cluster_id.as_ref().unwrap().as_str(),
                sluice_server::net::agent::CLUSTER_ID
            );
        }
        assert_eq!(response.topics.len(), 1, "v{version}");
        let topic = &response.topics[0];
        assert_eq!(topic.name.as_ref().unwrap().as_str(), "orders");
        assert_eq!(topic.partitions.len(), 4);
        assert!(
            topic
                .partitions
                .iter()
                .all(|partition| partition.leader_id == BrokerId(0))
        );
    }
}

#[test]
fn unknown_topics_are_created_only_when_allowed() {
    let agent = common::start_agent(|config| config.default_partitions = 3);
    let mut client = common::RawClient::connect(agent.addr());
    let response: MetadataResponse =
        client.call(ApiKey::Metadata, 12, &named(&["new-topic"], false));
    assert_eq!(
        response.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION without consent"
    );
    let response: MetadataResponse =
        client.call(ApiKey::Metadata, 12, &named(&["new-topic"], true));
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3);
    assert_ne!(response.topics[0].topic_id, uuid::Uuid::nil());
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &named(&["bad/name"], true));
    assert_eq!(response.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
}

#[test]
fn auto_creation_can_be_switched_off() {
    let agent = common::start_agent(|config| config.auto_create_topics = false);
    let mut client = common::RawClient::connect(agent.addr());
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &named(&["t"], true));
    assert_eq!(response.topics[0].error_code, 3);
}
