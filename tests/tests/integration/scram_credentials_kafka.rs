//! Scenario: the steps of `scram_credentials_sluice.rs` (kafka-configs adds a SCRAM-SHA-256
//! credential for alice, refuses too few iterations, describes it and deletes it; Kafka's Java
//! producer logs in as alice in between, and fails to after the deletion) on Apache Kafka, over
//! SASL_PLAINTEXT with admin a PLAIN user of the JAAS config, with the same expectations: what the
//! Sluice scenario checks is what Kafka does. The restart step is Sluice's only (a no-op here).
//!
//! Without java, or without the jars (`bash scripts/kafka/fetch-kafka.sh`), the test prints
//! `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::kafka::ApacheKafka;
use sluice_tests::kafka_tools;
use sluice_tests::tools::require;

use super::scram_credentials_sluice::scenario;

/// The client listener (named PLAINTEXT in the harness) speaks SASL_PLAINTEXT with PLAIN (admin,
/// in the JAAS config) and SCRAM-SHA-256 (credentials in the metadata log); the controller
/// listener stays plaintext.
const BROKER_SETTINGS: [(&str, &str); 5] = [
    (
        "listener.security.protocol.map",
        "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
    ),
    ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
    ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
    (
        "listener.name.plaintext.plain.sasl.jaas.config",
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\";",
    ),
    (
        "listener.name.plaintext.scram-sha-256.sasl.jaas.config",
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    ),
];

#[test]
fn kafka_configs_scram_credentials_log_alice_in_and_out_on_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("scram_credentials_kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let Some(lib) = kafka_tools::jars("scram_credentials_kafka") else {
        return;
    };
    let kafka = ApacheKafka::start_with(&BROKER_SETTINGS).unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-scram-kafka-")
        .tempdir()
        .unwrap();
    let failures = scenario(&lib, &kafka.bootstrap(), work_dir.path(), &mut || {});
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
