//! Committed consumer-group offsets: the durable half of consumer groups.
//!
//! Group *membership* is the coordinator's, stored separately ([`super::groups`]); the offsets a
//! group commits must survive the agent and its disk, so they are part of this state machine and
//! change only through commands
//! that ride the metadata log ([`Command::CommitOffsets`], [`Command::DeleteOffsets`],
//! [`Command::DeleteGroups`]) and through [`Command::DeleteTopic`], which drops the topic's offsets
//! from every group. A checkpoint carries them, so checkpoint + tail replay restores them exactly.
//!
//! Offsets are keyed by topic *name*, as Kafka keys them (OffsetCommit and OffsetFetch name
//! topics), in nested `BTreeMap`s: group → topic → partition. Ordered maps keep listings and
//! checkpoints deterministic, and nesting lets lookups borrow `&str` keys and lets DeleteTopic drop
//! one key per group. A group with no offsets left is removed, so "has offsets" and "is listed"
//! are the same thing.
//!
//! A commit is applied partition by partition, like Kafka's: a partition that cannot be stored
//! (unknown topic or partition, an offset below -1, metadata over the limit, a full state) is
//! skipped and reported in [`Event::OffsetsCommitted`]; the rest are stored. Only a bad group id
//! rejects the whole command.
//!
//! [`Command::CommitOffsets`]: super::Command::CommitOffsets
//! [`Command::DeleteOffsets`]: super::Command::DeleteOffsets
//! [`Command::DeleteGroups`]: super::Command::DeleteGroups
//! [`Command::DeleteTopic`]: super::Command::DeleteTopic
//! [`Event::OffsetsCommitted`]: super::Event::OffsetsCommitted

use std::collections::BTreeMap;
use std::sync::Arc;

use super::command::OffsetCommit;
use super::entry::Event;
use super::error::MetadataError;
use super::state::MetadataState;

/// Longest group id, in bytes: Kafka's protocol strings cannot be longer (`Short.MAX_VALUE`).
pub const GROUP_ID_LEN_MAX: usize = 32_767;
/// Longest offset metadata string, in bytes: the protocol ceiling again. The server enforces its
/// own, usually much smaller, `offset_metadata_bytes_max` before a commit reaches the log.
pub const OFFSET_METADATA_LEN_MAX: usize = 32_767;
/// Groups that may hold committed offsets at once.
pub const OFFSET_GROUPS_MAX: usize = 100_000;
/// Committed offsets across all groups: bounds the memory of the state and the checkpoint size.
/// Updating an offset that is already stored always succeeds; only new ones count against it.
pub const COMMITTED_OFFSETS_MAX: usize = 5_000_000;

/// One committed offset, as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommittedOffset {
    /// The next offset the group will consume; -1 is stored as given (Kafka does too).
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// The committing agent's wall clock, carried by the command (the state reads no clock).
    pub commit_timestamp_ms: i64,
}

/// One group's offsets: topic name → partition → offset. Never holds an empty inner map.
pub(super) type GroupOffsets = BTreeMap<String, BTreeMap<u32, CommittedOffset>>;

/// Checks a group id against the limits every stored id obeys. Kafka refuses an empty id too.
pub fn validate_group_id(group: &str) -> Result<(), MetadataError> {
    let reason = if group.is_empty() {
        "empty"
    } else if group.len() > GROUP_ID_LEN_MAX {
        "longer than 32767 bytes"
    } else {
        return Ok(());
    };
    Err(MetadataError::InvalidGroupId {
        group: group.chars().take(256).collect(),
        reason,
    })
}

impl MetadataState {
    /// The offset `group` committed for `topic`/`partition`, if any. O(log n).
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Option<&CommittedOffset> {
        self.group_offsets.get(group)?.get(topic)?.get(&partition)
    }

    /// Every offset `group` committed, sorted by topic name then partition. Empty for a group
    /// without offsets.
    pub fn committed_offsets(
        &self,
        group: &str,
    ) -> impl Iterator<Item = ((&str, u32), &CommittedOffset)> + '_ {
        self.group_offsets
            .get(group)
            .into_iter()
            .flat_map(|topics| topics.iter())
            .flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |(partition, offset)| ((topic.as_str(), *partition), offset))
            })
    }

    /// Groups holding at least one committed offset, sorted.
    pub fn offset_groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.group_offsets.keys().map(String::as_str)
    }

    /// Committed offsets across all groups.
    pub fn committed_offset_count(&self) -> usize {
        self.committed_offset_count
    }

    pub(super) fn commit_offsets(
        &mut self,
        index: usize,
        group: &str,
        offsets: &[OffsetCommit],
    ) -> Result<Event, MetadataError> {
        validate_group_id(group)?;
        let mut skipped = Vec::new();
        for (offset_index, commit) in offsets.iter().enumerate() {
            if let Err(error) = self.commit_offset(group, commit) {
                skipped.push((offset_index, error));
            }
        }
        Ok(Event::OffsetsCommitted {
            index,
            group: group.to_owned(),
            skipped,
        })
    }

    fn commit_offset(&mut self, group: &str, commit: &OffsetCommit) -> Result<(), MetadataError> {
        if commit.offset < -1 {
            return Err(MetadataError::InvalidCommittedOffset {
                offset: commit.offset,
            });
        }
        if let Some(metadata) = &commit.metadata
            && metadata.len() > OFFSET_METADATA_LEN_MAX
        {
            return Err(MetadataError::OffsetMetadataTooLarge {
                len: metadata.len(),
                limit: OFFSET_METADATA_LEN_MAX,
            });
        }
        let exists = self
            .topic_by_name(&commit.topic)
            .is_some_and(|(_, topic)| commit.partition < topic.partition_count());
        if !exists {
            return Err(MetadataError::UnknownTopicOrPartition {
                topic: commit.topic.clone(),
                partition: commit.partition,
            });
        }
        let committed = CommittedOffset {
            offset: commit.offset,
            leader_epoch: commit.leader_epoch,
            metadata: commit.metadata.clone(),
            commit_timestamp_ms: commit.commit_timestamp_ms,
        };
        if let Some(stored) = self
            .group_offsets
            .get_mut(group)
            .and_then(|topics| Arc::make_mut(topics).get_mut(&commit.topic))
            .and_then(|partitions| partitions.get_mut(&commit.partition))
        {
            *stored = committed;
            return Ok(());
        }
        if self.committed_offset_count >= COMMITTED_OFFSETS_MAX {
            return Err(MetadataError::TooManyCommittedOffsets {
                limit: COMMITTED_OFFSETS_MAX,
            });
        }
        if !self.group_offsets.contains_key(group) && self.group_offsets.len() >= OFFSET_GROUPS_MAX
        {
            return Err(MetadataError::TooManyOffsetGroups {
                limit: OFFSET_GROUPS_MAX,
            });
        }
        Arc::make_mut(self.group_offsets.entry(group.to_owned()).or_default())
            .entry(commit.topic.clone())
            .or_default()
            .insert(commit.partition, committed);
        self.committed_offset_count += 1;
        Ok(())
    }

    /// OffsetDelete: removes the listed partitions of `group`; absent ones are not an error.
    pub(super) fn delete_offsets(
        &mut self,
        index: usize,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Event {
        let mut deleted_count = 0;
        if let Some(shared) = self.group_offsets.get_mut(group) {
            let topics = Arc::make_mut(shared);
            for (topic, partition) in partitions {
                let Some(stored) = topics.get_mut(topic) else {
                    continue;
                };
                if stored.remove(partition).is_some() {
                    deleted_count += 1;
                }
                if stored.is_empty() {
                    topics.remove(topic);
                }
            }
            if topics.is_empty() {
                self.group_offsets.remove(group);
            }
        }
        self.committed_offset_count -= deleted_count;
        Event::OffsetsDeleted {
            index,
            group: group.to_owned(),
            deleted_count,
        }
    }

    /// DeleteGroups: removes every offset of each group, and its stored state
    /// ([`super::groups`]). `deleted` lists the groups that had either.
    pub(super) fn delete_groups(&mut self, index: usize, groups: &[String]) -> Event {
        let mut deleted = Vec::new();
        for group in groups {
            let had_offsets = match self.group_offsets.remove(group) {
                Some(topics) => {
                    self.committed_offset_count -=
                        topics.values().map(BTreeMap::len).sum::<usize>();
                    true
                }
                None => false,
            };
            if self.drop_group_state(group) || had_offsets {
                deleted.push(group.clone());
            }
        }
        Event::GroupsDeleted { index, deleted }
    }

    /// DeleteTopic: the topic's offsets go from every group (a topic created later under the same
    /// name starts without committed offsets, as in Kafka). O(groups).
    pub(super) fn drop_topic_offsets(&mut self, topic: &str) {
        let mut removed = 0;
        self.group_offsets.retain(|_, topics| {
            // Copied (when a checkpoint snapshot shares it) only if it holds the topic.
            if topics.contains_key(topic)
                && let Some(partitions) = Arc::make_mut(topics).remove(topic)
            {
                removed += partitions.len();
            }
            !topics.is_empty()
        });
        self.committed_offset_count -= removed;
    }
}
