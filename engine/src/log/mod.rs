//! The metadata log: every object an agent writes is one entry of it.
//!
//! # Why the data object is its own log entry
//!
//! A flush window produces one object holding the batches of every partition. The object is written
//! create-only at the next sequential key `log/{seq:020}`; that single PUT both makes the batches
//! durable and commits them: offsets are a pure function of the log's order (see
//! [`crate::metadata`]), so no second "commit record" PUT is needed. A produce is acknowledged once its
//! entry and every entry before it are durable and applied, so produce latency is one flush window
//! plus one PUT, and PUTs per second follow the flush rate, not partitions or cores.
//!
//! # Fencing and the chain rule
//!
//! Each entry names its writer's epoch and the previous entry it chains from (`prev_seq`). The state
//! machine accepts an entry only if it extends the current chain: a *claim* with a higher epoch, or a
//! data entry of the current epoch. A new writer replays the log up to the first free position and
//! writes its claim there, create-only; an older writer whose next PUT finds that key taken reads
//! the entry, sees a higher epoch and stops with [`LogError::Fenced`]. Entries it still had in flight
//! land after the claim and are ignored by every replay, because they do not extend the chain. See
//! `docs/metadata-log.md` for the whole argument.
//!
//! # Failures
//!
//! A PUT whose outcome is unknown (timeout, 5xx, lost response) is retried at the same key with the
//! same bytes, a bounded number of times; `AlreadyExists` then tells apart "my own write landed"
//! (same epoch and nonce) from "somebody else's". When a position cannot be resolved, the writer
//! stops ([`LogError::Broken`]): every entry not yet acknowledged fails, and the owner re-opens the log,
//! which replays whatever did land and claims a fresh position. Nothing acknowledged is ever lost and
//! no offset is reused, because acknowledged entries are exactly the valid prefix of the chain.

mod agent_log;
mod checkpoint;
pub mod data_gc;
pub mod gc;
mod reader;
pub mod record;
mod recovery;
mod sequenced;
mod writer;

pub use agent_log::AgentLog;
pub use checkpoint::{CheckpointInfo, load_latest_checkpoint, write_checkpoint};
pub use reader::{EntryRead, read_entry};
pub use recovery::{RecoveryStats, recover};
pub use sequenced::{SequencedLog, SequencedRecovery, SequencedRejoin, SequencedWriter};
pub use writer::{AppendOutcome, EntryContent, MetadataLog};

use crate::format::FormatError;
use crate::metadata::CheckpointError;
use crate::store::StoreError;
use crate::types::LogSeq;

/// Settings of the metadata log. Every retry and read size has a limit.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Attempts of one PUT whose outcome was unknown (timeout, 5xx, lost response) before the writer
    /// gives up on that position and stops.
    pub put_attempts_max: u32,
    /// First suffix read when reading an entry's index; a larger one follows if the index is bigger.
    pub tail_read_bytes: u64,
    /// A checkpoint is due after this many log entries since the last one.
    pub checkpoint_interval_entries: u64,
    /// Entries replayed concurrently during recovery (suffix GETs in flight).
    pub recovery_reads_inflight_max: usize,
}

/// Log entries between checkpoints unless configured (`checkpoint_interval_entries`).
pub const CHECKPOINT_INTERVAL_ENTRIES_DEFAULT: u64 = 1_000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            put_attempts_max: 4,
            tail_read_bytes: crate::format::DEFAULT_TAIL_READ_BYTES,
            checkpoint_interval_entries: CHECKPOINT_INTERVAL_ENTRIES_DEFAULT,
            recovery_reads_inflight_max: 32,
        }
    }
}

/// Errors of the metadata log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Another writer with a higher epoch took over the log. This writer must stop writing.
    #[error(
        "fenced: the log at {key} was taken over by writer epoch {by_epoch} (ours is {our_epoch})"
    )]
    Fenced {
        key: String,
        our_epoch: u64,
        by_epoch: u64,
    },
    /// The writer could not settle a position (store unavailable, or a write of an older writer
    /// occupies it). Entries not yet acknowledged failed; re-open the log to continue.
    #[error("log writer stopped: {reason}")]
    Broken { reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The entry could not be laid out (too many batches, too large); nothing was written.
    #[error("entry rejected: {0}")]
    Encode(#[from] crate::format::EncodeError),
    #[error("checkpoint {key}: {source}")]
    Checkpoint {
        key: String,
        source: CheckpointError,
    },
    #[error("log entry {key}: {reason}")]
    CorruptEntry { key: String, reason: String },
    #[error("commands: {0}")]
    Commands(#[from] crate::metadata::CommandsCodecError),
    #[error("entry too large: {len} bytes (limit {limit})")]
    EntryTooLarge { len: u64, limit: u64 },
    /// The cluster's sequencer failed (`--metadata`); its kind says whether to retry.
    #[error("sequencer: {0}")]
    Sequencer(#[from] crate::sequencer::SequencerError),
}

impl LogError {
    /// True when the writer cannot continue and the owner must re-open (or, if fenced, stop).
    pub fn is_fatal_for_writer(&self) -> bool {
        matches!(self, LogError::Fenced { .. } | LogError::Broken { .. })
    }
}

/// Sequence number that follows `seq`, or the first one.
pub(crate) fn after(seq: Option<LogSeq>) -> LogSeq {
    seq.map_or(LogSeq(0), LogSeq::next)
}
