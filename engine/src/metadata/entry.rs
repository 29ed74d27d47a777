//! What the log layer feeds the state machine (entries, data commits) and what comes out (events).

use super::acl::AclBinding;
use super::error::MetadataError;
use super::producer::BatchCommit;
use crate::types::{LogSeq, TopicId, TopicPartition};

pub use crate::format::EntryKind;

/// The chain fields of one log entry (from the object's header/index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryMeta {
    pub seq: LogSeq,
    pub writer_epoch: u64,
    /// The previous valid entry the writer chained from; `None` for the first entry of a log.
    pub prev_seq: Option<LogSeq>,
    pub kind: EntryKind,
}

/// The batches of one object, grouped by partition, as the log layer derives them from the index.
/// Not stored as a command: the object's own index is the record of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectCommit {
    pub seq: LogSeq,
    pub object_len: u64,
    pub segments: Vec<SegmentCommit>,
}

/// The batches of one partition inside one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentCommit {
    pub tp: TopicPartition,
    pub byte_start: u64,
    pub byte_len: u64,
    pub batch_count: u32,
    /// Offsets the batches take (last offset delta + 1, summed over batches); must be > 0.
    pub offset_count: u64,
    pub record_count: u64,
    pub max_timestamp: i64,
    /// Every batch of the segment, in order, with its producer fields. Empty means "no per-batch
    /// detail": the segment is appended whole, as batches without a producer id are. When present,
    /// the batches must tile the segment's bytes and sum to its `offset_count`.
    pub batches: Vec<BatchCommit>,
}

/// The result of offering one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum EntryOutcome {
    /// The entry is not part of the log's valid chain; the state did not change at all.
    Ignored { reason: IgnoreReason },
    /// The entry extended the chain; its commands and commit produced these events, in order.
    Applied(Vec<Event>),
}

/// Why an entry was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// The caller offered entries out of order (a bug in the caller, not a fenced write).
    /// `last_offered_seq` is unchanged.
    #[error("entry {seq} offered after entry {last_offered_seq}")]
    NotAfterLastOffered {
        seq: LogSeq,
        last_offered_seq: LogSeq,
    },
    /// `prev_seq` does not name the last valid entry: the writer chained from a stale view.
    #[error(
        "chain broken: entry names {prev_seq:?} as previous, the last valid entry is {last_valid_seq:?}"
    )]
    ChainBroken {
        prev_seq: Option<LogSeq>,
        last_valid_seq: Option<LogSeq>,
    },
    /// A claim whose epoch does not exceed the current one.
    #[error("stale claim: epoch {writer_epoch} does not exceed the current epoch {current_epoch}")]
    StaleClaim {
        writer_epoch: u64,
        current_epoch: u64,
    },
    /// A data entry of an epoch other than the current one (a fenced writer), or before any claim.
    #[error("data entry of epoch {writer_epoch} while the log belongs to epoch {current_epoch}")]
    WrongEpoch {
        writer_epoch: u64,
        current_epoch: u64,
    },
}

/// What applying a valid entry did, in order. The server answers requests from these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A valid claim: `writer_epoch` now owns the log.
    Claimed {
        writer_epoch: u64,
    },
    TopicCreated {
        index: usize,
        topic_id: TopicId,
        name: String,
        partition_count: u32,
    },
    TopicDeleted {
        index: usize,
        topic_id: TopicId,
        name: String,
    },
    PartitionsCreated {
        index: usize,
        topic_id: TopicId,
        previous_count: u32,
        partition_count: u32,
    },
    TopicConfigsAltered {
        index: usize,
        topic_id: TopicId,
    },
    /// The log start offset after the command (unchanged if the request was below it).
    RecordsDeleted {
        index: usize,
        tp: TopicPartition,
        log_start_offset: u64,
    },
    /// Command `index` of the entry was rejected; nothing of it was applied.
    CommandRejected {
        index: usize,
        error: MetadataError,
    },
    /// Segment `segment_index` of the commit took offsets `base_offset..end_offset`.
    SegmentAppended {
        segment_index: usize,
        tp: TopicPartition,
        base_offset: u64,
        end_offset: u64,
    },
    /// Segment `segment_index` of the commit was rejected; other segments are unaffected.
    SegmentRejected {
        segment_index: usize,
        error: MetadataError,
    },
    /// Segment `segment_index` held idempotent batches that were not all appended as one run (a
    /// duplicate or a sequence error among them): the outcome of each batch, in order. The appended
    /// ones took offsets in order; the partition's high watermark is now `end_offset`.
    SegmentBatches {
        segment_index: usize,
        tp: TopicPartition,
        batches: Vec<BatchOutcome>,
        end_offset: u64,
    },
    /// Command `index` (InitProducerId) handed out this producer id and epoch.
    ProducerIdAllocated {
        index: usize,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Command `index` (CommitOffsets) stored every offset of `group` except the `skipped` ones:
    /// `(position in the command's offsets, why)`, in order. Empty when all were stored.
    OffsetsCommitted {
        index: usize,
        group: String,
        skipped: Vec<(usize, MetadataError)>,
    },
    /// Command `index` (DeleteOffsets) removed `deleted_count` offsets of `group`.
    OffsetsDeleted {
        index: usize,
        group: String,
        deleted_count: usize,
    },
    /// Command `index` (DeleteGroups) removed the offsets and stored state of `deleted`: the groups
    /// of the command that had either, in command order.
    GroupsDeleted {
        index: usize,
        deleted: Vec<String>,
    },
    /// Command `index` (StoreGroup) stored the state of `group`, or removed it (`removed`).
    GroupStored {
        index: usize,
        group: String,
        removed: bool,
    },
    /// Command `index` (CreateAcl) stored its binding (`created`), or found it already stored.
    AclCreated {
        index: usize,
        created: bool,
    },
    /// Command `index` (DeleteAcls) removed these bindings, in order.
    AclsDeleted {
        index: usize,
        deleted: Vec<AclBinding>,
    },
    /// Command `index` (AlterClientQuotas) changed its entity's quotas.
    ClientQuotasAltered {
        index: usize,
    },
    /// Command `index` (UpsertScramCredential or DeleteScramCredential) changed a credential.
    ScramCredentialAltered {
        index: usize,
    },
    /// Command `index` (ReplaceIndexRange) replaced `entries_replaced` index entries of `tp` by one.
    IndexRangeReplaced {
        index: usize,
        tp: TopicPartition,
        entries_replaced: usize,
    },
}

/// What happened to one batch of an [`Event::SegmentBatches`] segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Took offsets `base_offset..end_offset`.
    Appended { base_offset: u64, end_offset: u64 },
    /// A retry of a batch already written at `base_offset`; took no offsets.
    Duplicate { base_offset: u64 },
    /// Refused; took no offsets and changed no producer state.
    Rejected { error: MetadataError },
}
