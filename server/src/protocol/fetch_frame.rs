//! The Fetch response as a list of byte segments, written with vectored writes.
//!
//! `kafka-protocol` encodes a response into one contiguous buffer, records included: for a replay
//! that is a fresh ~36 MB buffer per fetch (a page fault per 4 KiB) filled with a copy of every
//! record byte, then copied again into the connection's output. Here the response's own fields are
//! encoded into one small buffer, and each partition's records ([`RecordSegments`]: rewritten batch
//! headers and zero-copy slices of the block cache) are placed between its pieces, so the frame is
//! `[fields][records][fields][records]…` and no record byte is copied on the way to the socket.
//!
//! The layout is Kafka's `FetchResponse.json` for the versions [`super::apis`] advertises (4–17),
//! field for field as `kafka-protocol` 0.18 writes them: response header v0 (v1 from v12, with
//! tagged fields), `errorCode` and `sessionId` from v7, `logStartOffset` from v5,
//! `preferredReadReplica` from v11, topic names until v12 and topic ids from v13, compact arrays,
//! compact strings, compact bytes and an empty tagged-field section per structure from v12. The
//! agent sets none of the tagged fields (`divergingEpoch`, `currentLeader`, `snapshotId`,
//! `nodeEndpoints`), so each section is a single zero. The tests compare the joined segments with
//! `kafka-protocol`'s encoding of the same response ([`FetchAnswer::to_response`]) byte for byte,
//! for random responses of every version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse, ProducerId, TopicName};
use sluice_engine::read::RecordSegments;

use super::codec::EncodeError;
use super::frame::FRAME_SIZE_PREFIX_BYTES;

/// The first version with compact (flexible) encodings and tagged fields.
const FLEXIBLE_FROM_VERSION: i16 = 12;
/// Versions this encoder writes (the advertised range is inside it; v18 adds nothing it sets).
const VERSION_MIN: i16 = 4;
const VERSION_MAX: i16 = 17;

/// A Fetch response: every field the agent sets, with each partition's records as segments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchAnswer {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicAnswer>,
}

/// One topic of a [`FetchAnswer`]: named until v12, by id from v13.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicAnswer {
    pub topic: TopicName,
    pub topic_id: uuid::Uuid,
    pub partitions: Vec<PartitionAnswer>,
}

/// One partition of a [`FetchAnswer`].
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionAnswer {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `(producer id, first offset)`; `None` is the null array (read_uncommitted).
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub preferred_read_replica: i32,
    /// `None` is null records.
    pub records: Option<RecordSegments>,
}

impl Default for PartitionAnswer {
    /// As `kafka-protocol`'s `PartitionData::default()`.
    fn default() -> Self {
        PartitionAnswer {
            partition_index: 0,
            error_code: 0,
            high_watermark: 0,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: Some(Vec::new()),
            preferred_read_replica: -1,
            records: None,
        }
    }
}

impl FetchAnswer {
    /// The same response as `kafka-protocol`'s type, records joined into one buffer each (a copy):
    /// the reference the segments are tested against, and for callers that want the struct.
    pub fn to_response(&self) -> FetchResponse {
        let topics = self
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        let aborted = partition.aborted_transactions.as_ref().map(|list| {
                            list.iter()
                                .map(|(producer_id, first_offset)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(*producer_id))
                                        .with_first_offset(*first_offset)
                                })
                                .collect()
                        });
                        PartitionData::default()
                            .with_partition_index(partition.partition_index)
                            .with_error_code(partition.error_code)
                            .with_high_watermark(partition.high_watermark)
                            .with_last_stable_offset(partition.last_stable_offset)
                            .with_log_start_offset(partition.log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_preferred_read_replica(BrokerId(partition.preferred_read_replica))
                            .with_records(partition.records.as_ref().map(RecordSegments::to_bytes))
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default()
            .with_throttle_time_ms(self.throttle_time_ms)
            .with_error_code(self.error_code)
            .with_session_id(self.session_id)
            .with_responses(topics)
    }
}

/// Encodes a complete response frame (size prefix, response header, body) as segments whose
/// concatenation is the frame. The fields go into one buffer sized for them; the records are the
/// answer's own segments, moved, not copied.
pub fn encode_fetch_frame(
    correlation_id: i32,
    version: i16,
    answer: FetchAnswer,
) -> Result<Vec<Bytes>, EncodeError> {
    let flexible = version >= FLEXIBLE_FROM_VERSION;
    let mut writer = SegmentWriter::new(version, fields_bytes_estimate(&answer));
    if !(VERSION_MIN..=VERSION_MAX).contains(&version) {
        return Err(writer.error("version not supported by the segmented encoder"));
    }
    writer.fields.put_slice(&[0; FRAME_SIZE_PREFIX_BYTES]);
    writer.fields.put_i32(correlation_id);
    if flexible {
        writer.tags();
    }
    writer.fields.put_i32(answer.throttle_time_ms);
    if version >= 7 {
        writer.fields.put_i16(answer.error_code);
        writer.fields.put_i32(answer.session_id);
    } else if answer.session_id != 0 {
        return Err(writer.error("a session id is set below v7"));
    }
    writer.array_len(answer.topics.len(), flexible)?;
    for topic in answer.topics {
        if version <= 12 {
            writer.string(topic.topic.as_str(), flexible)?;
        }
        if version >= 13 {
            writer.fields.put_slice(topic.topic_id.as_bytes());
        }
        writer.array_len(topic.partitions.len(), flexible)?;
        for partition in topic.partitions {
            writer.partition(partition, version)?;
        }
        if flexible {
            writer.tags();
        }
    }
    if flexible {
        writer.tags();
    }
    writer.finish()
}

/// Field bytes of a response, over-estimated, so the buffer is allocated once.
fn fields_bytes_estimate(answer: &FetchAnswer) -> usize {
    const FIXED_BYTES: usize = 32;
    const PER_TOPIC_BYTES: usize = 32;
    const PER_PARTITION_BYTES: usize = 64;
    const PER_ABORTED_BYTES: usize = 17;
    FIXED_BYTES
        + answer
            .topics
            .iter()
            .map(|topic| {
                PER_TOPIC_BYTES
                    + topic.topic.len()
                    + topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            PER_PARTITION_BYTES
                                + partition
                                    .aborted_transactions
                                    .as_ref()
                                    .map_or(0, |list| list.len() * PER_ABORTED_BYTES)
                        })
                        .sum::<usize>()
            })
            .sum::<usize>()
}

/// The frame being built: the fields so far in `fields`, and the finished segments (field pieces
/// and records) before them.
struct SegmentWriter {
    version: i16,
    fields: BytesMut,
    /// Where the fields not yet in a segment start.
    fields_from: usize,
    /// `(range of fields, records after them)`, in order.
    pieces: Vec<(std::ops::Range<usize>, Vec<Bytes>)>,
    records_bytes: usize,
}

impl SegmentWriter {
    fn new(version: i16, fields_bytes: usize) -> SegmentWriter {
        SegmentWriter {
            version,
            fields: BytesMut::with_capacity(fields_bytes),
            fields_from: 0,
            pieces: Vec::new(),
            records_bytes: 0,
        }
    }

    fn error(&self, message: &str) -> EncodeError {
        EncodeError {
            api_key: ApiKey::Fetch,
            version: self.version,
            message: message.to_owned(),
        }
    }

    /// An empty tagged-field section.
    fn tags(&mut self) {
        put_unsigned_varint(&mut self.fields, 0);
    }

    /// An array's length: compact (`n + 1`, varint) or `i32`.
    fn array_len(&mut self, len: usize, flexible: bool) -> Result<(), EncodeError> {
        self.length(Some(len), flexible)
    }

    /// A length prefix; `None` is null (compact 0, or -1).
    fn length(&mut self, len: Option<usize>, flexible: bool) -> Result<(), EncodeError> {
        match (len, flexible) {
            (None, true) => put_unsigned_varint(&mut self.fields, 0),
            (None, false) => self.fields.put_i32(-1),
            (Some(len), true) => {
                let plus_one = u32::try_from(len).ok().and_then(|len| len.checked_add(1));
                let plus_one =
                    plus_one.ok_or_else(|| self.error("a length does not fit its field"))?;
                put_unsigned_varint(&mut self.fields, plus_one);
            }
            (Some(len), false) => {
                let len = i32::try_from(len)
                    .map_err(|_| self.error("a length does not fit its field"))?;
                self.fields.put_i32(len);
            }
        }
        Ok(())
    }

    fn string(&mut self, value: &str, flexible: bool) -> Result<(), EncodeError> {
        if flexible {
            self.length(Some(value.len()), true)?;
        } else {
            let len =
                i16::try_from(value.len()).map_err(|_| self.error("a topic name is too long"))?;
            self.fields.put_i16(len);
        }
        self.fields.put_slice(value.as_bytes());
        Ok(())
    }

    fn partition(&mut self, partition: PartitionAnswer, version: i16) -> Result<(), EncodeError> {
        let flexible = version >= FLEXIBLE_FROM_VERSION;
        self.fields.put_i32(partition.partition_index);
        self.fields.put_i16(partition.error_code);
        self.fields.put_i64(partition.high_watermark);
        self.fields.put_i64(partition.last_stable_offset);
        if version >= 5 {
            self.fields.put_i64(partition.log_start_offset);
        }
        let aborted = partition.aborted_transactions;
        self.length(aborted.as_ref().map(Vec::len), flexible)?;
        for (producer_id, first_offset) in aborted.unwrap_or_default() {
            self.fields.put_i64(producer_id);
            self.fields.put_i64(first_offset);
            if flexible {
                self.tags();
            }
        }
        if version >= 11 {
            self.fields.put_i32(partition.preferred_read_replica);
        } else if partition.preferred_read_replica != -1 {
            return Err(self.error("a preferred read replica is set below v11"));
        }
        match partition.records {
            None => self.length(None, flexible)?,
            Some(records) => {
                self.length(Some(records.len()), flexible)?;
                self.records(records);
            }
        }
        if flexible {
            self.tags();
        }
        Ok(())
    }

    /// Ends the current run of fields and places `records` after it.
    fn records(&mut self, records: RecordSegments) {
        if records.is_empty() {
            return;
        }
        self.records_bytes += records.len();
        let end = self.fields.len();
        self.pieces
            .push((self.fields_from..end, records.into_segments()));
        self.fields_from = end;
    }

    /// The segments, with the size prefix written in.
    fn finish(mut self) -> Result<Vec<Bytes>, EncodeError> {
        let message_bytes = self.fields.len() - FRAME_SIZE_PREFIX_BYTES + self.records_bytes;
        let prefix = super::frame::size_prefix(message_bytes)
            .ok_or_else(|| self.error("response too large"))?;
        if let Some(field) = self.fields.get_mut(..FRAME_SIZE_PREFIX_BYTES) {
            field.copy_from_slice(&prefix);
        }
        let fields = self.fields.freeze();
        let segment_count = 1 + self
            .pieces
            .iter()
            .map(|(_, records)| 1 + records.len())
            .sum::<usize>();
        let mut segments = Vec::with_capacity(segment_count);
        for (range, records) in self.pieces {
            if !range.is_empty() {
                segments.push(fields.slice(range));
            }
            segments.extend(records);
        }
        if self.fields_from < fields.len() {
            segments.push(fields.slice(self.fields_from..));
        }
        Ok(segments)
    }
}

/// Kafka's unsigned varint (LEB128 of a `u32`).
fn put_unsigned_varint(buffer: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buffer.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buffer.put_u8(value as u8);
}

#[cfg(test)]
#[path = "fetch_frame_tests.rs"]
mod tests;
