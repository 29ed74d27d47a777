//! Scenario: a Kafka Streams application restores its store from the compacted changelog it
//! created, against a Sluice agent whose bucket is a loopback S3-API server (docs/testing.md,
//! "Kafka Streams").
//!
//! Streams creates the changelog itself (CreateTopics with `cleanup.policy=compact`, and
//! `delete.retention.ms=1000` so tombstones may go within the run); the agent runs with fast
//! compaction and collection settings so that it works on the changelog while the application
//! writes it. The application processes 20,000 ledger records, keeps running until the changelog is
//! compacted or 20 s pass, and stops; its state directory is deleted; a second run restores the
//! store from the changelog and every account must equal the table the seed implies — no latest
//! value lost, no closed account brought back. DescribeConfigs on the changelog must say
//! `cleanup.policy=compact`.
//!
//! The agent must also have compacted the changelog by then (fewer records served than offsets
//! spanned): otherwise the restore proved nothing about compaction.
//! `SLUICE_E2E_STREAMS_REQUIRE_COMPACTION=0` turns that into a printed note, for an agent built
//! without key compaction. A failing run (or any run with `SLUICE_E2E_KEEP_REPORTS` set) keeps the
//! driver's reports and logs and a copy of the agent's log.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_engine::store::S3TestServer;
use sluice_tests::api_versions::missing;
use sluice_tests::clients::ClientKind;
use sluice_tests::groups::scenario::keep_reports;
use sluice_tests::sluice::{SluiceAgent, fast_housekeeping_args, serve_flags_supported};
use sluice_tests::streams::{self, Scenario};
use sluice_tests::tools::{loud, require};

const AWAIT_COMPACTION_S: u64 = 20;

/// What Kafka Streams 4.4 (classic group protocol, at-least-once) and the driver call.
const STREAMS_APIS: [(i16, &str); 14] = [
    (0, "Produce"),
    (1, "Fetch"),
    (2, "ListOffsets"),
    (3, "Metadata"),
    (8, "OffsetCommit"),
    (9, "OffsetFetch"),
    (10, "FindCoordinator"),
    (11, "JoinGroup"),
    (12, "Heartbeat"),
    (13, "LeaveGroup"),
    (14, "SyncGroup"),
    (19, "CreateTopics"),
    (22, "InitProducerId"),
    (32, "DescribeConfigs"),
];

fn agent_args() -> Vec<String> {
    let mut args: Vec<String> = fast_housekeeping_args();
    // Streams' single member should not wait for others to join (Kafka's test broker has 0 too).
    if !serve_flags_supported(&["--group-initial-rebalance-delay-ms"])
        .unwrap()
        .is_empty()
    {
        args.extend([
            "--group-initial-rebalance-delay-ms".to_string(),
            "0".to_string(),
        ]);
    }
    args
}

fn compaction_required() -> bool {
    !std::env::var("SLUICE_E2E_STREAMS_REQUIRE_COMPACTION")
        .is_ok_and(|value| value == "0" || value == "false")
}

#[test]
fn kafka_streams_restores_its_store_from_a_compacted_changelog_on_sluice() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("streams_sluice", &ClientKind::Java.tools()) {
        return;
    }
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-streams-sluice-")
        .tempdir()
        .unwrap();
    ClientKind::Java.build(work_dir.path()).unwrap();
    let store = S3TestServer::start().unwrap();
    let agent = SluiceAgent::start_with_args(&store, "streams", &agent_args()).unwrap();
    let absent = missing(&agent.advertised_apis().unwrap(), &STREAMS_APIS);
    assert!(
        absent.is_empty(),
        "Kafka Streams needs {absent:?}, which the agent does not advertise"
    );
    let scenario = Scenario {
        target: "sluice".to_string(),
        bootstrap: agent.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
        records: streams::records(),
        changelog_configs: vec![("delete.retention.ms".to_string(), "1000".to_string())],
        await_compaction_s: AWAIT_COMPACTION_S,
    };
    let outcome = match scenario.run() {
        Ok(outcome) => outcome,
        Err(error) => panic!(
            "{error}\nlast lines of the agent's log:\n{}\nreports and the agent's log kept in {}",
            agent.log_tail(),
            keep(work_dir, &agent).display()
        ),
    };
    let mut failures = streams::check(&scenario, &outcome);
    if !outcome.changelog.compacted() {
        let message = format!(
            "the agent did not compact the changelog within {AWAIT_COMPACTION_S} s: it serves all {} \
             of its records",
            outcome.changelog.records
        );
        if compaction_required() {
            failures.push(message);
        } else {
            loud(&format!(
                "NOTE: {message} (a failure unless SLUICE_E2E_STREAMS_REQUIRE_COMPACTION=0)"
            ));
        }
    }
    loud(&streams::summary(&scenario, &outcome));
    if !failures.is_empty() {
        panic!(
            "Kafka Streams on Sluice:\n- {}\nlast lines of the agent's log:\n{}\nreports and the \
             agent's log kept in {}",
            failures.join("\n- "),
            agent.log_tail(),
            keep(work_dir, &agent).display()
        );
    }
    if keep_reports() {
        loud(&format!(
            "reports kept in {}",
            keep(work_dir, &agent).display()
        ));
    }
}

/// Keeps the work directory, with a copy of the agent's log (its own directory goes with it).
fn keep(work_dir: tempfile::TempDir, agent: &SluiceAgent) -> std::path::PathBuf {
    let _ = std::fs::copy(agent.log(), work_dir.path().join("agent.log"));
    work_dir.keep()
}
