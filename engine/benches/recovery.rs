//! Recovery of a bucket holding 1,000,000 committed batches across 10,000 partitions, from its latest
//! checkpoint, on the local-directory store.
//!
//! The bucket is built for real through the metadata log: 100 topics × 100 partitions, then 2,000
//! entries of 500 single-record batches each (every entry touches 500 partitions), a checkpoint after
//! entry 1,990, and 10 entries after it that recovery must replay from their tails. The bucket is
//! built once per run under `target/` and reused by every iteration (recovery only reads).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_engine::batch::{BatchBuilder, validate_batch};
use sluice_engine::log::{EntryContent, LogConfig, MetadataLog, recover};
use sluice_engine::metadata::Command;
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{TopicId, TopicPartition};

const TOPICS: u32 = 100;
const PARTITIONS_PER_TOPIC: u32 = 100;
const ENTRIES: u32 = 2_000;
const BATCHES_PER_ENTRY: u32 = 500;
const CHECKPOINT_AFTER: u32 = 1_990;

fn topic_id(topic: u32) -> TopicId {
    let mut id = [0u8; 16];
    id[12..].copy_from_slice(&(topic + 1).to_be_bytes());
    TopicId(id)
}

fn config() -> LogConfig {
    LogConfig {
        checkpoint_interval_entries: u64::MAX,
        ..LogConfig::default()
    }
}

async fn build_bucket(store: Arc<dyn ObjectStorage>) {
    let (log, _) = MetadataLog::open(store, config(), 0).await.unwrap();
    let commands = (0..TOPICS)
        .map(|topic| Command::CreateTopic {
            name: format!("topic-{topic}"),
            topic_id: topic_id(topic),
            partition_count: PARTITIONS_PER_TOPIC,
            configs: Default::default(),
        })
        .collect();
    log.append(EntryContent {
        commands,
        ..EntryContent::default()
    })
    .await
    .unwrap();
    let batch = BatchBuilder::new(1_700_000_000_000)
        .record(0, Some(b"key"), b"value")
        .encode();
    let header = validate_batch(&batch).unwrap();
    let partitions_total = TOPICS * PARTITIONS_PER_TOPIC;
    for entry in 0..ENTRIES {
        let batches = (0..BATCHES_PER_ENTRY)
            .map(|i| {
                let partition = (entry * BATCHES_PER_ENTRY + i) % partitions_total;
                let tp = TopicPartition::new(
                    topic_id(partition / PARTITIONS_PER_TOPIC),
                    (partition % PARTITIONS_PER_TOPIC) as i32,
                );
                (tp, header, batch.clone())
            })
            .collect();
        log.append(EntryContent {
            batches,
            commands: Vec::new(),
            created_at_ms: 0,
            send_by: None,
        })
        .await
        .unwrap();
        if entry + 1 == CHECKPOINT_AFTER {
            log.write_checkpoint().await.unwrap();
        }
    }
}

fn recovery(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data/recovery-1m");
    let marker = dir.join("BUILT");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(sluice_engine::store::ObjectStoreBackend::local_dir(&dir).unwrap())
            as Arc<dyn ObjectStorage>;
        let started = Instant::now();
        runtime.block_on(build_bucket(store));
        std::fs::write(&marker, b"").unwrap();
        eprintln!(
            "built the bucket in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let store = Arc::new(sluice_engine::store::ObjectStoreBackend::local_dir(&dir).unwrap())
        as Arc<dyn ObjectStorage>;

    // One cold measurement with its breakdown, then criterion's samples.
    let started = Instant::now();
    let (state, stats) = runtime
        .block_on(recover(store.as_ref(), &config(), None))
        .unwrap();
    let entries: usize = (0..TOPICS)
        .flat_map(|t| {
            (0..PARTITIONS_PER_TOPIC).map(move |p| TopicPartition::new(topic_id(t), p as i32))
        })
        .map(|tp| state.partition(tp).unwrap().index().len())
        .sum();
    eprintln!(
        "recovered {entries} index entries over {} partitions in {:.3} s: checkpoint at {:?}, {} entries replayed",
        state.partition_count_total(),
        started.elapsed().as_secs_f64(),
        stats.checkpoint_seq,
        stats.entries_replayed
    );
    assert_eq!(entries as u64, u64::from(ENTRIES * BATCHES_PER_ENTRY));

    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("1m_batches_10k_partitions_local_dir", |b| {
        b.iter(|| {
            runtime
                .block_on(recover(store.as_ref(), &config(), None))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
