//! The metadata state machine: topics, partition indexes, high watermarks, log start offsets,
//! producer state, committed consumer-group offsets and group coordinator state, ACL bindings
//! ([`acl`]; the decision over them is [`authorizer`]), client quotas ([`quota`]), SCRAM credentials
//! ([`scram`]), and the position of the metadata log's valid chain.
//!
//! # Pure, deterministic, and fed in log order
//!
//! Both the live agent and recovery feed [`MetadataState::apply_entry`] the entries of the metadata
//! log in seq order; the state is a pure function of that sequence. It does no I/O and reads no
//! clock, keeps no randomness that can be observed, and every rejection (a command naming a deleted
//! topic, a segment for a partition that no longer exists) is an [`Event`] rather than an error or a
//! panic, so two machines replaying the same keys produce the same events and the same state. That
//! is what lets offsets be *derived* from the log rather than stored: see [`crate::log`].
//!
//! # Fencing: the chain rule
//!
//! An entry is applied only if it extends the chain (`prev_seq == last_valid_seq`) and is either a
//! claim raising the writer epoch or a data entry of the current epoch; everything else is ignored
//! whole. `docs/metadata.md` explains why that makes a fenced writer harmless and replay exact.
//!
//! # Costs
//!
//! Applying a data commit is one hash lookup and one `Vec` push per segment; lookups by offset or
//! timestamp are a binary search in one partition's index (see [`index`]). Everything that grows
//! has a limit (`*_MAX` constants), checked when applying so the outcome stays deterministic.

pub mod acl;
mod apply;
pub mod authorizer;
mod checkpoint;
mod command;
mod config;
mod entry;
mod error;
mod group_codec;
mod groups;
pub mod index;
mod offsets;
pub mod partition;
pub mod producer;
pub mod quota;
mod retention;
pub mod scram;
mod state;
mod topic;

pub use acl::{
    ACL_BINDINGS_MAX, AclBinding, AclBindingFilter, AclEntry, AclOperation, AclPatternType,
    AclPermission, AclResource, AclResourceType, AclSet,
};
pub use apply::SEGMENTS_PER_COMMIT_MAX;
pub use authorizer::{AuthorizerPolicy, Requester, authorize, authorize_any};
pub use checkpoint::CHECKPOINT_VERSION;
pub use command::{
    COMMANDS_PER_ENTRY_MAX, COMMANDS_SECTION_LEN_MAX, Command, CommandsCodecError, GroupStore,
    IndexRangeSwap, OffsetCommit, SWAP_PIECES_MAX, SwapPiece, decode_commands, encode_commands,
};
pub use config::{
    CONFIG_VALUE_LEN_MAX, ConfigEntry, ConfigSpec, is_known_config, known_configs, validate_config,
    validate_new_config,
};
pub use entry::{
    BatchOutcome, EntryKind, EntryMeta, EntryOutcome, Event, IgnoreReason, ObjectCommit,
    SegmentCommit,
};
pub use error::{CheckpointError, MetadataError, kafka_code};
pub use groups::{
    ClassicGroupRecord, ClassicMemberRecord, ConsumerGroupRecord, ConsumerMemberRecord,
    ConsumerMemberState, GROUP_STATE_BYTES_MAX, GROUP_STATE_BYTES_TOTAL_MAX, GROUP_STRING_LEN_MAX,
    GROUPS_STORED_MAX, GroupRecord, TopicPartitionSets, validate_group_record,
};
pub use index::{CHUNK_ENTRIES, IndexEntry, PartitionIndex};
pub use offsets::{
    COMMITTED_OFFSETS_MAX, CommittedOffset, GROUP_ID_LEN_MAX, OFFSET_GROUPS_MAX,
    OFFSET_METADATA_LEN_MAX, validate_group_id,
};
pub use partition::{INDEX_ENTRIES_PER_PARTITION_MAX, PartitionState};
pub use producer::{
    BatchCommit, PRODUCER_BATCHES_RETAINED, PRODUCERS_PER_PARTITION_MAX, ProducerEntry,
    SequenceRange,
};
pub use quota::{
    QUOTA_ENTITIES_MAX, QuotaAlteration, QuotaEntity, QuotaFilter, QuotaKey, QuotaMatch, QuotaName,
    QuotaSet, QuotaValue, ResolvedQuota,
};
pub use retention::RetentionDefaults;
pub use scram::{
    SCRAM_CREDENTIALS_MAX, ScramCredential, ScramCredentialSet, ScramDeletion, ScramMechanism,
    ScramUpsertion,
};
pub use state::MetadataState;
pub use topic::{
    PARTITIONS_PER_TOPIC_MAX, PARTITIONS_TOTAL_MAX, TOPIC_NAME_LEN_MAX, TOPICS_MAX, Topic,
    validate_topic_name,
};

#[cfg(test)]
mod tests;
