//! Kafka record batch (magic 2) headers: parsed and CRC-checked, never decoded past the header and
//! never re-encoded. The one exception is a header patch, not a re-encoding: a LogAppendTime topic's
//! batches get the broker's timestamp in two header fields and a new CRC ([`with_log_append_time`]).
//!
//! The write path's promise is that the bytes a producer sent are the bytes we upload (DESIGN.md,
//! invariant 6). So this module reads only the fixed 61-byte header that the rest of the engine needs
//! (offset delta, record count, timestamps, producer info) and checks the CRC-32C that Kafka already
//! put over the rest of the batch. The records themselves — possibly compressed — stay opaque: the
//! CRC is what makes trusting them safe, and it costs one hardware-accelerated pass over the bytes
//! instead of a decompress-and-re-encode.
//!
//! Older message formats (magic 0 and 1) are refused rather than up-converted; every client since
//! Kafka 0.11 writes magic 2, and up-conversion would mean re-encoding.
//!
//! Layout (big-endian, offsets in bytes):
//!
//! | offset | field                | type |
//! |-------:|----------------------|------|
//! | 0      | baseOffset           | i64  |
//! | 8      | batchLength          | i32 (bytes after this field) |
//! | 12     | partitionLeaderEpoch | i32  |
//! | 16     | magic                | i8 (= 2) |
//! | 17     | crc                  | u32, CRC-32C of bytes 21.. |
//! | 21     | attributes           | i16  |
//! | 23     | lastOffsetDelta      | i32  |
//! | 27     | baseTimestamp        | i64  |
//! | 35     | maxTimestamp         | i64  |
//! | 43     | producerId           | i64  |
//! | 51     | producerEpoch        | i16  |
//! | 53     | baseSequence         | i32  |
//! | 57     | recordCount          | i32  |
//! | 61     | records…             |      |

mod builder;
pub mod codec;
mod header;
mod timestamp;

pub use builder::{BatchBuilder, RecordSpec};
pub use header::{BatchHeader, Compression, TimestampType};
pub use timestamp::{
    NO_TIMESTAMP, apply_topic_timestamp_type, with_log_append_time, with_max_timestamp,
};

use bytes::Bytes;

/// Size of the fixed part of a v2 record batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only record batch magic (message format version) Sluice accepts.
pub const RECORD_BATCH_MAGIC: i8 = 2;
/// Bytes before and including `batchLength`; `batchLength` counts everything after them.
pub const BATCH_LENGTH_PREFIX_LEN: usize = 12;
/// Where the magic byte sits — at the same place in all message formats, which is how Kafka (and we)
/// tell them apart before knowing the layout.
pub const MAGIC_OFFSET: usize = 16;
/// The CRC covers the batch from `attributes` to the end.
pub const CRC_COVERED_FROM: usize = 21;

/// Why a record batch was refused. Each variant is about the batch only; the caller adds which
/// request or object it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The `records` field held no bytes at all.
    #[error("no record batches")]
    Empty,
    /// Fewer bytes than the header or `batchLength` promise.
    #[error("record batch truncated: {len} bytes, need {needed}")]
    Truncated { len: usize, needed: usize },
    /// Message format v0/v1 or garbage.
    #[error("unsupported record batch magic {magic} (only magic 2 is accepted)")]
    UnsupportedMagic { magic: i8 },
    /// `batchLength` is too small to hold the header, or the slice is longer than the batch.
    #[error("invalid record batch length: batchLength {batch_length}, slice of {len} bytes")]
    InvalidLength { batch_length: i32, len: usize },
    /// The CRC-32C stored in the batch does not match the bytes.
    #[error("record batch CRC-32C mismatch: stored {expected:#010x}, computed {got:#010x}")]
    CrcMismatch { expected: u32, got: u32 },
    /// The batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {len} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { len: usize, max_bytes: usize },
    /// `recordCount` is negative.
    #[error("record batch has negative record count {record_count}")]
    NegativeRecordCount { record_count: i32 },
    /// `lastOffsetDelta` is negative although the batch holds records.
    #[error("record batch has last offset delta {last_offset_delta} with {record_count} records")]
    InvalidLastOffsetDelta {
        last_offset_delta: i32,
        record_count: i32,
    },
    /// Compression codec 5..=7 in the attributes.
    #[error("record batch uses unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
    /// The producer set the LogAppendTime bit where Kafka refuses it (INVALID_TIMESTAMP): on a
    /// LogAppendTime topic, or without a timestamp. The broker sets that type, not the producer.
    #[error("record batch has timestamp type LogAppendTime, which only the broker may set")]
    LogAppendTimeFromProducer,
}

/// Checks that `batch` is exactly one well-formed v2 record batch whose CRC-32C matches, and
/// returns its header.
///
/// Compaction can leave gaps in offsets, so `lastOffsetDelta >= recordCount - 1` is deliberately
/// not required; only `lastOffsetDelta >= 0` when the batch holds records.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total_len = header.total_len();
    if batch.len() < total_len {
        return Err(BatchError::Truncated {
            len: batch.len(),
            needed: total_len,
        });
    }
    if batch.len() > total_len {
        return Err(BatchError::InvalidLength {
            batch_length: header.batch_length,
            len: batch.len(),
        });
    }
    if header.record_count < 0 {
        return Err(BatchError::NegativeRecordCount {
            record_count: header.record_count,
        });
    }
    if header.record_count > 0 && header.last_offset_delta < 0 {
        return Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    let covered = batch.get(CRC_COVERED_FROM..).ok_or(BatchError::Truncated {
        len: batch.len(),
        needed: BATCH_HEADER_LEN,
    })?;
    let got = crc32c::crc32c(covered);
    if got != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            got,
        });
    }
    Ok(header)
}

/// Splits a Produce request's `records` field (zero or more concatenated batches) into validated
/// batches. Each returned `Bytes` is a zero-copy slice of `records`.
///
/// `max_batch_bytes` is the topic's `max.message.bytes`; it is checked against `batchLength + 12`
/// before the batch is read, so an oversized batch is refused without touching its bytes.
pub fn split_batches(
    records: Bytes,
    max_batch_bytes: usize,
) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position < records.len() {
        let rest = records.get(position..).unwrap_or_default();
        // Magic first, so that a v0/v1 message set is reported as such and not as a length error.
        if let Some(&magic) = rest.get(MAGIC_OFFSET) {
            let magic = magic as i8;
            if magic != RECORD_BATCH_MAGIC {
                return Err(BatchError::UnsupportedMagic { magic });
            }
        }
        let header = BatchHeader::parse(rest)?;
        let total_len = header.total_len();
        if total_len > max_batch_bytes {
            return Err(BatchError::TooLarge {
                len: total_len,
                max_bytes: max_batch_bytes,
            });
        }
        if rest.len() < total_len {
            return Err(BatchError::Truncated {
                len: rest.len(),
                needed: total_len,
            });
        }
        let end = position + total_len;
        let batch = records.slice(position..end);
        let header = validate_batch(&batch)?;
        batches.push((header, batch));
        position = end;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests;
