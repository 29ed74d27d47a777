//! Shared code of the fuzz targets (`fuzz_targets/`; docs/testing.md, "Fuzzing").
//!
//! - [`repair`]: checksum repair, so that random bytes get past the CRC checks of every format.
//! - [`agent`]: a whole agent on an in-memory store, driven by a client's bytes without sockets.
//! - [`split_parts`]: several byte strings out of one input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod agent;
pub mod repair;

/// Splits `data` into at most `count_max` parts, each prefixed by its length as a little-endian
/// `u32` (a length past the end takes whatever is left): how targets that need several byte
/// strings (log entries, configuration layers) read them out of one input.
pub fn split_parts(mut data: &[u8], count_max: usize) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    while data.len() >= 4 && parts.len() < count_max {
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let rest = &data[4..];
        let (part, tail) = rest.split_at(len.min(rest.len()));
        parts.push(part);
        data = tail;
    }
    parts
}

/// The inverse of [`split_parts`], for writing seeds.
pub fn join_parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Splits off the mode byte that most targets start with.
pub fn mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(&mode, rest)| (mode, rest))
}
