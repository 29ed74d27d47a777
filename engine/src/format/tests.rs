#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;

use super::*;
use crate::batch::{BatchBuilder, validate_batch};
use crate::types::{LogSeq, TopicId, TopicPartition};

fn entry(kind: EntryKind) -> EntryHeader {
    EntryHeader {
        seq: LogSeq(7),
        writer_epoch: 3,
        prev_seq: Some(LogSeq(6)),
        entry_nonce: 0xfeed,
        kind,
        created_at_ms: 1_700_000_000_000,
    }
}

#[test]
fn layout_groups_by_partition_in_first_push_order() {
    let a = TopicPartition::new(TopicId([1; 16]), 0);
    let b = TopicPartition::new(TopicId([2; 16]), 5);
    let mut builder = ObjectBuilder::new(entry(EntryKind::Data));
    let mut pushed = Vec::new();
    for (i, tp) in [b, a, b, a, b].into_iter().enumerate() {
        let batch = BatchBuilder::new(100 + i as i64)
            .record(0, None, &vec![i as u8; 10 * i])
            .encode();
        let header = validate_batch(&batch).unwrap();
        builder.push_batch(tp, &header, batch.clone()).unwrap();
        pushed.push((tp, batch));
    }
    builder.set_commands(Bytes::from_static(b"cmds")).unwrap();
    let encoded = builder.finish().unwrap();
    let reader = ObjectReader::open("log/7", encoded.to_contiguous()).unwrap();
    reader.verify_batches().unwrap();
    assert_eq!(reader.segment_count(), 2);
    assert_eq!(reader.index().segments[0].topic_partition(), b);
    assert_eq!(reader.index().segments[1].topic_partition(), a);
    let expected: Vec<&Bytes> = [0, 2, 4, 1, 3].iter().map(|&i| &pushed[i].1).collect();
    for (number, batch) in expected.into_iter().enumerate() {
        assert_eq!(&reader.batch_bytes(number).unwrap(), batch);
    }
    assert_eq!(reader.commands(), Bytes::from_static(b"cmds"));
    assert_eq!(reader.to_index().unwrap(), *encoded.index());
    assert_eq!(reader.header(), &entry(EntryKind::Data));
    let json = to_json("log/7", &reader).unwrap();
    assert_eq!(json["segments"][0]["batches"].as_array().unwrap().len(), 3);
    assert_eq!(json["entry"]["writer_epoch"], 3);
}

#[test]
fn header_and_index_must_agree() {
    let encoded = ObjectBuilder::new(entry(EntryKind::Claim))
        .finish()
        .unwrap();
    let mut object = encoded.to_contiguous().to_vec();
    // Change the header's nonce and fix its CRC: only the cross-check can notice.
    object[40] ^= 1;
    let crc = crc32c::crc32c(&object[..60]);
    object[60..64].copy_from_slice(&crc.to_le_bytes());
    let error = ObjectReader::open("k", Bytes::from(object)).unwrap_err();
    assert!(
        matches!(error, FormatError::CorruptIndex { ref key, .. } if key == "k"),
        "{error:?}"
    );
}

#[test]
fn unaligned_buffer_reads_through_a_copy_of_the_index() {
    let tp = TopicPartition::new(TopicId([4; 16]), 1);
    let mut builder = ObjectBuilder::new(entry(EntryKind::Data));
    let batch = BatchBuilder::new(9).record(0, None, b"payload").encode();
    builder
        .push_batch(tp, &validate_batch(&batch).unwrap(), batch.clone())
        .unwrap();
    let object = builder.finish().unwrap().to_contiguous();
    for shift in 0..INDEX_ALIGN {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(&object);
        let shifted = Bytes::from(shifted).slice(shift..);
        let reader = ObjectReader::open("k", shifted).unwrap();
        assert_eq!(reader.index().segments[0].topic_partition(), tp);
        assert_eq!(reader.batch_bytes(0).unwrap(), batch);
        let in_place = (reader.as_bytes().as_ptr() as usize).is_multiple_of(INDEX_ALIGN);
        let index_ptr = reader.index() as *const ArchivedObjectIndex as usize;
        let inside_object = (reader.as_bytes().as_ptr() as usize
            ..reader.as_bytes().as_ptr() as usize + object.len())
            .contains(&index_ptr);
        assert_eq!(
            inside_object, in_place,
            "shift {shift}: index read in place iff the buffer is aligned"
        );
    }
}

/// Lays out an object around a hand-made (possibly inconsistent) index, with every checksum valid,
/// so that only the index consistency checks stand between it and a reader.
fn assemble(entry: &EntryHeader, batch_region: &[u8], index: &ObjectIndex) -> Bytes {
    let mut object = entry::encode_header(entry).to_vec();
    object.extend_from_slice(batch_region);
    let commands_offset = object.len() as u64;
    let index_offset = commands_offset.next_multiple_of(INDEX_ALIGN as u64);
    object.resize(index_offset as usize, 0);
    let archived = rkyv::to_bytes::<rkyv::rancor::Error>(index).unwrap();
    object.extend_from_slice(&archived);
    let mut trailer = trailer::Trailer {
        index_offset,
        index_len: archived.len() as u32,
        commands_offset,
        commands_len: 0,
        checksum: 0,
    };
    let covered = &object[commands_offset as usize..];
    trailer.checksum = crc32c::crc32c_append(crc32c::crc32c(covered), &trailer.encode_fields());
    object.extend_from_slice(&trailer.encode());
    Bytes::from(object)
}

#[test]
fn inconsistent_index_is_rejected_even_with_valid_checksums() {
    let a = TopicPartition::new(TopicId([1; 16]), 0);
    let b = TopicPartition::new(TopicId([2; 16]), 0);
    let mut builder = ObjectBuilder::new(entry(EntryKind::Data));
    let mut region = Vec::new();
    for (i, tp) in [a, a, b].into_iter().enumerate() {
        let batch = BatchBuilder::new(i as i64)
            .record(0, None, &[i as u8; 20])
            .record(5, None, b"x")
            .encode();
        builder
            .push_batch(tp, &validate_batch(&batch).unwrap(), batch.clone())
            .unwrap();
        region.extend_from_slice(&batch);
    }
    let good = builder.finish().unwrap().index().clone();
    let entry = good.entry;
    // The helper itself produces a readable object from a consistent index.
    ObjectReader::open("k", assemble(&entry, &region, &good))
        .unwrap()
        .verify_batches()
        .unwrap();

    type Tamper = Box<dyn Fn(&mut ObjectIndex, &mut Vec<u8>)>;
    let tamperings: Vec<(&str, Tamper)> = vec![
        (
            "segment offset sum",
            Box::new(|index, _| index.segments[0].offset_count += 1),
        ),
        (
            "segment record sum",
            Box::new(|index, _| index.segments[1].record_count = 0),
        ),
        (
            "segment max timestamp",
            Box::new(|index, _| index.segments[0].max_timestamp = i64::MAX),
        ),
        (
            "segment byte length",
            Box::new(|index, _| index.segments[0].byte_len -= 1),
        ),
        (
            "duplicate partition",
            Box::new(|index, _| index.segments[1].tp = index.segments[0].tp),
        ),
        (
            "batch run gap",
            Box::new(|index, _| index.segments[1].batch_start += 1),
        ),
        (
            "empty segment",
            Box::new(|index, _| index.segments[1].batch_count = 0),
        ),
        (
            "batch past the end",
            Box::new(|index, _| index.segments[1].batch_count = u32::MAX),
        ),
        (
            "unowned batch",
            Box::new(|index, _| {
                index.batches.push(index.batches[2]);
            }),
        ),
        (
            "batch overlaps",
            Box::new(|index, _| index.batches[1].byte_start -= 1),
        ),
        (
            "batches end before commands",
            Box::new(|_, region| region.push(0)),
        ),
        (
            "segments missing",
            Box::new(|index, _| {
                index.segments.pop();
            }),
        ),
        (
            "entry differs from header",
            Box::new(|index, _| index.entry.writer_epoch += 1),
        ),
        (
            "batch shorter than a header",
            Box::new(|index, _| {
                index.batches[0].byte_len = 10;
            }),
        ),
    ];
    for (what, tamper) in tamperings {
        let mut index = good.clone();
        let mut tampered_region = region.clone();
        tamper(&mut index, &mut tampered_region);
        let error =
            ObjectReader::open("k", assemble(&entry, &tampered_region, &index)).unwrap_err();
        assert!(
            matches!(error, FormatError::CorruptIndex { .. }),
            "{what}: {error:?}"
        );
    }

    // An index that agrees with itself but not with the batches is caught by verify_batches.
    let mut index = good.clone();
    index.batches[0].producer_id = 99;
    let reader = ObjectReader::open("k", assemble(&entry, &region, &index)).unwrap();
    assert!(matches!(
        reader.verify_batches(),
        Err(FormatError::CorruptIndex { .. })
    ));
}
