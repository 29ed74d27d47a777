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
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{LogSeq, TopicId, TopicPartition, object_key};

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
}

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

/// One group's entries with their bytes (see [`read_groups`]).
pub type GroupRead = Result<Vec<(IndexEntry, Vec<Bytes>)>, ReadError>;

/// Each entry with its bytes: from the cache, else from the store (see [`read_groups`]).
pub async fn read_entries(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    entries: &[IndexEntry],
) -> GroupRead {
    read_groups(fetch, store, &[entries])
        .await
        .pop()
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Reads several groups of entries (one group per partition) at once. Cached ranges come from
/// the cache; the missing ones are grouped by object, and ranges of one object that are adjacent
/// or close ([`COALESCE_GAP_BYTES_MAX`]) become one ranged GET — a consumer catching up on many
/// partitions reads each object's segments in one request, not one per partition — and all GETs
/// run concurrently. What was read is cached. A failed GET fails only the groups that needed it.
pub async fn read_groups(
    fetch: &FetchCore,
    store: &Arc<dyn ObjectStorage>,
    groups: &[&[IndexEntry]],
) -> Vec<GroupRead> {
    let mut found: Vec<Vec<Option<Vec<Bytes>>>> = {
        let mut cache = fetch.cache.borrow_mut();
        groups
            .iter()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| cache.get(entry.seq, range_of(entry)))
                    .collect()
            })
            .collect()
    };
    // Missing ranges, by object then start.
    let mut misses: Vec<(LogSeq, std::ops::Range<u64>)> = Vec::new();
    for (entries, cached) in groups.iter().zip(&found) {
        for (entry, cached) in entries.iter().zip(cached) {
            if cached.is_none() && entry.byte_len > 0 {
                misses.push((entry.seq, range_of(entry)));
            }
        }
    }
    misses.sort_by_key(|(seq, range)| (*seq, range.start));
    misses.dedup();
    let mut spans: Vec<(LogSeq, std::ops::Range<u64>)> = Vec::new();
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
    let gets = spans.iter().map(|(seq, range)| async move {
        let key = object_key(*seq);
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
    });
    let read: Vec<Result<Bytes, ReadError>> = futures::future::join_all(gets).await;
    for bytes in read.iter().flatten() {
        fetch.note_store_read(bytes.len() as u64);
    }

    let mut results = Vec::with_capacity(groups.len());
    for (entries, cached) in groups.iter().zip(&mut found) {
        let mut parts = Vec::with_capacity(entries.len());
        let mut failed = None;
        for (entry, cached) in entries.iter().zip(cached.iter_mut()) {
            let bytes = match cached.take() {
                Some(bytes) => bytes,
                None => match slice_of_spans(&spans, &read, entry) {
                    Ok(bytes) => {
                        fetch
                            .cache
                            .borrow_mut()
                            .insert(entry.seq, entry.byte_start, bytes.clone());
                        vec![bytes]
                    }
                    Err(error) => {
                        failed = Some(error);
                        break;
                    }
                },
            };
            parts.push((*entry, bytes));
        }
        results.push(match failed {
            Some(error) => Err(error),
            None => Ok(parts),
        });
    }
    results
}

/// The bytes of `entry` out of the GET whose span holds it (a zero-copy slice).
fn slice_of_spans(
    spans: &[(LogSeq, std::ops::Range<u64>)],
    read: &[Result<Bytes, ReadError>],
    entry: &IndexEntry,
) -> Result<Bytes, ReadError> {
    let range = range_of(entry);
    if range.is_empty() {
        return Ok(Bytes::new());
    }
    // Spans are sorted by (object, start) and do not overlap: the last one starting at or before
    // the range is the only one that can hold it.
    let after = spans.partition_point(|(seq, span)| (*seq, span.start) <= (entry.seq, range.start));
    let holding = after
        .checked_sub(1)
        .and_then(|index| Some((spans.get(index)?, read.get(index)?)))
        .filter(|((seq, span), _)| *seq == entry.seq && range.end <= span.end);
    let Some(((_, span), bytes)) = holding else {
        return Err(ReadError::Store {
            key: object_key(entry.seq),
            start: range.start,
            end: range.end,
            reason: "no read covers this range (a bug)".to_owned(),
        });
    };
    let bytes = bytes.as_ref().map_err(Clone::clone)?;
    let from = usize::try_from(range.start - span.start).unwrap_or(usize::MAX);
    let to = usize::try_from(range.end - span.start).unwrap_or(usize::MAX);
    if to > bytes.len() {
        return Err(ReadError::ShortRead {
            key: object_key(entry.seq),
            start: range.start,
            end: range.end,
            got: bytes.len() as u64,
        });
    }
    Ok(bytes.slice(from..to))
}

fn range_of(entry: &IndexEntry) -> std::ops::Range<u64> {
    entry.byte_start..entry.byte_start.saturating_add(entry.byte_len)
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

    fn joined(parts: &[(IndexEntry, Vec<Bytes>)]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|(_, slices)| slices.iter().flat_map(|slice| slice.to_vec()))
            .collect()
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
        let groups: [&[IndexEntry]; 4] = [&first, &second, &missing, &apart];
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
}
