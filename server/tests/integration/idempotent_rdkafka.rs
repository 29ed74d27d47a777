//! A real idempotent producer: librdkafka (confluent-kafka) with `enable.idempotence=true` calls
//! InitProducerId and sends sequenced batches, 5 in flight; offsets must come out exactly
//! contiguous and every record must read back.
//!
//! Skipped, with a message, when no Python interpreter with `confluent_kafka` is found
//! (`$SLUICE_TEST_PYTHON` if set, else `python3`), and failed instead under `CI=true`
//! (`common::python_with`; `.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn librdkafka_idempotent_producer_gets_contiguous_offsets() {
    let Some(python) = common::python_with(
        "librdkafka_idempotent_producer_gets_contiguous_offsets",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let agent = common::start_agent(|_| {});
    agent.create_topic("idem-rdkafka", 3);
    let script = format!(
        "{}/tests/python/rdkafka_idempotent_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(&python)
        .arg(&script)
        .args([&agent.addr().to_string(), "idem-rdkafka", "3", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // librdkafka retries some failures forever; bound the wait.
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the librdkafka script did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "script failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
}
