//! The group APIs' checks (see the table in [`super`]): the single-group APIs refused whole
//! before their handler, and the requests and answers naming many groups filtered.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, ListGroupsResponse, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use sluice_engine::metadata::{AclOperation, AclResourceType};

use super::{
    CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TRANSACTIONAL_ID_DENIED, denied_message,
    topic_allowed,
};
use crate::auth::RequestAuth;
use crate::protocol::codec::{Request, Response};

/// OffsetCommit, after READ on the group: topics without READ are taken out and answered 29.
pub async fn offset_commit(
    auth: &RequestAuth<'_>,
    mut request: OffsetCommitRequest,
) -> (OffsetCommitRequest, Vec<OffsetCommitResponseTopic>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        if topic_allowed(auth, AclOperation::Read, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            denied.push(offset_commit_failed(&topic, TOPIC_DENIED));
        }
    }
    request.topics = allowed;
    (request, denied)
}

/// Every partition of `topic` answered `code`.
pub fn offset_commit_failed(
    topic: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
    code: i16,
) -> OffsetCommitResponseTopic {
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
}

/// Whether `operation` on the group is denied.
async fn group_denied(auth: &RequestAuth<'_>, operation: AclOperation, group: &str) -> bool {
    !auth.allowed(operation, AclResourceType::Group, group).await
}

/// The whole answer of a request refused before its handler runs: the single-group APIs
/// without READ (OffsetDelete: DELETE; OffsetFetch before v8: DESCRIBE) on their group,
/// FindCoordinator before v4 without DESCRIBE on its key, and the admin tools without DESCRIBE
/// (ElectLeaders: ALTER) on the cluster. `None`: the request goes on (and may still be filtered).
pub async fn refuse(auth: &RequestAuth<'_>, request: &Request, version: i16) -> Option<Response> {
    use kafka_protocol::messages as m;
    let read = AclOperation::Read;
    Some(match request {
        Request::JoinGroup(body) if group_denied(auth, read, body.group_id.as_str()).await => {
            Response::JoinGroup(
                m::JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_generation_id(-1),
            )
        }
        Request::SyncGroup(body) if group_denied(auth, read, body.group_id.as_str()).await => {
            Response::SyncGroup(m::SyncGroupResponse::default().with_error_code(GROUP_DENIED))
        }
        Request::Heartbeat(body) if group_denied(auth, read, body.group_id.as_str()).await => {
            Response::Heartbeat(m::HeartbeatResponse::default().with_error_code(GROUP_DENIED))
        }
        Request::LeaveGroup(body) if group_denied(auth, read, body.group_id.as_str()).await => {
            Response::LeaveGroup(m::LeaveGroupResponse::default().with_error_code(GROUP_DENIED))
        }
        Request::OffsetCommit(body) if group_denied(auth, read, body.group_id.as_str()).await => {
            Response::OffsetCommit(
                m::OffsetCommitResponse::default().with_topics(
                    body.topics
                        .iter()
                        .map(|topic| offset_commit_failed(topic, GROUP_DENIED))
                        .collect(),
                ),
            )
        }
        Request::OffsetDelete(body)
            if group_denied(auth, AclOperation::Delete, body.group_id.as_str()).await =>
        {
            Response::OffsetDelete(m::OffsetDeleteResponse::default().with_error_code(GROUP_DENIED))
        }
        Request::OffsetFetch(body)
            if version < 8
                && group_denied(auth, AclOperation::Describe, body.group_id.as_str()).await =>
        {
            Response::OffsetFetch(m::OffsetFetchResponse::default().with_error_code(GROUP_DENIED))
        }
        Request::ConsumerGroupHeartbeat(body)
            if group_denied(auth, read, body.group_id.as_str()).await =>
        {
            Response::ConsumerGroupHeartbeat(
                m::ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_error_message(denied_message()),
            )
        }
        Request::ConsumerGroupHeartbeat(body)
            if subscriptions_denied(
                auth,
                body.subscribed_topic_names.as_deref().unwrap_or_default(),
            )
            .await =>
        {
            Response::ConsumerGroupHeartbeat(
                m::ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(denied_message()),
            )
        }
        Request::FindCoordinator(body) if version < 4 => {
            let (resource_type, code) = coordinator_key(body.key_type);
            if auth
                .allowed(AclOperation::Describe, resource_type, body.key.as_str())
                .await
            {
                return None;
            }
            Response::FindCoordinator(
                m::FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_error_message(denied_message())
                    .with_node_id(m::BrokerId(-1))
                    .with_port(-1),
            )
        }
        Request::DescribeLogDirs(_) if !auth.allowed_on_cluster(AclOperation::Describe).await => {
            Response::DescribeLogDirs(
                m::DescribeLogDirsResponse::default().with_error_code(CLUSTER_DENIED),
            )
        }
        Request::DescribeQuorum(_) if !auth.allowed_on_cluster(AclOperation::Describe).await => {
            Response::DescribeQuorum(
                m::DescribeQuorumResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .with_error_message(denied_message()),
            )
        }
        Request::ElectLeaders(_) if !auth.allowed_on_cluster(AclOperation::Alter).await => {
            Response::ElectLeaders(
                m::ElectLeadersResponse::default().with_error_code(CLUSTER_DENIED),
            )
        }
        _ => return None,
    })
}

/// The resource a FindCoordinator key names (0: a group, 1: a transactional id) and the code
/// its denial answers.
fn coordinator_key(key_type: i8) -> (AclResourceType, i16) {
    if key_type == 1 {
        (AclResourceType::TransactionalId, TRANSACTIONAL_ID_DENIED)
    } else {
        (AclResourceType::Group, GROUP_DENIED)
    }
}

/// FindCoordinator v4+: keys without DESCRIBE are taken out and answered.
pub async fn find_coordinator(
    auth: &RequestAuth<'_>,
    mut request: FindCoordinatorRequest,
) -> (FindCoordinatorRequest, Vec<Coordinator>) {
    let (resource_type, code) = coordinator_key(request.key_type);
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for key in std::mem::take(&mut request.coordinator_keys) {
        if auth
            .allowed(AclOperation::Describe, resource_type, key.as_str())
            .await
        {
            allowed.push(key);
        } else {
            denied.push(
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(kafka_protocol::messages::BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(denied_message()),
            );
        }
    }
    request.coordinator_keys = allowed;
    (request, denied)
}

/// Groups (of DescribeGroups, DeleteGroups, ConsumerGroupDescribe) split by `operation`:
/// `(allowed, denied)`.
pub async fn split_groups(
    auth: &RequestAuth<'_>,
    operation: AclOperation,
    groups: Vec<GroupId>,
) -> (Vec<GroupId>, Vec<GroupId>) {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for group in groups {
        if group_denied(auth, operation, group.as_str()).await {
            denied.push(group);
        } else {
            allowed.push(group);
        }
    }
    (allowed, denied)
}

/// ListGroups: without DESCRIBE on the cluster, only the groups the connection may describe.
pub async fn list_groups(auth: &RequestAuth<'_>, response: &mut ListGroupsResponse) {
    if auth.allowed_on_cluster(AclOperation::Describe).await {
        return;
    }
    let mut visible = Vec::new();
    for group in std::mem::take(&mut response.groups) {
        if !group_denied(auth, AclOperation::Describe, group.group_id.as_str()).await {
            visible.push(group);
        }
    }
    response.groups = visible;
}

/// OffsetFetch v8+: groups without DESCRIBE are taken out and answered 30.
pub async fn offset_fetch_groups(
    auth: &RequestAuth<'_>,
    mut request: OffsetFetchRequest,
) -> (OffsetFetchRequest, Vec<OffsetFetchResponseGroup>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for group in std::mem::take(&mut request.groups) {
        if group_denied(auth, AclOperation::Describe, group.group_id.as_str()).await {
            denied.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(GROUP_DENIED),
            );
        } else {
            allowed.push(group);
        }
    }
    request.groups = allowed;
    (request, denied)
}

/// OffsetFetch, after the handler: the partitions of topics without DESCRIBE answer 29 and show
/// no offset (Kafka leaves such topics out of an all-topics answer; here they are marked).
pub async fn offset_fetch_response(auth: &RequestAuth<'_>, response: &mut OffsetFetchResponse) {
    for topic in &mut response.topics {
        if !topic_allowed(auth, AclOperation::Describe, topic.name.as_str()).await {
            for partition in &mut topic.partitions {
                partition.committed_offset = -1;
                partition.committed_leader_epoch = -1;
                partition.metadata = None;
                partition.error_code = TOPIC_DENIED;
            }
        }
    }
    for group in &mut response.groups {
        for topic in &mut group.topics {
            if !topic_allowed(auth, AclOperation::Describe, topic.name.as_str()).await {
                for partition in &mut topic.partitions {
                    partition.committed_offset = -1;
                    partition.committed_leader_epoch = -1;
                    partition.metadata = None;
                    partition.error_code = TOPIC_DENIED;
                }
            }
        }
    }
}

/// ConsumerGroupHeartbeat: DESCRIBE on every subscribed topic name, as Kafka checks.
pub async fn subscriptions_denied(auth: &RequestAuth<'_>, names: &[TopicName]) -> bool {
    for name in names {
        if !topic_allowed(auth, AclOperation::Describe, name.as_str()).await {
            return true;
        }
    }
    false
}
