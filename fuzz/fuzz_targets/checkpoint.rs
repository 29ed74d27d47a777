//! The metadata checkpoint decoder, `MetadataState::decode_checkpoint`: what recovery trusts after
//! reading `checkpoint/…` from the bucket.
//!
//! Checks, beyond "no panic": a checkpoint that decodes re-encodes to bytes that decode to the
//! same state, and re-encoding that state gives the same bytes again (encoding is canonical). A
//! checkpoint of the version this build writes re-encodes to its input's size (not always to its
//! exact bytes: the decoder accepts topics and producers in any order). Generic over versions:
//! whatever `decode_checkpoint` accepts is held to this.
//!
//! Input: a mode byte, then the checkpoint. Mode bit 0 sets `body_len` and the CRC-32C to match
//! the bytes first, so that the fuzzer reaches the body's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::metadata::{CHECKPOINT_VERSION, MetadataState};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        sluice_fuzz::repair::repair_checkpoint(&mut bytes);
    }
    let Ok(state) = MetadataState::decode_checkpoint(&bytes) else {
        return;
    };
    let encoded = state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&encoded)
        .unwrap_or_else(|error| panic!("a re-encoded checkpoint does not decode: {error}"));
    assert_eq!(decoded, state, "state changed through encode and decode");
    assert_eq!(
        decoded.encode_checkpoint(),
        encoded,
        "encoding is not canonical"
    );
    let version = bytes.get(8..10).map(|v| u16::from_le_bytes([v[0], v[1]]));
    if version == Some(CHECKPOINT_VERSION) {
        // The decoder accepts topics and producers in any order (and ignores the reserved field),
        // so the bytes may differ from the input, but never in size: nothing is dropped or added.
        assert_eq!(encoded.len(), bytes.len(), "re-encoding changed the size");
    }
});
