//! Scenario: a Kafka Streams application restores its store from the compacted changelog it
//! created, against Apache Kafka 4.x (docs/testing.md, "Kafka Streams").
//!
//! This validates the Streams harness against the reference broker: the driver, the table the seed
//! implies, the read-back of the changelog and the output, and the compaction measurement — Kafka's
//! log cleaner is made to run within the scenario (a changelog that rolls a segment every 100 ms and
//! is cleanable at 1% dirty, a cleaner that looks every 250 ms), and the test demands that it did, so
//! the restore really reads a compacted log with tombstones removed. When the same scenario fails
//! against Sluice, the fault is Sluice's.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::clients::ClientKind;
use sluice_tests::groups::scenario::keep_reports;
use sluice_tests::kafka::ApacheKafka;
use sluice_tests::streams::{self, Scenario};
use sluice_tests::tools::{loud, require};

/// The broker's cleaner looks for dirty logs this often (Kafka's default is 15 s).
const CLEANER_BACKOFF_MS: &str = "250";
const AWAIT_COMPACTION_S: u64 = 30;

#[test]
fn kafka_streams_restores_its_store_from_a_compacted_changelog_on_apache_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("streams_kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-streams-kafka-")
        .tempdir()
        .unwrap();
    ClientKind::Java.build(work_dir.path()).unwrap();
    let kafka = ApacheKafka::start_with(&[("log.cleaner.backoff.ms", CLEANER_BACKOFF_MS)]).unwrap();
    let scenario = Scenario {
        target: "kafka".to_string(),
        bootstrap: kafka.bootstrap(),
        work_dir: work_dir.path().to_path_buf(),
        records: streams::records(),
        changelog_configs: [
            ("delete.retention.ms", "1000"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
        .collect(),
        await_compaction_s: AWAIT_COMPACTION_S,
    };
    let outcome = match scenario.run() {
        Ok(outcome) => outcome,
        Err(error) => panic!(
            "{error}\nreports and the broker's log kept in {}",
            keep(work_dir, &kafka).display()
        ),
    };
    let mut failures = streams::check(&scenario, &outcome);
    if !outcome.changelog.compacted() {
        failures.push(format!(
            "Kafka did not compact the changelog within {AWAIT_COMPACTION_S} s ({:?}): the scenario \
             no longer shows a restore from a compacted log",
            outcome.compaction_wait
        ));
    }
    loud(&streams::summary(&scenario, &outcome));
    if !failures.is_empty() {
        panic!(
            "Kafka Streams on Apache Kafka:\n- {}\nreports and the broker's log kept in {}",
            failures.join("\n- "),
            keep(work_dir, &kafka).display()
        );
    }
    if keep_reports() {
        loud(&format!(
            "reports kept in {}",
            keep(work_dir, &kafka).display()
        ));
    }
}

/// Keeps the work directory, with a copy of the broker's log (its own directory goes with it).
fn keep(work_dir: tempfile::TempDir, kafka: &ApacheKafka) -> std::path::PathBuf {
    let _ = std::fs::copy(
        kafka.data_dir().join("kafka.out"),
        work_dir.path().join("kafka.out"),
    );
    work_dir.keep()
}
