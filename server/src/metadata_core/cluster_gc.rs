//! Housekeeping in a cluster: which agent runs retention and garbage collection, and the steps
//! that make collecting a cluster's window objects (`data/…`) safe.
//!
//! # One collector, chosen without talking
//!
//! The collector is the rendezvous owner of a fixed key ([`COLLECTOR_KEY`]) over the live agents
//! each agent last listed — the routing code that names group coordinators. Agents change views
//! at their own renewals, so for up to a third of a lease two agents may both collect, or none;
//! neither matters for safety: every agent's decision is safe on its own (the facts it times are
//! its own observations, `sluice_engine::log::data_gc`), and deleting a deleted key succeeds. One
//! collector only saves duplicate listings and duplicate retention commands.
//!
//! # The order of a data sweep
//!
//! The safety argument needs its inputs in one order: list `data/` (and `compacted/`, which the
//! round lists before); list the live agents (so every listed object's registration is visible);
//! read the clock; read the sequencer's head; wait until the state has applied that head; only
//! then ask the state what it references.
//!
//! # Compaction: one compactor per partition
//!
//! A partition is compacted only by the agent that leads it for a client without a zone: the
//! rendezvous owner of the partition over all live agents this agent last listed
//! ([`owns_partition`]), the leader Metadata names. Views differ for a
//! moment after a change, so two agents may both compact a partition: the swap sent last is
//! rejected when the index moved under its plan, or replaces the other's entry with one of the
//! same offsets and bytes when both planned the same run — an orphan object either way,
//! collected like any unreferenced one, never a wrong index.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_engine::log::data_gc::{DataCandidates, DataCollector, LiveWriters, list_agent_objects};
use sluice_engine::sequencer::SequencerClient;
use sluice_engine::types::{LogSeq, cluster_compacted_object_parts};

use super::CoreHandle;
use super::cluster_view::{ClusterBoard, ClusterView};

/// The key whose rendezvous owner collects.
pub const COLLECTOR_KEY: &str = "sluice:housekeeping";
/// Longest a sweep waits for the state to apply the head it read (the tailer is normally
/// milliseconds behind); past it the data sweep is skipped this round.
const CAUGHT_UP_WAIT_MAX: Duration = Duration::from_secs(10);
const CAUGHT_UP_POLL: Duration = Duration::from_millis(20);
/// Rows of agents expired this long are deleted (`forget_expired_agents`): a day, so ids that
/// never return (pods with random names) do not accumulate, and an agent restarted within a day
/// keeps counting its incarnations.
pub const FORGET_EXPIRED_AGENTS_AFTER_MS: u64 = 24 * 60 * 60 * 1_000;

/// What housekeeping needs of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterHousekeeping {
    pub sequencer: SequencerClient,
    /// The live agents as the lease loop last listed them.
    pub board: Arc<ClusterBoard>,
    /// The cluster's `lease_ms`: a compaction job sends its swap within one lease of its
    /// object's PUT starting (`sluice_engine::log::data_gc`).
    pub lease_ms: u64,
}

impl ClusterHousekeeping {
    /// Whether this agent collects now (it also does before its first listing, when it knows
    /// only itself).
    pub fn is_collector(&self) -> bool {
        self.board.view().coordinates(COLLECTOR_KEY)
    }

    /// A test of "this agent compacts partition `partition` of `topic`" by the view as it is now
    /// (`Send`, for a query on the state): the partition's rendezvous owner over all live agents,
    /// or this agent before its first listing.
    pub fn partition_owner_test(&self) -> impl Fn(&str, i32) -> bool + Send + 'static {
        let view = self.board.view();
        move |topic: &str, partition: i32| owns_partition(&view, topic, partition)
    }
}

/// Whether the agent whose view this is owns `partition` of `topic` for compaction: the leader
/// Metadata names for a client without a zone (or itself when it knows no agent).
pub fn owns_partition(view: &ClusterView, topic: &str, partition: i32) -> bool {
    view.partition_leader(topic, partition, None)
        .is_none_or(|member| member.node_id == view.self_node_id())
}

/// What one data sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSweep {
    pub listed: usize,
    pub candidates: DataCandidates,
}

/// Lists `data/` and decides every object, with the cluster's compacted objects among
/// `compacted` (the round's listing of `compacted/`, made before this), in the order the safety
/// argument needs (module doc). `clock` is the collector's monotonic clock's origin.
pub async fn data_sweep(
    core: &CoreHandle,
    cluster: &ClusterHousekeeping,
    collector: &mut DataCollector,
    compacted: &[LogSeq],
    clock: Instant,
) -> Result<DataSweep, String> {
    let mut listed = list_agent_objects(core.background_store().as_ref())
        .await
        .map_err(|error| format!("listing data/: {error}"))?;
    // Only the objects a cluster's compactor named by a token: an agent alone's, named by
    // epoch, are never decided by this rule (`data_gc`).
    listed.extend(
        compacted
            .iter()
            .filter(|id| cluster_compacted_object_parts(**id).is_some()),
    );
    let agents = cluster
        .sequencer
        .live_agents()
        .await
        .map_err(|error| format!("listing the live agents: {error}"))?;
    let live = LiveWriters::of(agents.iter().map(|agent| agent.roles.as_slice()));
    let now_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let head = cluster
        .sequencer
        .head()
        .await
        .map_err(|error| format!("reading the sequencer's head: {error}"))?;
    wait_applied(core, head).await?;
    let referenced = core
        .query(|state| {
            let mut referenced = state.referenced_agent_objects();
            referenced.extend(state.referenced_compacted_objects());
            referenced
        })
        .await
        .map_err(|error| error.to_string())?;
    Ok(DataSweep {
        listed: listed.len(),
        candidates: collector.candidates(&listed, &referenced, &live, now_ms),
    })
}

/// Waits until the state has applied position `head`.
async fn wait_applied(core: &CoreHandle, head: u64) -> Result<(), String> {
    let deadline = Instant::now() + CAUGHT_UP_WAIT_MAX;
    loop {
        let applied = core
            .query(|state| state.last_offered_seq().map_or(0, |seq| seq.0))
            .await
            .map_err(|error| error.to_string())?;
        if applied >= head {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the state applied position {applied}, not the head {head}, within {CAUGHT_UP_WAIT_MAX:?}"
            ));
        }
        glommio::timer::sleep(CAUGHT_UP_POLL).await;
    }
}

/// Deletes the rows of agents expired for a day (best effort: the next round tries again).
pub async fn forget_expired_agents(cluster: &ClusterHousekeeping) {
    match cluster
        .sequencer
        .forget_expired_agents(FORGET_EXPIRED_AGENTS_AFTER_MS)
        .await
    {
        Ok(0) => {}
        Ok(forgotten) => tracing::info!(forgotten, "forgot agents expired for a day"),
        Err(error) => tracing::warn!(%error, "cannot forget expired agents"),
    }
}
