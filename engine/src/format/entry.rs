//! The entry fields and the fixed 64-byte header that carries them at the start of an object.

use super::error::{ChecksumRegion, FormatError};
use super::{FORMAT_VERSION, HEADER_LEN, OBJECT_MAGIC};
use crate::types::LogSeq;

/// What makes an object a log entry. Repeated in the index so that a reader of the tail alone has it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct EntryHeader {
    /// The log position this object is written at.
    pub seq: LogSeq,
    /// Epoch of the writer that wrote it; a reader drops entries of a fenced (older) epoch.
    pub writer_epoch: u64,
    /// The previous valid entry this writer chained from; `None` only for the first entry of a log.
    pub prev_seq: Option<LogSeq>,
    /// Unique per entry per writer: tells "my own entry whose PUT response was lost" apart from a
    /// rival's entry at the same position.
    pub entry_nonce: u64,
    pub kind: EntryKind,
    /// Wall-clock time the writer sealed the entry, passed in by the caller.
    pub created_at_ms: i64,
}

/// What an entry does to the log.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum EntryKind {
    /// Record batches and/or metadata commands.
    Data = 0,
    /// A writer taking over the log (raising the epoch); carries no batches.
    Claim = 1,
}

impl EntryKind {
    fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            0 => Some(EntryKind::Data),
            1 => Some(EntryKind::Claim),
            _ => None,
        }
    }
}

/// Header flags bit 0: `prev_seq` is present.
const FLAG_HAS_PREV_SEQ: u16 = 1;
const KNOWN_FLAGS: u16 = FLAG_HAS_PREV_SEQ;
/// Bytes 0..60 are covered by the header CRC stored in 60..64.
const HEADER_CRC_AT: usize = HEADER_LEN - 4;

pub(super) fn encode_header(entry: &EntryHeader) -> [u8; HEADER_LEN] {
    let flags = if entry.prev_seq.is_some() {
        FLAG_HAS_PREV_SEQ
    } else {
        0
    };
    let mut header = [0u8; HEADER_LEN];
    let mut writer = FieldWriter {
        bytes: &mut header,
        position: 0,
    };
    writer.put(&OBJECT_MAGIC);
    writer.put(&FORMAT_VERSION.to_le_bytes());
    writer.put(&flags.to_le_bytes());
    writer.put(&(HEADER_LEN as u32).to_le_bytes());
    writer.put(&entry.seq.0.to_le_bytes());
    writer.put(&entry.writer_epoch.to_le_bytes());
    writer.put(&entry.prev_seq.map_or(0, |seq| seq.0).to_le_bytes());
    writer.put(&entry.entry_nonce.to_le_bytes());
    writer.put(&entry.created_at_ms.to_le_bytes());
    writer.put(&[entry.kind as u8, 0, 0, 0]);
    let crc = crc32c::crc32c(header.get(..HEADER_CRC_AT).unwrap_or_default());
    if let Some(field) = header.get_mut(HEADER_CRC_AT..) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    header
}

/// Decodes the header at the start of `object`: magic, then version (so a newer object is refused
/// before anything version-specific is read), then its CRC, then the fields.
pub(super) fn decode_header(key: &str, object: &[u8]) -> Result<EntryHeader, FormatError> {
    let corrupt = |reason: String| FormatError::CorruptHeader {
        key: key.to_owned(),
        reason,
    };
    if object.len() < OBJECT_MAGIC.len() + 2 {
        return Err(FormatError::Truncated {
            key: key.to_owned(),
            len: object.len() as u64,
            needed: super::MIN_OBJECT_LEN,
        });
    }
    let mut reader = FieldReader {
        bytes: object,
        position: 0,
    };
    if reader.take::<8>() != Some(OBJECT_MAGIC) {
        return Err(FormatError::BadMagic {
            key: key.to_owned(),
        });
    }
    let version = reader.take().map_or(0, u16::from_le_bytes);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            key: key.to_owned(),
            version,
            max_supported: FORMAT_VERSION,
        });
    }
    let Some(header) = object.first_chunk::<HEADER_LEN>() else {
        return Err(FormatError::Truncated {
            key: key.to_owned(),
            len: object.len() as u64,
            needed: super::MIN_OBJECT_LEN,
        });
    };
    let (covered, stored) = header.split_at(HEADER_CRC_AT);
    let expected = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    let got = crc32c::crc32c(covered);
    if expected != got {
        return Err(FormatError::ChecksumMismatch {
            key: key.to_owned(),
            region: ChecksumRegion::Header,
            expected,
            got,
        });
    }
    let flags = reader.take().map_or(0, u16::from_le_bytes);
    let header_len = reader.take().map_or(0, u32::from_le_bytes);
    let seq = reader.take().map_or(0, u64::from_le_bytes);
    let writer_epoch = reader.take().map_or(0, u64::from_le_bytes);
    let prev_seq = reader.take().map_or(0, u64::from_le_bytes);
    let entry_nonce = reader.take().map_or(0, u64::from_le_bytes);
    let created_at_ms = reader.take().map_or(0, i64::from_le_bytes);
    let [kind, reserved @ ..] = reader.take::<4>().unwrap_or_default();
    if header_len != HEADER_LEN as u32 {
        return Err(corrupt(format!(
            "header_len {header_len}, v1 headers are {HEADER_LEN} bytes"
        )));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(corrupt(format!("unknown flags {flags:#06x}")));
    }
    if reserved != [0; 3] {
        return Err(corrupt(format!("reserved bytes {reserved:?} are not zero")));
    }
    let kind =
        EntryKind::from_byte(kind).ok_or_else(|| corrupt(format!("unknown entry kind {kind}")))?;
    if flags & FLAG_HAS_PREV_SEQ == 0 && prev_seq != 0 {
        return Err(corrupt(format!(
            "prev_seq {prev_seq} without the has-prev-seq flag"
        )));
    }
    Ok(EntryHeader {
        seq: LogSeq(seq),
        writer_epoch,
        prev_seq: (flags & FLAG_HAS_PREV_SEQ != 0).then_some(LogSeq(prev_seq)),
        entry_nonce,
        kind,
        created_at_ms,
    })
}

/// Writes consecutive fields; the header array's size is fixed, and `encode_header` writes exactly
/// `HEADER_CRC_AT` bytes, so writes never fall outside it.
pub(super) struct FieldWriter<'a> {
    pub(super) bytes: &'a mut [u8],
    pub(super) position: usize,
}

impl FieldWriter<'_> {
    pub(super) fn put(&mut self, field: &[u8]) {
        let end = self.position + field.len();
        if let Some(target) = self.bytes.get_mut(self.position..end) {
            target.copy_from_slice(field);
        }
        self.position = end;
    }
}

/// Reads consecutive fixed-size fields; `None` past the end.
pub(super) struct FieldReader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) position: usize,
}

impl FieldReader<'_> {
    pub(super) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.position.checked_add(N)?;
        let field = self.bytes.get(self.position..end)?.try_into().ok()?;
        self.position = end;
        Some(field)
    }
}
