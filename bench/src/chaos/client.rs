//! The campaign's Kafka clients, on the raw wire (`groups::wire`): an idempotent producer that
//! behaves as Kafka's clients do, a probe that asks a restarted agent for its high watermarks, and
//! the final verifying read.
//!
//! The producer takes one producer id (InitProducerId) and keeps it across every kill, as a client
//! that outlives broker restarts does. Each partition has its own connection and one batch in
//! flight; a batch gets the partition's next sequence number and is sent, *byte for byte the same*,
//! until it is acknowledged — after a timeout, a closed connection or a retriable error code —, so
//! a retry of a batch the agent had written is recognised by its producer state and answered with
//! the first copy's offset instead of being appended again. Errors that mean the agent lost the
//! producer's state (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH) or refused the batch
//! are fatal: that partition stops and the run fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::records::RecordBatchDecoder;
use serde::Serialize;
use sluice_engine::batch::{BatchBuilder, BatchHeader};

use super::verify::{AckedBatch, Ledger, PartitionRead, RecordId, Served, encode_value};
use crate::groups::wire::{CallError, Connection, Versions};
use crate::seeded::Rng;

/// Kafka error codes the producer cannot retry: the batch would never be accepted as it is.
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_RECORD: i16 = 87;
const FATAL_CODES: [i16; 5] = [
    CORRUPT_MESSAGE,
    MESSAGE_TOO_LARGE,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    INVALID_PRODUCER_EPOCH,
    INVALID_RECORD,
];

/// Limit on one produce (the agent answers within its flush window when it is up; a paused or
/// faulty one may take seconds).
const PRODUCE_CALL_LIMIT: Duration = Duration::from_secs(15);
/// Limit on one call of the probe and the final read.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Wait between tries while the agent is down.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The producer's shape.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub seed: u64,
    pub records_per_batch_max: u64,
    /// Pause after each acknowledged batch (keeps the campaign's CPU modest).
    pub pace: Duration,
}

/// Counts of what the producer went through.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProducerStats {
    pub batches_acked: u64,
    /// Sends of a batch after its first.
    pub retries: u64,
    /// Retriable error codes answered, by code.
    pub error_codes: BTreeMap<i16, u64>,
    /// Calls that failed without an answer, by kind (disconnected, timeout, io, codec).
    pub call_failures: BTreeMap<String, u64>,
    /// Connections made (the first of each partition included).
    pub connects: u64,
    /// Why a partition stopped producing, if one did.
    pub fatal: Vec<String>,
}

struct Shared {
    settings: ProducerSettings,
    producer_id: i64,
    epoch: i16,
    ledger: Mutex<Ledger>,
    stats: Mutex<ProducerStats>,
    stop: AtomicBool,
}

/// A running producer; see the module doc.
#[derive(Debug)]
pub struct Producer {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(producer {})", self.producer_id)
    }
}

impl Producer {
    /// Takes a producer id and starts one task per partition on the current runtime.
    pub async fn start(settings: ProducerSettings) -> anyhow::Result<Producer> {
        let (connection, _) = connect(&settings.bootstrap).await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let answer = connection.call(4, &request).await?.body;
        anyhow::ensure!(
            answer.error_code == 0,
            "InitProducerId: error {}",
            answer.error_code
        );
        let partitions = usize::try_from(settings.partitions)?;
        let shared = Arc::new(Shared {
            producer_id: answer.producer_id.0,
            epoch: answer.producer_epoch,
            ledger: Mutex::new(Ledger::new(answer.producer_id.0, partitions)),
            stats: Mutex::new(ProducerStats::default()),
            stop: AtomicBool::new(false),
            settings,
        });
        let tasks = (0..shared.settings.partitions)
            .map(|partition| tokio::spawn(produce_partition(Arc::clone(&shared), partition)))
            .collect();
        Ok(Producer { shared, tasks })
    }

    pub fn producer_id(&self) -> i64 {
        self.shared.producer_id
    }

    /// A copy of the ledger now (what is acknowledged, what is in doubt).
    pub fn ledger(&self) -> Ledger {
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stats(&self) -> ProducerStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether some partition stopped on a fatal error.
    pub fn failed(&self) -> bool {
        !self.stats().fatal.is_empty()
    }

    /// Starts no new batch; waits (at most `limit`) for the batches in flight to be acknowledged,
    /// then abandons those still in flight (they stay in doubt in the ledger).
    pub async fn finish(mut self, limit: Duration) -> (Ledger, ProducerStats) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        for task in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        (self.ledger(), self.stats())
    }
}

/// A connection and the Produce version both sides speak.
async fn connect(bootstrap: &str) -> anyhow::Result<(Arc<Connection>, Versions)> {
    let connection = Connection::connect(bootstrap, "sluice-bench-chaos").await?;
    let versions = tokio::time::timeout(CALL_LIMIT, Versions::negotiate(&connection))
        .await
        .map_err(|_| anyhow::anyhow!("ApiVersions: no answer in {CALL_LIMIT:?}"))??;
    Ok((connection, versions))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// The batch with `records` records from `sequence` on, as the producer sends it every time.
fn build_batch(producer_id: i64, epoch: i16, partition: i32, sequence: i32, records: i32) -> Bytes {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis()),
    )
    .unwrap_or(0);
    (0..records)
        .fold(
            BatchBuilder::new(now_ms).producer(producer_id, epoch, sequence),
            |builder, delta| {
                let value = encode_value(RecordId {
                    producer_id,
                    partition,
                    sequence: sequence + delta,
                });
                builder.record(0, None, &value)
            },
        )
        .encode()
}

enum Outcome {
    Acked(i64),
    Retry,
    Fatal(String),
}

async fn send_once(
    shared: &Shared,
    connection: &Connection,
    version: i16,
    partition: i32,
    batch: &Bytes,
) -> Result<Outcome, CallError> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(&shared.settings.topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch.clone())),
                ]),
        ]);
    let answer = connection
        .call_with_timeout(version, &request, PRODUCE_CALL_LIMIT)
        .await?
        .body;
    let result = answer
        .responses
        .iter()
        .flat_map(|topic| topic.partition_responses.iter())
        .find(|answered| answered.index == partition);
    let Some(result) = result else {
        return Err(CallError::Codec(format!(
            "Produce answer without partition {partition}"
        )));
    };
    Ok(match result.error_code {
        0 => Outcome::Acked(result.base_offset),
        code if FATAL_CODES.contains(&code) => Outcome::Fatal(format!(
            "partition {partition}: Produce answered error {code} ({:?})",
            result.error_message
        )),
        code => {
            *shared
                .stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .error_codes
                .entry(code)
                .or_default() += 1;
            Outcome::Retry
        }
    })
}

async fn produce_partition(shared: Arc<Shared>, partition: i32) {
    let mut rng = Rng::derive(shared.settings.seed, u64::from(partition.unsigned_abs()));
    let index = usize::try_from(partition).unwrap_or(usize::MAX);
    let mut sequence: i32 = 0;
    let mut connection: Option<(Arc<Connection>, i16)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let records =
            i32::try_from(rng.between(1, shared.settings.records_per_batch_max)).unwrap_or(1);
        let batch = build_batch(
            shared.producer_id,
            shared.epoch,
            partition,
            sequence,
            records,
        );
        if let Some(book) = shared
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .partitions
            .get_mut(index)
        {
            book.in_doubt = Some((sequence, records));
        }
        let mut sends = 0_u64;
        let base_offset = loop {
            let (current, version) = match &connection {
                Some((current, version)) => (Arc::clone(current), *version),
                None => match connect(&shared.settings.bootstrap).await.and_then(
                    |(current, versions)| {
                        let version = versions
                            .pick(ApiKey::Produce, VersionRange { min: 3, max: 9 })
                            .map_err(anyhow::Error::msg)?;
                        Ok((current, version))
                    },
                ) {
                    Ok((current, version)) => {
                        shared
                            .stats
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .connects += 1;
                        connection = Some((Arc::clone(&current), version));
                        (current, version)
                    }
                    Err(_) => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                },
            };
            sends += 1;
            if sends > 1 {
                shared
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retries += 1;
            }
            match send_once(&shared, &current, version, partition, &batch).await {
                Ok(Outcome::Acked(base_offset)) => break base_offset,
                Ok(Outcome::Retry) => tokio::time::sleep(RETRY_PAUSE).await,
                Ok(Outcome::Fatal(reason)) => {
                    shared
                        .stats
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .fatal
                        .push(reason);
                    return;
                }
                Err(error) => {
                    *shared
                        .stats
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .call_failures
                        .entry(error.kind().to_owned())
                        .or_default() += 1;
                    // A late answer on this connection would belong to an abandoned call: a
                    // retry always goes on a new one.
                    connection = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        {
            let mut ledger = shared.ledger.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(book) = ledger.partitions.get_mut(index) {
                book.acked.push(AckedBatch {
                    base_offset,
                    base_sequence: sequence,
                    records,
                });
                book.in_doubt = None;
            }
        }
        shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .batches_acked += 1;
        sequence = sequence.wrapping_add(records);
        tokio::time::sleep(shared.settings.pace).await;
    }
}

/// Each partition's `(log start offset, high watermark)`, asked once (ListOffsets earliest and
/// latest); `Err` while the agent does not answer or answers an error.
pub async fn watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let (connection, versions) = connect(bootstrap).await?;
    let version = versions
        .pick(ApiKey::ListOffsets, VersionRange { min: 1, max: 7 })
        .map_err(anyhow::Error::msg)?;
    let mut answers = Vec::new();
    for timestamp in [-2_i64, -1] {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        (0..partitions)
                            .map(|partition| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(partition)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    ),
            ]);
        let answer = connection
            .call_with_timeout(version, &request, CALL_LIMIT)
            .await?
            .body;
        let mut offsets = vec![None; usize::try_from(partitions)?];
        for found in answer.topics.iter().flat_map(|t| t.partitions.iter()) {
            anyhow::ensure!(
                found.error_code == 0,
                "ListOffsets partition {}: error {}",
                found.partition_index,
                found.error_code
            );
            if let Some(slot) = usize::try_from(found.partition_index)
                .ok()
                .and_then(|index| offsets.get_mut(index))
            {
                *slot = Some(found.offset);
            }
        }
        answers.push(
            offsets
                .into_iter()
                .collect::<Option<Vec<i64>>>()
                .context("ListOffsets answer without every partition")?,
        );
    }
    let [earliest, latest] = <[Vec<i64>; 2]>::try_from(answers)
        .map_err(|_| anyhow::anyhow!("two ListOffsets answers"))?;
    Ok(earliest.into_iter().zip(latest).collect())
}

/// Asks for the watermarks until the agent answers (or `limit` passes): how long after its start
/// a restarted agent serves the topic, and what it serves.
pub async fn wait_for_watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    limit: Duration,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let deadline = Instant::now() + limit;
    loop {
        match watermarks(bootstrap, topic, partitions).await {
            Ok(found) => return Ok(found),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("no watermarks after {limit:?}")));
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Reads every partition from its log start offset to its high watermark (asked first), and
/// decodes each record's identity.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    limit: Duration,
) -> anyhow::Result<Vec<PartitionRead>> {
    let marks = wait_for_watermarks(bootstrap, topic, partitions, limit).await?;
    let (connection, versions) = connect(bootstrap).await?;
    let version = versions
        .pick(ApiKey::Fetch, VersionRange { min: 4, max: 12 })
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + limit;
    let mut reads = Vec::with_capacity(marks.len());
    for (partition, (log_start_offset, high_watermark)) in (0..partitions).zip(marks) {
        let mut read = PartitionRead {
            log_start_offset,
            high_watermark,
            records: Vec::new(),
        };
        let mut next = log_start_offset;
        while next < high_watermark {
            anyhow::ensure!(
                Instant::now() < deadline,
                "partition {partition}: read to {next} of {high_watermark} in {limit:?}"
            );
            let records = fetch(&connection, version, topic, partition, next).await?;
            let before = read.records.len();
            decode_records(&records, partition, next, &mut read.records)?;
            match read.records.get(before..).and_then(<[Served]>::last) {
                Some(last) => next = last.offset + 1,
                None => anyhow::bail!(
                    "partition {partition}: fetch at {next} (high watermark {high_watermark}) returned no record"
                ),
            }
        }
        reads.push(read);
    }
    Ok(reads)
}

async fn fetch(
    connection: &Connection,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Bytes> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(offset)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(4 << 20),
                ]),
        ]);
    let answer = connection
        .call_with_timeout(version, &request, CALL_LIMIT)
        .await?
        .body;
    anyhow::ensure!(answer.error_code == 0, "Fetch: error {}", answer.error_code);
    let data = answer
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .find(|data| data.partition_index == partition)
        .context("Fetch answer without the partition")?;
    anyhow::ensure!(
        data.error_code == 0,
        "Fetch partition {partition} at {offset}: error {}",
        data.error_code
    );
    Ok(data.records.clone().unwrap_or_default())
}

/// Appends the records of `records` (whole batches; a partial batch at the end is what Kafka's
/// size limit cuts and is read again next time) at or after `from`.
fn decode_records(
    records: &Bytes,
    partition: i32,
    from: i64,
    out: &mut Vec<Served>,
) -> anyhow::Result<()> {
    let mut position = 0;
    while let Some(rest) = records.get(position..).filter(|rest| !rest.is_empty()) {
        let Ok(header) = BatchHeader::parse(rest) else {
            break;
        };
        let length = header.total_len();
        if rest.len() < length {
            break;
        }
        let mut batch = records.slice(position..position + length);
        position += length;
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|error| anyhow::anyhow!("partition {partition}: batch: {error:#}"))?;
        for record in set.records.iter().filter(|record| record.offset >= from) {
            let id = record
                .value
                .as_deref()
                .and_then(super::verify::decode_value)
                .filter(|id| {
                    id.producer_id == record.producer_id && id.sequence == record.sequence
                });
            out.push(Served {
                offset: record.offset,
                id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_batch_decodes_to_its_identities_from_the_fetch_offset_on() {
        let mut first = BatchBuilder::new(0).producer(9, 0, 4);
        for delta in 0..3 {
            first = first.record(
                0,
                None,
                &encode_value(RecordId {
                    producer_id: 9,
                    partition: 2,
                    sequence: 4 + delta,
                }),
            );
        }
        first.base_offset = 10;
        let mut records = first.encode().to_vec();
        // A second batch whose header disagrees with its value (sequence 40 vs 7), then a cut one.
        let mut second = BatchBuilder::new(0).producer(9, 0, 40).record(
            0,
            None,
            &encode_value(RecordId {
                producer_id: 9,
                partition: 2,
                sequence: 7,
            }),
        );
        second.base_offset = 13;
        let second = second.encode();
        records.extend_from_slice(&second);
        records.extend_from_slice(&second[..30]);
        let mut out = Vec::new();
        decode_records(&Bytes::from(records), 2, 11, &mut out).unwrap();
        let offsets: Vec<i64> = out.iter().map(|served| served.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13]);
        assert_eq!(out[0].id.unwrap().sequence, 5);
        assert_eq!(out[2].id, None, "header and value disagree");
    }
}
