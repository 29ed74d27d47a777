//! [`LatencyModel`]: a store wrapper that makes a fast store (memory, local directory, loopback S3)
//! answer as slowly as a cloud one, deterministically under a seed.
//!
//! Latency decides Sluice's design (flush windows, hedged PUTs, the block cache), so benches and
//! simulations must see the cloud's *distribution*, tail included, not its mean. Object-store
//! latency is roughly log-normal (a body with a long right tail), and published figures come as a
//! median and a P99, so each operation gets a log-normal fitted to those two numbers:
//! `mu = ln(p50)`, `sigma = ln(p99 / p50) / 2.326` (2.326 is the standard normal's 99th
//! percentile). Bodies add a per-MiB transfer time; every delay is capped at `max_ms` so a
//! simulation never stalls on a freak draw. The profiles' sources and fits are in
//! `docs/object-stores.md`.
//!
//! The delay is a `tokio::time::sleep`: the wrapper must run where a tokio timer exists — behind
//! [`super::StoreRuntime`] (the intended place) or in a tokio test. A PUT is delayed *before* it
//! reaches the inner store (the object becomes visible when the modelled PUT completes); a GET's
//! first-byte delay comes before the call and its transfer time after, once the size is known.

use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use super::error::{Op, StoreError};
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// The standard normal distribution's 99th percentile.
const Z_P99: f64 = 2.326_347_874;
const BYTES_PER_MIB: f64 = 1_048_576.0;

/// The delay of one kind of call: a log-normal fitted to a median and a P99, plus transfer time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyDistribution {
    /// Median time to first byte (or to the PUT's answer for an empty body).
    pub p50_ms: f64,
    /// 99th percentile of the same; at least `p50_ms`.
    pub p99_ms: f64,
    /// Added per MiB of body (PUT payload or GET response).
    pub transfer_ms_per_mib: f64,
    /// Cap on one call's total delay.
    pub max_ms: f64,
}

impl LatencyDistribution {
    /// No delay at all.
    pub const ZERO: LatencyDistribution = LatencyDistribution {
        p50_ms: 0.0,
        p99_ms: 0.0,
        transfer_ms_per_mib: 0.0,
        max_ms: 0.0,
    };

    pub const fn new(
        p50_ms: f64,
        p99_ms: f64,
        transfer_ms_per_mib: f64,
        max_ms: f64,
    ) -> LatencyDistribution {
        LatencyDistribution {
            p50_ms,
            p99_ms,
            transfer_ms_per_mib,
            max_ms,
        }
    }

    /// The fitted log-normal, `None` for a zero median (no first-byte delay).
    fn log_normal(&self) -> StoreResult<Option<LogNormal<f64>>> {
        let valid = self.p50_ms.is_finite()
            && self.p99_ms.is_finite()
            && self.p50_ms >= 0.0
            && self.p99_ms >= self.p50_ms
            && self.transfer_ms_per_mib >= 0.0
            && self.max_ms >= 0.0;
        if !valid {
            return Err(StoreError::invalid_config(format!(
                "invalid latency distribution {self:?}"
            )));
        }
        if self.p50_ms == 0.0 {
            return Ok(None);
        }
        let sigma = (self.p99_ms / self.p50_ms).ln() / Z_P99;
        LogNormal::new(self.p50_ms.ln(), sigma)
            .map(Some)
            .map_err(|error| {
                StoreError::invalid_config(format!("latency distribution {self:?}: {error}"))
            })
    }
}

/// Per-operation latency distributions. `get` covers `get`, `get_range` and `get_tail`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyProfile {
    pub put: LatencyDistribution,
    pub get: LatencyDistribution,
    pub head: LatencyDistribution,
    pub list: LatencyDistribution,
    pub delete: LatencyDistribution,
}

impl LatencyProfile {
    /// No added latency.
    pub const fn none() -> LatencyProfile {
        let zero = LatencyDistribution::ZERO;
        LatencyProfile {
            put: zero,
            get: zero,
            head: zero,
            list: zero,
            delete: zero,
        }
    }

    /// S3 Standard, client in the bucket's region. See `docs/object-stores.md` for the sources.
    pub const fn s3_standard() -> LatencyProfile {
        LatencyProfile {
            put: LatencyDistribution::new(100.0, 400.0, 10.0, 2_000.0),
            get: LatencyDistribution::new(60.0, 200.0, 10.0, 2_000.0),
            head: LatencyDistribution::new(40.0, 150.0, 0.0, 2_000.0),
            list: LatencyDistribution::new(60.0, 250.0, 0.0, 2_000.0),
            delete: LatencyDistribution::new(60.0, 250.0, 0.0, 2_000.0),
        }
    }

    /// S3 Express One Zone, client in the bucket's availability zone. See `docs/object-stores.md`.
    pub const fn s3_express() -> LatencyProfile {
        LatencyProfile {
            put: LatencyDistribution::new(6.0, 20.0, 5.0, 500.0),
            get: LatencyDistribution::new(4.0, 12.0, 5.0, 500.0),
            head: LatencyDistribution::new(3.0, 10.0, 0.0, 500.0),
            list: LatencyDistribution::new(6.0, 25.0, 0.0, 500.0),
            delete: LatencyDistribution::new(5.0, 20.0, 0.0, 500.0),
        }
    }

    /// `"s3-standard"`, `"s3-express"` or `"none"`.
    pub fn parse(name: &str) -> StoreResult<LatencyProfile> {
        match name.trim().to_ascii_lowercase().as_str() {
            "s3-standard" | "s3_standard" => Ok(LatencyProfile::s3_standard()),
            "s3-express" | "s3_express" => Ok(LatencyProfile::s3_express()),
            "none" => Ok(LatencyProfile::none()),
            other => Err(StoreError::invalid_config(format!(
                "unknown latency profile {other:?} (expected s3-standard, s3-express or none)"
            ))),
        }
    }

    pub fn for_op(&self, op: Op) -> &LatencyDistribution {
        match op {
            Op::Put => &self.put,
            Op::Get => &self.get,
            Op::Head => &self.head,
            Op::List => &self.list,
            Op::Delete => &self.delete,
        }
    }
}

/// Fitted distributions, one per [`Op`], in [`Op::ALL`] order.
#[derive(Debug)]
struct Sampler {
    profile: LatencyProfile,
    fitted: [Option<LogNormal<f64>>; 5],
    rng: Mutex<ChaCha8Rng>,
}

impl Sampler {
    fn first_byte_ms(&self, op: Op) -> f64 {
        let Some(Some(distribution)) = self.fitted.get(op.index()) else {
            return 0.0;
        };
        // A poisoned lock only means another caller panicked mid-draw; the RNG state is still valid.
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        distribution.sample(&mut *rng)
    }
}

/// Delays every call by a draw from its operation's distribution, then calls `inner`.
#[derive(Debug)]
pub struct LatencyModel<S> {
    inner: S,
    sampler: Sampler,
}

impl<S: ObjectStorage> LatencyModel<S> {
    /// Draws come from `ChaCha8Rng::seed_from_u64(seed)`: the same seed and call order give the same
    /// delays.
    pub fn new(inner: S, profile: LatencyProfile, seed: u64) -> StoreResult<LatencyModel<S>> {
        let mut fitted = [None; 5];
        for (slot, op) in fitted.iter_mut().zip(Op::ALL) {
            *slot = profile.for_op(op).log_normal()?;
        }
        let sampler = Sampler {
            profile,
            fitted,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        };
        Ok(LatencyModel { inner, sampler })
    }

    pub fn profile(&self) -> &LatencyProfile {
        &self.sampler.profile
    }

    /// One call's total delay in milliseconds for a body of `body_bytes`, capped at `max_ms`:
    /// exposed so tests can check the fitted percentiles without sleeping.
    pub fn sample_delay_ms(&self, op: Op, body_bytes: u64) -> f64 {
        let distribution = self.sampler.profile.for_op(op);
        let total = self.sampler.first_byte_ms(op) + transfer_ms(distribution, body_bytes);
        total.min(distribution.max_ms)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn transfer_ms(distribution: &LatencyDistribution, body_bytes: u64) -> f64 {
    #[expect(
        clippy::cast_precision_loss,
        reason = "body sizes far below 2^52 bytes"
    )]
    let mib = body_bytes as f64 / BYTES_PER_MIB;
    distribution.transfer_ms_per_mib * mib
}

async fn sleep_ms(delay_ms: f64) {
    if delay_ms > 0.0 && delay_ms.is_finite() {
        tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1_000.0)).await;
    }
}

impl<S: ObjectStorage> LatencyModel<S> {
    /// First-byte delay, the call, then the transfer time of the body it returned (capped in total).
    async fn read<T>(
        &self,
        op: Op,
        call: impl Future<Output = StoreResult<T>>,
        body_bytes: impl Fn(&T) -> u64,
    ) -> StoreResult<T> {
        let distribution = self.sampler.profile.for_op(op);
        let first_byte_ms = self.sampler.first_byte_ms(op).min(distribution.max_ms);
        sleep_ms(first_byte_ms).await;
        let result = call.await;
        if let Ok(value) = &result {
            let transfer = transfer_ms(distribution, body_bytes(value))
                .min(distribution.max_ms - first_byte_ms);
            sleep_ms(transfer).await;
        }
        result
    }
}

#[async_trait::async_trait]
impl<S: ObjectStorage> ObjectStorage for LatencyModel<S> {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let body_bytes: usize = payload.iter().map(Bytes::len).sum();
        sleep_ms(self.sample_delay_ms(Op::Put, body_bytes as u64)).await;
        self.inner.put_create(key, payload).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.read(Op::Get, self.inner.get(key), |bytes| bytes.len() as u64)
            .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.read(Op::Get, self.inner.get_range(key, range), |bytes| {
            bytes.len() as u64
        })
        .await
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.read(Op::Get, self.inner.get_tail(key, len), |(bytes, _)| {
            bytes.len() as u64
        })
        .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        sleep_ms(self.sample_delay_ms(Op::Head, 0)).await;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        sleep_ms(self.sample_delay_ms(Op::List, 0)).await;
        self.inner.list(prefix, start_after).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        sleep_ms(self.sample_delay_ms(Op::Delete, 0)).await;
        self.inner.delete(key).await
    }

    /// One draw per 1,000 keys: a bulk delete is one request per 1,000 on S3.
    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        for _ in keys.chunks(1_000) {
            sleep_ms(self.sample_delay_ms(Op::Delete, 0)).await;
        }
        self.inner.delete_many(keys).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::ObjectStoreBackend;

    fn percentile(sorted: &[f64], fraction: f64) -> f64 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
        sorted[index]
    }

    fn draws(model: &LatencyModel<ObjectStoreBackend>, op: Op, count: usize) -> Vec<f64> {
        let mut values: Vec<f64> = (0..count).map(|_| model.sample_delay_ms(op, 0)).collect();
        values.sort_by(f64::total_cmp);
        values
    }

    #[test]
    fn percentiles_of_draws_match_the_profile() {
        for profile in [LatencyProfile::s3_standard(), LatencyProfile::s3_express()] {
            let model = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 7).unwrap();
            for op in Op::ALL {
                let wanted = profile.for_op(op);
                let values = draws(&model, op, 10_000);
                let p50 = percentile(&values, 0.50);
                let p99 = percentile(&values, 0.99);
                // 10k draws: the sample median is within a few percent, the P99 within ~15%.
                assert!(
                    (p50 / wanted.p50_ms - 1.0).abs() < 0.06,
                    "{op} p50 {p50} vs {}",
                    wanted.p50_ms
                );
                assert!(
                    (p99 / wanted.p99_ms - 1.0).abs() < 0.15,
                    "{op} p99 {p99} vs {}",
                    wanted.p99_ms
                );
                assert!(
                    values.iter().all(|&v| v <= wanted.max_ms),
                    "{op} exceeded the cap"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_delays_and_transfer_time_is_added() {
        let profile = LatencyProfile::s3_standard();
        let a = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 1).unwrap();
        let b = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 1).unwrap();
        let c = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 2).unwrap();
        let from_a: Vec<f64> = (0..100).map(|_| a.sample_delay_ms(Op::Put, 0)).collect();
        let from_b: Vec<f64> = (0..100).map(|_| b.sample_delay_ms(Op::Put, 0)).collect();
        let from_c: Vec<f64> = (0..100).map(|_| c.sample_delay_ms(Op::Put, 0)).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a, from_c);
        let transfer_only = LatencyProfile {
            put: LatencyDistribution::new(0.0, 0.0, 10.0, 1_000.0),
            ..LatencyProfile::none()
        };
        let model = LatencyModel::new(ObjectStoreBackend::in_memory(), transfer_only, 1).unwrap();
        assert!((model.sample_delay_ms(Op::Put, 8 * 1_048_576) - 80.0).abs() < 1e-9);
        assert!(
            (model.sample_delay_ms(Op::Put, 1_000 * 1_048_576) - 1_000.0).abs() < 1e-9,
            "capped"
        );
    }

    #[test]
    fn bad_profiles_are_rejected() {
        assert!(LatencyProfile::parse("s3-express").is_ok());
        assert_eq!(
            LatencyProfile::parse("none").unwrap(),
            LatencyProfile::none()
        );
        assert!(LatencyProfile::parse("s3-glacier").is_err());
        let inverted = LatencyProfile {
            get: LatencyDistribution::new(10.0, 5.0, 0.0, 100.0),
            ..LatencyProfile::none()
        };
        assert!(LatencyModel::new(ObjectStoreBackend::in_memory(), inverted, 0).is_err());
    }

    // On a paused clock: the delays are tokio sleeps and the store is in memory, so the elapsed
    // time is the model's alone, on any machine.
    #[tokio::test(start_paused = true)]
    async fn calls_are_delayed_by_the_model() {
        let fixed = LatencyDistribution::new(30.0, 30.0, 0.0, 1_000.0);
        let profile = LatencyProfile {
            put: fixed,
            get: fixed,
            ..LatencyProfile::none()
        };
        let model = LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 0).unwrap();
        let started = tokio::time::Instant::now();
        model
            .put_create("k", vec![Bytes::from_static(b"v")])
            .await
            .unwrap();
        assert_eq!(model.get("k").await.unwrap(), Bytes::from_static(b"v"));
        model.head("k").await.unwrap();
        let elapsed = started.elapsed();
        // Two 30 ms calls and an undelayed HEAD (a millisecond of slack for the float conversion).
        assert!(
            elapsed >= Duration::from_micros(59_900) && elapsed <= Duration::from_millis(61),
            "two 30 ms calls took {elapsed:?}"
        );
    }
}
