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

mod compaction {
    use super::*;
    use crate::compact::CompactionConfig;
    use crate::types::{compacted_object_id, is_compacted_object};

    fn replace(tp: TopicPartition, range: std::ops::Range<u64>, object: LogSeq) -> Command {
        Command::ReplaceIndexRange {
            swap: Box::new(IndexRangeSwap {
                tp,
                base_offset: range.start,
                end_offset: range.end,
                pieces: vec![SwapPiece {
                    end_offset: range.end,
                    object,
                    byte_start: 64,
                    byte_len: 30,
                    max_timestamp: 9,
                }],
            }),
        }
    }

    #[test]
    fn a_swap_replaces_exactly_the_run_it_names_or_nothing() {
        let mut harness = Harness::new();
        create_with(&mut harness, "t", id(1), &[]);
        let tp = TopicPartition::new(id(1), 0);
        commit_entries(&mut harness, tp, &[1, 2, 3, 4]); // offsets 0..8 in four entries
        let object = compacted_object_id(1, 0);
        // Boundaries that are not entry boundaries, an empty range, a log entry as the object.
        for command in [
            replace(tp, 1..4, object),
            replace(tp, 0..3, object),
            replace(tp, 4..4, object),
            replace(tp, 0..4, LogSeq(2)),
        ] {
            let event = harness.command(command);
            assert_eq!(rejected_code(&event), -1, "{event:?}");
        }
        assert_eq!(harness.state.partition(tp).unwrap().index().len(), 4);
        let event = harness.command(replace(tp, 2..6, object));
        assert_eq!(
            event,
            Event::IndexRangeReplaced {
                index: 0,
                tp,
                entries_replaced: 2
            }
        );
        let entries: Vec<IndexEntry> = harness.state.find_from(tp, 0, 10).unwrap();
        let bounds: Vec<(u64, u64, bool)> = entries
            .iter()
            .map(|entry| {
                (
                    entry.base_offset,
                    entry.end_offset,
                    is_compacted_object(entry.seq),
                )
            })
            .collect();
        assert_eq!(bounds, vec![(0, 2, false), (2, 6, true), (6, 8, false)]);
        assert_eq!(harness.state.find_from(tp, 3, 1).unwrap()[0].seq, object);
        // The compacted object is referenced; the window objects of entries 2..6 are not.
        assert!(
            harness
                .state
                .referenced_compacted_objects()
                .contains(&object)
        );
        let windows = harness.state.referenced_log_seqs_up_to(LogSeq(u64::MAX));
        assert_eq!(windows.len(), 2);
        // Retention drops the front: a swap planned before it is now stale.
        apply(
            &mut harness,
            vec![Command::DeleteRecords {
                tp,
                before_offset: 2,
            }],
        );
        let event = harness.command(replace(tp, 0..8, compacted_object_id(1, 1)));
        assert_eq!(rejected_code(&event), -1);
        // The swap goes through the commands section like every command.
        let section = encode_commands(&[replace(tp, 2..6, object)]).unwrap();
        assert_eq!(
            decode_commands(&section).unwrap(),
            vec![replace(tp, 2..6, object)]
        );
        // The state checkpoints and decodes with the compacted entry in it.
        let decoded = MetadataState::decode_checkpoint(&harness.state.encode_checkpoint()).unwrap();
        assert_eq!(decoded, harness.state);
    }

    #[test]
    fn the_plan_takes_the_oldest_runs_of_small_entries_within_the_target() {
        let mut harness = Harness::new();
        create_with(&mut harness, "a", id(1), &[]);
        create_with(&mut harness, "b", id(2), &[]);
        let (a, b) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(2), 0));
        commit_entries(&mut harness, a, &[1, 2, 3, 4, 5]); // five entries of 10 bytes
        commit_entries(&mut harness, b, &[1]); // one entry: nothing to merge
        let config = CompactionConfig {
            object_bytes_target: 1_000,
            inputs_per_job_max: 100,
            ..CompactionConfig::default()
        };
        let plan =
            harness
                .state
                .compaction_plan(&config, &RetentionDefaults::default(), i64::MAX / 2);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].tp, a);
        assert_eq!(plan[0].entries.len(), 5);
        // The input limit cuts the run.
        let tight = CompactionConfig {
            inputs_per_job_max: 3,
            ..config
        };
        assert_eq!(
            harness
                .state
                .compaction_plan(&tight, &RetentionDefaults::default(), i64::MAX / 2)[0]
                .entries
                .len(),
            3
        );
        // The byte target cuts it too (30 bytes: three entries of 10).
        let small = CompactionConfig {
            object_bytes_target: 30,
            ..config
        };
        // Entries must be under half the target (15 bytes): 10 is; the run stops at 30 bytes.
        assert_eq!(
            harness
                .state
                .compaction_plan(&small, &RetentionDefaults::default(), i64::MAX / 2)[0]
                .entries
                .len(),
            3
        );
        // After a swap the merged entry is large for a 20-byte target and is not taken again.
        harness.command(replace(a, 0..10, compacted_object_id(1, 0)));
        let after = CompactionConfig {
            object_bytes_target: 20,
            ..config
        };
        assert!(
            harness
                .state
                .compaction_plan(&after, &RetentionDefaults::default(), i64::MAX / 2)
                .is_empty()
        );
    }

    #[test]
    fn a_run_never_mixes_ages_or_bytes_that_retention_must_tell_apart() {
        let mut harness = Harness::new();
        // retention.ms of 8 s: a merged entry spans at most 1 s of timestamps.
        create_with(&mut harness, "timed", id(1), &[("retention.ms", "8000")]);
        // retention.bytes of 240: a merged entry holds at most 30 bytes (three entries of 10).
        create_with(&mut harness, "sized", id(2), &[("retention.bytes", "240")]);
        let (timed, sized) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(2), 0));
        commit_entries(&mut harness, timed, &[0, 500, 5_000, 5_100, 5_200]);
        commit_entries(&mut harness, sized, &[1, 2, 3, 4, 5]);
        let config = CompactionConfig {
            object_bytes_target: 1_000_000,
            inputs_per_job_max: 100,
            ..CompactionConfig::default()
        };
        let plan =
            harness
                .state
                .compaction_plan(&config, &RetentionDefaults::default(), i64::MAX / 2);
        let runs: Vec<(TopicPartition, Vec<i64>)> = plan
            .iter()
            .map(|range| {
                (
                    range.tp,
                    range
                        .entries
                        .iter()
                        .map(|entry| entry.max_timestamp)
                        .collect(),
                )
            })
            .collect();
        assert_eq!(runs, vec![(sized, vec![1, 2, 3]), (timed, vec![0, 500])]);
        // A topic that only compacts is not bounded by retention.
        let mut harness = Harness::new();
        create_with(
            &mut harness,
            "table",
            id(3),
            &[("cleanup.policy", "compact"), ("retention.ms", "8000")],
        );
        let table = TopicPartition::new(id(3), 0);
        commit_entries(&mut harness, table, &[0, 500, 5_000]);
        let plan =
            harness
                .state
                .compaction_plan(&config, &RetentionDefaults::default(), i64::MAX / 2);
        assert_eq!(plan[0].entries.len(), 3);
    }

    #[test]
    fn the_partitions_of_a_topic_cut_their_runs_at_staggered_boundaries() {
        let mut harness = Harness::new();
        // retention.ms of 8 s: runs span at most 1 s, cut at each partition's own boundaries.
        let event = harness.command(Command::CreateTopic {
            name: "spread".to_owned(),
            topic_id: id(5),
            partition_count: 4,
            configs: [("retention.ms".to_owned(), "8000".to_owned())].into(),
        });
        assert!(matches!(event, Event::TopicCreated { .. }), "{event:?}");
        // Every partition written in every window, one window each 100 ms for 3 s.
        let windows: Vec<i64> = (0..30).map(|window| window * 100).collect();
        for timestamp in &windows {
            let segments = (0..4)
                .map(|partition| segment(TopicPartition::new(id(5), partition), 2, *timestamp))
                .collect();
            harness.commit(segments);
        }
        let config = CompactionConfig {
            object_bytes_target: 1_000_000,
            inputs_per_job_max: 1_000,
            ..CompactionConfig::default()
        };
        let plan =
            harness
                .state
                .compaction_plan(&config, &RetentionDefaults::default(), i64::MAX / 2);
        assert_eq!(plan.len(), 4, "{plan:?}");
        let mut phases = Vec::new();
        for (partition, range) in plan.iter().enumerate() {
            assert_eq!(
                range.tp,
                TopicPartition::new(id(5), i32::try_from(partition).unwrap())
            );
            let phase = crate::compact::run_phase_ms(id(5), partition, 4, 1_000);
            phases.push(phase);
            // The first run is every window before the partition's first boundary past 0.
            let boundary = if phase == 0 { 1_000 } else { phase };
            let expected: Vec<i64> = windows.iter().copied().filter(|t| *t < boundary).collect();
            let got: Vec<i64> = range
                .entries
                .iter()
                .map(|entry| entry.max_timestamp)
                .collect();
            // A boundary within the first window leaves it alone: then the next bucket's run.
            if expected.len() >= 2 {
                assert_eq!(got, expected, "partition {partition}, phase {phase}");
            } else {
                let next: Vec<i64> = windows
                    .iter()
                    .copied()
                    .filter(|t| *t >= boundary && *t < boundary + 1_000)
                    .collect();
                assert_eq!(got, next, "partition {partition}, phase {phase}");
            }
        }
        // The four phases are a quarter of the span apart, shifted by the topic's id.
        phases.sort_unstable();
        let gaps: Vec<i64> = phases.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert_eq!(gaps, vec![250, 250, 250], "{phases:?}");
        let other: Vec<i64> = (0..4)
            .map(|partition| crate::compact::run_phase_ms(id(6), partition, 4, 1_000))
            .collect();
        assert!(
            other.iter().all(|phase| !phases.contains(phase)),
            "{other:?}"
        );
        assert!(
            phases
                .iter()
                .chain(&other)
                .all(|phase| (0..1_000).contains(phase))
        );
        // Timestamps at the ends of the range still merge (no boundary past i64::MAX): a
        // retention.bytes of 240 settles runs of three entries of 10 bytes.
        for stamp in [i64::MAX, i64::MIN] {
            let mut harness = Harness::new();
            create_with(&mut harness, "edge", id(7), &[("retention.bytes", "240")]);
            let tp = TopicPartition::new(id(7), 0);
            commit_entries(&mut harness, tp, &[stamp; 5]);
            let plan = harness
                .state
                .compaction_plan(&config, &RetentionDefaults::default(), 0);
            assert_eq!(plan.len(), 1, "{stamp}: {plan:?}");
            assert_eq!(plan[0].entries.len(), 3, "{stamp}");
        }
    }

    #[test]
    fn a_run_at_the_live_edge_waits_until_it_settles_and_compacted_entries_are_never_remerged() {
        let mut harness = Harness::new();
        create_with(&mut harness, "t", id(1), &[]);
        let tp = TopicPartition::new(id(1), 0);
        commit_entries(&mut harness, tp, &[100_000, 100_010, 100_020]);
        let config = CompactionConfig {
            object_bytes_target: 1_000_000,
            inputs_per_job_max: 100,
            ..CompactionConfig::default()
        };
        let defaults = RetentionDefaults::default();
        // Still growing at the live edge: nothing yet.
        assert!(
            harness
                .state
                .compaction_plan(&config, &defaults, 100_030)
                .is_empty()
        );
        // A minute after its oldest window: merged.
        let plan = harness.state.compaction_plan(&config, &defaults, 160_000);
        assert_eq!(plan[0].entries.len(), 3);
        harness.command(replace(tp, 0..6, compacted_object_id(1, 0)));
        // New windows after the compacted entry form their own run; the compacted one stays.
        commit_entries(&mut harness, tp, &[200_000, 200_010]);
        let plan = harness.state.compaction_plan(&config, &defaults, 300_000);
        let bases: Vec<u64> = plan[0]
            .entries
            .iter()
            .map(|entry| entry.base_offset)
            .collect();
        assert_eq!(bases, vec![6, 8]);
    }
}
