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
//! [`COLD_HEDGE_DELAY_MS`]. The model behind the rule assumes copies are independent draws, which
//! holds for the bench's latency models; on a real store copies share a network path, so measure
//! before trusting the factor (`docs/benchmarks.md`, "Flush latency on the models").
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
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::StoreError;
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// Recent copy latencies the plan is computed from.
pub const SAMPLES_MAX: usize = 256;
/// Below this many samples the plan is one copy and a hedge after [`COLD_HEDGE_DELAY_MS`].
pub const SAMPLES_MIN: usize = 32;
/// Hedge delay before the store's latency is known.
pub const COLD_HEDGE_DELAY_MS: u64 = 200;
/// Per call, the accepted probability that every copy started at once misses the target.
pub const TARGET_MISS_RATIO: f64 = 0.01;
/// Largest `copies_max` accepted.
pub const COPIES_LIMIT: u32 = 16;

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
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            copies_max: 6,
            latency_target_ms: 15,
            hedge_percentile: 95,
            hedge_delay_ms_min: 5,
            payload_bytes_max: 16 * 1024 * 1024,
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
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    copies: AtomicU64,
    won_by_later_copy: AtomicU64,
}

/// The last [`SAMPLES_MAX`] copy latencies, in milliseconds.
#[derive(Debug, Default)]
struct Samples {
    recent: VecDeque<f64>,
}

impl Samples {
    fn record(&mut self, latency_ms: f64) {
        if self.recent.len() >= SAMPLES_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(latency_ms);
    }
}

/// Hedges create-only PUTs of `inner`; see the module docs.
#[derive(Debug)]
pub struct HedgedPuts {
    inner: Arc<dyn ObjectStorage>,
    config: HedgeConfig,
    samples: Arc<Mutex<Samples>>,
    counters: Arc<Counters>,
    /// Copies at once of the last plan, so a change is logged once, not per call.
    last_copies_at_once: AtomicU32,
}

impl HedgedPuts {
    pub fn new(inner: Arc<dyn ObjectStorage>, config: HedgeConfig) -> StoreResult<HedgedPuts> {
        config.validate()?;
        Ok(HedgedPuts {
            inner,
            config,
            samples: Arc::new(Mutex::new(Samples::default())),
            counters: Arc::new(Counters::default()),
            last_copies_at_once: AtomicU32::new(1),
        })
    }

    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    pub fn counts(&self) -> HedgeCounts {
        HedgeCounts {
            calls: self.counters.calls.load(Ordering::Relaxed),
            copies: self.counters.copies.load(Ordering::Relaxed),
            won_by_later_copy: self.counters.won_by_later_copy.load(Ordering::Relaxed),
        }
    }

    /// The plan the next call would follow.
    pub fn plan(&self) -> HedgePlan {
        let mut sorted: Vec<f64> = lock(&self.samples).recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        plan_from(&sorted, &self.config)
    }

    /// Starts one copy on the current runtime; its answer arrives on `answers` with its number.
    fn start_copy(
        &self,
        number: u32,
        key: &str,
        payload: &[Bytes],
        answers: &tokio::sync::mpsc::UnboundedSender<(u32, StoreResult<()>)>,
    ) {
        self.counters.copies.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let samples = Arc::clone(&self.samples);
        let answers = answers.clone();
        let key = key.to_owned();
        let payload = payload.to_vec();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = inner.put_create(&key, payload).await;
            if matches!(result, Ok(()) | Err(StoreError::AlreadyExists { .. })) {
                lock(&samples).record(started.elapsed().as_secs_f64() * 1_000.0);
            }
            // The caller may have returned already (another copy won); the copy's effect stands.
            let _ = answers.send((number, result));
        });
    }

    async fn put_hedged(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let plan = self.plan();
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
                "PUT hedging plan changed"
            );
        }
        let copies_max = self.config.copies_max;
        let at_once = plan.copies_at_once.clamp(1, copies_max);
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        for number in 0..at_once {
            self.start_copy(number, key, &payload, &answers);
        }
        let started = tokio::time::Instant::now();
        let mut launched = at_once;
        let mut outstanding = at_once;
        let mut key_taken = false;
        let mut last_error = None;
        loop {
            // A delay too large to add up means no hedge, not a panic.
            let next_hedge = plan
                .hedge_delay
                .checked_mul(launched - at_once + 1)
                .and_then(|delay| started.checked_add(delay));
            let may_hedge = launched < copies_max && !key_taken && next_hedge.is_some();
            let next_hedge = next_hedge.unwrap_or(started);
            tokio::select! {
                answer = answered.recv() => {
                    let Some((number, result)) = answer else { break };
                    outstanding -= 1;
                    match result {
                        Ok(()) => {
                            if number > 0 {
                                self.counters.won_by_later_copy.fetch_add(1, Ordering::Relaxed);
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
                    self.start_copy(launched, key, &payload, &answers);
                    launched += 1;
                    outstanding += 1;
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

fn lock(samples: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    // A panic elsewhere mid-record leaves samples that are still samples.
    samples
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
            self.put_hedged(key, payload).await
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
