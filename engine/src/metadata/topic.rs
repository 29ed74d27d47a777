//! Topics: name rules and the per-topic state.

use std::collections::BTreeMap;

use super::error::MetadataError;
use super::partition::PartitionState;
use crate::types::TopicId;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 100_000;
/// Partitions across all topics: bounds memory of the state and the size of a checkpoint.
pub const PARTITIONS_TOTAL_MAX: u64 = 1_000_000;
/// Topics the state may hold.
pub const TOPICS_MAX: usize = 100_000;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub(super) name: String,
    /// Overrides only; see [`super::config`].
    pub(super) configs: BTreeMap<String, String>,
    pub(super) partitions: Vec<PartitionState>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configs the topic overrides (no defaults).
    pub fn config_overrides(&self) -> &BTreeMap<String, String> {
        &self.configs
    }

    /// Always in `1..=PARTITIONS_PER_TOPIC_MAX`, so it fits an `i32` partition number.
    pub fn partition_count(&self) -> u32 {
        // Bounded by PARTITIONS_PER_TOPIC_MAX on every path that grows it.
        self.partitions.len() as u32
    }

    pub fn partitions(&self) -> &[PartitionState] {
        &self.partitions
    }

    pub(super) fn partition(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|at| self.partitions.get(at))
    }

    pub(super) fn partition_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|at| self.partitions.get_mut(at))
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |reason| {
        let echoed: String = name.chars().take(TOPIC_NAME_LEN_MAX).collect();
        Err(MetadataError::InvalidTopicName {
            name: echoed,
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A valid partition count for a topic: `1..=PARTITIONS_PER_TOPIC_MAX`.
pub(super) fn validate_partition_count(requested: u32, current: u32) -> Result<(), MetadataError> {
    if requested == 0 || requested <= current || requested > PARTITIONS_PER_TOPIC_MAX {
        return Err(MetadataError::InvalidPartitionCount {
            requested,
            current,
            limit: PARTITIONS_PER_TOPIC_MAX,
        });
    }
    Ok(())
}

/// Rejects the all-zero id, which Kafka uses to mean "no topic id".
pub(super) fn validate_topic_id(topic_id: TopicId) -> Result<(), MetadataError> {
    if topic_id == TopicId::ZERO {
        return Err(MetadataError::InvalidTopicId { topic_id });
    }
    Ok(())
}
