//! [`HedgedPuts`]: a store wrapper that races copies of one create-only PUT against the store's
//! latency tail.
//!
//! # Why
//!
//! The metadata log acknowledges entries strictly in order, so one slow PUT holds the
//! acknowledgement of every entry behind it: a produce's latency is the *maximum* of the PUT times
//! of its own entry and of every entry still in flight ahead of it. With 10 ms windows and S3
//! Standard's PUTs (median 100 ms, P99 400 ms) about ten entries are in flight at any moment, and
//! the chance that one of them is in its tail is high. The cure is to make each entry's PUT time
//! short-tailed, by paying for more requests: the first of several identical create-only PUTs of
//! the same key to land wins, and the store keeps exactly one object, because every copy carries the
//! same bytes and create-only lets only one of them create the key.
//!
//! # Policy: adaptive, from the store's own recent latencies
//!
//! Every copy's round-trip time (answered `Ok` or `AlreadyExists`; errors say nothing about the
//! store's speed) goes into a window of the last [`SAMPLES_MAX`] samples. Each call plans from it:
//!
//! - *Copies at once.* If a single PUT misses [`HedgeConfig::latency_target_ms`] with probability
//!   `p` (the fraction of recent samples above it), `c` independent copies all miss it with
//!   probability `p^c`. The call starts the smallest `c` with `p^c <= TARGET_MISS_RATIO` (1 %), at
//!   most [`HedgeConfig::copies_max`]. A store that meets the target 99 % of the time gets one
//!   copy; the S3 Express model (15 ms target, ~8 % of PUTs above it on loopback) gets two; a store
//!   whose median is above the target (S3 Standard) gets the maximum.
//! - *Hedges.* While none has answered, one more copy starts every
//!   [`HedgeConfig::hedge_percentile`]-th percentile of the recent samples (at least
//!   [`HedgeConfig::hedge_delay_ms_min`]), up to `copies_max` in all: the classic hedged request,
//!   which bounds a stalled connection or a freak draw at the cost of a few percent more PUTs.
//!
//! Until [`SAMPLES_MIN`] samples exist the call sends one copy and hedges after
//! [`COLD_HEDGE_DELAY_MS`].
//!
//! # Guards: copies are paid for only while they help
//!
//! The rule above assumes copies are independent draws. That holds for the bench's latency models
//! (S3 Express, S3 Standard), and there copies at once are what meets the target. It fails in two
//! cases measured on a 2-core box, where copies cost more than they return:
//!
//! - *Correlated latency.* With the S3 server on loopback and the CPU contended, a PUT is slow
//!   because the machine is busy, so all copies of a call are slow *together*: they do not cut the
//!   miss rate, and their extra requests add load (a CI smoke run: 2,958 PUTs, 2,465 of them losing
//!   copies answered 412; the consumer-groups bench sent 192 PUT/s for ~100 entries/s).
//! - *Bandwidth.* At high throughput the entries are large (0.8-4 MB) and a PUT is slow because
//!   its bytes take time to send: copies compete for the same link (160 MB/s of produce sent 35 GB
//!   of PUT bytes for ~5 GB of data; 3,759 of 4,517 PUTs were losing copies, and the agent held
//!   80 MB/s where Apache Kafka held 240 MB/s).
//!
//! Two guards answer them:
//!
//! - *Effectiveness guard.* Each call that started two or more copies at once and answered `Ok`
//!   records its latency (the time to the first `Ok`), in a window of the last [`GUARD_CALLS_MAX`]
//!   such calls. Every copy sample carries a sequence number, so the single-copy miss ratio `p` is
//!   taken over the same period: the copy samples recorded since the oldest call in the window
//!   started. A miss is a latency above the target, or above the period's [`GUARD_BAR_QUANTILE`]
//!   (P75) of copy latencies if that is higher ([`guard_bar_ms`]): on S3 Standard every copy misses
//!   15 ms, so copies cannot cut the misses of the target, yet they cut its tail. Independent
//!   copies make a call of `c >= 2` copies miss with probability `p^c`, far below `p`; if instead
//!   the calls miss at least [`GUARD_MISS_FACTOR`] (1) times as often as one copy does — the copies
//!   bought nothing — with at least [`GUARD_CALLS_MIN`] calls and [`GUARD_MISSES_MIN`] misses seen,
//!   copies are correlated (a factor of 1/2 tripped the guard three times a minute on the bench's
//!   S3 Express model, whose copies share the loopback server's CPU, and its produce P99 went from
//!   28 to 36 ms; at 1 it did not trip there): the next [`SAMPLES_MAX`] calls start one copy (hedges at the percentile are still
//!   allowed: they bound a stalled request, which is not a matter of load). Then copies at once are
//!   planned again as a probe, with an empty window, so a store whose contention has passed gets its
//!   copies back, and one still contended trips the guard again after [`GUARD_CALLS_MIN`] calls.
//! - *Bytes budget.* Every copy after the first (at once or hedged) reserves its payload's bytes
//!   from [`HedgeConfig::copy_bytes_in_flight_max`] (8 MiB by default) and releases them when it
//!   finishes; a copy that does not fit is not started (a hedge tries again at its next tick).
//!   The first copy is never held back. Small log entries of the latency models fit many copies at
//!   once; megabyte entries at high throughput get one copy, whose time is bandwidth that more copies
//!   would only share. A budget of 0 sends first copies only. Sizing: the S3 Standard model at
//!   the fraud bench's load (~30 entries/s of ~170 KB, six copies each, losing copies running to
//!   their end) keeps ~4 MiB of extra copies in flight; on a paused-clock simulation a 2 MiB budget
//!   raised its PUT P99 from ~108 ms to ~172 ms, 3 MiB to ~130 ms, 4 MiB and up left it unchanged.
//!   8 MiB leaves room for bursts and still holds megabyte entries to a few extra copies.
//!
//! [`HedgeCounts`] says how many calls each guard planned single.
//!
//! # Outcomes: a hedge's loss is not a foreign writer
//!
//! - Any copy answers `Ok`: the call answers `Ok` at once. Create-only means *this* call created
//!   the key. The other copies run to their end on the runtime (they are not cancelled: aborting
//!   an HTTP request costs a pooled connection, and a started request is billed anyway); their
//!   `AlreadyExists` answers are expected and ignored.
//! - A copy answers `AlreadyExists` while others are outstanding: the key is taken — by one of our
//!   own copies (whose answer is on its way) or by someone else. No further hedges start, and the
//!   call waits for the outstanding copies: an `Ok` among them settles it.
//! - Every copy has answered, none `Ok`, at least one `AlreadyExists`: the call answers
//!   `AlreadyExists`, exactly as an unhedged PUT whose earlier attempt's response was lost does,
//!   and the caller does what it must do then anyway: read the key back and compare (the log's
//!   writer compares epoch and nonce, so a foreign entry is still detected and fencing is
//!   unchanged).
//! - Every copy failed otherwise: the last error, whose outcome is unknown as for any failed write.
//!
//! Only `put_create` is hedged, and only payloads up to [`HedgeConfig::payload_bytes_max`]
//! (checkpoints can be far larger than log entries). Every other call is passed through.
//!
//! Copies are spawned on the current tokio runtime: run this wrapper *under*
//! [`super::StoreRuntime`] (or in a tokio test). Outside a tokio runtime it does not hedge.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::error::StoreError;
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// Recent copy latencies the plan is computed from; also the number of calls the effectiveness
/// guard plans single once it trips.
pub const SAMPLES_MAX: usize = 256;
/// Below this many samples the plan is one copy and a hedge after [`COLD_HEDGE_DELAY_MS`].
pub const SAMPLES_MIN: usize = 32;
/// Hedge delay before the store's latency is known.
pub const COLD_HEDGE_DELAY_MS: u64 = 200;
/// Per call, the accepted probability that every copy started at once misses the target.
pub const TARGET_MISS_RATIO: f64 = 0.01;
/// Largest `copies_max` accepted.
pub const COPIES_LIMIT: u32 = 16;
/// Largest `copy_bytes_in_flight_max` accepted (1 GiB).
pub const COPY_BYTES_IN_FLIGHT_LIMIT: u64 = 1 << 30;
/// Recent calls with two or more copies at once the effectiveness guard judges.
pub const GUARD_CALLS_MAX: usize = 64;
/// The effectiveness guard judges no fewer calls with copies at once than this.
pub const GUARD_CALLS_MIN: usize = 32;
/// ... and trips only once that many of them missed (see [`guard_bar_ms`]).
pub const GUARD_MISSES_MIN: usize = 3;
/// Copies pay while calls with copies at once miss less often than this times one copy's miss
/// ratio (independent copies: `p^c`, far below `p`).
pub const GUARD_MISS_FACTOR: f64 = 1.0;
/// The effectiveness guard counts misses of the target or of this quantile of the period's copy
/// latencies, whichever is higher (see [`guard_bar_ms`]).
pub const GUARD_BAR_QUANTILE: f64 = 0.75;
/// Fewest copy samples `p` is taken from; a shorter period falls back to the whole window.
const GUARD_COPY_SAMPLES_MIN: usize = 32;

/// How hard to chase the latency tail. See the module docs for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HedgeConfig {
    /// Copies of one PUT at most, the first included. 1 turns hedging off.
    pub copies_max: u32,
    /// The time within which a PUT should land; copies start at once when the store's recent
    /// latencies say one copy misses it more often than [`TARGET_MISS_RATIO`].
    pub latency_target_ms: u64,
    /// A further copy starts after this percentile (1 to 99) of recent copy latencies.
    pub hedge_percentile: u32,
    /// Floor of the hedge delay.
    pub hedge_delay_ms_min: u64,
    /// Larger payloads are written with one copy.
    pub payload_bytes_max: u64,
    /// Payload bytes of extra copies (every copy after a call's first) in flight at most; a copy
    /// that would exceed it is not started. 0 sends first copies only.
    pub copy_bytes_in_flight_max: u64,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            copies_max: 6,
            latency_target_ms: 15,
            hedge_percentile: 95,
            hedge_delay_ms_min: 5,
            payload_bytes_max: 1024 * 1024,
            copy_bytes_in_flight_max: 8 * 1024 * 1024,
        }
    }
}

impl HedgeConfig {
    /// One copy, no hedges: the wrapper only passes calls through.
    pub fn off() -> HedgeConfig {
        HedgeConfig {
            copies_max: 1,
            ..HedgeConfig::default()
        }
    }

    fn validate(&self) -> StoreResult<()> {
        if !(1..=COPIES_LIMIT).contains(&self.copies_max) {
            return Err(StoreError::invalid_config(format!(
                "hedge copies_max {} is not in 1..={COPIES_LIMIT}",
                self.copies_max
            )));
        }
        if !(1..=99).contains(&self.hedge_percentile) {
            return Err(StoreError::invalid_config(format!(
                "hedge percentile {} is not in 1..=99",
                self.hedge_percentile
            )));
        }
        if self.copy_bytes_in_flight_max > COPY_BYTES_IN_FLIGHT_LIMIT {
            return Err(StoreError::invalid_config(format!(
                "hedge copy_bytes_in_flight_max {} is above {COPY_BYTES_IN_FLIGHT_LIMIT}",
                self.copy_bytes_in_flight_max
            )));
        }
        Ok(())
    }
}

/// What one call does: copies started at once, then one more every `hedge_delay`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgePlan {
    pub copies_at_once: u32,
    pub hedge_delay: Duration,
}

/// Counters since the wrapper was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HedgeCounts {
    /// `put_create` calls that were eligible for hedging.
    pub calls: u64,
    /// Copies started by those calls (a call with no hedge starts one).
    pub copies: u64,
    /// Calls answered `Ok` by a copy other than the first.
    pub won_by_later_copy: u64,
    /// Calls that started at least two copies at once (after both guards).
    pub calls_with_copies_at_once: u64,
    /// Calls whose latency plan asked for copies at once but which the effectiveness guard
    /// planned single (copies were correlated).
    pub single_by_effectiveness_guard: u64,
    /// Calls that started one copy at once because the bytes budget had no room for a second.
    pub single_by_bytes_budget: u64,
    /// Extra copies (at once or hedged) not started because the bytes budget had no room.
    pub copies_held_by_bytes_budget: u64,
    /// Times the effectiveness guard switched copies at once off.
    pub guard_trips: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    copies: AtomicU64,
    won_by_later_copy: AtomicU64,
    calls_with_copies_at_once: AtomicU64,
    single_by_effectiveness_guard: AtomicU64,
    single_by_bytes_budget: AtomicU64,
    copies_held_by_bytes_budget: AtomicU64,
    guard_trips: AtomicU64,
}

/// A finished call that started two or more copies at once.
#[derive(Clone, Copy, Debug)]
struct MultiCopyCall {
    /// Sequence number of the first copy sample recorded after the call was planned.
    first_sample: u64,
    /// Its time to the first `Ok`, in milliseconds.
    latency_ms: f64,
}

/// What the plan and the effectiveness guard are computed from.
#[derive(Debug, Default)]
struct History {
    /// The last [`SAMPLES_MAX`] copy latencies, in milliseconds.
    recent: VecDeque<f64>,
    /// Copy samples recorded since the wrapper was built: the sequence number of the next one.
    recorded: u64,
    /// The last [`GUARD_CALLS_MAX`] calls with copies at once, since the guard last changed state.
    multi_copy_calls: VecDeque<MultiCopyCall>,
    /// Calls still to be planned single by the effectiveness guard.
    single_calls_left: usize,
}

impl History {
    fn record(&mut self, latency_ms: f64) {
        if self.recent.len() >= SAMPLES_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(latency_ms);
        self.recorded += 1;
    }

    /// Records a call with copies at once; true if the guard trips on it.
    fn record_multi_copy_call(&mut self, call: MultiCopyCall, target_ms: f64) -> bool {
        if self.single_calls_left > 0 {
            // Planned before the guard tripped: the verdict is already in.
            return false;
        }
        if self.multi_copy_calls.len() >= GUARD_CALLS_MAX {
            self.multi_copy_calls.pop_front();
        }
        self.multi_copy_calls.push_back(call);
        let since = self
            .multi_copy_calls
            .front()
            .map_or(self.recorded, |call| call.first_sample);
        let period = self.copy_samples_since(since);
        let bar_ms = guard_bar_ms(&period, target_ms);
        let copy_misses = period.iter().filter(|&&latency| latency > bar_ms).count();
        let call_misses = self
            .multi_copy_calls
            .iter()
            .filter(|call| call.latency_ms > bar_ms)
            .count();
        if copies_pay(
            self.multi_copy_calls.len(),
            call_misses,
            period.len(),
            copy_misses,
        ) {
            return false;
        }
        self.single_calls_left = SAMPLES_MAX;
        self.multi_copy_calls.clear();
        true
    }

    /// Copy samples recorded from sequence number `since` on, ascending (the whole window if
    /// fewer than [`GUARD_COPY_SAMPLES_MIN`] were).
    fn copy_samples_since(&self, since: u64) -> Vec<f64> {
        let oldest = self.recorded - self.recent.len() as u64;
        let skip = usize::try_from(since.saturating_sub(oldest)).unwrap_or(usize::MAX);
        let skip = if self.recent.len().saturating_sub(skip) < GUARD_COPY_SAMPLES_MIN {
            0
        } else {
            skip
        };
        let mut period: Vec<f64> = self.recent.iter().skip(skip).copied().collect();
        period.sort_by(f64::total_cmp);
        period
    }
}

/// The latency the effectiveness guard counts misses against: the target, or the
/// [`GUARD_BAR_QUANTILE`] of the period's copy samples (`sorted` ascending) if that is higher.
/// On a store whose copies almost all miss the target (S3 Standard: median 100 ms against 15 ms)
/// copies cannot halve the misses *of the target*, yet independent copies still cut the tail;
/// against the quantile one copy misses 25 % and independent copies `0.25^c`.
pub fn guard_bar_ms(sorted: &[f64], target_ms: f64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "sample counts are tiny")]
    let rank = GUARD_BAR_QUANTILE * (sorted.len().saturating_sub(1)) as f64;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rank is in 0..len"
    )]
    let quantile_ms = sorted.get(rank.round() as usize).copied().unwrap_or(0.0);
    target_ms.max(quantile_ms)
}

/// The effectiveness guard's verdict: false once `calls` with copies at once (of which
/// `call_misses` missed the target) have missed at least [`GUARD_MISS_FACTOR`] times as often as
/// single copies over the same period (`copy_misses` of `copy_samples`). Too few calls or misses
/// to tell: true.
pub fn copies_pay(
    calls: usize,
    call_misses: usize,
    copy_samples: usize,
    copy_misses: usize,
) -> bool {
    if calls < GUARD_CALLS_MIN || call_misses < GUARD_MISSES_MIN || copy_samples == 0 {
        return true;
    }
    #[expect(clippy::cast_precision_loss, reason = "sample counts are tiny")]
    let call_miss_ratio = call_misses as f64 / calls as f64;
    #[expect(clippy::cast_precision_loss, reason = "sample counts are tiny")]
    let copy_miss_ratio = copy_misses as f64 / copy_samples as f64;
    call_miss_ratio < GUARD_MISS_FACTOR * copy_miss_ratio
}

/// Hedges create-only PUTs of `inner`; see the module docs.
#[derive(Debug)]
pub struct HedgedPuts {
    inner: Arc<dyn ObjectStorage>,
    config: HedgeConfig,
    history: Arc<Mutex<History>>,
    counters: Arc<Counters>,
    /// Payload bytes of extra copies in flight (see [`HedgeConfig::copy_bytes_in_flight_max`]).
    copy_bytes_in_flight: Arc<AtomicU64>,
    /// Copies at once of the last plan, so a change is logged once, not per call.
    last_copies_at_once: AtomicU32,
}

impl HedgedPuts {
    pub fn new(inner: Arc<dyn ObjectStorage>, config: HedgeConfig) -> StoreResult<HedgedPuts> {
        config.validate()?;
        Ok(HedgedPuts {
            inner,
            config,
            history: Arc::new(Mutex::new(History::default())),
            counters: Arc::new(Counters::default()),
            copy_bytes_in_flight: Arc::new(AtomicU64::new(0)),
            last_copies_at_once: AtomicU32::new(1),
        })
    }

    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    pub fn counts(&self) -> HedgeCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        HedgeCounts {
            calls: load(&counters.calls),
            copies: load(&counters.copies),
            won_by_later_copy: load(&counters.won_by_later_copy),
            calls_with_copies_at_once: load(&counters.calls_with_copies_at_once),
            single_by_effectiveness_guard: load(&counters.single_by_effectiveness_guard),
            single_by_bytes_budget: load(&counters.single_by_bytes_budget),
            copies_held_by_bytes_budget: load(&counters.copies_held_by_bytes_budget),
            guard_trips: load(&counters.guard_trips),
        }
    }

    /// Payload bytes of extra copies in flight now.
    pub fn copy_bytes_in_flight(&self) -> u64 {
        self.copy_bytes_in_flight.load(Ordering::Relaxed)
    }

    /// The plan the next call would follow (the effectiveness guard applied; the bytes budget is
    /// checked when the copies start).
    pub fn plan(&self) -> HedgePlan {
        let history = lock(&self.history);
        let mut plan = plan_of(&history, &self.config);
        if history.single_calls_left > 0 {
            plan.copies_at_once = 1;
        }
        plan
    }

    /// The plan of a call about to start, and the sequence number of the next copy sample.
    fn plan_call(&self) -> (HedgePlan, u64) {
        let mut history = lock(&self.history);
        let mut plan = plan_of(&history, &self.config);
        if history.single_calls_left > 0 {
            history.single_calls_left -= 1;
            if history.single_calls_left == 0 {
                tracing::debug!("PUT copies at once: guard period over, probing again");
            }
            if plan.copies_at_once > 1 {
                plan.copies_at_once = 1;
                self.counters
                    .single_by_effectiveness_guard
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        (plan, history.recorded)
    }

    /// Reserves `bytes` of the extra-copy budget; false (nothing reserved) if they do not fit.
    fn reserve_copy_bytes(&self, bytes: u64) -> bool {
        let budget = self.config.copy_bytes_in_flight_max;
        if budget == 0 {
            return false;
        }
        self.copy_bytes_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_flight| {
                in_flight
                    .checked_add(bytes)
                    .filter(|&total| total <= budget)
            })
            .is_ok()
    }

    /// Starts one copy on the current runtime; its answer arrives on `answers` with its number.
    /// `reserved_bytes` of the extra-copy budget are released when it finishes.
    fn start_copy(
        &self,
        number: u32,
        key: &str,
        payload: &[Bytes],
        reserved_bytes: u64,
        answers: &tokio::sync::mpsc::UnboundedSender<(u32, StoreResult<()>)>,
    ) {
        self.counters.copies.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let history = Arc::clone(&self.history);
        let copy_bytes_in_flight = Arc::clone(&self.copy_bytes_in_flight);
        let answers = answers.clone();
        let key = key.to_owned();
        let payload = payload.to_vec();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = inner.put_create(&key, payload).await;
            if reserved_bytes > 0 {
                copy_bytes_in_flight.fetch_sub(reserved_bytes, Ordering::AcqRel);
            }
            if matches!(result, Ok(()) | Err(StoreError::AlreadyExists { .. })) {
                lock(&history).record(started.elapsed().as_secs_f64() * 1_000.0);
            }
            // The caller may have returned already (another copy won); the copy's effect stands.
            let _ = answers.send((number, result));
        });
    }

    /// Starts copy `number` (not the first) if the bytes budget has room for it.
    fn start_extra_copy(
        &self,
        number: u32,
        key: &str,
        payload: &[Bytes],
        payload_bytes: u64,
        answers: &tokio::sync::mpsc::UnboundedSender<(u32, StoreResult<()>)>,
    ) -> bool {
        if !self.reserve_copy_bytes(payload_bytes) {
            self.counters
                .copies_held_by_bytes_budget
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.start_copy(number, key, payload, payload_bytes, answers);
        true
    }

    async fn put_hedged(
        &self,
        key: &str,
        payload: Vec<Bytes>,
        payload_bytes: u64,
    ) -> StoreResult<()> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let (plan, first_sample) = self.plan_call();
        let previous = self
            .last_copies_at_once
            .swap(plan.copies_at_once, Ordering::Relaxed);
        if previous != plan.copies_at_once {
            let counts = self.counts();
            tracing::debug!(
                copies_at_once = plan.copies_at_once,
                hedge_after_ms = plan.hedge_delay.as_secs_f64() * 1_000.0,
                calls = counts.calls,
                copies = counts.copies,
                single_by_effectiveness_guard = counts.single_by_effectiveness_guard,
                single_by_bytes_budget = counts.single_by_bytes_budget,
                "PUT hedging plan changed"
            );
        }
        let copies_max = self.config.copies_max;
        let planned_at_once = plan.copies_at_once.clamp(1, copies_max);
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        self.start_copy(0, key, &payload, 0, &answers);
        let mut at_once = 1;
        while at_once < planned_at_once
            && self.start_extra_copy(at_once, key, &payload, payload_bytes, &answers)
        {
            at_once += 1;
        }
        if planned_at_once > 1 && at_once == 1 {
            self.counters
                .single_by_bytes_budget
                .fetch_add(1, Ordering::Relaxed);
        }
        if at_once > 1 {
            self.counters
                .calls_with_copies_at_once
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut launched = at_once;
        let mut outstanding = at_once;
        let mut hedge_ticks: u32 = 0;
        let mut key_taken = false;
        let mut last_error = None;
        loop {
            // A delay too large to add up means no hedge, not a panic.
            let next_hedge = plan
                .hedge_delay
                .checked_mul(hedge_ticks.saturating_add(1))
                .and_then(|delay| started.checked_add(delay));
            let may_hedge = launched < copies_max && !key_taken && next_hedge.is_some();
            let next_hedge = next_hedge.unwrap_or(started);
            // Biased: an answer that is already in wins over a hedge due at the same instant,
            // and the choice does not depend on tokio's per-runtime random seed (a seeded
            // simulation must replay exactly; see `docs/testing.md`, "Deterministic simulation").
            tokio::select! {
                biased;
                answer = answered.recv() => {
                    let Some((number, result)) = answer else { break };
                    outstanding -= 1;
                    match result {
                        Ok(()) => {
                            if number > 0 {
                                self.counters.won_by_later_copy.fetch_add(1, Ordering::Relaxed);
                            }
                            if at_once > 1 {
                                self.record_multi_copy_call(first_sample, started.elapsed());
                            }
                            return Ok(());
                        }
                        Err(StoreError::AlreadyExists { .. }) => key_taken = true,
                        Err(error) => last_error = Some(error),
                    }
                    if outstanding == 0 {
                        break;
                    }
                }
                () = tokio::time::sleep_until(next_hedge), if may_hedge => {
                    hedge_ticks = hedge_ticks.saturating_add(1);
                    if self.start_extra_copy(launched, key, &payload, payload_bytes, &answers) {
                        launched += 1;
                        outstanding += 1;
                    }
                }
            }
        }
        if key_taken {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Err(last_error.unwrap_or_else(|| StoreError::Unavailable {
            op: super::Op::Put,
            key: key.to_owned(),
            message: "no copy of the hedged PUT answered".to_owned(),
        }))
    }

    /// Feeds the effectiveness guard with a call that started copies at once and took `latency`.
    fn record_multi_copy_call(&self, first_sample: u64, latency: Duration) {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a target in ms is far below 2^52"
        )]
        let target_ms = self.config.latency_target_ms as f64;
        let call = MultiCopyCall {
            first_sample,
            latency_ms: latency.as_secs_f64() * 1_000.0,
        };
        let tripped = lock(&self.history).record_multi_copy_call(call, target_ms);
        if tripped {
            self.counters.guard_trips.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                single_calls = SAMPLES_MAX,
                calls = self.counters.calls.load(Ordering::Relaxed),
                "PUT copies at once did not halve the misses (correlated latency): one copy for a while"
            );
        }
    }
}

/// The latency plan of `history`'s samples (no guard applied).
fn plan_of(history: &History, config: &HedgeConfig) -> HedgePlan {
    let mut sorted: Vec<f64> = history.recent.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    plan_from(&sorted, config)
}

/// The plan for latencies `sorted` (ascending, milliseconds).
pub fn plan_from(sorted: &[f64], config: &HedgeConfig) -> HedgePlan {
    let floor = Duration::from_millis(config.hedge_delay_ms_min);
    if sorted.len() < SAMPLES_MIN {
        return HedgePlan {
            copies_at_once: 1,
            hedge_delay: floor.max(Duration::from_millis(COLD_HEDGE_DELAY_MS)),
        };
    }
    #[expect(clippy::cast_precision_loss, reason = "sample counts are tiny")]
    let count = sorted.len() as f64;
    #[expect(
        clippy::cast_precision_loss,
        reason = "a target in ms is far below 2^52"
    )]
    let target_ms = config.latency_target_ms as f64;
    let misses = sorted
        .iter()
        .filter(|&&latency| latency > target_ms)
        .count();
    #[expect(clippy::cast_precision_loss, reason = "sample counts are tiny")]
    let miss_ratio = misses as f64 / count;
    let copies_at_once = if miss_ratio <= TARGET_MISS_RATIO {
        1
    } else if miss_ratio >= 1.0 {
        config.copies_max
    } else {
        let needed = (TARGET_MISS_RATIO.ln() / miss_ratio.ln()).ceil();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to 1..=COPIES_LIMIT first"
        )]
        let needed = needed.clamp(1.0, f64::from(COPIES_LIMIT)) as u32;
        needed.min(config.copies_max)
    };
    let rank = f64::from(config.hedge_percentile) / 100.0 * (count - 1.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rank is in 0..len"
    )]
    let percentile_ms = sorted.get(rank.round() as usize).copied().unwrap_or(0.0);
    let hedge_delay = Duration::from_secs_f64(percentile_ms.max(0.0) / 1_000.0).max(floor);
    HedgePlan {
        copies_at_once,
        hedge_delay,
    }
}

fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    // A panic elsewhere mid-record leaves samples that are still samples.
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl ObjectStorage for HedgedPuts {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let payload_bytes: u64 = payload.iter().map(|chunk| chunk.len() as u64).sum();
        let hedge = self.config.copies_max > 1
            && payload_bytes <= self.config.payload_bytes_max
            && tokio::runtime::Handle::try_current().is_ok();
        if hedge {
            self.put_hedged(key, payload, payload_bytes).await
        } else {
            self.inner.put_create(key, payload).await
        }
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        self.inner.delete_many(keys).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::{LatencyModel, LatencyProfile, ObjectStoreBackend, Op};

    /// Sorted draws of the PUT model plus a fixed per-call floor (the loopback server's own cost).
    fn draws(profile: LatencyProfile, floor_ms: f64, seed: u64) -> Vec<f64> {
        let model = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, seed).unwrap();
        let mut values: Vec<f64> = (0..SAMPLES_MAX)
            .map(|_| model.sample_delay_ms(Op::Put, 50_000) + floor_ms)
            .collect();
        values.sort_by(f64::total_cmp);
        values
    }

    #[test]
    fn plan_follows_the_store() {
        let config = HedgeConfig::default();
        for seed in 0..8 {
            // Loopback: 2-4 ms, never near the 15 ms target.
            let loopback: Vec<f64> = (0..SAMPLES_MAX).map(|i| 2.0 + (i % 3) as f64).collect();
            let plan = plan_from(&loopback, &config);
            assert_eq!(plan.copies_at_once, 1);
            assert_eq!(plan.hedge_delay, Duration::from_millis(5), "floor");
            // S3 Express model: ~8 % of PUTs above 15 ms: two copies make both missing ~0.6 %.
            let plan = plan_from(&draws(LatencyProfile::s3_express(), 2.5, seed), &config);
            assert_eq!(plan.copies_at_once, 2, "seed {seed}");
            let delay_ms = plan.hedge_delay.as_secs_f64() * 1_000.0;
            assert!(
                (10.0..30.0).contains(&delay_ms),
                "P95 of express + floor: {delay_ms}"
            );
            // S3 Standard model: the median is above the target, so all copies go at once.
            let plan = plan_from(&draws(LatencyProfile::s3_standard(), 2.5, seed), &config);
            assert_eq!(plan.copies_at_once, config.copies_max);
        }
    }

    #[test]
    fn cold_plan_is_one_copy_and_a_late_hedge() {
        let plan = plan_from(&[500.0; SAMPLES_MIN - 1], &HedgeConfig::default());
        assert_eq!(plan.copies_at_once, 1);
        assert_eq!(plan.hedge_delay, Duration::from_millis(COLD_HEDGE_DELAY_MS));
        let capped = HedgeConfig {
            copies_max: 3,
            ..HedgeConfig::default()
        };
        assert_eq!(plan_from(&[500.0; SAMPLES_MAX], &capped).copies_at_once, 3);
    }

    #[test]
    fn copies_pay_unless_they_miss_as_often_as_one_copy() {
        // Too few calls or misses to judge.
        assert!(copies_pay(GUARD_CALLS_MIN - 1, 20, 100, 30));
        assert!(copies_pay(64, GUARD_MISSES_MIN - 1, 100, 90));
        // Independent copies of a store missing 30 %: calls miss ~0.3^4.
        assert!(copies_pay(64, 0, 256, 77));
        assert!(copies_pay(64, 3, 256, 77), "4.7 % against 15 %");
        // Some benefit, however small, keeps them.
        assert!(copies_pay(64, 10, 256, 77), "15.6 % against 30 %");
        assert!(copies_pay(64, 19, 256, 77), "29.7 % against 30 %");
        // Correlated: calls miss as often as one copy, or more.
        assert!(!copies_pay(64, 20, 256, 77), "31.3 % against 30 %");
        assert!(!copies_pay(40, 9, 200, 40), "22.5 % against 20 %");
    }

    #[test]
    fn guard_takes_single_copy_misses_from_the_same_period() {
        let target_ms = 15.0;
        let mut history = History::default();
        // An old period of slow copies, then fast copies only.
        for _ in 0..128 {
            history.record(40.0);
        }
        let since = history.recorded;
        for _ in 0..128 {
            history.record(3.0);
        }
        assert_eq!(history.copy_samples_since(since), vec![3.0; 128]);
        assert_eq!(history.copy_samples_since(0).len(), 256);
        // A period shorter than GUARD_COPY_SAMPLES_MIN falls back to the whole window.
        assert_eq!(history.copy_samples_since(history.recorded - 4).len(), 256);
        // Calls over the fast period all missed: one copy missed 0 %, the guard trips on the
        // GUARD_CALLS_MIN-th call and plans SAMPLES_MAX calls single.
        let call = MultiCopyCall {
            first_sample: since,
            latency_ms: 20.0,
        };
        for _ in 0..GUARD_CALLS_MIN - 1 {
            assert!(!history.record_multi_copy_call(call, target_ms));
        }
        assert!(history.record_multi_copy_call(call, target_ms));
        assert_eq!(history.single_calls_left, SAMPLES_MAX);
        assert!(history.multi_copy_calls.is_empty());
        // Calls planned before the trip that finish later do not count.
        assert!(!history.record_multi_copy_call(call, target_ms));
        assert!(history.multi_copy_calls.is_empty());
    }

    #[test]
    fn guard_bar_is_the_target_or_the_upper_quartile_of_a_slow_store() {
        let fast: Vec<f64> = (0..100).map(|i| 1.0 + f64::from(i) / 10.0).collect();
        assert_eq!(guard_bar_ms(&fast, 15.0), 15.0);
        let slow: Vec<f64> = (0..101).map(|i| 50.0 + f64::from(i)).collect();
        assert_eq!(guard_bar_ms(&slow, 15.0), 125.0);
        assert_eq!(guard_bar_ms(&[], 15.0), 15.0);
        // S3 Standard: every copy misses 15 ms, yet independent copies keep paying, because the
        // guard judges them against the upper quartile (P75) of the period.
        let config = HedgeConfig::default();
        let model = crate::store::LatencyModel::new(
            ObjectStoreBackend::in_memory(),
            LatencyProfile::s3_standard(),
            3,
        )
        .unwrap();
        let mut history = History::default();
        for _ in 0..GUARD_CALLS_MAX {
            let first_sample = history.recorded;
            let copies: Vec<f64> = (0..config.copies_max)
                .map(|_| model.sample_delay_ms(Op::Put, 50_000))
                .collect();
            for &copy in &copies {
                history.record(copy);
            }
            let call = MultiCopyCall {
                first_sample,
                latency_ms: copies.iter().copied().fold(f64::MAX, f64::min),
            };
            assert!(!history.record_multi_copy_call(call, 15.0));
        }
    }

    #[test]
    fn config_is_validated() {
        let store: Arc<dyn ObjectStorage> = Arc::new(ObjectStoreBackend::in_memory());
        for bad in [
            HedgeConfig {
                copies_max: 0,
                ..HedgeConfig::default()
            },
            HedgeConfig {
                copies_max: COPIES_LIMIT + 1,
                ..HedgeConfig::default()
            },
            HedgeConfig {
                hedge_percentile: 100,
                ..HedgeConfig::default()
            },
        ] {
            assert!(HedgedPuts::new(Arc::clone(&store), bad).is_err(), "{bad:?}");
        }
        assert!(HedgedPuts::new(store, HedgeConfig::off()).is_ok());
    }
}
