//! Stopping an agent closes its connections, frees its port and its executors, so the next agent
//! (in this process or another) can start on the same port.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

#[test]
fn shutdown_closes_connections_and_frees_the_port() {
    let mut agent = common::start_agent(|_| {});
    let addr = agent.addr();
    let mut client = common::RawClient::connect(addr);
    let _: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());

    agent.agent.take().unwrap().shutdown().unwrap();
    assert!(
        client.is_closed_by_agent(),
        "an open connection is closed by shutdown"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
    drop(agent);

    // The same port again, now that the first agent is gone.
    let again = common::start_agent(|config| config.listen = addr.to_string());
    let mut client = common::RawClient::connect(again.addr());
    let response: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

/// Pinned (io_uring-registered) memory of this process, from /proc/self/status.
fn pinned_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmPin:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Known upstream limitation, kept as a test so that a glommio upgrade that fixes it is noticed:
/// glommio 0.9 never frees an executor's io_uring rings, so the registered io memory (3 ×
/// `io_memory_bytes` per executor) stays pinned after the executor is dropped and its thread
/// joined; measured even for an executor that only ran a timer. Harmless for the binary (one
/// agent per process); a test process that starts many agents runs out of RLIMIT_MEMLOCK after a
/// few, and glommio then falls back to unregistered buffers with a logged warning.
#[test]
#[ignore = "glommio 0.9 leaks each executor's rings and registered io memory when it is dropped"]
fn stopping_releases_locked_memory() {
    let before = pinned_kib();
    for _ in 0..5 {
        let agent = common::start_agent(|_| {});
        let mut client = common::RawClient::connect(agent.addr());
        let _: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        drop(agent);
    }
    assert_eq!(
        pinned_kib(),
        before,
        "executors must unregister their io memory when stopped"
    );
}
