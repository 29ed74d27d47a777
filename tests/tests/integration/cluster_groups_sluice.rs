//! Scenario: a consumer group of three Java members spread over a cluster of three agents (zones
//! `a`, `b`, `c`, `lease_ms = 3000`, one PostgreSQL, one bucket of the S3-API test server), each
//! member bootstrapped at a different agent; the agent coordinating the group is killed with
//! kill -9 and not restarted. The group moves to another agent and consumes on: no committed offset
//! lost or gone backwards, every record processed, re-delivery only after the last commit
//! (`groups::cluster_failover`, docs/cluster.md). Once with the classic protocol
//! (cooperative-sticky), once with KIP-848 (`group.protocol=consumer`), each on its own cluster.
//!
//! PostgreSQL, the store server, or Java and Maven missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use sluice_tests::groups::cluster_failover::{LEASE_MS, consumes_through_coordinator_kill};
use sluice_tests::groups::member::GroupClient;
use sluice_tests::groups::scenario::{
    RECORDS_DEFAULT, SLUICE_FLAGS, Target, assert_all_passed, keep_reports, prepare_topic, timed,
};
use sluice_tests::postgres::TestPostgres;
use sluice_tests::sluice::Cluster;
use sluice_tests::stores::{StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require};

#[test]
fn classic_group_moves_when_its_coordinator_is_killed() {
    group_moves_when_its_coordinator_is_killed(GroupClient::JavaCooperative);
}

#[test]
fn consumer_protocol_group_moves_when_its_coordinator_is_killed() {
    group_moves_when_its_coordinator_is_killed(GroupClient::JavaConsumer);
}

fn group_moves_when_its_coordinator_is_killed(client: GroupClient) {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let test = format!("coordinator kill, {}", client.name());
    if !require(&test, &client.library().tools()) {
        return;
    }
    let Some(postgres) = TestPostgres::start_or_skip(&test) else {
        return;
    };
    let Some(store) = start_or_skip(StoreServerKind::S3sFs, &test) else {
        return;
    };
    let flags: Vec<String> = SLUICE_FLAGS
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        &*store,
        "coordinator-kill",
        &postgres.url(),
        &format!("lease_ms = {LEASE_MS}\n"),
        &flags,
        3,
    )
    .unwrap();
    cluster
        .wait_until_all_listed(Duration::from_secs(60))
        .unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-coordinator-kill-")
        .tempdir()
        .unwrap();
    let target = Target {
        name: "sluice cluster".to_string(),
        bootstrap: cluster.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
    };
    let outcome = timed(client, "coordinator kill", || {
        let topic = format!("coordinator-kill-{}", client.name());
        let prepared = prepare_topic(&target, client, &topic, RECORDS_DEFAULT)?;
        consumes_through_coordinator_kill(&mut cluster, &target, client, &prepared)
    });
    outcome.announce(&target.name);
    loud(&format!(
        "{test}: {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
    let failed = outcome.result.is_err();
    if failed {
        for (index, agent) in cluster.agents.iter().enumerate() {
            loud(&format!(
                "last lines of agent {index}'s log {}:\n{}",
                agent.log().display(),
                agent.log_tail()
            ));
        }
    }
    if failed || keep_reports() {
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    assert_all_passed("Sluice cluster (coordinator kill)", &[outcome]);
}
