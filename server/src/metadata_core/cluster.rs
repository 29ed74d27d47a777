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
//! expiry) passes without a renewal, it stops appending and says so, and its produces fail with a
//! retriable error that sends clients elsewhere.
//!
//! # Why a rejoin is a new incarnation
//!
//! Once the database answers again the agent rejoins by itself, exactly as a restart would: a
//! new data token no object carries, a new registration announcing it (a new incarnation and
//! lease), the log caught up to the head, the view listed again — and only then appends. Nothing
//! of the old incarnation is reused: the collector of `data/` may already be timing the old
//! token as gone (`docs/cluster.md`, "Garbage collection of `data/`"), so a window of the old
//! incarnation still in its PUT is never sent ([`SequencedLog::append`] checks after the PUT that
//! its incarnation still appends), and no append runs under the old lease past its deadline.
//!
//! # Why an agent behind the truncation rejoins too
//!
//! An agent that lagged more than a checkpoint interval (paused, say) finds the records after
//! its state deleted by another agent's truncation. Its state cannot be caught up any more, only
//! replaced, as a restart would replace it: the tailer stops appends and wakes the lease loop,
//! which fences the agent (retriable errors, out of its own view) and rejoins — and the rejoin's
//! catch-up swaps in the newest checkpoint first ([`SequencedLog::rejoin_with`]). What the
//! network cores derived from the old state follows the new one: every partition's watermark is
//! published again (parked fetches re-read theirs), groups come back from the new state with the
//! view (they left with it at the fence), and the SCRAM and quota snapshots, re-read every
//! second and versioned by log position, take the new state at their next read. (The ACL
//! snapshot is re-read only after an ACL change made through this agent, reloaded or not: a
//! limitation of clusters that `docs/cluster.md` lists.)

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::log::data_gc::{TOKEN_ROLE_PREFIX, token_of_roles, token_role};
use sluice_engine::log::{AgentLog, LogError, SequencedLog, SequencedRejoin, SequencedWriter};
use sluice_engine::metadata::MetadataState;
use sluice_engine::sequencer::{
    AgentInfo, AgentRegistration, ErrorKind, Lease, SequencerClient, SequencerError,
};
use sluice_engine::types::TopicPartition;

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
///
/// When the records after the applied state are gone (`Truncated`: this agent lagged more than a
/// checkpoint interval behind the others, e.g. paused), it stops appends, hands over to the lease
/// loop — which fences the agent and rejoins from the newest checkpoint — and waits until that
/// rejoin has caught up.
pub(super) fn spawn_tailer(log: Rc<AgentLog>, shared: Rc<Shared>) {
    let Some(mut head) = log.sequenced().map(|log| log.sequencer().subscribe()) else {
        return;
    };
    glommio::spawn_local(async move {
        let Some(sequenced) = log.sequenced() else {
            return;
        };
        loop {
            while shared.behind_truncation.get() {
                shared.truncation_overcome.notified().await;
            }
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
                    // A rejoin swapped in a checkpoint past the position this read started from.
                    Err(LogError::Sequencer(SequencerError::Truncated { after, .. }))
                        if sequenced.applied_position() > after =>
                    {
                        continue;
                    }
                    Err(LogError::Sequencer(error @ SequencerError::Truncated { .. })) => {
                        tracing::error!(%error, "BEHIND THE LOG'S TRUNCATION: this agent stops accepting writes until it rejoins from the newest checkpoint");
                        sequenced.stop(format!(
                            "behind the truncation of the cluster's log: {error}"
                        ));
                        shared.fenced.set(true);
                        shared.behind_truncation.set(true);
                        shared.truncation_found.notify_one();
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "STOPPED: cannot follow the cluster's log; this agent no longer accepts writes");
                        sequenced.stop(format!("cannot follow the cluster's log: {error}"));
                        shared.tailer_stopped.set(true);
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

/// Renews `lease` every third of the lease; when it is lost or runs out, stops the log, leaves
/// the view, and rejoins as a new incarnation once the database answers again.
pub(super) fn spawn_lease_loop(
    log: Rc<AgentLog>,
    shared: Rc<Shared>,
    mut membership: Membership,
    mut lease: Lease,
) {
    let Some(sequenced) = log.sequenced() else {
        return;
    };
    // Held before the first window can start, so that every append of the agent is fenced by
    // its lease in the database.
    sequenced.hold_lease(&lease);
    glommio::spawn_local(async move {
        let Some(sequenced) = log.sequenced() else {
            return;
        };
        *shared.lease.borrow_mut() = Some(lease.clone());
        publish_members(sequenced.sequencer(), &membership).await;
        loop {
            let Some(lost) = hold_lease(sequenced, &shared, &membership, lease).await else {
                return;
            };
            fence(sequenced, &shared, &membership).await;
            let Some(rejoined) = rejoin(sequenced, &shared, &mut membership, &lost).await else {
                return;
            };
            lease = rejoined;
        }
    })
    .detach();
}

/// Renews `lease` every third of the lease until it is lost or runs out (returns it, last as
/// renewed) or the agent stops (`None`).
async fn hold_lease(
    sequenced: &SequencedLog,
    shared: &Shared,
    membership: &Membership,
    mut lease: Lease,
) -> Option<Lease> {
    let interval = Duration::from_millis((membership.lease_ms / 3).max(1));
    let mut pause = interval;
    loop {
        // The tailer found the records after the state truncated (it stopped appends): fence
        // and rejoin now, from the newest checkpoint, whatever the lease says. A wake-up left
        // over from a truncation an earlier rejoin overcame only brings the renewal forward.
        futures::future::select(
            std::pin::pin!(glommio::timer::sleep(pause)),
            std::pin::pin!(shared.truncation_found.notified()),
        )
        .await;
        if shared.stopping.get() {
            return None;
        }
        if shared.behind_truncation.get() {
            return Some(lease);
        }
        let renewal = sequenced
            .sequencer()
            .renew(lease.clone(), membership.lease_ms)
            .await;
        // A graceful stop took the lease (and may have deregistered it) meanwhile.
        if shared.stopping.get() {
            return None;
        }
        match renewal {
            Ok(renewed) => {
                sequenced.hold_lease(&renewed);
                *shared.lease.borrow_mut() = Some(renewed.clone());
                lease = renewed;
                pause = interval;
                publish_members(sequenced.sequencer(), membership).await;
            }
            Err(error) if is_lost(&error) || tokio::time::Instant::now() >= lease.valid_until => {
                tracing::error!(%error, agent = %lease.agent_id, incarnation = lease.incarnation, "LEASE LOST: this agent stops accepting writes until it rejoins");
                sequenced.stop(format!("lease lost: {error}"));
                return Some(lease);
            }
            Err(error) => {
                tracing::warn!(%error, "lease renewal failed; trying again");
                pause = RENEW_RETRY_PAUSE;
            }
        }
    }
}

/// After a lost lease (appends already stopped): the agent says so in its metrics and leaves its
/// own view, so its Metadata names the others and they coordinate every group.
async fn fence(sequenced: &SequencedLog, shared: &Shared, membership: &Membership) {
    shared.fenced.set(true);
    if let Some(metrics) = &shared.metrics {
        metrics
            .log
            .fenced
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // The live agents as of now (the view may predate agents that joined while this one was cut
    // off), without this one. With the database unreachable the listing fails and the last view
    // stays, without this one.
    publish_members(sequenced.sequencer(), membership).await;
    leave_the_view(membership);
}

/// Rejoins after a lost lease, as a restart would: a new data token no object carries (the
/// collector may already time the old token as gone), a new registration announcing it (a new
/// incarnation and lease), the log caught up to the head, the view listed again with this agent
/// in it — and only then appends again ([`SequencedLog::rejoin`]). Tries until it succeeds, with a
/// pause that doubles up to a third of a lease, one warning per failed attempt. `None`: the agent
/// is stopping, or its log cannot be followed any more (the tailer stopped: a restart is needed).
async fn rejoin(
    sequenced: &SequencedLog,
    shared: &Shared,
    membership: &mut Membership,
    lost: &Lease,
) -> Option<Lease> {
    let pause_max = Duration::from_millis((membership.lease_ms / 3).max(1));
    let mut pause = RENEW_RETRY_PAUSE.min(pause_max);
    let mut attempt: u64 = 0;
    // What this process registered last (an attempt may register, then fail, or register
    // without learning it did).
    let mut own = OwnRegistration {
        incarnation: lost.incarnation,
        token: None,
    };
    loop {
        glommio::timer::sleep(pause).await;
        if shared.stopping.get() {
            return None;
        }
        if shared.tailer_stopped.get() {
            tracing::error!(
                "not rejoining the cluster: this agent cannot follow the cluster's log; restart it"
            );
            return None;
        }
        attempt += 1;
        // A lease lost because another process registered this agent id (a restart elsewhere)
        // is that process's now: rejoining would take it back, and the two would fence each
        // other in turn.
        match superseded_by(sequenced, membership, &own).await {
            Ok(Some(incarnation)) => {
                tracing::error!(
                    agent = %lost.agent_id,
                    incarnation = own.incarnation,
                    superseded_by = incarnation,
                    "not rejoining the cluster: another process registered this agent id and holds its lease"
                );
                return None;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, attempt, pause_ms = pause.as_millis() as u64, "cannot rejoin the cluster yet; trying again");
                pause = (pause * 2).min(pause_max);
                continue;
            }
        }
        match rejoin_once(sequenced, shared, membership, &mut own).await {
            Ok((lease, token, rejoined)) => {
                tracing::info!(
                    agent = %lease.agent_id,
                    incarnation = lease.incarnation,
                    previous_incarnation = lost.incarnation,
                    token,
                    caught_up = rejoined.records_applied,
                    checkpoint_reloaded = ?rejoined.checkpoint_reloaded,
                    attempt,
                    "rejoined the cluster as a new incarnation; accepting writes again"
                );
                return Some(lease);
            }
            Err(error) => {
                tracing::warn!(%error, attempt, pause_ms = pause.as_millis() as u64, "cannot rejoin the cluster yet; trying again");
                pause = (pause * 2).min(pause_max);
            }
        }
    }
}

/// This process's last registration while it rejoins.
#[derive(Debug, Clone, Copy)]
struct OwnRegistration {
    /// The newest incarnation it knows it registered.
    incarnation: u64,
    /// The token its last attempt announced (its registration may have landed unanswered).
    token: Option<u32>,
}

/// The incarnation of a live registration of this agent id that another process made (newer
/// than `own`'s and not announcing `own`'s token), if there is one.
async fn superseded_by(
    sequenced: &SequencedLog,
    membership: &Membership,
    own: &OwnRegistration,
) -> Result<Option<u64>, String> {
    let agents = sequenced
        .sequencer()
        .live_agents()
        .await
        .map_err(|error| format!("cannot list the live agents: {error}"))?;
    Ok(agents
        .iter()
        .find(|agent| {
            agent.agent_id == membership.registration.agent_id
                && agent.incarnation > own.incarnation
                && (own.token.is_none() || token_of_roles(&agent.roles) != own.token)
        })
        .map(|agent| agent.incarnation))
}

/// One attempt of [`rejoin`]: returns the new lease, the new token and what the catch-up did.
/// `own` records what it registers, even when a later step fails.
async fn rejoin_once(
    sequenced: &SequencedLog,
    shared: &Shared,
    membership: &mut Membership,
    own: &mut OwnRegistration,
) -> Result<(Lease, u32, SequencedRejoin), String> {
    let old_token = sequenced.token();
    let writer = SequencedWriter::choose(sequenced.store().as_ref(), membership.lease_ms)
        .await
        .map_err(|error| format!("cannot choose an object token: {error}"))?;
    if writer.token == old_token {
        return Err(format!("drew the old token {old_token} again"));
    }
    let mut registration = membership.registration.clone();
    registration
        .roles
        .retain(|role| !role.starts_with(TOKEN_ROLE_PREFIX));
    registration.roles.push(token_role(writer.token));
    own.token = Some(writer.token);
    let lease = sequenced
        .sequencer()
        .register(registration.clone(), membership.lease_ms)
        .await
        .map_err(|error| format!("cannot register: {error}"))?;
    own.incarnation = lease.incarnation;
    // From here the collector sees the new token live; the old one's objects are its own.
    membership.registration = registration;
    let rejoined = {
        let mut moved = Vec::new();
        let mut reloaded = Vec::new();
        let result = sequenced
            .rejoin_with(
                writer,
                &lease,
                &mut |events| moved.extend(watermark_moves(events)),
                // A checkpoint swapped in as the state: every partition's watermark may have
                // moved (fetches parked on any of them re-read it), and the groups are loaded
                // from it when they come back with the view below.
                &mut |_, state| reloaded = every_watermark(state),
            )
            .await;
        for update in [reloaded, moved] {
            if !update.is_empty() {
                let update: WatermarkUpdate = update.into();
                shared.broadcaster.borrow_mut().publish(&update);
            }
        }
        result.map_err(|error| format!("cannot catch up the cluster's log: {error}"))?
    };
    // Back in its own view before it takes writes again: its answers name it once more, and
    // the others list it again at their next renewal.
    publish_members(sequenced.sequencer(), membership).await;
    if shared.stopping.get() {
        // A graceful stop began meanwhile (it left with the old lease): no append after it.
        sequenced.stop("the agent is stopping".to_owned());
        if let Err(error) = sequenced.sequencer().deregister(lease).await {
            tracing::warn!(%error, "could not leave the cluster; its lease runs out instead");
        }
        return Err("the agent is stopping".to_owned());
    }
    // The tailer may have met a newer truncation while the view was listed (it stopped the log
    // again): this attempt failed, and the next one reloads again.
    if let Some(reason) = sequenced.stopped() {
        return Err(format!("appends stopped again while rejoining: {reason}"));
    }
    *shared.lease.borrow_mut() = Some(lease.clone());
    shared.fenced.set(false);
    if shared.behind_truncation.replace(false) {
        shared.truncation_overcome.notify_one();
    }
    if let Some(metrics) = &shared.metrics {
        metrics
            .log
            .fenced
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((lease, writer.token, rejoined))
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
    let ticket = membership.board.begin_listing();
    match sequencer.live_agents().await {
        Ok(agents) => {
            let self_node_id = node_id_of(&membership.registration.agent_id);
            let members = agents.iter().filter_map(member).collect();
            membership
                .board
                .publish_listing(ticket, ClusterView::new(members, self_node_id));
        }
        Err(error) => tracing::warn!(%error, "cannot list the cluster's live agents"),
    }
}

/// Every partition's high watermark in `state`.
fn every_watermark(state: &MetadataState) -> Vec<(TopicPartition, u64)> {
    state
        .topics()
        .flat_map(|(_, topic_id)| {
            let partitions = state.partition_count(topic_id).unwrap_or(0);
            (0..partitions).filter_map(move |partition| {
                let tp = TopicPartition::new(topic_id, i32::try_from(partition).ok()?);
                Some((tp, state.high_watermark(tp).ok()?))
            })
        })
        .collect()
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
