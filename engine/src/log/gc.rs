//! Garbage collection of the log: objects nothing needs any more, deleted after a delay.
//!
//! # What may go, and why nothing needed does
//!
//! Two kinds of object live in the bucket: log entries (`log/{seq}`, each also the data object of
//! its flush window) and checkpoints (`checkpoint/{seq}`). Recovery needs the newest readable
//! checkpoint and every entry after it; fetches need every entry an index entry points at. So:
//!
//! - **Checkpoints:** the newest [`GcConfig::checkpoints_retained`] are kept (at least 2, so that
//!   recovery can fall back past one unreadable checkpoint); older ones may go.
//! - **Log entries:** let `floor` be the oldest kept checkpoint's position. An entry at or below
//!   `floor` is never *replayed* by a recovery that starts from a kept checkpoint, so it is needed
//!   only if the state still points at it. The state's references only ever shrink for positions
//!   at or below `floor` (later entries add references to later positions, never to old ones), so
//!   an entry that is unreferenced now stays unreferenced — in this agent's state and in the state
//!   of any writer that takes the log over, whose state extends this one's. Entries above `floor`
//!   are never deleted, whatever they hold.
//!
//! - **Compacted objects** (`compacted/{id}`): needed while an index entry names one. One that
//!   none names was replaced by a later compaction or never swapped in (a crash between its PUT
//!   and its swap). Its id carries the epoch of the writer that made it; only objects of the
//!   state's own epoch or older are candidates, so a writer that was fenced without knowing it
//!   never deletes what its successor wrote (whose swaps it has not seen). In a cluster the
//!   agents share the epoch, and their compactors run concurrently: there objects are named by
//!   an agent incarnation's token with a marker bit (`types::cluster_compacted_object_id`), which
//!   puts their "epoch" above any writer epoch, so this rule never takes one; the cluster's
//!   collector decides them by the rule of its window objects instead (`super::data_gc`).
//!
//! Entries of fenced writers, retention-expired windows, windows of deleted topics, windows whose
//! ranges compaction swapped out: all are unreferenced entries, collected by the same rule.
//!
//! # The delay
//!
//! A fetch resolves offsets to (object, range) first and reads later, and may hold that reference
//! for a while (a long poll, a read-ahead, a slow GET). An object becomes deletable only once it
//! has been a candidate in sweeps spanning [`GcConfig::delete_delay_ms`] (Kafka's
//! `file.delete.delay.ms` plays the same role for segment files). The first-seen times are kept in
//! memory: after a restart every candidate waits one more delay, which only deletes later, never
//! sooner, and no record of pending deletions can be lost because none needs to be kept — the
//! candidates are a function of the listing and the state, recomputed by every sweep.
//!
//! Deletions are idempotent (deleting a missing key succeeds), so a sweep cut short by a crash is
//! finished by the next one.

use std::collections::{BTreeMap, BTreeSet};

use super::LogError;
use crate::store::ObjectStorage;
use crate::types::{
    CHECKPOINT_DIR, COMPACTED_DIR, LOG_DIR, LogSeq, checkpoint_key, compacted_object_epoch,
    log_key, object_key, parse_compacted_key, parse_seq_key,
};

/// Fewest checkpoints a sweep keeps.
pub const CHECKPOINTS_RETAINED_MIN: usize = 2;
/// Deletions one sweep issues at most; the rest wait for the next sweep (bounds a sweep's time and
/// its burst of DELETE requests).
pub const DELETES_PER_SWEEP_MAX: usize = 10_000;

/// Settings of the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// Newest checkpoints kept; at least [`CHECKPOINTS_RETAINED_MIN`].
    pub checkpoints_retained: usize,
    /// How long an object stays a candidate before it is deleted.
    pub delete_delay_ms: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            checkpoints_retained: CHECKPOINTS_RETAINED_MIN,
            delete_delay_ms: 60_000,
        }
    }
}

/// What the store holds, as one sweep saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcListing {
    /// Checkpoint positions, ascending.
    pub checkpoints: Vec<LogSeq>,
    /// Log entry positions, ascending.
    pub entries: Vec<LogSeq>,
    /// Compacted object ids, ascending.
    pub compacted: Vec<LogSeq>,
}

impl GcListing {
    /// Lists both directories (keys that do not parse as positions are ignored, never deleted).
    pub async fn read(store: &dyn ObjectStorage) -> Result<GcListing, LogError> {
        let positions = |dir: &str, keys: Vec<crate::store::ObjectInfo>| {
            let mut positions: Vec<LogSeq> = keys
                .iter()
                .filter_map(|info| parse_seq_key(dir, &info.key))
                .collect();
            positions.sort_unstable();
            positions
        };
        let checkpoints = positions(CHECKPOINT_DIR, store.list(CHECKPOINT_DIR, None).await?);
        let entries = positions(LOG_DIR, store.list(LOG_DIR, None).await?);
        let mut compacted: Vec<LogSeq> = store
            .list(COMPACTED_DIR, None)
            .await?
            .iter()
            .filter_map(|info| parse_compacted_key(&info.key))
            .collect();
        compacted.sort_unstable();
        Ok(GcListing {
            checkpoints,
            entries,
            compacted,
        })
    }

    /// The oldest kept checkpoint's position: entries at or below it are never replayed. `None`
    /// while fewer than `checkpoints_retained` checkpoints exist (then no entry may go).
    pub fn floor(&self, config: &GcConfig) -> Option<LogSeq> {
        let retained = config.checkpoints_retained.max(CHECKPOINTS_RETAINED_MIN);
        let at = self.checkpoints.len().checked_sub(retained)?;
        self.checkpoints.get(at).copied()
    }
}

/// What the state still points at, as the collector needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReferences {
    /// Log positions at or below the floor an index entry names
    /// ([`crate::metadata::MetadataState::referenced_log_seqs_up_to`]).
    pub log_entries: BTreeSet<LogSeq>,
    /// Compacted objects an index entry names
    /// ([`crate::metadata::MetadataState::referenced_compacted_objects`]).
    pub compacted: BTreeSet<LogSeq>,
    /// The state's writer epoch. A compacted object of a *newer* epoch belongs to a writer that
    /// took the log over from this one (which may not know it yet): its swap may be in a part of
    /// the log this state has not seen, so it is never a candidate here.
    pub writer_epoch: u64,
}

impl GcReferences {
    /// What `state` names, for a listing whose floor is `floor`. Cost: the entries at or below the
    /// floor plus every index entry once (for compacted objects).
    pub fn of(state: &crate::metadata::MetadataState, floor: Option<LogSeq>) -> GcReferences {
        GcReferences {
            log_entries: floor.map_or_else(BTreeSet::new, |floor| {
                state.referenced_log_seqs_up_to(floor)
            }),
            compacted: state.referenced_compacted_objects(),
            writer_epoch: state.writer_epoch(),
        }
    }
}

/// The objects one sweep found unneeded (not yet delayed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcCandidates {
    pub checkpoints: Vec<LogSeq>,
    pub entries: Vec<LogSeq>,
    /// Compacted objects no index entry names: replaced by a later compaction, or written by a
    /// job whose swap never applied (a crash between PUT and swap, a swap rejected as stale).
    pub compacted: Vec<LogSeq>,
    /// A cluster's window objects (`data/…`) found to be garbage by
    /// [`super::data_gc::DataCollector`] (empty for an agent alone).
    pub data: Vec<LogSeq>,
}

impl GcCandidates {
    /// Checkpoints older than the kept ones, entries at or below the floor that the state does
    /// not name, and compacted objects of this writer's epoch or older that it does not name.
    ///
    /// The caller's compactor must not have a job between its PUT and its swap while this runs
    /// (the agent runs jobs and sweeps one after the other); the delay covers readers.
    pub fn from_listing(
        listing: &GcListing,
        config: &GcConfig,
        references: &GcReferences,
    ) -> GcCandidates {
        let referenced = &references.log_entries;
        let retained = config.checkpoints_retained.max(CHECKPOINTS_RETAINED_MIN);
        let old_checkpoints = listing.checkpoints.len().saturating_sub(retained);
        let checkpoints = listing
            .checkpoints
            .iter()
            .take(old_checkpoints)
            .copied()
            .collect();
        let entries = match listing.floor(config) {
            Some(floor) => listing
                .entries
                .iter()
                .take_while(|seq| **seq <= floor)
                .filter(|seq| !referenced.contains(seq))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let compacted = listing
            .compacted
            .iter()
            .filter(|id| {
                compacted_object_epoch(**id) <= references.writer_epoch
                    && !references.compacted.contains(id)
            })
            .copied()
            .collect();
        GcCandidates {
            checkpoints,
            entries,
            compacted,
            data: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty()
            && self.entries.is_empty()
            && self.compacted.is_empty()
            && self.data.is_empty()
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Candidates still inside their delay.
    pub waiting: u64,
    pub checkpoints_deleted: u64,
    pub entries_deleted: u64,
    pub compacted_deleted: u64,
    /// A cluster's window objects (`data/…`).
    pub data_deleted: u64,
    /// Deletions that failed (tried again next sweep).
    pub delete_errors: u64,
}

/// The delay: when each candidate was first seen, on the caller's monotonic clock.
///
/// Bounded by the objects in the bucket: a key leaves when it is deleted or stops being a
/// candidate.
#[derive(Debug, Default)]
pub struct GarbageCollector {
    config: GcConfig,
    first_seen_ms: BTreeMap<String, u64>,
}

impl GarbageCollector {
    pub fn new(config: GcConfig) -> GarbageCollector {
        GarbageCollector {
            config,
            first_seen_ms: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Candidates waiting out their delay.
    pub fn pending(&self) -> usize {
        self.first_seen_ms.len()
    }

    /// Notes this sweep's candidates at `now_ms` and deletes those seen for at least the delay,
    /// at most [`DELETES_PER_SWEEP_MAX`] (checkpoints, then entries, then compacted objects, then
    /// a cluster's window objects, each oldest first), in one [`ObjectStorage::delete_many`] call. The store may apply a batch in
    /// any order, and none is needed: an entry is only ever a candidate below the kept
    /// checkpoints, which this never deletes, and no candidate is named by the state.
    pub async fn sweep(
        &mut self,
        store: &dyn ObjectStorage,
        candidates: &GcCandidates,
        now_ms: u64,
    ) -> GcStats {
        let keys: Vec<(Kind, String)> = candidates
            .checkpoints
            .iter()
            .map(|seq| (Kind::Checkpoint, checkpoint_key(*seq)))
            .chain(
                candidates
                    .entries
                    .iter()
                    .map(|seq| (Kind::Entry, log_key(*seq))),
            )
            .chain(
                candidates
                    .compacted
                    .iter()
                    .map(|id| (Kind::Compacted, object_key(*id))),
            )
            .chain(
                candidates
                    .data
                    .iter()
                    .map(|id| (Kind::Data, object_key(*id))),
            )
            .collect();
        let current: BTreeSet<&str> = keys.iter().map(|(_, key)| key.as_str()).collect();
        self.first_seen_ms
            .retain(|key, _| current.contains(key.as_str()));
        let mut stats = GcStats::default();
        let mut due: Vec<(Kind, String)> = Vec::new();
        for (kind, key) in keys {
            let first_seen = *self.first_seen_ms.entry(key.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(first_seen) < self.config.delete_delay_ms
                || due.len() >= DELETES_PER_SWEEP_MAX
            {
                stats.waiting += 1;
                continue;
            }
            due.push((kind, key));
        }
        // One bulk request per 1,000 keys where the store has one (S3 DeleteObjects). Every key
        // here is already safe to delete on its own, so the batch's order does not matter.
        let due_keys: Vec<String> = due.iter().map(|(_, key)| key.clone()).collect();
        let results = store.delete_many(&due_keys).await;
        for ((kind, key), result) in due.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    self.first_seen_ms.remove(&key);
                    match kind {
                        Kind::Checkpoint => stats.checkpoints_deleted += 1,
                        Kind::Entry => stats.entries_deleted += 1,
                        Kind::Compacted => stats.compacted_deleted += 1,
                        Kind::Data => stats.data_deleted += 1,
                    }
                }
                Err(error) => {
                    tracing::warn!(%key, %error, "garbage collection: delete failed; retried next sweep");
                    stats.delete_errors += 1;
                }
            }
        }
        stats
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Checkpoint,
    Entry,
    Compacted,
    Data,
}
