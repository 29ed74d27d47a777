//! The agent's metrics and health, read by the Prometheus endpoint ([`http`]).
//!
//! Every number is an atomic counter or gauge that the thread doing the work updates with a
//! relaxed add (a few nanoseconds, no lock, no message) and the endpoint's own thread reads when
//! scraped, so exporting costs the hot path nothing else. Each network core writes only its own
//! [`CoreMetrics`]; the block cache, which lives inside a core, is copied into its slot by the
//! core's once-a-second heartbeat, which is also what `/livez` checks to tell a stuck core.
//!
//! Names follow Prometheus conventions (`_total`, `_seconds`, `_bytes`), labelled by `core` and
//! by Kafka's request names (`request="Produce"`) as Kafka's own request metrics are.

pub mod histogram;
pub mod http;
pub mod store;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::ApiKey;
use sluice_engine::read::CacheStats;

pub use histogram::Histogram;
pub use store::{MeteredStore, StoreMetrics};

/// Request metrics are kept for API keys below this (Kafka's are below 100).
pub const API_KEY_SLOTS: usize = 100;
/// A network core whose heartbeat is older than this is reported stuck by `/livez`.
pub const CORE_STUCK_AFTER: Duration = Duration::from_secs(10);
/// How often each core beats (and copies its cache statistics).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How often the metadata executor copies the index's entry count into
/// [`LogMetrics::index_entries`]: one pass over the partitions each time.
pub const INDEX_ENTRIES_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Store calls failing in a row (no success between) after which `/readyz` says the store is
/// unreachable: more than a blip, fewer than a client's patience.
pub const STORE_FAILURES_UNREADY: u64 = 5;

/// Where the agent is in its life, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Recovering and claiming the metadata log; not listening yet.
    Starting = 0,
    Serving = 1,
    Stopping = 2,
}

/// One network core's numbers.
#[derive(Debug)]
pub struct CoreMetrics {
    pub cpu: usize,
    requests: Vec<AtomicU64>,
    durations: Vec<Histogram>,
    /// Requests that made the agent close the connection (malformed, refused).
    pub requests_refused: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_open: AtomicI64,
    pub connections_accepted: AtomicU64,
    /// SASL exchanges that authenticated a client.
    pub sasl_authentications: AtomicU64,
    /// SASL exchanges that ended without authenticating (wrong password, locked-out address,
    /// refused mechanism, a request before authentication, timeout).
    pub sasl_authentications_failed: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_inserted_bytes: AtomicU64,
    cache_evicted_bytes: AtomicU64,
    /// Milliseconds since the metrics were created, at the core's last heartbeat.
    heartbeat_ms: AtomicU64,
}

impl CoreMetrics {
    fn new(cpu: usize) -> Self {
        Self {
            cpu,
            requests: (0..API_KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            durations: (0..API_KEY_SLOTS).map(|_| Histogram::default()).collect(),
            requests_refused: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            sasl_authentications: AtomicU64::new(0),
            sasl_authentications_failed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_inserted_bytes: AtomicU64::new(0),
            cache_evicted_bytes: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(0),
        }
    }

    /// One request of `api_key` answered after `elapsed` (from its frame being read to its
    /// response being ready).
    pub fn request_done(&self, api_key: i16, elapsed: Duration) {
        let Ok(slot) = usize::try_from(api_key) else {
            return;
        };
        if let (Some(count), Some(duration)) = (self.requests.get(slot), self.durations.get(slot)) {
            count.fetch_add(1, Ordering::Relaxed);
            duration.observe(elapsed);
        }
    }

    pub fn requests(&self, api_key: i16) -> u64 {
        usize::try_from(api_key)
            .ok()
            .and_then(|slot| self.requests.get(slot))
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// The core's heartbeat: it is alive now, and its cache stands at `cache`.
    pub fn beat(&self, metrics: &Metrics, cache: CacheStats) {
        self.heartbeat_ms
            .store(metrics.elapsed_ms(), Ordering::Relaxed);
        self.cache_hits.store(cache.hits, Ordering::Relaxed);
        self.cache_misses.store(cache.misses, Ordering::Relaxed);
        self.cache_inserted_bytes
            .store(cache.inserted_bytes, Ordering::Relaxed);
        self.cache_evicted_bytes
            .store(cache.evicted_bytes, Ordering::Relaxed);
    }
}

/// A network core's slot in the agent's metrics, for the core's tasks to hold.
#[derive(Debug, Clone)]
pub struct CoreSlot {
    metrics: std::sync::Arc<Metrics>,
    index: usize,
}

impl CoreSlot {
    pub fn new(metrics: std::sync::Arc<Metrics>, index: usize) -> Self {
        Self { metrics, index }
    }

    /// This core's metrics (`None` only for an index the metrics were not made with).
    pub fn core(&self) -> Option<&CoreMetrics> {
        self.metrics.cores.get(self.index)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The metadata log as the metadata core sees it.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Entries appended (flush windows and command entries), and those that failed.
    pub entries_appended: AtomicU64,
    pub append_failures: AtomicU64,
    /// From sealing a window to its entry being applied (the PUT plus waiting for earlier ones).
    pub append_duration: Histogram,
    /// Produced bytes in the appended windows.
    pub window_bytes: AtomicU64,
    /// Flush windows sealed before their interval ran out: the store was idle (group commit) or
    /// they held 1 MiB (`metadata_core/seal.rs`).
    pub windows_sealed_early: AtomicU64,
    /// Flush windows that waited for the PUT budget (`flush_puts_per_second_max`) past the moment
    /// they wanted to close: when this grows with load, the budget sets the latency.
    pub windows_held_by_budget: AtomicU64,
    /// Bytes of applied compaction jobs inserted into the block cache of the network core that
    /// owns them (`fetch::owners::CompactedOffers`).
    pub compacted_bytes_cached: AtomicU64,
    /// The last applied entry's position, and the writer's epoch.
    pub position: AtomicU64,
    pub epoch: AtomicU64,
    /// Index entries across every partition of the applied state (what memory, checkpoints and
    /// recovery grow with), copied once per [`INDEX_ENTRIES_REFRESH_INTERVAL`].
    pub index_entries: AtomicU64,
    /// [`LogMetrics::index_entries`] was set once: before that (while the log recovers) the
    /// endpoint leaves the sample out rather than say 0.
    pub index_entries_known: AtomicBool,
    /// Another agent claimed the log; this one can no longer write.
    pub fenced: AtomicBool,
}

/// The scheduled allocator trims (`memory::Trimmer`).
#[derive(Debug, Default)]
pub struct AllocatorMetrics {
    pub trims: AtomicU64,
    /// Time spent in the trims, and the longest one: each arena is locked while it is trimmed.
    pub trim_nanos: AtomicU64,
    pub trim_nanos_longest: AtomicU64,
    /// How much the trims lowered the resident memory, as seen around each.
    pub released_bytes: AtomicU64,
}

/// Everything the endpoint exports.
#[derive(Debug)]
pub struct Metrics {
    created: Instant,
    start_time_unix_seconds: f64,
    phase: AtomicU8,
    pub cores: Vec<CoreMetrics>,
    /// The hot path's store client (flush windows, fetch reads, checkpoints).
    pub store: StoreMetrics,
    /// Compaction's and garbage collection's store client.
    pub background_store: StoreMetrics,
    pub log: LogMetrics,
    /// Client quotas: bytes, request time and throttle time by quota type, user and client id.
    pub quotas: crate::quota::QuotaMetrics,
    pub allocator: AllocatorMetrics,
}

impl Metrics {
    /// Metrics for network cores on `cpus`, in the agent's core order.
    pub fn new(cpus: &[usize]) -> Self {
        let start_time_unix_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        Self {
            created: Instant::now(),
            start_time_unix_seconds,
            phase: AtomicU8::new(Phase::Starting as u8),
            cores: cpus.iter().map(|&cpu| CoreMetrics::new(cpu)).collect(),
            store: StoreMetrics::default(),
            background_store: StoreMetrics::default(),
            log: LogMetrics::default(),
            quotas: crate::quota::QuotaMetrics::default(),
            allocator: AllocatorMetrics::default(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Stopping,
        }
    }

    /// `None` when every core has beaten within [`CORE_STUCK_AFTER`] (or the agent is not
    /// serving yet); otherwise which core is stuck and for how long.
    pub fn stuck_core(&self) -> Option<String> {
        if self.phase() != Phase::Serving {
            return None;
        }
        let now = self.elapsed_ms();
        let stuck_after = u64::try_from(CORE_STUCK_AFTER.as_millis()).unwrap_or(u64::MAX);
        self.cores.iter().find_map(|core| {
            let silent_ms = now.saturating_sub(core.heartbeat_ms.load(Ordering::Relaxed));
            (silent_ms > stuck_after).then(|| {
                format!(
                    "network core on cpu {} has not run its heartbeat for {silent_ms} ms",
                    core.cpu
                )
            })
        })
    }

    /// `None` when ready to serve; otherwise why not.
    pub fn unready_reason(&self) -> Option<String> {
        match self.phase() {
            Phase::Starting => return Some("recovering the metadata log".to_owned()),
            Phase::Stopping => return Some("stopping".to_owned()),
            Phase::Serving => {}
        }
        if self.log.fenced.load(Ordering::Relaxed) {
            return Some(
                "fenced: this agent cannot write to the metadata log (another agent claimed it, \
                 or its cluster lease ran out); it serves reads until restarted"
                    .to_owned(),
            );
        }
        let failures = self.store.failures_in_a_row();
        if failures >= STORE_FAILURES_UNREADY {
            return Some(format!(
                "object store unreachable: the last {failures} calls failed"
            ));
        }
        self.stuck_core()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        self.render_cores(&mut out);
        store::render_pools(
            &mut out,
            &[("hot", &self.store), ("background", &self.background_store)],
        );
        self.render_log(&mut out);
        self.quotas.render(&mut out);
        self.render_process(&mut out);
        out
    }

    fn render_cores(&self, out: &mut String) {
        header(
            out,
            "sluice_requests_total",
            "counter",
            "Kafka requests answered, by core and request type.",
        );
        for core in &self.cores {
            for (key, count) in core.requests.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "sluice_requests_total{{core=\"{}\",request=\"{}\"}} {count}",
                        core.cpu,
                        api_name(key)
                    );
                }
            }
        }
        header(
            out,
            "sluice_request_duration_seconds",
            "histogram",
            "From a request's frame being read to its response being ready (a produce includes its flush window and PUT), by core and request type.",
        );
        for core in &self.cores {
            for (key, duration) in core.durations.iter().enumerate() {
                if duration.count() > 0 {
                    let labels = format!("core=\"{}\",request=\"{}\"", core.cpu, api_name(key));
                    duration.render(out, "sluice_request_duration_seconds", &labels);
                }
            }
        }
        let per_core: [PerCoreFamily; 11] = [
            (
                "sluice_requests_refused_total",
                "counter",
                "Requests after which the agent closed the connection (malformed frames, refused requests).",
                |c| load(&c.requests_refused),
            ),
            (
                "sluice_bytes_in_total",
                "counter",
                "Bytes read from clients.",
                |c| load(&c.bytes_in),
            ),
            (
                "sluice_bytes_out_total",
                "counter",
                "Bytes written to clients.",
                |c| load(&c.bytes_out),
            ),
            (
                "sluice_connections",
                "gauge",
                "Open client connections.",
                |c| c.connections_open.load(Ordering::Relaxed),
            ),
            (
                "sluice_connections_accepted_total",
                "counter",
                "Client connections accepted.",
                |c| load(&c.connections_accepted),
            ),
            (
                "sluice_sasl_authentications_total",
                "counter",
                "SASL exchanges that authenticated a client.",
                |c| load(&c.sasl_authentications),
            ),
            (
                "sluice_sasl_authentication_failures_total",
                "counter",
                "SASL exchanges that ended without authenticating (wrong password, locked-out address, refused mechanism or request, timeout).",
                |c| load(&c.sasl_authentications_failed),
            ),
            (
                "sluice_block_cache_hits_total",
                "counter",
                "Fetch reads served from the core's block cache.",
                |c| load(&c.cache_hits),
            ),
            (
                "sluice_block_cache_misses_total",
                "counter",
                "Fetch reads that went to the object store.",
                |c| load(&c.cache_misses),
            ),
            (
                "sluice_block_cache_bytes",
                "gauge",
                "Bytes held by the core's block cache.",
                |c| load(&c.cache_inserted_bytes) - load(&c.cache_evicted_bytes),
            ),
            (
                "sluice_block_cache_evicted_bytes_total",
                "counter",
                "Bytes evicted from the core's block cache.",
                |c| load(&c.cache_evicted_bytes),
            ),
        ];
        for (name, kind, help, value) in per_core {
            header(out, name, kind, help);
            for core in &self.cores {
                let _ = writeln!(out, "{name}{{core=\"{}\"}} {}", core.cpu, value(core));
            }
        }
    }

    fn render_log(&self, out: &mut String) {
        let log = &self.log;
        let gauges: [(&str, &str, &str, i64); 9] = [
            (
                "sluice_log_entries_appended_total",
                "counter",
                "Metadata-log entries appended and applied (flush windows, command entries).",
                load(&log.entries_appended),
            ),
            (
                "sluice_log_append_failures_total",
                "counter",
                "Metadata-log appends that failed (their produces were answered with an error).",
                load(&log.append_failures),
            ),
            (
                "sluice_log_window_bytes_total",
                "counter",
                "Produced bytes in appended flush windows.",
                load(&log.window_bytes),
            ),
            (
                "sluice_log_windows_sealed_early_total",
                "counter",
                "Flush windows sealed before their interval ran out (the store was idle, or 1 MiB).",
                load(&log.windows_sealed_early),
            ),
            (
                "sluice_log_windows_held_by_budget_total",
                "counter",
                "Flush windows that waited for the PUT budget (flush_puts_per_second_max).",
                load(&log.windows_held_by_budget),
            ),
            (
                "sluice_log_compacted_bytes_cached_total",
                "counter",
                "Bytes of applied compaction jobs put into the block cache of their owner core.",
                load(&log.compacted_bytes_cached),
            ),
            (
                "sluice_log_position",
                "gauge",
                "Position of the last applied metadata-log entry.",
                load(&log.position),
            ),
            (
                "sluice_log_epoch",
                "gauge",
                "This agent's writer epoch in the metadata log.",
                load(&log.epoch),
            ),
            (
                "sluice_log_fenced",
                "gauge",
                "1 once another agent has claimed the metadata log.",
                i64::from(log.fenced.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, value) in gauges {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            out,
            "sluice_index_entries",
            "gauge",
            "Index entries across every partition (what memory, checkpoints and recovery grow with), refreshed every second; no sample until the recovered state was first counted.",
        );
        if log.index_entries_known.load(Ordering::Relaxed) {
            let _ = writeln!(out, "sluice_index_entries {}", load(&log.index_entries));
        }
        header(
            out,
            "sluice_log_append_duration_seconds",
            "histogram",
            "From sealing an entry to its being applied (its PUT, and waiting for the entries before it).",
        );
        log.append_duration
            .render(out, "sluice_log_append_duration_seconds", "");
        header(out, "sluice_ready", "gauge", "1 when /readyz answers 200.");
        let _ = writeln!(
            out,
            "sluice_ready {}",
            i32::from(self.unready_reason().is_none())
        );
    }

    fn render_process(&self, out: &mut String) {
        header(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            self.start_time_unix_seconds
        );
        if let Some((rss_bytes, cpu_seconds, threads)) = process_stats() {
            header(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size.",
            );
            let _ = writeln!(out, "process_resident_memory_bytes {rss_bytes}");
            header(
                out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent.",
            );
            let _ = writeln!(out, "process_cpu_seconds_total {cpu_seconds}");
            header(out, "process_threads", "gauge", "Threads of the process.");
            let _ = writeln!(out, "process_threads {threads}");
        }
        self.render_allocator(out);
    }

    fn render_allocator(&self, out: &mut String) {
        let allocator = &self.allocator;
        let seconds = |nanos: &AtomicU64| nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let families: [(&str, &str, &str, String); 4] = [
            (
                "sluice_allocator_trims_total",
                "counter",
                "Scheduled allocator trims (allocator_trim_interval_ms).",
                load(&allocator.trims).to_string(),
            ),
            (
                "sluice_allocator_trim_seconds_total",
                "counter",
                "Time spent in allocator trims (each arena is locked while it is trimmed).",
                seconds(&allocator.trim_nanos).to_string(),
            ),
            (
                "sluice_allocator_trim_longest_seconds",
                "gauge",
                "The longest allocator trim so far.",
                seconds(&allocator.trim_nanos_longest).to_string(),
            ),
            (
                "sluice_allocator_trimmed_bytes_total",
                "counter",
                "Resident memory the allocator trims gave back, as seen around each trim.",
                load(&allocator.released_bytes).to_string(),
            ),
        ];
        for (name, kind, help, value) in families {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// A per-core metric family: name, type, help, and how to read it from a core.
type PerCoreFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CoreMetrics) -> i64,
);

fn load(counter: &AtomicU64) -> i64 {
    i64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Kafka's name of a request type (`Produce`, `Fetch`, …), or its number.
fn api_name(key: usize) -> String {
    i16::try_from(key)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| key.to_string(), |api| format!("{api:?}"))
}

/// Resident bytes, CPU seconds and threads of this process, from /proc (Linux).
pub(crate) fn process_stats() -> Option<(u64, f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let (ticks, page) = (u64::try_from(ticks).ok()?, u64::try_from(page).ok()?);
    let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of stat, threads 20 and rss 24 (1-based, counting
    // pid and comm), so 11, 12, 17 and 21 after the command.
    let cpu_seconds = (number(11)? + number(12)?) as f64 / ticks.max(1) as f64;
    Some((number(21)? * page, cpu_seconds, number(17)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Until the recovered state was first counted the gauge has its HELP and TYPE but no
    /// sample (a scrape during recovery must not read an empty index).
    #[test]
    fn the_index_entries_gauge_has_no_sample_until_it_is_known() {
        let metrics = Metrics::new(&[0]);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE sluice_index_entries gauge\n"),
            "{text}"
        );
        assert!(!text.contains("\nsluice_index_entries "), "{text}");
        metrics.log.index_entries.store(7, Ordering::Relaxed);
        metrics
            .log
            .index_entries_known
            .store(true, Ordering::Relaxed);
        assert!(metrics.render().contains("\nsluice_index_entries 7\n"));
    }

    #[test]
    fn readiness_names_its_reason() {
        let metrics = Metrics::new(&[0, 1]);
        assert_eq!(
            metrics.unready_reason().as_deref(),
            Some("recovering the metadata log")
        );
        metrics.set_phase(Phase::Serving);
        for core in &metrics.cores {
            core.beat(&metrics, CacheStats::default());
        }
        assert_eq!(metrics.unready_reason(), None);
        for _ in 0..STORE_FAILURES_UNREADY {
            metrics.store.note_failure();
        }
        assert!(
            metrics
                .unready_reason()
                .unwrap()
                .contains("object store unreachable"),
            "{:?}",
            metrics.unready_reason()
        );
        metrics.store.note_success();
        assert_eq!(metrics.unready_reason(), None);
        metrics.log.fenced.store(true, Ordering::Relaxed);
        assert!(metrics.unready_reason().unwrap().starts_with("fenced"));
        metrics.set_phase(Phase::Stopping);
        assert_eq!(metrics.unready_reason().as_deref(), Some("stopping"));
    }

    #[test]
    fn requests_render_by_core_and_kafka_name() {
        let metrics = Metrics::new(&[3]);
        metrics.cores[0].request_done(0, Duration::from_millis(4));
        metrics.cores[0].request_done(1, Duration::from_micros(300));
        metrics.cores[0].request_done(-1, Duration::from_micros(300));
        metrics.cores[0].request_done(500, Duration::from_micros(300));
        metrics.cores[0].bytes_in.fetch_add(77, Ordering::Relaxed);
        let text = metrics.render();
        assert!(
            text.contains("sluice_requests_total{core=\"3\",request=\"Produce\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_requests_total{core=\"3\",request=\"Fetch\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sluice_request_duration_seconds_bucket{core=\"3\",request=\"Produce\",le=\"0.005\"} 1\n"), "{text}");
        assert!(
            text.contains("sluice_bytes_in_total{core=\"3\"} 77\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE sluice_request_duration_seconds histogram\n"));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        metrics.allocator.trims.fetch_add(2, Ordering::Relaxed);
        metrics
            .allocator
            .trim_nanos_longest
            .store(1_500_000, Ordering::Relaxed);
        let text = metrics.render();
        assert!(
            text.contains(
                "# TYPE sluice_allocator_trims_total counter\nsluice_allocator_trims_total 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nsluice_allocator_trim_longest_seconds 0.0015\n"),
            "{text}"
        );
        // Every sample line is `name{labels} value` or `name value`, with a number.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let value = line.rsplit_once(' ').unwrap().1;
            assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
