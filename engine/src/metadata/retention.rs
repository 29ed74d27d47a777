//! Retention: which records a topic's `retention.ms` and `retention.bytes` let go, and which log
//! objects the state still points at.
//!
//! # A decision from outside, applied through the log
//!
//! Retention by time needs a clock, and the state machine reads none (its outcome must be the same
//! on every replay). So the agent asks [`MetadataState::retention_commands`] with its wall clock,
//! and writes the answer into the log as ordinary `DeleteRecords` commands: every replay then moves
//! the log start offsets exactly where the agent moved them, whatever the replaying machine's
//! clock says. The same shape as expiring committed offsets (the group core writes `DeleteGroups`).
//!
//! # Kafka's rules, per index entry instead of per segment
//!
//! Kafka deletes whole segments from the oldest: by time while a segment's largest timestamp is
//! older than `now - retention.ms` (a segment with a future timestamp stops the walk), and by size
//! while what remains after deleting the next segment is still at least `retention.bytes`. Here the
//! unit is an index entry (one partition's batches in one object, or a merged range after
//! compaction), the time is the entry's `max_timestamp` (the largest batch max timestamp, which is
//! the agent's append time on `LogAppendTime` topics), and the size is the entry's bytes. The
//! new log start is the furthest of the two walks; entries end on batch boundaries, so a fetch
//! from the new log start finds a batch that begins there.
//!
//! A topic whose `cleanup.policy` does not include `delete` is left alone, as in Kafka.

use std::collections::BTreeSet;

use super::command::Command;
use super::partition::PartitionState;
use super::state::MetadataState;
use crate::types::{LogSeq, TopicPartition, is_agent_object, is_compacted_object};

/// The broker-wide defaults a topic without an override uses (Kafka's `log.retention.ms` and
/// `log.retention.bytes`; -1 means unlimited for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDefaults {
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

impl Default for RetentionDefaults {
    /// Kafka's defaults: 7 days, no size limit.
    fn default() -> Self {
        RetentionDefaults {
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
        }
    }
}

/// One topic's effective retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TopicRetention {
    /// Records whose batch max timestamp is below this may go; `None` = no time limit.
    cutoff_ms: Option<i64>,
    /// Bytes to keep at least; `None` = no size limit.
    bytes_kept_min: Option<u64>,
}

impl MetadataState {
    /// The `DeleteRecords` commands that apply retention at wall-clock time `now_ms`, one per
    /// partition whose log start offset moves, in topic-name then partition order. Pure: the
    /// caller writes them into the log (at most `COMMANDS_PER_ENTRY_MAX` per entry).
    ///
    /// Cost: per partition with a time limit, a walk over the entries that expire; per partition
    /// with a size limit, one pass over its entries to total their bytes. Run it every
    /// `log.retention.check.interval.ms`, not per request.
    pub fn retention_commands(&self, now_ms: i64, defaults: &RetentionDefaults) -> Vec<Command> {
        let mut commands = Vec::new();
        for (_, topic_id) in self.topics() {
            let Some(topic) = self.topic(topic_id) else {
                continue;
            };
            let Some(retention) = topic_retention(topic.config_overrides(), now_ms, defaults)
            else {
                continue;
            };
            for (partition, state) in topic.partitions().iter().enumerate() {
                let Some(before_offset) = retained_start(state, retention) else {
                    continue;
                };
                // Bounded by PARTITIONS_PER_TOPIC_MAX, which fits an i32.
                let partition = i32::try_from(partition).unwrap_or(i32::MAX);
                commands.push(Command::DeleteRecords {
                    tp: TopicPartition::new(topic_id, partition),
                    before_offset,
                });
            }
        }
        commands
    }

    /// Every log position at or below `up_to` that an index entry still points at, sorted. An
    /// object at such a position must not be deleted.
    ///
    /// Relies on each partition's index naming non-decreasing positions (entries are appended in
    /// log order), so the walk of each partition stops at its first entry past `up_to`: the cost
    /// is the number of entries at or below `up_to` plus one per partition.
    pub fn referenced_log_seqs_up_to(&self, up_to: LogSeq) -> BTreeSet<LogSeq> {
        let mut referenced = BTreeSet::new();
        for topic in self.topics.values() {
            for partition in topic.partitions() {
                // Compacted objects cover a prefix of the offsets, log entries follow in log
                // order: skip the former, stop at the first of the latter past `up_to`.
                let log_entries = || {
                    partition
                        .index()
                        .iter()
                        .map(|entry| entry.seq)
                        .filter(|seq| !is_compacted_object(*seq) && !is_agent_object(*seq))
                };
                debug_assert!(
                    log_entries()
                        .zip(log_entries().skip(1))
                        .all(|(earlier, later)| earlier <= later),
                    "a partition's index names log positions out of order"
                );
                referenced.extend(log_entries().take_while(|seq| *seq <= up_to));
            }
        }
        referenced
    }

    /// Every compacted object an index entry points at. O(index entries).
    pub fn referenced_compacted_objects(&self) -> BTreeSet<LogSeq> {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions())
            .flat_map(|partition| partition.index().iter().map(|entry| entry.seq))
            .filter(|seq| is_compacted_object(*seq))
            .collect()
    }

    /// Every agent window object (a cluster's `data/…`) an index entry points at.
    /// O(index entries).
    pub fn referenced_agent_objects(&self) -> BTreeSet<LogSeq> {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions())
            .flat_map(|partition| partition.index().iter().map(|entry| entry.seq))
            .filter(|seq| is_agent_object(*seq))
            .collect()
    }

    /// Index entries across every partition (what memory and checkpoints grow with).
    pub fn index_entry_count(&self) -> u64 {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions())
            .map(|partition| partition.index().len() as u64)
            .sum()
    }
}

/// The topic's retention at `now_ms`, or `None` when it keeps everything (no `delete` in its
/// cleanup policy, or both limits unlimited). Values were validated when set; anything unreadable
/// counts as the default.
fn topic_retention(
    overrides: &std::collections::BTreeMap<String, String>,
    now_ms: i64,
    defaults: &RetentionDefaults,
) -> Option<TopicRetention> {
    let policy = overrides
        .get("cleanup.policy")
        .map_or("delete", String::as_str);
    if !policy.split(',').any(|part| part.trim() == "delete") {
        return None;
    }
    let number = |name: &str, default: i64| {
        overrides
            .get(name)
            .and_then(|value| value.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let retention_ms = number("retention.ms", defaults.retention_ms);
    let retention_bytes = number("retention.bytes", defaults.retention_bytes);
    let retention = TopicRetention {
        cutoff_ms: (retention_ms >= 0).then(|| now_ms.saturating_sub(retention_ms)),
        bytes_kept_min: u64::try_from(retention_bytes).ok(),
    };
    (retention.cutoff_ms.is_some() || retention.bytes_kept_min.is_some()).then_some(retention)
}

/// The log start offset retention gives this partition, when it is above the current one.
fn retained_start(partition: &PartitionState, retention: TopicRetention) -> Option<u64> {
    let index = partition.index();
    let mut start = partition.log_start_offset();
    if let Some(cutoff_ms) = retention.cutoff_ms {
        // Oldest first; an entry not yet expired (or with a future timestamp) stops the walk.
        if let Some(end) = index
            .iter()
            .take_while(|entry| entry.max_timestamp < cutoff_ms)
            .last()
            .map(|entry| entry.end_offset)
        {
            start = start.max(end);
        }
    }
    if let Some(kept_min) = retention.bytes_kept_min {
        let mut remaining: u64 = index.iter().map(|entry| entry.byte_len).sum();
        for entry in index.iter() {
            match remaining.checked_sub(entry.byte_len) {
                Some(after) if after >= kept_min => {
                    remaining = after;
                    start = start.max(entry.end_offset);
                }
                _ => break,
            }
        }
    }
    (start > partition.log_start_offset()).then_some(start)
}
