//! Idempotent producers: InitProducerId, duplicates, epochs, sequence gaps, checkpoints.

use super::*;

/// One batch of `offset_count` records of producer `producer_id`.
fn idempotent(producer_id: i64, epoch: i16, base_sequence: i32, offset_count: u64) -> BatchCommit {
    BatchCommit {
        byte_start: 0,
        byte_len: 10,
        offset_count,
        max_timestamp: 5,
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    }
}

/// A segment of `batches`, laid out back to back from byte 100.
fn segment_of(tp: TopicPartition, mut batches: Vec<BatchCommit>) -> SegmentCommit {
    let mut position = 100;
    for batch in &mut batches {
        batch.byte_start = position;
        position += batch.byte_len;
    }
    SegmentCommit {
        tp,
        byte_start: 100,
        byte_len: position - 100,
        batch_count: batches.len() as u32,
        offset_count: batches.iter().map(|batch| batch.offset_count).sum(),
        record_count: batches.iter().map(|batch| batch.offset_count).sum(),
        max_timestamp: 5,
        batches,
    }
}

fn setup() -> (Harness, TopicPartition) {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    (harness, TopicPartition::new(id(1), 0))
}

fn init_producer_id(harness: &mut Harness) -> i64 {
    match harness.command(Command::InitProducerId {
        transactional_id: None,
    }) {
        Event::ProducerIdAllocated {
            producer_id,
            producer_epoch: 0,
            ..
        } => producer_id,
        other => panic!("expected an allocation, got {other:?}"),
    }
}

#[test]
fn producer_ids_are_never_handed_out_twice_even_after_a_checkpoint() {
    let (mut harness, _) = setup();
    let first = init_producer_id(&mut harness);
    let second = init_producer_id(&mut harness);
    assert_ne!(first, second);
    let events = harness.commands(&[
        Command::InitProducerId {
            transactional_id: None,
        },
        Command::InitProducerId {
            transactional_id: Some("tx".into()),
        },
        Command::InitProducerId {
            transactional_id: None,
        },
    ]);
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|event| match event {
            Event::ProducerIdAllocated { producer_id, .. } => Some(*producer_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        rejected_code(&events[1]),
        kafka_code::TRANSACTIONS_UNSUPPORTED
    );
    let mut all = vec![first, second];
    all.extend(&ids);
    harness.state = MetadataState::decode_checkpoint(&harness.state.encode_checkpoint()).unwrap();
    all.push(init_producer_id(&mut harness));
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "{all:?}");
}

#[test]
fn a_resent_segment_is_answered_with_the_original_offsets_and_takes_none() {
    let (mut harness, tp) = setup();
    let producer = init_producer_id(&mut harness);
    let first = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 0, 3)])]);
    assert_eq!(
        first,
        vec![Event::SegmentAppended {
            segment_index: 0,
            tp,
            base_offset: 0,
            end_offset: 3
        }]
    );
    harness.commit(vec![segment(tp, 4, 5)]); // someone else's records: offsets 3..7
    let again = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 0, 3)])]);
    assert_eq!(
        again,
        vec![Event::SegmentBatches {
            segment_index: 0,
            tp,
            batches: vec![BatchOutcome::Duplicate { base_offset: 0 }],
            end_offset: 7,
        }]
    );
    assert_eq!(harness.state.high_watermark(tp).unwrap(), 7);
    assert_eq!(harness.state.partition(tp).unwrap().index().len(), 2);
}

#[test]
fn a_duplicate_inside_a_segment_is_skipped_and_the_index_stays_contiguous() {
    let (mut harness, tp) = setup();
    let (a, b) = (
        init_producer_id(&mut harness),
        init_producer_id(&mut harness),
    );
    harness.commit(vec![segment_of(tp, vec![idempotent(a, 0, 0, 2)])]);
    // b's first batch, a's retry, b's second batch: the retry is not indexed.
    let events = harness.commit(vec![segment_of(
        tp,
        vec![
            idempotent(b, 0, 0, 3),
            idempotent(a, 0, 0, 2),
            idempotent(b, 0, 3, 1),
        ],
    )]);
    assert_eq!(
        events,
        vec![Event::SegmentBatches {
            segment_index: 0,
            tp,
            batches: vec![
                BatchOutcome::Appended {
                    base_offset: 2,
                    end_offset: 5
                },
                BatchOutcome::Duplicate { base_offset: 0 },
                BatchOutcome::Appended {
                    base_offset: 5,
                    end_offset: 6
                },
            ],
            end_offset: 6,
        }]
    );
    let index: Vec<IndexEntry> = harness
        .state
        .partition(tp)
        .unwrap()
        .index()
        .iter()
        .copied()
        .collect();
    assert_eq!(index.len(), 3);
    let ranges: Vec<(u64, u64, u64, u64)> = index
        .iter()
        .map(|entry| {
            (
                entry.base_offset,
                entry.end_offset,
                entry.byte_start,
                entry.byte_len,
            )
        })
        .collect();
    // The duplicate's bytes (120..130 of the second object) are left out of the index.
    assert_eq!(
        ranges,
        vec![(0, 2, 100, 10), (2, 5, 100, 10), (5, 6, 120, 10)]
    );
}

#[test]
fn gaps_old_epochs_and_new_epochs_follow_kafka() {
    let (mut harness, tp) = setup();
    let producer = init_producer_id(&mut harness);
    harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 0, 2)])]);
    let gap = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 5, 1)])]);
    let Event::SegmentBatches { batches, .. } = &gap[0] else {
        panic!("{gap:?}")
    };
    let BatchOutcome::Rejected { error } = &batches[0] else {
        panic!("{batches:?}")
    };
    assert_eq!(
        error.kafka_error_code(),
        kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(harness.state.high_watermark(tp).unwrap(), 2);
    // The next in sequence still goes in: a refused batch moved nothing.
    let next = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 2, 1)])]);
    assert!(
        matches!(next[0], Event::SegmentAppended { base_offset: 2, .. }),
        "{next:?}"
    );
    // A bumped epoch must restart at 0 ...
    let bad_bump = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 1, 3, 1)])]);
    assert!(
        matches!(&bad_bump[0], Event::SegmentBatches { batches, .. }
            if matches!(&batches[0], BatchOutcome::Rejected { error }
                if error.kafka_error_code() == kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER)),
        "{bad_bump:?}"
    );
    let bump = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 1, 0, 1)])]);
    assert!(
        matches!(bump[0], Event::SegmentAppended { base_offset: 3, .. }),
        "{bump:?}"
    );
    // ... and fences the old epoch.
    let old = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 3, 1)])]);
    assert!(
        matches!(&old[0], Event::SegmentBatches { batches, .. }
            if matches!(&batches[0], BatchOutcome::Rejected { error }
                if error.kafka_error_code() == kafka_code::INVALID_PRODUCER_EPOCH)),
        "{old:?}"
    );
    // An unknown producer may start anywhere (KIP-360).
    let unknown = harness.commit(vec![segment_of(tp, vec![idempotent(999, 4, 77, 2)])]);
    assert!(
        matches!(unknown[0], Event::SegmentAppended { base_offset: 4, .. }),
        "{unknown:?}"
    );
    assert_eq!(
        harness
            .state
            .partition(tp)
            .unwrap()
            .producer(999)
            .unwrap()
            .epoch,
        4
    );
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let (mut harness, tp) = setup();
    let producer = init_producer_id(&mut harness);
    for sequence in 0..7 {
        harness.commit(vec![segment_of(
            tp,
            vec![idempotent(producer, 0, sequence, 1)],
        )]);
    }
    let kept = &harness
        .state
        .partition(tp)
        .unwrap()
        .producer(producer)
        .unwrap()
        .batches;
    assert_eq!(kept.len(), PRODUCER_BATCHES_RETAINED);
    let recent = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 2, 1)])]);
    assert!(
        matches!(&recent[0], Event::SegmentBatches { batches, .. }
            if batches == &vec![BatchOutcome::Duplicate { base_offset: 2 }]),
        "{recent:?}"
    );
    // Too old to recognise: not a duplicate, and not in sequence either.
    let ancient = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 1, 1)])]);
    assert!(
        matches!(&ancient[0], Event::SegmentBatches { batches, .. }
            if matches!(&batches[0], BatchOutcome::Rejected { error }
                if error.kafka_error_code() == kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER)),
        "{ancient:?}"
    );
}

#[test]
fn batches_that_do_not_tile_the_segment_are_refused_whole() {
    let (mut harness, tp) = setup();
    let mut bad = segment_of(tp, vec![idempotent(1, 0, 0, 2), idempotent(1, 0, 2, 2)]);
    bad.offset_count += 1;
    let events = harness.commit(vec![bad]);
    assert_eq!(rejected_code(&events[0]), kafka_code::INVALID_RECORD);
    let mut gap = segment_of(tp, vec![idempotent(1, 0, 0, 2), idempotent(1, 0, 2, 2)]);
    gap.batches[1].byte_start += 1;
    let events = harness.commit(vec![gap]);
    assert_eq!(rejected_code(&events[0]), kafka_code::INVALID_RECORD);
    assert!(harness.state.partition(tp).unwrap().producers().is_empty());
}

#[test]
fn producer_state_survives_a_checkpoint_and_keeps_deduplicating() {
    let (mut harness, tp) = setup();
    let producer = init_producer_id(&mut harness);
    harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 0, 3)])]);
    let bytes = harness.state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded, harness.state);
    assert_eq!(decoded.encode_checkpoint(), bytes);
    harness.state = decoded;
    let again = harness.commit(vec![segment_of(tp, vec![idempotent(producer, 0, 0, 3)])]);
    assert!(
        matches!(&again[0], Event::SegmentBatches { batches, .. }
            if batches == &vec![BatchOutcome::Duplicate { base_offset: 0 }]),
        "{again:?}"
    );
}

/// A v1 checkpoint (before producer state) still decodes, with no producers and ids from 0.
#[test]
fn a_version_1_checkpoint_migrates() {
    let mut body = Vec::new();
    body.extend_from_slice(&1u64.to_le_bytes()); // writer_epoch
    body.push(1);
    body.extend_from_slice(&0u64.to_le_bytes()); // last_valid_seq = 0
    body.push(1);
    body.extend_from_slice(&0u64.to_le_bytes()); // last_offered_seq = 0
    body.extend_from_slice(&1u32.to_le_bytes()); // one topic
    body.extend_from_slice(&[1; 16]);
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&0u16.to_le_bytes()); // no configs
    body.extend_from_slice(&1u32.to_le_bytes()); // one partition
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // no index entries
    let mut bytes = b"SLUICECK".to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut state = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(state.next_producer_id(), 0);
    assert_eq!(state.topic_by_name("t").unwrap().0, id(1));
    let tp = TopicPartition::new(id(1), 0);
    assert!(state.partition(tp).unwrap().producers().is_empty());
    // And it keeps working as a v2 state.
    let meta = EntryMeta {
        seq: LogSeq(1),
        writer_epoch: 1,
        prev_seq: Some(LogSeq(0)),
        kind: EntryKind::Data,
    };
    let outcome = state.apply_entry(
        &meta,
        &[Command::InitProducerId {
            transactional_id: None,
        }],
        None,
    );
    assert_eq!(
        outcome,
        EntryOutcome::Applied(vec![Event::ProducerIdAllocated {
            index: 0,
            producer_id: 0,
            producer_epoch: 0
        }])
    );
    let round_trip = MetadataState::decode_checkpoint(&state.encode_checkpoint()).unwrap();
    assert_eq!(round_trip.next_producer_id(), 1);
}
