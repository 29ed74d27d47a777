//! Read-ahead for consumers catching up from the object store.
//!
//! A Kafka client keeps one fetch in flight per broker: it sends the next fetch only once it has
//! the answer to the last. A consumer replaying history from the store therefore alternates two
//! idle phases — the agent waits for GETs while the client has nothing to parse, then the client
//! parses while the agent and the store have nothing to do. When a fetch had to read the store,
//! the agent starts reading what the *next* fetch of the same partitions will ask for (each
//! partition from where this answer ends, within the same byte budgets) into the core's block
//! cache as soon as the answer is built, so GETs overlap the response's transfer and the client's
//! parsing. A consumer at the live edge is served from the write-through cache and never starts
//! one.
//!
//! A fetch that arrives while a read-ahead of its partitions at its offsets is still running waits
//! for it rather than issuing the same GETs a second time; the bytes are then in the cache.
//!
//! Past that, the next *chunk* of each large compacted entry is read one chunk ahead of the
//! answer ([`start_lead`]), by a task no fetch waits for: a replay's partitions cross into their
//! next chunks together, and reading those chunks only one fetch before they are needed made that
//! fetch wait for a burst of GETs. Where the lead reaches the end of a partition's entry, it takes
//! the first chunk of the compacted entry after it as well: the partitions also cross into their
//! next compacted entries together.
//!
//! Limits: at most [`READAHEADS_INFLIGHT_MAX`] per core (more are skipped, not queued), each at
//! most the request's `max_bytes` plus one partition's entries (as [`super::reader`]'s plan), and
//! the cache's own byte budget bounds what stays; at most [`LEAD_READS_INFLIGHT_MAX`] reads of next
//! chunks per core, each at most [`lead_bytes_max`]. A read-ahead that fails is dropped: the fetch
//! that wanted the bytes reads them itself and reports the error.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use sluice_engine::store::ObjectStorage;

use super::FetchCore;
use super::reader::{
    PlanRequest, Want, chunk_bytes, lead_wants, plan, prefetch_bytes_max, read_groups,
    read_groups_awaiting, wants,
};
use super::sessions::PartitionKey;
use crate::metadata_core::CoreHandle;

/// Read-aheads running at once on one core.
pub const READAHEADS_INFLIGHT_MAX: usize = 4;

/// Reads of next chunks ([`start_lead`]) running at once on one core (more are skipped: the
/// read-ahead of the fetch that needs the chunk reads it then, as before).
pub const LEAD_READS_INFLIGHT_MAX: usize = 4;

type Pending = Shared<LocalBoxFuture<'static, ()>>;

/// Partitions remembered at most per core; past it, finished read-aheads are forgotten (a client
/// that never came back for its bytes leaves nothing behind for long).
const PARTITIONS_REMEMBERED_MAX: usize = 16_384;

/// The read-aheads of one core, by the partition and offset each serves: running (`Some`, a
/// fetch waits for it) or finished and not yet claimed by a fetch (`None`).
#[derive(Default)]
pub struct Readaheads {
    /// Partition → (the offset the read-ahead starts at, its id, the read while it runs).
    by_partition: HashMap<PartitionKey, (i64, u64, Option<Pending>)>,
    running: usize,
    next_id: u64,
    /// Reads of next chunks running ([`start_lead`]).
    leads_running: usize,
}

impl std::fmt::Debug for Readaheads {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Readaheads")
            .field("partitions", &self.by_partition.len())
            .field("running", &self.running)
            .finish()
    }
}

impl Readaheads {
    /// Takes the read-aheads made for a fetch of `wanted` (partition, offset): the ones still
    /// running to wait for, and whether any matched (the fetch is then part of a replay, and
    /// reads ahead in turn).
    fn claim<'a>(
        &mut self,
        wanted: impl Iterator<Item = (&'a PartitionKey, i64)>,
    ) -> (Vec<Pending>, bool) {
        let mut ids = Vec::new();
        let mut pending = Vec::new();
        let mut matched = false;
        for (key, offset) in wanted {
            let Some((from, id, read)) = self.by_partition.remove(key) else {
                continue;
            };
            if from != offset {
                continue;
            }
            matched = true;
            if let Some(read) = read
                && !ids.contains(&id)
            {
                ids.push(id);
                pending.push(read);
            }
        }
        (pending, matched)
    }

    fn finish(&mut self, id: u64) {
        for (_, running_id, read) in self.by_partition.values_mut() {
            if *running_id == id {
                *read = None;
            }
        }
        if self.by_partition.len() > PARTITIONS_REMEMBERED_MAX {
            self.by_partition.retain(|_, (_, _, read)| read.is_some());
        }
        self.running = self.running.saturating_sub(1);
    }
}

/// One partition to read ahead: its request for the plan and how the client names it.
#[derive(Debug, Clone)]
pub struct Ahead {
    pub key: PartitionKey,
    pub request: PlanRequest,
}

/// Waits for the read-aheads that are reading what this fetch is about to read. `true` when a
/// read-ahead (running or finished) was made for this fetch.
pub async fn claim<'a>(
    fetch: &FetchCore,
    wanted: impl Iterator<Item = (&'a PartitionKey, i64)>,
) -> bool {
    let (pending, matched) = fetch.readaheads.borrow_mut().claim(wanted);
    if !pending.is_empty() {
        futures::future::join_all(pending).await;
    }
    matched
}

/// Starts reading `partitions` (in the order the next fetch will fill them) into the cache, up
/// to `max_bytes` in all, unless the core runs [`READAHEADS_INFLIGHT_MAX`] already.
pub fn start(fetch: &Rc<FetchCore>, core: &CoreHandle, partitions: Vec<Ahead>, max_bytes: u64) {
    if partitions.is_empty() {
        return;
    }
    let id = {
        let mut readaheads = fetch.readaheads.borrow_mut();
        if readaheads.running >= READAHEADS_INFLIGHT_MAX {
            return;
        }
        readaheads.running += 1;
        readaheads.next_id += 1;
        readaheads.next_id
    };
    let (keys, requests): (Vec<(PartitionKey, i64)>, Vec<PlanRequest>) = partitions
        .into_iter()
        .map(|ahead| ((ahead.key, ahead.request.fetch_offset), ahead.request))
        .unzip();
    let store = Arc::clone(core.store());
    let read = read_ahead(
        Rc::clone(fetch),
        core.clone(),
        Arc::clone(&store),
        requests,
        max_bytes,
    );
    let finishing = Rc::clone(fetch);
    let pending: Pending = async move {
        let lead = read.await;
        finishing.readaheads.borrow_mut().finish(id);
        // The fetch that claims this read-ahead has its bytes now; the next chunks are read on
        // their own, never waited for by a fetch.
        start_lead(finishing, store, lead);
    }
    .boxed_local()
    .shared();
    {
        let mut readaheads = fetch.readaheads.borrow_mut();
        for (key, offset) in keys {
            readaheads
                .by_partition
                .insert(key, (offset, id, Some(pending.clone())));
        }
    }
    glommio::spawn_local(pending).detach();
}

/// Reads `lead` (the next chunks of compacted entries, [`lead_wants`]) into the cache as a task of
/// its own, unless [`LEAD_READS_INFLIGHT_MAX`] run on this core already. At most
/// [`lead_bytes_max`] of them: a hostile fetch of many partitions cannot make the core read more
/// ahead than the cache could keep.
fn start_lead(fetch: Rc<FetchCore>, store: Arc<dyn ObjectStorage>, lead: Vec<Vec<Want>>) {
    let bytes_max = lead_bytes_max(fetch.agent_cache_bytes());
    let mut bytes: u64 = 0;
    let lead: Vec<Vec<Want>> = lead
        .into_iter()
        .take_while(|wants| {
            bytes = bytes.saturating_add(wants.iter().map(|want| want.to - want.from).sum());
            bytes <= bytes_max
        })
        .filter(|wants| !wants.is_empty())
        .collect();
    if lead.is_empty() {
        return;
    }
    {
        let mut readaheads = fetch.readaheads.borrow_mut();
        if readaheads.leads_running >= LEAD_READS_INFLIGHT_MAX {
            return;
        }
        readaheads.leads_running += 1;
    }
    glommio::spawn_local(async move {
        let groups: Vec<&[Want]> = lead.iter().map(Vec::as_slice).collect();
        // Only what fits beside the chunks partitions are reading; errors are the fetch's that
        // needs the bytes to meet and report.
        let _ = read_groups_awaiting(&fetch, &store, &groups, usize::MAX, true).await;
        let mut readaheads = fetch.readaheads.borrow_mut();
        readaheads.leads_running = readaheads.leads_running.saturating_sub(1);
    })
    .detach();
}

/// The most one read of next chunks ([`start_lead`]) covers: half the agent's cache (each
/// partition being replayed keeps its current chunk and its next one; see
/// [`super::reader::chunk_bytes`]).
pub fn lead_bytes_max(agent_cache_bytes: u64) -> u64 {
    agent_cache_bytes / 2
}

/// Reads what the next fetch of the partitions wants into the cache; answers the chunks past it
/// ([`lead_wants`]) for [`start_lead`].
async fn read_ahead(
    fetch: Rc<FetchCore>,
    core: CoreHandle,
    store: Arc<dyn ObjectStorage>,
    requests: Vec<PlanRequest>,
    max_bytes: u64,
) -> Vec<Vec<Want>> {
    let budgets: Vec<(u64, i64)> = requests
        .iter()
        .map(|request| (request.bytes_max, request.fetch_offset))
        .collect();
    let Ok(plans) = core.query(move |state| plan(state, &requests)).await else {
        return Vec::new();
    };
    let mut planned_bytes: u64 = 0;
    let mut group_wants: Vec<Vec<Want>> = Vec::new();
    let mut nexts = Vec::new();
    let read_bytes_max = prefetch_bytes_max(max_bytes);
    let chunk = chunk_bytes(fetch.agent_cache_bytes(), budgets.len());
    for (planned, (budget, fetch_offset)) in plans.iter().zip(&budgets) {
        let Ok(planned) = planned else { continue };
        if planned_bytes >= read_bytes_max {
            break;
        }
        if planned.entries.is_empty() {
            continue;
        }
        // As the fetch's prefetch: what the answer takes is capped by the budget.
        let entries_bytes: u64 = planned.entries.iter().map(|entry| entry.byte_len).sum();
        planned_bytes = planned_bytes.saturating_add(entries_bytes.min((*budget).max(1)));
        group_wants.push(wants(
            &fetch.positions.borrow(),
            &planned.entries,
            u64::try_from(*fetch_offset).unwrap_or(0),
            *budget,
            chunk,
        ));
        nexts.push(planned.next);
    }
    if group_wants.is_empty() {
        return Vec::new();
    }
    let groups: Vec<&[Want]> = group_wants.iter().map(Vec::as_slice).collect();
    // What was read is in the cache now; errors are the next fetch's to meet and report.
    let _ = read_groups(&fetch, &store, &groups).await;
    group_wants
        .iter()
        .zip(nexts)
        .map(|(wants, next)| lead_wants(wants, next, chunk))
        .collect()
}
