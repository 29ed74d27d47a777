//! Scenario: the steps of `quotas_sluice.rs` (kafka-configs sets and describes a client's
//! `producer_byte_rate`; Kafka's ProducerPerformance under that client id stays near it while
//! another client id runs unmetered) on Apache Kafka with the same quota window (3 × 1 s), so the
//! Sluice scenario's expectations are shown to be Kafka's. One difference is expected and
//! asserted: Kafka stores `controller_mutation_rate` (it enforces it), Sluice refuses it.
//!
//! Without java, or without the jars (`bash scripts/kafka/fetch-kafka.sh`), the test prints
//! `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::kafka::ApacheKafka;
use sluice_tests::kafka_tools;
use sluice_tests::tools::require;

use super::quotas_sluice::{Broker, scenario};

#[test]
fn kafka_configs_quota_holds_kafkas_producer_to_its_rate_on_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("quotas_kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let Some(lib) = kafka_tools::jars("quotas_kafka") else {
        return;
    };
    let kafka = ApacheKafka::start_with(&[
        ("quota.window.num", "3"),
        ("quota.window.size.seconds", "1"),
    ])
    .unwrap();
    scenario(&lib, &kafka.bootstrap(), Broker::Kafka);
}
