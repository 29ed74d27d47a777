//! Committed group offsets against a model, under random command sequences, and through
//! checkpoint + tail replay.
//!
//! Entries carry random mixes of topic commands (create, delete, add partitions), data commits and
//! the group commands (CommitOffsets, DeleteOffsets, DeleteGroups), each entry's commands passing
//! through the commands-section codec as they would through the log. The model is the apply rules
//! written plainly (a map from `(group, topic, partition)`); after every entry the state's
//! accessors must agree with it. Then, as recovery does, a checkpoint taken after a random prefix
//! is decoded and the rest of the entries replayed on it: the result must equal the full replay
//! and encode to identical bytes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_engine::metadata::{
    Command, CommittedOffset, EntryKind, EntryMeta, EntryOutcome, Event, MetadataState,
    ObjectCommit, OffsetCommit, SegmentCommit, decode_commands, encode_commands,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

const TOPIC_SLOTS: u8 = 3;
const GROUP_SLOTS: u8 = 4;
const PARTITIONS_MAX: u32 = 3;

#[derive(Debug, Clone)]
enum Op {
    CreateTopic {
        name_slot: u8,
        id_slot: u8,
        partition_count: u32,
    },
    DeleteTopic {
        id_slot: u8,
    },
    CreatePartitions {
        id_slot: u8,
        partition_count: u32,
    },
    /// `(name_slot, partition, offset, metadata)`; some name unknown topics or partitions, some
    /// offsets are below -1: those are skipped alone.
    CommitOffsets {
        group_slot: u8,
        offsets: Vec<(u8, u32, i64, Option<u8>)>,
    },
    DeleteOffsets {
        group_slot: u8,
        partitions: Vec<(u8, u32)>,
    },
    DeleteGroups {
        group_slots: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..TOPIC_SLOTS;
    // One group slot past the others is the empty (invalid) group id.
    let group = 0..=GROUP_SLOTS;
    let partition = 0..PARTITIONS_MAX + 1;
    prop_oneof![
        2 => (slot.clone(), slot.clone(), 0..=PARTITIONS_MAX)
            .prop_map(|(name_slot, id_slot, partition_count)| Op::CreateTopic { name_slot, id_slot, partition_count }),
        1 => slot.clone().prop_map(|id_slot| Op::DeleteTopic { id_slot }),
        1 => (slot.clone(), 0..=PARTITIONS_MAX + 1)
            .prop_map(|(id_slot, partition_count)| Op::CreatePartitions { id_slot, partition_count }),
        6 => (group.clone(), prop::collection::vec(
                (slot.clone(), partition.clone(), -3i64..40, prop::option::of(0u8..3)), 0..6))
            .prop_map(|(group_slot, offsets)| Op::CommitOffsets { group_slot, offsets }),
        2 => (group.clone(), prop::collection::vec((slot, partition), 0..4))
            .prop_map(|(group_slot, partitions)| Op::DeleteOffsets { group_slot, partitions }),
        1 => prop::collection::vec(group, 0..3)
            .prop_map(|group_slots| Op::DeleteGroups { group_slots }),
    ]
}

/// One log entry: its commands, and whether it also commits a segment to every partition.
fn entry() -> impl Strategy<Value = (Vec<Op>, bool)> {
    (prop::collection::vec(op(), 0..5), prop::bool::weighted(0.3))
}

fn topic_id(slot: u8) -> TopicId {
    TopicId([slot + 1; 16])
}

fn topic_name(slot: u8) -> String {
    format!("topic-{slot}")
}

fn group_id(slot: u8) -> String {
    if slot == GROUP_SLOTS {
        String::new()
    } else {
        format!("group-{slot}")
    }
}

fn metadata(slot: u8) -> String {
    match slot {
        0 => String::new(),
        other => format!("metadata {other} ✓"),
    }
}

fn command(op: &Op, entry_index: usize) -> Command {
    match op {
        Op::CreateTopic {
            name_slot,
            id_slot,
            partition_count,
        } => Command::CreateTopic {
            name: topic_name(*name_slot),
            topic_id: topic_id(*id_slot),
            partition_count: *partition_count,
            configs: BTreeMap::new(),
        },
        Op::DeleteTopic { id_slot } => Command::DeleteTopic {
            topic_id: topic_id(*id_slot),
        },
        Op::CreatePartitions {
            id_slot,
            partition_count,
        } => Command::CreatePartitions {
            topic_id: topic_id(*id_slot),
            partition_count: *partition_count,
        },
        Op::CommitOffsets {
            group_slot,
            offsets,
        } => Command::CommitOffsets {
            group: group_id(*group_slot),
            offsets: offsets
                .iter()
                .map(
                    |(name_slot, partition, offset, metadata_slot)| OffsetCommit {
                        topic: topic_name(*name_slot),
                        partition: *partition,
                        offset: *offset,
                        leader_epoch: (*offset % 5) as i32 - 1,
                        metadata: metadata_slot.map(metadata),
                        commit_timestamp_ms: 1_700_000_000_000 + entry_index as i64,
                    },
                )
                .collect(),
        },
        Op::DeleteOffsets {
            group_slot,
            partitions,
        } => Command::DeleteOffsets {
            group: group_id(*group_slot),
            partitions: partitions
                .iter()
                .map(|(name_slot, partition)| (topic_name(*name_slot), *partition))
                .collect(),
        },
        Op::DeleteGroups { group_slots } => Command::DeleteGroups {
            groups: group_slots.iter().copied().map(group_id).collect(),
        },
    }
}

/// The apply rules, plainly.
#[derive(Debug, Default)]
struct Model {
    /// id slot -> (name, partition count)
    topics: BTreeMap<u8, (String, u32)>,
    /// (group, topic, partition) -> offset
    offsets: BTreeMap<(String, String, u32), CommittedOffset>,
}

impl Model {
    fn partition_count(&self, name: &str) -> Option<u32> {
        self.topics
            .values()
            .find(|(taken, _)| taken == name)
            .map(|(_, count)| *count)
    }

    /// Applies one command; returns what the state's event must say: `Ok(skipped positions)` for
    /// CommitOffsets, `Ok(vec![])` for anything else applied, `Err(())` for a rejection.
    fn apply(&mut self, command: &Command) -> Result<Vec<usize>, ()> {
        match command {
            Command::CreateTopic {
                name,
                partition_count,
                ..
            } => {
                let slot = self.slot_of(command);
                if *partition_count == 0
                    || self.partition_count(name).is_some()
                    || self.topics.contains_key(&slot)
                {
                    return Err(());
                }
                self.topics.insert(slot, (name.clone(), *partition_count));
                Ok(vec![])
            }
            Command::DeleteTopic { .. } => {
                let (name, _) = self.topics.remove(&self.slot_of(command)).ok_or(())?;
                self.offsets.retain(|(_, topic, _), _| *topic != name);
                Ok(vec![])
            }
            Command::CreatePartitions {
                partition_count, ..
            } => {
                let slot = self.slot_of(command);
                let (_, current) = self.topics.get_mut(&slot).ok_or(())?;
                if *partition_count <= *current {
                    return Err(());
                }
                *current = *partition_count;
                Ok(vec![])
            }
            Command::CommitOffsets { group, offsets } => {
                if group.is_empty() {
                    return Err(());
                }
                let mut skipped = Vec::new();
                for (position, commit) in offsets.iter().enumerate() {
                    let exists = self
                        .partition_count(&commit.topic)
                        .is_some_and(|count| commit.partition < count);
                    if commit.offset < -1 || !exists {
                        skipped.push(position);
                        continue;
                    }
                    self.offsets.insert(
                        (group.clone(), commit.topic.clone(), commit.partition),
                        CommittedOffset {
                            offset: commit.offset,
                            leader_epoch: commit.leader_epoch,
                            metadata: commit.metadata.clone(),
                            commit_timestamp_ms: commit.commit_timestamp_ms,
                        },
                    );
                }
                Ok(skipped)
            }
            Command::DeleteOffsets { group, partitions } => {
                for (topic, partition) in partitions {
                    self.offsets
                        .remove(&(group.clone(), topic.clone(), *partition));
                }
                Ok(vec![])
            }
            Command::DeleteGroups { groups } => {
                self.offsets
                    .retain(|(group, _, _), _| !groups.contains(group));
                Ok(vec![])
            }
            other => panic!("not generated: {other:?}"),
        }
    }

    fn slot_of(&self, command: &Command) -> u8 {
        let topic_id = match command {
            Command::CreateTopic { topic_id, .. }
            | Command::DeleteTopic { topic_id }
            | Command::CreatePartitions { topic_id, .. } => *topic_id,
            other => panic!("no topic id in {other:?}"),
        };
        topic_id.0[0] - 1
    }
}

/// One entry as the log hands it to the state: chain fields, commands, commit.
struct LogEntry {
    meta: EntryMeta,
    commands: Vec<Command>,
    commit: Option<ObjectCommit>,
}

fn apply(state: &mut MetadataState, entry: &LogEntry) -> Vec<Event> {
    match state.apply_entry(&entry.meta, &entry.commands, entry.commit.as_ref()) {
        EntryOutcome::Applied(events) => events,
        EntryOutcome::Ignored { reason } => panic!("valid entry ignored: {reason}"),
    }
}

fn check(state: &MetadataState, model: &Model) -> Result<(), TestCaseError> {
    let mut from_state = Vec::new();
    for group in state.offset_groups() {
        let before = from_state.len();
        for ((topic, partition), committed) in state.committed_offsets(group) {
            prop_assert_eq!(
                state.committed_offset(group, topic, partition),
                Some(committed)
            );
            from_state.push((
                (group.to_owned(), topic.to_owned(), partition),
                committed.clone(),
            ));
        }
        prop_assert!(
            from_state.len() > before,
            "group {} listed without offsets",
            group
        );
    }
    let from_model: Vec<_> = model
        .offsets
        .iter()
        .map(|(key, committed)| (key.clone(), committed.clone()))
        .collect();
    // Both sorted by (group, topic, partition): the state's listings are ordered.
    prop_assert_eq!(&from_state, &from_model);
    prop_assert_eq!(state.committed_offset_count(), model.offsets.len());
    for ((group, topic, partition), committed) in &model.offsets {
        prop_assert_eq!(
            state.committed_offset(group, topic, *partition),
            Some(committed)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn offsets_follow_the_model_and_survive_checkpoint_and_replay(
        entries in prop::collection::vec(entry(), 1..30),
        cut in any::<prop::sample::Index>(),
    ) {
        // The log as recovery would read it: a claim, then the generated data entries.
        let mut log = vec![LogEntry {
            meta: EntryMeta { seq: LogSeq(0), writer_epoch: 1, prev_seq: None, kind: EntryKind::Claim },
            commands: vec![],
            commit: None,
        }];
        for (entry_index, (ops, with_data)) in entries.iter().enumerate() {
            let seq = LogSeq(entry_index as u64 + 1);
            let commands: Vec<Command> =
                ops.iter().map(|op| command(op, entry_index)).collect();
            // Through the commands-section codec, as the log stores them.
            let commands = decode_commands(&encode_commands(&commands).unwrap()).unwrap();
            let segments: Vec<SegmentCommit> = if *with_data {
                (0..TOPIC_SLOTS)
                    .flat_map(|slot| (0..PARTITIONS_MAX as i32).map(move |p| (slot, p)))
                    .enumerate()
                    .map(|(index, (slot, partition))| SegmentCommit {
                        tp: TopicPartition::new(topic_id(slot), partition),
                        byte_start: index as u64 * 10,
                        byte_len: 10,
                        batch_count: 1,
                        offset_count: 2,
                        record_count: 2,
                        max_timestamp: entry_index as i64,
                        batches: vec![],
                    })
                    .collect()
            } else {
                vec![]
            };
            log.push(LogEntry {
                meta: EntryMeta {
                    seq,
                    writer_epoch: 1,
                    prev_seq: Some(LogSeq(entry_index as u64)),
                    kind: EntryKind::Data,
                },
                commands,
                commit: with_data.then_some(ObjectCommit { seq, object_len: 1 << 20, segments }),
            });
        }

        let mut state = MetadataState::new();
        let mut model = Model::default();
        let cut = cut.index(log.len() + 1);
        let mut checkpoint = None;
        for (position, entry) in log.iter().enumerate() {
            if position == cut {
                checkpoint = Some(state.encode_checkpoint());
            }
            let events = apply(&mut state, entry);
            let command_events: Vec<&Event> = events
                .iter()
                .filter(|event| !matches!(event,
                    Event::Claimed { .. } | Event::SegmentAppended { .. } | Event::SegmentRejected { .. }))
                .collect();
            prop_assert_eq!(command_events.len(), entry.commands.len());
            for (command, event) in entry.commands.iter().zip(command_events) {
                match (model.apply(command), event) {
                    (Err(()), Event::CommandRejected { .. }) => {}
                    (Ok(expected), Event::OffsetsCommitted { skipped, .. }) => {
                        let got: Vec<usize> = skipped.iter().map(|(position, _)| *position).collect();
                        prop_assert_eq!(got, expected, "{:?}", command);
                    }
                    (Ok(_), Event::CommandRejected { error, .. }) => {
                        prop_assert!(false, "{:?} rejected: {}", command, error);
                    }
                    (Err(()), event) => prop_assert!(false, "{:?} applied: {:?}", command, event),
                    (Ok(_), _) => {}
                }
            }
            check(&state, &model)?;
        }
        let full_bytes = state.encode_checkpoint();
        prop_assert_eq!(&MetadataState::decode_checkpoint(&full_bytes).unwrap(), &state);

        // Recovery: the checkpoint taken after `cut` entries, then the tail.
        let checkpoint = checkpoint.unwrap_or_else(|| full_bytes.clone());
        let mut recovered = MetadataState::decode_checkpoint(&checkpoint).unwrap();
        for entry in log.iter().skip(cut) {
            apply(&mut recovered, entry);
        }
        check(&recovered, &model)?;
        prop_assert_eq!(&recovered, &state);
        prop_assert_eq!(recovered.encode_checkpoint(), full_bytes);
    }
}
