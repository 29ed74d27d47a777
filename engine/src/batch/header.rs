//! The fixed 61-byte header of a v2 record batch.

use super::{
    BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX_LEN, BatchError, MAGIC_OFFSET, RECORD_BATCH_MAGIC,
};

/// The header of a Kafka v2 record batch, field for field (see the table in [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after this field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Compression codec, attributes bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec for attributes bits 0-2, or `None` for the unassigned values 5..=7.
    pub fn from_codec(codec: u8) -> Option<Compression> {
        match codec {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The value of attributes bits 0-2.
    pub fn codec(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Timestamp type, attributes bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

const COMPRESSION_MASK: i16 = 0b111;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

impl BatchHeader {
    /// Parses the 61-byte header at the start of `bytes`. Checks the magic, that `batchLength` can
    /// hold the rest of the header, and the compression codec; does not look at the records or the
    /// CRC (that is [`super::validate_batch`]).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if let Some(&magic) = bytes.get(MAGIC_OFFSET) {
            let magic = magic as i8;
            if magic != RECORD_BATCH_MAGIC {
                return Err(BatchError::UnsupportedMagic { magic });
            }
        }
        let Some(fixed) = bytes.first_chunk::<BATCH_HEADER_LEN>() else {
            return Err(BatchError::Truncated {
                len: bytes.len(),
                needed: BATCH_HEADER_LEN,
            });
        };
        let mut reader = FieldReader {
            bytes: fixed,
            position: 0,
        };
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(reader.take()),
            batch_length: i32::from_be_bytes(reader.take()),
            partition_leader_epoch: i32::from_be_bytes(reader.take()),
            magic: i8::from_be_bytes(reader.take()),
            crc: u32::from_be_bytes(reader.take()),
            attributes: i16::from_be_bytes(reader.take()),
            last_offset_delta: i32::from_be_bytes(reader.take()),
            base_timestamp: i64::from_be_bytes(reader.take()),
            max_timestamp: i64::from_be_bytes(reader.take()),
            producer_id: i64::from_be_bytes(reader.take()),
            producer_epoch: i16::from_be_bytes(reader.take()),
            base_sequence: i32::from_be_bytes(reader.take()),
            record_count: i32::from_be_bytes(reader.take()),
        };
        let min_batch_length = (BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX_LEN) as i32;
        if header.batch_length < min_batch_length {
            return Err(BatchError::InvalidLength {
                batch_length: header.batch_length,
                len: bytes.len(),
            });
        }
        let codec = (header.attributes & COMPRESSION_MASK) as u8;
        if Compression::from_codec(codec).is_none() {
            return Err(BatchError::UnknownCompression { codec });
        }
        Ok(header)
    }

    /// The compression codec. A header from [`BatchHeader::parse`] always has a known codec; for a
    /// hand-built header with an unassigned codec this answers `None` (uncompressed) rather than panic.
    pub fn compression(&self) -> Compression {
        Compression::from_codec((self.attributes & COMPRESSION_MASK) as u8)
            .unwrap_or(Compression::None)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// How many offsets the batch occupies: `lastOffsetDelta + 1`, which can exceed the record count
    /// after compaction. Zero for an empty batch with a negative delta.
    pub fn offset_count(&self) -> u64 {
        u64::try_from(i64::from(self.last_offset_delta) + 1).unwrap_or(0)
    }

    /// Size of the whole batch in bytes: `batchLength + 12`. Zero for a negative `batchLength`,
    /// which [`BatchHeader::parse`] never returns.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |len| len + BATCH_LENGTH_PREFIX_LEN)
    }
}

/// Reads consecutive fixed-size fields out of the header array; the array's size is checked once
/// by the caller, so every `take` is in bounds by construction.
struct FieldReader<'a> {
    bytes: &'a [u8; BATCH_HEADER_LEN],
    position: usize,
}

impl FieldReader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0u8; N];
        if let Some(source) = self.bytes.get(self.position..self.position + N) {
            field.copy_from_slice(source);
        }
        self.position += N;
        field
    }
}
