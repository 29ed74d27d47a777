//! Scenario: a compacted topic (`cleanup.policy=compact`) end to end with the official Java client
//! against a Sluice agent whose bucket is a loopback S3-API server (listed in docs/testing.md).
//!
//! `dev.sluice.e2e.CompactedTopic` creates a 3-partition topic with `delete.retention.ms=1000` and
//! writes 100,000 updates over 1,000 keys from a fixed seed: every tenth key ends with a tombstone,
//! and one write in twenty elsewhere is a tombstone followed by new values. The agent compacts every
//! 200 ms. The test then runs the program's `verify` mode again and again until it passes (or
//! [`SETTLE_TIMEOUT`]): every record served is the write acknowledged at its offset, offsets
//! strictly increase, every live key's last record is its latest write, no deleted key appears at
//! all, and far fewer than 100,000 records remain. Only the last two may take time: a wrong record
//! or offset, a live key lost or not at its latest write, or a deleted key whose tombstone is gone
//! but an older value is not fails at once — compaction may be late, never wrong. Then the agent is killed with SIGKILL, started again
//! on the same bucket, and the first `verify` must pass: the compacted state survives.
//!
//! A tombstone younger than `delete.retention.ms` when a job passes over it stays, and the agent
//! cleans a partition again only once half of it is new (Kafka's default dirty ratio; Kafka also
//! waits for new writes, and never cleans its active segment). So when `verify` has not passed
//! [`NUDGE_AFTER`] after the last write, the test writes [`NUDGE_RECORDS`] records of one extra key
//! (`nudge`, counted apart by `verify`) to every partition: enough new bytes for another job, which
//! must then remove every tombstone. The summary line says how many nudges it took (usually none:
//! the Java producer stamps records when it queues them, here over a second before the last job
//! reads them).
//! Without java or maven the test prints `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_engine::store::S3TestServer;
use sluice_tests::clients::{ClientKind, clients_dir};
use sluice_tests::process::{ChildGuard, log_tail};
use sluice_tests::sluice::{SluiceAgent, fast_housekeeping_args};
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
/// Per partition, of about 230 bytes each: more than the ~50 KB a compacted partition holds, so
/// that half of it is new.
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

/// `text` without terminal escape sequences (the agent's log colours its field names).
fn without_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ending at a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The `key compaction job` lines of an agent log, and its lines that report a failure.
fn agent_log_lines(log: &Path) -> (Vec<String>, Vec<String>) {
    let text = without_ansi(&std::fs::read_to_string(log).unwrap_or_default());
    let jobs = text
        .lines()
        .filter(|line| line.contains("key compaction job"))
        .map(str::to_owned)
        .collect();
    let failures = text
        .lines()
        .filter(|line| {
            line.contains("ERROR")
                || line.contains("compaction failed")
                || line.contains("compaction job failed")
                || line.contains("panicked")
        })
        .map(str::to_owned)
        .collect();
    (jobs, failures)
}

/// Sum of `field=N` over the lines.
fn sum_field(lines: &[String], field: &str) -> u64 {
    let prefix = format!("{field}=");
    lines
        .iter()
        .flat_map(|line| line.split_whitespace())
        .filter_map(|word| word.strip_prefix(&prefix))
        .filter_map(|value| value.parse::<u64>().ok())
        .sum()
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
fn verify_until_compacted(program: &mut Program, agent: &SluiceAgent) -> Settled {
    let started = Instant::now();
    let mut last_write = started;
    let mut attempts = 0;
    let mut nudges = 0;
    loop {
        attempts += 1;
        let outcome = program.run(&agent.bootstrap(), "verify", &[]);
        let not_yet = outcome.status.code() == Some(EXIT_NOT_YET_COMPACTED);
        let verdict = &outcome.line;
        assert!(
            verdict["kind"] == "verify" && (outcome.status.success() || not_yet),
            "verify {} (attempt {attempts}): {verdict}\nclient log:\n{}\nagent log:\n{}",
            outcome.status,
            log_tail(&outcome.log),
            agent.log_tail()
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
             last verdict: {verdict}\nagent log:\n{}",
            agent.log_tail()
        );
        if last_write.elapsed() >= NUDGE_AFTER {
            let nudged = program.run(
                &agent.bootstrap(),
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
fn java_client_reads_a_compacted_topic_before_and_after_kill_9() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("compacted_topic_sluice", &ClientKind::Java.tools()) {
        return;
    }
    let store = S3TestServer::start().unwrap();
    let mut agent =
        SluiceAgent::start_with_args(&store, "compacted-topic", &fast_housekeeping_args()).unwrap();
    let mut program = Program {
        work_dir: Some(
            tempfile::Builder::new()
                .prefix("sluice-e2e-compacted-topic-")
                .tempdir()
                .unwrap(),
        ),
        runs: 0,
    };
    ClientKind::Java
        .build(program.work_dir.as_ref().unwrap().path())
        .unwrap();

    let retention = format!("delete.retention.ms={DELETE_RETENTION_MS}");
    let produced = program.run(
        &agent.bootstrap(),
        "produce",
        &[
            "--topic-config",
            "cleanup.policy=compact",
            "--topic-config",
            &retention,
        ],
    );
    assert!(
        produced.status.success() && produced.line["kind"] == "produced",
        "produce {}: {}\nclient log:\n{}\nagent log:\n{}",
        produced.status,
        produced.line,
        log_tail(&produced.log),
        agent.log_tail()
    );
    loud(&format!("sluice compacted topic: {}", produced.line));

    let settled = verify_until_compacted(&mut program, &agent);
    let verdict = &settled.verdict;
    assert_compacted(verdict);
    let (jobs, failures) = agent_log_lines(&agent.log());
    assert!(
        !jobs.is_empty(),
        "verify passed but the agent logged no key compaction job; agent log:\n{}",
        agent.log_tail()
    );
    assert!(
        failures.is_empty(),
        "the agent logged failures:\n{}",
        failures.join("\n")
    );
    loud(&format!(
        "sluice compacted topic: compacted after {:.1} s ({} verify runs, {} nudges), {} key \
         compaction jobs (records read {}, superseded {}, tombstones removed {}): {verdict}",
        settled.elapsed.as_secs_f64(),
        settled.attempts,
        settled.nudges,
        jobs.len(),
        sum_field(&jobs, "records_read"),
        sum_field(&jobs, "superseded"),
        sum_field(&jobs, "tombstones_removed"),
    ));

    agent.restart().unwrap();
    let after = program.run(&agent.bootstrap(), "verify", &[]);
    assert!(
        after.status.success() && after.line["kind"] == "verify",
        "verify after kill -9 and restart {}: {}\nclient log:\n{}\nagent log:\n{}",
        after.status,
        after.line,
        log_tail(&after.log),
        agent.log_tail()
    );
    assert_compacted(&after.line);
    assert!(
        after.line["records"].as_u64() <= verdict["records"].as_u64(),
        "more records after the restart: {} then {}",
        verdict,
        after.line
    );
    let (_, failures) = agent_log_lines(&agent.log());
    assert!(
        failures.is_empty(),
        "the restarted agent logged failures:\n{}",
        failures.join("\n")
    );
    loud(&format!(
        "sluice compacted topic: after kill -9 and restart: {}",
        after.line
    ));
}
