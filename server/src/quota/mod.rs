//! Client quota enforcement as Kafka does it since KIP-219: measure, answer with
//! `throttle_time_ms`, and stop reading from the connection for that long.
//!
//! The quotas themselves live in the metadata state machine
//! ([`sluice_engine::metadata::quota`]), managed with AlterClientQuotas and DescribeClientQuotas
//! (`protocol/handlers/quotas.rs`). This module decides *how much* a request costs and *how long*
//! its connection waits:
//!
//! - [`QuotaBoard`], one per agent: the newest snapshot of the quotas (an `Arc` of the state's
//!   set), published by the AlterClientQuotas handler after its commands commit and read by the
//!   first request after a start, as `crate::auth::AclBoard` does for ACLs, and read again by one
//!   request a second (a cross-core query), so a change made through another agent of a cluster
//!   is enforced here within a second of this agent applying it from the log.
//! - [`QuotaEnforcer`], one per network core: the rates this core measured, per quota type and
//!   per sharing group (the user and client id the matched quota entity names, Kafka's metric
//!   tags), with Kafka's sampled windows ([`rate`]). Produce counts the request's bytes, Fetch the
//!   response's bytes (a throttled Fetch is answered empty, its bytes taken back, as Kafka does),
//!   and the request quota the time the core spent polling the request's handler (CPU time on the
//!   core, not time waiting for a flush window or the store).
//!
//! **Per core, not shared.** Each core measures the connections it owns and enforces the whole
//! quota on them, the way each Kafka broker enforces the whole quota on the connections it owns.
//! A client whose connections all land on one core (the usual case: a producer or consumer keeps
//! one connection to a broker) is held to its quota exactly; one whose connections are spread over
//! `n` cores can reach `n` × quota at worst, as a Kafka client talking to `n` brokers can. The
//! alternative, a counter shared by the cores, would put a cross-core atomic (or a message) on
//! every throttled request and still not make the quota agent-wide across a cluster. See
//! `docs/quotas.md`.
//!
//! Bounded: a core tracks at most [`RATES_TRACKED_MAX`] rates; idle ones (every sample expired)
//! go first when it is full, then an arbitrary one (that client starts a fresh window, which the
//! ten-window minimum still bounds). Metrics by user and client id are capped at
//! [`METRIC_SERIES_MAX`] series per quota type; the rest are summed under `_other`.

pub mod rate;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use sluice_engine::metadata::QuotaSet;
use sluice_engine::metadata::quota::{QuotaGroup, QuotaKey};

pub use rate::{SampledRate, WindowSettings};

use crate::metadata_core::CoreHandle;

/// Rates one core tracks (see the module docs).
pub const RATES_TRACKED_MAX: usize = 10_000;
/// Metric series (user, client id) per quota type; the rest are summed under `_other`.
pub const METRIC_SERIES_MAX: usize = 100;
/// How often a core adds its local counters to the exported ones (and takes the lock).
const METRICS_PUBLISH_MS: u64 = 1_000;
/// How often the agent's snapshot is read again from the metadata core even without a change
/// made here: a change made through another agent of a cluster reaches this one's state by the
/// log, and its cores within this long.
pub const QUOTAS_REFRESH_MS: u64 = 1_000;

/// The agent's newest snapshot of the client quotas.
#[derive(Debug, Default)]
pub struct QuotaBoard {
    /// One past the log position the snapshot was read at; 0 before the first snapshot.
    version: AtomicU64,
    snapshot: RwLock<Arc<QuotaSet>>,
    /// When (on [`QuotaBoard::clock_ms`]) the snapshot was last read or claimed for reading.
    refreshed_ms: AtomicU64,
    started: std::sync::OnceLock<Instant>,
}

impl QuotaBoard {
    pub fn new() -> QuotaBoard {
        QuotaBoard::default()
    }

    /// Publishes `quotas`, read at `version`, unless a newer snapshot is already there.
    pub fn publish(&self, version: u64, quotas: Arc<QuotaSet>) {
        let Ok(mut snapshot) = self.snapshot.write() else {
            return;
        };
        if version > self.version.load(Ordering::Acquire) {
            *snapshot = quotas;
            self.version.store(version, Ordering::Release);
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> (u64, Arc<QuotaSet>) {
        match self.snapshot.read() {
            Ok(snapshot) => (self.version(), Arc::clone(&snapshot)),
            Err(_) => (0, Arc::new(QuotaSet::new())),
        }
    }

    /// Milliseconds since the board's first use.
    fn clock_ms(&self) -> u64 {
        let started = self.started.get_or_init(Instant::now);
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the caller should read the quotas again now: at most one caller per
    /// [`QUOTAS_REFRESH_MS`] in the whole agent is told yes.
    fn claim_refresh(&self) -> bool {
        let now = self.clock_ms();
        let last = self.refreshed_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= QUOTAS_REFRESH_MS
            && self
                .refreshed_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Reads the quotas from the metadata core and publishes them.
    pub async fn refresh(&self, core: &CoreHandle) {
        self.refreshed_ms.store(self.clock_ms(), Ordering::Relaxed);
        let read = core
            .query(|state| {
                let version = state
                    .last_valid_seq()
                    .map_or(0, |seq| seq.0.saturating_add(1));
                (version.max(1), state.quotas_shared())
            })
            .await;
        match read {
            Ok((version, quotas)) => self.publish(version, quotas),
            Err(error) => tracing::warn!(%error, "cannot read the client quotas"),
        }
    }
}

/// The exported name of a quota type (Kafka's quota types: `Produce`, `Fetch`, `Request`).
fn quota_label(key: QuotaKey) -> &'static str {
    match key {
        QuotaKey::ProducerByteRate => "produce",
        QuotaKey::ConsumerByteRate => "fetch",
        QuotaKey::RequestPercentage => "request",
    }
}

/// What a core adds to the exported counters of one (quota type, group).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counters {
    /// Bytes (byte-rate quotas) or core milliseconds (the request quota) recorded.
    amount: f64,
    throttle_ms: u64,
    throttled: u64,
}

impl Counters {
    fn add(&mut self, other: Counters) {
        self.amount += other.amount;
        self.throttle_ms += other.throttle_ms;
        self.throttled += other.throttled;
    }
}

/// The agent's quota counters for the Prometheus endpoint (see the module docs for the cap).
#[derive(Debug, Default)]
pub struct QuotaMetrics {
    series: Mutex<BTreeMap<(QuotaKey, String, String), Counters>>,
}

const OTHER: &str = "_other";

/// A metric family's value for one series (`None`: not in this family).
type SampleOf = fn(&QuotaKey, &Counters) -> Option<f64>;

impl QuotaMetrics {
    fn add(&self, key: QuotaKey, group: &QuotaGroup, counters: Counters) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let label = (key, group.user.clone(), group.client_id.clone());
        let known = series.contains_key(&label);
        let count = series.keys().filter(|(kind, _, _)| *kind == key).count();
        let label = if known || count < METRIC_SERIES_MAX {
            label
        } else {
            (key, OTHER.to_owned(), OTHER.to_owned())
        };
        series.entry(label).or_default().add(counters);
    }

    /// Appends the quota families in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let Ok(series) = self.series.lock() else {
            return;
        };
        let families: [(&str, &str, SampleOf); 4] = [
            (
                "sluice_quota_bytes_total",
                "Bytes counted against byte-rate quotas (produce: request bytes; fetch: response bytes), by quota type and the user and client id sharing the quota.",
                |key, counters| (*key != QuotaKey::RequestPercentage).then_some(counters.amount),
            ),
            (
                "sluice_quota_request_time_seconds_total",
                "Core time spent on requests of clients with a request quota.",
                |key, counters| {
                    (*key == QuotaKey::RequestPercentage).then_some(counters.amount / 1_000.0)
                },
            ),
            (
                "sluice_quota_throttle_time_seconds_total",
                "Throttle time handed to clients over a quota (their connections were not read for that long).",
                #[expect(clippy::cast_precision_loss, reason = "a metric")]
                |_, counters| Some(counters.throttle_ms as f64 / 1_000.0),
            ),
            (
                "sluice_quota_throttled_responses_total",
                "Responses that carried a throttle time.",
                #[expect(clippy::cast_precision_loss, reason = "a metric")]
                |_, counters| Some(counters.throttled as f64),
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((key, user, client_id), counters) in series.iter() {
                if let Some(value) = value(key, counters) {
                    let _ = writeln!(
                        out,
                        "{name}{{quota=\"{}\",user=\"{}\",client_id=\"{}\"}} {value}",
                        quota_label(*key),
                        escape(user),
                        escape(client_id)
                    );
                }
            }
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One tracked rate and the counters not yet published.
#[derive(Debug, Default)]
struct Tracked {
    rate: SampledRate,
    unpublished: Counters,
    /// `None` until first published (a new rate is published at its first record).
    published_ms: Option<u64>,
}

/// The quota that applies to one request, resolved once and used to record.
#[derive(Debug, Clone)]
pub struct Applied {
    key: QuotaKey,
    group: QuotaGroup,
    limit: f64,
}

/// One network core's quota enforcement. See the module docs.
#[derive(Debug)]
pub struct QuotaEnforcer {
    settings: WindowSettings,
    board: Arc<QuotaBoard>,
    core: CoreHandle,
    metrics: Arc<crate::metrics::Metrics>,
    started: Instant,
    current: RefCell<(u64, Arc<QuotaSet>)>,
    rates: RefCell<HashMap<(QuotaKey, QuotaGroup), Tracked>>,
}

impl QuotaEnforcer {
    pub fn new(
        settings: WindowSettings,
        board: Arc<QuotaBoard>,
        core: CoreHandle,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            settings,
            board,
            core,
            metrics,
            started: Instant::now(),
            current: RefCell::new((0, Arc::new(QuotaSet::new()))),
            rates: RefCell::new(HashMap::new()),
        }
    }

    pub fn board(&self) -> &QuotaBoard {
        &self.board
    }

    /// Milliseconds on this core's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The quotas this core enforces (the board's snapshot; read from the metadata core on the
    /// first request after a start, and again by one request in the agent each
    /// [`QUOTAS_REFRESH_MS`]).
    pub async fn quotas(&self) -> Arc<QuotaSet> {
        let mut version = self.board.version();
        if version == 0 || self.board.claim_refresh() {
            self.board.refresh(&self.core).await;
            version = self.board.version();
        }
        if self.current.borrow().0 != version {
            *self.current.borrow_mut() = self.board.snapshot();
        }
        Arc::clone(&self.current.borrow().1)
    }

    /// The snapshot this core holds, without reading the metadata core (for synchronous callers;
    /// empty until the first request after a start has read it).
    pub fn snapshot(&self) -> Arc<QuotaSet> {
        let version = self.board.version();
        if self.current.borrow().0 != version {
            *self.current.borrow_mut() = self.board.snapshot();
        }
        Arc::clone(&self.current.borrow().1)
    }

    /// The quota of `key` for this user (principal name) and client id, if any.
    pub fn resolve(
        quotas: &QuotaSet,
        key: QuotaKey,
        user: &str,
        client_id: &str,
    ) -> Option<Applied> {
        quotas
            .resolve(key, user, client_id)
            .map(|resolved| Applied {
                key,
                group: resolved.group,
                limit: resolved.limit,
            })
    }

    /// Records `amount` (bytes, or core milliseconds for the request quota) at `now_ms` and
    /// answers the throttle time in milliseconds (0 within the quota).
    pub fn record(&self, applied: &Applied, amount: f64, now_ms: u64) -> u64 {
        let mut rates = self.rates.borrow_mut();
        let id = (applied.key, applied.group.clone());
        if !rates.contains_key(&id) && rates.len() >= RATES_TRACKED_MAX {
            let settings = self.settings;
            rates.retain(|_, tracked| !tracked.rate.is_idle(settings, now_ms));
            if rates.len() >= RATES_TRACKED_MAX
                && let Some(evicted) = rates.keys().next().cloned()
            {
                rates.remove(&evicted);
            }
        }
        let tracked = rates.entry(id).or_default();
        // The request quota is in percent of one core: core milliseconds × 100 / 1,000 per
        // millisecond of window (Kafka's `nanosToPercentage`), so record milliseconds / 10.
        let value = match applied.key {
            QuotaKey::RequestPercentage => amount / 10.0,
            _ => amount,
        };
        let throttle_ms =
            tracked
                .rate
                .record_and_throttle_ms(self.settings, applied.limit, value, now_ms);
        tracked.unpublished.add(Counters {
            amount,
            throttle_ms,
            throttled: u64::from(throttle_ms > 0),
        });
        let due = tracked
            .published_ms
            .is_none_or(|published| now_ms.saturating_sub(published) >= METRICS_PUBLISH_MS);
        if throttle_ms > 0 || due {
            self.metrics
                .quotas
                .add(applied.key, &applied.group, tracked.unpublished);
            tracked.unpublished = Counters::default();
            tracked.published_ms = Some(now_ms);
        }
        throttle_ms
    }

    /// The most bytes the quota allows in one window, Kafka's `getMaxValueInQuotaWindow`:
    /// the quota × (`samples` - 1) × the sample length (at least one sample), at least 1.
    pub fn bytes_in_window_max(&self, applied: &Applied) -> i32 {
        let windows = f64::from(self.settings.samples.saturating_sub(1).max(1));
        let seconds = self.settings.sample_ms as f64 / 1_000.0;
        let bytes = (applied.limit * windows * seconds).floor();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "clamped to the i32 range just before"
        )]
        let bytes = bytes.clamp(1.0, f64::from(i32::MAX)) as i32;
        bytes
    }

    /// Takes `amount` back (a throttled Fetch, answered empty).
    pub fn unrecord(&self, applied: &Applied, amount: f64) {
        if let Some(tracked) = self
            .rates
            .borrow_mut()
            .get_mut(&(applied.key, applied.group.clone()))
        {
            tracked.rate.unrecord(amount);
            tracked.unpublished.amount -= amount;
        }
    }
}

/// The user name Kafka's quotas see: the principal's name without its type (`User:alice` is
/// `alice`; an unauthenticated client is `ANONYMOUS`).
pub fn quota_user(principal: &str) -> &str {
    principal
        .split_once(':')
        .map_or(principal, |(_, name)| name)
}

/// A future's own time: how long its polls took, summed (the time the core spent on it, not the
/// time it waited).
#[derive(Debug)]
pub struct PollTimed<F> {
    inner: F,
    spent: std::time::Duration,
}

impl<F> PollTimed<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            spent: std::time::Duration::ZERO,
        }
    }
}

impl<F: Future + Unpin> Future for PollTimed<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = Instant::now();
        let polled = std::pin::Pin::new(&mut self.inner).poll(context);
        self.spent += started.elapsed();
        polled.map(|output| (output, self.spent))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn quota_user_is_the_principal_name() {
        assert_eq!(quota_user("User:alice"), "alice");
        assert_eq!(quota_user(crate::auth::ANONYMOUS), "ANONYMOUS");
        assert_eq!(quota_user("User:CN=a,O=b"), "CN=a,O=b");
    }

    #[test]
    fn metrics_series_are_capped() {
        let metrics = QuotaMetrics::default();
        for n in 0..(METRIC_SERIES_MAX + 50) {
            let group = QuotaGroup {
                user: format!("user-{n}"),
                client_id: String::new(),
            };
            metrics.add(
                QuotaKey::ProducerByteRate,
                &group,
                Counters {
                    amount: 1.0,
                    throttle_ms: 1,
                    throttled: 1,
                },
            );
        }
        let mut out = String::new();
        metrics.render(&mut out);
        let produce_series = out
            .lines()
            .filter(|line| line.starts_with("sluice_quota_bytes_total{"))
            .count();
        assert_eq!(produce_series, METRIC_SERIES_MAX + 1);
        assert!(out.contains(
            "sluice_quota_bytes_total{quota=\"produce\",user=\"_other\",client_id=\"_other\"} 50"
        ));
    }
}
