//! One seed, start to end: draw the scenario, run it on a paused clock, check after every step.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use sluice_engine::batch::BatchHeader;
use sluice_engine::log::LogConfig;
use sluice_engine::planted::PlantedBug;
use sluice_engine::store::LatencyProfile;
use sluice_engine::store::hedge::HedgeConfig;
use sluice_engine::types::TopicPartition;

use crate::agent::{Agent, AgentConfig};
use crate::client;
use crate::clock::{Clock, Tracer};
use crate::oracle::{Replay, recovered_states};
use crate::store::{CallFaults, CrashPoint, FaultModel, Oracle, SimBucket, StoreCounts};
use sluice_server::metadata_core::seal::SealConfig;

/// Virtual milliseconds between two steps of the driver (and two rounds of checks).
const STEP_MS: u64 = 10;
/// Virtual milliseconds the run goes on after the workload stops, faults off, so everything in
/// flight settles before the final checks.
const DRAIN_MS: u64 = 3_000;
/// How much longer the drain may go on while no owner serves and an agent is still on its way
/// to serving (opening, or re-opening after `Broken`). An open replays every entry since the
/// newest checkpoint (up to ~40 here): with one read in flight and a tail read too short for the
/// index (two GETs an entry) that alone takes ~4 s on S3 Standard (seed 3037). An open that
/// never finishes — two claimers overtaking each other forever — still fails, at this bound.
const DRAIN_OPENING_MS_MAX: u64 = 10_000;
/// How long an older agent may keep running once a newer one has opened the log, unless it
/// notices it was fenced first.
const ZOMBIE_MS_MAX: u64 = 1_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Virtual milliseconds of workload.
    pub duration_ms: u64,
    /// Bugs to plant (see `sluice_engine::planted`).
    pub plant: Vec<PlantedBug>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration_ms: 2_000,
            plant: Vec::new(),
        }
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failure {
    /// Virtual time of the step that found it.
    pub at_ms: u64,
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub acks: u64,
    pub commits_acked: u64,
    pub fetched_batches: u64,
    pub agents_started: u32,
    pub crashes: u32,
    pub second_writers: u32,
    pub full_checks: u32,
    pub steps: u64,
    pub log_entries: u64,
    pub virtual_ms: u64,
    /// How long the drain went on past its 3 s because an open or re-open was still under way.
    pub drain_extended_ms: u64,
    pub store: StoreCounts,
    pub scenario: String,
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    /// Hash of every decision and acknowledgement: the same seed gives the same hash.
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    pub summary: Summary,
}

/// Runs one seed to the end (or to its first broken invariant) on a fresh single-threaded
/// runtime with a paused clock.
pub fn run_seed(seed: u64, options: &Options) -> Report {
    sluice_engine::planted::plant(&options.plant);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    let report = match runtime {
        Ok(runtime) => {
            let local = tokio::task::LocalSet::new();
            let report = local.block_on(&runtime, drive(seed, options.clone()));
            drop(local);
            drop(runtime);
            report
        }
        Err(error) => Report {
            seed,
            trace_hash: 0,
            failure: Some(Failure {
                at_ms: 0,
                message: format!("cannot build a runtime: {error}"),
            }),
            summary: Summary::default(),
        },
    };
    sluice_engine::planted::plant(&[]);
    report
}

/// The scenario a seed draws.
#[derive(Debug, Clone)]
struct Plan {
    faults: FaultModel,
    agent: AgentConfig,
    producers_plain: u32,
    producers_idempotent: u32,
    consumers: u32,
    groups: u32,
    think_ms_mean: u64,
    /// Crashes, second writers, by virtual time.
    events: Vec<(u64, Event)>,
    restart_delay_ms: u64,
    profile_name: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Event {
    /// The newest agent dies now.
    CrashNow,
    /// The newest agent dies at its `after_calls`-th next store call, at `point`.
    CrashAtCall { after_calls: u64, point: CrashPoint },
    /// A second agent opens the log while the newest still runs.
    SecondWriter,
}

impl Plan {
    fn draw(rng: &mut ChaCha8Rng, duration_ms: u64) -> Plan {
        let (profile, profile_name) = if rng.random_bool(0.75) {
            (LatencyProfile::s3_express(), "S3 Express")
        } else {
            (LatencyProfile::s3_standard(), "S3 Standard")
        };
        let intensity: f64 = match rng.random_range(0..10) {
            0 | 1 => 0.0,
            2..=6 => 1.0,
            _ => 3.0,
        };
        let faults = FaultModel {
            put: CallFaults {
                error: 0.02 * intensity,
                timeout: 0.005 * intensity,
                slow: 0.01 * intensity,
                lost_response: 0.02 * intensity,
            },
            read: CallFaults {
                error: 0.01 * intensity,
                timeout: 0.002 * intensity,
                slow: 0.01 * intensity,
                lost_response: 0.0,
            },
            conflict: if intensity > 0.0 { 0.5 } else { 0.0 },
            timeout_ms: one_of(rng, &[200, 500, 1_000]),
            profile,
        };
        let hedge = if rng.random_bool(0.5) {
            HedgeConfig {
                copies_max: rng.random_range(2..5),
                latency_target_ms: rng.random_range(5..30),
                hedge_delay_ms_min: rng.random_range(2..10),
                ..HedgeConfig::default()
            }
        } else {
            HedgeConfig::off()
        };
        let tail_read_bytes = one_of(
            rng,
            &[
                sluice_engine::format::MIN_OBJECT_LEN,
                300,
                4_096,
                LogConfig::default().tail_read_bytes,
            ],
        );
        let flush_interval_ms = rng.random_range(2..25);
        let agent = AgentConfig {
            flush_interval_ms,
            // Drawn below, last, so that every other draw of a seed stays what it was.
            seal: SealConfig {
                puts_per_second_max: 1_000 / flush_interval_ms,
                group_commit: false,
            },
            flush_bytes_max: one_of(rng, &[2_048, 64 * 1_024, 8 << 20]),
            windows_inflight_max: rng.random_range(1..9),
            log: LogConfig {
                put_attempts_max: rng.random_range(1..5),
                tail_read_bytes,
                checkpoint_interval_entries: rng.random_range(2..40),
                recovery_reads_inflight_max: rng.random_range(1..8),
            },
            hedge,
            open_attempts_max: 10,
        };
        let mut events = Vec::new();
        for _ in 0..rng.random_range(0..4) {
            let at_ms = rng.random_range(50..duration_ms.max(51));
            let event = if rng.random_bool(0.3) {
                Event::CrashNow
            } else {
                Event::CrashAtCall {
                    after_calls: rng.random_range(1..60),
                    point: if rng.random_bool(0.5) {
                        CrashPoint::BeforeSend
                    } else {
                        CrashPoint::BeforeAnswer
                    },
                }
            };
            events.push((at_ms, event));
        }
        for _ in 0..rng.random_range(0..3) {
            if rng.random_bool(0.5) {
                events.push((
                    rng.random_range(50..duration_ms.max(51)),
                    Event::SecondWriter,
                ));
            }
        }
        events.sort_by_key(|(at_ms, _)| *at_ms);
        let mut agent = agent;
        agent.seal.group_commit = rng.random_bool(0.5);
        Plan {
            faults,
            agent,
            producers_plain: rng.random_range(1..4),
            producers_idempotent: rng.random_range(1..4),
            consumers: rng.random_range(1..3),
            groups: rng.random_range(1..3),
            think_ms_mean: rng.random_range(5..40),
            events,
            restart_delay_ms: rng.random_range(0..150),
            profile_name,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}; {} producers ({} idempotent), {} consumers, {} groups; flush {} ms ({} PUTs/s, \
             group commit {}), {} in flight, {} PUT attempts, checkpoint every {}, tail reads of {} bytes, {} in flight, \
             hedge copies {}; put faults {:?}; events {:?}",
            self.profile_name,
            self.producers_plain + self.producers_idempotent,
            self.producers_idempotent,
            self.consumers,
            self.groups,
            self.agent.flush_interval_ms,
            self.agent.seal.puts_per_second_max,
            self.agent.seal.group_commit,
            self.agent.windows_inflight_max,
            self.agent.log.put_attempts_max,
            self.agent.log.checkpoint_interval_entries,
            self.agent.log.tail_read_bytes,
            self.agent.log.recovery_reads_inflight_max,
            self.agent.hedge.copies_max,
            self.faults.put,
            self.events,
        )
    }
}

/// One of `items`, drawn uniformly (the first for an empty list, which no caller passes).
fn one_of<T: Copy + Default>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    let index = rng.random_range(0..items.len().max(1));
    items.get(index).copied().unwrap_or_default()
}

/// The state every task of a run shares: clock, randomness, the model, the agents.
#[derive(Debug)]
pub struct Sim {
    pub clock: Clock,
    rng: RefCell<ChaCha8Rng>,
    pub model: RefCell<crate::model::Model>,
    agents: RefCell<Vec<Rc<Agent>>>,
    /// Broken invariants and panics, in the order found.
    failures: Rc<RefCell<Vec<String>>>,
    tracer: Tracer,
    running: Cell<bool>,
    fetched_batches: Cell<u64>,
}

impl Sim {
    pub fn chance(&self, probability: f64) -> bool {
        self.rng.borrow_mut().random_bool(probability)
    }

    pub fn range<T: rand::distr::uniform::SampleUniform + PartialOrd>(
        &self,
        range: std::ops::Range<T>,
    ) -> T {
        self.rng.borrow_mut().random_range(range)
    }

    pub fn fill(&self, bytes: &mut [u8]) {
        self.rng.borrow_mut().fill(bytes);
    }

    pub fn pick<T: Clone>(&self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let index = self.range(0..items.len());
        items.get(index).cloned()
    }

    pub fn shuffle<T>(&self, items: &mut [T]) {
        items.shuffle(&mut *self.rng.borrow_mut());
    }

    /// A client's pause between two requests: exponential around `mean_ms`.
    pub fn think_ms(&self, mean_ms: u64) -> u64 {
        #[expect(clippy::cast_precision_loss, reason = "small means")]
        let rate = 1.0 / mean_ms.max(1) as f64;
        let Ok(exp) = Exp::new(rate) else {
            return mean_ms;
        };
        let draw: f64 = exp.sample(&mut *self.rng.borrow_mut());
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped first"
        )]
        let ms = draw.clamp(0.0, 10_000.0) as u64;
        ms.max(1)
    }

    pub fn trace(&self, event: impl Hash + std::fmt::Debug) {
        self.tracer.trace(event);
    }

    pub fn fail(&self, message: String) {
        self.failures.borrow_mut().push(message);
    }

    /// Whether clients should keep sending.
    pub fn running(&self) -> bool {
        self.running.get()
    }

    /// The newest agent that takes writes.
    pub fn newest_serving(&self) -> Option<Rc<Agent>> {
        self.agents
            .borrow()
            .iter()
            .rev()
            .find(|agent| agent.is_serving())
            .cloned()
    }

    /// The partition a produce named, by the model's topic ids.
    pub fn tp_of(&self, topic: &str, partition: i32) -> Option<TopicPartition> {
        let model = self.model.borrow();
        let topic = model.topics.get(topic)?;
        Some(TopicPartition::new(topic.id, partition))
    }

    /// A fetch answer against the acknowledgements: every batch at an acknowledged offset is the
    /// acknowledged batch.
    pub fn check_fetched(&self, tp: TopicPartition, bytes: &Bytes) -> Result<(), String> {
        let model = self.model.borrow();
        let Some(partition) = model.partitions.get(&tp) else {
            return Ok(());
        };
        let mut position = 0usize;
        while let Some(rest) = bytes.get(position..).filter(|rest| !rest.is_empty()) {
            let header = BatchHeader::parse(rest).map_err(|error| format!("{tp}: {error}"))?;
            let batch = rest
                .get(..header.total_len())
                .ok_or_else(|| format!("{tp}: a fetched batch is cut"))?;
            let base = u64::try_from(header.base_offset).unwrap_or(u64::MAX);
            if let Some(acked) = partition.acked.get(&base) {
                let same = batch.len() == acked.bytes.len()
                    && batch.get(sluice_engine::batch::MAGIC_OFFSET..)
                        == acked.bytes.get(sluice_engine::batch::MAGIC_OFFSET..);
                if !same {
                    return Err(format!(
                        "{tp}: a fetch at offset {base} returned another batch than the one \
                         acknowledged there"
                    ));
                }
            } else if let Some((acked_base, acked)) = partition.acked.range(..base).next_back()
                && acked_base + acked.offset_count > base
            {
                return Err(format!(
                    "{tp}: a fetch returned a batch at {base}, inside the one acknowledged at \
                     {acked_base}"
                ));
            }
            position += header.total_len();
        }
        Ok(())
    }

    pub fn count_fetch(&self, batches: usize) {
        self.fetched_batches
            .set(self.fetched_batches.get() + batches as u64);
    }

    /// Spawns a client task (not part of any agent process).
    pub fn spawn_client(
        self: Rc<Self>,
        name: &'static str,
        task: impl Future<Output = ()> + 'static,
    ) {
        let failures = Rc::clone(&self.failures);
        tokio::task::spawn_local(async move {
            use futures::FutureExt;
            if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_default();
                failures
                    .borrow_mut()
                    .push(format!("client {name} panicked: {message}"));
            }
        });
    }
}

/// The driver's own bookkeeping of agents.
struct Driver {
    sim: Rc<Sim>,
    bucket: SimBucket,
    oracle: Oracle,
    plan: Plan,
    replay: Replay,
    next_incarnation: u32,
    /// Virtual time each agent was first seen owning the log (after its full check).
    opened_at: BTreeMap<u32, u64>,
    /// The agent that owns the log, and since when (virtual ms).
    owner_since: Option<(u32, u64)>,
    restart_at: Option<u64>,
    summary: Summary,
}

impl Driver {
    fn start_agent(&mut self) {
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        self.summary.agents_started += 1;
        self.sim.trace(("start", incarnation));
        let agent = Agent::start(
            incarnation,
            self.bucket.handle(incarnation),
            self.plan.agent.clone(),
            self.sim.tracer.clone(),
            Rc::clone(&self.sim.failures),
        );
        let mut agents = self.sim.agents.borrow_mut();
        agents.retain(|agent| !agent.is_dead());
        agents.push(agent);
    }

    fn newest_alive(&self) -> Option<Rc<Agent>> {
        self.sim
            .agents
            .borrow()
            .iter()
            .rev()
            .find(|agent| !agent.is_dead())
            .cloned()
    }

    fn crash(&mut self, agent: &Agent) {
        if agent.is_dead() {
            return;
        }
        self.summary.crashes += 1;
        self.sim.trace(("crash", agent.incarnation));
        agent.crash();
    }

    fn apply_event(&mut self, event: Event) {
        self.sim.trace(("event", event));
        let Some(agent) = self.newest_alive() else {
            return;
        };
        match event {
            Event::CrashNow => self.crash(&agent),
            Event::CrashAtCall { after_calls, point } => {
                let calls = self.bucket.calls_of(agent.incarnation);
                self.bucket
                    .plan_crash(agent.incarnation, calls + after_calls, point);
            }
            Event::SecondWriter => {
                self.summary.second_writers += 1;
                self.start_agent();
            }
        }
    }

    /// Crashes, restarts, fenced and lingering agents.
    fn manage_agents(&mut self, now_ms: u64) -> Result<(), String> {
        for incarnation in self.bucket.take_crashed() {
            let agent = self
                .sim
                .agents
                .borrow()
                .iter()
                .find(|agent| agent.incarnation == incarnation)
                .cloned();
            if let Some(agent) = agent {
                self.crash(&agent);
            }
        }
        let owner = self.owner()?;
        let owner_incarnation = owner.as_ref().map(|agent| agent.incarnation);
        if self.owner_since.map(|(incarnation, _)| incarnation) != owner_incarnation {
            self.owner_since = owner_incarnation.map(|incarnation| (incarnation, now_ms));
        }
        let agents: Vec<Rc<Agent>> = self.sim.agents.borrow().clone();
        for agent in &agents {
            if agent.is_dead() {
                continue;
            }
            // A fenced agent stops (the server keeps serving reads; nothing here needs them), an
            // agent that could not open the log exits, and an open agent that lingers a while
            // after another one took the log over is killed — by epoch, not by age: a stopped
            // writer's re-open takes the log back from a newer agent, which is then the one left
            // behind.
            let lingering = agent.is_open()
                && Some(agent.incarnation) != owner_incarnation
                && self
                    .owner_since
                    .is_some_and(|(_, since)| now_ms.saturating_sub(since) > ZOMBIE_MS_MAX);
            if agent.is_fenced() || agent.gave_up() || lingering {
                self.crash(agent);
            }
        }
        // After the workload, a stopped writer would wait for a window that never comes (the
        // server re-opens at its next window), and an agent fenced by a claim it has not seen
        // yet (its owner since dead) would never notice: a request now and then opens a window.
        let owner_serves = owner.is_some_and(|owner| owner.is_serving());
        if !self.sim.running() && now_ms.is_multiple_of(200) && !owner_serves {
            for agent in self.sim.agents.borrow().iter() {
                if !agent.is_dead() && agent.is_open() {
                    let _ = agent.init_producer_id();
                }
            }
        }
        if self.newest_alive().is_none() {
            match self.restart_at {
                None => self.restart_at = Some(now_ms + self.plan.restart_delay_ms),
                Some(at_ms) if at_ms <= now_ms => {
                    self.restart_at = None;
                    self.start_agent();
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// What is in the bucket now, for the checks.
    fn object(&self) -> impl Fn(&str) -> Option<Bytes> + 'static {
        let bucket = self.bucket.clone();
        move |key: &str| bucket.object(key)
    }

    /// The live agent that owns the log: the open one with the highest epoch, unless the bucket
    /// holds a valid claim of a higher epoch still (its owner has died since). Not necessarily
    /// the newest agent: a writer that stopped (`Broken`) re-opens with a new claim and so fences
    /// any agent that claimed since (a newer one included), and of two agents opening at once the
    /// later claim wins. An agent with a lower epoch is fenced and rightly lags behind until its
    /// next PUT tells it so. An agent whose epoch the bucket's chain does not reach (a claim past
    /// a gap, a chain the state machine got wrong) is still the one checked, and the replay of
    /// the committed log then says what is wrong with it.
    fn owner(&self) -> Result<Option<Rc<Agent>>, String> {
        let owner_epoch = self
            .replay
            .owner_epoch(&self.oracle, &self.plan.agent.log)?;
        let agents = self.sim.agents.borrow();
        let highest = agents
            .iter()
            .filter(|agent| !agent.is_dead())
            .filter_map(|agent| agent.epoch().map(|epoch| (epoch, agent.incarnation, agent)))
            .max_by_key(|(epoch, incarnation, _)| (*epoch, *incarnation));
        Ok(highest
            .filter(|(epoch, _, _)| *epoch >= owner_epoch)
            .map(|(_, _, agent)| Rc::clone(agent)))
    }

    /// The checks of every step, on the agent that owns the log while it serves; a full check the
    /// first time an agent is seen owning it.
    fn check(&mut self, now_ms: u64) -> Result<(), String> {
        // While the owner re-opens, nothing is checked.
        let Some(agent) = self.owner()?.filter(|agent| agent.is_serving()) else {
            return Ok(());
        };
        let Some(last) = agent.with_state(|state| state.last_offered_seq()) else {
            return Ok(());
        };
        if let Some(last) = last
            && last.0 + 1 >= self.replay.next().0
        {
            self.replay
                .advance_to(&self.oracle, &self.plan.agent.log, last)?;
            let same = agent
                .with_state(|state| *state == self.replay.state)
                .unwrap_or(true);
            if !same {
                return Err(format!(
                    "agent {}'s live state differs from the state of the committed log at \
                     position {}",
                    agent.incarnation, last.0
                ));
            }
        }
        let model_result = agent
            .with_state(|state| self.sim.model.borrow().check_bounds(state))
            .unwrap_or(Ok(()));
        model_result.map_err(|message| format!("agent {}: {message}", agent.incarnation))?;
        let object = self.object();
        self.sim
            .model
            .borrow_mut()
            .check_unchecked(&self.replay.state, &object)?;
        if let std::collections::btree_map::Entry::Vacant(first_seen) =
            self.opened_at.entry(agent.incarnation)
        {
            first_seen.insert(now_ms);
            self.full_check(&agent)?;
        }
        Ok(())
    }

    /// Every invariant on an agent's state and on a recovery of the bucket as it is.
    fn full_check(&mut self, agent: &Agent) -> Result<(), String> {
        self.summary.full_checks += 1;
        let object = self.object();
        let live = agent
            .with_state(|state| self.sim.model.borrow().check_full(state, &object))
            .unwrap_or(Ok(Default::default()));
        live.map_err(|message| format!("agent {} after opening: {message}", agent.incarnation))?;
        let recovered = recovered_states(&self.oracle, &self.plan.agent.log)?;
        self.sim
            .model
            .borrow()
            .check_full(&recovered, &object)
            .map_err(|message| format!("recovered state: {message}"))?;
        Ok(())
    }

    /// After the workload: no owner serves yet, but an agent is on its way to serving — still
    /// opening (recovery, claim), stopped by `Broken` and re-opening (the drain's requests start
    /// its re-open), or about to be restarted. Fenced agents and agents that gave up are not.
    fn open_under_way(&self) -> Result<bool, String> {
        if self.owner()?.is_some_and(|owner| owner.is_serving()) {
            return Ok(false);
        }
        if self.restart_at.is_some() {
            return Ok(true);
        }
        Ok(self.sim.agents.borrow().iter().any(|agent| {
            !agent.is_dead() && !agent.is_fenced() && !agent.gave_up() && !agent.is_serving()
        }))
    }

    fn failure(&self) -> Option<String> {
        self.sim.failures.borrow().first().cloned()
    }
}

async fn drive(seed: u64, options: Options) -> Report {
    let clock = Clock::start();
    let mut plan_rng = ChaCha8Rng::seed_from_u64(seed);
    let plan = Plan::draw(&mut plan_rng, options.duration_ms);
    let bucket = SimBucket::new(seed, plan.faults);
    let sim = Rc::new(Sim {
        clock,
        rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed.rotate_left(17) ^ 0xc1_1e47)),
        model: RefCell::new(crate::model::Model::default()),
        agents: RefCell::new(Vec::new()),
        failures: Rc::new(RefCell::new(Vec::new())),
        tracer: Tracer::new(clock),
        running: Cell::new(true),
        fetched_batches: Cell::new(0),
    });
    let mut driver = Driver {
        sim: Rc::clone(&sim),
        oracle: bucket.oracle(),
        bucket,
        plan: plan.clone(),
        replay: Replay::default(),
        next_incarnation: 0,
        opened_at: BTreeMap::new(),
        owner_since: None,
        restart_at: None,
        summary: Summary {
            scenario: plan.describe(),
            ..Summary::default()
        },
    };
    driver.start_agent();
    Rc::clone(&sim).spawn_client("admin", client::admin(Rc::clone(&sim)));
    for client in 0..plan.producers_plain + plan.producers_idempotent {
        let idempotent = client >= plan.producers_plain;
        Rc::clone(&sim).spawn_client(
            "producer",
            client::producer(Rc::clone(&sim), client, idempotent, plan.think_ms_mean),
        );
    }
    for _ in 0..plan.consumers {
        Rc::clone(&sim).spawn_client(
            "consumer",
            client::consumer(Rc::clone(&sim), plan.think_ms_mean),
        );
    }
    for group in 0..plan.groups {
        Rc::clone(&sim).spawn_client(
            "committer",
            client::committer(
                Rc::clone(&sim),
                format!("group-{group}"),
                plan.think_ms_mean * 3,
            ),
        );
    }

    let mut events = plan.events.clone().into_iter().peekable();
    let mut step = 0u64;
    let end_ms = options.duration_ms + DRAIN_MS;
    let mut result = Ok(());
    loop {
        step += 1;
        clock.sleep_until_ms(step * STEP_MS).await;
        let now_ms = clock.now_ms();
        if now_ms >= options.duration_ms && sim.running() {
            // The workload stops; what is in flight settles without faults.
            sim.running.set(false);
            driver.bucket.faults_off();
            driver.bucket.clear_crash_plan();
        }
        while sim.running()
            && let Some((_, event)) = events.next_if(|(at_ms, _)| *at_ms <= now_ms)
        {
            driver.apply_event(event);
        }
        if let Err(message) = driver.manage_agents(now_ms) {
            result = Err(message);
            break;
        }
        if let Some(message) = driver.failure() {
            result = Err(message);
            break;
        }
        if let Err(message) = driver.check(now_ms) {
            result = Err(message);
            break;
        }
        if now_ms >= end_ms {
            match driver.open_under_way() {
                Ok(true) if now_ms < end_ms + DRAIN_OPENING_MS_MAX => {
                    driver.summary.drain_extended_ms = now_ms + STEP_MS - end_ms;
                }
                Ok(_) => break,
                Err(message) => {
                    result = Err(message);
                    break;
                }
            }
        }
    }
    driver.summary.steps = step;
    if result.is_ok() {
        result = final_check(&mut driver);
    }
    let failure = result.err().map(|message| Failure {
        at_ms: clock.now_ms(),
        message,
    });
    let model = sim.model.borrow();
    driver.summary.acks = model.acks;
    driver.summary.commits_acked = model.commits_acked;
    driver.summary.fetched_batches = sim.fetched_batches.get();
    driver.summary.log_entries = driver.replay.next().0;
    driver.summary.virtual_ms = clock.now_ms();
    driver.summary.store = driver.bucket.counts();
    let mut hasher = DefaultHasher::new();
    sim.tracer.finish().hash(&mut hasher);
    driver.bucket.trace_hash().hash(&mut hasher);
    failure.hash(&mut hasher);
    driver.summary.acks.hash(&mut hasher);
    Report {
        seed,
        trace_hash: hasher.finish(),
        failure: failure.map(|failure| Failure {
            message: format!("{} [{}]", failure.message, driver.summary.scenario),
            ..failure
        }),
        summary: driver.summary.clone(),
    }
}

/// After the drain: the agent that owns the log must serve, equal the committed log, and hold every
/// acknowledgement; a recovery from the bucket must too.
fn final_check(driver: &mut Driver) -> Result<(), String> {
    let Some(agent) = driver.owner()?.filter(|agent| agent.is_serving()) else {
        return Err("no agent serves the log after the drain (faults off)".to_owned());
    };
    driver.check(driver.sim.clock.now_ms())?;
    driver.full_check(&agent)?;
    let recovered = recovered_states(&driver.oracle, &driver.plan.agent.log)?;
    let object = driver.object();
    driver
        .sim
        .model
        .borrow_mut()
        .check_unchecked(&recovered, &object)?;
    let left = driver.sim.model.borrow().unchecked.len();
    if left > 0 {
        return Err(format!(
            "{left} acknowledged batches are beyond the committed log's high watermarks"
        ));
    }
    Ok(())
}
