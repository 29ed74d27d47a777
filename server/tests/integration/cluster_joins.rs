//! Announced joins: with a 30 s lease (renewals, and so the renewal's listing of the live agents,
//! every 10 s), an agent's Metadata names a second agent within a few seconds of its start, and
//! stops naming it within a few seconds of its graceful stop. Only the registration's and the
//! deregistration's notifications can explain both: the chance that a renewal falls within the
//! deadline of one event is 3 s in 10, and within both (a few hundred ms apart) none.
//!
//! Waits are for the event (A's Metadata listing the brokers), polled every 10 ms, with a deadline
//! shorter than a renewal period.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::common::{self, RawClient};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use sluice_server::Agent;
use sluice_tests::postgres::TestPostgres;

const LEASE_MS: u64 = 30_000;
/// Well within a renewal period (a third of the lease, 10 s).
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(3);

fn start(url: &str, store_dir: &std::path::Path, agent_id: &str) -> (Agent, tempfile::TempDir) {
    common::start_cluster_agent(url, store_dir, agent_id, |config| {
        config.lease_ms = LEASE_MS;
    })
}

fn broker_count(client: &mut RawClient) -> usize {
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    response.brokers.len()
}

/// Polls A's Metadata until it lists `count` brokers; the time it took, or a panic after
/// `deadline`.
fn wait_for_brokers(
    client: &mut RawClient,
    count: usize,
    deadline: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    loop {
        let listed = broker_count(client);
        if listed == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: A's Metadata still lists {listed} brokers after {deadline:?} \
             (renewals every {} ms)",
            LEASE_MS / 3
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_join_and_a_leave_reach_the_other_agent_before_its_next_renewal() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_joins") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(&postgres.url(), store_dir.path(), "a");
    let mut to_a = RawClient::connect(a.local_addr());
    wait_for_brokers(&mut to_a, 1, ANNOUNCED_WITHIN, "A alone");

    let started = Instant::now();
    let (b, _b_dir) = start(&postgres.url(), store_dir.path(), "b");
    let start_took = started.elapsed();
    let joined_after = wait_for_brokers(&mut to_a, 2, ANNOUNCED_WITHIN, "B's join");
    eprintln!(
        "cluster_joins: B started in {start_took:?}; A listed it {joined_after:?} after that"
    );

    let stopped = Instant::now();
    b.shutdown().unwrap();
    let stop_took = stopped.elapsed();
    let left_after = wait_for_brokers(&mut to_a, 1, ANNOUNCED_WITHIN, "B's leave");
    eprintln!("cluster_joins: B stopped in {stop_took:?}; A dropped it {left_after:?} after that");
    drop(to_a);
    a.shutdown().unwrap();
}
