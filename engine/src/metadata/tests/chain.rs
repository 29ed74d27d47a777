//! The chain rule, entry by entry.

use super::*;

fn meta(seq: u64, writer_epoch: u64, prev_seq: Option<u64>, kind: EntryKind) -> EntryMeta {
    EntryMeta {
        seq: LogSeq(seq),
        writer_epoch,
        prev_seq: prev_seq.map(LogSeq),
        kind,
    }
}

fn ignored(outcome: EntryOutcome) -> IgnoreReason {
    match outcome {
        EntryOutcome::Ignored { reason } => reason,
        EntryOutcome::Applied(events) => panic!("applied: {events:?}"),
    }
}

#[test]
fn first_entry_must_be_a_claim_with_no_prev() {
    let mut state = MetadataState::new();
    let reason = ignored(state.apply_entry(&meta(0, 0, None, EntryKind::Data), &[], None));
    assert_eq!(
        reason,
        IgnoreReason::WrongEpoch {
            writer_epoch: 0,
            current_epoch: 0
        }
    );
    let reason = ignored(state.apply_entry(&meta(1, 1, Some(0), EntryKind::Claim), &[], None));
    assert!(matches!(reason, IgnoreReason::ChainBroken { .. }));
    assert_eq!(state.last_offered_seq(), Some(LogSeq(1)));
    assert_eq!(state.last_valid_seq(), None);
    let outcome = state.apply_entry(&meta(2, 1, None, EntryKind::Claim), &[], None);
    assert_eq!(
        outcome,
        EntryOutcome::Applied(vec![Event::Claimed { writer_epoch: 1 }])
    );
    assert_eq!(
        (state.writer_epoch(), state.last_valid_seq()),
        (1, Some(LogSeq(2)))
    );
}

#[test]
fn fenced_writer_entries_are_ignored_as_a_block() {
    let mut state = MetadataState::new();
    assert!(matches!(
        state.apply_entry(&meta(0, 1, None, EntryKind::Claim), &[], None),
        EntryOutcome::Applied(_)
    ));
    assert!(matches!(
        state.apply_entry(&meta(1, 1, Some(0), EntryKind::Data), &[], None),
        EntryOutcome::Applied(_)
    ));
    // Writer 2 claims at 2, chaining from 1. Writer 1 had pipelined 3 and 4 chaining from 2 (its own).
    assert!(matches!(
        state.apply_entry(&meta(2, 2, Some(1), EntryKind::Claim), &[], None),
        EntryOutcome::Applied(_)
    ));
    let topic = [create_topic("fenced", id(1), 1)];
    let reason = ignored(state.apply_entry(&meta(3, 1, Some(2), EntryKind::Data), &topic, None));
    assert_eq!(
        reason,
        IgnoreReason::WrongEpoch {
            writer_epoch: 1,
            current_epoch: 2
        }
    );
    let reason = ignored(state.apply_entry(&meta(4, 1, Some(3), EntryKind::Data), &[], None));
    assert!(matches!(reason, IgnoreReason::ChainBroken { .. }));
    assert_eq!(state.topic_count(), 0, "an ignored entry changes nothing");
    // Writer 2 continues from its claim.
    assert!(matches!(
        state.apply_entry(&meta(5, 2, Some(2), EntryKind::Data), &topic, None),
        EntryOutcome::Applied(_)
    ));
    assert_eq!(state.topic_count(), 1);
}

#[test]
fn claims_must_raise_the_epoch() {
    let mut state = MetadataState::new();
    let _ = state.apply_entry(&meta(0, 5, None, EntryKind::Claim), &[], None);
    let reason = ignored(state.apply_entry(&meta(1, 5, Some(0), EntryKind::Claim), &[], None));
    assert_eq!(
        reason,
        IgnoreReason::StaleClaim {
            writer_epoch: 5,
            current_epoch: 5
        }
    );
    let reason = ignored(state.apply_entry(&meta(2, 4, Some(0), EntryKind::Claim), &[], None));
    assert_eq!(
        reason,
        IgnoreReason::StaleClaim {
            writer_epoch: 4,
            current_epoch: 5
        }
    );
    assert!(matches!(
        state.apply_entry(&meta(3, 9, Some(0), EntryKind::Claim), &[], None),
        EntryOutcome::Applied(_)
    ));
    assert_eq!(state.writer_epoch(), 9);
}

#[test]
fn out_of_order_offers_change_nothing() {
    let mut state = MetadataState::new();
    let _ = state.apply_entry(&meta(3, 1, None, EntryKind::Claim), &[], None);
    let before = state.clone();
    for seq in [3, 2] {
        let reason =
            ignored(state.apply_entry(&meta(seq, 2, Some(3), EntryKind::Claim), &[], None));
        assert_eq!(
            reason,
            IgnoreReason::NotAfterLastOffered {
                seq: LogSeq(seq),
                last_offered_seq: LogSeq(3)
            }
        );
    }
    assert_eq!(state, before);
}

#[test]
fn commit_for_another_seq_is_rejected_segment_by_segment() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let seq = LogSeq(harness.next_seq);
    let meta = EntryMeta {
        seq,
        writer_epoch: 1,
        prev_seq: harness.state.last_valid_seq(),
        kind: EntryKind::Data,
    };
    let commit = ObjectCommit {
        seq: LogSeq(99),
        object_len: 1000,
        segments: vec![segment(TopicPartition::new(id(1), 0), 1, 0)],
    };
    let EntryOutcome::Applied(events) = harness.state.apply_entry(&meta, &[], Some(&commit)) else {
        panic!()
    };
    assert!(matches!(
        &events[0],
        Event::SegmentRejected {
            error: MetadataError::CommitSeqMismatch { .. },
            ..
        }
    ));
    assert_eq!(
        harness
            .state
            .high_watermark(TopicPartition::new(id(1), 0))
            .unwrap(),
        0
    );
}
