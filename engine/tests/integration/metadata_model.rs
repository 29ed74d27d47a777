//! The metadata state machine against a simple model, under random operation sequences.
//!
//! The model keeps, per partition, the committed segments in order `(seq, segment_index,
//! offset_count)` plus the log start offset, and derives everything else (offsets, high watermark,
//! the index) from that list. Every step checks the real state against it: offsets start at 0 and
//! are contiguous, every committed offset is found again by `find_from` in the segment that holds
//! it, no offset belongs to two entries, hw is the sum of offset counts, and lookups by timestamp
//! agree with a scan. ACL bindings are kept beside the topics, as a set the model filters with
//! Kafka's matching rules. The final state must survive a checkpoint round trip unchanged.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_engine::metadata::acl::PatternFilter;
use sluice_engine::metadata::{
    AclBinding, AclBindingFilter, AclEntry, AclOperation, AclPatternType, AclPermission,
    AclResource, AclResourceType, Command, EntryKind, EntryMeta, EntryOutcome, Event, IndexEntry,
    MetadataError, MetadataState, ObjectCommit, SegmentCommit,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

const TOPIC_SLOTS: u8 = 4;
const PARTITIONS_MAX: u32 = 5;

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
    /// `(id_slot, partition, offset_count, max_timestamp)`; some name unknown partitions, some
    /// have zero offsets: both must be rejected alone.
    Commit {
        segments: Vec<(u8, i32, u64, i64)>,
    },
    /// Deletes records before `log start + advance` (past the hw is rejected).
    DeleteRecords {
        id_slot: u8,
        partition: i32,
        advance: u64,
    },
    CreateAcl {
        binding: AclBinding,
    },
    /// Deletes the bindings of one principal (or all), of one pattern type (or any).
    DeleteAcls {
        principal: Option<&'static str>,
        pattern_type: Option<AclPatternType>,
    },
}

fn acl_binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![AclResourceType::Topic, AclResourceType::Group]),
        prop::sample::select(vec![AclPatternType::Literal, AclPatternType::Prefixed]),
        prop::sample::select(vec!["topic-0", "topic", "*", ""]),
        prop::sample::select(vec!["User:alice", "User:*", "bob"]),
        prop::sample::select(vec![AclOperation::Read, AclOperation::All]),
        prop::sample::select(vec![AclPermission::Allow, AclPermission::Deny]),
    )
        .prop_map(
            |(resource_type, pattern_type, name, principal, operation, permission)| AclBinding {
                resource: AclResource {
                    resource_type,
                    pattern_type,
                    name: name.to_owned(),
                },
                entry: AclEntry {
                    principal: principal.to_owned(),
                    host: "*".to_owned(),
                    operation,
                    permission,
                },
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..TOPIC_SLOTS;
    prop_oneof![
        2 => (slot.clone(), slot.clone(), 0..=PARTITIONS_MAX)
            .prop_map(|(name_slot, id_slot, partition_count)| Op::CreateTopic { name_slot, id_slot, partition_count }),
        1 => slot.clone().prop_map(|id_slot| Op::DeleteTopic { id_slot }),
        1 => (slot.clone(), 0..=PARTITIONS_MAX + 2)
            .prop_map(|(id_slot, partition_count)| Op::CreatePartitions { id_slot, partition_count }),
        6 => prop::collection::vec((slot.clone(), -1..(PARTITIONS_MAX as i32 + 1), 0u64..5, -50i64..50), 0..12)
            .prop_map(|segments| Op::Commit { segments }),
        1 => (slot, 0..(PARTITIONS_MAX as i32), 0u64..12)
            .prop_map(|(id_slot, partition, advance)| Op::DeleteRecords { id_slot, partition, advance }),
        2 => acl_binding().prop_map(|binding| Op::CreateAcl { binding }),
        1 => (
            prop::option::of(prop::sample::select(vec!["User:alice", "User:*"])),
            prop::option::of(prop::sample::select(vec![AclPatternType::Literal, AclPatternType::Prefixed])),
        )
            .prop_map(|(principal, pattern_type)| Op::DeleteAcls { principal, pattern_type }),
    ]
}

fn topic_id(slot: u8) -> TopicId {
    TopicId([slot + 1; 16])
}

/// One committed segment as the model remembers it.
#[derive(Debug, Clone, Copy)]
struct ModelSegment {
    seq: LogSeq,
    segment_index: usize,
    offset_count: u64,
    max_timestamp: i64,
}

#[derive(Debug, Default, Clone)]
struct ModelPartition {
    segments: Vec<ModelSegment>,
    log_start_offset: u64,
}

impl ModelPartition {
    fn high_watermark(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| segment.offset_count)
            .sum()
    }

    /// `(base, end, segment)` of every segment, offsets derived from the order alone.
    fn ranges(&self) -> Vec<(u64, u64, ModelSegment)> {
        let mut base = 0;
        self.segments
            .iter()
            .map(|segment| {
                let range = (base, base + segment.offset_count, *segment);
                base += segment.offset_count;
                range
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Model {
    /// id slot -> (name, partitions)
    topics: BTreeMap<u8, (String, Vec<ModelPartition>)>,
    acls: std::collections::BTreeSet<AclBinding>,
}

/// Byte position the test gives segment `segment_index`, so the index entry can be traced back.
fn byte_start_of(segment_index: usize) -> u64 {
    segment_index as u64 * 100
}

struct Run {
    state: MetadataState,
    model: Model,
    next_seq: u64,
}

impl Run {
    fn new() -> Run {
        let mut state = MetadataState::new();
        let claim = EntryMeta {
            seq: LogSeq(0),
            writer_epoch: 1,
            prev_seq: None,
            kind: EntryKind::Claim,
        };
        assert!(matches!(
            state.apply_entry(&claim, &[], None),
            EntryOutcome::Applied(_)
        ));
        Run {
            state,
            model: Model::default(),
            next_seq: 1,
        }
    }

    fn apply(
        &mut self,
        commands: &[Command],
        segments: Option<Vec<SegmentCommit>>,
    ) -> (LogSeq, Vec<Event>) {
        let seq = LogSeq(self.next_seq);
        self.next_seq += 1;
        let meta = EntryMeta {
            seq,
            writer_epoch: 1,
            prev_seq: self.state.last_valid_seq(),
            kind: EntryKind::Data,
        };
        let commit = segments.map(|segments| ObjectCommit {
            seq,
            object_len: 1 << 20,
            segments,
        });
        match self.state.apply_entry(&meta, commands, commit.as_ref()) {
            EntryOutcome::Applied(events) => (seq, events),
            EntryOutcome::Ignored { reason } => panic!("valid entry ignored: {reason}"),
        }
    }

    fn command(&mut self, command: Command) -> Event {
        let (_, mut events) = self.apply(&[command], None);
        assert_eq!(events.len(), 1);
        events.pop().unwrap()
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::CreateAcl { binding } => {
                let event = self.command(Command::CreateAcl {
                    binding: Box::new(binding.clone()),
                });
                // Kafka refuses an empty name and a principal without a type.
                let valid =
                    !binding.resource.name.is_empty() && binding.entry.principal.contains(':');
                if valid {
                    let created = self.model.acls.insert(binding.clone());
                    prop_assert_eq!(event, Event::AclCreated { index: 0, created });
                } else {
                    prop_assert_eq!(event_code(&event), Some(42), "{:?}", event);
                }
                return self.check();
            }
            Op::DeleteAcls {
                principal,
                pattern_type,
            } => {
                let mut filter = AclBindingFilter::any();
                filter.principal = principal.map(str::to_owned);
                filter.pattern = pattern_type.map_or(PatternFilter::Any, PatternFilter::Is);
                let event = self.command(Command::DeleteAcls {
                    filter: Box::new(filter),
                });
                let (deleted, kept): (Vec<AclBinding>, Vec<AclBinding>) =
                    self.model.acls.iter().cloned().partition(|binding| {
                        principal.is_none_or(|principal| binding.entry.principal == principal)
                            && pattern_type
                                .is_none_or(|pattern| binding.resource.pattern_type == pattern)
                    });
                self.model.acls = kept.into_iter().collect();
                prop_assert_eq!(event, Event::AclsDeleted { index: 0, deleted });
                return self.check();
            }
            _ => {}
        }
        match *op {
            Op::CreateTopic {
                name_slot,
                id_slot,
                partition_count,
            } => {
                let name = format!("topic-{name_slot}");
                let command = Command::CreateTopic {
                    name: name.clone(),
                    topic_id: topic_id(id_slot),
                    partition_count,
                    configs: BTreeMap::new(),
                };
                let event = self.command(command);
                let name_taken = self.model.topics.values().any(|(taken, _)| *taken == name);
                let expect_ok =
                    partition_count > 0 && !name_taken && !self.model.topics.contains_key(&id_slot);
                prop_assert_eq!(
                    matches!(event, Event::TopicCreated { .. }),
                    expect_ok,
                    "{:?}",
                    event
                );
                if expect_ok {
                    let partitions = vec![ModelPartition::default(); partition_count as usize];
                    self.model.topics.insert(id_slot, (name, partitions));
                }
            }
            Op::DeleteTopic { id_slot } => {
                let event = self.command(Command::DeleteTopic {
                    topic_id: topic_id(id_slot),
                });
                let expect_ok = self.model.topics.remove(&id_slot).is_some();
                prop_assert_eq!(
                    matches!(event, Event::TopicDeleted { .. }),
                    expect_ok,
                    "{:?}",
                    event
                );
            }
            Op::CreatePartitions {
                id_slot,
                partition_count,
            } => {
                let event = self.command(Command::CreatePartitions {
                    topic_id: topic_id(id_slot),
                    partition_count,
                });
                let current = self
                    .model
                    .topics
                    .get(&id_slot)
                    .map(|(_, partitions)| partitions.len() as u32);
                let expect_ok = current.is_some_and(|current| partition_count > current);
                prop_assert_eq!(
                    matches!(event, Event::PartitionsCreated { .. }),
                    expect_ok,
                    "{:?}",
                    event
                );
                if let (true, Some((_, partitions))) =
                    (expect_ok, self.model.topics.get_mut(&id_slot))
                {
                    partitions.resize(partition_count as usize, ModelPartition::default());
                }
            }
            Op::Commit { ref segments } => {
                let commits: Vec<SegmentCommit> = segments
                    .iter()
                    .enumerate()
                    .map(
                        |(segment_index, &(id_slot, partition, offset_count, max_timestamp))| {
                            SegmentCommit {
                                tp: TopicPartition::new(topic_id(id_slot), partition),
                                byte_start: byte_start_of(segment_index),
                                byte_len: 10,
                                batch_count: 1,
                                offset_count,
                                record_count: offset_count,
                                max_timestamp,
                                batches: Vec::new(),
                            }
                        },
                    )
                    .collect();
                let (seq, events) = self.apply(&[], Some(commits));
                prop_assert_eq!(events.len(), segments.len());
                for (segment_index, (&(id_slot, partition, offset_count, max_timestamp), event)) in
                    segments.iter().zip(&events).enumerate()
                {
                    let model_partition =
                        self.model
                            .topics
                            .get_mut(&id_slot)
                            .and_then(|(_, partitions)| {
                                usize::try_from(partition)
                                    .ok()
                                    .and_then(|at| partitions.get_mut(at))
                            });
                    match (model_partition, event) {
                        (
                            Some(model_partition),
                            Event::SegmentAppended {
                                base_offset,
                                end_offset,
                                ..
                            },
                        ) if offset_count > 0 => {
                            let hw = model_partition.high_watermark();
                            prop_assert_eq!((*base_offset, *end_offset), (hw, hw + offset_count));
                            model_partition.segments.push(ModelSegment {
                                seq,
                                segment_index,
                                offset_count,
                                max_timestamp,
                            });
                        }
                        // Checked before the partition is looked up, so it wins for unknown ones too.
                        (
                            _,
                            Event::SegmentRejected {
                                error: MetadataError::InvalidSegment { .. },
                                ..
                            },
                        ) if offset_count == 0 => {}
                        (None, Event::SegmentRejected { error, .. }) => {
                            let code = error.kafka_error_code();
                            prop_assert!(code == 3 || code == 100, "{:?}", error);
                        }
                        (model_partition, event) => {
                            prop_assert!(
                                false,
                                "segment {} ({:?}): model {:?}, got {:?}",
                                segment_index,
                                segments[segment_index],
                                model_partition.is_some(),
                                event
                            );
                        }
                    }
                }
            }
            Op::DeleteRecords {
                id_slot,
                partition,
                advance,
            } => {
                let tp = TopicPartition::new(topic_id(id_slot), partition);
                let known = self
                    .model
                    .topics
                    .get(&id_slot)
                    .and_then(|(_, partitions)| partitions.get(partition as usize))
                    .map(|model| (model.log_start_offset, model.high_watermark()));
                let before_offset =
                    known.map_or(advance, |(log_start_offset, _)| log_start_offset + advance);
                let event = self.command(Command::DeleteRecords { tp, before_offset });
                match known {
                    Some((log_start_offset, hw)) if before_offset <= hw => {
                        let log_start_offset = log_start_offset.max(before_offset);
                        prop_assert_eq!(
                            event,
                            Event::RecordsDeleted {
                                index: 0,
                                tp,
                                log_start_offset
                            }
                        );
                        let (_, partitions) = self.model.topics.get_mut(&id_slot).unwrap();
                        partitions[partition as usize].log_start_offset = log_start_offset;
                    }
                    Some(_) => prop_assert_eq!(event_code(&event), Some(1), "{:?}", event),
                    None => {
                        prop_assert!(matches!(event_code(&event), Some(3 | 100)), "{:?}", event)
                    }
                }
            }
            Op::CreateAcl { .. } | Op::DeleteAcls { .. } => {}
        }
        self.check()
    }

    /// The whole state against the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let state = &self.state;
        let stored = state.acls().matching(&AclBindingFilter::any());
        prop_assert_eq!(stored, self.model.acls.iter().cloned().collect::<Vec<_>>());
        prop_assert_eq!(state.topic_count(), self.model.topics.len());
        for slot in 0..TOPIC_SLOTS {
            let Some((name, partitions)) = self.model.topics.get(&slot) else {
                prop_assert!(state.topic(topic_id(slot)).is_none());
                continue;
            };
            prop_assert_eq!(state.topic_id_by_name(name), Some(topic_id(slot)));
            prop_assert_eq!(
                state.partition_count(topic_id(slot)),
                Some(partitions.len() as u32)
            );
            for (partition, model) in partitions.iter().enumerate() {
                let tp = TopicPartition::new(topic_id(slot), partition as i32);
                check_partition(state, tp, model)?;
            }
        }
        Ok(())
    }
}

fn event_code(event: &Event) -> Option<i16> {
    match event {
        Event::CommandRejected { error, .. } => Some(error.kafka_error_code()),
        _ => None,
    }
}

fn check_partition(
    state: &MetadataState,
    tp: TopicPartition,
    model: &ModelPartition,
) -> Result<(), TestCaseError> {
    let hw = model.high_watermark();
    prop_assert_eq!(state.high_watermark(tp), Ok(hw));
    prop_assert_eq!(state.log_start_offset(tp), Ok(model.log_start_offset));
    let index: Vec<IndexEntry> = state
        .partition(tp)
        .unwrap()
        .index()
        .iter()
        .copied()
        .collect();
    // Contiguous, non-empty entries ending at the hw: no offset in two entries, none missing.
    for pair in index.windows(2) {
        prop_assert_eq!(pair[0].end_offset, pair[1].base_offset);
    }
    prop_assert!(
        index
            .iter()
            .all(|entry| entry.base_offset < entry.end_offset)
    );
    prop_assert_eq!(
        index
            .last()
            .map_or(model.log_start_offset, |entry| entry.end_offset),
        hw
    );
    // Exactly the segments not wholly below the log start, in commit order.
    let surviving: Vec<(u64, u64, ModelSegment)> = model
        .ranges()
        .into_iter()
        .filter(|(_, end, _)| *end > model.log_start_offset)
        .collect();
    prop_assert_eq!(index.len(), surviving.len());
    for (entry, (base, end, segment)) in index.iter().zip(&surviving) {
        prop_assert_eq!((entry.base_offset, entry.end_offset), (*base, *end));
        prop_assert_eq!(
            (entry.seq, entry.byte_start),
            (segment.seq, byte_start_of(segment.segment_index))
        );
        prop_assert_eq!(entry.max_timestamp, segment.max_timestamp);
        // Every offset of the segment (that is still readable) is found in this very entry.
        for offset in (*base).max(model.log_start_offset)..*end {
            let found = state.find_from(tp, offset, 1).unwrap();
            prop_assert_eq!(found, std::slice::from_ref(entry), "offset {}", offset);
        }
    }
    prop_assert_eq!(state.find_from(tp, hw, 5).unwrap().len(), 0);
    prop_assert_eq!(
        state
            .find_from(tp, hw + 1, 5)
            .unwrap_err()
            .kafka_error_code(),
        1
    );
    if model.log_start_offset > 0 {
        prop_assert!(state.find_from(tp, model.log_start_offset - 1, 5).is_err());
    }
    for timestamp in [-51, -10, 0, 10, 49, 50] {
        let scanned = index.iter().find(|entry| entry.max_timestamp >= timestamp);
        prop_assert_eq!(state.offset_for_timestamp(tp, timestamp).unwrap(), scanned);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op)?;
        }
        let bytes = run.state.encode_checkpoint();
        let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
        prop_assert_eq!(&decoded, &run.state);
        prop_assert_eq!(decoded.encode_checkpoint(), bytes);
    }
}
