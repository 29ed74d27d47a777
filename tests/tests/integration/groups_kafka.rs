//! Scenario: consumer groups with real clients against Apache Kafka 4.x — membership changes,
//! handoff with commits, static membership (docs/testing.md, "Consumer groups").
//!
//! This validates the group harness itself against the reference broker: member programs, reports,
//! settle detection and the ownership and handoff checks. When the same scenarios fail against
//! Sluice, the fault is Sluice's.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::groups::scenario::{
    KAFKA_BROKER_SETTINGS, Target, assert_all_passed, keep_reports, run_clients, selected_clients,
};
use sluice_tests::kafka::ApacheKafka;
use sluice_tests::tools::{in_ci, loud, require};

#[test]
fn consumer_groups_on_apache_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("consumer groups on Apache Kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let kafka = ApacheKafka::start_with(&KAFKA_BROKER_SETTINGS).unwrap();
    loud(&format!(
        "Apache Kafka on {} (pid {}) for the group scenarios",
        kafka.bootstrap(),
        kafka.pid()
    ));
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-groups-")
        .tempdir()
        .unwrap();
    let target = Target {
        name: "kafka".to_string(),
        bootstrap: kafka.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
    };
    let outcomes = run_clients(&target, &selected_clients());
    assert!(!outcomes.is_empty() || !in_ci(), "no client ran");
    if outcomes.iter().any(|outcome| outcome.result.is_err()) || keep_reports() {
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    assert_all_passed("Apache Kafka", &outcomes);
}
