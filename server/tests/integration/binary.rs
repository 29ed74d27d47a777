//! The `sluice` binary end to end: two network cores on one port, and the startup errors a user
//! sees (locked-memory budget, unknown config key, `dump` output and errors), and `sluice config`.
//!
//! The agent here runs in its own process with this machine's default shape (two network
//! executors plus the metadata executor), with `--io-memory-bytes 65536` so that its locked
//! memory stays far below the 8 MiB limit whatever else runs.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Kills the agent process when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn online_cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

#[test]
fn serves_from_every_network_core_on_one_port() {
    let cpus = if online_cpu_count() >= 2 { "0,1" } else { "0" };
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(SLUICE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            cpus,
            "--io-memory-bytes",
            "65536",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("sluice: listening on ")
        .unwrap()
        .parse()
        .unwrap();

    // Many connections: the kernel spreads them over both listeners; each must be served.
    let mut clients: Vec<common::RawClient> =
        (0..32).map(|_| common::RawClient::connect(addr)).collect();
    for client in &mut clients {
        let versions: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 2, &ApiVersionsRequest::default());
        assert_eq!(versions.error_code, 0);
        let metadata: MetadataResponse =
            client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(metadata.brokers[0].port, i32::from(addr.port()));
    }

    // SIGTERM stops the agent cleanly: open connections are closed, exit code 0.
    let pid = libc::pid_t::try_from(running.0.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    for client in &mut clients {
        assert!(client.is_closed_by_agent());
    }
    let mut running = running;
    let status = running.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_locked_memory_budget_that_does_not_fit_is_refused_with_advice() {
    // Under a limit of its own, so that the test also runs where RLIMIT_MEMLOCK is unlimited (as
    // root in many containers) instead of skipping: lowering the soft limit needs no privilege.
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new("sh")
        .args(["-c", "ulimit -S -l 64 && exec \"$0\" \"$@\"", SLUICE])
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--io-memory-bytes",
            "1073741824",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "RLIMIT_MEMLOCK",
        "ulimit -l",
        "LimitMEMLOCK=",
        "--ulimit memlock=",
        "io_memory_bytes",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in: {stderr}"
        );
    }
}

#[test]
fn a_store_that_cannot_be_opened_is_a_clear_startup_error() {
    let data_dir = tempfile::tempdir().unwrap();
    let serve = |store: &str| {
        Command::new(SLUICE)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--cpus",
                "0",
                "--store",
                store,
            ])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("SLUICE_LOG", "off")
            .output()
            .unwrap()
    };
    let output = serve("ftp://bucket/x");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ftp"), "{stderr}");
    // Nothing listens on port 1: the create-only check at start (the first store call) fails,
    // the agent says so, naming the store's error, and exits.
    let output = serve(
        "s3://b/p?endpoint=http://127.0.0.1:1&region=us-east-1&path_style=true&allow_http=true\
         &access_key_id=k&secret_access_key=s&retries_max=0&connect_timeout_ms=500",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("create-only check of the object store failed")
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("sluice.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nflush_intervall_ms = 5\n").unwrap();
    let output = Command::new(SLUICE)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flush_intervall_ms"), "{stderr}");
}

/// The line of `key` in `sluice config`'s output, its spacing collapsed.
fn config_line(text: &str, key: &str) -> String {
    text.lines()
        .find(|line| line.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn config_prints_each_value_with_its_source_and_redacts_secrets() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("sluice.toml");
    std::fs::write(
        &path,
        "flush_interval_ms = 20\nzone = \"eu-1a\"\n\
         metadata = \"postgres://sluice:hunter2@db:5432/sluice\"\n",
    )
    .unwrap();
    let output = Command::new(SLUICE)
        .args(["config", "--config"])
        .arg(&path)
        .args(["--zone", "eu-1b"])
        .env("SLUICE_FLUSH_INTERVAL_MS", "30")
        .env(
            "SLUICE_STORE",
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&secret_access_key=S3CRET",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        config_line(&stdout, "flush_interval_ms"),
        "flush_interval_ms = 30 # env SLUICE_FLUSH_INTERVAL_MS"
    );
    assert_eq!(
        config_line(&stdout, "zone"),
        "zone = \"eu-1b\" # flag --zone"
    );
    assert_eq!(
        config_line(&stdout, "metadata"),
        format!(
            "metadata = \"postgres://sluice:<redacted>@db:5432/sluice\" # file {}",
            path.display()
        )
    );
    assert_eq!(
        config_line(&stdout, "store"),
        "store = \"s3://bucket/prefix?endpoint=http://127.0.0.1:9000&secret_access_key=<redacted>\" \
         # env SLUICE_STORE"
    );
    assert_eq!(
        config_line(&stdout, "flush_bytes_max"),
        "flush_bytes_max = 8388608 # default"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("S3CRET"),
        "{stdout}"
    );

    // An invalid configuration: the same error as `sluice serve`, exit code 1, nothing printed.
    let output = Command::new(SLUICE)
        .args(["config", "--config"])
        .arg(&path)
        .args(["--put-hedge-percentile", "100"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("put_hedge_percentile"), "{stderr}");
}

#[test]
fn dump_prints_an_object_as_json_and_names_a_corrupt_one() {
    use sluice_engine::batch::{BatchBuilder, validate_batch};
    use sluice_engine::format::{EntryHeader, EntryKind, ObjectBuilder};
    use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

    let header = EntryHeader {
        seq: LogSeq(5),
        writer_epoch: 2,
        prev_seq: Some(LogSeq(4)),
        entry_nonce: 1,
        kind: EntryKind::Data,
        created_at_ms: 1_700_000_000_000,
    };
    let mut builder = ObjectBuilder::new(header);
    let batch = BatchBuilder::new(1_700_000_000_000)
        .record(0, Some(b"key"), b"value")
        .encode();
    builder
        .push_batch(
            TopicPartition::new(TopicId([1; 16]), 0),
            &validate_batch(&batch).unwrap(),
            batch,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000000000000000005");
    std::fs::write(&path, builder.finish().unwrap().to_contiguous()).unwrap();

    let output = Command::new(SLUICE)
        .arg("dump")
        .arg(&path)
        .arg("--verify")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["batches_verified"],
        serde_json::Value::Bool(true),
        "{json}"
    );

    let mut corrupt = std::fs::read(&path).unwrap();
    corrupt.truncate(corrupt.len() - 3);
    std::fs::write(&path, corrupt).unwrap();
    let output = Command::new(SLUICE)
        .arg("dump")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("00000000000000000005"));
}

/// `--listeners` and friends from the command line: the binary prints every listener, and
/// Metadata through each names that listener's advertised address; mixing `--listeners` with
/// `--tls-listen` stops the start with the reason.
#[test]
fn named_listeners_from_flags_are_printed_and_served() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(SLUICE)
        .args([
            "serve",
            "--listeners",
            "INTERNAL://127.0.0.1:0,TOOLS://127.0.0.1:0",
            "--advertised-listeners",
            "TOOLS://localhost:0",
            "--listener-security-protocol-map",
            "INTERNAL:PLAINTEXT,TOOLS:PLAINTEXT",
            "--cpus",
            "0",
            "--io-memory-bytes",
            "65536",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut line = || lines.next().unwrap().unwrap();
    let first: SocketAddr = line()
        .strip_prefix("sluice: listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let text = line();
        let (name, address) = text
            .strip_prefix("sluice: listener ")
            .unwrap()
            .split_once(" on ")
            .unwrap();
        listeners.push((name.to_owned(), address.parse::<SocketAddr>().unwrap()));
    }
    assert_eq!(listeners[0], ("INTERNAL".to_owned(), first));
    assert_eq!(listeners[1].0, "TOOLS");
    for ((_, address), host) in listeners.iter().zip(["127.0.0.1", "localhost"]) {
        let mut client = common::RawClient::connect(*address);
        let metadata: MetadataResponse =
            client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(
            (metadata.brokers[0].host.as_str(), metadata.brokers[0].port),
            (host, i32::from(address.port()))
        );
    }

    let mixed = Command::new(SLUICE)
        .args([
            "serve",
            "--listeners",
            "PLAINTEXT://127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        stderr.contains("listeners") && stderr.contains("tls_listen is set too"),
        "{stderr}"
    );
}
