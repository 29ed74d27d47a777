//! Answers of an agent in a cluster (`--metadata`): Metadata lists the live agents as brokers and
//! names each partition's leader by rendezvous hashing (in the client's zone when it names one in
//! `client.id` as `sluice_az=ZONE`); FindCoordinator names the agent that coordinates the key;
//! and an agent that does not coordinate a group answers its group requests with
//! NOT_COORDINATOR, so a group is never coordinated by two agents at once (as far as the agents
//! agree on who is live: see `docs/cluster.md`).
//!
//! These rewrite the single-agent answers after the fact, so the handlers stay as they are.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupHeartbeatResponse, FindCoordinatorResponse, HeartbeatResponse,
    JoinGroupResponse, LeaveGroupResponse, MetadataResponse, OffsetCommitResponse,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::codec::{Request, Response};
use crate::metadata_core::cluster_view::{ClusterMember, ClusterView, client_zone};

/// Lists the live agents as brokers and names each partition's leader.
pub fn route_metadata(response: &mut MetadataResponse, view: &ClusterView, client_id: &str) {
    if view.members().is_empty() {
        return;
    }
    let zone = client_zone(client_id);
    response.brokers = view
        .members()
        .iter()
        .map(|member| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(member.node_id))
                .with_host(StrBytes::from_string(member.host.clone()))
                .with_port(i32::from(member.port))
                .with_rack(
                    (!member.zone.is_empty()).then(|| StrBytes::from_string(member.zone.clone())),
                )
        })
        .collect();
    // Admin requests go to the controller: this agent while it is a member, else (its lease lost,
    // it has left its own view) another one.
    let controller = view
        .members()
        .iter()
        .find(|member| member.node_id == view.self_node_id())
        .or_else(|| view.members().first());
    if let Some(controller) = controller {
        response.controller_id = BrokerId(controller.node_id);
    }
    for topic in &mut response.topics {
        let Some(name) = topic.name.as_ref().map(|name| name.0.to_string()) else {
            continue;
        };
        for partition in &mut topic.partitions {
            if let Some(leader) = view.partition_leader(&name, partition.partition_index, zone) {
                partition.leader_id = BrokerId(leader.node_id);
                partition.replica_nodes = vec![BrokerId(leader.node_id)];
                partition.isr_nodes = vec![BrokerId(leader.node_id)];
            }
        }
    }
}

/// Names the coordinating agent of every key answered without an error. `key` is the v0-3
/// request's single key.
pub fn route_find_coordinator(
    response: &mut FindCoordinatorResponse,
    key: &str,
    view: &ClusterView,
) {
    for coordinator in &mut response.coordinators {
        if coordinator.error_code == 0
            && let Some(owner) = view.coordinator(coordinator.key.as_str())
        {
            coordinator.node_id = BrokerId(owner.node_id);
            coordinator.host = host(owner);
            coordinator.port = i32::from(owner.port);
        }
    }
    if response.coordinators.is_empty()
        && response.error_code == 0
        && let Some(owner) = view.coordinator(key)
    {
        response.node_id = BrokerId(owner.node_id);
        response.host = host(owner);
        response.port = i32::from(owner.port);
    }
}

fn host(member: &ClusterMember) -> StrBytes {
    StrBytes::from_string(member.host.clone())
}

/// NOT_COORDINATOR for a group request this agent does not coordinate; `None` for any other
/// request (answered as usual). The client looks the coordinator up again and retries there.
pub fn not_coordinator(request: &Request, view: &ClusterView) -> Option<Response> {
    let code = ResponseError::NotCoordinator.code();
    let group = match request {
        Request::JoinGroup(body) => body.group_id.as_str(),
        Request::SyncGroup(body) => body.group_id.as_str(),
        Request::Heartbeat(body) => body.group_id.as_str(),
        Request::LeaveGroup(body) => body.group_id.as_str(),
        Request::OffsetCommit(body) => body.group_id.as_str(),
        Request::ConsumerGroupHeartbeat(body) => body.group_id.as_str(),
        _ => return None,
    };
    if view.coordinates(group) {
        return None;
    }
    Some(match request {
        Request::JoinGroup(_) => Response::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1),
        ),
        Request::SyncGroup(_) => {
            Response::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        Request::Heartbeat(_) => {
            Response::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        Request::LeaveGroup(_) => {
            Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        Request::OffsetCommit(body) => Response::OffsetCommit(offset_commit_refused(body, code)),
        _ => Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
    })
}

/// OffsetCommit has no top-level error: every partition gets the code.
fn offset_commit_refused(
    request: &kafka_protocol::messages::OffsetCommitRequest,
    code: i16,
) -> OffsetCommitResponse {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
