//! Housekeeping on the metadata executor: retention, then garbage collection, every
//! `log_retention_check_interval_ms`.
//!
//! # Why here, and at what priority
//!
//! Retention is a decision about the log (which log start offsets move), so it goes through the
//! log like any command: the state plans it (`MetadataState::retention_commands`, a pure function
//! of the state and the agent's wall clock), and the plan is appended as `DeleteRecords` commands,
//! which every replay then applies identically. Garbage collection reads the state's references
//! and the store's listing, and deletes what the engine's collector says nothing needs
//! (`sluice_engine::log::gc` has the safety argument).
//!
//! The task runs in its own glommio task queue with a small share of the metadata executor, so a
//! round's listing, deletions and bookkeeping yield to the flusher whenever both want the CPU.
//! The two state queries it makes run on the metadata core itself; their cost is bounded by the
//! retained index (a walk over the expiring entries and over the entries at or below the oldest
//! kept checkpoint), once per interval, not per request.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sluice_engine::log::gc::{GarbageCollector, GcCandidates, GcConfig, GcListing, GcStats};
use sluice_engine::metadata::{COMMANDS_PER_ENTRY_MAX, RetentionDefaults};

use super::CoreHandle;
use super::flusher::wall_clock_ms;

/// Share of the metadata executor's CPU the housekeeping queue gets against the flusher's
/// default queue (1,000 shares): a tenth, when both are busy.
pub const HOUSEKEEPING_SHARES: usize = 100;

/// The housekeeping settings (from the agent configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HousekeepingConfig {
    /// Kafka's `log.retention.check.interval.ms`.
    pub check_interval_ms: u64,
    /// Broker-wide retention for topics without overrides.
    pub retention: RetentionDefaults,
    pub gc: GcConfig,
}

/// What one round did, for the log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Partitions whose log start offset retention moved.
    pub partitions_trimmed: usize,
    /// Of those, commands the log refused or could not write (tried again next round).
    pub retention_failures: usize,
    /// Objects listed: checkpoints and log entries.
    pub checkpoints_listed: usize,
    pub entries_listed: usize,
    /// Index entries across every partition after retention.
    pub index_entries: u64,
    pub gc: GcStats,
}

/// Runs rounds until the executor stops. Spawned into its own task queue by the agent.
pub async fn run_housekeeping(core: CoreHandle, config: HousekeepingConfig) {
    let mut collector = GarbageCollector::new(config.gc);
    let started = Instant::now();
    let interval = Duration::from_millis(config.check_interval_ms.max(1));
    loop {
        glommio::timer::sleep(interval).await;
        let monotonic_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match round(
            &core,
            &config,
            &mut collector,
            wall_clock_ms(),
            monotonic_ms,
        )
        .await
        {
            Ok(report) => log_round(&report, collector.pending()),
            Err(message) => {
                tracing::warn!(%message, "housekeeping round failed; the next one tries again");
            }
        }
    }
}

/// One round: retention through the log, then a garbage-collection sweep.
pub async fn round(
    core: &CoreHandle,
    config: &HousekeepingConfig,
    collector: &mut GarbageCollector,
    wall_clock_ms: i64,
    monotonic_ms: u64,
) -> Result<RoundReport, String> {
    let mut report = RoundReport::default();
    let retention = config.retention;
    let commands = core
        .query(move |state| state.retention_commands(wall_clock_ms, &retention))
        .await
        .map_err(|error| error.to_string())?;
    report.partitions_trimmed = commands.len();
    for chunk in commands.chunks(COMMANDS_PER_ENTRY_MAX) {
        let outcomes = core
            .commands(chunk.to_vec())
            .await
            .map_err(|error| error.to_string())?;
        for failure in outcomes.iter().filter_map(|outcome| outcome.as_ref().err()) {
            report.retention_failures += 1;
            tracing::debug!(?failure, "retention command not applied");
        }
    }

    let store = core.store();
    let listing = GcListing::read(store.as_ref())
        .await
        .map_err(|error| format!("listing the store: {error}"))?;
    report.checkpoints_listed = listing.checkpoints.len();
    report.entries_listed = listing.entries.len();
    let referenced = match listing.floor(collector.config()) {
        Some(floor) => core
            .query(move |state| state.referenced_log_seqs_up_to(floor))
            .await
            .map_err(|error| error.to_string())?,
        None => BTreeSet::new(),
    };
    let candidates = GcCandidates::from_listing(&listing, collector.config(), &referenced);
    report.gc = collector
        .sweep(store.as_ref(), &candidates, monotonic_ms)
        .await;
    report.index_entries = core
        .query(|state| state.index_entry_count())
        .await
        .map_err(|error| error.to_string())?;
    Ok(report)
}

fn log_round(report: &RoundReport, pending: usize) {
    let did_something = report.partitions_trimmed > 0
        || report.gc.checkpoints_deleted > 0
        || report.gc.entries_deleted > 0
        || report.gc.delete_errors > 0
        || report.retention_failures > 0;
    if did_something {
        tracing::info!(
            partitions_trimmed = report.partitions_trimmed,
            retention_failures = report.retention_failures,
            entries_deleted = report.gc.entries_deleted,
            checkpoints_deleted = report.gc.checkpoints_deleted,
            delete_errors = report.gc.delete_errors,
            waiting = pending,
            entries_listed = report.entries_listed,
            checkpoints_listed = report.checkpoints_listed,
            index_entries = report.index_entries,
            "housekeeping: retention and garbage collection"
        );
    } else {
        tracing::debug!(
            waiting = pending,
            entries_listed = report.entries_listed,
            checkpoints_listed = report.checkpoints_listed,
            index_entries = report.index_entries,
            "housekeeping: nothing to do"
        );
    }
}
