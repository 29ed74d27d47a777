//! The commands section of a log entry (`decode_commands`): topic changes, committed offsets,
//! compaction swaps and producer ids, as every replay of the log reads them.
//!
//! Checks, beyond "no panic": decoded commands encode again, and those bytes decode to the same
//! commands and re-encode to the same bytes.
//!
//! Input: a mode byte, then the section. Mode bit 0 sets `body_len` and the CRC-32C to match the
//! bytes first, so that the fuzzer reaches rkyv's validation of the archive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::metadata::{decode_commands, encode_commands};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        sluice_fuzz::repair::repair_commands(&mut bytes);
    }
    let Ok(commands) = decode_commands(&bytes) else {
        return;
    };
    let encoded = encode_commands(&commands)
        .unwrap_or_else(|error| panic!("decoded commands do not encode: {error}"));
    let decoded = decode_commands(&encoded)
        .unwrap_or_else(|error| panic!("re-encoded commands do not decode: {error}"));
    assert_eq!(
        decoded, commands,
        "commands changed through encode and decode"
    );
    assert_eq!(
        encode_commands(&decoded).ok().as_ref(),
        Some(&encoded),
        "encoding is not deterministic"
    );
});
