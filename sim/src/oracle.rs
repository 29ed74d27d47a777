//! The state of the committed log, computed from the bucket alone, to hold live and recovered
//! states against.
//!
//! [`Replay`] applies the log's entries from position 0, in order, through the engine's own reader
//! and state machine, and only ever moves forward (a position never changes once written). A live
//! agent's state must equal it at the agent's last position, and every position up to there must
//! be in the bucket: a state that applied an entry that is not durable is the bug DESIGN invariant 3
//! forbids. [`recovered_states`] runs the engine's recovery twice, from the newest checkpoint and
//! from nothing, and the two must agree.

use futures::executor::block_on;
use sluice_engine::log::{LogConfig, LogError, read_entry, recover};
use sluice_engine::metadata::{EntryKind, EntryOutcome, MetadataState};
use sluice_engine::store::StoreError;
use sluice_engine::types::LogSeq;

use crate::store::Oracle;

/// The committed log's state, replayed incrementally.
#[derive(Debug, Default)]
pub struct Replay {
    pub state: MetadataState,
    next: LogSeq,
    /// The chain rule, kept by this module independently of the state machine: the last valid
    /// entry and the owning epoch.
    last_valid: Option<LogSeq>,
    epoch: u64,
}

impl Replay {
    /// Replays up to and including `last`. Every position on the way must be in the bucket.
    pub fn advance_to(
        &mut self,
        oracle: &Oracle,
        config: &LogConfig,
        last: LogSeq,
    ) -> Result<(), String> {
        while self.next <= last {
            let entry = match block_on(read_entry(oracle, self.next, config)) {
                Ok(entry) => entry,
                Err(LogError::Store(StoreError::NotFound { .. })) => {
                    return Err(format!(
                        "log position {} is not in the bucket, yet a live state has applied \
                         entries up to position {} (an entry was applied before it was durable)",
                        self.next.0, last.0
                    ));
                }
                Err(error) => {
                    return Err(format!("reading log position {}: {error}", self.next.0));
                }
            };
            let meta = entry.meta();
            let outcome = self
                .state
                .apply_entry(&meta, &entry.commands, entry.commit.as_ref());
            // The reference chain rule (docs/metadata-log.md): extends the last valid entry, and
            // is a claim raising the epoch or data of the current epoch.
            let valid = meta.prev_seq == self.last_valid
                && match meta.kind {
                    EntryKind::Claim => meta.writer_epoch > self.epoch,
                    EntryKind::Data => meta.writer_epoch == self.epoch,
                };
            let applied = matches!(outcome, EntryOutcome::Applied(_));
            if valid != applied {
                return Err(format!(
                    "log position {}: the state machine {} an entry the chain rule {} (epoch {}, \
                     previous {:?}; chain at {:?}, epoch {})",
                    self.next.0,
                    if applied { "applied" } else { "ignored" },
                    if valid { "accepts" } else { "refuses" },
                    meta.writer_epoch,
                    meta.prev_seq,
                    self.last_valid,
                    self.epoch
                ));
            }
            if valid {
                self.last_valid = Some(meta.seq);
                if meta.kind == EntryKind::Claim {
                    self.epoch = meta.writer_epoch;
                }
            }
            self.next = self.next.next();
        }
        Ok(())
    }

    /// The position after the last one replayed.
    pub fn next(&self) -> LogSeq {
        self.next
    }

    /// The epoch that owns the log as recovery would see it now: the chain rule run on, without
    /// replaying, past the last replayed position through the run of positions in the bucket, up
    /// to the first gap. An agent whose epoch is lower has been fenced by a claim that is durable,
    /// whether or not it has noticed yet (it notices at its next PUT); its state then rightly lags.
    pub fn owner_epoch(&self, oracle: &Oracle, config: &LogConfig) -> Result<u64, String> {
        let mut last_valid = self.last_valid;
        let mut epoch = self.epoch;
        let mut position = self.next;
        loop {
            let entry = match block_on(read_entry(oracle, position, config)) {
                Ok(entry) => entry,
                Err(LogError::Store(StoreError::NotFound { .. })) => return Ok(epoch),
                Err(error) => return Err(format!("reading log position {}: {error}", position.0)),
            };
            let meta = entry.meta();
            if meta.prev_seq == last_valid {
                match meta.kind {
                    EntryKind::Claim if meta.writer_epoch > epoch => {
                        epoch = meta.writer_epoch;
                        last_valid = Some(meta.seq);
                    }
                    EntryKind::Data if meta.writer_epoch == epoch => last_valid = Some(meta.seq),
                    _ => {}
                }
            }
            position = position.next();
        }
    }
}

/// Recovery as a fresh agent runs it (newest checkpoint, then the tail), and recovery from the
/// whole log with checkpoints hidden; they must be the same state.
pub fn recovered_states(oracle: &Oracle, config: &LogConfig) -> Result<MetadataState, String> {
    let (from_checkpoint, stats) = block_on(recover(oracle, config, None))
        .map_err(|error| format!("recovery failed: {error}"))?;
    let (from_scratch, _) = block_on(recover(&oracle.without_checkpoints(), config, None))
        .map_err(|error| format!("recovery without checkpoints failed: {error}"))?;
    if from_checkpoint != from_scratch {
        return Err(format!(
            "recovery from checkpoint {:?} reaches another state than replaying the whole log \
             (positions {:?} and {:?})",
            stats.checkpoint_seq,
            from_checkpoint.last_offered_seq(),
            from_scratch.last_offered_seq()
        ));
    }
    Ok(from_checkpoint)
}
