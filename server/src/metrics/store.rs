//! [`MeteredStore`]: counts, times and classifies every object-store call the agent makes.
//!
//! It wraps the store *below* hedging, so a hedged PUT's second copy is a PUT of its own here,
//! as the store's bill sees it.

use std::fmt::Write;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use sluice_engine::store::{ObjectInfo, ObjectStorage, Op, StoreErrorKind, StoreResult};

use super::Histogram;

/// Error kinds in the order of the per-op table.
const KINDS: [StoreErrorKind; 6] = [
    StoreErrorKind::NotFound,
    StoreErrorKind::AlreadyExists,
    StoreErrorKind::Timeout,
    StoreErrorKind::Unavailable,
    StoreErrorKind::InvalidConfig,
    StoreErrorKind::Other,
];

fn kind_index(kind: StoreErrorKind) -> usize {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KINDS.len() - 1)
}

fn kind_name(kind: StoreErrorKind) -> &'static str {
    match kind {
        StoreErrorKind::NotFound => "not_found",
        StoreErrorKind::AlreadyExists => "already_exists",
        StoreErrorKind::Timeout => "timeout",
        StoreErrorKind::Unavailable => "unavailable",
        StoreErrorKind::InvalidConfig => "invalid_config",
        _ => "other",
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Put => "put",
        Op::Get => "get",
        Op::List => "list",
        Op::Head => "head",
        Op::Delete => "delete",
    }
}

/// Per-operation calls, errors by kind, durations and bytes of one store client.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    calls: [AtomicU64; Op::ALL.len()],
    errors: [[AtomicU64; KINDS.len()]; Op::ALL.len()],
    durations: [Histogram; Op::ALL.len()],
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
    /// GETs of a local directory served from the page cache on a network core (also in `calls`).
    inline_gets: AtomicU64,
    /// Calls failed since the last success (`NotFound` and `AlreadyExists` are answers, not
    /// failures: the store was reached).
    failures_in_a_row: AtomicU64,
}

impl StoreMetrics {
    pub fn failures_in_a_row(&self) -> u64 {
        self.failures_in_a_row.load(Ordering::Relaxed)
    }

    pub fn note_success(&self) {
        self.failures_in_a_row.store(0, Ordering::Relaxed);
    }

    pub fn note_failure(&self) {
        self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
    }

    fn record<T>(&self, op: Op, started: Instant, result: &StoreResult<T>) {
        self.record_outcome(
            op,
            started,
            result.as_ref().map(|_| ()).map_err(|e| e.kind()),
        );
    }

    fn record_outcome(&self, op: Op, started: Instant, result: Result<(), StoreErrorKind>) {
        let index = op.index();
        if let Some(calls) = self.calls.get(index) {
            calls.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(duration) = self.durations.get(index) {
            duration.observe(started.elapsed());
        }
        match result {
            Ok(_) => self.note_success(),
            Err(kind) => {
                if let Some(count) = self
                    .errors
                    .get(index)
                    .and_then(|row| row.get(kind_index(kind)))
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                match kind {
                    StoreErrorKind::NotFound | StoreErrorKind::AlreadyExists => self.note_success(),
                    _ => self.note_failure(),
                }
            }
        }
    }

    /// A GET of `bytes` that a local directory's page cache answered on the calling core
    /// (`PageCacheReads`), without reaching this pool's wrapped store.
    pub fn record_inline_get(&self, started: Instant, bytes: usize) {
        self.record_outcome(Op::Get, started, Ok(()));
        self.get_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.inline_gets.fetch_add(1, Ordering::Relaxed);
    }

    pub fn inline_gets(&self) -> u64 {
        self.inline_gets.load(Ordering::Relaxed)
    }

    pub fn calls(&self, op: Op) -> u64 {
        self.calls
            .get(op.index())
            .map_or(0, |calls| calls.load(Ordering::Relaxed))
    }
}

/// Appends the store families for every pool: each family's `HELP` and `TYPE` once, then its
/// samples for each pool, labelled `pool="{name}"` (the text format allows a family once per
/// exposition; `promtool check metrics` refuses a second `HELP`).
pub fn render_pools(out: &mut String, pools: &[(&str, &StoreMetrics)]) {
    let _ = writeln!(
        out,
        "# HELP sluice_store_requests_total Object-store calls, by client pool and operation.\n# TYPE sluice_store_requests_total counter"
    );
    for (pool, metrics) in pools {
        for op in Op::ALL {
            let _ = writeln!(
                out,
                "sluice_store_requests_total{{pool=\"{pool}\",op=\"{}\"}} {}",
                op_name(op),
                metrics.calls(op)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_store_errors_total Object-store calls that failed, by pool, operation and kind (not_found and already_exists are answers the agent expects at times).\n# TYPE sluice_store_errors_total counter"
    );
    for (pool, metrics) in pools {
        for op in Op::ALL {
            for kind in KINDS {
                let count = metrics
                    .errors
                    .get(op.index())
                    .and_then(|row| row.get(kind_index(kind)))
                    .map_or(0, |count| count.load(Ordering::Relaxed));
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "sluice_store_errors_total{{pool=\"{pool}\",op=\"{}\",kind=\"{}\"}} {count}",
                        op_name(op),
                        kind_name(kind)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_store_request_duration_seconds Object-store call durations, by pool and operation.\n# TYPE sluice_store_request_duration_seconds histogram"
    );
    for (pool, metrics) in pools {
        for op in Op::ALL {
            if let Some(duration) = metrics.durations.get(op.index()) {
                let labels = format!("pool=\"{pool}\",op=\"{}\"", op_name(op));
                duration.render(out, "sluice_store_request_duration_seconds", &labels);
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluice_store_bytes_total Bytes written (put) and read (get) by pool.\n# TYPE sluice_store_bytes_total counter"
    );
    for (pool, metrics) in pools {
        let _ = writeln!(
            out,
            "sluice_store_bytes_total{{pool=\"{pool}\",direction=\"put\"}} {}\nsluice_store_bytes_total{{pool=\"{pool}\",direction=\"get\"}} {}",
            metrics.put_bytes.load(Ordering::Relaxed),
            metrics.get_bytes.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_store_inline_gets_total GETs of a local-directory store served from the page cache on a network core, without the store thread (counted in sluice_store_requests_total too).\n# TYPE sluice_store_inline_gets_total counter"
    );
    for (pool, metrics) in pools {
        let _ = writeln!(
            out,
            "sluice_store_inline_gets_total{{pool=\"{pool}\"}} {}",
            metrics.inline_gets()
        );
    }
}

/// A store that records every call into `metrics` (shared with the endpoint).
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStorage>,
    metrics: Arc<super::Metrics>,
    background: bool,
}

impl MeteredStore {
    /// Records into `metrics.store`, or `metrics.background_store` when `background`.
    pub fn new(
        inner: Arc<dyn ObjectStorage>,
        metrics: Arc<super::Metrics>,
        background: bool,
    ) -> Self {
        Self {
            inner,
            metrics,
            background,
        }
    }

    fn metrics(&self) -> &StoreMetrics {
        if self.background {
            &self.metrics.background_store
        } else {
            &self.metrics.store
        }
    }
}

#[async_trait::async_trait]
impl ObjectStorage for MeteredStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let bytes: usize = payload.iter().map(Bytes::len).sum();
        let started = Instant::now();
        let result = self.inner.put_create(key, payload).await;
        self.metrics().record(Op::Put, started, &result);
        if result.is_ok() {
            self.metrics()
                .put_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        result
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.metrics().record(Op::Get, started, &result);
        if let Ok(bytes) = &result {
            self.metrics()
                .get_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        result
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get_range(key, range).await;
        self.metrics().record(Op::Get, started, &result);
        if let Ok(bytes) = &result {
            self.metrics()
                .get_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        result
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let started = Instant::now();
        let result = self.inner.get_tail(key, len).await;
        self.metrics().record(Op::Get, started, &result);
        if let Ok((bytes, _)) = &result {
            self.metrics()
                .get_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        result
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let started = Instant::now();
        let result = self.inner.head(key).await;
        self.metrics().record(Op::Head, started, &result);
        result
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        let started = Instant::now();
        let result = self.inner.list(prefix, start_after).await;
        self.metrics().record(Op::List, started, &result);
        result
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.metrics().record(Op::Delete, started, &result);
        result
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        let started = Instant::now();
        let results = self.inner.delete_many(keys).await;
        // One bulk call: counted once, failed if any key failed.
        let summary = match results.iter().find_map(|result| result.as_ref().err()) {
            Some(error) => Err(error.kind()),
            None => Ok(()),
        };
        self.metrics().record_outcome(Op::Delete, started, summary);
        results
    }
}
