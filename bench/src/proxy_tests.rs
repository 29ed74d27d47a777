#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Instant;

use bytes::Bytes;
use sluice_engine::store::{
    LatencyDistribution, ObjectStorage, S3TestServer, StoreConfig, StoreError, open_store,
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
fn object_paths_are_decoded_and_kept_inside_the_root() {
    let root = Path::new("/data");
    assert_eq!(
        object_path(root, "/sluice-test/bench/log/0001"),
        Some(root.join("sluice-test/bench/log/0001"))
    );
    assert_eq!(
        object_path(root, "/b/a%20b%2Fc"),
        Some(root.join("b/a b/c"))
    );
    assert_eq!(object_path(root, "/b/../etc/passwd"), None);
    assert_eq!(object_path(root, "/b"), None);
    assert_eq!(object_path(root, "/b/%zz"), None);
}

#[test]
fn snapshots_subtract() {
    let counters = Counters::default();
    counters.record(S3Call::Put, 100, 0);
    let before = counters.snapshot();
    counters.count_put_conflict();
    counters.record(S3Call::Put, 10, 0);
    counters.record(S3Call::Get, 0, 7);
    counters.record(S3Call::List, 0, 3);
    let delta = counters.snapshot().since(&before);
    assert_eq!(delta.puts, 1);
    assert_eq!(delta.gets, 1);
    assert_eq!(delta.lists, 1);
    assert_eq!(delta.put_bytes, 10);
    assert_eq!(delta.put_conflicts, 1);
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
    let proxy = S3Proxy::start(upstream_of(&server), None, 1, None)
        .await
        .unwrap();
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

/// Without a proxy the loopback server counts the same calls itself, and a create-only PUT of a
/// large body on a key that exists gets the 412 (a conflict), not a broken connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_counts_what_the_proxy_would() {
    let counters = Arc::new(Counters::default());
    let server = S3TestServer::start_counted(server_observer(Arc::clone(&counters))).unwrap();
    let store = open_store(&StoreConfig::from_url(&server.store_url("p")).unwrap()).unwrap();

    let payload = Bytes::from(vec![7_u8; 4096]);
    store
        .put_create("log/1", vec![payload.clone()])
        .await
        .unwrap();
    store
        .put_create("log/2", vec![payload.clone()])
        .await
        .unwrap();
    // Larger than the socket buffers: s3s-fs alone would close the connection under the writer.
    let large = Bytes::from(vec![9_u8; 64 << 20]);
    let conflict = store.put_create("log/2", vec![large.clone()]).await;
    assert!(
        matches!(conflict, Err(StoreError::AlreadyExists { .. })),
        "{conflict:?}"
    );
    assert_eq!(store.get("log/1").await.unwrap(), payload);
    let _ = store.get_range("log/2", 0..100).await.unwrap();
    let listed = store.list("log", None).await.unwrap();
    assert_eq!(listed.len(), 2);
    store.delete("log/1").await.unwrap();

    let counts = counters.snapshot();
    assert_eq!(counts.puts, 3, "{counts:?}");
    assert_eq!(counts.put_conflicts, 1, "{counts:?}");
    assert_eq!(counts.gets, 2, "{counts:?}");
    assert_eq!(counts.lists, 1, "{counts:?}");
    assert_eq!(counts.deletes, 1, "{counts:?}");
    assert_eq!(counts.others, 0, "{counts:?}");
    assert_eq!(counts.put_bytes, 8192 + (64 << 20), "{counts:?}");
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
    let proxy = S3Proxy::start(upstream_of(&server), Some(profile), 1, None)
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

/// An upstream that reads a request's head and closes the connection: what the loopback server
/// does to a create-only PUT on a key that exists (it answers 412 before reading the body and
/// closes, and the proxy, still writing, sees the connection go). Counts its connections.
async fn closing_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let mut head = [0_u8; 256];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut head).await;
            drop(socket);
        }
    });
    (address, connections)
}

async fn send(proxy: &S3Proxy, method: Method, path: &str, create_only: bool) -> StatusCode {
    let stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    if create_only {
        request = request.header("if-none-match", "*");
    }
    let request = request
        .body(Full::new(Bytes::from(vec![b'x'; 1 << 20])))
        .unwrap();
    sender.send_request(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_only_put_is_a_conflict_and_failed_calls_are_sent_once_more() {
    let (upstream, connections) = closing_upstream().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bucket/log")).unwrap();
    std::fs::write(root.path().join("bucket/log/1"), b"first").unwrap();
    let proxy = S3Proxy::start(upstream, None, 1, Some(root.path().to_owned()))
        .await
        .unwrap();

    // The key exists: S3's answer, 412, once the connection fails.
    let status = send(&proxy, Method::PUT, "/bucket/log/1", true).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    // The key does not: a real failure, sent twice, then a gateway error.
    let before = connections.load(Ordering::Relaxed);
    let status = send(&proxy, Method::PUT, "/bucket/log/2", true).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(connections.load(Ordering::Relaxed) - before, 2);
    // A plain PUT on an existing key is not a conflict (nothing made it conditional).
    let status = send(&proxy, Method::PUT, "/bucket/log/1", false).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // Reads are sent twice too.
    let before = connections.load(Ordering::Relaxed);
    assert_eq!(
        send(&proxy, Method::GET, "/bucket/log/1", false).await,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(connections.load(Ordering::Relaxed) - before, 2);

    let counts = proxy.counters().snapshot();
    assert_eq!((counts.puts, counts.put_conflicts, counts.gets), (3, 1, 1));
    assert_eq!(counts.put_bytes, 3 << 20);

    // Without the server's files the proxy cannot tell, and says so with a gateway error.
    let blind = S3Proxy::start(upstream, None, 1, None).await.unwrap();
    assert_eq!(
        send(&blind, Method::PUT, "/bucket/log/1", true).await,
        StatusCode::BAD_GATEWAY
    );
}

/// Each fault kind, seen by a real S3 client through the proxy to the real loopback server:
/// errors and cut connections fail the call, and the `after forward` kinds have applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_calls_and_the_after_forward_kinds_apply_them() {
    use crate::proxy_faults::{FaultKind, FaultSpec};

    let server = S3TestServer::start().unwrap();
    let proxy = S3Proxy::start(upstream_of(&server), None, 1, None)
        .await
        .unwrap();
    let url = server
        .store_url("f")
        .replace(&server.endpoint(), &proxy.endpoint());
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    let payload = || vec![Bytes::from_static(b"payload")];
    let every = |kind| {
        Some(FaultSpec {
            kind,
            percent: 100,
            delay_ms: 300,
        })
    };

    for (key, kind) in [
        ("error", FaultKind::Error),
        ("reset", FaultKind::Reset),
        ("error-after", FaultKind::ErrorAfterForward),
        ("reset-after", FaultKind::ResetAfterForward),
    ] {
        proxy.faults().set(every(kind), 1);
        assert!(
            store.put_create(key, payload()).await.is_err(),
            "{kind:?}: the call must fail"
        );
        proxy.faults().set(None, 0);
        let applied = store.get(key).await.is_ok();
        let forwarded = matches!(
            kind,
            FaultKind::ErrorAfterForward | FaultKind::ResetAfterForward
        );
        assert_eq!(applied, forwarded, "{kind:?}");
    }

    proxy.faults().set(every(FaultKind::Delay), 1);
    let started = Instant::now();
    store.put_create("delayed", payload()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.faults().set(None, 0);

    let counts = proxy.faults().counts();
    assert_eq!(
        (
            counts.error,
            counts.reset,
            counts.error_after_forward,
            counts.reset_after_forward,
            counts.delay
        ),
        (1, 1, 1, 1, 1),
        "{counts:?}"
    );
}
