//! Scenario: consumer groups with real clients against a Sluice agent on a loopback S3-API server —
//! the scenarios of `groups_kafka.rs` (membership changes, handoff with commits, static members),
//! then committed offsets surviving kill -9 and a restart of the agent on a fresh disk
//! (docs/testing.md, "Consumer groups").
//!
//! A client whose group APIs the agent does not advertise (ApiVersions) is skipped loudly,
//! `SKIPPED: sluice does not advertise ...`, or fails the test under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_engine::store::S3TestServer;
use sluice_tests::api_versions::missing;
use sluice_tests::groups::member::GroupClient;
use sluice_tests::groups::scenario::{
    SLUICE_FLAGS, Target, assert_all_passed, committed_offsets_survive_agent_restart, keep_reports,
    prepare_topic, run_clients, selected_clients, timed,
};
use sluice_tests::sluice::{SluiceAgent, serve_flags_supported};
use sluice_tests::tools::{loud, require, skip_or_fail};

/// Records in the restart scenario's topic.
const RESTART_RECORDS: u64 = 1_200;

#[test]
fn consumer_groups_on_sluice() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let store = S3TestServer::start().unwrap();
    let wanted: Vec<&str> = SLUICE_FLAGS.iter().map(|(flag, _)| *flag).collect();
    let supported = serve_flags_supported(&wanted).unwrap();
    let mut args = Vec::new();
    for (flag, value) in SLUICE_FLAGS {
        if supported.iter().any(|known| known == flag) {
            args.extend([flag.to_string(), value.to_string()]);
        } else {
            loud(&format!(
                "groups_sluice: `sluice serve` has no {flag} yet; the agent's default applies"
            ));
        }
    }
    let mut agent = SluiceAgent::start_with_args(&store, "groups", &args).unwrap();
    let advertised = agent.advertised_apis().unwrap();
    let mut clients = Vec::new();
    for client in selected_clients() {
        let absent = missing(&advertised, &client.apis());
        if absent.is_empty() {
            clients.push(client);
        } else {
            skip_or_fail(&format!(
                "sluice does not advertise {} (groups_sluice, {} client)",
                absent.join(", "),
                client.name()
            ));
        }
    }
    if clients.is_empty() {
        return;
    }
    loud(&format!(
        "Sluice on {} for the group scenarios ({})",
        agent.bootstrap(),
        args.join(" ")
    ));
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-groups-")
        .tempdir()
        .unwrap();
    let target = Target {
        name: "sluice".to_string(),
        bootstrap: agent.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
    };
    let mut outcomes = run_clients(&target, &clients);

    // Last, because it restarts the agent under everything else.
    let restart_client = GroupClient::JavaCooperative;
    if clients.contains(&restart_client)
        && require("sluice groups restart", &restart_client.library().tools())
    {
        let outcome = timed(restart_client, "restart", || {
            let prepared =
                prepare_topic(&target, restart_client, "groups-restart", RESTART_RECORDS)?;
            committed_offsets_survive_agent_restart(&target, &mut agent, restart_client, &prepared)
        });
        outcome.announce(&target.name);
        outcomes.push(outcome);
    }

    if outcomes.iter().any(|outcome| outcome.result.is_err()) {
        // Tells a wedged agent from a wrong answer.
        let probe = match agent.advertised_apis() {
            Ok(apis) => format!("answers ApiVersions ({} APIs)", apis.len()),
            Err(error) => format!("does not answer ApiVersions: {error}"),
        };
        loud(&format!(
            "after the scenarios the agent {probe}; last lines of its log {}:\n{}",
            agent.log().display(),
            agent.log_tail()
        ));
    }
    if outcomes.iter().any(|outcome| outcome.result.is_err()) || keep_reports() {
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    assert_all_passed("Sluice", &outcomes);
}
