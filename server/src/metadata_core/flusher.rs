//! The metadata core's main loop: take requests, fill the window, seal it, append, answer.
//!
//! Everything here runs on the metadata executor's single thread, so the state is plain `Rc` and
//! `Cell`. The loop only ever waits on four things: the next request, the moment the sealing
//! policy (`seal.rs`) names for the open window, an upload settling (which may make the store idle
//! and the window worth sealing), and the stop signal; sealing a window waits for an in-flight
//! slot, which is where backpressure starts.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use glommio::sync::Semaphore;
use sluice_engine::batch::{BatchHeader, TimestampType, apply_topic_timestamp_type};
use sluice_engine::log::{AgentLog, AppendOutcome, LogError};
use sluice_engine::metadata::{BatchOutcome, Command, Event, MetadataState, Topic, known_configs};
use sluice_engine::types::{LogSeq, TopicPartition};

use super::off_core::off_core;
use super::producer_ids::answer_producer_ids;
use super::seal::{OpenWindow, SealConfig, SealPolicy};
use super::watermarks::{CommittedObject, WatermarkBroadcaster, WatermarkUpdate};
use super::window::{
    CommandFailure, PlacedPartition, ProduceWaiter, Sealed, SegmentOutcomes, Window,
    answer_commands, error_code,
};
use super::{
    CORE_REQUESTS_QUEUED_MAX, CoreInbox, CoreRequest, NO_LOG_APPEND_TIME, PartitionOutcome,
    ProducePartition,
};

/// How long a stopping core waits for entries in flight to settle.
pub const SHUTDOWN_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for its checkpoint ([`checkpoint_at_stop`]).
pub const SHUTDOWN_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `flush_windows_inflight_max` accepted. The count is only a backstop: the bytes of
/// windows in flight are bounded by the network cores' produce budgets (`flush_buffer_bytes_max`
/// per core), which their produces hold until they are answered.
pub const FLUSH_WINDOWS_INFLIGHT_LIMIT: usize = 1024;
/// Windows stretch to this fraction of the recent median time an entry took to upload: a window
/// much shorter than the PUT buys little latency (a produce waits for the window *and* the PUT,
/// and the in-order tail is set by the PUTs in flight) but costs one PUT (or several hedged
/// copies) each.
const WINDOW_PER_PUT_RATIO: f64 = 0.5;

/// The flusher's settings (from the agent configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushConfig {
    pub flush_interval_ms: u64,
    /// Longest window when PUTs are slow; see [`WINDOW_PER_PUT_RATIO`].
    pub flush_interval_max_ms: u64,
    pub flush_bytes_max: u64,
    /// Log entries (PUTs) in flight at once; at least 1, at most [`FLUSH_WINDOWS_INFLIGHT_LIMIT`].
    pub flush_windows_inflight_max: usize,
    /// Windows sealed per second at most, on average: the PUT budget (`seal.rs`).
    pub flush_puts_per_second_max: u64,
    /// Seal early when the store is idle or the window is large, within the budget.
    pub flush_group_commit: bool,
    /// Compaction runs (`compaction_interval_ms` > 0): an agent alone's checkpoints follow its
    /// ticks ([`CheckpointPolicy`]).
    pub checkpoints_follow_compaction: bool,
}

/// When an agent alone writes a checkpoint, with `checkpoint_interval_entries` = N.
///
/// By the count alone, one every N entries. But with compaction on, the index — most of a
/// checkpoint — is a sawtooth: window entries pile up between compaction ticks and each tick's
/// swaps merge them. A checkpoint at a random point of it is anywhere from its low to its high
/// (27–175 kB in the 30-minute soak), so the checkpoint bytes written per second swing with the
/// phase. With compaction on, a checkpoint is therefore written right after a tick that swapped,
/// once N/2 entries were applied since the last one (at the sawtooth's low), and the count alone
/// writes one only at 2N — a backstop for ticks that find nothing to merge or do not run. At N
/// (not 2N) the count would fire just before the tick whenever a tick interval holds about N
/// entries (the defaults at 100 windows a second: 10 s ticks, 1,000 entries) and lock every
/// checkpoint onto the high. Recovery replays at most about N/2 plus one tick's entries, never more
/// than about 2N while checkpoint PUTs succeed (a failed one leaves its entries counted, so it is
/// tried again by the same counts: `MetadataLog::write_checkpoint_with`). A cluster's log keeps
/// its own count (`AgentLog::checkpoint_due_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CheckpointPolicy {
    /// After an append: due at N entries, 2N when checkpoints follow compaction.
    AfterAppend,
    /// After a compaction tick that applied a swap: due at N/2 entries when they follow it.
    AfterCompaction,
}

impl CheckpointPolicy {
    /// Entries since the last checkpoint that make one due; `None`: never on this cause.
    pub(super) fn entries_due(self, interval_entries: u64, follow_compaction: bool) -> Option<u64> {
        match (self, follow_compaction) {
            (CheckpointPolicy::AfterAppend, false) => Some(interval_entries.max(1)),
            (CheckpointPolicy::AfterAppend, true) => {
                Some(interval_entries.saturating_mul(2).max(1))
            }
            (CheckpointPolicy::AfterCompaction, true) => Some((interval_entries / 2).max(1)),
            (CheckpointPolicy::AfterCompaction, false) => None,
        }
    }
}

impl FlushConfig {
    fn seal_config(&self) -> SealConfig {
        SealConfig {
            puts_per_second_max: self.flush_puts_per_second_max,
            group_commit: self.flush_group_commit,
        }
    }
}

/// State shared between the loop and the tasks appending sealed windows.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The agent's metrics (none in tests that run a core alone).
    pub(super) metrics: Option<Arc<crate::metrics::Metrics>>,
    pub(super) fenced: Cell<bool>,
    needs_reopen: Cell<bool>,
    /// A checkpoint (periodic or at stop) is being written; one at a time.
    checkpointing: Cell<bool>,
    /// Wakes a stop waiting for a periodic checkpoint when that checkpoint ends.
    checkpoint_ended: tokio::sync::Notify,
    pub(super) broadcaster: RefCell<WatermarkBroadcaster>,
    /// Sealed windows whose append has not returned yet.
    uploads_in_flight: Cell<usize>,
    /// Wakes the loop when an append returns (a full channel means a wake-up is already pending).
    upload_settled: RefCell<Option<mpsc::Sender<()>>>,
    /// In a cluster: the lease the lease loop holds now, for the graceful leave.
    pub(super) lease: RefCell<Option<sluice_engine::sequencer::Lease>>,
    /// The agent is stopping: the lease loop ends quietly.
    pub(super) stopping: Cell<bool>,
    /// In a cluster: the tailer stopped for good (the log cannot be followed), so a lost lease
    /// is not followed by a rejoin.
    pub(super) tailer_stopped: Cell<bool>,
    /// In a cluster: the records after the applied state were truncated (this agent lagged more
    /// than a checkpoint interval). Appends are stopped until the rejoin has swapped in the
    /// newest checkpoint and caught up (`cluster.rs`).
    pub(super) behind_truncation: Cell<bool>,
    /// Wakes the lease loop when the tailer finds itself behind the truncation.
    pub(super) truncation_found: tokio::sync::Notify,
    /// Wakes the tailer when a rejoin has caught up from the newest checkpoint.
    pub(super) truncation_overcome: tokio::sync::Notify,
}

impl Shared {
    fn upload_started(&self) {
        self.uploads_in_flight
            .set(self.uploads_in_flight.get().saturating_add(1));
    }

    fn upload_settled(&self) {
        debug_assert!(self.uploads_in_flight.get() > 0, "an upload settled twice");
        self.uploads_in_flight
            .set(self.uploads_in_flight.get().saturating_sub(1));
        if let Some(sender) = self.upload_settled.borrow_mut().as_mut() {
            let _ = sender.try_send(());
        }
    }

    /// The checkpoint being written ended (written or failed): the next may start, and a stop
    /// waiting for this one goes on.
    fn checkpoint_ended(&self) {
        self.checkpointing.set(false);
        self.checkpoint_ended.notify_waiters();
    }
}

struct Core {
    log: Rc<AgentLog>,
    window: Window,
    config: FlushConfig,
    inflight: Rc<Semaphore>,
    shared: Rc<Shared>,
    started: Instant,
    /// How long the open window stays open, set when the previous one was sealed.
    window_interval_ms: u64,
    /// When to seal: early when it pays, within the PUT budget.
    policy: SealPolicy,
}

/// Runs the metadata core until `stop` fires or every [`super::CoreHandle`] is dropped; then
/// flushes what is buffered and waits (bounded) for entries in flight.
pub async fn run_metadata_core(
    log: impl Into<AgentLog>,
    inbox: CoreInbox,
    broadcaster: WatermarkBroadcaster,
    config: FlushConfig,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    stop: oneshot::Receiver<()>,
) {
    run_metadata_core_of(log.into(), None, inbox, broadcaster, config, metrics, stop).await;
}

/// [`run_metadata_core`] for either log; a cluster's log (`--metadata`) also gets its tailer and,
/// with `membership`, the lease loop that keeps the lease it was opened with.
pub async fn run_metadata_core_of(
    log: AgentLog,
    membership: Option<(super::cluster::Membership, sluice_engine::sequencer::Lease)>,
    inbox: CoreInbox,
    broadcaster: WatermarkBroadcaster,
    config: FlushConfig,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    stop: oneshot::Receiver<()>,
) {
    if let Some(metrics) = &metrics {
        metrics
            .log
            .epoch
            .store(log.epoch(), std::sync::atomic::Ordering::Relaxed);
    }
    let windows_inflight_max = config
        .flush_windows_inflight_max
        .clamp(1, FLUSH_WINDOWS_INFLIGHT_LIMIT);
    let (settled_sender, mut settled) = mpsc::channel::<()>(1);
    let mut core = Core {
        log: Rc::new(log),
        window: Window::default(),
        config,
        inflight: Rc::new(Semaphore::new(windows_inflight_max as u64)),
        shared: Rc::new(Shared {
            metrics,
            broadcaster: RefCell::new(broadcaster),
            upload_settled: RefCell::new(Some(settled_sender)),
            ..Shared::default()
        }),
        started: Instant::now(),
        window_interval_ms: config.flush_interval_ms,
        policy: SealPolicy::new(config.seal_config(), 0),
    };
    super::cluster::spawn_tailer(Rc::clone(&core.log), Rc::clone(&core.shared));
    if let Some((membership, lease)) = membership {
        super::cluster_joins::spawn_join_watch(
            Rc::clone(&core.log),
            Rc::clone(&core.shared),
            membership.clone(),
        );
        super::cluster::spawn_lease_loop(
            Rc::clone(&core.log),
            Rc::clone(&core.shared),
            membership,
            lease,
        );
    }
    let mut receiver = inbox.receiver;
    let mut stop = stop.fuse();
    loop {
        let now_ms = core.now_ms();
        let seal_at_ms = core.seal_at_ms(now_ms);
        if seal_at_ms.is_some_and(|at_ms| at_ms <= now_ms) {
            core.note_timed_seal(now_ms);
            core.seal().await;
            continue;
        }
        let timer = async {
            match seal_at_ms {
                Some(at_ms) => {
                    glommio::timer::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms)))
                        .await;
                }
                None => futures::future::pending::<()>().await,
            }
        }
        .fuse();
        futures::pin_mut!(timer);
        let mut next = receiver.next();
        futures::select_biased! {
            _ = stop => break,
            request = next => match request {
                Some(request) => {
                    core.handle(request).await;
                    core.handle_queued(&mut receiver).await;
                }
                None => break,
            },
            _ = settled.next() => {}
            () = timer => {}
        }
    }
    core.seal().await;
    let settle = core
        .inflight
        .acquire(windows_inflight_max as u64)
        .map(|_| ());
    let timeout = glommio::timer::sleep(SHUTDOWN_SETTLE_TIMEOUT);
    futures::pin_mut!(settle, timeout);
    if let futures::future::Either::Right(_) = futures::future::select(settle, timeout).await {
        tracing::warn!(
            "stopping with log entries still in flight; their produces are not acknowledged"
        );
    }
    checkpoint_at_stop(&core.log, &core.shared).await;
    if let Some(sequenced) = core.log.sequenced() {
        super::cluster::leave(sequenced, &core.shared).await;
    }
}

impl Core {
    /// Monotonic milliseconds since the core started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When the policy wants the open window sealed (`None`: no window is open).
    fn seal_at_ms(&mut self, now_ms: u64) -> Option<u64> {
        let window = self.window.opened_at_ms().map(|opened_at_ms| OpenWindow {
            opened_at_ms,
            batch_bytes: self.window.bytes(),
            interval_ms: self.window_interval_ms,
        });
        self.policy
            .seal_at_ms(now_ms, window, self.shared.uploads_in_flight.get())
    }

    /// Counts a seal the policy chose (not one a full window or a command forced) that comes
    /// before the window's interval ran out.
    fn note_timed_seal(&self, now_ms: u64) {
        let (Some(metrics), Some(opened_at_ms)) =
            (&self.shared.metrics, self.window.opened_at_ms())
        else {
            return;
        };
        if now_ms < opened_at_ms.saturating_add(self.window_interval_ms) {
            metrics
                .log
                .windows_sealed_early
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Handles the requests already queued behind the one just handled, so that a window sealed
    /// at once (group commit) holds every produce that had arrived, not only the first.
    async fn handle_queued(&mut self, receiver: &mut mpsc::Receiver<CoreRequest>) {
        for _ in 0..CORE_REQUESTS_QUEUED_MAX {
            // Empty, or closed (the loop sees that next).
            let Ok(request) = receiver.try_recv() else {
                return;
            };
            self.handle(request).await;
        }
    }

    async fn handle(&mut self, request: CoreRequest) {
        match request {
            CoreRequest::Query(read) => self.log.with_state(move |state| read(state)),
            CoreRequest::Produce { partitions, reply } => {
                self.accept_produce(partitions, reply);
                if self.window.bytes() >= self.config.flush_bytes_max {
                    self.seal().await;
                }
            }
            CoreRequest::IncarnationToken { reply } => {
                let token = self
                    .log
                    .sequenced()
                    .filter(|log| log.stopped().is_none() && !self.shared.fenced.get())
                    .map(|log| log.token());
                let _ = reply.send(token);
            }
            CoreRequest::Commands {
                commands,
                deadline,
                reply,
            } => {
                let in_cluster = self.log.sequenced().is_some();
                if self.shared.fenced.get() {
                    let failure = admin_failure(fenced_failure(), in_cluster);
                    let _ = reply.send(commands.iter().map(|_| Err(failure.clone())).collect());
                    return;
                }
                if let Some(deadline) = deadline {
                    if let Some(reason) = swap_refusal(&self.log, deadline) {
                        let failure = CommandFailure::LogFailed {
                            code: error_code::NOT_LEADER_OR_FOLLOWER,
                            reason,
                        };
                        let _ = reply.send(commands.iter().map(|_| Err(failure.clone())).collect());
                        return;
                    }
                    // One window holds the swaps of one incarnation's token at most.
                    if self
                        .window
                        .required_token()
                        .is_some_and(|token| token != deadline.token)
                    {
                        self.seal().await;
                    }
                }
                // Commits waiting in the window must not push it past an entry's command limit.
                if self.window.would_overflow(commands.len(), 0) {
                    self.seal().await;
                }
                let now_ms = self.now_ms();
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    let (sender, answer) = oneshot::channel();
                    self.window.push_command(command, sender, now_ms);
                    answers.push(answer);
                }
                if let Some(deadline) = deadline {
                    self.window.require(deadline);
                }
                glommio::spawn_local(async move {
                    let mut outcomes = Vec::with_capacity(answers.len());
                    for answer in answers {
                        let outcome = answer.await.unwrap_or_else(|_| Err(stopped_failure()));
                        outcomes
                            .push(outcome.map_err(|failure| admin_failure(failure, in_cluster)));
                    }
                    let _ = reply.send(outcomes);
                })
                .detach();
                // A client waits on each command and they are rare: no reason to wait out the window.
                self.seal().await;
            }
            CoreRequest::GroupCommands { commands, reply } => {
                if self.shared.fenced.get() {
                    let failure = fenced_failure();
                    let _ = reply.send(commands.iter().map(|_| Err(failure.clone())).collect());
                    return;
                }
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    let bytes = super::window::group_command_bytes(&command);
                    if self.window.would_overflow(1, bytes) {
                        self.seal().await;
                    }
                    let (sender, answer) = oneshot::channel();
                    let now_ms = self.now_ms();
                    self.window
                        .push_counted_command(command, bytes, sender, now_ms);
                    answers.push(answer);
                }
                glommio::spawn_local(async move {
                    let mut outcomes = Vec::with_capacity(answers.len());
                    for answer in answers {
                        outcomes.push(answer.await.unwrap_or_else(|_| Err(stopped_failure())));
                    }
                    let _ = reply.send(outcomes);
                })
                .detach();
                // Like commits: the timer seals the window, unless it is full of commands.
                if self.window.commands_full() {
                    self.seal().await;
                }
            }
            CoreRequest::CompactionSwapped => {
                if !self.shared.fenced.get() {
                    maybe_checkpoint(
                        Rc::clone(&self.log),
                        Rc::clone(&self.shared),
                        self.config.checkpoints_follow_compaction,
                        CheckpointPolicy::AfterCompaction,
                    );
                }
            }
            CoreRequest::InitProducerId {
                transactional_id,
                reply,
            } => {
                if self.shared.fenced.get() {
                    let _ = reply.send(Err(fenced_failure()));
                    return;
                }
                let now_ms = self.now_ms();
                self.window
                    .push_init_producer_id(transactional_id, reply, now_ms);
                // Producers ask once, at start-up, and wait for it: seal at once, like commands.
                self.seal().await;
            }
            CoreRequest::CommitOffsets {
                group,
                offsets,
                reply,
            } => {
                if self.shared.fenced.get() {
                    let _ = reply.send(Err(fenced_failure()));
                    return;
                }
                let bytes = super::window::commit_command_bytes(&group, &offsets);
                if self.window.would_overflow(1, bytes) {
                    self.seal().await;
                }
                let now_ms = self.now_ms();
                self.window.push_commit(group, offsets, reply, now_ms);
                // Commits ride the open window (the timer seals it): one PUT per window however
                // many groups commit. Only a window full of commands is sealed early.
                if self.window.commands_full() {
                    self.seal().await;
                }
            }
        }
    }

    fn accept_produce(
        &mut self,
        partitions: Vec<ProducePartition>,
        reply: oneshot::Sender<Vec<PartitionOutcome>>,
    ) {
        if self.shared.fenced.get() {
            let refusal = partitions
                .iter()
                .map(|_| Err(error_code::NOT_LEADER_OR_FOLLOWER))
                .collect();
            let _ = reply.send(refusal);
            return;
        }
        let now_ms = self.now_ms();
        // One reading for the whole request: its partitions of LogAppendTime topics share it.
        let append_time_ms = wall_clock_ms();
        let resolved: Vec<Result<ResolvedPartition, i16>> = self.log.with_state(|state| {
            partitions
                .iter()
                .map(|partition| resolve_partition(state, &partition.topic, partition.partition))
                .collect()
        });
        let mut slots = Vec::with_capacity(partitions.len());
        for (partition, resolved) in partitions.into_iter().zip(resolved) {
            let slot = resolved.and_then(|resolved| {
                let (batches, log_append_time_ms) =
                    apply_topic_rules(partition.batches, &resolved, append_time_ms)?;
                Ok(PlacedPartition {
                    tp: resolved.tp,
                    slot: self.window.push_partition(resolved.tp, batches, now_ms),
                    log_append_time_ms,
                })
            });
            slots.push(slot);
        }
        if slots.iter().all(Result::is_err) {
            // Nothing reached the window: answer now rather than with the next commit.
            let answers = slots
                .into_iter()
                .map(|slot| slot.map(|_| unreachable_ok()))
                .collect();
            let _ = reply.send(answers);
            return;
        }
        self.window
            .add_produce_waiter(ProduceWaiter { slots, reply });
    }

    /// Seals the open window (if any) and starts appending it.
    async fn seal(&mut self) {
        if self.window.is_empty() {
            return;
        }
        if self.shared.needs_reopen.get() && !self.shared.fenced.get() {
            self.reopen().await;
        }
        let Ok(permit) = self.inflight.acquire_static_permit(1).await else {
            return;
        };
        let sealed = self.window.seal(wall_clock_ms());
        let now_ms = self.now_ms();
        if self.policy.note_seal(now_ms)
            && let Some(metrics) = &self.shared.metrics
        {
            metrics
                .log
                .windows_held_by_budget
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.window_interval_ms =
            window_interval_ms(&self.config, self.log.put_latency_ms_median());
        if self.shared.fenced.get() {
            finish(
                &self.log,
                &self.shared,
                sealed,
                Err(log_failure_code(&fenced_error())),
                None,
            );
            return;
        }
        let log = Rc::clone(&self.log);
        let shared = Rc::clone(&self.shared);
        let follow_compaction = self.config.checkpoints_follow_compaction;
        shared.upload_started();
        glommio::spawn_local(async move {
            let Sealed {
                content,
                produce_waiters,
                command_waiters,
                producer_id_waiters,
                batch_bytes,
                required_token,
            } = sealed;
            let mut object = None;
            // Checked with no await before the append takes its incarnation's token: a swap's
            // window is appended by the incarnation that named its objects, or not at all.
            let refusal = required_token.and_then(|token| incarnation_refusal(&log, token));
            let outcome = if let Some(reason) = refusal {
                tracing::warn!(%reason, "a window with a compaction swap is not appended");
                Err((error_code::NOT_LEADER_OR_FOLLOWER, reason))
            } else {
                let started = Instant::now();
                let outcome = log.append(content).await;
                note_append(&log, &shared, &outcome, batch_bytes, started);
                match outcome {
                    Ok(appended) => {
                        object = crate::fetch::committed_object(&appended).map(Arc::new);
                        Ok(appended)
                    }
                    Err(error) => {
                        note_failure(&shared, &error, batch_bytes);
                        Err(log_failure_code(&error))
                    }
                }
            };
            let sealed = Sealed {
                content: Default::default(),
                produce_waiters,
                command_waiters,
                producer_id_waiters,
                batch_bytes,
                required_token: None,
            };
            finish(&log, &shared, sealed, outcome, object);
            drop(permit);
            shared.upload_settled();
            maybe_checkpoint(
                log,
                shared,
                follow_compaction,
                CheckpointPolicy::AfterAppend,
            );
        })
        .detach();
    }

    /// Waits for every entry in flight, then replays and claims the log again.
    async fn reopen(&mut self) {
        let slots = self
            .config
            .flush_windows_inflight_max
            .clamp(1, FLUSH_WINDOWS_INFLIGHT_LIMIT);
        let Ok(_all) = self.inflight.acquire_permit(slots as u64).await else {
            return;
        };
        match self.log.reopen(wall_clock_ms()).await {
            Ok(replayed) => {
                self.shared.needs_reopen.set(false);
                tracing::warn!(epoch = self.log.epoch(), replayed, "metadata log re-opened");
            }
            Err(error) => {
                // Stays flagged: the next window tries again (one attempt per window, no loop).
                tracing::error!(%error, "cannot re-open the metadata log; produces fail until it can");
                if matches!(error, LogError::Fenced { .. }) {
                    self.shared.fenced.set(true);
                    if let Some(metrics) = &self.shared.metrics {
                        metrics
                            .log
                            .fenced
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// `flush_interval_ms`, stretched towards [`WINDOW_PER_PUT_RATIO`] of the recent median upload
/// time, but never beyond `flush_interval_max_ms`.
fn window_interval_ms(config: &FlushConfig, put_median_ms: Option<f64>) -> u64 {
    let shortest = config.flush_interval_ms;
    let longest = config.flush_interval_max_ms.max(shortest);
    let Some(put_median_ms) = put_median_ms.filter(|median| median.is_finite()) else {
        return shortest;
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to a u64 range first"
    )]
    let stretched = (put_median_ms * WINDOW_PER_PUT_RATIO)
        .clamp(0.0, longest as f64)
        .round() as u64;
    stretched.clamp(shortest, longest)
}

/// `Ok` values never occur where this is used; the map only changes the `Ok` type.
fn unreachable_ok() -> super::PartitionAppended {
    super::PartitionAppended {
        base_offset: 0,
        log_start_offset: 0,
        log_append_time_ms: NO_LOG_APPEND_TIME,
    }
}

/// A produced partition's place, and the configs of its topic that a produce obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ResolvedPartition {
    tp: TopicPartition,
    max_message_bytes: u64,
    timestamp_type: TimestampType,
}

/// Name → partition, plus the topic's `max.message.bytes` and `message.timestamp.type`.
fn resolve_partition(
    state: &MetadataState,
    topic: &str,
    partition: i32,
) -> Result<ResolvedPartition, i16> {
    let Some((topic_id, description)) = state.topic_by_name(topic) else {
        return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let in_range =
        u32::try_from(partition).is_ok_and(|index| index < description.partition_count());
    if !in_range {
        return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    let max_message_bytes = topic_config(description, "max.message.bytes")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let timestamp_type = match topic_config(description, "message.timestamp.type") {
        Some("LogAppendTime") => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    };
    Ok(ResolvedPartition {
        tp: TopicPartition::new(topic_id, partition),
        max_message_bytes,
        timestamp_type,
    })
}

/// A topic's value of config `name`: its override, else the default of the config table.
fn topic_config<'topic>(description: &'topic Topic, name: &str) -> Option<&'topic str> {
    description
        .config_overrides()
        .get(name)
        .map(String::as_str)
        .or_else(|| {
            known_configs()
                .iter()
                .find(|spec| spec.name == name)
                .map(|spec| spec.default)
        })
}

/// One partition's batches under its topic's rules: refused whole if one batch is above
/// `max.message.bytes` or breaks the `message.timestamp.type` rules (as Kafka fails the partition's
/// whole produce), else the batches to store, with the partition's log append time.
///
/// A LogAppendTime topic's batches are stamped with `append_time_ms` (`docs/format.md`, "Timestamps
/// the broker sets"): each is copied and its CRC recomputed here, on the metadata core, the one
/// place that knows the topic's type without a round trip. Every other batch stays the slice of the
/// request it arrived in.
fn apply_topic_rules(
    mut batches: Vec<(BatchHeader, Bytes)>,
    topic: &ResolvedPartition,
    append_time_ms: i64,
) -> Result<(Vec<(BatchHeader, Bytes)>, i64), i16> {
    let too_large = batches
        .iter()
        .any(|(header, _)| header.total_len() as u64 > topic.max_message_bytes);
    if too_large {
        return Err(error_code::MESSAGE_TOO_LARGE);
    }
    // In place: a CreateTime topic's batches come back as the same slices, and need no new Vec.
    for (header, bytes) in &mut batches {
        (*header, *bytes) =
            apply_topic_timestamp_type(bytes, header, topic.timestamp_type, append_time_ms)
                .map_err(|error| error_code::timestamp_refusal(&error))?;
    }
    let log_append_time_ms = match topic.timestamp_type {
        TimestampType::LogAppendTime => append_time_ms,
        TimestampType::CreateTime => NO_LOG_APPEND_TIME,
    };
    Ok((batches, log_append_time_ms))
}

/// Counts an append in the agent's metrics.
fn note_append(
    log: &AgentLog,
    shared: &Shared,
    outcome: &Result<AppendOutcome, LogError>,
    batch_bytes: u64,
    started: Instant,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(metrics) = &shared.metrics else {
        return;
    };
    let log_metrics = &metrics.log;
    match outcome {
        Ok(appended) => {
            log_metrics.entries_appended.fetch_add(1, Relaxed);
            log_metrics.window_bytes.fetch_add(batch_bytes, Relaxed);
            log_metrics.position.fetch_max(appended.seq.0, Relaxed);
            log_metrics.append_duration.observe(started.elapsed());
        }
        Err(error) => {
            log_metrics.append_failures.fetch_add(1, Relaxed);
            if matches!(error, LogError::Fenced { .. }) {
                log_metrics.fenced.store(true, Relaxed);
            }
        }
    }
    log_metrics.epoch.store(log.epoch(), Relaxed);
}

fn note_failure(shared: &Shared, error: &LogError, batch_bytes: u64) {
    match error {
        LogError::Fenced { .. } => {
            if !shared.fenced.replace(true) {
                tracing::error!(%error, "FENCED: another agent took over the metadata log; this agent no longer accepts writes");
            }
        }
        LogError::Broken { .. } => {
            shared.needs_reopen.set(true);
            tracing::error!(%error, batch_bytes, "metadata log append failed; re-opening before the next window");
        }
        other => tracing::warn!(error = %other, batch_bytes, "metadata log append failed"),
    }
}

/// The Kafka code a failed append is answered with, and why.
fn log_failure_code(error: &LogError) -> (i16, String) {
    let code = match error {
        // The client refreshes metadata and retries: right both for a fence and for a writer
        // that is re-opening.
        LogError::Fenced { .. } | LogError::Broken { .. } => error_code::NOT_LEADER_OR_FOLLOWER,
        LogError::Store(_) | LogError::Sequencer(_) => error_code::REQUEST_TIMED_OUT,
        _ => error_code::KAFKA_STORAGE_ERROR,
    };
    (code, error.to_string())
}

fn fenced_error() -> LogError {
    LogError::Broken {
        reason: "this agent was fenced by another writer of the metadata log".to_owned(),
    }
}

/// An admin command that an agent of a cluster could not append because it is no longer a
/// member (its lease lost or run out) is answered NOT_CONTROLLER, as Kafka answers admin
/// requests sent to a broker that is not the controller: clients look the controller up again
/// (Metadata then names another agent) and retry, where NOT_LEADER_OR_FOLLOWER ends an admin
/// call.
fn admin_failure(failure: CommandFailure, in_cluster: bool) -> CommandFailure {
    match failure {
        CommandFailure::LogFailed { code, reason }
            if in_cluster && code == error_code::NOT_LEADER_OR_FOLLOWER =>
        {
            CommandFailure::LogFailed {
                code: error_code::NOT_CONTROLLER,
                reason,
            }
        }
        other => other,
    }
}

/// Why a compaction swap with `deadline` is refused before it joins a window: its deadline
/// passed, or the log is not the incarnation whose token named its objects (an agent alone, a
/// stopped log, or a rejoin since the job began).
fn swap_refusal(log: &AgentLog, deadline: super::SwapDeadline) -> Option<String> {
    if Instant::now() >= deadline.send_by {
        return Some(
            "the compaction swap's deadline (a lease after its object's PUT started) passed"
                .to_owned(),
        );
    }
    incarnation_refusal(log, deadline.token)
}

/// Why a window that must be appended by the incarnation of `token` may not be now.
fn incarnation_refusal(log: &AgentLog, token: u32) -> Option<String> {
    let Some(log) = log.sequenced() else {
        return Some("a compaction swap named by a token needs a cluster's log".to_owned());
    };
    if let Some(reason) = log.stopped() {
        return Some(format!("the log is stopped ({reason})"));
    }
    (log.token() != token).then(|| {
        format!(
            "its objects are named by token {token}, and the log's incarnation now holds token {}",
            log.token()
        )
    })
}

fn fenced_failure() -> CommandFailure {
    let (code, reason) = log_failure_code(&fenced_error());
    CommandFailure::LogFailed { code, reason }
}

fn stopped_failure() -> CommandFailure {
    CommandFailure::LogFailed {
        code: error_code::NOT_LEADER_OR_FOLLOWER,
        reason: "the metadata core stopped".to_owned(),
    }
}

/// Answers everyone waiting on `sealed` and publishes the watermarks the commit moved.
fn finish(
    log: &AgentLog,
    shared: &Shared,
    sealed: Sealed,
    outcome: Result<AppendOutcome, (i16, String)>,
    object: Option<Arc<CommittedObject>>,
) {
    if let Ok(appended) = &outcome {
        let update: WatermarkUpdate = Arc::from(watermark_moves(&appended.events));
        shared
            .broadcaster
            .borrow_mut()
            .publish_commit(&update, object);
    }
    // One look-up table of the commit's segments for the whole window, not one per produce.
    let segments = SegmentOutcomes::new(&outcome);
    for waiter in sealed.produce_waiters {
        let answers = segments.answers(&waiter.slots, |tp| {
            log.with_state(|state| state.log_start_offset(tp).unwrap_or(0))
        });
        let _ = waiter.reply.send(answers);
    }
    answer_commands(sealed.command_waiters, &outcome);
    answer_producer_ids(sealed.producer_id_waiters, &outcome);
}

/// The partitions whose high watermark an applied entry's events moved, with the new one.
pub(super) fn watermark_moves(events: &[Event]) -> Vec<(TopicPartition, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::SegmentAppended { tp, end_offset, .. } => Some((*tp, *end_offset)),
            // Batch by batch: the watermark moved only if one was appended.
            Event::SegmentBatches {
                tp,
                batches,
                end_offset,
                ..
            } if batches
                .iter()
                .any(|batch| matches!(batch, BatchOutcome::Appended { .. })) =>
            {
                Some((*tp, *end_offset))
            }
            _ => None,
        })
        .collect()
}

/// Writes a checkpoint in the background if `cause` makes one due ([`CheckpointPolicy`]) and
/// none is being written.
fn maybe_checkpoint(
    log: Rc<AgentLog>,
    shared: Rc<Shared>,
    follow_compaction: bool,
    cause: CheckpointPolicy,
) {
    let Some(entries) = cause.entries_due(log.checkpoint_interval_entries(), follow_compaction)
    else {
        return;
    };
    if !log.checkpoint_due_after(entries) || shared.checkpointing.replace(true) {
        return;
    }
    glommio::spawn_local(async move {
        match write_checkpoint(&log).await {
            Ok(seq) => tracing::info!(?seq, "checkpoint written"),
            Err(error) => {
                tracing::warn!(%error, "checkpoint failed; tried again when one is next due")
            }
        }
        shared.checkpoint_ended();
    })
    .detach();
}

/// Writes a checkpoint of the applied state, encoded on a background thread from a
/// copy-on-write snapshot (see `MetadataLog::write_checkpoint_with`); encoded here only if no
/// thread can be started.
async fn write_checkpoint(log: &AgentLog) -> Result<Option<LogSeq>, LogError> {
    log.write_checkpoint_with(|snapshot| async move {
        let shared = std::sync::Arc::new(snapshot);
        let job = std::sync::Arc::clone(&shared);
        match off_core("sluice-checkpoint", async move { job.encode_checkpoint() }).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "checkpoint encoded on the metadata core");
                shared.encode_checkpoint()
            }
        }
    })
    .await
}

/// A clean stop leaves a checkpoint of everything applied, so that the next start replays no
/// entries (one GET each, up to about `checkpoint_interval_entries` of them, twice that with
/// compaction on: [`CheckpointPolicy`]) — as a broker's clean
/// shutdown spares it log recovery. Bounded by [`SHUTDOWN_CHECKPOINT_TIMEOUT`] (waiting for a
/// periodic checkpoint in progress included); skipped when there is nothing to cover.
async fn checkpoint_at_stop(log: &AgentLog, shared: &Shared) {
    let started = Instant::now();
    // A periodic checkpoint being written runs on this executor, which ends with this task:
    // let it finish (it may cover everything already), then cover what it did not.
    if !no_checkpoint_in_progress(shared, glommio::timer::sleep(SHUTDOWN_CHECKPOINT_TIMEOUT)).await
    {
        tracing::warn!(
            "the checkpoint in progress did not end within the stop's time; \
             the next start replays the log tail"
        );
        return;
    }
    let replayed = log.entries_since_checkpoint();
    if replayed == 0 || shared.checkpointing.replace(true) {
        return;
    }
    let written = write_checkpoint(log);
    let timeout =
        glommio::timer::sleep(SHUTDOWN_CHECKPOINT_TIMEOUT.saturating_sub(started.elapsed()));
    futures::pin_mut!(written, timeout);
    match futures::future::select(written, timeout).await {
        futures::future::Either::Left((Ok(seq), _)) => {
            tracing::info!(?seq, entries = replayed, "checkpoint written at stop");
        }
        futures::future::Either::Left((Err(error), _)) => {
            tracing::warn!(%error, "no checkpoint at stop; the next start replays the log tail");
        }
        futures::future::Either::Right(_) => {
            tracing::warn!(
                "no checkpoint at stop within its time; the next start replays the log tail"
            );
        }
    }
    shared.checkpoint_ended();
}

/// Waits until no checkpoint is being written (woken when one ends, not by polling), or until
/// `timeout` completes; says whether none is.
async fn no_checkpoint_in_progress(shared: &Shared, timeout: impl Future<Output = ()>) -> bool {
    futures::pin_mut!(timeout);
    loop {
        // Created before the check: `notify_waiters` reaches a `Notified` from its creation on,
        // so an end between the check and the first poll is not missed.
        let ended = shared.checkpoint_ended.notified();
        if !shared.checkpointing.get() {
            return true;
        }
        futures::pin_mut!(ended);
        if let futures::future::Either::Right(_) =
            futures::future::select(ended, timeout.as_mut()).await
        {
            return false;
        }
    }
}

/// Milliseconds since the Unix epoch (entry timestamps and retention; never used for ordering).
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Builds `Command::CreateTopic` with a fresh random id.
pub fn create_topic_command(
    name: &str,
    partition_count: u32,
    configs: std::collections::BTreeMap<String, String>,
) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        topic_id: sluice_engine::types::TopicId::from_uuid(uuid::Uuid::new_v4()),
        partition_count,
        configs,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod stop_checkpoint_tests {
    use super::*;

    /// The stop's wait for a periodic checkpoint ends when that checkpoint ends, with no timer.
    #[test]
    fn the_stop_waits_for_the_checkpoint_in_progress_and_is_woken_when_it_ends() {
        let shared = Shared::default();
        shared.checkpointing.set(true);
        let wait = no_checkpoint_in_progress(&shared, futures::future::pending());
        futures::pin_mut!(wait);
        assert_eq!(
            wait.as_mut().now_or_never(),
            None,
            "a checkpoint is in progress"
        );
        assert_eq!(wait.as_mut().now_or_never(), None, "and still is");
        shared.checkpoint_ended();
        assert_eq!(wait.as_mut().now_or_never(), Some(true));
        // The stop's own checkpoint may start now.
        assert!(!shared.checkpointing.replace(true));
    }

    #[test]
    fn the_stop_waits_no_longer_than_its_timeout() {
        let shared = Shared::default();
        shared.checkpointing.set(true);
        let (fire, fired) = oneshot::channel::<()>();
        let wait = no_checkpoint_in_progress(&shared, fired.map(|_| ()));
        futures::pin_mut!(wait);
        assert_eq!(wait.as_mut().now_or_never(), None);
        fire.send(()).unwrap();
        assert_eq!(wait.as_mut().now_or_never(), Some(false));
        assert!(
            shared.checkpointing.get(),
            "the one in progress is not taken over"
        );
    }

    #[test]
    fn with_no_checkpoint_in_progress_the_stop_does_not_wait() {
        let shared = Shared::default();
        let wait = no_checkpoint_in_progress(&shared, futures::future::pending());
        assert_eq!(wait.now_or_never(), Some(true));
    }
}

#[cfg(test)]
mod checkpoint_policy_tests {
    use super::CheckpointPolicy::{AfterAppend, AfterCompaction};

    #[test]
    fn the_count_alone_decides_without_compaction() {
        assert_eq!(AfterAppend.entries_due(1_000, false), Some(1_000));
        assert_eq!(AfterCompaction.entries_due(1_000, false), None);
        assert_eq!(
            AfterAppend.entries_due(0, false),
            Some(1),
            "at least one entry"
        );
    }

    /// A tick holding about N entries (the defaults: 10 s ticks, 100 windows a second) gets a
    /// checkpoint after every tick, and the count's backstop never fires first.
    #[test]
    fn with_compaction_checkpoints_follow_the_ticks_and_the_count_is_a_backstop() {
        assert_eq!(AfterCompaction.entries_due(1_000, true), Some(500));
        assert_eq!(AfterAppend.entries_due(1_000, true), Some(2_000));
        assert_eq!(AfterCompaction.entries_due(1, true), Some(1));
        assert_eq!(AfterAppend.entries_due(u64::MAX, true), Some(u64::MAX));
    }
}

#[cfg(test)]
mod window_interval_tests {
    use super::*;

    fn config(flush_interval_ms: u64, flush_interval_max_ms: u64) -> FlushConfig {
        FlushConfig {
            flush_interval_ms,
            flush_interval_max_ms,
            flush_bytes_max: 1 << 20,
            flush_windows_inflight_max: 8,
            flush_puts_per_second_max: 100,
            flush_group_commit: true,
            checkpoints_follow_compaction: false,
        }
    }

    #[test]
    fn windows_stretch_with_slow_puts_within_their_bounds() {
        let config = config(10, 50);
        assert_eq!(window_interval_ms(&config, None), 10, "no upload yet");
        assert_eq!(window_interval_ms(&config, Some(3.0)), 10, "loopback");
        assert_eq!(
            window_interval_ms(&config, Some(48.0)),
            24,
            "hedged S3 Standard"
        );
        assert_eq!(window_interval_ms(&config, Some(400.0)), 50, "capped");
        assert_eq!(window_interval_ms(&config, Some(f64::NAN)), 10);
        // A maximum below the interval means fixed windows, not a panic.
        assert_eq!(window_interval_ms(&self::config(20, 5), Some(400.0)), 20);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod topic_rules_tests {
    use sluice_engine::batch::{BatchBuilder, split_batches, validate_batch};
    use sluice_engine::metadata::{EntryKind, EntryMeta, EntryOutcome};
    use sluice_engine::types::LogSeq;

    use super::*;

    const APPEND_TIME_MS: i64 = 1_765_000_000_000;
    /// Kafka's and the config table's default `max.message.bytes`.
    const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;

    /// A state holding one two-partition topic per `(name, configs)`.
    fn state_with_topics(topics: &[(&str, &[(&str, &str)])]) -> MetadataState {
        let mut state = MetadataState::new();
        let claim = EntryMeta {
            seq: LogSeq(1),
            writer_epoch: 1,
            prev_seq: None,
            kind: EntryKind::Claim,
        };
        assert!(matches!(
            state.apply_entry(&claim, &[], None),
            EntryOutcome::Applied(_)
        ));
        let commands: Vec<Command> = topics
            .iter()
            .map(|(name, configs)| {
                let configs = configs
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect();
                create_topic_command(name, 2, configs)
            })
            .collect();
        let data = EntryMeta {
            seq: LogSeq(2),
            writer_epoch: 1,
            prev_seq: Some(LogSeq(1)),
            kind: EntryKind::Data,
        };
        match state.apply_entry(&data, &commands, None) {
            EntryOutcome::Applied(events) => assert!(
                !events
                    .iter()
                    .any(|event| matches!(event, Event::CommandRejected { .. })),
                "{events:?}"
            ),
            other => panic!("{other:?}"),
        }
        state
    }

    fn batch(records: usize, attributes: i16) -> (BatchHeader, Bytes) {
        let mut builder = BatchBuilder::new(1_000).attributes(attributes);
        for index in 0..records {
            builder = builder.record(index as i64, None, b"value");
        }
        split_batches(builder.encode(), usize::MAX)
            .unwrap()
            .remove(0)
    }

    fn topic(timestamp_type: TimestampType) -> ResolvedPartition {
        ResolvedPartition {
            tp: TopicPartition::new(sluice_engine::types::TopicId([7; 16]), 0),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            timestamp_type,
        }
    }

    #[test]
    fn partitions_resolve_with_their_topics_limits_and_timestamp_type() {
        let state = state_with_topics(&[
            ("created", &[]),
            (
                "appended",
                &[
                    ("message.timestamp.type", "LogAppendTime"),
                    ("max.message.bytes", "2048"),
                ],
            ),
            ("explicit", &[("message.timestamp.type", "CreateTime")]),
        ]);
        let created = resolve_partition(&state, "created", 1).unwrap();
        assert_eq!(created.tp.partition, 1);
        assert_eq!(created.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(created.timestamp_type, TimestampType::CreateTime);
        let appended = resolve_partition(&state, "appended", 0).unwrap();
        assert_eq!(appended.max_message_bytes, 2048);
        assert_eq!(appended.timestamp_type, TimestampType::LogAppendTime);
        let explicit = resolve_partition(&state, "explicit", 0).unwrap();
        assert_eq!(explicit.timestamp_type, TimestampType::CreateTime);
        for (name, partition) in [("created", 2), ("created", -1), ("missing", 0)] {
            assert_eq!(
                resolve_partition(&state, name, partition),
                Err(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                "{name}/{partition}"
            );
        }
    }

    #[test]
    fn a_create_time_topic_keeps_the_request_slices() {
        let batches = vec![batch(2, 0), batch(3, 0)];
        let pointers: Vec<*const u8> = batches.iter().map(|(_, bytes)| bytes.as_ptr()).collect();
        let (kept, log_append_time_ms) = apply_topic_rules(
            batches.clone(),
            &topic(TimestampType::CreateTime),
            APPEND_TIME_MS,
        )
        .unwrap();
        assert_eq!(kept, batches);
        let kept_pointers: Vec<*const u8> = kept.iter().map(|(_, bytes)| bytes.as_ptr()).collect();
        assert_eq!(kept_pointers, pointers);
        assert_eq!(log_append_time_ms, NO_LOG_APPEND_TIME);
    }

    #[test]
    fn a_log_append_time_topic_stamps_copies_with_the_append_time() {
        let batches = vec![batch(2, 0), batch(1, 0)];
        let (stamped, log_append_time_ms) = apply_topic_rules(
            batches.clone(),
            &topic(TimestampType::LogAppendTime),
            APPEND_TIME_MS,
        )
        .unwrap();
        assert_eq!(log_append_time_ms, APPEND_TIME_MS);
        assert_eq!(stamped.len(), 2);
        for ((header, bytes), (original, original_bytes)) in stamped.iter().zip(&batches) {
            assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(header.max_timestamp, APPEND_TIME_MS);
            assert_eq!(header.base_timestamp, original.base_timestamp);
            assert_eq!(header.record_count, original.record_count);
            assert_eq!(validate_batch(bytes), Ok(*header));
            assert_ne!(bytes.as_ptr(), original_bytes.as_ptr());
        }
    }

    #[test]
    fn one_refused_batch_refuses_the_partition() {
        let producer_log_append_time = batch(1, 0b1000);
        // Only the broker sets LogAppendTime on a LogAppendTime topic.
        assert_eq!(
            apply_topic_rules(
                vec![batch(1, 0), producer_log_append_time.clone()],
                &topic(TimestampType::LogAppendTime),
                APPEND_TIME_MS,
            ),
            Err(error_code::INVALID_TIMESTAMP)
        );
        // On a CreateTime topic it becomes CreateTime with the producer's maxTimestamp.
        let (converted, log_append_time_ms) = apply_topic_rules(
            vec![producer_log_append_time.clone()],
            &topic(TimestampType::CreateTime),
            APPEND_TIME_MS,
        )
        .unwrap();
        assert_eq!(converted[0].0.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(
            converted[0].0.max_timestamp,
            producer_log_append_time.0.max_timestamp
        );
        assert_eq!(log_append_time_ms, NO_LOG_APPEND_TIME);
        // max.message.bytes is checked first, on the bytes as the producer sent them.
        let small = ResolvedPartition {
            max_message_bytes: 16,
            ..topic(TimestampType::LogAppendTime)
        };
        assert_eq!(
            apply_topic_rules(vec![producer_log_append_time], &small, APPEND_TIME_MS),
            Err(error_code::MESSAGE_TOO_LARGE)
        );
    }
}
