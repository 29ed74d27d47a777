//! One partition's index: offset ranges → object byte ranges, stored in fixed-size chunks.
//!
//! # Why chunks, not one `Vec`
//!
//! A single growing `Vec` per partition makes appends amortised O(1) but not *bounded*: when it
//! doubles, every entry is copied. Producers usually spread records over all partitions, so every
//! partition's index grows in lockstep and crosses the same power of two in the same commit: with
//! 1,000 partitions at 2,048 entries, one commit stalled 45 ms copying ~100 MB (p50 was 84 µs), and
//! the stall doubles with every doubling. The metadata core must not stall like that, so entries live
//! in chunks that are allocated once and never moved: the first holds [`FIRST_CHUNK_ENTRIES`], each
//! next one twice the previous, up to [`CHUNK_ENTRIES`]. Small partitions stay small (a million
//! partitions of a few entries must fit), and no append ever copies entries. Dropping a prefix
//! (DeleteRecords, retention) frees whole chunks and drains at most one. The price is a two-level
//! binary search and lookups that return entries by value instead of as one slice.
//!
//! # Lookup by timestamp
//!
//! `max_timestamp` is not monotonic across entries (producers set CreateTime), so "first entry whose
//! max_timestamp >= ts" cannot binary-search the raw values. A running prefix max is monotonic, and
//! the first position where it reaches `ts` is exactly the first entry whose own max is `>= ts`.
//! We keep it at two levels: per chunk, the running max *within* the chunk, and across chunks, the
//! running max of chunk maxima. Appends update one value of each; dropping a prefix rebuilds the
//! cross-chunk level (one value per chunk) and the first chunk's own level. That buys O(log n)
//! ListOffsets for 8 bytes per entry instead of a scan of a partition's whole history.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::types::LogSeq;

/// Entries per full chunk: 48 KiB of entries plus 8 KiB of prefix maxima, allocated once.
pub const CHUNK_ENTRIES: usize = 1024;
/// The first chunk of a partition is this small; each next one doubles up to [`CHUNK_ENTRIES`], so
/// a partition with a handful of entries costs a few hundred bytes, not 56 KiB (there may be a
/// million partitions), and no chunk is ever copied to grow.
pub const FIRST_CHUNK_ENTRIES: usize = 16;

/// Where offsets `base_offset..end_offset` of a partition live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    pub base_offset: u64,
    /// Exclusive.
    pub end_offset: u64,
    /// The log entry (object) holding the bytes: key [`crate::types::log_key`]`(seq)`.
    pub seq: LogSeq,
    /// Byte range of the partition's batches inside that object.
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
}

#[derive(Debug)]
struct Chunk {
    /// Never empty once in the index; never longer than `capacity`.
    entries: Vec<IndexEntry>,
    capacity: usize,
    /// `timestamp_prefix_max[i] = max(entries[..=i].max_timestamp)`.
    timestamp_prefix_max: Vec<i64>,
}

/// A copy keeps the chunk's capacity, so a copied last chunk still fills without moving (copies
/// are made by [`Arc::make_mut`] when a snapshot shares the chunk).
impl Clone for Chunk {
    fn clone(&self) -> Chunk {
        let mut copy = Chunk::with_capacity(self.capacity.max(self.entries.len()));
        copy.entries.extend_from_slice(&self.entries);
        copy.timestamp_prefix_max
            .extend_from_slice(&self.timestamp_prefix_max);
        copy
    }
}

impl Chunk {
    fn with_capacity(capacity: usize) -> Chunk {
        Chunk {
            entries: Vec::with_capacity(capacity),
            capacity,
            timestamp_prefix_max: Vec::with_capacity(capacity),
        }
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    fn end_offset(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.end_offset)
    }

    fn max_timestamp(&self) -> i64 {
        self.timestamp_prefix_max
            .last()
            .copied()
            .unwrap_or(i64::MIN)
    }

    fn push(&mut self, entry: IndexEntry) {
        let running = self.max_timestamp().max(entry.max_timestamp);
        self.entries.push(entry);
        self.timestamp_prefix_max.push(running);
    }

    fn rebuild_timestamp_prefix_max(&mut self) {
        let mut running = i64::MIN;
        self.timestamp_prefix_max.clear();
        for entry in &self.entries {
            running = running.max(entry.max_timestamp);
            self.timestamp_prefix_max.push(running);
        }
    }
}

/// The index of one partition, sorted by offset. Contiguity is the caller's invariant
/// ([`super::partition::PartitionState`] appends only at the high watermark).
///
/// Chunks are shared copy-on-write: cloning an index (a checkpoint snapshot of the whole state,
/// encoded off the metadata core) costs one reference count per chunk, not a copy of its entries.
/// Full chunks never change again; the next append or prefix drop copies only the one chunk it
/// changes, and only while a snapshot still holds it.
#[derive(Debug, Clone, Default)]
pub struct PartitionIndex {
    chunks: VecDeque<Arc<Chunk>>,
    /// Running max of chunk maxima: `chunk_prefix_max[k] = max(chunks[..=k].max_timestamp())`.
    chunk_prefix_max: VecDeque<i64>,
    len: usize,
}

/// Equal entries make equal indexes, however they are split into chunks (a decoded checkpoint
/// re-chunks from the first entry).
impl PartialEq for PartitionIndex {
    fn eq(&self, other: &PartitionIndex) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for PartitionIndex {}

impl PartitionIndex {
    /// Builds an index from `entry_count` entries in one pass, in full chunks (checkpoint decode).
    pub(super) fn from_entries(
        entry_count: usize,
        entries: impl Iterator<Item = IndexEntry>,
    ) -> PartitionIndex {
        let mut index = PartitionIndex::default();
        let mut running = i64::MIN;
        let mut remaining = entry_count;
        let mut chunk = Chunk::with_capacity(remaining.min(CHUNK_ENTRIES));
        for entry in entries {
            if chunk.is_full() {
                let next = Chunk::with_capacity(remaining.clamp(1, CHUNK_ENTRIES));
                index.push_chunk(std::mem::replace(&mut chunk, next), &mut running);
            }
            chunk.push(entry);
            remaining = remaining.saturating_sub(1);
        }
        if !chunk.entries.is_empty() {
            index.push_chunk(chunk, &mut running);
        }
        index
    }

    fn push_chunk(&mut self, chunk: Chunk, running: &mut i64) {
        *running = (*running).max(chunk.max_timestamp());
        self.len += chunk.entries.len();
        self.chunk_prefix_max.push_back(*running);
        self.chunks.push_back(Arc::new(chunk));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first(&self) -> Option<&IndexEntry> {
        self.chunks.front().and_then(|chunk| chunk.entries.first())
    }

    pub fn last(&self) -> Option<&IndexEntry> {
        self.chunks.back().and_then(|chunk| chunk.entries.last())
    }

    /// Every entry, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &IndexEntry> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.entries.iter())
    }

    /// Appends at the end. O(1), and never moves existing entries.
    pub(super) fn push(&mut self, entry: IndexEntry) {
        let next_capacity = match self.chunks.back() {
            None => Some(FIRST_CHUNK_ENTRIES),
            Some(chunk) if chunk.is_full() => Some(
                chunk
                    .capacity
                    .saturating_mul(2)
                    .clamp(FIRST_CHUNK_ENTRIES, CHUNK_ENTRIES),
            ),
            Some(_) => None,
        };
        if let Some(capacity) = next_capacity {
            self.chunks
                .push_back(Arc::new(Chunk::with_capacity(capacity)));
            let before = self.chunk_prefix_max.back().copied().unwrap_or(i64::MIN);
            self.chunk_prefix_max.push_back(before);
        }
        // The last prefix value already covers every earlier entry (a new chunk starts from the
        // previous chunk's value), so folding in the new entry keeps it exact.
        if let (Some(chunk), Some(prefix)) =
            (self.chunks.back_mut(), self.chunk_prefix_max.back_mut())
        {
            Arc::make_mut(chunk).push(entry);
            *prefix = (*prefix).max(entry.max_timestamp);
        }
        self.len += 1;
    }

    /// Drops every entry that ends at or before `offset`.
    pub(super) fn drop_before(&mut self, offset: u64) {
        let mut changed = false;
        while self
            .chunks
            .front()
            .is_some_and(|chunk| chunk.end_offset() <= offset)
        {
            if let Some(chunk) = self.chunks.pop_front() {
                self.len -= chunk.entries.len();
                changed = true;
            }
        }
        if let Some(chunk) = self.chunks.front_mut() {
            let dropped = chunk
                .entries
                .partition_point(|entry| entry.end_offset <= offset);
            if dropped > 0 {
                let chunk = Arc::make_mut(chunk);
                chunk.entries.drain(..dropped);
                chunk.rebuild_timestamp_prefix_max();
                self.len -= dropped;
                changed = true;
            }
        }
        if changed {
            let mut running = i64::MIN;
            self.chunk_prefix_max.clear();
            for chunk in &self.chunks {
                running = running.max(chunk.max_timestamp());
                self.chunk_prefix_max.push_back(running);
            }
        }
    }

    /// Up to `entries_max` entries from the one containing `offset` (which the caller has checked
    /// is below the end of the index). O(log n + entries_max).
    pub fn collect_from(&self, offset: u64, entries_max: usize) -> Vec<IndexEntry> {
        let chunk_at = self
            .chunks
            .partition_point(|chunk| chunk.end_offset() <= offset);
        let Some(first_chunk) = self.chunks.get(chunk_at) else {
            return Vec::new();
        };
        let entry_at = first_chunk
            .entries
            .partition_point(|entry| entry.end_offset <= offset);
        let head = first_chunk.entries.get(entry_at..).unwrap_or_default();
        let rest = self
            .chunks
            .range(chunk_at + 1..)
            .flat_map(|chunk| chunk.entries.iter());
        head.iter().chain(rest).take(entries_max).copied().collect()
    }

    /// The first entry whose `max_timestamp >= timestamp_ms`. O(log n).
    pub fn first_with_timestamp_at_least(&self, timestamp_ms: i64) -> Option<&IndexEntry> {
        let chunk_at = self
            .chunk_prefix_max
            .partition_point(|prefix| *prefix < timestamp_ms);
        let chunk = self.chunks.get(chunk_at)?;
        // The cross-chunk prefix first reaches the timestamp in this chunk, so this chunk's own
        // maximum does: the entry is here.
        let entry_at = chunk
            .timestamp_prefix_max
            .partition_point(|prefix| *prefix < timestamp_ms);
        chunk.entries.get(entry_at)
    }
}
