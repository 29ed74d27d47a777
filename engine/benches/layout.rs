//! Laying out one 8 MiB flush-window object from 512 batches across 100 partitions.
//!
//! The batches are prepared up front; what is measured is the layout: grouping by partition, the
//! index (rkyv) and the trailer. Payload bytes are never copied (proved by the `zero_copy_layout`
//! test in `tests/format_roundtrip.rs`), so the throughput in bytes is far above memory bandwidth:
//! it is the rate at which the encoder can *describe* payload, not move it.
//!
//! Run: `cargo bench -p sluice-engine --bench layout`
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::batch::{BatchBuilder, BatchHeader, validate_batch};
use sluice_engine::format::{EntryHeader, EntryKind, ObjectBuilder};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

const OBJECT_BYTES: usize = 8 * 1024 * 1024;
const BATCH_COUNT: usize = 512;
const PARTITION_COUNT: usize = 100;
const RECORDS_PER_BATCH: usize = 16;

fn prepared_batches() -> Vec<(TopicPartition, BatchHeader, Bytes)> {
    let value_len = OBJECT_BYTES / BATCH_COUNT / RECORDS_PER_BATCH - 32; // leave room for record framing
    (0..BATCH_COUNT)
        .map(|i| {
            let tp =
                TopicPartition::new(TopicId([(i % 7) as u8; 16]), (i % PARTITION_COUNT) as i32);
            let mut builder =
                BatchBuilder::new(1_764_000_000_000 + i as i64).producer(i as i64, 0, 0);
            for record in 0..RECORDS_PER_BATCH {
                builder = builder.record(record as i64, None, &vec![(i + record) as u8; value_len]);
            }
            let batch = builder.encode();
            (tp, validate_batch(&batch).unwrap(), batch)
        })
        .collect()
}

fn layout(c: &mut Criterion) {
    let batches = prepared_batches();
    let payload_bytes: usize = batches.iter().map(|(_, _, batch)| batch.len()).sum();
    let entry = EntryHeader {
        seq: LogSeq(1),
        writer_epoch: 1,
        prev_seq: Some(LogSeq(0)),
        entry_nonce: 7,
        kind: EntryKind::Data,
        created_at_ms: 1_764_000_000_000,
    };
    let mut group = c.benchmark_group("layout");
    group.throughput(Throughput::Bytes(payload_bytes as u64));
    group.bench_function("8MiB_512_batches_100_partitions", |b| {
        b.iter(|| {
            let mut builder = ObjectBuilder::new(entry);
            for (tp, header, batch) in &batches {
                builder.push_batch(*tp, header, batch.clone()).unwrap();
            }
            black_box(builder.finish().unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, layout);
criterion_main!(benches);
