//! Property tests of object format v1: encode → decode gives back every batch byte-identical in the
//! right segment; tail reads agree with whole-object reads; corruption and truncation are errors
//! (or, inside batch payloads, caught by `verify_batches`), never panics.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use proptest::prelude::*;
use sluice_engine::batch::{BatchBuilder, BatchHeader, validate_batch};
use sluice_engine::format::{
    EncodedObject, EntryHeader, EntryKind, FormatError, HEADER_LEN, ObjectBuilder, ObjectReader,
    TRAILER_LEN, TailRead, read_tail,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

#[derive(Debug, Clone)]
struct BatchSpec {
    partition: usize,
    record_count: usize,
    value_len: usize,
    attributes: i16,
    base_timestamp: i64,
    producer: (i64, i16, i32),
}

/// Per partition, in first-push order, the batches pushed to it.
type ExpectedLayout = Vec<(TopicPartition, Vec<(BatchHeader, Bytes)>)>;

#[derive(Debug, Clone)]
struct ObjectSpec {
    entry: EntryHeader,
    partitions: Vec<TopicPartition>,
    batches: Vec<BatchSpec>,
    commands: Vec<u8>,
}

fn entry_strategy() -> impl Strategy<Value = EntryHeader> {
    (
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        any::<bool>(),
        any::<i64>(),
    )
        .prop_map(
            |(seq, writer_epoch, prev_seq, entry_nonce, claim, created_at_ms)| EntryHeader {
                seq: LogSeq(seq),
                writer_epoch,
                prev_seq: prev_seq.map(LogSeq),
                entry_nonce,
                kind: if claim {
                    EntryKind::Claim
                } else {
                    EntryKind::Data
                },
                created_at_ms,
            },
        )
}

fn object_strategy() -> impl Strategy<Value = ObjectSpec> {
    let partitions = proptest::collection::hash_set((0u8..4, 0i32..50), 1..6).prop_map(|set| {
        set.into_iter()
            .map(|(topic, p)| TopicPartition::new(TopicId([topic; 16]), p))
            .collect::<Vec<_>>()
    });
    let batch = (
        0usize..6,
        0usize..6,
        0usize..300,
        0i16..0x40,
        0i64..2_000_000_000_000,
        any::<(i64, i16, i32)>(),
    )
        .prop_map(
            |(partition, record_count, value_len, attributes, base_timestamp, producer)| {
                BatchSpec {
                    partition,
                    record_count,
                    value_len,
                    // codec 5..=7 is not a valid batch: fold into the known codecs
                    attributes: (attributes & !0b111) | ((attributes & 0b111) % 5),
                    base_timestamp,
                    producer,
                }
            },
        );
    (
        entry_strategy(),
        partitions,
        proptest::collection::vec(batch, 0..24),
        proptest::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(entry, partitions, batches, commands)| ObjectSpec {
            entry,
            partitions,
            batches,
            commands,
        })
}

fn encode_batch(spec: &BatchSpec) -> Bytes {
    let mut builder = BatchBuilder::new(spec.base_timestamp)
        .attributes(spec.attributes)
        .producer(spec.producer.0, spec.producer.1, spec.producer.2);
    for i in 0..spec.record_count {
        let value: Vec<u8> = (0..spec.value_len).map(|b| (b + i) as u8).collect();
        builder = builder.record(i as i64 * 3, Some(&[i as u8]), &value);
    }
    builder.encode()
}

/// Encodes the spec; returns the object and, per partition in first-push order, the pushed batches.
fn build(spec: &ObjectSpec) -> (EncodedObject, ExpectedLayout) {
    let mut builder = ObjectBuilder::new(spec.entry);
    let mut expected: ExpectedLayout = Vec::new();
    for batch_spec in &spec.batches {
        let tp = spec.partitions[batch_spec.partition % spec.partitions.len()];
        let batch = encode_batch(batch_spec);
        let header = validate_batch(&batch).unwrap();
        builder.push_batch(tp, &header, batch.clone()).unwrap();
        match expected.iter_mut().find(|(t, _)| *t == tp) {
            Some((_, batches)) => batches.push((header, batch)),
            None => expected.push((tp, vec![(header, batch)])),
        }
    }
    builder
        .set_commands(Bytes::from(spec.commands.clone()))
        .unwrap();
    let payload: u64 = expected
        .iter()
        .flat_map(|(_, b)| b)
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(builder.payload_len(), payload + spec.commands.len() as u64);
    (builder.finish().unwrap(), expected)
}

fn commands_offset(reader: &ObjectReader) -> u64 {
    HEADER_LEN as u64
        + reader
            .to_index()
            .unwrap()
            .segments
            .iter()
            .map(|s| s.byte_len)
            .sum::<u64>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encode_then_open_gives_back_every_batch(spec in object_strategy()) {
        let (encoded, expected) = build(&spec);
        let object = encoded.to_contiguous();
        prop_assert_eq!(object.len() as u64, encoded.len());
        let reader = ObjectReader::open("log/x", object).unwrap();
        reader.verify_batches().unwrap();
        prop_assert_eq!(reader.header(), &spec.entry);
        prop_assert_eq!(&reader.to_index().unwrap(), encoded.index());
        prop_assert_eq!(reader.commands(), Bytes::from(spec.commands.clone()));
        prop_assert_eq!(reader.segment_count(), expected.len());
        let index = reader.index();
        for (number, (tp, batches)) in expected.iter().enumerate() {
            let segment = &index.segments[number];
            prop_assert_eq!(segment.topic_partition(), *tp);
            let first = segment.batch_start.to_native() as usize;
            prop_assert_eq!(segment.batch_count.to_native() as usize, batches.len());
            let mut concatenated = Vec::new();
            for (i, (header, batch)) in batches.iter().enumerate() {
                prop_assert_eq!(&reader.batch_bytes(first + i).unwrap(), batch);
                let entry = &index.batches[first + i];
                prop_assert_eq!(u64::from(entry.offset_count.to_native()), header.offset_count());
                prop_assert_eq!(entry.record_count.to_native() as i32, header.record_count);
                prop_assert_eq!(entry.max_timestamp.to_native(), header.max_timestamp);
                prop_assert_eq!(entry.producer_id.to_native(), header.producer_id);
                concatenated.extend_from_slice(batch);
            }
            prop_assert_eq!(reader.segment_bytes(number).unwrap(), Bytes::from(concatenated));
            prop_assert_eq!(segment.offset_count.to_native(), batches.iter().map(|(h, _)| h.offset_count()).sum::<u64>());
            prop_assert_eq!(segment.record_count.to_native(), batches.iter().map(|(h, _)| h.record_count as u64).sum::<u64>());
            prop_assert_eq!(segment.max_timestamp.to_native(), batches.iter().map(|(h, _)| h.max_timestamp).max().unwrap());
        }
        prop_assert!(reader.segment_bytes(expected.len()).is_none());
        prop_assert!(reader.batch_bytes(spec.batches.len()).is_none());
    }

    #[test]
    fn tail_reads_agree_with_whole_object_reads(spec in object_strategy(), tail_fraction in 0.0f64..=1.0) {
        let (encoded, _) = build(&spec);
        let object = encoded.to_contiguous();
        let reader = ObjectReader::open("log/x", object.clone()).unwrap();
        let object_len = object.len() as u64;
        let needed = object_len - commands_offset(&reader);
        let tail_len = (object.len() as f64 * tail_fraction) as usize;
        let read = |tail_len: usize| read_tail("log/x", object_len, object.slice(object.len() - tail_len..)).unwrap();
        match read(tail_len) {
            TailRead::Complete(tail) => {
                prop_assert!(tail_len as u64 >= needed);
                prop_assert_eq!(&tail.to_index().unwrap(), encoded.index());
                prop_assert_eq!(tail.commands(), reader.commands());
                prop_assert_eq!(tail.entry().unwrap(), spec.entry);
            }
            TailRead::NeedMore { tail_len_needed } => {
                prop_assert!((tail_len as u64) < needed);
                let expected = if tail_len < TRAILER_LEN { TRAILER_LEN as u64 } else { needed };
                prop_assert_eq!(tail_len_needed, expected);
                // Asking again with what it said is enough (twice at most: trailer, then the rest).
                let mut again = read(tail_len_needed as usize);
                if let TailRead::NeedMore { tail_len_needed } = again {
                    prop_assert_eq!(tail_len_needed, needed);
                    again = read(tail_len_needed as usize);
                }
                let TailRead::Complete(tail) = again else { panic!("still NeedMore") };
                prop_assert_eq!(&tail.to_index().unwrap(), encoded.index());
            }
        }
    }

    #[test]
    fn corruption_is_an_error_or_caught_by_verify_batches(
        spec in object_strategy(),
        position_fraction in 0.0f64..1.0,
        flip in 1u8..=255,
    ) {
        let (encoded, _) = build(&spec);
        let object = encoded.to_contiguous();
        let position = (object.len() as f64 * position_fraction) as usize;
        let mut corrupt = object.to_vec();
        corrupt[position] ^= flip;
        let corrupt = Bytes::from(corrupt);
        let tail_result = read_tail("log/x", object.len() as u64, corrupt.clone());
        match ObjectReader::open("log/x", corrupt) {
            Err(error) => prop_assert_eq!(error.key(), "log/x"),
            Ok(reader) => {
                // Only batch payloads are outside the object's own checksums.
                let batches_end = commands_offset(&reader) as usize;
                prop_assert!((HEADER_LEN..batches_end).contains(&position), "undetected flip at {}", position);
                let index = reader.to_index().unwrap();
                let batch = index.batches.iter().find(|b| (b.byte_start as usize..(b.byte_start as usize + b.byte_len as usize)).contains(&position)).unwrap();
                let within = position - batch.byte_start as usize;
                // Kafka's CRC leaves baseOffset (0..8) and partitionLeaderEpoch (12..16) uncovered:
                // brokers rewrite them. Everything else in a batch must be caught.
                let uncovered = within < 8 || (12..16).contains(&within);
                prop_assert_eq!(reader.verify_batches().is_err(), !uncovered, "flip at batch byte {}", within);
                // The tail does not cover the batch region, so it reads fine.
                prop_assert!(tail_result.is_ok());
            }
        }
    }

    #[test]
    fn truncation_is_always_an_error(spec in object_strategy(), len_fraction in 0.0f64..1.0) {
        let (encoded, _) = build(&spec);
        let object = encoded.to_contiguous();
        let len = (object.len() as f64 * len_fraction) as usize;
        let error = ObjectReader::open("log/x", object.slice(..len)).unwrap_err();
        prop_assert_eq!(error.key(), "log/x");
        // Any suffix of the truncated object, taken as a tail of an object of that length, is an
        // error too or asks for more: never a wrong index.
        let truncated = object.slice(..len);
        for tail_len in [0, len / 2, len] {
            if let Ok(TailRead::Complete(_)) = read_tail("log/x", len as u64, truncated.slice(len - tail_len..)) {
                prop_assert!(false, "truncated object of {} bytes read as complete", len);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), object_len in 0u64..1024) {
        let bytes = Bytes::from(bytes);
        let _ = ObjectReader::open("junk", bytes.clone());
        let _ = read_tail("junk", object_len.max(bytes.len() as u64), bytes);
    }
}

#[test]
fn zero_copy_layout() {
    let tps: Vec<TopicPartition> = (0..10)
        .map(|p| TopicPartition::new(TopicId([9; 16]), p))
        .collect();
    let mut builder = ObjectBuilder::new(EntryHeader {
        seq: LogSeq(1),
        writer_epoch: 1,
        prev_seq: None,
        entry_nonce: 1,
        kind: EntryKind::Data,
        created_at_ms: 0,
    });
    let mut inputs = Vec::new();
    for i in 0..50usize {
        let batch = BatchBuilder::new(i as i64)
            .record(0, None, &vec![i as u8; 100 + i])
            .encode();
        let header = validate_batch(&batch).unwrap();
        builder
            .push_batch(tps[i * 7 % tps.len()], &header, batch.clone())
            .unwrap();
        inputs.push(batch);
    }
    let encoded = builder.finish().unwrap();
    let chunks = encoded.chunks();
    // header, 50 batches, (no commands), index + trailer
    assert_eq!(chunks.len(), 1 + inputs.len() + 1);
    let batch_chunks = &chunks[1..=inputs.len()];
    for input in &inputs {
        let same_memory = batch_chunks
            .iter()
            .filter(|chunk| chunk.as_ptr() == input.as_ptr() && chunk.len() == input.len());
        assert_eq!(same_memory.count(), 1, "batch was copied");
    }
    assert_eq!(
        chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
        encoded.len()
    );
}

#[test]
fn errors_name_the_key() {
    let error =
        ObjectReader::open("log/00000000000000000042", Bytes::from_static(b"nope")).unwrap_err();
    assert!(matches!(
        error,
        FormatError::Truncated { .. } | FormatError::BadMagic { .. }
    ));
    assert!(
        error.to_string().contains("log/00000000000000000042"),
        "{error}"
    );
}
