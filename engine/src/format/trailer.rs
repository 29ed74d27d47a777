//! The fixed 38-byte trailer: where the commands and the index are, and the tail checksum.

use super::entry::{FieldReader, FieldWriter};
use super::error::FormatError;
use super::{FORMAT_VERSION, HEADER_LEN, INDEX_ALIGN, OBJECT_MAGIC, TRAILER_LEN};

/// Bytes of the trailer covered by the tail checksum (the four offset/length fields).
pub(super) const TRAILER_CHECKSUMMED_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trailer {
    pub(super) index_offset: u64,
    pub(super) index_len: u32,
    pub(super) commands_offset: u64,
    pub(super) commands_len: u32,
    pub(super) checksum: u32,
}

impl Trailer {
    pub(super) fn encode_fields(&self) -> [u8; TRAILER_CHECKSUMMED_LEN] {
        let mut fields = [0u8; TRAILER_CHECKSUMMED_LEN];
        let mut writer = FieldWriter {
            bytes: &mut fields,
            position: 0,
        };
        writer.put(&self.index_offset.to_le_bytes());
        writer.put(&self.index_len.to_le_bytes());
        writer.put(&self.commands_offset.to_le_bytes());
        writer.put(&self.commands_len.to_le_bytes());
        fields
    }

    pub(super) fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut trailer = [0u8; TRAILER_LEN];
        let mut writer = FieldWriter {
            bytes: &mut trailer,
            position: 0,
        };
        writer.put(&self.encode_fields());
        writer.put(&self.checksum.to_le_bytes());
        writer.put(&FORMAT_VERSION.to_le_bytes());
        writer.put(&OBJECT_MAGIC);
        trailer
    }

    /// Decodes the last `TRAILER_LEN` bytes of an object of `object_len` bytes: magic, version, then
    /// that every offset is consistent with the object's length (checked arithmetic throughout: the
    /// values come from the object). The checksum is verified by the caller, which holds the bytes.
    pub(super) fn decode(
        key: &str,
        trailer: &[u8; TRAILER_LEN],
        object_len: u64,
    ) -> Result<Trailer, FormatError> {
        let corrupt = |reason: String| FormatError::CorruptTrailer {
            key: key.to_owned(),
            reason,
        };
        let (fields, [version_low, version_high, magic @ ..]) = trailer.split_at(TRAILER_LEN - 10)
        else {
            return Err(corrupt("trailer shorter than its fixed size".to_owned()));
        };
        if *magic != OBJECT_MAGIC {
            return Err(FormatError::MissingTrailer {
                key: key.to_owned(),
                len: object_len,
            });
        }
        let version = u16::from_le_bytes([*version_low, *version_high]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                key: key.to_owned(),
                version,
                max_supported: FORMAT_VERSION,
            });
        }
        let mut reader = FieldReader {
            bytes: fields,
            position: 0,
        };
        let parsed = Trailer {
            index_offset: reader.take().map_or(0, u64::from_le_bytes),
            index_len: reader.take().map_or(0, u32::from_le_bytes),
            commands_offset: reader.take().map_or(0, u64::from_le_bytes),
            commands_len: reader.take().map_or(0, u32::from_le_bytes),
            checksum: reader.take().map_or(0, u32::from_le_bytes),
        };
        let commands_end = parsed
            .commands_offset
            .checked_add(u64::from(parsed.commands_len));
        let index_end = parsed.index_offset.checked_add(u64::from(parsed.index_len));
        let trailer_start = object_len - TRAILER_LEN as u64; // caller checked object_len >= MIN_OBJECT_LEN
        if parsed.commands_offset < HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "commands_offset {} inside the header",
                parsed.commands_offset
            )));
        }
        let Some(commands_end) = commands_end.filter(|&end| end <= parsed.index_offset) else {
            return Err(corrupt(format!(
                "commands {}+{} overlap the index at {}",
                parsed.commands_offset, parsed.commands_len, parsed.index_offset
            )));
        };
        if !parsed.index_offset.is_multiple_of(INDEX_ALIGN as u64)
            || parsed.index_offset - commands_end >= INDEX_ALIGN as u64
        {
            return Err(corrupt(format!(
                "index_offset {} is not the first {INDEX_ALIGN}-aligned offset after the commands end {commands_end}",
                parsed.index_offset
            )));
        }
        if index_end != Some(trailer_start) || parsed.index_len == 0 {
            return Err(corrupt(format!(
                "index {}+{} does not end where the trailer starts ({trailer_start})",
                parsed.index_offset, parsed.index_len
            )));
        }
        Ok(parsed)
    }
}
