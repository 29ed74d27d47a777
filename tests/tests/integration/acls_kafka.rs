//! Scenario: the steps of `acls_sluice.rs` (AclCommand and Kafka's Java producer: WRITE allows,
//! its absence is TOPIC_AUTHORIZATION_FAILED, a prefixed ALLOW covers the prefix, a DENY wins)
//! on Apache Kafka with its `StandardAuthorizer`, over SASL_PLAINTEXT with PLAIN users, with the
//! same expectations: what the Sluice scenario checks is what Kafka does.
//!
//! Without java, or without the jars (`bash scripts/kafka/fetch-kafka.sh`), the test prints
//! `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::kafka::ApacheKafka;
use sluice_tests::tools::require;

use super::acls_sluice::{Tools, scenario};
use sluice_tests::kafka_tools;

/// The client listener (named PLAINTEXT in the harness) speaks SASL_PLAINTEXT with PLAIN users;
/// the controller listener stays plaintext, so the broker's own controller requests come as
/// ANONYMOUS, which is therefore a super user beside admin (no client can be ANONYMOUS here).
const BROKER_SETTINGS: [(&str, &str); 7] = [
    (
        "listener.security.protocol.map",
        "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
    ),
    ("sasl.enabled.mechanisms", "PLAIN"),
    ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
    (
        "listener.name.plaintext.plain.sasl.jaas.config",
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
         user_alice=\"alice-secret\" user_bob=\"bob-secret\";",
    ),
    (
        "authorizer.class.name",
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    ),
    ("super.users", "User:admin;User:ANONYMOUS"),
    ("allow.everyone.if.no.acl.found", "false"),
];

#[test]
fn kafkas_acl_command_and_producer_on_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("acls_kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let Some(lib) = kafka_tools::jars("acls_kafka") else {
        return;
    };
    let kafka = ApacheKafka::start_with(&BROKER_SETTINGS).unwrap();
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-acls-kafka-")
        .tempdir()
        .unwrap();
    let tools = Tools {
        lib,
        bootstrap: kafka.bootstrap(),
        work_dir: work_dir.path(),
        mechanism: "PLAIN",
    };
    let failures = scenario(&tools);
    let log = std::fs::read_to_string(kafka.data_dir().join("kafka.out")).unwrap_or_default();
    let tail: String = log
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}\nKafka's output:\n{tail}",
        failures.len(),
        failures.join("\n\n")
    );
}
