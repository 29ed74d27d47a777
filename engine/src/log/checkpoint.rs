//! Checkpoints: the whole metadata state after applying every entry up to a position, written
//! create-only at `checkpoint/{seq:020}` so that recovery replays only the log's tail.
//!
//! The state at a position is a deterministic function of the log, so two writers checkpointing the
//! same position write the same bytes, and finding the key taken is success. A checkpoint that is
//! unusable — its bytes do not decode, or it vanished between the listing and the read (garbage
//! collection) — is skipped for an older one (replay from there reaches the same state); entries
//! after the oldest kept checkpoint must therefore never be deleted.
//!
//! A checkpoint the store could not *serve* (a timeout, a 5xx, a reset) is not unusable: the load
//! fails and the open is tried again. Skipping it instead made recovery fall back one checkpoint
//! per transient error — past the checkpoints garbage collection keeps, to one whose following
//! entries may already be deleted, where recovery would stop at the first missing entry and claim
//! it (the chaos campaign saw two such double fallbacks, harmless only because nothing had been
//! deleted yet).

use bytes::Bytes;

use super::LogError;
use crate::metadata::MetadataState;
use crate::store::{ObjectStorage, StoreError};
use crate::types::{CHECKPOINT_DIR, LogSeq, checkpoint_key, parse_seq_key};

/// Where recovery started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub seq: LogSeq,
    /// Newer checkpoints that failed to load and were skipped.
    pub skipped: u32,
    /// Size of the checkpoint loaded.
    pub bytes: u64,
}

/// Uploads an encoded checkpoint for position `seq`.
pub(crate) async fn put_checkpoint(
    store: &dyn ObjectStorage,
    seq: LogSeq,
    bytes: Bytes,
) -> Result<(), LogError> {
    match store.put_create(&checkpoint_key(seq), vec![bytes]).await {
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes a checkpoint of `state` at the last position it has seen. Returns that position, or
/// `None` for a state that has seen no entry.
pub async fn write_checkpoint(
    store: &dyn ObjectStorage,
    state: &MetadataState,
) -> Result<Option<LogSeq>, LogError> {
    let Some(seq) = state.last_offered_seq() else {
        return Ok(None);
    };
    put_checkpoint(store, seq, Bytes::from(state.encode_checkpoint())).await?;
    Ok(Some(seq))
}

/// Loads the newest checkpoint that decodes, newest first. `None` when there is none at all.
pub async fn load_latest_checkpoint(
    store: &dyn ObjectStorage,
) -> Result<Option<(MetadataState, CheckpointInfo)>, LogError> {
    let listed = store.list(CHECKPOINT_DIR, None).await?;
    let mut candidates: Vec<(LogSeq, String)> = listed
        .into_iter()
        .filter_map(|info| parse_seq_key(CHECKPOINT_DIR, &info.key).map(|seq| (seq, info.key)))
        .collect();
    candidates.sort_unstable();
    let mut skipped = 0;
    let mut last_error = None;
    for (seq, key) in candidates.into_iter().rev() {
        let mut size = 0;
        let loaded = match store.get(&key).await {
            Ok(bytes) => {
                size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
                MetadataState::decode_checkpoint(&bytes).map_err(|source| LogError::Checkpoint {
                    key: key.clone(),
                    source,
                })
            }
            // Deleted since the listing: an older checkpoint is the one to use.
            Err(error @ StoreError::NotFound { .. }) => Err(error.into()),
            // The store did not serve it this time; the caller retries the whole open.
            Err(error) => return Err(error.into()),
        };
        match loaded {
            Ok(state) if state.last_offered_seq() == Some(seq) => {
                return Ok(Some((
                    state,
                    CheckpointInfo {
                        seq,
                        skipped,
                        bytes: size,
                    },
                )));
            }
            Ok(state) => {
                tracing::warn!(%key, found = ?state.last_offered_seq(), "checkpoint covers another position; skipped");
            }
            Err(error) => {
                tracing::warn!(%key, %error, "checkpoint unreadable; trying an older one");
                last_error = Some(error);
            }
        }
        skipped += 1;
    }
    match last_error {
        // Every checkpoint failed: starting from nothing would be wrong if the log's start was
        // already deleted, so say so rather than guess.
        Some(error) if skipped > 0 => Err(error),
        _ => Ok(None),
    }
}
