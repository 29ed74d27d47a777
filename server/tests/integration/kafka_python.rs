//! A real client: kafka-python's admin client and consumer read metadata, and its producer
//! produces 1,000 records with acks=all.
//!
//! Skipped, with a message saying how to enable it, when no Python interpreter with `kafka-python`
//! is found, and failed instead under `CI=true` (`common::python_with`; `.ci/run` installs it).
//! The interpreter is `$SLUICE_TEST_PYTHON` if set, else `python3`;
//! install the client in a virtualenv so the test stays test-only:
//! `python3 -m venv .venv-test && .venv-test/bin/pip install -r server/tests/python/requirements.txt`
//! then run with `SLUICE_TEST_PYTHON=.venv-test/bin/python`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::process::Command;
use std::time::Duration;

#[test]
fn kafka_python_admin_and_consumer_get_metadata() {
    let Some(python) = common::python_with(
        "kafka_python_admin_and_consumer_get_metadata",
        "kafka",
        "kafka-python",
    ) else {
        return;
    };
    let agent = common::start_agent(|_| {});
    agent.create_topic("orders", 3);
    run_script(
        &python,
        "metadata_check.py",
        &[&agent.addr().to_string(), "orders", "3"],
    );
}

#[test]
fn kafka_python_produces_1000_records_with_contiguous_offsets() {
    let Some(python) = common::python_with(
        "kafka_python_produces_1000_records_with_contiguous_offsets",
        "kafka",
        "kafka-python",
    ) else {
        return;
    };
    let agent = common::start_agent(|_| {});
    agent.create_topic("clicks", 3);
    run_script(
        &python,
        "produce_check.py",
        &[&agent.addr().to_string(), "clicks", "3", "1000"],
    );
}

/// Runs `tests/python/<script>` with `args`; it must print "ok" within 60 s.
fn run_script(python: &str, script: &str, args: &[&str]) {
    let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client retries forever on some failures; bound the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kafka-python did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kafka-python failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
}
