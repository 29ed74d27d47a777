//! Retention: the DeleteRecords commands `retention_commands` plans, and the positions the state
//! still references.

use super::*;

fn create_with(harness: &mut Harness, name: &str, topic_id: TopicId, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let event = harness.command(Command::CreateTopic {
        name: name.to_owned(),
        topic_id,
        partition_count: 1,
        configs,
    });
    assert!(matches!(event, Event::TopicCreated { .. }), "{event:?}");
}

/// Commits one entry of `offsets` offsets and 10 bytes per timestamp, one entry each.
fn commit_entries(harness: &mut Harness, tp: TopicPartition, timestamps: &[i64]) {
    for timestamp in timestamps {
        harness.commit(vec![segment(tp, 2, *timestamp)]);
    }
}

fn apply(harness: &mut Harness, commands: Vec<Command>) {
    for event in harness.commands(&commands) {
        assert!(matches!(event, Event::RecordsDeleted { .. }), "{event:?}");
    }
}

const UNLIMITED: RetentionDefaults = RetentionDefaults {
    retention_ms: -1,
    retention_bytes: -1,
};

#[test]
fn time_retention_drops_expired_entries_from_the_oldest() {
    let mut harness = Harness::new();
    create_with(&mut harness, "t", id(1), &[("retention.ms", "100")]);
    let tp = TopicPartition::new(id(1), 0);
    commit_entries(&mut harness, tp, &[1_000, 1_050, 1_200, 1_100]);
    // At 1,200 the cutoff is 1,100: the first two entries (max 1,000 and 1,050) expire.
    let commands = harness.state.retention_commands(1_200, &UNLIMITED);
    assert_eq!(
        commands,
        vec![Command::DeleteRecords {
            tp,
            before_offset: 4
        }]
    );
    apply(&mut harness, commands);
    assert_eq!(harness.state.log_start_offset(tp).unwrap(), 4);
    assert_eq!(harness.state.partition(tp).unwrap().index().len(), 2);
    // Nothing more is due at the same time: the plan is idempotent.
    assert!(
        harness
            .state
            .retention_commands(1_200, &UNLIMITED)
            .is_empty()
    );
    // An entry not yet expired stops the walk even when a later one is older (Kafka's rule).
    let commands = harness.state.retention_commands(1_250, &UNLIMITED);
    assert!(commands.is_empty(), "{commands:?}");
    // Everything expired: the log start reaches the high watermark and the index empties.
    let commands = harness.state.retention_commands(10_000, &UNLIMITED);
    apply(&mut harness, commands);
    assert_eq!(harness.state.log_start_offset(tp).unwrap(), 8);
    assert_eq!(harness.state.high_watermark(tp).unwrap(), 8);
    assert!(harness.state.partition(tp).unwrap().index().is_empty());
}

#[test]
fn size_retention_keeps_at_least_retention_bytes() {
    let mut harness = Harness::new();
    // Each entry is 10 bytes; keep at least 25: four entries (40 bytes) keep three (30).
    create_with(&mut harness, "t", id(1), &[("retention.bytes", "25")]);
    let tp = TopicPartition::new(id(1), 0);
    commit_entries(&mut harness, tp, &[1, 2, 3, 4]);
    let commands = harness.state.retention_commands(0, &UNLIMITED);
    assert_eq!(
        commands,
        vec![Command::DeleteRecords {
            tp,
            before_offset: 2
        }]
    );
    apply(&mut harness, commands);
    assert!(harness.state.retention_commands(0, &UNLIMITED).is_empty());
    // Exactly retention.bytes remaining after a deletion still allows it (Kafka: diff >= 0).
    let mut harness = Harness::new();
    create_with(&mut harness, "t", id(1), &[("retention.bytes", "20")]);
    commit_entries(&mut harness, tp, &[1, 2, 3, 4]);
    assert_eq!(
        harness.state.retention_commands(0, &UNLIMITED),
        vec![Command::DeleteRecords {
            tp,
            before_offset: 4
        }]
    );
}

#[test]
fn broker_defaults_apply_without_an_override_and_overrides_win() {
    let mut harness = Harness::new();
    create_with(&mut harness, "default", id(1), &[]);
    create_with(&mut harness, "forever", id(2), &[("retention.ms", "-1")]);
    let (by_default, forever) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(2), 0));
    commit_entries(&mut harness, by_default, &[1_000]);
    commit_entries(&mut harness, forever, &[1_000]);
    let defaults = RetentionDefaults {
        retention_ms: 500,
        retention_bytes: -1,
    };
    assert_eq!(
        harness.state.retention_commands(2_000, &defaults),
        vec![Command::DeleteRecords {
            tp: by_default,
            before_offset: 2
        }]
    );
    // Kafka's default is 7 days and no size limit.
    assert_eq!(
        RetentionDefaults::default(),
        RetentionDefaults {
            retention_ms: 604_800_000,
            retention_bytes: -1
        }
    );
}

#[test]
fn compact_only_topics_are_never_deleted_by_retention() {
    let mut harness = Harness::new();
    create_with(
        &mut harness,
        "compacted",
        id(1),
        &[("cleanup.policy", "compact"), ("retention.ms", "1")],
    );
    create_with(
        &mut harness,
        "both",
        id(2),
        &[("cleanup.policy", "compact,delete"), ("retention.ms", "1")],
    );
    let (compacted, both) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(2), 0));
    commit_entries(&mut harness, compacted, &[1]);
    commit_entries(&mut harness, both, &[1]);
    assert_eq!(
        harness.state.retention_commands(1_000, &UNLIMITED),
        vec![Command::DeleteRecords {
            tp: both,
            before_offset: 2
        }]
    );
}

#[test]
fn a_log_start_moved_by_delete_records_is_never_lowered() {
    let mut harness = Harness::new();
    create_with(&mut harness, "t", id(1), &[("retention.ms", "100")]);
    let tp = TopicPartition::new(id(1), 0);
    commit_entries(&mut harness, tp, &[1_000, 5_000]);
    // DeleteRecords in the middle of the second entry: retention of the first entry is a no-op.
    apply(
        &mut harness,
        vec![Command::DeleteRecords {
            tp,
            before_offset: 3,
        }],
    );
    assert!(
        harness
            .state
            .retention_commands(1_200, &UNLIMITED)
            .is_empty()
    );
}

#[test]
fn referenced_positions_follow_the_index() {
    let mut harness = Harness::new();
    create_with(&mut harness, "a", id(1), &[]);
    create_with(&mut harness, "b", id(2), &[]);
    let (a, b) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(2), 0));
    // Positions 0..=2 are the claim and the two creates; commits land at 3, 4 and 5.
    harness.commit(vec![segment(a, 1, 1), segment(b, 1, 1)]);
    harness.commit(vec![segment(a, 1, 1)]);
    harness.commit(vec![segment(b, 1, 1)]);
    let all = |state: &MetadataState| state.referenced_log_seqs_up_to(LogSeq(u64::MAX));
    assert_eq!(
        all(&harness.state).into_iter().collect::<Vec<_>>(),
        vec![LogSeq(3), LogSeq(4), LogSeq(5)]
    );
    assert_eq!(
        harness
            .state
            .referenced_log_seqs_up_to(LogSeq(3))
            .into_iter()
            .collect::<Vec<_>>(),
        vec![LogSeq(3)]
    );
    assert_eq!(harness.state.index_entry_count(), 4);
    // a drops its first entry: 3 is still b's; b drops its first: 3 is free.
    apply(
        &mut harness,
        vec![Command::DeleteRecords {
            tp: a,
            before_offset: 1,
        }],
    );
    assert!(all(&harness.state).contains(&LogSeq(3)));
    apply(
        &mut harness,
        vec![Command::DeleteRecords {
            tp: b,
            before_offset: 1,
        }],
    );
    assert_eq!(
        all(&harness.state).into_iter().collect::<Vec<_>>(),
        vec![LogSeq(4), LogSeq(5)]
    );
    // A deleted topic references nothing.
    harness.command(Command::DeleteTopic { topic_id: id(2) });
    assert_eq!(
        all(&harness.state).into_iter().collect::<Vec<_>>(),
        vec![LogSeq(4)]
    );
}
