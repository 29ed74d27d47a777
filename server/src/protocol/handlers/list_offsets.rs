//! ListOffsets: earliest (-2) is the log start offset, latest (-1) the high watermark, both read
//! from the state on the metadata core. A timestamp (>= 0) is answered at batch granularity: the
//! state's index finds the first segment whose max timestamp reaches it, and one ranged GET of
//! that segment's bytes lets us walk its batch headers (records stay unread) to the first batch
//! whose max timestamp reaches it. The answer is that batch's base offset and max timestamp: a
//! consumer seeking there may see a few records of that batch that are older than asked, never
//! miss one that is newer.
//!
//! The special timestamps of versions 7-10: -3 (max timestamp, KIP-734) is the record with the
//! largest timestamp, the first of several equal ones, as Kafka's log keeps it: the index finds
//! the segment, the batch walk the batch, and that batch's records (decompressed) the record;
//! -4 (earliest local, KIP-405) is the log start offset, every byte being in the store; -5
//! (latest tiered) finds nothing (offset and timestamp -1), as on a Kafka topic without tiered
//! storage.
//!
//! Memory: a lookup reads one whole index entry (up to a compacted object's range, tens of MiB)
//! and walks it. Partitions of one request are looked up one after the other, and at most
//! [`SEGMENT_READS_MAX`] such reads are in flight on a core at once, whatever the number of
//! connections asking: a core holds at most that many entries' bytes for ListOffsets.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use glommio::sync::Semaphore;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_engine::batch::BatchHeader;
use sluice_engine::compact::keys::{KeyCompactionLimits, OffsetBatch, read_records};
use sluice_engine::metadata::{IndexEntry, MetadataState, kafka_code};
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{TopicPartition, object_key};

use crate::metadata_core::CoreHandle;
use crate::metadata_core::window::error_code;

/// Per topic: its name and the `(partition, timestamp)` pairs asked.
type Asked = Vec<(String, Vec<(i32, i64)>)>;

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// Segment reads (a timestamp lookup, -3) in flight on one core at once; see the module
/// documentation. More connections asking wait for a turn.
const SEGMENT_READS_MAX: u64 = 2;

thread_local! {
    /// This core's turns for [`SEGMENT_READS_MAX`] (each network core is one thread).
    static SEGMENT_READS: Rc<Semaphore> = Rc::new(Semaphore::new(SEGMENT_READS_MAX));
}

/// What the metadata core can answer without I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Offset(u64),
    /// Refine inside this index entry.
    Segment(IndexEntry),
    /// The record with the largest timestamp is in this index entry.
    MaxTimestamp(IndexEntry),
    NotFound,
}

fn lookup(
    state: &MetadataState,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<Lookup, i16> {
    let topic_id = state
        .topic_id_by_name(topic)
        .ok_or(kafka_code::UNKNOWN_TOPIC_OR_PARTITION)?;
    let tp = TopicPartition::new(topic_id, partition);
    let unknown = |_| kafka_code::UNKNOWN_TOPIC_OR_PARTITION;
    match timestamp {
        LATEST_TIMESTAMP => state
            .high_watermark(tp)
            .map(Lookup::Offset)
            .map_err(unknown),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => state
            .log_start_offset(tp)
            .map(Lookup::Offset)
            .map_err(unknown),
        LATEST_TIERED_TIMESTAMP => state
            .partition(tp)
            .map(|_| Lookup::NotFound)
            .map_err(unknown),
        MAX_TIMESTAMP => {
            let partition = state.partition(tp).map_err(unknown)?;
            // The first entry holding the largest timestamp (strictly larger replaces).
            let latest =
                partition
                    .index()
                    .iter()
                    .fold(None::<&IndexEntry>, |best, entry| match best {
                        Some(best) if best.max_timestamp >= entry.max_timestamp => Some(best),
                        _ => Some(entry),
                    });
            Ok(latest.map_or(Lookup::NotFound, |entry| Lookup::MaxTimestamp(*entry)))
        }
        timestamp if timestamp >= 0 => {
            let entry = state.offset_for_timestamp(tp, timestamp).map_err(unknown)?;
            Ok(entry.map_or(Lookup::NotFound, |entry| Lookup::Segment(*entry)))
        }
        _ => Err(kafka_code::INVALID_REQUEST),
    }
}

/// Walks the batch headers of one segment: `(offset, max timestamp)` of the first batch whose max
/// timestamp reaches `timestamp`.
pub fn first_batch_at_or_after(
    segment: &[u8],
    base_offset: u64,
    timestamp: i64,
) -> Option<(u64, i64)> {
    let mut position = 0_usize;
    let mut offset = base_offset;
    while let Some(rest) = segment.get(position..).filter(|rest| !rest.is_empty()) {
        let header = BatchHeader::parse(rest).ok()?;
        if header.max_timestamp >= timestamp {
            return Some((offset, header.max_timestamp));
        }
        offset = offset.saturating_add(header.offset_count());
        position = position
            .checked_add(header.total_len())
            .filter(|_| header.total_len() > 0)?;
    }
    None
}

/// The `(offset, timestamp)` of the first record holding the segment's largest timestamp: the
/// first batch whose max timestamp is `max_timestamp`, then its records. A batch whose records
/// cannot be read answers with its last offset (Kafka's answer before KIP-734 was exact).
pub fn max_timestamp_record(
    segment: &Bytes,
    base_offset: u64,
    max_timestamp: i64,
) -> Option<(u64, i64)> {
    let mut position = 0_usize;
    let mut offset = base_offset;
    while let Some(rest) = segment.get(position..).filter(|rest| !rest.is_empty()) {
        let header = BatchHeader::parse(rest).ok()?;
        let end = position.checked_add(header.total_len())?;
        if header.max_timestamp == max_timestamp {
            let batch = OffsetBatch {
                base_offset: offset,
                header,
                bytes: segment.slice(position..end.min(segment.len())),
            };
            let last = offset.saturating_add(header.offset_count().saturating_sub(1));
            let exact = read_records(&batch, &KeyCompactionLimits::default())
                .ok()
                .and_then(|records| {
                    records
                        .into_iter()
                        .find(|record| record.timestamp_ms == max_timestamp)
                        .map(|record| record.offset)
                });
            return Some((exact.unwrap_or(last), max_timestamp));
        }
        offset = offset.saturating_add(header.offset_count());
        position = Some(end).filter(|_| header.total_len() > 0)?;
    }
    None
}

async fn read_segment(store: &Arc<dyn ObjectStorage>, entry: IndexEntry) -> Result<Bytes, i16> {
    // Held for the GET, whose response is what takes the memory; the caller walks the bytes
    // without yielding and drops them.
    let turns = SEGMENT_READS.with(Rc::clone);
    let Ok(_turn) = turns.acquire_permit(1).await else {
        return Err(error_code::KAFKA_STORAGE_ERROR);
    };
    let range = entry.byte_start..entry.byte_start.saturating_add(entry.byte_len);
    let key = object_key(entry.seq);
    store.get_range(&key, range).await.map_err(|error| {
        tracing::warn!(%error, key, "ListOffsets: cannot read the segment");
        error_code::KAFKA_STORAGE_ERROR
    })
}

/// ListOffsets -3: the record with the largest timestamp within `entry`.
async fn refine_max(
    store: &Arc<dyn ObjectStorage>,
    entry: IndexEntry,
) -> Result<Option<(u64, i64)>, i16> {
    let bytes = read_segment(store, entry).await?;
    // The index said this segment holds the timestamp; if its batches disagree, answer with the
    // segment's last offset rather than claim nothing is there.
    Ok(Some(
        max_timestamp_record(&bytes, entry.base_offset, entry.max_timestamp)
            .unwrap_or((entry.end_offset.saturating_sub(1), entry.max_timestamp)),
    ))
}

async fn refine(
    store: &Arc<dyn ObjectStorage>,
    entry: IndexEntry,
    timestamp: i64,
) -> Result<Option<(u64, i64)>, i16> {
    let bytes = read_segment(store, entry).await?;
    // The index said this segment reaches the timestamp; if its batches disagree, fall back to
    // the segment's base offset rather than claim nothing is there.
    Ok(Some(
        first_batch_at_or_after(&bytes, entry.base_offset, timestamp)
            .unwrap_or((entry.base_offset, entry.max_timestamp)),
    ))
}

pub async fn handle(
    core: &CoreHandle,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let asked: Arc<Asked> = Arc::new(
        request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| (partition.partition_index, partition.timestamp))
                    .collect();
                (topic.name.as_str().to_owned(), partitions)
            })
            .collect(),
    );
    let query = Arc::clone(&asked);
    let lookups: Option<Vec<Vec<Result<Lookup, i16>>>> = core
        .query(move |state| {
            query
                .iter()
                .map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .map(|&(partition, timestamp)| lookup(state, topic, partition, timestamp))
                        .collect()
                })
                .collect()
        })
        .await
        .ok();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (index, topic) in request.topics.iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (partition_position, partition) in topic.partitions.iter().enumerate() {
            let found = lookups
                .as_ref()
                .and_then(|lookups| lookups.get(index))
                .and_then(|partitions| partitions.get(partition_position))
                .copied()
                .unwrap_or(Err(error_code::NOT_LEADER_OR_FOLLOWER));
            let answer = match found {
                Ok(Lookup::Offset(offset)) => Ok(Some((offset, -1))),
                Ok(Lookup::NotFound) => Ok(None),
                Ok(Lookup::Segment(entry)) => {
                    refine(core.store(), entry, partition.timestamp).await
                }
                Ok(Lookup::MaxTimestamp(entry)) => refine_max(core.store(), entry).await,
                Err(code) => Err(code),
            };
            let mut response = ListOffsetsPartitionResponse::default()
                .with_partition_index(partition.partition_index);
            // Versions before 4 have no leader epoch; the encoder refuses a set one there.
            if version >= 4 {
                response.leader_epoch = 0;
            }
            partitions.push(match answer {
                Ok(Some((offset, timestamp))) => response
                    .with_offset(i64::try_from(offset).unwrap_or(i64::MAX))
                    .with_timestamp(timestamp),
                Ok(None) => response.with_offset(-1).with_timestamp(-1),
                Err(code) => response
                    .with_error_code(code)
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use bytes::BytesMut;
    use sluice_engine::batch::BatchBuilder;

    use super::*;

    #[test]
    fn the_walk_stops_at_the_first_batch_reaching_the_timestamp() {
        let mut segment = BytesMut::new();
        // Three batches: 2 records at 100..101, 3 at 200..202, 1 at 300.
        segment.extend_from_slice(
            &BatchBuilder::new(100)
                .record(0, None, b"a")
                .record(1, None, b"b")
                .encode(),
        );
        segment.extend_from_slice(
            &BatchBuilder::new(200)
                .record(0, None, b"c")
                .record(1, None, b"d")
                .record(2, None, b"e")
                .encode(),
        );
        segment.extend_from_slice(&BatchBuilder::new(300).record(0, None, b"f").encode());
        assert_eq!(first_batch_at_or_after(&segment, 40, 0), Some((40, 101)));
        assert_eq!(first_batch_at_or_after(&segment, 40, 150), Some((42, 202)));
        assert_eq!(first_batch_at_or_after(&segment, 40, 202), Some((42, 202)));
        assert_eq!(first_batch_at_or_after(&segment, 40, 203), Some((45, 300)));
        assert_eq!(first_batch_at_or_after(&segment, 40, 301), None);
        assert_eq!(first_batch_at_or_after(&segment[..30], 40, 0), None);
    }
}
