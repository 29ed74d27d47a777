//! The record-batch codecs (gzip, snappy in Kafka's xerial framing, lz4 frames, zstd), for the
//! one place the agent reads inside batches: key compaction.
//!
//! Decompression is bounded: a batch is untrusted input, and a few kilobytes of zstd can claim
//! gigabytes. Every decoder reads through a limit and fails with [`CodecError::TooLarge`] past it,
//! so a hostile producer costs a failed compaction job and a log line, never the agent's memory.

use std::io::{Read, Write};

use super::Compression;

/// What a decoder may produce from one batch's records section.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// xerial snappy-java's stream header, which Kafka's clients write before snappy blocks.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("{codec:?}: records decompress past {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
    #[error("{codec:?}: {reason}")]
    Corrupt { codec: Compression, reason: String },
}

/// The records section of a batch compressed with `codec`, decompressed (at most `limit` bytes).
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    match codec {
        Compression::None if input.len() > limit => Err(CodecError::TooLarge { codec, limit }),
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => read_limited(codec, flate2::read::GzDecoder::new(input), limit),
        Compression::Lz4 => read_limited(codec, lz4_flex::frame::FrameDecoder::new(input), limit),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|error| corrupt(error.to_string()))?;
            read_limited(codec, decoder, limit)
        }
        Compression::Snappy => decompress_snappy(input, limit),
    }
}

/// `input` compressed with `codec`, in the framing Kafka's clients read.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(input)
                .map_err(|error| corrupt(error.to_string()))?;
            encoder.finish().map_err(|error| corrupt(error.to_string()))
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder
                .write_all(input)
                .map_err(|error| corrupt(error.to_string()))?;
            encoder.finish().map_err(|error| corrupt(error.to_string()))
        }
        Compression::Zstd => {
            zstd::bulk::compress(input, 3).map_err(|error| corrupt(error.to_string()))
        }
        Compression::Snappy => compress_snappy(input),
    }
}

fn read_limited(
    codec: Compression,
    reader: impl Read,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|error| CodecError::Corrupt {
            codec,
            reason: error.to_string(),
        })?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Kafka's snappy: xerial framing (a 16-byte header, then blocks of `u32 length | raw snappy`),
/// or a bare raw snappy block, as the Java client's reader accepts both.
fn decompress_snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CodecError> {
        let len = snap::raw::decompress_len(block).map_err(|error| corrupt(error.to_string()))?;
        if out.len().saturating_add(len) > limit {
            return Err(CodecError::TooLarge { codec, limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        let target = out.get_mut(start..).unwrap_or_default();
        snap::raw::Decoder::new()
            .decompress(block, target)
            .map_err(|error| corrupt(error.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        raw(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt("short xerial header".to_owned()))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("short block length".to_owned()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt("block past the end".to_owned()))?;
        raw(block, &mut out)?;
        rest = tail.get(len..).unwrap_or_default();
    }
    Ok(out)
}

fn compress_snappy(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + input.len());
    out.extend_from_slice(XERIAL_MAGIC);
    // Version 1, minimum compatible version 1 (what snappy-java writes).
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK_LEN) {
        let compressed = encoder
            .compress_vec(block)
            .map_err(|error| CodecError::Corrupt {
                codec: Compression::Snappy,
                reason: error.to_string(),
            })?;
        let len = u32::try_from(compressed.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        for codec in CODECS {
            let compressed = compress(codec, &input).unwrap();
            assert_eq!(
                decompress(codec, &compressed, DECOMPRESSED_BYTES_MAX).unwrap(),
                input,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        for codec in CODECS {
            let compressed = compress(codec, &zeros).unwrap();
            assert_eq!(
                decompress(codec, &compressed, 1024 * 1024),
                Err(CodecError::TooLarge {
                    codec,
                    limit: 1024 * 1024
                }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in CODECS.into_iter().skip(1) {
            for garbage in [
                &b""[..],
                b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff",
                b"not compressed",
            ] {
                let _ = decompress(codec, garbage, 1024);
            }
        }
    }
}
