//! How S3 failures reach callers: against the loopback server, a stopped server is `Unavailable`
//! (transient; retry), wrong credentials are `Other` (retrying will not help), and a server that
//! accepts but never answers is a `Timeout` carrying the configured request timeout.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use sluice_engine::store::{S3TestServer, StoreConfig, StoreErrorKind, open_store};

#[tokio::test]
async fn stopped_server_is_unavailable() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("");
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    store
        .put_create("a", vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    drop(server);
    let error = store
        .put_create("b", vec![Bytes::from_static(b"x")])
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert_eq!(error.key(), Some("b"));
    let error = store.get("a").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
}

#[tokio::test]
async fn wrong_credentials_are_not_transient() {
    let server = S3TestServer::start().unwrap();
    let url = server
        .store_url("")
        .replace("secret_access_key=", "secret_access_key=wrong-");
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    let error = store
        .put_create("a", vec![Bytes::from_static(b"x")])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Other, "{error}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections (the kernel's backlog does) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "s3://b?endpoint=http://{}&region=us-east-1&access_key_id=a&secret_access_key=s&retries_max=0&request_timeout_ms=200",
        listener.local_addr().unwrap()
    );
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let error = store.head("k").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Timeout, "{error}");
    assert!(
        matches!(
            error,
            sluice_engine::store::StoreError::Timeout { after_ms: 200, .. }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(listener);
}
