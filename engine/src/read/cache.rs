//! A byte-budgeted cache of object ranges, evicting whole objects least recently used first.
//!
//! Keys are `(LogSeq, byte_start)`: an object is cached as the pieces it arrived in — the chunks of
//! an object this agent just wrote (header, every batch, index), or the ranges a fetch read from the
//! store after a miss. A lookup succeeds only if the pieces cover the whole requested range; it then
//! returns zero-copy slices of them. Eviction works on whole objects because an object's pieces are
//! read together (the partitions of one flush window are fetched together at the live edge), and it
//! keeps the bookkeeping to one ordered map.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use bytes::Bytes;

use crate::types::LogSeq;

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserted_bytes: u64,
    pub evicted_bytes: u64,
    pub evicted_objects: u64,
}

#[derive(Debug, Default)]
struct CachedObject {
    /// Pieces by their start offset in the object. Pieces never overlap.
    pieces: BTreeMap<u64, Bytes>,
    bytes: u64,
    last_used: u64,
}

/// The cache. `capacity_bytes` bounds the bytes it references; pieces larger than that are not cached.
#[derive(Debug)]
pub struct BlockCache {
    capacity_bytes: u64,
    used_bytes: u64,
    tick: u64,
    objects: HashMap<LogSeq, CachedObject>,
    /// `last_used` tick → object, for least-recently-used eviction.
    recency: BTreeMap<u64, LogSeq>,
    stats: CacheStats,
}

impl BlockCache {
    pub fn new(capacity_bytes: u64) -> BlockCache {
        BlockCache {
            capacity_bytes,
            used_bytes: 0,
            tick: 0,
            objects: HashMap::new(),
            recency: BTreeMap::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn contains_object(&self, seq: LogSeq) -> bool {
        self.objects.contains_key(&seq)
    }

    /// Caches a whole object from the chunks it was uploaded as (contiguous, in order).
    pub fn insert_object(&mut self, seq: LogSeq, chunks: &[Bytes]) {
        let mut start = 0u64;
        for chunk in chunks {
            let len = chunk.len() as u64;
            self.insert(seq, start, chunk.clone());
            start += len;
        }
    }

    /// Caches `bytes` as the object's range starting at `start`. Overlapping an existing piece, it
    /// is dropped (the cached bytes of an immutable object are already right).
    pub fn insert(&mut self, seq: LogSeq, start: u64, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len == 0 || len > self.capacity_bytes {
            return;
        }
        let Some(end) = start.checked_add(len) else { return };
        self.tick += 1;
        let tick = self.tick;
        let object = self.objects.entry(seq).or_default();
        let overlaps_before =
            object.pieces.range(..end).next_back().is_some_and(|(piece_start, piece)| piece_start + piece.len() as u64 > start);
        if overlaps_before {
            return;
        }
        object.pieces.insert(start, bytes);
        object.bytes += len;
        self.recency.remove(&object.last_used);
        object.last_used = tick;
        self.recency.insert(tick, seq);
        self.used_bytes += len;
        self.stats.inserted_bytes += len;
        self.evict_to_capacity(seq);
    }

    /// The bytes of `range` of object `seq` as zero-copy slices, if the cache covers all of it.
    pub fn get(&mut self, seq: LogSeq, range: Range<u64>) -> Option<Vec<Bytes>> {
        let found = self.objects.get(&seq).and_then(|object| covering_slices(object, range));
        match found {
            Some(slices) => {
                self.stats.hits += 1;
                self.touch(seq);
                Some(slices)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    fn touch(&mut self, seq: LogSeq) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(object) = self.objects.get_mut(&seq) {
            self.recency.remove(&object.last_used);
            object.last_used = tick;
            self.recency.insert(tick, seq);
        }
    }

    /// Evicts least recently used objects until the budget holds, never the one just inserted
    /// unless it alone is over budget.
    fn evict_to_capacity(&mut self, keep: LogSeq) {
        while self.used_bytes > self.capacity_bytes {
            let victim = self.recency.values().copied().find(|seq| *seq != keep).unwrap_or(keep);
            let Some(object) = self.objects.remove(&victim) else { break };
            self.recency.remove(&object.last_used);
            self.used_bytes -= object.bytes;
            self.stats.evicted_bytes += object.bytes;
            self.stats.evicted_objects += 1;
            if victim == keep {
                break;
            }
        }
    }
}

/// Slices of the object's pieces that together are exactly `range`, or `None` if there is a gap.
fn covering_slices(object: &CachedObject, range: Range<u64>) -> Option<Vec<Bytes>> {
    if range.start >= range.end {
        return Some(Vec::new());
    }
    let mut slices = Vec::new();
    let mut position = range.start;
    // The piece holding `position` starts at or before it.
    let (first_start, _) = object.pieces.range(..=position).next_back()?;
    for (piece_start, piece) in object.pieces.range(*first_start..) {
        if *piece_start > position {
            return None; // a gap
        }
        let piece_end = piece_start + piece.len() as u64;
        if piece_end <= position {
            continue;
        }
        let from = usize::try_from(position - piece_start).ok()?;
        let to = usize::try_from(range.end.min(piece_end) - piece_start).ok()?;
        slices.push(piece.slice(from..to));
        position = range.end.min(piece_end);
        if position == range.end {
            return Some(slices);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn concat(slices: &[Bytes]) -> Vec<u8> {
        slices.iter().flat_map(|slice| slice.iter().copied()).collect()
    }

    #[test]
    fn whole_object_ranges_come_back_zero_copy() {
        let mut cache = BlockCache::new(1 << 20);
        let chunks = vec![Bytes::from_static(b"head"), Bytes::from_static(b"batch-one"), Bytes::from_static(b"tail")];
        cache.insert_object(LogSeq(3), &chunks);
        let slices = cache.get(LogSeq(3), 2..10).unwrap();
        assert_eq!(concat(&slices), b"adbatch-");
        // The batch bytes are the very buffer that was inserted.
        assert_eq!(slices[1].as_ptr(), chunks[1].as_ptr());
        assert_eq!(cache.get(LogSeq(3), 0..17).map(|s| concat(&s)), Some(b"headbatch-onetail".to_vec()));
        assert!(cache.get(LogSeq(3), 10..18).is_none(), "past the end");
        assert!(cache.get(LogSeq(4), 0..1).is_none(), "unknown object");
        assert_eq!(cache.stats().hits, 2);
        assert_eq!(cache.stats().misses, 2);
    }

    #[test]
    fn gaps_are_misses_and_ranges_fill_them() {
        let mut cache = BlockCache::new(1 << 20);
        cache.insert(LogSeq(1), 0, Bytes::from_static(b"0123"));
        cache.insert(LogSeq(1), 8, Bytes::from_static(b"89ab"));
        assert!(cache.get(LogSeq(1), 2..10).is_none());
        cache.insert(LogSeq(1), 4, Bytes::from_static(b"4567"));
        assert_eq!(concat(&cache.get(LogSeq(1), 2..10).unwrap()), b"23456789");
        // An overlapping insert is ignored and does not double-count bytes.
        cache.insert(LogSeq(1), 6, Bytes::from_static(b"XXXX"));
        assert_eq!(cache.used_bytes(), 12);
        assert_eq!(concat(&cache.get(LogSeq(1), 0..12).unwrap()), b"0123456789ab");
    }

    #[test]
    fn evicts_least_recently_used_objects_within_budget() {
        let mut cache = BlockCache::new(100);
        for seq in 0..3 {
            cache.insert(LogSeq(seq), 0, Bytes::from(vec![seq as u8; 40]));
        }
        // 120 bytes > 100: object 0, the oldest, is gone.
        assert!(!cache.contains_object(LogSeq(0)));
        assert_eq!(cache.used_bytes(), 80);
        // Using object 1 makes object 2 the eviction candidate.
        assert!(cache.get(LogSeq(1), 0..40).is_some());
        cache.insert(LogSeq(3), 0, Bytes::from(vec![3; 40]));
        assert!(cache.contains_object(LogSeq(1)));
        assert!(!cache.contains_object(LogSeq(2)));
        assert!(cache.used_bytes() <= cache.capacity_bytes());
        // A piece larger than the whole budget is not cached at all.
        cache.insert(LogSeq(9), 0, Bytes::from(vec![9; 101]));
        assert!(!cache.contains_object(LogSeq(9)));
        assert_eq!(cache.stats().evicted_objects, 2);
    }
}
