//! Sampling the agent from the outside while the load runs: its RSS, its index entries (the
//! `sluice_index_entries` gauge), the newest housekeeping line of its log, the objects in the
//! bucket, and the load generator's per-second P99s.
//!
//! Everything but the gauge is read from files (`/proc`, the logs, the S3 server's directory or
//! the directory store); the gauge is one small HTTP request per sample to the agent's metrics
//! thread, which serves it from an atomic (off the network cores and the metadata executor), so
//! sampling changes what it measures by little more than the harness's own CPU. The bucket is
//! listed on disk, not through the proxy: a LIST would be counted as the agent's traffic.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use serde::Serialize;

use super::parse::{HousekeepingLine, ProgressLine, compaction_jobs_done, metrics_addr, rss_bytes};

/// One sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the soak's load started.
    pub t_s: f64,
    /// 1 before the mid-run restart, 2 after it.
    pub agent_run: u32,
    pub rss_bytes: Option<u64>,
    /// Index entries: the agent's `sluice_index_entries` gauge at the sample; none when the scrape
    /// failed or the agent had no sample yet. Only while no agent of this soak has served the gauge
    /// (an agent without it), the newest housekeeping line's count instead — the same count, but as
    /// of its round, right after a compaction tick: the low point of the sawtooth the ticks make,
    /// so the two are never mixed in one run.
    pub index_entries: Option<u64>,
    /// The newest housekeeping round of this agent run (none before its first round).
    pub housekeeping: Option<HousekeepingLine>,
    /// Object-compaction jobs this agent run has done (its newest "compaction job" line).
    pub compaction_jobs_done: Option<u64>,
    /// Window objects (`log/`): each flush window's data, also its metadata-log entry.
    pub log_objects: u64,
    pub log_bytes: u64,
    /// Objects written by object compaction (`compacted/`), merging window objects.
    pub compacted_objects: u64,
    pub compacted_bytes: u64,
    pub checkpoint_objects: u64,
    pub checkpoint_bytes: u64,
    /// Size of the newest checkpoint in the bucket.
    pub newest_checkpoint_bytes: Option<u64>,
    /// Bytes of checkpoints that appeared since the previous sample.
    pub checkpoint_bytes_new: u64,
    /// Checkpoint bytes written per second, from the checkpoints written in the trailing rate
    /// window (see [`checkpoint_rate`]).
    pub checkpoint_bytes_per_sec: Option<f64>,
    /// Mean of the load generator's per-second acknowledged rates since the previous sample.
    pub acked_per_sec: Option<f64>,
    /// The highest per-second P99 since the previous sample: an upper bound of the window's P99
    /// (no more than 1 % of any second's records were slower than its P99, so no more than 1 %
    /// of the window's were slower than the highest of them).
    pub produce_p99_ms_max: Option<f64>,
    pub end_to_end_p99_ms_max: Option<f64>,
}

impl Sample {
    pub fn bucket_bytes(&self) -> u64 {
        self.log_bytes + self.compacted_bytes + self.checkpoint_bytes
    }

    pub fn bucket_objects(&self) -> u64 {
        self.log_objects + self.compacted_objects + self.checkpoint_objects
    }
}

/// New complete lines of a growing file, from an offset on.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    /// The bytes after the last newline read so far.
    partial: Vec<u8>,
}

impl LogTail {
    pub fn new(path: &Path, offset: u64) -> LogTail {
        LogTail {
            path: path.to_owned(),
            offset,
            partial: Vec::new(),
        }
    }

    /// Lines completed since the last call (none when the file does not exist yet).
    pub fn lines(&mut self) -> Vec<String> {
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&self.path).and_then(|mut file| {
            file.seek(SeekFrom::Start(self.offset))?;
            file.read_to_end(&mut bytes)
        });
        let Ok(count) = read else {
            return Vec::new();
        };
        self.offset += u64::try_from(count).unwrap_or(0);
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|byte| *byte == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Count, bytes and (modified time in Unix seconds, size) of every object under `dir`.
#[derive(Debug, Default)]
struct Listing {
    files: BTreeMap<PathBuf, (f64, u64)>,
}

impl Listing {
    fn read(dir: &Path) -> Listing {
        let mut listing = Listing::default();
        let mut pending = vec![dir.to_owned()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // A file the collector deleted between readdir and stat is simply not counted.
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                if metadata.is_dir() {
                    pending.push(entry.path());
                } else if entry.file_name().as_encoded_bytes().contains(&b'#') {
                    // A directory store's upload being written: `object_store` stages each object
                    // as `<key>#<n>` and links or renames it into place, so it would be counted
                    // twice, or before it is complete. No key the agent writes has a `#`.
                    continue;
                } else {
                    let modified = metadata
                        .modified()
                        .ok()
                        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                        .map_or(0.0, |since| since.as_secs_f64());
                    listing
                        .files
                        .insert(entry.path(), (modified, metadata.len()));
                }
            }
        }
        listing
    }

    fn bytes(&self) -> u64 {
        self.files.values().map(|(_, size)| size).sum()
    }

    fn count(&self) -> u64 {
        u64::try_from(self.files.len()).unwrap_or(u64::MAX)
    }
}

/// Checkpoint bytes written per second: over the checkpoints written in the `window_s` before
/// `now_s` (at least the newest two, whenever they were written), the bytes of all but the
/// first divided by the time from the first to the last. Checkpoints come every
/// `checkpoint_interval_entries` log entries, seconds apart, so bytes counted per sample would
/// be mostly zeros and a spike; this is the steady rate they add up to. `checkpoints` are
/// (written at, bytes), in any order.
pub fn checkpoint_rate(checkpoints: &[(f64, u64)], now_s: f64, window_s: f64) -> Option<f64> {
    let mut sorted = checkpoints.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let in_window = sorted
        .iter()
        .filter(|(written, _)| *written > now_s - window_s)
        .count();
    let take = in_window.max(2);
    let recent = sorted.get(sorted.len().checked_sub(take)?..)?;
    let (first, rest) = recent.split_first()?;
    let last = rest.last()?;
    let span = last.0 - first.0;
    #[expect(
        clippy::cast_precision_loss,
        reason = "checkpoint sizes far below 2^52"
    )]
    let bytes = rest.iter().map(|(_, size)| *size as f64).sum::<f64>();
    (span > 0.0).then(|| bytes / span)
}

/// The sampler's state across samples and across the agent's restarts.
#[derive(Debug)]
pub struct Sampler {
    started: Instant,
    agent_run: u32,
    pid: u32,
    agent_log: LogTail,
    loadgen_log: Option<LogTail>,
    /// Progress lines past this many seconds of the schedule are the drain, not the load.
    loadgen_measured_until_s: f64,
    bucket_dir: PathBuf,
    /// The agent's metrics endpoint: given, or read from this agent run's "agent listening" line.
    metrics: Option<SocketAddr>,
    /// Some sample of this soak read the gauge (from then on the housekeeping line never stands
    /// in for it).
    gauge_seen: bool,
    housekeeping: Option<HousekeepingLine>,
    compaction_jobs_done: Option<u64>,
    /// Every checkpoint seen: path → (written at, bytes).
    checkpoints_seen: BTreeMap<PathBuf, (f64, u64)>,
    rate_window_s: f64,
}

impl Sampler {
    pub fn new(
        started: Instant,
        pid: u32,
        agent_log: &Path,
        bucket_dir: &Path,
        metrics: Option<SocketAddr>,
        rate_window_s: f64,
    ) -> Sampler {
        Sampler {
            started,
            agent_run: 1,
            pid,
            agent_log: LogTail::new(agent_log, 0),
            loadgen_log: None,
            loadgen_measured_until_s: f64::INFINITY,
            bucket_dir: bucket_dir.to_owned(),
            metrics,
            gauge_seen: false,
            housekeeping: None,
            compaction_jobs_done: None,
            checkpoints_seen: BTreeMap::new(),
            rate_window_s,
        }
    }

    /// The agent was restarted: a new process, whose log starts at `log_offset`.
    pub fn restarted(&mut self, pid: u32, log_offset: u64) {
        self.agent_run += 1;
        self.pid = pid;
        self.agent_log = LogTail::new(&self.agent_log.path, log_offset);
        self.housekeeping = None;
        self.compaction_jobs_done = None;
        // The new process names its own endpoint (the agent binds port 0).
        self.metrics = None;
    }

    /// The load generator of the next phase logs to `path`; its schedule (warm-up and measured
    /// window) lasts `schedule_s`.
    pub fn follow_loadgen(&mut self, path: &Path, schedule_s: f64) {
        self.loadgen_log = Some(LogTail::new(path, 0));
        self.loadgen_measured_until_s = schedule_s;
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn sample(&mut self) -> Sample {
        let t_s = self.elapsed_s();
        let rss = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| rss_bytes(&status));
        for line in self.agent_log.lines() {
            if let Some(round) = HousekeepingLine::parse(&line) {
                self.housekeeping = Some(round);
            } else if let Some(address) = metrics_addr(&line) {
                self.metrics = Some(address);
            } else if let Some(jobs) = compaction_jobs_done(&line) {
                self.compaction_jobs_done = Some(jobs);
            }
        }
        let measured_until_s = self.loadgen_measured_until_s;
        let progress: Vec<ProgressLine> = self
            .loadgen_log
            .as_mut()
            .map(LogTail::lines)
            .unwrap_or_default()
            .iter()
            .filter_map(|line| ProgressLine::parse(line))
            .filter(|line| line.measured && line.elapsed_s <= measured_until_s)
            .collect();
        let log = Listing::read(&self.bucket_dir.join(sluice_engine::types::LOG_DIR));
        let compacted = Listing::read(&self.bucket_dir.join(sluice_engine::types::COMPACTED_DIR));
        let checkpoints =
            Listing::read(&self.bucket_dir.join(sluice_engine::types::CHECKPOINT_DIR));
        let mut checkpoint_bytes_new = 0;
        for (path, (written, size)) in &checkpoints.files {
            if self
                .checkpoints_seen
                .insert(path.clone(), (*written, *size))
                .is_none()
            {
                checkpoint_bytes_new += size;
            }
        }
        let now_unix_s = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let seen: Vec<(f64, u64)> = self.checkpoints_seen.values().copied().collect();
        let newest_checkpoint_bytes = checkpoints
            .files
            .values()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, size)| *size);
        let highest = |pick: fn(&ProgressLine) -> Option<f64>| {
            progress.iter().filter_map(pick).reduce(f64::max)
        };
        #[expect(clippy::cast_precision_loss, reason = "a few lines")]
        let acked_per_sec = (!progress.is_empty()).then(|| {
            progress.iter().map(|line| line.acked_per_sec).sum::<f64>() / progress.len() as f64
        });
        let gauge_read = self.metrics.and_then(|address| {
            let exposition = sluice_tests::sluice::scrape(address).ok()?;
            gauge(&exposition, "sluice_index_entries")
        });
        self.gauge_seen |= gauge_read.is_some();
        let index_entries = if self.gauge_seen {
            gauge_read
        } else {
            self.housekeeping.map(|line| line.index_entries)
        };
        Sample {
            t_s,
            agent_run: self.agent_run,
            rss_bytes: rss,
            index_entries,
            housekeeping: self.housekeeping,
            compaction_jobs_done: self.compaction_jobs_done,
            log_objects: log.count(),
            log_bytes: log.bytes(),
            compacted_objects: compacted.count(),
            compacted_bytes: compacted.bytes(),
            checkpoint_objects: checkpoints.count(),
            checkpoint_bytes: checkpoints.bytes(),
            newest_checkpoint_bytes,
            checkpoint_bytes_new,
            checkpoint_bytes_per_sec: checkpoint_rate(&seen, now_unix_s, self.rate_window_s),
            acked_per_sec,
            produce_p99_ms_max: highest(|line| line.produce_p99_ms),
            end_to_end_p99_ms_max: highest(|line| line.end_to_end_p99_ms),
        }
    }
}

/// The value of the unlabelled sample `family` in a Prometheus exposition, if it has one.
pub fn gauge(exposition: &str, family: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(family)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().and_then(|value| {
            // A count: the exposition writes integers.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked to be a non-negative whole number below 2^53"
            )]
            let whole =
                (value >= 0.0 && value.fract() == 0.0 && value < 9.0e15).then_some(value as u64);
            whole
        })
    })
}

/// Files the loopback S3 server (s3s-fs) keeps beside the objects, at its root: one
/// `.bucket-….internal.json` per object written, which its DeleteObject leaves behind. Count and
/// bytes; reported as a note, not as the agent's state.
pub fn server_sidecar_files(data_dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".bucket-"))
        .filter_map(|entry| entry.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .fold((0, 0), |(count, bytes), metadata| {
            (count + 1, bytes + metadata.len())
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_listing_counts_objects_and_not_a_directory_stores_staged_uploads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("00000000000000000001"), b"abc").unwrap();
        std::fs::write(dir.path().join("inner").join("00000000000000000002"), b"de").unwrap();
        std::fs::write(dir.path().join("00000000000000000003#7"), b"staged").unwrap();
        let listing = Listing::read(dir.path());
        assert_eq!(listing.count(), 2, "{listing:?}");
        assert_eq!(listing.bytes(), 5);
    }

    #[test]
    fn a_tail_returns_complete_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let mut tail = LogTail::new(&path, 0);
        assert!(tail.lines().is_empty(), "no file yet");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"one\ntw").unwrap();
        assert_eq!(tail.lines(), vec!["one"]);
        file.write_all(b"o\nthree\n").unwrap();
        assert_eq!(tail.lines(), vec!["two", "three"]);
        assert!(tail.lines().is_empty());
        let mut from_offset = LogTail::new(&path, 4);
        assert_eq!(from_offset.lines(), vec!["two", "three"]);
    }

    #[test]
    fn checkpoint_rate_is_bytes_over_the_span_between_checkpoints() {
        // One 1,000-byte checkpoint every 10 s, the newest at t = 100.
        let checkpoints: Vec<(f64, u64)> = (0..=10).map(|i| (f64::from(i) * 10.0, 1_000)).collect();
        // Window 35 s: the checkpoints at 70, 80, 90, 100 → 3,000 bytes over 30 s.
        let rate = checkpoint_rate(&checkpoints, 100.0, 35.0).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // A window holding one checkpoint still uses the newest two.
        let rate = checkpoint_rate(&checkpoints, 104.0, 5.0).unwrap();
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // Growing checkpoints: the rate follows the sizes written in the window.
        let growing = [(0.0, 1_000), (10.0, 2_000), (20.0, 4_000)];
        let rate = checkpoint_rate(&growing, 20.0, 15.0).unwrap();
        assert!((rate - 400.0).abs() < 1e-9, "{rate}");
        assert_eq!(checkpoint_rate(&[(1.0, 10)], 1.0, 60.0), None);
        assert_eq!(checkpoint_rate(&[], 1.0, 60.0), None);
    }

    #[test]
    fn the_bucket_is_counted_by_directory() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("00000000000000000001"), [0_u8; 100]).unwrap();
        std::fs::write(log.join("00000000000000000002"), [0_u8; 50]).unwrap();
        let checkpoint = dir.path().join("checkpoint");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("00000000000000000002"), [0_u8; 7]).unwrap();
        let compacted = dir.path().join("compacted");
        std::fs::create_dir_all(&compacted).unwrap();
        std::fs::write(compacted.join("00000000000000000003"), [0_u8; 1_000]).unwrap();
        let mut sampler = Sampler::new(
            Instant::now(),
            std::process::id(),
            &dir.path().join("no-log"),
            dir.path(),
            None,
            60.0,
        );
        let first = sampler.sample();
        assert_eq!((first.log_objects, first.log_bytes), (2, 150));
        assert_eq!((first.checkpoint_objects, first.checkpoint_bytes), (1, 7));
        assert_eq!((first.compacted_objects, first.compacted_bytes), (1, 1_000));
        assert_eq!((first.bucket_objects(), first.bucket_bytes()), (4, 1_157));
        assert_eq!(first.checkpoint_bytes_new, 7);
        assert_eq!(first.newest_checkpoint_bytes, Some(7));
        assert!(first.rss_bytes.unwrap() > 0, "this process's RSS");
        assert_eq!(first.housekeeping, None);
        let second = sampler.sample();
        assert_eq!(second.checkpoint_bytes_new, 0, "seen before");
        assert_eq!(second.agent_run, 1);
    }

    #[test]
    fn progress_of_the_warm_up_and_the_drain_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let loadgen_log = dir.path().join("loadgen.log");
        std::fs::write(
            &loadgen_log,
            "[   1.0s warmup] sent 1 acked 1 (9000/s) behind 0 err 0 | produce p50 1.00ms p99 500.00ms max 1.00ms\n\
             [  10.0s run   ] sent 1 acked 1 (5000/s) behind 0 err 0 | produce p50 1.00ms p99 5.00ms max 9.00ms\n\
             [  11.0s run   ] sent 1 acked 1 (4000/s) behind 0 err 0 | produce p50 1.00ms p99 7.00ms max 9.00ms\n\
             [  30.0s run   ] sent 1 acked 1 (10/s) behind 0 err 0 | produce p50 1.00ms p99 99.00ms max 99.00ms\n",
        )
        .unwrap();
        let agent_log = dir.path().join("agent.log");
        std::fs::write(
            &agent_log,
            "2026-12-05T10:00:00Z INFO t: compaction job inputs=2 jobs_done=4\n\
             2026-12-05T10:00:01Z DEBUG t: housekeeping: nothing to do waiting=0 entries_listed=9 checkpoints_listed=1 index_entries=30\n",
        )
        .unwrap();
        let mut sampler = Sampler::new(
            Instant::now(),
            std::process::id(),
            &agent_log,
            dir.path(),
            None,
            60.0,
        );
        sampler.follow_loadgen(&loadgen_log, 20.0);
        let sample = sampler.sample();
        assert_eq!(sample.produce_p99_ms_max, Some(7.0));
        assert_eq!(sample.acked_per_sec, Some(4_500.0));
        assert_eq!(sample.end_to_end_p99_ms_max, None);
        assert_eq!(sample.housekeeping.unwrap().index_entries, 30);
        assert_eq!(sample.compaction_jobs_done, Some(4));
        sampler.restarted(
            std::process::id(),
            std::fs::metadata(&agent_log).unwrap().len(),
        );
        let after = sampler.sample();
        assert_eq!(
            (
                after.agent_run,
                after.housekeeping,
                after.compaction_jobs_done
            ),
            (2, None, None)
        );
    }

    #[test]
    fn the_index_entries_gauge_is_read_from_the_exposition() {
        let exposition = "# HELP sluice_index_entries_x other\nsluice_index_entries_x 7\n\
                          # TYPE sluice_index_entries gauge\nsluice_index_entries 1234\n";
        assert_eq!(gauge(exposition, "sluice_index_entries"), Some(1_234));
        assert_eq!(gauge(exposition, "sluice_log_position"), None);
        assert_eq!(
            gauge("sluice_index_entries -1\n", "sluice_index_entries"),
            None
        );
        assert_eq!(
            gauge("sluice_index_entries 1.5\n", "sluice_index_entries"),
            None
        );
    }

    /// A sample scrapes the metrics endpoint it was given, once per sample.
    #[test]
    fn a_sample_carries_the_gauge_of_the_agents_metrics_endpoint() {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for value in [41_u64, 42] {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert!(line.starts_with("GET /metrics "), "{line}");
                let body =
                    format!("# TYPE sluice_index_entries gauge\nsluice_index_entries {value}\n");
                write!(
                    reader.get_mut(),
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let agent_log = dir.path().join("agent.log");
        std::fs::write(
            &agent_log,
            "2026-12-05T10:00:01Z DEBUG t: housekeeping: nothing to do waiting=0 entries_listed=9 checkpoints_listed=1 index_entries=30\n",
        )
        .unwrap();
        let mut sampler = Sampler::new(
            Instant::now(),
            std::process::id(),
            &agent_log,
            dir.path(),
            None,
            60.0,
        );
        // No endpoint named yet: the housekeeping line stands in.
        assert_eq!(sampler.sample().index_entries, Some(30));
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&agent_log)
            .unwrap();
        writeln!(
            log,
            "2026-12-05T10:00:02Z INFO t: agent listening local_addr=127.0.0.1:1 metrics_addr=Some({address}) metadata_cpu=0"
        )
        .unwrap();
        assert_eq!(sampler.sample().index_entries, Some(41));
        assert_eq!(sampler.sample().index_entries, Some(42));
        server.join().unwrap();
        // The endpoint gone: no value (never the housekeeping line's low point once the gauge
        // was seen), not a failed sample.
        assert_eq!(sampler.sample().index_entries, None);
        // A restarted agent names its new endpoint; until then, nothing.
        sampler.restarted(
            std::process::id(),
            std::fs::metadata(&agent_log).unwrap().len(),
        );
        assert_eq!(sampler.sample().index_entries, None);
    }
}
