//! The open flush window: what the next log entry will hold, and who waits for it.
//!
//! Pure bookkeeping, no I/O and no clock (the caller says when the window opened): batches are
//! pushed in arrival order, and the window remembers, for every waiting produce, which segment its
//! partition's batches landed in and how many offsets precede them inside that segment. The object
//! layout (`docs/format.md`) orders segments by a partition's first push and batches by push order,
//! and the state machine numbers its `SegmentAppended` events by that same segment index, so a
//! batch's base offset is `segment base offset + offsets pushed before it in the segment`. That is
//! how one commit answers every produce in it without a per-batch index.

use std::collections::HashMap;

use bytes::Bytes;
use futures::channel::oneshot;
use sluice_engine::batch::BatchHeader;
use sluice_engine::log::{AppendOutcome, EntryContent};
use sluice_engine::metadata::{
    BatchOutcome, COMMANDS_PER_ENTRY_MAX, Command, Event, MetadataError, OffsetCommit,
};
use sluice_engine::types::TopicPartition;

use super::producer_ids::ProducerIdWaiter;
use super::{PartitionAppended, PartitionOutcome};

/// Kafka error codes the flusher answers with.
pub mod error_code {
    use sluice_engine::batch::BatchError;

    pub const CORRUPT_MESSAGE: i16 = kafka_protocol::ResponseError::CorruptMessage.code();
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 =
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
    pub const NOT_LEADER_OR_FOLLOWER: i16 =
        kafka_protocol::ResponseError::NotLeaderOrFollower.code();
    pub const REQUEST_TIMED_OUT: i16 = kafka_protocol::ResponseError::RequestTimedOut.code();
    pub const MESSAGE_TOO_LARGE: i16 = kafka_protocol::ResponseError::MessageTooLarge.code();
    pub const INVALID_TIMESTAMP: i16 = kafka_protocol::ResponseError::InvalidTimestamp.code();
    pub const INVALID_REQUEST: i16 = kafka_protocol::ResponseError::InvalidRequest.code();
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 =
        kafka_protocol::ResponseError::UnsupportedForMessageFormat.code();
    pub const NOT_CONTROLLER: i16 = kafka_protocol::ResponseError::NotController.code();
    pub const KAFKA_STORAGE_ERROR: i16 = kafka_protocol::ResponseError::KafkaStorageError.code();
    pub const INVALID_RECORD: i16 = kafka_protocol::ResponseError::InvalidRecord.code();

    /// The code for a batch its topic's `message.timestamp.type` refused
    /// (`apply_topic_timestamp_type`): a timestamp type only the broker may set is Kafka's
    /// INVALID_TIMESTAMP; anything else is a malformed batch.
    pub fn timestamp_refusal(error: &BatchError) -> i16 {
        match error {
            BatchError::LogAppendTimeFromProducer => INVALID_TIMESTAMP,
            _ => INVALID_RECORD,
        }
    }
}

/// Where one partition's batches of one produce sit in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub segment_index: usize,
    /// Offsets taken by the same partition's earlier batches in this window.
    pub offsets_before: u64,
    /// The same partition's earlier batches in this window: where this produce's batches start
    /// among the segment's batches (answers from per-batch outcomes, see [`super::producer_ids`]).
    pub batches_before: usize,
    pub batch_count: usize,
}

/// One partition of a waiting produce that reached the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedPartition {
    pub tp: TopicPartition,
    pub slot: Slot,
    /// The append time its batches were stamped with (a LogAppendTime topic), else
    /// [`super::NO_LOG_APPEND_TIME`]; its answer carries it.
    pub log_append_time_ms: i64,
}

/// A waiting produce: one entry per partition of the request, in request order; `Err` ones were
/// refused before they reached the window.
#[derive(Debug)]
pub struct ProduceWaiter {
    pub slots: Vec<Result<PlacedPartition, i16>>,
    pub reply: oneshot::Sender<Vec<PartitionOutcome>>,
}

/// A waiting command: command `index` of the window's commands.
#[derive(Debug)]
pub struct CommandWaiter {
    pub index: usize,
    pub reply: CommandReply,
}

/// Where a command's outcome goes.
#[derive(Debug)]
pub enum CommandReply {
    /// Applied or rejected (admin commands).
    Outcome(oneshot::Sender<Result<(), CommandFailure>>),
    /// An offset commit: the positions of the offsets the state machine skipped, and why.
    Commit(oneshot::Sender<CommitOutcome>),
}

/// The outcome of one `CommitOffsets` command: `Ok` with the offsets that were *not* stored
/// (`(position in the command, why)`; empty when all were), or why the command failed.
pub type CommitOutcome = Result<Vec<(usize, MetadataError)>, CommandFailure>;

/// Estimated bytes of commands in a window beyond which it is sealed: the commands section of a
/// log entry is limited (16 MiB), and offset commits, unlike admin commands, do not seal the
/// window by themselves.
pub const WINDOW_COMMAND_BYTES_MAX: usize = 4 << 20;

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandFailure {
    /// The state machine rejected it (deterministically).
    #[error("{0}")]
    Rejected(MetadataError),
    /// The log append failed; the command may or may not have landed. Carries a Kafka code.
    #[error("metadata log append failed (error code {code}): {reason}")]
    LogFailed { code: i16, reason: String },
}

/// The window being filled.
#[derive(Debug, Default)]
pub struct Window {
    batches: Vec<(TopicPartition, BatchHeader, Bytes)>,
    /// Per partition: its segment index, the offsets and the batches pushed so far.
    segments: HashMap<TopicPartition, (usize, u64, usize)>,
    bytes: u64,
    commands: Vec<Command>,
    /// Estimated encoded bytes of the commit commands in `commands`.
    command_bytes: usize,
    produce_waiters: Vec<ProduceWaiter>,
    command_waiters: Vec<CommandWaiter>,
    producer_id_waiters: Vec<ProducerIdWaiter>,
    opened_at_ms: Option<u64>,
    /// The earliest `send_by` of the compaction swaps in the window (a cluster's, see
    /// [`super::SwapDeadline`]): its record is not sent after it.
    send_by: Option<std::time::Instant>,
    /// The incarnation token those swaps' objects are named by: the window is appended only by
    /// that incarnation. A window holds the swaps of one token at most.
    required_token: Option<u32>,
}

/// A sealed window: the entry to append and who to answer.
#[derive(Debug)]
pub struct Sealed {
    pub content: EntryContent,
    pub produce_waiters: Vec<ProduceWaiter>,
    pub command_waiters: Vec<CommandWaiter>,
    pub producer_id_waiters: Vec<ProducerIdWaiter>,
    pub batch_bytes: u64,
    /// Appended only while the cluster log's incarnation holds this token (a compaction swap's
    /// condition; `None` for every other window).
    pub required_token: Option<u32>,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.commands.is_empty()
    }

    /// Bytes of batches in the window.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty()
    }

    /// Commands in the window (a log entry carries at most `COMMANDS_PER_ENTRY_MAX`).
    pub fn command_count(&self) -> usize {
        self.commands.len()
    }

    /// Whether `more` commands (of about `bytes` encoded bytes) would overflow this window: then
    /// it must be sealed before they are pushed.
    pub fn would_overflow(&self, more: usize, bytes: usize) -> bool {
        !self.commands.is_empty()
            && (self.commands.len().saturating_add(more) > COMMANDS_PER_ENTRY_MAX
                || self.command_bytes.saturating_add(bytes) > WINDOW_COMMAND_BYTES_MAX)
    }

    /// Whether the window holds as many commands (or command bytes) as an entry should carry.
    pub fn commands_full(&self) -> bool {
        self.commands.len() >= COMMANDS_PER_ENTRY_MAX
            || self.command_bytes >= WINDOW_COMMAND_BYTES_MAX
    }

    /// When the first item entered (caller's monotonic milliseconds).
    pub fn opened_at_ms(&self) -> Option<u64> {
        self.opened_at_ms
    }

    /// Adds one partition's batches (in order); returns where they sit.
    pub fn push_partition(
        &mut self,
        tp: TopicPartition,
        batches: Vec<(BatchHeader, Bytes)>,
        now_ms: u64,
    ) -> Slot {
        self.opened_at_ms.get_or_insert(now_ms);
        let next_segment = self.segments.len();
        let (segment_index, offsets, batches_pushed) =
            self.segments.entry(tp).or_insert((next_segment, 0, 0));
        let slot = Slot {
            segment_index: *segment_index,
            offsets_before: *offsets,
            batches_before: *batches_pushed,
            batch_count: batches.len(),
        };
        *batches_pushed = batches_pushed.saturating_add(batches.len());
        for (header, bytes) in batches {
            *offsets = offsets.saturating_add(header.offset_count());
            self.bytes = self.bytes.saturating_add(bytes.len() as u64);
            self.batches.push((tp, header, bytes));
        }
        slot
    }

    pub fn add_produce_waiter(&mut self, waiter: ProduceWaiter) {
        self.produce_waiters.push(waiter);
    }

    /// Adds a command; its outcome goes to `reply`.
    pub fn push_command(
        &mut self,
        command: Command,
        reply: oneshot::Sender<Result<(), CommandFailure>>,
        now_ms: u64,
    ) {
        self.opened_at_ms.get_or_insert(now_ms);
        self.command_waiters.push(CommandWaiter {
            index: self.commands.len(),
            reply: CommandReply::Outcome(reply),
        });
        self.commands.push(command);
    }

    /// Adds a command that rides the window without sealing it (group state), counting its
    /// estimated `bytes` towards [`WINDOW_COMMAND_BYTES_MAX`]; its outcome goes to `reply`.
    pub fn push_counted_command(
        &mut self,
        command: Command,
        bytes: usize,
        reply: oneshot::Sender<Result<(), CommandFailure>>,
        now_ms: u64,
    ) {
        self.command_bytes = self.command_bytes.saturating_add(bytes);
        self.push_command(command, reply, now_ms);
    }

    /// Adds a `CommitOffsets` command; its outcome (the offsets skipped) goes to `reply`.
    pub fn push_commit(
        &mut self,
        group: String,
        offsets: Vec<OffsetCommit>,
        reply: oneshot::Sender<CommitOutcome>,
        now_ms: u64,
    ) {
        self.opened_at_ms.get_or_insert(now_ms);
        self.command_bytes = self
            .command_bytes
            .saturating_add(commit_command_bytes(&group, &offsets));
        self.command_waiters.push(CommandWaiter {
            index: self.commands.len(),
            reply: CommandReply::Commit(reply),
        });
        self.commands
            .push(Command::CommitOffsets { group, offsets });
    }

    /// Adds an InitProducerId command; the id it is handed goes to `reply`.
    pub fn push_init_producer_id(
        &mut self,
        transactional_id: Option<String>,
        reply: oneshot::Sender<Result<(i64, i16), CommandFailure>>,
        now_ms: u64,
    ) {
        self.opened_at_ms.get_or_insert(now_ms);
        self.producer_id_waiters.push(ProducerIdWaiter {
            index: self.commands.len(),
            reply,
        });
        self.commands
            .push(Command::InitProducerId { transactional_id });
    }

    /// Adds a compaction swap's conditions (pushed with its commands): the window's record is
    /// sent before the earliest `send_by` of its swaps, and by the incarnation of `token` only.
    /// The caller seals a window that requires another token first ([`Window::required_token`]).
    pub fn require(&mut self, deadline: super::SwapDeadline) {
        self.send_by = Some(
            self.send_by
                .map_or(deadline.send_by, |send_by| send_by.min(deadline.send_by)),
        );
        self.required_token = Some(deadline.token);
    }

    /// The token a swap in the window requires, if one does.
    pub fn required_token(&self) -> Option<u32> {
        self.required_token
    }

    /// Closes the window; a fresh empty one takes its place.
    pub fn seal(&mut self, created_at_ms: i64) -> Sealed {
        let window = std::mem::take(self);
        Sealed {
            content: EntryContent {
                batches: window.batches,
                commands: window.commands,
                created_at_ms,
                send_by: window.send_by,
            },
            produce_waiters: window.produce_waiters,
            command_waiters: window.command_waiters,
            producer_id_waiters: window.producer_id_waiters,
            batch_bytes: window.bytes,
            required_token: window.required_token,
        }
    }
}

/// A rough encoded size of a group command (its record's checkpoint encoding, which the archive
/// matches within a few bytes per field).
pub fn group_command_bytes(command: &Command) -> usize {
    match command {
        Command::StoreGroup { store } => {
            store.record.as_ref().map_or(0, |record| {
                sluice_engine::metadata::validate_group_record(record).unwrap_or(0)
            }) + store.group.len()
                + 32
        }
        _ => 64,
    }
}

/// A rough encoded size of a `CommitOffsets` command (the archive adds a little per field).
pub fn commit_command_bytes(group: &str, offsets: &[OffsetCommit]) -> usize {
    offsets.iter().fold(group.len() + 16, |bytes, commit| {
        bytes
            .saturating_add(48 + commit.topic.len())
            .saturating_add(commit.metadata.as_ref().map_or(0, String::len))
    })
}

/// The answer of each slot, given the outcome of the append; `log_start_offset` looks a
/// partition's log start offset up after the commit.
pub fn produce_answers(
    slots: &[Result<PlacedPartition, i16>],
    outcome: &Result<AppendOutcome, (i16, String)>,
    log_start_offset: impl Fn(TopicPartition) -> u64,
) -> Vec<PartitionOutcome> {
    SegmentOutcomes::new(outcome).answers(slots, log_start_offset)
}

/// How an append settled each segment of its window, looked up once per window: every produce
/// of the window is answered from it ([`SegmentOutcomes::answers`]). Built per produce instead,
/// answering a window cost its produces times its segments (34 ms for 1,000 single-partition
/// produces to 1,000 partitions, `benches/metadata_core.rs`).
#[derive(Debug)]
pub struct SegmentOutcomes<'outcome> {
    outcome: &'outcome Result<AppendOutcome, (i16, String)>,
    /// Appended or rejected segments, by segment index.
    results: HashMap<usize, Result<(TopicPartition, u64), i16>>,
    /// Segments answered batch by batch (idempotent producers: duplicates, sequence errors).
    batches: HashMap<usize, (TopicPartition, &'outcome [BatchOutcome])>,
}

impl<'outcome> SegmentOutcomes<'outcome> {
    pub fn new(outcome: &'outcome Result<AppendOutcome, (i16, String)>) -> Self {
        let mut results = HashMap::new();
        let mut batches = HashMap::new();
        if let Ok(appended) = outcome {
            for event in &appended.events {
                match event {
                    Event::SegmentAppended {
                        segment_index,
                        tp,
                        base_offset,
                        ..
                    } => {
                        results.insert(*segment_index, Ok((*tp, *base_offset)));
                    }
                    Event::SegmentRejected {
                        segment_index,
                        error,
                    } => {
                        results.insert(*segment_index, Err(segment_error_code(error)));
                    }
                    Event::SegmentBatches {
                        segment_index,
                        tp,
                        batches: outcomes,
                        ..
                    } => {
                        batches.insert(*segment_index, (*tp, outcomes.as_slice()));
                    }
                    _ => {}
                }
            }
        }
        SegmentOutcomes {
            outcome,
            results,
            batches,
        }
    }

    /// The answer of each slot of one produce.
    pub fn answers(
        &self,
        slots: &[Result<PlacedPartition, i16>],
        log_start_offset: impl Fn(TopicPartition) -> u64,
    ) -> Vec<PartitionOutcome> {
        slots
            .iter()
            .map(|placed| {
                let PlacedPartition {
                    tp,
                    slot,
                    log_append_time_ms,
                } = (*placed)?;
                if let Err((code, _)) = self.outcome {
                    return Err(*code);
                }
                if let Some((segment_tp, batches)) = self.batches.get(&slot.segment_index)
                    && *segment_tp == tp
                {
                    return super::producer_ids::slot_answer(batches, &slot).map(|base_offset| {
                        PartitionAppended {
                            base_offset,
                            log_start_offset: log_start_offset(tp),
                            log_append_time_ms,
                        }
                    });
                }
                match self.results.get(&slot.segment_index) {
                    Some(Ok((segment_tp, base_offset))) if *segment_tp == tp => {
                        Ok(PartitionAppended {
                            base_offset: base_offset.saturating_add(slot.offsets_before),
                            log_start_offset: log_start_offset(*segment_tp),
                            log_append_time_ms,
                        })
                    }
                    Some(Err(code)) => Err(*code),
                    // The commit did not mention the segment (or named another partition): a bug
                    // between the window and the object layout. Never claim an offset we cannot
                    // show.
                    _ => Err(error_code::KAFKA_STORAGE_ERROR),
                }
            })
            .collect()
    }
}

/// A rejected segment's code. Produce names topics, so an unknown topic id is code 3, not 100.
pub fn segment_error_code(error: &MetadataError) -> i16 {
    match error {
        MetadataError::UnknownTopicId { .. } => error_code::UNKNOWN_TOPIC_OR_PARTITION,
        other => other.kafka_error_code(),
    }
}

/// Answers each command waiter from the append's events (or its failure).
pub fn answer_commands(
    waiters: Vec<CommandWaiter>,
    outcome: &Result<AppendOutcome, (i16, String)>,
) {
    for waiter in waiters {
        let answer = match outcome {
            Err((code, reason)) => Err(CommandFailure::LogFailed {
                code: *code,
                reason: reason.clone(),
            }),
            Ok(appended) => {
                let rejected = appended.events.iter().find_map(|event| match event {
                    Event::CommandRejected { index, error } if *index == waiter.index => {
                        Some(error.clone())
                    }
                    _ => None,
                });
                match rejected {
                    Some(error) => Err(CommandFailure::Rejected(error)),
                    None => Ok(appended),
                }
            }
        };
        // The requester may have gone away (connection closed); the command stands anyway.
        match waiter.reply {
            CommandReply::Outcome(reply) => {
                let _ = reply.send(answer.map(|_| ()));
            }
            CommandReply::Commit(reply) => {
                let skipped = answer.map(|appended| {
                    appended
                        .events
                        .iter()
                        .find_map(|event| match event {
                            Event::OffsetsCommitted { index, skipped, .. }
                                if *index == waiter.index =>
                            {
                                Some(skipped.clone())
                            }
                            _ => None,
                        })
                        .unwrap_or_default()
                });
                let _ = reply.send(skipped);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use sluice_engine::batch::{BatchBuilder, BatchError, split_batches};
    use sluice_engine::types::{LogSeq, TopicId};

    use super::*;
    use crate::metadata_core::NO_LOG_APPEND_TIME;

    fn batch(records: usize) -> (BatchHeader, Bytes) {
        let mut builder = BatchBuilder::new(1_000);
        for index in 0..records {
            builder = builder.record(index as i64, None, format!("v{index}").as_bytes());
        }
        let bytes = builder.encode();
        split_batches(bytes, usize::MAX).unwrap().remove(0)
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new(TopicId([7; 16]), partition)
    }

    #[test]
    fn slots_follow_first_push_order_and_count_earlier_offsets() {
        let mut window = Window::default();
        let first = window.push_partition(tp(1), vec![batch(3), batch(2)], 5);
        let second = window.push_partition(tp(0), vec![batch(1)], 6);
        let third = window.push_partition(tp(1), vec![batch(4)], 7);
        assert_eq!(
            first,
            Slot {
                segment_index: 0,
                offsets_before: 0,
                batches_before: 0,
                batch_count: 2,
            }
        );
        assert_eq!(
            second,
            Slot {
                segment_index: 1,
                offsets_before: 0,
                batches_before: 0,
                batch_count: 1,
            }
        );
        assert_eq!(
            third,
            Slot {
                segment_index: 0,
                offsets_before: 5,
                batches_before: 2,
                batch_count: 1,
            }
        );
        assert_eq!(window.opened_at_ms(), Some(5));
        let sealed = window.seal(1);
        assert_eq!(sealed.content.batches.len(), 4);
        assert!(window.is_empty());
        assert_eq!(window.opened_at_ms(), None);
    }

    fn offset(topic: &str, partition: u32) -> OffsetCommit {
        OffsetCommit {
            topic: topic.to_owned(),
            partition,
            offset: 7,
            leader_epoch: -1,
            metadata: Some("m".repeat(100)),
            commit_timestamp_ms: 1,
        }
    }

    #[test]
    fn commits_report_what_was_skipped_and_failures() {
        let mut window = Window::default();
        let (first, first_answer) = oneshot::channel();
        let (second, second_answer) = oneshot::channel();
        let (admin, admin_answer) = oneshot::channel();
        window.push_commit(
            "g".to_owned(),
            vec![offset("t", 0), offset("t", 9)],
            first,
            3,
        );
        window.push_command(Command::DeleteGroups { groups: vec![] }, admin, 4);
        window.push_commit("h".to_owned(), vec![offset("t", 1)], second, 5);
        assert_eq!(window.opened_at_ms(), Some(3));
        assert_eq!(window.command_count(), 3);
        let sealed = window.seal(1);
        let unknown = MetadataError::UnknownTopicOrPartition {
            topic: "t".to_owned(),
            partition: 9,
        };
        let outcome = Ok(AppendOutcome {
            seq: LogSeq(1),
            object_len: 10,
            chunks: Vec::new(),
            events: vec![
                Event::OffsetsCommitted {
                    index: 0,
                    group: "g".to_owned(),
                    skipped: vec![(1, unknown.clone())],
                },
                Event::OffsetsCommitted {
                    index: 2,
                    group: "h".to_owned(),
                    skipped: vec![],
                },
            ],
        });
        answer_commands(sealed.command_waiters, &outcome);
        let mut first_answer = first_answer;
        let mut second_answer = second_answer;
        let mut admin_answer = admin_answer;
        assert_eq!(
            first_answer.try_recv().unwrap(),
            Some(Ok(vec![(1, unknown)]))
        );
        assert_eq!(second_answer.try_recv().unwrap(), Some(Ok(vec![])));
        assert_eq!(admin_answer.try_recv().unwrap(), Some(Ok(())));

        let (failed, failed_answer) = oneshot::channel();
        window.push_commit("g".to_owned(), vec![offset("t", 0)], failed, 9);
        let sealed = window.seal(2);
        answer_commands(sealed.command_waiters, &Err((7, "timed out".to_owned())));
        let mut failed_answer = failed_answer;
        assert!(matches!(
            failed_answer.try_recv().unwrap(),
            Some(Err(CommandFailure::LogFailed { code: 7, .. }))
        ));
    }

    #[test]
    fn a_window_carries_its_swaps_earliest_deadline_and_their_token() {
        let now = std::time::Instant::now();
        let mut window = Window::default();
        let (sender, _answer) = oneshot::channel();
        window.push_command(
            Command::DeleteTopic {
                topic_id: TopicId([7; 16]),
            },
            sender,
            0,
        );
        assert_eq!(window.required_token(), None);
        for seconds in [5, 2, 9] {
            window.require(crate::metadata_core::SwapDeadline {
                send_by: now + std::time::Duration::from_secs(seconds),
                token: 42,
            });
        }
        assert_eq!(window.required_token(), Some(42));
        let sealed = window.seal(0);
        assert_eq!(
            sealed.content.send_by,
            Some(now + std::time::Duration::from_secs(2))
        );
        assert_eq!(sealed.required_token, Some(42));
        // The next window starts without them.
        assert_eq!(window.required_token(), None);
        assert_eq!(window.seal(0).content.send_by, None);
    }

    #[test]
    fn a_window_never_holds_more_commands_than_an_entry_may_carry() {
        let mut window = Window::default();
        assert!(!window.would_overflow(COMMANDS_PER_ENTRY_MAX + 5, usize::MAX));
        let mut receivers = Vec::new();
        for index in 0..COMMANDS_PER_ENTRY_MAX {
            assert!(!window.commands_full());
            assert!(!window.would_overflow(1, 0), "at {index}");
            let (reply, answer) = oneshot::channel();
            receivers.push(answer);
            window.push_commit(format!("g{index}"), vec![offset("t", 0)], reply, 1);
        }
        assert!(window.commands_full());
        assert!(window.would_overflow(1, 0));
        window.seal(1);
        // Bytes too: a window of large commits is full before it has many commands.
        let big: Vec<OffsetCommit> = (0..400).map(|p| offset("topic", p)).collect();
        let bytes = commit_command_bytes("g", &big);
        assert!(bytes > 50_000);
        let mut count = 0;
        while !window.would_overflow(1, bytes) {
            let (reply, answer) = oneshot::channel();
            receivers.push(answer);
            window.push_commit("g".to_owned(), big.clone(), reply, 1);
            count += 1;
        }
        assert!(count < COMMANDS_PER_ENTRY_MAX);
        assert!(count * bytes <= WINDOW_COMMAND_BYTES_MAX);
    }

    #[test]
    fn answers_add_the_segment_base_and_pass_rejections_through() {
        let slots = vec![
            Ok(PlacedPartition {
                tp: tp(1),
                slot: Slot {
                    segment_index: 0,
                    offsets_before: 5,
                    batches_before: 2,
                    batch_count: 1,
                },
                log_append_time_ms: 1_765_000_000_000,
            }),
            Err(3),
            Ok(PlacedPartition {
                tp: tp(0),
                slot: Slot {
                    segment_index: 1,
                    offsets_before: 0,
                    batches_before: 0,
                    batch_count: 1,
                },
                log_append_time_ms: NO_LOG_APPEND_TIME,
            }),
        ];
        let outcome = Ok(AppendOutcome {
            seq: LogSeq(4),
            object_len: 100,
            chunks: Vec::new(),
            events: vec![
                Event::SegmentAppended {
                    segment_index: 0,
                    tp: tp(1),
                    base_offset: 40,
                    end_offset: 49,
                },
                Event::SegmentRejected {
                    segment_index: 1,
                    error: MetadataError::UnknownTopicId {
                        topic_id: TopicId([7; 16]),
                    },
                },
            ],
        });
        let answers = produce_answers(&slots, &outcome, |_| 2);
        assert_eq!(
            answers,
            vec![
                Ok(PartitionAppended {
                    base_offset: 45,
                    log_start_offset: 2,
                    log_append_time_ms: 1_765_000_000_000,
                }),
                Err(3),
                Err(error_code::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        let failed = produce_answers(&slots, &Err((6, String::new())), |_| 0);
        assert_eq!(failed, vec![Err(6), Err(3), Err(6)]);
    }

    #[test]
    fn timestamp_refusals_get_kafkas_codes() {
        assert_eq!(
            error_code::INVALID_TIMESTAMP,
            kafka_protocol::ResponseError::InvalidTimestamp.code()
        );
        assert_eq!(
            error_code::timestamp_refusal(&BatchError::LogAppendTimeFromProducer),
            error_code::INVALID_TIMESTAMP
        );
        let malformed = BatchError::InvalidLength {
            batch_length: 61,
            len: 12,
        };
        assert_eq!(
            error_code::timestamp_refusal(&malformed),
            error_code::INVALID_RECORD
        );
    }
}
