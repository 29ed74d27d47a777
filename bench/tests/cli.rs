//! The `sluice-bench` binary as CI runs it: a requested target that cannot start is a row in the
//! report (never dropped) and a non-zero exit. No broker is started, so this runs in seconds.
//!
//! It also makes `cargo test` build the binary itself (tests get `CARGO_BIN_EXE_*`), next to
//! the `sluice` and `sluice-loadgen` binaries the other crates' tests build: `.ci/run` runs the
//! smoke benchmark with those debug binaries instead of compiling a release build.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;

#[test]
fn a_target_that_cannot_start_is_reported_and_fails_the_run() {
    let out = tempfile::tempdir().unwrap();
    // The harness's temporary files (its work directory, the loopback S3 server's) go here, and
    // must be gone when it exits, failure or not.
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .env("TMPDIR", scratch.path())
        .args(["--scenario", "fraud", "--quick", "--targets", "sluice"])
        .args(["--sluice-bin", "/nonexistent/sluice", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("FAILED: sluice"), "{stderr}");
    assert!(stdout.contains("| sluice | **not installed**"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["rows"][0]["target"], "sluice");
    assert_eq!(report["rows"][0]["status"]["state"], "not_installed");
    assert!(out.path().join("report.md").exists());
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

#[test]
fn unknown_scenarios_and_targets_are_refused() {
    let out = tempfile::tempdir().unwrap();
    for args in [
        ["--scenario", "nope", "--targets", "sluice"],
        ["--scenario", "fraud", "--targets", "redpanda"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
            .args(args)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} accepted");
    }
}

#[test]
fn a_soak_whose_agent_cannot_start_is_reported_and_fails_the_run() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["--scenario", "soak", "--quick", "--targets", "sluice,kafka"])
        .args(["--sluice-bin", "/nonexistent/sluice", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("FAILED: sluice"), "{stderr}");
    assert!(stderr.contains("FAILED: kafka"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["scenario"], "soak");
    assert_eq!(report["targets"][0]["status"]["state"], "not_installed");
    assert_eq!(report["targets"][1]["status"]["state"], "not_implemented");
    assert!(out.path().join("report.md").exists());
    assert!(out.path().join("soak-rss.svg").exists());
}

#[test]
fn a_chaos_campaign_whose_agent_cannot_start_is_reported_and_fails_the_run() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args([
            "--scenario",
            "chaos",
            "--quick",
            "--targets",
            "sluice,kafka",
        ])
        .args(["--seed", "42", "--kills", "3"])
        .args(["--sluice-bin", "/nonexistent/sluice", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("seed 42"), "{stderr}");
    assert!(stderr.contains("FAILED: sluice"), "{stderr}");
    assert!(stderr.contains("FAILED: kafka"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["scenario"], "chaos");
    assert_eq!(report["seed"], 42);
    assert_eq!(report["settings"]["kills"], 3);
    assert_eq!(report["targets"][0]["status"]["state"], "not_installed");
    assert_eq!(report["targets"][1]["status"]["state"], "not_implemented");
    assert!(out.path().join("report.md").exists());
}

#[test]
fn tls_files_writes_what_a_sasl_ssl_listener_and_its_clients_need() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tls");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["tls-files", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let cert = read("cert.pem");
    let key = read("key.pem");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert_eq!(read("key-and-cert.pem"), format!("{key}{cert}"));
    assert_eq!(read("users.toml"), "[users]\nbench = \"bench-secret\"\n");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("users.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the agent warns about a users file others may read"
    );
    assert!(read("client.properties").contains("security.protocol=SASL_SSL"));
    // The load generator's client properties, one a line, naming the certificate just written.
    let properties: Vec<&str> = stdout.lines().collect();
    assert!(
        properties.contains(&"security.protocol=SASL_SSL"),
        "{stdout}"
    );
    assert!(properties.contains(&"sasl.username=bench"), "{stdout}");
    let ca = format!(
        "ssl.ca.location={}",
        dir.canonicalize().unwrap().join("cert.pem").display()
    );
    assert!(properties.contains(&ca.as_str()), "{stdout}");
    let refused = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .arg("tls-files")
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "tls-files without --out accepted"
    );
}
