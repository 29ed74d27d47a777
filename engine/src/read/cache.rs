//! A byte-budgeted cache of object ranges, evicting least recently used units first.
//!
//! Keys are `(LogSeq, byte_start)`: an object is cached as the pieces it arrived in — the chunks of
//! an object this agent just wrote (header, every batch, index), or the ranges a fetch read from the
//! store after a miss. A lookup succeeds only if the pieces cover the whole requested range; it then
//! returns zero-copy slices of them.
//!
//! **What is evicted together (a unit).** A window object (`log/…`) is one unit: its pieces are
//! read together (the partitions of one flush window are fetched together at the live edge), and
//! evicting it piece by piece would leave holes that a later read could not fill (an insert that
//! overlaps a cached piece is dropped). A compacted object (`compacted/…`, up to 32 MiB, laid out
//! partition by partition) is read as chunks of one partition at a time, each consumer at its own
//! pace, so each of its pieces is a unit of its own: a replay of many partitions keeps each
//! partition's current chunk, not whole objects. A chunk a reader has gone past can be
//! [`BlockCache::demote`]d so that it goes before any chunk still being read.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use bytes::Bytes;

use crate::types::{LogSeq, is_compacted_object};

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserted_bytes: u64,
    pub evicted_bytes: u64,
    /// Units evicted: whole window objects, single pieces of compacted objects.
    pub evicted_objects: u64,
}

/// Ticks of demoted units sort before every ordinary tick (they are evicted first).
const ORDINARY_TICKS_FROM: u64 = 1 << 62;

#[derive(Debug, Default)]
struct CachedObject {
    /// Pieces by their start offset in the object. Pieces never overlap.
    pieces: BTreeMap<u64, Bytes>,
    bytes: u64,
    /// Eviction units by their key (0 for a window object's single unit, the piece's start for a
    /// compacted object's): bytes and last use.
    units: HashMap<u64, Unit>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Unit {
    bytes: u64,
    last_used: u64,
}

/// The unit a piece starting at `start` belongs to.
fn unit_of(seq: LogSeq, start: u64) -> u64 {
    if is_compacted_object(seq) { start } else { 0 }
}

/// The cache. `capacity_bytes` bounds the bytes it references; pieces larger than that are not cached.
#[derive(Debug)]
pub struct BlockCache {
    capacity_bytes: u64,
    used_bytes: u64,
    /// Bytes of the demoted units (first to go), within `used_bytes`.
    demoted_bytes: u64,
    tick: u64,
    demoted_tick: u64,
    objects: HashMap<LogSeq, CachedObject>,
    /// `last_used` tick → unit, for least-recently-used eviction.
    recency: BTreeMap<u64, (LogSeq, u64)>,
    stats: CacheStats,
}

impl BlockCache {
    pub fn new(capacity_bytes: u64) -> BlockCache {
        BlockCache {
            capacity_bytes,
            used_bytes: 0,
            demoted_bytes: 0,
            tick: ORDINARY_TICKS_FROM,
            demoted_tick: 0,
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

    /// Bytes cached and not demoted: what an insert could not evict before the rest.
    pub fn ordinary_bytes(&self) -> u64 {
        self.used_bytes.saturating_sub(self.demoted_bytes)
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
        let Some(end) = start.checked_add(len) else {
            return;
        };
        let object = self.objects.entry(seq).or_default();
        let overlaps_before = object
            .pieces
            .range(..end)
            .next_back()
            .is_some_and(|(piece_start, piece)| piece_start + piece.len() as u64 > start);
        if overlaps_before {
            return;
        }
        object.pieces.insert(start, bytes);
        object.bytes += len;
        let unit = unit_of(seq, start);
        let cached = object.units.entry(unit).or_default();
        cached.bytes += len;
        if cached.last_used < ORDINARY_TICKS_FROM {
            // A new unit, or a demoted one: `touch` below makes it ordinary and counts it out.
            self.demoted_bytes += len;
        }
        self.used_bytes += len;
        self.stats.inserted_bytes += len;
        self.touch(seq, unit);
        self.evict_to_capacity((seq, unit));
    }

    /// The bytes of `range` of object `seq` as zero-copy slices, if the cache covers all of it.
    pub fn get(&mut self, seq: LogSeq, range: Range<u64>) -> Option<Vec<Bytes>> {
        let found = self
            .objects
            .get(&seq)
            .and_then(|object| covering_slices(object, range.clone()));
        match found {
            Some(slices) => {
                self.stats.hits += 1;
                self.touch_range(seq, range);
                Some(slices)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// [`BlockCache::get`] for a background reader (compaction): the same slices, without
    /// counting a hit or a miss and without marking anything as used.
    pub fn peek(&self, seq: LogSeq, range: Range<u64>) -> Option<Vec<Bytes>> {
        self.objects
            .get(&seq)
            .and_then(|object| covering_slices(object, range))
    }

    /// The cached prefix of `range`: zero-copy slices of `range.start..end` and that `end` (equal
    /// to `range.start` when its first byte is not cached, `range.end` when all of it is).
    pub fn get_prefix(&mut self, seq: LogSeq, range: Range<u64>) -> (Vec<Bytes>, u64) {
        let Some(object) = self.objects.get(&seq) else {
            self.stats.misses += 1;
            return (Vec::new(), range.start);
        };
        let end = covered_end(object, range.clone());
        let slices = if end > range.start {
            covering_slices(object, range.start..end).unwrap_or_default()
        } else {
            Vec::new()
        };
        if end == range.end {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        if end > range.start {
            self.touch_range(seq, range.start..end);
        }
        (slices, end)
    }

    /// Where the first cached piece of `seq` at or after `position` starts, if any.
    pub fn next_piece_start(&self, seq: LogSeq, position: u64) -> Option<u64> {
        let object = self.objects.get(&seq)?;
        object
            .pieces
            .range(position..)
            .next()
            .map(|(start, _)| *start)
    }

    /// Marks the pieces of a compacted object that lie wholly inside `range` as the first to go:
    /// a reader has gone past them. Window objects are left alone (one unit, read together).
    pub fn demote(&mut self, seq: LogSeq, range: Range<u64>) {
        if !is_compacted_object(seq) {
            return;
        }
        let Some(object) = self.objects.get_mut(&seq) else {
            return;
        };
        for (start, piece) in object.pieces.range(range.start..range.end) {
            if start + piece.len() as u64 > range.end {
                break;
            }
            let Some(unit) = object.units.get_mut(start) else {
                continue;
            };
            if unit.last_used < ORDINARY_TICKS_FROM {
                continue; // demoted already
            }
            self.recency.remove(&unit.last_used);
            self.demoted_tick += 1;
            unit.last_used = self.demoted_tick;
            self.demoted_bytes += unit.bytes;
            self.recency.insert(self.demoted_tick, (seq, *start));
        }
    }

    /// Marks every unit of object `seq` as the first to go, whatever its kind: a copy this cache
    /// keeps of an object that another cache is responsible for (the live edge's write-through
    /// on a core that does not own the object), which should cost the bytes this cache owns
    /// nothing. A later use makes it ordinary again.
    pub fn demote_object(&mut self, seq: LogSeq) {
        let Some(object) = self.objects.get_mut(&seq) else {
            return;
        };
        for (start, unit) in &mut object.units {
            if unit.last_used < ORDINARY_TICKS_FROM {
                continue; // demoted already
            }
            self.recency.remove(&unit.last_used);
            self.demoted_tick += 1;
            unit.last_used = self.demoted_tick;
            self.demoted_bytes += unit.bytes;
            self.recency.insert(self.demoted_tick, (seq, *start));
        }
    }

    /// Marks every unit `range` touches as just used.
    fn touch_range(&mut self, seq: LogSeq, range: Range<u64>) {
        if !is_compacted_object(seq) {
            self.touch(seq, 0);
            return;
        }
        let Some(object) = self.objects.get(&seq) else {
            return;
        };
        let first = object
            .pieces
            .range(..=range.start)
            .next_back()
            .map_or(range.start, |(start, _)| *start);
        let units: Vec<u64> = object
            .pieces
            .range(first..range.end)
            .map(|(start, _)| *start)
            .collect();
        for unit in units {
            self.touch(seq, unit);
        }
    }

    fn touch(&mut self, seq: LogSeq, unit: u64) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(cached) = self
            .objects
            .get_mut(&seq)
            .and_then(|object| object.units.get_mut(&unit))
        {
            if cached.last_used < ORDINARY_TICKS_FROM {
                self.demoted_bytes = self.demoted_bytes.saturating_sub(cached.bytes);
            }
            self.recency.remove(&cached.last_used);
            cached.last_used = tick;
            self.recency.insert(tick, (seq, unit));
        }
    }

    /// Evicts least recently used units until the budget holds, never the one just inserted
    /// unless it alone is over budget.
    fn evict_to_capacity(&mut self, keep: (LogSeq, u64)) {
        while self.used_bytes > self.capacity_bytes {
            let victim = self
                .recency
                .values()
                .copied()
                .find(|unit| *unit != keep)
                .unwrap_or(keep);
            self.evict(victim);
            if victim == keep {
                break;
            }
        }
    }

    fn evict(&mut self, (seq, unit): (LogSeq, u64)) {
        let Some(object) = self.objects.get_mut(&seq) else {
            return;
        };
        let Some(removed) = object.units.remove(&unit) else {
            return;
        };
        self.recency.remove(&removed.last_used);
        if removed.last_used < ORDINARY_TICKS_FROM {
            self.demoted_bytes = self.demoted_bytes.saturating_sub(removed.bytes);
        }
        if is_compacted_object(seq) {
            object.pieces.remove(&unit);
        } else {
            object.pieces.clear();
        }
        object.bytes -= removed.bytes;
        self.used_bytes -= removed.bytes;
        self.stats.evicted_bytes += removed.bytes;
        self.stats.evicted_objects += 1;
        if object.units.is_empty() {
            self.objects.remove(&seq);
        }
    }
}

/// How far the object's pieces cover `range` contiguously from its start (`range.start` if not
/// at all), at most `range.end`.
fn covered_end(object: &CachedObject, range: Range<u64>) -> u64 {
    let mut position = range.start;
    let Some((first_start, _)) = object.pieces.range(..=position).next_back() else {
        return position;
    };
    for (piece_start, piece) in object.pieces.range(*first_start..) {
        if *piece_start > position || position >= range.end {
            break;
        }
        position = position.max(piece_start + piece.len() as u64);
    }
    position.min(range.end).max(range.start)
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
        slices
            .iter()
            .flat_map(|slice| slice.iter().copied())
            .collect()
    }

    #[test]
    fn whole_object_ranges_come_back_zero_copy() {
        let mut cache = BlockCache::new(1 << 20);
        let chunks = vec![
            Bytes::from_static(b"head"),
            Bytes::from_static(b"batch-one"),
            Bytes::from_static(b"tail"),
        ];
        cache.insert_object(LogSeq(3), &chunks);
        let slices = cache.get(LogSeq(3), 2..10).unwrap();
        assert_eq!(concat(&slices), b"adbatch-");
        // The batch bytes are the very buffer that was inserted.
        assert_eq!(slices[1].as_ptr(), chunks[1].as_ptr());
        assert_eq!(
            cache.get(LogSeq(3), 0..17).map(|s| concat(&s)),
            Some(b"headbatch-onetail".to_vec())
        );
        assert!(cache.get(LogSeq(3), 10..18).is_none(), "past the end");
        assert!(cache.get(LogSeq(4), 0..1).is_none(), "unknown object");
        assert_eq!(cache.stats().hits, 2);
        assert_eq!(cache.stats().misses, 2);
    }

    /// `ordinary_bytes` counts what is cached and not demoted, through demotion, a use that
    /// makes a unit ordinary again, inserts into a demoted window object and eviction.
    #[test]
    fn ordinary_bytes_leave_out_the_demoted_units() {
        let compacted = crate::types::compacted_object_id(1, 0);
        let mut cache = BlockCache::new(1_000);
        cache.insert(compacted, 0, Bytes::from(vec![1_u8; 100]));
        cache.insert(compacted, 100, Bytes::from(vec![2_u8; 200]));
        cache.insert(LogSeq(5), 0, Bytes::from(vec![3_u8; 50]));
        assert_eq!(cache.ordinary_bytes(), 350);
        cache.demote(compacted, 0..100);
        assert_eq!(cache.ordinary_bytes(), 250);
        cache.demote_object(LogSeq(5));
        assert_eq!(cache.ordinary_bytes(), 200);
        // A piece added to the demoted window object makes it ordinary (it was just used).
        cache.insert(LogSeq(5), 50, Bytes::from(vec![4_u8; 50]));
        assert_eq!(cache.ordinary_bytes(), 300);
        // A use of the demoted chunk makes it ordinary again.
        assert!(cache.get(compacted, 0..10).is_some());
        assert_eq!(cache.ordinary_bytes(), 400);
        cache.demote(compacted, 0..300);
        assert_eq!(cache.ordinary_bytes(), 100);
        // Eviction takes the demoted chunks first and their bytes leave both counts.
        cache.insert(LogSeq(6), 0, Bytes::from(vec![5_u8; 800]));
        assert!(cache.used_bytes() <= 1_000);
        assert_eq!(cache.ordinary_bytes(), 900);
        assert_eq!(cache.used_bytes(), 900);
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
        assert_eq!(
            concat(&cache.get(LogSeq(1), 0..12).unwrap()),
            b"0123456789ab"
        );
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

    #[test]
    fn compacted_objects_are_evicted_piece_by_piece_and_demoted_pieces_go_first() {
        let object = crate::types::compacted_object_id(1, 0);
        let other = crate::types::compacted_object_id(1, 1);
        let mut cache = BlockCache::new(100);
        cache.insert(object, 0, Bytes::from(vec![1; 40]));
        cache.insert(other, 0, Bytes::from(vec![2; 40]));
        cache.insert(object, 40, Bytes::from(vec![3; 40]));
        // Over budget: the oldest *piece* goes, not the whole of `object`.
        assert!(cache.get(object, 0..1).is_none());
        assert!(cache.get(object, 40..80).is_some());
        assert!(cache.get(other, 0..40).is_some());
        assert_eq!(cache.used_bytes(), 80);
        assert_eq!(cache.stats().evicted_objects, 1);

        // A piece a reader went past is evicted before older pieces still in use.
        cache.demote(object, 0..80);
        cache.insert(object, 80, Bytes::from(vec![4; 40]));
        assert!(
            cache.get(object, 40..41).is_none(),
            "the demoted piece went"
        );
        assert!(
            cache.get(other, 0..40).is_some(),
            "the older piece in use stayed"
        );
        // Demoting only pieces wholly inside the range.
        cache.demote(other, 0..39);
        cache.insert(object, 120, Bytes::from(vec![5; 40]));
        assert!(
            cache.get(object, 80..120).is_none(),
            "LRU order without demotion"
        );
        assert!(cache.get(other, 0..40).is_some());
    }

    #[test]
    fn window_objects_stay_one_unit_and_are_not_demoted() {
        let mut cache = BlockCache::new(100);
        cache.insert(LogSeq(1), 0, Bytes::from(vec![1; 30]));
        cache.insert(LogSeq(1), 30, Bytes::from(vec![1; 30]));
        cache.demote(LogSeq(1), 0..60);
        cache.insert(LogSeq(2), 0, Bytes::from(vec![2; 30]));
        cache.insert(LogSeq(2), 30, Bytes::from(vec![2; 30]));
        // Object 1 goes whole (both pieces), although object 2's second piece overflowed.
        assert!(!cache.contains_object(LogSeq(1)));
        assert_eq!(cache.used_bytes(), 60);
        assert_eq!(cache.stats().evicted_objects, 1);
    }

    #[test]
    fn an_object_demoted_whole_goes_before_everything_in_use() {
        let mut cache = BlockCache::new(100);
        cache.insert(LogSeq(1), 0, Bytes::from(vec![1; 30]));
        cache.insert(LogSeq(2), 0, Bytes::from(vec![2; 20]));
        cache.insert(LogSeq(2), 20, Bytes::from(vec![2; 20]));
        cache.demote_object(LogSeq(2));
        // Object 1 is older, but object 2 (a window object, demoted whole) goes first.
        cache.insert(LogSeq(3), 0, Bytes::from(vec![3; 40]));
        assert!(!cache.contains_object(LogSeq(2)));
        assert!(cache.contains_object(LogSeq(1)));
        // A use makes a demoted object ordinary again.
        cache.insert(LogSeq(4), 0, Bytes::from(vec![4; 20]));
        cache.demote_object(LogSeq(4));
        assert!(cache.get(LogSeq(4), 0..20).is_some());
        cache.insert(LogSeq(5), 0, Bytes::from(vec![5; 20]));
        assert!(cache.contains_object(LogSeq(4)));
        assert!(
            !cache.contains_object(LogSeq(1)),
            "the least recently used went"
        );
        assert!(cache.used_bytes() <= cache.capacity_bytes());
    }

    #[test]
    fn the_cached_prefix_of_a_range_and_the_next_piece() {
        let object = crate::types::compacted_object_id(2, 7);
        let mut cache = BlockCache::new(1 << 20);
        cache.insert(object, 10, Bytes::from_static(b"abcd"));
        cache.insert(object, 14, Bytes::from_static(b"efgh"));
        cache.insert(object, 30, Bytes::from_static(b"zz"));
        let (slices, end) = cache.get_prefix(object, 12..40);
        assert_eq!((concat(&slices), end), (b"cdefgh".to_vec(), 18));
        let (slices, end) = cache.get_prefix(object, 11..13);
        assert_eq!((concat(&slices), end), (b"bc".to_vec(), 13));
        let (slices, end) = cache.get_prefix(object, 5..20);
        assert_eq!((slices.len(), end), (0, 5), "first byte not cached");
        assert_eq!(cache.next_piece_start(object, 18), Some(30));
        assert_eq!(cache.next_piece_start(object, 31), None);
        assert_eq!(cache.get_prefix(LogSeq(5), 0..4).1, 0);
    }
}
