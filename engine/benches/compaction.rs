//! Compaction jobs' throughput and request cost, on the in-memory store (so the figures are the
//! job's CPU, not a network's).
//!
//! The bucket is the fraud load's shape: 12 partitions, windows of about 50 KB (10 ms of 5 MB/s),
//! each holding one batch of 1 KiB records per partition — written for real through the metadata
//! log. `object/32MiB` plans and builds one object compaction job (one GET per window object, the
//! batch CRCs checked, one PUT); `keys/32MiB` key-compacts one partition's 32 MiB of updates over
//! 1,000 keys (every record decoded twice, the survivors recompressed with lz4). Each iteration
//! writes a new compacted object; the swap is not applied, so every iteration does the same work.
//!
//! Run: `cargo bench -p sluice-engine --bench compaction`. The report line after the criterion
//! output gives MB/s and the GET and PUT counts per GB of input.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::batch::{
    BATCH_HEADER_LEN, BatchBuilder, Compression, RecordSpec, codec, validate_batch,
};
use sluice_engine::compact::key_job::build_key_compacted;
use sluice_engine::compact::keys::KeyCompactionLimits;
use sluice_engine::compact::{CompactionConfig, build_compacted_object};
use sluice_engine::log::{EntryContent, LogConfig, MetadataLog};
use sluice_engine::metadata::{Command, MetadataState, RetentionDefaults};
use sluice_engine::store::{ObjectStorage, ObjectStoreBackend};
use sluice_engine::types::{TopicId, TopicPartition, compacted_object_id};

const PARTITIONS: u32 = 12;
const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 4;
const TARGET: u64 = 32 * 1024 * 1024;

fn topic_id(n: u8) -> TopicId {
    TopicId([n; 16])
}

fn lz4_batch(records: &[(Vec<u8>, Vec<u8>)]) -> (sluice_engine::batch::BatchHeader, Bytes) {
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for (index, (key, value)) in records.iter().enumerate() {
        builder.records.push(RecordSpec {
            timestamp_delta: 0,
            offset_delta: index as i32,
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
        });
    }
    let plain = builder.encode();
    let body = codec::compress(Compression::Lz4, &plain[BATCH_HEADER_LEN..]).unwrap();
    let mut out = BytesMut::from(&plain[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&body);
    let length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[21..23].copy_from_slice(&3i16.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    let bytes = out.freeze();
    (validate_batch(&bytes).unwrap(), bytes)
}

/// A log of windows: `windows` entries, each one batch per partition of `topic`.
async fn build_log(
    topic: (&str, TopicId, &[(&str, &str)]),
    windows: u32,
    keys: u32,
) -> (MetadataLog, Arc<dyn ObjectStorage>) {
    let store: Arc<dyn ObjectStorage> = Arc::new(ObjectStoreBackend::in_memory());
    let config = LogConfig {
        checkpoint_interval_entries: u64::MAX,
        ..LogConfig::default()
    };
    let (log, _) = MetadataLog::open(Arc::clone(&store), config, 0)
        .await
        .unwrap();
    let configs = topic
        .2
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let create = Command::CreateTopic {
        name: topic.0.to_owned(),
        topic_id: topic.1,
        partition_count: PARTITIONS,
        configs,
    };
    log.append(EntryContent {
        commands: vec![create],
        ..EntryContent::default()
    })
    .await
    .unwrap();
    let mut update = 0u32;
    for _ in 0..windows {
        let mut batches = Vec::new();
        for partition in 0..PARTITIONS {
            let records: Vec<(Vec<u8>, Vec<u8>)> = (0..RECORDS_PER_BATCH)
                .map(|_| {
                    update += 1;
                    let key = format!("key-{:05}", update % keys).into_bytes();
                    // Incompressible, like the fraud load's payloads: lz4 keeps them at 1 KiB.
                    let mut state = u64::from(update) | 1;
                    let value: Vec<u8> = (0..RECORD_BYTES)
                        .map(|_| {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state as u8
                        })
                        .collect();
                    (key, value)
                })
                .collect();
            let (header, bytes) = lz4_batch(&records);
            batches.push((
                TopicPartition::new(topic.1, partition as i32),
                header,
                bytes,
            ));
        }
        log.append(EntryContent {
            batches,
            commands: Vec::new(),
            created_at_ms: 0,
            send_by: None,
        })
        .await
        .unwrap();
    }
    (log, store)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let job = AtomicU32::new(0);

    // Object compaction: enough windows for one 32 MiB job.
    let (log, store) = runtime.block_on(build_log(("fraud", topic_id(1), &[]), 800, 1_000_000));
    let config = CompactionConfig {
        object_bytes_target: TARGET,
        ..CompactionConfig::default()
    };
    let plan = log.with_state(|state| {
        state.compaction_plan(&config, &RetentionDefaults::default(), i64::MAX / 2)
    });
    let input_bytes: u64 = plan
        .iter()
        .flat_map(|range| range.entries.iter())
        .map(|entry| entry.byte_len)
        .sum();
    let mut group = c.benchmark_group("compaction");
    group.throughput(Throughput::Bytes(input_bytes));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("object/32MiB", |b| {
        b.iter(|| {
            let id = compacted_object_id(1, job.fetch_add(1, Ordering::Relaxed));
            let object = runtime
                .block_on(build_compacted_object(store.as_ref(), &plan, id, 1, 0))
                .unwrap();
            // The in-memory store would otherwise keep every iteration's object.
            runtime.block_on(store.delete(&object.key)).unwrap();
        })
    });
    let started = Instant::now();
    let object = runtime
        .block_on(build_compacted_object(
            store.as_ref(),
            &plan,
            compacted_object_id(1, 999_999),
            1,
            0,
        ))
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let gb = input_bytes as f64 / 1e9;
    eprintln!(
        "object compaction: {:.1} MB in {} entries, {:.0} MB/s, {:.0} GET/GB, {:.0} PUT/GB",
        input_bytes as f64 / 1e6,
        plan.iter().map(|range| range.entries.len()).sum::<usize>(),
        input_bytes as f64 / 1e6 / seconds,
        object.objects_read as f64 / gb,
        1.0 / gb
    );

    // Key compaction: one partition of a compacted topic, 1,000 keys.
    let (log, store) = runtime.block_on(build_log(
        ("table", topic_id(2), &[("cleanup.policy", "compact")]),
        700,
        1_000,
    ));
    let candidates = log.with_state(|state: &MetadataState| {
        state.key_compaction_candidates(i64::MAX / 2, 256 << 20)
    });
    let candidate = candidates.into_iter().next().unwrap();
    let input_bytes: u64 = candidate.entries.iter().map(|entry| entry.byte_len).sum();
    group.throughput(Throughput::Bytes(input_bytes));
    let limits = KeyCompactionLimits::default();
    group.bench_function("keys/partition", |b| {
        b.iter(|| {
            let compacted = runtime
                .block_on(build_key_compacted(
                    store.as_ref(),
                    &candidate,
                    TARGET,
                    &limits,
                    1,
                    0,
                    || Some(compacted_object_id(2, job.fetch_add(1, Ordering::Relaxed))),
                ))
                .unwrap();
            for id in compacted.objects {
                runtime
                    .block_on(store.delete(&sluice_engine::types::object_key(id)))
                    .unwrap();
            }
        })
    });
    group.finish();
    let started = Instant::now();
    let compacted = runtime
        .block_on(build_key_compacted(
            store.as_ref(),
            &candidate,
            TARGET,
            &limits,
            1,
            0,
            || Some(compacted_object_id(3, job.fetch_add(1, Ordering::Relaxed))),
        ))
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "key compaction: {:.1} MB, {} records -> {} kept, {:.0} MB/s, {} GETs, {} PUTs",
        input_bytes as f64 / 1e6,
        compacted.stats.records_read,
        compacted.stats.records_kept,
        input_bytes as f64 / 1e6 / seconds,
        candidate.entries.len(),
        compacted.objects.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
