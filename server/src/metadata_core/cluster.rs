//! The metadata core's side of a cluster (`--metadata`): a tailer that applies every agent's
//! records as the sequencer's head moves, and the lease loop that is this agent's licence to
//! append.
//!
//! # Why a tailer, and why it coalesces
//!
//! Offsets are assigned when a record is applied, so a produce is answered only once the tailer
//! applied its window's record — and a fetch parked on a partition another agent wrote is woken by
//! the same step. The head watch ([`sluice_engine::sequencer::PgSequencer::subscribe`]) keeps only
//! the newest position, so any number of commits between two wake-ups cost one read of many
//! records (up to a thousand per query), not one query per commit.
//!
//! # Why the lease stops appends
//!
//! The database orders records, so two agents never take the same position; what a lease adds is
//! that an agent cut off from the database (or paused past its lease) stops acting as a member:
//! once its lease is lost, or its local deadline (`valid_until`, never later than the database's
//! expiry) passes without a renewal, it stops appending for good and says so, and its produces
//! fail with a retriable error that sends clients elsewhere.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::log::{AgentLog, LogError, SequencedLog};
use sluice_engine::sequencer::{
    AgentInfo, AgentRegistration, ErrorKind, Lease, SequencerClient, SequencerError,
};

use super::cluster_view::{ClusterBoard, ClusterMember, ClusterView, node_id_of};
use super::flusher::{Shared, watermark_moves};
use super::watermarks::WatermarkUpdate;

/// Pause after a failed read before the tailer tries again.
const TAIL_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Pause after a failed renewal before trying again (well within a lease).
const RENEW_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Settings of an agent's membership.
#[derive(Debug, Clone)]
pub struct Membership {
    pub registration: AgentRegistration,
    pub lease_ms: u64,
    /// Where the live agents are published after every renewal, for Metadata and coordinators.
    pub board: Arc<ClusterBoard>,
}

/// Applies every record as the head moves, until the log stops for good.
pub(super) fn spawn_tailer(log: Rc<AgentLog>, shared: Rc<Shared>) {
    let Some(mut head) = log.sequenced().map(|log| log.sequencer().subscribe()) else {
        return;
    };
    glommio::spawn_local(async move {
        let Some(sequenced) = log.sequenced() else {
            return;
        };
        loop {
            let target = *head.borrow_and_update();
            if sequenced.applied_position() < target {
                let mut moved = Vec::new();
                let result = sequenced
                    .catch_up_with(&mut |events| moved.extend(watermark_moves(events)))
                    .await;
                if !moved.is_empty() {
                    let update: WatermarkUpdate = moved.into();
                    shared.broadcaster.borrow_mut().publish(&update);
                }
                match result {
                    Ok(_) => continue,
                    Err(LogError::Sequencer(error)) if error.kind() != ErrorKind::Fatal => {
                        tracing::warn!(%error, "cannot read the sequencer; trying again");
                        glommio::timer::sleep(TAIL_RETRY_PAUSE).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "STOPPED: cannot follow the cluster's log; this agent no longer accepts writes");
                        sequenced.stop(format!("cannot follow the cluster's log: {error}"));
                        shared.fenced.set(true);
                        return;
                    }
                }
            }
            if head.changed().await.is_err() {
                return;
            }
        }
    })
    .detach();
}

/// Renews `lease` every third of the lease; stops the log when it is lost or runs out.
pub(super) fn spawn_lease_loop(
    log: Rc<AgentLog>,
    shared: Rc<Shared>,
    membership: Membership,
    mut lease: Lease,
) {
    if log.sequenced().is_none() {
        return;
    }
    glommio::spawn_local(async move {
        let Some(sequenced) = log.sequenced() else {
            return;
        };
        let interval = Duration::from_millis((membership.lease_ms / 3).max(1));
        let mut pause = interval;
        sequenced.hold_lease_until(lease.valid_until.into_std());
        *shared.lease.borrow_mut() = Some(lease.clone());
        publish_members(sequenced.sequencer(), &membership).await;
        loop {
            glommio::timer::sleep(pause).await;
            if shared.stopping.get() {
                return;
            }
            let renewal = sequenced
                .sequencer()
                .renew(lease.clone(), membership.lease_ms)
                .await;
            // A graceful stop took the lease (and may have deregistered it) meanwhile.
            if shared.stopping.get() {
                return;
            }
            match renewal {
                Ok(renewed) => {
                    sequenced.hold_lease_until(renewed.valid_until.into_std());
                    *shared.lease.borrow_mut() = Some(renewed.clone());
                    lease = renewed;
                    pause = interval;
                    publish_members(sequenced.sequencer(), &membership).await;
                }
                Err(error) if is_lost(&error) || tokio::time::Instant::now() >= lease.valid_until => {
                    tracing::error!(%error, agent = %lease.agent_id, incarnation = lease.incarnation, "LEASE LOST: this agent stops accepting writes");
                    sequenced.stop(format!("lease lost: {error}"));
                    shared.fenced.set(true);
                    // The live agents as of now (the view may predate agents that joined while
                    // this one was cut off), without this one.
                    publish_members(sequenced.sequencer(), &membership).await;
                    leave_the_view(&membership);
                    if let Some(metrics) = &shared.metrics {
                        metrics
                            .log
                            .fenced
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "lease renewal failed; trying again");
                    pause = RENEW_RETRY_PAUSE;
                }
            }
        }
    })
    .detach();
}

/// A graceful stop: no append starts any more, then the agent leaves the cluster at once
/// (`deregister`) instead of letting its lease run out, so the others stop naming it now and the
/// collector of `data/` starts timing its token now. Best effort: if it fails, the lease runs out.
pub(super) async fn leave(log: &SequencedLog, shared: &Shared) {
    shared.stopping.set(true);
    log.stop("the agent is stopping".to_owned());
    let Some(lease) = shared.lease.borrow_mut().take() else {
        return;
    };
    let (agent, incarnation) = (lease.agent_id.clone(), lease.incarnation);
    match log.sequencer().deregister(lease).await {
        Ok(_) => tracing::info!(%agent, incarnation, "left the cluster"),
        Err(error) => {
            tracing::warn!(%error, %agent, "could not leave the cluster; its lease runs out instead");
        }
    }
}

fn is_lost(error: &SequencerError) -> bool {
    matches!(error, SequencerError::LeaseLost { .. }) || error.kind() == ErrorKind::Fatal
}

/// Lists the live agents and publishes them on the board (a failed listing keeps the last view).
async fn publish_members(sequencer: &SequencerClient, membership: &Membership) {
    match sequencer.live_agents().await {
        Ok(agents) => {
            let self_node_id = node_id_of(&membership.registration.agent_id);
            let members = agents.iter().filter_map(member).collect();
            membership
                .board
                .publish(ClusterView::new(members, self_node_id));
        }
        Err(error) => tracing::warn!(%error, "cannot list the cluster's live agents"),
    }
}

/// A live agent as a broker clients can reach (`host:port`); one whose address does not parse is
/// left out.
fn member(agent: &AgentInfo) -> Option<ClusterMember> {
    let (host, port) = agent.address.rsplit_once(':')?;
    Some(ClusterMember {
        node_id: node_id_of(&agent.agent_id),
        agent_id: agent.agent_id.clone(),
        host: host.to_owned(),
        port: port.parse().ok()?,
        zone: agent.zone.clone(),
        listeners: super::cluster_view::listeners_of_roles(&agent.roles),
    })
}

/// After a lost lease: this agent's own answers stop naming it (Metadata lists the others,
/// and the others coordinate every group), as the other agents already do.
fn leave_the_view(membership: &Membership) {
    let view = membership.board.view();
    let others: Vec<ClusterMember> = view
        .members()
        .iter()
        .filter(|member| member.node_id != view.self_node_id())
        .cloned()
        .collect();
    if !others.is_empty() {
        membership
            .board
            .publish(ClusterView::new(others, view.self_node_id()));
    }
}
