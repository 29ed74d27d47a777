//! Stored group state: StoreGroup, its limits and rules, DeleteGroups, the checkpoint (v4) and
//! the commands section, replay from a checkpoint taken half-way, and the v3 fixture.

use super::checkpoint::{populated, populated_before_groups};
use super::*;

pub(super) fn store(group: &str, record: Option<GroupRecord>) -> Command {
    Command::StoreGroup {
        store: Box::new(GroupStore {
            group: group.to_owned(),
            record,
        }),
    }
}

fn classic_member(id: &str, instance: Option<&str>) -> ClassicMemberRecord {
    ClassicMemberRecord {
        member_id: id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        protocols: vec![
            ("cooperative-sticky".to_owned(), vec![0, 3, 1, 2]),
            ("range".to_owned(), Vec::new()),
        ],
        assignment: vec![9; 20],
    }
}

fn classic(generation: i32) -> GroupRecord {
    GroupRecord::Classic(ClassicGroupRecord {
        protocol_type: "consumer".to_owned(),
        protocol_name: Some("cooperative-sticky".to_owned()),
        generation,
        leader: Some("m-1".to_owned()),
        members: vec![
            classic_member("m-1", None),
            classic_member("m-2", Some("i-2")),
        ],
    })
}

fn consumer_member(member_id: &str, epoch: i32, partitions: Vec<u32>) -> ConsumerMemberRecord {
    ConsumerMemberRecord {
        member_id: member_id.to_owned(),
        instance_id: None,
        rack_id: Some("rack-a".to_owned()),
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        rebalance_timeout_ms: 45_000,
        subscribed_topic_names: vec!["a".to_owned(), "b".to_owned()],
        subscribed_topic_regex: Some("a.*".to_owned()),
        server_assignor: Some("uniform".to_owned()),
        state: ConsumerMemberState::UnrevokedPartitions,
        member_epoch: epoch,
        previous_member_epoch: epoch - 1,
        assigned: vec![(id(1), partitions.clone())],
        pending_revocation: vec![(id(2), vec![0])],
        target: vec![(id(1), partitions)],
    }
}

fn consumer(group_epoch: i32) -> GroupRecord {
    GroupRecord::Consumer(ConsumerGroupRecord {
        group_epoch,
        assignment_epoch: group_epoch,
        assignor: "uniform".to_owned(),
        subscribed: vec![("a".to_owned(), id(1), 3), ("b".to_owned(), id(2), 1)],
        members: vec![
            consumer_member("x", group_epoch, vec![0, 2]),
            consumer_member("y", group_epoch - 1, vec![1]),
        ],
    })
}

/// One classic group, one KIP-848 group and one Empty classic group.
pub(super) fn sample_records() -> Vec<(String, GroupRecord)> {
    vec![
        ("classic-group".to_owned(), classic(7)),
        ("consumer-group".to_owned(), consumer(12)),
        (
            "empty-group".to_owned(),
            GroupRecord::Classic(ClassicGroupRecord {
                protocol_type: "consumer".to_owned(),
                protocol_name: None,
                generation: 4,
                leader: None,
                members: Vec::new(),
            }),
        ),
    ]
}

fn rejection(event: &Event) -> &MetadataError {
    match event {
        Event::CommandRejected { error, .. } => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn store_replace_remove_and_query() {
    let mut harness = Harness::new();
    assert_eq!(
        harness.command(store("g", Some(classic(1)))),
        Event::GroupStored {
            index: 0,
            group: "g".into(),
            removed: false
        }
    );
    assert_eq!(harness.state.stored_group("g"), Some(&classic(1)));
    let one_bytes = harness.state.group_state_bytes();
    assert!(one_bytes > 0);
    harness.command(store("g", Some(classic(2))));
    harness.command(store("h", Some(consumer(3))));
    assert_eq!(harness.state.stored_group("g"), Some(&classic(2)));
    assert_eq!(harness.state.stored_group_count(), 2);
    let listed: Vec<&str> = harness.state.stored_groups().map(|(id, _)| id).collect();
    assert_eq!(listed, ["g", "h"]);
    // A group may change protocol: the record replaces whatever was stored.
    harness.command(store("g", Some(consumer(5))));
    assert_eq!(harness.state.stored_group("g"), Some(&consumer(5)));
    assert_eq!(
        harness.command(store("g", None)),
        Event::GroupStored {
            index: 0,
            group: "g".into(),
            removed: true
        }
    );
    assert_eq!(harness.state.stored_group("g"), None);
    // Removing what is not there is a no-op, not an error.
    assert!(matches!(
        harness.command(store("never", None)),
        Event::GroupStored { removed: true, .. }
    ));
    harness.command(store("h", None));
    assert_eq!(harness.state.group_state_bytes(), 0);
    assert_eq!(one_bytes, validate_group_record(&classic(1)).unwrap());
}

#[test]
fn delete_groups_drops_stored_state_with_the_offsets() {
    let mut harness = Harness::new();
    harness.create("a", id(1), 2);
    harness.command(store("stored-only", Some(classic(1))));
    harness.command(store("both", Some(consumer(2))));
    harness.command(Command::CommitOffsets {
        group: "both".into(),
        offsets: vec![OffsetCommit {
            topic: "a".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 1,
        }],
    });
    let event = harness.command(Command::DeleteGroups {
        groups: vec!["stored-only".into(), "nothing".into(), "both".into()],
    });
    assert_eq!(
        event,
        Event::GroupsDeleted {
            index: 0,
            deleted: vec!["stored-only".into(), "both".into()]
        }
    );
    assert_eq!(harness.state.stored_group_count(), 0);
    assert_eq!(harness.state.group_state_bytes(), 0);
    assert_eq!(harness.state.committed_offset_count(), 0);
}

#[test]
fn records_breaking_a_rule_are_rejected_and_change_nothing() {
    let mut harness = Harness::new();
    harness.command(store("g", Some(classic(1))));
    let before = harness.state.clone();
    let mut broken = Vec::new();
    let GroupRecord::Classic(mut unordered) = classic(2) else {
        unreachable!()
    };
    unordered.members.reverse();
    broken.push(GroupRecord::Classic(unordered));
    let GroupRecord::Classic(mut leaderless) = classic(2) else {
        unreachable!()
    };
    leaderless.leader = Some("not-a-member".into());
    broken.push(GroupRecord::Classic(leaderless));
    let GroupRecord::Classic(mut twice) = classic(2) else {
        unreachable!()
    };
    twice.members[0].instance_id = Some("i-2".into());
    broken.push(GroupRecord::Classic(twice));
    let GroupRecord::Consumer(mut unsorted) = consumer(3) else {
        unreachable!()
    };
    unsorted.members[0].assigned = vec![(id(1), vec![2, 0])];
    broken.push(GroupRecord::Consumer(unsorted));
    let GroupRecord::Consumer(mut empty_topic) = consumer(3) else {
        unreachable!()
    };
    empty_topic.members[0].target = vec![(id(1), Vec::new())];
    broken.push(GroupRecord::Consumer(empty_topic));
    let GroupRecord::Consumer(mut long_name) = consumer(3) else {
        unreachable!()
    };
    long_name.members[0].client_id = "c".repeat(GROUP_STRING_LEN_MAX + 1);
    broken.push(GroupRecord::Consumer(long_name));
    for record in broken {
        let event = harness.command(store("g", Some(record)));
        let error = rejection(&event);
        assert!(
            matches!(error, MetadataError::InvalidGroupRecord { .. }),
            "{error:?}"
        );
        assert_eq!(error.kafka_error_code(), -1);
    }
    let event = harness.command(store("", Some(classic(1))));
    assert!(matches!(
        rejection(&event),
        MetadataError::InvalidGroupId { .. }
    ));
    // Nothing but the chain position moved.
    assert_eq!(harness.state.stored_group("g"), before.stored_group("g"));
    assert_eq!(
        harness.state.group_state_bytes(),
        before.group_state_bytes()
    );
    assert_eq!(harness.state.stored_group_count(), 1);
}

#[test]
fn a_group_over_its_size_limit_is_refused_with_its_size() {
    let mut harness = Harness::new();
    let GroupRecord::Classic(mut huge) = classic(1) else {
        unreachable!()
    };
    huge.members[0].assignment = vec![0; GROUP_STATE_BYTES_MAX];
    let event = harness.command(store("g", Some(GroupRecord::Classic(huge.clone()))));
    match rejection(&event) {
        MetadataError::GroupStateTooLarge { group, len, limit } => {
            assert_eq!(group, "g");
            assert!(*len > GROUP_STATE_BYTES_MAX);
            assert_eq!(*limit, GROUP_STATE_BYTES_MAX);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(harness.state.stored_group_count(), 0);
    // Just under the limit is fine.
    let fits = GROUP_STATE_BYTES_MAX - validate_group_record(&classic(1)).unwrap() + 20;
    huge.members[0].assignment = vec![0; fits];
    let event = harness.command(store("g", Some(GroupRecord::Classic(huge))));
    assert!(matches!(event, Event::GroupStored { .. }), "{event:?}");
    assert_eq!(harness.state.group_state_bytes(), GROUP_STATE_BYTES_MAX);
}

#[test]
fn the_number_of_stored_groups_is_bounded_but_updates_always_pass() {
    let mut harness = Harness::new();
    let small = GroupRecord::Classic(ClassicGroupRecord {
        protocol_type: String::new(),
        protocol_name: None,
        generation: 1,
        leader: None,
        members: Vec::new(),
    });
    for round in 0..GROUPS_STORED_MAX / COMMANDS_PER_ENTRY_MAX {
        let commands: Vec<Command> = (0..COMMANDS_PER_ENTRY_MAX)
            .map(|index| store(&format!("g{round}-{index}"), Some(small.clone())))
            .collect();
        let events = harness.commands(&commands);
        assert!(
            events
                .iter()
                .all(|event| matches!(event, Event::GroupStored { .. }))
        );
    }
    assert_eq!(harness.state.stored_group_count(), GROUPS_STORED_MAX);
    let event = harness.command(store("one-too-many", Some(small.clone())));
    assert!(matches!(
        rejection(&event),
        MetadataError::GroupStateFull { .. }
    ));
    let existing = harness.state.stored_groups().next().unwrap().0.to_owned();
    let event = harness.command(store(&existing, Some(classic(3))));
    assert!(matches!(event, Event::GroupStored { .. }), "{event:?}");
}

#[test]
fn stored_groups_round_trip_through_the_checkpoint() {
    let state = populated();
    assert_eq!(state.stored_group_count(), 3);
    let bytes = state.encode_checkpoint();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), CHECKPOINT_VERSION);
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.group_state_bytes(), state.group_state_bytes());
    for (group, record) in sample_records() {
        assert_eq!(decoded.stored_group(&group), Some(&record));
    }
    assert_eq!(decoded.encode_checkpoint(), bytes);
}

#[test]
fn store_group_commands_round_trip_through_the_commands_section() {
    let commands: Vec<Command> = sample_records()
        .into_iter()
        .map(|(group, record)| store(&group, Some(record)))
        .chain([store("gone", None)])
        .collect();
    let section = encode_commands(&commands).unwrap();
    assert_eq!(decode_commands(&section).unwrap(), commands);
}

/// A checkpoint taken half-way through a run of group changes, plus the entries after it, gives
/// the state a full replay gives.
#[test]
fn checkpoint_plus_tail_equals_full_replay() {
    let mut script: Vec<Vec<Command>> = Vec::new();
    for step in 0..20 {
        let mut entry = vec![
            store("a", Some(classic(step))),
            store("b", Some(consumer(step + 1))),
        ];
        if step % 3 == 0 {
            entry.push(store("a", None));
        }
        if step % 7 == 0 {
            entry.push(Command::DeleteGroups {
                groups: vec!["b".into()],
            });
        }
        script.push(entry);
    }
    let mut full = Harness::new();
    for entry in &script {
        full.commands(entry);
    }
    for cut in [0, 1, 7, 13, 19] {
        let mut first = Harness::new();
        for entry in &script[..cut] {
            first.commands(entry);
        }
        let mut resumed = Harness {
            state: MetadataState::decode_checkpoint(&first.state.encode_checkpoint()).unwrap(),
            next_seq: first.next_seq,
        };
        for entry in &script[cut..] {
            resumed.commands(entry);
        }
        assert_eq!(resumed.state, full.state, "cut at {cut}");
    }
}

/// A record that breaks a rule is refused by the decoder too, even under a valid CRC (a bug in
/// the writer): the state machine never stores one, so the checkpoint never holds one.
#[test]
fn a_checkpoint_with_a_broken_record_is_refused() {
    let mut state = populated();
    let GroupRecord::Classic(mut broken) = classic(1) else {
        unreachable!()
    };
    broken.leader = None;
    let record = GroupRecord::Classic(broken);
    let encoded_len = validate_group_record(&classic(1)).unwrap();
    state.group_states.insert(
        "broken".into(),
        super::super::groups::StoredGroup {
            record: std::sync::Arc::new(record),
            encoded_len,
        },
    );
    let error = MetadataState::decode_checkpoint(&state.encode_checkpoint()).unwrap_err();
    assert!(
        matches!(&error, CheckpointError::Invalid { reason } if reason.contains("no leader")),
        "{error:?}"
    );
}

/// A v3 checkpoint written by the build before group state was stored (`populated_before_groups`
/// encoded by that build): it decodes to the same state with no stored groups, and groups can be
/// stored on top of it.
#[test]
fn version_3_checkpoint_decodes_without_stored_groups() {
    let bytes = include_bytes!("fixtures/checkpoint_v3.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
    let state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state, populated_before_groups());
    assert_eq!(state.stored_group_count(), 0);
    assert_eq!(state.committed_offset_count(), 4);
    let mut harness = Harness {
        next_seq: state.last_offered_seq().unwrap().0 + 1,
        state,
    };
    let event = harness.command(store("g", Some(classic(1))));
    assert!(matches!(event, Event::GroupStored { .. }), "{event:?}");
    let current = harness.state.encode_checkpoint();
    assert_eq!(
        u16::from_le_bytes([current[8], current[9]]),
        CHECKPOINT_VERSION
    );
    assert_eq!(
        MetadataState::decode_checkpoint(&current).unwrap(),
        harness.state
    );
}
