//! Measures the per-call floor of the loopback S3 server: 1 KiB create-only PUTs and 100-byte
//! ranged GETs, sequential, on one kept-alive connection. DESIGN.md warns that without TCP_NODELAY
//! Nagle + delayed ACK puts ~40 ms under every small response; this checks the floor is far below
//! that before any latency figure measured against the server is trusted.
//!
//! Ignored by default (it is a measurement, and timing on a loaded CI box is noisy):
//! `cargo test -p sluice-engine --release --test integration -- store_loopback_floor:: --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_engine::store::{
    ObjectStorage, S3TestServer, StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store,
};

const CALLS: usize = 500;
const WARMUP_CALLS: usize = 20;

struct Summary {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |fraction: f64| {
        let index = ((samples.len() - 1) as f64 * fraction).round() as usize;
        samples[index].as_secs_f64() * 1_000.0
    };
    Summary {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// Sequential calls, so the client reuses one pooled connection.
async fn measure(store: &dyn ObjectStorage, label: &str) -> (Summary, Summary) {
    let body = Bytes::from(vec![7u8; 1024]);
    for i in 0..WARMUP_CALLS {
        store
            .put_create(&format!("{label}/warm/{i:06}"), vec![body.clone()])
            .await
            .unwrap();
    }
    let mut puts = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        store
            .put_create(&format!("{label}/put/{i:06}"), vec![body.clone()])
            .await
            .unwrap();
        puts.push(started.elapsed());
    }
    let mut gets = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        let bytes = store
            .get_range(&format!("{label}/put/{i:06}"), 300..400)
            .await
            .unwrap();
        gets.push(started.elapsed());
        assert_eq!(bytes.len(), 100);
    }
    (summarize(puts), summarize(gets))
}

fn report(label: &str, (put, get): &(Summary, Summary)) {
    println!(
        "{label}: 1 KiB PUT p50 {:.2} ms p99 {:.2} ms max {:.2} ms | 100 B ranged GET p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        put.p50_ms, put.p99_ms, put.max_ms, get.p50_ms, get.p99_ms, get.max_ms
    );
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn loopback_s3_per_call_floor() {
    let server = S3TestServer::start().unwrap();
    let s3 = open_store(&StoreConfig::from_url(&server.store_url("")).unwrap()).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct = runtime.block_on(measure(&*s3, "direct"));
    report("direct (tokio caller)", &direct);

    // The path the agent takes: a non-tokio caller through the runtime bridge. A fresh client: the
    // first one's pooled connection is driven by `runtime`, which nothing polls any more.
    let s3 = open_store(&StoreConfig::from_url(&server.store_url("")).unwrap()).unwrap();
    let bridged_store: Arc<dyn ObjectStorage> =
        StoreRuntime::start(s3, StoreRuntimeConfig::default()).unwrap();
    let bridged = futures::executor::block_on(measure(&*bridged_store, "bridged"));
    report("bridged (block_on caller -> StoreRuntime)", &bridged);

    // The same server without TCP_NODELAY, to show what the setting buys (fewer calls: it is slow).
    let nagle_server = S3TestServer::start_with_nodelay(false).unwrap();
    let nagle_s3 =
        open_store(&StoreConfig::from_url(&nagle_server.store_url("")).unwrap()).unwrap();
    let nagle = runtime.block_on(measure(&*nagle_s3, "nagle"));
    report("direct, server WITHOUT TCP_NODELAY", &nagle);

    // Far below the 40 ms Nagle/delayed-ACK signature, with a wide margin for a busy machine.
    for (put, get) in [&direct, &bridged] {
        assert!(
            put.p50_ms < 10.0 && get.p50_ms < 10.0,
            "loopback floor too high: is TCP_NODELAY set?"
        );
    }
}
