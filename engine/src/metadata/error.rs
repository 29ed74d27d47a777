//! Errors of the metadata state machine, each mapped to the Kafka error code the server returns.
//!
//! A [`MetadataError`] inside an [`Event`](super::Event) is a *deterministic outcome* of applying a
//! log entry, not a failure of the state machine: every replica replaying the same entry reaches the
//! same rejection. That is why the type is `Clone + PartialEq` and carries only data derived from the
//! entry and the state, never from the environment.

use crate::types::{LogSeq, TopicId, TopicPartition};

/// Why a command or a segment was rejected. Deterministic: same state + same input, same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("topic '{name}' already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic id {topic_id} already exists")]
    TopicIdAlreadyExists { topic_id: TopicId },
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid topic id {topic_id}: the all-zero id means \"no topic\"")]
    InvalidTopicId { topic_id: TopicId },
    #[error("unknown topic id {topic_id}")]
    UnknownTopicId { topic_id: TopicId },
    #[error("unknown partition {tp}")]
    UnknownPartition { tp: TopicPartition },
    #[error("invalid partition count {requested} (current {current}, limit {limit})")]
    InvalidPartitionCount {
        requested: u32,
        current: u32,
        limit: u32,
    },
    #[error("too many partitions in total: {requested} (limit {limit})")]
    TooManyPartitions { requested: u64, limit: u64 },
    #[error("too many topics (limit {limit})")]
    TooManyTopics { limit: usize },
    #[error("unknown config '{name}'")]
    UnknownConfig { name: String },
    #[error("invalid value for config '{name}': {reason}")]
    InvalidConfig { name: String, reason: String },
    #[error("offset {offset} of {tp} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        tp: TopicPartition,
        offset: u64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    #[error("invalid segment: {reason}")]
    InvalidSegment { reason: &'static str },
    #[error(
        "commit of {tp} would overflow the offset space (high watermark {high_watermark}, +{offset_count})"
    )]
    OffsetOverflow {
        tp: TopicPartition,
        high_watermark: u64,
        offset_count: u64,
    },
    #[error("index of {tp} is full ({limit} entries); delete records or compact first")]
    IndexFull { tp: TopicPartition, limit: usize },
    #[error("command {index} exceeds the limit of {limit} commands per entry")]
    TooManyCommands { index: usize, limit: usize },
    #[error("segment {index} exceeds the limit of {limit} segments per commit")]
    TooManySegments { index: usize, limit: usize },
    #[error("commit is for seq {commit_seq} but the entry is seq {entry_seq}")]
    CommitSeqMismatch {
        entry_seq: LogSeq,
        commit_seq: LogSeq,
    },
    #[error("producer {producer_id} on {tp}: sequence {got} is out of order (expected {expected})")]
    OutOfOrderSequence {
        tp: TopicPartition,
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error(
        "producer {producer_id} on {tp}: epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        tp: TopicPartition,
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    #[error("producer {producer_id} on {tp}: {reason}")]
    InvalidProducerBatch {
        tp: TopicPartition,
        producer_id: i64,
        reason: &'static str,
    },
    #[error("every producer id has been handed out")]
    ProducerIdsExhausted,
    #[error("transactional id '{transactional_id}': transactions are not supported yet")]
    TransactionsUnsupported { transactional_id: String },
    /// A committed offset names a topic (by name) or partition that does not exist.
    #[error("unknown topic or partition '{topic}'-{partition}")]
    UnknownTopicOrPartition { topic: String, partition: u32 },
    #[error("invalid group id '{group}': {reason}")]
    InvalidGroupId { group: String, reason: &'static str },
    /// A compaction swap whose range no longer matches the index (or names no compacted object).
    #[error("cannot replace {tp} offsets {base_offset}..{end_offset}: {reason}")]
    IndexRangeChanged {
        tp: TopicPartition,
        base_offset: u64,
        end_offset: u64,
        reason: &'static str,
    },
    #[error("committed offset {offset} is below -1")]
    InvalidCommittedOffset { offset: i64 },
    #[error("offset metadata is {len} bytes (limit {limit})")]
    OffsetMetadataTooLarge { len: usize, limit: usize },
    #[error("too many committed offsets (limit {limit})")]
    TooManyCommittedOffsets { limit: usize },
    #[error("too many groups with committed offsets (limit {limit})")]
    TooManyOffsetGroups { limit: usize },
    /// A stored group record that breaks a rule of [`super::GroupRecord`] (a bug of the writer).
    #[error("invalid state of group '{group}': {reason}")]
    InvalidGroupRecord { group: String, reason: String },
    /// One group's stored state would pass its limit (`GROUP_STATE_BYTES_MAX`).
    #[error("state of group '{group}' is {len} bytes (limit {limit})")]
    GroupStateTooLarge {
        group: String,
        len: usize,
        limit: usize,
    },
    /// Storing a new group, or a larger one, would pass `GROUPS_STORED_MAX` groups or
    /// `GROUP_STATE_BYTES_TOTAL_MAX` bytes of group state in all.
    #[error("group state is full: {reason}")]
    GroupStateFull { reason: String },
    /// An ACL binding Kafka's controller would refuse too (see `validate_acl_binding`).
    #[error("invalid ACL binding: {reason}")]
    InvalidAcl { reason: String },
    /// Creating the binding would pass `ACL_BINDINGS_MAX`.
    #[error("too many ACL bindings (limit {limit}); delete some first")]
    TooManyAcls { limit: usize },
    /// A quota entity or alteration Kafka's controller would refuse too.
    #[error("{reason}")]
    InvalidQuota { reason: String },
    /// Storing a quota for a new entity would pass `QUOTA_ENTITIES_MAX`.
    #[error("too many client quota entities (limit {limit}); remove some first")]
    TooManyQuotaEntities { limit: usize },
    /// A SCRAM credential Kafka's controller would refuse (an empty user name, iterations out of
    /// `4096..=16384`) or one that breaks a stored-form rule (salt or key length).
    #[error("{reason}")]
    UnacceptableScramCredential { reason: String },
    /// Deleting a SCRAM credential that is not stored.
    #[error("Attempt to delete a user credential that does not exist ({user:?}, {mechanism})")]
    ScramCredentialNotFound {
        user: String,
        mechanism: &'static str,
    },
    /// Storing a new SCRAM credential would pass `SCRAM_CREDENTIALS_MAX`.
    #[error("too many SCRAM credentials (limit {limit}); delete some first")]
    TooManyScramCredentials { limit: usize },
}

/// Kafka protocol error codes used below (from `org.apache.kafka.common.protocol.Errors`).
pub mod kafka_code {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_RECORD: i16 = 87;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED: what the produce path already answers transactional
    /// requests with (a fatal, clearly worded error in the clients) until transactions exist.
    pub const TRANSACTIONS_UNSUPPORTED: i16 = 53;
    /// UNKNOWN_SERVER_ERROR: no Kafka code says "the id space is used up".
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
}

impl MetadataError {
    /// The Kafka error code the server answers with.
    ///
    /// `UnknownTopicId` is `UNKNOWN_TOPIC_ID` (100), the answer for requests that name topics by id;
    /// a server answering a request that named the topic (e.g. Produce before v13) should map it to
    /// `UNKNOWN_TOPIC_OR_PARTITION` (3) itself.
    pub fn kafka_error_code(&self) -> i16 {
        use kafka_code::*;
        match self {
            MetadataError::TopicAlreadyExists { .. }
            | MetadataError::TopicIdAlreadyExists { .. } => TOPIC_ALREADY_EXISTS,
            MetadataError::InvalidTopicName { .. } | MetadataError::InvalidTopicId { .. } => {
                INVALID_TOPIC_EXCEPTION
            }
            MetadataError::UnknownTopicId { .. } => UNKNOWN_TOPIC_ID,
            MetadataError::UnknownPartition { .. } => UNKNOWN_TOPIC_OR_PARTITION,
            MetadataError::InvalidPartitionCount { .. }
            | MetadataError::TooManyPartitions { .. } => INVALID_PARTITIONS,
            MetadataError::TooManyTopics { .. } => POLICY_VIOLATION,
            MetadataError::UnknownConfig { .. } | MetadataError::InvalidConfig { .. } => {
                INVALID_CONFIG
            }
            MetadataError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            MetadataError::InvalidSegment { .. } => INVALID_RECORD,
            // The partition cannot take more data until the operator or retention frees room: Kafka's
            // nearest answer for "this log cannot be appended to" is a storage error.
            MetadataError::OffsetOverflow { .. } | MetadataError::IndexFull { .. } => {
                KAFKA_STORAGE_ERROR
            }
            MetadataError::TooManyCommands { .. }
            | MetadataError::TooManySegments { .. }
            | MetadataError::CommitSeqMismatch { .. } => INVALID_REQUEST,
            MetadataError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
            MetadataError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
            MetadataError::InvalidProducerBatch { .. } => INVALID_RECORD,
            MetadataError::ProducerIdsExhausted => UNKNOWN_SERVER_ERROR,
            MetadataError::TransactionsUnsupported { .. } => TRANSACTIONS_UNSUPPORTED,
            MetadataError::UnknownTopicOrPartition { .. } => UNKNOWN_TOPIC_OR_PARTITION,
            MetadataError::InvalidGroupId { .. } => INVALID_GROUP_ID,
            MetadataError::InvalidCommittedOffset { .. } => INVALID_REQUEST,
            // Only the compactor sends swaps; it plans again from the new state.
            MetadataError::IndexRangeChanged { .. } => UNKNOWN_SERVER_ERROR,
            MetadataError::OffsetMetadataTooLarge { .. } => OFFSET_METADATA_TOO_LARGE,
            // Kafka has no code for "the coordinator's offset store is full"; the clients treat an
            // unknown server error on a commit as a failed commit, which it is.
            MetadataError::TooManyCommittedOffsets { .. }
            | MetadataError::TooManyOffsetGroups { .. } => UNKNOWN_SERVER_ERROR,
            // Kafka answers a group record too large for its log with UNKNOWN_SERVER_ERROR
            // (RECORD_LIST_TOO_LARGE / MESSAGE_TOO_LARGE mapped by `appendGroupMetadataErrorToResponseError`).
            MetadataError::InvalidGroupRecord { .. }
            | MetadataError::GroupStateTooLarge { .. }
            | MetadataError::GroupStateFull { .. } => UNKNOWN_SERVER_ERROR,
            MetadataError::InvalidAcl { .. } => INVALID_REQUEST,
            // Kafka has no limit, hence no code; a policy refusal says "the cluster will not".
            MetadataError::TooManyAcls { .. } => POLICY_VIOLATION,
            MetadataError::InvalidQuota { .. } => INVALID_REQUEST,
            MetadataError::TooManyQuotaEntities { .. } => POLICY_VIOLATION,
            MetadataError::UnacceptableScramCredential { .. } => UNACCEPTABLE_CREDENTIAL,
            MetadataError::ScramCredentialNotFound { .. } => RESOURCE_NOT_FOUND,
            MetadataError::TooManyScramCredentials { .. } => POLICY_VIOLATION,
        }
    }
}

/// A checkpoint or a commands section that cannot be decoded. Never a panic: every byte is input.
/// The caller (the log layer) adds the object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("too short: {len} bytes")]
    TooShort { len: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported version {version} (this build reads up to {supported})")]
    UnsupportedVersion { version: u16, supported: u16 },
    #[error("length field says {declared} bytes but {actual} are present")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("checksum mismatch: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch { expected: u32, got: u32 },
    #[error("truncated while reading {what}")]
    Truncated { what: &'static str },
    #[error("invalid content: {reason}")]
    Invalid { reason: String },
}
