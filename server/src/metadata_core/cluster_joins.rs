//! Announced joins: an agent lists the live agents again as soon as another one registers or
//! deregisters, instead of at its next renewal (up to a third of a lease later).
//!
//! Registration and deregistration notify the sequencer's membership channel
//! (`PgSequencer::subscribe_agents`); this task waits for it, lets a burst settle for
//! [`JOIN_SETTLE`] (several agents starting at once cost one listing, and listings are at most
//! one per settle period plus the listing's own time), then lists and publishes the live agents
//! as the renewal does. Notifications are a hint: one missed (the watcher reconnecting, or
//! `notify = false`) only leaves the view to the next renewal, as before.
//!
//! A fenced agent publishes nothing here: it has left its own view (`cluster.rs`, `fence`), and a
//! listing made while the database still counts its expired lease as live would put it back. The
//! rejoin lists the agents itself before it takes writes again.

use std::rc::Rc;
use std::time::Duration;

use sluice_engine::log::AgentLog;
use sluice_engine::sequencer::AgentInfo;

use super::cluster::Membership;
use super::cluster_view::{ClusterMember, ClusterView, listeners_of_roles, node_id_of};
use super::flusher::Shared;

/// How long a membership notification waits for others of the same burst before the listing.
const JOIN_SETTLE: Duration = Duration::from_millis(20);

/// Lists the live agents whenever another agent registers or deregisters, until the agent stops.
pub(super) fn spawn_join_watch(log: Rc<AgentLog>, shared: Rc<Shared>, membership: Membership) {
    let Some(mut changes) = log
        .sequenced()
        .map(|sequenced| sequenced.sequencer().subscribe_agents())
    else {
        return;
    };
    glommio::spawn_local(async move {
        let Some(sequenced) = log.sequenced() else {
            return;
        };
        // `Err`: the sequencer is gone (the agent stopped).
        while changes.changed().await.is_ok() {
            glommio::timer::sleep(JOIN_SETTLE).await;
            // Notifications of the burst so far are answered by the listing below.
            changes.borrow_and_update();
            if shared.stopping.get() {
                return;
            }
            if shared.fenced.get() {
                continue;
            }
            let ticket = membership.board.begin_listing();
            let agents = match sequenced.sequencer().live_agents().await {
                Ok(agents) => agents,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the cluster's live agents after a join");
                    continue;
                }
            };
            // The lease may have been lost while the listing was on its way.
            if shared.fenced.get() || shared.stopping.get() {
                continue;
            }
            let self_node_id = node_id_of(&membership.registration.agent_id);
            let members = agents.iter().filter_map(member).collect();
            membership
                .board
                .publish_listing(ticket, ClusterView::new(members, self_node_id));
        }
    })
    .detach();
}

/// An agent as the view names it (the same mapping as the renewal's listing, `cluster.rs`).
fn member(agent: &AgentInfo) -> Option<ClusterMember> {
    let (host, port) = agent.address.rsplit_once(':')?;
    Some(ClusterMember {
        node_id: node_id_of(&agent.agent_id),
        agent_id: agent.agent_id.clone(),
        host: host.to_owned(),
        port: port.parse().ok()?,
        zone: agent.zone.clone(),
        listeners: listeners_of_roles(&agent.roles),
    })
}
