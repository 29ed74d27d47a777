//! Scenario: a real-client round trip through Sluice on each object-store server users run —
//! SeaweedFS (S3-compatible), fake-gcs-server (GCS) and Azurite (Azure Blob) — and the agent's
//! refusal of a store that cannot do create-only writes.
//!
//! The round trip is franz-go producing and consuming 20,000 records over 8 partitions, a fifth
//! with each codec (none, gzip, snappy, lz4, zstd), verified exactly once at their acknowledged
//! offsets. Every client on `s3s-fs` is `client_matrix_sluice`'s job; this proves the other
//! servers carry the same path (flush PUTs, the metadata log's create-only writes, ranged reads).
//! A server that is not installed skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use sluice_tests::api_versions::{MATRIX_APIS, missing};
use sluice_tests::clients::ClientKind;
use sluice_tests::matrix;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::stores::{FakeGcsServer, StoreServerKind, start_or_skip};
use sluice_tests::tools::{loud, require, skip_or_fail};

/// Records per server across the five codecs (`SLUICE_E2E_RECORDS` overrides it).
const RECORDS_PER_SERVER_DEFAULT: u64 = 20_000;

#[test]
fn franz_go_round_trips_through_sluice_on_seaweedfs() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    round_trip_on(StoreServerKind::SeaweedFs);
}

#[test]
fn franz_go_round_trips_through_sluice_on_fake_gcs_server() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    round_trip_on(StoreServerKind::FakeGcs);
}

#[test]
fn franz_go_round_trips_through_sluice_on_azurite() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    round_trip_on(StoreServerKind::Azurite);
}

fn round_trip_on(kind: StoreServerKind) {
    let client = ClientKind::Go;
    let test = format!("round trip on {}", kind.name());
    if !require(&test, &client.tools()) {
        return;
    }
    let Some(store) = start_or_skip(kind, &test) else {
        return;
    };
    let agent = SluiceAgent::start(&*store, "round-trip").unwrap();
    let absent = missing(&agent.advertised_apis().unwrap(), &MATRIX_APIS);
    if !absent.is_empty() {
        skip_or_fail(&format!(
            "{test}: sluice does not advertise {}",
            absent.join(", ")
        ));
        return;
    }
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-store-")
        .tempdir()
        .unwrap();
    let records = matrix::records_per_client(RECORDS_PER_SERVER_DEFAULT);
    let cells = matrix::run_clients(
        &format!("sluice on {}", kind.name()),
        &agent.bootstrap(),
        &[client],
        records,
        work_dir.path(),
    );
    if cells.iter().any(|cell| cell.failure.is_some()) {
        loud(&format!(
            "last lines of the agent's log {}:\n{}",
            agent.log().display(),
            agent.log_tail()
        ));
        loud(&format!("reports kept in {}", work_dir.keep().display()));
    }
    assert_eq!(cells.len(), 5, "one run per codec");
    matrix::assert_all_passed(&format!("Sluice on {}", kind.name()), &cells);
}

/// fake-gcs-server without the upload shim cannot do a create-only write (it refuses the XML
/// API's upload): the agent must refuse to start on it, saying why, rather than run its metadata
/// log on a store that cannot fence a second writer.
#[test]
fn the_agent_refuses_a_store_without_create_only_writes() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let Some(binary) = FakeGcsServer::binary() else {
        sluice_tests::stores::skip_not_installed("create-only refusal", "fake-gcs-server");
        return;
    };
    let server = FakeGcsServer::start(&binary).unwrap();
    // The agent runs on its own here, on port 0, and the test waits for its exit: a harness
    // that waits for a chosen port to accept could take another process's listener on that
    // port (or the agent's own socket, bound before the store is checked) for a started agent.
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join("agent.log");
    let mut child = std::process::Command::new(sluice_tests::sluice::sluice_binary().unwrap())
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(server.raw_store_url("refused"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the agent did not exit within 120 s on a store without create-only writes");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let error = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "the agent must exit with a failure: {status:?}"
    );
    assert!(
        error.contains("create-only check of the object store failed")
            && error.contains("invalid uploadType"),
        "the agent exits naming the failed check and the store's answer:\n{error}"
    );
}
