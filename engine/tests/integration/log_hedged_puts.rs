//! The metadata log with hedged PUTs (`store::hedge::HedgedPuts`): several copies of one entry race
//! to create its key. A copy that loses must never look like a foreign writer, a foreign entry at
//! the key must still fence, lost responses must still resolve to "ours", and every acknowledged
//! batch must be where it was acknowledged after recovery.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError, MetadataLog};
use sluice_engine::store::hedge::{HedgeConfig, HedgedPuts, SAMPLES_MIN};
use sluice_engine::store::{
    Fault, FaultInjection, FaultProbabilities, ObjectStorage, Op, S3TestServer, StoreConfig,
    StoreRuntime, StoreRuntimeConfig, open_store,
};
use tokio::time::Instant;

fn config() -> LogConfig {
    LogConfig {
        put_attempts_max: 3,
        checkpoint_interval_entries: 4,
        ..LogConfig::default()
    }
}

/// Hedges after 5 ms once warm; copies at once only if PUTs miss `latency_target_ms`.
fn hedge_config(copies_max: u32, latency_target_ms: u64) -> HedgeConfig {
    HedgeConfig {
        copies_max,
        latency_target_ms,
        hedge_percentile: 95,
        hedge_delay_ms_min: 5,
        ..HedgeConfig::default()
    }
}

/// Gives the wrapper enough latency samples to leave its cold plan (keys outside `log/`).
async fn warm_up(store: &HedgedPuts) {
    for index in 0..SAMPLES_MIN + 8 {
        store
            .put_create(&format!("warm-up/{index}"), vec![Bytes::from_static(b"w")])
            .await
            .unwrap();
    }
}

// On a paused clock (every sleep here is tokio's, and the memory store does no I/O), so the race of
// a 400 ms first copy against a 5 ms hedge is decided by virtual time, not by a loaded machine.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_first_copy_loses_to_a_hedge() {
    let base = memory_store();
    let faults = Arc::new(FaultInjection::new(base.clone(), 1).with_slow_ms(400));
    let hedged = HedgedPuts::new(faults.clone(), hedge_config(2, 1_000)).unwrap();
    warm_up(&hedged).await;
    let plan = hedged.plan();
    assert_eq!(plan.copies_at_once, 1, "fast store: one copy at once");
    assert_eq!(plan.hedge_delay, Duration::from_millis(5));

    faults.fail_next(Op::Put, Fault::Slow).unwrap();
    let puts_before = faults.calls(Op::Put);
    let started = Instant::now();
    hedged
        .put_create("log/x", vec![Bytes::from_static(b"entry")])
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= plan.hedge_delay && took < Duration::from_millis(400),
        "the hedge answered before the slow first copy could: {took:?}"
    );
    assert_eq!(hedged.counts().won_by_later_copy, 1);
    assert_eq!(faults.calls(Op::Put) - puts_before, 2);
    assert_eq!(
        base.get("log/x").await.unwrap(),
        Bytes::from_static(b"entry")
    );

    // The slow first copy still reaches the store later, finds the key taken, and changes nothing.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        base.get("log/x").await.unwrap(),
        Bytes::from_static(b"entry")
    );
}

// Paused clock, as above: the 500 ms copy against its 5 ms hedge is virtual time.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn log_entry_behind_a_slow_put_is_acknowledged_by_its_hedge() {
    let base = memory_store();
    let faults = Arc::new(FaultInjection::new(base.clone(), 2).with_slow_ms(500));
    let hedged = Arc::new(HedgedPuts::new(faults.clone(), hedge_config(2, 1_000)).unwrap());
    warm_up(&hedged).await;
    let mut run = Run::new(2);
    let log = run.open(hedged.clone(), config()).await;
    run.append_some(&log, 2).await;
    faults.fail_next(Op::Put, Fault::Slow).unwrap();
    let started = Instant::now();
    run.append_some(&log, 1).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "acknowledged before the slow copy landed: {:?}",
        started.elapsed()
    );
    run.append_some(&log, 2).await;
    assert_eq!(run.failed, 0);
    assert!(hedged.counts().won_by_later_copy >= 1);
    drop(log);
    // Let the slow copy land (AlreadyExists) before recovery reads the bucket.
    tokio::time::sleep(Duration::from_millis(550)).await;
    run.recover_and_verify(base, config()).await;
}

/// Every entry goes out as three copies at once (the target is unreachable): all of them reach
/// the store, one creates the key, and each entry is acknowledged exactly once.
#[tokio::test(flavor = "current_thread")]
async fn all_copies_reach_the_store_and_each_entry_is_acknowledged_once() {
    let base = memory_store();
    let faults = Arc::new(FaultInjection::new(base.clone(), 3));
    let hedged = Arc::new(HedgedPuts::new(faults.clone(), hedge_config(3, 0)).unwrap());
    // Every sample is above a 0 ms target, so once warm every call starts all copies at once.
    warm_up(&hedged).await;
    assert_eq!(hedged.plan().copies_at_once, 3);
    let counts_before = hedged.counts();
    let puts_before = faults.calls(Op::Put);
    let mut run = Run::new(3);
    run.phase(hedged.clone(), config(), 12, 3).await;
    assert_eq!(run.failed, 0);
    // Let the losing copies finish.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let counts = hedged.counts();
    let calls = counts.calls - counts_before.calls;
    assert_eq!(
        counts.copies - counts_before.copies,
        3 * calls,
        "three copies per PUT"
    );
    assert_eq!(
        faults.calls(Op::Put) - puts_before,
        3 * calls,
        "every copy reached the store"
    );
    let acked = run.acked.len();
    assert!(acked >= 12, "every batch acknowledged once: {acked}");
    run.recover_and_verify(base, config()).await;
}

/// A newer writer's claim at our next key: every copy finds the key taken, the writer reads the
/// entry back and sees the higher epoch — Fenced, exactly as without hedging.
#[tokio::test(flavor = "current_thread")]
async fn a_foreign_entry_at_the_key_still_fences() {
    let base = memory_store();
    let hedged = Arc::new(HedgedPuts::new(base.clone(), hedge_config(3, 0)).unwrap());
    warm_up(&hedged).await;
    let mut run = Run::new(4);
    let first = run.open(hedged.clone(), config()).await;
    run.append_some(&first, 3).await;
    assert_eq!(run.failed, 0);

    let (second, _) = MetadataLog::open(base.clone(), config(), 0).await.unwrap();
    let error = first.append(run.entry(1)).await.unwrap_err();
    assert!(
        matches!(error, LogError::Fenced { .. }),
        "expected Fenced, got {error:?}"
    );
    assert!(
        first
            .append(run.entry(1))
            .await
            .unwrap_err()
            .is_fatal_for_writer()
    );

    run.append_some(&second, 2).await;
    assert_eq!(run.failed, 0);
    drop(second);
    run.recover_and_verify(base, config()).await;
}

/// Responses lost on hedged copies: the copy that landed answers `Unavailable`, its sibling finds
/// the key taken; the writer reads the entry back, finds its own epoch and nonce, and acknowledges.
#[tokio::test(flavor = "current_thread")]
async fn lost_responses_of_hedged_copies_resolve_to_ours() {
    for (seed, faults_of_pair) in [
        (5, [Fault::LostResponse, Fault::LostResponse]),
        (6, [Fault::LostResponse, Fault::Error]),
        (7, [Fault::Error, Fault::LostResponse]),
    ] {
        let base = memory_store();
        let faults = Arc::new(FaultInjection::new(base.clone(), seed));
        let hedged = Arc::new(HedgedPuts::new(faults.clone(), hedge_config(2, 0)).unwrap());
        warm_up(&hedged).await;
        let mut run = Run::new(seed);
        let log = run.open(hedged.clone(), config()).await;
        run.append_some(&log, 2).await;
        // The next entry's two copies (started together) get these faults.
        let next = faults.calls(Op::Put);
        faults
            .fail_call(Op::Put, next + 1, faults_of_pair[0])
            .unwrap();
        faults
            .fail_call(Op::Put, next + 2, faults_of_pair[1])
            .unwrap();
        run.append_some(&log, 3).await;
        assert_eq!(
            run.failed, 0,
            "{faults_of_pair:?}: a lost response with retries left must not fail the entry"
        );
        drop(log);
        run.recover_and_verify(base, config()).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn seeded_soak_with_hedges_and_random_faults() {
    for seed in 0..8 {
        let base = memory_store();
        // Slow calls are pinned (below), so the 95th percentile (the hedge delay) is a normal call.
        let put = FaultProbabilities {
            error: 0.06,
            timeout: 0.03,
            lost_response: 0.08,
            ..FaultProbabilities::default()
        };
        let get = FaultProbabilities {
            error: 0.03,
            ..FaultProbabilities::default()
        };
        let faults = FaultInjection::new(base.clone(), seed)
            .with_probabilities(Op::Put, put)
            .unwrap()
            .with_probabilities(Op::Get, get)
            .unwrap()
            .with_timeout_ms(4)
            .with_slow_ms(40);
        // Slow copies (40 ms) are hedged after the floor (5 ms): hedges race on every slow call.
        let faults = Arc::new(faults);
        let hedged = Arc::new(HedgedPuts::new(faults.clone(), hedge_config(3, 1_000)).unwrap());
        warm_up_tolerating_faults(hedged.as_ref()).await;
        slow_calls_ahead(&faults);
        let mut run = Run::new(700 + seed);
        run.soak(hedged.clone(), config(), 30).await;
        assert!(
            !run.acked.is_empty(),
            "seed {seed}: nothing was acknowledged"
        );
        assert!(
            hedged.counts().copies > hedged.counts().calls,
            "seed {seed}: no hedge was ever sent"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        run.recover_and_verify(base, config()).await;
    }
}

/// Makes a few of the next PUT calls slow, spread over the soak.
fn slow_calls_ahead<S: ObjectStorage>(faults: &FaultInjection<S>) {
    let next = faults.calls(Op::Put);
    for ahead in [3, 9, 17, 26, 38] {
        faults
            .fail_call(Op::Put, next + ahead, Fault::Slow)
            .unwrap();
    }
}

async fn warm_up_tolerating_faults(store: &dyn ObjectStorage) {
    for index in 0..SAMPLES_MIN * 2 {
        let _ = store
            .put_create(&format!("warm-up/{index}"), vec![Bytes::from_static(b"w")])
            .await;
    }
}

/// The same soak on the real S3-API server, with the hedging wrapper where the agent puts it:
/// under the runtime bridge, so its copies and timers run on the store's tokio runtime.
#[tokio::test(flavor = "current_thread")]
async fn soak_with_hedges_on_s3() {
    let server = S3TestServer::start().unwrap();
    let s3 = |prefix: &str| {
        open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap()
    };
    for seed in 0..2 {
        let prefix = format!("hedged-soak-{seed}");
        let put = FaultProbabilities {
            error: 0.05,
            timeout: 0.03,
            lost_response: 0.08,
            ..FaultProbabilities::default()
        };
        let faults = Arc::new(
            FaultInjection::new(s3(&prefix), seed)
                .with_probabilities(Op::Put, put)
                .unwrap()
                .with_timeout_ms(5)
                .with_slow_ms(300),
        );
        let hedged = Arc::new(HedgedPuts::new(faults.clone(), hedge_config(3, 1_000)).unwrap());
        let store = StoreRuntime::start(
            hedged.clone(),
            StoreRuntimeConfig {
                worker_threads: 1,
                inflight_requests_max: 32,
                ..StoreRuntimeConfig::default()
            },
        )
        .unwrap();
        // Through the bridge: the S3 client's connections belong to the bridge's runtime.
        warm_up_tolerating_faults(store.as_ref()).await;
        slow_calls_ahead(&faults);
        let mut run = Run::new(950 + seed);
        run.soak(store.clone(), config(), 24).await;
        assert!(
            hedged.counts().copies > hedged.counts().calls,
            "seed {seed}: no hedge was ever sent"
        );
        assert!(
            !run.acked.is_empty(),
            "seed {seed}: nothing was acknowledged"
        );
        drop(store);
        let fresh = StoreRuntime::start(
            s3(&prefix),
            StoreRuntimeConfig {
                worker_threads: 1,
                inflight_requests_max: 16,
                ..StoreRuntimeConfig::default()
            },
        )
        .unwrap();
        run.recover_and_verify(fresh, config()).await;
    }
}
