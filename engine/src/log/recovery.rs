//! Recovery: rebuild the exact state from the store alone — the latest readable checkpoint, then
//! every log entry after it, in position order, up to the first free position.
//!
//! Entries are read by their tails only (a suffix GET each), many in flight, and applied strictly in
//! order. Recovery stops at the first missing position: a later entry there can only be a write of a
//! writer that was still in flight when its predecessor was lost, which was never acknowledged, and
//! which the next claim (written at that first free position) makes invalid for every reader.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::checkpoint::load_latest_checkpoint;
use super::reader::read_entry;
use super::{LogConfig, LogError, after};
use crate::metadata::{EntryOutcome, MetadataState};
use crate::store::ObjectStorage;
use crate::types::{LOG_DIR, LogSeq, log_key, parse_seq_key};

/// What recovery did, for logs and for the claim that follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// The checkpoint recovery started from, if any.
    pub checkpoint_seq: Option<LogSeq>,
    /// Checkpoints that could not be read and were skipped for an older one.
    pub checkpoints_skipped: u32,
    /// Entries read and offered to the state machine after the checkpoint.
    pub entries_replayed: u64,
    /// Of those, entries the chain rule ignored (writes of fenced writers).
    pub entries_ignored: u64,
    /// The first position with no entry: where the next claim goes.
    pub first_free: LogSeq,
    /// The highest position seen in the listing, including entries beyond a gap.
    pub max_seen_seq: Option<LogSeq>,
    /// The highest writer epoch seen in any entry read.
    pub max_seen_epoch: u64,
    /// Size of the checkpoint loaded (0 without one).
    pub checkpoint_bytes: u64,
    /// Time to list, read and decode the checkpoints (the part that grows with the state).
    pub checkpoint_load: Duration,
    /// Time to list and replay the entries after it (the part that grows with the tail).
    pub replay: Duration,
}

/// Rebuilds the state. With `from`, continues from that state instead of loading a checkpoint
/// (a writer re-opening after a failure).
pub async fn recover(
    store: &dyn ObjectStorage,
    config: &LogConfig,
    from: Option<MetadataState>,
) -> Result<(MetadataState, RecoveryStats), LogError> {
    let mut stats = RecoveryStats::default();
    let loading = Instant::now();
    let mut state = match from {
        Some(state) => state,
        None => match load_latest_checkpoint(store).await? {
            Some((state, info)) => {
                stats.checkpoint_seq = Some(info.seq);
                stats.checkpoints_skipped = info.skipped;
                stats.checkpoint_bytes = info.bytes;
                state
            }
            None => MetadataState::new(),
        },
    };
    let replaying = Instant::now();
    stats.checkpoint_load = replaying.duration_since(loading);
    stats.max_seen_epoch = state.writer_epoch();
    let first = after(state.last_offered_seq());
    let start_after = state.last_offered_seq().map(log_key);
    let listed = store.list(LOG_DIR, start_after.as_deref()).await?;
    let mut run = Vec::new();
    let mut expected = first;
    for info in &listed {
        let Some(seq) = parse_seq_key(LOG_DIR, &info.key) else {
            continue;
        };
        stats.max_seen_seq = stats.max_seen_seq.max(Some(seq));
        if seq == expected {
            run.push(seq);
            expected = seq.next();
        }
    }
    stats.first_free = expected;
    #[cfg(feature = "sim-planted-bugs")]
    if crate::planted::active(crate::planted::PlantedBug::ClaimPastGap) {
        stats.first_free = after(
            stats
                .max_seen_seq
                .max(expected.0.checked_sub(1).map(LogSeq)),
        );
    }
    stats.max_seen_seq = stats.max_seen_seq.max(state.last_offered_seq());

    let reads_inflight = config.recovery_reads_inflight_max.max(1);
    let mut entries = futures::stream::iter(run)
        .map(|seq| read_entry(store, seq, config))
        .buffered(reads_inflight);
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        stats.max_seen_epoch = stats.max_seen_epoch.max(entry.header.writer_epoch);
        stats.entries_replayed += 1;
        if let EntryOutcome::Ignored { .. } =
            state.apply_entry(&entry.meta(), &entry.commands, entry.commit.as_ref())
        {
            stats.entries_ignored += 1;
        }
    }
    stats.replay = replaying.elapsed();
    Ok((state, stats))
}
