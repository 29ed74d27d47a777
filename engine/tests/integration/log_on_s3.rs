//! The metadata log against a real S3-API server on loopback (s3s-fs), through the runtime bridge:
//! create-only PUTs, suffix reads and listings over HTTP, with faults injected on the way.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError, MetadataLog};
use sluice_engine::store::{
    FaultInjection, FaultProbabilities, ObjectStorage, Op, S3TestServer, StoreConfig, StoreRuntime,
    StoreRuntimeConfig, open_store,
};

fn config() -> LogConfig {
    LogConfig {
        put_attempts_max: 3,
        checkpoint_interval_entries: 5,
        ..LogConfig::default()
    }
}

fn s3(server: &S3TestServer, prefix: &str) -> Arc<dyn ObjectStorage> {
    open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap()
}

fn bridged(inner: Arc<dyn ObjectStorage>) -> Arc<dyn ObjectStorage> {
    StoreRuntime::start(
        inner,
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 16,
            ..StoreRuntimeConfig::default()
        },
    )
    .unwrap()
}

/// No tokio context at all on the caller's side, as on a glommio core: every store call crosses the
/// bridge to its own runtime and comes back through a oneshot.
#[test]
fn log_runs_on_a_non_tokio_executor() {
    let server = S3TestServer::start().unwrap();
    let store = bridged(s3(&server, "plain"));
    let mut run = Run::new(1);
    futures::executor::block_on(async {
        let (log, stats) = MetadataLog::open(store.clone(), config(), 0).await.unwrap();
        assert_eq!(stats.entries_replayed, 0);
        let _ = &log;
        drop(log);
    });
    // The harness's verification uses tokio timers, so it runs on a runtime of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = run.open(store.clone(), config()).await;
        run.append_some(&log, 6).await;
        assert_eq!(run.failed, 0);
        drop(log);
        run.recover_and_verify(store, config()).await;
    });
}

#[tokio::test(flavor = "current_thread")]
async fn crash_before_and_after_puts_on_s3() {
    let server = S3TestServer::start().unwrap();
    for (index, mode) in [TripMode::BeforePut, TripMode::AfterPut]
        .into_iter()
        .enumerate()
    {
        for trip_at in [2, 4, 6] {
            let base = bridged(s3(&server, &format!("crash-{index}-{trip_at}")));
            let mut run = Run::new(10 + trip_at);
            run.phase(Tripwire::new(base.clone(), mode, trip_at), config(), 8, 3)
                .await;
            run.recover_and_verify(base, config()).await;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn soak_with_faults_on_s3() {
    let server = S3TestServer::start().unwrap();
    for seed in 0..3 {
        let base = s3(&server, &format!("soak-{seed}"));
        let put = FaultProbabilities {
            error: 0.08,
            timeout: 0.04,
            slow: 0.05,
            lost_response: 0.08,
        };
        let faults = FaultInjection::new(base.clone(), seed)
            .with_probabilities(Op::Put, put)
            .unwrap()
            .with_timeout_ms(5)
            .with_slow_ms(2);
        let mut run = Run::new(900 + seed);
        run.soak(bridged(Arc::new(faults)), config(), 24).await;
        assert!(
            !run.acked.is_empty(),
            "seed {seed}: nothing was acknowledged"
        );
        // A fresh client: the soak's bridge runtime is gone, and with it the I/O of the first
        // client's pooled connections (see docs/object-stores.md, "one store, one runtime").
        drop(base);
        run.recover_and_verify(bridged(s3(&server, &format!("soak-{seed}"))), config())
            .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn second_agent_fences_the_first_on_s3() {
    let server = S3TestServer::start().unwrap();
    let store = bridged(s3(&server, "fence"));
    let mut run = Run::new(77);
    let first = run.open(store.clone(), config()).await;
    run.append_some(&first, 2).await;
    let (second, stats) = MetadataLog::open(store.clone(), config(), 0).await.unwrap();
    assert!(
        stats.entries_replayed >= 3,
        "the second agent replays the first one's entries"
    );
    let error = first.append(run.entry(2)).await.unwrap_err();
    assert!(
        matches!(error, LogError::Fenced { .. }),
        "expected Fenced, got {error:?}"
    );
    run.append_some(&second, 2).await;
    assert_eq!(run.failed, 0);
    drop((first, second));
    run.recover_and_verify(store, config()).await;
}
