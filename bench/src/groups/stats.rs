//! What the simulated members record: latency histograms, error counts and which groups are
//! Stable. Shared by every member task behind plain mutexes — the members run on one client
//! thread, so the locks are uncontended and held for a histogram insert.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::Latency;

/// Latencies are recorded in microseconds, up to a minute, three significant digits.
const LATENCY_US_MAX: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant bounds are valid")
}

fn record(histogram: &mut Histogram<u64>, value: Duration) {
    let us = u64::try_from(value.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_US_MAX);
    let _ = histogram.record(us);
}

/// The calls a member makes, for error counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    FindCoordinator,
    JoinGroup,
    SyncGroup,
    Heartbeat,
    OffsetCommit,
    Connect,
}

/// One phase's measurements (forming, then steady state).
#[derive(Debug)]
pub struct Stats {
    pub heartbeat: Histogram<u64>,
    pub offset_commit: Histogram<u64>,
    pub join_group: Histogram<u64>,
    pub sync_group: Histogram<u64>,
    /// How late a heartbeat or commit was sent after its scheduled instant: the client's own
    /// lag. Large values mean the benchmark, not the broker, shaped the numbers.
    pub send_lag: Histogram<u64>,
    /// Broker error codes and client-side failures, by call: `"Heartbeat: REBALANCE_IN_PROGRESS
    /// (27)"`.
    pub errors: BTreeMap<String, u64>,
    /// JoinGroup requests sent (a rejoin after the group was Stable is a rebalance).
    pub joins: u64,
    /// Partitions whose offsets were committed (4 per commit for a 12-partition topic).
    pub committed_partitions: u64,
    /// When this phase began.
    pub started: Instant,
    /// The slowest offset commit answered in each second of the phase, in ms: shows whether a
    /// tail is spread out or a few stalls (and when, to line up with the broker's log).
    pub commit_worst_ms_by_second: Vec<f64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            heartbeat: histogram(),
            offset_commit: histogram(),
            join_group: histogram(),
            sync_group: histogram(),
            send_lag: histogram(),
            errors: BTreeMap::new(),
            joins: 0,
            committed_partitions: 0,
            started: Instant::now(),
            commit_worst_ms_by_second: Vec::new(),
        }
    }
}

impl Stats {
    pub fn record_latency(&mut self, call: Call, latency: Duration) {
        if call == Call::OffsetCommit {
            let second = usize::try_from(self.started.elapsed().as_secs()).unwrap_or(usize::MAX);
            // Bounded by the phase's length (a few minutes); a runaway index is ignored.
            if second < 3_600 {
                if self.commit_worst_ms_by_second.len() <= second {
                    self.commit_worst_ms_by_second.resize(second + 1, 0.0);
                }
                if let Some(worst) = self.commit_worst_ms_by_second.get_mut(second) {
                    *worst = worst.max(latency.as_secs_f64() * 1000.0);
                }
            }
        }
        let histogram = match call {
            Call::Heartbeat => &mut self.heartbeat,
            Call::OffsetCommit => &mut self.offset_commit,
            Call::JoinGroup => &mut self.join_group,
            Call::SyncGroup => &mut self.sync_group,
            Call::FindCoordinator | Call::Connect => return,
        };
        record(histogram, latency);
    }

    pub fn record_send_lag(&mut self, lag: Duration) {
        record(&mut self.send_lag, lag);
    }

    /// Counts a broker error code (0 is not an error and is not counted).
    pub fn record_code(&mut self, call: Call, code: i16) {
        if code == 0 {
            return;
        }
        let name = kafka_protocol::ResponseError::try_from_code(code)
            .map_or_else(|| "?".to_owned(), |error| java_name(&error.to_string()));
        *self
            .errors
            .entry(format!("{call:?}: {name} ({code})"))
            .or_default() += 1;
    }

    /// Counts a failure that has no broker code (disconnect, timeout, decode error).
    pub fn record_failure(&mut self, call: Call, kind: &str) {
        *self.errors.entry(format!("{call:?}: {kind}")).or_default() += 1;
    }
}

/// `RebalanceInProgress` → `REBALANCE_IN_PROGRESS`, the name Java's `Errors` and the docs use.
fn java_name(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Percentiles of a histogram in milliseconds (`None` when empty).
pub fn latency(histogram: &Histogram<u64>) -> Option<Latency> {
    if histogram.is_empty() {
        return None;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "microsecond values far below 2^52"
    )]
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Latency {
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        count: histogram.len(),
    })
}

/// The current phase's stats; the driver swaps in a fresh one when the steady state starts.
#[derive(Debug, Default)]
pub struct Recorder {
    stats: Mutex<Stats>,
}

impl Recorder {
    pub fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Ends a phase: returns what it recorded and starts an empty one.
    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The highest offset whose commit the broker acknowledged, per (group, partition): what an
/// OffsetFetch after the run must return at least (a commit still in flight when the members
/// stopped may have been applied too, so "at least", not "equal").
#[derive(Debug, Default)]
pub struct Acknowledged {
    offsets: Mutex<HashMap<(usize, i32), i64>>,
}

impl Acknowledged {
    pub fn record(&self, group: usize, partition: i32, offset: i64) {
        let mut offsets = self.offsets.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = offsets.entry((group, partition)).or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// The acknowledged offsets of one group, by partition.
    pub fn of_group(&self, group: usize) -> BTreeMap<i32, i64> {
        self.offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((g, _), _)| *g == group)
            .map(|((_, partition), offset)| (*partition, *offset))
            .collect()
    }
}

/// What reading the committed offsets back found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OffsetCheck {
    pub groups: u64,
    /// Partitions with an acknowledged commit that were read back.
    pub partitions: u64,
    /// Stored offset below the last acknowledged commit (a lost commit).
    pub behind: u64,
    /// No stored offset (or an error) although a commit was acknowledged.
    pub missing: u64,
}

impl OffsetCheck {
    /// Compares one group's stored offsets (`-1`: none) with what was acknowledged.
    pub fn add_group(&mut self, acknowledged: &BTreeMap<i32, i64>, stored: &BTreeMap<i32, i64>) {
        self.groups += 1;
        for (partition, &acked) in acknowledged {
            self.partitions += 1;
            match stored.get(partition).copied() {
                None | Some(-1) => self.missing += 1,
                Some(offset) if offset < acked => self.behind += 1,
                Some(_) => {}
            }
        }
    }

    pub fn all_good(&self) -> bool {
        self.partitions > 0 && self.behind == 0 && self.missing == 0
    }
}

/// Which members of which groups hold an assignment of which generation. A group is Stable when
/// every member completed SyncGroup in the same generation with a non-empty assignment: only
/// then has the leader seen all of them (it assigns 12 partitions over the members it saw).
#[derive(Debug)]
pub struct Board {
    started: Instant,
    inner: Mutex<BoardInner>,
}

#[derive(Debug)]
struct BoardInner {
    /// Per group, per member: the generation it synced, if it currently holds an assignment.
    synced: Vec<Vec<Option<i32>>>,
    /// When each group was first Stable, since `started`.
    first_stable: Vec<Option<Duration>>,
    stable_now: Vec<bool>,
}

impl Board {
    pub fn new(groups: usize, members_per_group: usize, started: Instant) -> Board {
        Board {
            started,
            inner: Mutex::new(BoardInner {
                synced: vec![vec![None; members_per_group]; groups],
                first_stable: vec![None; groups],
                stable_now: vec![false; groups],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A member completed SyncGroup in `generation` (`None`: it is rejoining, or got nothing).
    pub fn set(&self, group: usize, member: usize, generation: Option<i32>) {
        let elapsed = self.started.elapsed();
        let mut inner = self.lock();
        let Some(members) = inner.synced.get_mut(group) else {
            return;
        };
        if let Some(slot) = members.get_mut(member) {
            *slot = generation;
        }
        let stable = members.first().copied().flatten().is_some()
            && members.windows(2).all(|pair| match pair {
                [a, b] => a == b,
                _ => true,
            });
        if let Some(now) = inner.stable_now.get_mut(group) {
            *now = stable;
        }
        if stable && let Some(first @ None) = inner.first_stable.get_mut(group) {
            *first = Some(elapsed);
        }
    }

    /// Groups Stable right now.
    pub fn stable_now(&self) -> usize {
        self.lock().stable_now.iter().filter(|s| **s).count()
    }

    /// Groups that were Stable at least once, and when the last of them first was.
    pub fn first_stable(&self) -> (usize, Option<Duration>) {
        let inner = self.lock();
        let times: Vec<Duration> = inner.first_stable.iter().flatten().copied().collect();
        (times.len(), times.iter().max().copied())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_group_is_stable_only_when_all_members_share_a_generation() {
        let board = Board::new(2, 3, Instant::now());
        board.set(0, 0, Some(1));
        board.set(0, 1, Some(1));
        assert_eq!(board.stable_now(), 0);
        board.set(0, 2, Some(2));
        assert_eq!(board.stable_now(), 0, "generation 1 and 2 mixed");
        board.set(0, 0, Some(2));
        board.set(0, 1, Some(2));
        assert_eq!(board.stable_now(), 1);
        assert_eq!(board.first_stable().0, 1);
        board.set(0, 1, None);
        assert_eq!(board.stable_now(), 0, "a member rejoining");
        assert_eq!(board.first_stable().0, 1, "first time stays recorded");
        board.set(7, 0, Some(1)); // out of range: ignored
    }

    #[test]
    fn read_back_offsets_must_reach_the_acknowledged_ones() {
        let acked = Acknowledged::default();
        acked.record(0, 0, 5);
        acked.record(0, 0, 4); // an older answer arriving late does not lower it
        acked.record(0, 1, 5);
        acked.record(0, 2, 5);
        acked.record(1, 0, 9);
        let group = acked.of_group(0);
        assert_eq!(group, BTreeMap::from([(0, 5), (1, 5), (2, 5)]));
        let mut check = OffsetCheck::default();
        check.add_group(&group, &BTreeMap::from([(0, 5), (1, 6), (2, 4)]));
        assert_eq!((check.partitions, check.behind, check.missing), (3, 1, 0));
        check.add_group(&acked.of_group(1), &BTreeMap::from([(0, -1)]));
        assert_eq!((check.groups, check.missing), (2, 1));
        assert!(!check.all_good());
        let mut fine = OffsetCheck::default();
        fine.add_group(&acked.of_group(1), &BTreeMap::from([(0, 10)]));
        assert!(fine.all_good());
        assert!(
            !OffsetCheck::default().all_good(),
            "nothing checked is not a pass"
        );
    }

    #[test]
    fn errors_are_named_and_counted() {
        let mut stats = Stats::default();
        stats.record_code(Call::Heartbeat, 27);
        stats.record_code(Call::Heartbeat, 27);
        stats.record_code(Call::Heartbeat, 0);
        stats.record_failure(Call::OffsetCommit, "timeout");
        assert_eq!(
            stats.errors.get("Heartbeat: REBALANCE_IN_PROGRESS (27)"),
            Some(&2),
            "{:?}",
            stats.errors
        );
        assert_eq!(stats.errors.get("OffsetCommit: timeout"), Some(&1));
        assert_eq!(stats.errors.len(), 2);
    }

    #[test]
    fn percentiles_in_milliseconds() {
        let mut stats = Stats::default();
        assert!(latency(&stats.heartbeat).is_none());
        for ms in 1..=100 {
            stats.record_latency(Call::Heartbeat, Duration::from_millis(ms));
        }
        let l = latency(&stats.heartbeat).unwrap();
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        stats.record_latency(Call::OffsetCommit, Duration::from_millis(7));
        stats.record_latency(Call::OffsetCommit, Duration::from_millis(30));
        stats.record_latency(Call::OffsetCommit, Duration::from_millis(9));
        assert_eq!(stats.commit_worst_ms_by_second, vec![30.0]);
    }
}
