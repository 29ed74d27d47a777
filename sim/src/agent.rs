//! One simulated agent process: the metadata core's flusher over a real [`MetadataLog`].
//!
//! The agent's metadata core (`server/src/metadata_core/flusher.rs`) runs on glommio, which cannot
//! run under a paused clock. Its decisions are in pure pieces the server exports, and this module
//! drives exactly those pieces the way the flusher does: produces, commands, InitProducerId and
//! offset commits enter the server's [`Window`] in arrival order; the window is sealed when the
//! server's [`SealPolicy`] says so (early when no upload is in flight, within a PUT budget, and at
//! the latest `flush_interval_ms` after it opened), at `flush_bytes_max`, or at once for admin
//! commands and InitProducerId; up to `windows_inflight_max` entries are appended at once; every waiter is
//! answered with the server's [`produce_answers`], [`answer_commands`] and
//! [`answer_producer_ids`]; a `Broken` append makes the next window wait for every entry in flight
//! and re-open the log; a `Fenced` one stops the agent's writes; a checkpoint is written when due.
//! What is left out: the window stretching with the PUT median (windows here are fixed), the
//! topic rules of `max.message.bytes` and LogAppendTime (the workload never trips them), watermark
//! broadcasts and the request channel's bound.
//!
//! Every task of the process is spawned through [`Process`], so a crash aborts all of them at once:
//! whatever await point each one was at is where it stops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::channel::oneshot;
use sluice_engine::log::{LogConfig, LogError, MetadataLog};
use sluice_engine::metadata::{Command, MetadataState, OffsetCommit};
use sluice_engine::store::ObjectStorage;
use sluice_engine::store::hedge::{HedgeConfig, HedgedPuts};
use sluice_engine::types::TopicPartition;
use sluice_server::metadata_core::producer_ids::answer_producer_ids;
use sluice_server::metadata_core::seal::{OpenWindow, SealConfig, SealPolicy};
use sluice_server::metadata_core::window::{
    CommandFailure, CommitOutcome, PlacedPartition, ProduceWaiter, Sealed, Window, answer_commands,
    error_code, produce_answers,
};
use sluice_server::metadata_core::{NO_LOG_APPEND_TIME, PartitionOutcome, ProducePartition};
use tokio::sync::{Semaphore, mpsc};

use crate::clock::{Clock, Tracer};
use crate::store::SimStore;

/// The flusher's and the log's settings for one run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub flush_interval_ms: u64,
    /// The PUT budget and whether windows seal early (the server's `seal.rs`).
    pub seal: SealConfig,
    pub flush_bytes_max: u64,
    pub windows_inflight_max: usize,
    pub log: LogConfig,
    pub hedge: HedgeConfig,
    /// Attempts at opening the log before the process gives up (and the driver restarts it).
    pub open_attempts_max: u32,
}

/// The tasks of one process, aborted together when it crashes; and how a task's panic is reported.
#[derive(Debug)]
pub struct Process {
    tasks: RefCell<Vec<tokio::task::AbortHandle>>,
    panics: Rc<RefCell<Vec<String>>>,
    dead: Cell<bool>,
}

impl Process {
    pub fn new(panics: Rc<RefCell<Vec<String>>>) -> Rc<Process> {
        Rc::new(Process {
            tasks: RefCell::new(Vec::new()),
            panics,
            dead: Cell::new(false),
        })
    }

    /// Spawns `task` as part of this process (nothing, once it is dead). A panic is recorded as a
    /// failure of the run instead of vanishing into a join handle.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + 'static) {
        if self.dead.get() {
            return;
        }
        let panics = Rc::clone(&self.panics);
        let handle = tokio::task::spawn_local(async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                panics
                    .borrow_mut()
                    .push(format!("task {name} panicked: {message}"));
            }
        });
        let mut tasks = self.tasks.borrow_mut();
        if tasks.len() >= 64 {
            tasks.retain(|task| !task.is_finished());
        }
        tasks.push(handle.abort_handle());
    }

    /// Kills every task where it stands.
    pub fn kill(&self) {
        self.dead.set(true);
        for task in self.tasks.borrow_mut().drain(..) {
            task.abort();
        }
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }
}

/// A message to the agent's metadata core (the server's `CoreRequest`, minus queries: readers
/// look at the state directly, as the core's `query` does between two requests).
#[derive(Debug)]
enum Request {
    Produce {
        partitions: Vec<ProducePartition>,
        reply: oneshot::Sender<Vec<PartitionOutcome>>,
    },
    Commands {
        commands: Vec<Command>,
        reply: oneshot::Sender<Vec<Result<(), CommandFailure>>>,
    },
    InitProducerId {
        reply: oneshot::Sender<Result<(i64, i16), CommandFailure>>,
    },
    CommitOffsets {
        group: String,
        offsets: Vec<OffsetCommit>,
        reply: oneshot::Sender<CommitOutcome>,
    },
}

/// State shared between the core loop and its append tasks (the flusher's `Shared`).
#[derive(Debug, Default)]
struct Shared {
    fenced: Cell<bool>,
    /// The log is being re-opened: its state is being rebuilt, and the server's core answers no
    /// query until it is done (queries wait in its channel), so nobody here reads it either.
    reopening: Cell<bool>,
    needs_reopen: Cell<bool>,
    checkpointing: Cell<bool>,
    /// Sealed windows whose append has not returned yet (the flusher's count).
    uploads_in_flight: Cell<usize>,
    /// Wakes the core loop when an append returns.
    upload_settled: tokio::sync::Notify,
}

/// A running (or dead) agent process, as clients and the driver see it.
#[derive(Debug)]
pub struct Agent {
    pub incarnation: u32,
    store: SimStore,
    process: Rc<Process>,
    log: RefCell<Option<Rc<MetadataLog>>>,
    sender: RefCell<Option<mpsc::UnboundedSender<Request>>>,
    shared: Rc<Shared>,
    /// Whether opening the log failed for good.
    gave_up: Cell<bool>,
}

impl Agent {
    /// Starts a process: it opens the log (recovery and a claim, retried under faults), then runs
    /// the metadata core loop.
    pub fn start(
        incarnation: u32,
        store: SimStore,
        config: AgentConfig,
        tracer: Tracer,
        panics: Rc<RefCell<Vec<String>>>,
    ) -> Rc<Agent> {
        let agent = Rc::new(Agent {
            incarnation,
            store,
            process: Process::new(panics),
            log: RefCell::new(None),
            sender: RefCell::new(None),
            shared: Rc::new(Shared::default()),
            gave_up: Cell::new(false),
        });
        let starting = Rc::clone(&agent);
        agent.process.spawn("open", async move {
            starting.open_and_run(config, tracer).await;
        });
        agent
    }

    async fn open_and_run(self: Rc<Self>, config: AgentConfig, tracer: Tracer) {
        let clock = tracer.clock();
        let sim_store: Arc<dyn ObjectStorage> = Arc::new(self.store.clone());
        let store: Arc<dyn ObjectStorage> = if config.hedge.copies_max > 1 {
            match HedgedPuts::new(Arc::clone(&sim_store), config.hedge) {
                Ok(hedged) => Arc::new(hedged),
                Err(_) => sim_store,
            }
        } else {
            sim_store
        };
        let mut opened = None;
        for attempt in 0..config.open_attempts_max {
            match MetadataLog::open(Arc::clone(&store), config.log.clone(), clock.wall_ms()).await {
                Ok((log, stats)) => {
                    tracer.trace((
                        "opened",
                        self.incarnation,
                        log.epoch(),
                        stats.first_free.0,
                        stats.checkpoint_seq.map(|seq| seq.0),
                        stats.entries_replayed,
                    ));
                    opened = Some(log);
                    break;
                }
                Err(error) => {
                    tracer.trace(("open failed", self.incarnation, error.to_string()));
                    let backoff_ms = 20u64.saturating_mul(u64::from(attempt) + 1).min(200);
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                }
            }
        }
        let Some(log) = opened else {
            self.gave_up.set(true);
            return;
        };
        let log = Rc::new(log);
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.log.borrow_mut() = Some(Rc::clone(&log));
        *self.sender.borrow_mut() = Some(sender);
        let windows_inflight_max = config.windows_inflight_max.max(1);
        let policy = SealPolicy::new(config.seal, clock.now_ms());
        let core = Core {
            policy,
            log,
            window: Window::default(),
            inflight: Arc::new(Semaphore::new(windows_inflight_max)),
            windows_inflight_max,
            config,
            shared: Rc::clone(&self.shared),
            process: Rc::clone(&self.process),
            clock,
            tracer,
        };
        core.run(receiver).await;
    }

    /// Whether the log is open, the process alive, not fenced and its writer not stopped waiting
    /// for a re-open: it takes writes, and its state is the log's (a stopped writer keeps the
    /// state it had, which a newer writer may have moved past).
    pub fn is_serving(&self) -> bool {
        !self.process.is_dead()
            && self.log.borrow().is_some()
            && !self.shared.fenced.get()
            && !self.shared.reopening.get()
            && !self.shared.needs_reopen.get()
    }

    /// The writer stopped and re-opens at its next window (the server re-opens lazily too).
    pub fn needs_reopen(&self) -> bool {
        self.shared.needs_reopen.get()
    }

    pub fn is_open(&self) -> bool {
        self.log.borrow().is_some()
    }

    /// The writer epoch of its last claim that landed, once the log is open.
    pub fn epoch(&self) -> Option<u64> {
        self.log.borrow().as_ref().map(|log| log.epoch())
    }

    pub fn is_dead(&self) -> bool {
        self.process.is_dead()
    }

    pub fn is_fenced(&self) -> bool {
        self.shared.fenced.get()
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up.get()
    }

    /// The process dies: every task stops at its await point, every store call of it hangs, and
    /// the PUTs it had sent land or not. Waiters see their answer channel close.
    pub fn crash(&self) {
        self.store.kill();
        self.process.kill();
        self.sender.borrow_mut().take();
        self.log.borrow_mut().take();
    }

    /// The store this process reads through (with its faults and latency).
    pub fn store(&self) -> &SimStore {
        &self.store
    }

    /// Reads the state every acknowledged entry made (the core's `query`).
    pub fn with_state<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> Option<R> {
        if self.process.is_dead() || self.shared.reopening.get() {
            return None;
        }
        let log = self.log.borrow().clone()?;
        Some(log.with_state(read))
    }

    fn send(&self, request: Request) -> bool {
        if self.process.is_dead() {
            return false;
        }
        match self.sender.borrow().as_ref() {
            Some(sender) => sender.send(request).is_ok(),
            None => false,
        }
    }

    pub fn produce(
        &self,
        partitions: Vec<ProducePartition>,
    ) -> Option<oneshot::Receiver<Vec<PartitionOutcome>>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Produce { partitions, reply })
            .then_some(answer)
    }

    pub fn commands(
        &self,
        commands: Vec<Command>,
    ) -> Option<oneshot::Receiver<Vec<Result<(), CommandFailure>>>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Commands { commands, reply })
            .then_some(answer)
    }

    pub fn init_producer_id(
        &self,
    ) -> Option<oneshot::Receiver<Result<(i64, i16), CommandFailure>>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::InitProducerId { reply })
            .then_some(answer)
    }

    pub fn commit_offsets(
        &self,
        group: String,
        offsets: Vec<OffsetCommit>,
    ) -> Option<oneshot::Receiver<CommitOutcome>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::CommitOffsets {
            group,
            offsets,
            reply,
        })
        .then_some(answer)
    }
}

/// The metadata core loop of one process (the flusher's `Core`).
struct Core {
    policy: SealPolicy,
    log: Rc<MetadataLog>,
    window: Window,
    inflight: Arc<Semaphore>,
    windows_inflight_max: usize,
    config: AgentConfig,
    shared: Rc<Shared>,
    process: Rc<Process>,
    clock: Clock,
    tracer: Tracer,
}

impl Core {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Request>) {
        loop {
            let now_ms = self.clock.now_ms();
            let window = self.window.opened_at_ms().map(|opened_at_ms| OpenWindow {
                opened_at_ms,
                batch_bytes: self.window.bytes(),
                interval_ms: self.config.flush_interval_ms,
            });
            let seal_at_ms =
                self.policy
                    .seal_at_ms(now_ms, window, self.shared.uploads_in_flight.get());
            if seal_at_ms.is_some_and(|at_ms| at_ms <= now_ms) {
                self.seal().await;
                continue;
            }
            let deadline = seal_at_ms.map(|at_ms| self.clock.instant_at_ms(at_ms));
            tokio::select! {
                biased;
                request = receiver.recv() => match request {
                    Some(request) => {
                        self.handle(request).await;
                        // The requests already queued join the window (the flusher's
                        // `handle_queued`).
                        while let Ok(request) = receiver.try_recv() {
                            self.handle(request).await;
                        }
                    }
                    None => break,
                },
                () = self.shared.upload_settled.notified() => {}
                () = sleep_until(deadline) => {}
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        let now_ms = self.clock.now_ms();
        match request {
            Request::Produce { partitions, reply } => {
                self.accept_produce(partitions, reply, now_ms);
                if self.window.bytes() >= self.config.flush_bytes_max {
                    self.seal().await;
                }
            }
            Request::Commands { commands, reply } => {
                if self.shared.fenced.get() {
                    let _ = reply.send(commands.iter().map(|_| Err(fenced_failure())).collect());
                    return;
                }
                if self.window.would_overflow(commands.len(), 0) {
                    self.seal().await;
                }
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    let (sender, answer) = oneshot::channel();
                    self.window.push_command(command, sender, now_ms);
                    answers.push(answer);
                }
                self.process.spawn("command answers", async move {
                    let mut outcomes = Vec::with_capacity(answers.len());
                    for answer in answers {
                        outcomes.push(answer.await.unwrap_or_else(|_| Err(fenced_failure())));
                    }
                    let _ = reply.send(outcomes);
                });
                self.seal().await;
            }
            Request::InitProducerId { reply } => {
                if self.shared.fenced.get() {
                    let _ = reply.send(Err(fenced_failure()));
                    return;
                }
                self.window.push_init_producer_id(None, reply, now_ms);
                self.seal().await;
            }
            Request::CommitOffsets {
                group,
                offsets,
                reply,
            } => {
                if self.shared.fenced.get() {
                    let _ = reply.send(Err(fenced_failure()));
                    return;
                }
                let bytes =
                    sluice_server::metadata_core::window::commit_command_bytes(&group, &offsets);
                if self.window.would_overflow(1, bytes) {
                    self.seal().await;
                }
                self.window.push_commit(group, offsets, reply, now_ms);
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
        now_ms: u64,
    ) {
        if self.shared.fenced.get() {
            let refusal = partitions
                .iter()
                .map(|_| Err(error_code::NOT_LEADER_OR_FOLLOWER))
                .collect();
            let _ = reply.send(refusal);
            return;
        }
        let resolved: Vec<Result<TopicPartition, i16>> = self.log.with_state(|state| {
            partitions
                .iter()
                .map(|partition| resolve_partition(state, &partition.topic, partition.partition))
                .collect()
        });
        let mut slots = Vec::with_capacity(partitions.len());
        for (partition, resolved) in partitions.into_iter().zip(resolved) {
            slots.push(resolved.map(|tp| PlacedPartition {
                tp,
                slot: self.window.push_partition(tp, partition.batches, now_ms),
                log_append_time_ms: NO_LOG_APPEND_TIME,
            }));
        }
        if slots.iter().all(Result::is_err) {
            let answers = slots
                .into_iter()
                .map(|slot| match slot {
                    Err(code) => Err(code),
                    Ok(_) => Err(error_code::KAFKA_STORAGE_ERROR),
                })
                .collect();
            let _ = reply.send(answers);
            return;
        }
        self.window
            .add_produce_waiter(ProduceWaiter { slots, reply });
    }

    async fn seal(&mut self) {
        if self.window.is_empty() {
            return;
        }
        if self.shared.needs_reopen.get() && !self.shared.fenced.get() {
            self.reopen().await;
        }
        let Ok(permit) = Arc::clone(&self.inflight).acquire_owned().await else {
            return;
        };
        let sealed = self.window.seal(self.clock.wall_ms());
        self.policy.note_seal(self.clock.now_ms());
        if self.shared.fenced.get() {
            finish(&self.log, sealed, Err(fenced_code()));
            return;
        }
        self.shared
            .uploads_in_flight
            .set(self.shared.uploads_in_flight.get().saturating_add(1));
        let log = Rc::clone(&self.log);
        let shared = Rc::clone(&self.shared);
        let process = Rc::clone(&self.process);
        let tracer = self.tracer.clone();
        self.process.spawn("append", async move {
            let Sealed {
                content,
                produce_waiters,
                command_waiters,
                producer_id_waiters,
                batch_bytes,
                // A compaction swap's condition in a cluster; the simulated agent runs alone.
                required_token: _,
            } = sealed;
            let outcome = match log.append(content).await {
                Ok(appended) => Ok(appended),
                Err(error) => {
                    tracer.trace(("append failed", error.to_string()));
                    match &error {
                        LogError::Fenced { .. } => shared.fenced.set(true),
                        LogError::Broken { .. } => shared.needs_reopen.set(true),
                        _ => {}
                    }
                    Err(log_failure_code(&error))
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
            finish(&log, sealed, outcome);
            drop(permit);
            shared
                .uploads_in_flight
                .set(shared.uploads_in_flight.get().saturating_sub(1));
            shared.upload_settled.notify_one();
            maybe_checkpoint(&process, log, shared);
        });
    }

    async fn reopen(&mut self) {
        let Ok(slots) = u32::try_from(self.windows_inflight_max) else {
            return;
        };
        let Ok(_all) = self.inflight.acquire_many(slots).await else {
            return;
        };
        self.shared.reopening.set(true);
        let reopened = self.log.reopen(self.clock.wall_ms()).await;
        self.shared.reopening.set(false);
        self.tracer.trace((
            "reopen",
            self.log.epoch(),
            reopened
                .as_ref()
                .map(|stats| stats.first_free.0)
                .map_err(ToString::to_string),
        ));
        match reopened {
            Ok(_) => self.shared.needs_reopen.set(false),
            Err(error) => {
                if matches!(error, LogError::Fenced { .. }) {
                    self.shared.fenced.set(true);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => futures::future::pending::<()>().await,
    }
}

/// Answers everyone waiting on `sealed` (the flusher's `finish`, without watermark broadcasts).
fn finish(
    log: &MetadataLog,
    sealed: Sealed,
    outcome: Result<sluice_engine::log::AppendOutcome, (i16, String)>,
) {
    for waiter in sealed.produce_waiters {
        let answers = produce_answers(&waiter.slots, &outcome, |tp| {
            log.with_state(|state| state.log_start_offset(tp).unwrap_or(0))
        });
        let _ = waiter.reply.send(answers);
    }
    answer_commands(sealed.command_waiters, &outcome);
    answer_producer_ids(sealed.producer_id_waiters, &outcome);
}

fn maybe_checkpoint(process: &Process, log: Rc<MetadataLog>, shared: Rc<Shared>) {
    if !log.checkpoint_due() || shared.checkpointing.replace(true) {
        return;
    }
    process.spawn("checkpoint", async move {
        let _ = log.write_checkpoint().await;
        shared.checkpointing.set(false);
    });
}

fn resolve_partition(
    state: &MetadataState,
    topic: &str,
    partition: i32,
) -> Result<TopicPartition, i16> {
    let Some((topic_id, description)) = state.topic_by_name(topic) else {
        return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let in_range =
        u32::try_from(partition).is_ok_and(|index| index < description.partition_count());
    if !in_range {
        return Err(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    Ok(TopicPartition::new(topic_id, partition))
}

/// The flusher's codes for a failed append.
fn log_failure_code(error: &LogError) -> (i16, String) {
    let code = match error {
        LogError::Fenced { .. } | LogError::Broken { .. } => error_code::NOT_LEADER_OR_FOLLOWER,
        LogError::Store(_) => error_code::REQUEST_TIMED_OUT,
        _ => error_code::KAFKA_STORAGE_ERROR,
    };
    (code, error.to_string())
}

fn fenced_code() -> (i16, String) {
    (
        error_code::NOT_LEADER_OR_FOLLOWER,
        "this agent was fenced by another writer of the metadata log".to_owned(),
    )
}

fn fenced_failure() -> CommandFailure {
    let (code, reason) = fenced_code();
    CommandFailure::LogFailed { code, reason }
}
