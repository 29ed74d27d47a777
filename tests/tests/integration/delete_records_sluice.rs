//! Scenario: the official Java client's `Admin.deleteRecords` against a Sluice agent whose bucket is
//! a loopback S3-API server (docs/testing.md, "DeleteRecords").
//!
//! `dev.sluice.e2e.DeleteRecords` produces 100 records to a one-partition topic in batches of
//! several records, deletes before offset 40, and reports what the client sees: the low watermark
//! Admin answers, `beginningOffsets`, the first record a consumer reads from the beginning (the
//! batch holding 40 most likely starts before it, and the client skips what precedes 40), the exception for an offset past the end,
//! and a delete at -1 (the high watermark). Without java or maven the test prints `SKIPPED` and
//! passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_engine::store::S3TestServer;
use sluice_tests::clients::{ClientKind, clients_dir};
use sluice_tests::process::{ChildGuard, log_tail};
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{loud, require};

const DELETE_RECORDS_KEY: i16 = 21;
const RECORDS: u64 = 100;
const DELETE_BEFORE: u64 = 40;
/// Each client call's own limit; the process gets this plus a JVM's start and exit.
const TIMEOUT_S: u64 = 60;

#[test]
fn java_admin_delete_records_moves_the_beginning_offset() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("delete_records_sluice", &ClientKind::Java.tools()) {
        return;
    }
    let store = S3TestServer::start().unwrap();
    let agent = SluiceAgent::start(&store, "delete-records").unwrap();
    let advertised = agent.advertised_apis().unwrap();
    assert!(
        advertised
            .iter()
            .any(|api| api.api_key == DELETE_RECORDS_KEY && api.version_max >= 2),
        "the agent does not advertise DeleteRecords v0-2: {advertised:?}"
    );
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-delete-records-")
        .tempdir()
        .unwrap();
    ClientKind::Java.build(work_dir.path()).unwrap();

    let report = work_dir.path().join("delete-records.jsonl");
    let log = work_dir.path().join("delete-records.log");
    let java = clients_dir().join("java");
    let mut command = Command::new("java");
    command
        .arg("-Xmx256m")
        .arg("-XX:+UseSerialGC")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(format!(
            "{}:{}/*",
            java.join("target/classes").display(),
            java.join("target/lib").display()
        ))
        .arg("dev.sluice.e2e.DeleteRecords")
        .args(["--bootstrap", &agent.bootstrap()])
        .args(["--topic", "ledger"])
        .args(["--records", &RECORDS.to_string()])
        .args(["--delete-before", &DELETE_BEFORE.to_string()])
        .args(["--timeout-s", &TIMEOUT_S.to_string()])
        .arg("--report")
        .arg(&report);
    let mut client = ChildGuard::spawn("java DeleteRecords", &mut command, &log).unwrap();
    let status = client
        .wait_with_timeout(Duration::from_secs(4 * TIMEOUT_S))
        .unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let kind = |name: &str| {
        lines
            .iter()
            .find(|line| line["kind"] == name)
            .cloned()
            .unwrap_or_else(|| {
                let agent_log = agent.log_tail();
                panic!(
                    "no {name:?} line (client {status}); report {lines:?}\nclient log:\n{}\nagent log:\n{agent_log}",
                    log_tail(&log)
                )
            })
    };
    assert!(
        status.success(),
        "client {status}: {}\n{}",
        kind("done"),
        log_tail(&log)
    );

    let deleted = kind("deleted");
    let offsets = kind("offsets");
    let first = kind("first");
    let past_end = kind("past_end");
    let to_end = kind("to_end");
    loud(&format!(
        "sluice: java Admin.deleteRecords {deleted} {offsets} {first} {past_end} {to_end}"
    ));
    assert_eq!(deleted["low_watermark"], DELETE_BEFORE);
    assert_eq!(offsets["beginning"], DELETE_BEFORE);
    assert_eq!(offsets["end"], RECORDS);
    assert_eq!(first["offset"], DELETE_BEFORE);
    assert_eq!(past_end["error"], "OffsetOutOfRangeException");
    assert_eq!(to_end["low_watermark"], RECORDS);
    assert_eq!(to_end["beginning"], RECORDS);
}
