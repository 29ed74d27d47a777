//! The index: an rkyv archive of where every partition's batches lie, read in place.
//!
//! Validation happens in two layers. bytecheck proves the archive is memory-safe to read; then
//! [`validate_index`] proves it is *consistent*: segments tile the batch region in order, each
//! segment's batches tile the segment, and the per-segment sums match their batches. After that,
//! every range a caller gets from the index is inside the object, so slicing never needs a second
//! thought.

use std::collections::HashSet;

use bytes::Bytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::entry::EntryHeader;
use super::error::FormatError;
use super::{HEADER_LEN, INDEX_ALIGN};
use crate::batch::BATCH_HEADER_LEN;
use crate::types::{TopicId, TopicPartition};

/// Everything a reader needs to serve an object without reading its batches' headers.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ObjectIndex {
    pub entry: EntryHeader,
    /// One per partition, in layout order.
    pub segments: Vec<SegmentIndex>,
    /// Every batch, in layout order; segment `i` owns `batches[batch_start..batch_start + batch_count]`.
    pub batches: Vec<BatchIndex>,
}

/// The contiguous run of one partition's batches.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct SegmentIndex {
    pub tp: TopicPartition,
    /// Absolute position in the object.
    pub byte_start: u64,
    pub byte_len: u64,
    pub batch_start: u32,
    pub batch_count: u32,
    /// Sum of the batches' `lastOffsetDelta + 1`: how many offsets committing this segment assigns.
    pub offset_count: u64,
    pub record_count: u64,
    pub max_timestamp: i64,
}

/// One record batch, with the header fields that offset assignment and producer state need.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct BatchIndex {
    /// Absolute position in the object.
    pub byte_start: u64,
    pub byte_len: u32,
    pub offset_count: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub attributes: i16,
}

impl ArchivedSegmentIndex {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(TopicId(self.tp.topic_id.0), self.tp.partition.to_native())
    }
}

/// The bytes of a validated index, in place when they are aligned and copied once when not.
#[derive(Debug, Clone)]
pub(super) enum IndexBuf {
    InPlace(Bytes),
    Copied(AlignedVec<INDEX_ALIGN>),
}

impl IndexBuf {
    /// Validates `bytes` as an archived [`ObjectIndex`] (bytecheck, then [`validate_index`] against
    /// the batch region `HEADER_LEN..batch_region_end`) and keeps them.
    pub(super) fn new(
        key: &str,
        bytes: Bytes,
        batch_region_end: u64,
    ) -> Result<IndexBuf, FormatError> {
        let buf = if (bytes.as_ptr() as usize).is_multiple_of(INDEX_ALIGN) {
            IndexBuf::InPlace(bytes)
        } else {
            let mut copy = AlignedVec::<INDEX_ALIGN>::with_capacity(bytes.len());
            copy.extend_from_slice(&bytes);
            IndexBuf::Copied(copy)
        };
        let index = rkyv::access::<ArchivedObjectIndex, rancor::Error>(buf.as_slice()).map_err(
            |error| FormatError::CorruptIndex {
                key: key.to_owned(),
                reason: error.to_string(),
            },
        )?;
        validate_index(key, index, batch_region_end)?;
        Ok(buf)
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            IndexBuf::InPlace(bytes) => bytes,
            IndexBuf::Copied(copy) => copy.as_slice(),
        }
    }

    pub(super) fn archived(&self) -> &ArchivedObjectIndex {
        // SAFETY: `new` is the only constructor and it ran `rkyv::access` (full bytecheck
        // validation) over exactly these bytes, which are immutable afterwards (`Bytes` is
        // immutable; the `AlignedVec` is private and never mutated), at this same alignment.
        unsafe { rkyv::access_unchecked::<ArchivedObjectIndex>(self.as_slice()) }
    }

    pub(super) fn to_owned_index(&self, key: &str) -> Result<ObjectIndex, FormatError> {
        // Deserializing a validated archive into plain structs allocates but cannot fail in practice:
        // every field is a number or a vector of them.
        // rkyv still wants a fallible error type; report a failure as corruption rather than panic.
        rkyv::deserialize::<ObjectIndex, rancor::Error>(self.archived()).map_err(|error| {
            FormatError::CorruptIndex {
                key: key.to_owned(),
                reason: error.to_string(),
            }
        })
    }
}

/// Checks that the index describes a consistent layout of the batch region `HEADER_LEN..region_end`.
pub(super) fn validate_index(
    key: &str,
    index: &ArchivedObjectIndex,
    region_end: u64,
) -> Result<(), FormatError> {
    let corrupt = |reason: String| FormatError::CorruptIndex {
        key: key.to_owned(),
        reason,
    };
    let batches = index.batches.as_slice();
    let mut position = HEADER_LEN as u64;
    let mut next_batch = 0usize;
    let mut seen = HashSet::with_capacity(index.segments.len());
    for (segment_number, segment) in index.segments.iter().enumerate() {
        let tp = segment.topic_partition();
        if !seen.insert(tp) {
            return Err(corrupt(format!(
                "segment {segment_number}: partition {tp} appears twice"
            )));
        }
        let batch_start = segment.batch_start.to_native() as usize;
        let batch_count = segment.batch_count.to_native() as usize;
        if batch_start != next_batch || batch_count == 0 {
            return Err(corrupt(format!(
                "segment {segment_number}: batches {batch_start}+{batch_count}, expected a non-empty run from {next_batch}"
            )));
        }
        let Some(segment_batches) = batch_start
            .checked_add(batch_count)
            .and_then(|end| batches.get(batch_start..end))
        else {
            return Err(corrupt(format!(
                "segment {segment_number}: batches {batch_start}+{batch_count} past the {} batches",
                batches.len()
            )));
        };
        if segment.byte_start.to_native() != position {
            return Err(corrupt(format!(
                "segment {segment_number}: starts at {}, expected {position}",
                segment.byte_start
            )));
        }
        let mut offset_count = 0u64;
        let mut record_count = 0u64;
        let mut max_timestamp = i64::MIN;
        for (batch_number, batch) in (batch_start..).zip(segment_batches) {
            let byte_len = batch.byte_len.to_native();
            if batch.byte_start.to_native() != position || (byte_len as usize) < BATCH_HEADER_LEN {
                return Err(corrupt(format!(
                    "batch {batch_number}: {}+{byte_len}, expected a batch of at least {BATCH_HEADER_LEN} bytes at {position}",
                    batch.byte_start
                )));
            }
            position = position.saturating_add(u64::from(byte_len));
            offset_count = offset_count.saturating_add(u64::from(batch.offset_count.to_native()));
            record_count = record_count.saturating_add(u64::from(batch.record_count.to_native()));
            max_timestamp = max_timestamp.max(batch.max_timestamp.to_native());
        }
        let sums = (
            position - segment.byte_start.to_native(),
            offset_count,
            record_count,
            max_timestamp,
        );
        let stored = (
            segment.byte_len.to_native(),
            segment.offset_count.to_native(),
            segment.record_count.to_native(),
            segment.max_timestamp.to_native(),
        );
        if sums != stored {
            return Err(corrupt(format!(
                "segment {segment_number}: (bytes, offsets, records, max timestamp) {stored:?} but its batches sum to {sums:?}"
            )));
        }
        next_batch = batch_start + batch_count;
    }
    if next_batch != batches.len() {
        return Err(corrupt(format!(
            "{} batches but segments cover {next_batch}",
            batches.len()
        )));
    }
    if position != region_end {
        return Err(corrupt(format!(
            "batches end at {position} but the commands start at {region_end}"
        )));
    }
    Ok(())
}
