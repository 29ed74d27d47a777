//! Checkpoint round trips and refusals.

use super::*;

/// Every kind of state, stored groups, ACL bindings, client quotas and SCRAM credentials
/// included.
pub(super) fn populated() -> MetadataState {
    let mut harness = Harness {
        state: populated_before_scram(),
        next_seq: 0,
    };
    harness.next_seq = harness.state.last_offered_seq().unwrap().0 + 1;
    for upsertion in super::scram::sample_upsertions() {
        let event = harness.command(Command::UpsertScramCredential {
            upsertion: Box::new(upsertion),
        });
        assert!(
            matches!(event, Event::ScramCredentialAltered { .. }),
            "{event:?}"
        );
    }
    harness.state
}

/// Every kind of state a v6 build kept, client quotas included (the state of
/// `fixtures/checkpoint_v6.bin`).
pub(super) fn populated_before_scram() -> MetadataState {
    let mut harness = Harness {
        state: populated_before_quotas(),
        next_seq: 0,
    };
    harness.next_seq = harness.state.last_offered_seq().unwrap().0 + 1;
    for alteration in super::quota::sample_alterations() {
        let event = harness.command(Command::AlterClientQuotas {
            alteration: Box::new(alteration),
        });
        assert!(
            matches!(event, Event::ClientQuotasAltered { .. }),
            "{event:?}"
        );
    }
    harness.state
}

/// Every kind of state a v5 build kept, ACL bindings included (the state of
/// `fixtures/checkpoint_v5.bin`).
pub(super) fn populated_before_quotas() -> MetadataState {
    let mut harness = Harness {
        state: populated_before_acls(),
        next_seq: 0,
    };
    harness.next_seq = harness.state.last_offered_seq().unwrap().0 + 1;
    for binding in super::acl::sample_bindings() {
        let event = harness.command(Command::CreateAcl {
            binding: Box::new(binding),
        });
        assert!(
            matches!(event, Event::AclCreated { created: true, .. }),
            "{event:?}"
        );
    }
    harness.state
}

/// Every kind of state a v4 build kept (the state of `fixtures/checkpoint_v4.bin`).
pub(super) fn populated_before_acls() -> MetadataState {
    let mut harness = Harness {
        state: populated_before_groups(),
        next_seq: 0,
    };
    harness.next_seq = harness.state.last_offered_seq().unwrap().0 + 1;
    for (group, record) in super::groups::sample_records() {
        let event = harness.command(super::groups::store(&group, Some(record)));
        assert!(matches!(event, Event::GroupStored { .. }), "{event:?}");
    }
    harness.state
}

/// Every kind of state a v3 build kept (the state of `fixtures/checkpoint_v3.bin`).
pub(super) fn populated_before_groups() -> MetadataState {
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
    // Committed offsets too: with and without metadata, -1, several groups and topics.
    let offset = |topic: &str, partition: u32, offset: i64, metadata: Option<&str>| OffsetCommit {
        topic: topic.to_owned(),
        partition,
        offset,
        leader_epoch: 4,
        metadata: metadata.map(str::to_owned),
        commit_timestamp_ms: 1_700_000_000_000,
    };
    harness.command(Command::CommitOffsets {
        group: "group-b".into(),
        offsets: vec![offset("b", 0, 2, Some("")), offset("a", 2, -1, None)],
    });
    harness.command(Command::CommitOffsets {
        group: "group-a".into(),
        offsets: vec![offset("a", 1, 11, Some("meta")), offset("a", 0, 0, None)],
    });
    assert_eq!(harness.state.committed_offset_count(), 4);
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
    newer[8] = (CHECKPOINT_VERSION + 1) as u8;
    assert!(matches!(
        MetadataState::decode_checkpoint(&newer),
        Err(CheckpointError::UnsupportedVersion { version, .. }) if version == CHECKPOINT_VERSION + 1
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

/// Re-seals `bytes` with a correct CRC after an edit.
fn reseal(bytes: &mut [u8]) {
    let body_end = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// A v2 checkpoint written by the build before committed offsets existed (one topic of 4
/// partitions, two of them with data, one idempotent producer, next producer id 1): it decodes
/// to the same state with no offsets, and the state keeps working.
#[test]
fn version_2_checkpoint_decodes_without_offsets() {
    let bytes = include_bytes!("fixtures/checkpoint_v2.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
    let mut state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state.writer_epoch(), 1);
    assert_eq!(state.last_valid_seq(), Some(LogSeq(1)));
    assert_eq!(state.next_producer_id(), 1);
    let (topic_id, topic) = state.topic_by_name("orders").unwrap();
    assert_eq!(topic_id, id(7));
    assert_eq!(topic.partition_count(), 4);
    assert_eq!(
        topic.config_overrides(),
        &BTreeMap::from([("cleanup.policy".to_owned(), "delete".to_owned())])
    );
    assert_eq!(state.high_watermark(TopicPartition::new(id(7), 0)), Ok(5));
    let tp = TopicPartition::new(id(7), 1);
    assert_eq!(state.high_watermark(tp), Ok(3));
    assert!(state.partition(tp).unwrap().producer(0).is_some());
    assert_eq!(state.offset_groups().count(), 0);
    assert_eq!(state.committed_offset_count(), 0);
    // Re-encoded, it is a current-version checkpoint of the same state.
    let current = state.encode_checkpoint();
    assert_eq!(
        u16::from_le_bytes([current[8], current[9]]),
        CHECKPOINT_VERSION
    );
    assert_eq!(MetadataState::decode_checkpoint(&current).unwrap(), state);
    // And offsets can be committed on top of it.
    let seq = LogSeq(2);
    let meta = EntryMeta {
        seq,
        writer_epoch: 1,
        prev_seq: Some(LogSeq(1)),
        kind: EntryKind::Data,
    };
    let commit = Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![OffsetCommit {
            topic: "orders".into(),
            partition: 3,
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 5,
        }],
    };
    let outcome = state.apply_entry(&meta, &[commit], None);
    assert!(matches!(outcome, EntryOutcome::Applied(_)), "{outcome:?}");
    assert_eq!(state.committed_offset("g", "orders", 3).unwrap().offset, 1);
}

/// The offsets section is checked like the rest: an offset naming a partition the topic does not
/// have, or groups out of order, is refused even under a valid CRC.
#[test]
fn offsets_with_broken_invariants_are_refused() {
    let state = populated();
    let bytes = state.encode_checkpoint();
    // "group-a" sorts before "group-b"; renaming it to "group-c" breaks the order.
    let at = bytes
        .windows(7)
        .position(|window| window == b"group-a")
        .unwrap();
    let mut out_of_order = bytes.clone();
    out_of_order[at + 6] = b'c';
    reseal(&mut out_of_order);
    let error = MetadataState::decode_checkpoint(&out_of_order).unwrap_err();
    assert!(
        matches!(error, CheckpointError::Invalid { .. }),
        "{error:?}"
    );
    // group-b's offset of "a"-2 is followed by its fixed fields; make the partition 3 (topic "a"
    // has 3 partitions).
    let needle: Vec<u8> = [2u32.to_le_bytes().as_slice(), &(-1i64).to_le_bytes()].concat();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap();
    let mut unknown_partition = bytes.clone();
    unknown_partition[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut unknown_partition);
    let error = MetadataState::decode_checkpoint(&unknown_partition).unwrap_err();
    assert!(
        matches!(error, CheckpointError::Invalid { .. }),
        "{error:?}"
    );
    // An offset below -1.
    let mut negative = bytes.clone();
    negative[at + 4..at + 12].copy_from_slice(&(-2i64).to_le_bytes());
    reseal(&mut negative);
    let error = MetadataState::decode_checkpoint(&negative).unwrap_err();
    assert!(
        matches!(error, CheckpointError::Invalid { .. }),
        "{error:?}"
    );
}
