//! Produce: validate every partition's record batches here, on the network core, then hand them
//! to the metadata core's open flush window and answer once the window is durable and applied.
//!
//! The CRC-32C pass over each batch (the one per-byte cost of the write path) runs on the core
//! that read the bytes, so it scales with network cores; the metadata core only sees headers
//! (except the batches of LogAppendTime topics, below). `records` is a `Bytes` slice of the request
//! frame (`kafka-protocol` decodes `Bytes` fields by `split_to`, without copying), and
//! [`split_batches`] slices it again: the bytes uploaded are the bytes read from the socket.
//!
//! Error codes follow the Java broker: a batch that fails its CRC or is cut short is
//! CORRUPT_MESSAGE (2), message format v0/v1 is UNSUPPORTED_FOR_MESSAGE_FORMAT (43), a batch
//! above the topic's `max.message.bytes` is MESSAGE_TOO_LARGE (10), a batch that parses but breaks
//! a record-level rule (no records, unknown codec, bad offset delta) is INVALID_RECORD (87), and an
//! unknown topic or partition is UNKNOWN_TOPIC_OR_PARTITION (3). acks=0 gets no response at all.
//!
//! # Topics whose timestamps the broker sets
//!
//! A topic with `message.timestamp.type=LogAppendTime` stores each batch with the broker's append
//! time (`docs/format.md`, "Timestamps the broker sets"). None of it happens here: the metadata
//! core, which holds the topic configs, stamps the batches as they join the window and answers each
//! partition with its `log_append_time_ms` (-1 for CreateTime topics, as Kafka answers), which the
//! response passes on. The cost is a copy and a CRC pass on the metadata core, for batches of
//! LogAppendTime topics only; a produce makes no extra round trip to learn its topics' types. The
//! produce budget counts the request's bytes once: the copy takes the slice's place in the window,
//! though the request frame stays alive until the answer. A producer that sets LogAppendTime
//! itself on such a topic is refused there with INVALID_TIMESTAMP (32).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_engine::batch::{BatchError, BatchHeader, split_batches};

use crate::metadata_core::window::error_code;
use crate::metadata_core::{NO_LOG_APPEND_TIME, PartitionOutcome, ProducePartition};
use crate::protocol::services::CoreServices;

/// Kafka's INVALID_REQUIRED_ACKS.
const INVALID_REQUIRED_ACKS: i16 = kafka_protocol::ResponseError::InvalidRequiredAcks.code();
/// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the closest refusal for a transactional
/// produce, which Sluice does not support yet.
const TRANSACTIONS_UNSUPPORTED: i16 =
    kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code();

/// The code for a batch that failed validation.
pub fn batch_error_code(error: &BatchError) -> i16 {
    match error {
        BatchError::UnsupportedMagic { .. } => error_code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        BatchError::CrcMismatch { .. }
        | BatchError::Truncated { .. }
        | BatchError::InvalidLength { .. }
        | BatchError::Empty => error_code::CORRUPT_MESSAGE,
        BatchError::LogAppendTimeFromProducer => error_code::INVALID_TIMESTAMP,
        _ => error_code::INVALID_RECORD,
    }
}

/// Splits and checks one partition's records.
pub fn validate_records(records: Option<Bytes>) -> Result<Vec<(BatchHeader, Bytes)>, i16> {
    let records = records.ok_or(error_code::CORRUPT_MESSAGE)?;
    // The topic's max.message.bytes is applied by the metadata core, which knows the topic.
    let batches = split_batches(records, usize::MAX).map_err(|error| batch_error_code(&error))?;
    for (header, _) in &batches {
        if header.offset_count() == 0 || header.record_count == 0 {
            return Err(error_code::INVALID_RECORD);
        }
        if header.is_transactional() || header.is_control() {
            return Err(TRANSACTIONS_UNSUPPORTED);
        }
    }
    Ok(batches)
}

/// The order of a connection's Produce requests, kept to the metadata core.
///
/// A connection handles its requests concurrently (it pipelines), and a request can wait on its
/// way to the metadata core: for the core's produce budget, for room in the channel to the
/// metadata core, for the authorizer or a quota refresh. Without an order, a later request of the
/// same producer could join the flush window before an earlier one that waited, and an
/// idempotent producer with several requests in flight (Java's default: 5) would be answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER and reset its epoch — Kafka handles a connection's requests one
/// at a time, so its producers never see that. So each Produce frame takes a [`ProduceTurn`] in
/// the order the connection read it, and hands its batches to the metadata core only after the
/// Produce before it has (or has given up).
#[derive(Debug, Default)]
pub struct ProduceOrder {
    state: Rc<RefCell<OrderState>>,
}

/// Tickets are handed out in read order; ticket `n` may go once every ticket below it is done
/// (handed over or given up). Bounded by the connection's requests in flight.
#[derive(Debug, Default)]
struct OrderState {
    issued: u64,
    /// The lowest ticket not done yet.
    next_undone: u64,
    /// Tickets done out of order, above `next_undone`.
    done_ahead: BTreeSet<u64>,
    /// Tickets waiting for their turn.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl ProduceOrder {
    /// The turn of the next Produce frame read.
    pub fn next_turn(&mut self) -> ProduceTurn {
        let mut state = self.state.borrow_mut();
        let ticket = state.issued;
        state.issued = state.issued.saturating_add(1);
        ProduceTurn {
            ticket,
            state: Rc::clone(&self.state),
            done: false,
        }
    }
}

/// One Produce request's place in its connection's order (see [`ProduceOrder`]). Dropping it
/// counts as handing over: a request refused before it reached the metadata core holds nobody
/// up, and the requests behind it still wait for the ones before it.
#[derive(Debug)]
pub struct ProduceTurn {
    ticket: u64,
    state: Rc<RefCell<OrderState>>,
    done: bool,
}

impl ProduceTurn {
    /// Waits until every Produce before this one has handed its batches over (or given up).
    async fn wait(&mut self) {
        let turn = {
            let mut state = self.state.borrow_mut();
            if state.next_undone >= self.ticket {
                return;
            }
            let (ready, turn) = oneshot::channel();
            state.waiting.insert(self.ticket, ready);
            turn
        };
        let _ = turn.await;
    }

    /// This request's batches are in the metadata core's queue: the next one may follow.
    fn hand_over(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut state = self.state.borrow_mut();
        let ticket = self.ticket;
        state.done_ahead.insert(ticket);
        loop {
            let next = state.next_undone;
            if !state.done_ahead.remove(&next) {
                break;
            }
            state.next_undone = next.saturating_add(1);
        }
        let next_undone = state.next_undone;
        let ready: Vec<u64> = state
            .waiting
            .range(..=next_undone)
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in ready {
            if let Some(waiter) = state.waiting.remove(&ticket) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Drop for ProduceTurn {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// Handles one Produce request; `None` means acks=0 (no response is sent). `turn` keeps the
/// connection's order (see [`ProduceOrder`]); `None` when requests come one at a time.
pub async fn handle(
    services: &CoreServices,
    request: ProduceRequest,
    turn: Option<ProduceTurn>,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let refuse_all = if request.transactional_id.is_some() {
        Some(TRANSACTIONS_UNSUPPORTED)
    } else if !(-1..=1).contains(&acks) {
        Some(INVALID_REQUIRED_ACKS)
    } else {
        None
    };

    // Per partition in request order: `Ok(position in `to_append`)` or a code.
    let mut placements: Vec<Vec<(i32, Result<usize, i16>)>> =
        Vec::with_capacity(request.topic_data.len());
    let mut to_append = Vec::new();
    let mut bytes_total: u64 = 0;
    for topic in &request.topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in &topic.partition_data {
            let placement = match refuse_all {
                Some(code) => Err(code),
                None => validate_records(partition.records.clone()).map(|batches| {
                    bytes_total = bytes_total
                        .saturating_add(batches.iter().map(|(_, bytes)| bytes.len() as u64).sum());
                    to_append.push(ProducePartition {
                        topic: topic.name.as_str().to_owned(),
                        partition: partition.index,
                        batches,
                    });
                    to_append.len() - 1
                }),
            };
            partitions.push((partition.index, placement));
        }
        placements.push(partitions);
    }

    let outcomes = append(services, to_append, bytes_total, acks, turn).await?;
    Some(response(&request, placements, &outcomes))
}

/// Hands the validated partitions to the metadata core and answers each (in `to_append` order);
/// `None` for acks=0, whose bytes still hold the produce budget until they are durable.
async fn append(
    services: &CoreServices,
    to_append: Vec<ProducePartition>,
    bytes_total: u64,
    acks: i16,
    mut turn: Option<ProduceTurn>,
) -> Option<Vec<PartitionOutcome>> {
    if to_append.is_empty() {
        return (acks != 0).then(Vec::new);
    }
    let partition_count = to_append.len();
    if let Some(turn) = turn.as_mut() {
        turn.wait().await;
    }
    let permit = services.reserve_produce_bytes(bytes_total).await;
    let enqueued = services.core.produce(to_append).await;
    if let Some(turn) = turn.as_mut() {
        turn.hand_over();
    }
    let outcomes = match enqueued {
        Ok(answer) if acks == 0 => {
            // Nobody reads the answer, but the budget is held until the bytes are durable.
            glommio::spawn_local(async move {
                let _ = answer.await;
                drop(permit);
            })
            .detach();
            return None;
        }
        Ok(answer) => answer.await.ok(),
        Err(_) => None,
    };
    drop(permit);
    // `None`: the metadata core is gone; the client refreshes metadata and retries.
    (acks != 0).then(|| {
        outcomes.unwrap_or_else(|| vec![Err(error_code::NOT_LEADER_OR_FOLLOWER); partition_count])
    })
}

/// The response: one entry per partition of the request, in request order.
fn response(
    request: &ProduceRequest,
    placements: Vec<Vec<(i32, Result<usize, i16>)>>,
    outcomes: &[PartitionOutcome],
) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .zip(placements)
        .map(|(topic, partitions)| {
            let partition_responses = partitions
                .into_iter()
                .map(|(index, placement)| {
                    let outcome = placement.and_then(|position| {
                        outcomes
                            .get(position)
                            .copied()
                            .unwrap_or(Err(error_code::KAFKA_STORAGE_ERROR))
                    });
                    partition_response(index, outcome)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn partition_response(index: i32, outcome: PartitionOutcome) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match outcome {
        Ok(appended) => response
            .with_error_code(0)
            .with_log_append_time_ms(appended.log_append_time_ms)
            .with_base_offset(i64::try_from(appended.base_offset).unwrap_or(i64::MAX))
            .with_log_start_offset(i64::try_from(appended.log_start_offset).unwrap_or(i64::MAX)),
        Err(code) => response
            .with_error_code(code)
            .with_log_append_time_ms(NO_LOG_APPEND_TIME)
            .with_base_offset(-1)
            .with_log_start_offset(-1),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use bytes::BytesMut;
    use sluice_engine::batch::BatchBuilder;

    use super::*;

    fn batch(records: usize) -> Bytes {
        let mut builder = BatchBuilder::new(1_000);
        for index in 0..records {
            builder = builder.record(index as i64, None, b"value");
        }
        builder.encode()
    }

    #[test]
    fn batches_are_zero_copy_slices_of_the_records() {
        let mut records = BytesMut::new();
        records.extend_from_slice(&batch(2));
        records.extend_from_slice(&batch(3));
        let records = records.freeze();
        let batches = validate_records(Some(records.clone())).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].0.record_count, 2);
        // Same memory, not a copy.
        assert_eq!(batches[0].1.as_ptr(), records.as_ptr());
        let second_start = batches[0].1.len();
        assert_eq!(batches[1].1.as_ptr(), records[second_start..].as_ptr());
    }

    #[test]
    fn each_kind_of_bad_batch_gets_the_java_brokers_code() {
        let good = batch(1);
        let mut bad_crc = good.to_vec();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert_eq!(
            validate_records(Some(Bytes::from(bad_crc))),
            Err(error_code::CORRUPT_MESSAGE)
        );
        let mut old_magic = good.to_vec();
        old_magic[16] = 1;
        assert_eq!(
            validate_records(Some(Bytes::from(old_magic))),
            Err(error_code::UNSUPPORTED_FOR_MESSAGE_FORMAT)
        );
        assert_eq!(
            validate_records(Some(good.slice(..good.len() - 3))),
            Err(error_code::CORRUPT_MESSAGE)
        );
        assert_eq!(validate_records(None), Err(error_code::CORRUPT_MESSAGE));
        assert_eq!(
            validate_records(Some(batch(0))),
            Err(error_code::INVALID_RECORD)
        );
    }

    #[test]
    fn the_response_carries_the_metadata_cores_append_time() {
        let appended = crate::metadata_core::PartitionAppended {
            base_offset: 5,
            log_start_offset: 2,
            log_append_time_ms: 1_765_000_000_000,
        };
        let response = partition_response(3, Ok(appended));
        assert_eq!(
            (response.index, response.error_code, response.base_offset),
            (3, 0, 5)
        );
        assert_eq!(response.log_append_time_ms, 1_765_000_000_000);
        let refused = partition_response(3, Err(error_code::INVALID_TIMESTAMP));
        assert_eq!(refused.error_code, 32);
        assert_eq!(refused.log_append_time_ms, NO_LOG_APPEND_TIME);
        assert_eq!(refused.base_offset, -1);
    }

    /// Each turn goes after the one read before it, however the requests are polled; a turn given
    /// up (dropped) holds nobody up.
    #[test]
    fn produce_turns_hand_over_in_read_order() {
        let mut order = ProduceOrder::default();
        let turns: Vec<ProduceTurn> = (0..4).map(|_| order.next_turn()).collect();
        let log = RefCell::new(Vec::new());
        let mut futures = Vec::new();
        for (index, mut turn) in turns.into_iter().enumerate() {
            let log = &log;
            futures.push(Box::pin(async move {
                if index == 2 {
                    // Refused before it reached the metadata core: the turn is dropped.
                    drop(turn);
                    return;
                }
                turn.wait().await;
                log.borrow_mut().push(index);
                turn.hand_over();
            })
                as std::pin::Pin<Box<dyn Future<Output = ()> + '_>>);
        }
        // Polled newest first: the order must still be the order read.
        futures.reverse();
        futures::executor::block_on(futures::future::join_all(futures));
        assert_eq!(*log.borrow(), [0, 1, 3]);
    }
}
