//! A key-compaction job: one partition of a `cleanup.policy=compact` topic, from its first
//! index entry through its cleanable ones, read, compacted by key ([`super::keys`]), written as
//! compacted objects of about the target size, and swapped in with one `ReplaceIndexRange`.
//!
//! Which entries are cleanable follows Kafka: records younger than `min.compaction.lag.ms` are
//! left alone (the walk stops at the first entry whose max timestamp is that recent); a job
//! reads at most `input_bytes_max`, and compacting a prefix of the partition with the keys of that
//! prefix is always correct — a record is removed only when a later record of its key is in the
//! same prefix — so a partition larger than one job is compacted in steps.

use bytes::Bytes;

use super::keys::{KeyCompactionLimits, KeyCompactionStats, OffsetBatch, compact_keys};
use super::{CompactionError, entry_batches, read_sources};
use crate::format::{EntryHeader, EntryKind, ObjectBuilder};
use crate::metadata::{
    Command, IndexEntry, IndexRangeSwap, MetadataState, SWAP_PIECES_MAX, SwapPiece,
};
use crate::store::ObjectStorage;
use crate::types::{LogSeq, TopicPartition, object_key};

/// One partition key compaction may clean now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCompactionCandidate {
    pub tp: TopicPartition,
    /// From the partition's first entry, the cleanable ones (contiguous, oldest first).
    pub entries: Vec<IndexEntry>,
    /// The time of the plan: tombstones of batches whose delete horizon is before it go.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`: a batch first kept with tombstones gets its horizon
    /// this far after `now_ms`.
    pub delete_retention_ms: i64,
    /// An uncleaned record older than this makes the partition due whatever its dirty ratio
    /// (`now - max.compaction.lag.ms`).
    pub max_lag_cutoff_ms: i64,
}

impl MetadataState {
    /// Every partition of a topic whose `cleanup.policy` includes `compact`, with the entries a
    /// key-compaction job may read at `now_ms` (at most `input_bytes_max` of them, and at least
    /// two entries or one that is not yet in a compacted object). Topics by name, partitions in
    /// order. Pure.
    pub fn key_compaction_candidates(
        &self,
        now_ms: i64,
        input_bytes_max: u64,
    ) -> Vec<KeyCompactionCandidate> {
        let mut candidates = Vec::new();
        for (_, topic_id) in self.topics() {
            let Some(topic) = self.topic(topic_id) else {
                continue;
            };
            let configs = topic.config_overrides();
            let policy = configs
                .get("cleanup.policy")
                .map_or("delete", String::as_str);
            if !policy.split(',').any(|part| part.trim() == "compact") {
                continue;
            }
            let number = |name: &str, default: i64| {
                configs
                    .get(name)
                    .and_then(|value| value.parse::<i64>().ok())
                    .unwrap_or(default)
            };
            let min_lag_cutoff = now_ms.saturating_sub(number("min.compaction.lag.ms", 0));
            let delete_retention_ms = number("delete.retention.ms", 86_400_000);
            let max_lag_cutoff_ms =
                now_ms.saturating_sub(number("max.compaction.lag.ms", i64::MAX));
            for (partition, state) in topic.partitions().iter().enumerate() {
                let mut bytes = 0u64;
                let entries: Vec<IndexEntry> = state
                    .index()
                    .iter()
                    .take_while(|entry| {
                        bytes = bytes.saturating_add(entry.byte_len);
                        entry.max_timestamp <= min_lag_cutoff && bytes <= input_bytes_max
                    })
                    .copied()
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                candidates.push(KeyCompactionCandidate {
                    // Bounded by PARTITIONS_PER_TOPIC_MAX, which fits an i32.
                    tp: TopicPartition::new(topic_id, i32::try_from(partition).unwrap_or(i32::MAX)),
                    entries,
                    now_ms,
                    delete_retention_ms,
                    max_lag_cutoff_ms,
                });
            }
        }
        candidates
    }
}

/// What a key-compaction job wrote and the swap that puts it in service.
#[derive(Debug)]
pub struct KeyCompacted {
    /// The compacted objects written, in offset order.
    pub objects: Vec<LogSeq>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub stats: KeyCompactionStats,
    /// One `ReplaceIndexRange` for the whole candidate range.
    pub swap: Command,
    /// When the first object's PUT started (in a cluster the swap's record must be sent within
    /// one lease of it, `log::data_gc`); `None` when nothing was written.
    pub first_put_started: Option<std::time::Instant>,
}

/// Runs one key-compaction job. `next_id` names each object written (the caller's epoch and job
/// numbers). Nothing changes in the metadata: the caller appends the swap.
pub async fn build_key_compacted(
    store: &dyn ObjectStorage,
    candidate: &KeyCompactionCandidate,
    object_bytes_target: u64,
    limits: &KeyCompactionLimits,
    writer_epoch: u64,
    created_at_ms: i64,
    mut next_id: impl FnMut() -> Option<LogSeq>,
) -> Result<KeyCompacted, CompactionError> {
    let tp = candidate.tp;
    let (Some(first), Some(last)) = (candidate.entries.first(), candidate.entries.last()) else {
        return Err(CompactionError::Plan("no entries".to_owned()));
    };
    let entries: Vec<&IndexEntry> = candidate.entries.iter().collect();
    let (sources, bytes_read) = read_sources(store, &entries).await?;
    let mut batches = Vec::new();
    for entry in &candidate.entries {
        let mut offset = entry.base_offset;
        for (header, bytes) in entry_batches(&sources, tp, entry)? {
            let next = offset.saturating_add(header.offset_count());
            batches.push(OffsetBatch {
                base_offset: offset,
                header,
                bytes,
            });
            offset = next;
        }
    }
    let (compacted, stats) = compact_keys(
        &batches,
        candidate.now_ms,
        candidate.delete_retention_ms,
        limits,
    )
    .map_err(|error| CompactionError::Keys {
        key: object_key(first.seq),
        tp,
        reason: error.to_string(),
    })?;

    let mut pieces = Vec::new();
    let mut objects = Vec::new();
    let mut bytes_written = 0u64;
    let mut piece: Vec<OffsetBatch> = Vec::new();
    let mut piece_bytes = 0u64;
    let mut first_put_started = None;
    let batch_count = compacted.len();
    for (index, batch) in compacted.into_iter().enumerate() {
        piece_bytes += batch.bytes.len() as u64;
        piece.push(batch);
        if piece_bytes < object_bytes_target && index + 1 < batch_count {
            continue;
        }
        if pieces.len() >= SWAP_PIECES_MAX {
            return Err(CompactionError::Plan(format!(
                "{tp}: more than {SWAP_PIECES_MAX} objects in one swap"
            )));
        }
        let id = next_id().ok_or_else(|| CompactionError::Plan("object ids used up".to_owned()))?;
        first_put_started.get_or_insert_with(std::time::Instant::now);
        let (swap_piece, len) =
            write_piece(store, tp, &piece, id, writer_epoch, created_at_ms).await?;
        pieces.push(swap_piece);
        objects.push(id);
        bytes_written += len;
        piece.clear();
        piece_bytes = 0;
    }
    Ok(KeyCompacted {
        objects,
        bytes_read,
        bytes_written,
        stats,
        swap: Command::ReplaceIndexRange {
            swap: Box::new(IndexRangeSwap {
                tp,
                base_offset: first.base_offset,
                end_offset: last.end_offset,
                pieces,
            }),
        },
        first_put_started,
    })
}

/// Lays out `batches` (one partition's, contiguous) as a compacted object at `id` and writes it.
async fn write_piece(
    store: &dyn ObjectStorage,
    tp: TopicPartition,
    batches: &[OffsetBatch],
    id: LogSeq,
    writer_epoch: u64,
    created_at_ms: i64,
) -> Result<(SwapPiece, u64), CompactionError> {
    let mut builder = ObjectBuilder::new(EntryHeader {
        seq: id,
        writer_epoch,
        prev_seq: None,
        entry_nonce: id.0,
        kind: EntryKind::Data,
        created_at_ms,
    });
    for batch in batches {
        builder.push_batch(tp, &batch.header, Bytes::clone(&batch.bytes))?;
    }
    let object = builder.finish()?;
    let segment = object
        .segments()
        .first()
        .copied()
        .ok_or_else(|| CompactionError::Plan("an empty piece".to_owned()))?;
    let end_offset = batches.last().map_or(0, |batch| {
        batch
            .base_offset
            .saturating_add(batch.header.offset_count())
    });
    let max_timestamp = batches
        .iter()
        .map(|batch| batch.header.max_timestamp)
        .max()
        .unwrap_or(i64::MIN);
    let key = object_key(id);
    let len = object.len();
    store
        .put_create(&key, object.into_chunks())
        .await
        .map_err(|source| CompactionError::Write { key, source })?;
    Ok((
        SwapPiece {
            end_offset,
            object: id,
            byte_start: segment.byte_start,
            byte_len: segment.byte_len,
            max_timestamp,
        },
        len,
    ))
}
