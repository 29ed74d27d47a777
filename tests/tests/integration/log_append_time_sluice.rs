//! Scenario: real clients on a topic with `message.timestamp.type=LogAppendTime`, against a Sluice
//! agent whose bucket is a loopback S3-API server.
//!
//! kafka-python and librdkafka (confluent-kafka) each create such a topic with their admin API,
//! produce lz4 batches whose CreateTime is in 2001, and read them back: every record must come back
//! with timestamp type LogAppendTime and a timestamp taken by the agent during the produce, the same
//! one the producer was told in its acknowledgement (`tests/clients/python/log_append_time_check.py`).
//! A missing Python package skips the test locally and fails it with `CI=true` (`tools::require`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use sluice_engine::store::S3TestServer;
use sluice_tests::clients::clients_dir;
use sluice_tests::process::run_to_completion;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{Tool, loud, python, require};

/// Seconds each client gets for its produce and its consume.
const PHASE_TIMEOUT_S: u64 = 60;

#[test]
fn real_clients_read_the_agents_append_time() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let tools = [
        Tool::Python,
        Tool::PythonModule("kafka", "kafka-python"),
        Tool::PythonModule("lz4", "lz4"),
        Tool::PythonModule("confluent_kafka", "confluent-kafka"),
    ];
    if !require("log_append_time_sluice", &tools) {
        return;
    }
    let store = S3TestServer::start().unwrap();
    let agent = SluiceAgent::start(&store, "log-append-time").unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-log-append-time-")
        .tempdir()
        .unwrap();
    for client in ["kafka-python", "librdkafka"] {
        let output = work_dir.path().join(format!("{client}.out"));
        let log = work_dir.path().join(format!("{client}.log"));
        let mut command = Command::new(python());
        command
            .arg(clients_dir().join("python/log_append_time_check.py"))
            .args(["--bootstrap", &agent.bootstrap()])
            .args(["--client", client])
            .args(["--topic", &format!("stamped-{client}")])
            .args(["--codec", "lz4"])
            .args(["--timeout-s", &PHASE_TIMEOUT_S.to_string()]);
        let result = run_to_completion(
            client,
            &mut command,
            &output,
            &log,
            Duration::from_secs(2 * PHASE_TIMEOUT_S + 30),
        );
        let verdict = std::fs::read_to_string(&output).unwrap_or_default();
        if result.is_err() || !verdict.starts_with("ok") {
            loud(&format!(
                "last lines of the agent's log {}:\n{}",
                agent.log().display(),
                agent.log_tail()
            ));
        }
        if let Err(error) = result {
            panic!("{client}: {error}\n{verdict}");
        }
        assert!(verdict.starts_with("ok"), "{client}: {verdict}");
        loud(&format!("sluice: log append time, {}", verdict.trim()));
    }
}
