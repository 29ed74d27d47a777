//! Idempotent producers: per partition, per producer id, the epoch and the last few batches'
//! sequence ranges, checked when a commit is applied.
//!
//! # Why at commit time, in the state machine
//!
//! A retried produce may land in a later window than the original, or arrive after a takeover at
//! another agent. Only the state machine sees every batch of a partition in log order, on every
//! replica and on replay, so only there can "is this a duplicate?" be answered the same way every
//! time. The cost is one map lookup per idempotent batch; batches without a producer id
//! (`producer_id < 0`) skip all of it.
//!
//! # The rules (those of Kafka's `ProducerStateManager`, for non-transactional producers)
//!
//! - Same epoch, same `(base_sequence, last_sequence)` as one of the last
//!   [`PRODUCER_BATCHES_RETAINED`] batches: a duplicate. It is answered with the offset it was first
//!   written at and takes no offsets (Kafka answers NONE with the original base offset).
//! - An epoch below the current one: `INVALID_PRODUCER_EPOCH` (47).
//! - A higher epoch (the Java client bumps it itself after an unresolved sequence error, KIP-360):
//!   must start at sequence 0; the retained batches are dropped.
//! - The same epoch: the base sequence must follow the last one (wrapping at `i32::MAX`), or it is
//!   `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
//! - An unknown producer id: accepted at any sequence (what brokers do since KIP-360; the producer
//!   may have been evicted or its records deleted).
//!
//! # Limits
//!
//! Kafka forgets producers after `producer.id.expiration.ms`; the state machine reads no clock, so it
//! keeps at most [`PRODUCERS_PER_PARTITION_MAX`] producers per partition and evicts the one whose
//! last batch is oldest in the partition (deterministic). An evicted producer's next batch is then
//! simply accepted (unknown producer); only duplicate detection for it is lost.

use std::collections::BTreeMap;

use super::error::MetadataError;
use crate::types::TopicPartition;

/// Batches remembered per producer: `max.in.flight.requests.per.connection` is at most 5 with
/// idempotence, so a retry is always one of the last 5.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// Producers remembered per partition before the least recently appended is evicted.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 2_048;

/// One record batch of a segment, as the state machine needs it: where it lies, how many offsets it
/// takes, and its producer fields (from the object index; see `format::BatchIndex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchCommit {
    /// Absolute position in the object.
    pub byte_start: u64,
    pub byte_len: u64,
    /// `lastOffsetDelta + 1`; must be > 0.
    pub offset_count: u64,
    pub max_timestamp: i64,
    /// `-1` when the producer is not idempotent.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchCommit {
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRange {
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
}

/// What a partition remembers about one producer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`PRODUCER_BATCHES_RETAINED`], never empty once stored.
    pub batches: Vec<SequenceRange>,
}

impl ProducerEntry {
    /// Base offset of the newest batch: the eviction order.
    pub fn last_base_offset(&self) -> u64 {
        self.batches.last().map_or(0, |batch| batch.base_offset)
    }
}

/// The producers of one partition, by producer id (sorted, so checkpoints are deterministic).
pub type ProducerMap = BTreeMap<i64, ProducerEntry>;

/// The verdict on one idempotent batch before it is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SequenceCheck {
    Append,
    Duplicate { base_offset: u64 },
}

/// `base + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
pub fn last_sequence(base_sequence: i32, offset_count: u64) -> i32 {
    let delta = offset_count.saturating_sub(1) % (i64::from(i32::MAX) as u64 + 1);
    let sum = i64::from(base_sequence) + delta as i64;
    let wrapped = sum % (i64::from(i32::MAX) + 1);
    i32::try_from(wrapped).unwrap_or(i32::MAX)
}

fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Checks one idempotent batch against the partition's producers (changes nothing).
pub(super) fn check_batch(
    producers: &ProducerMap,
    tp: TopicPartition,
    batch: &BatchCommit,
) -> Result<SequenceCheck, MetadataError> {
    if batch.producer_epoch < 0 || batch.base_sequence < 0 {
        return Err(MetadataError::InvalidProducerBatch {
            tp,
            producer_id: batch.producer_id,
            reason: "an idempotent batch needs a producer epoch and a base sequence >= 0",
        });
    }
    let Some(entry) = producers.get(&batch.producer_id) else {
        return Ok(SequenceCheck::Append);
    };
    #[cfg(feature = "sim-planted-bugs")]
    if crate::planted::active(crate::planted::PlantedBug::SkipIdempotenceCheck) {
        return Ok(SequenceCheck::Append);
    }
    let last = last_sequence(batch.base_sequence, batch.offset_count);
    if batch.producer_epoch == entry.epoch
        && let Some(original) = entry
            .batches
            .iter()
            .find(|kept| kept.base_sequence == batch.base_sequence && kept.last_sequence == last)
    {
        return Ok(SequenceCheck::Duplicate {
            base_offset: original.base_offset,
        });
    }
    if batch.producer_epoch < entry.epoch {
        return Err(MetadataError::InvalidProducerEpoch {
            tp,
            producer_id: batch.producer_id,
            epoch: batch.producer_epoch,
            current_epoch: entry.epoch,
        });
    }
    let expected = if batch.producer_epoch > entry.epoch {
        0
    } else {
        entry.batches.last().map_or(0, |kept| {
            if kept.last_sequence == i32::MAX {
                0
            } else {
                kept.last_sequence + 1
            }
        })
    };
    let follows = match entry.batches.last() {
        Some(kept) if batch.producer_epoch == entry.epoch => {
            in_sequence(kept.last_sequence, batch.base_sequence)
        }
        _ => batch.base_sequence == 0,
    };
    if !follows {
        return Err(MetadataError::OutOfOrderSequence {
            tp,
            producer_id: batch.producer_id,
            expected,
            got: batch.base_sequence,
        });
    }
    Ok(SequenceCheck::Append)
}

/// Records an appended idempotent batch at `base_offset`.
pub(super) fn record_batch(producers: &mut ProducerMap, batch: &BatchCommit, base_offset: u64) {
    if !producers.contains_key(&batch.producer_id) && producers.len() >= PRODUCERS_PER_PARTITION_MAX
    {
        // Least recently appended; ties (impossible: offsets are unique) go to the lower id.
        let evicted = producers
            .iter()
            .min_by_key(|(producer_id, entry)| (entry.last_base_offset(), **producer_id))
            .map(|(producer_id, _)| *producer_id);
        if let Some(evicted) = evicted {
            producers.remove(&evicted);
        }
    }
    let entry = producers.entry(batch.producer_id).or_default();
    if entry.epoch != batch.producer_epoch {
        entry.epoch = batch.producer_epoch;
        entry.batches.clear();
    }
    if entry.batches.len() >= PRODUCER_BATCHES_RETAINED {
        entry.batches.remove(0);
    }
    entry.batches.push(SequenceRange {
        base_sequence: batch.base_sequence,
        last_sequence: last_sequence(batch.base_sequence, batch.offset_count),
        base_offset,
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafkas() {
        assert_eq!(last_sequence(0, 1), 0);
        assert_eq!(last_sequence(5, 3), 7);
        assert_eq!(last_sequence(i32::MAX, 1), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 4), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
    }
}
