//! Idempotent producers in the metadata state machine against a model of what clients did.
//!
//! The model does not re-implement the sequence rules; it remembers what each simulated producer
//! *sent and had accepted*, and the generator says what kind of request each batch is (the next
//! one, a retry of an earlier one, a gap, an old epoch, an epoch bump, a newcomer, a plain batch).
//! From that alone the expected outcome follows: a retry of one of the last 5 accepted batches is a
//! duplicate answered with its original offset; an older retry, or a gap, is out of order; a stale
//! epoch is refused; everything else is appended at the high watermark. After every commit the
//! index must be contiguous from 0 to the high watermark (duplicates and refusals took no offsets),
//! and at random points the state goes through a checkpoint and carries on from the decoded copy.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_engine::metadata::{
    BatchCommit, BatchOutcome, Command, EntryKind, EntryMeta, EntryOutcome, Event, MetadataState,
    ObjectCommit, PRODUCER_BATCHES_RETAINED, SegmentCommit,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

const PRODUCERS: usize = 3;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Next {
        count: u64,
    },
    /// Resend the `back`-th most recent accepted batch of the current epoch (1 = the last one).
    Retry {
        back: usize,
    },
    Gap {
        skip: i32,
    },
    StaleEpoch,
    BumpEpoch {
        count: u64,
    },
    /// A producer id the partition has never seen, at an arbitrary sequence.
    Newcomer {
        sequence: i32,
    },
    Plain {
        count: u64,
    },
}

#[derive(Debug, Clone)]
enum Op {
    /// Segments of one commit; each is a list of `(producer, kind)` batches.
    Commit(Vec<Vec<(usize, Kind)>>),
    Checkpoint,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => (1u64..4).prop_map(|count| Kind::Next { count }),
        4 => (1usize..=PRODUCER_BATCHES_RETAINED + 2).prop_map(|back| Kind::Retry { back }),
        1 => (1i32..3).prop_map(|skip| Kind::Gap { skip }),
        1 => Just(Kind::StaleEpoch),
        1 => (1u64..3).prop_map(|count| Kind::BumpEpoch { count }),
        1 => (0i32..100).prop_map(|sequence| Kind::Newcomer { sequence }),
        1 => (1u64..3).prop_map(|count| Kind::Plain { count }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let segment = prop::collection::vec((0..PRODUCERS, kind()), 1..6);
    prop_oneof![
        8 => prop::collection::vec(segment, 1..3).prop_map(Op::Commit),
        1 => Just(Op::Checkpoint),
    ]
}

/// What one simulated producer sent and had accepted, in its current epoch.
#[derive(Debug, Default, Clone)]
struct Producer {
    epoch: i16,
    next_sequence: i32,
    /// `(base_sequence, offset_count, base_offset)` of every accepted batch of this epoch.
    accepted: Vec<(i32, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Appended,
    Duplicate { base_offset: u64 },
    Rejected { code: i16 },
}

struct Run {
    state: MetadataState,
    tp: TopicPartition,
    next_seq: u64,
    producers: Vec<Producer>,
    producer_ids: Vec<i64>,
    next_newcomer: i64,
    high_watermark: u64,
}

impl Run {
    fn new() -> Run {
        let mut run = Run {
            state: MetadataState::new(),
            tp: TopicPartition::new(TopicId([9; 16]), 0),
            next_seq: 0,
            producers: vec![Producer::default(); PRODUCERS],
            producer_ids: Vec::new(),
            next_newcomer: 1 << 40,
            high_watermark: 0,
        };
        run.entry(EntryKind::Claim, &[], None);
        run.entry(
            EntryKind::Data,
            &[Command::CreateTopic {
                name: "t".into(),
                topic_id: run.tp.topic_id,
                partition_count: 1,
                configs: BTreeMap::new(),
            }],
            None,
        );
        let commands = vec![
            Command::InitProducerId {
                transactional_id: None
            };
            PRODUCERS
        ];
        for event in run.entry(EntryKind::Data, &commands, None) {
            match event {
                Event::ProducerIdAllocated { producer_id, .. } => {
                    run.producer_ids.push(producer_id)
                }
                other => panic!("{other:?}"),
            }
        }
        run
    }

    fn entry(
        &mut self,
        kind: EntryKind,
        commands: &[Command],
        segments: Option<Vec<SegmentCommit>>,
    ) -> Vec<Event> {
        let seq = LogSeq(self.next_seq);
        self.next_seq += 1;
        let meta = EntryMeta {
            seq,
            writer_epoch: 1,
            prev_seq: self.state.last_valid_seq(),
            kind,
        };
        let commit = segments.map(|segments| ObjectCommit {
            seq,
            object_len: 1 << 30,
            segments,
        });
        match self.state.apply_entry(&meta, commands, commit.as_ref()) {
            EntryOutcome::Applied(events) => events,
            EntryOutcome::Ignored { reason } => panic!("ignored: {reason}"),
        }
    }

    /// The batch a producer sends for `kind`, with the outcome the model expects. Updates the
    /// model as if the batch was processed (batches are processed in order).
    fn batch(&mut self, producer: usize, kind: Kind) -> (BatchCommit, Expected) {
        let producer_id = self.producer_ids[producer];
        let model = &mut self.producers[producer];
        let batch = |producer_id, producer_epoch, base_sequence, offset_count| BatchCommit {
            byte_start: 0,
            byte_len: 10,
            offset_count,
            max_timestamp: 1,
            producer_id,
            producer_epoch,
            base_sequence,
        };
        let hw = self.high_watermark;
        match kind {
            Kind::Next { count } => {
                model.accepted.push((model.next_sequence, count, hw));
                let sent = batch(producer_id, model.epoch, model.next_sequence, count);
                model.next_sequence += count as i32;
                self.high_watermark += count;
                (sent, Expected::Appended)
            }
            Kind::Retry { back } => match model.accepted.len().checked_sub(back) {
                Some(at) => {
                    let (base_sequence, count, base_offset) = model.accepted[at];
                    let sent = batch(producer_id, model.epoch, base_sequence, count);
                    if back <= PRODUCER_BATCHES_RETAINED {
                        (sent, Expected::Duplicate { base_offset })
                    } else {
                        let code = OUT_OF_ORDER_SEQUENCE_NUMBER;
                        (sent, Expected::Rejected { code })
                    }
                }
                // Nothing to retry yet: send the next one instead.
                None => self.batch(producer, Kind::Next { count: 1 }),
            },
            Kind::Gap { skip } if !model.accepted.is_empty() => {
                let sent = batch(producer_id, model.epoch, model.next_sequence + skip, 1);
                let code = OUT_OF_ORDER_SEQUENCE_NUMBER;
                (sent, Expected::Rejected { code })
            }
            Kind::StaleEpoch if model.epoch > 0 => {
                let sent = batch(producer_id, model.epoch - 1, model.next_sequence, 1);
                let code = INVALID_PRODUCER_EPOCH;
                (sent, Expected::Rejected { code })
            }
            Kind::BumpEpoch { count } => {
                model.epoch += 1;
                model.next_sequence = 0;
                model.accepted.clear();
                self.batch(producer, Kind::Next { count })
            }
            Kind::Newcomer { sequence } => {
                let newcomer = self.next_newcomer;
                self.next_newcomer += 1;
                self.high_watermark += 1;
                (batch(newcomer, 0, sequence, 1), Expected::Appended)
            }
            Kind::Plain { count } => {
                self.high_watermark += count;
                (batch(-1, -1, -1, count), Expected::Appended)
            }
            // A gap or a stale epoch before the producer has any state: send the next one.
            Kind::Gap { .. } | Kind::StaleEpoch => self.batch(producer, Kind::Next { count: 1 }),
        }
    }

    fn commit(&mut self, segments: &[Vec<(usize, Kind)>]) -> Result<(), TestCaseError> {
        let mut commits = Vec::new();
        let mut expectations = Vec::new();
        let mut position = 0u64;
        for segment in segments {
            let hw_before = self.high_watermark;
            let mut batches = Vec::new();
            let mut expected = Vec::new();
            for &(producer, kind) in segment {
                let (mut batch, outcome) = self.batch(producer, kind);
                batch.byte_start = position;
                position += batch.byte_len;
                batches.push(batch);
                expected.push(outcome);
            }
            let offset_count = batches.iter().map(|batch| batch.offset_count).sum();
            commits.push(SegmentCommit {
                tp: self.tp,
                byte_start: batches[0].byte_start,
                byte_len: batches.iter().map(|batch| batch.byte_len).sum(),
                batch_count: batches.len() as u32,
                offset_count,
                record_count: offset_count,
                max_timestamp: 1,
                batches,
            });
            expectations.push((hw_before, expected));
        }
        let events = self.entry(EntryKind::Data, &[], Some(commits));
        prop_assert_eq!(events.len(), expectations.len());
        for (event, (hw_before, expected)) in events.iter().zip(&expectations) {
            check_segment(event, *hw_before, expected)?;
        }
        self.check_index()
    }

    /// Contiguous from 0 to the model's high watermark: duplicates and refusals took no offsets.
    fn check_index(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.state.high_watermark(self.tp), Ok(self.high_watermark));
        let partition = self.state.partition(self.tp).unwrap();
        let mut next = 0;
        for entry in partition.index().iter() {
            prop_assert_eq!(entry.base_offset, next);
            prop_assert!(entry.end_offset > entry.base_offset);
            next = entry.end_offset;
        }
        prop_assert_eq!(next, self.high_watermark);
        Ok(())
    }
}

fn check_segment(
    event: &Event,
    hw_before: u64,
    expected: &[Expected],
) -> Result<(), TestCaseError> {
    match event {
        Event::SegmentAppended {
            base_offset,
            end_offset,
            ..
        } => {
            prop_assert!(
                expected
                    .iter()
                    .all(|outcome| *outcome == Expected::Appended),
                "{:?}",
                expected
            );
            prop_assert_eq!(*base_offset, hw_before);
            prop_assert!(end_offset > base_offset);
        }
        Event::SegmentBatches { batches, .. } => {
            prop_assert_eq!(batches.len(), expected.len());
            prop_assert!(
                expected
                    .iter()
                    .any(|outcome| *outcome != Expected::Appended)
            );
            let mut next = hw_before;
            for (got, want) in batches.iter().zip(expected) {
                match (got, want) {
                    (
                        BatchOutcome::Appended {
                            base_offset,
                            end_offset,
                        },
                        Expected::Appended,
                    ) => {
                        prop_assert_eq!(*base_offset, next);
                        next = *end_offset;
                    }
                    (
                        BatchOutcome::Duplicate { base_offset },
                        Expected::Duplicate {
                            base_offset: original,
                        },
                    ) => {
                        prop_assert_eq!(base_offset, original);
                    }
                    (BatchOutcome::Rejected { error }, Expected::Rejected { code }) => {
                        prop_assert_eq!(error.kafka_error_code(), *code, "{}", error);
                    }
                    (got, want) => prop_assert!(false, "got {:?}, expected {:?}", got, want),
                }
            }
        }
        other => prop_assert!(false, "unexpected event {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn producers_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut run = Run::new();
        for op in &ops {
            match op {
                Op::Commit(segments) => run.commit(segments)?,
                Op::Checkpoint => {
                    let bytes = run.state.encode_checkpoint();
                    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
                    prop_assert_eq!(&decoded, &run.state);
                    prop_assert_eq!(decoded.encode_checkpoint(), bytes);
                    run.state = decoded;
                }
            }
        }
    }
}
