//! The guards of `store::hedge::HedgedPuts` against a store whose PUT latency the test controls,
//! on tokio's paused clock (every run is deterministic under its seed):
//! - independent slow draws: copies at once stay on and cut the misses;
//! - correlated latency (every copy in a period equally slow): the effectiveness guard switches
//!   copies at once off, probes again later, and gives them back once the correlation ends;
//! - the bytes budget: no extra copy starts beyond it, and a budget of 0 sends first copies only.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_engine::store::hedge::{
    GUARD_CALLS_MIN, HedgeConfig, HedgedPuts, SAMPLES_MAX, SAMPLES_MIN,
};
use sluice_engine::store::{ObjectInfo, ObjectStorage, ObjectStoreBackend, StoreResult};
use tokio::time::Instant;

const FAST: Duration = Duration::from_millis(3);
const SLOW: Duration = Duration::from_millis(40);
const TARGET_MS: u64 = 15;
/// The probability that a PUT (or a period) is slow.
const SLOW_RATIO: f64 = 0.3;
/// Correlated mode: every PUT started in the same period of this length takes the same time.
const PERIOD: Duration = Duration::from_millis(50);

const INDEPENDENT: u8 = 0;
const CORRELATED: u8 = 1;
const ALWAYS_SLOW: u8 = 2;

/// An in-memory store whose `put_create` first sleeps: independently drawn per call, drawn once
/// per period for every call in it, or always slow. Tracks the PUT bytes in flight.
#[derive(Debug)]
struct TimedStore {
    inner: ObjectStoreBackend,
    mode: AtomicU8,
    seed: u64,
    rng: Mutex<ChaCha8Rng>,
    epoch: Instant,
    bytes_in_flight: AtomicU64,
    bytes_in_flight_peak: AtomicU64,
    puts: AtomicU64,
}

impl TimedStore {
    fn new(seed: u64, mode: u8) -> TimedStore {
        TimedStore {
            inner: ObjectStoreBackend::in_memory(),
            mode: AtomicU8::new(mode),
            seed,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            epoch: Instant::now(),
            bytes_in_flight: AtomicU64::new(0),
            bytes_in_flight_peak: AtomicU64::new(0),
            puts: AtomicU64::new(0),
        }
    }

    fn latency(&self) -> Duration {
        match self.mode.load(Ordering::Relaxed) {
            INDEPENDENT => {
                if self.rng.lock().unwrap().random_bool(SLOW_RATIO) {
                    SLOW
                } else {
                    FAST
                }
            }
            CORRELATED => {
                let period = (self.epoch.elapsed().as_nanos() / PERIOD.as_nanos()) as u64;
                let mut rng = ChaCha8Rng::seed_from_u64(
                    self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ period,
                );
                if rng.random_bool(SLOW_RATIO) {
                    SLOW
                } else {
                    FAST
                }
            }
            _ => SLOW,
        }
    }
}

#[async_trait::async_trait]
impl ObjectStorage for TimedStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let bytes: u64 = payload.iter().map(|chunk| chunk.len() as u64).sum();
        self.puts.fetch_add(1, Ordering::Relaxed);
        let now = self.bytes_in_flight.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.bytes_in_flight_peak.fetch_max(now, Ordering::AcqRel);
        tokio::time::sleep(self.latency()).await;
        self.bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
        self.inner.put_create(key, payload).await
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

fn hedge_config() -> HedgeConfig {
    // Payloads up to 16 MiB are hedged here, so the bytes budget is what limits 1–3 MiB copies.
    HedgeConfig {
        copies_max: 6,
        latency_target_ms: TARGET_MS,
        payload_bytes_max: 16 * 1024 * 1024,
        ..HedgeConfig::default()
    }
}

/// Sequential calls; returns how many took longer than the target.
async fn calls(hedged: &HedgedPuts, prefix: &str, count: usize) -> usize {
    let mut missed = 0;
    for index in 0..count {
        let started = Instant::now();
        hedged
            .put_create(
                &format!("{prefix}/{index}"),
                vec![Bytes::from_static(b"entry")],
            )
            .await
            .unwrap();
        if started.elapsed() > Duration::from_millis(TARGET_MS) {
            missed += 1;
        }
    }
    missed
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn independent_slow_draws_keep_their_copies() {
    for seed in 0..4 {
        let store = Arc::new(TimedStore::new(seed, INDEPENDENT));
        let hedged = HedgedPuts::new(store.clone(), hedge_config()).unwrap();
        calls(&hedged, "warm-up", SAMPLES_MAX).await;
        // 30 % of PUTs miss: 0.3^4 < 1 %, so about four copies at once.
        assert!(
            (3..=5).contains(&hedged.plan().copies_at_once),
            "seed {seed}: {:?}",
            hedged.plan()
        );
        let before = hedged.counts();
        let count = 1_000;
        let missed = calls(&hedged, "log", count).await;
        let counts = hedged.counts();
        assert_eq!(
            counts.guard_trips, 0,
            "seed {seed}: independent copies must keep paying: {counts:?}"
        );
        assert_eq!(counts.single_by_effectiveness_guard, 0, "seed {seed}");
        assert_eq!(
            counts.single_by_bytes_budget, 0,
            "seed {seed}: tiny payloads fit the budget"
        );
        assert!(
            counts.calls_with_copies_at_once - before.calls_with_copies_at_once
                >= count as u64 - 10,
            "seed {seed}: {counts:?}"
        );
        // One copy misses 30 % of the time; the calls miss a few percent at most.
        assert!(
            missed * 100 <= count * 3,
            "seed {seed}: {missed} of {count} calls missed the target"
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn correlated_latency_switches_copies_off_until_it_passes() {
    for seed in 0..4 {
        let store = Arc::new(TimedStore::new(seed, CORRELATED));
        let hedged = HedgedPuts::new(store.clone(), hedge_config()).unwrap();
        calls(&hedged, "warm-up", SAMPLES_MIN * 2).await;

        // Copies all slow together: the guard trips and plans single. (Hedges of slow calls add
        // slow copy samples, so one copy's miss ratio reads a little high and a trip at "as
        // often as one copy" takes a while: up to a few thousand calls here.)
        let mut index = 0;
        let mut puts_while_tripped = None;
        while hedged.counts().guard_trips < 1 {
            assert!(
                index < 24 * SAMPLES_MAX,
                "seed {seed}: the guard did not trip: {:?}",
                hedged.counts()
            );
            calls(&hedged, &format!("contended/{index}"), 1).await;
            index += 1;
            if hedged.counts().guard_trips == 1 && puts_while_tripped.is_none() {
                assert_eq!(
                    hedged.plan().copies_at_once,
                    1,
                    "seed {seed}: tripped guard plans single"
                );
                puts_while_tripped = Some((store.puts.load(Ordering::Relaxed), hedged.counts()));
                // While tripped, calls start one copy (plus a hedge on a slow one).
                calls(&hedged, &format!("tripped/{index}"), SAMPLES_MAX / 2).await;
                let (puts, counts) = puts_while_tripped.unwrap();
                let after = hedged.counts();
                assert_eq!(
                    after.calls_with_copies_at_once, counts.calls_with_copies_at_once,
                    "seed {seed}"
                );
                assert!(
                    after.single_by_effectiveness_guard
                        >= counts.single_by_effectiveness_guard + 100
                );
                let puts = store.puts.load(Ordering::Relaxed) - puts;
                assert!(
                    puts < (SAMPLES_MAX / 2) as u64 * 3 / 2,
                    "seed {seed}: {puts} PUTs for {} calls",
                    SAMPLES_MAX / 2
                );
            }
        }
        // The trip took at least GUARD_CALLS_MIN calls with copies at once: a slow store gets
        // copies at first.
        assert!(
            hedged.counts().calls_with_copies_at_once >= GUARD_CALLS_MIN as u64,
            "seed {seed}"
        );

        // The contention ends; the store keeps an independent tail. After the single period the
        // probe finds copies paying again and keeps them.
        store.mode.store(INDEPENDENT, Ordering::Relaxed);
        let trips = hedged.counts().guard_trips;
        calls(&hedged, "after/a", SAMPLES_MAX + 10).await;
        let before = hedged.counts();
        let count = 300;
        let missed = calls(&hedged, "after/b", count).await;
        let counts = hedged.counts();
        assert_eq!(
            counts.guard_trips, trips,
            "seed {seed}: independent copies must not trip: {counts:?}"
        );
        assert!(
            hedged.plan().copies_at_once >= 2,
            "seed {seed}: copies are back: {counts:?}"
        );
        assert!(
            counts.calls_with_copies_at_once - before.calls_with_copies_at_once
                >= count as u64 - 10,
            "seed {seed}"
        );
        assert!(
            missed * 100 <= count * 4,
            "seed {seed}: {missed} of {count} missed with copies back"
        );
    }
}

/// Always slow (every plan wants all six copies), 1 MiB payloads, 8 calls at a time.
async fn concurrent_large_calls(
    hedged: &Arc<HedgedPuts>,
    store: &TimedStore,
    prefix: &str,
    rounds: usize,
) {
    let payload = Bytes::from(vec![7_u8; 1024 * 1024]);
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for index in 0..8 {
            let hedged = hedged.clone();
            let payload = payload.clone();
            let key = format!("{prefix}/{round}/{index}");
            tasks.push(tokio::spawn(async move {
                hedged.put_create(&key, vec![payload]).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert!(hedged.copy_bytes_in_flight() <= hedged.config().copy_bytes_in_flight_max);
    }
    // Let the losing copies finish: their bytes go back to the budget.
    tokio::time::sleep(SLOW * 2).await;
    assert_eq!(hedged.copy_bytes_in_flight(), 0);
    assert_eq!(store.bytes_in_flight.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bytes_budget_bounds_the_extra_copies() {
    let store = Arc::new(TimedStore::new(1, ALWAYS_SLOW));
    let budget = 2 * 1024 * 1024;
    let config = HedgeConfig {
        copy_bytes_in_flight_max: budget,
        ..hedge_config()
    };
    let hedged = Arc::new(HedgedPuts::new(store.clone(), config).unwrap());
    calls(&hedged, "warm-up", SAMPLES_MIN + 8).await;
    assert_eq!(hedged.plan().copies_at_once, 6);
    store.bytes_in_flight_peak.store(0, Ordering::Relaxed);
    let before = hedged.counts();
    concurrent_large_calls(&hedged, &store, "large", 6).await;
    let counts = hedged.counts();
    let calls = counts.calls - before.calls;
    let extra = counts.copies - before.copies - calls;
    assert_eq!(calls, 48);
    // 8 first copies of 1 MiB are never held back; extra copies fit in 2 MiB: two at a time.
    let peak = store.bytes_in_flight_peak.load(Ordering::Relaxed);
    assert!(
        peak <= 8 * 1024 * 1024 + budget,
        "peak PUT bytes in flight {peak}"
    );
    assert!(
        peak > 8 * 1024 * 1024,
        "some extra copies did start: {peak}"
    );
    assert!(
        extra >= 2 && extra <= calls,
        "extra copies {extra} for {calls} calls"
    );
    assert!(counts.copies_held_by_bytes_budget > before.copies_held_by_bytes_budget);
    assert!(counts.single_by_bytes_budget - before.single_by_bytes_budget >= calls - extra);

    // A payload above the budget never gets an extra copy.
    let big = Bytes::from(vec![1_u8; 3 * 1024 * 1024]);
    let copies = hedged.counts().copies;
    for index in 0..5 {
        hedged
            .put_create(&format!("big/{index}"), vec![big.clone()])
            .await
            .unwrap();
    }
    assert_eq!(
        hedged.counts().copies - copies,
        5,
        "one copy per call above the budget"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zero_budget_sends_first_copies_only() {
    let store = Arc::new(TimedStore::new(2, ALWAYS_SLOW));
    let config = HedgeConfig {
        copy_bytes_in_flight_max: 0,
        ..hedge_config()
    };
    let hedged = Arc::new(HedgedPuts::new(store.clone(), config).unwrap());
    calls(&hedged, "warm-up", SAMPLES_MIN + 8).await;
    concurrent_large_calls(&hedged, &store, "large", 3).await;
    calls(&hedged, "small", 20).await;
    let counts = hedged.counts();
    assert_eq!(
        counts.copies, counts.calls,
        "no extra copy, at once or hedged: {counts:?}"
    );
    assert_eq!(store.puts.load(Ordering::Relaxed), counts.calls);
    assert_eq!(counts.calls_with_copies_at_once, 0);
    assert!(counts.single_by_bytes_budget >= 24 + 20, "{counts:?}");
}

/// Calls started every `1 / per_sec` (not waiting for each other) for `seconds`, each with a
/// payload of `bytes`; the P99 of their latencies after the first sixth, in milliseconds.
async fn paced_calls(hedged: &Arc<HedgedPuts>, per_sec: u64, bytes: usize, seconds: u64) -> f64 {
    let payload = Bytes::from(vec![0_u8; bytes]);
    let interval = Duration::from_micros(1_000_000 / per_sec);
    let mut tasks = Vec::new();
    for index in 0..per_sec * seconds {
        let hedged = hedged.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            hedged
                .put_create(&format!("paced/{index}"), vec![payload])
                .await
                .unwrap();
            started.elapsed().as_secs_f64() * 1_000.0
        }));
        tokio::time::sleep(interval).await;
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let mut steady = latencies.split_off(latencies.len() / 6);
    steady.sort_by(f64::total_cmp);
    steady[(steady.len() - 1) * 99 / 100]
}

/// The bench's latency models are independent draws: under the default configuration both guards
/// leave their copies alone at the fraud bench's load (S3 Express: ~100 entries/s of ~50 KB;
/// S3 Standard: ~30 entries/s of ~170 KB, whose six copies need ~4 MiB of budget in flight).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_models_keep_their_copies_under_the_default_guards() {
    use sluice_engine::store::{LatencyModel, LatencyProfile};
    let model = |profile| {
        Arc::new(LatencyModel::new(ObjectStoreBackend::in_memory(), profile, 11).unwrap())
    };

    let express = Arc::new(
        HedgedPuts::new(model(LatencyProfile::s3_express()), HedgeConfig::default()).unwrap(),
    );
    let p99 = paced_calls(&express, 100, 50_000, 10).await;
    let counts = express.counts();
    assert_eq!(
        (counts.guard_trips, counts.copies_held_by_bytes_budget),
        (0, 0),
        "{counts:?}"
    );
    assert_eq!(express.plan().copies_at_once, 2);
    assert!(p99 <= 15.0, "S3 Express PUT P99 {p99} ms");

    let standard = Arc::new(
        HedgedPuts::new(model(LatencyProfile::s3_standard()), HedgeConfig::default()).unwrap(),
    );
    let p99 = paced_calls(&standard, 30, 170_000, 20).await;
    let counts = standard.counts();
    assert_eq!(counts.guard_trips, 0, "{counts:?}");
    assert_eq!(standard.plan().copies_at_once, 6);
    assert!(
        counts.copies * 10 >= counts.calls * 55,
        "nearly six copies per call: {counts:?}"
    );
    assert!(
        p99 <= 125.0,
        "S3 Standard PUT P99 {p99} ms (one copy: ~400 ms)"
    );

    // With 2 MiB the same load loses copies to the budget and the tail comes back.
    let config = HedgeConfig {
        copy_bytes_in_flight_max: 2 << 20,
        ..HedgeConfig::default()
    };
    let tight = Arc::new(HedgedPuts::new(model(LatencyProfile::s3_standard()), config).unwrap());
    let tight_p99 = paced_calls(&tight, 30, 170_000, 20).await;
    assert!(tight.counts().copies_held_by_bytes_budget > 0);
    assert!(
        tight_p99 > p99,
        "a tight budget costs tail: {tight_p99} ms against {p99} ms"
    );
}
