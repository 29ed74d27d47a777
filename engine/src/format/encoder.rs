//! Lays out one object from the batches of a flush window, without copying a payload byte.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use rkyv::rancor;

use super::entry::{EntryHeader, encode_header};
use super::error::EncodeError;
use super::index::{BatchIndex, ObjectIndex, SegmentIndex};
use super::trailer::Trailer;
use super::{HEADER_LEN, INDEX_ALIGN};
use crate::batch::BatchHeader;
use crate::types::TopicPartition;

/// Collects the batches of one flush window and lays them out as one object.
///
/// Partitions appear in the order of their first batch; within a partition, batches keep push order
/// (which is the order offsets will be assigned in). Holds `Bytes` handles only: the memory stays the
/// network buffer it was read into until the upload is done.
#[derive(Debug)]
pub struct ObjectBuilder {
    entry: EntryHeader,
    partitions: Vec<PartitionBatches>,
    partition_slot: HashMap<TopicPartition, usize>,
    commands: Bytes,
    batch_count: usize,
    batch_bytes: u64,
}

#[derive(Debug)]
struct PartitionBatches {
    tp: TopicPartition,
    batches: Vec<(BatchIndex, Bytes)>,
}

impl ObjectBuilder {
    pub fn new(entry: EntryHeader) -> ObjectBuilder {
        ObjectBuilder {
            entry,
            partitions: Vec::new(),
            partition_slot: HashMap::new(),
            commands: Bytes::new(),
            batch_count: 0,
            batch_bytes: 0,
        }
    }

    /// Adds a batch that [`crate::batch::validate_batch`] accepted, with the header it returned.
    /// Keeps the `Bytes` handle; no copy.
    pub fn push_batch(
        &mut self,
        tp: TopicPartition,
        header: &BatchHeader,
        batch: Bytes,
    ) -> Result<(), EncodeError> {
        if batch.len() != header.total_len() {
            return Err(EncodeError::BatchLengthMismatch {
                len: batch.len(),
                header_len: header.total_len(),
            });
        }
        let byte_len = u32::try_from(batch.len())
            .map_err(|_| EncodeError::BatchTooLarge { len: batch.len() })?;
        let index = BatchIndex {
            byte_start: 0, // known once the layout is fixed, in `finish`
            byte_len,
            offset_count: u32::try_from(header.offset_count()).unwrap_or(u32::MAX),
            record_count: u32::try_from(header.record_count).unwrap_or(0),
            max_timestamp: header.max_timestamp,
            base_timestamp: header.base_timestamp,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            attributes: header.attributes,
        };
        let slot = *self.partition_slot.entry(tp).or_insert_with(|| {
            self.partitions.push(PartitionBatches {
                tp,
                batches: Vec::new(),
            });
            self.partitions.len() - 1
        });
        if let Some(partition) = self.partitions.get_mut(slot) {
            partition.batches.push((index, batch));
        }
        self.batch_count += 1;
        self.batch_bytes += u64::from(byte_len);
        Ok(())
    }

    /// Sets the commands section (the metadata layer's encoded commands), replacing any earlier one.
    pub fn set_commands(&mut self, commands: Bytes) -> Result<(), EncodeError> {
        if u32::try_from(commands.len()).is_err() {
            return Err(EncodeError::CommandsTooLarge {
                len: commands.len(),
            });
        }
        self.commands = commands;
        Ok(())
    }

    pub fn batch_count(&self) -> usize {
        self.batch_count
    }

    /// Batch and command bytes so far: what the flusher compares with its size cap. Excludes header,
    /// index and trailer, which are small and bounded by the batch count.
    pub fn payload_len(&self) -> u64 {
        self.batch_bytes + self.commands.len() as u64
    }

    /// Fixes the layout and builds header, index and trailer.
    pub fn finish(self) -> Result<EncodedObject, EncodeError> {
        let mut chunks = Vec::with_capacity(self.batch_count + 3);
        chunks.push(Bytes::copy_from_slice(&encode_header(&self.entry)));
        let mut position = HEADER_LEN as u64;
        let mut segments = Vec::with_capacity(self.partitions.len());
        let mut batches = Vec::with_capacity(self.batch_count);
        for partition in self.partitions {
            let mut segment = SegmentIndex {
                tp: partition.tp,
                byte_start: position,
                byte_len: 0,
                batch_start: u32::try_from(batches.len()).unwrap_or(u32::MAX),
                batch_count: u32::try_from(partition.batches.len()).unwrap_or(u32::MAX),
                offset_count: 0,
                record_count: 0,
                max_timestamp: i64::MIN,
            };
            for (mut batch, bytes) in partition.batches {
                batch.byte_start = position;
                position += u64::from(batch.byte_len);
                segment.byte_len += u64::from(batch.byte_len);
                segment.offset_count += u64::from(batch.offset_count);
                segment.record_count += u64::from(batch.record_count);
                segment.max_timestamp = segment.max_timestamp.max(batch.max_timestamp);
                batches.push(batch);
                chunks.push(bytes);
            }
            segments.push(segment);
        }

        let commands_offset = position;
        let commands_len = self.commands.len() as u32; // checked in `set_commands`
        let commands_crc = crc32c::crc32c(&self.commands);
        if !self.commands.is_empty() {
            chunks.push(self.commands);
        }
        position += u64::from(commands_len);
        let index_offset = position.next_multiple_of(INDEX_ALIGN as u64);
        let padding_len = (index_offset - position) as usize;

        let index = ObjectIndex {
            entry: self.entry,
            segments,
            batches,
        };
        let archived =
            rkyv::to_bytes::<rancor::Error>(&index).map_err(|error| EncodeError::Serialize {
                reason: error.to_string(),
            })?;
        let index_len = u32::try_from(archived.len()).map_err(|_| EncodeError::IndexTooLarge {
            len: archived.len(),
        })?;

        let mut trailer = Trailer {
            index_offset,
            index_len,
            commands_offset,
            commands_len,
            checksum: 0,
        };
        let mut tail = BytesMut::with_capacity(padding_len + archived.len() + super::TRAILER_LEN);
        tail.put_bytes(0, padding_len);
        tail.put_slice(&archived);
        let checksum = crc32c::crc32c_append(commands_crc, &tail);
        trailer.checksum = crc32c::crc32c_append(checksum, &trailer.encode_fields());
        tail.put_slice(&trailer.encode());
        let len = index_offset + u64::from(index_len) + super::TRAILER_LEN as u64;
        chunks.push(tail.freeze());
        Ok(EncodedObject { chunks, len, index })
    }
}

/// A laid-out object: the chunks to upload, in order, and the index the writer commits from.
#[derive(Debug, Clone)]
pub struct EncodedObject {
    chunks: Vec<Bytes>,
    len: u64,
    index: ObjectIndex,
}

impl EncodedObject {
    /// `[header, batch, …, batch, commands (if any), padding + index + trailer]`; concatenated they
    /// are the object. Batch chunks are the exact `Bytes` handed to [`ObjectBuilder::push_batch`].
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// Size of the object in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: an object always has a header, an index and a trailer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index as built, so the writer can commit without re-parsing the object.
    pub fn index(&self) -> &ObjectIndex {
        &self.index
    }

    /// The segments (one per partition) in layout order.
    pub fn segments(&self) -> &[SegmentIndex] {
        &self.index.segments
    }

    /// The object as one buffer. Copies every byte: for tests, fixtures and tools, not the write path.
    pub fn to_contiguous(&self) -> Bytes {
        let mut object = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for chunk in &self.chunks {
            object.put_slice(chunk);
        }
        object.freeze()
    }
}
