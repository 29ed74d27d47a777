//! The group membership APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
//! ListGroups, DeleteGroups, ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//!
//! Each handler sends the request to the core that owns the group (`groups::router`) and shapes
//! the answer; the state machines there already answer per version. A request that cannot reach
//! its owner (the agent is stopping) is COORDINATOR_NOT_AVAILABLE, which every client retries
//! after looking the coordinator up again. ListGroups asks every core, and the metadata state for
//! groups that only have committed offsets (after a restart they are Empty classic groups with
//! protocol type "", as Kafka reloads them).

use std::collections::BTreeMap;

use futures::future::join_all;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::groups::GroupRouter;
use crate::groups::consumer::ClientInfo;
use crate::groups::core::error_code::COORDINATOR_NOT_AVAILABLE;
use crate::metadata_core::CoreHandle;

/// Who sent a request, as the group state machines record it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub client_id: String,
    /// Kafka's form, `/127.0.0.1`; empty when the connection's peer is not known.
    pub client_host: String,
}

fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

pub async fn join_group(
    router: &GroupRouter,
    request: JoinGroupRequest,
    version: i16,
    client: Client,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let owner = request.group_id.to_string();
    router
        .on_owner(&owner, move |core| async move {
            core.join(request, version, client.client_id, client.client_host)
                .await
        })
        .await
        .unwrap_or_else(|_| {
            JoinGroupResponse::default()
                .with_error_code(COORDINATOR_NOT_AVAILABLE)
                .with_member_id(member_id)
        })
}

pub async fn sync_group(
    router: &GroupRouter,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let owner = request.group_id.to_string();
    router
        .on_owner(&owner, move |core| async move {
            core.sync(request, version).await
        })
        .await
        .unwrap_or_else(|_| SyncGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE))
}

pub async fn heartbeat(
    router: &GroupRouter,
    request: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let owner = request.group_id.to_string();
    router
        .on_owner(&owner, move |core| async move {
            core.heartbeat(&request, version)
        })
        .await
        .unwrap_or_else(|_| HeartbeatResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE))
}

pub async fn leave_group(
    router: &GroupRouter,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let owner = request.group_id.to_string();
    router
        .on_owner(&owner, move |core| async move {
            core.leave(&request, version).await
        })
        .await
        .unwrap_or_else(|_| {
            LeaveGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
        })
}

pub async fn consumer_group_heartbeat(
    router: &GroupRouter,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client: Client,
) -> ConsumerGroupHeartbeatResponse {
    let owner = request.group_id.to_string();
    let client = ClientInfo {
        client_id: client.client_id,
        client_host: client.client_host,
    };
    router
        .on_owner(&owner, move |core| async move {
            core.consumer_heartbeat(request, version, client).await
        })
        .await
        .unwrap_or_else(|_| {
            ConsumerGroupHeartbeatResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
        })
}

pub async fn consumer_group_describe(
    router: &GroupRouter,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let include_operations = request.include_authorized_operations;
    let described = request.group_ids.into_iter().map(|id| {
        let id = id.to_string();
        async move {
            let owner = id.clone();
            router
                .on_owner(&owner, move |core| async move {
                    core.consumer_describe(&id, include_operations).await
                })
                .await
                .unwrap_or_else(|_| {
                    kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(group_id(&owner))
                        .with_error_code(COORDINATOR_NOT_AVAILABLE)
                })
        }
    });
    ConsumerGroupDescribeResponse::default().with_groups(join_all(described).await)
}

pub async fn describe_groups(
    router: &GroupRouter,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let include_operations = request.include_authorized_operations;
    let described = request.groups.into_iter().map(|id| {
        let id = id.to_string();
        async move {
            let owner = id.clone();
            router
                .on_owner(&owner, move |core| async move {
                    core.describe(&id, version, include_operations).await
                })
                .await
                .unwrap_or_else(|_| {
                    kafka_protocol::messages::describe_groups_response::DescribedGroup::default()
                        .with_group_id(group_id(&owner))
                        .with_error_code(COORDINATOR_NOT_AVAILABLE)
                })
        }
    });
    DescribeGroupsResponse::default().with_groups(join_all(described).await)
}

/// One row of ListGroups before filtering.
struct Row {
    protocol_type: String,
    state: &'static str,
    group_type: &'static str,
}

pub async fn list_groups(
    router: &GroupRouter,
    metadata: &CoreHandle,
    request: &ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let per_core = join_all(
        (0..router.core_count())
            .map(|core| router.on_core(core, |groups| async move { groups.list() })),
    )
    .await;
    let offset_groups = metadata
        .query(|state| {
            state
                .offset_groups()
                .map(str::to_owned)
                .collect::<Vec<String>>()
        })
        .await;
    let mut error_code = 0;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for listed in per_core {
        let Ok(listed) = listed else {
            error_code = COORDINATOR_NOT_AVAILABLE;
            continue;
        };
        for group in listed.classic {
            rows.insert(
                group.group_id,
                Row {
                    protocol_type: group.protocol_type,
                    state: group.state,
                    group_type: "classic",
                },
            );
        }
        for group in listed.consumer {
            rows.insert(
                group.group_id,
                Row {
                    protocol_type: "consumer".to_owned(),
                    state: group.state,
                    group_type: "consumer",
                },
            );
        }
    }
    match offset_groups {
        Ok(groups) => {
            for group in groups {
                rows.entry(group).or_insert(Row {
                    protocol_type: String::new(),
                    state: "Empty",
                    group_type: "classic",
                });
            }
        }
        Err(_) => error_code = COORDINATOR_NOT_AVAILABLE,
    }
    let states: Vec<String> = if version >= 4 {
        request
            .states_filter
            .iter()
            .map(|state| state.to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        request
            .types_filter
            .iter()
            .map(|group_type| group_type.to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let groups = rows
        .into_iter()
        .filter(|(_, row)| {
            (states.is_empty() || states.contains(&row.state.to_lowercase()))
                && (types.is_empty() || types.iter().any(|t| t == row.group_type))
        })
        .map(|(id, row)| {
            ListedGroup::default()
                .with_group_id(group_id(&id))
                .with_protocol_type(StrBytes::from_string(row.protocol_type))
                .with_group_state(StrBytes::from_static_str(row.state))
                .with_group_type(StrBytes::from_static_str(row.group_type))
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(error_code)
        .with_groups(groups)
}

pub async fn delete_groups(
    router: &GroupRouter,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    // One call per owner core, each deleting its groups' offsets in one command.
    let mut by_core: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for id in &request.groups_names {
        by_core
            .entry(router.owner(id.as_str()))
            .or_default()
            .push(id.to_string());
    }
    let calls = by_core.into_iter().map(|(core, ids)| {
        let fallback = ids.clone();
        async move {
            router
                .on_core(core, move |groups| async move {
                    groups.delete_groups(ids).await
                })
                .await
                .unwrap_or_else(|_| {
                    fallback
                        .into_iter()
                        .map(|id| (id, COORDINATOR_NOT_AVAILABLE))
                        .collect()
                })
        }
    });
    let mut outcomes: BTreeMap<String, i16> = BTreeMap::new();
    for results in join_all(calls).await {
        outcomes.extend(results);
    }
    let results = request
        .groups_names
        .iter()
        .map(|id| {
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(
                    outcomes
                        .get(id.as_str())
                        .copied()
                        .unwrap_or(COORDINATOR_NOT_AVAILABLE),
                )
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
