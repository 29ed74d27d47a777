#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Instant;

use bytes::Bytes;
use sluice_engine::store::{
    LatencyDistribution, ObjectStorage, S3TestServer, StoreConfig, open_store,
};

use super::*;

#[test]
fn classifies_path_style_calls() {
    let q = |s: &'static str| Some(s);
    assert_eq!(classify(&Method::PUT, "/b/log/1", None), S3Call::Put);
    assert_eq!(classify(&Method::GET, "/b/log/1", None), S3Call::Get);
    assert_eq!(
        classify(&Method::GET, "/b", q("list-type=2&prefix=log/")),
        S3Call::List
    );
    assert_eq!(classify(&Method::GET, "/b/", None), S3Call::List);
    assert_eq!(classify(&Method::HEAD, "/b/k", None), S3Call::Head);
    assert_eq!(classify(&Method::DELETE, "/b/k", None), S3Call::Delete);
    assert_eq!(classify(&Method::POST, "/b", q("delete")), S3Call::Delete);
    assert_eq!(classify(&Method::POST, "/b/k", q("uploads")), S3Call::Other);
}

#[test]
fn snapshots_subtract() {
    let counters = Counters::default();
    counters.record(S3Call::Put, 100, 0);
    let before = counters.snapshot();
    counters.record(S3Call::Put, 10, 0);
    counters.record(S3Call::Get, 0, 7);
    counters.record(S3Call::List, 0, 3);
    let delta = counters.snapshot().since(&before);
    assert_eq!(delta.puts, 1);
    assert_eq!(delta.gets, 1);
    assert_eq!(delta.lists, 1);
    assert_eq!(delta.put_bytes, 10);
    assert_eq!(delta.get_bytes, 10);
    // Never panics on a "later" snapshot that is smaller.
    assert_eq!(before.since(&counters.snapshot()).puts, 0);
}

fn upstream_of(server: &S3TestServer) -> SocketAddr {
    server
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// A real S3 client through the proxy to the real loopback server: signatures survive the hop,
/// and each call is counted once, by kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_real_s3_traffic() {
    let server = S3TestServer::start().unwrap();
    let proxy = S3Proxy::start(upstream_of(&server), None, 1).await.unwrap();
    let url = server
        .store_url("p")
        .replace(&server.endpoint(), &proxy.endpoint());
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();

    let payload = Bytes::from(vec![7_u8; 4096]);
    store
        .put_create("log/1", vec![payload.clone()])
        .await
        .unwrap();
    store
        .put_create("log/2", vec![payload.clone()])
        .await
        .unwrap();
    assert_eq!(store.get("log/1").await.unwrap(), payload);
    let _ = store.get_range("log/2", 0..100).await.unwrap();
    let listed = store.list("log", None).await.unwrap();
    assert_eq!(listed.len(), 2);
    store.delete("log/1").await.unwrap();

    let counts = proxy.counters().snapshot();
    assert_eq!(counts.puts, 2);
    assert_eq!(counts.gets, 2);
    assert_eq!(counts.lists, 1);
    assert_eq!(counts.deletes, 1, "{counts:?}");
    assert_eq!(counts.others, 0, "{counts:?}");
    assert_eq!(counts.put_bytes, 8192);
    assert!(counts.get_bytes >= 4096 + 100, "{counts:?}");
}

/// Under a profile every PUT waits at least its modelled floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_puts_by_the_profile() {
    let server = S3TestServer::start().unwrap();
    let fixed = LatencyDistribution::new(30.0, 30.0, 0.0, 1_000.0);
    let profile = LatencyProfile {
        put: fixed,
        ..LatencyProfile::none()
    };
    let proxy = S3Proxy::start(upstream_of(&server), Some(profile), 1)
        .await
        .unwrap();
    let url = server
        .store_url("")
        .replace(&server.endpoint(), &proxy.endpoint());
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    let started = Instant::now();
    for key in ["a", "b", "c"] {
        store
            .put_create(key, vec![Bytes::from_static(b"x")])
            .await
            .unwrap();
    }
    let elapsed_ms = started.elapsed().as_millis();
    assert!(elapsed_ms >= 90, "3 PUTs of 30 ms took {elapsed_ms} ms");
    assert_eq!(proxy.counters().snapshot().puts, 3);
}
