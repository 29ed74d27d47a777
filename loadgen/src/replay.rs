//! Replay bookkeeping: what a read of a topic's history from its first offset to its end saw, and
//! whether anything is missing. Pure: the Kafka shell feeds it `(partition, offset, value, time)`.
//!
//! Two independent checks, because they catch different faults:
//!
//! - **Offsets.** Each partition is read from its low watermark to the high watermark taken when
//!   the replay started. Offsets must arrive without a hole (`offset_gaps`) and without going
//!   back (`duplicate_offsets`); `records_read` must equal `records_expected`, the sum of
//!   `high - low`. On a non-transactional, non-compacted topic (what the load generator writes)
//!   every offset holds a record, so any hole is loss. A broker that renumbers or skips offsets
//!   fails here.
//! - **Sequences.** Every load-generator record carries its run id and its index in that run's
//!   schedule. Per run, the replay counts distinct sequence numbers, holes between the smallest
//!   and the largest, and duplicates. A broker that returns the right number of offsets with the
//!   wrong bytes (a batch served twice, another partition's data) fails here; the caller compares
//!   `distinct_sequences` with the records the filling run had acknowledged.
//!
//! Limits: sequences are tracked in a bitset up to [`SEQUENCES_TRACKED_MAX`] per run (16 MiB) for
//! at most [`RUNS_TRACKED_MAX`] runs; beyond that records are counted as `untracked` or under
//! `other_runs_records`, never dropped silently.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::options::{BYTES_PER_MB, Settings};
use crate::payload::RecordHeader;

/// Runs whose sequences are checked; records of further runs are only counted.
pub const RUNS_TRACKED_MAX: usize = 64;
/// Largest sequence number tracked per run (2^27: 128 Mi records, a 16 MiB bitset).
pub const SEQUENCES_TRACKED_MAX: u64 = 1 << 27;

/// The offsets a replay reads from one partition: `low..high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionRange {
    /// Partition id.
    pub partition: i32,
    /// First offset (the low watermark when the replay started).
    pub low: i64,
    /// One past the last offset (the high watermark when the replay started).
    pub high: i64,
}

impl PartitionRange {
    /// Records the range holds.
    pub fn len(&self) -> u64 {
        u64::try_from(self.high.saturating_sub(self.low)).unwrap_or(0)
    }

    /// True if there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone)]
struct PartitionProgress {
    range: PartitionRange,
    /// The offset expected next.
    next: i64,
}

impl PartitionProgress {
    fn is_done(&self) -> bool {
        self.next >= self.range.high
    }
}

/// The sequence numbers seen for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSequences {
    records: u64,
    untracked: u64,
    bits: Vec<u64>,
    min: Option<u64>,
    max: u64,
}

impl RunSequences {
    /// Notes one record of the run.
    pub fn observe(&mut self, sequence: u64) {
        self.records += 1;
        if sequence >= SEQUENCES_TRACKED_MAX {
            self.untracked += 1;
            return;
        }
        let word = usize::try_from(sequence / 64).unwrap_or(usize::MAX);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if let Some(bits) = self.bits.get_mut(word) {
            *bits |= 1 << (sequence % 64);
        }
        self.min = Some(self.min.map_or(sequence, |min| min.min(sequence)));
        self.max = self.max.max(sequence);
    }

    /// Adds another reader's view of the same run.
    pub fn merge(&mut self, other: &RunSequences) {
        self.records += other.records;
        self.untracked += other.untracked;
        if self.bits.len() < other.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
            *mine |= theirs;
        }
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = self.max.max(other.max);
    }

    fn result(&self, run_id: u32) -> RunResult {
        let distinct: u64 = self
            .bits
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum();
        let span = self.min.map_or(0, |min| self.max - min + 1);
        RunResult {
            run_id: format!("{run_id:08x}"),
            records: self.records,
            distinct_sequences: distinct,
            sequence_min: self.min,
            sequence_max: self.min.map(|_| self.max),
            sequence_holes: span.saturating_sub(distinct),
            duplicate_sequences: self
                .records
                .saturating_sub(self.untracked)
                .saturating_sub(distinct),
            untracked_records: self.untracked,
        }
    }
}

/// Everything one reader (or, merged, the whole replay) saw.
#[derive(Debug, Clone, Default)]
pub struct ReplayTracker {
    partitions: BTreeMap<i32, PartitionProgress>,
    partitions_left: usize,
    runs: BTreeMap<u32, RunSequences>,
    other_runs_records: u64,
    undecodable: u64,
    records: u64,
    value_bytes: u64,
    gaps: u64,
    duplicates: u64,
    beyond_end: u64,
    unexpected_partition: u64,
    consumer_errors: u64,
    first_record_offset_ns: Option<u64>,
    last_record_offset_ns: u64,
}

impl ReplayTracker {
    /// A tracker for the given partitions, none read yet.
    pub fn new(ranges: &[PartitionRange]) -> Self {
        let partitions: BTreeMap<i32, PartitionProgress> = ranges
            .iter()
            .map(|&range| {
                (
                    range.partition,
                    PartitionProgress {
                        range,
                        next: range.low,
                    },
                )
            })
            .collect();
        let partitions_left = partitions
            .values()
            .filter(|progress| !progress.is_done())
            .count();
        Self {
            partitions,
            partitions_left,
            ..Self::default()
        }
    }

    /// The ranges being read.
    pub fn ranges(&self) -> Vec<PartitionRange> {
        self.partitions
            .values()
            .map(|progress| progress.range)
            .collect()
    }

    /// True once every partition has been read to its end.
    pub fn is_done(&self) -> bool {
        self.partitions_left == 0
    }

    /// Counts a consumer error reported by the client.
    pub fn count_error(&mut self) {
        self.consumer_errors += 1;
    }

    /// Notes one delivered record.
    pub fn observe(
        &mut self,
        partition: i32,
        offset: i64,
        value: Option<&[u8]>,
        now_offset_ns: u64,
    ) {
        let Some(progress) = self.partitions.get_mut(&partition) else {
            self.unexpected_partition += 1;
            return;
        };
        if offset >= progress.range.high {
            // Written after the replay started: not part of the history being read.
            self.beyond_end += 1;
            return;
        }
        if offset < progress.next {
            self.duplicates += 1;
            return;
        }
        self.gaps += u64::try_from(offset - progress.next).unwrap_or(0);
        progress.next = offset + 1;
        if progress.is_done() {
            self.partitions_left = self.partitions_left.saturating_sub(1);
        }
        self.records += 1;
        self.first_record_offset_ns.get_or_insert(now_offset_ns);
        self.last_record_offset_ns = self.last_record_offset_ns.max(now_offset_ns);
        let Some(value) = value else {
            self.undecodable += 1;
            return;
        };
        self.value_bytes += value.len() as u64;
        let Ok(header) = RecordHeader::read_from(value) else {
            self.undecodable += 1;
            return;
        };
        if !self.runs.contains_key(&header.run_id) && self.runs.len() >= RUNS_TRACKED_MAX {
            self.other_runs_records += 1;
            return;
        }
        self.runs
            .entry(header.run_id)
            .or_default()
            .observe(header.sequence);
    }

    /// Adds another reader's tracker (disjoint partitions, possibly the same runs).
    pub fn merge(&mut self, other: ReplayTracker) {
        self.partitions_left += other.partitions_left;
        self.partitions.extend(other.partitions);
        for (run_id, sequences) in &other.runs {
            if !self.runs.contains_key(run_id) && self.runs.len() >= RUNS_TRACKED_MAX {
                self.other_runs_records += sequences.records;
                continue;
            }
            self.runs.entry(*run_id).or_default().merge(sequences);
        }
        self.other_runs_records += other.other_runs_records;
        self.undecodable += other.undecodable;
        self.records += other.records;
        self.value_bytes += other.value_bytes;
        self.gaps += other.gaps;
        self.duplicates += other.duplicates;
        self.beyond_end += other.beyond_end;
        self.unexpected_partition += other.unexpected_partition;
        self.consumer_errors += other.consumer_errors;
        self.first_record_offset_ns =
            match (self.first_record_offset_ns, other.first_record_offset_ns) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        self.last_record_offset_ns = self.last_record_offset_ns.max(other.last_record_offset_ns);
    }
}

/// One run's records as the replay found them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunResult {
    /// The run id, as 8 hex digits.
    pub run_id: String,
    /// Records of the run read.
    pub records: u64,
    /// Distinct sequence numbers among them (compare with the records the run acknowledged).
    pub distinct_sequences: u64,
    /// Smallest sequence seen.
    pub sequence_min: Option<u64>,
    /// Largest sequence seen.
    pub sequence_max: Option<u64>,
    /// Sequences between the smallest and the largest that were never seen.
    pub sequence_holes: u64,
    /// Records whose sequence had been seen already (a producer retry can legitimately write a
    /// record twice without idempotence; a broker serving a batch twice shows up here too).
    pub duplicate_sequences: u64,
    /// Records with sequences above the tracked limit (counted, not checked).
    pub untracked_records: u64,
}

/// Timing of a replay, as offsets of the run's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayTiming {
    /// When the run started (before the consumers connected).
    pub started_offset_ns: u64,
    /// When the readers were told to start reading (after connecting and reading watermarks).
    pub go_offset_ns: u64,
    /// True if the replay timeout ended the read.
    pub timed_out: bool,
    /// True if Ctrl-C ended the read.
    pub interrupted: bool,
}

/// The replay's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayResults {
    /// Partitions read.
    pub partitions: u64,
    /// Records between the low and high watermarks when the replay started.
    pub records_expected: u64,
    /// Records read within those ranges, each offset once.
    pub records_read: u64,
    /// `records_expected - records_read`.
    pub records_missing: u64,
    /// Bytes of record values read.
    pub value_bytes_read: u64,
    /// Seconds from the start to the moment reading began: client creation, metadata and the
    /// watermark lookups.
    pub setup_s: f64,
    /// Milliseconds from the start of reading to the first record (`None`: nothing read).
    pub time_to_first_record_ms: Option<f64>,
    /// Seconds from the start of reading to the last record.
    pub elapsed_s: f64,
    /// Records read per second over `elapsed_s`.
    pub records_per_sec: f64,
    /// MB (1,048,576 bytes) of values read per second over `elapsed_s`.
    pub mb_per_sec: f64,
    /// Offsets skipped inside a partition's range.
    pub offset_gaps: u64,
    /// Records delivered again at an offset already read.
    pub duplicate_offsets: u64,
    /// Records at or past the starting high watermark (written during the replay), ignored.
    pub beyond_end_records: u64,
    /// Records of partitions that were not assigned (a client fault), ignored.
    pub unexpected_partition_records: u64,
    /// Partitions not read to their end.
    pub partitions_incomplete: u64,
    /// Records that are not load-generator records (counted, not checked).
    pub undecodable_records: u64,
    /// Errors the consumer client reported.
    pub consumer_errors: u64,
    /// Per run found on the topic.
    pub runs: Vec<RunResult>,
    /// Records of runs beyond the tracked limit.
    pub other_runs_records: u64,
    /// True if the read ended at the timeout.
    pub timed_out: bool,
    /// True if Ctrl-C ended the read.
    pub interrupted: bool,
    /// Every expected record read once, no offset skipped, every partition to its end.
    pub complete: bool,
}

impl ReplayResults {
    /// Builds the results from the merged tracker; pure.
    pub fn build(tracker: &ReplayTracker, timing: ReplayTiming) -> Self {
        let records_expected: u64 = tracker
            .partitions
            .values()
            .map(|progress| progress.range.len())
            .sum();
        let records_missing = records_expected.saturating_sub(tracker.records);
        let elapsed_ns = if tracker.records > 0 {
            tracker
                .last_record_offset_ns
                .saturating_sub(timing.go_offset_ns)
        } else {
            0
        };
        let elapsed_s = elapsed_ns as f64 / 1e9;
        let per_sec = |amount: f64| {
            if elapsed_s > 0.0 {
                amount / elapsed_s
            } else {
                0.0
            }
        };
        let partitions_incomplete = tracker
            .partitions
            .values()
            .filter(|progress| !progress.is_done())
            .count() as u64;
        Self {
            partitions: tracker.partitions.len() as u64,
            records_expected,
            records_read: tracker.records,
            records_missing,
            value_bytes_read: tracker.value_bytes,
            setup_s: timing.go_offset_ns.saturating_sub(timing.started_offset_ns) as f64 / 1e9,
            time_to_first_record_ms: tracker
                .first_record_offset_ns
                .map(|first| first.saturating_sub(timing.go_offset_ns) as f64 / 1e6),
            elapsed_s,
            records_per_sec: per_sec(tracker.records as f64),
            mb_per_sec: per_sec(tracker.value_bytes as f64 / BYTES_PER_MB),
            offset_gaps: tracker.gaps,
            duplicate_offsets: tracker.duplicates,
            beyond_end_records: tracker.beyond_end,
            unexpected_partition_records: tracker.unexpected_partition,
            partitions_incomplete,
            undecodable_records: tracker.undecodable,
            consumer_errors: tracker.consumer_errors,
            runs: tracker
                .runs
                .iter()
                .map(|(&run_id, sequences)| sequences.result(run_id))
                .collect(),
            other_runs_records: tracker.other_runs_records,
            timed_out: timing.timed_out,
            interrupted: timing.interrupted,
            complete: records_missing == 0 && tracker.gaps == 0 && partitions_incomplete == 0,
        }
    }
}

/// The `summary.json` of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    /// Always "sluice-loadgen".
    pub tool: &'static str,
    /// This crate's version.
    pub version: &'static str,
    /// Always "replay".
    pub mode: &'static str,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// The run's settings.
    pub settings: Settings,
    /// The partitions read and their ranges.
    pub ranges: Vec<PartitionRange>,
    /// What the replay found.
    pub replay: ReplayResults,
}

impl ReplaySummary {
    /// Builds the summary; pure.
    pub fn build(
        settings: &Settings,
        started_at_unix_ms: u64,
        tracker: &ReplayTracker,
        timing: ReplayTiming,
    ) -> Self {
        Self {
            tool: "sluice-loadgen",
            version: env!("CARGO_PKG_VERSION"),
            mode: "replay",
            started_at_unix_ms,
            settings: settings.clone(),
            ranges: tracker.ranges(),
            replay: ReplayResults::build(tracker, timing),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::payload::HEADER_BYTES;

    fn value(run_id: u32, sequence: u64) -> Vec<u8> {
        let mut value = vec![b'A'; HEADER_BYTES + 8];
        assert!(
            RecordHeader {
                run_id,
                intended_unix_ns: 1,
                sequence
            }
            .write_to(&mut value)
        );
        value
    }

    const TIMING: ReplayTiming = ReplayTiming {
        started_offset_ns: 0,
        go_offset_ns: 1_000_000_000,
        timed_out: false,
        interrupted: false,
    };

    fn ranges() -> Vec<PartitionRange> {
        vec![
            PartitionRange {
                partition: 0,
                low: 0,
                high: 3,
            },
            PartitionRange {
                partition: 1,
                low: 10,
                high: 12,
            },
        ]
    }

    #[test]
    fn a_full_read_is_complete_and_timed() {
        let mut tracker = ReplayTracker::new(&ranges());
        for (sequence, (partition, offset)) in [(0, 0), (1, 10), (0, 1), (1, 11), (0, 2)]
            .into_iter()
            .enumerate()
        {
            assert!(!tracker.is_done());
            let sequence = sequence as u64;
            tracker.observe(
                partition,
                offset,
                Some(&value(7, sequence)),
                1_500_000_000 + sequence * 100_000_000,
            );
        }
        assert!(tracker.is_done());
        let results = ReplayResults::build(&tracker, TIMING);
        assert!(results.complete, "{results:?}");
        assert_eq!(
            (
                results.records_expected,
                results.records_read,
                results.records_missing
            ),
            (5, 5, 0)
        );
        assert_eq!(results.value_bytes_read, 5 * 32);
        assert_eq!(results.time_to_first_record_ms, Some(500.0));
        assert!((results.elapsed_s - 0.9).abs() < 1e-9);
        assert!((results.records_per_sec - 5.0 / 0.9).abs() < 1e-9);
        assert_eq!(results.setup_s, 1.0);
        let run = &results.runs[0];
        assert_eq!(run.run_id, "00000007");
        assert_eq!(
            (
                run.records,
                run.distinct_sequences,
                run.sequence_holes,
                run.duplicate_sequences
            ),
            (5, 5, 0, 0)
        );
        assert_eq!((run.sequence_min, run.sequence_max), (Some(0), Some(4)));
    }

    #[test]
    fn gaps_duplicates_and_late_records_are_counted_apart() {
        let mut tracker = ReplayTracker::new(&ranges());
        tracker.observe(0, 0, Some(&value(1, 0)), 1);
        tracker.observe(0, 2, Some(&value(1, 2)), 2); // offset 1 skipped
        tracker.observe(0, 2, Some(&value(1, 2)), 3); // served again
        tracker.observe(0, 3, Some(&value(1, 9)), 4); // past the starting end
        tracker.observe(5, 0, None, 5); // never assigned
        tracker.observe(1, 10, Some(b"not a loadgen record"), 6);
        tracker.count_error();
        let results = ReplayResults::build(&tracker, TIMING);
        assert!(!results.complete);
        assert_eq!(results.offset_gaps, 1);
        assert_eq!(results.duplicate_offsets, 1);
        assert_eq!(results.beyond_end_records, 1);
        assert_eq!(results.unexpected_partition_records, 1);
        assert_eq!(results.undecodable_records, 1);
        assert_eq!(results.consumer_errors, 1);
        assert_eq!(results.records_read, 3);
        assert_eq!(results.records_missing, 2);
        assert_eq!(
            results.partitions_incomplete, 1,
            "partition 1 stopped short; partition 0 ended past its gap"
        );
        assert_eq!(results.runs[0].sequence_holes, 1, "sequence 1 never seen");
    }

    #[test]
    fn readers_merge_into_one_view_of_each_run() {
        let ranges = ranges();
        let (first, second) = ranges.split_at(1);
        let (mut left, mut right) = (ReplayTracker::new(first), ReplayTracker::new(second));
        for offset in 0..3 {
            left.observe(
                0,
                offset,
                Some(&value(3, offset as u64 * 2)),
                10 + offset as u64,
            );
        }
        right.observe(1, 10, Some(&value(3, 1)), 5);
        right.observe(1, 11, Some(&value(3, 1)), 20); // the same sequence twice: a retried produce
        assert!(left.is_done() && right.is_done());
        left.merge(right);
        assert!(left.is_done());
        let results = ReplayResults::build(
            &left,
            ReplayTiming {
                go_offset_ns: 0,
                ..TIMING
            },
        );
        assert!(results.complete);
        let run = &results.runs[0];
        assert_eq!(
            (run.records, run.distinct_sequences, run.duplicate_sequences),
            (5, 4, 1)
        );
        assert_eq!(
            (run.sequence_min, run.sequence_max, run.sequence_holes),
            (Some(0), Some(4), 1)
        );
        assert_eq!(results.time_to_first_record_ms, Some(5e-6));
    }

    #[test]
    fn an_empty_topic_is_complete_at_once_and_limits_hold() {
        let tracker = ReplayTracker::new(&[PartitionRange {
            partition: 0,
            low: 4,
            high: 4,
        }]);
        assert!(tracker.is_done());
        let results = ReplayResults::build(&tracker, TIMING);
        assert!(results.complete);
        assert_eq!(
            (
                results.elapsed_s,
                results.mb_per_sec,
                results.time_to_first_record_ms
            ),
            (0.0, 0.0, None)
        );

        let mut sequences = RunSequences::default();
        sequences.observe(SEQUENCES_TRACKED_MAX);
        sequences.observe(3);
        let run = sequences.result(1);
        assert_eq!(
            (
                run.records,
                run.untracked_records,
                run.distinct_sequences,
                run.duplicate_sequences
            ),
            (2, 1, 1, 0)
        );

        let mut tracker = ReplayTracker::new(&[PartitionRange {
            partition: 0,
            low: 0,
            high: 1_000,
        }]);
        for run_id in 0..(RUNS_TRACKED_MAX as u32 + 3) {
            tracker.observe(0, i64::from(run_id), Some(&value(run_id, 0)), 1);
        }
        let results = ReplayResults::build(&tracker, TIMING);
        assert_eq!(results.runs.len(), RUNS_TRACKED_MAX);
        assert_eq!(results.other_runs_records, 3);
    }
}
