//! The metadata log of a cluster: window objects under the agent's own keys, their commit
//! records ordered by the PostgreSQL sequencer, applied by every agent in the sequencer's order.
//!
//! # Why this shape
//!
//! With one agent the data object *is* the log entry (`log/{seq}`, create-only), and the chain
//! rule fences a second writer. Several agents on one bucket would fence each other that way, so a
//! cluster takes its order from the database ([`crate::sequencer`]): an agent PUTs its window's
//! object create-only under a key no other agent uses (`data/{token}/{counter}`, where the token
//! is random per agent incarnation), then appends one small record — the object's id and tail
//! (commands, index, trailer) — to the sequencer. Every agent applies every record, in position
//! order, through the same [`MetadataState::apply_entry`]: offsets are assigned at apply time, so
//! they are the same everywhere. A produce is acknowledged once the record of its window has been
//! *applied* here (not merely appended): its offsets are known and its object durable.
//!
//! The chain rule has nothing to decide here (the database orders, and a position holds one record
//! for ever), so records are offered as a chain the rule always accepts: the first record of a
//! cluster as a claim of epoch 1, every later one as a data entry of that epoch. Both follow from
//! the state alone, so every agent offers the same entries.
//!
//! # Fencing
//!
//! A window is appended at most once: an append whose outcome is unknown is *not* retried (its
//! produces fail with a retriable error, as after a timeout in Kafka), so a record can never reach
//! the log twice, and one that lands late is applied like any other. An agent's lease (the owner's
//! lease loop, [`SequencedLog::hold_lease`], [`SequencedLog::stop`]) is its licence to append:
//! once lost, appends fail — windows in flight too, even after their PUT — until the agent
//! registers again and [`SequencedLog::rejoin`]s as a new incarnation with a new token, as a
//! restart would.
//!
//! The licence is checked twice. Locally, right before a record is sent: the lease's local
//! deadline and the window's record deadline (the fast path, which sends nothing doomed). And by
//! the database, in the append's own statement ([`crate::sequencer::Fence`]): the incarnation
//! still holds an unexpired lease, and the record deadline — mapped to the database's clock
//! through the lease — has not passed. A process paused between the two (a stop, a stalled core)
//! is refused at commit, and nothing of its window is committed. A log that never held a lease
//! (tests without membership) appends unfenced.
//!
//! # Checkpoints
//!
//! Checkpoints stay in object storage at `checkpoint/{position}`, the sequencer position they
//! cover; recovery loads the newest and reads the records after it (`read_after`) — and loads the
//! newest again if other agents truncated past the one it loaded before its read. Records at or
//! below the *older* of the last two checkpoints are deleted (`truncate_before`), so recovery can
//! still fall back one checkpoint, as garbage collection keeps two.
//!
//! An agent that lagged more than a checkpoint interval (paused, say) finds the records after its
//! state deleted by another agent's truncation (`Truncated`). Its rejoin then does what a restart
//! would: it loads the newest checkpoint, swaps it in as the state, and catches up from there
//! ([`SequencedLog::rejoin_with`]). The log is stopped meanwhile, so no window of it is waiting
//! and none is appended from the old state.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;

use super::record::{decode_record, encode_record};
use super::writer::{AppendOutcome, EntryContent, PutResult, put_entry};
use super::{LogConfig, LogError, load_latest_checkpoint};
use crate::format::{EntryHeader, EntryKind, ObjectBuilder};
use crate::metadata::{
    EntryMeta, EntryOutcome, Event, MetadataState, decode_commands, encode_commands,
};
use crate::sequencer::{Fence, Lease, SequencerClient, SequencerError};
use crate::store::ObjectStorage;
use crate::types::{
    AGENT_OBJECT_DIR, AGENT_OBJECT_TOKEN_MAX, COMPACTED_DIR, LOG_DIR, LogSeq, agent_object_id,
    agent_object_parts, cluster_compacted_object_parts, object_key, parse_compacted_key,
};

/// Tries at a token no object carries before [`SequencedWriter::choose`] gives up.
const TOKEN_CHOICES_MAX: usize = 8;

/// Who writes through a [`SequencedLog`]: the token its window objects are named by (announced in
/// its registration, see [`super::data_gc`]) and how long after a window's PUT starts its record
/// may still be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedWriter {
    pub token: u32,
    /// One lease: garbage collection of `data/` counts on no record being sent later than this
    /// after its object's PUT started (`docs/cluster.md`).
    pub record_deadline_ms: u64,
}

impl SequencedWriter {
    /// A random token that no object in the bucket carries: its folder (`data/{token}/`) holds
    /// nothing and no compacted object in `compacted/` is named by it
    /// ([`cluster_compacted_object_id`](crate::types::cluster_compacted_object_id)). So an
    /// incarnation never shares a token with objects still in the bucket: a collector deciding
    /// about an old incarnation's objects never meets a new incarnation's object under the same
    /// token (`docs/cluster.md`, "Garbage collection of `data/`").
    ///
    /// `compacted/` is listed once per call (its keys are not grouped by token) and its tokens
    /// kept while drawing: at most one per object listed.
    pub async fn choose(
        store: &dyn ObjectStorage,
        record_deadline_ms: u64,
    ) -> Result<SequencedWriter, LogError> {
        let mut draw = || uuid::Uuid::new_v4().as_u64_pair().0 as u32;
        SequencedWriter::choose_drawing(store, record_deadline_ms, &mut draw).await
    }

    /// [`SequencedWriter::choose`] with the random draw passed in, so that a test can make it
    /// draw a token in use first.
    pub(crate) async fn choose_drawing(
        store: &dyn ObjectStorage,
        record_deadline_ms: u64,
        draw: &mut dyn FnMut() -> u32,
    ) -> Result<SequencedWriter, LogError> {
        let compacted_tokens: BTreeSet<u32> = store
            .list(COMPACTED_DIR, None)
            .await?
            .iter()
            .filter_map(|info| parse_compacted_key(&info.key))
            .filter_map(cluster_compacted_object_parts)
            .map(|(token, _)| token)
            .collect();
        for _ in 0..TOKEN_CHOICES_MAX {
            let token = draw() & AGENT_OBJECT_TOKEN_MAX;
            if compacted_tokens.contains(&token) {
                continue;
            }
            let folder = format!("{AGENT_OBJECT_DIR}/{token:010}");
            if store.list(&folder, None).await?.is_empty() {
                return Ok(SequencedWriter {
                    token,
                    record_deadline_ms,
                });
            }
        }
        Err(LogError::Broken {
            reason: format!(
                "{TOKEN_CHOICES_MAX} random tokens were all in use under data/ or compacted/"
            ),
        })
    }
}

/// Recent uploads [`SequencedLog::put_latency_ms_median`] reports on.
const PUT_SAMPLES_MAX: usize = 64;
/// Records one read asks for.
const READ_RECORDS_MAX: usize = 1_024;
/// Checkpoints one rejoin (or one recovery) loads at most: each is newer than the last, and
/// another is needed only when the log was truncated again past the one just loaded before its
/// catch-up read.
const RELOADS_PER_REJOIN_MAX: usize = 3;

/// What a [`SequencedLog::rejoin_with`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedRejoin {
    /// Records applied while catching up (after the reloaded checkpoint, if one was).
    pub records_applied: u64,
    /// The position of the checkpoint swapped in as the state, when the records after the old
    /// state were gone (`Truncated`).
    pub checkpoint_reloaded: Option<u64>,
}

/// Where recovery started and how far it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedRecovery {
    /// The sequencer position the loaded checkpoint covers (0: none).
    pub checkpoint_position: u64,
    /// Records applied after it.
    pub records_applied: u64,
    /// The position applied last.
    pub applied_position: u64,
}

#[derive(Debug)]
struct Waiter {
    object_len: u64,
    chunks: Vec<Bytes>,
    done: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

#[derive(Debug)]
struct Inner {
    state: MetadataState,
    /// The last position applied (0: none).
    applied: u64,
    next_counter: u32,
    /// This incarnation's windows appended (or being appended) and not yet applied, by counter.
    waiting: BTreeMap<u32, Waiter>,
    stopped: Option<String>,
    records_since_checkpoint: u64,
    /// The positions of the last two checkpoints, oldest first.
    checkpoints: VecDeque<u64>,
    put_ms_recent: VecDeque<f64>,
}

/// The metadata log of one agent of a cluster. Single-threaded, like [`super::MetadataLog`]: it
/// lives on the metadata executor. No borrow is held across an `.await`.
#[derive(Debug)]
pub struct SequencedLog {
    store: Arc<dyn ObjectStorage>,
    sequencer: SequencerClient,
    config: LogConfig,
    /// This incarnation's key token; with a counter it names every object it writes. A rejoin
    /// ([`SequencedLog::rejoin`]) replaces it: the new incarnation's objects never share a folder
    /// with the old one's.
    token: Cell<u32>,
    /// No record is sent later than this after its object's PUT started.
    record_deadline: Cell<std::time::Duration>,
    /// Written into every object header; a read-back that finds another value at our key is
    /// another incarnation's object (a token collision), never ours.
    nonce: u64,
    inner: RefCell<Inner>,
    /// The lease this incarnation appends under (the owner's lease loop renews it). No append
    /// starts after its local deadline, even before the loop has found the lease lost (a process
    /// paused past its lease resumes with requests queued), and every record is fenced by it in
    /// the database. `None` until the first is held: appends are then unfenced. (Boxed: the
    /// log is a variant of `AgentLog`, whose other variant is smaller.)
    lease: RefCell<Option<Box<Lease>>>,
    /// Records are sent in the order their windows were started ([`SendOrder`]).
    send_order: SendOrder,
    /// A test's gate between a window's last local check and its send (`hold_next_send`).
    #[cfg(test)]
    before_send: RefCell<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl SequencedLog {
    /// Recovers the state (the newest checkpoint, then every record after it) and returns the log,
    /// ready to append.
    ///
    /// The token is random and the record deadline 10 s; an agent uses [`SequencedLog::open_as`].
    pub async fn open(
        store: Arc<dyn ObjectStorage>,
        sequencer: SequencerClient,
        config: LogConfig,
    ) -> Result<(SequencedLog, SequencedRecovery), LogError> {
        let writer = SequencedWriter::choose(store.as_ref(), 10_000).await?;
        SequencedLog::open_as(store, sequencer, config, writer).await
    }

    /// [`SequencedLog::open`] writing as `writer` (the token its registration announced).
    pub async fn open_as(
        store: Arc<dyn ObjectStorage>,
        sequencer: SequencerClient,
        config: LogConfig,
        writer: SequencedWriter,
    ) -> Result<(SequencedLog, SequencedRecovery), LogError> {
        let (state, checkpoint_position) = match load_latest_checkpoint(store.as_ref()).await? {
            Some((state, info)) => (state, info.seq.0),
            None => {
                // A bucket an agent used alone holds its own log; starting a cluster from an
                // empty state would hide it (and reuse its offsets).
                if let Some(entry) = store.list(LOG_DIR, None).await?.first() {
                    return Err(LogError::Broken {
                        reason: format!(
                            "the bucket holds an agent's own metadata log ({} ...) and no \
                             checkpoint: it was used without --metadata; a cluster needs a bucket \
                             of its own",
                            entry.key
                        ),
                    });
                }
                (MetadataState::default(), 0)
            }
        };
        let random = uuid::Uuid::new_v4().as_u64_pair();
        let log = SequencedLog {
            store,
            sequencer,
            config,
            token: Cell::new(writer.token & AGENT_OBJECT_TOKEN_MAX),
            record_deadline: Cell::new(std::time::Duration::from_millis(writer.record_deadline_ms)),
            nonce: random.1,
            lease: RefCell::new(None),
            send_order: SendOrder::default(),
            #[cfg(test)]
            before_send: RefCell::new(None),
            inner: RefCell::new(Inner {
                state,
                applied: checkpoint_position,
                next_counter: 0,
                waiting: BTreeMap::new(),
                // Until recovery has caught up: a checkpoint may be swapped in meanwhile.
                stopped: Some("recovering".to_owned()),
                records_since_checkpoint: 0,
                checkpoints: VecDeque::from([checkpoint_position]),
                put_ms_recent: VecDeque::with_capacity(PUT_SAMPLES_MAX),
            }),
        };
        // Other agents may truncate past the loaded checkpoint before the first read (two more
        // checkpoints in between): the newest is loaded then, as a rejoin does.
        let (records_applied, reloaded) =
            log.catch_up_reloading(&mut |_| {}, &mut |_, _| {}).await?;
        log.inner.borrow_mut().stopped = None;
        let applied_position = log.applied_position();
        Ok((
            log,
            SequencedRecovery {
                checkpoint_position: reloaded.unwrap_or(checkpoint_position),
                records_applied,
                applied_position,
            },
        ))
    }

    /// The sequencer this log appends to.
    pub fn sequencer(&self) -> &SequencerClient {
        &self.sequencer
    }

    /// The last sequencer position applied.
    pub fn applied_position(&self) -> u64 {
        self.inner.borrow().applied
    }

    /// Reads and applies every record after the last one applied, up to the head as of the last
    /// read; returns how many it applied. Appends answer their waiters from here.
    ///
    /// Fails on an error of the sequencer (the caller waits and calls again) and for good on
    /// `Truncated` or `BeyondHead`: the log no longer holds what follows this state, or is not the
    /// log this state came from.
    pub async fn catch_up(&self) -> Result<u64, LogError> {
        self.catch_up_with(&mut |_| {}).await
    }

    /// As [`SequencedLog::catch_up`], calling `on_other` with the events of every record that
    /// answered no waiter of this log (other agents' windows): their watermarks moved too.
    pub async fn catch_up_with(&self, on_other: &mut dyn FnMut(&[Event])) -> Result<u64, LogError> {
        let mut applied = 0;
        loop {
            let after = self.inner.borrow().applied;
            let records = self
                .sequencer
                .read_after(after, READ_RECORDS_MAX)
                .await
                .map_err(sequencer_error)?;
            let count = records.len();
            for (position, record) in records {
                // Two catch-ups can overlap (the tailer, and the owner's after a failed append):
                // each reads a contiguous run from what was applied when it read, so whatever
                // the other applied meanwhile is skipped here, never applied twice.
                let next = self.inner.borrow().applied + 1;
                if position < next {
                    continue;
                }
                if position > next {
                    break;
                }
                self.apply(position, &record, on_other);
                applied += 1;
            }
            if count < READ_RECORDS_MAX {
                return Ok(applied);
            }
        }
    }

    /// Applies the record at `position` (the next one) and answers its waiter if it is ours.
    fn apply(&self, position: u64, record: &Bytes, on_other: &mut dyn FnMut(&[Event])) {
        let mut inner = self.inner.borrow_mut();
        debug_assert_eq!(position, inner.applied + 1, "records applied out of order");
        let (commands, commit, object) = match decode_record(record) {
            Ok(decoded) => {
                let commands = if decoded.commands.is_empty() {
                    Ok(Vec::new())
                } else {
                    decode_commands(&decoded.commands)
                };
                match commands {
                    Ok(commands) => (
                        commands,
                        super::reader::commit_of(decoded.object_len, &decoded.index),
                        Some(decoded.object),
                    ),
                    Err(error) => {
                        tracing::error!(position, %error, "sequencer record's commands do not decode; skipped by every agent");
                        (Vec::new(), None, None)
                    }
                }
            }
            Err(error) => {
                tracing::error!(position, %error, "sequencer record does not decode; skipped by every agent");
                (Vec::new(), None, None)
            }
        };
        let meta = chain_meta(&inner.state, position);
        let outcome = inner.state.apply_entry(&meta, &commands, commit.as_ref());
        inner.applied = position;
        inner.records_since_checkpoint += 1;
        let waiter = object.and_then(|object| {
            let (token, counter) = agent_object_parts(object);
            (token == self.token.get())
                .then(|| inner.waiting.remove(&counter))
                .flatten()
                .map(|waiter| (object, waiter))
        });
        let Some((object, waiter)) = waiter else {
            drop(inner);
            if let EntryOutcome::Applied(events) = &outcome {
                on_other(events);
            }
            return;
        };
        let answer = match outcome {
            EntryOutcome::Applied(events) => Ok(AppendOutcome {
                seq: object,
                events,
                object_len: waiter.object_len,
                chunks: waiter.chunks,
            }),
            EntryOutcome::Ignored { reason } => Err(LogError::Broken {
                reason: format!("record at position {position} was not applied: {reason:?}"),
            }),
        };
        let _ = waiter.done.send(answer);
    }

    /// Appends one window and returns once its record is applied (the acknowledgement) — which
    /// needs [`SequencedLog::catch_up`] to run, as the owner's tailer does on every change of the
    /// head. May be called concurrently from tasks on the same thread.
    pub async fn append(&self, content: EntryContent) -> Result<AppendOutcome, LogError> {
        // A deadline the entry carries (a compaction swap's, `EntryContent::send_by`), taken
        // before `content` is moved; it tightens the record deadline below.
        let content_send_by = content.send_by;
        if self
            .lease_valid_until()
            .is_some_and(|until| Instant::now() >= until)
        {
            return Err(LogError::Broken {
                reason: "the agent's lease ran out before it was renewed".to_owned(),
            });
        }
        let (id, header, chunks, record, receiver, mut turn) = {
            let mut inner = self.inner.borrow_mut();
            if let Some(reason) = &inner.stopped {
                return Err(LogError::Broken {
                    reason: reason.clone(),
                });
            }
            // Taken with the counter, before any await: windows' turns follow their start order.
            let turn = self.send_order.next_turn();
            let counter = inner.next_counter;
            let Some(next) = counter.checked_add(1) else {
                return Err(LogError::Broken {
                    reason: "this incarnation wrote 2^32 objects; restart the agent".to_owned(),
                });
            };
            let id = agent_object_id(self.token.get(), counter);
            let header = EntryHeader {
                seq: id,
                writer_epoch: self.nonce,
                prev_seq: None,
                entry_nonce: u64::from(counter),
                kind: EntryKind::Data,
                created_at_ms: content.created_at_ms,
            };
            let mut builder = ObjectBuilder::new(header);
            for (tp, batch_header, batch) in content.batches {
                builder.push_batch(tp, &batch_header, batch)?;
            }
            let commands = if content.commands.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(encode_commands(&content.commands)?)
            };
            if !commands.is_empty() {
                builder.set_commands(commands.clone())?;
            }
            let object = builder.finish()?;
            let tail = object.chunks().last().cloned().unwrap_or_default();
            let record = encode_record(id, object.len(), &[&commands, &tail]);
            inner.next_counter = next;
            let (done, receiver) = oneshot::channel();
            inner.waiting.insert(
                counter,
                Waiter {
                    object_len: object.len(),
                    chunks: object.chunks().to_vec(),
                    done,
                },
            );
            (id, header, object.into_chunks(), record, receiver, turn)
        };
        let (token, counter) = agent_object_parts(id);
        let upload_started = Instant::now();
        let key = object_key(id);
        let put = match put_entry(self.store.as_ref(), &self.config, &key, &header, chunks).await {
            Ok(PutResult::Written) => Ok(()),
            Ok(PutResult::TakenBy(_)) => Err(LogError::Broken {
                reason: format!("{key} holds another incarnation's object (a token collision)"),
            }),
            Ok(PutResult::Unresolved(reason)) => Err(LogError::Broken { reason }),
            Err(error) => Err(error),
        };
        if let Err(error) = put {
            self.forget_waiter(token, counter);
            return Err(error);
        }
        self.inner
            .borrow_mut()
            .note_put_ms(upload_started.elapsed().as_secs_f64() * 1_000.0);
        // The windows started before this one are sent (or given up) first, whichever PUT ended
        // first; the checks below then see the time after the wait.
        turn.wait().await;
        // The two deadlines garbage collection of `data/` counts on (`super::data_gc`): no record
        // is sent after the lease's local deadline, nor later than one record deadline after its
        // object's PUT started. Checked here, after the PUT, which may have taken a while (the
        // fast path: the database checks both again when it commits, below).
        // And the incarnation that started it must still be the one appending: a window whose
        // lease was lost during its PUT (the log stopped, perhaps rejoined as a new incarnation
        // since) is never sent, whatever the new lease's deadline says.
        if let Some(reason) = self.stopped_or_replaced(token) {
            self.forget_waiter(token, counter);
            return Err(LogError::Broken {
                reason: format!("{key}: {reason}; not committed"),
            });
        }
        let now = Instant::now();
        let past_lease = self.lease_valid_until().is_some_and(|until| now >= until);
        let record_deadline = self.record_deadline.get();
        let send_by = upload_started + record_deadline;
        let send_by = content_send_by.map_or(send_by, |deadline| deadline.min(send_by));
        if past_lease || now >= send_by {
            self.forget_waiter(token, counter);
            return Err(LogError::Broken {
                reason: if past_lease {
                    format!("{key}: the agent's lease ran out during its PUT; not committed")
                } else {
                    format!(
                        "{key}: its PUT took longer than the record deadline ({} ms); not committed",
                        record_deadline.as_millis()
                    )
                },
            });
        }
        // The same two deadlines, checked again by the database when it commits (see
        // `Fence::for_send_by`): a pause from here until the bytes leave — a stopped process, a
        // stalled core — cannot make the record land late. The fence is made of values fixed
        // here (the lease this incarnation holds, `send_by`), never of the time left, which a
        // pause would stretch.
        let fence = match self.fence(send_by) {
            Ok(fence) => fence,
            Err(error) => {
                self.forget_waiter(token, counter);
                return Err(sequencer_error(error));
            }
        };
        #[cfg(test)]
        self.test_before_send().await;
        let appended = match fence {
            Some(fence) => self.sequencer.append_fenced(vec![record], fence).await,
            None => self.sequencer.append(vec![record]).await,
        };
        // The next window's record may go: this one has its position (or will never have one).
        drop(turn);
        if let Err(error) = appended {
            // Not retried: a second copy of the record could land beside the first. If this one
            // lands after all, every agent applies it like any other; its produces were failed.
            self.forget_waiter(token, counter);
            // The database says the lease is gone: no later window of this incarnation can be
            // committed either. The owner's lease loop finds the same at its next renewal and
            // rejoins.
            if matches!(error, SequencerError::LeaseLost { .. }) && self.token.get() == token {
                self.stop(format!("lease lost: {error}"));
            }
            return Err(sequencer_error(error));
        }
        match receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(LogError::Broken {
                reason: "window dropped before its record was applied".to_owned(),
            }),
        }
    }

    /// The local deadline of the lease held, if one is.
    fn lease_valid_until(&self) -> Option<Instant> {
        self.lease
            .borrow()
            .as_ref()
            .map(|lease| lease.valid_until.into_std())
    }

    /// What the database must still find true when it commits a record that must be sent before
    /// `send_by`: the lease held, and `send_by` on the database's clock. `None` only while no
    /// lease was ever held (a log a test drives without membership; an agent holds its lease
    /// before its first window, [`SequencedLog::hold_lease`]).
    fn fence(&self, send_by: Instant) -> Result<Option<Fence>, SequencerError> {
        self.lease
            .borrow()
            .as_ref()
            .map(|lease| Fence::for_send_by(lease, send_by))
            .transpose()
    }

    /// Drops the waiter of window `counter` of the incarnation of `token`, if that incarnation is
    /// still the one appending (after a rejoin the same counter names a new window).
    fn forget_waiter(&self, token: u32, counter: u32) {
        if self.token.get() == token {
            self.inner.borrow_mut().waiting.remove(&counter);
        }
    }

    /// Why a window of the incarnation of `token` must not be sent: the log stopped, or a new
    /// incarnation replaced it.
    fn stopped_or_replaced(&self, token: u32) -> Option<String> {
        if let Some(reason) = &self.inner.borrow().stopped {
            return Some(reason.clone());
        }
        (self.token.get() != token).then(|| {
            format!(
                "its incarnation (token {token}) was replaced by a rejoin (token {})",
                self.token.get()
            )
        })
    }

    /// This incarnation's token (its objects are `data/{token}/{counter}`).
    pub fn token(&self) -> u32 {
        self.token.get()
    }

    /// After [`SequencedLog::stop`] (a lost lease): starts appending again as a new incarnation,
    /// as a restart would. The caller has registered again (a new incarnation and lease,
    /// announcing `writer`'s token) and passes the new lease, held from then on as
    /// [`SequencedLog::hold_lease`] holds it; `writer` must name
    /// a token of its own, one no object carries ([`SequencedWriter::choose`]): the
    /// collector may already time the old token as gone.
    ///
    /// Catches up to the head first — from the newest checkpoint when the records after this
    /// state were truncated meanwhile (see [`SequencedLog::rejoin_with`]) — then switches: from
    /// then on appends are named by the new token, and a window of the old incarnation still in
    /// its PUT is never sent ([`SequencedLog::append`] checks its token after the PUT). Returns
    /// the records applied.
    ///
    /// Fails, and appends stay stopped, when the log was not stopped, when the token is the old
    /// one, when catching up fails, or when the new lease ran out meanwhile. The caller may try
    /// again.
    pub async fn rejoin(&self, writer: SequencedWriter, lease: &Lease) -> Result<u64, LogError> {
        let rejoined = self
            .rejoin_with(writer, lease, &mut |_| {}, &mut |_, _| {})
            .await?;
        Ok(rejoined.records_applied)
    }

    /// [`SequencedLog::rejoin`], calling `on_other` with the events of every record it applies
    /// while catching up (as [`SequencedLog::catch_up_with`]), and `on_reload` with the position
    /// and the state of a checkpoint it swapped in.
    ///
    /// A reload happens when the records after the state are gone (`Truncated`: another agent's
    /// checkpoint let them go while this one lagged): the newest checkpoint past the position
    /// applied replaces the state whole — topics, watermarks, index, producers, groups, ACLs,
    /// credentials, quotas — and the catch-up goes on from its position. Whatever was derived
    /// from the old state must then be derived again; `on_reload` is where the caller does it,
    /// even if the rejoin fails after it.
    pub async fn rejoin_with(
        &self,
        writer: SequencedWriter,
        lease: &Lease,
        on_other: &mut dyn FnMut(&[Event]),
        on_reload: &mut dyn FnMut(u64, &MetadataState),
    ) -> Result<SequencedRejoin, LogError> {
        let token = writer.token & AGENT_OBJECT_TOKEN_MAX;
        if self.inner.borrow().stopped.is_none() {
            return Err(LogError::Broken {
                reason: "a rejoin follows a stop: this incarnation is still appending".to_owned(),
            });
        }
        if token == self.token.get() {
            return Err(LogError::Broken {
                reason: format!("a new incarnation needs a new token, not {token}"),
            });
        }
        let (records_applied, checkpoint_reloaded) =
            self.catch_up_reloading(on_other, on_reload).await?;
        if Instant::now() >= lease.valid_until.into_std() {
            return Err(LogError::Broken {
                reason: "the new lease ran out while catching up".to_owned(),
            });
        }
        let mut inner = self.inner.borrow_mut();
        // `stop` answered every waiter, and no append starts on a stopped log.
        debug_assert!(inner.waiting.is_empty(), "a stopped log holds no waiter");
        inner.waiting.clear();
        inner.next_counter = 0;
        inner.stopped = None;
        self.token.set(token);
        self.record_deadline
            .set(std::time::Duration::from_millis(writer.record_deadline_ms));
        *self.lease.borrow_mut() = Some(Box::new(lease.clone()));
        Ok(SequencedRejoin {
            records_applied,
            checkpoint_reloaded,
        })
    }

    /// On a stopped log: [`SequencedLog::catch_up_with`], swapping in the newest checkpoint
    /// (and calling `on_reload`) when the records after the state are gone, at most
    /// [`RELOADS_PER_REJOIN_MAX`] times. Returns the records applied and the checkpoint
    /// swapped in last, if any.
    async fn catch_up_reloading(
        &self,
        on_other: &mut dyn FnMut(&[Event]),
        on_reload: &mut dyn FnMut(u64, &MetadataState),
    ) -> Result<(u64, Option<u64>), LogError> {
        let mut checkpoint_reloaded = None;
        let mut reloads = 0;
        loop {
            match self.catch_up_with(on_other).await {
                Ok(applied) => return Ok((applied, checkpoint_reloaded)),
                Err(LogError::Sequencer(SequencerError::Truncated { after, log_start }))
                    if reloads < RELOADS_PER_REJOIN_MAX =>
                {
                    reloads += 1;
                    tracing::warn!(
                        after,
                        log_start,
                        "the records after this agent's state were truncated; reloading the newest checkpoint"
                    );
                    if let Some(position) = self.reload_newest_checkpoint(after).await? {
                        self.with_state(|state| on_reload(position, state));
                        checkpoint_reloaded = Some(position);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// On a stopped log whose records after position `after` are gone: replaces the state with
    /// the newest checkpoint, which must cover a later position (the records after it are still
    /// in the log: truncation keeps everything after the older of the last two checkpoints).
    /// Returns its position, or `None` when a concurrent catch-up already applied past it (the
    /// next catch-up goes on from there).
    async fn reload_newest_checkpoint(&self, after: u64) -> Result<Option<u64>, LogError> {
        let loaded = load_latest_checkpoint(self.store.as_ref()).await?;
        let Some((state, info)) = loaded else {
            return Err(LogError::Broken {
                reason: format!(
                    "the records after position {after} were truncated and the bucket holds no \
                     checkpoint"
                ),
            });
        };
        let position = info.seq.0;
        if position <= after {
            // Another agent truncated past a checkpoint this listing does not show yet (or that
            // failed to load): nothing newer to swap in. The caller tries again.
            return Err(LogError::Broken {
                reason: format!(
                    "the records after position {after} were truncated, and the newest \
                     checkpoint covers only {position}"
                ),
            });
        }
        let mut inner = self.inner.borrow_mut();
        if inner.stopped.is_none() {
            return Err(LogError::Broken {
                reason: "a checkpoint is swapped in only while the log is stopped".to_owned(),
            });
        }
        if inner.applied >= position {
            return Ok(None);
        }
        debug_assert!(inner.waiting.is_empty(), "a stopped log holds no waiter");
        debug_assert_eq!(
            state.last_offered_seq(),
            Some(LogSeq(position)),
            "a checkpoint is the state at its position"
        );
        inner.state = state;
        inner.applied = position;
        inner.records_since_checkpoint = 0;
        inner.checkpoints = VecDeque::from([position]);
        drop(inner);
        tracing::warn!(
            position,
            skipped = info.skipped,
            "swapped in the newest checkpoint as this agent's state"
        );
        Ok(Some(position))
    }

    /// Appends as the holder of `lease` (the owner's lease loop passes every renewal): they start
    /// only before its local deadline (`valid_until`), and each is fenced by it in the database
    /// ([`Fence`]), until the next call.
    pub fn hold_lease(&self, lease: &Lease) {
        *self.lease.borrow_mut() = Some(Box::new(lease.clone()));
    }

    /// Stops appending (a lost lease): every append waiting and every later one fails, and a
    /// window in its PUT is not sent, until a [`SequencedLog::rejoin`] as a new incarnation.
    pub fn stop(&self, reason: String) {
        let mut inner = self.inner.borrow_mut();
        for (_, waiter) in std::mem::take(&mut inner.waiting) {
            let _ = waiter.done.send(Err(LogError::Broken {
                reason: reason.clone(),
            }));
        }
        inner.stopped = Some(reason);
    }

    /// Why appends stopped, if they did.
    pub fn stopped(&self) -> Option<String> {
        self.inner.borrow().stopped.clone()
    }

    /// Runs `read` against the state every applied record made.
    pub fn with_state<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        read(&self.inner.borrow().state)
    }

    /// The median time recent window objects took to upload, or `None` before the first.
    pub fn put_latency_ms_median(&self) -> Option<f64> {
        let mut recent: Vec<f64> = self.inner.borrow().put_ms_recent.iter().copied().collect();
        recent.sort_by(f64::total_cmp);
        recent.get(recent.len() / 2).copied()
    }

    pub fn store(&self) -> &Arc<dyn ObjectStorage> {
        &self.store
    }

    /// Records between checkpoints (`LogConfig`).
    pub fn checkpoint_interval_entries(&self) -> u64 {
        self.config.checkpoint_interval_entries
    }

    /// Whether enough records were applied since the last checkpoint that another is due.
    pub fn checkpoint_due(&self) -> bool {
        self.inner.borrow().records_since_checkpoint >= self.config.checkpoint_interval_entries
    }

    /// Writes a checkpoint of the state at the last applied position (encoded by `encode`), then
    /// deletes the records the older of the last two checkpoints covers. Returns the position.
    pub async fn write_checkpoint_with<F, Fut>(&self, encode: F) -> Result<Option<LogSeq>, LogError>
    where
        F: FnOnce(MetadataState) -> Fut,
        Fut: std::future::Future<Output = Vec<u8>>,
    {
        let (position, snapshot) = {
            let mut inner = self.inner.borrow_mut();
            if inner.applied == 0 {
                return Ok(None);
            }
            inner.records_since_checkpoint = 0;
            (inner.applied, inner.state.clone())
        };
        debug_assert!(
            self.with_state(|state| state.last_offered_seq()) == Some(LogSeq(position)),
            "the state has seen exactly the records applied"
        );
        let bytes = Bytes::from(encode(snapshot).await);
        if let Err(error) =
            super::checkpoint::put_checkpoint(self.store.as_ref(), LogSeq(position), bytes).await
        {
            let mut inner = self.inner.borrow_mut();
            inner.records_since_checkpoint = inner
                .records_since_checkpoint
                .max(self.config.checkpoint_interval_entries);
            return Err(error);
        }
        let truncate_through = {
            let mut inner = self.inner.borrow_mut();
            // A reload may have swapped in a newer checkpoint while this one was written: the
            // truncation then counts from that one.
            if inner
                .checkpoints
                .back()
                .is_some_and(|last| *last >= position)
            {
                return Ok(Some(LogSeq(position)));
            }
            inner.checkpoints.push_back(position);
            while inner.checkpoints.len() > 2 {
                inner.checkpoints.pop_front();
            }
            inner
                .checkpoints
                .front()
                .copied()
                .filter(|_| inner.checkpoints.len() == 2)
        };
        if let Some(through) = truncate_through.filter(|through| *through > 0) {
            // Best effort: rows left behind are deleted by the next checkpoint's truncation.
            if let Err(error) = self.sequencer.truncate_before(through + 1).await {
                tracing::warn!(%error, through, "could not truncate the sequencer's log");
            }
        }
        Ok(Some(LogSeq(position)))
    }
}

#[cfg(test)]
impl SequencedLog {
    /// Holds the next window that passes its local checks right before its send, as a process
    /// paused there would be: `entered` fires then, and the send waits for `release`.
    fn hold_next_send(&self, entered: oneshot::Sender<()>, release: oneshot::Receiver<()>) {
        *self.before_send.borrow_mut() = Some((entered, release));
    }

    async fn test_before_send(&self) {
        let gate = self.before_send.borrow_mut().take();
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            let _ = release.await;
        }
    }
}

#[cfg(test)]
mod choose_tests;
#[cfg(test)]
mod tests;

impl Inner {
    fn note_put_ms(&mut self, put_ms: f64) {
        if self.put_ms_recent.len() >= PUT_SAMPLES_MAX {
            self.put_ms_recent.pop_front();
        }
        self.put_ms_recent.push_back(put_ms);
    }
}

/// The entry every agent offers for the record at `position`: a chain the rule accepts, from the
/// state alone (see the module doc).
fn chain_meta(state: &MetadataState, position: u64) -> EntryMeta {
    let epoch = state.writer_epoch();
    EntryMeta {
        seq: LogSeq(position),
        writer_epoch: epoch.max(1),
        prev_seq: state.last_valid_seq(),
        kind: if epoch == 0 {
            EntryKind::Claim
        } else {
            EntryKind::Data
        },
    }
}

fn sequencer_error(error: SequencerError) -> LogError {
    LogError::Sequencer(error)
}

/// The order in which an agent's windows send their records to the sequencer: the order they were
/// started in ([`SequencedLog::append`]), whichever PUT ends first.
///
/// Windows upload concurrently (up to `flush_windows_inflight_max`), and a record's position is
/// the order the database took it in. Were each record sent as its PUT ended, a window whose PUT
/// was quicker would be applied before an earlier one: a producer's later batch of a partition
/// would land before its earlier batch — offsets out of the order the producer sent them in,
/// and, for an idempotent producer, OUT_OF_ORDER_SEQUENCE_NUMBER on the later batch (franz-go
/// then bumps its epoch and resends; seen dozens of times per producer in a rolling restart,
/// and a producer stalled on a partition for good twice). A single agent's log keeps the order
/// by its sequential keys; this keeps it in a cluster. So a window sends its record only once
/// every window started before it has sent its own (and had its answer) or given up.
#[derive(Debug, Default)]
struct SendOrder {
    /// Turns handed out so far.
    issued: Cell<u64>,
    /// The lowest turn not yet done.
    next_undone: Cell<u64>,
    /// Turns done out of order (their windows failed before sending), above `next_undone`.
    done_ahead: RefCell<std::collections::BTreeSet<u64>>,
    /// Turns waiting to send, with their wake-ups.
    waiting: RefCell<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl SendOrder {
    fn next_turn(&self) -> SendTurn<'_> {
        let ticket = self.issued.get();
        self.issued.set(ticket.saturating_add(1));
        SendTurn {
            order: self,
            ticket,
        }
    }

    /// Marks `ticket` done and wakes the next turn that may go.
    fn done(&self, ticket: u64) {
        if ticket != self.next_undone.get() {
            self.done_ahead.borrow_mut().insert(ticket);
            return;
        }
        let mut next = ticket.saturating_add(1);
        {
            let mut ahead = self.done_ahead.borrow_mut();
            while ahead.remove(&next) {
                next = next.saturating_add(1);
            }
        }
        self.next_undone.set(next);
        if let Some(wake) = self.waiting.borrow_mut().remove(&next) {
            let _ = wake.send(());
        }
    }
}

/// One window's turn to send its record; done when dropped (sent, or given up).
#[derive(Debug)]
struct SendTurn<'a> {
    order: &'a SendOrder,
    ticket: u64,
}

impl SendTurn<'_> {
    /// Returns once every earlier turn is done.
    async fn wait(&mut self) {
        if self.order.next_undone.get() >= self.ticket {
            return;
        }
        let (wake, woken) = oneshot::channel();
        self.order.waiting.borrow_mut().insert(self.ticket, wake);
        // A dropped sender cannot happen while the order lives (it is removed only to send).
        let _ = woken.await;
    }
}

impl Drop for SendTurn<'_> {
    fn drop(&mut self) {
        self.order.waiting.borrow_mut().remove(&self.ticket);
        self.order.done(self.ticket);
    }
}
