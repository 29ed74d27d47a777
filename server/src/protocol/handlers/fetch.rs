//! Fetch: the fetch session decides which partitions to read, [`crate::fetch::reader`] reads
//! them, and a fetch with less than `min_bytes` ready waits for a commit (long poll) until
//! `max_wait_ms` has passed. A fetch that read the store starts a read-ahead of its partitions'
//! next bytes ([`crate::fetch::readahead`]) before it answers.
//!
//! Byte limits follow the Java broker: partitions are filled in order, each up to the smaller of
//! its `partition_max_bytes` and what is left of the request's `max_bytes`; the first batch of the
//! first partition with data is returned whole even when it is larger (KIP-74), later partitions
//! get nothing rather than a batch that would overflow. Records are whole batches from the one
//! holding the fetch offset, so the consumer skips the records before its offset itself.
//!
//! There are no transactions yet: the last stable offset is the high watermark and no aborted
//! transactions are listed.

use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{Either, SelectAll, select, select_all};
use kafka_protocol::messages::{FetchRequest, TopicName};
use sluice_engine::metadata::IndexEntry;
use sluice_engine::read::{AssembleError, RecordSegments, assemble_parts};
use sluice_engine::types::{TopicId, TopicPartition};

use crate::fetch::readahead::{self, Ahead};
use crate::fetch::reader::{
    GroupRead, PartitionPlan, PlanRequest, ReadError, TopicRef, Want, chunk_bytes, note_answer,
    plan, prefetch_bytes_max, read_entries, read_groups_awaiting, read_more, wants,
};
use crate::fetch::sessions::{PartitionKey, Wanted};
use crate::metadata_core::window::error_code;
use crate::protocol::fetch_frame::{FetchAnswer, PartitionAnswer, TopicAnswer};
use crate::protocol::services::CoreServices;

/// Longest long poll honoured (clients ask for 500 ms by default).
pub const MAX_WAIT_MS_MAX: i32 = 60_000;
/// The leader epoch written into every batch (the agent is the only leader, in epoch 0; see the
/// Metadata handler).
const LEADER_EPOCH: i32 = 0;
/// Fetch v13 names topics by id.
const TOPIC_IDS_FROM_VERSION: i16 = 13;
/// Fetch v7 carries session fields.
const SESSIONS_FROM_VERSION: i16 = 7;
const READ_COMMITTED: i8 = 1;

/// One partition's answer.
#[derive(Debug)]
struct PartitionResult {
    key: PartitionKey,
    wanted: Wanted,
    tp: Option<TopicPartition>,
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    /// Rewritten batch headers and zero-copy slices of the cached bytes (sent with vectored writes).
    records: RecordSegments,
    /// Where the next fetch of this partition starts (after `records`; else the fetch offset).
    next_offset: i64,
}

/// One read of every partition.
#[derive(Debug, Default)]
struct Attempt {
    partitions: Vec<PartitionResult>,
    bytes: usize,
    /// Some partition has an error, or data was held back by `max_bytes`: answer now.
    answer_now: bool,
    /// Some partition was left unread while the fetch waited for other partitions' chunks
    /// ([`ReadError::NotRead`]): it has data, so reading again serves it rather than a long poll.
    deferred: bool,
}

/// Handles one Fetch request.
pub async fn handle(services: &CoreServices, request: FetchRequest, version: i16) -> FetchAnswer {
    let by_id = version >= TOPIC_IDS_FROM_VERSION;
    let requested = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                let key = partition_key(by_id, topic.topic_id, &topic.topic, partition.partition);
                let wanted = Wanted {
                    fetch_offset: partition.fetch_offset,
                    partition_max_bytes: partition.partition_max_bytes,
                };
                (key, wanted)
            })
        })
        .collect();
    let forgotten = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                partition_key(by_id, topic.topic_id, &topic.topic, *partition)
            })
        })
        .collect();
    let (session_id, epoch) = if version >= SESSIONS_FROM_VERSION {
        (request.session_id, request.session_epoch)
    } else {
        (0, -1)
    };
    let began = services
        .fetch
        .sessions
        .borrow_mut()
        .begin(session_id, epoch, requested, forgotten);
    let context = match began {
        Ok(context) => context,
        Err(code) => {
            return FetchAnswer {
                error_code: code,
                session_id: 0,
                ..FetchAnswer::default()
            };
        }
    };

    // A read-ahead started by this client's last fetch may be reading these very bytes.
    let replaying = readahead::claim(
        &services.fetch,
        context
            .partitions
            .iter()
            .map(|(key, wanted)| (key, wanted.fetch_offset)),
    )
    .await;
    let store_reads_before = services.fetch.store_reads().0;
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let attempt = loop {
        let attempt = read_once(services, &context.partitions, max_bytes, by_id).await;
        let now = Instant::now();
        if attempt.bytes >= min_bytes || attempt.answer_now || now >= deadline {
            break attempt;
        }
        if attempt.deferred {
            // Partitions with data were left for the next round; each round waits for the
            // chunks of some of them, and what the last one read is cached now.
            continue;
        }
        match park(services, &attempt) {
            Some(woken) => {
                let timeout = glommio::timer::sleep(deadline - now);
                futures::pin_mut!(timeout);
                if let Either::Right(_) = select(woken, timeout).await {
                    // Time is up: read once more (a commit may have landed with the timer).
                    break read_once(services, &context.partitions, max_bytes, by_id).await;
                }
            }
            None => break attempt,
        }
    };
    // This fetch read the store, or a read-ahead for it did: a replay; read its next bytes now.
    if replaying || services.fetch.store_reads().0 > store_reads_before {
        read_ahead(services, &attempt, max_bytes, by_id);
    }
    let read_committed = request.isolation_level == READ_COMMITTED;
    respond(services, &context, attempt, by_id, read_committed)
}

fn partition_key(
    by_id: bool,
    topic_id: uuid::Uuid,
    topic: &TopicName,
    partition: i32,
) -> PartitionKey {
    if by_id {
        PartitionKey {
            topic_id,
            topic: Default::default(),
            partition,
        }
    } else {
        PartitionKey {
            topic_id: uuid::Uuid::nil(),
            topic: topic.0.clone(),
            partition,
        }
    }
}

/// A future that resolves when a commit brings new data to one of the partitions; `None` when
/// the fetch should not wait.
fn park(services: &CoreServices, attempt: &Attempt) -> Option<SelectAll<oneshot::Receiver<()>>> {
    let mut waits = Vec::new();
    for partition in &attempt.partitions {
        let Some(tp) = partition.tp else { continue };
        let Ok(offset) = u64::try_from(partition.wanted.fetch_offset) else {
            continue;
        };
        if partition.records.is_empty() && partition.wanted.fetch_offset < partition.high_watermark
        {
            // Data is there but was not returned (a zero budget): waiting would not change that.
            return None;
        }
        // A partition that returned records (fewer bytes than `min_bytes` in all) waits for data
        // past what it has; the others for any data at their fetch offset.
        let beyond = if partition.records.is_empty() {
            offset
        } else {
            u64::try_from(partition.high_watermark).unwrap_or(offset)
        };
        // `None`: this core parks too many fetches already; answer with what there is.
        waits.push(services.watermark_waiters.wait_beyond(tp, beyond)?);
    }
    if waits.is_empty() {
        return None;
    }
    Some(select_all(waits))
}

async fn read_once(
    services: &CoreServices,
    partitions: &[(PartitionKey, Wanted)],
    max_bytes: usize,
    by_id: bool,
) -> Attempt {
    let requests: Vec<PlanRequest> = partitions
        .iter()
        .map(|(key, wanted)| plan_request(key, *wanted, wanted.fetch_offset, max_bytes, by_id))
        .collect();
    let started = Instant::now();
    let plans = match services
        .core
        .query(move |state| plan(state, &requests))
        .await
    {
        Ok(plans) => plans,
        Err(_) => partitions
            .iter()
            .map(|_| Err(error_code::NOT_LEADER_OR_FOLLOWER))
            .collect(),
    };
    let planned_in = started.elapsed();
    let (reads_before, read_bytes_before) = services.fetch.store_reads();
    let entries: usize = plans
        .iter()
        .flatten()
        .map(|planned| planned.entries.len())
        .sum();
    let mut prefetched = prefetch(services, partitions, &plans, max_bytes).await;
    let read_in = started.elapsed() - planned_in;
    let (reads_after, read_bytes_after) = services.fetch.store_reads();
    let mut attempt = Attempt::default();
    for (index, ((key, wanted), planned)) in partitions.iter().zip(&plans).enumerate() {
        let mut read = prefetched.get_mut(index).and_then(Option::take);
        let wants_bytes = matches!(planned, Ok(planned) if !planned.entries.is_empty());
        if read.is_none() && wants_bytes && attempt.bytes < max_bytes {
            // The estimate fell short and the answer has room: read every partition still to
            // come at once (within what is left of `max_bytes`), not one GET after another.
            let more = prefetch(
                services,
                partitions.get(index..).unwrap_or_default(),
                plans.get(index..).unwrap_or_default(),
                max_bytes - attempt.bytes,
            )
            .await;
            for (slot, more) in prefetched.iter_mut().skip(index).zip(more) {
                *slot = more;
            }
            read = prefetched.get_mut(index).and_then(Option::take);
        }
        let result = match planned {
            Ok(planned) => {
                read_partition(
                    services,
                    key,
                    *wanted,
                    planned.clone(),
                    read,
                    max_bytes,
                    &mut attempt,
                )
                .await
            }
            Err(code) => error_result(key, *wanted, *code),
        };
        attempt.answer_now |= result.error_code != 0;
        attempt.partitions.push(result);
    }
    tracing::debug!(
        partitions = partitions.len(),
        entries,
        gets = reads_after - reads_before,
        get_bytes = read_bytes_after - read_bytes_before,
        bytes = attempt.bytes,
        planned_ms = planned_in.as_millis() as u64,
        read_ms = read_in.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "fetch: read once"
    );
    attempt
}

/// Partitions per core whose missing chunks a fetch's prefetch waits for: all of them. Waiting
/// for at most [`crate::fetch::reader::CHUNK_GROUPS_AWAITED_MAX`] (the others answered without
/// records, read by the read-ahead) cut a compacted replay's first record but halved its MB/s in
/// the measurements of docs/benchmarks.md, so it is not used until that is understood.
const PREFETCH_CHUNK_GROUPS_AWAITED_MAX: usize = usize::MAX;

/// Bytes of one partition's entries, read ahead of assembly.
type Prefetched = GroupRead;

/// Reads, all at once, the entries of the partitions that the response's `max_bytes` will likely
/// reach (each partition's indexed bytes capped by its budget; the first partition with data
/// always). Against an object store a miss costs a GET of tens of milliseconds: one partition
/// after another, a consumer catching up on many partitions would wait for their sum; together,
/// segments of one object become one GET ([`read_groups_awaiting`]). What is read is what the answer
/// needs: each chosen partition's entries up to its budget, the last entry whole.
async fn prefetch(
    services: &CoreServices,
    partitions: &[(PartitionKey, Wanted)],
    plans: &[Result<PartitionPlan, i16>],
    max_bytes: usize,
) -> Vec<Option<Prefetched>> {
    let mut planned_bytes: u64 = 0;
    let read_bytes_max = prefetch_bytes_max(max_bytes as u64);
    let chunk = chunk_bytes(services.fetch.agent_cache_bytes(), partitions.len());
    let mut chosen = Vec::with_capacity(plans.len());
    let mut group_wants: Vec<Vec<Want>> = Vec::new();
    for ((_, wanted), planned) in partitions.iter().zip(plans) {
        match planned {
            Ok(planned)
                if !planned.entries.is_empty()
                    && (planned_bytes == 0 || planned_bytes < read_bytes_max) =>
            {
                planned_bytes += answer_bytes_estimate(&planned.entries, *wanted, max_bytes);
                chosen.push(true);
                group_wants.push(partition_wants(
                    services, planned, *wanted, max_bytes, chunk,
                ));
            }
            _ => chosen.push(false),
        }
    }
    let groups: Vec<&[Want]> = group_wants.iter().map(Vec::as_slice).collect();
    let mut read = read_groups_awaiting(
        &services.fetch,
        services.core.store(),
        &groups,
        PREFETCH_CHUNK_GROUPS_AWAITED_MAX,
        false,
    )
    .await
    .into_iter();
    chosen
        .into_iter()
        .map(|chosen| if chosen { read.next() } else { None })
        .collect()
}

/// What a partition's entries will add to the answer: their bytes, but no more than the
/// partition's budget — an entry holding several batches is read whole, yet the answer takes only
/// what fits. Counting whole entries would stop the prefetch after a fraction of the partitions
/// the answer then fills (each of the rest waiting for its own GET).
fn answer_bytes_estimate(entries: &[IndexEntry], wanted: Wanted, max_bytes: usize) -> u64 {
    let budget = usize::try_from(wanted.partition_max_bytes)
        .unwrap_or(0)
        .min(max_bytes) as u64;
    let entries_bytes: u64 = entries.iter().map(|entry| entry.byte_len).sum();
    entries_bytes.min(budget.max(1))
}

/// The bytes to read of a partition's planned entries ([`wants`]): its fetch offset, its budget.
fn partition_wants(
    services: &CoreServices,
    planned: &PartitionPlan,
    wanted: Wanted,
    max_bytes: usize,
    chunk: u64,
) -> Vec<Want> {
    let budget = usize::try_from(wanted.partition_max_bytes)
        .unwrap_or(0)
        .min(max_bytes) as u64;
    wants(
        &services.fetch.positions.borrow(),
        &planned.entries,
        u64::try_from(wanted.fetch_offset).unwrap_or(0),
        budget,
        chunk,
    )
}

async fn read_partition(
    services: &CoreServices,
    key: &PartitionKey,
    wanted: Wanted,
    planned: PartitionPlan,
    prefetched: Option<Prefetched>,
    max_bytes: usize,
    attempt: &mut Attempt,
) -> PartitionResult {
    let mut result = PartitionResult {
        key: key.clone(),
        wanted,
        tp: Some(planned.tp),
        error_code: 0,
        high_watermark: i64::try_from(planned.high_watermark).unwrap_or(i64::MAX),
        log_start_offset: i64::try_from(planned.log_start_offset).unwrap_or(i64::MAX),
        records: RecordSegments::default(),
        next_offset: wanted.fetch_offset,
    };
    if planned.entries.is_empty() {
        return result;
    }
    let left = max_bytes.saturating_sub(attempt.bytes);
    if attempt.bytes > 0 && left == 0 {
        attempt.answer_now = true;
        return result;
    }
    let limit = usize::try_from(wanted.partition_max_bytes)
        .unwrap_or(0)
        .min(left);
    let read = match prefetched {
        Some(read) => read,
        None => {
            let chunk = chunk_bytes(services.fetch.agent_cache_bytes(), 1);
            let wants = partition_wants(services, &planned, wanted, max_bytes, chunk);
            read_entries(&services.fetch, services.core.store(), &wants).await
        }
    };
    let mut parts = match read {
        Ok(parts) => parts,
        Err(ReadError::NotRead) => {
            // Its chunks are read by the read-ahead after this answer (or the next round).
            attempt.deferred = true;
            return result;
        }
        Err(error) => {
            tracing::warn!(%error, tp = %planned.tp, "fetch: cannot read a segment");
            return error_result(key, wanted, error_code::KAFKA_STORAGE_ERROR);
        }
    };
    // `find_from` succeeded, so the offset is not negative.
    let offset = u64::try_from(wanted.fetch_offset).unwrap_or(0);
    let mut assembled = assemble_parts(&parts, offset, limit, LEADER_EPOCH);
    if let (Err(AssembleError::Short { needed_end, .. }), Some(first)) = (&assembled, parts.first())
    {
        // The first batch is longer than the budget-sized prefix read of a compacted entry.
        match read_more(&services.fetch, services.core.store(), first, *needed_end).await {
            Ok(more) => {
                parts = more;
                assembled = assemble_parts(&parts, offset, limit, LEADER_EPOCH);
            }
            Err(error) => {
                tracing::warn!(%error, tp = %planned.tp, "fetch: cannot read a segment");
                return error_result(key, wanted, error_code::KAFKA_STORAGE_ERROR);
            }
        }
    }
    match assembled {
        // Only the first partition with data may go over its budget (KIP-74).
        Ok(assembled) if attempt.bytes > 0 && assembled.records.len() > limit => {
            attempt.answer_now = true
        }
        Ok(assembled) => {
            note_answer(&services.fetch, &parts, offset, &assembled);
            attempt.bytes += assembled.records.len();
            result.records = assembled.records;
            result.next_offset = i64::try_from(assembled.next_offset).unwrap_or(i64::MAX);
        }
        Err(error) => {
            tracing::error!(%error, tp = %planned.tp, "fetch: stored bytes do not match the index");
            return error_result(key, wanted, error_code::KAFKA_STORAGE_ERROR);
        }
    }
    result
}

fn error_result(key: &PartitionKey, wanted: Wanted, code: i16) -> PartitionResult {
    PartitionResult {
        key: key.clone(),
        wanted,
        // No waiting on a partition in error.
        tp: None,
        error_code: code,
        high_watermark: -1,
        log_start_offset: -1,
        records: RecordSegments::default(),
        next_offset: wanted.fetch_offset,
    }
}

/// Starts reading what the next fetch of these partitions will want (see
/// [`crate::fetch::readahead`]): every partition with data past where this answer leaves it,
/// those this answer skipped first (clients put them first in their next fetch).
fn read_ahead(services: &CoreServices, attempt: &Attempt, max_bytes: usize, by_id: bool) {
    let behind = |result: &&PartitionResult| {
        result.tp.is_some() && result.error_code == 0 && result.next_offset < result.high_watermark
    };
    let (served, skipped): (Vec<&PartitionResult>, Vec<&PartitionResult>) = attempt
        .partitions
        .iter()
        .filter(behind)
        .partition(|result| !result.records.is_empty());
    let partitions: Vec<Ahead> = skipped
        .into_iter()
        .chain(served)
        .map(|result| Ahead {
            key: result.key.clone(),
            request: plan_request(
                &result.key,
                result.wanted,
                result.next_offset,
                max_bytes,
                by_id,
            ),
        })
        .collect();
    readahead::start(
        &services.fetch,
        &services.core,
        partitions,
        max_bytes as u64,
    );
}

fn plan_request(
    key: &PartitionKey,
    wanted: Wanted,
    fetch_offset: i64,
    max_bytes: usize,
    by_id: bool,
) -> PlanRequest {
    PlanRequest {
        topic: if by_id {
            TopicRef::Id(TopicId::from_uuid(key.topic_id))
        } else {
            TopicRef::Name(key.topic.to_string())
        },
        partition: key.partition,
        fetch_offset,
        bytes_max: (usize::try_from(wanted.partition_max_bytes)
            .unwrap_or(0)
            .min(max_bytes)) as u64,
    }
}

fn respond(
    services: &CoreServices,
    context: &crate::fetch::SessionContext,
    attempt: Attempt,
    by_id: bool,
    read_committed: bool,
) -> FetchAnswer {
    let mut sessions = services.fetch.sessions.borrow_mut();
    let last_with_records = attempt
        .partitions
        .iter()
        .rposition(|result| !result.records.is_empty());
    if let (true, Some(last)) = (context.incremental, last_with_records) {
        sessions.served(context.session_id, last);
    }
    let mut topics: Vec<TopicAnswer> = Vec::new();
    let mut last_topic: Option<(uuid::Uuid, kafka_protocol::protocol::StrBytes)> = None;
    for result in attempt.partitions {
        let must_send = !result.records.is_empty() || result.error_code != 0;
        let changed = sessions.record_sent(
            context.session_id,
            &result.key,
            result.high_watermark,
            result.log_start_offset,
            must_send,
        );
        if context.incremental && !changed {
            continue;
        }
        let data = PartitionAnswer {
            partition_index: result.key.partition,
            error_code: result.error_code,
            high_watermark: result.high_watermark,
            last_stable_offset: result.high_watermark,
            log_start_offset: result.log_start_offset,
            aborted_transactions: read_committed.then(Vec::new),
            preferred_read_replica: -1,
            records: Some(result.records),
        };
        let topic_of = (result.key.topic_id, result.key.topic.clone());
        match topics.last_mut() {
            Some(topic) if last_topic.as_ref() == Some(&topic_of) => topic.partitions.push(data),
            _ => {
                // By id from v13 (the name is not sent), by name before (the id is not sent).
                topics.push(TopicAnswer {
                    topic: if by_id {
                        TopicName::default()
                    } else {
                        TopicName(result.key.topic.clone())
                    },
                    topic_id: if by_id {
                        result.key.topic_id
                    } else {
                        uuid::Uuid::nil()
                    },
                    partitions: vec![data],
                });
                last_topic = Some(topic_of);
            }
        }
    }
    FetchAnswer {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: context.session_id,
        topics,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use bytes::{Buf, Bytes};

    use super::*;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::protocol::StrBytes;

    use crate::protocol::apis::supported_api;
    use crate::protocol::client_codec::encode_request;
    use crate::protocol::codec::{DecodeError, Decoded, Request, decode_request};

    fn request(version: i16) -> FetchRequest {
        let topic = |name: &'static str, id: u128| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(name)))
                .with_topic_id(uuid::Uuid::from_u128(id))
                .with_partitions(
                    (0..2)
                        .map(|index| {
                            FetchPartition::default()
                                .with_partition(index)
                                .with_fetch_offset(10 + i64::from(index))
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(1 << 24)
            .with_topics(vec![topic("a", 1), topic("b", 2)]);
        if version < SESSIONS_FROM_VERSION {
            return request;
        }
        let forgotten = ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("c")))
            .with_topic_id(uuid::Uuid::from_u128(3))
            .with_partitions(vec![0, 1, 2]);
        let request = request
            .with_session_id(42)
            .with_session_epoch(7)
            .with_forgotten_topics_data(vec![forgotten]);
        if version >= 11 {
            request.with_rack_id(StrBytes::from_static_str("rack-1"))
        } else {
            request
        }
    }

    fn frame(version: i16, body: &FetchRequest) -> Bytes {
        let mut frame = encode_request(ApiKey::Fetch, version, 9, Some("t"), body).unwrap();
        frame.advance(4);
        frame
    }

    #[test]
    fn every_advertised_version_passes_the_shape_check_and_decodes() {
        let api = supported_api(ApiKey::Fetch).unwrap();
        for version in api.version_min..=api.version_max {
            let body = request(version);
            let decoded = decode_request(frame(version, &body));
            let Ok(Decoded::Request(decoded)) = decoded else {
                panic!("v{version}: {decoded:?}");
            };
            let Request::Fetch(fetch) = decoded.body else {
                panic!("v{version}: not a fetch");
            };
            assert_eq!(fetch.topics.len(), 2, "v{version}");
            assert_eq!(fetch.topics[1].partitions[1].fetch_offset, 11, "v{version}");
            if version >= SESSIONS_FROM_VERSION {
                assert_eq!(
                    fetch.forgotten_topics_data[0].partitions,
                    vec![0, 1, 2],
                    "v{version}"
                );
                assert_eq!((fetch.session_id, fetch.session_epoch), (42, 7));
            }
        }
    }

    #[test]
    fn an_inflated_partition_count_is_refused_before_decoding() {
        for version in [4_i16, 7, 11, 12, 13, 15, 17] {
            let valid = frame(version, &request(version)).to_vec();
            // The first topic, then its partition count (2), as each version encodes them.
            let (before, inflated): (Vec<u8>, Vec<u8>) = match version {
                ..=11 => (
                    [&[0, 1, b'a'][..], &[0, 0, 0, 2]].concat(),
                    vec![0x7f, 0xff, 0xff, 0xff],
                ),
                12 => (vec![2, b'a', 3], vec![0xff, 0xff, 0xff, 0xff, 0x07]),
                _ => {
                    let id = uuid::Uuid::from_u128(1).into_bytes();
                    ([&id[..], &[3]].concat(), vec![0xff, 0xff, 0xff, 0xff, 0x07])
                }
            };
            let at = valid
                .windows(before.len())
                .position(|window| window == before)
                .unwrap();
            let count_at = at + before.len() - if version <= 11 { 4 } else { 1 };
            let mut mutated = valid[..count_at].to_vec();
            mutated.extend_from_slice(&inflated);
            mutated.extend_from_slice(&valid[at + before.len()..]);
            assert!(
                matches!(
                    decode_request(Bytes::from(mutated)),
                    Err(DecodeError::MalformedBody { .. })
                ),
                "v{version}"
            );
        }
    }
}
