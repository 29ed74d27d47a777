//! The writer side of the metadata log: reserve a position, upload the entry create-only, and apply
//! entries to the state machine strictly in log order as their uploads complete.
//!
//! Entries are pipelined: several uploads may be in flight, but an entry is acknowledged only after
//! every entry before it has been applied, so acknowledged entries always form a prefix of the
//! chain. `MetadataLog` is single-threaded by design (`RefCell`, `!Sync`): it lives on the metadata
//! core, which is the one place offsets are assigned. No borrow is ever held across an `.await`.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::oneshot;

use super::reader::{EntryRead, commit_of, entry_meta, read_entry};
use super::recovery::{RecoveryStats, recover};
use super::{LogConfig, LogError};
use crate::batch::BatchHeader;
use crate::format::{EntryHeader, EntryKind, ObjectBuilder};
use crate::metadata::{Command, EntryOutcome, Event, MetadataState, ObjectCommit, encode_commands};
use crate::store::{ObjectStorage, StoreError};
use crate::types::{LOG_DIR, LogSeq, TopicPartition, log_key, parse_seq_key};

/// Attempts to claim the log before giving up (each lost race means another writer claimed first).
const CLAIM_ATTEMPTS_MAX: u32 = 16;
/// Recent entry uploads whose durations [`MetadataLog::put_latency_ms_median`] reports on.
const PUT_SAMPLES_MAX: usize = 64;

/// What one entry carries: the batches of a flush window and/or metadata commands.
#[derive(Debug, Default, Clone)]
pub struct EntryContent {
    /// Batches in push order; the object groups them by partition, keeping each partition's order.
    pub batches: Vec<(TopicPartition, BatchHeader, Bytes)>,
    pub commands: Vec<Command>,
    /// Wall-clock time the entry was sealed (milliseconds since the epoch), from the caller's clock.
    pub created_at_ms: i64,
    /// A cluster's log sends the entry's record only before this instant, besides its own
    /// deadlines (`SequencedLog::append`): a compaction swap carries the deadline its compacted
    /// object's PUT set (`log::data_gc`). `None`: only the log's own. The object-store log, whose
    /// compacted objects are collected by writer epoch, has no record deadline and ignores it.
    pub send_by: Option<Instant>,
}

/// An acknowledged entry: durable, applied, with the state machine's events (assigned offsets,
/// rejected commands and segments).
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub seq: LogSeq,
    pub events: Vec<Event>,
    pub object_len: u64,
    /// The object as it was uploaded: refcounted views of the same buffers (header, every batch,
    /// commands, index and trailer), contiguous and in order, for the block caches' write-through.
    pub chunks: Vec<Bytes>,
}

#[derive(Debug)]
enum Status {
    InFlight,
    Landed,
    Failed(LogError),
}

#[derive(Debug)]
struct Pending {
    header: EntryHeader,
    commands: Vec<Command>,
    commit: Option<ObjectCommit>,
    object_len: u64,
    chunks: Vec<Bytes>,
    status: Status,
    done: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

#[derive(Debug)]
struct Inner {
    state: MetadataState,
    epoch: u64,
    next_seq: LogSeq,
    /// The entry the next reserved one chains from.
    chain_tail: Option<LogSeq>,
    next_nonce: u64,
    /// The highest epoch of a claim of this writer that landed or may have landed (its outcome
    /// stayed unknown); a claim that found its position taken did not land and does not count. A
    /// valid claim of a higher epoch can only be another writer's.
    claimed_epoch_max: u64,
    /// Reserved entries not yet applied, in position order.
    pending: VecDeque<Pending>,
    /// Why the writer stopped, if it did: Fenced or Broken. Copied into every later failure.
    stopped: Option<String>,
    fenced: bool,
    entries_since_checkpoint: u64,
    /// How long the last [`PUT_SAMPLES_MAX`] data entries took to become durable (milliseconds,
    /// retries and hedged copies included: the time the entry's waiters actually waited for it).
    put_ms_recent: VecDeque<f64>,
}

/// The metadata log as one writer sees it: the state machine plus the chain it extends.
#[derive(Debug)]
pub struct MetadataLog {
    store: Arc<dyn ObjectStorage>,
    config: LogConfig,
    inner: RefCell<Inner>,
}

impl MetadataLog {
    /// Recovers the state from the store (latest checkpoint, then the log's tail) and claims the log
    /// for a new writer epoch. Any previous writer is fenced from here on.
    pub async fn open(
        store: Arc<dyn ObjectStorage>,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(MetadataLog, RecoveryStats), LogError> {
        let (state, stats) = recover(store.as_ref(), &config, None).await?;
        let log = MetadataLog {
            store,
            config,
            inner: RefCell::new(Inner {
                state,
                epoch: 0,
                next_seq: stats.first_free,
                chain_tail: None,
                next_nonce: nonce_base(),
                claimed_epoch_max: 0,
                pending: VecDeque::new(),
                stopped: None,
                fenced: false,
                entries_since_checkpoint: stats.entries_replayed,
                put_ms_recent: VecDeque::with_capacity(PUT_SAMPLES_MAX),
            }),
        };
        log.claim(
            stats.first_free,
            stats.max_seen_seq,
            stats.max_seen_epoch,
            Claimer::Opening,
            now_ms,
        )
        .await?;
        Ok((log, stats))
    }

    /// After a [`LogError::Broken`], replays whatever landed since the last applied entry (including
    /// this writer's own entries) and claims the log again with a new epoch. Not for a fenced writer.
    ///
    /// If the replay finds that another writer claimed the log since this one last did (a valid
    /// claim of an epoch above any this writer ever claimed with), the re-open claims nothing and
    /// returns [`LogError::Fenced`]: that writer took over, and this one ends where a writer that
    /// had not stopped would — fenced by its claim (see `docs/metadata-log.md`).
    pub async fn reopen(&self, now_ms: i64) -> Result<RecoveryStats, LogError> {
        // Recovery continues from a snapshot (index chunks are shared copy-on-write, so this costs
        // a reference count per chunk), not from the state itself: if recovery fails — a LIST or
        // GET error — the writer keeps the state every acknowledged entry made, and queries in the
        // meantime are not answered from an empty one. The next re-open then continues from it
        // instead of replaying the log from position 0, whose head garbage collection may have
        // deleted.
        let snapshot = {
            let inner = self.inner.borrow();
            if !inner.pending.is_empty() {
                return Err(LogError::Broken {
                    reason: "cannot re-open while entries are in flight".to_owned(),
                });
            }
            if inner.fenced {
                return Err(LogError::Broken {
                    reason: "this writer was fenced; start a new one".to_owned(),
                });
            }
            inner.state.clone()
        };
        let (state, stats) = recover(self.store.as_ref(), &self.config, Some(snapshot)).await?;
        self.inner.borrow_mut().state = state;
        self.claim(
            stats.first_free,
            stats.max_seen_seq,
            stats.max_seen_epoch,
            Claimer::Reopening,
            now_ms,
        )
        .await?;
        // Only a writer whose claim landed may append again: one whose claim failed keeps
        // refusing appends (with its old epoch and chain they could only be ignored) until the
        // next re-open succeeds.
        self.inner.borrow_mut().stopped = None;
        Ok(stats)
    }

    /// Writes a claim at the first free position; on a lost race, replays the winner's entry and
    /// tries the next position.
    ///
    /// A re-opening writer first checks the state it replayed: if the valid chain holds a claim of
    /// an epoch above every one this writer claimed with, another writer took the log over, and
    /// this one yields ([`LogError::Fenced`]) instead of claiming over it.
    async fn claim(
        &self,
        first_free: LogSeq,
        mut max_seen_seq: Option<LogSeq>,
        max_seen_epoch: u64,
        claimer: Claimer,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let mut position = first_free;
        let mut max_epoch = max_seen_epoch;
        for _ in 0..CLAIM_ATTEMPTS_MAX {
            if claimer == Claimer::Reopening {
                self.yield_to_newer_claim()?;
            }
            let (header, chunks, claimed_before) = {
                let mut inner = self.inner.borrow_mut();
                let header = EntryHeader {
                    seq: position,
                    writer_epoch: max_epoch.max(inner.state.writer_epoch()) + 1,
                    prev_seq: inner.state.last_valid_seq(),
                    entry_nonce: inner.next_nonce,
                    kind: EntryKind::Claim,
                    created_at_ms: now_ms,
                };
                inner.next_nonce = inner.next_nonce.wrapping_add(1);
                let claimed_before = inner.claimed_epoch_max;
                inner.claimed_epoch_max = claimed_before.max(header.writer_epoch);
                let chunks = ObjectBuilder::new(header).finish()?.into_chunks();
                (header, chunks, claimed_before)
            };
            let key = log_key(position);
            match put_entry(self.store.as_ref(), &self.config, &key, &header, chunks).await? {
                PutResult::Written => {
                    {
                        let mut inner = self.inner.borrow_mut();
                        if let EntryOutcome::Ignored { reason } =
                            inner.state.apply_entry(&entry_meta(&header), &[], None)
                        {
                            return Err(LogError::Broken {
                                reason: format!("our claim at {key} was not valid: {reason:?}"),
                            });
                        }
                        inner.epoch = header.writer_epoch;
                        inner.chain_tail = Some(position);
                        inner.next_seq = position.next();
                    }
                    return self.fill_to(max_seen_seq, now_ms).await;
                }
                PutResult::TakenBy(entry) => {
                    // Another writer got this position first. Replay its entry (read back when our
                    // PUT found the key taken), then whatever else landed after it — one listing
                    // and reads in flight together, as recovery does — and try the first free
                    // position after that. Stepping one position at a time, a PUT and a read-back
                    // each, an open fell behind a writer still appending (or the pipeline it left
                    // behind) and gave up after CLAIM_ATTEMPTS_MAX positions.
                    max_epoch = max_epoch.max(entry.header.writer_epoch);
                    let snapshot = {
                        let mut inner = self.inner.borrow_mut();
                        // Create-only: another entry holds the key, so our claim is not in the log.
                        inner.claimed_epoch_max = claimed_before;
                        let _ = inner.state.apply_entry(
                            &entry.meta(),
                            &entry.commands,
                            entry.commit.as_ref(),
                        );
                        inner.entries_since_checkpoint += 1;
                        inner.state.clone()
                    };
                    let (state, stats) =
                        recover(self.store.as_ref(), &self.config, Some(snapshot)).await?;
                    let mut inner = self.inner.borrow_mut();
                    inner.state = state;
                    inner.entries_since_checkpoint += stats.entries_replayed;
                    max_epoch = max_epoch.max(stats.max_seen_epoch);
                    max_seen_seq = max_seen_seq.max(stats.max_seen_seq);
                    position = stats.first_free;
                }
                PutResult::Unresolved(reason) => return Err(LogError::Broken { reason }),
            }
        }
        Err(LogError::Broken {
            reason: format!("could not claim the log after {CLAIM_ATTEMPTS_MAX} attempts"),
        })
    }

    /// During a re-open: fails with [`LogError::Fenced`] (and stops this writer for good) if the
    /// replayed chain was claimed by a writer epoch above every epoch this writer claimed with.
    ///
    /// Only a claim by another writer can be above them: this writer's own claims — including one
    /// whose outcome stayed unknown and that landed after all — carry epochs it claimed with. A
    /// claim of the *same* epoch as our highest attempt (two writers claiming from one listing)
    /// cannot be told from our own by the state, so it is claimed over, as before. Yielding writes
    /// nothing, so it cannot break the chain or a create-only position: it only leaves the log to
    /// the writer that claimed it last.
    fn yield_to_newer_claim(&self) -> Result<(), LogError> {
        let mut inner = self.inner.borrow_mut();
        let ours = inner.epoch.max(inner.claimed_epoch_max);
        let theirs = inner.state.writer_epoch();
        if theirs <= ours {
            return Ok(());
        }
        let key = inner
            .state
            .last_valid_seq()
            .map_or_else(|| log_key(LogSeq(0)), log_key);
        let error = LogError::Fenced {
            key,
            our_epoch: inner.epoch,
            by_epoch: theirs,
        };
        inner.fenced = true;
        inner.stopped = Some(error.to_string());
        Err(error)
    }

    /// After a claim: occupies every position up to `max_seen_seq` (the highest listed), so that
    /// the log has no empty position below this writer's entries.
    ///
    /// Positions after the claim may hold entries of an older writer that were in flight when it
    /// stopped, with empty positions among them (a PUT that failed while a later one landed).
    /// Recovery stops at the first empty position, so skipping straight past `max_seen_seq` would
    /// leave a gap below every entry this writer then acknowledges, and the next recovery would
    /// lose them all. Each empty position gets an empty data entry of ours (valid, it extends the
    /// chain); a position that turns out to be taken keeps its entry, which the chain rule ignores.
    ///
    /// Positions a listing shows taken are read (many in flight, as recovery reads) and offered,
    /// not written at: a PUT there could only find the key taken, and cost a PUT and a read-back
    /// per position, one position after another — after a crash that left an empty position
    /// below a full pipeline, that made an open take seconds on S3 Standard (found by the
    /// deterministic simulation: opens still under way after its 3 s drain).
    async fn fill_to(&self, max_seen_seq: Option<LogSeq>, now_ms: i64) -> Result<(), LogError> {
        let Some(max_seen) = max_seen_seq else {
            return Ok(());
        };
        let claimed = {
            let inner = self.inner.borrow();
            if inner.next_seq > max_seen {
                return Ok(());
            }
            inner.chain_tail
        };
        let start_after = claimed.map(log_key);
        let taken: BTreeSet<LogSeq> = self
            .store
            .list(LOG_DIR, start_after.as_deref())
            .await?
            .iter()
            .filter_map(|info| parse_seq_key(LOG_DIR, &info.key))
            .filter(|seq| *seq <= max_seen)
            .collect();
        loop {
            let first = self.inner.borrow().next_seq;
            if first > max_seen {
                return Ok(());
            }
            if taken.contains(&first) {
                let mut run = Vec::new();
                let mut position = first;
                while taken.contains(&position) {
                    run.push(position);
                    position = position.next();
                }
                let reads_inflight = self.config.recovery_reads_inflight_max.max(1);
                let mut entries = futures::stream::iter(run)
                    .map(|seq| read_entry(self.store.as_ref(), seq, &self.config))
                    .buffered(reads_inflight);
                while let Some(entry) = entries.next().await {
                    self.offer_taken(&entry?)?;
                }
                continue;
            }
            let (position, header, chunks) = {
                let mut inner = self.inner.borrow_mut();
                let position = first;
                let header = EntryHeader {
                    seq: position,
                    writer_epoch: inner.epoch,
                    prev_seq: inner.chain_tail,
                    entry_nonce: inner.next_nonce,
                    kind: EntryKind::Data,
                    created_at_ms: now_ms,
                };
                inner.next_nonce = inner.next_nonce.wrapping_add(1);
                (
                    position,
                    header,
                    ObjectBuilder::new(header).finish()?.into_chunks(),
                )
            };
            let key = log_key(position);
            match put_entry(self.store.as_ref(), &self.config, &key, &header, chunks).await? {
                PutResult::Written => {
                    let mut inner = self.inner.borrow_mut();
                    if let EntryOutcome::Ignored { reason } =
                        inner.state.apply_entry(&entry_meta(&header), &[], None)
                    {
                        return Err(LogError::Broken {
                            reason: format!("our filler at {key} was not valid: {reason:?}"),
                        });
                    }
                    inner.chain_tail = Some(position);
                    inner.entries_since_checkpoint += 1;
                    inner.next_seq = position.next();
                }
                PutResult::TakenBy(entry) => self.offer_taken(&entry)?,
                PutResult::Unresolved(reason) => return Err(LogError::Broken { reason }),
            }
        }
    }

    /// During [`MetadataLog::fill_to`]: another writer's entry holds the next position. A higher
    /// epoch fences us; an older writer's entry is offered (and ignored) as every replay will.
    fn offer_taken(&self, entry: &EntryRead) -> Result<(), LogError> {
        let mut inner = self.inner.borrow_mut();
        if entry.header.writer_epoch > inner.epoch {
            return Err(LogError::Fenced {
                key: entry.key.clone(),
                our_epoch: inner.epoch,
                by_epoch: entry.header.writer_epoch,
            });
        }
        if let EntryOutcome::Applied(_) =
            inner
                .state
                .apply_entry(&entry.meta(), &entry.commands, entry.commit.as_ref())
        {
            inner.chain_tail = Some(entry.header.seq);
        }
        inner.entries_since_checkpoint += 1;
        inner.next_seq = entry.header.seq.next();
        Ok(())
    }

    /// Appends one entry and returns when it is durable and applied: this is the acknowledgement.
    /// May be called concurrently (from tasks on the same thread); entries are acknowledged in
    /// position order. After a failure every later entry fails too until [`MetadataLog::reopen`].
    pub async fn append(&self, content: EntryContent) -> Result<AppendOutcome, LogError> {
        let (key, header, chunks, receiver) = {
            let mut inner = self.inner.borrow_mut();
            if let Some(reason) = &inner.stopped {
                return Err(stopped_error(inner.fenced, reason));
            }
            let header = EntryHeader {
                seq: inner.next_seq,
                writer_epoch: inner.epoch,
                prev_seq: inner.chain_tail,
                entry_nonce: inner.next_nonce,
                kind: EntryKind::Data,
                created_at_ms: content.created_at_ms,
            };
            let mut builder = ObjectBuilder::new(header);
            for (tp, batch_header, batch) in content.batches {
                builder.push_batch(tp, &batch_header, batch)?;
            }
            if !content.commands.is_empty() {
                builder.set_commands(Bytes::from(encode_commands(&content.commands)?))?;
            }
            let object = builder.finish()?;
            let commit = commit_of(object.len(), object.index());
            let object_len = object.len();
            inner.next_seq = header.seq.next();
            inner.chain_tail = Some(header.seq);
            inner.next_nonce = inner.next_nonce.wrapping_add(1);
            let (done, receiver) = oneshot::channel();
            inner.pending.push_back(Pending {
                header,
                commands: content.commands,
                commit,
                object_len,
                chunks: object.chunks().to_vec(),
                status: Status::InFlight,
                done,
            });
            (log_key(header.seq), header, object.into_chunks(), receiver)
        };
        #[cfg(feature = "sim-planted-bugs")]
        if crate::planted::active(crate::planted::PlantedBug::AckBeforePut) {
            self.settle(header.seq, Ok(()));
        }
        let upload_started = Instant::now();
        let result = match put_entry(self.store.as_ref(), &self.config, &key, &header, chunks).await
        {
            Ok(PutResult::Written) => {
                self.inner
                    .borrow_mut()
                    .note_put_ms(upload_started.elapsed().as_secs_f64() * 1_000.0);
                Ok(())
            }
            Ok(PutResult::TakenBy(existing))
                if existing.header.writer_epoch > header.writer_epoch =>
            {
                Err(LogError::Fenced {
                    key: key.clone(),
                    our_epoch: header.writer_epoch,
                    by_epoch: existing.header.writer_epoch,
                })
            }
            Ok(PutResult::TakenBy(existing)) => Err(LogError::Broken {
                reason: format!(
                    "{key} holds an entry of writer epoch {} (nonce {}), not ours (epoch {}, nonce {})",
                    existing.header.writer_epoch,
                    existing.header.entry_nonce,
                    header.writer_epoch,
                    header.entry_nonce
                ),
            }),
            Ok(PutResult::Unresolved(reason)) => Err(LogError::Broken { reason }),
            Err(error) => Err(error),
        };
        self.settle(header.seq, result);
        match receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(LogError::Broken {
                reason: "entry dropped before it was settled".to_owned(),
            }),
        }
    }

    /// Records how the upload of entry `seq` settled and applies every settled entry at the front.
    fn settle(&self, seq: LogSeq, result: Result<(), LogError>) {
        let mut inner = self.inner.borrow_mut();
        if let Some(pending) = inner
            .pending
            .iter_mut()
            .find(|pending| pending.header.seq == seq)
        {
            pending.status = match result {
                Ok(()) => Status::Landed,
                Err(error) => Status::Failed(error),
            };
        }
        inner.drain();
    }

    /// Runs `read` against the current state (what every acknowledged entry has made it).
    pub fn with_state<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        read(&self.inner.borrow().state)
    }

    pub fn epoch(&self) -> u64 {
        self.inner.borrow().epoch
    }

    /// The median time recent data entries took to upload (from the first PUT to durable, retries
    /// and hedged copies included), or `None` before the first. The flusher sizes windows by it.
    pub fn put_latency_ms_median(&self) -> Option<f64> {
        let mut recent: Vec<f64> = self.inner.borrow().put_ms_recent.iter().copied().collect();
        recent.sort_by(f64::total_cmp);
        recent.get(recent.len() / 2).copied()
    }

    pub fn store(&self) -> &Arc<dyn ObjectStorage> {
        &self.store
    }

    /// Entries applied since the last checkpoint: what a recovery now would replay.
    pub fn entries_since_checkpoint(&self) -> u64 {
        self.inner.borrow().entries_since_checkpoint
    }

    /// Entries between checkpoints when the count alone decides (`LogConfig`).
    pub fn checkpoint_interval_entries(&self) -> u64 {
        self.config.checkpoint_interval_entries
    }

    /// Whether enough entries were applied since the last checkpoint that another is due.
    pub fn checkpoint_due(&self) -> bool {
        self.inner.borrow().entries_since_checkpoint >= self.config.checkpoint_interval_entries
    }

    /// Writes a checkpoint of the current state (create-only; the content at a position is
    /// deterministic, so finding it already there is success). Returns the position it covers.
    /// Encodes on the calling task; [`MetadataLog::write_checkpoint_with`] lets the caller encode
    /// elsewhere.
    pub async fn write_checkpoint(&self) -> Result<Option<LogSeq>, LogError> {
        self.write_checkpoint_with(|state| std::future::ready(state.encode_checkpoint()))
            .await
    }

    /// As [`MetadataLog::write_checkpoint`], with the encoding done by `encode` — e.g. on another
    /// thread, so that a large state's encoding and CRC never run on the task that applies entries.
    /// What this task does is take a snapshot of the state: index chunks are shared copy-on-write
    /// ([`crate::metadata::PartitionIndex`]), so it costs a reference count per chunk plus a copy of
    /// the small maps (topics, producers, committed offsets), not a copy of the index.
    pub async fn write_checkpoint_with<F, Fut>(&self, encode: F) -> Result<Option<LogSeq>, LogError>
    where
        F: FnOnce(MetadataState) -> Fut,
        Fut: std::future::Future<Output = Vec<u8>>,
    {
        let (seq, snapshot, covered) = {
            let mut inner = self.inner.borrow_mut();
            let Some(seq) = inner.state.last_offered_seq() else {
                return Ok(None);
            };
            let covered = std::mem::take(&mut inner.entries_since_checkpoint);
            (seq, inner.state.clone(), covered)
        };
        let bytes = Bytes::from(encode(snapshot).await);
        if let Err(error) = super::checkpoint::put_checkpoint(self.store.as_ref(), seq, bytes).await
        {
            // The entries it would have covered still count (and those applied meanwhile): the
            // checkpoint stays due by whichever count made it so, and the count stays the
            // recovery tail's true length.
            let mut inner = self.inner.borrow_mut();
            inner.entries_since_checkpoint = inner.entries_since_checkpoint.saturating_add(covered);
            return Err(error);
        }
        Ok(Some(seq))
    }
}

impl Inner {
    fn note_put_ms(&mut self, put_ms: f64) {
        if self.put_ms_recent.len() >= PUT_SAMPLES_MAX {
            self.put_ms_recent.pop_front();
        }
        self.put_ms_recent.push_back(put_ms);
    }

    /// Applies every settled entry at the front of the queue, in order, and answers its waiter.
    fn drain(&mut self) {
        while self
            .pending
            .front()
            .is_some_and(|pending| !matches!(pending.status, Status::InFlight))
        {
            let Some(pending) = self.pending.pop_front() else {
                break;
            };
            let answer = if let Some(reason) = &self.stopped {
                Err(stopped_error(self.fenced, reason))
            } else {
                match pending.status {
                    Status::Landed => {
                        let meta = entry_meta(&pending.header);
                        match self.state.apply_entry(
                            &meta,
                            &pending.commands,
                            pending.commit.as_ref(),
                        ) {
                            EntryOutcome::Applied(events) => {
                                self.entries_since_checkpoint += 1;
                                Ok(AppendOutcome {
                                    seq: pending.header.seq,
                                    events,
                                    object_len: pending.object_len,
                                    chunks: pending.chunks,
                                })
                            }
                            EntryOutcome::Ignored { reason } => {
                                let reason = format!(
                                    "entry {} did not extend the chain: {reason}",
                                    pending.header.seq.0
                                );
                                self.stopped = Some(reason.clone());
                                Err(LogError::Broken { reason })
                            }
                        }
                    }
                    Status::Failed(error) => {
                        self.fenced = matches!(error, LogError::Fenced { .. });
                        self.stopped = Some(error.to_string());
                        Err(error)
                    }
                    Status::InFlight => continue,
                }
            };
            // The waiter may have gone away (its task was dropped); the entry is settled regardless.
            let _ = pending.done.send(answer);
        }
    }
}

/// Where a writer's entry nonces start: random, so that two writers that claim concurrently from
/// the same listing — and so compute the same epoch — never take each other's entry for their own
/// when a read-back after an unknown outcome or a 409 compares epoch and nonce. Starting at 0, the
/// second writer's claim read back the first's (same epoch 1, same nonce 0) and both wrote as epoch
/// 1 (found by the deterministic simulation). Only equality matters: the size of an entry does not
/// depend on it, so a seeded simulation stays deterministic.
fn nonce_base() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 1
}

fn stopped_error(fenced: bool, reason: &str) -> LogError {
    if fenced {
        LogError::Broken {
            reason: format!("writer was fenced: {reason}"),
        }
    } else {
        LogError::Broken {
            reason: reason.to_owned(),
        }
    }
}

/// Who is claiming: a new writer opening the log (it takes the log over from whoever holds it),
/// or a writer re-opening after [`LogError::Broken`] (it yields to a newer writer's claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claimer {
    Opening,
    Reopening,
}

/// How an upload at a position settled.
#[derive(Debug)]
pub(super) enum PutResult {
    /// Our entry is there (possibly from an earlier attempt whose response was lost).
    Written,
    /// Another entry holds the position (as read back).
    TakenBy(Box<EntryRead>),
    /// Attempts ran out and the entry is not there (yet): the position is unresolved.
    Unresolved(String),
}

/// Uploads one entry at its position and settles the outcome.
///
/// A write with an unknown outcome is retried with the same bytes at the same key; create-only
/// makes that safe, and `AlreadyExists` is then resolved by reading the entry back: same epoch and
/// nonce means it is ours.
pub(super) async fn put_entry(
    store: &dyn ObjectStorage,
    config: &LogConfig,
    key: &str,
    header: &EntryHeader,
    chunks: Vec<Bytes>,
) -> Result<PutResult, LogError> {
    let attempts = config.put_attempts_max.max(1);
    let mut last_error = None;
    for _ in 0..attempts {
        match store.put_create(key, chunks.clone()).await {
            Ok(()) => return Ok(PutResult::Written),
            Err(StoreError::AlreadyExists { key }) => {
                #[cfg(feature = "sim-planted-bugs")]
                if crate::planted::active(crate::planted::PlantedBug::TrustAlreadyExists) {
                    return Ok(PutResult::Written);
                }
                match resolve_existing(store, config, header).await? {
                    Some(settled) => return Ok(settled),
                    None => {
                        last_error = Some(StoreError::Unavailable {
                            op: crate::store::Op::Put,
                            key,
                            message:
                                "the store reported a conflicting write, and the key is still empty"
                                    .to_owned(),
                        });
                    }
                }
            }
            Err(error) => last_error = Some(error),
        }
    }
    // Out of attempts. The entry may still have landed; if it did, it is ours to keep.
    match resolve_existing(store, config, header).await {
        Ok(Some(settled)) => Ok(settled),
        Ok(None) | Err(_) => Ok(PutResult::Unresolved(format!(
            "could not write {key} after {attempts} attempts: {}",
            last_error.map_or_else(|| "unknown error".to_owned(), |error| error.to_string())
        ))),
    }
}

/// Reads the entry at our position and tells whether it is ours. `None`: the position is empty
/// after all — S3 answers 409 (`ConditionalRequestConflict`, which the client reports as
/// `AlreadyExists`) while *another* conditional write of the key is in progress, and that write
/// (a hedged copy of ours, or a retry) may still fail.
async fn resolve_existing(
    store: &dyn ObjectStorage,
    config: &LogConfig,
    header: &EntryHeader,
) -> Result<Option<PutResult>, LogError> {
    let existing = match read_entry(store, header.seq, config).await {
        Ok(entry) => entry,
        Err(LogError::Store(StoreError::NotFound { .. })) => return Ok(None),
        Err(error) => return Err(error),
    };
    if existing.header.writer_epoch == header.writer_epoch
        && existing.header.entry_nonce == header.entry_nonce
    {
        Ok(Some(PutResult::Written))
    } else {
        Ok(Some(PutResult::TakenBy(Box::new(existing))))
    }
}
