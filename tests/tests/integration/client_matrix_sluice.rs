//! Scenario: every client × every codec round trip against a Sluice agent whose bucket is a
//! loopback S3-API server.
//!
//! An agent that does not advertise every API the clients use (ApiVersions) fails the test under
//! `CI=true`; locally it prints `SKIPPED: sluice does not advertise ...` past the output capture and
//! returns (`tools::skip_or_fail`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_engine::store::S3TestServer;
use sluice_tests::api_versions::{MATRIX_APIS, missing};
use sluice_tests::matrix;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{loud, skip_or_fail};

#[test]
fn every_client_and_codec_round_trips_through_sluice() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let store = S3TestServer::start().unwrap();
    let agent = SluiceAgent::start(&store, "matrix").unwrap();
    let advertised = agent.advertised_apis().unwrap();
    let absent = missing(&advertised, &MATRIX_APIS);
    if !absent.is_empty() {
        skip_or_fail(&format!(
            "sluice does not advertise {} (client_matrix_sluice: the matrix needs {})",
            absent.join(", "),
            MATRIX_APIS
                .iter()
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return;
    }
    let records = matrix::records_per_client(matrix::SLUICE_RECORDS_PER_CLIENT_DEFAULT);
    loud(&format!(
        "Sluice on {}, {} records per client",
        agent.bootstrap(),
        records
    ));
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-matrix-")
        .tempdir()
        .unwrap();
    let cells = matrix::run("sluice", &agent.bootstrap(), records, work_dir.path());
    if cells.iter().any(|cell| cell.failure.is_some()) {
        loud(&format!(
            "last lines of the agent's log {}:\n{}",
            agent.log().display(),
            agent.log_tail()
        ));
        // Keep the reports for a post-mortem.
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    matrix::assert_all_passed("Sluice", &cells);
}
