//! Metadata commands and the "commands section" codec.
//!
//! Commands travel inside a log entry (the object's commands section). The section is an rkyv
//! archive of `Vec<Command>` framed by a magic, a version and a CRC-32C of its own, so a section
//! is self-describing even when copied out of its object. rkyv rather than a hand-written layout
//! because commands are rare, small and varied (maps, optional strings): the derive keeps the codec
//! in step with the enum, and bytecheck validates untrusted bytes before anything is read.
//!
//! ```text
//! | magic "SLUICECM" 8 | version u16 | reserved u16 = 0 | count u32 | body_len u32 | body (rkyv) | crc32c u32 |
//! ```
//! All integers little-endian; the CRC covers every byte before it. An empty slice decodes to no
//! commands, so an entry without commands needs no section at all.

use std::collections::BTreeMap;

use super::acl::{AclBinding, AclBindingFilter};
use super::error::CheckpointError;
use super::groups::GroupRecord;
use super::quota::QuotaAlteration;
use super::scram::{ScramDeletion, ScramUpsertion};
use crate::types::{LogSeq, TopicId, TopicPartition};

/// A metadata change carried by a log entry. Applied in log order; see [`super::MetadataState`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    CreateTopic {
        name: String,
        topic_id: TopicId,
        partition_count: u32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        topic_id: TopicId,
    },
    /// `partition_count` is the new total; it must exceed the current count.
    CreatePartitions {
        topic_id: TopicId,
        partition_count: u32,
    },
    /// Incremental: `Some` sets an override, `None` deletes it (back to the default).
    AlterTopicConfigs {
        topic_id: TopicId,
        set: Vec<(String, Option<String>)>,
    },
    /// Raises the log start offset to `before_offset` (Kafka DeleteRecords).
    DeleteRecords {
        tp: TopicPartition,
        before_offset: u64,
    },
    /// Hands out the next producer id, with epoch 0 (Kafka InitProducerId). The id is chosen when the
    /// entry is applied, from a counter in the state, so no id is ever handed out twice, whatever
    /// agent wrote the entry. A transactional id is refused: transactions are not supported yet.
    InitProducerId {
        transactional_id: Option<String>,
    },
    // New variants go last: rkyv stores the variant's position, so reordering would change the
    // meaning of entries already in the log (`tests/commands.rs` decodes a fixture to prove it).
    /// OffsetCommit: stores each partition's offset for `group`, partition by partition; a
    /// partition that cannot be stored is skipped (see [`super::Event::OffsetsCommitted`]).
    CommitOffsets {
        group: String,
        offsets: Vec<OffsetCommit>,
    },
    /// OffsetDelete: removes these `(topic, partition)` offsets of `group`.
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, u32)>,
    },
    /// DeleteGroups: removes every committed offset of each group.
    DeleteGroups {
        groups: Vec<String>,
    },
    /// Object compaction's swap (see [`IndexRangeSwap`]). Boxed: an archived enum is as large as
    /// its largest variant, and a variant larger than the earlier ones would change the layout of
    /// every command and break the sections written before it.
    ReplaceIndexRange {
        swap: Box<IndexRangeSwap>,
    },
    /// A group coordinator's state of one group (membership, generation or epochs, assignments):
    /// replaces what is stored for `store.group`, or removes it (`record: None`). Boxed for the
    /// same reason as `ReplaceIndexRange`. See [`super::groups`].
    StoreGroup {
        store: Box<GroupStore>,
    },
    /// CreateAcls: stores one binding; one that is already stored succeeds and changes nothing
    /// (as in Kafka). Refused past [`super::ACL_BINDINGS_MAX`]. Boxed like `ReplaceIndexRange`.
    CreateAcl {
        binding: Box<AclBinding>,
    },
    /// DeleteAcls: removes every binding the filter matches when the entry is applied.
    DeleteAcls {
        filter: Box<AclBindingFilter>,
    },
    /// AlterClientQuotas, one entity: sets and removes its keys, all or nothing. Refused for an
    /// invalid entity or past [`super::QUOTA_ENTITIES_MAX`]. Appended last (rkyv numbers variants
    /// by position).
    AlterClientQuotas {
        alteration: Box<QuotaAlteration>,
    },
    /// AlterUserScramCredentials upsertion: creates or replaces one user's credential for one
    /// mechanism (salt, iterations, StoredKey, ServerKey: the salted password the client sent is
    /// never written). Refused for an empty user, iterations outside `4096..=16384`, a salt or key
    /// of the wrong size, or past [`super::SCRAM_CREDENTIALS_MAX`]. Boxed and appended last.
    UpsertScramCredential {
        upsertion: Box<ScramUpsertion>,
    },
    /// AlterUserScramCredentials deletion: removes one credential; refused when it is not stored.
    DeleteScramCredential {
        deletion: Box<ScramDeletion>,
    },
}

/// The payload of [`Command::StoreGroup`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GroupStore {
    pub group: String,
    /// `None` removes the group's stored state (its committed offsets are not touched).
    pub record: Option<GroupRecord>,
}

/// Object compaction's swap: the index entries of `tp` that cover exactly
/// `base_offset..end_offset` are replaced by `pieces`, entries in compacted objects (already
/// durable) that cover the same offsets, in order. Rejected, changing nothing, when no run of
/// entries starts and ends exactly there any more (retention or another swap got there first).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IndexRangeSwap {
    pub tp: TopicPartition,
    pub base_offset: u64,
    pub end_offset: u64,
    /// At least one; each starts where the previous ends (the first at `base_offset`), the last
    /// ends at `end_offset`; at most [`SWAP_PIECES_MAX`].
    pub pieces: Vec<SwapPiece>,
}

/// One index entry a swap puts in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SwapPiece {
    /// Exclusive; the piece starts where the previous one ends.
    pub end_offset: u64,
    /// A compacted object ([`crate::types::compacted_object_id`]).
    pub object: LogSeq,
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
}

/// Pieces one swap may put in place.
pub const SWAP_PIECES_MAX: usize = 10_000;

/// One partition of a [`Command::CommitOffsets`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    /// Must be >= -1 (-1 is stored, as Kafka stores it); anything lower is skipped.
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// Chosen by the agent that writes the entry (its wall clock), so replay stays deterministic.
    pub commit_timestamp_ms: i64,
}

/// Commands one entry may carry. Beyond it, commands are rejected (deterministically).
pub const COMMANDS_PER_ENTRY_MAX: usize = 1_000;
/// Largest commands section accepted by [`decode_commands`].
pub const COMMANDS_SECTION_LEN_MAX: usize = 16 * 1024 * 1024;

const COMMANDS_MAGIC: [u8; 8] = *b"SLUICECM";
const COMMANDS_VERSION: u16 = 1;
const FRAME_HEADER_LEN: usize = 20;
const CRC_LEN: usize = 4;

/// Errors of the commands section codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandsCodecError {
    #[error("commands section: {0}")]
    Frame(#[from] CheckpointError),
    #[error("commands section holds {count} commands (limit {limit})")]
    TooManyCommands { count: usize, limit: usize },
    #[error("commands section is {len} bytes (limit {limit})")]
    TooLarge { len: usize, limit: usize },
    #[error("commands section archive: {0}")]
    Archive(String),
}

/// Encodes `commands` as a commands section. An empty list encodes to an empty section.
pub fn encode_commands(commands: &[Command]) -> Result<Vec<u8>, CommandsCodecError> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    if commands.len() > COMMANDS_PER_ENTRY_MAX {
        return Err(CommandsCodecError::TooManyCommands {
            count: commands.len(),
            limit: COMMANDS_PER_ENTRY_MAX,
        });
    }
    let owned: Vec<Command> = commands.to_vec();
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&owned)
        .map_err(|error| CommandsCodecError::Archive(error.to_string()))?;
    let total_len = FRAME_HEADER_LEN + body.len() + CRC_LEN;
    if total_len > COMMANDS_SECTION_LEN_MAX {
        return Err(CommandsCodecError::TooLarge {
            len: total_len,
            limit: COMMANDS_SECTION_LEN_MAX,
        });
    }
    let mut out = Vec::with_capacity(total_len);
    out.extend_from_slice(&COMMANDS_MAGIC);
    out.extend_from_slice(&COMMANDS_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    // Both fit: bounded by COMMANDS_PER_ENTRY_MAX and COMMANDS_SECTION_LEN_MAX above.
    out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a commands section written by [`encode_commands`]. Every byte is checked; never panics.
pub fn decode_commands(bytes: &[u8]) -> Result<Vec<Command>, CommandsCodecError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() > COMMANDS_SECTION_LEN_MAX {
        return Err(CommandsCodecError::TooLarge {
            len: bytes.len(),
            limit: COMMANDS_SECTION_LEN_MAX,
        });
    }
    let Some((covered, crc_bytes)) = bytes.split_last_chunk::<CRC_LEN>() else {
        return Err(CheckpointError::TooShort { len: bytes.len() }.into());
    };
    let Some((header, body)) = covered.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(CheckpointError::TooShort { len: bytes.len() }.into());
    };
    let [
        m0,
        m1,
        m2,
        m3,
        m4,
        m5,
        m6,
        m7,
        v0,
        v1,
        _,
        _,
        c0,
        c1,
        c2,
        c3,
        l0,
        l1,
        l2,
        l3,
    ] = *header;
    let magic = [m0, m1, m2, m3, m4, m5, m6, m7];
    if magic != COMMANDS_MAGIC {
        return Err(CheckpointError::BadMagic { found: magic }.into());
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != COMMANDS_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            version,
            supported: COMMANDS_VERSION,
        }
        .into());
    }
    let expected = u32::from_le_bytes(*crc_bytes);
    let got = crc32c::crc32c(covered);
    if expected != got {
        return Err(CheckpointError::ChecksumMismatch { expected, got }.into());
    }
    let count = u32::from_le_bytes([c0, c1, c2, c3]) as usize;
    let body_len = u32::from_le_bytes([l0, l1, l2, l3]);
    if u64::from(body_len) != body.len() as u64 {
        return Err(CheckpointError::LengthMismatch {
            declared: body_len.into(),
            actual: body.len() as u64,
        }
        .into());
    }
    if count > COMMANDS_PER_ENTRY_MAX {
        return Err(CommandsCodecError::TooManyCommands {
            count,
            limit: COMMANDS_PER_ENTRY_MAX,
        });
    }
    // rkyv reads in place and needs its alignment; the body sits at an arbitrary offset of the
    // object, so copy it once. Sections are small.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    let commands = rkyv::from_bytes::<Vec<Command>, rkyv::rancor::Error>(&aligned)
        .map_err(|error| CommandsCodecError::Archive(error.to_string()))?;
    if commands.len() != count {
        return Err(CheckpointError::Invalid {
            reason: format!(
                "header says {count} commands, archive holds {}",
                commands.len()
            ),
        }
        .into());
    }
    Ok(commands)
}
