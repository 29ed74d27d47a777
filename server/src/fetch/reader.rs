//! Reading one fetch: plan on the metadata core, bytes from the cache or the store, assembly here.
//!
//! [`plan`] is pure and runs inside one `CoreHandle::query` for every partition of the request, so
//! an attempt costs one message to the metadata core whatever the partition count. It picks index
//! entries until their bytes cover the partition's byte budget (the first always), at most
//! [`ENTRIES_PER_PARTITION_MAX`]. [`read_entries`] then takes each entry's exact byte range from
//! the core's cache, or GETs it (all misses of a partition at once) and caches it.

use std::sync::Arc;

use bytes::Bytes;
use sluice_engine::metadata::{IndexEntry, MetadataError, MetadataState, kafka_code};
use sluice_engine::store::{ObjectStorage, StoreError};
use sluice_engine::types::{TopicId, TopicPartition, log_key};

use super::FetchCore;

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
    entries.truncate(keep);
    Ok(PartitionPlan {
        tp,
        high_watermark,
        log_start_offset,
        entries,
    })
}

/// A range the store could not give: the fetch answers KAFKA_STORAGE_ERROR for that partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("reading {key} bytes {start}..{end}: {source}")]
    Store {
        key: String,
        start: u64,
        end: u64,
        source: StoreError,
    },
    #[error("{key}: the store returned {got} bytes for a range of {expected}")]
    ShortRead {
        key: String,
        expected: u64,
        got: u64,
    },
}

/// Each entry with its bytes: from the cache, else one ranged GET per entry (concurrently), which
/// is then cached.
pub async fn read_entries(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    entries: &[IndexEntry],
) -> Result<Vec<(IndexEntry, Vec<Bytes>)>, ReadError> {
    let mut parts: Vec<(IndexEntry, Option<Vec<Bytes>>)> = {
        let mut cache = fetch.cache.borrow_mut();
        entries
            .iter()
            .map(|entry| (*entry, cache.get(entry.seq, range_of(entry))))
            .collect()
    };
    let misses = parts
        .iter()
        .filter(|(_, cached)| cached.is_none())
        .map(|(entry, _)| async move {
            let range = range_of(entry);
            let key = log_key(entry.seq);
            let bytes = store
                .get_range(&key, range.clone())
                .await
                .map_err(|source| ReadError::Store {
                    key: key.clone(),
                    start: range.start,
                    end: range.end,
                    source,
                })?;
            if bytes.len() as u64 != entry.byte_len {
                return Err(ReadError::ShortRead {
                    key,
                    expected: entry.byte_len,
                    got: bytes.len() as u64,
                });
            }
            Ok::<_, ReadError>(bytes)
        });
    let mut read = futures::future::join_all(misses).await.into_iter();
    for (entry, cached) in &mut parts {
        if cached.is_some() {
            continue;
        }
        let Some(bytes) = read.next() else { break };
        let bytes = bytes?;
        fetch.note_store_read(bytes.len() as u64);
        fetch
            .cache
            .borrow_mut()
            .insert(entry.seq, entry.byte_start, bytes.clone());
        *cached = Some(vec![bytes]);
    }
    Ok(parts
        .into_iter()
        .map(|(entry, bytes)| (entry, bytes.unwrap_or_default()))
        .collect())
}

fn range_of(entry: &IndexEntry) -> std::ops::Range<u64> {
    entry.byte_start..entry.byte_start.saturating_add(entry.byte_len)
}
