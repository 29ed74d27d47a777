//! Reading objects: a whole object in memory ([`ObjectReader`]) or only its tail ([`read_tail`]).
//!
//! Every offset and length read from an object is untrusted: it is compared against the object's
//! length with checked arithmetic before anything is sliced, and all slicing goes through `get`.

use bytes::Bytes;

use super::entry::{EntryHeader, decode_header};
use super::error::{ChecksumRegion, FormatError};
use super::index::{ArchivedBatchIndex, ArchivedObjectIndex, IndexBuf, ObjectIndex};
use super::trailer::{TRAILER_CHECKSUMMED_LEN, Trailer};
use super::{MIN_OBJECT_LEN, TRAILER_LEN};
use crate::batch::{BatchHeader, validate_batch};

/// Result of [`read_tail`].
#[derive(Debug, Clone)]
pub enum TailRead {
    /// The tail held the trailer, the index and the commands; all verified.
    Complete(ObjectTail),
    /// The tail was too short: fetch at least the last `tail_len_needed` bytes and call again.
    NeedMore { tail_len_needed: u64 },
}

/// The verified end of an object: its index and commands.
#[derive(Debug, Clone)]
pub struct ObjectTail {
    key: String,
    index: IndexBuf,
    commands: Bytes,
    object_len: u64,
}

impl ObjectTail {
    pub fn index(&self) -> &ArchivedObjectIndex {
        self.index.archived()
    }

    /// The index as plain structs (allocates).
    pub fn to_index(&self) -> Result<ObjectIndex, FormatError> {
        self.index.to_owned_index(&self.key)
    }

    /// The entry fields, as repeated in the index.
    pub fn entry(&self) -> Result<EntryHeader, FormatError> {
        rkyv::deserialize::<EntryHeader, rkyv::rancor::Error>(&self.index().entry).map_err(
            |error| FormatError::CorruptIndex {
                key: self.key.clone(),
                reason: error.to_string(),
            },
        )
    }

    /// The commands section (zero-copy slice of the tail).
    pub fn commands(&self) -> Bytes {
        self.commands.clone()
    }

    pub fn object_len(&self) -> u64 {
        self.object_len
    }
}

/// Decodes an object from its last `tail.len()` bytes, given the object's total length (from the
/// suffix-range GET's `Content-Range`, or a HEAD/LIST). Recovery reads only tails: start with
/// [`super::DEFAULT_TAIL_READ_BYTES`] and, on `NeedMore`, fetch what it says.
///
/// Verifies the trailer, the tail checksum (commands, index, trailer fields) and the index. Does not
/// see the header; the index's copy of the entry fields is what the tail checksum protects.
pub fn read_tail(key: &str, object_len: u64, tail: Bytes) -> Result<TailRead, FormatError> {
    let tail_len = tail.len() as u64;
    if tail_len > object_len {
        return Err(FormatError::TailLongerThanObject {
            key: key.to_owned(),
            tail_len,
            object_len,
        });
    }
    if object_len < MIN_OBJECT_LEN {
        return Err(FormatError::Truncated {
            key: key.to_owned(),
            len: object_len,
            needed: MIN_OBJECT_LEN,
        });
    }
    let Some(trailer_bytes) = tail.last_chunk::<TRAILER_LEN>() else {
        return Ok(TailRead::NeedMore {
            tail_len_needed: TRAILER_LEN as u64,
        });
    };
    let trailer = Trailer::decode(key, trailer_bytes, object_len)?;
    let tail_len_needed = object_len - trailer.commands_offset; // commands_offset < object_len: checked in decode
    if tail_len < tail_len_needed {
        return Ok(TailRead::NeedMore { tail_len_needed });
    }
    // Positions relative to the tail; all below `tail_len`, by the trailer checks above.
    let tail_start = object_len - tail_len;
    let local = |offset: u64| usize::try_from(offset - tail_start).unwrap_or(usize::MAX);
    let commands_start = local(trailer.commands_offset);
    let commands_end = commands_start.saturating_add(trailer.commands_len as usize);
    let index_start = local(trailer.index_offset);
    let index_end = index_start.saturating_add(trailer.index_len as usize);
    let truncated = || FormatError::Truncated {
        key: key.to_owned(),
        len: object_len,
        needed: object_len,
    };
    let covered = tail.get(commands_start..index_end).ok_or_else(truncated)?;
    let got = crc32c::crc32c_append(crc32c::crc32c(covered), &trailer.encode_fields());
    if got != trailer.checksum {
        return Err(FormatError::ChecksumMismatch {
            key: key.to_owned(),
            region: ChecksumRegion::Tail,
            expected: trailer.checksum,
            got,
        });
    }
    let padding = tail.get(commands_end..index_start).ok_or_else(truncated)?;
    if padding.iter().any(|&byte| byte != 0) {
        return Err(FormatError::CorruptTrailer {
            key: key.to_owned(),
            reason: "non-zero index padding".to_owned(),
        });
    }
    let index = IndexBuf::new(
        key,
        tail.slice(index_start..index_end),
        trailer.commands_offset,
    )?;
    let commands = tail.slice(commands_start..commands_end);
    debug_assert_eq!(TRAILER_CHECKSUMMED_LEN, trailer.encode_fields().len());
    Ok(TailRead::Complete(ObjectTail {
        key: key.to_owned(),
        index,
        commands,
        object_len,
    }))
}

/// A whole object in memory, validated on open; then every accessor is a zero-copy slice.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    key: String,
    bytes: Bytes,
    header: EntryHeader,
    tail: ObjectTail,
}

impl ObjectReader {
    /// Validates magic, version, both checksums, the index (bytecheck and layout consistency), that
    /// every segment and batch lies inside the batch region, and that the header and the index agree
    /// on the entry fields. Batch CRCs are not checked here; see [`ObjectReader::verify_batches`].
    pub fn open(key: &str, bytes: Bytes) -> Result<ObjectReader, FormatError> {
        let header = decode_header(key, &bytes)?;
        let object_len = bytes.len() as u64;
        let tail = match read_tail(key, object_len, bytes.clone())? {
            TailRead::Complete(tail) => tail,
            // The tail is the whole object, so the trailer asked for more than exists.
            TailRead::NeedMore { tail_len_needed } => {
                return Err(FormatError::Truncated {
                    key: key.to_owned(),
                    len: object_len,
                    needed: tail_len_needed,
                });
            }
        };
        let index_entry = tail.entry()?;
        if index_entry != header {
            return Err(FormatError::CorruptIndex {
                key: key.to_owned(),
                reason: format!("entry fields {index_entry:?} differ from the header's {header:?}"),
            });
        }
        Ok(ObjectReader {
            key: key.to_owned(),
            bytes,
            header,
            tail,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Never true for an opened object.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The whole object.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn header(&self) -> &EntryHeader {
        &self.header
    }

    /// The index, read in place.
    pub fn index(&self) -> &ArchivedObjectIndex {
        self.tail.index()
    }

    /// The index as plain structs (allocates).
    pub fn to_index(&self) -> Result<ObjectIndex, FormatError> {
        self.tail.to_index()
    }

    pub fn segment_count(&self) -> usize {
        self.index().segments.len()
    }

    pub fn batch_count(&self) -> usize {
        self.index().batches.len()
    }

    /// All batches of segment `segment`, as one zero-copy slice; `None` past the last segment.
    pub fn segment_bytes(&self, segment: usize) -> Option<Bytes> {
        let segment = self.index().segments.get(segment)?;
        self.slice(segment.byte_start.to_native(), segment.byte_len.to_native())
    }

    /// Batch `batch` (in layout order) as a zero-copy slice; `None` past the last batch.
    pub fn batch_bytes(&self, batch: usize) -> Option<Bytes> {
        let batch = self.index().batches.get(batch)?;
        self.slice(
            batch.byte_start.to_native(),
            u64::from(batch.byte_len.to_native()),
        )
    }

    /// The commands section (zero-copy).
    pub fn commands(&self) -> Bytes {
        self.tail.commands()
    }

    /// Checks every batch's CRC-32C and that its header agrees with the index. Costs one pass over
    /// all payload bytes, which is why `open` leaves it to the caller.
    pub fn verify_batches(&self) -> Result<(), FormatError> {
        for (number, entry) in self.index().batches.iter().enumerate() {
            let bad_batch = |source| FormatError::BadBatch {
                key: self.key.clone(),
                batch: number,
                source,
            };
            let bytes = self.batch_bytes(number).unwrap_or_default();
            let header = validate_batch(&bytes).map_err(bad_batch)?;
            if !index_matches(entry, &header) {
                return Err(FormatError::CorruptIndex {
                    key: self.key.clone(),
                    reason: format!(
                        "batch {number}: index {entry:?} disagrees with the batch header {header:?}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// `start..start+len`, which `open` proved lies inside the object for every index range.
    fn slice(&self, start: u64, len: u64) -> Option<Bytes> {
        let start = usize::try_from(start).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.bytes.len()).then(|| self.bytes.slice(start..end))
    }
}

fn index_matches(entry: &ArchivedBatchIndex, header: &BatchHeader) -> bool {
    u64::from(entry.offset_count.to_native()) == header.offset_count()
        && i64::from(entry.record_count.to_native()) == i64::from(header.record_count)
        && entry.max_timestamp.to_native() == header.max_timestamp
        && entry.base_timestamp.to_native() == header.base_timestamp
        && entry.producer_id.to_native() == header.producer_id
        && entry.producer_epoch.to_native() == header.producer_epoch
        && entry.base_sequence.to_native() == header.base_sequence
        && entry.attributes.to_native() == header.attributes
}
