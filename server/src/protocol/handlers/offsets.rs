//! OffsetCommit (v2-9), OffsetFetch (v1-9) and OffsetDelete (v0).
//!
//! Each goes to the core that owns the group (`groups::router`), which validates the member and
//! reads or writes the offsets through the metadata core (`groups/offsets.rs`). OffsetFetch v8+
//! names several groups: each goes to its own owner, all at once. Versions 1-7 name one group and
//! answer in the older layout, converted here.

use futures::future::join_all;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};

use crate::groups::GroupRouter;
use crate::groups::core::error_code::COORDINATOR_NOT_AVAILABLE;
use crate::groups::offsets::FetchGroup;

pub async fn offset_commit(
    router: &GroupRouter,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let owner = request.group_id.to_string();
    let fallback = unavailable_commit(&request);
    router
        .on_owner(&owner, move |core| async move {
            core.commit_offsets(request, version).await
        })
        .await
        .unwrap_or(fallback)
}

fn unavailable_commit(request: &OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(partition.partition_index)
                                .with_error_code(COORDINATOR_NOT_AVAILABLE)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub async fn offset_fetch(
    router: &GroupRouter,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request.groups.into_iter().map(|group| FetchGroup {
            group_id: group.group_id.to_string(),
            member_id: group.member_id.map(|id| id.to_string()),
            member_epoch: group.member_epoch,
            topics: group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                    .collect()
            }),
        });
        let fetched = join_all(groups.map(|group| fetch_one(router, group, version))).await;
        return OffsetFetchResponse::default().with_groups(fetched);
    }
    let group = FetchGroup {
        group_id: request.group_id.to_string(),
        member_id: None,
        member_epoch: -1,
        topics: request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                .collect()
        }),
    };
    let fetched = fetch_one(router, group, version).await;
    // v1 has no top-level error code: a group error goes into every partition instead.
    let partition_error = if version < 2 { fetched.error_code } else { 0 };
    let topics = fetched
        .topics
        .into_iter()
        .map(|topic| {
            OffsetFetchResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(
                    topic
                        .partitions
                        .into_iter()
                        .map(|partition| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(partition.partition_index)
                                .with_committed_offset(partition.committed_offset)
                                .with_committed_leader_epoch(partition.committed_leader_epoch)
                                .with_metadata(partition.metadata)
                                .with_error_code(if partition.error_code != 0 {
                                    partition.error_code
                                } else {
                                    partition_error
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_error_code(fetched.error_code)
        .with_topics(topics)
}

async fn fetch_one(
    router: &GroupRouter,
    group: FetchGroup,
    version: i16,
) -> OffsetFetchResponseGroup {
    let owner = group.group_id.clone();
    router
        .on_owner(&owner, move |core| async move {
            core.fetch_offsets(group, version).await
        })
        .await
        .unwrap_or_else(|_| {
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(owner.into()))
                .with_error_code(COORDINATOR_NOT_AVAILABLE)
        })
}

pub async fn offset_delete(
    router: &GroupRouter,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let owner = request.group_id.to_string();
    router
        .on_owner(&owner, move |core| async move {
            core.delete_offsets(request).await
        })
        .await
        .unwrap_or_else(|_| {
            OffsetDeleteResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
        })
}
