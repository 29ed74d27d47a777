//! The owner core's side of OffsetCommit, OffsetFetch and OffsetDelete.
//!
//! Committed offsets are the metadata state's (durable in the log, restored by every agent that
//! opens it); the owner core only decides whether a commit may go ahead (the member and its
//! generation or epoch, by the group's own state machine) and answers when the commit is durable.
//! A commit becomes `Command::CommitOffsets` commands that join the metadata core's *open* window
//! without sealing it (`CoreHandle::commit_offsets`), so a thousand consumers committing every
//! second still cost one PUT per window, not one per commit.
//!
//! Partition checks follow the Java broker's order: a topic or partition that does not exist is
//! UNKNOWN_TOPIC_OR_PARTITION before anything else (and is not validated further); then the group
//! validates the member; then metadata longer than `offset_metadata_bytes_max` is
//! OFFSET_METADATA_TOO_LARGE per partition.

use std::collections::BTreeSet;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::{
    Command, CommittedOffset, MetadataError, MetadataState, OffsetCommit,
};

use super::core::{GroupCore, command_code, coordinator_code, error_code};

/// Estimated bytes of one commit command's offsets above which a request is split into several
/// commands: a log entry's commands section is at most 16 MiB, and one client's commit must not
/// be able to make a window (and the produces in it) fail.
pub const COMMIT_COMMAND_BYTES_MAX: usize = 1 << 20;

/// The group-level request of an OffsetFetch, whatever the version it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchGroup {
    pub group_id: String,
    /// v9: the KIP-848 member asking, checked against the group's members.
    pub member_id: Option<String>,
    pub member_epoch: i32,
    /// `None`: every partition the group committed.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

impl GroupCore {
    /// OffsetCommit (v2-9).
    pub async fn commit_offsets(
        &self,
        request: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = request.group_id.to_string();
        // Before any await, so that a cleanup round deciding now sees this commit.
        if self.expiring.borrow().contains(&group_id) {
            return commit_response(&request, |_| error_code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        let _in_flight = CommitInFlight::new(self, &group_id);
        // Per partition, in request order: Some(code) once decided.
        let lookups: Vec<(String, i32)> = request
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.name.to_string(), partition.partition_index))
            })
            .collect();
        let exists = match self
            .metadata
            .query(move |state| {
                lookups
                    .iter()
                    .map(|(topic, partition)| partition_exists(state, topic, *partition))
                    .collect::<Vec<bool>>()
            })
            .await
        {
            Ok(exists) => exists,
            Err(_) => return commit_response(&request, |_| error_code::COORDINATOR_NOT_AVAILABLE),
        };
        let mut codes: Vec<Option<i16>> = exists
            .iter()
            .map(|exists| (!exists).then_some(error_code::UNKNOWN_TOPIC_OR_PARTITION))
            .collect();
        if codes.iter().any(Option::is_none)
            && let Err(code) = self.check_commit(&request, version).await
        {
            for slot in codes.iter_mut().filter(|slot| slot.is_none()) {
                *slot = Some(code);
            }
        }
        let commit_timestamp_ms = wall_clock_ms();
        // (position in `codes`, the offset) for every partition still undecided.
        let mut pending: Vec<(usize, OffsetCommit)> = Vec::new();
        let mut position = 0;
        for topic in &request.topics {
            for partition in &topic.partitions {
                let slot = codes.get_mut(position);
                let index = position;
                position += 1;
                let Some(slot) = slot else { continue };
                if slot.is_some() {
                    continue;
                }
                let metadata = partition.committed_metadata.as_ref().map(|m| m.to_string());
                if metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.len() > self.offset_metadata_bytes_max)
                {
                    *slot = Some(error_code::OFFSET_METADATA_TOO_LARGE);
                    continue;
                }
                let Ok(partition_index) = u32::try_from(partition.partition_index) else {
                    *slot = Some(error_code::UNKNOWN_TOPIC_OR_PARTITION);
                    continue;
                };
                pending.push((
                    index,
                    OffsetCommit {
                        topic: topic.name.to_string(),
                        partition: partition_index,
                        offset: partition.committed_offset,
                        leader_epoch: if version >= 6 {
                            partition.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                        commit_timestamp_ms,
                    },
                ));
            }
        }
        for (index, code) in self.store_commits(&group_id, pending).await {
            if let Some(slot) = codes.get_mut(index) {
                *slot = Some(code);
            }
        }
        let mut codes = codes.into_iter();
        commit_response(&request, |_| {
            codes
                .next()
                .flatten()
                .unwrap_or(error_code::UNKNOWN_SERVER_ERROR)
        })
    }

    /// Whether the group lets this member commit, by the group's own state machine; a group this
    /// core does not hold in memory is a "simple" group when the generation is negative, an
    /// Empty group (UNKNOWN_MEMBER_ID) when it has committed offsets (its members are gone: stored
    /// groups are loaded at start, so a group with members is always in memory), and else unknown (GROUP_ID_NOT_FOUND from v9,
    /// ILLEGAL_GENERATION before, as Kafka's `OffsetMetadataManager.validateOffsetCommit`).
    async fn check_commit(&self, request: &OffsetCommitRequest, version: i16) -> Result<(), i16> {
        let group_id = request.group_id.as_str();
        if group_id.is_empty() {
            return Err(error_code::INVALID_GROUP_ID);
        }
        let generation = request.generation_id_or_member_epoch;
        let decided = {
            let mut groups = self.groups.borrow_mut();
            let now_ms = self.now_ms();
            if groups.classic.contains(group_id) {
                Some(groups.classic.check_commit(
                    group_id,
                    generation,
                    request.member_id.as_str(),
                    request.group_instance_id.as_ref().map(|id| id.as_str()),
                    now_ms,
                ))
            } else if groups.consumer.contains(group_id) {
                Some(groups.consumer.check_commit(
                    group_id,
                    generation,
                    request.member_id.as_str(),
                    now_ms,
                ))
            } else {
                None
            }
        };
        if let Some(decided) = decided {
            self.deadlines_changed();
            return decided;
        }
        // Given up to another agent since the routing let the commit in (the view changed during
        // the partition lookup): its member looks the coordinator up again and commits there.
        if !self.still_coordinates(group_id) {
            return Err(error_code::NOT_COORDINATOR);
        }
        if generation < 0 {
            return Ok(());
        }
        match self.has_offsets(group_id).await {
            Ok(true) => Err(error_code::UNKNOWN_MEMBER_ID),
            Ok(false) if version >= 9 => Err(error_code::GROUP_ID_NOT_FOUND),
            Ok(false) => Err(error_code::ILLEGAL_GENERATION),
            Err(code) => Err(code),
        }
    }

    /// Kafka's offset expiry for groups without members (KIP-211), made conservative: deletes
    /// the committed offsets of every group in `owned` (this core's groups with offsets, each with
    /// its newest commit time) that has no members and for at least the retention has been seen
    /// without members by this core, committed nothing (by the stored commit times), and has no
    /// commit running here nor finished since the round read those times. The delete is one
    /// durable `DeleteGroups` command; while it is in flight
    /// commits for those groups get the retriable COORDINATOR_LOAD_IN_PROGRESS, so no commit can
    /// be acknowledged and then deleted.
    pub(super) async fn expire_offsets(&self, owned: Vec<(String, i64)>) {
        let retention_ms = self.offsets_retention_ms;
        let retention_wall_ms = i64::try_from(retention_ms).unwrap_or(i64::MAX);
        let now_ms = self.now_ms();
        let wall_ms = wall_clock_ms();
        let expired: Vec<String> = {
            let groups = self.groups.borrow();
            let mut empty_since = self.empty_since_ms.borrow_mut();
            let in_flight = self.commits_in_flight.borrow();
            let committed = self
                .committed_during_cleanup
                .borrow_mut()
                .take()
                .unwrap_or_default();
            let present: BTreeSet<&str> = owned.iter().map(|(id, _)| id.as_str()).collect();
            empty_since.retain(|id, _| present.contains(id.as_str()));
            owned
                .iter()
                .filter_map(|(group_id, newest_commit_ms)| {
                    if !groups.classic.is_empty(group_id) || !groups.consumer.is_empty(group_id) {
                        empty_since.remove(group_id);
                        return None;
                    }
                    let since = *empty_since.entry(group_id.clone()).or_insert(now_ms);
                    let expired = now_ms.saturating_sub(since) >= retention_ms
                        && wall_ms.saturating_sub(*newest_commit_ms) >= retention_wall_ms
                        && !in_flight.contains_key(group_id)
                        && !committed.contains(group_id);
                    expired.then(|| group_id.clone())
                })
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        self.expiring.borrow_mut().extend(expired.iter().cloned());
        let outcome = self
            .metadata
            .commands(vec![Command::DeleteGroups {
                groups: expired.clone(),
            }])
            .await;
        let code = match outcome {
            Ok(results) => results
                .first()
                .map_or(error_code::COORDINATOR_NOT_AVAILABLE, command_code),
            Err(_) => error_code::COORDINATOR_NOT_AVAILABLE,
        };
        if code == error_code::NONE {
            self.forget_stored(&expired);
        }
        {
            let mut expiring = self.expiring.borrow_mut();
            let mut empty_since = self.empty_since_ms.borrow_mut();
            let mut groups = self.groups.borrow_mut();
            for group_id in &expired {
                expiring.remove(group_id);
                if code == error_code::NONE {
                    empty_since.remove(group_id);
                    groups.classic.forget_if_empty(group_id);
                    groups.consumer.forget_if_empty(group_id);
                }
            }
        }
        self.collect_dirty();
        if code == error_code::NONE {
            tracing::info!(
                groups = expired.len(),
                retention_ms,
                "deleted the committed offsets of groups without members past the retention"
            );
        } else {
            tracing::warn!(
                groups = expired.len(),
                code,
                "cannot delete expired offsets; the next cleanup round tries again"
            );
        }
    }

    /// Sends the commits to the metadata core (split into commands of at most
    /// [`COMMIT_COMMAND_BYTES_MAX`]) and waits until they are durable; one code per position.
    async fn store_commits(
        &self,
        group_id: &str,
        pending: Vec<(usize, OffsetCommit)>,
    ) -> Vec<(usize, i16)> {
        let mut chunks: Vec<Vec<(usize, OffsetCommit)>> = Vec::new();
        let mut chunk_bytes = 0;
        for entry in pending {
            let bytes = commit_bytes(&entry.1);
            match chunks.last_mut() {
                Some(chunk) if chunk_bytes + bytes <= COMMIT_COMMAND_BYTES_MAX => {
                    chunk_bytes += bytes;
                    chunk.push(entry);
                }
                _ => {
                    chunk_bytes = bytes;
                    chunks.push(vec![entry]);
                }
            }
        }
        // Send every chunk before waiting for any, so they share a window.
        let mut waiting = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let (positions, offsets): (Vec<usize>, Vec<OffsetCommit>) = chunk.into_iter().unzip();
            let answer = self
                .metadata
                .commit_offsets(group_id.to_owned(), offsets)
                .await;
            waiting.push((positions, answer));
        }
        let mut codes = Vec::new();
        for (positions, answer) in waiting {
            let outcome = match answer {
                Ok(receiver) => receiver.await.ok(),
                Err(_) => None,
            };
            match outcome {
                Some(Ok(skipped)) => {
                    let mut chunk_codes = vec![error_code::NONE; positions.len()];
                    for (offset_index, error) in skipped {
                        if let Some(code) = chunk_codes.get_mut(offset_index) {
                            *code = skipped_code(&error);
                        }
                    }
                    codes.extend(positions.into_iter().zip(chunk_codes));
                }
                Some(Err(failure)) => {
                    let code = command_code(&Err(failure));
                    codes.extend(positions.into_iter().map(|position| (position, code)));
                }
                None => codes.extend(
                    positions
                        .into_iter()
                        .map(|position| (position, error_code::COORDINATOR_NOT_AVAILABLE)),
                ),
            }
        }
        codes
    }

    /// OffsetFetch of one group (every version's group-level answer).
    pub async fn fetch_offsets(&self, group: FetchGroup, version: i16) -> OffsetFetchResponseGroup {
        let response = OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())));
        if version >= 9 {
            let groups = self.groups.borrow();
            if groups.consumer.contains(&group.group_id)
                && let Err(code) = groups.consumer.check_fetch(
                    &group.group_id,
                    group.member_epoch,
                    group.member_id.as_deref().unwrap_or(""),
                )
            {
                return response.with_error_code(code);
            }
        }
        let FetchGroup {
            group_id, topics, ..
        } = group;
        let read = self
            .metadata
            .query(move |state| read_offsets(state, &group_id, topics))
            .await;
        match read {
            Ok(topics) => response.with_topics(topics),
            Err(_) => response.with_error_code(error_code::COORDINATOR_NOT_AVAILABLE),
        }
    }

    /// OffsetDelete (v0).
    pub async fn delete_offsets(&self, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group_id = request.group_id.to_string();
        let top = |code| OffsetDeleteResponse::default().with_error_code(code);
        if group_id.is_empty() {
            return top(error_code::INVALID_GROUP_ID);
        }
        let in_memory = {
            let groups = self.groups.borrow();
            groups.classic.contains(&group_id) || groups.consumer.contains(&group_id)
        };
        if !in_memory {
            match self.has_offsets(&group_id).await {
                Ok(true) => {}
                Ok(false) => return top(error_code::GROUP_ID_NOT_FOUND),
                Err(code) => return top(code),
            }
        }
        // Kafka's `ClassicGroup.validateOffsetDelete`: a group with members that does not use
        // the consumer protocol type cannot have offsets deleted.
        if self
            .classic_protocol_type(&group_id)
            .is_some_and(|protocol_type| protocol_type != "consumer")
        {
            return top(error_code::NON_EMPTY_GROUP);
        }
        let subscribed = self.subscribed_topics(&group_id).await;
        let names: Vec<String> = request
            .topics
            .iter()
            .map(|topic| topic.name.to_string())
            .collect();
        let known = match self
            .metadata
            .query(move |state| {
                names
                    .iter()
                    .map(|name| state.topic_by_name(name).is_some())
                    .collect::<Vec<bool>>()
            })
            .await
        {
            Ok(known) => known,
            Err(_) => return top(error_code::COORDINATOR_NOT_AVAILABLE),
        };
        let mut deletions = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for (topic, known) in request.topics.iter().zip(known) {
            let name = topic.name.as_str();
            let is_subscribed = subscribed
                .as_ref()
                .is_none_or(|subscribed: &BTreeSet<String>| subscribed.contains(name));
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let code = if !known {
                        error_code::UNKNOWN_TOPIC_OR_PARTITION
                    } else if is_subscribed {
                        error_code::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        if let Ok(index) = u32::try_from(partition.partition_index) {
                            deletions.push((name.to_owned(), index));
                        }
                        error_code::NONE
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        if !deletions.is_empty() {
            let outcome = self
                .metadata
                .commands(vec![Command::DeleteOffsets {
                    group: group_id,
                    partitions: deletions,
                }])
                .await;
            let code = match outcome {
                Ok(results) => results
                    .into_iter()
                    .next()
                    .map_or(error_code::COORDINATOR_NOT_AVAILABLE, |result| {
                        command_code(&result)
                    }),
                Err(_) => error_code::COORDINATOR_NOT_AVAILABLE,
            };
            if code != error_code::NONE {
                return top(code);
            }
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    /// Whether the metadata state holds committed offsets of `group_id`.
    pub(super) async fn has_offsets(&self, group_id: &str) -> Result<bool, i16> {
        let group_id = group_id.to_owned();
        self.metadata
            .query(move |state| state.committed_offsets(&group_id).next().is_some())
            .await
            .map_err(|_| error_code::COORDINATOR_NOT_AVAILABLE)
    }

    /// [`Self::has_offsets`] of several groups in one query.
    pub(super) async fn groups_with_offsets(
        &self,
        group_ids: Vec<String>,
    ) -> Result<Vec<bool>, i16> {
        self.metadata
            .query(move |state| {
                group_ids
                    .iter()
                    .map(|group_id| state.committed_offsets(group_id).next().is_some())
                    .collect()
            })
            .await
            .map_err(|_| error_code::COORDINATOR_NOT_AVAILABLE)
    }
}

fn partition_exists(state: &MetadataState, topic: &str, partition: i32) -> bool {
    state.topic_by_name(topic).is_some_and(|(_, description)| {
        u32::try_from(partition).is_ok_and(|index| index < description.partition_count())
    })
}

/// The code of a partition the state machine skipped.
fn skipped_code(error: &MetadataError) -> i16 {
    match error {
        MetadataError::UnknownTopicOrPartition { .. } => error_code::UNKNOWN_TOPIC_OR_PARTITION,
        other => coordinator_code(other.kafka_error_code()),
    }
}

/// A rough size of one commit in a command, for splitting (the archive adds a few bytes more).
fn commit_bytes(commit: &OffsetCommit) -> usize {
    48 + commit.topic.len() + commit.metadata.as_ref().map_or(0, String::len)
}

/// An OffsetCommit response with `code(partition position)` for every partition of `request`.
fn commit_response(
    request: &OffsetCommitRequest,
    mut code: impl FnMut(usize) -> i16,
) -> OffsetCommitResponse {
    let mut position = 0;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let error_code = code(position);
                    position += 1;
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The offsets of `group_id`: the listed partitions (-1 and "" where nothing was committed, as
/// Kafka answers), or every committed partition when `topics` is `None`.
fn read_offsets(
    state: &MetadataState,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<OffsetFetchResponseTopics> {
    let partition = |index: i32, committed: Option<&CommittedOffset>| {
        let response = OffsetFetchResponsePartitions::default().with_partition_index(index);
        match committed {
            Some(committed) => response
                .with_committed_offset(committed.offset)
                .with_committed_leader_epoch(committed.leader_epoch)
                .with_metadata(Some(StrBytes::from_string(
                    committed.metadata.clone().unwrap_or_default(),
                ))),
            None => response
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(StrBytes::default())),
        }
    };
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|index| {
                        let committed = u32::try_from(index)
                            .ok()
                            .and_then(|p| state.committed_offset(group_id, &name, p));
                        partition(index, committed)
                    })
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
            .collect(),
        None => {
            let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
            for ((name, index), committed) in state.committed_offsets(group_id) {
                let entry = partition(i32::try_from(index).unwrap_or(i32::MAX), Some(committed));
                match topics.last_mut() {
                    Some(topic) if topic.name.as_str() == name => topic.partitions.push(entry),
                    _ => topics.push(
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                            .with_partitions(vec![entry]),
                    ),
                }
            }
            topics
        }
    }
}

/// Milliseconds since the Unix epoch: the commit timestamp Kafka stores with an offset.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// One OffsetCommit running on its group's core, from before its first await to its end (by any
/// path): what keeps a cleanup round from expiring a group whose commit it cannot see yet.
struct CommitInFlight<'a> {
    core: &'a GroupCore,
    group_id: &'a str,
}

impl<'a> CommitInFlight<'a> {
    fn new(core: &'a GroupCore, group_id: &'a str) -> Self {
        let mut in_flight = core.commits_in_flight.borrow_mut();
        match in_flight.get_mut(group_id) {
            Some(count) => *count += 1,
            None => {
                in_flight.insert(group_id.to_owned(), 1);
            }
        }
        Self { core, group_id }
    }
}

impl Drop for CommitInFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.core.commits_in_flight.borrow_mut();
        if let Some(count) = in_flight.get_mut(self.group_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(self.group_id);
            }
        }
        if let Some(committed) = self.core.committed_during_cleanup.borrow_mut().as_mut() {
            committed.insert(self.group_id.to_owned());
        }
    }
}
