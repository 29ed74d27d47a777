//! The cluster's metadata log (`SequencedLog`) with a real PostgreSQL and an in-memory bucket:
//! two agents' logs append windows concurrently and both reach the same state, every
//! acknowledged batch at its acknowledged offset; catch-ups that overlap apply each record once;
//! a third agent recovers from a checkpoint plus the records after it, also after the records a
//! checkpoint covers were truncated; a window misses its record deadline; a log that lost
//! its lease appends nothing until it rejoins as a new incarnation with a new token; and a log
//! held back while another checkpointed and truncated past it rejoins from the newest checkpoint.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use futures::executor::block_on;
use sluice_engine::log::{EntryContent, LogConfig, SequencedLog};
use sluice_engine::metadata::Command;
use sluice_engine::sequencer::{SequencerClient, SequencerConfig};
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::TopicPartition;

use crate::common::log_harness::{PARTITIONS, Run, memory_store};
use crate::common::postgres::TestPostgres;
use crate::common::sequenced::{append, append_result, hold_a_lease, open_sequenced, registration};

const WINDOWS_PER_AGENT: usize = 40;

fn open(url: &str, store: &Arc<dyn ObjectStorage>, checkpoint_every: u64) -> SequencedLog {
    let config = LogConfig {
        checkpoint_interval_entries: checkpoint_every,
        ..LogConfig::default()
    };
    open_sequenced(url, "sequenced_log", store, config)
}

fn high_watermarks(log: &SequencedLog, run: &Run) -> Vec<u64> {
    log.with_state(|state| {
        (0..PARTITIONS)
            .map(|partition| {
                state
                    .high_watermark(TopicPartition::new(run.topic_id, partition as i32))
                    .unwrap()
            })
            .collect()
    })
}

#[test]
fn two_agents_share_one_order_and_a_third_recovers_it() {
    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log") else {
        return;
    };
    let url = postgres.url();
    let store = memory_store();
    let a = open(&url, &store, 1_000_000);
    let b = open(&url, &store, 1_000_000);
    let mut run = Run::new(15);
    block_on(append(
        &a,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "orders".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));

    // Both agents append at once, each window acknowledged when its record is applied.
    let contents: Vec<(bool, EntryContent)> = (0..2 * WINDOWS_PER_AGENT)
        .map(|window| (window % 2 == 0, run.entry(3)))
        .collect();
    let outcomes = block_on(futures::future::join_all(contents.iter().map(
        |(on_a, content)| {
            let log = if *on_a { &a } else { &b };
            append(log, content.clone())
        },
    )));
    for ((_, content), outcome) in contents.iter().zip(&outcomes) {
        run.record_ack(content, outcome);
    }
    block_on(a.catch_up()).unwrap();
    // Overlapping catch-ups on b apply each record once.
    let (first, second) = block_on(futures::future::join(b.catch_up(), b.catch_up()));
    first.unwrap();
    second.unwrap();
    assert_eq!(a.applied_position(), b.applied_position());
    let watermarks = high_watermarks(&a, &run);
    assert_eq!(watermarks, high_watermarks(&b, &run));
    let batches: u64 = contents.iter().map(|(_, c)| c.batches.len() as u64).sum();
    assert_eq!(
        run.acked.len() as u64,
        batches,
        "every batch acknowledged once"
    );
    let offsets: u64 = contents
        .iter()
        .flat_map(|(_, content)| &content.batches)
        .map(|(_, header, _)| header.offset_count())
        .sum();
    assert_eq!(watermarks.iter().sum::<u64>(), offsets);

    // A checkpoint, more windows, a second checkpoint (which truncates behind the first), then
    // a third agent recovers: the checkpoint plus the records after it.
    let first_checkpoint =
        block_on(a.write_checkpoint_with(|state| async move { state.encode_checkpoint() }))
            .unwrap()
            .unwrap();
    for _ in 0..5 {
        let content = run.entry(2);
        let outcome = block_on(append(&b, content.clone()));
        run.record_ack(&content, &outcome);
    }
    block_on(a.catch_up()).unwrap();
    block_on(a.write_checkpoint_with(|state| async move { state.encode_checkpoint() }))
        .unwrap()
        .unwrap();
    let content = run.entry(2);
    let outcome = block_on(append(&b, content.clone()));
    run.record_ack(&content, &outcome);
    assert_eq!(
        postgres.query_i64("SELECT min(position) FROM sluice_log"),
        i64::try_from(first_checkpoint.0).unwrap() + 1,
        "records the first checkpoint covers were not truncated"
    );
    block_on(a.catch_up()).unwrap();
    let c = open(&url, &store, 1_000_000);
    assert_eq!(c.applied_position(), a.applied_position());
    assert_eq!(high_watermarks(&c, &run), high_watermarks(&a, &run));
}

/// The record deadline garbage collection of `data/` counts on (`log::data_gc`): a window whose
/// PUT outlasts it is not committed — its produces fail, no record reaches the sequencer, and its
/// object is left for the collector — and the next window, on time, commits as usual.
#[test]
fn a_window_whose_put_outlasts_the_record_deadline_is_not_committed() {
    use sluice_engine::log::SequencedWriter;
    use sluice_engine::log::data_gc::list_agent_objects;
    use sluice_engine::store::{
        Fault, FaultInjection, ObjectStoreBackend, Op, StoreRuntime, StoreRuntimeConfig,
    };

    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log record deadline") else {
        return;
    };
    let faults =
        Arc::new(FaultInjection::new(ObjectStoreBackend::in_memory(), 1).with_slow_ms(400));
    let store: Arc<dyn ObjectStorage> = StoreRuntime::start(
        Arc::clone(&faults) as Arc<dyn ObjectStorage>,
        StoreRuntimeConfig::default(),
    )
    .unwrap();
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), "record_deadline")).unwrap();
    let writer = SequencedWriter {
        token: 77,
        record_deadline_ms: 200,
    };
    let (log, _) = block_on(SequencedLog::open_as(
        Arc::clone(&store),
        sequencer.clone(),
        LogConfig::default(),
        writer,
    ))
    .unwrap();
    let mut run = Run::new(16);
    faults.fail_next(Op::Put, Fault::Slow).unwrap();
    let late = block_on(append_result(&log, run.entry(2)));
    let error = late.expect_err("a window whose PUT took 400 ms against a 200 ms deadline");
    assert!(
        error.to_string().contains("record deadline"),
        "unexpected error: {error}"
    );
    assert_eq!(block_on(sequencer.head()).unwrap(), 0, "no record was sent");
    let objects = block_on(list_agent_objects(store.as_ref())).unwrap();
    assert_eq!(
        objects.len(),
        1,
        "the late window's object is left for the collector"
    );

    block_on(append(
        &log,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "orders".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));
    assert_eq!(block_on(sequencer.head()).unwrap(), 1);
    assert_eq!(log.applied_position(), 1);
    assert!(log.with_state(|state| state.topic(run.topic_id).is_some()));
}

/// A store whose next window PUT (under `data/`) waits until the test releases it, and says when
/// it started waiting: a PUT "in flight" for exactly as long as the test needs.
#[derive(Debug)]
struct GatedPuts {
    inner: Arc<dyn ObjectStorage>,
    gate: std::sync::Mutex<
        Option<(
            futures::channel::oneshot::Sender<()>,
            futures::channel::oneshot::Receiver<()>,
        )>,
    >,
}

#[async_trait::async_trait]
impl ObjectStorage for GatedPuts {
    async fn put_create(
        &self,
        key: &str,
        payload: Vec<bytes::Bytes>,
    ) -> sluice_engine::store::StoreResult<()> {
        let gate = if key.starts_with("data/") {
            self.gate.lock().unwrap().take()
        } else {
            None
        };
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            let _ = release.await;
        }
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> sluice_engine::store::StoreResult<bytes::Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> sluice_engine::store::StoreResult<bytes::Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_tail(
        &self,
        key: &str,
        len: u64,
    ) -> sluice_engine::store::StoreResult<(bytes::Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> sluice_engine::store::StoreResult<sluice_engine::store::ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> sluice_engine::store::StoreResult<Vec<sluice_engine::store::ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> sluice_engine::store::StoreResult<()> {
        self.inner.delete(key).await
    }
}

/// The rejoin's rule: an agent whose lease ran out or was lost appends nothing — no append
/// starts, and a window whose PUT was in flight is never sent, not even once the agent has
/// rejoined under a new lease — until it rejoins as a new incarnation with a token of its own
/// (the old token is refused); then its windows are named by the new token and acknowledged.
#[test]
fn a_log_that_lost_its_lease_appends_nothing_until_it_rejoins_with_a_new_token() {
    use sluice_engine::log::SequencedWriter;
    use sluice_engine::sequencer::Lease;
    use sluice_engine::types::agent_object_parts;

    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log rejoin") else {
        return;
    };
    let gated = Arc::new(GatedPuts {
        inner: memory_store(),
        gate: std::sync::Mutex::new(None),
    });
    let store: Arc<dyn ObjectStorage> = Arc::clone(&gated) as Arc<dyn ObjectStorage>;
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), "rejoin")).unwrap();
    let old = SequencedWriter {
        token: 77,
        record_deadline_ms: 60_000,
    };
    let (log, _) = block_on(SequencedLog::open_as(
        Arc::clone(&store),
        sequencer.clone(),
        LogConfig::default(),
        old,
    ))
    .unwrap();
    let lease = hold_a_lease(&log, "rejoining");
    let mut run = Run::new(17);
    block_on(append(
        &log,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "orders".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));
    assert_eq!(block_on(sequencer.head()).unwrap(), 1);

    // The lease's local deadline passed: no append starts, nothing reaches the sequencer.
    log.hold_lease(&Lease {
        valid_until: tokio::time::Instant::now(),
        ..lease.clone()
    });
    let error = block_on(log.append(run.entry(1))).expect_err("an append past the lease");
    assert!(error.to_string().contains("lease"), "{error}");
    assert_eq!(block_on(sequencer.head()).unwrap(), 1);
    log.hold_lease(&lease);

    // A window of the old incarnation is in its PUT when the lease is lost and the agent
    // rejoins: it is never sent.
    let (entered_sender, entered) = futures::channel::oneshot::channel();
    let (release, gate) = futures::channel::oneshot::channel();
    *gated.gate.lock().unwrap() = Some((entered_sender, gate));
    let in_flight = log.append(run.entry(2));
    let lose_and_rejoin = async {
        entered.await.unwrap();
        log.stop("lease lost (test)".to_owned());
        let refused = log.append(run.entry(1)).await;
        assert!(refused.is_err(), "an append on a stopped log");
        let same_token = log.rejoin(old, &lease).await;
        assert!(
            same_token.unwrap_err().to_string().contains("new token"),
            "a rejoin with the old token"
        );
        assert_eq!(
            sequencer.head().await.unwrap(),
            1,
            "nothing appended while out"
        );
        let new = SequencedWriter {
            token: 78,
            record_deadline_ms: 60_000,
        };
        let rejoined = sequencer
            .register(registration("rejoining"), 60_000)
            .await
            .unwrap();
        assert_eq!(rejoined.incarnation, lease.incarnation + 1);
        assert_eq!(
            log.rejoin(new, &rejoined).await.unwrap(),
            0,
            "nothing to catch up"
        );
        assert_eq!(log.token(), 78);
        release.send(()).unwrap();
    };
    let (in_flight, ()) = block_on(futures::future::join(in_flight, lose_and_rejoin));
    let error = in_flight.expect_err("the old incarnation's window");
    assert!(
        error.to_string().contains("replaced by a rejoin"),
        "unexpected error: {error}"
    );
    assert_eq!(
        block_on(sequencer.head()).unwrap(),
        1,
        "the old incarnation's window was not sent"
    );

    // The new incarnation appends, named by its token, and is acknowledged.
    let content = run.entry(2);
    let outcome = block_on(append(&log, content.clone()));
    assert_eq!(agent_object_parts(outcome.seq), (78, 0));
    run.record_ack(&content, &outcome);
    assert_eq!(block_on(sequencer.head()).unwrap(), 2);
    assert_eq!(log.applied_position(), 2);
}

/// An agent that lagged more than a checkpoint interval (paused, say): while it is held back, the
/// other appends windows (batches, offset commits, producer ids), checkpoints every 3 records and
/// truncates the log behind its older checkpoint, past the held one's position. The held log's
/// catch-up then meets `Truncated`, as its tailer would; it stops and rejoins, and the rejoin
/// swaps in the newest checkpoint and catches up from it: both logs reach the same position and
/// the same state, byte for byte, and the rejoined log's next window is acknowledged at the
/// offsets both agree on.
#[test]
fn a_log_behind_the_truncation_rejoins_from_the_newest_checkpoint() {
    use sluice_engine::log::{LogError, SequencedWriter};
    use sluice_engine::metadata::OffsetCommit;
    use sluice_engine::sequencer::SequencerError;

    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log truncation") else {
        return;
    };
    let url = postgres.url();
    let store = memory_store();
    let ahead = open(&url, &store, 3);
    let held = open(&url, &store, 3);
    hold_a_lease(&ahead, "ahead");
    hold_a_lease(&held, "held");
    let mut run = Run::new(19);
    block_on(append(
        &ahead,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "orders".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));
    block_on(held.catch_up()).unwrap();
    let held_at = held.applied_position();
    assert_eq!(held_at, 1);

    // The held log reads nothing while the other writes and checkpoints as an agent does.
    let mut checkpoints = Vec::new();
    for window in 0..12_i64 {
        let mut content = run.entry(2);
        content.commands.push(Command::CommitOffsets {
            group: "audit".to_owned(),
            offsets: vec![OffsetCommit {
                topic: "orders".to_owned(),
                partition: 0,
                offset: window,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 1_700_000_000_000 + window,
            }],
        });
        if window % 4 == 0 {
            content.commands.push(Command::InitProducerId {
                transactional_id: None,
            });
        }
        let outcome = block_on(append(&ahead, content.clone()));
        run.record_ack(&content, &outcome);
        if ahead.checkpoint_due() {
            let written = block_on(
                ahead.write_checkpoint_with(|state| async move { state.encode_checkpoint() }),
            )
            .unwrap()
            .unwrap();
            checkpoints.push(written.0);
        }
    }
    // Records after the newest checkpoint, for the rejoin to catch up.
    for _ in 0..2 {
        let content = run.entry(2);
        let outcome = block_on(append(&ahead, content.clone()));
        run.record_ack(&content, &outcome);
    }
    let newest = *checkpoints.last().unwrap();
    assert!(checkpoints.len() >= 3, "checkpoints {checkpoints:?}");
    let log_start = postgres.query_i64("SELECT min(position) FROM sluice_log");
    assert!(
        log_start > i64::try_from(held_at).unwrap() + 1,
        "the log was not truncated past the held log (it starts at {log_start})"
    );

    // The held log's catch-up (its tailer's) meets the truncation: it stops and rejoins.
    let error = block_on(held.catch_up()).expect_err("the records after the held log are gone");
    assert!(
        matches!(
            error,
            LogError::Sequencer(SequencerError::Truncated { after: 1, .. })
        ),
        "{error}"
    );
    assert_eq!(held.applied_position(), held_at);
    held.stop("behind the truncation (test)".to_owned());
    let writer = block_on(SequencedWriter::choose(store.as_ref(), 60_000)).unwrap();
    assert_ne!(writer.token, held.token());
    let lease = block_on(held.sequencer().register(registration("held"), 60_000)).unwrap();
    let mut reloads = Vec::new();
    let rejoined =
        block_on(
            held.rejoin_with(writer, &lease, &mut |_| {}, &mut |position, state| {
                reloads.push((position, state.last_offered_seq()));
            }),
        )
        .unwrap();
    assert_eq!(rejoined.checkpoint_reloaded, Some(newest));
    assert_eq!(
        reloads,
        vec![(newest, Some(sluice_engine::types::LogSeq(newest)))],
        "one reload, of the newest checkpoint"
    );
    assert_eq!(rejoined.records_applied, ahead.applied_position() - newest);
    assert_eq!(held.applied_position(), ahead.applied_position());
    assert_eq!(
        held.with_state(|state| state.encode_checkpoint()),
        ahead.with_state(|state| state.encode_checkpoint()),
        "the rejoined log's state is the other's"
    );

    // The rejoined log appends again, as its new incarnation, at offsets both agree on.
    let content = run.entry(3);
    let outcome = block_on(append(&held, content.clone()));
    run.record_ack(&content, &outcome);
    block_on(ahead.catch_up()).unwrap();
    assert_eq!(held.applied_position(), ahead.applied_position());
    assert_eq!(high_watermarks(&held, &run), high_watermarks(&ahead, &run));
    let offsets: u64 = run
        .acked
        .values()
        .map(|batch| {
            sluice_engine::batch::validate_batch(batch)
                .unwrap()
                .offset_count()
        })
        .sum();
    assert_eq!(high_watermarks(&held, &run).iter().sum::<u64>(), offsets);
    assert_eq!(
        held.with_state(|state| state.encode_checkpoint()),
        ahead.with_state(|state| state.encode_checkpoint())
    );
}

/// Records are sent in the order their windows were started, whichever PUT ends first: the first
/// window's PUT is held while the second's lands, and the second's record still takes the later
/// position. Were each record sent as its PUT ended, a producer's later batch of a partition would
/// be applied before its earlier one — OUT_OF_ORDER_SEQUENCE_NUMBER for an idempotent producer,
/// reordered offsets for any other. Without the order the second record is at the head within
/// milliseconds; the test waits up to 2 s for that before it releases the first PUT, and then
/// asserts the positions, so it cannot pass by timing.
#[test]
fn a_window_sends_its_record_after_the_windows_started_before_it() {
    use sluice_engine::log::data_gc::list_agent_objects;
    use std::time::{Duration, Instant};

    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log send order") else {
        return;
    };
    let gated = Arc::new(GatedPuts {
        inner: memory_store(),
        gate: std::sync::Mutex::new(None),
    });
    let store: Arc<dyn ObjectStorage> = Arc::clone(&gated) as Arc<dyn ObjectStorage>;
    let log = open(&postgres.url(), &store, 1_000);
    let sequencer = log.sequencer().clone();
    let mut run = Run::new(18);
    block_on(append(
        &log,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "ordered".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));
    let head_before = block_on(sequencer.head()).unwrap();

    let (entered, entered_rx) = futures::channel::oneshot::channel();
    let (release, release_rx) = futures::channel::oneshot::channel();
    *gated.gate.lock().unwrap() = Some((entered, release_rx));
    let watcher = {
        let store = Arc::clone(&store);
        let sequencer = sequencer.clone();
        std::thread::spawn(move || {
            // The first window's PUT is held; wait until the second's object has landed.
            block_on(entered_rx).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while block_on(list_agent_objects(store.as_ref()))
                .unwrap()
                .is_empty()
            {
                assert!(
                    Instant::now() < deadline,
                    "the second window's PUT never landed"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // Give an unordered send every chance to reach the head first.
            let patience = Instant::now() + Duration::from_secs(2);
            let mut sent_early = false;
            while Instant::now() < patience {
                if block_on(sequencer.head()).unwrap() > head_before {
                    sent_early = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = release.send(());
            sent_early
        })
    };
    // Two windows with a batch of the same partition, whose offsets then say which went first.
    let first = run.entry(1);
    let partition = first.batches[0].0;
    let second = std::iter::repeat_with(|| run.entry(1))
        .find(|entry| entry.batches[0].0 == partition)
        .unwrap();
    // Joined in order: the first is polled (and takes the gated PUT) first.
    let (first, second) =
        block_on(async { futures::join!(append_result(&log, first), append_result(&log, second)) });
    let sent_early = watcher.join().unwrap();
    let base_offset = |outcome: &sluice_engine::log::AppendOutcome| {
        outcome
            .events
            .iter()
            .find_map(|event| match event {
                sluice_engine::metadata::Event::SegmentAppended {
                    tp, base_offset, ..
                } if *tp == partition => Some(*base_offset),
                _ => None,
            })
            .unwrap()
    };
    let (first, second) = (base_offset(&first.unwrap()), base_offset(&second.unwrap()));
    assert!(
        !sent_early && first < second,
        "the second window's record went first (sent while the first PUT was held: {sent_early}; \
         base offsets {first} then {second} in {partition:?})"
    );
}

/// An agent starting while the others checkpoint: it has listed the checkpoints and is reading
/// the newest (held here) when the others write two more and truncate the log past the one it
/// is reading. Its catch-up from that one meets `Truncated`; recovery then loads the newest
/// checkpoint again and catches up from it, and the new log reaches the others' state. (Before,
/// the open failed, and with it the agent's start.)
#[test]
fn a_recovery_that_the_truncation_overtakes_loads_the_newest_checkpoint() {
    let Some(postgres) = TestPostgres::start_or_skip("sequenced_log recovery truncation") else {
        return;
    };
    let url = postgres.url();
    let gated = Arc::new(GatedCheckpointReads {
        inner: memory_store(),
        gate: std::sync::Mutex::new(None),
    });
    let store: Arc<dyn ObjectStorage> = Arc::clone(&gated) as Arc<dyn ObjectStorage>;
    let ahead = open(&url, &store, 1_000_000);
    let mut run = Run::new(23);
    block_on(append(
        &ahead,
        EntryContent {
            commands: vec![Command::CreateTopic {
                name: "orders".to_owned(),
                topic_id: run.topic_id,
                partition_count: PARTITIONS,
                configs: Default::default(),
            }],
            ..EntryContent::default()
        },
    ));
    block_on(append_all(&ahead, (0..3).map(|_| run.entry(2)).collect()));
    let loaded = block_on(checkpoint_now(&ahead));

    let (entered_sender, entered) = futures::channel::oneshot::channel();
    let (release, gate) = futures::channel::oneshot::channel();
    *gated.gate.lock().unwrap() = Some((entered_sender, gate));
    let sequencer = SequencerClient::connect(SequencerConfig::new(&url, "sequenced_log")).unwrap();
    let joining = SequencedLog::open(Arc::clone(&store), sequencer, LogConfig::default());
    let windows: Vec<Vec<EntryContent>> = [2, 2, 1]
        .into_iter()
        .map(|count| (0..count).map(|_| run.entry(2)).collect())
        .collect();
    let overtake = async {
        entered.await.unwrap();
        let [first, second, third] = <[Vec<EntryContent>; 3]>::try_from(windows).unwrap();
        append_all(&ahead, first).await;
        checkpoint_now(&ahead).await;
        append_all(&ahead, second).await;
        let newest = checkpoint_now(&ahead).await;
        append_all(&ahead, third).await;
        release.send(()).unwrap();
        newest
    };
    let (opened, newest) = block_on(futures::future::join(joining, overtake));
    let log_start = postgres.query_i64("SELECT min(position) FROM sluice_log");
    assert!(
        log_start > i64::try_from(loaded).unwrap() + 1,
        "the log was not truncated past the checkpoint being read ({loaded}; it starts at {log_start})"
    );
    let (joined, recovery) = opened.expect("recovery after the truncation overtook it");
    assert_eq!(recovery.checkpoint_position, newest);
    assert_eq!(recovery.records_applied, ahead.applied_position() - newest);
    assert_eq!(joined.applied_position(), ahead.applied_position());
    assert_eq!(
        joined.with_state(|state| state.encode_checkpoint()),
        ahead.with_state(|state| state.encode_checkpoint())
    );
    assert!(joined.stopped().is_none(), "the recovered log appends");
}

/// Appends `contents` one after the other, each acknowledged.
async fn append_all(log: &SequencedLog, contents: Vec<EntryContent>) {
    for content in contents {
        append(log, content).await;
    }
}

/// Writes a checkpoint of `log` now and returns its position.
async fn checkpoint_now(log: &SequencedLog) -> u64 {
    log.write_checkpoint_with(|state| async move { state.encode_checkpoint() })
        .await
        .unwrap()
        .unwrap()
        .0
}

/// A store whose next checkpoint read waits until the test releases it, and says when it
/// started waiting.
#[derive(Debug)]
struct GatedCheckpointReads {
    inner: Arc<dyn ObjectStorage>,
    gate: std::sync::Mutex<
        Option<(
            futures::channel::oneshot::Sender<()>,
            futures::channel::oneshot::Receiver<()>,
        )>,
    >,
}

#[async_trait::async_trait]
impl ObjectStorage for GatedCheckpointReads {
    async fn put_create(
        &self,
        key: &str,
        payload: Vec<bytes::Bytes>,
    ) -> sluice_engine::store::StoreResult<()> {
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> sluice_engine::store::StoreResult<bytes::Bytes> {
        let gate = if key.starts_with("checkpoint/") {
            self.gate.lock().unwrap().take()
        } else {
            None
        };
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            let _ = release.await;
        }
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> sluice_engine::store::StoreResult<bytes::Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_tail(
        &self,
        key: &str,
        len: u64,
    ) -> sluice_engine::store::StoreResult<(bytes::Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> sluice_engine::store::StoreResult<sluice_engine::store::ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> sluice_engine::store::StoreResult<Vec<sluice_engine::store::ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> sluice_engine::store::StoreResult<()> {
        self.inner.delete(key).await
    }
}
