//! The metadata state machine's hot paths: applying a data commit, and decoding a checkpoint
//! (which bounds recovery time).
//!
//! Run: `cargo bench -p sluice-engine --bench commit`

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::metadata::{
    BatchCommit, Command, EntryKind, EntryMeta, EntryOutcome, MetadataState, ObjectCommit,
    SegmentCommit,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

/// A claimed log with `topic_count` topics of `partitions_per_topic` partitions each.
fn state_with_topics(topic_count: u32, partitions_per_topic: u32) -> MetadataState {
    let mut state = MetadataState::new();
    let claim = EntryMeta {
        seq: LogSeq(0),
        writer_epoch: 1,
        prev_seq: None,
        kind: EntryKind::Claim,
    };
    let commands: Vec<Command> = (0..topic_count)
        .map(|topic| Command::CreateTopic {
            name: format!("topic-{topic}"),
            topic_id: topic_id(topic),
            partition_count: partitions_per_topic,
            configs: BTreeMap::new(),
        })
        .collect();
    let EntryOutcome::Applied(events) = state.apply_entry(&claim, &commands, None) else {
        panic!("claim ignored")
    };
    assert_eq!(events.len(), 1 + commands.len());
    state
}

fn topic_id(topic: u32) -> TopicId {
    let mut bytes = [0xAB; 16];
    bytes[..4].copy_from_slice(&topic.to_le_bytes());
    TopicId(bytes)
}

/// One object's commit: one segment for every partition, 10 offsets each.
fn commit_touching_all(seq: LogSeq, topic_count: u32, partitions_per_topic: u32) -> ObjectCommit {
    let mut segments = Vec::with_capacity((topic_count * partitions_per_topic) as usize);
    for topic in 0..topic_count {
        for partition in 0..partitions_per_topic {
            let at = segments.len() as u64;
            segments.push(SegmentCommit {
                tp: TopicPartition::new(topic_id(topic), partition as i32),
                byte_start: at * 4096,
                byte_len: 4096,
                batch_count: 1,
                offset_count: 10,
                record_count: 10,
                max_timestamp: 1_700_000_000_000 + seq.0 as i64,
                batches: Vec::new(),
            });
        }
    }
    let object_len = segments.len() as u64 * 4096;
    ObjectCommit {
        seq,
        object_len,
        segments,
    }
}

/// Applies `entry_count` commits touching every partition.
fn fill(state: &mut MetadataState, entry_count: u64, topic_count: u32, partitions_per_topic: u32) {
    for _ in 0..entry_count {
        let seq = state.last_offered_seq().unwrap().next();
        let meta = EntryMeta {
            seq,
            writer_epoch: 1,
            prev_seq: state.last_valid_seq(),
            kind: EntryKind::Data,
        };
        let commit = commit_touching_all(seq, topic_count, partitions_per_topic);
        assert!(matches!(
            state.apply_entry(&meta, &[], Some(&commit)),
            EntryOutcome::Applied(_)
        ));
    }
}

fn bench_commit(c: &mut Criterion) {
    const TOPICS: u32 = 10;
    const PARTITIONS: u32 = 100;
    let mut group = c.benchmark_group("apply_commit");
    group.throughput(Throughput::Elements(u64::from(TOPICS * PARTITIONS)));
    // 1,000 partitions already holding 1,000 entries each (1,000,000 index entries).
    let mut state = state_with_topics(TOPICS, PARTITIONS);
    fill(&mut state, 1_000, TOPICS, PARTITIONS);
    // The commit is built outside the timed part: the log layer builds it from the object index.
    // The events it returns are dropped inside: the caller pays for them too.
    group.bench_function("1000_partitions", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let seq = state.last_offered_seq().unwrap().next();
                let meta = EntryMeta {
                    seq,
                    writer_epoch: 1,
                    prev_seq: state.last_valid_seq(),
                    kind: EntryKind::Data,
                };
                let commit = commit_touching_all(seq, TOPICS, PARTITIONS);
                let start = Instant::now();
                let _ = black_box(state.apply_entry(&meta, &[], Some(&commit)));
                elapsed += start.elapsed();
            }
            elapsed
        });
    });
    // The same commit while a checkpoint snapshot still shares the chunks (its encoding running
    // on the background thread): each partition's last chunk is copied before the append — the
    // deferred part of the snapshot's cost, paid once per partition per checkpoint.
    group.bench_function("1000_partitions_first_after_snapshot", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let snapshot = state.clone();
                let seq = state.last_offered_seq().unwrap().next();
                let meta = EntryMeta {
                    seq,
                    writer_epoch: 1,
                    prev_seq: state.last_valid_seq(),
                    kind: EntryKind::Data,
                };
                let commit = commit_touching_all(seq, TOPICS, PARTITIONS);
                let start = Instant::now();
                let _ = black_box(state.apply_entry(&meta, &[], Some(&commit)));
                elapsed += start.elapsed();
                drop(snapshot);
            }
            elapsed
        });
    });
    group.finish();
}

/// Like [`commit_touching_all`], but every segment holds two batches of an idempotent producer
/// (one per partition), at sequences `round * 10` and `round * 10 + 5`: the path every commit takes
/// when clients enable idempotence (the default of Java and franz-go).
fn idempotent_commit_touching_all(
    seq: LogSeq,
    round: i32,
    topic_count: u32,
    partitions_per_topic: u32,
) -> ObjectCommit {
    let mut commit = commit_touching_all(seq, topic_count, partitions_per_topic);
    for (producer_id, segment) in commit.segments.iter_mut().enumerate() {
        segment.batch_count = 2;
        segment.batches = (0..2)
            .map(|half| BatchCommit {
                byte_start: segment.byte_start + half * 2048,
                byte_len: 2048,
                offset_count: 5,
                max_timestamp: segment.max_timestamp,
                producer_id: producer_id as i64,
                producer_epoch: 0,
                base_sequence: round * 10 + half as i32 * 5,
            })
            .collect();
    }
    commit
}

fn bench_idempotent_commit(c: &mut Criterion) {
    const TOPICS: u32 = 10;
    const PARTITIONS: u32 = 100;
    let mut group = c.benchmark_group("apply_commit");
    group.throughput(Throughput::Elements(u64::from(TOPICS * PARTITIONS)));
    let mut state = state_with_topics(TOPICS, PARTITIONS);
    fill(&mut state, 1_000, TOPICS, PARTITIONS);
    let mut round = 0;
    group.bench_function("1000_partitions_idempotent", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let seq = state.last_offered_seq().unwrap().next();
                let meta = EntryMeta {
                    seq,
                    writer_epoch: 1,
                    prev_seq: state.last_valid_seq(),
                    kind: EntryKind::Data,
                };
                let commit = idempotent_commit_touching_all(seq, round, TOPICS, PARTITIONS);
                round += 1;
                let start = Instant::now();
                let outcome = black_box(state.apply_entry(&meta, &[], Some(&commit)));
                elapsed += start.elapsed();
                let EntryOutcome::Applied(events) = outcome else {
                    panic!("ignored")
                };
                assert!(matches!(
                    events[0],
                    sluice_engine::metadata::Event::SegmentAppended { .. }
                ));
            }
            elapsed
        });
    });
    group.finish();
}

fn bench_checkpoint(c: &mut Criterion) {
    // 10,000 partitions (100 topics x 100) x 100 entries = 1,000,000 index entries.
    const TOPICS: u32 = 100;
    const PARTITIONS: u32 = 100;
    let mut state = state_with_topics(TOPICS, PARTITIONS);
    fill(&mut state, 100, TOPICS, PARTITIONS);
    let bytes = state.encode_checkpoint();
    assert_eq!(MetadataState::decode_checkpoint(&bytes).unwrap(), state);
    eprintln!(
        "checkpoint of 1,000,000 index entries: {} bytes",
        bytes.len()
    );
    let mut group = c.benchmark_group("checkpoint_1m_entries");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode", |bencher| {
        bencher.iter(|| MetadataState::decode_checkpoint(black_box(&bytes)).unwrap())
    });
    group.bench_function("encode", |bencher| {
        bencher.iter(|| black_box(&state).encode_checkpoint())
    });
    // What the metadata core itself pays for a checkpoint: the snapshot (index chunks shared
    // copy-on-write); the encoding above runs on a background thread.
    group.bench_function("snapshot", |bencher| {
        bencher.iter(|| black_box(&state).clone())
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_commit,
    bench_idempotent_commit,
    bench_checkpoint
);
criterion_main!(benches);
