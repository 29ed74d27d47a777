//! Errors of the object format. Every decode error names the object key: a corrupt object must be
//! findable from the log line alone.

use crate::batch::BatchError;

/// Why an object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("object {key}: truncated, {len} bytes, need at least {needed}")]
    Truncated { key: String, len: u64, needed: u64 },
    #[error("object {key}: bad magic at the start, not a Sluice object")]
    BadMagic { key: String },
    #[error(
        "object {key}: no trailer magic at the end, the object is truncated or not a Sluice object"
    )]
    MissingTrailer { key: String, len: u64 },
    #[error(
        "object {key}: format version {version} is not supported (newest supported: {max_supported})"
    )]
    UnsupportedVersion {
        key: String,
        version: u16,
        max_supported: u16,
    },
    #[error(
        "object {key}: {region} checksum mismatch: stored {expected:#010x}, computed {got:#010x}"
    )]
    ChecksumMismatch {
        key: String,
        region: ChecksumRegion,
        expected: u32,
        got: u32,
    },
    #[error("object {key}: corrupt header: {reason}")]
    CorruptHeader { key: String, reason: String },
    #[error("object {key}: corrupt trailer: {reason}")]
    CorruptTrailer { key: String, reason: String },
    #[error("object {key}: corrupt index: {reason}")]
    CorruptIndex { key: String, reason: String },
    #[error("object {key}: batch {batch}: {source}")]
    BadBatch {
        key: String,
        batch: usize,
        source: BatchError,
    },
    #[error(
        "object {key}: tail of {tail_len} bytes is longer than the object ({object_len} bytes)"
    )]
    TailLongerThanObject {
        key: String,
        tail_len: u64,
        object_len: u64,
    },
}

impl FormatError {
    /// The key of the object the error is about.
    pub fn key(&self) -> &str {
        match self {
            FormatError::Truncated { key, .. }
            | FormatError::BadMagic { key }
            | FormatError::MissingTrailer { key, .. }
            | FormatError::UnsupportedVersion { key, .. }
            | FormatError::ChecksumMismatch { key, .. }
            | FormatError::CorruptHeader { key, .. }
            | FormatError::CorruptTrailer { key, .. }
            | FormatError::CorruptIndex { key, .. }
            | FormatError::BadBatch { key, .. }
            | FormatError::TailLongerThanObject { key, .. } => key,
        }
    }
}

/// Which checksum failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumRegion {
    /// The header's own CRC-32C.
    Header,
    /// The trailer's CRC-32C over commands, index and trailer fields.
    Tail,
}

impl std::fmt::Display for ChecksumRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChecksumRegion::Header => "header",
            ChecksumRegion::Tail => "tail",
        })
    }
}

/// Why an object could not be laid out. Only limits of the format, never the data's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("batch of {len} bytes does not fit the index's u32 length")]
    BatchTooLarge { len: usize },
    #[error("batch slice of {len} bytes does not match its header's length of {header_len}")]
    BatchLengthMismatch { len: usize, header_len: usize },
    #[error("commands section of {len} bytes does not fit the trailer's u32 length")]
    CommandsTooLarge { len: usize },
    #[error("index of {len} bytes does not fit the trailer's u32 length")]
    IndexTooLarge { len: usize },
    #[error("index serialization failed: {reason}")]
    Serialize { reason: String },
}
