//! Metadata: the broker list (this agent alone, node 0) and the requested topics.
//!
//! Partitions are virtual in Sluice: any agent serves any partition, so every partition is
//! reported as led by this agent, with this agent as its only replica and in-sync replica. The
//! topic list comes from the [`MetadataSource`]; this module only translates between the wire
//! form and [`TopicQuery`]/[`TopicAnswer`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::metadata_source::{
    MetadataError, MetadataSource, TopicAnswer, TopicError, TopicMetadata, TopicQuery,
};
use crate::protocol::dispatch::BrokerIdentity;

/// The leader epoch reported for every partition; it only changes once partitions can move.
const LEADER_EPOCH: i32 = 0;

/// Turns the request's topic list into a query.
pub fn topic_query(
    request: &MetadataRequest,
    version: i16,
    create_missing_partitions: Option<u32>,
) -> TopicQuery {
    let names: Option<Vec<String>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            // A v10+ request may name a topic by id only; lookup by id arrives with the engine,
            // until then such an entry is answered as an unknown (empty) name.
            .map(|topic| {
                topic
                    .name
                    .as_ref()
                    .map(|name| name.as_str().to_owned())
                    .unwrap_or_default()
            })
            .collect()
    });
    match names {
        None => TopicQuery::All,
        // Version 0 has no null list: an empty list means every topic.
        Some(names) if names.is_empty() && version == 0 => TopicQuery::All,
        Some(names) => {
            // Auto-creation needs both the agent's setting and the client's consent (v4+; older
            // versions always consent).
            let allowed = request.allow_auto_topic_creation || version < 4;
            TopicQuery::Named {
                names,
                create_missing_partitions: create_missing_partitions.filter(|_| allowed),
            }
        }
    }
}

/// Builds the response for `answers` (as returned by the source for `topic_query`).
pub fn response(
    cluster_id: &str,
    broker: &BrokerIdentity,
    answers: Vec<TopicAnswer>,
) -> MetadataResponse {
    let broker_entry = MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id))
        .with_host(StrBytes::from_string(broker.host.clone()))
        .with_port(i32::from(broker.port));
    MetadataResponse::default()
        .with_brokers(vec![broker_entry])
        .with_cluster_id(Some(StrBytes::from_string(cluster_id.to_owned())))
        .with_controller_id(BrokerId(broker.node_id))
        .with_topics(
            answers
                .into_iter()
                .map(|answer| topic_entry(broker.node_id, answer))
                .collect(),
        )
}

fn topic_entry(node_id: i32, (name, answer): TopicAnswer) -> MetadataResponseTopic {
    let entry =
        MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name))));
    match answer {
        Ok(TopicMetadata {
            topic_id,
            partition_count,
            is_internal,
            ..
        }) => entry
            .with_topic_id(Uuid::from_bytes(topic_id))
            .with_is_internal(is_internal)
            .with_partitions(
                (0..partition_count)
                    // Partition counts above i32::MAX cannot be expressed on the wire; the source
                    // never creates them (default_partitions is validated), so stop rather than wrap.
                    .map_while(|index| i32::try_from(index).ok())
                    .map(|index| {
                        MetadataResponsePartition::default()
                            .with_partition_index(index)
                            .with_leader_id(BrokerId(node_id))
                            .with_leader_epoch(LEADER_EPOCH)
                            .with_replica_nodes(vec![BrokerId(node_id)])
                            .with_isr_nodes(vec![BrokerId(node_id)])
                    })
                    .collect(),
            ),
        Err(TopicError::Unknown) => {
            entry.with_error_code(ResponseError::UnknownTopicOrPartition.code())
        }
        Err(TopicError::InvalidName { .. }) => {
            entry.with_error_code(ResponseError::InvalidTopicException.code())
        }
    }
}

/// The whole Metadata request: query the source, build the response.
pub async fn handle<S: MetadataSource>(
    source: &S,
    broker: &BrokerIdentity,
    request: &MetadataRequest,
    version: i16,
    create_missing_partitions: Option<u32>,
) -> Result<MetadataResponse, MetadataError> {
    let answers = source
        .topics(topic_query(request, version, create_missing_partitions))
        .await?;
    Ok(response(&source.cluster_id(), broker, answers))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    use super::*;
    use crate::metadata_source::InMemoryMetadataStub;

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
    fn null_and_v0_empty_lists_mean_all_topics() {
        let all = MetadataRequest::default().with_topics(None);
        assert_eq!(topic_query(&all, 1, Some(1)), TopicQuery::All);
        let empty = MetadataRequest::default().with_topics(Some(vec![]));
        assert_eq!(topic_query(&empty, 0, Some(1)), TopicQuery::All);
        assert_eq!(
            topic_query(&empty, 1, Some(1)),
            TopicQuery::Named {
                names: vec![],
                create_missing_partitions: Some(1)
            }
        );
    }

    #[test]
    fn auto_creation_needs_agent_and_client_consent() {
        let query = |request: &MetadataRequest, version, agent| match topic_query(
            request, version, agent,
        ) {
            TopicQuery::Named {
                create_missing_partitions,
                ..
            } => create_missing_partitions,
            TopicQuery::All => panic!("expected named"),
        };
        assert_eq!(query(&named(&["a"], true), 9, Some(2)), Some(2));
        assert_eq!(query(&named(&["a"], false), 9, Some(2)), None);
        assert_eq!(
            query(&named(&["a"], false), 3, Some(2)),
            Some(2),
            "v0-3 always consent"
        );
        assert_eq!(query(&named(&["a"], true), 9, None), None);
    }

    #[test]
    fn response_reports_this_agent_as_leader_and_maps_errors() {
        let stub = InMemoryMetadataStub::new("cluster-x");
        stub.create_topic("orders", 3).unwrap();
        let broker = BrokerIdentity {
            node_id: 0,
            host: "h".to_owned(),
            port: 9092,
        };
        let response = futures::executor::block_on(handle(
            &stub,
            &broker,
            &named(&["orders", "missing", "bad name"], false),
            12,
            Some(1),
        ))
        .unwrap();
        assert_eq!(response.cluster_id.as_ref().unwrap().as_str(), "cluster-x");
        assert_eq!(response.controller_id, BrokerId(0));
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].host.as_str(), "h");
        assert_eq!(response.brokers[0].port, 9092);
        let orders = &response.topics[0];
        assert_eq!(orders.error_code, 0);
        assert_eq!(orders.partitions.len(), 3);
        assert!(
            orders
                .partitions
                .iter()
                .enumerate()
                .all(|(index, partition)| {
                    partition.partition_index == index as i32
                        && partition.leader_id == BrokerId(0)
                        && partition.isr_nodes == vec![BrokerId(0)]
                })
        );
        assert_ne!(orders.topic_id, Uuid::nil());
        assert_eq!(response.topics[1].error_code, 3);
        assert_eq!(response.topics[2].error_code, 17);
    }
}
