//! One partition's log: offsets, the index from offset ranges to object byte ranges, and lookups.
//!
//! Offsets are assigned here and nowhere else: an append takes the next `offset_count` offsets at
//! the high watermark. The index is contiguous (`entry[i].end_offset == entry[i + 1].base_offset`)
//! and holds exactly the offsets `log_start_offset..high_watermark`, give or take the head of the
//! first entry (an entry is dropped only when it lies wholly below the log start offset). Its
//! storage is in [`super::index`].

use super::command::{IndexRangeSwap, SWAP_PIECES_MAX};
use super::error::MetadataError;
use super::index::{IndexEntry, PartitionIndex};
use super::producer::{ProducerEntry, ProducerMap};
use crate::types::{LogSeq, TopicPartition};

/// Index entries one partition may hold; beyond it appends are rejected until records are deleted
/// (or compaction merges entries). 16 Mi entries is 1 GiB of index memory for one partition.
pub const INDEX_ENTRIES_PER_PARTITION_MAX: usize = 16 * 1024 * 1024;

/// Offsets and index of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionState {
    log_start_offset: u64,
    high_watermark: u64,
    index: PartitionIndex,
    /// Idempotent producers seen on this partition (see [`super::producer`]).
    pub(super) producers: ProducerMap,
}

impl PartitionState {
    /// Rebuilds a partition from its parts, checking every invariant (used by checkpoint decode).
    pub(super) fn from_parts(
        log_start_offset: u64,
        high_watermark: u64,
        index: PartitionIndex,
        producers: ProducerMap,
    ) -> Result<PartitionState, String> {
        if log_start_offset > high_watermark {
            return Err(format!(
                "log start offset {log_start_offset} > high watermark {high_watermark}"
            ));
        }
        if index.len() > INDEX_ENTRIES_PER_PARTITION_MAX {
            return Err(format!(
                "{} index entries (limit {INDEX_ENTRIES_PER_PARTITION_MAX})",
                index.len()
            ));
        }
        match (index.first(), index.last()) {
            (None, None) if log_start_offset == high_watermark => {}
            (None, _) | (_, None) => {
                return Err("empty index but log start offset < high watermark".to_owned());
            }
            (Some(first), Some(last)) => {
                if !(first.base_offset <= log_start_offset && log_start_offset < first.end_offset) {
                    return Err(format!(
                        "first index entry does not hold log start offset {log_start_offset}"
                    ));
                }
                if last.end_offset != high_watermark {
                    return Err(format!(
                        "last index entry ends at {} not {high_watermark}",
                        last.end_offset
                    ));
                }
            }
        }
        let mut expected_base = index.first().map_or(0, |first| first.base_offset);
        for entry in index.iter() {
            if entry.base_offset != expected_base {
                return Err(format!("index gap or overlap at offset {expected_base}"));
            }
            if entry.base_offset >= entry.end_offset {
                return Err(format!("empty index entry at offset {}", entry.base_offset));
            }
            expected_base = entry.end_offset;
        }
        Ok(PartitionState {
            log_start_offset,
            high_watermark,
            index,
            producers,
        })
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The whole index, oldest first.
    pub fn index(&self) -> &PartitionIndex {
        &self.index
    }

    /// Every idempotent producer this partition remembers, by producer id.
    pub fn producers(&self) -> &ProducerMap {
        &self.producers
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Whether `entries_max` more index entries holding `offset_count` offsets in total fit; the
    /// same checks as [`PartitionState::append`], made before a segment is split into runs so that
    /// no run can fail halfway.
    pub(super) fn check_room(
        &self,
        tp: TopicPartition,
        entries_max: usize,
        offset_count: u64,
    ) -> Result<(), MetadataError> {
        if self.index.len().saturating_add(entries_max) > INDEX_ENTRIES_PER_PARTITION_MAX {
            return Err(MetadataError::IndexFull {
                tp,
                limit: INDEX_ENTRIES_PER_PARTITION_MAX,
            });
        }
        let fits = self
            .high_watermark
            .checked_add(offset_count)
            .is_some_and(|end| end <= i64::MAX as u64);
        if !fits {
            return Err(MetadataError::OffsetOverflow {
                tp,
                high_watermark: self.high_watermark,
                offset_count,
            });
        }
        Ok(())
    }

    /// Appends `offset_count` offsets at the high watermark. Returns `(base_offset, end_offset)`.
    pub(super) fn append(
        &mut self,
        tp: TopicPartition,
        seq: LogSeq,
        byte_start: u64,
        byte_len: u64,
        offset_count: u64,
        max_timestamp: i64,
    ) -> Result<(u64, u64), MetadataError> {
        if self.index.len() >= INDEX_ENTRIES_PER_PARTITION_MAX {
            return Err(MetadataError::IndexFull {
                tp,
                limit: INDEX_ENTRIES_PER_PARTITION_MAX,
            });
        }
        let base_offset = self.high_watermark;
        // Kafka offsets are i64 on the wire: never hand out one that does not fit.
        let end_offset = base_offset
            .checked_add(offset_count)
            .filter(|end| *end <= i64::MAX as u64)
            .ok_or(MetadataError::OffsetOverflow {
                tp,
                high_watermark: base_offset,
                offset_count,
            })?;
        self.index.push(IndexEntry {
            base_offset,
            end_offset,
            seq,
            byte_start,
            byte_len,
            max_timestamp,
        });
        self.high_watermark = end_offset;
        Ok((base_offset, end_offset))
    }

    /// Raises the log start offset to `before_offset` and drops entries wholly below it. Lowering is
    /// a no-op (as in Kafka, the answer is the current log start offset). Returns the new log start.
    pub(super) fn delete_records(
        &mut self,
        tp: TopicPartition,
        before_offset: u64,
    ) -> Result<u64, MetadataError> {
        if before_offset > self.high_watermark {
            return Err(self.out_of_range(tp, before_offset));
        }
        if before_offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = before_offset;
        self.index.drop_before(before_offset);
        Ok(before_offset)
    }

    /// Compaction's swap: the run of entries covering exactly `range` becomes one entry naming
    /// `object`. All or nothing; O(n) in the partition's entries (the index is rebuilt), which a
    /// swap — one per partition per compaction job — can afford. Returns how many entries the
    /// new one replaced.
    pub(super) fn replace_range(&mut self, swap: &IndexRangeSwap) -> Result<usize, MetadataError> {
        let changed = |reason: &'static str| MetadataError::IndexRangeChanged {
            tp: swap.tp,
            base_offset: swap.base_offset,
            end_offset: swap.end_offset,
            reason,
        };
        let replacements = swap_entries(swap).map_err(changed)?;
        let first = self
            .index
            .iter()
            .position(|entry| entry.base_offset == swap.base_offset)
            .ok_or_else(|| changed("no index entry starts there any more"))?;
        let count = self
            .index
            .iter()
            .skip(first)
            .position(|entry| entry.end_offset == swap.end_offset)
            .map(|last| last + 1)
            .ok_or_else(|| changed("no index entry ends there"))?;
        let grown = self.index.len() - count + replacements.len();
        if grown > INDEX_ENTRIES_PER_PARTITION_MAX {
            return Err(MetadataError::IndexFull {
                tp: swap.tp,
                limit: INDEX_ENTRIES_PER_PARTITION_MAX,
            });
        }
        let entries: Vec<IndexEntry> = self
            .index
            .iter()
            .take(first)
            .copied()
            .chain(replacements)
            .chain(self.index.iter().skip(first + count).copied())
            .collect();
        self.index = PartitionIndex::from_entries(entries.len(), entries.into_iter());
        Ok(count)
    }

    /// Index entries holding `offset` onward, at most `entries_max`: the first contains `offset`.
    /// Empty at the high watermark (the caller long-polls); an error below the log start or past
    /// the high watermark. O(log n + entries_max); copies the entries out (48 bytes each).
    pub fn find_from(
        &self,
        tp: TopicPartition,
        offset: u64,
        entries_max: usize,
    ) -> Result<Vec<IndexEntry>, MetadataError> {
        if offset < self.log_start_offset || offset > self.high_watermark {
            return Err(self.out_of_range(tp, offset));
        }
        Ok(self.index.collect_from(offset, entries_max))
    }

    /// The first index entry whose `max_timestamp >= timestamp_ms`, if any. O(log n).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<&IndexEntry> {
        self.index.first_with_timestamp_at_least(timestamp_ms)
    }

    fn out_of_range(&self, tp: TopicPartition, offset: u64) -> MetadataError {
        MetadataError::OffsetOutOfRange {
            tp,
            offset,
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
        }
    }
}

/// The index entries a swap puts in place, checked: at least one piece and at most
/// [`SWAP_PIECES_MAX`], contiguous from `base_offset` to `end_offset`, none empty, each in a
/// compacted object.
fn swap_entries(swap: &IndexRangeSwap) -> Result<Vec<IndexEntry>, &'static str> {
    if swap.pieces.is_empty() || swap.pieces.len() > SWAP_PIECES_MAX {
        return Err("no pieces, or too many");
    }
    let mut entries = Vec::with_capacity(swap.pieces.len());
    let mut base_offset = swap.base_offset;
    for piece in &swap.pieces {
        if !crate::types::is_compacted_object(piece.object) {
            return Err("a piece is not in a compacted object");
        }
        if piece.end_offset <= base_offset || piece.byte_len == 0 {
            return Err("an empty piece");
        }
        entries.push(IndexEntry {
            base_offset,
            end_offset: piece.end_offset,
            seq: piece.object,
            byte_start: piece.byte_start,
            byte_len: piece.byte_len,
            max_timestamp: piece.max_timestamp,
        });
        base_offset = piece.end_offset;
    }
    if base_offset != swap.end_offset {
        return Err("the pieces do not end at the range's end");
    }
    Ok(entries)
}
