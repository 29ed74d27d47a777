//! Real consumers: kafka-python (and librdkafka, through confluent-kafka) produces 1,000 records, then a `KafkaConsumer` assigned to every
//! partition (no group) reads them back from the beginning through Fetch, and every record must
//! come back at its offset with the same key and value.
//!
//! Like `kafka_python.rs`: each is skipped with a message when the Python interpreter
//! (`$SLUICE_TEST_PYTHON`, else `python3`) lacks `kafka-python` or `confluent-kafka`, and fails
//! instead under `CI=true` (`common::python_with`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test interpreter, if it can import `module`.
#[test]
fn kafka_python_consumes_what_it_produced() {
    let Some(python) = common::python_with(
        "kafka_python_consumes_what_it_produced",
        "kafka",
        "kafka-python",
    ) else {
        return;
    };
    run_round_trip(&python, "consume_check.py");
}

#[test]
fn librdkafka_consumes_what_it_produced() {
    let Some(python) = common::python_with(
        "librdkafka_consumes_what_it_produced",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    run_round_trip(&python, "rdkafka_consume_check.py");
}

/// Runs `tests/python/<script>` against a fresh agent with a 3-partition topic; it must print
/// "ok" within 90 s.
fn run_round_trip(python: &str, script: &str) {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    agent.create_topic("roundtrip", 3);
    let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(&script)
        .args([&agent.addr().to_string(), "roundtrip", "3", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{script} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
}
