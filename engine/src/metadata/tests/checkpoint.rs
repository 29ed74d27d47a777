//! Checkpoint round trips and refusals.

use super::*;

fn populated() -> MetadataState {
    let mut harness = Harness::new();
    let configs = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
    harness.command(Command::CreateTopic {
        name: "a".into(),
        topic_id: id(1),
        partition_count: 3,
        configs,
    });
    harness.create("b", id(2), 1);
    let tp = TopicPartition::new(id(1), 1);
    harness.commit(vec![
        segment(tp, 5, 1),
        segment(TopicPartition::new(id(2), 0), 2, -4),
        segment(tp, 5, 9),
    ]);
    harness.command(Command::DeleteRecords {
        tp,
        before_offset: 7,
    });
    // Producer state and the producer id counter are in the checkpoint too.
    harness.command(Command::InitProducerId {
        transactional_id: None,
    });
    let mut idempotent = segment(tp, 2, 3);
    idempotent.batches = vec![BatchCommit {
        byte_start: idempotent.byte_start,
        byte_len: idempotent.byte_len,
        offset_count: 2,
        max_timestamp: 3,
        producer_id: 0,
        producer_epoch: 0,
        base_sequence: 0,
    }];
    harness.commit(vec![idempotent]);
    assert!(harness.state.partition(tp).unwrap().producer(0).is_some());
    harness.state
}

#[test]
fn round_trip_equals_and_is_deterministic() {
    let state = populated();
    let bytes = state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(
        decoded.encode_checkpoint(),
        bytes,
        "equal states encode to equal bytes"
    );
    let empty = MetadataState::new();
    assert_eq!(
        MetadataState::decode_checkpoint(&empty.encode_checkpoint()).unwrap(),
        empty
    );
}

#[test]
fn decoded_state_keeps_working() {
    let state = populated();
    let mut decoded = MetadataState::decode_checkpoint(&state.encode_checkpoint()).unwrap();
    let tp = TopicPartition::new(id(1), 1);
    assert_eq!(
        decoded
            .offset_for_timestamp(tp, 9)
            .unwrap()
            .unwrap()
            .base_offset,
        5
    );
    let seq = decoded.last_offered_seq().unwrap().next();
    let meta = EntryMeta {
        seq,
        writer_epoch: 1,
        prev_seq: decoded.last_valid_seq(),
        kind: EntryKind::Data,
    };
    let commit = ObjectCommit {
        seq,
        object_len: 1000,
        segments: vec![segment(tp, 1, 0)],
    };
    let outcome = decoded.apply_entry(&meta, &[], Some(&commit));
    let expected = vec![Event::SegmentAppended {
        segment_index: 0,
        tp,
        // 10 offsets from `populated`'s plain segments, 2 from its idempotent one.
        base_offset: 12,
        end_offset: 13,
    }];
    assert_eq!(outcome, EntryOutcome::Applied(expected));
}

#[test]
fn every_truncation_and_bit_flip_is_an_error() {
    let bytes = populated().encode_checkpoint();
    for cut in 0..bytes.len() {
        assert!(
            MetadataState::decode_checkpoint(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for at in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= bit;
            assert!(
                MetadataState::decode_checkpoint(&corrupt).is_err(),
                "bit flip at {at}"
            );
        }
    }
    let mut newer = bytes.clone();
    newer[8] = 3;
    assert!(matches!(
        MetadataState::decode_checkpoint(&newer),
        Err(CheckpointError::UnsupportedVersion { version: 3, .. })
    ));
}

/// Structural checks catch a checkpoint whose CRC is right but whose content is not (a bug in
/// the writer): here an index with a gap, re-sealed with a valid CRC.
#[test]
fn valid_crc_but_broken_invariants_is_refused() {
    let bytes = populated().encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    let tp = TopicPartition::new(id(1), 1);
    let entry = *decoded.partition(tp).unwrap().index().first().unwrap();
    // Find the entry's end_offset in the bytes and bump it, then re-seal.
    let needle: Vec<u8> = [entry.base_offset, entry.end_offset, entry.seq.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap()
        + 8;
    let mut broken = bytes.clone();
    broken[at..at + 8].copy_from_slice(&(entry.end_offset + 1).to_le_bytes());
    let body_end = broken.len() - 4;
    let crc = crc32c::crc32c(&broken[..body_end]);
    broken[body_end..].copy_from_slice(&crc.to_le_bytes());
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(
        matches!(error, CheckpointError::Invalid { .. }),
        "{error:?}"
    );
}
