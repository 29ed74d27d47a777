//! The workload: Kafka clients as the agent sees them, each a task of the simulation (not of any
//! agent process, so they live through crashes and follow the log to its new owner).
//!
//! - *Producers*, idempotent or not. An idempotent producer asks for a producer id, keeps one
//!   request in flight and retries a batch whose outcome is unknown until it is answered, with the
//!   same sequence, as Kafka's client does; a plain producer keeps up to three in flight and retries
//!   a few times (duplicates are then allowed, loss is not).
//! - *Consumers* fetch through an agent's live state and its store (with its faults), assemble
//!   answers with the read path's own code, and compare every batch with what was acknowledged.
//! - *An admin* creates and deletes topics, adds partitions, alters configs and deletes records.
//! - *Committers* commit growing offsets for their group.
//!
//! A client talks to the agent it last reached, and moves to the newest serving agent after an
//! error or, now and then, by itself (a metadata refresh): while a second writer takes over, some
//! requests still reach the first.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_engine::batch::{BatchBuilder, BatchHeader, validate_batch};
use sluice_engine::metadata::{Command, MetadataError, OffsetCommit};
use sluice_engine::read::assemble_records;
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{TopicId, TopicPartition, object_key};
use sluice_server::metadata_core::ProducePartition;
use sluice_server::metadata_core::window::{CommandFailure, error_code};

use crate::agent::Agent;
use crate::model::TopicModel;
use crate::run::Sim;

/// How long a client waits for an answer before it counts the outcome as unknown.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Attempts of a plain producer's batch.
const PLAIN_ATTEMPTS_MAX: u32 = 4;
/// Attempts of an admin command whose outcome stays unknown.
const ADMIN_ATTEMPTS_MAX: u32 = 6;

/// Waits `ms` virtual milliseconds.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A client's connection: the agent it talks to, re-resolved after errors.
struct Connection {
    agent: Option<Rc<Agent>>,
}

impl Connection {
    fn new() -> Connection {
        Connection { agent: None }
    }

    /// The agent to send to: the current one, or the newest serving agent when it is gone; now and
    /// then a refresh moves to the newest.
    fn agent(&mut self, sim: &Sim) -> Option<Rc<Agent>> {
        let refresh = sim.chance(0.05);
        let stale = self
            .agent
            .as_ref()
            .is_none_or(|agent| agent.is_dead() || !agent.is_open());
        if stale || refresh {
            self.agent = sim.newest_serving();
        }
        self.agent.clone()
    }

    fn drop_agent(&mut self) {
        self.agent = None;
    }
}

/// Waits for an answer with the client's timeout. `None`: no answer (timeout or the agent died).
async fn answer<T>(receiver: futures::channel::oneshot::Receiver<T>) -> Option<T> {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), receiver).await {
        Ok(Ok(value)) => Some(value),
        _ => None,
    }
}

/// One batch of a producer, with everything needed to resend it as it was.
#[derive(Debug, Clone)]
struct PendingBatch {
    topic: String,
    partition: i32,
    header: BatchHeader,
    bytes: Bytes,
}

fn build_batch(
    sim: &Sim,
    client: u32,
    number: u64,
    producer: Option<(i64, i16, i32)>,
) -> Option<(BatchHeader, Bytes)> {
    let records = sim.range(1..5u32);
    let mut builder = BatchBuilder::new(sim.clock.wall_ms());
    if let Some((producer_id, epoch, sequence)) = producer {
        builder = builder.producer(producer_id, epoch, sequence);
    }
    for record in 0..records {
        let value = format!("c{client}-b{number}-r{record}");
        let key = format!("k{}", record % 3);
        builder = builder.record(i64::from(record), Some(key.as_bytes()), value.as_bytes());
    }
    let bytes = builder.encode();
    let header = validate_batch(&bytes).ok()?;
    Some((header, bytes))
}

/// Whether a produce's error code leaves its outcome unknown (the append failed or the agent is not
/// the writer any more): retry. Anything else is a definite refusal.
fn unknown_outcome(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_LEADER_OR_FOLLOWER
            | error_code::REQUEST_TIMED_OUT
            | error_code::KAFKA_STORAGE_ERROR
    )
}

/// Topics a producer may write to: known (creation acknowledged), not being deleted; idempotent
/// producers keep off scratch topics.
fn writable_topics(sim: &Sim, idempotent: bool) -> Vec<TopicModel> {
    sim.model
        .borrow()
        .topics
        .values()
        .filter(|topic| topic.partitions > 0 && !topic.delete_sent)
        .filter(|topic| !(idempotent && topic.scratch))
        .cloned()
        .collect()
}

/// A producer: `idempotent` ones get a producer id and keep sequences per partition.
pub async fn producer(sim: Rc<Sim>, client: u32, idempotent: bool, think_ms_mean: u64) {
    let mut connection = Connection::new();
    let mut producer_id: Option<(i64, i16)> = None;
    let mut sequences: BTreeMap<(String, i32), i32> = BTreeMap::new();
    let mut number = 0u64;
    let in_flight_max = if idempotent { 1 } else { 3 };
    let in_flight = Rc::new(std::cell::Cell::new(0usize));
    while sim.running() {
        sleep_ms(sim.think_ms(think_ms_mean)).await;
        if idempotent && producer_id.is_none() {
            producer_id = init_producer_id(&sim, &mut connection).await;
            continue;
        }
        if in_flight.get() >= in_flight_max {
            continue;
        }
        let topics = writable_topics(&sim, idempotent);
        let Some(topic) = sim.pick(&topics) else {
            continue;
        };
        let mut partitions: Vec<i32> = (0..topic.partitions)
            .filter_map(|partition| i32::try_from(partition).ok())
            .collect();
        let wanted = sim.range(1..3usize).min(partitions.len());
        sim.shuffle(&mut partitions);
        partitions.truncate(wanted);
        let mut batches = Vec::new();
        for partition in partitions {
            number += 1;
            let producer = producer_id.map(|(id, epoch)| {
                let sequence = sequences
                    .get(&(topic.name.clone(), partition))
                    .copied()
                    .unwrap_or(0);
                (id, epoch, sequence)
            });
            let Some((header, bytes)) = build_batch(&sim, client, number, producer) else {
                continue;
            };
            batches.push(PendingBatch {
                topic: topic.name.clone(),
                partition,
                header,
                bytes,
            });
        }
        if idempotent {
            let acked = send_batches(&sim, &mut connection, batches, u32::MAX).await;
            for batch in acked {
                let next = sequences
                    .entry((batch.topic.clone(), batch.partition))
                    .or_insert(0);
                *next = next.wrapping_add(i32::try_from(batch.header.offset_count()).unwrap_or(1));
            }
        } else {
            in_flight.set(in_flight.get() + 1);
            let sim = Rc::clone(&sim);
            let in_flight = Rc::clone(&in_flight);
            sim.clone().spawn_client("plain produce", async move {
                let mut connection = Connection::new();
                let _ = send_batches(&sim, &mut connection, batches, PLAIN_ATTEMPTS_MAX).await;
                in_flight.set(in_flight.get().saturating_sub(1));
            });
        }
    }
}

async fn init_producer_id(sim: &Sim, connection: &mut Connection) -> Option<(i64, i16)> {
    let agent = connection.agent(sim)?;
    let Some(receiver) = agent.init_producer_id() else {
        connection.drop_agent();
        return None;
    };
    match answer(receiver).await {
        Some(Ok((producer_id, epoch))) => {
            sim.trace(("producer id", producer_id));
            let result = sim.model.borrow_mut().producer_id_acked(producer_id);
            if let Err(message) = result {
                sim.fail(message);
            }
            Some((producer_id, epoch))
        }
        _ => {
            connection.drop_agent();
            None
        }
    }
}

/// Sends `batches` (one request) until each is answered, or `attempts_max` runs out or the run
/// ends; returns the acknowledged ones.
async fn send_batches(
    sim: &Sim,
    connection: &mut Connection,
    mut batches: Vec<PendingBatch>,
    attempts_max: u32,
) -> Vec<PendingBatch> {
    let mut acked = Vec::new();
    let mut attempt = 0u32;
    while !batches.is_empty() && attempt < attempts_max && sim.running() {
        attempt += 1;
        if attempt > 1 {
            sleep_ms(10 + sim.range(0..40u64)).await;
        }
        let Some(agent) = connection.agent(sim) else {
            continue;
        };
        let request = batches
            .iter()
            .map(|batch| ProducePartition {
                topic: batch.topic.clone(),
                partition: batch.partition,
                batches: vec![(batch.header, batch.bytes.clone())],
            })
            .collect();
        let Some(receiver) = agent.produce(request) else {
            connection.drop_agent();
            continue;
        };
        let Some(outcomes) = answer(receiver).await else {
            connection.drop_agent();
            continue;
        };
        let mut retry = Vec::new();
        for (batch, outcome) in batches.into_iter().zip(outcomes) {
            match outcome {
                Ok(appended) => {
                    let tp = sim.tp_of(&batch.topic, batch.partition);
                    sim.trace(("ack", &batch.topic, batch.partition, appended.base_offset));
                    if let Some(tp) = tp {
                        let result = sim.model.borrow_mut().ack(
                            tp,
                            appended.base_offset,
                            &batch.header,
                            &batch.bytes,
                        );
                        if let Err(message) = result {
                            sim.fail(message);
                        }
                    }
                    acked.push(batch);
                }
                Err(code) if unknown_outcome(code) => {
                    connection.drop_agent();
                    retry.push(batch);
                }
                Err(error_code::UNKNOWN_TOPIC_OR_PARTITION) if batch.header.producer_id >= 0 => {
                    // A zombie agent that has not seen the topic: ask the newest.
                    connection.drop_agent();
                    retry.push(batch);
                }
                Err(code) if batch.header.producer_id >= 0 => {
                    // With one request in flight and every unknown outcome retried as it was, an
                    // idempotent batch is never out of sequence, fenced or refused.
                    sim.fail(format!(
                        "idempotent producer {} refused with code {code} at sequence {} of {}-{}",
                        batch.header.producer_id,
                        batch.header.base_sequence,
                        batch.topic,
                        batch.partition
                    ));
                }
                Err(_) => {}
            }
        }
        batches = retry;
    }
    acked
}

/// A consumer: fetches from random partitions through an agent's state and store.
pub async fn consumer(sim: Rc<Sim>, think_ms_mean: u64) {
    let mut positions: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    let mut connection = Connection::new();
    while sim.running() {
        sleep_ms(sim.think_ms(think_ms_mean)).await;
        let Some(agent) = connection.agent(&sim) else {
            continue;
        };
        let topics = writable_topics(&sim, false);
        let Some(topic) = sim.pick(&topics) else {
            continue;
        };
        let partition = sim.range(0..topic.partitions.max(1));
        let Ok(partition) = i32::try_from(partition) else {
            continue;
        };
        let tp = TopicPartition::new(topic.id, partition);
        let position = positions.get(&tp).copied().unwrap_or(0);
        let Some(lookup) = agent.with_state(|state| {
            let log_start = state.log_start_offset(tp).ok()?;
            let high_watermark = state.high_watermark(tp).ok()?;
            let from = if position < log_start || position > high_watermark {
                log_start
            } else {
                position
            };
            Some((from, state.find_from(tp, from, 3).ok()?))
        }) else {
            continue;
        };
        let Some((from, entries)) = lookup else {
            continue;
        };
        let mut parts = Vec::new();
        for entry in entries {
            let key = object_key(entry.seq);
            let read = agent
                .store()
                .get_range(&key, entry.byte_start..entry.byte_start + entry.byte_len);
            match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), read).await {
                Ok(Ok(bytes)) => parts.push((entry, vec![bytes])),
                _ => break,
            }
        }
        if parts.is_empty() {
            positions.insert(tp, from);
            continue;
        }
        let assembled = match assemble_records(&parts, from, 64 * 1024, 0) {
            Ok(assembled) => assembled,
            Err(error) => {
                sim.fail(format!("fetch of {tp} at {from}: {error}"));
                return;
            }
        };
        let bytes = assembled.records.to_bytes();
        if let Err(message) = sim.check_fetched(tp, &bytes) {
            sim.fail(message);
            return;
        }
        sim.count_fetch(assembled.batch_count);
        positions.insert(tp, assembled.next_offset);
    }
}

/// Sends one admin command until its outcome is known (or attempts run out). `Ok(true)`: applied;
/// `Ok(false)`: rejected by the state machine; `Err(())`: unknown.
async fn admin_command(
    sim: &Sim,
    connection: &mut Connection,
    command: Command,
) -> Result<bool, ()> {
    for attempt in 0..ADMIN_ATTEMPTS_MAX {
        if !sim.running() {
            break;
        }
        if attempt > 0 {
            sleep_ms(20 + sim.range(0..80u64)).await;
        }
        let Some(agent) = connection.agent(sim) else {
            continue;
        };
        let Some(receiver) = agent.commands(vec![command.clone()]) else {
            connection.drop_agent();
            continue;
        };
        let Some(mut outcomes) = answer(receiver).await else {
            connection.drop_agent();
            continue;
        };
        match outcomes.pop() {
            Some(Ok(())) => return Ok(true),
            Some(Err(CommandFailure::Rejected(error))) => {
                sim.trace(("rejected", format!("{error:?}")));
                return Ok(matches!(error, MetadataError::TopicAlreadyExists { .. }));
            }
            _ => connection.drop_agent(),
        }
    }
    Err(())
}

/// The admin: the run's first topics, then a topic change every few hundred milliseconds.
pub async fn admin(sim: Rc<Sim>) {
    let mut connection = Connection::new();
    let mut topics_created = 0u32;
    for (name, partitions) in [("orders", 3), ("events", 2)] {
        create_topic(&sim, &mut connection, name, partitions, false).await;
        topics_created += 1;
    }
    let mut scratch = 0u32;
    while sim.running() {
        sleep_ms(100 + sim.range(0..300u64)).await;
        let known: Vec<TopicModel> = sim
            .model
            .borrow()
            .topics
            .values()
            .filter(|topic| topic.partitions > 0 && !topic.delete_sent)
            .cloned()
            .collect();
        match sim.range(0..10u32) {
            0 | 1 => {
                scratch += 1;
                let name = format!("scratch-{scratch}");
                let partitions = sim.range(1..3u32);
                create_topic(&sim, &mut connection, &name, partitions, true).await;
            }
            2 if topics_created < 4 => {
                topics_created += 1;
                let name = format!("topic-{topics_created}");
                create_topic(&sim, &mut connection, &name, sim.range(1..4u32), false).await;
            }
            3 => {
                let Some(topic) = sim.pick(&known) else {
                    continue;
                };
                if topic.partitions >= 6 {
                    continue;
                }
                let command = Command::CreatePartitions {
                    topic_id: topic.id,
                    partition_count: topic.partitions + 1,
                };
                let outcome = admin_command(&sim, &mut connection, command).await;
                sim.trace(("create partitions", &topic.name, outcome));
                if outcome == Ok(true)
                    && let Some(model) = sim.model.borrow_mut().topics.get_mut(&topic.name)
                {
                    model.partitions = model.partitions.max(topic.partitions + 1);
                }
            }
            4 => {
                let Some(topic) = sim.pick(&known) else {
                    continue;
                };
                let retention_ms = sim.range(60_000..600_000u64).to_string();
                let command = Command::AlterTopicConfigs {
                    topic_id: topic.id,
                    set: vec![("retention.ms".to_owned(), Some(retention_ms))],
                };
                let outcome = admin_command(&sim, &mut connection, command).await;
                sim.trace(("alter configs", &topic.name, outcome));
            }
            5 | 6 => delete_records(&sim, &mut connection, &known).await,
            7 => {
                let scratch_topics: Vec<TopicModel> =
                    known.into_iter().filter(|topic| topic.scratch).collect();
                let Some(topic) = sim.pick(&scratch_topics) else {
                    continue;
                };
                if let Some(model) = sim.model.borrow_mut().topics.get_mut(&topic.name) {
                    model.delete_sent = true;
                }
                let command = Command::DeleteTopic { topic_id: topic.id };
                let outcome = admin_command(&sim, &mut connection, command).await;
                sim.trace(("delete topic", &topic.name, outcome));
                if outcome == Ok(true)
                    && let Some(model) = sim.model.borrow_mut().topics.get_mut(&topic.name)
                {
                    model.delete_acked = true;
                }
            }
            _ => {}
        }
    }
}

async fn create_topic(
    sim: &Sim,
    connection: &mut Connection,
    name: &str,
    partitions: u32,
    scratch: bool,
) {
    let mut id = [0u8; 16];
    sim.fill(&mut id);
    let topic_id = TopicId(id);
    let command = Command::CreateTopic {
        name: name.to_owned(),
        topic_id,
        partition_count: partitions,
        configs: BTreeMap::new(),
    };
    let outcome = admin_command(sim, connection, command).await;
    sim.trace(("create topic", name, outcome));
    // `Ok(true)` also after a retry refused as TopicAlreadyExists: names are never reused in a run,
    // so the topic holding the name is this one, created by an earlier attempt.
    let created = outcome == Ok(true);
    if created {
        sim.model.borrow_mut().topics.insert(
            name.to_owned(),
            TopicModel {
                name: name.to_owned(),
                id: topic_id,
                partitions,
                scratch,
                delete_sent: false,
                delete_acked: false,
            },
        );
    }
}

async fn delete_records(sim: &Sim, connection: &mut Connection, known: &[TopicModel]) {
    let Some(topic) = sim.pick(known) else {
        return;
    };
    let partition = sim.range(0..topic.partitions.max(1));
    let Ok(partition) = i32::try_from(partition) else {
        return;
    };
    let tp = TopicPartition::new(topic.id, partition);
    let Some(agent) = connection.agent(sim) else {
        return;
    };
    let Some(Ok(high_watermark)) = agent.with_state(|state| state.high_watermark(tp)) else {
        return;
    };
    // Somewhere in the first half, so most of what was written stays readable.
    let before_offset = sim.range(0..high_watermark / 2 + 1);
    sim.model
        .borrow_mut()
        .delete_records_sent(tp, before_offset);
    let command = Command::DeleteRecords { tp, before_offset };
    let outcome = admin_command(sim, connection, command).await;
    sim.trace((
        "delete records",
        &topic.name,
        partition,
        before_offset,
        outcome,
    ));
    if outcome == Ok(true) {
        sim.model
            .borrow_mut()
            .delete_records_acked(tp, before_offset);
    }
}

/// A group's committer: growing offsets over the non-scratch topics' partitions.
pub async fn committer(sim: Rc<Sim>, group: String, think_ms_mean: u64) {
    let mut connection = Connection::new();
    let mut offsets: BTreeMap<(String, u32), i64> = BTreeMap::new();
    while sim.running() {
        sleep_ms(sim.think_ms(think_ms_mean)).await;
        let topics: Vec<TopicModel> = writable_topics(&sim, true);
        let Some(topic) = sim.pick(&topics) else {
            continue;
        };
        let partition = sim.range(0..topic.partitions.max(1));
        let offset = offsets
            .get(&(topic.name.clone(), partition))
            .copied()
            .unwrap_or(0)
            + i64::from(sim.range(1..50u32));
        offsets.insert((topic.name.clone(), partition), offset);
        let Some(agent) = connection.agent(&sim) else {
            continue;
        };
        sim.model
            .borrow_mut()
            .commit_sent(&group, &topic.name, partition, offset);
        let commit = OffsetCommit {
            topic: topic.name.clone(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: sim.clock.wall_ms(),
        };
        let Some(receiver) = agent.commit_offsets(group.clone(), vec![commit]) else {
            connection.drop_agent();
            continue;
        };
        match answer(receiver).await {
            Some(Ok(skipped)) if skipped.is_empty() => {
                sim.trace(("commit", &group, &topic.name, partition, offset));
                sim.model
                    .borrow_mut()
                    .commit_acked(&group, &topic.name, partition);
            }
            Some(Ok(_)) => {}
            _ => connection.drop_agent(),
        }
    }
}
