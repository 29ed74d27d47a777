//! Named listeners in a cluster (`--metadata`, one store, one PostgreSQL, two agents in
//! process): agent `a` has listeners `INTERNAL` and `CLIENT`, agent `b` only `INTERNAL`. Each
//! registration announces its listeners' advertised addresses by name, so Metadata through a
//! listener names every agent at its address on that listener — the other agent's too — and
//! leaves out an agent without a listener of that name (Kafka's rule); FindCoordinator through
//! `CLIENT` for a group `b` coordinates is COORDINATOR_NOT_AVAILABLE. Waits are for events (a
//! Metadata answer listing both agents), bounded by a deadline.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::RawClient;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_server::{Agent, Config};
use sluice_tests::postgres::TestPostgres;

const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

fn start(
    url: &str,
    store_dir: &std::path::Path,
    agent_id: &str,
    listeners: &[&str],
    advertised: &[&str],
) -> (Agent, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let list = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
    let config = Config {
        listeners: list(listeners),
        advertised_listeners: list(advertised),
        listener_security_protocol_map: list(&["INTERNAL:PLAINTEXT", "CLIENT:PLAINTEXT"]),
        cpus: Some(vec![0]),
        io_memory_bytes: 64 * 1024,
        data_dir: data_dir.path().to_owned(),
        store: Some(format!("file://{}?fsync=false", store_dir.display())),
        metadata: Some(url.to_owned()),
        agent_id: Some(agent_id.to_owned()),
        // Renewals (and member listings) every second.
        lease_ms: 3_000,
        auto_create_topics: false,
        ..Config::default()
    };
    (Agent::start(&config).unwrap(), data_dir)
}

/// The brokers Metadata through `address` names, once it names `count`.
fn brokers(address: SocketAddr, count: usize) -> BTreeSet<(String, i32)> {
    let mut client = RawClient::connect(address);
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    loop {
        let response: MetadataResponse =
            client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        if response.brokers.len() == count {
            return response
                .brokers
                .iter()
                .map(|broker| (broker.host.to_string(), broker.port))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "Metadata through {address} still lists {} brokers after {MEMBERSHIP_TIMEOUT:?}",
            response.brokers.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port(address: SocketAddr) -> i32 {
    i32::from(address.port())
}

#[test]
fn each_listener_names_every_agent_at_its_address_on_that_listener() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_listeners") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(
        &postgres.url(),
        store_dir.path(),
        "a",
        &["INTERNAL://127.0.0.1:0", "CLIENT://127.0.0.1:0"],
        &["CLIENT://localhost:0"],
    );
    let (b, _b_dir) = start(
        &postgres.url(),
        store_dir.path(),
        "b",
        &["INTERNAL://127.0.0.1:0"],
        &[],
    );
    let a_internal = a.listener_addr("INTERNAL").unwrap();
    let a_client = a.listener_addr("CLIENT").unwrap();
    let b_internal = b.listener_addr("INTERNAL").unwrap();
    assert_eq!(b.listener_addr("CLIENT"), None);

    let internal = BTreeSet::from([
        ("127.0.0.1".to_owned(), port(a_internal)),
        ("127.0.0.1".to_owned(), port(b_internal)),
    ]);
    // On INTERNAL, through either agent: both, each at its INTERNAL address (the other agent's
    // from its registration).
    assert_eq!(brokers(a_internal, 2), internal);
    assert_eq!(brokers(b_internal, 2), internal);
    // On CLIENT: only a, at its CLIENT address; b has no CLIENT listener and is left out.
    assert_eq!(
        brokers(a_client, 1),
        BTreeSet::from([("localhost".to_owned(), port(a_client))])
    );

    // A group b coordinates: through CLIENT it has no reachable coordinator; through INTERNAL
    // it is b, at b's INTERNAL port.
    let groups: Vec<String> = (0..64).map(|group| format!("group-{group}")).collect();
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|group| StrBytes::from_string(group.clone()))
                .collect(),
        );
    let on_internal: FindCoordinatorResponse =
        RawClient::connect(a_internal).call(ApiKey::FindCoordinator, 4, &request);
    let on_client: FindCoordinatorResponse =
        RawClient::connect(a_client).call(ApiKey::FindCoordinator, 4, &request);
    let unavailable = ResponseError::CoordinatorNotAvailable.code();
    let mut owned_by_b = 0;
    for (internal, client) in on_internal.coordinators.iter().zip(&on_client.coordinators) {
        assert_eq!(internal.error_code, 0);
        if internal.port == port(b_internal) {
            owned_by_b += 1;
            assert_eq!(client.error_code, unavailable, "{client:?}");
        } else {
            assert_eq!(internal.port, port(a_internal));
            assert_eq!((client.error_code, client.port), (0, port(a_client)));
        }
    }
    assert!(
        (1..64).contains(&owned_by_b),
        "b coordinates {owned_by_b} of 64 groups"
    );
}
