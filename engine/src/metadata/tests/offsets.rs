//! Committed group offsets: CommitOffsets, DeleteOffsets, DeleteGroups, and DeleteTopic's effect.

use super::*;

fn commit(topic: &str, partition: u32, offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: topic.to_owned(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: Some(format!("m-{topic}-{partition}")),
        commit_timestamp_ms: 1_700_000_000_000 + offset,
    }
}

fn commit_offsets(group: &str, offsets: Vec<OffsetCommit>) -> Command {
    Command::CommitOffsets {
        group: group.to_owned(),
        offsets,
    }
}

/// Two topics: "a" with 2 partitions, "b" with 1.
fn harness() -> Harness {
    let mut harness = Harness::new();
    harness.create("a", id(1), 2);
    harness.create("b", id(2), 1);
    harness
}

fn offsets_of(state: &MetadataState, group: &str) -> Vec<(String, u32, i64)> {
    state
        .committed_offsets(group)
        .map(|((topic, partition), committed)| (topic.to_owned(), partition, committed.offset))
        .collect()
}

#[test]
fn commit_stores_every_field_and_updates_in_place() {
    let mut harness = harness();
    let event = harness.command(commit_offsets(
        "g",
        vec![commit("b", 0, 7), commit("a", 1, 5), commit("a", 0, -1)],
    ));
    assert_eq!(
        event,
        Event::OffsetsCommitted {
            index: 0,
            group: "g".into(),
            skipped: vec![]
        }
    );
    let state = &harness.state;
    assert_eq!(
        state.committed_offset("g", "a", 1),
        Some(&CommittedOffset {
            offset: 5,
            leader_epoch: 3,
            metadata: Some("m-a-1".into()),
            commit_timestamp_ms: 1_700_000_000_005,
        })
    );
    // -1 is stored as given, as Kafka does.
    assert_eq!(state.committed_offset("g", "a", 0).unwrap().offset, -1);
    assert_eq!(state.committed_offset("g", "c", 0), None);
    assert_eq!(state.committed_offset("other", "a", 1), None);
    // Sorted by topic, then partition.
    assert_eq!(
        offsets_of(state, "g"),
        vec![("a".into(), 0, -1), ("a".into(), 1, 5), ("b".into(), 0, 7)]
    );
    assert_eq!(state.committed_offset_count(), 3);

    let mut update = commit("a", 1, 9);
    update.metadata = None;
    update.leader_epoch = -1;
    harness.command(commit_offsets("g", vec![update]));
    assert_eq!(
        harness.state.committed_offset("g", "a", 1),
        Some(&CommittedOffset {
            offset: 9,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 1_700_000_000_009,
        })
    );
    assert_eq!(harness.state.committed_offset_count(), 3);
}

#[test]
fn commit_skips_bad_partitions_alone() {
    let mut harness = harness();
    let mut too_large = commit("b", 0, 1);
    too_large.metadata = Some("x".repeat(OFFSET_METADATA_LEN_MAX + 1));
    let event = harness.command(commit_offsets(
        "g",
        vec![
            commit("missing", 0, 1),
            commit("a", 2, 1),
            commit("a", 0, 4),
            commit("a", 1, -2),
            too_large,
        ],
    ));
    let Event::OffsetsCommitted { skipped, .. } = event else {
        panic!("{event:?}")
    };
    let skipped: Vec<(usize, i16)> = skipped
        .iter()
        .map(|(position, error)| (*position, error.kafka_error_code()))
        .collect();
    assert_eq!(skipped, vec![(0, 3), (1, 3), (3, 42), (4, 12)]);
    assert_eq!(offsets_of(&harness.state, "g"), vec![("a".into(), 0, 4)]);
}

#[test]
fn commit_with_a_bad_group_id_is_rejected_whole() {
    let mut harness = harness();
    let event = harness.command(commit_offsets("", vec![commit("a", 0, 1)]));
    assert_eq!(rejected_code(&event), 24);
    let long = "g".repeat(GROUP_ID_LEN_MAX + 1);
    let event = harness.command(commit_offsets(&long, vec![commit("a", 0, 1)]));
    assert_eq!(rejected_code(&event), 24);
    assert_eq!(harness.state.offset_groups().count(), 0);
    assert_eq!(harness.state.committed_offset_count(), 0);
}

#[test]
fn delete_offsets_removes_only_those_and_empty_groups_disappear() {
    let mut harness = harness();
    harness.command(commit_offsets(
        "g",
        vec![commit("a", 0, 1), commit("a", 1, 2), commit("b", 0, 3)],
    ));
    harness.command(commit_offsets("h", vec![commit("a", 0, 10)]));
    let event = harness.command(Command::DeleteOffsets {
        group: "g".into(),
        partitions: vec![("a".into(), 0), ("a".into(), 7), ("zzz".into(), 0)],
    });
    assert_eq!(
        event,
        Event::OffsetsDeleted {
            index: 0,
            group: "g".into(),
            deleted_count: 1
        }
    );
    assert_eq!(
        offsets_of(&harness.state, "g"),
        vec![("a".into(), 1, 2), ("b".into(), 0, 3)]
    );
    assert_eq!(offsets_of(&harness.state, "h"), vec![("a".into(), 0, 10)]);
    harness.command(Command::DeleteOffsets {
        group: "g".into(),
        partitions: vec![("a".into(), 1), ("b".into(), 0)],
    });
    assert_eq!(harness.state.offset_groups().collect::<Vec<_>>(), vec!["h"]);
    assert_eq!(harness.state.committed_offset_count(), 1);
    // A group without offsets: nothing to delete, not an error.
    let event = harness.command(Command::DeleteOffsets {
        group: "nobody".into(),
        partitions: vec![("a".into(), 0)],
    });
    assert!(
        matches!(
            event,
            Event::OffsetsDeleted {
                deleted_count: 0,
                ..
            }
        ),
        "{event:?}"
    );
}

#[test]
fn delete_groups_removes_all_their_offsets() {
    let mut harness = harness();
    harness.command(commit_offsets(
        "g",
        vec![commit("a", 0, 1), commit("b", 0, 3)],
    ));
    harness.command(commit_offsets("h", vec![commit("a", 0, 10)]));
    harness.command(commit_offsets("i", vec![commit("a", 1, 11)]));
    let event = harness.command(Command::DeleteGroups {
        groups: vec!["i".into(), "unknown".into(), "g".into()],
    });
    assert_eq!(
        event,
        Event::GroupsDeleted {
            index: 0,
            deleted: vec!["i".into(), "g".into()]
        }
    );
    assert_eq!(harness.state.offset_groups().collect::<Vec<_>>(), vec!["h"]);
    assert_eq!(harness.state.committed_offsets("g").count(), 0);
    assert_eq!(harness.state.committed_offset_count(), 1);
}

#[test]
fn delete_topic_drops_its_offsets_from_every_group() {
    let mut harness = harness();
    harness.command(commit_offsets(
        "g",
        vec![commit("a", 0, 1), commit("b", 0, 3)],
    ));
    harness.command(commit_offsets("h", vec![commit("a", 1, 10)]));
    harness.command(Command::DeleteTopic { topic_id: id(1) });
    assert_eq!(offsets_of(&harness.state, "g"), vec![("b".into(), 0, 3)]);
    // "h" only had offsets of the deleted topic.
    assert_eq!(harness.state.offset_groups().collect::<Vec<_>>(), vec!["g"]);
    assert_eq!(harness.state.committed_offset_count(), 1);
    // Re-created under the same name, the topic starts without offsets.
    harness.create("a", id(3), 2);
    assert_eq!(harness.state.committed_offset("g", "a", 0), None);
    // And a commit to a partition added later is accepted once the partition exists.
    let event = harness.command(commit_offsets("g", vec![commit("b", 1, 1)]));
    assert!(
        matches!(&event, Event::OffsetsCommitted { skipped, .. } if skipped.len() == 1),
        "{event:?}"
    );
    harness.command(Command::CreatePartitions {
        topic_id: id(2),
        partition_count: 2,
    });
    harness.command(commit_offsets("g", vec![commit("b", 1, 1)]));
    assert_eq!(
        harness.state.committed_offset("g", "b", 1).unwrap().offset,
        1
    );
}

#[test]
fn commands_in_one_entry_apply_in_order() {
    let mut harness = harness();
    let events = harness.commands(&[
        commit_offsets("g", vec![commit("a", 0, 1)]),
        Command::DeleteGroups {
            groups: vec!["g".into()],
        },
        commit_offsets("g", vec![commit("a", 1, 2)]),
    ]);
    assert_eq!(events.len(), 3);
    assert_eq!(offsets_of(&harness.state, "g"), vec![("a".into(), 1, 2)]);
}

/// The commands section of one of each command that existed before the group commands, encoded
/// by the build before they were added. rkyv stores an enum variant by position, so appending
/// variants must leave these bytes meaning exactly the same commands.
#[test]
fn commands_encoded_before_the_group_commands_still_decode() {
    let bytes = include_bytes!("fixtures/commands_v1_before_groups.bin");
    let topic_id = id(7);
    let expected = vec![
        Command::CreateTopic {
            name: "orders".into(),
            topic_id,
            partition_count: 3,
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
        },
        Command::CreatePartitions {
            topic_id,
            partition_count: 4,
        },
        Command::AlterTopicConfigs {
            topic_id,
            set: vec![
                ("cleanup.policy".into(), Some("delete".into())),
                ("retention.ms".into(), None),
            ],
        },
        Command::DeleteRecords {
            tp: TopicPartition::new(topic_id, 1),
            before_offset: 2,
        },
        Command::InitProducerId {
            transactional_id: None,
        },
        Command::DeleteTopic { topic_id: id(9) },
    ];
    assert_eq!(decode_commands(bytes).unwrap(), expected);
    // And this build still writes the very same bytes for them.
    assert_eq!(encode_commands(&expected).unwrap(), bytes.to_vec());
}

#[test]
fn group_commands_round_trip_through_the_commands_section() {
    let mut with_nothing = commit("a", 0, 1);
    with_nothing.metadata = None;
    let commands = vec![
        commit_offsets("g", vec![commit("a", 0, 1), with_nothing]),
        Command::DeleteOffsets {
            group: "g".into(),
            partitions: vec![("a".into(), 0)],
        },
        Command::DeleteGroups {
            groups: vec!["g".into(), "h".into()],
        },
        create_topic("after", id(4), 1),
    ];
    let bytes = encode_commands(&commands).unwrap();
    assert_eq!(decode_commands(&bytes).unwrap(), commands);
}

/// A checkpoint snapshot (a clone of the state) shares each group's offsets copy-on-write: what
/// the live state commits, deletes or drops afterwards must not show in the snapshot.
#[test]
fn a_snapshot_keeps_its_offsets_whatever_the_live_state_does_next() {
    let mut harness = harness();
    harness.command(commit_offsets(
        "g",
        vec![commit("a", 0, 5), commit("b", 0, 7)],
    ));
    harness.command(commit_offsets("h", vec![commit("a", 1, 9)]));
    let snapshot = harness.state.clone();
    let before = (offsets_of(&snapshot, "g"), offsets_of(&snapshot, "h"));
    harness.command(commit_offsets(
        "g",
        vec![commit("a", 0, 6), commit("a", 1, 1)],
    ));
    harness.command(Command::DeleteGroups {
        groups: vec!["h".to_owned()],
    });
    harness.command(Command::DeleteTopic { topic_id: id(2) });
    assert_eq!(
        (offsets_of(&snapshot, "g"), offsets_of(&snapshot, "h")),
        before
    );
    assert_eq!(
        offsets_of(&harness.state, "g"),
        vec![("a".to_owned(), 0, 6), ("a".to_owned(), 1, 1)]
    );
    assert!(offsets_of(&harness.state, "h").is_empty());
}
