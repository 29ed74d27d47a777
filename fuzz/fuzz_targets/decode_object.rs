//! A whole object as a GET returns it (`ObjectReader::open`, then every accessor, `verify_batches`
//! and the JSON dump of `sluice dump`), its tail as recovery reads it (`read_tail` with tails of
//! several sizes and a wrong claimed length), and the same bytes as a produce's record batches
//! (`split_batches`). None may panic; the other targets check the formats' round trips.
//!
//! Input: a mode byte, then the object. An odd mode byte repairs the header CRC and the tail
//! checksum first (`sluice_fuzz::repair`), letting libFuzzer explore the index validation behind
//! them; the mode byte also picks the tail sizes and the batch size limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::split_batches;
use sluice_engine::format::{ObjectReader, TailRead, read_tail};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut object = rest.to_vec();
    if mode & 1 == 1 {
        sluice_fuzz::repair::repair_object(&mut object);
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
