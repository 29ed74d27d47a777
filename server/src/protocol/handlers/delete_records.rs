//! DeleteRecords (key 21, v0–2): raise partitions' log start offsets through the metadata log.
//!
//! The rules are Apache Kafka's (`ReplicaManager.deleteRecords`, `Partition.deleteRecordsOnLeader`,
//! `UnifiedLog.maybeIncrementLogStartOffset`), per partition, each with its own error code:
//!
//! - an unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION (3);
//! - a topic whose `cleanup.policy` does not include `delete`: POLICY_VIOLATION (44);
//! - offset -1 means the high watermark; any other negative offset, or one past the high
//!   watermark: OFFSET_OUT_OF_RANGE (1);
//! - an offset at or below the current log start offset changes nothing: the answer is the current
//!   log start offset;
//! - otherwise the log start offset becomes the offset, and `low_watermark` answers it.
//!
//! A partition in error answers `low_watermark` -1 (Kafka's `INVALID_LOW_WATERMARK`). A partition
//! named twice in one request is deleted once, to the last offset given, and answered once: Kafka
//! collects the request into a map keyed by partition.
//!
//! How: one query on the metadata core checks every partition against the state. The partitions
//! that move go to the log as `Command::DeleteRecords`, all of them in one entry (one PUT, sealed at
//! once, as the other admin commands), split only past `COMMANDS_PER_ENTRY_MAX`. The state machine
//! checks each again when it applies it, the only check that cannot race with another core: a topic
//! deleted in between answers UNKNOWN_TOPIC_OR_PARTITION. No-ops and refusals write nothing. A
//! second query then reads the log start offsets the entry left. That is Kafka's answer too: its
//! `low_watermark` is the partition's log start offset when the request completes, so a concurrent
//! DeleteRecords that went further shows in both. Recovery replays the commands, so the new log
//! start offset survives a restart and a takeover.
//!
//! `timeout_ms` is not used. In Kafka it bounds the wait for the followers' log start offsets to
//! catch up with the leader's (`DelayedDeleteRecords`); Sluice has no followers, and the answer
//! comes as soon as the one entry is durable. A store that does not take the entry fails it with
//! the log's own retriable codes (REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER), as for CreateTopics
//! and Produce, which do not use their timeouts either.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::{COMMANDS_PER_ENTRY_MAX, Command, MetadataError, MetadataState};
use sluice_engine::types::TopicPartition;

use crate::metadata_core::{CommandFailure, CoreHandle};

/// The `offset` that means "the high watermark" (Kafka's `DeleteRecordsRequest.HIGH_WATERMARK`).
const HIGH_WATERMARK: i64 = -1;
/// `low_watermark` of a partition in error (Kafka's `DeleteRecordsResponse.INVALID_LOW_WATERMARK`).
const INVALID_LOW_WATERMARK: i64 = -1;

/// One partition of the request, after duplicates are folded.
#[derive(Debug, Clone)]
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A partition's answer: its log start offset after the request, or a Kafka error code.
type Outcome = Result<u64, i16>;

/// What the state says about one partition before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Answered from the state alone: a no-op (the current log start offset) or a refusal.
    Answered(Outcome),
    /// Raise `tp`'s log start offset to `before_offset` through the log.
    Delete {
        tp: TopicPartition,
        before_offset: u64,
    },
}

/// Handles one DeleteRecords request.
pub async fn handle(core: &CoreHandle, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let wanted = Arc::new(fold_duplicates(request));
    let outcomes = delete(core, Arc::clone(&wanted)).await;
    response(&wanted, &outcomes)
}

/// The request's partitions in order of first mention; a partition named again keeps its place and
/// takes the later offset.
fn fold_duplicates(request: &DeleteRecordsRequest) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut positions: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            match positions.entry((topic.name.as_str(), partition.partition_index)) {
                Entry::Occupied(position) => {
                    if let Some(earlier) = wanted.get_mut(*position.get()) {
                        earlier.offset = partition.offset;
                    }
                }
                Entry::Vacant(position) => {
                    position.insert(wanted.len());
                    wanted.push(Wanted {
                        topic: topic.name.as_str().to_owned(),
                        partition: partition.partition_index,
                        offset: partition.offset,
                    });
                }
            }
        }
    }
    wanted
}

/// Checks, writes and re-reads: one outcome per wanted partition, in order.
async fn delete(core: &CoreHandle, wanted: Arc<Vec<Wanted>>) -> Vec<Outcome> {
    let unavailable = Err(ResponseError::NotLeaderOrFollower.code());
    let count = wanted.len();
    let Ok(plans) = core
        .query(move |state| {
            wanted
                .iter()
                .map(|partition| plan(state, partition))
                .collect::<Vec<_>>()
        })
        .await
    else {
        return vec![unavailable; count];
    };
    let deletes: Vec<(TopicPartition, u64)> = plans
        .iter()
        .filter_map(|plan| match plan {
            Plan::Delete { tp, before_offset } => Some((*tp, *before_offset)),
            Plan::Answered(_) => None,
        })
        .collect();
    let written = write(core, &deletes).await;
    // The log start offsets the entry left, for the partitions it moved.
    let moved: Vec<TopicPartition> = deletes
        .iter()
        .zip(&written)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|((tp, _), _)| *tp)
        .collect();
    let moved_count = moved.len();
    let log_starts: Vec<Option<u64>> = core
        .query(move |state| {
            moved
                .iter()
                .map(|tp| state.log_start_offset(*tp).ok())
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; moved_count]);

    let mut written = deletes.iter().zip(written);
    let mut log_starts = log_starts.into_iter();
    plans
        .into_iter()
        .map(|plan| match plan {
            Plan::Answered(outcome) => outcome,
            Plan::Delete { .. } => match written.next() {
                // No log start to re-read only if the topic was deleted right behind the entry:
                // the command itself succeeded, so it answers the offset it set.
                Some(((_, before_offset), Ok(()))) => {
                    Ok(log_starts.next().flatten().unwrap_or(*before_offset))
                }
                Some((_, Err(code))) => Err(code),
                None => unavailable,
            },
        })
        .collect()
}

/// Kafka's checks against the current state, in Kafka's order.
fn plan(state: &MetadataState, wanted: &Wanted) -> Plan {
    let unknown = Plan::Answered(Err(ResponseError::UnknownTopicOrPartition.code()));
    let Some((topic_id, topic)) = state.topic_by_name(&wanted.topic) else {
        return unknown;
    };
    let tp = TopicPartition::new(topic_id, wanted.partition);
    let Ok(partition) = state.partition(tp) else {
        return unknown;
    };
    if !deletes_by_policy(topic.config_overrides().get("cleanup.policy")) {
        return Plan::Answered(Err(ResponseError::PolicyViolation.code()));
    }
    let high_watermark = partition.high_watermark();
    let before_offset = match wanted.offset {
        HIGH_WATERMARK => high_watermark,
        offset => match u64::try_from(offset) {
            Ok(offset) if offset <= high_watermark => offset,
            _ => return Plan::Answered(Err(ResponseError::OffsetOutOfRange.code())),
        },
    };
    if before_offset <= partition.log_start_offset() {
        return Plan::Answered(Ok(partition.log_start_offset()));
    }
    Plan::Delete { tp, before_offset }
}

/// Whether a topic's `cleanup.policy` (absent: the default, `delete`) lets records be deleted:
/// Kafka's `LogConfig.delete`.
fn deletes_by_policy(policy: Option<&String>) -> bool {
    policy.is_none_or(|policy| policy.split(',').any(|part| part.trim() == "delete"))
}

/// Appends one `DeleteRecords` command per partition; one outcome per partition, in order.
async fn write(core: &CoreHandle, deletes: &[(TopicPartition, u64)]) -> Vec<Result<(), i16>> {
    let mut outcomes = Vec::with_capacity(deletes.len());
    for chunk in deletes.chunks(COMMANDS_PER_ENTRY_MAX) {
        let commands: Vec<Command> = chunk
            .iter()
            .map(|(tp, before_offset)| Command::DeleteRecords {
                tp: *tp,
                before_offset: *before_offset,
            })
            .collect();
        let unavailable = Err(ResponseError::NotLeaderOrFollower.code());
        let answers = core.commands(commands).await.unwrap_or_default();
        let answered = answers.len().min(chunk.len());
        outcomes.extend(
            answers
                .iter()
                .take(answered)
                .map(|answer| answer.as_ref().map(|_| ()).map_err(failure_code)),
        );
        // The core answers every command, or none when it is gone (the agent is stopping).
        outcomes.extend(std::iter::repeat_n(unavailable, chunk.len() - answered));
    }
    outcomes
}

/// The code a failed command answers. The request names topics, so a topic id the state machine no
/// longer knows (deleted meanwhile) is UNKNOWN_TOPIC_OR_PARTITION, as in Produce.
fn failure_code(failure: &CommandFailure) -> i16 {
    match failure {
        CommandFailure::Rejected(
            MetadataError::UnknownTopicId { .. } | MetadataError::UnknownPartition { .. },
        ) => ResponseError::UnknownTopicOrPartition.code(),
        CommandFailure::Rejected(error) => error.kafka_error_code(),
        CommandFailure::LogFailed { code, .. } => *code,
    }
}

/// One topic result per topic, in order of first mention; partitions in the same order.
fn response(wanted: &[Wanted], outcomes: &[Outcome]) -> DeleteRecordsResponse {
    let mut topics: Vec<DeleteRecordsTopicResult> = Vec::new();
    let mut positions: HashMap<&str, usize> = HashMap::new();
    for (partition, outcome) in wanted.iter().zip(outcomes) {
        let result = match outcome {
            Ok(log_start_offset) => DeleteRecordsPartitionResult::default()
                .with_partition_index(partition.partition)
                .with_low_watermark(i64::try_from(*log_start_offset).unwrap_or(i64::MAX)),
            Err(code) => DeleteRecordsPartitionResult::default()
                .with_partition_index(partition.partition)
                .with_low_watermark(INVALID_LOW_WATERMARK)
                .with_error_code(*code),
        };
        let position = *positions
            .entry(partition.topic.as_str())
            .or_insert_with(|| {
                topics.push(
                    DeleteRecordsTopicResult::default()
                        .with_name(TopicName(StrBytes::from_string(partition.topic.clone()))),
                );
                topics.len() - 1
            });
        if let Some(topic) = topics.get_mut(position) {
            topic.partitions.push(result);
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };

    use super::*;

    fn request(topics: &[(&str, &[(i32, i64)])]) -> DeleteRecordsRequest {
        DeleteRecordsRequest::default().with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    DeleteRecordsTopic::default()
                        .with_name(TopicName(StrBytes::from_string((*name).to_owned())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(partition, offset)| {
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(*partition)
                                        .with_offset(*offset)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    #[test]
    fn a_partition_named_twice_counts_once_with_the_last_offset() {
        let folded = fold_duplicates(&request(&[
            ("a", &[(0, 5), (1, 7)]),
            ("b", &[(0, 1)]),
            ("a", &[(0, 9)]),
        ]));
        let seen: Vec<(&str, i32, i64)> = folded
            .iter()
            .map(|wanted| (wanted.topic.as_str(), wanted.partition, wanted.offset))
            .collect();
        assert_eq!(seen, [("a", 0, 9), ("a", 1, 7), ("b", 0, 1)]);
    }

    #[test]
    fn one_topic_result_per_topic_and_errors_answer_an_invalid_low_watermark() {
        let folded = fold_duplicates(&request(&[
            ("a", &[(0, 5)]),
            ("b", &[(3, 1)]),
            ("a", &[(1, 2)]),
        ]));
        let response = response(&folded, &[Ok(5), Err(3), Ok(0)]);
        assert_eq!(response.topics.len(), 2);
        let a = &response.topics[0];
        assert_eq!(a.name.as_str(), "a");
        let a: Vec<(i32, i64, i16)> = a
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.low_watermark, p.error_code))
            .collect();
        assert_eq!(a, [(0, 5, 0), (1, 0, 0)]);
        let b = &response.topics[1].partitions[0];
        assert_eq!(
            (b.partition_index, b.low_watermark, b.error_code),
            (3, -1, 3)
        );
    }

    #[test]
    fn only_a_policy_with_delete_lets_records_go() {
        let policy = |value: &str| deletes_by_policy(Some(&value.to_owned()));
        assert!(deletes_by_policy(None));
        assert!(policy("delete"));
        assert!(policy("compact,delete"));
        assert!(policy("delete, compact"));
        assert!(!policy("compact"));
    }
}
