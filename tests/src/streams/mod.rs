//! Kafka Streams end to end: a real user of compacted topics. A Streams application aggregates a
//! ledger into a table kept in a RocksDB store whose changelog topic Streams creates itself
//! (`cleanup.policy=compact`, through its own CreateTopics); the store is then thrown away and
//! restored from that changelog, and must equal the table the seed implies.
//!
//! The application and its driver are one Java program, `dev.sluice.e2e.StreamsLedger`
//! (`tests/clients/java`, built by `tests/clients/build.sh java`), run three times as three
//! processes — `produce`, `process`, `restore` — each writing a JSON-lines report. Between
//! `process` and `restore` the harness deletes the application's state directory, so the only
//! place the second run can get its table from is the broker. The Rust side recomputes the table
//! from the seed ([`ledger`]) and checks every restored account against it, so a Java bug that
//! agreed with itself would still be caught.
//!
//! The trade-off: a restore reads the changelog as a broker serves it *now*, so what this proves
//! about compaction is that whatever the broker compacted away was nothing the table needed — the
//! latest value of every key survives, and a tombstone's key does not come back. Whether the broker
//! compacted at all is measured (records served against offsets spanned) and left to each test
//! file to demand. See docs/testing.md, "Kafka Streams".

pub mod ledger;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clients::clients_dir;
use crate::process::{ChildGuard, log_tail};
use ledger::{Balance, Ledger};

/// Input records unless `SLUICE_E2E_STREAMS_RECORDS` says otherwise: about 100 per account, so a
/// compacted changelog is a small fraction of one that is not.
pub const RECORDS_DEFAULT: u64 = 20_000;
pub const KEYS: u64 = 200;
pub const PARTITIONS: u32 = 4;
pub const SEED: u64 = 1;
/// Streams' commit interval: offsets and changelog writes are flushed this often.
pub const COMMIT_INTERVAL_MS: u64 = 100;
/// Each wait inside the driver (processing, restoring, a topic read-back).
const PHASE_TIMEOUT_S: u64 = 60;
/// On top of a phase's waits: a JVM's start, Streams' rebalance and close.
const PROCESS_EXIT_GRACE_S: u64 = 60;

/// `SLUICE_E2E_STREAMS_RECORDS`, else [`RECORDS_DEFAULT`].
pub fn records() -> u64 {
    std::env::var("SLUICE_E2E_STREAMS_RECORDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|records: &u64| *records >= KEYS)
        .unwrap_or(RECORDS_DEFAULT)
}

/// One run of the scenario against one broker.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `kafka` or `sluice`, in messages and names.
    pub target: String,
    pub bootstrap: String,
    pub work_dir: PathBuf,
    pub records: u64,
    /// Topic configs Streams adds to the changelog it creates (`Materialized.withLoggingEnabled`).
    pub changelog_configs: Vec<(String, String)>,
    /// How long the application keeps running, once its table is complete, waiting for the broker
    /// to compact the changelog.
    pub await_compaction_s: u64,
}

/// How a table (the store, or the latest values of a topic) compares with the expected one.
#[derive(Debug, Clone, Deserialize)]
pub struct TableCheck {
    pub elapsed_ms: Option<u64>,
    /// -1: the store could not be read at all.
    pub entries: i64,
    pub expected_entries: u64,
    pub mismatches: u64,
    pub examples: Vec<String>,
}

/// A topic read back from its beginning with a plain consumer (offsets summed over partitions).
#[derive(Debug, Clone, Deserialize)]
pub struct TopicCheck {
    pub topic: String,
    pub partitions: u32,
    pub beginning: u64,
    pub end: u64,
    pub records: u64,
    pub tombstones: u64,
    pub offset_gaps: u64,
    #[serde(flatten)]
    pub table: TableCheck,
}

impl TopicCheck {
    /// Fewer records served than the offsets span: the broker removed some.
    pub fn compacted(&self) -> bool {
        self.records < self.end.saturating_sub(self.beginning)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Produced {
    pub records: u64,
    pub closes: u64,
    pub first: FirstRecord,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirstRecord {
    pub account: String,
    pub amount: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompactionWait {
    pub waited_ms: u64,
    pub compacted: bool,
    pub records: u64,
    pub offsets: u64,
}

/// What Streams' restore listener saw for one changelog partition.
#[derive(Debug, Clone, Deserialize)]
pub struct Restore {
    pub partition: u32,
    pub start: i64,
    pub end: i64,
    pub restored: u64,
    pub done: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    account: String,
    count: u64,
    sum: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct ChangelogConfig {
    configs: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Deserialize)]
struct StateDir {
    existed: bool,
}

/// Everything the three phases reported.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub produced: Produced,
    pub processed: TableCheck,
    pub compaction_wait: Option<CompactionWait>,
    /// The changelog's DescribeConfigs after processing.
    pub changelog_configs: BTreeMap<String, Option<String>>,
    pub changelog: TopicCheck,
    pub output_after_process: TopicCheck,
    /// Files in the state directory after the first run (RocksDB's), before it was deleted.
    pub state_files_before_wipe: usize,
    pub state_dir_existed_at_restore: bool,
    pub restores: Vec<Restore>,
    pub restored: TableCheck,
    /// The restored store, account by account.
    pub entries: BTreeMap<String, Balance>,
    pub output_after_restore: TopicCheck,
}

impl Scenario {
    pub fn ledger(&self) -> Ledger {
        Ledger {
            seed: SEED,
            keys: KEYS,
        }
    }

    /// Runs the three phases; an error names the phase and quotes its log.
    pub fn run(&self) -> Result<Outcome, String> {
        let suffix = format!(
            "{}-{}-{}",
            self.target,
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis())
                .unwrap_or(0)
        );
        let names = Names {
            input: format!("ledger-input-{suffix}"),
            output: format!("ledger-output-{suffix}"),
            application_id: format!("ledger-{suffix}"),
            state_dir: self.work_dir.join("state"),
        };

        let lines = self.phase(&names, "produce", &[])?;
        let produced: Produced = line(&lines, "produced")?;

        let mut extra = vec![
            "--await-compaction-s".to_string(),
            self.await_compaction_s.to_string(),
        ];
        for (name, value) in &self.changelog_configs {
            extra.push("--changelog-config".to_string());
            extra.push(format!("{name}={value}"));
        }
        let lines = self.phase(&names, "process", &extra)?;
        let processed: TableCheck = line(&lines, "processed")?;
        if processed.mismatches > 0 {
            return Err(format!(
                "process: the store never equalled the expected table within {PHASE_TIMEOUT_S} s: {processed:?}"
            ));
        }
        let compaction_wait = line(&lines, "compaction_wait").ok();
        let changelog_configs = line::<ChangelogConfig>(&lines, "changelog_config")?.configs;
        let changelog: TopicCheck = line(&lines, "changelog")?;
        let output_after_process: TopicCheck = line(&lines, "output")?;

        // The first run's store, gone: the second run can only restore it from the changelog.
        let state_files_before_wipe = count_files(&names.state_dir);
        if names.state_dir.exists() {
            std::fs::remove_dir_all(&names.state_dir).map_err(|error| {
                format!(
                    "delete the state directory {}: {error}",
                    names.state_dir.display()
                )
            })?;
        }

        let lines = self.phase(&names, "restore", &[])?;
        let state_dir_existed_at_restore = line::<StateDir>(&lines, "state_dir")?.existed;
        let restores = lines_of::<Restore>(&lines, "restore")?;
        let restored: TableCheck = line(&lines, "restored")?;
        let entries = lines_of::<Entry>(&lines, "entry")?
            .into_iter()
            .map(|entry| {
                (
                    entry.account,
                    Balance {
                        count: entry.count,
                        sum: entry.sum,
                    },
                )
            })
            .collect();
        let output_after_restore: TopicCheck = line(&lines, "output")?;
        Ok(Outcome {
            produced,
            processed,
            compaction_wait,
            changelog_configs,
            changelog,
            output_after_process,
            state_files_before_wipe,
            state_dir_existed_at_restore,
            restores,
            restored,
            entries,
            output_after_restore,
        })
    }

    /// Runs the driver in `mode` and returns its report's lines; its `error` line, a non-zero exit
    /// or a timeout is an error quoting the driver's log.
    fn phase(&self, names: &Names, mode: &str, extra: &[String]) -> Result<Vec<Value>, String> {
        let report = self.work_dir.join(format!("streams-{mode}.jsonl"));
        let log = self.work_dir.join(format!("streams-{mode}.log"));
        let java = clients_dir().join("java");
        let mut command = Command::new("java");
        command
            .arg("-Xmx384m")
            .arg("-XX:+UseSerialGC")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            // Streams' own INFO lines (rebalances, restores, commits) are what explains a failure.
            .arg("-Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams=info")
            .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
            .arg("-cp")
            .arg(format!(
                "{}:{}/*",
                java.join("target/classes").display(),
                java.join("target/lib").display()
            ))
            .arg("dev.sluice.e2e.StreamsLedger")
            .args(["--bootstrap", &self.bootstrap])
            .args(["--mode", mode])
            .args(["--input", &names.input])
            .args(["--output", &names.output])
            .args(["--application-id", &names.application_id])
            .arg("--state-dir")
            .arg(&names.state_dir)
            .args(["--records", &self.records.to_string()])
            .args(["--keys", &KEYS.to_string()])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--seed", &SEED.to_string()])
            .args(["--commit-interval-ms", &COMMIT_INTERVAL_MS.to_string()])
            .args(["--timeout-s", &PHASE_TIMEOUT_S.to_string()])
            .args(extra)
            .arg("--report")
            .arg(&report);
        let quoted = |message: String| {
            format!(
                "{message}\nlast lines of {}:\n{}",
                log.display(),
                log_tail(&log)
            )
        };
        let mut child =
            ChildGuard::spawn(&format!("java StreamsLedger {mode}"), &mut command, &log)
                .map_err(|error| error.to_string())?;
        // A phase waits up to PHASE_TIMEOUT_S several times (processing, compaction, read-backs).
        let limit_s = 3 * PHASE_TIMEOUT_S + self.await_compaction_s + PROCESS_EXIT_GRACE_S;
        let status = child
            .wait_with_timeout(Duration::from_secs(limit_s))
            .map_err(|error| format!("{mode}: {error}"))?;
        let lines: Vec<Value> = std::fs::read_to_string(&report)
            .unwrap_or_default()
            .lines()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        if let Some(error) = lines.iter().find(|value| value["kind"] == "error") {
            return Err(quoted(format!(
                "{mode}: the driver failed: {}",
                error["message"]
            )));
        }
        if !status.success() {
            return Err(quoted(format!("{mode}: the driver exited with {status}")));
        }
        Ok(lines)
    }
}

/// The run's topics, application id and state directory.
struct Names {
    input: String,
    output: String,
    application_id: String,
    state_dir: PathBuf,
}

/// The first line of `kind`, parsed.
fn line<T: DeserializeOwned>(lines: &[Value], kind: &str) -> Result<T, String> {
    let value = lines
        .iter()
        .find(|value| value["kind"] == kind)
        .ok_or_else(|| format!("no {kind:?} line in the report"))?;
    serde_json::from_value(value.clone()).map_err(|error| format!("{kind} line {value}: {error}"))
}

/// Every line of `kind`, parsed.
fn lines_of<T: DeserializeOwned>(lines: &[Value], kind: &str) -> Result<Vec<T>, String> {
    lines
        .iter()
        .filter(|value| value["kind"] == kind)
        .map(|value| {
            serde_json::from_value(value.clone())
                .map_err(|error| format!("{kind} line {value}: {error}"))
        })
        .collect()
}

/// Regular files under `dir` (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Everything that must hold on any broker; each failure is one sentence.
pub fn check(scenario: &Scenario, outcome: &Outcome) -> Vec<String> {
    let ledger = scenario.ledger();
    let records = scenario.records;
    let expected = ledger.expected(records);
    let mut failures = Vec::new();
    let mut fail = |holds: bool, message: String| {
        if !holds {
            failures.push(message);
        }
    };

    let produced = &outcome.produced;
    fail(
        produced.records == records && produced.closes == ledger.closes(records),
        format!(
            "produced {} records with {} closes; the seed implies {records} with {}",
            produced.records,
            produced.closes,
            ledger.closes(records)
        ),
    );
    fail(
        produced.first.account == ledger.account(0) && produced.first.amount == ledger.amount(0),
        format!(
            "the Java driver's record 0 is {:?}, Rust's ({}, {}): the generators differ",
            produced.first,
            ledger.account(0),
            ledger.amount(0)
        ),
    );

    let policy = outcome
        .changelog_configs
        .get("cleanup.policy")
        .cloned()
        .flatten();
    fail(
        policy.as_deref() == Some("compact"),
        format!(
            "the changelog {} describes cleanup.policy={policy:?}, not compact",
            outcome.changelog.topic
        ),
    );
    for (name, value) in &scenario.changelog_configs {
        let described = outcome.changelog_configs.get(name).cloned().flatten();
        fail(
            described.as_deref() == Some(value.as_str()),
            format!(
                "the changelog describes {name}={described:?}, Streams created it with {value}"
            ),
        );
    }

    for (what, topic) in [
        ("changelog", &outcome.changelog),
        ("output after processing", &outcome.output_after_process),
        ("output after the restore", &outcome.output_after_restore),
    ] {
        // Caching is off: one changelog and one output record per input record, and none more
        // unless something was processed twice.
        fail(
            topic.end == records && topic.partitions == PARTITIONS,
            format!(
                "the {what} ({}) ends at {} over {} partitions; {records} input records over {PARTITIONS} imply {records}",
                topic.topic, topic.end, topic.partitions
            ),
        );
        fail(
            topic.table.mismatches == 0
                && topic.table.entries == i64::try_from(expected.len()).unwrap_or(-1),
            format!(
                "the latest values of the {what} differ from the table in {} accounts ({} entries, {} expected), e.g. {:?}",
                topic.table.mismatches,
                topic.table.entries,
                expected.len(),
                topic.table.examples
            ),
        );
    }

    fail(
        outcome.state_files_before_wipe > 0,
        "the first run left no files in its state directory: the store was not persistent"
            .to_string(),
    );
    fail(
        !outcome.state_dir_existed_at_restore,
        "the state directory still existed when the restore started".to_string(),
    );
    let partitions_restored: Vec<u32> = outcome
        .restores
        .iter()
        .filter(|restore| restore.done)
        .map(|restore| restore.partition)
        .collect();
    fail(
        partitions_restored.len() == PARTITIONS as usize,
        format!(
            "the restore listener saw {partitions_restored:?} of {PARTITIONS} changelog partitions restored: {:?}",
            outcome.restores
        ),
    );
    let restored_total: u64 = outcome
        .restores
        .iter()
        .map(|restore| restore.restored)
        .sum();
    let restore_end: i64 = outcome.restores.iter().map(|restore| restore.end).sum();
    fail(
        restored_total > 0 && restored_total <= records,
        format!("{restored_total} changelog records restored, for {records} input records"),
    );
    fail(
        u64::try_from(restore_end).ok() == Some(outcome.changelog.end),
        format!(
            "the restore read up to offsets summing to {restore_end}, the changelog ends at {}",
            outcome.changelog.end
        ),
    );
    fail(
        outcome.restored.mismatches == 0,
        format!(
            "the restored store differs from the table in {} accounts, e.g. {:?}",
            outcome.restored.mismatches, outcome.restored.examples
        ),
    );

    // The restored store, account by account, against Rust's own fold of the seed.
    let wrong: Vec<String> = expected
        .keys()
        .chain(outcome.entries.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|account| expected.get(*account) != outcome.entries.get(*account))
        .map(|account| {
            format!(
                "{account}: expected {:?}, restored {:?}",
                expected.get(account),
                outcome.entries.get(account)
            )
        })
        .collect();
    fail(
        wrong.is_empty(),
        format!(
            "{} of {} accounts restored wrong, e.g. {:?}",
            wrong.len(),
            expected.len(),
            wrong.iter().take(5).collect::<Vec<_>>()
        ),
    );
    failures
}

/// One line for the test's output.
pub fn summary(scenario: &Scenario, outcome: &Outcome) -> String {
    let restored_total: u64 = outcome
        .restores
        .iter()
        .map(|restore| restore.restored)
        .sum();
    let changelog = &outcome.changelog;
    format!(
        "{}: streams {} records over {KEYS} accounts -> {} open; processed in {:.1} s; changelog cleanup.policy={} \
         serves {} of {} offsets ({} tombstones, {} gaps){}; state wiped ({} files); restored {} records in {:.1} s -> {} accounts",
        scenario.target,
        scenario.records,
        outcome.entries.len(),
        outcome.processed.elapsed_ms.unwrap_or(0) as f64 / 1000.0,
        outcome
            .changelog_configs
            .get("cleanup.policy")
            .cloned()
            .flatten()
            .unwrap_or_default(),
        changelog.records,
        changelog.end.saturating_sub(changelog.beginning),
        changelog.tombstones,
        changelog.offset_gaps,
        match &outcome.compaction_wait {
            Some(wait) if wait.compacted => format!(
                ", compacted {:.1} s after the table was complete",
                wait.waited_ms as f64 / 1000.0
            ),
            Some(wait) => format!(
                ", not compacted within {:.1} s",
                wait.waited_ms as f64 / 1000.0
            ),
            None => String::new(),
        },
        outcome.state_files_before_wipe,
        restored_total,
        outcome.restored.elapsed_ms.unwrap_or(0) as f64 / 1000.0,
        outcome.restored.entries,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const RECORDS: u64 = 2_000;

    fn scenario() -> Scenario {
        Scenario {
            target: "unit".to_string(),
            bootstrap: "127.0.0.1:9".to_string(),
            work_dir: PathBuf::from("/nonexistent"),
            records: RECORDS,
            changelog_configs: vec![("delete.retention.ms".to_string(), "1000".to_string())],
            await_compaction_s: 0,
        }
    }

    fn table(entries: usize) -> TableCheck {
        TableCheck {
            elapsed_ms: Some(1),
            entries: i64::try_from(entries).unwrap(),
            expected_entries: entries as u64,
            mismatches: 0,
            examples: Vec::new(),
        }
    }

    fn topic(end: u64, records: u64, entries: usize) -> TopicCheck {
        TopicCheck {
            topic: "t".to_string(),
            partitions: PARTITIONS,
            beginning: 0,
            end,
            records,
            tombstones: 0,
            offset_gaps: 0,
            table: table(entries),
        }
    }

    /// What a correct broker makes the driver report, the changelog compacted to one record per
    /// open account.
    fn passing(scenario: &Scenario) -> Outcome {
        let ledger = scenario.ledger();
        let expected = ledger.expected(RECORDS);
        let open = expected.len();
        Outcome {
            produced: Produced {
                records: RECORDS,
                closes: ledger.closes(RECORDS),
                first: FirstRecord {
                    account: ledger.account(0),
                    amount: ledger.amount(0),
                },
                elapsed_ms: 1,
            },
            processed: table(open),
            compaction_wait: None,
            changelog_configs: BTreeMap::from([
                ("cleanup.policy".to_string(), Some("compact".to_string())),
                ("delete.retention.ms".to_string(), Some("1000".to_string())),
            ]),
            changelog: topic(RECORDS, open as u64, open),
            output_after_process: topic(RECORDS, RECORDS, open),
            state_files_before_wipe: 40,
            state_dir_existed_at_restore: false,
            restores: (0..PARTITIONS)
                .map(|partition| Restore {
                    partition,
                    start: 0,
                    end: i64::try_from(RECORDS / u64::from(PARTITIONS)).unwrap(),
                    restored: open as u64 / u64::from(PARTITIONS),
                    done: true,
                })
                .collect(),
            restored: table(open),
            entries: expected,
            output_after_restore: topic(RECORDS, RECORDS, open),
        }
    }

    #[test]
    fn a_correct_run_passes_and_each_fault_is_named() {
        let scenario = scenario();
        let good = passing(&scenario);
        assert_eq!(check(&scenario, &good), Vec::<String>::new());
        assert!(good.changelog.compacted());

        // A closed account brought back by the restore (a tombstone dropped too early).
        let closed = (0..RECORDS)
            .map(|index| scenario.ledger().account(index))
            .find(|account| !good.entries.contains_key(account))
            .unwrap();
        let mut resurrected = good.clone();
        resurrected
            .entries
            .insert(closed.clone(), Balance { count: 1, sum: 5 });
        let failures = check(&scenario, &resurrected);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains(&closed), "{failures:?}");

        // A latest value lost: one account restored with an older balance.
        let mut stale = good.clone();
        let (account, balance) = stale.entries.iter_mut().next().unwrap();
        let account = account.clone();
        balance.count -= 1;
        let failures = check(&scenario, &stale);
        assert!(
            failures.iter().any(|failure| failure.contains(&account)),
            "{failures:?}"
        );

        // Not compact; a partition never restored; the state directory not wiped; reprocessing.
        let mut wrong = good.clone();
        wrong
            .changelog_configs
            .insert("cleanup.policy".to_string(), Some("delete".to_string()));
        wrong.restores.pop();
        wrong.state_dir_existed_at_restore = true;
        wrong.output_after_restore.end += 3;
        assert_eq!(
            check(&scenario, &wrong).len(),
            5,
            "{:?}",
            check(&scenario, &wrong)
        );

        // A changelog served whole is not compacted.
        let mut whole = good;
        whole.changelog.records = RECORDS;
        assert!(!whole.changelog.compacted());
    }
}
