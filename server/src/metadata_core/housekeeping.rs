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

use std::time::{Duration, Instant};

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use futures::future::LocalBoxFuture;
use sluice_engine::compact::key_job::{KeyCompactionCandidate, build_key_compacted};
use sluice_engine::compact::keys::KeyCompactionLimits;
use sluice_engine::compact::{
    CompactionConfig, JobTimings, SourcesAtHand, build_compacted_object_with, source_spans,
};
use sluice_engine::log::data_gc::{DataCollector, DataGcConfig};
use sluice_engine::log::gc::{
    GarbageCollector, GcCandidates, GcConfig, GcListing, GcReferences, GcStats,
};
use sluice_engine::metadata::{COMMANDS_PER_ENTRY_MAX, Command, RetentionDefaults};
use sluice_engine::types::{
    COMPACTED_DIR, LogSeq, TopicPartition, cluster_compacted_object_id,
    cluster_compacted_object_parts, compacted_object_id, parse_compacted_key,
};

use super::cluster_gc::{ClusterHousekeeping, data_sweep, forget_expired_agents};
use super::flusher::wall_clock_ms;
use super::off_core::off_core;
use super::{CommandFailure, CoreHandle, SwapDeadline};

/// Share of the metadata executor's CPU the housekeeping queue gets against the flusher's
/// default queue (1,000 shares): a tenth, when both are busy.
pub const HOUSEKEEPING_SHARES: usize = 100;

/// Compaction jobs one tick runs at most (each merges up to the target size), so that a backlog
/// is worked off in steps that leave the executor to the flusher in between.
pub const COMPACTION_JOBS_PER_TICK_MAX: usize = 8;

/// The housekeeping settings (from the agent configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HousekeepingConfig {
    /// Kafka's `log.retention.check.interval.ms`.
    pub check_interval_ms: u64,
    /// How often compaction looks for work; 0 turns it off.
    pub compaction_interval_ms: u64,
    pub compaction: CompactionConfig,
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
    /// In a cluster: whether this agent was the collector (the others skip the round).
    pub collector: bool,
    /// A cluster's window objects listed, referenced, and unreferenced but still waiting out the
    /// record grace (`log::data_gc`).
    pub data_listed: usize,
    pub data_referenced: usize,
    pub data_waiting: usize,
}

/// Runs until the executor stops: compaction every `compaction_interval_ms`, retention and
/// garbage collection every `check_interval_ms`, one after the other (never a sweep while a
/// compaction job is between its PUT and its swap). Spawned into its own task queue.
///
/// In a cluster (`cluster`), only the collector ([`super::cluster_gc`]) runs retention and
/// garbage collection, and its sweeps also collect the agents' window objects (`data/`) and the
/// compacted objects the agents' compactors named by token, by the same rule. Every agent
/// compacts the partitions it owns ([`Compactor`]).
pub async fn run_housekeeping(
    core: CoreHandle,
    config: HousekeepingConfig,
    cluster: Option<(ClusterHousekeeping, DataGcConfig)>,
    cache_feed: Option<CacheFeed>,
) {
    let mut collector = GarbageCollector::new(config.gc);
    let mut data = cluster
        .as_ref()
        .map(|(cluster, data_gc)| (cluster.clone(), DataCollector::new(*data_gc)));
    let mut compactor = Compactor {
        cache_feed,
        ..Compactor::default()
    };
    let started = Instant::now();
    let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut schedule = Schedule::new(&config);
    loop {
        glommio::timer::sleep(Duration::from_millis(schedule.sleep_ms())).await;
        if schedule.compaction_due(elapsed_ms())
            && compactor
                .tick(
                    &core,
                    &config.compaction,
                    &config.retention,
                    data.as_ref().map(|(cluster, _)| cluster),
                )
                .await
        {
            // The index is at its smallest now: the time for a checkpoint (an agent alone's,
            // once enough entries were applied since the last one).
            let _ = core.compaction_swapped().await;
        }
        if !schedule.round_due(elapsed_ms()) {
            continue;
        }
        if let Some((cluster, _)) = &data
            && !cluster.is_collector()
        {
            tracing::debug!("housekeeping: another agent collects");
            continue;
        }
        match round(
            &core,
            &config,
            &mut collector,
            data.as_mut()
                .map(|(cluster, data)| (&*cluster, data, started)),
            wall_clock_ms(),
            elapsed_ms(),
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

/// When compaction ticks and when retention and garbage collection run. The loop wakes every
/// `min(compaction_interval_ms, check_interval_ms)` after the previous wake-up's work ended (so
/// a long tick or round is always followed by a whole sleep: a slow store is not listed back to
/// back); at each wake-up compaction ticks when `compaction_interval_ms` has passed since its
/// previous tick began (never when 0), then the round runs when `check_interval_ms` has passed
/// since its previous one began. Equal intervals (the soak's) keep both in one wake-up, in step.
/// One used to tick compaction at every wake-up, so it ran at the check interval when that was
/// the shorter. Milliseconds since the housekeeping started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    compaction_interval_ms: u64,
    check_interval_ms: u64,
    next_compaction_ms: Option<u64>,
    next_round_ms: u64,
}

impl Schedule {
    fn new(config: &HousekeepingConfig) -> Schedule {
        let check_interval_ms = config.check_interval_ms.max(1);
        let compaction_interval_ms = config.compaction_interval_ms;
        Schedule {
            compaction_interval_ms,
            check_interval_ms,
            next_compaction_ms: (compaction_interval_ms > 0).then_some(compaction_interval_ms),
            next_round_ms: check_interval_ms,
        }
    }

    /// How long the loop sleeps after each wake-up's work (at least 1 ms).
    fn sleep_ms(&self) -> u64 {
        match self.compaction_interval_ms {
            0 => self.check_interval_ms,
            compaction => compaction.min(self.check_interval_ms),
        }
        .max(1)
    }

    /// Whether a compaction tick is due at `now_ms`; if so, the next one is an interval after
    /// `now_ms` (checked at the wake-ups, which are at least a sleep apart).
    fn compaction_due(&mut self, now_ms: u64) -> bool {
        match self.next_compaction_ms {
            Some(next) if now_ms >= next => {
                self.next_compaction_ms = Some(now_ms.saturating_add(self.compaction_interval_ms));
                true
            }
            _ => false,
        }
    }

    /// Whether a retention and collection round is due at `now_ms`; if so, the next one is an
    /// interval after `now_ms`.
    fn round_due(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_round_ms {
            return false;
        }
        self.next_round_ms = now_ms.saturating_add(self.check_interval_ms);
        true
    }
}

/// The bytes of one job's applied swaps, for the block cache: the compacted object, and for each
/// range it now serves, the entry's first byte (with the object it names the entry's owner core)
/// and its batch bytes by their offset in the object.
#[derive(Debug)]
pub struct CompactedBlocks {
    pub seq: LogSeq,
    pub entries: Vec<(u64, Vec<(u64, Bytes)>)>,
}

/// [`CacheFeed::lookup`]: the spans a job needs, answered with those some cache holds.
pub type SourceLookup = Arc<
    dyn Fn(BTreeMap<LogSeq, Range<u64>>) -> LocalBoxFuture<'static, SourcesAtHand> + Send + Sync,
>;

/// Where the compactor hands [`CompactedBlocks`] once a swap is applied: the agent gives each
/// entry to the network core that owns it, so a consumer replaying just-compacted data reads it
/// from memory, as it would have read the window objects the swap replaced. Called on the
/// metadata executor: it must not block (a full core drops the offer).
///
/// And where a job looks for its sources first: the window objects a job merges were written
/// through to the caches when they were committed, and while they are still there the job takes
/// them from memory instead of GETting them again.
#[derive(Clone)]
pub struct CacheFeed {
    /// Returns the bytes it could queue (the rest is dropped).
    pub offer: Arc<dyn Fn(CompactedBlocks) -> u64 + Send + Sync>,
    pub lookup: SourceLookup,
}

impl std::fmt::Debug for CacheFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheFeed")
    }
}

/// The pieces of each applied range (`pieces` in object order, not overlapping), trimmed to
/// it: a piece may run across two ranges (two partitions' batches next to each other in one
/// source), and each range's entry is cached on its own owner.
fn blocks_of(seq: LogSeq, applied: &[Range<u64>], pieces: &[(u64, Bytes)]) -> CompactedBlocks {
    let entries = applied
        .iter()
        .map(|range| {
            // The first piece that ends after the range starts.
            let first = pieces.partition_point(|(at, bytes)| {
                at.saturating_add(bytes.len() as u64) <= range.start
            });
            let inside = pieces
                .get(first..)
                .unwrap_or_default()
                .iter()
                .take_while(|(at, _)| *at < range.end)
                .filter_map(|(at, bytes)| {
                    let end = at.saturating_add(bytes.len() as u64);
                    let (from, to) = ((*at).max(range.start), end.min(range.end));
                    let slice = bytes
                        .get(usize::try_from(from - at).ok()?..usize::try_from(to - at).ok()?)?;
                    (!slice.is_empty()).then(|| (from, bytes.slice_ref(slice)))
                })
                .collect();
            (range.start, inside)
        })
        .filter(|(_, inside): &(u64, Vec<(u64, Bytes)>)| !inside.is_empty())
        .collect();
    CompactedBlocks { seq, entries }
}

/// How the compactor names its objects: by writer epoch (an agent alone) or, in a cluster, by
/// its incarnation's token (the agents share the epoch; `docs/cluster.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    Epoch(u64),
    Token(u32),
}

/// The compactor's memory: which job number comes next under this writer epoch (or token), and
/// how far key compaction has cleaned each partition of a compacted topic (lost on restart: then
/// every such partition is cleaned once more, which is correct, only redundant).
///
/// # In a cluster
///
/// Each agent compacts the partitions it owns ([`ClusterHousekeeping::partition_owner_test`]),
/// names its objects by its incarnation's token (read from the log before each job; a rejoin
/// makes a new one), and swaps them in with [`CoreHandle::commands_with_deadline`]: the swap is
/// not submitted once a lease has passed since its object's PUT started, the window carrying it
/// does not send its record after that either, and only the incarnation that named the object
/// may send it — a job of the old token that finishes after a rejoin is refused, and its object
/// left to the collector. A token met again (a new incarnation drew an old one's whose objects
/// still exist) continues after that token's highest job number in `compacted/`; a key that
/// exists anyway is refused by the create-only PUT and fails the job, never the index.
#[derive(Debug, Default)]
pub struct Compactor {
    naming: Option<Naming>,
    next_job: u32,
    clean_end_offsets: HashMap<TopicPartition, u64>,
    /// Per partition, the earliest delete horizon of a batch the last job left with tombstones:
    /// once the clock passes it, the partition is cleaned again without new records.
    delete_horizons_ms: HashMap<TopicPartition, i64>,
    /// Where applied jobs' bytes go (`None`: nowhere; they are read from the store on demand).
    pub cache_feed: Option<CacheFeed>,
    /// Totals since start, for the log.
    pub jobs_done: u64,
    pub bytes_written: u64,
    pub swaps_applied: u64,
    pub swaps_rejected: u64,
}

/// What one compaction job did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobReport {
    pub inputs: usize,
    pub ranges: usize,
    pub bytes: u64,
    pub objects_read: usize,
    /// Sources taken from the block caches instead of the store.
    pub objects_at_hand: usize,
    pub swaps_applied: usize,
    pub swaps_rejected: usize,
    pub timings: JobTimings,
    /// The swap's round trip through the metadata log.
    pub swap_ms: f64,
    /// Bytes queued for the owners' block caches ([`CacheFeed`]).
    pub bytes_cached: u64,
}

impl Compactor {
    /// Runs jobs until the plan is empty or [`COMPACTION_JOBS_PER_TICK_MAX`] ran. In a cluster
    /// (`cluster`) only on the partitions this agent owns, and not while its log is stopped.
    /// Says whether any swap was applied.
    pub async fn tick(
        &mut self,
        core: &CoreHandle,
        config: &CompactionConfig,
        retention: &RetentionDefaults,
        cluster: Option<&ClusterHousekeeping>,
    ) -> bool {
        let swaps_before = self.swaps_applied;
        self.run_jobs(core, config, retention, cluster).await;
        self.swaps_applied > swaps_before
    }

    async fn run_jobs(
        &mut self,
        core: &CoreHandle,
        config: &CompactionConfig,
        retention: &RetentionDefaults,
        cluster: Option<&ClusterHousekeeping>,
    ) {
        let key_jobs = match self.key_jobs(core, config, cluster).await {
            Ok(jobs) => jobs,
            Err(message) => {
                tracing::warn!(%message, "key compaction failed; planned again next tick");
                COMPACTION_JOBS_PER_TICK_MAX
            }
        };
        for _ in key_jobs..COMPACTION_JOBS_PER_TICK_MAX {
            match self.job(core, config, retention, cluster).await {
                Ok(Some(report)) => {
                    tracing::info!(
                        inputs = report.inputs,
                        partitions = report.ranges,
                        bytes = report.bytes,
                        objects_read = report.objects_read,
                        objects_at_hand = report.objects_at_hand,
                        swaps_applied = report.swaps_applied,
                        swaps_rejected = report.swaps_rejected,
                        read_ms = report.timings.read_ms.round(),
                        build_ms = report.timings.build_ms.round(),
                        put_ms = report.timings.put_ms.round(),
                        swap_ms = report.swap_ms.round(),
                        bytes_cached = report.bytes_cached,
                        jobs_done = self.jobs_done,
                        "compaction job"
                    );
                }
                Ok(None) => return,
                Err(message) => {
                    tracing::warn!(%message, "compaction job failed; planned again next tick");
                    return;
                }
            }
        }
    }

    /// Chooses how this job names its objects: by `epoch` (an agent alone), or by the cluster
    /// log's incarnation token. `None` in a cluster whose log is stopped (nothing is compacted
    /// until it rejoins). A token not used before continues after its highest job in
    /// `compacted/` (one listing per new token).
    async fn naming(
        &mut self,
        core: &CoreHandle,
        cluster: bool,
        epoch: u64,
    ) -> Result<Option<Naming>, String> {
        let naming = if cluster {
            match core
                .incarnation_token()
                .await
                .map_err(|error| error.to_string())?
            {
                Some(token) => Naming::Token(token),
                None => return Ok(None),
            }
        } else {
            Naming::Epoch(epoch)
        };
        if self.naming != Some(naming) {
            self.next_job = match naming {
                Naming::Epoch(_) => 0,
                Naming::Token(token) => first_free_job(core, token).await?,
            };
            self.naming = Some(naming);
        }
        Ok(Some(naming))
    }

    /// The next compacted object id under `naming` (chosen by [`Compactor::naming`]).
    fn next_id(&mut self, naming: Naming) -> Option<LogSeq> {
        if self.naming != Some(naming) {
            return None;
        }
        let job = self.next_job;
        self.next_job = job.checked_add(1)?;
        Some(match naming {
            Naming::Epoch(epoch) => compacted_object_id(epoch, job),
            Naming::Token(token) => cluster_compacted_object_id(token, job),
        })
    }

    /// Key-compacts the partitions of compacted topics that are due: half or more of their
    /// cleanable bytes not yet cleaned (Kafka's default `min.cleanable.dirty.ratio`), or a record
    /// older than `max.compaction.lag.ms` not yet cleaned. Returns the jobs run.
    async fn key_jobs(
        &mut self,
        core: &CoreHandle,
        config: &CompactionConfig,
        cluster: Option<&ClusterHousekeeping>,
    ) -> Result<usize, String> {
        let now_ms = wall_clock_ms();
        let input_bytes_max = config.key_input_bytes_max;
        let owns = owner_test(cluster);
        let (candidates, epoch) = core
            .query(move |state| {
                let mut candidates = state.key_compaction_candidates(now_ms, input_bytes_max);
                candidates.retain(|candidate| {
                    state
                        .topic(candidate.tp.topic_id)
                        .is_some_and(|topic| owns(topic.name(), candidate.tp.partition))
                });
                (candidates, state.writer_epoch())
            })
            .await
            .map_err(|error| error.to_string())?;

        let limits = KeyCompactionLimits {
            key_bytes_max: config.key_map_bytes_max,
            ..KeyCompactionLimits::default()
        };
        let mut jobs = 0;
        // What the compactor remembers is bounded by the partitions it may clean now: a deleted
        // topic's partitions (or one with nothing cleanable) are forgotten; forgetting only makes
        // the next job on that partition redundant, never wrong.
        let current: std::collections::HashSet<TopicPartition> =
            candidates.iter().map(|candidate| candidate.tp).collect();
        self.clean_end_offsets.retain(|tp, _| current.contains(tp));
        self.delete_horizons_ms.retain(|tp, _| current.contains(tp));
        if candidates.is_empty() {
            return Ok(0);
        }
        let Some(naming) = self.naming(core, cluster.is_some(), epoch).await? else {
            return Ok(0);
        };
        for candidate in candidates {
            if jobs >= COMPACTION_JOBS_PER_TICK_MAX {
                break;
            }
            let clean_end = self
                .clean_end_offsets
                .get(&candidate.tp)
                .copied()
                .unwrap_or(0);
            let tombstone_due = self
                .delete_horizons_ms
                .get(&candidate.tp)
                .is_some_and(|horizon_ms| *horizon_ms <= candidate.now_ms);
            if !tombstone_due && !key_compaction_due(&candidate, clean_end) {
                continue;
            }
            jobs += 1;
            // Ids for every object the job may write: its output is at most its input, in pieces
            // of about the target size.
            let input_bytes: u64 = candidate.entries.iter().map(|entry| entry.byte_len).sum();
            let pieces_max = input_bytes / config.object_bytes_target.max(1) + 2;
            let ids: Vec<LogSeq> = (0..pieces_max)
                .map_while(|_| self.next_id(naming))
                .collect();
            let store = Arc::clone(core.background_store());
            let (job, object_bytes_target) = (candidate.clone(), config.object_bytes_target);
            let compacted = off_core("sluice-compaction", async move {
                let mut ids = ids.into_iter();
                build_key_compacted(
                    store.as_ref(),
                    &job,
                    object_bytes_target,
                    &limits,
                    epoch,
                    wall_clock_ms(),
                    move || ids.next(),
                )
                .await
            })
            .await?
            .map_err(|error| error.to_string())?;
            let end_offset = candidate.entries.last().map_or(0, |entry| entry.end_offset);
            let deadline = match (naming, compacted.first_put_started, cluster) {
                (Naming::Token(token), Some(put_started), Some(cluster)) => Some(SwapDeadline {
                    send_by: put_started + Duration::from_millis(cluster.lease_ms),
                    token,
                }),
                _ => None,
            };
            let applied = swap(core, vec![compacted.swap], deadline)
                .await?
                .into_iter()
                .all(|outcome| outcome.is_ok());
            if applied {
                self.clean_end_offsets.insert(candidate.tp, end_offset);
                match compacted.stats.next_delete_horizon_ms {
                    Some(horizon_ms) => self.delete_horizons_ms.insert(candidate.tp, horizon_ms),
                    None => self.delete_horizons_ms.remove(&candidate.tp),
                };
                self.jobs_done += 1;
                self.swaps_applied += 1;
                self.bytes_written += compacted.bytes_written;
            } else {
                self.swaps_rejected += 1;
            }
            tracing::info!(
                tp = %candidate.tp,
                applied,
                entries = candidate.entries.len(),
                end_offset,
                bytes_read = compacted.bytes_read,
                bytes_written = compacted.bytes_written,
                objects = compacted.objects.len(),
                records_read = compacted.stats.records_read,
                records_kept = compacted.stats.records_kept,
                superseded = compacted.stats.records_superseded,
                tombstones_removed = compacted.stats.tombstones_removed,
                distinct_keys = compacted.stats.distinct_keys,
                "key compaction job"
            );
        }
        Ok(jobs)
    }

    /// Plans, builds, writes and swaps one job. `None` when there is nothing to merge.
    pub async fn job(
        &mut self,
        core: &CoreHandle,
        config: &CompactionConfig,
        retention: &RetentionDefaults,
        cluster: Option<&ClusterHousekeeping>,
    ) -> Result<Option<JobReport>, String> {
        let (config, retention) = (*config, *retention);
        let owns = owner_test(cluster);
        let (plan, epoch) = core
            .query(move |state| {
                (
                    state.compaction_plan_of(&config, &retention, wall_clock_ms(), owns),
                    state.writer_epoch(),
                )
            })
            .await
            .map_err(|error| error.to_string())?;
        if plan.is_empty() {
            return Ok(None);
        }
        let Some(naming) = self.naming(core, cluster.is_some(), epoch).await? else {
            return Ok(None);
        };
        let id = self
            .next_id(naming)
            .ok_or("compaction job numbers of this writer epoch (or token) are used up")?;
        let at_hand = match &self.cache_feed {
            Some(feed) => (feed.lookup)(source_spans(&plan)).await,
            None => SourcesAtHand::new(),
        };
        let store = Arc::clone(core.background_store());
        let job = plan.clone();
        let object = off_core("sluice-compaction", async move {
            build_compacted_object_with(store.as_ref(), &job, id, epoch, wall_clock_ms(), at_hand)
                .await
        })
        .await?
        .map_err(|error| error.to_string())?;
        let mut report = JobReport {
            inputs: plan.iter().map(|range| range.entries.len()).sum(),
            ranges: plan.len(),
            bytes: object.bytes,
            objects_read: object.objects_read,
            objects_at_hand: object.objects_at_hand,
            timings: object.timings,
            ..JobReport::default()
        };
        let deadline = match (naming, cluster) {
            (Naming::Token(token), Some(cluster)) => Some(SwapDeadline {
                send_by: object.put_started + Duration::from_millis(cluster.lease_ms),
                token,
            }),
            _ => None,
        };
        let swap_started = Instant::now();
        let mut applied = Vec::new();
        for chunk in object.swap.chunks(COMMANDS_PER_ENTRY_MAX) {
            let outcomes = swap(core, chunk.to_vec(), deadline).await?;
            for (command, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        report.swaps_applied += 1;
                        if let Command::ReplaceIndexRange { swap } = command {
                            applied.extend(
                                swap.pieces
                                    .iter()
                                    .filter(|piece| piece.object == object.id)
                                    .map(|piece| {
                                        piece.byte_start
                                            ..piece.byte_start.saturating_add(piece.byte_len)
                                    }),
                            );
                        }
                    }
                    Err(failure) => {
                        report.swaps_rejected += 1;
                        tracing::debug!(?failure, "compaction swap not applied");
                    }
                }
            }
        }
        report.swap_ms = swap_started.elapsed().as_secs_f64() * 1_000.0;
        if let Some(feed) = &self.cache_feed
            && !applied.is_empty()
        {
            let blocks = blocks_of(object.id, &applied, &object.batch_pieces);
            report.bytes_cached = (feed.offer)(blocks);
        }
        self.jobs_done += 1;
        self.bytes_written += object.bytes;
        self.swaps_applied += report.swaps_applied as u64;
        self.swaps_rejected += report.swaps_rejected as u64;
        Ok(Some(report))
    }
}

/// One round: retention through the log, then a garbage-collection sweep; in a cluster
/// (`cluster`: its handles, the data collector and the collector's clock origin) the sweep also
/// collects window objects, and expired agents' rows are forgotten.
pub async fn round(
    core: &CoreHandle,
    config: &HousekeepingConfig,
    collector: &mut GarbageCollector,
    mut cluster: Option<(&ClusterHousekeeping, &mut DataCollector, Instant)>,
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

    let store = core.background_store();
    let listing = GcListing::read(store.as_ref())
        .await
        .map_err(|error| format!("listing the store: {error}"))?;
    report.checkpoints_listed = listing.checkpoints.len();
    report.entries_listed = listing.entries.len();
    let floor = listing.floor(collector.config());
    let references = core
        .query(move |state| GcReferences::of(state, floor))
        .await
        .map_err(|error| error.to_string())?;
    let mut candidates = GcCandidates::from_listing(&listing, collector.config(), &references);
    if let Some((cluster, data, clock)) = &mut cluster {
        report.collector = true;
        // A failed data sweep leaves `data/` alone this round; the rest goes on.
        match data_sweep(core, cluster, data, &listing.compacted, *clock).await {
            Ok(sweep) => {
                report.data_listed = sweep.listed;
                report.data_referenced = sweep.candidates.referenced;
                report.data_waiting = sweep.candidates.waiting;
                if sweep.candidates.writers_unknown {
                    tracing::warn!(
                        "garbage collection of data/ is off: a live agent does not announce its \
                         object token (an older version); upgrade every agent"
                    );
                }
                candidates.data = sweep.candidates.garbage;
            }
            Err(message) => {
                tracing::warn!(%message, "garbage collection of data/ skipped this round");
            }
        }
    }
    report.gc = collector
        .sweep(store.as_ref(), &candidates, monotonic_ms)
        .await;
    report.index_entries = core
        .query(|state| state.index_entry_count())
        .await
        .map_err(|error| error.to_string())?;
    if let Some((cluster, _, _)) = &cluster {
        forget_expired_agents(cluster).await;
    }
    Ok(report)
}

/// Whether this agent compacts partition `partition` of topic `name` (sent into a state query).
type OwnerTest = Box<dyn Fn(&str, i32) -> bool + Send>;

/// The partitions this agent compacts: all of them alone, its own in a cluster.
fn owner_test(cluster: Option<&ClusterHousekeeping>) -> OwnerTest {
    match cluster {
        Some(cluster) => Box::new(cluster.partition_owner_test()),
        None => Box::new(|_: &str, _: i32| true),
    }
}

/// Appends a job's swap commands; in a cluster (`deadline`) not once the deadline has passed,
/// and in a window that carries it ([`CoreHandle::commands_with_deadline`]). A refused swap is an
/// outcome like a rejected one: its object is left for the collector.
async fn swap(
    core: &CoreHandle,
    commands: Vec<Command>,
    deadline: Option<SwapDeadline>,
) -> Result<Vec<Result<(), CommandFailure>>, String> {
    let outcomes = match deadline {
        None => core.commands(commands).await,
        Some(deadline) if Instant::now() >= deadline.send_by => {
            let reason = "a lease passed since the compacted object's PUT started; its swap is \
                          not sent (the object is left to the collector)";
            tracing::warn!(reason, "compaction swap not sent");
            let failure = CommandFailure::LogFailed {
                code: super::window::error_code::REQUEST_TIMED_OUT,
                reason: reason.to_owned(),
            };
            return Ok(commands.iter().map(|_| Err(failure.clone())).collect());
        }
        Some(deadline) => core.commands_with_deadline(commands, deadline).await,
    };
    outcomes.map_err(|error| error.to_string())
}

/// The job number after the highest one `compacted/` holds for `token` (0 when none). A safety
/// net: `SequencedWriter::choose` already passes over a token that names an object in
/// `compacted/`, so a new incarnation's token finds none here — unless one appeared after that
/// listing (an old incarnation still compacting, or an agent of a build before that rule); the
/// create-only PUT is the last guard.
async fn first_free_job(core: &CoreHandle, token: u32) -> Result<u32, String> {
    let listed = core
        .background_store()
        .list(COMPACTED_DIR, None)
        .await
        .map_err(|error| format!("listing {COMPACTED_DIR}/: {error}"))?;
    let highest = listed
        .iter()
        .filter_map(|info| parse_compacted_key(&info.key))
        .filter_map(cluster_compacted_object_parts)
        .filter(|(of, _)| *of == token)
        .map(|(_, job)| job)
        .max();
    match highest {
        None => Ok(0),
        Some(job) => job
            .checked_add(1)
            .ok_or_else(|| format!("compaction job numbers of token {token} are used up")),
    }
}

/// Kafka's cleaner rule: at least half of the cleanable bytes are dirty (past what the last job
/// cleaned), or a dirty record is older than `max.compaction.lag.ms`.
fn key_compaction_due(candidate: &KeyCompactionCandidate, clean_end_offset: u64) -> bool {
    let total: u64 = candidate.entries.iter().map(|entry| entry.byte_len).sum();
    let dirty = || {
        candidate
            .entries
            .iter()
            .filter(|entry| entry.end_offset > clean_end_offset)
    };
    let dirty_bytes: u64 = dirty().map(|entry| entry.byte_len).sum();
    if dirty_bytes == 0 {
        return false;
    }
    dirty_bytes.saturating_mul(2) >= total
        || dirty().any(|entry| entry.max_timestamp < candidate.max_lag_cutoff_ms)
}

fn log_round(report: &RoundReport, pending: usize) {
    let did_something = report.partitions_trimmed > 0
        || report.gc.checkpoints_deleted > 0
        || report.gc.entries_deleted > 0
        || report.gc.compacted_deleted > 0
        || report.gc.data_deleted > 0
        || report.gc.delete_errors > 0
        || report.retention_failures > 0;
    if did_something {
        tracing::info!(
            partitions_trimmed = report.partitions_trimmed,
            retention_failures = report.retention_failures,
            entries_deleted = report.gc.entries_deleted,
            compacted_deleted = report.gc.compacted_deleted,
            checkpoints_deleted = report.gc.checkpoints_deleted,
            data_deleted = report.gc.data_deleted,
            delete_errors = report.gc.delete_errors,
            waiting = pending,
            entries_listed = report.entries_listed,
            checkpoints_listed = report.checkpoints_listed,
            data_listed = report.data_listed,
            data_referenced = report.data_referenced,
            data_waiting = report.data_waiting,
            index_entries = report.index_entries,
            "housekeeping: retention and garbage collection"
        );
    } else {
        tracing::debug!(
            waiting = pending,
            entries_listed = report.entries_listed,
            checkpoints_listed = report.checkpoints_listed,
            data_listed = report.data_listed,
            data_waiting = report.data_waiting,
            index_entries = report.index_entries,
            "housekeeping: nothing to do"
        );
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::type_complexity,
    clippy::single_range_in_vec_init
)]
mod tests {
    use super::*;

    fn schedule(compaction_interval_ms: u64, check_interval_ms: u64) -> Schedule {
        Schedule::new(&HousekeepingConfig {
            check_interval_ms,
            compaction_interval_ms,
            compaction: CompactionConfig::default(),
            retention: RetentionDefaults::default(),
            gc: GcConfig::default(),
        })
    }

    /// Runs the housekeeping loop's decisions (sleep, a compaction tick of `tick_ms`, a round of
    /// `round_ms`) up to `until_ms` on a virtual clock; returns when each tick and round began.
    fn simulate(
        mut schedule: Schedule,
        tick_ms: u64,
        round_ms: u64,
        until_ms: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let (mut now, mut ticks, mut rounds) = (0, Vec::new(), Vec::new());
        loop {
            now += schedule.sleep_ms();
            if now > until_ms {
                return (ticks, rounds);
            }
            if schedule.compaction_due(now) {
                ticks.push(now);
                now += tick_ms;
            }
            if schedule.round_due(now) {
                rounds.push(now);
                now += round_ms;
            }
        }
    }

    /// Compaction ticks at its own interval, not at a shorter check interval (it used to tick
    /// every 5 s here), and retention rounds at theirs.
    #[test]
    fn compaction_and_retention_each_keep_their_interval() {
        let (ticks, rounds) = simulate(schedule(10_000, 5_000), 0, 0, 30_000);
        assert_eq!(ticks, [10_000, 20_000, 30_000]);
        assert_eq!(rounds, [5_000, 10_000, 15_000, 20_000, 25_000, 30_000]);
        let (ticks, rounds) = simulate(schedule(1_000, 4_000), 0, 0, 8_000);
        assert_eq!(ticks, (1..=8).map(|s| s * 1_000).collect::<Vec<_>>());
        assert_eq!(rounds, [4_000, 8_000]);
    }

    /// Equal intervals keep the tick and the round in one wake-up, every wake-up, however long
    /// each takes (neither drifts against the other, nor is skipped).
    #[test]
    fn equal_intervals_run_together_at_every_wake_up() {
        let (ticks, rounds) = simulate(schedule(10_000, 10_000), 300, 100, 45_000);
        assert_eq!(ticks, [10_000, 20_400, 30_800, 41_200]);
        assert_eq!(rounds, [10_300, 20_700, 31_100, 41_500]);
    }

    /// A long tick or round is followed by a whole sleep, not by the next at once (a slow store
    /// is not listed back to back), and compaction off never ticks.
    #[test]
    fn long_work_is_followed_by_a_whole_sleep_and_off_means_never() {
        let (ticks, _) = simulate(schedule(10_000, 300_000), 4_000, 0, 40_000);
        assert_eq!(ticks, [10_000, 24_000, 38_000]);
        let (ticks, rounds) = simulate(schedule(0, 2_000), 4_000, 3_000, 20_000);
        assert!(ticks.is_empty());
        assert_eq!(rounds, [2_000, 7_000, 12_000, 17_000]);
    }

    /// A piece that runs across two applied ranges (two partitions' batches next to each other
    /// in one source) is cut at the boundary: each entry gets exactly its own bytes, so neither
    /// is left cached with a hole at its start.
    #[test]
    fn blocks_of_trims_pieces_to_each_applied_range() {
        let object: Vec<u8> = (0..100u8).collect();
        let piece =
            |from: usize, to: usize| (from as u64, Bytes::copy_from_slice(&object[from..to]));
        // [10, 40) runs across the boundary at 30; [60, 70) lies in no applied range.
        let pieces = vec![piece(0, 10), piece(10, 40), piece(40, 50), piece(60, 70)];
        let blocks = blocks_of(LogSeq(7), &[0..30, 30..50], &pieces);
        assert_eq!(blocks.seq, LogSeq(7));
        let entries: Vec<(u64, Vec<(u64, Vec<u8>)>)> = blocks
            .entries
            .into_iter()
            .map(|(start, pieces)| {
                let pieces = pieces
                    .into_iter()
                    .map(|(at, bytes)| (at, bytes.to_vec()))
                    .collect();
                (start, pieces)
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                (
                    0,
                    vec![(0, object[0..10].to_vec()), (10, object[10..30].to_vec())]
                ),
                (
                    30,
                    vec![(30, object[30..40].to_vec()), (40, object[40..50].to_vec())]
                ),
            ]
        );
        // A range no piece reaches is left out.
        assert!(blocks_of(LogSeq(7), &[80..90], &pieces).entries.is_empty());
    }
}
