//! Idempotent producers on the metadata core: handing out producer ids, and answering produces
//! whose segment the state machine settled batch by batch.
//!
//! A producer id is chosen by the state machine when the InitProducerId command is applied (a
//! counter in the state, in the checkpoint), not here: whichever agent writes the entry, and
//! however often the log is replayed, an id is handed out once. The cost is one log entry (one
//! PUT) per InitProducerId, which producers send once at start-up.
//!
//! Sequence checks also happen in the state machine, at commit time (`docs/metadata.md`). When a
//! segment holds a duplicate or a refused batch, the commit reports every batch's outcome
//! ([`Event::SegmentBatches`]); a produce's batches are the slot's `batch_count` batches from
//! `batches_before` in its segment, in push order, so it is answered from those alone.

use futures::channel::oneshot;
use sluice_engine::log::AppendOutcome;
use sluice_engine::metadata::{BatchOutcome, Event};

use super::window::{CommandFailure, Slot, error_code, segment_error_code};

/// A waiting InitProducerId: command `index` of the window's commands.
#[derive(Debug)]
pub struct ProducerIdWaiter {
    pub index: usize,
    pub reply: oneshot::Sender<Result<(i64, i16), CommandFailure>>,
}

/// The answer to one produce whose segment was settled batch by batch: the base offset of its
/// first batch (where it was written first, for a duplicate, as the Java broker answers), or the
/// first refused batch's code.
pub fn slot_answer(batches: &[BatchOutcome], slot: &Slot) -> Result<u64, i16> {
    let end = slot.batches_before.saturating_add(slot.batch_count);
    let Some(mine) = batches.get(slot.batches_before..end) else {
        // The commit and the window disagree on the segment: never claim an offset we cannot show.
        return Err(error_code::KAFKA_STORAGE_ERROR);
    };
    if let Some(error) = mine.iter().find_map(|outcome| match outcome {
        BatchOutcome::Rejected { error } => Some(error),
        _ => None,
    }) {
        return Err(segment_error_code(error));
    }
    match mine.first() {
        Some(
            BatchOutcome::Appended { base_offset, .. } | BatchOutcome::Duplicate { base_offset },
        ) => Ok(*base_offset),
        _ => Err(error_code::KAFKA_STORAGE_ERROR),
    }
}

/// Answers each InitProducerId waiter from the append's events (or its failure).
pub fn answer_producer_ids(
    waiters: Vec<ProducerIdWaiter>,
    outcome: &Result<AppendOutcome, (i16, String)>,
) {
    for waiter in waiters {
        let answer = match outcome {
            Err((code, reason)) => Err(CommandFailure::LogFailed {
                code: *code,
                reason: reason.clone(),
            }),
            Ok(appended) => appended
                .events
                .iter()
                .find_map(|event| match event {
                    Event::ProducerIdAllocated {
                        index,
                        producer_id,
                        producer_epoch,
                    } if *index == waiter.index => Some(Ok((*producer_id, *producer_epoch))),
                    Event::CommandRejected { index, error } if *index == waiter.index => {
                        Some(Err(CommandFailure::Rejected(error.clone())))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| {
                    Err(CommandFailure::LogFailed {
                        code: error_code::KAFKA_STORAGE_ERROR,
                        reason: "the commit did not mention the InitProducerId command".to_owned(),
                    })
                }),
        };
        // The requester may have gone away; the id is simply never used.
        let _ = waiter.reply.send(answer);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use sluice_engine::metadata::MetadataError;
    use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

    use super::*;

    fn slot(batches_before: usize, batch_count: usize) -> Slot {
        Slot {
            segment_index: 0,
            offsets_before: 0,
            batches_before,
            batch_count,
        }
    }

    #[test]
    fn each_produce_is_answered_from_its_own_batches() {
        let out_of_order = MetadataError::OutOfOrderSequence {
            tp: TopicPartition::new(TopicId([1; 16]), 0),
            producer_id: 3,
            expected: 1,
            got: 4,
        };
        let batches = vec![
            BatchOutcome::Appended {
                base_offset: 10,
                end_offset: 12,
            },
            BatchOutcome::Duplicate { base_offset: 4 },
            BatchOutcome::Rejected {
                error: out_of_order,
            },
        ];
        assert_eq!(slot_answer(&batches, &slot(0, 1)), Ok(10));
        assert_eq!(slot_answer(&batches, &slot(1, 1)), Ok(4));
        assert_eq!(slot_answer(&batches, &slot(2, 1)), Err(45));
        assert_eq!(slot_answer(&batches, &slot(1, 2)), Err(45));
        assert_eq!(
            slot_answer(&batches, &slot(2, 2)),
            Err(error_code::KAFKA_STORAGE_ERROR)
        );
    }

    #[test]
    fn waiters_get_their_own_id_or_the_failure() {
        let (first, first_answer) = oneshot::channel();
        let (second, second_answer) = oneshot::channel();
        let waiters = vec![
            ProducerIdWaiter {
                index: 0,
                reply: first,
            },
            ProducerIdWaiter {
                index: 1,
                reply: second,
            },
        ];
        let outcome = Ok(AppendOutcome {
            seq: LogSeq(3),
            object_len: 10,
            chunks: Vec::new(),
            events: vec![
                Event::ProducerIdAllocated {
                    index: 1,
                    producer_id: 8,
                    producer_epoch: 0,
                },
                Event::ProducerIdAllocated {
                    index: 0,
                    producer_id: 7,
                    producer_epoch: 0,
                },
            ],
        });
        answer_producer_ids(waiters, &outcome);
        assert_eq!(
            futures::executor::block_on(first_answer).unwrap(),
            Ok((7, 0))
        );
        assert_eq!(
            futures::executor::block_on(second_answer).unwrap(),
            Ok((8, 0))
        );
        let (failed, failed_answer) = oneshot::channel();
        answer_producer_ids(
            vec![ProducerIdWaiter {
                index: 0,
                reply: failed,
            }],
            &Err((7, "timeout".to_owned())),
        );
        assert!(matches!(
            futures::executor::block_on(failed_answer).unwrap(),
            Err(CommandFailure::LogFailed { code: 7, .. })
        ));
    }
}
