//! Scenario: every client × every codec round trip against Apache Kafka 4.x.
//!
//! This validates the harness itself — clients, generator, reports, verification — against the
//! reference broker, so that when the same matrix fails against Sluice the fault is Sluice's.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::generator::RecordGenerator;
use sluice_tests::kafka::ApacheKafka;
use sluice_tests::matrix;
use sluice_tests::report::Report;
use sluice_tests::tools::{loud, require};
use sluice_tests::verify::{Expectation, verify};

#[test]
fn every_client_and_codec_round_trips_through_apache_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("client matrix on Apache Kafka", &ApacheKafka::TOOLS) {
        return;
    }
    let kafka = ApacheKafka::start().unwrap();
    let records = matrix::records_per_client(matrix::KAFKA_RECORDS_PER_CLIENT_DEFAULT);
    loud(&format!(
        "Apache Kafka on {} (pid {}), {} records per client",
        kafka.bootstrap(),
        kafka.pid(),
        records
    ));
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-matrix-")
        .tempdir()
        .unwrap();
    let cells = matrix::run("kafka", &kafka.bootstrap(), records, work_dir.path());
    assert!(
        !cells.is_empty() || !sluice_tests::tools::in_ci(),
        "no client ran"
    );
    matrix::assert_all_passed("Apache Kafka", &cells);

    // The check is not vacuous: the same reports, held against a different seed, must fail.
    for cell in cells.iter().filter(|cell| cell.report.is_some()) {
        let (Some(generator), Some(path)) = (cell.generator, cell.report.as_ref()) else {
            continue;
        };
        let report = Report::read(path).unwrap();
        let wrong = RecordGenerator {
            seed: generator.seed + 1,
            ..generator
        };
        let expectation = Expectation::ExactlyOnce {
            records: cell.records,
        };
        assert!(
            verify(&wrong, &report.acks, &report.records, expectation).is_err(),
            "{} / {}: a report verified against the wrong seed",
            cell.client.name(),
            cell.codec.name()
        );
    }
}
