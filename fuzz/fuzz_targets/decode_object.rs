//! A whole object as a GET returns it (`ObjectReader::open`, then every accessor, `verify_batches`
//! and the JSON dump of `sluice dump`), its tail as recovery reads it (`read_tail` with tails of
//! several sizes and a wrong claimed length), and the same bytes as a produce's record batches
//! (`split_batches`). Checks, beyond "no panic": an object that opens gives the same index and
//! commands through its tail alone (what recovery reads), every range its index lists is a slice
//! of it, and after `verify_batches` every batch is a valid batch of its indexed length.
//!
//! Input: a mode byte, then the object. An odd mode byte repairs the header CRC and the tail
//! checksum first (`sluice_fuzz::repair`), letting libFuzzer explore the index validation behind
//! them; the mode byte also picks the tail sizes and the batch size limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{split_batches, validate_batch};
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
        let index = reader
            .to_index()
            .expect("an opened object's index deserializes");
        let verified = reader.verify_batches();
        let _ = sluice_engine::format::to_json("fuzz", &reader);
        // Every range the index gives is a slice of the object; one past the end is `None`.
        for segment in 0..reader.segment_count() {
            assert!(reader.segment_bytes(segment).is_some(), "segment {segment}");
        }
        assert!(reader.segment_bytes(reader.segment_count()).is_none());
        for batch in 0..reader.batch_count() {
            let bytes = reader.batch_bytes(batch).expect("a batch the index lists");
            if verified.is_ok() {
                // Verified batches are valid batches of exactly the indexed length.
                let header = validate_batch(&bytes).expect("a verified batch validates");
                assert_eq!(
                    header.total_len() as u64,
                    u64::from(index.batches[batch].byte_len)
                );
            }
        }
        assert!(reader.batch_bytes(reader.batch_count()).is_none());
        // Recovery reads only the tail: it must see the same index and commands as a whole read.
        match read_tail("fuzz", reader.len(), object.clone()) {
            Ok(TailRead::Complete(tail)) => {
                assert_eq!(
                    tail.to_index().ok().as_ref(),
                    Some(&index),
                    "tail and whole differ"
                );
                assert_eq!(tail.commands(), reader.commands());
            }
            other => panic!("an object that opens has a tail that does not: {other:?}"),
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
