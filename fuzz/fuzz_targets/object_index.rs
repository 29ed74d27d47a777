//! The object index (an rkyv archive, `docs/format.md`) as `read_tail` validates it: bytecheck,
//! then the layout checks (segments tile the batch region, batches tile their segment, the sums
//! match). Recovery, fetch and compaction slice objects by what it says.
//!
//! The harness wraps the fuzzed archive in a well-formed tail (empty commands section, padding,
//! the archive, a trailer with the right offsets and checksum), so every input reaches the index
//! validation itself.
//!
//! Checks, beyond "no panic", for an accepted index: it deserializes, its entry fields read back,
//! every segment and batch lies inside the batch region, and serializing it again gives an archive
//! that is accepted and reads back equal.
//!
//! Input: a mode byte, the batch region's length (`u32`, little-endian), then the archive. Mode
//! bit 0 places the archive at an unaligned address (the copying path).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice_engine::format::{
    HEADER_LEN, INDEX_ALIGN, ObjectIndex, TRAILER_LEN, TailRead, read_tail,
};

const VERSION: u16 = 1;
const MAGIC: &[u8; 8] = b"SLUICEOB";

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let Some((region_len, archive)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let region_end = HEADER_LEN as u64 + u64::from(u32::from_le_bytes(*region_len));
    let Some(index) = accepted(region_end, archive, mode & 1 == 1) else {
        return;
    };
    for segment in &index.segments {
        assert!(segment.byte_start >= HEADER_LEN as u64);
        assert!(segment.byte_start + segment.byte_len <= region_end);
        let start = segment.batch_start as usize;
        let batches = &index.batches[start..start + segment.batch_count as usize];
        for batch in batches {
            assert!(batch.byte_start >= segment.byte_start);
            assert!(
                batch.byte_start + u64::from(batch.byte_len)
                    <= segment.byte_start + segment.byte_len
            );
        }
    }
    let again = rkyv::to_bytes::<rkyv::rancor::Error>(&index).expect("serialize an index");
    let round = accepted(region_end, &again, false).expect("a re-serialized index is refused");
    assert_eq!(
        round, index,
        "the index changed through serialize and validate"
    );
});

/// The index `archive` describes, if `read_tail` accepts it as the index of an object whose batch
/// region ends at `region_end`.
fn accepted(region_end: u64, archive: &[u8], unaligned: bool) -> Option<ObjectIndex> {
    let commands_offset = region_end;
    let index_offset = commands_offset.next_multiple_of(INDEX_ALIGN as u64);
    let index_len = u32::try_from(archive.len()).ok()?;
    let object_len = index_offset + u64::from(index_len) + TRAILER_LEN as u64;
    let mut fields = Vec::with_capacity(24);
    fields.extend_from_slice(&index_offset.to_le_bytes());
    fields.extend_from_slice(&index_len.to_le_bytes());
    fields.extend_from_slice(&commands_offset.to_le_bytes());
    fields.extend_from_slice(&0u32.to_le_bytes());
    // The tail starts at the commands; keep the archive at an aligned address unless asked not to.
    let lead = usize::from(unaligned) + INDEX_ALIGN;
    let padding = (index_offset - commands_offset) as usize;
    let mut buffer = BytesMut::zeroed(lead);
    let start_in_buffer = lead - padding;
    buffer.extend_from_slice(archive);
    let covered_start = start_in_buffer;
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&buffer[covered_start..]), &fields);
    buffer.extend_from_slice(&fields);
    buffer.extend_from_slice(&checksum.to_le_bytes());
    buffer.extend_from_slice(&VERSION.to_le_bytes());
    buffer.extend_from_slice(MAGIC);
    let whole: Bytes = buffer.freeze();
    let tail = whole.slice(start_in_buffer..);
    let TailRead::Complete(tail) = read_tail("fuzz", object_len, tail).ok()? else {
        panic!("a whole tail was reported incomplete");
    };
    let index = tail.to_index().expect("a validated index deserializes");
    assert_eq!(tail.entry().ok(), Some(index.entry));
    assert!(tail.commands().is_empty());
    Some(index)
}
