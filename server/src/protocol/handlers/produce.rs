//! Produce: validate every partition's record batches here, on the network core, then hand them
//! to the metadata core's open flush window and answer once the window is durable and applied.
//!
//! The CRC-32C pass over each batch (the one per-byte cost of the write path) runs on the core
//! that read the bytes, so it scales with network cores; the metadata core only sees headers.
//! `records` is a `Bytes` slice of the request frame (`kafka-protocol` decodes `Bytes` fields by
//! `split_to`, without copying), and [`split_batches`] slices it again: the bytes uploaded are the
//! bytes read from the socket.
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
//! time in `maxTimestamp` and the LogAppendTime bit set ([`apply_topic_timestamp_type`], which also
//! has Kafka's rules for a producer that sets that bit itself: INVALID_TIMESTAMP, 32). The topic's
//! type is read from the metadata core with one query per request (every request pays that round
//! trip, at most about 40 µs here, since a network core cannot know without asking), so an
//! IncrementalAlterConfigs that was answered applies to every later produce. The append time is this
//! core's wall clock once the produce budget is granted, just before the batches go to the metadata
//! core, and the response's `log_append_time_ms` carries it (-1 for CreateTime topics, as Kafka
//! answers). A stamped batch is a copy of the request's bytes (the one copy the write path makes),
//! done here on the network core like the CRC check, so the metadata core still sees only headers;
//! its bytes count twice against the produce budget, since the request's bytes stay alive until the
//! answer.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_engine::batch::{
    BatchError, BatchHeader, TimestampType, apply_topic_timestamp_type, split_batches,
};
use sluice_engine::metadata::{MetadataState, known_configs};

use crate::metadata_core::window::error_code;
use crate::metadata_core::{CoreUnavailable, PartitionOutcome, ProducePartition};
use crate::protocol::services::CoreServices;

/// Kafka's INVALID_REQUIRED_ACKS.
const INVALID_REQUIRED_ACKS: i16 = 21;
/// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the closest refusal for a transactional
/// produce, which Sluice does not support yet.
const TRANSACTIONS_UNSUPPORTED: i16 = 53;
/// The topic config that decides who sets a batch's timestamp.
const TIMESTAMP_TYPE_CONFIG: &str = "message.timestamp.type";
/// `log_append_time_ms` of a partition whose topic keeps the producer's timestamps.
const NO_LOG_APPEND_TIME: i64 = -1;

/// The code for a batch that failed validation.
pub fn batch_error_code(error: &BatchError) -> i16 {
    match error {
        BatchError::UnsupportedMagic { .. } => error_code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
        BatchError::CrcMismatch { .. }
        | BatchError::Truncated { .. }
        | BatchError::InvalidLength { .. }
        | BatchError::Empty => error_code::CORRUPT_MESSAGE,
        BatchError::LogAppendTimeFromProducer => ResponseError::InvalidTimestamp.code(),
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

/// Handles one Produce request; `None` means acks=0 (no response is sent).
pub async fn handle(services: &CoreServices, request: ProduceRequest) -> Option<ProduceResponse> {
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

    let outcomes = append(services, to_append, bytes_total, acks).await?;
    Some(response(&request, placements, &outcomes))
}

/// Hands the validated partitions to the metadata core after their topics' timestamp rules, and
/// answers each (in `to_append` order) with the log append time it carries. `None` for acks=0,
/// whose bytes still hold the produce budget until they are durable.
async fn append(
    services: &CoreServices,
    to_append: Vec<ProducePartition>,
    bytes_total: u64,
    acks: i16,
) -> Option<Vec<(PartitionOutcome, i64)>> {
    if to_append.is_empty() {
        return (acks != 0).then(Vec::new);
    }
    let Ok(topic_types) = topic_timestamp_types(services, &to_append).await else {
        let unavailable = (Err(error_code::NOT_LEADER_OR_FOLLOWER), NO_LOG_APPEND_TIME);
        return (acks != 0).then(|| vec![unavailable; to_append.len()]);
    };
    let copied_bytes: u64 = to_append
        .iter()
        .zip(&topic_types)
        .map(|(partition, topic_type)| bytes_to_copy(&partition.batches, *topic_type))
        .sum();
    let permit = services
        .reserve_produce_bytes(bytes_total.saturating_add(copied_bytes))
        .await;
    // Read after the budget wait: the append time is as close to the window as this core gets.
    let (sent, answers) = stamp_partitions(to_append, &topic_types, wall_clock_ms());
    let outcomes = if sent.is_empty() {
        Some(Vec::new())
    } else {
        match services.core.produce(sent).await {
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
        }
    };
    drop(permit);
    (acks != 0).then(|| join_answers(answers, outcomes.as_deref()))
}

/// How one partition of `to_append` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// It went to the metadata core, at this position of what was sent; its log append time.
    Sent {
        position: usize,
        log_append_time_ms: i64,
    },
    /// Its topic's timestamp rules refused it here, with this code.
    Refused(i16),
}

/// Every partition's answer, given the metadata core's answers to what was sent (`None`: the
/// metadata core is gone).
fn join_answers(
    answers: Vec<Answer>,
    outcomes: Option<&[PartitionOutcome]>,
) -> Vec<(PartitionOutcome, i64)> {
    answers
        .into_iter()
        .map(|answer| match (answer, outcomes) {
            (Answer::Refused(code), _) => (Err(code), NO_LOG_APPEND_TIME),
            (Answer::Sent { .. }, None) => {
                (Err(error_code::NOT_LEADER_OR_FOLLOWER), NO_LOG_APPEND_TIME)
            }
            (
                Answer::Sent {
                    position,
                    log_append_time_ms,
                },
                Some(outcomes),
            ) => match outcomes.get(position).copied() {
                Some(Ok(appended)) => (Ok(appended), log_append_time_ms),
                Some(Err(code)) => (Err(code), NO_LOG_APPEND_TIME),
                None => (Err(error_code::KAFKA_STORAGE_ERROR), NO_LOG_APPEND_TIME),
            },
        })
        .collect()
}

/// Each partition's topic's `message.timestamp.type`, read on the metadata core in one query
/// (`None` for a topic that does not exist: the metadata core answers it).
async fn topic_timestamp_types(
    services: &CoreServices,
    partitions: &[ProducePartition],
) -> Result<Vec<Option<TimestampType>>, CoreUnavailable> {
    let mut topic_positions: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let positions: Vec<usize> = partitions
        .iter()
        .map(|partition| {
            *topic_positions
                .entry(partition.topic.as_str())
                .or_insert_with(|| {
                    names.push(partition.topic.clone());
                    names.len() - 1
                })
        })
        .collect();
    let types = services
        .core
        .query(move |state| {
            names
                .iter()
                .map(|name| topic_timestamp_type(state, name))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(positions
        .into_iter()
        .map(|position| types.get(position).copied().flatten())
        .collect())
}

/// A topic's `message.timestamp.type`: its override, else the default of the config table.
fn topic_timestamp_type(state: &MetadataState, topic: &str) -> Option<TimestampType> {
    let (_, description) = state.topic_by_name(topic)?;
    let value = description
        .config_overrides()
        .get(TIMESTAMP_TYPE_CONFIG)
        .map(String::as_str)
        .or_else(|| {
            known_configs()
                .iter()
                .find(|spec| spec.name == TIMESTAMP_TYPE_CONFIG)
                .map(|spec| spec.default)
        });
    Some(match value {
        Some("LogAppendTime") => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    })
}

/// Bytes of `batches` that their topic's rules copy: those whose timestamp type is not the
/// topic's. (A producer's LogAppendTime batch on a LogAppendTime topic is refused rather than
/// copied; counting it keeps this a cheap upper bound.)
fn bytes_to_copy(batches: &[(BatchHeader, Bytes)], topic_type: Option<TimestampType>) -> u64 {
    let Some(topic_type) = topic_type else {
        return 0;
    };
    batches
        .iter()
        .filter(|(header, _)| header.timestamp_type() != topic_type)
        .map(|(_, bytes)| bytes.len() as u64)
        .sum()
}

/// Applies each partition's topic timestamp type to its batches, `now_ms` being the append time.
/// Returns what to send, and how to answer each partition: one refused batch refuses its
/// partition, which is then not sent (as Kafka fails the partition's whole produce).
fn stamp_partitions(
    partitions: Vec<ProducePartition>,
    topic_types: &[Option<TimestampType>],
    now_ms: i64,
) -> (Vec<ProducePartition>, Vec<Answer>) {
    let mut sent = Vec::with_capacity(partitions.len());
    let mut answers = Vec::with_capacity(partitions.len());
    for (mut partition, topic_type) in partitions.into_iter().zip(topic_types) {
        let mut log_append_time_ms = NO_LOG_APPEND_TIME;
        if let Some(topic_type) = *topic_type {
            let batches: Result<Vec<(BatchHeader, Bytes)>, BatchError> = partition
                .batches
                .iter()
                .map(|(header, bytes)| {
                    apply_topic_timestamp_type(bytes, header, topic_type, now_ms)
                })
                .collect();
            match batches {
                Ok(batches) => partition.batches = batches,
                Err(error) => {
                    answers.push(Answer::Refused(batch_error_code(&error)));
                    continue;
                }
            }
            if topic_type == TimestampType::LogAppendTime {
                log_append_time_ms = now_ms;
            }
        }
        answers.push(Answer::Sent {
            position: sent.len(),
            log_append_time_ms,
        });
        sent.push(partition);
    }
    (sent, answers)
}

/// Milliseconds since the Unix epoch: the append time of LogAppendTime topics.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The response: one entry per partition of the request, in request order.
fn response(
    request: &ProduceRequest,
    placements: Vec<Vec<(i32, Result<usize, i16>)>>,
    outcomes: &[(PartitionOutcome, i64)],
) -> ProduceResponse {
    let responses = request
        .topic_data
        .iter()
        .zip(placements)
        .map(|(topic, partitions)| {
            let partition_responses = partitions
                .into_iter()
                .map(|(index, placement)| {
                    let (outcome, log_append_time_ms) = match placement {
                        Err(code) => (Err(code), NO_LOG_APPEND_TIME),
                        Ok(position) => outcomes
                            .get(position)
                            .copied()
                            .unwrap_or((Err(error_code::KAFKA_STORAGE_ERROR), NO_LOG_APPEND_TIME)),
                    };
                    partition_response(index, outcome, log_append_time_ms)
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

fn partition_response(
    index: i32,
    outcome: PartitionOutcome,
    log_append_time_ms: i64,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match outcome {
        Ok(appended) => response
            .with_error_code(0)
            .with_log_append_time_ms(log_append_time_ms)
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

    fn partition(topic: &str, batches: &[Bytes]) -> ProducePartition {
        let mut records = BytesMut::new();
        for batch in batches {
            records.extend_from_slice(batch);
        }
        ProducePartition {
            topic: topic.to_owned(),
            partition: 0,
            batches: validate_records(Some(records.freeze())).unwrap(),
        }
    }

    #[test]
    fn topic_timestamp_rules_stamp_copy_or_refuse_per_partition() {
        let producer_log_append_time = BatchBuilder::new(1_000)
            .attributes(0b1000)
            .record(0, None, b"v")
            .encode();
        let partitions = vec![
            partition("appended", &[batch(2), batch(3)]),
            partition("created", &[batch(1)]),
            partition("appended", &[batch(1), producer_log_append_time.clone()]),
            partition("unknown", &[producer_log_append_time]),
        ];
        let created_pointer = partitions[1].batches[0].1.as_ptr();
        let types = [
            Some(TimestampType::LogAppendTime),
            Some(TimestampType::CreateTime),
            Some(TimestampType::LogAppendTime),
            None,
        ];
        let copied: Vec<u64> = partitions
            .iter()
            .zip(types)
            .map(|(partition, topic_type)| bytes_to_copy(&partition.batches, topic_type))
            .collect();
        let first_bytes: u64 = partitions[0]
            .batches
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum();
        assert_eq!(copied[0], first_bytes);
        assert_eq!(copied[1], 0);
        assert_eq!(copied[3], 0);

        let (sent, answers) = stamp_partitions(partitions, &types, 1_765_000_000_000);
        assert_eq!(
            answers,
            vec![
                Answer::Sent {
                    position: 0,
                    log_append_time_ms: 1_765_000_000_000
                },
                Answer::Sent {
                    position: 1,
                    log_append_time_ms: NO_LOG_APPEND_TIME
                },
                Answer::Refused(ResponseError::InvalidTimestamp.code()),
                Answer::Sent {
                    position: 2,
                    log_append_time_ms: NO_LOG_APPEND_TIME
                },
            ]
        );
        assert_eq!(sent.len(), 3);
        for (header, bytes) in &sent[0].batches {
            assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(header.max_timestamp, 1_765_000_000_000);
            assert_eq!(header.base_timestamp, 1_000);
            assert_eq!(sluice_engine::batch::validate_batch(bytes), Ok(*header));
        }
        // A CreateTime topic's batches stay the request's bytes.
        assert_eq!(sent[1].batches[0].1.as_ptr(), created_pointer);
        // An unknown topic is left to the metadata core, untouched.
        assert_eq!(sent[2].topic, "unknown");
    }

    #[test]
    fn answers_carry_the_append_time_only_when_appended() {
        let answers = vec![
            Answer::Sent {
                position: 1,
                log_append_time_ms: 77,
            },
            Answer::Refused(32),
            Answer::Sent {
                position: 0,
                log_append_time_ms: 77,
            },
            Answer::Sent {
                position: 2,
                log_append_time_ms: NO_LOG_APPEND_TIME,
            },
            Answer::Sent {
                position: 9,
                log_append_time_ms: 77,
            },
        ];
        let appended = |base_offset| {
            Ok(crate::metadata_core::PartitionAppended {
                base_offset,
                log_start_offset: 0,
            })
        };
        let outcomes = [Err(3), appended(5), appended(8)];
        let joined = join_answers(answers.clone(), Some(&outcomes));
        assert_eq!(
            joined,
            vec![
                (appended(5), 77),
                (Err(32), NO_LOG_APPEND_TIME),
                (Err(3), NO_LOG_APPEND_TIME),
                (appended(8), NO_LOG_APPEND_TIME),
                (Err(error_code::KAFKA_STORAGE_ERROR), NO_LOG_APPEND_TIME),
            ]
        );
        let gone = join_answers(answers, None);
        assert_eq!(gone[0], (Err(error_code::NOT_LEADER_OR_FOLLOWER), -1));
        assert_eq!(gone[1], (Err(32), -1));
    }
}
