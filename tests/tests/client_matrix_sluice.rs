//! Scenario: every client × every codec round trip against a Sluice agent whose bucket is a
//! loopback S3-API server.
//!
//! Until the agent advertises every API the clients use (ApiVersions), this test prints
//! `SKIPPED: sluice does not advertise ... yet` past the output capture and returns: a skip that is
//! seen, and that turns into a real run by itself the day the APIs are advertised.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_engine::store::S3TestServer;
use sluice_tests::api_versions::{MATRIX_APIS, missing};
use sluice_tests::matrix;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::loud;

#[test]
fn every_client_and_codec_round_trips_through_sluice() {
    let store = S3TestServer::start().unwrap();
    let agent = SluiceAgent::start(&store, "matrix").unwrap();
    let advertised = agent.advertised_apis().unwrap();
    let absent = missing(&advertised, &MATRIX_APIS);
    if !absent.is_empty() {
        loud(&format!(
            "SKIPPED: sluice does not advertise {} yet (client_matrix_sluice: the matrix needs {})",
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
