//! Reading one fetch: plan on the metadata core, bytes from the cache or the store, assembly here.
//!
//! [`plan`] is pure and runs inside one `CoreHandle::query` for every partition of the request, so
//! an attempt costs one message to the metadata core whatever the partition count. It picks index
//! entries until their bytes cover the partition's byte budget (the first always), at most
//! [`ENTRIES_PER_PARTITION_MAX`]. [`wants`] says which bytes of those entries to read: each
//! entry's exact byte range, except for large entries of compacted objects, read from the batch
//! the fetch needs (remembered in [`Positions`]) up to the partition's budget. [`read_groups`] then
//! takes them from the core's cache, or GETs them — exact ranges coalesced per object, compacted
//! entries in chunks of [`chunk_bytes`] — and caches what it read.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use sluice_engine::metadata::{IndexEntry, MetadataError, MetadataState, kafka_code};
use sluice_engine::read::{AssembledRecords, SegmentPart};
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{LogSeq, TopicId, TopicPartition, is_compacted_object, object_key};

use super::FetchCore;
use super::inflight::{InflightGuard, InflightRead};

/// Index entries read per partition per fetch.
pub const ENTRIES_PER_PARTITION_MAX: usize = 64;

/// How the client named a topic: by name before Fetch v13, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id(TopicId),
}

/// One partition to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRequest {
    pub topic: TopicRef,
    pub partition: i32,
    pub fetch_offset: i64,
    /// Bytes the entries should cover (the first entry is taken whatever its size).
    pub bytes_max: u64,
}

/// Where a partition's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    pub tp: TopicPartition,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// Entries from the one holding the fetch offset; empty at the high watermark.
    pub entries: Vec<IndexEntry>,
    /// The entry after `entries`, when the index has one: where the partition goes on once it
    /// has read them (the read-ahead reads its first chunk ahead, see [`lead_wants`]).
    pub next: Option<IndexEntry>,
}

/// Plans every partition (a Kafka error code where it cannot be served).
pub fn plan(state: &MetadataState, requests: &[PlanRequest]) -> Vec<Result<PartitionPlan, i16>> {
    requests
        .iter()
        .map(|request| plan_one(state, request))
        .collect()
}

fn plan_one(state: &MetadataState, request: &PlanRequest) -> Result<PartitionPlan, i16> {
    let topic_id = match &request.topic {
        TopicRef::Name(name) => state
            .topic_id_by_name(name)
            .ok_or(kafka_code::UNKNOWN_TOPIC_OR_PARTITION)?,
        TopicRef::Id(id) => state
            .topic(*id)
            .map(|_| *id)
            .ok_or(kafka_code::UNKNOWN_TOPIC_ID)?,
    };
    let tp = TopicPartition::new(topic_id, request.partition);
    let high_watermark = state
        .high_watermark(tp)
        .map_err(|_| kafka_code::UNKNOWN_TOPIC_OR_PARTITION)?;
    let log_start_offset = state
        .log_start_offset(tp)
        .map_err(|_| kafka_code::UNKNOWN_TOPIC_OR_PARTITION)?;
    let offset =
        u64::try_from(request.fetch_offset).map_err(|_| kafka_code::OFFSET_OUT_OF_RANGE)?;
    let mut entries = state
        .find_from(tp, offset, ENTRIES_PER_PARTITION_MAX)
        .map_err(|error| match error {
            MetadataError::OffsetOutOfRange { .. } => kafka_code::OFFSET_OUT_OF_RANGE,
            _ => kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
        })?;
    let mut covered: u64 = 0;
    let mut keep = 0;
    for entry in &entries {
        if keep > 0 && covered >= request.bytes_max {
            break;
        }
        covered = covered.saturating_add(entry.byte_len);
        keep += 1;
    }
    let next = entries.get(keep).copied();
    entries.truncate(keep);
    Ok(PartitionPlan {
        tp,
        high_watermark,
        log_start_offset,
        entries,
        next,
    })
}

/// A range the store could not give: the fetch answers KAFKA_STORAGE_ERROR for that partition.
/// One GET may serve several partitions, so the store's error is kept as its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("reading {key} bytes {start}..{end}: {reason}")]
    Store {
        key: String,
        start: u64,
        end: u64,
        reason: String,
    },
    #[error("{key}: the store returned {got} bytes for the range {start}..{end}")]
    ShortRead {
        key: String,
        start: u64,
        end: u64,
        got: u64,
    },
    /// Not read: the read already waits for [`CHUNK_GROUPS_AWAITED_MAX`] partitions' chunks on
    /// this core (see [`read_groups_awaiting`]). Not an error of the store: the partition is
    /// answered without records, and the read-ahead reads it.
    #[error("not read: this fetch waits for enough chunks already")]
    NotRead,
}

/// A fetch waits for the chunks of at most this many partitions per core whose chunks are not
/// cached (whether it starts their GETs or joins GETs in flight); the others are answered without
/// records this time, and their chunks are read by the read-ahead that follows the answer. A
/// consumer starting a replay of 64 partitions from compacted objects would otherwise wait for
/// 64 GETs of 4 MiB (256 MiB) before its first record.
pub const CHUNK_GROUPS_AWAITED_MAX: usize = 8;

/// Gaps between missing ranges of one object up to this size are read rather than split into
/// another GET (a request costs more than that many bytes).
pub const COALESCE_GAP_BYTES_MAX: u64 = 256 * 1024;
/// Largest single ranged GET built by coalescing.
pub const COALESCED_GET_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How far past `max_bytes` a fetch (and a read-ahead) reads, in percent of it. The index gives
/// an entry's bytes, not its batches, so what a partition will add to an answer (whole batches up
/// to its budget) is only estimated; a partition the estimate left out costs the answer another
/// round of GETs. What is read past the answer stays cached for the next fetch.
pub const PREFETCH_EXTRA_PERCENT: u64 = 25;

/// The bytes a fetch with `max_bytes` reads ahead of assembly (see [`PREFETCH_EXTRA_PERCENT`]).
pub fn prefetch_bytes_max(max_bytes: u64) -> u64 {
    max_bytes.saturating_add(max_bytes / 100 * PREFETCH_EXTRA_PERCENT)
}

/// Smallest chunk a compacted entry is read in (see [`chunk_bytes`]).
pub const CHUNK_BYTES_MIN: u64 = 1024 * 1024;
/// Largest chunk a compacted entry is read in: a GET of 4 to 8 MiB (the tail of an entry shorter
/// than a chunk joins the chunk before it).
pub const CHUNK_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The chunk size for reading compacted entries on a core whose cache holds `cache_bytes`, for a
/// fetch of `partitions` partitions: each partition being replayed keeps about one chunk in the
/// cache (plus the next one while the read-ahead fetches it), so the chunk is the cache's share per
/// partition, halved, between [`CHUNK_BYTES_MIN`] and [`CHUNK_BYTES_MAX`]. With the default
/// 256 MiB cache that is 4 MiB up to 32 partitions and 2 MiB at 64.
pub fn chunk_bytes(cache_bytes: u64, partitions: usize) -> u64 {
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(u64::MAX);
    (cache_bytes / partitions.saturating_mul(2)).clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX)
}

/// The GETs that read `miss_start..to` of an entry ending at `entry_end`, in chunks: each at least
/// `chunk` bytes (past `to`: the partition's next fetches will want them) unless the entry ends
/// first, a last piece shorter than `chunk` joined to the one before it, and none reaching into
/// the cached piece that starts at `next_cached` (its bytes are there, and an overlapping insert
/// would be dropped).
pub fn chunk_spans(
    miss_start: u64,
    to: u64,
    entry_end: u64,
    chunk: u64,
    next_cached: Option<u64>,
) -> Vec<Range<u64>> {
    let chunk = chunk.max(1);
    let limit = next_cached.map_or(entry_end, |start| start.min(entry_end));
    let mut spans = Vec::new();
    let mut start = miss_start;
    while start < to.min(limit) {
        let mut end = start.saturating_add(chunk).min(limit);
        if limit - end < chunk {
            end = limit;
        }
        spans.push(start..end);
        start = end;
    }
    spans
}

/// Bytes of one index entry to read (see [`wants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub entry: IndexEntry,
    /// Where the bytes start: a batch boundary in the object (the entry's start, or a position a
    /// fetch remembered), and the offset of the batch that starts there.
    pub from: u64,
    pub from_offset: u64,
    /// Where they end (the entry's end, or earlier for a budget-sized prefix).
    pub to: u64,
    /// 0: read `from..to` exactly, coalesced with neighbours; otherwise the missing bytes are read
    /// in chunks of this size (a large entry of a compacted object).
    pub chunk: u64,
}

impl Want {
    pub fn whole(entry: IndexEntry) -> Want {
        Want {
            entry,
            from: entry.byte_start,
            from_offset: entry.base_offset,
            to: entry_end(&entry),
            chunk: 0,
        }
    }

    /// The bytes as a part to assemble.
    pub(crate) fn part(&self, slices: Vec<Bytes>) -> SegmentPart {
        SegmentPart {
            entry: self.entry,
            from: self.from,
            from_offset: self.from_offset,
            slices,
            prefix: self.to < entry_end(&self.entry),
        }
    }
}

fn entry_end(entry: &IndexEntry) -> u64 {
    entry.byte_start.saturating_add(entry.byte_len)
}

/// Remembered positions of batches inside compacted entries: `(object, entry, offset)` → the byte
/// position of the batch starting at that offset. A fetch that answers from a large entry records
/// where its next fetch starts, so that one reads from there (a chunk) instead of from the entry's
/// start (up to 32 MiB). A consumer moving on replaces its position; at most
/// [`POSITIONS_MAX`] are kept per core (all are forgotten when that is reached: a fetch without a
/// position reads its entry from the start once, and remembers again).
#[derive(Debug, Default)]
pub struct Positions {
    by_offset: HashMap<PositionKey, u64>,
}

/// A remembered position's key: the object, the entry's first byte in it (two partitions' entries
/// in one compacted object may hold the same offsets), the offset.
pub type PositionKey = (LogSeq, u64, u64);

/// Positions remembered per core at most.
pub const POSITIONS_MAX: usize = 65_536;

impl Positions {
    pub fn get(&self, key: PositionKey) -> Option<u64> {
        self.by_offset.get(&key).copied()
    }

    /// A fetch at `used` (object, offset) answered up to `next` (object, offset, position).
    pub fn advance(&mut self, used: Option<PositionKey>, next: Option<(PositionKey, u64)>) {
        if let Some(used) = used {
            self.by_offset.remove(&used);
        }
        if let Some((key, position)) = next {
            if self.by_offset.len() >= POSITIONS_MAX {
                self.by_offset.clear();
            }
            self.by_offset.insert(key, position);
        }
    }

    pub fn len(&self) -> usize {
        self.by_offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_offset.is_empty()
    }
}

/// The bytes to read of a partition's planned `entries` for a fetch at `fetch_offset` with a byte
/// `budget`. An entry of a window object, or a compacted one no larger than `chunk`, is read whole.
/// A larger compacted entry is read from the batch holding the fetch offset — the entry's start
/// when the fetch starts there, else the position a previous answer remembered — for `budget`
/// bytes; with no position remembered, whole (in chunks), once. Later entries get what is left of
/// the budget.
pub fn wants(
    positions: &Positions,
    entries: &[IndexEntry],
    fetch_offset: u64,
    budget: u64,
    chunk: u64,
) -> Vec<Want> {
    let mut left = budget.max(1);
    let mut wants = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let mut want = Want::whole(*entry);
        if is_compacted_object(entry.seq) && entry.byte_len > chunk {
            want.chunk = chunk;
            let remembered = (index == 0 && fetch_offset > entry.base_offset)
                .then(|| positions.get((entry.seq, entry.byte_start, fetch_offset)))
                .flatten()
                .filter(|position| (entry.byte_start..want.to).contains(position));
            let from_start = index > 0 || fetch_offset <= entry.base_offset;
            if let Some(position) = remembered {
                want.from = position;
                want.from_offset = fetch_offset;
            }
            if remembered.is_some() || from_start {
                want.to = want.from.saturating_add(left).min(want.to);
            }
        }
        left = left.saturating_sub(want.to - want.from).max(1);
        wants.push(want);
    }
    wants
}

/// The next chunk of each large compacted entry that `wants` reads in chunks: `wants` are what a
/// partition's next fetch will read; the returned wants reach one chunk further (from where each
/// ends, to at most one chunk past it, within its entry). Read into the cache as soon as a fetch
/// answers, they make the GET of a partition's next chunk start while it is still reading the
/// chunk before (about `chunk / budget` fetches ahead), instead of when the next fetch already
/// needs it. Where the chunk past a want is already cached, reading the lead makes no GET.
///
/// When that reaches the end of the last want's entry and the partition goes on in `next`, a
/// large compacted entry read in chunks of `chunk`, its first chunk is led too: the span the
/// fetch that reaches it would read (see [`chunk_spans`]), so it costs no extra GET. Without it
/// a replay's partitions, whose compacted entries end together, all waited for their next
/// entries' first chunks at the same fetch.
pub fn lead_wants(wants: &[Want], next: Option<IndexEntry>, chunk: u64) -> Vec<Want> {
    let mut lead: Vec<Want> = wants
        .iter()
        .filter(|want| want.chunk > 0)
        .filter_map(|want| {
            let to = want
                .to
                .saturating_add(want.chunk)
                .min(entry_end(&want.entry));
            (to > want.to).then_some(Want {
                from: want.to,
                to,
                ..*want
            })
        })
        .collect();
    let reaches_next = wants
        .last()
        .is_some_and(|last| last.to.saturating_add(last.chunk) >= entry_end(&last.entry));
    if let Some(next) = next
        && reaches_next
        && chunk > 0
        && is_compacted_object(next.seq)
        && next.byte_len > chunk
    {
        lead.push(Want {
            entry: next,
            from: next.byte_start,
            from_offset: next.base_offset,
            to: next.byte_start.saturating_add(chunk),
            chunk,
        });
    }
    lead
}

/// One group's parts with their bytes (see [`read_groups`]).
pub type GroupRead = Result<Vec<SegmentPart>, ReadError>;

/// Each want with its bytes: from the cache, else from the store (see [`read_groups`]).
pub async fn read_entries(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    wants: &[Want],
) -> GroupRead {
    read_groups(fetch, store, &[wants])
        .await
        .pop()
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// What the cache had for a want before reading.
enum Cached {
    /// An exact range: all of it, or nothing.
    Exact(Option<Vec<Bytes>>),
    /// A chunked want: the cached bytes from its start up to `covered`, and the cached pieces
    /// past the first gap, each with its start (the gaps between them are read).
    Prefix {
        slices: Vec<Bytes>,
        covered: u64,
        later: Vec<(u64, Vec<Bytes>)>,
    },
}

/// GETs a read made, and their bytes (joins of GETs already in flight not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCount {
    pub gets: u64,
    pub bytes: u64,
}

/// Reads several groups of wants (one group per partition) at once, each block from the core
/// that owns it ([`super::owners`]): this core's own blocks here, the others' through their
/// owners, so what one core read is never read again by another while it is cached. The GETs
/// made for this read count as this core's store reads.
pub async fn read_groups(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    groups: &[&[Want]],
) -> Vec<GroupRead> {
    read_groups_awaiting(fetch, store, groups, usize::MAX, false).await
}

/// [`read_groups`], waiting on each core for the missing chunks of at most `chunk_groups_max`
/// groups (in order): a later group that misses a chunk of a compacted entry is answered
/// [`ReadError::NotRead`] and nothing of it is read. Groups served from the cache, and exact
/// ranges (window objects), are always read. With `room_only` (a read of next chunks ahead of
/// need), a group's missing chunks are read only while they fit in the owner's cache beside the
/// bytes it holds that are not demoted and the chunk GETs in flight; the others are
/// [`ReadError::NotRead`] too: reading ahead never evicts a chunk a partition is still reading.
pub async fn read_groups_awaiting(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    groups: &[&[Want]],
    chunk_groups_max: usize,
    room_only: bool,
) -> Vec<GroupRead> {
    let (read, count) = match &fetch.owners {
        Some(owners) if owners.core_count() > 1 => {
            super::owners::read_routed(fetch, owners, store, groups, chunk_groups_max, room_only)
                .await
        }
        _ => read_groups_here(fetch, store, groups, chunk_groups_max, room_only).await,
    };
    fetch.note_store_reads(count);
    read
}

/// Reads several groups of wants (one group per partition) at once from this core's cache and
/// the store. Cached ranges come from
/// the cache; the missing ones are grouped by object, and exact ranges of one object that are
/// adjacent or close ([`COALESCE_GAP_BYTES_MAX`]) become one ranged GET — a consumer catching up on
/// many partitions reads each object's segments in one request, not one per partition — while the
/// missing bytes of a chunked want are read as [`chunk_spans`], one GET each, cached as one piece
/// each (evicted on its own; where a chunk went before the one after it, the gap is read and the
/// cached piece past it taken from the cache). A miss that a GET already in flight on this core
/// covers waits for that GET ([`super::inflight`]). All GETs run concurrently. A failed GET fails
/// only the groups that needed it.
pub async fn read_groups_here(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    groups: &[&[Want]],
    chunk_groups_max: usize,
    room_only: bool,
) -> (Vec<GroupRead>, ReadCount) {
    let mut chunk_misses: Vec<(LogSeq, Range<u64>)> = Vec::new();
    // The bytes a `room_only` read may still GET as chunks.
    let mut room = {
        let cache = fetch.cache.borrow();
        cache
            .capacity_bytes()
            .saturating_sub(cache.ordinary_bytes())
            .saturating_sub(fetch.inflight.borrow().chunk_bytes())
    };
    // Groups left unread (`ReadError::NotRead`): past `chunk_groups_max` groups missing chunks.
    let mut deferred = vec![false; groups.len()];
    let mut chunk_groups = 0_usize;
    let mut found: Vec<Vec<Cached>> = {
        let mut cache = fetch.cache.borrow_mut();
        groups
            .iter()
            .zip(deferred.iter_mut())
            .map(|(wants, deferred)| {
                let mut group_misses = Vec::new();
                let cached: Vec<Cached> = wants
                    .iter()
                    .map(|want| {
                        let seq = want.entry.seq;
                        if want.chunk == 0 {
                            return Cached::Exact(cache.get(seq, want.from..want.to));
                        }
                        let (slices, covered) = cache.get_prefix(seq, want.from..want.to);
                        let end = entry_end(&want.entry);
                        let mut later = Vec::new();
                        let mut position = covered;
                        while position < want.to {
                            let next = cache.next_piece_start(seq, position);
                            let spans = chunk_spans(position, want.to, end, want.chunk, next);
                            let Some(read_to) = spans.last().map(|span| span.end) else {
                                break;
                            };
                            group_misses.extend(spans.into_iter().map(|span| (seq, span)));
                            if read_to >= want.to {
                                break;
                            }
                            // The spans stop where a cached piece starts (a chunk evicted before
                            // one after it): its bytes are taken now, and the gaps past it read.
                            let (more, more_end) = cache.get_prefix(seq, read_to..want.to);
                            if more_end <= read_to {
                                break;
                            }
                            later.push((read_to, more));
                            position = more_end;
                        }
                        Cached::Prefix {
                            slices,
                            covered,
                            later,
                        }
                    })
                    .collect();
                if !group_misses.is_empty() {
                    let miss_bytes: u64 = group_misses
                        .iter()
                        .map(|(_, span)| span.end - span.start)
                        .sum();
                    if chunk_groups >= chunk_groups_max || (room_only && miss_bytes > room) {
                        *deferred = true;
                        return Vec::new();
                    }
                    room = room.saturating_sub(miss_bytes);
                    chunk_groups += 1;
                    chunk_misses.extend(group_misses);
                }
                cached
            })
            .collect()
    };
    // Misses that a GET in flight covers wait for it (single-flight).
    let mut joined: Vec<(LogSeq, InflightRead)> = Vec::new();
    let mut join = |seq: LogSeq, range: &Range<u64>| -> bool {
        let Some(inflight) = fetch.inflight.borrow_mut().covering(seq, range) else {
            return false;
        };
        if !joined
            .iter()
            .any(|(joined_seq, read)| *joined_seq == seq && read.id == inflight.id)
        {
            joined.push((seq, inflight));
        }
        true
    };
    // Missing exact ranges, by object then start.
    let mut misses: Vec<(LogSeq, Range<u64>)> = Vec::new();
    for ((wants, cached), _) in groups
        .iter()
        .zip(&found)
        .zip(&deferred)
        .filter(|(_, deferred)| !**deferred)
    {
        for (want, cached) in wants.iter().zip(cached) {
            if matches!(cached, Cached::Exact(None))
                && want.to > want.from
                && !join(want.entry.seq, &(want.from..want.to))
            {
                misses.push((want.entry.seq, want.from..want.to));
            }
        }
    }
    misses.sort_by_key(|(seq, range)| (*seq, range.start));
    misses.dedup();
    let mut spans: Vec<(LogSeq, Range<u64>)> = Vec::new();
    for (seq, range) in misses {
        match spans.last_mut() {
            Some((span_seq, span))
                if *span_seq == seq
                    && range.start <= span.end.saturating_add(COALESCE_GAP_BYTES_MAX)
                    && range.end.max(span.end) - span.start <= COALESCED_GET_BYTES_MAX =>
            {
                span.end = span.end.max(range.end);
            }
            _ => spans.push((seq, range)),
        }
    }
    // Chunks: the same partition asked twice in one read would ask for the same chunk; spans of
    // one object never overlap (exact ranges and chunked entries are different entries, and a
    // coalescing gap is smaller than any chunked entry).
    chunk_misses.retain(|(seq, range)| !join(*seq, range));
    chunk_misses.sort_by_key(|(seq, range)| (*seq, range.start));
    let mut chunks: Vec<(LogSeq, Range<u64>)> = Vec::new();
    for (seq, range) in chunk_misses {
        match chunks.last_mut() {
            Some((last_seq, last)) if *last_seq == seq && range.start < last.end => {
                last.end = last.end.max(range.end);
            }
            _ => chunks.push((seq, range)),
        }
    }
    // Every GET this read starts, registered until it returns (or this read is dropped).
    let mut guard = InflightGuard {
        reads: &fetch.inflight,
        started: Vec::new(),
    };
    let mut reads: Vec<(LogSeq, InflightRead)> = Vec::new();
    for ((seq, range), chunk) in spans
        .into_iter()
        .map(|span| (span, false))
        .chain(chunks.into_iter().map(|span| (span, true)))
    {
        tracing::debug!(
            object = seq.0,
            start = range.start,
            bytes = range.end - range.start,
            chunk,
            ahead = room_only,
            "fetch GET"
        );
        let read = get_range(Arc::clone(store), seq, range.clone())
            .boxed_local()
            .shared();
        let inflight = fetch.inflight.borrow_mut().start(seq, range, chunk, read);
        guard.started.push((seq, inflight.id));
        reads.push((seq, inflight));
    }
    let started = reads.len();
    reads.extend(joined);
    reads.sort_by_key(|(seq, inflight)| (*seq, inflight.range.start));
    let read: Vec<Result<Bytes, ReadError>> =
        futures::future::join_all(reads.iter().map(|(_, inflight)| inflight.read.clone())).await;
    let mut count = ReadCount::default();
    {
        let mut cache = fetch.cache.borrow_mut();
        for ((seq, inflight), bytes) in reads.iter().zip(&read) {
            let Ok(bytes) = bytes else { continue };
            if guard.started.contains(&(*seq, inflight.id)) {
                count.gets += 1;
                count.bytes += bytes.len() as u64;
            }
            // A chunk is cached whole, as one piece (a second insert of it is dropped).
            if inflight.chunk {
                cache.insert(*seq, inflight.range.start, bytes.clone());
            }
        }
    }
    debug_assert!(count.gets <= started as u64);
    drop(guard);
    let spans: Vec<(LogSeq, Range<u64>)> = reads
        .iter()
        .map(|(seq, inflight)| (*seq, inflight.range.clone()))
        .collect();

    let mut results = Vec::with_capacity(groups.len());
    for ((wants, cached), deferred) in groups.iter().zip(&mut found).zip(&deferred) {
        if *deferred {
            results.push(Err(ReadError::NotRead));
            continue;
        }
        let mut parts = Vec::with_capacity(wants.len());
        let mut failed = None;
        for (want, cached) in wants.iter().zip(cached.iter_mut()) {
            let slices = match cached {
                Cached::Exact(Some(slices)) => Ok(std::mem::take(slices)),
                Cached::Exact(None) => {
                    slices_of_spans(&spans, &read, want.entry.seq, want.from..want.to).inspect(
                        |slices| {
                            let mut cache = fetch.cache.borrow_mut();
                            let mut start = want.from;
                            for slice in slices {
                                cache.insert(want.entry.seq, start, slice.clone());
                                start += slice.len() as u64;
                            }
                        },
                    )
                }
                Cached::Prefix {
                    slices, covered, ..
                } if *covered >= want.to => Ok(std::mem::take(slices)),
                Cached::Prefix {
                    slices,
                    covered,
                    later,
                } => {
                    let mut all = std::mem::take(slices);
                    let mut position = *covered;
                    let mut failed = None;
                    let ends = std::mem::take(later)
                        .into_iter()
                        .chain(std::iter::once((want.to, Vec::new())));
                    for (start, cached) in ends {
                        if position < start {
                            match slices_of_spans(&spans, &read, want.entry.seq, position..start) {
                                Ok(more) => all.extend(more),
                                Err(error) => {
                                    failed = Some(error);
                                    break;
                                }
                            }
                        }
                        position =
                            start + cached.iter().map(|slice| slice.len() as u64).sum::<u64>();
                        all.extend(cached);
                    }
                    match failed {
                        Some(error) => Err(error),
                        None => Ok(all),
                    }
                }
            };
            match slices {
                Ok(slices) => parts.push(want.part(slices)),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        results.push(match failed {
            Some(error) => Err(error),
            None => Ok(parts),
        });
    }
    (results, count)
}

/// One ranged GET of `range` of object `seq`, checked for length.
async fn get_range(
    store: Arc<dyn ObjectStorage>,
    seq: LogSeq,
    range: Range<u64>,
) -> Result<Bytes, ReadError> {
    let key = object_key(seq);
    let bytes = store
        .get_range(&key, range.clone())
        .await
        .map_err(|error| ReadError::Store {
            key: key.clone(),
            start: range.start,
            end: range.end,
            reason: error.to_string(),
        })?;
    if bytes.len() as u64 != range.end - range.start {
        return Err(ReadError::ShortRead {
            key,
            start: range.start,
            end: range.end,
            got: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Reads `part` again up to `needed_end` (an [`AssembleError::Short`] answer: the first batch the
/// answer needs is longer than the budget-sized prefix that was read).
///
/// [`AssembleError::Short`]: sluice_engine::read::AssembleError::Short
pub async fn read_more(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    part: &SegmentPart,
    needed_end: u64,
) -> GroupRead {
    let want = Want {
        entry: part.entry,
        from: part.from,
        from_offset: part.from_offset,
        to: needed_end.clamp(part.from, entry_end(&part.entry)),
        chunk: chunk_bytes(fetch.agent_cache_bytes(), 1),
    };
    read_entries(fetch, store, &[want]).await
}

/// After an answer from `parts` at `fetch_offset`: remembers where the partition's next fetch
/// starts inside a compacted entry (and forgets the position this one used), and demotes the
/// cached chunks of compacted entries the answer went past, so that the cache evicts them before
/// the chunks other partitions are still reading.
pub fn note_answer(
    fetch: &FetchCore,
    parts: &[SegmentPart],
    fetch_offset: u64,
    assembled: &AssembledRecords,
) {
    if assembled.next_offset <= fetch_offset {
        return;
    }
    let used = parts
        .first()
        .filter(|part| part.from > part.entry.byte_start && part.from_offset == fetch_offset)
        .map(|part| (part.entry.seq, part.entry.byte_start, fetch_offset));
    // The entry holding the next batch (its position is inside that entry).
    let next = assembled.next_position.and_then(|(seq, position)| {
        let part = parts.iter().find(|part| {
            part.entry.seq == seq
                && (part.entry.byte_start..entry_end(&part.entry)).contains(&position)
        })?;
        is_compacted_object(seq).then_some((
            (seq, part.entry.byte_start, assembled.next_offset),
            position,
        ))
    });
    if used.is_some() || next.is_some() {
        fetch.positions.borrow_mut().advance(used, next);
    }
    for part in parts {
        let entry = &part.entry;
        if !is_compacted_object(entry.seq) {
            continue;
        }
        let went_past = match assembled.next_position {
            Some((seq, position)) if seq == entry.seq && position <= entry_end(entry) => position,
            _ if assembled.next_offset >= entry.end_offset => entry_end(entry),
            _ => continue,
        };
        // The chunk is cached on the core that owns the entry.
        match &fetch.owners {
            Some(owners) if owners.owner(entry) != owners.index() => {
                owners.demote_on(owners.owner(entry), entry.seq, entry.byte_start..went_past);
            }
            _ => fetch
                .cache
                .borrow_mut()
                .demote(entry.seq, entry.byte_start..went_past),
        }
    }
}

/// The bytes of `range` of object `seq` out of the GETs whose spans hold it (zero-copy slices;
/// one per span it crosses).
fn slices_of_spans(
    spans: &[(LogSeq, Range<u64>)],
    read: &[Result<Bytes, ReadError>],
    seq: LogSeq,
    range: Range<u64>,
) -> Result<Vec<Bytes>, ReadError> {
    let mut slices = Vec::new();
    let mut position = range.start;
    while position < range.end {
        // Spans are sorted by (object, start); a GET joined in flight may overlap one started
        // here, so look back through the object's spans that start at or before the position.
        let after =
            spans.partition_point(|(span_seq, span)| (*span_seq, span.start) <= (seq, position));
        let holding = (0..after)
            .rev()
            .map_while(|index| {
                let span = spans.get(index).filter(|(span_seq, _)| *span_seq == seq)?;
                Some((span, read.get(index)?))
            })
            .find(|((_, span), _)| position < span.end);
        let Some(((_, span), bytes)) = holding else {
            return Err(ReadError::Store {
                key: object_key(seq),
                start: position,
                end: range.end,
                reason: "no read covers this range (a bug)".to_owned(),
            });
        };
        let bytes = bytes.as_ref().map_err(Clone::clone)?;
        let end = range.end.min(span.end);
        let from = usize::try_from(position - span.start).unwrap_or(usize::MAX);
        let to = usize::try_from(end - span.start).unwrap_or(usize::MAX);
        if to > bytes.len() {
            return Err(ReadError::ShortRead {
                key: object_key(seq),
                start: position,
                end,
                got: bytes.len() as u64,
            });
        }
        slices.push(bytes.slice(from..to));
        position = end;
    }
    Ok(slices)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use futures::executor::block_on;
    use sluice_engine::store::{ObjectInfo, StoreError, StoreResult};

    use super::*;
    use sluice_engine::types::log_key;

    /// Objects in memory; records every ranged GET.
    #[derive(Debug, Default)]
    struct Objects {
        objects: HashMap<String, Bytes>,
        gets: Mutex<Vec<(String, std::ops::Range<u64>)>>,
    }

    #[async_trait::async_trait]
    impl ObjectStorage for Objects {
        async fn put_create(&self, _: &str, _: Vec<Bytes>) -> StoreResult<()> {
            unimplemented!()
        }
        async fn get(&self, _: &str) -> StoreResult<Bytes> {
            unimplemented!()
        }
        async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
            self.gets
                .lock()
                .unwrap()
                .push((key.to_owned(), range.clone()));
            match self.objects.get(key) {
                Some(bytes) => Ok(bytes.slice(range.start as usize..range.end as usize)),
                None => Err(StoreError::NotFound {
                    key: key.to_owned(),
                }),
            }
        }
        async fn get_tail(&self, _: &str, _: u64) -> StoreResult<(Bytes, u64)> {
            unimplemented!()
        }
        async fn head(&self, _: &str) -> StoreResult<ObjectInfo> {
            unimplemented!()
        }
        async fn list(&self, _: &str, _: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            unimplemented!()
        }
    }

    fn entry(seq: u64, start: u64, len: u64) -> IndexEntry {
        IndexEntry {
            base_offset: start,
            end_offset: start + 1,
            seq: LogSeq(seq),
            byte_start: start,
            byte_len: len,
            max_timestamp: 0,
        }
    }

    fn joined(parts: &[SegmentPart]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|part| part.slices.iter().flat_map(|slice| slice.to_vec()))
            .collect()
    }

    fn whole(entries: &[IndexEntry]) -> Vec<Want> {
        entries.iter().copied().map(Want::whole).collect()
    }

    #[test]
    fn segments_of_one_object_become_one_get_and_a_failure_stays_in_its_group() {
        let object: Bytes = (0..2_000_u32)
            .map(|index| index as u8)
            .collect::<Vec<u8>>()
            .into();
        let gap = COALESCE_GAP_BYTES_MAX as usize;
        let far: Bytes = vec![7_u8; gap + 100].into();
        let mut objects = Objects::default();
        objects.objects.insert(log_key(LogSeq(1)), object.clone());
        objects.objects.insert(log_key(LogSeq(3)), far);
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default();

        let first = [entry(1, 0, 100), entry(1, 100, 200)];
        let second = [entry(1, 350, 50)];
        let missing = [entry(2, 0, 10)];
        let apart = [entry(3, 0, 10), entry(3, gap as u64 + 50, 10)];
        let (first, second, missing, apart) = (
            whole(&first),
            whole(&second),
            whole(&missing),
            whole(&apart),
        );
        let groups: [&[Want]; 4] = [&first, &second, &missing, &apart];
        let read = block_on(read_groups(&fetch, &store, &groups));
        assert_eq!(joined(read[0].as_ref().unwrap()), object[0..300].to_vec());
        assert_eq!(joined(read[1].as_ref().unwrap()), object[350..400].to_vec());
        assert!(matches!(&read[2], Err(ReadError::Store { key, .. }) if key.ends_with("02")));
        assert_eq!(joined(read[3].as_ref().unwrap()), vec![7_u8; 20]);
        let gets = objects.gets.lock().unwrap().clone();
        assert_eq!(
            gets.iter()
                .filter(|(key, _)| key.ends_with("01"))
                .map(|(_, range)| range.clone())
                .collect::<Vec<_>>(),
            vec![0..400],
            "one GET for object 1, its 50-byte gap included"
        );
        assert_eq!(
            gets.iter().filter(|(key, _)| key.ends_with("03")).count(),
            2,
            "a gap too large to read"
        );

        // Now cached: no more GETs, same bytes.
        let again = block_on(read_entries(&fetch, &store, &first)).unwrap();
        assert_eq!(joined(&again), object[0..300].to_vec());
        assert_eq!(objects.gets.lock().unwrap().len(), gets.len());
        assert_eq!(fetch.store_reads().0, 3);
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn chunks_are_at_least_a_chunk_long_and_stop_at_the_entry_and_the_cache() {
        // From the miss to the wanted end, rounded up to whole chunks.
        assert_eq!(
            chunk_spans(0, MIB, 32 * MIB, 4 * MIB, None),
            vec![0..4 * MIB]
        );
        assert_eq!(
            chunk_spans(MIB, 9 * MIB, 32 * MIB, 4 * MIB, None),
            vec![MIB..5 * MIB, 5 * MIB..9 * MIB]
        );
        // A tail shorter than a chunk joins the last chunk: no GET under a chunk.
        assert_eq!(
            chunk_spans(28 * MIB, 29 * MIB, 31 * MIB, 4 * MIB, None),
            vec![28 * MIB..31 * MIB]
        );
        assert_eq!(
            chunk_spans(24 * MIB, 25 * MIB, 31 * MIB, 4 * MIB, None),
            vec![24 * MIB..31 * MIB]
        );
        // Never into a cached piece; nothing when the miss is already past `to`.
        assert_eq!(
            chunk_spans(0, MIB, 32 * MIB, 4 * MIB, Some(2 * MIB)),
            vec![0..2 * MIB]
        );
        assert!(chunk_spans(5, 5, 32 * MIB, 4 * MIB, None).is_empty());
        // The whole entry (no position known): whole chunks to its end.
        let all = chunk_spans(0, 18 * MIB, 18 * MIB, 4 * MIB, None);
        assert_eq!(all.len(), 4);
        assert_eq!(all.last(), Some(&(12 * MIB..18 * MIB)));
    }

    #[test]
    fn the_chunk_is_the_caches_share_per_partition_halved() {
        assert_eq!(chunk_bytes(256 * MIB, 1), CHUNK_BYTES_MAX);
        assert_eq!(chunk_bytes(256 * MIB, 32), 4 * MIB);
        assert_eq!(chunk_bytes(256 * MIB, 64), 2 * MIB);
        assert_eq!(chunk_bytes(512 * MIB, 64), 4 * MIB);
        assert_eq!(chunk_bytes(256 * MIB, 10_000), CHUNK_BYTES_MIN);
        assert_eq!(chunk_bytes(0, 0), CHUNK_BYTES_MIN);
    }

    #[test]
    fn large_compacted_entries_are_wanted_from_the_remembered_batch_for_the_budget() {
        let compacted = sluice_engine::types::compacted_object_id(3, 1);
        let big = IndexEntry {
            base_offset: 100,
            end_offset: 200,
            seq: compacted,
            byte_start: 64,
            byte_len: 30 * MIB,
            max_timestamp: 0,
        };
        let next = IndexEntry {
            base_offset: 200,
            byte_start: 64 + 30 * MIB,
            byte_len: MIB / 2,
            end_offset: 210,
            ..big
        };
        let window = entry(7, 0, 10 * MIB);
        let mut positions = Positions::default();
        // From the entry's start: a budget-sized prefix; the small entry after it whole.
        let from_start = wants(&positions, &[big, next], 100, MIB, 4 * MIB);
        assert_eq!((from_start[0].from, from_start[0].to), (64, 64 + MIB));
        assert_eq!(from_start[0].chunk, 4 * MIB);
        assert_eq!(from_start[1], Want::whole(next));
        // Inside it with no position known: all of it, once.
        let unknown = wants(&positions, &[big], 150, MIB, 4 * MIB);
        assert_eq!((unknown[0].from, unknown[0].to), (64, 64 + 30 * MIB));
        // With one: from there.
        positions.advance(None, Some(((compacted, 64, 150), 64 + 7 * MIB)));
        // Another partition's entry in the same object, at the same offset: its own position.
        let neighbour = IndexEntry {
            byte_start: 64 + 31 * MIB,
            ..big
        };
        positions.advance(
            None,
            Some(((compacted, neighbour.byte_start, 150), 64 + 33 * MIB)),
        );
        let theirs = wants(&positions, &[neighbour], 150, MIB, 4 * MIB);
        assert_eq!(theirs[0].from, 64 + 33 * MIB);
        let known = wants(&positions, &[big], 150, MIB, 4 * MIB);
        assert_eq!(
            (known[0].from, known[0].from_offset, known[0].to),
            (64 + 7 * MIB, 150, 64 + 8 * MIB)
        );
        positions.advance(
            Some((compacted, 64, 150)),
            Some(((compacted, 64, 160), 64 + 8 * MIB)),
        );
        assert_eq!(positions.get((compacted, 64, 150)), None);
        assert_eq!(
            positions.get((compacted, neighbour.byte_start, 150)),
            Some(64 + 33 * MIB)
        );
        assert_eq!(positions.len(), 2);
        // A window object's entry, and a compacted one no larger than a chunk, are read whole.
        assert_eq!(
            wants(&positions, &[window], 5, MIB, 4 * MIB),
            vec![Want::whole(window)]
        );
        assert_eq!(
            wants(&positions, &[next], 205, MIB, 4 * MIB),
            vec![Want::whole(next)]
        );
    }

    /// A compacted object holding one partition's batches of `batch_bytes` each after a 64-byte
    /// stand-in header: (the object, its index entry).
    fn compacted_partition(batches: usize, batch_bytes: usize) -> (Bytes, IndexEntry) {
        use sluice_engine::batch::BatchBuilder;
        let mut object = vec![0_u8; 64];
        for index in 0..batches {
            let value = vec![index as u8; batch_bytes];
            object.extend_from_slice(&BatchBuilder::new(1_000).record(0, None, &value).encode());
        }
        let entry = IndexEntry {
            base_offset: 0,
            end_offset: batches as u64,
            seq: sluice_engine::types::compacted_object_id(1, 0),
            byte_start: 64,
            byte_len: object.len() as u64 - 64,
            max_timestamp: 0,
        };
        (object.into(), entry)
    }

    /// Replays one partition of a ~30 MiB compacted entry with 1 MiB fetches (a consumer's
    /// loop: wants, read, assemble, remember): every offset once, in order, each byte read once,
    /// and at most one GET per 4 MiB.
    #[test]
    fn a_sequential_replay_of_a_compacted_entry_reads_each_chunk_once() {
        use sluice_engine::read::assemble_parts;
        let (object, entry) = compacted_partition(480, 64 * 1024);
        let mut objects = Objects::default();
        objects.objects.insert(object_key(entry.seq), object);
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default(); // a 64 MiB cache
        let chunk = chunk_bytes(fetch.cache.borrow().capacity_bytes(), 1);
        assert_eq!(chunk, 4 * MIB);
        let mut offset = 0;
        let mut fetches = 0;
        while offset < entry.end_offset {
            let wanted = wants(&fetch.positions.borrow(), &[entry], offset, MIB, chunk);
            let parts = block_on(read_entries(&fetch, &store, &wanted)).unwrap();
            let assembled = assemble_parts(&parts, offset, MIB as usize, 0).unwrap();
            let first =
                sluice_engine::batch::split_batches(assembled.records.to_bytes(), usize::MAX)
                    .unwrap()[0]
                    .0
                    .base_offset;
            assert_eq!(first as u64, offset, "each fetch starts at its offset");
            assert!(assembled.records.len() as u64 <= MIB);
            note_answer(&fetch, &parts, offset, &assembled);
            offset = assembled.next_offset;
            fetches += 1;
        }
        assert!(fetches >= 30, "1 MiB at a time: {fetches}");
        let gets = objects.gets.lock().unwrap().clone();
        let (count, bytes) = fetch.store_reads();
        assert_eq!(bytes, entry.byte_len, "every byte read once: {gets:?}");
        assert!(
            count <= entry.byte_len / (4 * MIB),
            "{count} GETs for {} bytes",
            entry.byte_len
        );
        assert!(
            gets.iter()
                .all(|(_, range)| range.end - range.start >= 4 * MIB)
        );
        // The chunks read past were demoted: the next insert would evict them first, and no
        // position is left but none (the partition ended).
        assert!(fetch.positions.borrow().is_empty());
    }

    /// The same replay with a read-ahead after each answer (what the next fetch wants) and a read
    /// of the chunk past it ([`lead_wants`]), as the handler runs them: after the first fetch,
    /// neither the fetches nor their read-aheads (which a fetch waits for) make a GET; every GET
    /// is a lead read of a next chunk, at least 4 MiB, and every byte is still read once.
    #[test]
    fn reading_the_next_chunk_ahead_leaves_fetches_and_read_aheads_no_get() {
        use sluice_engine::read::assemble_parts;
        let (object, entry) = compacted_partition(480, 64 * 1024);
        let mut objects = Objects::default();
        objects.objects.insert(object_key(entry.seq), object);
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default();
        let chunk = chunk_bytes(fetch.cache.borrow().capacity_bytes(), 1);
        let gets = |fetch: &FetchCore| fetch.store_reads().0;
        let mut offset = 0;
        let mut fetches = 0;
        let mut lead_gets = 0;
        while offset < entry.end_offset {
            let before = gets(&fetch);
            let wanted = wants(&fetch.positions.borrow(), &[entry], offset, MIB, chunk);
            let parts = block_on(read_entries(&fetch, &store, &wanted)).unwrap();
            if fetches > 0 {
                assert_eq!(gets(&fetch), before, "fetch {fetches} read the store");
            }
            let assembled = assemble_parts(&parts, offset, MIB as usize, 0).unwrap();
            note_answer(&fetch, &parts, offset, &assembled);
            offset = assembled.next_offset;
            fetches += 1;
            if offset >= entry.end_offset {
                break;
            }
            // The read-ahead for the next fetch, then the chunk past it.
            let before = gets(&fetch);
            let next = wants(&fetch.positions.borrow(), &[entry], offset, MIB, chunk);
            block_on(read_entries(&fetch, &store, &next)).unwrap();
            if fetches > 1 {
                assert_eq!(gets(&fetch), before, "read-ahead {fetches} read the store");
            }
            let before = gets(&fetch);
            let lead = lead_wants(&next, None, chunk);
            assert!(lead.iter().all(|want| want.to - want.from <= chunk));
            block_on(read_entries(&fetch, &store, &lead)).unwrap();
            lead_gets += gets(&fetch) - before;
        }
        assert!(fetches >= 30, "1 MiB at a time: {fetches}");
        let (count, bytes) = fetch.store_reads();
        assert_eq!(bytes, entry.byte_len, "every byte read once");
        assert!(count <= entry.byte_len / (4 * MIB), "{count} GETs");
        assert!(
            lead_gets + 2 >= count,
            "{lead_gets} of {count} GETs read ahead"
        );
        let all = objects.gets.lock().unwrap().clone();
        assert!(
            all.iter()
                .all(|(_, range)| range.end - range.start >= 4 * MIB),
            "{all:?}"
        );
    }

    /// A partition that goes on from one large compacted entry into another (a replay crossing
    /// from one compacted object into the next): the lead that reaches the first entry's end also
    /// reads the next entry's first chunk, so neither the fetch that crosses nor its read-ahead
    /// makes a GET, and the first chunk is read once, as the span the fetch would have read.
    #[test]
    fn the_lead_reaches_into_the_next_compacted_entry() {
        use sluice_engine::read::assemble_parts;
        let (first_object, first) = compacted_partition(480, 64 * 1024);
        let (second_object, mut second) = compacted_partition(480, 64 * 1024);
        second.seq = sluice_engine::types::compacted_object_id(2, 0);
        second.base_offset = first.end_offset;
        second.end_offset = first.end_offset + 480;
        let mut objects = Objects::default();
        objects.objects.insert(object_key(first.seq), first_object);
        objects
            .objects
            .insert(object_key(second.seq), second_object);
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default();
        let chunk = chunk_bytes(fetch.cache.borrow().capacity_bytes(), 1);
        // What the plan keeps for a fetch at `offset` (the 1 MiB budget is covered by the entry
        // holding it), and the entry after it.
        let planned = |offset: u64| {
            if offset < first.end_offset {
                (first, Some(second))
            } else {
                (second, None)
            }
        };
        let gets = |fetch: &FetchCore| fetch.store_reads().0;
        let mut offset = 0;
        let mut fetches = 0;
        let mut crossed = false;
        while offset < second.end_offset {
            let (entry, _) = planned(offset);
            crossed |= entry == second;
            let before = gets(&fetch);
            let wanted = wants(&fetch.positions.borrow(), &[entry], offset, MIB, chunk);
            let parts = block_on(read_entries(&fetch, &store, &wanted)).unwrap();
            if fetches > 0 {
                assert_eq!(
                    gets(&fetch),
                    before,
                    "fetch {fetches} at {offset} read the store"
                );
            }
            let assembled = assemble_parts(&parts, offset, MIB as usize, 0).unwrap();
            note_answer(&fetch, &parts, offset, &assembled);
            offset = assembled.next_offset;
            fetches += 1;
            if offset >= second.end_offset {
                break;
            }
            let (entry, next) = planned(offset);
            let before = gets(&fetch);
            let ahead = wants(&fetch.positions.borrow(), &[entry], offset, MIB, chunk);
            block_on(read_entries(&fetch, &store, &ahead)).unwrap();
            if fetches > 1 {
                assert_eq!(
                    gets(&fetch),
                    before,
                    "read-ahead {fetches} at {offset} read the store"
                );
            }
            let lead = lead_wants(&ahead, next, chunk);
            assert!(lead.iter().all(|want| want.to - want.from <= chunk));
            block_on(read_entries(&fetch, &store, &lead)).unwrap();
        }
        assert!(crossed && fetches >= 60, "{fetches} fetches");
        let (count, bytes) = fetch.store_reads();
        assert_eq!(
            bytes,
            first.byte_len + second.byte_len,
            "every byte read once"
        );
        assert!(
            count <= (first.byte_len + second.byte_len) / (4 * MIB),
            "{count} GETs"
        );
        let all = objects.gets.lock().unwrap().clone();
        assert!(
            all.iter().any(|(key, range)| *key == object_key(second.seq)
                && *range == (second.byte_start..second.byte_start + chunk)),
            "the next entry's first chunk, as the fetch reads it: {all:?}"
        );
        // No lead past the entry's end without a next entry, nor into a small or window one.
        let last = Want {
            from: first.byte_start + first.byte_len - chunk,
            ..Want::whole(first)
        };
        let last = Want { chunk, ..last };
        assert_eq!(lead_wants(&[last], None, chunk), Vec::new());
        let small = IndexEntry {
            byte_len: chunk,
            ..second
        };
        assert_eq!(lead_wants(&[last], Some(small), chunk), Vec::new());
        let window = IndexEntry {
            seq: LogSeq(9),
            ..second
        };
        assert_eq!(lead_wants(&[last], Some(window), chunk), Vec::new());
        // Nor while the last want's lead stays inside its own entry.
        let early = Want {
            to: first.byte_start + chunk,
            from: first.byte_start,
            ..last
        };
        assert!(
            lead_wants(&[early], Some(second), chunk)
                .iter()
                .all(|want| want.entry == first)
        );
    }

    /// A read of many partitions that all miss chunks waits for the first
    /// [`CHUNK_GROUPS_AWAITED_MAX`] of them: the others are answered `NotRead` and cost no GET
    /// (their read-ahead reads them); a window object's exact range after them is still read, and
    /// the next read serves the first ones from the cache and reads the rest.
    #[test]
    fn a_read_waits_for_the_chunks_of_a_bounded_number_of_partitions() {
        let partitions = CHUNK_GROUPS_AWAITED_MAX as u32 + 4;
        let mut objects = Objects::default();
        let mut entries = Vec::new();
        for partition in 0..partitions {
            let (object, mut entry) = compacted_partition(160, 64 * 1024);
            entry.seq = sluice_engine::types::compacted_object_id(1, partition);
            objects.objects.insert(object_key(entry.seq), object);
            entries.push(entry);
        }
        let window: Bytes = vec![7_u8; 3_000].into();
        objects.objects.insert(log_key(LogSeq(1)), window);
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default();
        let chunk = 4 * MIB;
        let mut wanted: Vec<Vec<Want>> = entries
            .iter()
            .map(|entry| wants(&fetch.positions.borrow(), &[*entry], 0, MIB, chunk))
            .collect();
        wanted.push(whole(&[entry(1, 0, 1_000)]));
        let groups: Vec<&[Want]> = wanted.iter().map(Vec::as_slice).collect();
        let read = block_on(read_groups_awaiting(
            &fetch,
            &store,
            &groups,
            CHUNK_GROUPS_AWAITED_MAX,
            false,
        ));
        let (done, rest) = read.split_at(CHUNK_GROUPS_AWAITED_MAX);
        assert!(done.iter().all(Result::is_ok));
        let (not_read, window) = rest.split_at(rest.len() - 1);
        assert!(
            not_read
                .iter()
                .all(|read| matches!(read, Err(ReadError::NotRead)))
        );
        assert_eq!(joined(window[0].as_ref().unwrap()), vec![7_u8; 1_000]);
        assert_eq!(
            fetch.store_reads().0,
            CHUNK_GROUPS_AWAITED_MAX as u64 + 1,
            "a GET per partition read and one for the window object"
        );
        // Again: the first ones are cached, the rest are read now.
        let read = block_on(read_groups_awaiting(
            &fetch,
            &store,
            &groups,
            CHUNK_GROUPS_AWAITED_MAX,
            false,
        ));
        assert!(read.iter().all(Result::is_ok));
        assert_eq!(
            fetch.store_reads().0,
            u64::from(partitions) + 1,
            "each partition's chunk read once"
        );
    }

    /// A read of next chunks (`room_only`) takes only the chunks that fit beside the cache's
    /// bytes in use (not demoted): with a 40 MiB cache holding 24 MiB of current chunks, two of
    /// four 8 MiB chunks are read and two are `NotRead`; once the current chunks are demoted (read
    /// past), the other two fit.
    #[test]
    fn reading_ahead_never_evicts_chunks_in_use() {
        let mut objects = Objects::default();
        let mut entries = Vec::new();
        for partition in 0..4 {
            let (object, mut entry) = compacted_partition(400, 64 * 1024);
            entry.seq = sluice_engine::types::compacted_object_id(2, partition);
            objects.objects.insert(object_key(entry.seq), object);
            entries.push(entry);
        }
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::new(crate::fetch::FetchConfig {
            block_cache_bytes_max: 40 * MIB,
            ..Default::default()
        });
        // Three partitions' current 8 MiB chunks are cached (24 MiB in use).
        let current: Vec<Vec<Want>> = entries[..3]
            .iter()
            .map(|entry| wants(&Positions::default(), &[*entry], 0, MIB, 8 * MIB))
            .collect();
        let groups: Vec<&[Want]> = current.iter().map(Vec::as_slice).collect();
        assert!(
            block_on(read_groups(&fetch, &store, &groups))
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(fetch.cache.borrow().ordinary_bytes(), 24 * MIB);
        // The next chunk of each of the four: 8 MiB each, 16 MiB of room.
        let next: Vec<Vec<Want>> = entries
            .iter()
            .map(|entry| {
                let mut want = wants(&Positions::default(), &[*entry], 0, MIB, 8 * MIB);
                want[0].from = entry.byte_start + 8 * MIB;
                want[0].to = entry.byte_start + 9 * MIB;
                want
            })
            .collect();
        let groups: Vec<&[Want]> = next.iter().map(Vec::as_slice).collect();
        let read = block_on(read_groups_awaiting(
            &fetch,
            &store,
            &groups,
            usize::MAX,
            true,
        ));
        let not_read = read
            .iter()
            .filter(|read| matches!(read, Err(ReadError::NotRead)))
            .count();
        assert_eq!(not_read, 2, "{read:?}");
        assert_eq!(fetch.cache.borrow().stats().evicted_bytes, 0);
        assert!(fetch.cache.borrow().used_bytes() <= 40 * MIB);
        // The current chunks are read past: demoted, they leave room for the rest.
        for entry in &entries[..3] {
            fetch
                .cache
                .borrow_mut()
                .demote(entry.seq, entry.byte_start..entry.byte_start + 8 * MIB);
        }
        let read = block_on(read_groups_awaiting(
            &fetch,
            &store,
            &groups,
            usize::MAX,
            true,
        ));
        assert!(read.iter().all(Result::is_ok), "{read:?}");
    }

    /// Many partitions replayed at once from one small cache: chunks shrink to the cache's
    /// share, and no chunk is read twice (a cache that evicted chunks still being read would
    /// read them again).
    #[test]
    fn many_partitions_share_the_cache_without_reading_a_chunk_twice() {
        use sluice_engine::read::assemble_parts;
        let partitions = 8;
        let mut objects = Objects::default();
        let mut entries = Vec::new();
        for partition in 0..partitions {
            let (object, mut entry) = compacted_partition(160, 64 * 1024);
            entry.seq = sluice_engine::types::compacted_object_id(1, partition);
            objects.objects.insert(object_key(entry.seq), object);
            entries.push(entry);
        }
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::new(crate::fetch::FetchConfig {
            block_cache_bytes_max: 40 * MIB,
            ..Default::default()
        });
        let chunk = chunk_bytes(40 * MIB, partitions as usize);
        assert!(chunk < 4 * MIB);
        let mut offsets = vec![0_u64; entries.len()];
        while offsets
            .iter()
            .zip(&entries)
            .any(|(offset, entry)| *offset < entry.end_offset)
        {
            let wanted: Vec<Vec<Want>> = entries
                .iter()
                .zip(&offsets)
                .filter(|(entry, offset)| **offset < entry.end_offset)
                .map(|(entry, offset)| {
                    wants(&fetch.positions.borrow(), &[*entry], *offset, MIB, chunk)
                })
                .collect();
            let groups: Vec<&[Want]> = wanted.iter().map(Vec::as_slice).collect();
            let read = block_on(read_groups(&fetch, &store, &groups));
            for (parts, wanted) in read.into_iter().zip(&wanted) {
                let parts = parts.unwrap();
                let index = entries
                    .iter()
                    .position(|entry| *entry == wanted[0].entry)
                    .unwrap();
                let offset = offsets[index];
                let assembled = assemble_parts(&parts, offset, MIB as usize, 0).unwrap();
                note_answer(&fetch, &parts, offset, &assembled);
                offsets[index] = assembled.next_offset;
            }
        }
        let total: u64 = entries.iter().map(|entry| entry.byte_len).sum();
        assert_eq!(fetch.store_reads().1, total, "no chunk read twice");
        assert!(fetch.cache.borrow().used_bytes() <= 40 * MIB);
    }

    /// A chunked want whose cached bytes have a hole — a chunk evicted while the one after it
    /// stayed — reads only the hole and takes the rest from the cache: one GET of the missing
    /// bytes, not an error for the partition.
    #[test]
    fn a_chunk_evicted_before_the_next_one_is_read_again_alone() {
        let (object, entry) = compacted_partition(160, 64 * 1024);
        let mut objects = Objects::default();
        objects
            .objects
            .insert(object_key(entry.seq), object.clone());
        let objects = Arc::new(objects);
        let store: Arc<dyn ObjectStorage> = objects.clone();
        let fetch = FetchCore::default();
        let chunk = 4 * MIB;
        let start = entry.byte_start;
        // The first two chunks are cached, then the first is evicted (the cache over its budget;
        // demoted here only to make it the one that goes) while a fetch still reads from it.
        let piece = |from: u64, to: u64| object.slice(from as usize..to as usize);
        let mut cache = fetch.cache.borrow_mut();
        cache.insert(entry.seq, start, piece(start, start + chunk));
        cache.insert(
            entry.seq,
            start + chunk,
            piece(start + chunk, start + 2 * chunk),
        );
        cache.demote(entry.seq, start..start + chunk);
        cache.insert(LogSeq(9), 0, Bytes::from(vec![0_u8; 60 * MIB as usize]));
        assert!(cache.get(entry.seq, start..start + 1).is_none());
        assert!(
            cache
                .get(entry.seq, start + chunk..start + 2 * chunk)
                .is_some()
        );
        drop(cache);
        // A fetch from 3 MiB into the entry for 2 MiB: 1 MiB missing, 1 MiB cached.
        let want = Want {
            entry,
            from: start + 3 * MIB,
            from_offset: 0,
            to: start + 5 * MIB,
            chunk,
        };
        let read = block_on(read_entries(&fetch, &store, &[want])).expect("read");
        assert_eq!(
            joined(&read),
            object[(start + 3 * MIB) as usize..(start + 5 * MIB) as usize].to_vec()
        );
        let gets = objects.gets.lock().unwrap().clone();
        assert_eq!(
            gets.iter()
                .map(|(_, range)| range.clone())
                .collect::<Vec<_>>(),
            vec![start + 3 * MIB..start + chunk],
            "only the hole"
        );
        // Cached now: the same read makes no GET.
        block_on(read_entries(&fetch, &store, &[want])).unwrap();
        assert_eq!(objects.gets.lock().unwrap().len(), 1);
    }

    /// A store whose ranged GETs wait until the test opens the gate, counting them.
    #[derive(Debug)]
    struct Gated {
        inner: Arc<Objects>,
        gate: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
        gets: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl ObjectStorage for Gated {
        async fn put_create(&self, _: &str, _: Vec<Bytes>) -> StoreResult<()> {
            unimplemented!()
        }
        async fn get(&self, _: &str) -> StoreResult<Bytes> {
            unimplemented!()
        }
        async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = self.gate.clone().await;
            self.inner.get_range(key, range).await
        }
        async fn get_tail(&self, _: &str, _: u64) -> StoreResult<(Bytes, u64)> {
            unimplemented!()
        }
        async fn head(&self, _: &str) -> StoreResult<ObjectInfo> {
            unimplemented!()
        }
        async fn list(&self, _: &str, _: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            unimplemented!()
        }
    }

    /// Two reads that miss the same bytes while the first one's GET is in flight: the second
    /// waits for that GET (single-flight), for exact ranges and for a compacted entry's chunk
    /// alike; both get the same buffer, and the registry is empty afterwards.
    #[test]
    fn concurrent_misses_of_one_block_make_one_get() {
        let window: Bytes = (0..3_000_u32)
            .map(|index| index as u8)
            .collect::<Vec<u8>>()
            .into();
        let (compacted, big) = compacted_partition(160, 64 * 1024);
        let mut objects = Objects::default();
        objects.objects.insert(log_key(LogSeq(1)), window.clone());
        objects
            .objects
            .insert(object_key(big.seq), compacted.clone());
        let (open, gate) = futures::channel::oneshot::channel::<()>();
        let gated = Arc::new(Gated {
            inner: Arc::new(objects),
            gate: gate.shared(),
            gets: std::sync::atomic::AtomicU64::new(0),
        });
        let store: Arc<dyn ObjectStorage> = gated.clone();
        let fetch = FetchCore::default();
        let chunk = 4 * MIB;
        // Two partitions' segments of one window object (one coalesced GET) and the first
        // chunk of a compacted entry; then one segment of the window object and the same chunk.
        let mut first = whole(&[entry(1, 0, 1_000), entry(1, 1_000, 500)]);
        first.extend(wants(&Positions::default(), &[big], 0, MIB, chunk));
        let mut second = whole(&[entry(1, 1_000, 500)]);
        second.extend(wants(&Positions::default(), &[big], 0, MIB, chunk));
        block_on(async {
            let one = read_entries(&fetch, &store, &first);
            let two = read_entries(&fetch, &store, &second);
            futures::pin_mut!(one, two);
            assert!(futures::poll!(&mut one).is_pending());
            assert_eq!(gated.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
            assert!(futures::poll!(&mut two).is_pending());
            assert_eq!(
                gated.gets.load(std::sync::atomic::Ordering::SeqCst),
                2,
                "the second read joined both GETs in flight"
            );
            open.send(()).unwrap();
            let (one, two) = futures::join!(one, two);
            let (one, two) = (one.unwrap(), two.unwrap());
            assert_eq!(joined(&one[..2]), window[0..1_500].to_vec());
            assert_eq!(joined(&two[..1]), window[1_000..1_500].to_vec());
            // The same buffers: slices of the one GET.
            assert_eq!(one[1].slices[0].as_ptr(), two[0].slices[0].as_ptr());
            assert_eq!(one[2].slices[0].as_ptr(), two[1].slices[0].as_ptr());
            assert_eq!(joined(&two[1..]), compacted[64..64 + MIB as usize].to_vec());
        });
        assert_eq!(fetch.reads_joined(), 2);
        assert!(fetch.inflight.borrow().is_empty());
        let (count, _) = fetch.store_reads();
        assert_eq!(count, 2, "only the GETs started count");
        // Cached now: a third read makes no GET.
        let third = block_on(read_entries(&fetch, &store, &second)).unwrap();
        assert_eq!(joined(&third[..1]), window[1_000..1_500].to_vec());
        assert_eq!(gated.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// The chunk comes from the agent's whole budget: two cores of 256 MiB give a 64-partition
    /// replay 4 MiB chunks.
    #[test]
    fn the_chunk_is_sized_from_the_agents_whole_cache() {
        let (senders, _inboxes) = crate::fetch::owners::block_channels(2);
        let fetch = FetchCore::new(crate::fetch::FetchConfig {
            block_cache_bytes_max: 256 * MIB,
            ..Default::default()
        })
        .with_owners(crate::fetch::owners::BlockOwners::new(0, senders));
        assert_eq!(fetch.agent_cache_bytes(), 512 * MIB);
        assert_eq!(chunk_bytes(fetch.agent_cache_bytes(), 64), 4 * MIB);
    }
}
