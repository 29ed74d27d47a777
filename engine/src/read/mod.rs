//! The read side: a memory-budgeted block cache and the assembly of fetch data from index entries.
//!
//! Both are pure (no I/O): the caller looks ranges up in the [`BlockCache`], reads misses from the
//! store itself, and hands the bytes to [`assemble_records`], which rewrites each batch's
//! `baseOffset` to the offset the log assigned it — in a copy of the batch's first 16 bytes only;
//! the rest of the answer is zero-copy slices of the cached bytes ([`RecordSegments`]). That rewrite is why stored objects never need
//! offsets (see `docs/design.md`): the batch CRC-32C covers neither `baseOffset` nor
//! `partitionLeaderEpoch`, so patching them leaves every batch valid.
//!
//! The cache is single-threaded on purpose (`&mut self`, no locks): each core owns one, and the
//! `Bytes` it holds are shared, reference-counted views of the same buffers the flusher uploaded, so
//! a live-edge fetch on any core costs no copy of the object and no object-store request.

mod assemble;
mod cache;

pub use assemble::{
    AssembleError, AssembledRecords, COPIED_BATCH_BYTES_MAX, PATCHED_HEADER_BYTES, RecordSegments,
    SegmentPart, assemble_parts, assemble_records,
};
pub use cache::{BlockCache, CacheStats};
