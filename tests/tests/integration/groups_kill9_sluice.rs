//! Scenario: Java consumer groups (the classic protocol with the cooperative-sticky assignor, and
//! KIP-848 `group.protocol=consumer`) consume while the agent is killed with kill -9 and
//! restarted on the same bucket, repeatedly: no failed commit, no rebalance beyond the first,
//! re-delivery only of records after the last commit (`groups::agent_kills`, docs/groups.md).
//!
//! Needs Java and Maven (`scripts/install-test-deps.sh`): missing, the test skips locally and
//! fails under `CI=true`, as does an agent that does not advertise the group APIs.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_engine::store::S3TestServer;
use sluice_tests::api_versions::missing;
use sluice_tests::groups::agent_kills::consumes_through_agent_kills;
use sluice_tests::groups::member::GroupClient;
use sluice_tests::groups::scenario::{
    RECORDS_DEFAULT, SLUICE_FLAGS, Target, assert_all_passed, keep_reports, prepare_topic, timed,
};
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{loud, require, skip_or_fail};

/// Checkpoints this often, so that the restarts recover from a checkpoint holding the groups and
/// replay the entries after it, not only a log replayed from its start.
const CHECKPOINT_INTERVAL_ENTRIES: &str = "16";

#[test]
fn java_groups_ride_through_agent_kills() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let clients = [GroupClient::JavaCooperative, GroupClient::JavaConsumer];
    if !require(
        "sluice groups through kill -9",
        &GroupClient::JavaCooperative.library().tools(),
    ) {
        return;
    }
    let store = S3TestServer::start().unwrap();
    let mut args: Vec<String> = SLUICE_FLAGS
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect();
    args.extend([
        "--checkpoint-interval-entries".to_string(),
        CHECKPOINT_INTERVAL_ENTRIES.to_string(),
    ]);
    let mut agent = SluiceAgent::start_with_args(&store, "groups-kill9", &args).unwrap();
    let advertised = agent.advertised_apis().unwrap();
    for client in clients {
        let absent = missing(&advertised, &client.apis());
        if !absent.is_empty() {
            skip_or_fail(&format!(
                "sluice does not advertise {} (groups_kill9_sluice)",
                absent.join(", ")
            ));
            return;
        }
    }
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-groups-kill9-")
        .tempdir()
        .unwrap();
    let target = Target {
        name: "sluice".to_string(),
        bootstrap: agent.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
    };
    let mut outcomes = Vec::new();
    for client in clients {
        let outcome = timed(client, "agent kills", || {
            let topic = format!("groups-kill9-{}", client.name());
            let prepared = prepare_topic(&target, client, &topic, RECORDS_DEFAULT)?;
            consumes_through_agent_kills(&target, &mut agent, client, &prepared)
        });
        outcome.announce(&target.name);
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().any(|outcome| outcome.result.is_err());
    if failed {
        loud(&format!(
            "last lines of the agent's log {}:\n{}",
            agent.log().display(),
            agent.log_tail()
        ));
    }
    if failed || keep_reports() {
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    assert_all_passed("Sluice (agent kills)", &outcomes);
}
