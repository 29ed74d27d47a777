//! Which network core owns a block, and how other cores read it.
//!
//! A *block* is what the cache reads and evicts together: a window object (`log/…`, its
//! partitions' segments are read together and evicted as one unit), or one partition's entry of
//! a compacted object (`compacted/…`, read in chunks at its consumer's pace). Its owner is
//! `hash(object, entry start) % network cores` for a compacted entry and `hash(object) % cores`
//! for a window object, with a fixed mixing function, so every core agrees without asking.
//!
//! A fetch splits its wants by owner. Its own blocks it reads in place ([`read_groups_here`]);
//! for each other core it sends one *job* over that core's bounded inbox ([`BLOCK_JOBS_QUEUED_MAX`],
//! a full inbox makes the sender wait: backpressure, never an unbounded queue) and awaits the
//! answer on a oneshot. The owner runs the job as a task of its own: the same
//! [`read_groups_here`] against its cache, its in-flight GETs (so concurrent misses from every
//! core make one GET) and the store. The answer is refcounted `Bytes` slices of the owner's cached
//! buffers — moved to the requesting core, never copied per reader — which the requester
//! assembles with the batch headers it rewrites, as for its own blocks. Jobs never send jobs, so
//! two cores waiting on each other's inboxes cannot deadlock.
//!
//! A window object that this core already has (the live edge: commits are written through to
//! every core) is served from here without a message. What a fetch demotes (chunks its answer
//! went past) is sent to the chunk's owner as a job that may be dropped when the inbox is full
//! (it is an eviction hint).
//!
//! Cost: one message round trip per fetch per other core whose blocks it needs — a few
//! microseconds against a GET's milliseconds from an object store (tens to hundreds of
//! microseconds from a local directory's page cache), and the price of the agent's whole cache
//! budget serving every connection.

use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use sluice_engine::compact::SourcesAtHand;
use sluice_engine::metadata::IndexEntry;
use sluice_engine::store::ObjectStorage;
use sluice_engine::types::{LogSeq, is_compacted_object, object_key};

use super::FetchCore;
use super::reader::{GroupRead, ReadCount, ReadError, Want, read_groups_here};
use crate::metadata_core::housekeeping::CompactedBlocks;
use crate::metrics::Metrics;

/// Jobs queued for one core's blocks before senders wait. A fetch sends at most one read job per
/// other core, and a connection has at most 64 requests in flight. (futures' channel also gives
/// each sender waiting to send one slot of its own, so the queue holds at most this plus the
/// requests waiting to send, themselves bounded by the fetches in flight.)
pub const BLOCK_JOBS_QUEUED_MAX: usize = 256;

/// Demotion hints one core may have queued for another core before it drops further ones.
pub const DEMOTES_QUEUED_MAX: usize = 256;

/// A stable 64-bit mix (splitmix64's finalizer): the same owner in every run and build.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The index of the core that owns `entry`'s block among `cores` network cores.
pub fn owner_core(entry: &IndexEntry, cores: usize) -> usize {
    if is_compacted_object(entry.seq) {
        compacted_entry_owner(entry.seq, entry.byte_start, cores)
    } else {
        window_object_owner(entry.seq, cores)
    }
}

/// The index of the core that owns the entry of compacted object `seq` starting at `byte_start`.
pub fn compacted_entry_owner(seq: LogSeq, byte_start: u64, cores: usize) -> usize {
    core_of(mix(seq.0 ^ mix(byte_start)), cores)
}

/// The index of the core that owns window object `seq` (all its partitions' segments).
pub fn window_object_owner(seq: LogSeq, cores: usize) -> usize {
    core_of(mix(seq.0), cores)
}

fn core_of(key: u64, cores: usize) -> usize {
    let cores = u64::try_from(cores.max(1)).unwrap_or(u64::MAX);
    // The remainder is below `cores`, which came from a usize.
    usize::try_from(key % cores).unwrap_or(0)
}

/// Work for the owner core: runs there against its [`FetchCore`].
type Job = Box<dyn FnOnce(Rc<FetchCore>) -> LocalBoxFuture<'static, ()> + Send>;

/// The way into one core's blocks, from any core. Cheap to clone.
#[derive(Clone)]
pub struct BlockSender(mpsc::Sender<Job>);

impl std::fmt::Debug for BlockSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockSender")
    }
}

impl BlockSender {
    /// Queues a hint job (a demotion, a cache offer) if fewer than `queued_max` of the jobs
    /// counted by `queued` are still held, and says whether it was queued. The job that
    /// `make_job` builds owns the [`QueuedCount`] of this send and drops it at the moment the
    /// count should fall: while a job holds it, its memory is counted. Past `queued_max`, nothing
    /// is built or sent and the count is unchanged; when the owner has stopped, the job comes
    /// back and is dropped here, and with it the count.
    fn try_send_counted(
        &self,
        queued: &Arc<AtomicUsize>,
        queued_max: usize,
        make_job: impl FnOnce(QueuedCount) -> Job,
    ) -> bool {
        if queued.fetch_add(1, Ordering::Relaxed) >= queued_max {
            queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let job = make_job(QueuedCount(Arc::clone(queued)));
        // A clone has a slot of its own, so this is not refused for a full inbox: the count is
        // the bound. It is refused only when the owner has stopped.
        self.0.clone().try_send(job).is_ok()
    }
}

/// One job's place in a per-core count of queued hint jobs; dropping it gives the place back.
struct QueuedCount(Arc<AtomicUsize>);

impl Drop for QueuedCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The receiving end of one core's block jobs, given to [`serve_inbox`] on that core.
pub struct BlockInbox(mpsc::Receiver<Job>);

impl std::fmt::Debug for BlockInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockInbox")
    }
}

/// One channel per network core, created before the executors start: every core gets all the
/// senders and its own inbox.
pub fn block_channels(cores: usize) -> (Vec<BlockSender>, Vec<BlockInbox>) {
    (0..cores)
        .map(|_| {
            let (sender, receiver) = mpsc::channel(BLOCK_JOBS_QUEUED_MAX);
            (BlockSender(sender), BlockInbox(receiver))
        })
        .unzip()
}

/// Runs on each network core until its executor stops: starts every job that arrives for this
/// core's blocks as a task of its own.
pub async fn serve_inbox(fetch: Rc<FetchCore>, inbox: BlockInbox) {
    let BlockInbox(mut receiver) = inbox;
    while let Some(job) = receiver.next().await {
        glommio::spawn_local(job(Rc::clone(&fetch))).detach();
    }
}

/// One network core's way to every core's blocks.
#[derive(Debug, Clone)]
pub struct BlockOwners {
    index: usize,
    cores: Vec<BlockSender>,
    /// Per core: demotion hints this core sent that the owner has not run yet.
    demotes_queued: Vec<Arc<AtomicUsize>>,
}

/// What a read job answers: each group's parts, and the GETs the owner made for it.
type JobAnswer = (Vec<GroupRead>, ReadCount);

impl BlockOwners {
    /// `cores[index]` must be the sender of this core's own inbox.
    pub fn new(index: usize, cores: Vec<BlockSender>) -> Self {
        let demotes_queued = cores.iter().map(|_| Arc::default()).collect();
        Self {
            index,
            cores,
            demotes_queued,
        }
    }

    pub fn core_count(&self) -> usize {
        self.cores.len().max(1)
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The core that owns `entry`'s block.
    pub fn owner(&self, entry: &IndexEntry) -> usize {
        owner_core(entry, self.core_count())
    }

    /// Whether this core owns window object `seq`.
    pub fn owns_window_object(&self, seq: LogSeq) -> bool {
        window_object_owner(seq, self.core_count()) == self.index
    }

    /// Reads `groups` on core `core` (which owns every want in them).
    async fn read_on(
        &self,
        core: usize,
        store: Arc<dyn ObjectStorage>,
        groups: Vec<Vec<Want>>,
        chunk_groups_max: usize,
        room_only: bool,
    ) -> Option<JobAnswer> {
        let BlockSender(sender) = self.cores.get(core)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |owner: Rc<FetchCore>| {
            async move {
                let groups: Vec<&[Want]> = groups.iter().map(Vec::as_slice).collect();
                let read =
                    read_groups_here(&owner, &store, &groups, chunk_groups_max, room_only).await;
                // The requester may be gone (its connection closed); the bytes stay cached.
                let _ = reply.send(read);
            }
            .boxed_local()
        });
        // A clone per call: `send` needs `&mut`.
        let mut sender = sender.clone();
        sender.send(job).await.ok()?;
        answer.await.ok()
    }

    /// Marks `range` of compacted object `seq` as gone past on core `core` (an eviction hint:
    /// dropped when [`DEMOTES_QUEUED_MAX`] of this core's hints wait there, or it is closed).
    pub fn demote_on(&self, core: usize, seq: LogSeq, range: Range<u64>) {
        let (Some(sender), Some(queued)) = (self.cores.get(core), self.demotes_queued.get(core))
        else {
            return;
        };
        sender.try_send_counted(queued, DEMOTES_QUEUED_MAX, |count| {
            Box::new(move |owner: Rc<FetchCore>| {
                // Released as the job starts: the count bounds the hints waiting in the inbox.
                drop(count);
                async move { owner.cache.borrow_mut().demote(seq, range) }.boxed_local()
            })
        });
    }
}

/// Offers (one per applied compaction job) queued for one core's cache and not yet inserted
/// there, before further offers to that core are dropped: each holds up to a job's bytes.
pub const CACHE_OFFERS_QUEUED_MAX: usize = 16;

/// How long a compaction job waits for the owner cores to say what they have cached before it
/// reads everything from the store.
pub const CACHE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The compactor's way into the network cores' caches: a job first takes the window objects it
/// merges from their owners' caches ([`CompactedOffers::lookup`]); each entry of an applied
/// compaction then goes to the core that owns it, which caches its bytes as it would after reading them from
/// the store — so a replay of data compacted while it was cached reads no more GETs than a
/// replay of the window objects it replaced. An offer is a hint: dropped when the owner has
/// [`CACHE_OFFERS_QUEUED_MAX`] waiting or has stopped. Only bytes the job took from the caches
/// are offered (`compact::CompactedObject::batch_pieces`).
#[derive(Debug, Clone)]
pub struct CompactedOffers {
    cores: Vec<BlockSender>,
    queued: Vec<Arc<AtomicUsize>>,
    metrics: Arc<Metrics>,
}

impl CompactedOffers {
    /// Owners counts the bytes it inserts in `metrics.log.compacted_bytes_cached`.
    pub fn new(cores: Vec<BlockSender>, metrics: Arc<Metrics>) -> Self {
        let queued = cores.iter().map(|_| Arc::default()).collect();
        Self {
            cores,
            queued,
            metrics,
        }
    }

    /// The spans of window objects a compaction job needs that their owner cores have cached
    /// (zero-copy slices of the cached buffers), so the job reads only the rest from the store.
    /// Compacted objects' spans are left to the store, and so is a core that has not answered
    /// within [`CACHE_LOOKUP_TIMEOUT`]. One job per core; the compactor runs one job at a time,
    /// so at most one lookup per core is ever queued.
    pub async fn lookup(&self, spans: BTreeMap<LogSeq, Range<u64>>) -> SourcesAtHand {
        let cores = self.cores.len();
        let mut per_core: Vec<Vec<(LogSeq, Range<u64>)>> = vec![Vec::new(); cores];
        for (seq, span) in spans {
            if is_compacted_object(seq) {
                continue;
            }
            if let Some(wants) = per_core.get_mut(window_object_owner(seq, cores)) {
                wants.push((seq, span));
            }
        }
        let mut answers = Vec::new();
        for (BlockSender(sender), wants) in self.cores.iter().zip(per_core) {
            if wants.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let job: Job = Box::new(move |owner: Rc<FetchCore>| {
                async move {
                    let cache = owner.cache.borrow();
                    let found: Vec<_> = wants
                        .into_iter()
                        .filter_map(|(seq, span)| {
                            let pieces = cache.peek(seq, span.clone())?;
                            Some((seq, (span, pieces)))
                        })
                        .collect();
                    let _ = reply.send(found);
                }
                .boxed_local()
            });
            if sender.clone().try_send(job).is_ok() {
                answers.push(answer);
            }
        }
        let answered = futures::future::join_all(answers);
        let timeout = glommio::timer::sleep(CACHE_LOOKUP_TIMEOUT);
        futures::pin_mut!(answered, timeout);
        let mut at_hand = SourcesAtHand::new();
        if let futures::future::Either::Left((answers, _)) =
            futures::future::select(answered, timeout).await
        {
            for found in answers.into_iter().flatten() {
                at_hand.extend(found);
            }
        }
        at_hand
    }

    /// Sends the entries of `blocks` to their owners' caches, one job per owner core; returns
    /// the bytes queued (an owner with [`CACHE_OFFERS_QUEUED_MAX`] offers not yet inserted gets
    /// none of this one).
    pub fn offer(&self, blocks: CompactedBlocks) -> u64 {
        let CompactedBlocks { seq, entries } = blocks;
        let cores = self.cores.len();
        let mut per_core: Vec<Vec<(u64, Bytes)>> = vec![Vec::new(); cores];
        for (byte_start, pieces) in entries {
            if let Some(owned) = per_core.get_mut(compacted_entry_owner(seq, byte_start, cores)) {
                owned.extend(pieces);
            }
        }
        let mut sent = 0;
        for ((sender, queued), pieces) in self.cores.iter().zip(&self.queued).zip(per_core) {
            if pieces.is_empty() {
                continue;
            }
            let bytes: u64 = pieces.iter().map(|(_, piece)| piece.len() as u64).sum();
            let metrics = Arc::clone(&self.metrics);
            let offered = sender.try_send_counted(queued, CACHE_OFFERS_QUEUED_MAX, |count| {
                Box::new(move |owner: Rc<FetchCore>| {
                    async move {
                        {
                            let mut cache = owner.cache.borrow_mut();
                            for (at, piece) in pieces {
                                cache.insert(seq, at, piece);
                            }
                        }
                        metrics
                            .log
                            .compacted_bytes_cached
                            .fetch_add(bytes, Ordering::Relaxed);
                        // Released once inserted: the count bounds the offers held in memory.
                        drop(count);
                    }
                    .boxed_local()
                })
            });
            if offered {
                sent += bytes;
            }
        }
        sent
    }
}

/// Where one want's bytes come from.
enum Source {
    /// This core's cache had all of a window object's range (written through at the commit).
    Cached(Vec<Bytes>),
    /// The read on core `n` (this one included).
    Core(usize),
}

/// [`super::reader::read_groups`] across cores: each want read by its block's owner, all owners
/// at once (each waiting for the chunks of at most `chunk_groups_max` groups); the answers merged
/// back into each group's order.
pub(crate) async fn read_routed(
    fetch: &FetchCore,
    owners: &BlockOwners,
    store: &Arc<dyn ObjectStorage>,
    groups: &[&[Want]],
    chunk_groups_max: usize,
    room_only: bool,
) -> (Vec<GroupRead>, ReadCount) {
    let cores = owners.core_count();
    let mut per_core: Vec<Vec<Vec<Want>>> = vec![vec![Vec::new(); groups.len()]; cores];
    let mut sources: Vec<Vec<Source>> = Vec::with_capacity(groups.len());
    {
        let mut cache = fetch.cache.borrow_mut();
        for (group, wants) in groups.iter().enumerate() {
            let mut group_sources = Vec::with_capacity(wants.len());
            for want in wants.iter() {
                let owner = owners.owner(&want.entry);
                let seq = want.entry.seq;
                let here = (owner != owners.index()
                    && want.chunk == 0
                    && !is_compacted_object(seq)
                    && cache.contains_object(seq))
                .then(|| cache.get(seq, want.from..want.to))
                .flatten();
                match here {
                    Some(slices) => group_sources.push(Source::Cached(slices)),
                    None => {
                        if let Some(wants) = per_core
                            .get_mut(owner)
                            .and_then(|groups| groups.get_mut(group))
                        {
                            wants.push(*want);
                        }
                        group_sources.push(Source::Core(owner));
                    }
                }
            }
            sources.push(group_sources);
        }
    }
    let reads = per_core.into_iter().enumerate().map(|(core, groups)| {
        async move {
            if groups.iter().all(Vec::is_empty) {
                return None;
            }
            if core == owners.index() {
                let slices: Vec<&[Want]> = groups.iter().map(Vec::as_slice).collect();
                return Some(
                    read_groups_here(fetch, store, &slices, chunk_groups_max, room_only).await,
                );
            }
            let answer = owners
                .read_on(core, Arc::clone(store), groups, chunk_groups_max, room_only)
                .await;
            // A core that takes no jobs (the agent is stopping): its wants fail below.
            Some(answer.unwrap_or_default())
        }
        .boxed_local()
    });
    let answers: Vec<Option<JobAnswer>> = futures::future::join_all(reads).await;
    let mut count = ReadCount::default();
    // Each core's parts per group, taken in order.
    let mut parts: Vec<Vec<Option<GroupRead>>> = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Some((groups, read)) => {
                count.gets += read.gets;
                count.bytes += read.bytes;
                parts.push(groups.into_iter().map(Some).collect());
            }
            None => parts.push(Vec::new()),
        }
    }
    let mut results = Vec::with_capacity(groups.len());
    for (group, (wants, group_sources)) in groups.iter().zip(sources).enumerate() {
        let mut taken: Vec<std::vec::IntoIter<_>> = Vec::new();
        let mut merged = Vec::with_capacity(wants.len());
        let mut failed = None;
        for (want, source) in wants.iter().zip(group_sources) {
            let part = match source {
                Source::Cached(slices) => Ok(want.part(slices)),
                Source::Core(core) => {
                    take_part(&mut parts, &mut taken, core, group, want.entry.seq)
                }
            };
            match part {
                Ok(part) => merged.push(part),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        results.push(match failed {
            Some(error) => Err(error),
            None => Ok(merged),
        });
    }
    (results, count)
}

/// The next part of `group` from core `core`'s answer.
fn take_part(
    parts: &mut [Vec<Option<GroupRead>>],
    taken: &mut Vec<std::vec::IntoIter<sluice_engine::read::SegmentPart>>,
    core: usize,
    group: usize,
    seq: LogSeq,
) -> Result<sluice_engine::read::SegmentPart, ReadError> {
    // `taken` holds, per core, the iterator over this group's parts once the first was taken.
    while taken.len() <= core {
        taken.push(Vec::new().into_iter());
    }
    let answer = parts
        .get_mut(core)
        .and_then(|groups| groups.get_mut(group))
        .and_then(Option::take);
    if let Some(answer) = answer {
        let iterator = answer?.into_iter();
        if let Some(slot) = taken.get_mut(core) {
            *slot = iterator;
        }
    }
    taken
        .get_mut(core)
        .and_then(Iterator::next)
        .ok_or_else(|| ReadError::Store {
            key: object_key(seq),
            start: 0,
            end: 0,
            reason: format!("network core {core} did not answer for this block"),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(seq: LogSeq, byte_start: u64) -> IndexEntry {
        IndexEntry {
            base_offset: 0,
            end_offset: 1,
            seq,
            byte_start,
            byte_len: 1,
            max_timestamp: 0,
        }
    }

    #[test]
    fn window_objects_and_compacted_entries_spread_over_the_cores() {
        let mut counts = [0_usize; 2];
        for seq in 0..1_000 {
            counts[owner_core(&entry(LogSeq(seq), 7), 2)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 400), "{counts:?}");
        // Every partition's entry of one window object has the object's owner.
        let owner = owner_core(&entry(LogSeq(5), 0), 2);
        assert!((0..64).all(|start| owner_core(&entry(LogSeq(5), start * 100), 2) == owner));
        // The entries of one compacted object spread.
        let compacted = sluice_engine::types::compacted_object_id(1, 3);
        let mut counts = [0_usize; 2];
        for start in 0..64 {
            counts[owner_core(&entry(compacted, 64 + start * 32 * 1024 * 1024), 2)] += 1;
        }
        assert!(counts.iter().all(|&count| count >= 20), "{counts:?}");
        assert_eq!(
            owner_core(&entry(LogSeq(5), 0), 2),
            window_object_owner(LogSeq(5), 2)
        );
        assert_eq!(owner_core(&entry(LogSeq(9), 0), 1), 0);
        assert_eq!(owner_core(&entry(LogSeq(9), 0), 0), 0);
    }

    /// A job that holds its count until the job is dropped.
    fn counted_job(count: QueuedCount) -> Job {
        Box::new(move |_owner: Rc<FetchCore>| {
            drop(count);
            async {}.boxed_local()
        })
    }

    #[test]
    fn a_counted_send_is_bounded_and_gives_its_count_back() {
        let (mut senders, mut inboxes) = block_channels(1);
        let (sender, BlockInbox(mut receiver)) = (senders.remove(0), inboxes.remove(0));
        let queued = Arc::new(AtomicUsize::new(0));

        // Below the bound: queued, and counted until the job is dropped.
        assert!(sender.try_send_counted(&queued, 2, counted_job));
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        assert!(sender.try_send_counted(&queued, 2, counted_job));
        assert_eq!(queued.load(Ordering::Relaxed), 2);

        // At the bound: no job is built or sent, and the count is unchanged.
        let refused = sender.try_send_counted(&queued, 2, |_| panic!("built past the bound"));
        assert!(!refused);
        assert_eq!(queued.load(Ordering::Relaxed), 2);
        let first = receiver.try_recv().unwrap();
        let second = receiver.try_recv().unwrap();
        assert!(receiver.try_recv().is_err(), "only two jobs were queued");

        // A job dropped (or run to its release) gives its place back.
        drop(first);
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(queued.load(Ordering::Relaxed), 0);

        // A stopped owner: the job comes back and its count is released.
        drop(receiver);
        assert!(!sender.try_send_counted(&queued, 2, counted_job));
        assert_eq!(queued.load(Ordering::Relaxed), 0);
    }
}
