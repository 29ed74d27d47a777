//! Scenario: the compacted-topic program of `compacted_topic_sluice.rs` against Apache Kafka 4.4.0,
//! the reference (listed in docs/testing.md): the same 100,000 updates over 1,000 keys,
//! the same `verify` until it passes. What passes here and fails on Sluice is a Sluice bug; what
//! fails here is a bug of the program.
//!
//! Kafka's cleaner needs help to run within a test: the broker checks for work every 100 ms
//! (`log.cleaner.backoff.ms`, 15 s by default), and the topic rolls a segment every 100 ms
//! (`segment.ms`; the active segment is never cleaned) and is cleaned as soon as 1% of it is new
//! (`min.cleanable.dirty.ratio`). Kafka removes a tombstone only on a pass after the one that first
//! saw it, `delete.retention.ms` later, and any pass needs new writes; the `nudge` writes (as on
//! Sluice, [`NUDGE_AFTER`] after the last write) supply them and roll the last segment.
//! Without java or maven the test prints `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::clients::{ClientKind, clients_dir};
use sluice_tests::kafka::ApacheKafka;
use sluice_tests::process::{ChildGuard, log_tail};
use sluice_tests::tools::{loud, require};

const TOPIC: &str = "compacted";
const PARTITIONS: u32 = 3;
const KEYS: u32 = 1000;
const UPDATES: u64 = 100_000;
const SEED: u64 = 20_261_205;
const DELETE_RETENTION_MS: u64 = 1000;
/// Each client call's own limit; the process gets this plus a JVM's start and exit.
const CLIENT_TIMEOUT_S: u64 = 120;
/// From the end of the produce to a passing `verify`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_PAUSE: Duration = Duration::from_millis(250);
/// Since the last write: every tombstone is then past `delete.retention.ms`, with a second to spare.
const NUDGE_AFTER: Duration = Duration::from_millis(DELETE_RETENTION_MS + 1000);
/// Per partition, of about 230 bytes each, as on Sluice.
const NUDGE_RECORDS: u32 = 500;
/// `CompactedTopic`'s exit status when only compaction's work is missing (not an error).
const EXIT_NOT_YET_COMPACTED: i32 = 3;

/// Runs of `dev.sluice.e2e.CompactedTopic`, each with its own report and log in `work_dir`
/// (kept when the test fails: the `verify` reports list every key's last record).
struct Program {
    work_dir: Option<tempfile::TempDir>,
    runs: u32,
}

impl Drop for Program {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(work_dir) = self.work_dir.take()
        {
            loud(&format!("reports kept in {}", work_dir.keep().display()));
        }
    }
}

/// One run: its exit status and the report line of its mode (or its `error` line).
struct Outcome {
    status: ExitStatus,
    line: Value,
    log: PathBuf,
}

impl Program {
    fn run(&mut self, bootstrap: &str, mode: &str, extra: &[&str]) -> Outcome {
        self.runs += 1;
        let work_dir = self.work_dir.as_ref().unwrap().path();
        let report = work_dir.join(format!("{:03}-{mode}.jsonl", self.runs));
        let log = work_dir.join(format!("{:03}-{mode}.log", self.runs));
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
            .arg("dev.sluice.e2e.CompactedTopic")
            .args(["--bootstrap", bootstrap, "--topic", TOPIC, "--mode", mode])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--keys", &KEYS.to_string()])
            .args(["--updates", &UPDATES.to_string()])
            .args(["--seed", &SEED.to_string()])
            .args(["--timeout-s", &CLIENT_TIMEOUT_S.to_string()])
            .arg("--acks")
            .arg(work_dir.join("acks.txt"))
            .arg("--report")
            .arg(&report)
            .args(extra);
        let mut client =
            ChildGuard::spawn(&format!("java CompactedTopic {mode}"), &mut command, &log).unwrap();
        let status = client
            .wait_with_timeout(Duration::from_secs(3 * CLIENT_TIMEOUT_S))
            .unwrap();
        let line = std::fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or(Value::Null);
        Outcome { status, line, log }
    }
}

/// How a topic settled: the passing verdict, the `verify` runs and nudges it took, and how long.
struct Settled {
    verdict: Value,
    attempts: u32,
    nudges: u32,
    elapsed: Duration,
}

/// Runs `verify` until it passes, nudging when it has not passed [`NUDGE_AFTER`] after the last
/// write; fails at once on anything but compaction not being done yet.
fn verify_until_compacted(program: &mut Program, kafka: &ApacheKafka) -> Settled {
    let started = Instant::now();
    let mut last_write = started;
    let mut attempts = 0;
    let mut nudges = 0;
    loop {
        attempts += 1;
        let outcome = program.run(&kafka.bootstrap(), "verify", &[]);
        let not_yet = outcome.status.code() == Some(EXIT_NOT_YET_COMPACTED);
        let verdict = &outcome.line;
        assert!(
            verdict["kind"] == "verify" && (outcome.status.success() || not_yet),
            "verify {} (attempt {attempts}): {verdict}\nclient log:\n{}",
            outcome.status,
            log_tail(&outcome.log)
        );
        assert_eq!(verdict["hard_failures"], 0, "{verdict}");
        if verdict["passed"] == true {
            return Settled {
                verdict: verdict.clone(),
                attempts,
                nudges,
                elapsed: started.elapsed(),
            };
        }
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "not compacted within {SETTLE_TIMEOUT:?} ({attempts} verify runs, {nudges} nudges); \
             last verdict: {verdict}\nbroker log:\n{}",
            log_tail(&kafka.data_dir().join("kafka.out"))
        );
        if last_write.elapsed() >= NUDGE_AFTER {
            let nudged = program.run(
                &kafka.bootstrap(),
                "nudge",
                &["--nudge-records", &NUDGE_RECORDS.to_string()],
            );
            assert!(
                nudged.status.success() && nudged.line["kind"] == "nudged",
                "nudge {}: {}\nclient log:\n{}",
                nudged.status,
                nudged.line,
                log_tail(&nudged.log)
            );
            nudges += 1;
            last_write = Instant::now();
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

fn assert_compacted(verdict: &Value) {
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["acks_checked"], true, "{verdict}");
    assert_eq!(
        verdict["live_keys_ok"],
        u64::from(KEYS - KEYS / 10),
        "{verdict}"
    );
    assert_eq!(verdict["deleted_keys_seen"], 0, "{verdict}");
    let records = verdict["records"].as_u64().unwrap() - verdict["nudges"].as_u64().unwrap();
    assert!(records < UPDATES, "{verdict}");
}

#[test]
fn java_client_reads_a_compacted_topic_on_kafka() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    let mut tools = ApacheKafka::TOOLS.to_vec();
    tools.extend(ClientKind::Java.tools());
    if !require("compacted_topic_kafka", &tools) {
        return;
    }
    let kafka = ApacheKafka::start_with(&[("log.cleaner.backoff.ms", "100")]).unwrap();
    let mut program = Program {
        work_dir: Some(
            tempfile::Builder::new()
                .prefix("sluice-e2e-compacted-topic-kafka-")
                .tempdir()
                .unwrap(),
        ),
        runs: 0,
    };
    ClientKind::Java
        .build(program.work_dir.as_ref().unwrap().path())
        .unwrap();

    let retention = format!("delete.retention.ms={DELETE_RETENTION_MS}");
    let mut args = vec!["--topic-config", "cleanup.policy=compact", "--topic-config"];
    args.push(&retention);
    args.extend([
        "--topic-config",
        "segment.ms=100",
        "--topic-config",
        "min.cleanable.dirty.ratio=0.01",
    ]);
    let produced = program.run(&kafka.bootstrap(), "produce", &args);
    assert!(
        produced.status.success() && produced.line["kind"] == "produced",
        "produce {}: {}\nclient log:\n{}\nbroker log:\n{}",
        produced.status,
        produced.line,
        log_tail(&produced.log),
        log_tail(&kafka.data_dir().join("kafka.out"))
    );
    loud(&format!("kafka compacted topic: {}", produced.line));

    let settled = verify_until_compacted(&mut program, &kafka);
    assert_compacted(&settled.verdict);
    loud(&format!(
        "kafka compacted topic: compacted after {:.1} s ({} verify runs, {} nudges): {}",
        settled.elapsed.as_secs_f64(),
        settled.attempts,
        settled.nudges,
        settled.verdict
    ));
}
