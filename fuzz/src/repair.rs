//! Checksum repair for the engine's formats.
//!
//! Random bytes almost never carry a valid CRC-32C, which would stop the fuzzer at the first
//! checksum check of every format. So most targets take a *mode* byte first, and when its lowest
//! bit is set they *repair* the checksums (and the length fields the checksum sits behind) of the
//! rest of the input before decoding it, letting libFuzzer explore the validation behind them. The
//! other half of the inputs goes in untouched, so the checksum checks themselves are fuzzed too.

use sluice_engine::batch::{BATCH_LENGTH_PREFIX_LEN, CRC_COVERED_FROM};
use sluice_engine::format::{HEADER_LEN, TRAILER_LEN};

/// Makes an object's header CRC and tail checksum match whatever its bytes say, when the trailer's
/// offsets are usable at all.
pub fn repair_object(object: &mut [u8]) {
    if let Some(header) = object.get(..HEADER_LEN - 4) {
        let crc = crc32c::crc32c(header);
        if let Some(field) = object.get_mut(HEADER_LEN - 4..HEADER_LEN) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
    repair_tail(object);
}

/// Makes the tail checksum (commands, padding, index and the trailer's offset fields) of an object
/// or of an object's tail match, when the trailer's offsets fall inside `tail` as the tail of an
/// object of `tail.len()` bytes.
pub fn repair_tail(tail: &mut [u8]) {
    let len = tail.len();
    let Some(trailer_start) = len.checked_sub(TRAILER_LEN) else {
        return;
    };
    let fields: [u8; 24] = match tail.get(trailer_start..trailer_start + 24) {
        Some(fields) => fields.try_into().unwrap_or([0; 24]),
        None => return,
    };
    let index_offset = u64::from_le_bytes(fields[0..8].try_into().unwrap_or_default());
    let index_len = u32::from_le_bytes(fields[8..12].try_into().unwrap_or_default());
    let commands_offset = u64::from_le_bytes(fields[12..20].try_into().unwrap_or_default());
    let (Ok(start), Some(end)) = (
        usize::try_from(commands_offset),
        index_offset.checked_add(u64::from(index_len)),
    ) else {
        return;
    };
    let Ok(end) = usize::try_from(end) else {
        return;
    };
    let Some(covered) = tail.get(start..end) else {
        return;
    };
    let checksum = crc32c::crc32c_append(crc32c::crc32c(covered), &fields);
    if let Some(field) = tail.get_mut(trailer_start + 24..trailer_start + 28) {
        field.copy_from_slice(&checksum.to_le_bytes());
    }
}

/// The framing shared by checkpoints and commands sections: `| header | body | crc32c u32 |`, the
/// CRC over everything before it. Sets the body length field (`len_at`, `len_bytes` wide, little
/// endian) to the body's true length and the CRC to the bytes' true CRC.
fn repair_framed(bytes: &mut Vec<u8>, header_len: usize, len_at: usize, len_bytes: usize) {
    if bytes.len() < header_len + 4 {
        return;
    }
    let body_len = (bytes.len() - header_len - 4) as u64;
    let field = body_len.to_le_bytes();
    bytes[len_at..len_at + len_bytes].copy_from_slice(&field[..len_bytes]);
    let crc_at = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..crc_at]);
    bytes[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

/// A checkpoint: `| magic 8 | version u16 | reserved u16 | body_len u64 | body | crc32c |`.
pub fn repair_checkpoint(bytes: &mut Vec<u8>) {
    repair_framed(bytes, 20, 12, 8);
}

/// A commands section: `| magic 8 | version u16 | reserved u16 | count u32 | body_len u32 | body |
/// crc32c |`.
pub fn repair_commands(bytes: &mut Vec<u8>) {
    repair_framed(bytes, 20, 16, 4);
}

/// Walks concatenated record batches by their `batchLength` and gives each a correct CRC-32C.
pub fn repair_batches(records: &mut [u8]) {
    let mut position = 0usize;
    while let Some(length) = records.get(position + 8..position + BATCH_LENGTH_PREFIX_LEN) {
        let Ok(length) = usize::try_from(i32::from_be_bytes(length.try_into().unwrap_or_default()))
        else {
            return;
        };
        let end = position + BATCH_LENGTH_PREFIX_LEN + length;
        let Some(covered) = records.get(position + CRC_COVERED_FROM..end) else {
            return;
        };
        let crc = crc32c::crc32c(covered);
        records[position + 17..position + 21].copy_from_slice(&crc.to_be_bytes());
        position = end;
    }
}

/// Gives the commands section inside an object (found through its trailer) a correct length and
/// CRC-32C, before [`repair_object`] recomputes the tail checksum over it.
pub fn repair_object_commands(object: &mut [u8]) {
    let len = object.len();
    let Some(trailer_start) = len.checked_sub(TRAILER_LEN) else {
        return;
    };
    let Some(fields) = object.get(trailer_start + 12..trailer_start + 24) else {
        return;
    };
    let commands_offset = u64::from_le_bytes(fields[0..8].try_into().unwrap_or_default());
    let commands_len = u32::from_le_bytes(fields[8..12].try_into().unwrap_or_default());
    let (Ok(start), Ok(commands_len)) = (
        usize::try_from(commands_offset),
        usize::try_from(commands_len),
    ) else {
        return;
    };
    let Some(section) = start
        .checked_add(commands_len)
        .and_then(|end| object.get_mut(start..end))
    else {
        return;
    };
    let mut repaired = section.to_vec();
    repair_commands(&mut repaired);
    section.copy_from_slice(&repaired);
}
