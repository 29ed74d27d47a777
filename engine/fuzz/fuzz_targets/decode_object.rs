//! Feeds arbitrary bytes to every decoder of untrusted object and request bytes: `ObjectReader::open`,
//! `read_tail` and `split_batches`. None may panic.
//!
//! Random bytes almost never carry valid CRC-32Cs, which would stop the fuzzer at the checksum
//! checks. So when the first byte is odd, the harness first *repairs* the header CRC and the tail
//! checksum of the rest of the input, letting libFuzzer explore the index validation behind them.
//!
//! Run: `cargo +nightly fuzz run decode_object -- -max_total_time=60`. To seed it with the golden
//! fixtures (the first input byte is the mode, so prefix one):
//! `mkdir -p corpus/decode_object && for f in ../testdata/format/v1/*.bin; do
//!  printf '\x01' | cat - "$f" > "corpus/decode_object/$(basename "$f").m1"; done`
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::split_batches;
use sluice_engine::format::{HEADER_LEN, ObjectReader, TRAILER_LEN, TailRead, read_tail};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut object = rest.to_vec();
    if mode & 1 == 1 {
        repair_checksums(&mut object);
    }
    let object = Bytes::from(object);

    if let Ok(reader) = ObjectReader::open("fuzz", object.clone()) {
        let _ = reader.verify_batches();
        let _ = sluice_engine::format::to_json("fuzz", &reader);
        for segment in 0..=reader.segment_count() {
            let _ = reader.segment_bytes(segment);
        }
        for batch in 0..=reader.batch_count() {
            let _ = reader.batch_bytes(batch);
        }
    }

    // Tails of every size the mode byte picks, against the true length and a larger claimed one.
    let object_len = object.len() as u64;
    let tail_len = (usize::from(mode) * 7).min(object.len());
    for (claimed_len, tail) in [
        (object_len, object.clone()),
        (object_len, object.slice(object.len() - tail_len..)),
        (object_len + u64::from(mode), object.clone()),
    ] {
        if let Ok(TailRead::Complete(tail)) = read_tail("fuzz", claimed_len, tail) {
            let _ = tail.to_index();
            let _ = tail.entry();
        }
    }

    let _ = split_batches(object, usize::from(mode) * 64);
});

/// Makes the header CRC and the tail checksum match whatever the bytes say, when the trailer's
/// offsets are usable at all.
fn repair_checksums(object: &mut [u8]) {
    if let Some(header) = object.get(..HEADER_LEN - 4) {
        let crc = crc32c::crc32c(header);
        if let Some(field) = object.get_mut(HEADER_LEN - 4..HEADER_LEN) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
    }
    let len = object.len();
    let Some(trailer_start) = len.checked_sub(TRAILER_LEN) else {
        return;
    };
    let Some(fields) = object.get(trailer_start..trailer_start + 24) else {
        return;
    };
    let fields: [u8; 24] = fields.try_into().unwrap_or([0; 24]);
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
    let Some(covered) = object.get(start..end) else {
        return;
    };
    let checksum = crc32c::crc32c_append(crc32c::crc32c(covered), &fields);
    if let Some(field) = object.get_mut(trailer_start + 24..trailer_start + 28) {
        field.copy_from_slice(&checksum.to_le_bytes());
    }
}
