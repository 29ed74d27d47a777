//! Object format v1: one object per flush window, which is also one entry of the metadata log.
//!
//! The byte-exact spec is `docs/format.md`; this is the why. An object is
//!
//! ```text
//! | header 64 B | record batches, grouped by partition | commands | pad to 16 | index (rkyv) | trailer 38 B |
//! ```
//!
//! - **Batches are never touched.** The encoder lays out the producer's `Bytes` as chunks of the
//!   upload ([`EncodedObject::chunks`]); it neither copies nor checksums them. Each Kafka batch already
//!   carries a CRC-32C over its records, so a second checksum would cost a full pass over every
//!   payload byte on the hot path and protect nothing new. The decoder checks batch CRCs on demand
//!   ([`ObjectReader::verify_batches`]), and a fetch client checks them anyway.
//! - **Everything else is checksummed, in two independent parts.** The header has its own CRC-32C,
//!   and the trailer's CRC-32C covers the commands, the index and the trailer's own offset fields.
//!   Splitting the two is what lets recovery read *only the tail* of an object (one suffix-range
//!   GET of [`DEFAULT_TAIL_READ_BYTES`]) and still verify everything it uses: the index repeats the
//!   entry fields of the header for exactly that reason.
//! - **The index is read in place.** It is an rkyv archive validated once with bytecheck when the
//!   object is opened; afterwards lookups are pointer reads. The index starts at a 16-byte aligned
//!   offset so that an object buffer that is itself aligned needs no copy (an unaligned buffer costs
//!   one copy of the index, never of the batches).
//! - **Versioned at both ends.** Magic and version open the header and close the trailer, at fixed
//!   positions that every future version keeps, so a reader of either end can refuse a newer object
//!   with [`FormatError::UnsupportedVersion`] instead of misreading it.
//!
//! This module does no I/O and reads no clock: bytes and times come in as arguments.

mod decoder;
mod encoder;
mod entry;
mod error;
mod index;
mod json;
mod trailer;

pub use decoder::{ObjectReader, ObjectTail, TailRead, read_tail};
pub use encoder::{EncodedObject, ObjectBuilder};
pub use entry::{EntryHeader, EntryKind};
pub use error::{ChecksumRegion, EncodeError, FormatError};
pub use index::{
    ArchivedBatchIndex, ArchivedObjectIndex, ArchivedSegmentIndex, BatchIndex, ObjectIndex,
    SegmentIndex,
};
pub use json::to_json;

/// First and last eight bytes of every object.
pub const OBJECT_MAGIC: [u8; 8] = *b"SLUICEOB";
/// The version this code writes, and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the v1 header.
pub const HEADER_LEN: usize = 64;
/// Size of the v1 trailer.
pub const TRAILER_LEN: usize = 38;
/// The index starts at a multiple of this, so an aligned object buffer can be read in place.
pub const INDEX_ALIGN: usize = 16;
/// The smallest possible v1 object: a header and a trailer (an index is never empty, so real
/// objects are larger).
pub const MIN_OBJECT_LEN: u64 = (HEADER_LEN + TRAILER_LEN) as u64;
/// How much of an object's end recovery fetches first. Holds the trailer, the index and the
/// commands of a typical flush window (a few hundred batches); when it does not,
/// [`read_tail`] says exactly how much is needed.
pub const DEFAULT_TAIL_READ_BYTES: u64 = 64 * 1024;

#[cfg(test)]
mod tests;
