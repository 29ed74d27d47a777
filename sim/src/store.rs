//! The simulated object store: one in-memory bucket, reached through one handle per agent process
//! (an *incarnation*), with latencies, faults and crashes all drawn from the seed.
//!
//! # Why not `FaultInjection` over the in-memory backend
//!
//! The engine's [`sluice_engine::store::FaultInjection`] applies a write at the instant it is
//! called and models a lost response as "applied, then an error". The failures that break logs
//! are subtler, so this store models time inside a call:
//!
//! - A PUT *lands* at a seeded instant between its start and its answer, so concurrent calls see
//!   each other's writes in every order; a create-only PUT that finds the key taken when it lands
//!   answers `AlreadyExists`.
//! - A timed-out PUT may never land, or land *after* its timeout was answered (a straggler).
//! - A conditional PUT that starts while another PUT of the same key is in flight may answer
//!   409 (`ConditionalRequestConflict`, which the client reports as `AlreadyExists`) without
//!   writing anything — what S3 does, and what hedged copies of one entry run into.
//! - When an incarnation crashes, every call it has in flight hangs forever, and each PUT it had
//!   sent lands anyway or is lost (a coin flip per PUT): a dead process's requests can still
//!   change the bucket after its successor has listed it.
//!
//! Latencies are log-normals fitted to the engine's [`LatencyProfile`]s (S3 Express, S3 Standard),
//! slow stragglers multiply them. Everything is decided under one lock from one ChaCha8 stream, in
//! the order calls arrive, which a single-threaded runtime with a paused clock makes the same on
//! every run of a seed. Every decision is folded into a trace hash, so "the same seed gives the
//! same run" is checked, not assumed.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use sluice_engine::store::{
    LatencyDistribution, LatencyProfile, ObjectInfo, ObjectStorage, Op, StoreError, StoreResult,
};

/// The standard normal distribution's 99th percentile (the engine's latency model fits the same).
const Z_P99: f64 = 2.326_347_874;

/// Probabilities of the faults of one kind of call. Their sum stays below 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallFaults {
    /// 5xx before the store did anything.
    pub error: f64,
    /// No answer within `timeout_ms`; a PUT may or may not land, possibly after the timeout.
    pub timeout: f64,
    /// The call takes 10-50 times its drawn latency; one that would outlast `timeout_ms` is
    /// answered as a timeout then, as the client's request timeout does (a PUT still lands when
    /// the slow call would have: before the timeout or after it).
    pub slow: f64,
    /// A PUT lands, its answer is lost (the caller sees 5xx).
    pub lost_response: f64,
}

/// The whole fault model of a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultModel {
    pub put: CallFaults,
    pub read: CallFaults,
    /// Probability that a PUT starting while another PUT of the same key is in flight answers 409.
    pub conflict: f64,
    pub timeout_ms: u64,
    pub profile: LatencyProfile,
}

impl FaultModel {
    /// No faults and no latency: the oracle's view, and calm seeds.
    pub fn calm(profile: LatencyProfile) -> FaultModel {
        FaultModel {
            put: CallFaults::default(),
            read: CallFaults::default(),
            conflict: 0.0,
            timeout_ms: 1_000,
            profile,
        }
    }
}

/// Where a planned crash hits a store call of the incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// The process dies as the call starts: nothing is sent.
    BeforeSend,
    /// The call reached the store (a PUT has landed); the process dies before the answer.
    BeforeAnswer,
}

/// Counts for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub calls: u64,
    pub puts: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub slow: u64,
    pub lost_responses: u64,
    pub conflicts: u64,
    /// PUTs that landed with nobody waiting for their answer: timed out, or sent by a process
    /// that has died since.
    pub late_landings: u64,
    /// PUTs of a crashed incarnation that never landed.
    pub dropped_by_crash: u64,
}

#[derive(Debug)]
struct Landing {
    key: String,
    bytes: Bytes,
    incarnation: u32,
    /// Whether the caller is (still) waiting for this landing's outcome.
    awaited: bool,
}

#[derive(Debug)]
struct World {
    objects: BTreeMap<String, Bytes>,
    /// PUTs on their way, by (due time in µs, id).
    landings: BTreeMap<(u64, u64), Landing>,
    /// The outcome of each landed PUT whose caller has not picked it up yet, by id.
    outcomes: BTreeMap<u64, StoreResult<()>>,
    /// PUTs of each key that are in flight (for 409 conflicts).
    puts_in_flight: BTreeMap<String, u32>,
    rng: ChaCha8Rng,
    faults: FaultModel,
    fitted: [Option<LogNormal<f64>>; 5],
    next_id: u64,
    /// Per incarnation: its dead flag and its store calls so far.
    incarnations: BTreeMap<u32, (Arc<AtomicBool>, u64)>,
    crash_plan: Option<(u32, u64, CrashPoint)>,
    /// Incarnations that died at a planned store call and that the driver has not seen yet.
    crashed: Vec<u32>,
    trace: std::hash::DefaultHasher,
    counts: StoreCounts,
    /// Whether faults apply (the end of a run turns them off to let everything settle).
    faults_on: bool,
    /// The time of the last settle, for printed traces.
    now_us_for_trace: u64,
}

/// The bucket every incarnation shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SimBucket {
    world: Arc<Mutex<World>>,
    started: tokio::time::Instant,
}

impl SimBucket {
    pub fn new(seed: u64, faults: FaultModel) -> SimBucket {
        let mut fitted = [None; 5];
        for (slot, op) in fitted.iter_mut().zip(Op::ALL) {
            *slot = fit(faults.profile.for_op(op));
        }
        SimBucket {
            world: Arc::new(Mutex::new(World {
                objects: BTreeMap::new(),
                landings: BTreeMap::new(),
                outcomes: BTreeMap::new(),
                puts_in_flight: BTreeMap::new(),
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5107_e5a1_0b1e_c7ed),
                faults,
                fitted,
                next_id: 0,
                incarnations: BTreeMap::new(),
                crash_plan: None,
                crashed: Vec::new(),
                trace: std::hash::DefaultHasher::new(),
                counts: StoreCounts::default(),
                faults_on: true,
                now_us_for_trace: 0,
            })),
            started: tokio::time::Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A handle for incarnation `incarnation` (a new agent process).
    pub fn handle(&self, incarnation: u32) -> SimStore {
        let dead = Arc::new(AtomicBool::new(false));
        self.lock()
            .incarnations
            .insert(incarnation, (Arc::clone(&dead), 0));
        SimStore {
            bucket: self.clone(),
            incarnation,
            dead,
        }
    }

    /// The incarnation dies at its `call`-th store call (counted from 1) at `point`.
    pub fn plan_crash(&self, incarnation: u32, call: u64, point: CrashPoint) {
        self.lock().crash_plan = Some((incarnation, call, point));
    }

    /// No planned crash any more.
    pub fn clear_crash_plan(&self) {
        self.lock().crash_plan = None;
    }

    /// Store calls `incarnation` has made so far.
    pub fn calls_of(&self, incarnation: u32) -> u64 {
        self.lock()
            .incarnations
            .get(&incarnation)
            .map_or(0, |(_, calls)| *calls)
    }

    /// Incarnations that died at a planned call since the last look.
    pub fn take_crashed(&self) -> Vec<u32> {
        std::mem::take(&mut self.lock().crashed)
    }

    /// Kills `incarnation` now: its calls hang from here on, and each PUT it has on the way lands
    /// or is lost, by a coin flip.
    pub fn kill(&self, incarnation: u32) {
        let mut world = self.lock();
        world.kill(incarnation);
    }

    /// Faults off (the end of a run, so that what is in flight can settle).
    pub fn faults_off(&self) {
        self.lock().faults_on = false;
    }

    /// Applies every landing due by now; then the objects, as a reader sees them at this instant.
    pub fn objects(&self) -> BTreeMap<String, Bytes> {
        let now = self.now_us();
        let mut world = self.lock();
        world.settle(now);
        world.objects.clone()
    }

    /// One object, if it is there now.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        let now = self.now_us();
        let mut world = self.lock();
        world.settle(now);
        world.objects.get(key).cloned()
    }

    /// Whether PUTs are still on their way.
    pub fn landings_pending(&self) -> usize {
        self.lock().landings.len()
    }

    pub fn counts(&self) -> StoreCounts {
        self.lock().counts
    }

    /// The hash of every decision the store made so far.
    pub fn trace_hash(&self) -> u64 {
        self.lock().trace.finish()
    }

    /// A view with no latency and no faults, never gated by a crash: what the bucket holds.
    pub fn oracle(&self) -> Oracle {
        Oracle {
            bucket: self.clone(),
            hide_checkpoints: false,
        }
    }
}

impl World {
    fn trace(&mut self, event: impl Hash + std::fmt::Debug) {
        if crate::tracing_printed() {
            let now_ms = self.now_us_for_trace / 1_000;
            eprintln!("{now_ms:>6} ms  store {event:?}");
        }
        event.hash(&mut self.trace);
    }

    fn settle(&mut self, now_us: u64) {
        self.now_us_for_trace = now_us;
        while let Some(entry) = self.landings.first_entry() {
            let (due, id) = *entry.key();
            if due > now_us {
                break;
            }
            let landing = entry.remove();
            if let Some(count) = self.puts_in_flight.get_mut(&landing.key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.puts_in_flight.remove(&landing.key);
                }
            }
            let outcome = if self.objects.contains_key(&landing.key) {
                Err(StoreError::AlreadyExists {
                    key: landing.key.clone(),
                })
            } else {
                self.objects.insert(landing.key.clone(), landing.bytes);
                Ok(())
            };
            self.trace(("land", &landing.key, due, outcome.is_ok()));
            if landing.awaited {
                self.outcomes.insert(id, outcome);
            } else {
                self.counts.late_landings += 1;
            }
        }
    }

    fn kill(&mut self, incarnation: u32) {
        let Some((dead, _)) = self.incarnations.get(&incarnation) else {
            return;
        };
        if dead.swap(true, Ordering::SeqCst) {
            return;
        }
        self.trace(("kill", incarnation));
        let ids: Vec<(u64, u64)> = self
            .landings
            .iter()
            .filter(|(_, landing)| landing.incarnation == incarnation)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let lost = self.rng.random_bool(0.5);
            if lost {
                if let Some(landing) = self.landings.remove(&id) {
                    if let Some(count) = self.puts_in_flight.get_mut(&landing.key) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            self.puts_in_flight.remove(&landing.key);
                        }
                    }
                    self.counts.dropped_by_crash += 1;
                    self.trace(("dropped", &landing.key));
                }
            } else if let Some(landing) = self.landings.get_mut(&id) {
                landing.awaited = false;
            }
        }
    }

    /// Counts a call of `incarnation` and tells whether the crash plan hits it at `point`.
    fn count_call(&mut self, incarnation: u32) -> u64 {
        self.counts.calls += 1;
        match self.incarnations.get_mut(&incarnation) {
            Some((_, calls)) => {
                *calls += 1;
                *calls
            }
            None => 0,
        }
    }

    fn crash_hits(&mut self, incarnation: u32, call: u64, point: CrashPoint) -> bool {
        if self.crash_plan == Some((incarnation, call, point)) {
            self.crash_plan = None;
            self.kill(incarnation);
            self.crashed.push(incarnation);
            return true;
        }
        false
    }

    /// One call's latency in µs.
    fn latency_us(&mut self, op: Op, body_bytes: u64) -> u64 {
        let distribution = self.faults.profile.for_op(op);
        let first_byte_ms = match self.fitted.get(op.index()).copied().flatten() {
            Some(fitted) => fitted.sample(&mut self.rng),
            None => 0.0,
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "bodies are far below 2^52 bytes"
        )]
        let transfer_ms = distribution.transfer_ms_per_mib * body_bytes as f64 / 1_048_576.0;
        let total_ms = (first_byte_ms + transfer_ms)
            .min(distribution.max_ms)
            .max(0.05);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "bounded by max_ms above"
        )]
        let micros = (total_ms * 1_000.0) as u64;
        micros
    }

    /// The fault of one call, drawn whether or not faults are on (so turning them off at the end
    /// does not shift the stream for anything else).
    fn draw_fault(&mut self, faults: CallFaults) -> Option<Fault> {
        let draw: f64 = self.rng.random();
        if !self.faults_on {
            return None;
        }
        let mut edge = 0.0;
        for (probability, fault) in [
            (faults.error, Fault::Error),
            (faults.timeout, Fault::Timeout),
            (faults.slow, Fault::Slow),
            (faults.lost_response, Fault::LostResponse),
        ] {
            edge += probability;
            if draw < edge {
                return Some(fault);
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Error,
    Timeout,
    Slow,
    LostResponse,
}

fn fit(distribution: &LatencyDistribution) -> Option<LogNormal<f64>> {
    if distribution.p50_ms <= 0.0 || distribution.p99_ms < distribution.p50_ms {
        return None;
    }
    let sigma = (distribution.p99_ms / distribution.p50_ms).ln() / Z_P99;
    LogNormal::new(distribution.p50_ms.ln(), sigma).ok()
}

async fn sleep_us(micros: u64) {
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

async fn hang<T>() -> T {
    futures::future::pending::<T>().await
}

/// One incarnation's door to the bucket.
#[derive(Debug, Clone)]
pub struct SimStore {
    bucket: SimBucket,
    incarnation: u32,
    dead: Arc<AtomicBool>,
}

/// What a PUT was decided to do as it started.
enum PutDecision {
    /// The process died as the call started.
    Dead,
    /// 409: another conditional write of the key is in progress; nothing is written.
    Conflict { answer_us: u64 },
    /// Sent: answered after `answer_us` with `fault`; lands (id `landing`) unless `None`.
    Sent {
        call: u64,
        fault: Option<Fault>,
        answer_us: u64,
        landing: Option<u64>,
    },
}

/// What a read call was planned to do.
struct ReadPlan {
    call: u64,
    fault: Option<Fault>,
    latency_us: u64,
}

impl SimStore {
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// The process behind this handle dies (see [`SimBucket::kill`]).
    pub fn kill(&self) {
        self.bucket.kill(self.incarnation);
    }

    /// Plans a read (counts it, draws its fault and latency); `None` if the process died here.
    fn plan_read(&self, op: Op, key: &str) -> Option<ReadPlan> {
        if self.is_dead() {
            return None;
        }
        let mut world = self.bucket.lock();
        let call = world.count_call(self.incarnation);
        if world.crash_hits(self.incarnation, call, CrashPoint::BeforeSend) {
            return None;
        }
        let faults = world.faults.read;
        let mut fault = world.draw_fault(faults);
        let mut latency_us = world.latency_us(op, 0);
        match fault {
            Some(Fault::Slow) => {
                latency_us = latency_us.saturating_mul(world.rng.random_range(10..50));
                world.counts.slow += 1;
                // The client's request timeout ends a call that would outlast it.
                let timeout_us = world.faults.timeout_ms * 1_000;
                if latency_us > timeout_us {
                    latency_us = timeout_us;
                    fault = Some(Fault::Timeout);
                    world.counts.timeouts += 1;
                }
            }
            Some(Fault::Timeout) => {
                latency_us = world.faults.timeout_ms * 1_000;
                world.counts.timeouts += 1;
            }
            Some(Fault::Error) => {
                latency_us /= 4;
                world.counts.errors += 1;
            }
            _ => {}
        }
        world.trace(("read", self.incarnation, op, key, call, fault, latency_us));
        Some(ReadPlan {
            call,
            fault,
            latency_us,
        })
    }

    /// Runs a planned read: waits its latency, then reads the bucket as it is at that instant.
    async fn read<T>(
        &self,
        op: Op,
        key: &str,
        read: impl FnOnce(&BTreeMap<String, Bytes>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let Some(plan) = self.plan_read(op, key) else {
            return hang().await;
        };
        sleep_us(plan.latency_us).await;
        let now = self.bucket.now_us();
        let result = {
            let mut world = self.bucket.lock();
            if world.crash_hits(self.incarnation, plan.call, CrashPoint::BeforeAnswer) {
                None
            } else {
                world.settle(now);
                Some(match plan.fault {
                    Some(Fault::Error) => Err(StoreError::Unavailable {
                        op,
                        key: key.to_owned(),
                        message: "simulated 503".to_owned(),
                    }),
                    Some(Fault::Timeout) => Err(StoreError::Timeout {
                        op,
                        key: key.to_owned(),
                        after_ms: world.faults.timeout_ms,
                    }),
                    _ => read(&world.objects),
                })
            }
        };
        match result {
            Some(result) if !self.is_dead() => result,
            _ => hang().await,
        }
    }

    /// Everything about one PUT, decided as it starts (under the lock, with no await).
    fn decide_put(&self, key: &str, payload: &[Bytes], body_bytes: u64, now: u64) -> PutDecision {
        let mut world = self.bucket.lock();
        world.settle(now);
        let call = world.count_call(self.incarnation);
        world.counts.puts += 1;
        if world.crash_hits(self.incarnation, call, CrashPoint::BeforeSend) {
            return PutDecision::Dead;
        }
        let faults = world.faults.put;
        let mut fault = world.draw_fault(faults);
        let conflict_draw: f64 = world.rng.random();
        let in_flight = world.puts_in_flight.get(key).copied().unwrap_or(0) > 0;
        let latency_us = world.latency_us(Op::Put, body_bytes);
        let land_fraction: f64 = world.rng.random_range(0.3..1.0);
        let late_draw: f64 = world.rng.random();
        if world.faults_on && in_flight && conflict_draw < world.faults.conflict {
            world.counts.conflicts += 1;
            world.trace(("409", self.incarnation, key, call));
            return PutDecision::Conflict {
                answer_us: latency_us / 4,
            };
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a fraction of a bounded latency"
        )]
        let land_us = |total: u64| (total as f64 * land_fraction) as u64;
        let (answer_us, land_after_us) = match fault {
            Some(Fault::Error) => {
                world.counts.errors += 1;
                (latency_us / 4, None)
            }
            Some(Fault::Timeout) => {
                world.counts.timeouts += 1;
                let timeout_us = world.faults.timeout_ms * 1_000;
                // Never, before the timeout, or after it (a straggler).
                let land = if late_draw < 0.4 {
                    None
                } else if late_draw < 0.7 {
                    Some(land_us(timeout_us))
                } else {
                    Some(timeout_us + land_us(timeout_us))
                };
                (timeout_us, land)
            }
            Some(Fault::Slow) => {
                world.counts.slow += 1;
                let slow_us = latency_us.saturating_mul(world.rng.random_range(10..50));
                let timeout_us = world.faults.timeout_ms * 1_000;
                if slow_us > timeout_us {
                    // The client's request timeout answers first; the PUT still lands when the
                    // slow call would have, possibly after the timeout (a straggler).
                    world.counts.timeouts += 1;
                    fault = Some(Fault::Timeout);
                    (timeout_us, Some(land_us(slow_us)))
                } else {
                    (slow_us, Some(land_us(slow_us)))
                }
            }
            Some(Fault::LostResponse) => {
                world.counts.lost_responses += 1;
                (latency_us, Some(land_us(latency_us)))
            }
            None => (latency_us, Some(land_us(latency_us))),
        };
        let landing = land_after_us.map(|after_us| {
            let id = world.next_id;
            world.next_id += 1;
            *world.puts_in_flight.entry(key.to_owned()).or_insert(0) += 1;
            let bytes = concat(payload);
            world.landings.insert(
                (now.saturating_add(after_us), id),
                Landing {
                    key: key.to_owned(),
                    bytes,
                    incarnation: self.incarnation,
                    awaited: fault != Some(Fault::Timeout),
                },
            );
            id
        });
        world.trace((
            "put",
            self.incarnation,
            key,
            call,
            fault,
            answer_us,
            land_after_us,
        ));
        PutDecision::Sent {
            call,
            fault,
            answer_us,
            landing,
        }
    }

    async fn put(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        if self.is_dead() {
            return hang().await;
        }
        let body_bytes: u64 = payload.iter().map(|chunk| chunk.len() as u64).sum();
        let now = self.bucket.now_us();
        // Decide everything about this PUT at its start.
        let decision = self.decide_put(key, &payload, body_bytes, now);
        let (call, fault, answer_us, landing) = match decision {
            PutDecision::Dead => return hang().await,
            PutDecision::Conflict { answer_us } => {
                sleep_us(answer_us).await;
                if self.is_dead() {
                    return hang().await;
                }
                return Err(StoreError::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            PutDecision::Sent {
                call,
                fault,
                answer_us,
                landing,
            } => (call, fault, answer_us, landing),
        };
        sleep_us(answer_us).await;
        let now = self.bucket.now_us();
        let (landed, timeout_ms) = {
            let mut world = self.bucket.lock();
            world.settle(now);
            let crashed = world.crash_hits(self.incarnation, call, CrashPoint::BeforeAnswer);
            let landed = landing.and_then(|id| world.outcomes.remove(&id));
            ((!crashed).then_some(landed), world.faults.timeout_ms)
        };
        let landed = match landed {
            Some(landed) if !self.is_dead() => landed,
            _ => return hang().await,
        };
        match fault {
            Some(Fault::Error) | Some(Fault::LostResponse) => Err(StoreError::Unavailable {
                op: Op::Put,
                key: key.to_owned(),
                message: "simulated 503".to_owned(),
            }),
            Some(Fault::Timeout) => Err(StoreError::Timeout {
                op: Op::Put,
                key: key.to_owned(),
                after_ms: timeout_ms,
            }),
            _ => landed.unwrap_or_else(|| {
                // Landing is scheduled no later than the answer, so this is a bug in this store.
                Err(StoreError::Other {
                    op: Op::Put,
                    key: key.to_owned(),
                    message: "simulated store lost track of a landing".to_owned(),
                })
            }),
        }
    }
}

fn concat(payload: &[Bytes]) -> Bytes {
    if let [single] = payload {
        return single.clone();
    }
    let mut joined = BytesMut::with_capacity(payload.iter().map(Bytes::len).sum());
    for chunk in payload {
        joined.extend_from_slice(chunk);
    }
    joined.freeze()
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        key: key.to_owned(),
    }
}

fn get_range_of(
    objects: &BTreeMap<String, Bytes>,
    key: &str,
    range: Range<u64>,
) -> StoreResult<Bytes> {
    let object = objects.get(key).ok_or_else(|| not_found(key))?;
    let len = object.len() as u64;
    if range.start >= range.end || range.start >= len {
        return Err(StoreError::Other {
            op: Op::Get,
            key: key.to_owned(),
            message: format!("invalid range {range:?} of an object of {len} bytes"),
        });
    }
    let end = range.end.min(len);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "within the object's length"
    )]
    Ok(object.slice(range.start as usize..end as usize))
}

fn get_tail_of(
    objects: &BTreeMap<String, Bytes>,
    key: &str,
    len: u64,
) -> StoreResult<(Bytes, u64)> {
    let object = objects.get(key).ok_or_else(|| not_found(key))?;
    let total = object.len() as u64;
    let start = total.saturating_sub(len);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "within the object's length"
    )]
    Ok((object.slice(start as usize..), total))
}

fn list_of(
    objects: &BTreeMap<String, Bytes>,
    prefix: &str,
    start_after: Option<&str>,
    hide_checkpoints: bool,
) -> Vec<ObjectInfo> {
    let folder = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    objects
        .range(folder.clone()..)
        .take_while(|(key, _)| key.starts_with(&folder))
        .filter(|(key, _)| start_after.is_none_or(|after| key.as_str() > after))
        .filter(|(key, _)| !(hide_checkpoints && key.starts_with("checkpoint/")))
        .map(|(key, bytes)| ObjectInfo {
            key: key.clone(),
            size: bytes.len() as u64,
        })
        .collect()
}

#[async_trait::async_trait]
impl ObjectStorage for SimStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.put(key, payload).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.read(Op::Get, key, |objects| {
            objects.get(key).cloned().ok_or_else(|| not_found(key))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.read(Op::Get, key, |objects| get_range_of(objects, key, range))
            .await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.read(Op::Get, key, |objects| get_tail_of(objects, key, len))
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.read(Op::Head, key, |objects| {
            objects
                .get(key)
                .map(|bytes| ObjectInfo {
                    key: key.to_owned(),
                    size: bytes.len() as u64,
                })
                .ok_or_else(|| not_found(key))
        })
        .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.read(Op::List, prefix, |objects| {
            Ok(list_of(objects, prefix, start_after, false))
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.read(Op::Delete, key, |_| Ok(())).await?;
        self.bucket.lock().objects.remove(key);
        Ok(())
    }
}

/// The bucket as it is, with no latency, no faults and no crash: recovery run through it is the
/// state of the committed log. Its calls never wait, so they can be driven to completion with
/// `futures::executor::block_on` in the middle of a simulation step.
#[derive(Debug, Clone)]
pub struct Oracle {
    bucket: SimBucket,
    hide_checkpoints: bool,
}

impl Oracle {
    /// The same view with no checkpoints: recovery from it replays the whole log from position 0.
    pub fn without_checkpoints(&self) -> Oracle {
        Oracle {
            bucket: self.bucket.clone(),
            hide_checkpoints: true,
        }
    }

    fn with<T>(&self, read: impl FnOnce(&BTreeMap<String, Bytes>) -> T) -> T {
        let now = self.bucket.now_us();
        let mut world = self.bucket.lock();
        world.settle(now);
        read(&world.objects)
    }
}

#[async_trait::async_trait]
impl ObjectStorage for Oracle {
    async fn put_create(&self, key: &str, _payload: Vec<Bytes>) -> StoreResult<()> {
        Err(StoreError::Other {
            op: Op::Put,
            key: key.to_owned(),
            message: "the oracle only reads".to_owned(),
        })
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.with(|objects| objects.get(key).cloned().ok_or_else(|| not_found(key)))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.with(|objects| get_range_of(objects, key, range))
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.with(|objects| get_tail_of(objects, key, len))
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.with(|objects| {
            objects
                .get(key)
                .map(|bytes| ObjectInfo {
                    key: key.to_owned(),
                    size: bytes.len() as u64,
                })
                .ok_or_else(|| not_found(key))
        })
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        let hide = self.hide_checkpoints;
        self.with(|objects| Ok(list_of(objects, prefix, start_after, hide)))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        Err(StoreError::Other {
            op: Op::Delete,
            key: key.to_owned(),
            message: "the oracle only reads".to_owned(),
        })
    }
}
