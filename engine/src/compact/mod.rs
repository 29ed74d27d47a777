//! Object compaction: many small window objects merged into one large object, ordered by
//! partition and offset, then swapped in through the metadata log.
//!
//! # Why
//!
//! Every flush window adds one index entry per partition it holds, so without merging a
//! partition written in every 10 ms window has 8.6 million entries a day — memory, checkpoint
//! bytes and recovery time that grow with uptime, and one GET per window when a consumer replays.
//! After compaction a partition has about one entry per compacted object: state grows with
//! retained bytes divided by the object size.
//!
//! # How, and why it is safe
//!
//! 1. **Plan** ([`MetadataState::compaction_plan`], pure): per partition, the oldest run of at least
//!    two consecutive *small* entries (under half the target size), up to the target size and
//!    never past the partition's next span boundary ([`run_phase_ms`]); runs of several
//!    partitions fill one job up to the target size and the input limit.
//! 2. **Build** ([`build_compacted_object`]): read each source object once (one ranged GET over the
//!    span the job needs from it), check every batch (header and CRC-32C, and that the batches'
//!    offsets fill each entry exactly), and lay them out as a format-v1 object whose header names
//!    the compacted object's id. Write it create-only at `compacted/{id}`: ids carry the writer
//!    epoch and a job number, so no two jobs — of this writer or any other — share a key.
//! 3. **Swap**: one `ReplaceIndexRange` command per partition, appended to the log like any
//!    command. It applies only if the index still has a run of entries starting and ending exactly
//!    at the planned offsets; retention or a concurrent change makes it a no-op (rejected), and the
//!    next round plans again. Until the swap the old entries serve fetches; after it the new one
//!    does; a fetch that resolved the old entries before the swap still reads them, because
//!    nothing is deleted before the garbage collector's delay.
//!
//! A crash between the PUT and the swap leaves an object nothing references: the collector deletes
//! it once the writer epoch it carries is not newer than the state's (see `log::gc`). A crash
//! after the swap leaves the inputs unreferenced: collected like any released log entry.
//!
//! # In a cluster
//!
//! A cluster's agents share one writer epoch, so there a job names its object by its agent
//! incarnation's token ([`crate::types::cluster_compacted_object_id`]), plans only the partitions
//! its agent owns (rendezvous hashing over the live agents,
//! [`MetadataState::compaction_plan_of`]), and sends its swap within one lease of its object's
//! PUT starting ([`CompactedObject::put_started`]); the collector decides its objects by the rule
//! of the cluster's window objects (`log::data_gc`), not by epoch. Two compactors of one
//! partition (two agents' views differ for a moment) cost an orphan object, never a wrong index:
//! the swap sent last is rejected when the index moved under its plan, and replaces the other's
//! entry with one of the same offsets and bytes when both planned the same run.

pub mod key_job;
pub mod keys;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bytes::Bytes;

use crate::batch::split_batches;
use crate::format::{EntryHeader, EntryKind, ObjectBuilder};
use crate::metadata::{
    Command, IndexEntry, IndexRangeSwap, MetadataState, RetentionDefaults, SwapPiece,
};
use crate::store::{ObjectStorage, StoreError};
use crate::types::{LogSeq, TopicId, TopicPartition, object_key};

/// Settings of the compactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    /// Size a compacted object aims at (a job stops adding inputs before passing it).
    pub object_bytes_target: u64,
    /// Index entries one job merges at most (bounds its reads and its commands).
    pub inputs_per_job_max: usize,
    /// Bytes one key-compaction job reads at most (a partition larger than this is compacted a
    /// prefix at a time).
    pub key_input_bytes_max: u64,
    /// Bytes of distinct keys one key-compaction job may hold.
    pub key_map_bytes_max: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            object_bytes_target: 32 * 1024 * 1024,
            inputs_per_job_max: 10_000,
            key_input_bytes_max: 256 * 1024 * 1024,
            key_map_bytes_max: 128 * 1024 * 1024,
        }
    }
}

/// One partition's run of index entries to merge: contiguous in offsets, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionRange {
    pub tp: TopicPartition,
    pub entries: Vec<IndexEntry>,
}

impl CompactionRange {
    fn bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.byte_len).sum()
    }
}

/// Why a job failed. Nothing was swapped; the next round plans again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactionError {
    #[error("reading {key}: {source}")]
    Read { key: String, source: StoreError },
    #[error("input {key} bytes {byte_start}..{byte_end} for {tp}: {reason}")]
    CorruptInput {
        key: String,
        tp: TopicPartition,
        byte_start: u64,
        byte_end: u64,
        reason: String,
    },
    #[error("laying out the compacted object: {0}")]
    Encode(#[from] crate::format::EncodeError),
    #[error("writing {key}: {source}")]
    Write { key: String, source: StoreError },
    #[error("key compaction of {tp} (first input {key}): {reason}")]
    Keys {
        key: String,
        tp: TopicPartition,
        reason: String,
    },
    #[error("compaction plan: {0}")]
    Plan(String),
}

impl MetadataState {
    /// The next job: per partition (topics by name, partitions in order) the oldest settled run
    /// of at least two consecutive *window* entries (entries in log objects; a compacted entry is
    /// never merged again, so every byte is compacted once), as long as the job stays within the
    /// target size and the input limit. Empty when nothing is worth merging. Pure; `now_ms` only
    /// decides which runs have settled.
    ///
    /// A run is settled when it cannot grow any more — it reached its topic's limits (below), or
    /// [`RUN_WINDOWS_SETTLED`] windows, or a compacted entry or an entry past the run's span
    /// boundary follows it — or when its oldest window is [`RUN_SETTLE_MS`] old. A run at the live edge that can still grow waits: merging
    /// it now would only make a small object that the next windows cannot join.
    ///
    /// Retention deletes whole index entries, so a merged entry must not hold records of very
    /// different ages or too many bytes for its topic's retention: a run spans at most
    /// `min(segment.ms, retention.ms / 8)` of batch max timestamps and at most
    /// `min(segment.bytes, retention.bytes / 8)` bytes (Kafka's segments, which roll by
    /// `segment.ms` and `segment.bytes`, bound its retention's precision the same way). `defaults`
    /// gives the retention of topics without overrides. A run also ends at the first entry at or
    /// past the end of its first entry's span bucket (a boundary every span, at a phase that
    /// [`run_phase_ms`] staggers across partitions so that their runs do not all settle in the
    /// same tick); an entry whose timestamp goes back still joins, within the span.
    pub fn compaction_plan(
        &self,
        config: &CompactionConfig,
        defaults: &RetentionDefaults,
        now_ms: i64,
    ) -> Vec<CompactionRange> {
        self.compaction_plan_of(config, defaults, now_ms, |_, _| true)
    }

    /// [`MetadataState::compaction_plan`] over the partitions `owns(topic name, partition)` says
    /// this compactor owns (in a cluster, the agent rendezvous hashing names for the partition):
    /// partitions it does not own neither join nor fill the job.
    pub fn compaction_plan_of(
        &self,
        config: &CompactionConfig,
        defaults: &RetentionDefaults,
        now_ms: i64,
        owns: impl Fn(&str, i32) -> bool,
    ) -> Vec<CompactionRange> {
        let mut job = Vec::new();
        let (mut job_bytes, mut job_inputs) = (0u64, 0usize);
        for (name, topic_id) in self.topics() {
            let Some(topic) = self.topic(topic_id) else {
                continue;
            };
            let topic_limits = topic_run_limits(topic.config_overrides(), config, defaults);
            let partitions = topic.partitions().len();
            for (index, state) in topic.partitions().iter().enumerate() {
                // Bounded by PARTITIONS_PER_TOPIC_MAX, which fits an i32.
                let partition = i32::try_from(index).unwrap_or(i32::MAX);
                if !owns(name, partition) {
                    continue;
                }
                let limits = RunLimits {
                    phase_ms: run_phase_ms(topic_id, index, partitions, topic_limits.span_ms_max),
                    ..topic_limits
                };
                let room = RunRoom {
                    bytes: config.object_bytes_target.saturating_sub(job_bytes),
                    inputs: config.inputs_per_job_max.saturating_sub(job_inputs),
                };
                let run = oldest_settled_run(state.index().iter(), &limits, &room, now_ms);
                if run.len() < 2 {
                    continue;
                }
                let range = CompactionRange {
                    tp: TopicPartition::new(topic_id, partition),
                    entries: run,
                };
                job_bytes += range.bytes();
                job_inputs += range.entries.len();
                job.push(range);
                if job_inputs >= config.inputs_per_job_max
                    || job_bytes >= config.object_bytes_target / 2
                {
                    return job;
                }
            }
        }
        job
    }
}

/// A run of this many windows is merged even if more could join it (bounds a job's GETs per
/// partition and how long windows wait).
pub const RUN_WINDOWS_SETTLED: usize = 1_000;
/// A run whose oldest window is this old (by batch max timestamp) is merged even if it could
/// still grow: a partition written slowly gets one entry per minute, not one per window.
pub const RUN_SETTLE_MS: i64 = 60_000;

/// What one partition's runs may hold.
#[derive(Debug, Clone, Copy)]
struct RunLimits {
    /// An entry this large or larger is not merged again.
    small: u64,
    bytes_max: u64,
    span_ms_max: i64,
    /// Where the partition's runs are cut: a run ends at the first entry at or past the time
    /// `phase_ms + k * span_ms_max` that follows its first entry (batch max timestamps, see
    /// [`run_phase_ms`]).
    phase_ms: i64,
}

/// The phase of a partition's run boundaries, in `0..span_ms`: the partitions of a topic
/// spread evenly over one span, shifted by an offset taken from the topic's id.
///
/// Without it, when the span is what settles runs (a topic with a short `retention.ms`, whose
/// span is an eighth of it), every partition written in every window would have its runs
/// settle in the same tick, and the agent's index entries (and the checkpoints that hold them)
/// would swing in lockstep between a few hundred and thousands (the 30-minute directory-store
/// soak, `retention.ms` 2 minutes: 401–4,734 entries, period means spread 1.11). Staggered,
/// about the same share of the partitions settles in every tick. Kafka's `segment.jitter.ms`
/// does the same for segment rolls. Runs settled by age or by window count (long spans) are
/// not staggered by this.
pub fn run_phase_ms(topic_id: TopicId, partition: usize, partitions: usize, span_ms: i64) -> i64 {
    let span = u64::try_from(span_ms).unwrap_or(0).max(1);
    let mut head = [0u8; 8];
    head.copy_from_slice(&topic_id.0[..8]);
    // A multiplicative hash spreads even close ids (sequential test ids) over the span.
    let topic = u64::from_le_bytes(head).wrapping_mul(0x9E37_79B9_7F4A_7C15) % span;
    let partitions = u64::try_from(partitions).unwrap_or(1).max(1);
    let partition = u64::try_from(partition).unwrap_or(0) % partitions;
    // span ≤ i64::MAX: the product fits a u128, and the sum of two values below span fits a
    // u64 and its remainder an i64.
    let spread = u64::try_from(u128::from(span) * u128::from(partition) / u128::from(partitions))
        .unwrap_or(0);
    i64::try_from((topic + spread) % span).unwrap_or(0)
}

/// The end (exclusive) of the span bucket that `timestamp` falls in under `limits`' phase;
/// `None` when it lies past `i64::MAX` (no boundary ahead: every later timestamp joins).
fn bucket_end_ms(timestamp: i64, limits: &RunLimits) -> Option<i64> {
    let span = i128::from(limits.span_ms_max.max(1));
    let phase = i128::from(limits.phase_ms);
    let end = (i128::from(timestamp) - phase).div_euclid(span) * span + span + phase;
    i64::try_from(end).ok()
}

/// What is left of the job.
#[derive(Debug, Clone, Copy)]
struct RunRoom {
    bytes: u64,
    inputs: usize,
}

fn topic_run_limits(
    overrides: &std::collections::BTreeMap<String, String>,
    config: &CompactionConfig,
    defaults: &RetentionDefaults,
) -> RunLimits {
    let number = |name: &str, default: i64| {
        overrides
            .get(name)
            .and_then(|value| value.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let policy = overrides
        .get("cleanup.policy")
        .map_or("delete", String::as_str);
    let deletes = policy.split(',').any(|part| part.trim() == "delete");
    let segment_ms = number("segment.ms", 7 * 24 * 3_600_000).max(1);
    let retention_ms = number("retention.ms", defaults.retention_ms);
    let retention_bytes = number("retention.bytes", defaults.retention_bytes);
    let span_ms_max = if deletes && retention_ms >= 0 {
        segment_ms.min((retention_ms / 8).max(1))
    } else {
        segment_ms
    };
    let segment_bytes = u64::try_from(number("segment.bytes", 1 << 30)).unwrap_or(1 << 30);
    let bytes_max = match u64::try_from(retention_bytes) {
        Ok(bytes) if deletes => (bytes / 8).min(config.object_bytes_target),
        _ => config.object_bytes_target,
    }
    .min(segment_bytes);
    RunLimits {
        small: bytes_max / 2,
        bytes_max,
        span_ms_max,
        phase_ms: 0,
    }
}

/// The first settled run of consecutive window entries within the topic's limits and the job's
/// room (see [`MetadataState::compaction_plan`]).
fn oldest_settled_run<'a>(
    entries: impl Iterator<Item = &'a IndexEntry>,
    limits: &RunLimits,
    room: &RunRoom,
    now_ms: i64,
) -> Vec<IndexEntry> {
    let mut run: Vec<IndexEntry> = Vec::new();
    let mut bytes = 0u64;
    let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
    // The end of the span bucket of the run's first entry: a later entry at or past it ends the
    // run (a timestamp that goes back still joins, within the span).
    let mut bucket_end: Option<i64> = None;
    let settled_by_age = |oldest: i64| oldest <= now_ms.saturating_sub(RUN_SETTLE_MS);
    for entry in entries {
        if crate::types::is_compacted_object(entry.seq) || entry.byte_len >= limits.small {
            // Nothing can join the run past this entry: it is settled.
            if run.len() >= 2 {
                return run;
            }
            run.clear();
            bytes = 0;
            (oldest, newest) = (i64::MAX, i64::MIN);
            continue;
        }
        let span = newest
            .max(entry.max_timestamp)
            .saturating_sub(oldest.min(entry.max_timestamp));
        let within_topic = run.is_empty()
            || (span <= limits.span_ms_max
                && bucket_end.is_none_or(|end| entry.max_timestamp < end)
                && bytes.saturating_add(entry.byte_len) <= limits.bytes_max
                && run.len() < RUN_WINDOWS_SETTLED);
        let within_job =
            bytes.saturating_add(entry.byte_len) <= room.bytes && run.len() < room.inputs;
        if within_topic && within_job {
            if run.is_empty() {
                bucket_end = bucket_end_ms(entry.max_timestamp, limits);
            }
            bytes += entry.byte_len;
            oldest = oldest.min(entry.max_timestamp);
            newest = newest.max(entry.max_timestamp);
            run.push(*entry);
        } else if run.len() >= 2 {
            // Full for its topic (settled) or for this job (the job is full): merge it.
            return run;
        } else if !within_job {
            return Vec::new();
        } else {
            run = vec![*entry];
            bytes = entry.byte_len;
            (oldest, newest) = (entry.max_timestamp, entry.max_timestamp);
            bucket_end = bucket_end_ms(entry.max_timestamp, limits);
        }
    }
    // The run reaches the live edge: merged only once it is old enough.
    if run.len() >= 2 && settled_by_age(oldest) {
        run
    } else {
        Vec::new()
    }
}

/// What [`build_compacted_object`] wrote and the swap that puts it in service.
#[derive(Debug)]
pub struct CompactedObject {
    pub id: LogSeq,
    pub key: String,
    pub bytes: u64,
    /// Source objects read (one GET each).
    pub objects_read: usize,
    /// Source objects taken from memory instead ([`build_compacted_object_with`]).
    pub objects_at_hand: usize,
    /// Bytes read from the store.
    pub bytes_read: u64,
    /// One `ReplaceIndexRange` per range, in plan order.
    pub swap: Vec<Command>,
    /// Where the job's time went: reading its sources, checking and laying them out, the PUT.
    pub timings: JobTimings,
    /// When the object's PUT started: in a cluster its swap's record must be sent within one
    /// lease of it (`log::data_gc`).
    pub put_started: std::time::Instant,
    /// The object's batch bytes that came from sources at hand (a cache), by their offset in
    /// it: zero-copy slices of the buffers those sources were joined into ([`batch_pieces`]),
    /// for a block cache to hold once the swap is applied. Empty when every source was read
    /// from the store. Dropping them frees those buffers.
    pub batch_pieces: Vec<(u64, Bytes)>,
}

/// The longest piece [`batch_pieces`] makes: a cache evicts a compacted object piece by piece,
/// so a piece is about the chunk a reader asks for at once.
pub const BATCH_PIECE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The bytes of an object's `chunks` (in order, concatenated they are the object) that are
/// slices of `sources`, by their offset in the object. Consecutive chunks that continue one
/// another in one source buffer make one piece, up to `piece_max` bytes (a chunk longer than
/// that is a piece of its own). Chunks that are not slices of a source (the header, the index
/// and trailer) are left out. Nothing is copied: each piece is `source.slice(..)`.
pub fn batch_pieces(
    chunks: &[Bytes],
    sources: &BTreeMap<LogSeq, (u64, Bytes)>,
    piece_max: usize,
) -> Vec<(u64, Bytes)> {
    let mut spans: Vec<(usize, &Bytes)> = sources
        .values()
        .filter(|(_, span)| !span.is_empty())
        .map(|(_, span)| (span.as_ptr().addr(), span))
        .collect();
    spans.sort_unstable_by_key(|(address, _)| *address);
    // The source a chunk was sliced from, and where in it the chunk starts.
    let source_of = |chunk: &Bytes| -> Option<(usize, usize)> {
        let address = chunk.as_ptr().addr();
        let index = spans
            .partition_point(|(start, _)| *start <= address)
            .checked_sub(1)?;
        let (start, span) = spans.get(index)?;
        let offset = address - start;
        (offset.checked_add(chunk.len())? <= span.len()).then_some((index, offset))
    };
    // A run: (offset in the object, source index, offset in the source, length).
    let mut run: Option<(u64, usize, usize, usize)> = None;
    let mut pieces = Vec::new();
    let flush = |run: (u64, usize, usize, usize), pieces: &mut Vec<(u64, Bytes)>| {
        let (at, index, from, len) = run;
        if let Some((_, span)) = spans.get(index) {
            pieces.push((at, span.slice(from..from + len)));
        }
    };
    let mut position = 0u64;
    for chunk in chunks {
        let found = if chunk.is_empty() {
            None
        } else {
            source_of(chunk)
        };
        match (run, found) {
            (Some((at, index, from, len)), Some((chunk_index, offset)))
                if chunk_index == index
                    && offset == from + len
                    && at + len as u64 == position
                    && len + chunk.len() <= piece_max =>
            {
                run = Some((at, index, from, len + chunk.len()));
            }
            (_, found) => {
                if let Some(done) = run.take() {
                    flush(done, &mut pieces);
                }
                run = found.map(|(index, offset)| (position, index, offset, chunk.len()));
            }
        }
        position += chunk.len() as u64;
    }
    if let Some(done) = run {
        flush(done, &mut pieces);
    }
    pieces
}

/// Milliseconds a job spent in each step (progress and cost in the agent's log).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobTimings {
    pub read_ms: f64,
    pub build_ms: f64,
    pub put_ms: f64,
}

fn elapsed_ms(since: std::time::Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1_000.0
}

/// Reads the job's inputs, checks them, writes the merged object create-only at `id`'s key and
/// returns the swap commands. Nothing is changed in the metadata: the caller appends the swap.
pub async fn build_compacted_object(
    store: &dyn ObjectStorage,
    job: &[CompactionRange],
    id: LogSeq,
    writer_epoch: u64,
    created_at_ms: i64,
) -> Result<CompactedObject, CompactionError> {
    build_compacted_object_with(store, job, id, writer_epoch, created_at_ms, BTreeMap::new()).await
}

/// The bytes of some of a job's sources, already in memory (a block cache): per object, the
/// span [`source_spans`] names and the pieces that make it up, in order.
pub type SourcesAtHand = BTreeMap<LogSeq, (Range<u64>, Vec<Bytes>)>;

/// Per source object of `job`, the span from the first byte its entries need to the last: what
/// [`build_compacted_object`] reads with one GET, unless the span is at hand.
pub fn source_spans(job: &[CompactionRange]) -> BTreeMap<LogSeq, Range<u64>> {
    spans_of(job.iter().flat_map(|range| range.entries.iter()))
}

fn spans_of<'a>(entries: impl Iterator<Item = &'a IndexEntry>) -> BTreeMap<LogSeq, Range<u64>> {
    let mut spans: BTreeMap<LogSeq, Range<u64>> = BTreeMap::new();
    for entry in entries {
        let end = entry.byte_start.saturating_add(entry.byte_len);
        spans
            .entry(entry.seq)
            .and_modify(|span| {
                span.start = span.start.min(entry.byte_start);
                span.end = span.end.max(end);
            })
            .or_insert(entry.byte_start..end);
    }
    spans
}

/// [`build_compacted_object`], taking the sources in `at_hand` from there instead of the store
/// (a span whose pieces do not add up to it exactly is read from the store).
pub async fn build_compacted_object_with(
    store: &dyn ObjectStorage,
    job: &[CompactionRange],
    id: LogSeq,
    writer_epoch: u64,
    created_at_ms: i64,
    at_hand: SourcesAtHand,
) -> Result<CompactedObject, CompactionError> {
    let entries: Vec<&IndexEntry> = job.iter().flat_map(|range| range.entries.iter()).collect();
    let mut timings = JobTimings::default();
    let started = std::time::Instant::now();
    let (sources, bytes_read, at_hand_seqs) = read_sources_with(store, &entries, at_hand).await?;
    timings.read_ms = elapsed_ms(started);
    let started = std::time::Instant::now();

    let mut builder = ObjectBuilder::new(EntryHeader {
        seq: id,
        writer_epoch,
        prev_seq: None,
        entry_nonce: id.0,
        kind: EntryKind::Data,
        created_at_ms,
    });
    for range in job {
        for entry in &range.entries {
            for (header, batch) in entry_batches(&sources, range.tp, entry)? {
                builder.push_batch(range.tp, &header, batch)?;
            }
        }
    }
    let object = builder.finish()?;
    let mut swap = Vec::with_capacity(job.len());
    for (range, segment) in job.iter().zip(object.segments()) {
        let (Some(first), Some(last)) = (range.entries.first(), range.entries.last()) else {
            continue;
        };
        debug_assert_eq!(
            segment.tp, range.tp,
            "segments follow the order batches were pushed"
        );
        swap.push(Command::ReplaceIndexRange {
            swap: Box::new(IndexRangeSwap {
                tp: range.tp,
                base_offset: first.base_offset,
                end_offset: last.end_offset,
                pieces: vec![SwapPiece {
                    end_offset: last.end_offset,
                    object: id,
                    byte_start: segment.byte_start,
                    byte_len: segment.byte_len,
                    max_timestamp: range
                        .entries
                        .iter()
                        .map(|entry| entry.max_timestamp)
                        .max()
                        .unwrap_or(i64::MIN),
                }],
            }),
        });
    }
    let key = object_key(id);
    let bytes = object.len();
    // Only what was at hand (cached) goes back to a cache: bytes read from the store were not
    // in memory before the job, and putting them there would push out what readers use.
    let cached_sources: BTreeMap<LogSeq, (u64, Bytes)> = sources
        .iter()
        .filter(|(seq, _)| at_hand_seqs.contains(seq))
        .map(|(seq, source)| (*seq, source.clone()))
        .collect();
    let batch_pieces = batch_pieces(object.chunks(), &cached_sources, BATCH_PIECE_BYTES_MAX);
    drop(cached_sources);
    let objects_at_hand = at_hand_seqs.len();
    let objects_read = sources.len() - objects_at_hand;
    drop(sources);
    timings.build_ms = elapsed_ms(started);
    let put_started = std::time::Instant::now();
    // Create-only: a key that exists (another incarnation of the same token left it) fails the
    // job here, before any swap names it.
    store
        .put_create(&key, object.into_chunks())
        .await
        .map_err(|source| CompactionError::Write {
            key: key.clone(),
            source,
        })?;
    timings.put_ms = elapsed_ms(put_started);
    Ok(CompactedObject {
        id,
        key,
        bytes,
        objects_read,
        objects_at_hand,
        bytes_read,
        swap,
        timings,
        put_started,
        batch_pieces,
    })
}

/// The bytes every entry needs: one ranged GET per source object, over the span of every entry
/// that names it. Returns `object -> (span start, bytes)` and the bytes read.
pub(crate) async fn read_sources(
    store: &dyn ObjectStorage,
    entries: &[&IndexEntry],
) -> Result<(BTreeMap<LogSeq, (u64, Bytes)>, u64), CompactionError> {
    let (sources, bytes_read, _) = read_sources_with(store, entries, BTreeMap::new()).await?;
    Ok((sources, bytes_read))
}

/// [`read_sources`], taking the spans `at_hand` holds from there; also returns which it took.
async fn read_sources_with(
    store: &dyn ObjectStorage,
    entries: &[&IndexEntry],
    mut at_hand: SourcesAtHand,
) -> Result<(BTreeMap<LogSeq, (u64, Bytes)>, u64, BTreeSet<LogSeq>), CompactionError> {
    let spans = spans_of(entries.iter().copied());
    let mut sources = BTreeMap::new();
    let mut bytes_read = 0u64;
    let mut taken = BTreeSet::new();
    for (seq, Range { start, end }) in &spans {
        if let Some(bytes) = at_hand
            .remove(seq)
            .and_then(|(span, pieces)| joined(span, pieces, *start..*end))
        {
            taken.insert(*seq);
            sources.insert(*seq, (*start, bytes));
            continue;
        }
        let key = object_key(*seq);
        let bytes = get_range_retrying(store, &key, *start..*end)
            .await
            .map_err(|source| CompactionError::Read { key, source })?;
        bytes_read += bytes.len() as u64;
        sources.insert(*seq, (*start, bytes));
    }
    Ok((sources, bytes_read, taken))
}

/// The bytes of `wanted` from pieces that make up exactly `span`, copied into one buffer: the
/// job slices its batches out of one buffer per source, and the pieces it hands back to a cache
/// then hold this span only — not the cached buffers, which are views of whole producer
/// requests that would stay alive, uncounted, as long as a compacted piece did. `None` when the
/// span is not `wanted` or the pieces do not add up to it.
fn joined(span: Range<u64>, pieces: Vec<Bytes>, wanted: Range<u64>) -> Option<Bytes> {
    let len: u64 = pieces.iter().map(|piece| piece.len() as u64).sum();
    if span != wanted || len != wanted.end.checked_sub(wanted.start)? {
        return None;
    }
    let mut buffer = bytes::BytesMut::with_capacity(usize::try_from(len).ok()?);
    for piece in &pieces {
        buffer.extend_from_slice(piece);
    }
    Some(buffer.freeze())
}

/// Attempts of one source read whose error is transient (a timeout, a 5xx, a pooled connection the
/// server had closed) before the job fails: a job reads hundreds of objects, and one passing error
/// should not throw the rest of its work away. Reads are idempotent.
pub const SOURCE_READ_ATTEMPTS_MAX: u32 = 3;

async fn get_range_retrying(
    store: &dyn ObjectStorage,
    key: &str,
    range: std::ops::Range<u64>,
) -> Result<Bytes, StoreError> {
    let mut attempt = 1;
    loop {
        match store.get_range(key, range.clone()).await {
            Err(error) if error.is_transient() && attempt < SOURCE_READ_ATTEMPTS_MAX => {
                tracing::debug!(%key, %error, attempt, "compaction: source read failed; retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The batches of one index entry, checked: valid headers and CRCs, and offsets that fill the
/// entry exactly (a shorter or longer run would shift every later offset).
pub(crate) fn entry_batches(
    sources: &BTreeMap<LogSeq, (u64, Bytes)>,
    tp: TopicPartition,
    entry: &IndexEntry,
) -> Result<Vec<(crate::batch::BatchHeader, Bytes)>, CompactionError> {
    let key = object_key(entry.seq);
    let byte_end = entry.byte_start.saturating_add(entry.byte_len);
    let corrupt = |reason: String| CompactionError::CorruptInput {
        key: key.clone(),
        tp,
        byte_start: entry.byte_start,
        byte_end,
        reason,
    };
    let (span_start, span) = sources
        .get(&entry.seq)
        .ok_or_else(|| corrupt("source not read".to_owned()))?;
    let from = usize::try_from(entry.byte_start - span_start).unwrap_or(usize::MAX);
    let to = from.saturating_add(usize::try_from(entry.byte_len).unwrap_or(usize::MAX));
    if to > span.len() {
        return Err(corrupt(format!(
            "object is shorter ({} bytes read)",
            span.len()
        )));
    }
    let batches = split_batches(span.slice(from..to), usize::MAX)
        .map_err(|error| corrupt(error.to_string()))?;
    let offsets: u64 = batches
        .iter()
        .map(|(header, _)| header.offset_count())
        .sum();
    if offsets != entry.end_offset - entry.base_offset {
        return Err(corrupt(format!(
            "batches hold {offsets} offsets, the index entry {}",
            entry.end_offset - entry.base_offset
        )));
    }
    Ok(batches)
}
