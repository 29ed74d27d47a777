//! The decoder of a cluster's commit records, `sluice_engine::log::record::decode_record`: what
//! every agent of a cluster trusts after reading a record from the sequencer (PostgreSQL).
//!
//! Checks, beyond "no panic": a record that decodes is exactly what `encode_record` writes for the
//! object id, length and tail it names (the encoding is canonical), and its index names the object
//! the record names.
//!
//! Input: a mode byte, then the record. Mode bit 0 sets the header's CRC-32C to match the bytes
//! first, so that the fuzzer reaches the tail's validation.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::log::record::{RECORD_HEADER_LEN, decode_record, encode_record};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= RECORD_HEADER_LEN {
        let crc = crc32c::crc32c(&bytes[..RECORD_HEADER_LEN - 4]);
        bytes[RECORD_HEADER_LEN - 4..RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    let bytes = Bytes::from(bytes);
    let Ok(record) = decode_record(&bytes) else {
        return;
    };
    assert_eq!(record.index.entry.seq, record.object);
    let tail = &bytes[RECORD_HEADER_LEN..];
    let encoded = encode_record(record.object, record.object_len, &[tail]);
    assert_eq!(
        encoded, bytes,
        "a decoded record does not re-encode to its bytes"
    );
});
