//! What Kafka's admin tools ask of a broker about its disks, its quorum and its leaders, answered
//! with what is true of a leaderless, diskless agent — in the shape the tools expect, rather than
//! UNSUPPORTED_VERSION, which makes `LogDirsCommand`, `MetadataQuorumCommand` and
//! `LeaderElectionCommand` fail outright.
//!
//! - **DescribeLogDirs**: the object store is the one log directory, named [`LOG_DIR`]. Each
//!   partition's size is the bytes its index entries cover in the store; there is no replica to
//!   lag (`offset_lag` 0) and no future replica. The volume's total and usable bytes are unknown
//!   (-1, Kafka's `UNKNOWN_VOLUME_BYTES`): a bucket has no capacity to report.
//! - **DescribeQuorum**: the metadata log is the quorum. This agent is its leader and only voter;
//!   the leader epoch is the log's writer epoch and the high watermark the number of entries the
//!   log has accepted. Only `__cluster_metadata` partition 0 exists, as on Kafka.
//! - **ElectLeaders**: any agent serves any partition, so there is never a leader to elect. Named
//!   partitions get ELECTION_NOT_NEEDED (Kafka's answer when the preferred replica already leads,
//!   which the tool prints as "Valid replica already elected"); an unknown one gets
//!   UNKNOWN_TOPIC_OR_PARTITION. "All partitions" (a null list) gets an empty result, as Kafka
//!   gives when no election was needed anywhere.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    BrokerId, DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::MetadataState;
use sluice_engine::types::TopicPartition;

use crate::metadata_core::CoreHandle;
use crate::protocol::dispatch::BrokerIdentity;

/// The name of the one log directory: the object store.
pub const LOG_DIR: &str = "object-store";

/// Kafka's `UNKNOWN_VOLUME_BYTES`.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// The metadata topic Kafka's quorum tools ask about.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// The listener name the quorum's voter is reported on.
const LISTENER_NAME: &str = "PLAINTEXT";

/// `(topic, [(partition, bytes in the store)])`, sorted by topic.
type Sizes = Vec<(String, Vec<(i32, u64)>)>;

fn partition_sizes(state: &MetadataState, only: Option<&[(String, Vec<i32>)]>) -> Sizes {
    let sizes_of = |name: &str, wanted: Option<&[i32]>| -> Option<(String, Vec<(i32, u64)>)> {
        let topic_id = state.topic_id_by_name(name)?;
        let count = i32::try_from(state.partition_count(topic_id)?).unwrap_or(i32::MAX);
        let partitions = (0..count)
            .filter(|partition| wanted.is_none_or(|wanted| wanted.contains(partition)))
            .filter_map(|partition| {
                let tp = TopicPartition::new(topic_id, partition);
                let bytes = state
                    .partition(tp)
                    .ok()?
                    .index()
                    .iter()
                    .map(|entry| entry.byte_len)
                    .fold(0_u64, u64::saturating_add);
                Some((partition, bytes))
            })
            .collect();
        Some((name.to_owned(), partitions))
    };
    let mut sizes: Sizes = match only {
        None => state
            .topics()
            .filter_map(|(name, _)| sizes_of(name, None))
            .collect(),
        Some(asked) => asked
            .iter()
            .filter_map(|(name, partitions)| sizes_of(name, Some(partitions)))
            .collect(),
    };
    sizes.sort_by(|left, right| left.0.cmp(&right.0));
    sizes
}

pub async fn describe_log_dirs(
    core: &CoreHandle,
    request: &DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let asked: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.topic.as_str().to_owned(), topic.partitions.clone()))
            .collect()
    });
    let sizes = core
        .query(move |state| partition_sizes(state, asked.as_deref()))
        .await;
    let result = DescribeLogDirsResult::default().with_log_dir(StrBytes::from_static_str(LOG_DIR));
    // The volume's bytes are fields of v4+ (the encoder refuses them set before).
    let result = if version >= 4 {
        result
            .with_total_bytes(UNKNOWN_VOLUME_BYTES)
            .with_usable_bytes(UNKNOWN_VOLUME_BYTES)
    } else {
        result
    };
    let result = match sizes {
        Ok(sizes) => result.with_topics(
            sizes
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, bytes)| {
                                    DescribeLogDirsPartition::default()
                                        .with_partition_index(partition)
                                        .with_partition_size(
                                            i64::try_from(bytes).unwrap_or(i64::MAX),
                                        )
                                        .with_offset_lag(0)
                                        .with_is_future_key(false)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // The directory is there; what is in it cannot be read right now.
        Err(_) => result.with_error_code(ResponseError::KafkaStorageError.code()),
    };
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// The metadata log's position: `(writer epoch, entries accepted)`.
fn quorum_position(state: &MetadataState) -> (u64, u64) {
    let accepted = state
        .last_valid_seq()
        .map_or(0, |seq| seq.0.saturating_add(1));
    (state.writer_epoch(), accepted)
}

pub async fn describe_quorum(
    core: &CoreHandle,
    request: &DescribeQuorumRequest,
    broker: &BrokerIdentity,
    version: i16,
    now_ms: i64,
) -> DescribeQuorumResponse {
    let position = core.query(quorum_position).await;
    let (epoch, high_watermark) = match position {
        Ok(position) => position,
        Err(_) => {
            return DescribeQuorumResponse::default()
                .with_error_code(ResponseError::NotLeaderOrFollower.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "the metadata log is not available on this agent",
                )));
        }
    };
    let high_watermark = i64::try_from(high_watermark).unwrap_or(i64::MAX);
    let voter = ReplicaState::default()
        .with_replica_id(BrokerId(broker.node_id))
        .with_log_end_offset(high_watermark);
    // The voters' timestamps are fields of v1+, the nodes' endpoints of v2+.
    let voter = if version >= 1 {
        voter
            .with_last_fetch_timestamp(now_ms)
            .with_last_caught_up_timestamp(now_ms)
    } else {
        voter
    };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let known = topic.topic_name.as_str() == METADATA_TOPIC;
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let answer =
                        PartitionData::default().with_partition_index(partition.partition_index);
                    if known && partition.partition_index == 0 {
                        answer
                            .with_leader_id(BrokerId(broker.node_id))
                            .with_leader_epoch(i32::try_from(epoch).unwrap_or(i32::MAX))
                            .with_high_watermark(high_watermark)
                            .with_current_voters(vec![voter.clone()])
                    } else {
                        answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1)
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let response = DescribeQuorumResponse::default().with_topics(topics);
    if version < 2 {
        return response;
    }
    response.with_nodes(vec![
        Node::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_listeners(vec![
                Listener::default()
                    .with_name(StrBytes::from_static_str(LISTENER_NAME))
                    .with_host(StrBytes::from_string(broker.host.clone()))
                    .with_port(broker.port),
            ]),
    ])
}

/// Of each named partition, whether it exists (`partition_count` per topic, `None` if unknown).
fn partition_counts(state: &MetadataState, topics: &[String]) -> Vec<Option<u32>> {
    topics
        .iter()
        .map(|name| {
            state
                .topic_id_by_name(name)
                .and_then(|id| state.partition_count(id))
        })
        .collect()
}

pub async fn elect_leaders(
    core: &CoreHandle,
    request: &ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let Some(asked) = request.topic_partitions.as_ref() else {
        return ElectLeadersResponse::default();
    };
    let names: Arc<Vec<String>> = Arc::new(
        asked
            .iter()
            .map(|topic| topic.topic.as_str().to_owned())
            .collect(),
    );
    let query = Arc::clone(&names);
    let counts = core
        .query(move |state| partition_counts(state, &query))
        .await;
    let Ok(counts) = counts else {
        let response = ElectLeadersResponse::default();
        // v0 has no top-level error: each partition carries it.
        return if version >= 1 {
            response.with_error_code(ResponseError::NotController.code())
        } else {
            response.with_replica_election_results(
                asked
                    .iter()
                    .map(|topic| {
                        ReplicaElectionResult::default()
                            .with_topic(topic.topic.clone())
                            .with_partition_result(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|&partition| {
                                        PartitionResult::default()
                                            .with_partition_id(partition)
                                            .with_error_code(ResponseError::NotController.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
    };
    let results = asked
        .iter()
        .zip(counts)
        .map(|(topic, count)| {
            let partition_result = topic
                .partitions
                .iter()
                .map(|&partition| {
                    let exists = count.is_some_and(|count| {
                        u32::try_from(partition).is_ok_and(|partition| partition < count)
                    });
                    let result = PartitionResult::default().with_partition_id(partition);
                    if exists {
                        result
                            .with_error_code(ResponseError::ElectionNotNeeded.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "every agent serves every partition: there is no leader to elect",
                            )))
                    } else {
                        result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "unknown topic or partition",
                            )))
                    }
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic.topic.clone())
                .with_partition_result(partition_result)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}
