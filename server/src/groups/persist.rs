//! The owner core's side of durable group state: loading the groups a previous run stored, and
//! storing every change of a group's durable state through the metadata log before the answers
//! that reveal it go out.
//!
//! # Why, and what is stored
//!
//! Apache Kafka keeps group metadata in `__consumer_offsets` with the offsets, so a coordinator
//! failover is invisible to the members: they keep their member ids, generations and epochs and
//! go on heartbeating and committing. Without it every agent restart was a rebalance storm (the
//! Java client treats OffsetCommit's GROUP_ID_NOT_FOUND as fatal, and a KIP-848 member answered
//! UNKNOWN_MEMBER_ID drops its partitions). What is stored is the state machines' own view
//! (`classic/record.rs`, `consumer_record.rs`); see `docs/groups.md`.
//!
//! # How writes stay bounded
//!
//! The state machines file every group whose durable state *may* have changed in a dirty set
//! (joins, syncs, leaves, timers, KIP-848 heartbeats that changed an epoch or a member; never a
//! plain heartbeat). [`GroupCore::collect_dirty`], called right after each state machine call,
//! gives each such group a new *version* and queues it; one writer task per core
//! ([`GroupCore::run_writer`]) takes the whole queue, reads each group's record *at that moment*,
//! skips it if it equals what is stored (a digest per group), and sends the rest as
//! `Command::StoreGroup`s that ride the metadata core's open window (no sealing). One write is in
//! flight per core at a time, so the changes made meanwhile are coalesced into the next: writes
//! per second are bounded by the log's entry rate, not by requests, and a group costs one record
//! per write whatever the number of steps in between. A record over the state machine's limits
//! is refused by it with a clear error (and logged); the group goes on in memory.
//!
//! # Durable before answered
//!
//! A JoinGroup, SyncGroup, LeaveGroup or KIP-848 heartbeat answer waits ([`GroupCore::settled`])
//! until every change of its group queued before it is durable: a member never learns a
//! generation or epoch that a restart could take back. Plain heartbeats and commits do not wait
//! (they reveal nothing new). If the write fails, the waiting answers carry the coordinator error
//! Kafka gives for a failed append (COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR), so the clients
//! retry, and the writer tries again after [`WRITE_RETRY_MS`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use futures::channel::oneshot;
use sluice_engine::metadata::{Command, GroupRecord, GroupStore};

use super::classic::ClassicRecord;
use super::core::{GroupCore, TimerWake, command_code, error_code};
use super::router::owner_core;

/// After a failed write, the writer waits this long before writing the groups again.
pub const WRITE_RETRY_MS: u64 = 1_000;
/// Commands per request to the metadata core (a log entry holds at most 1,000 commands).
const WRITE_COMMANDS_PER_REQUEST_MAX: usize = 100;

/// A waiting answer: resolved once group `group`'s changes up to `version` are settled.
#[derive(Debug)]
struct Waiter {
    group: String,
    version: u64,
    reply: oneshot::Sender<Result<(), i16>>,
}

/// The bookkeeping of one core's group writes. See the module docs.
#[derive(Debug, Default)]
pub(super) struct GroupWriter {
    /// Groups to look at in the next write, with the version of their latest change.
    queued: RefCell<BTreeMap<String, u64>>,
    /// Groups with changes not yet settled (written, found unchanged, or failed), with the version
    /// of their latest change.
    pending: RefCell<HashMap<String, u64>>,
    next_version: Cell<u64>,
    /// A digest of what the log holds for each group, as far as this core knows.
    stored: RefCell<HashMap<String, u64>>,
    waiters: RefCell<Vec<Waiter>>,
    wake: TimerWake,
}

/// One group's record on its way to the log: which change it carries and what it will store.
#[derive(Debug)]
struct Write {
    group: String,
    version: u64,
    /// The digest of the record (`None`: a removal).
    digest: Option<u64>,
}

/// A digest of a group's stored record.
fn digest(record: &GroupRecord) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    record.hash(&mut hasher);
    hasher.finish()
}

impl GroupWriter {
    /// Forgets everything about `group` (another agent coordinates it now): its queued and
    /// pending writes are dropped, and their waiters get `code`.
    pub(super) fn abandon(&self, group: &str, code: i16) {
        self.queued.borrow_mut().remove(group);
        self.stored.borrow_mut().remove(group);
        let pending = self.pending.borrow().get(group).copied();
        if let Some(version) = pending {
            self.settle(group, version, Err(code));
        }
    }

    /// Resolves the waiters of `group` up to `version` with `outcome`, and forgets the group's
    /// pending change if `version` was its latest.
    fn settle(&self, group: &str, version: u64, outcome: Result<(), i16>) {
        {
            let mut pending = self.pending.borrow_mut();
            if pending.get(group) == Some(&version) {
                pending.remove(group);
            }
        }
        let mut waiters = self.waiters.borrow_mut();
        let mut index = 0;
        while index < waiters.len() {
            let due = waiters
                .get(index)
                .is_some_and(|waiter| waiter.group == group && waiter.version <= version);
            if due {
                let waiter = waiters.swap_remove(index);
                let _ = waiter.reply.send(outcome);
            } else {
                index += 1;
            }
        }
    }
}

impl GroupCore {
    /// Takes both state machines' dirty groups and queues them for the writer. Call right after
    /// any state machine call that may change a group, before awaiting anything.
    pub(super) fn collect_dirty(&self) {
        let dirty = {
            let mut groups = self.groups.borrow_mut();
            let mut dirty = groups.classic.take_dirty();
            dirty.extend(groups.consumer.take_dirty());
            dirty
        };
        if dirty.is_empty() {
            return;
        }
        let writer = &self.writer;
        {
            let mut queued = writer.queued.borrow_mut();
            let mut pending = writer.pending.borrow_mut();
            for group in dirty {
                let version = writer.next_version.get() + 1;
                writer.next_version.set(version);
                pending.insert(group.clone(), version);
                queued.insert(group, version);
            }
        }
        writer.wake.notify();
    }

    /// Waits until every change of `group_id` queued so far is durable (or found unchanged).
    /// `Err` carries the coordinator error to answer with when the write failed.
    pub(super) async fn settled(&self, group_id: &str) -> Result<(), i16> {
        let Some(version) = self.writer.pending.borrow().get(group_id).copied() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        self.writer.waiters.borrow_mut().push(Waiter {
            group: group_id.to_owned(),
            version,
            reply,
        });
        answer
            .await
            .unwrap_or(Err(error_code::COORDINATOR_NOT_AVAILABLE))
    }

    /// The log no longer holds anything for these groups (a `DeleteGroups` landed).
    pub(super) fn forget_stored(&self, groups: &[String]) {
        let mut stored = self.writer.stored.borrow_mut();
        for group in groups {
            stored.remove(group);
        }
    }

    /// Puts back the groups this core owns that a previous run stored, before this core serves
    /// any group request. Returns how many it loaded.
    pub async fn load_stored_groups(&self) -> Result<usize, super::core::LoadError> {
        let (index, cores) = (self.core_index, self.core_count);
        let records = self
            .metadata
            .query(move |state| {
                state
                    .stored_groups()
                    .filter(|(group_id, _)| owner_core(group_id, cores) == index)
                    .map(|(group_id, record)| (group_id.to_owned(), record.clone()))
                    .collect::<Vec<(String, GroupRecord)>>()
            })
            .await
            .map_err(|_| super::core::LoadError)?;
        let consumer_groups = self.restore_records(&records);
        if !records.is_empty() {
            tracing::info!(
                groups = records.len(),
                consumer_groups,
                core = index,
                "resumed stored consumer groups; members have a full session to heartbeat"
            );
        }
        self.deadlines_changed();
        Ok(records.len())
    }

    /// Puts `records` back in memory, each replacing any group of its id, every member with a
    /// full session from now. Returns how many are KIP-848 groups.
    pub(super) fn restore_records(&self, records: &[(String, GroupRecord)]) -> usize {
        let now_ms = self.now_ms();
        let mut consumer_groups = 0_usize;
        {
            let mut groups = self.groups.borrow_mut();
            let mut stored = self.writer.stored.borrow_mut();
            for (group_id, record) in records {
                match record {
                    GroupRecord::Classic(classic) => {
                        groups.classic.restore(group_id, classic, now_ms);
                    }
                    GroupRecord::Consumer(consumer) => {
                        consumer_groups += 1;
                        groups.consumer.restore(group_id, consumer, now_ms);
                    }
                }
                stored.insert(group_id.clone(), digest(record));
            }
        }
        if consumer_groups > 0 {
            self.consumer_groups_seen.set(true);
        }
        self.deadlines_changed();
        consumer_groups
    }

    /// The writer task of this core (runs until the executor stops). See the module docs.
    pub async fn run_writer(self: std::rc::Rc<Self>) {
        loop {
            self.writer.wake.wait().await;
            let failed = self.write_queued().await;
            if failed {
                glommio::timer::sleep(Duration::from_millis(WRITE_RETRY_MS)).await;
            }
        }
    }

    /// One write: every queued group whose record differs from what is stored. Whether a write
    /// failed in a way worth retrying (the groups are queued again).
    async fn write_queued(&self) -> bool {
        let queued = std::mem::take(&mut *self.writer.queued.borrow_mut());
        let mut writes: Vec<(Write, Command)> = Vec::new();
        {
            let groups = self.groups.borrow();
            let stored = self.writer.stored.borrow();
            for (group_id, version) in queued {
                let record = match groups.classic.record(&group_id) {
                    ClassicRecord::Record(record) => Some(GroupRecord::Classic(record)),
                    ClassicRecord::Unsettled => {
                        self.writer.settle(&group_id, version, Ok(()));
                        continue;
                    }
                    ClassicRecord::Absent => {
                        groups.consumer.record(&group_id).map(GroupRecord::Consumer)
                    }
                };
                let new_digest = record.as_ref().map(digest);
                if new_digest == stored.get(&group_id).copied() {
                    self.writer.settle(&group_id, version, Ok(()));
                    continue;
                }
                let command = Command::StoreGroup {
                    store: Box::new(GroupStore {
                        group: group_id.clone(),
                        record,
                    }),
                };
                let write = Write {
                    group: group_id,
                    version,
                    digest: new_digest,
                };
                writes.push((write, command));
            }
        }
        if writes.is_empty() {
            return false;
        }
        let mut retry = false;
        let mut rest = writes;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(WRITE_COMMANDS_PER_REQUEST_MAX));
            let chunk = std::mem::replace(&mut rest, tail);
            let (meta, commands): (Vec<Write>, Vec<Command>) = chunk.into_iter().unzip();
            let outcomes = match self.metadata.group_commands(commands).await {
                Ok(answer) => answer.await.ok(),
                Err(_) => None,
            };
            for (position, write) in meta.into_iter().enumerate() {
                let Write {
                    group,
                    version,
                    digest: new_digest,
                } = write;
                let outcome = outcomes
                    .as_ref()
                    .and_then(|outcomes| outcomes.get(position))
                    .cloned();
                let code = match &outcome {
                    Some(result) => command_code(result),
                    None => error_code::COORDINATOR_NOT_AVAILABLE,
                };
                if code == error_code::NONE {
                    let mut stored = self.writer.stored.borrow_mut();
                    match new_digest {
                        Some(new_digest) => stored.insert(group.clone(), new_digest),
                        None => stored.remove(&group),
                    };
                    drop(stored);
                    self.writer.settle(&group, version, Ok(()));
                    continue;
                }
                let rejected = matches!(
                    outcome,
                    Some(Err(crate::metadata_core::CommandFailure::Rejected(_)))
                );
                if rejected {
                    // Deterministic: the state machine keeps what it had; writing again would
                    // be refused again. The group goes on in memory.
                    tracing::warn!(group = %group, ?outcome, "group state not stored");
                } else {
                    // Unknown whether it landed: forget the digest, and write the group again.
                    tracing::warn!(group = %group, code, "group state write failed; retrying");
                    self.writer.stored.borrow_mut().remove(&group);
                    self.writer
                        .queued
                        .borrow_mut()
                        .entry(group.clone())
                        .or_insert(version);
                    retry = true;
                }
                self.writer.settle(&group, version, Err(code));
            }
        }
        if retry {
            // Keep the retried groups pending, so answers still wait for their durability.
            let queued: Vec<(String, u64)> = self
                .writer
                .queued
                .borrow()
                .iter()
                .map(|(group, version)| (group.clone(), *version))
                .collect();
            let mut pending = self.writer.pending.borrow_mut();
            for (group, version) in queued {
                pending.entry(group).or_insert(version);
            }
            self.writer.wake.notify();
        }
        retry
    }
}
