//! Cleaning up after each step of the `throughput` ladder, so that the ladder's disk use is bounded
//! by one step rather than by the sum of all of them (a 30 s step at 240 MB/s alone is 8 GB, and a
//! four-target ladder once filled this machine's disk).
//!
//! Each step produces to a topic of its own ([`step_topic`]). Once the step is measured the
//! harness deletes that topic (Kafka's DeleteTopics, on a plaintext listener of the target), then
//! watches the bytes on disk of the target's data directories until they stop falling
//! ([`Settling`]) and puts the figure in the step's row, so a reader sees it stay bounded.
//!
//! Both brokers free a deleted topic's files after a delay, which the harness shortens for this
//! scenario so the bytes leave within the step's cleanup ([`sluice_agent_env`], [`kafka_env`]):
//! Sluice's collector (`log_retention_check_interval_ms`, `log_segment_delete_delay_ms`, see
//! docs/retention.md) and Kafka's `log.segment.delete.delay.ms`. Sluice also keeps every metadata-log
//! entry above its oldest retained checkpoint, since recovery replays them, and an idle agent
//! writes no checkpoint: the last one or two checkpoint intervals of a step (1,000 to 2,000 flush
//! windows at the default `checkpoint_interval_entries`) stay on disk until the next step's
//! windows move the floor. The report shows that remainder as it is; the harness does not change
//! how often the agent checkpoints, which is part of what the ladder measures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use serde::Serialize;

use crate::groups::wire::{Connection, Versions};
use crate::scenario::Scenario;

/// How often Sluice's collector runs during the ladder (agent default: 5 min).
pub const SLUICE_GC_INTERVAL_MS: u64 = 2_000;
/// How long an unneeded object waits before Sluice deletes it during the ladder (agent default:
/// 60 s). Long enough for a fetch at the live edge that resolved an object compaction has just
/// replaced to read it.
pub const SLUICE_DELETE_DELAY_MS: u64 = 5_000;
/// Kafka's `log.segment.delete.delay.ms` during the ladder (the broker default of the topic
/// setting `file.delete.delay.ms`; Kafka's default: 60 s), as Sluice's delay.
pub const KAFKA_SEGMENT_DELETE_DELAY_MS: u64 = SLUICE_DELETE_DELAY_MS;
/// The bytes on disk count as settled once they have not fallen for this long: longer than a
/// whole collection cycle of either broker (a sweep finds the objects, the delay, the sweep that
/// deletes them: at most 2 + 5 + 2 s for Sluice; 5 s for Kafka).
pub const SETTLE_QUIET: Duration = Duration::from_secs(12);
/// Upper bound on one step's cleanup; the figure at that time is reported as it is.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// Time between two measurements of the bytes on disk.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// A fall smaller than this does not restart the quiet period (a broker's own small files come
/// and go while it idles).
const FALL_BYTES_MIN: u64 = 1 << 20;
/// Limit on the DeleteTopics call (Kafka answers once the controller has the deletion).
const DELETE_LIMIT: Duration = Duration::from_secs(30);
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Whether `scenario`'s steps each clean up after themselves: the ladder only (the other
/// scenarios run one step, whose data goes with the target's directories when it ends).
pub fn cleans_up_steps(scenario: Scenario) -> bool {
    scenario == Scenario::Throughput
}

/// The topic of step `index` (from 0) of `scenario`: one topic per step, so that deleting it
/// deletes exactly that step's records.
pub fn step_topic(scenario: Scenario, index: usize) -> String {
    format!("bench-{}-{index}", scenario.name())
}

/// The `SLUICE_*` settings of every agent a run of `scenario` starts for step cleanup (none for
/// the other scenarios).
pub fn sluice_agent_env(scenario: Scenario) -> Vec<(String, String)> {
    if !cleans_up_steps(scenario) {
        return Vec::new();
    }
    vec![
        (
            "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS".to_owned(),
            SLUICE_GC_INTERVAL_MS.to_string(),
        ),
        (
            "SLUICE_LOG_SEGMENT_DELETE_DELAY_MS".to_owned(),
            SLUICE_DELETE_DELAY_MS.to_string(),
        ),
    ]
}

/// The environment `scripts/kafka/run-kafka.sh` gets in a run of `scenario` (its
/// `RUN_KAFKA_SEGMENT_DELETE_DELAY_MS`; none for the other scenarios).
pub fn kafka_env(scenario: Scenario) -> Vec<(String, String)> {
    if !cleans_up_steps(scenario) {
        return Vec::new();
    }
    vec![(
        "RUN_KAFKA_SEGMENT_DELETE_DELAY_MS".to_owned(),
        KAFKA_SEGMENT_DELETE_DELAY_MS.to_string(),
    )]
}

/// What the report's settings say about step cleanup for a target.
pub fn setting(target: &str) -> String {
    let delays = if target.starts_with("kafka") {
        format!("Kafka's log.segment.delete.delay.ms {KAFKA_SEGMENT_DELETE_DELAY_MS}")
    } else if target.starts_with("sluice") {
        format!(
            "agent's log_retention_check_interval_ms {SLUICE_GC_INTERVAL_MS}, \
             log_segment_delete_delay_ms {SLUICE_DELETE_DELAY_MS}"
        )
    } else {
        "the broker's own deletion".to_owned()
    };
    format!(
        "after each step DeleteTopics of its topic, then bytes on disk until they stop falling \
         for {} s ({delays})",
        SETTLE_QUIET.as_secs()
    )
}

/// Where a target keeps its data on this machine, for the bytes-on-disk figure.
#[derive(Clone, Debug, Default)]
pub struct DataDirs {
    /// Directories whose files are counted (the broker's data directory, the loopback S3
    /// server's directory); empty: nothing is measured.
    pub dirs: Vec<PathBuf>,
    /// What the figure leaves out, if anything.
    pub note: Option<String>,
}

/// What a ladder needs to clean up after each step of one target.
#[derive(Debug)]
pub struct Cleaner {
    pub runtime: tokio::runtime::Handle,
    pub data: DataDirs,
}

impl Cleaner {
    /// Deletes `topic` through `admin_bootstrap` and waits for the bytes on disk to settle.
    pub fn after_step(&self, admin_bootstrap: &str, topic: &str) -> StepCleanup {
        clean_up(&self.runtime, admin_bootstrap, topic, &self.data)
    }
}

/// One step's cleanup, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepCleanup {
    pub topic: String,
    /// `None`: the topic was deleted (or was already gone); else why it was not.
    pub delete_error: Option<String>,
    /// Bytes on disk of the target's data directories right after the step, before the
    /// deletion, and once they stopped falling (or at [`SETTLE_LIMIT`]); `None` when not
    /// measured.
    pub bytes_on_disk_before: Option<u64>,
    pub bytes_on_disk_after: Option<u64>,
    /// From the deletion to the last measurement.
    pub waited_s: f64,
    /// Whether the bytes were still falling at [`SETTLE_LIMIT`].
    pub settled: bool,
    pub note: Option<String>,
}

impl StepCleanup {
    /// One line for the report and the harness's log.
    pub fn describe(&self) -> String {
        let deleted = match &self.delete_error {
            None => format!("topic `{}` deleted", self.topic),
            Some(error) => format!("topic `{}` NOT deleted ({error})", self.topic),
        };
        let disk = match (self.bytes_on_disk_before, self.bytes_on_disk_after) {
            (Some(before), Some(after)) => format!(
                "; data on disk {} before, {} after, {:.1} s after the deletion{}",
                megabytes(before),
                megabytes(after),
                self.waited_s,
                if self.settled {
                    ""
                } else {
                    " (still falling at the limit)"
                }
            ),
            _ => String::new(),
        };
        let note = self
            .note
            .as_ref()
            .map_or_else(String::new, |note| format!(" ({note})"));
        format!("{deleted}{disk}{note}")
    }
}

/// `bytes` in MB (10^6), one decimal.
fn megabytes(bytes: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let mb = bytes as f64 / 1e6;
    format!("{mb:.1} MB")
}

/// Deletes `topic`, then waits for the target's bytes on disk to settle. Never fails: what went
/// wrong is in the result.
pub fn clean_up(
    runtime: &tokio::runtime::Handle,
    admin_bootstrap: &str,
    topic: &str,
    data: &DataDirs,
) -> StepCleanup {
    let measure = || (!data.dirs.is_empty()).then(|| bytes_on_disk(&data.dirs));
    let before = measure();
    let delete_error = runtime
        .block_on(delete_topic(admin_bootstrap, topic))
        .err()
        .map(|error| format!("{error:#}"));
    let started = Instant::now();
    let mut after = before;
    let mut settled = true;
    // Nothing to wait for when the topic is still there: one more measurement says so.
    if delete_error.is_some() {
        after = measure();
    } else if let Some(first) = before {
        let mut settling = Settling::new(first, SETTLE_QUIET);
        settled = false;
        while started.elapsed() < SETTLE_LIMIT {
            std::thread::sleep(SAMPLE_INTERVAL);
            let bytes = bytes_on_disk(&data.dirs);
            after = Some(bytes);
            if settling.observe(started.elapsed(), bytes) {
                settled = true;
                break;
            }
        }
    }
    StepCleanup {
        topic: topic.to_owned(),
        delete_error,
        bytes_on_disk_before: before,
        bytes_on_disk_after: after,
        waited_s: started.elapsed().as_secs_f64(),
        settled,
        note: data.note.clone(),
    }
}

/// Whether a series of byte counts has stopped falling: settled once no fall of at least
/// [`FALL_BYTES_MIN`] below the lowest count so far came for `quiet`. Pure (times are given).
#[derive(Debug)]
pub struct Settling {
    lowest: u64,
    lowest_at: Duration,
    quiet: Duration,
}

impl Settling {
    /// Starts at time zero with `bytes`.
    pub fn new(bytes: u64, quiet: Duration) -> Settling {
        Settling {
            lowest: bytes,
            lowest_at: Duration::ZERO,
            quiet,
        }
    }

    /// Adds the count at `at`; true once settled.
    pub fn observe(&mut self, at: Duration, bytes: u64) -> bool {
        if bytes.saturating_add(FALL_BYTES_MIN) <= self.lowest {
            self.lowest = bytes;
            self.lowest_at = at;
        }
        at.saturating_sub(self.lowest_at) >= self.quiet
    }
}

/// Bytes the files under `dirs` take on disk (allocated blocks, so sparse and partly written
/// files count as what they hold). Links are not followed; a file deleted while the walk runs
/// counts as gone.
pub fn bytes_on_disk(dirs: &[PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0_u64;
    let mut pending: Vec<PathBuf> = dirs.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total = total.saturating_add(metadata.blocks().saturating_mul(512));
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.filter_map(|entry| entry.ok().map(|entry| entry.path())));
        }
    }
    total
}

/// Deletes `topic` through a plaintext listener at `bootstrap`; an already missing topic is
/// success (an earlier attempt of this cleanup, or a step whose load generator never created it).
pub async fn delete_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(bootstrap, "sluice-bench-cleanup")
        .await
        .context("connect")?;
    let versions = Versions::negotiate(&connection).await?;
    // v1-5 name topics; v6 names them by id or name, which we do not need.
    let version = versions
        .pick(ApiKey::DeleteTopics, VersionRange { min: 1, max: 5 })
        .map_err(anyhow::Error::msg)?;
    let timeout_ms = i32::try_from(DELETE_LIMIT.as_millis()).unwrap_or(i32::MAX);
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.to_owned()))]);
    let answer = connection
        .call_with_timeout(version, &request, DELETE_LIMIT + Duration::from_secs(5))
        .await?
        .body;
    anyhow::ensure!(
        !answer.responses.is_empty(),
        "DeleteTopics {topic}: no result for the topic"
    );
    for result in &answer.responses {
        anyhow::ensure!(
            result.error_code == 0 || result.error_code == UNKNOWN_TOPIC_OR_PARTITION,
            "DeleteTopics {topic}: error {} {:?}",
            result.error_code,
            result.error_message
        );
    }
    Ok(())
}

/// The data directories of target `name` started in `work_dir`: the broker's own directory there
/// (a Sluice agent's data directory, holding the `sluice-file*` targets' store; Kafka's log
/// directory) and the loopback S3 server's directory when it has one.
pub fn data_dirs(name: &str, work_dir: &Path, s3_server_dir: Option<&Path>) -> DataDirs {
    let mut dirs = vec![work_dir.join(name)];
    dirs.extend(s3_server_dir.map(Path::to_path_buf));
    let note = if name == "sluice-external" {
        Some("the external store's bytes are not on this machine and not counted".to_owned())
    } else if name.starts_with("sluice-seaweedfs") {
        Some("SeaweedFS's own directory is not counted".to_owned())
    } else {
        None
    };
    DataDirs { dirs, note }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn each_ladder_step_has_its_own_topic_and_only_the_ladder_cleans_up() {
        let steps = Scenario::Throughput.steps(false).unwrap();
        let topics: std::collections::BTreeSet<String> = (0..steps.len())
            .map(|index| step_topic(Scenario::Throughput, index))
            .collect();
        assert_eq!(topics.len(), steps.len(), "{topics:?}");
        assert_eq!(step_topic(Scenario::Throughput, 3), "bench-throughput-3");
        assert!(cleans_up_steps(Scenario::Throughput));
        for scenario in [Scenario::Fraud, Scenario::Partitions, Scenario::Replay] {
            assert!(!cleans_up_steps(scenario));
            assert!(sluice_agent_env(scenario).is_empty());
            assert!(kafka_env(scenario).is_empty());
        }
    }

    #[test]
    fn the_ladder_shortens_both_brokers_deletion_delays_within_the_settle_period() {
        let sluice = sluice_agent_env(Scenario::Throughput);
        assert!(sluice.contains(&(
            "SLUICE_LOG_SEGMENT_DELETE_DELAY_MS".to_owned(),
            "5000".to_owned()
        )));
        assert!(sluice.contains(&(
            "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS".to_owned(),
            "2000".to_owned()
        )));
        assert_eq!(
            kafka_env(Scenario::Throughput),
            [(
                "RUN_KAFKA_SEGMENT_DELETE_DELAY_MS".to_owned(),
                "5000".to_owned()
            )]
        );
        // A sweep finds the objects, waits out the delay, the next sweep deletes them: all of it
        // must fit in the quiet period, or the cleanup would stop before the first fall.
        let cycle_ms = 2 * SLUICE_GC_INTERVAL_MS + SLUICE_DELETE_DELAY_MS;
        assert!(u128::from(cycle_ms) < SETTLE_QUIET.as_millis());
        assert!(u128::from(KAFKA_SEGMENT_DELETE_DELAY_MS) < SETTLE_QUIET.as_millis());
        assert!(setting("sluice").contains("log_segment_delete_delay_ms 5000"));
        assert!(setting("kafka-tls-scram").contains("log.segment.delete.delay.ms 5000"));
    }

    #[test]
    fn settling_waits_for_a_quiet_period_after_the_last_real_fall() {
        let second = Duration::from_secs(1);
        let mb = 1 << 20;
        let mut settling = Settling::new(100 * mb, 4 * second);
        // Nothing falls at first: not settled before the quiet period has passed.
        assert!(!settling.observe(second, 100 * mb));
        assert!(!settling.observe(3 * second, 100 * mb + 5));
        // The collector deletes: the quiet period starts again from each real fall.
        assert!(!settling.observe(4 * second, 40 * mb));
        assert!(!settling.observe(6 * second, 10 * mb));
        // Small changes do not count as falls.
        assert!(!settling.observe(8 * second, 10 * mb - 1000));
        assert!(!settling.observe(9 * second, 10 * mb + 4096));
        assert!(settling.observe(10 * second, 10 * mb));
    }

    #[test]
    fn bytes_on_disk_counts_files_below_every_directory_and_nothing_after_deletion() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b/c");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let empty = bytes_on_disk(&[a.clone(), root.path().join("b")]);
        std::fs::write(a.join("one"), vec![7_u8; 300_000]).unwrap();
        std::fs::write(b.join("two"), vec![7_u8; 200_000]).unwrap();
        let dirs = [
            a.clone(),
            root.path().join("b"),
            root.path().join("missing"),
        ];
        let full = bytes_on_disk(&dirs);
        assert!(
            full >= empty + 500_000 && full < empty + 600_000,
            "{empty} {full}"
        );
        std::fs::remove_file(a.join("one")).unwrap();
        let after = bytes_on_disk(&dirs);
        assert!(
            after >= empty + 200_000 && after < empty + 300_000,
            "{after}"
        );
    }

    #[test]
    fn data_dirs_name_the_broker_directory_and_the_s3_server() {
        let work = Path::new("/w");
        let dirs = data_dirs("sluice", work, Some(Path::new("/tmp/sluice-s3-x")));
        assert_eq!(
            dirs.dirs,
            [
                PathBuf::from("/w/sluice"),
                PathBuf::from("/tmp/sluice-s3-x")
            ]
        );
        assert!(dirs.note.is_none());
        assert_eq!(data_dirs("kafka", work, None).dirs, [work.join("kafka")]);
        assert!(data_dirs("sluice-external", work, None).note.is_some());
    }

    #[test]
    fn the_cleanup_line_says_what_was_deleted_and_what_is_left() {
        let cleanup = StepCleanup {
            topic: "bench-throughput-2".into(),
            delete_error: None,
            bytes_on_disk_before: Some(2_500_000_000),
            bytes_on_disk_after: Some(12_300_000),
            waited_s: 14.04,
            settled: true,
            note: None,
        };
        assert_eq!(
            cleanup.describe(),
            "topic `bench-throughput-2` deleted; data on disk 2500.0 MB before, 12.3 MB after, \
             14.0 s after the deletion"
        );
        let failed = StepCleanup {
            delete_error: Some("connect: refused".into()),
            bytes_on_disk_before: None,
            bytes_on_disk_after: None,
            settled: false,
            note: Some("not counted".into()),
            ..cleanup
        };
        assert_eq!(
            failed.describe(),
            "topic `bench-throughput-2` NOT deleted (connect: refused) (not counted)"
        );
    }
}
