//! A driver for the metadata log under crashes and faults, and the checks that must hold after
//! recovery: every acknowledged batch at its acknowledged offsets, contiguous offsets, no offset
//! acknowledged for two payloads.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_engine::batch::{BatchBuilder, BatchHeader, split_batches, validate_batch};
use sluice_engine::compact::{CompactionConfig, CompactionRange};
use sluice_engine::log::{AppendOutcome, EntryContent, LogConfig, LogError, MetadataLog, recover};
use sluice_engine::metadata::{Command, Event, MetadataState, RetentionDefaults};
use sluice_engine::store::{ObjectInfo, ObjectStorage, StoreResult};
use sluice_engine::types::{CHECKPOINT_DIR, TopicId, TopicPartition, log_key, object_key};

pub const PARTITIONS: u32 = 4;
const TOPIC: &str = "orders";
/// How long a stuck future is given before the test declares the process dead.
const STUCK_MS: u64 = 50;

pub fn memory_store() -> Arc<dyn ObjectStorage> {
    Arc::new(sluice_engine::store::ObjectStoreBackend::in_memory())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripMode {
    /// The process dies before the PUT reaches the store.
    BeforePut,
    /// The PUT lands, then the process dies before it sees the response.
    AfterPut,
}

/// A store that "kills the process" at the n-th PUT: from then on every call hangs forever.
#[derive(Debug)]
pub struct Tripwire {
    inner: Arc<dyn ObjectStorage>,
    mode: TripMode,
    trip_at: u64,
    checkpoints_only: bool,
    puts: AtomicU64,
    tripped: AtomicBool,
}

impl Tripwire {
    pub fn new(inner: Arc<dyn ObjectStorage>, mode: TripMode, trip_at: u64) -> Arc<Tripwire> {
        Arc::new(Tripwire {
            inner,
            mode,
            trip_at,
            checkpoints_only: false,
            puts: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        })
    }

    /// Counts only checkpoint PUTs.
    pub fn checkpoints_only(
        inner: Arc<dyn ObjectStorage>,
        mode: TripMode,
        trip_at: u64,
    ) -> Arc<Tripwire> {
        Arc::new(Tripwire {
            inner,
            mode,
            trip_at,
            checkpoints_only: true,
            puts: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        })
    }

    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    async fn dead(&self) {
        if self.tripped() {
            futures::future::pending::<()>().await;
        }
    }
}

#[async_trait::async_trait]
impl ObjectStorage for Tripwire {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.dead().await;
        let counted = !self.checkpoints_only || key.starts_with(CHECKPOINT_DIR);
        if counted && self.puts.fetch_add(1, Ordering::SeqCst) == self.trip_at {
            self.tripped.store(true, Ordering::SeqCst);
            if self.mode == TripMode::AfterPut {
                let _ = self.inner.put_create(key, payload.clone()).await;
            }
            futures::future::pending::<()>().await;
        }
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.dead().await;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.dead().await;
        self.inner.get_range(key, range).await
    }
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.dead().await;
        self.inner.get_tail(key, len).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.dead().await;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.dead().await;
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.dead().await;
        self.inner.delete(key).await
    }
}

/// One test run: the producer's side of the story (what was acknowledged) across writers.
pub struct Run {
    rng: ChaCha8Rng,
    next_value: u64,
    pub topic_id: TopicId,
    /// (partition, offset) → the batch acknowledged there. Never two different batches.
    pub acked: HashMap<(TopicPartition, u64), Bytes>,
    pub failed: usize,
    pub puts_seen: u64,
}

impl Run {
    pub fn new(seed: u64) -> Run {
        let mut topic = [0u8; 16];
        topic[..8].copy_from_slice(&seed.to_be_bytes());
        topic[15] = 1;
        Run {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_value: 0,
            topic_id: TopicId(topic),
            acked: HashMap::new(),
            failed: 0,
            puts_seen: u64::MAX,
        }
    }

    fn tp(&self, partition: u32) -> TopicPartition {
        TopicPartition::new(self.topic_id, partition as i32)
    }

    /// An entry with `batches` random batches over the topic's partitions.
    pub fn entry(&mut self, batches: usize) -> EntryContent {
        let mut content = EntryContent {
            created_at_ms: 1_700_000_000_000,
            ..EntryContent::default()
        };
        for _ in 0..batches {
            let partition = self.rng.random_range(0..PARTITIONS);
            let records = self.rng.random_range(1..5);
            let mut builder = BatchBuilder::new(1_700_000_000_000 + self.next_value as i64);
            for _ in 0..records {
                self.next_value += 1;
                builder = builder.record(
                    0,
                    Some(b"k"),
                    format!("value-{}", self.next_value).as_bytes(),
                );
            }
            let bytes = builder.encode();
            let header = validate_batch(&bytes).unwrap();
            content.batches.push((self.tp(partition), header, bytes));
        }
        content
    }

    /// Records what an acknowledged entry says: each batch at the offset it was given.
    pub fn record_ack(&mut self, content: &EntryContent, outcome: &AppendOutcome) {
        // Segments are the partitions in order of first appearance, each in push order.
        let mut order: Vec<TopicPartition> = Vec::new();
        for (tp, _, _) in &content.batches {
            if !order.contains(tp) {
                order.push(*tp);
            }
        }
        for event in &outcome.events {
            if let Event::SegmentAppended {
                segment_index,
                tp,
                base_offset,
                end_offset,
            } = event
            {
                assert_eq!(order[*segment_index], *tp, "segment order");
                let mut offset = *base_offset;
                for (batch_tp, header, bytes) in &content.batches {
                    if batch_tp != tp {
                        continue;
                    }
                    if let Some(previous) = self.acked.insert((*tp, offset), bytes.clone()) {
                        assert_eq!(
                            previous, *bytes,
                            "offset {offset} of {tp} acknowledged for two different batches"
                        );
                    }
                    offset += header.offset_count();
                }
                assert_eq!(offset, *end_offset, "segment offsets");
            }
        }
    }

    /// Opens a writer and makes sure the topic exists.
    pub async fn open(&mut self, store: Arc<dyn ObjectStorage>, config: LogConfig) -> MetadataLog {
        let (log, _) = MetadataLog::open(store, config, 0).await.expect("open");
        self.ensure_topic(&log).await.expect("create topic");
        log
    }

    async fn ensure_topic(&mut self, log: &MetadataLog) -> Result<(), LogError> {
        if log.with_state(|state| state.topic(self.topic_id).is_some()) {
            return Ok(());
        }
        let command = Command::CreateTopic {
            name: TOPIC.to_owned(),
            topic_id: self.topic_id,
            partition_count: PARTITIONS,
            configs: Default::default(),
        };
        log.append(EntryContent {
            commands: vec![command],
            ..EntryContent::default()
        })
        .await
        .map(|_| ())
    }

    /// Appends `count` entries one by one.
    pub async fn append_some(&mut self, log: &MetadataLog, count: usize) {
        for _ in 0..count {
            let content = self.entry(3);
            match log.append(content.clone()).await {
                Ok(outcome) => self.record_ack(&content, &outcome),
                Err(_) => self.failed += 1,
            }
        }
    }

    /// One writer's life: open, then `entries` appends with up to `depth` in flight, until the run
    /// ends or the process "dies" (every future stuck). Then the writer is dropped mid-flight.
    pub async fn phase(
        &mut self,
        store: Arc<dyn ObjectStorage>,
        config: LogConfig,
        entries: usize,
        depth: usize,
    ) {
        let opened = tokio::time::timeout(
            Duration::from_millis(STUCK_MS),
            MetadataLog::open(store, config, 0),
        )
        .await;
        let Ok(Ok((log, _))) = opened else { return };
        match tokio::time::timeout(Duration::from_millis(STUCK_MS), self.ensure_topic(&log)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        let contents: Vec<EntryContent> = (0..entries).map(|_| self.entry(3)).collect();
        let mut next = 0;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < depth && next < contents.len() {
                let content = contents[next].clone();
                let log = &log;
                in_flight.push(async move {
                    let result = log.append(content.clone()).await;
                    (content, result)
                });
                next += 1;
            }
            match tokio::time::timeout(Duration::from_millis(STUCK_MS), in_flight.next()).await {
                Ok(Some((content, Ok(outcome)))) => self.record_ack(&content, &outcome),
                Ok(Some((_, Err(_)))) => self.failed += 1,
                Ok(None) => break,
                Err(_) => return, // stuck: the process is dead
            }
        }
        drop(in_flight);
        if log.checkpoint_due() {
            let _ =
                tokio::time::timeout(Duration::from_millis(STUCK_MS), log.write_checkpoint()).await;
        }
    }

    /// Many writers under faults: pipelined appends, re-open after a failure, random crashes.
    pub async fn soak(&mut self, store: Arc<dyn ObjectStorage>, config: LogConfig, entries: usize) {
        let mut done = 0;
        let mut opens = 0;
        while done < entries && opens < 200 {
            opens += 1;
            let Ok((log, _)) = MetadataLog::open(store.clone(), config.clone(), 0).await else {
                continue;
            };
            if self.ensure_topic(&log).await.is_err() {
                continue;
            }
            'writer: while done < entries {
                let batch: Vec<EntryContent> = (0..3).map(|_| self.entry(2)).collect();
                let results = futures::future::join_all(
                    batch.iter().map(|content| log.append(content.clone())),
                )
                .await;
                let mut broken = false;
                for (content, result) in batch.iter().zip(results) {
                    match result {
                        Ok(outcome) => self.record_ack(content, &outcome),
                        Err(error) => {
                            self.failed += 1;
                            broken |= error.is_fatal_for_writer();
                        }
                    }
                }
                done += 3;
                if log.checkpoint_due() {
                    let _ = log.write_checkpoint().await;
                }
                if broken && log.reopen(0).await.is_err() {
                    break 'writer;
                }
                if self.rng.random_bool(0.15) {
                    break 'writer; // crash: drop the writer, a new process opens the log
                }
            }
        }
    }

    /// Recovers from the bare store (no faults) and checks every acknowledged batch, then writes one
    /// more entry and checks it continues the offsets.
    pub async fn recover_and_verify(&mut self, store: Arc<dyn ObjectStorage>, config: LogConfig) {
        let (state, stats) = recover(store.as_ref(), &config, None)
            .await
            .expect("recovery");
        verify_state(store.as_ref(), &state, &self.acked, self.topic_id).await;
        assert!(stats.first_free.0 >= state.last_valid_seq().map_or(0, |seq| seq.0));

        let high_watermarks: Vec<u64> = (0..PARTITIONS)
            .map(|p| state.high_watermark(self.tp(p)).unwrap_or(0))
            .collect();
        let log = self.open(store.clone(), config).await;
        let content = self.entry(4);
        let outcome = log
            .append(content.clone())
            .await
            .expect("append after recovery");
        for event in &outcome.events {
            if let Event::SegmentAppended {
                tp, base_offset, ..
            } = event
            {
                assert_eq!(
                    *base_offset, high_watermarks[tp.partition as usize],
                    "offsets continue after recovery"
                );
            }
        }
        self.record_ack(&content, &outcome);
    }
}

/// Every acknowledged batch is found at its offset with its bytes; every partition's index is
/// contiguous from 0 and agrees with the batches stored in the objects.
pub async fn verify_state(
    store: &dyn ObjectStorage,
    state: &MetadataState,
    acked: &HashMap<(TopicPartition, u64), Bytes>,
    topic_id: TopicId,
) {
    let mut stored: HashMap<(TopicPartition, u64), Bytes> = HashMap::new();
    if let Some(topic_partitions) = state.partition_count(topic_id) {
        for partition in 0..topic_partitions {
            let tp = TopicPartition::new(topic_id, partition as i32);
            let hw = state.high_watermark(tp).unwrap();
            let entries = state.find_from(tp, 0, usize::MAX).unwrap().to_vec();
            let mut expected_base = 0;
            for entry in &entries {
                assert_eq!(
                    entry.base_offset, expected_base,
                    "{tp}: offsets not contiguous"
                );
                let bytes = store
                    .get_range(
                        &log_key(entry.seq),
                        entry.byte_start..entry.byte_start + entry.byte_len,
                    )
                    .await
                    .unwrap();
                let mut offset = entry.base_offset;
                for (header, batch) in split_batches(bytes, usize::MAX).unwrap() {
                    assert!(
                        stored.insert((tp, offset), batch).is_none(),
                        "{tp}@{offset} stored twice"
                    );
                    offset += BatchHeader::offset_count(&header);
                }
                assert_eq!(
                    offset, entry.end_offset,
                    "{tp}: entry's batches disagree with its offsets"
                );
                expected_base = entry.end_offset;
            }
            assert_eq!(
                expected_base, hw,
                "{tp}: index does not reach the high watermark"
            );
        }
    }
    for ((tp, offset), bytes) in acked {
        let found = stored.get(&(*tp, *offset));
        assert_eq!(
            found,
            Some(bytes),
            "acknowledged batch at {tp}@{offset} lost or changed"
        );
    }
}

/// Every acknowledged batch at or above its partition's log start is served at its offset with
/// its bytes, reading only the objects the state points at; and the index starts at the log start.
pub async fn verify_retained(
    store: &dyn ObjectStorage,
    state: &MetadataState,
    acked: &HashMap<(TopicPartition, u64), Bytes>,
    topic_id: TopicId,
) -> usize {
    let mut stored: HashMap<(TopicPartition, u64), Bytes> = HashMap::new();
    for partition in 0..state.partition_count(topic_id).unwrap() {
        let tp = TopicPartition::new(topic_id, partition as i32);
        let start = state.log_start_offset(tp).unwrap();
        let entries = if start == state.high_watermark(tp).unwrap() {
            Vec::new()
        } else {
            state.find_from(tp, start, usize::MAX).unwrap()
        };
        for entry in &entries {
            let bytes = store
                .get_range(
                    &object_key(entry.seq),
                    entry.byte_start..entry.byte_start + entry.byte_len,
                )
                .await
                .unwrap_or_else(|error| panic!("{tp}: object {} gone: {error}", entry.seq));
            let mut offset = entry.base_offset;
            for (header, batch) in split_batches(bytes, usize::MAX).unwrap() {
                stored.insert((tp, offset), batch);
                offset += BatchHeader::offset_count(&header);
            }
            assert_eq!(offset, entry.end_offset);
        }
    }
    let mut retained = 0;
    for ((tp, offset), bytes) in acked {
        let start = state.log_start_offset(*tp).unwrap();
        if *offset < start {
            continue;
        }
        retained += 1;
        assert_eq!(
            stored.get(&(*tp, *offset)),
            Some(bytes),
            "retained batch {tp}@{offset} lost"
        );
    }
    retained
}

/// A new client and runtime bridge per "agent" on the S3 test server, so nothing but the bucket
/// is shared between agents.
pub fn agent_store(
    server: &sluice_engine::store::S3TestServer,
    prefix: &str,
) -> Arc<dyn ObjectStorage> {
    use sluice_engine::store::{StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store};
    let inner = open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap();
    StoreRuntime::start(
        inner,
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 16,
            ..StoreRuntimeConfig::default()
        },
    )
    .unwrap()
}

/// Appends `entries` entries one by one, writing a checkpoint whenever one is due.
pub async fn append_with_checkpoints(run: &mut Run, log: &MetadataLog, entries: usize) {
    for _ in 0..entries {
        run.append_some(log, 1).await;
        if log.checkpoint_due() {
            log.write_checkpoint().await.unwrap();
        }
    }
    assert_eq!(run.failed, 0);
}

/// The keys under `dir`.
pub async fn keys(store: &dyn ObjectStorage, dir: &str) -> std::collections::BTreeSet<String> {
    store
        .list(dir, None)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key)
        .collect()
}

/// What the collector would delete now (before its delay), by its own rule.
pub async fn gc_candidates(
    store: &dyn ObjectStorage,
    log: &MetadataLog,
    gc: &sluice_engine::log::gc::GarbageCollector,
) -> sluice_engine::log::gc::GcCandidates {
    use sluice_engine::log::gc::{GcCandidates, GcListing, GcReferences};
    let listing = GcListing::read(store).await.unwrap();
    let floor = listing.floor(gc.config());
    let references = log.with_state(|state| GcReferences::of(state, floor));
    GcCandidates::from_listing(&listing, gc.config(), &references)
}

/// The log settings of the tests on the S3 test server: a checkpoint every 8 entries, so a run of
/// a few dozen entries leaves several (and the collector has entries below its floor).
pub fn checkpoint_every_8_entries() -> LogConfig {
    LogConfig {
        checkpoint_interval_entries: 8,
        ..LogConfig::default()
    }
}

/// One agent's log on the S3 test server's bucket `prefix`: its store, the run of `seed` and the
/// log opened with [`checkpoint_every_8_entries`], the run's topic created.
pub async fn open_on_s3(
    server: &sluice_engine::store::S3TestServer,
    prefix: &str,
    seed: u64,
) -> (Arc<dyn ObjectStorage>, Run, MetadataLog) {
    let store = agent_store(server, prefix);
    let mut run = Run::new(seed);
    let log = run
        .open(Arc::clone(&store), checkpoint_every_8_entries())
        .await;
    (store, run, log)
}

/// Compaction by 4 MiB objects, limits far above what the tests write.
pub const COMPACTION: CompactionConfig = CompactionConfig {
    object_bytes_target: 4 * 1024 * 1024,
    inputs_per_job_max: 10_000,
    key_input_bytes_max: 64 * 1024 * 1024,
    key_map_bytes_max: 1024 * 1024,
};

/// What [`COMPACTION`] would merge in `log` now: every run, retention off, every window settled.
pub fn compaction_plan(log: &MetadataLog) -> Vec<CompactionRange> {
    log.with_state(|state| {
        state.compaction_plan(&COMPACTION, &RetentionDefaults::default(), i64::MAX / 2)
    })
}

/// Appends an entry of `commands` alone (no batches).
pub async fn append_commands(log: &MetadataLog, commands: Vec<Command>) -> AppendOutcome {
    log.append(EntryContent {
        commands,
        ..EntryContent::default()
    })
    .await
    .unwrap()
}

/// Appends a compaction job's swap; how many index ranges it replaced (0: rejected).
pub async fn swap(log: &MetadataLog, commands: Vec<Command>) -> usize {
    append_commands(log, commands)
        .await
        .events
        .iter()
        .filter(|event| matches!(event, Event::IndexRangeReplaced { .. }))
        .count()
}
