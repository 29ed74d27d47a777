//! Groups changing hands between the agents of a cluster (`--metadata`).
//!
//! # Why a hand-over, and what it guarantees
//!
//! A group is coordinated by the rendezvous owner of its id among the live agents
//! (`metadata_core::cluster_view`); the others answer its requests with NOT_COORDINATOR. When the
//! live set changes, ownership moves, and the group's durable state (generations, epochs,
//! members, assignments — `docs/groups.md`) is in the metadata log every agent applies. So each
//! network core follows its agent's view of the live agents (it looks every 100 ms; it also takes
//! over before each group request it serves, so no request finds a group it routed here not yet
//! loaded, but gives up only on its own tick, so no request routed by the view before finds its
//! group gone) and, on every change:
//!
//! - **gives up** the groups it holds that the agent no longer coordinates: they leave memory
//!   *without a write* (a write now could only overwrite what the new owner stores), their queued
//!   writes are dropped, and requests waiting on a write get NOT_COORDINATOR, so their clients
//!   look the coordinator up again;
//! - **takes over** the stored groups of this core that the agent now coordinates and did not
//!   before, as a restart loads them: every member gets a full session from now, so members that
//!   rediscover the coordinator carry on with their member id and generation (or epoch) instead
//!   of rejoining.
//!
//! What it does not guarantee: agents change views at their own renewals (up to a third of a
//! lease apart), so for that long two agents can each believe they own a group that just moved;
//! and a write the old owner made in that window can be missed by the new owner's load. A
//! generation handed out twice in that window is possible; committed offsets are not lost (they
//! are commands in the log, and a commit needs the current generation).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::metadata::GroupRecord;

use super::core::{GroupCore, error_code};
use super::router::owner_core;
use crate::metadata_core::cluster_view::{ClusterBoard, ClusterView};

/// How often a core looks for a new view (a pointer comparison; views change at renewals).
const VIEW_POLL_MS: u64 = 100;
/// How long a take-over may wait for the metadata core's answer (a read of the applied state:
/// milliseconds) before the requests queued behind it go on without it.
const TAKE_OVER_TIMEOUT_MS: u64 = 1_000;

/// The view a core's groups follow, and the board it comes from.
#[derive(Debug)]
pub struct Ownership {
    board: Arc<ClusterBoard>,
    /// The view whose groups this core holds. Locked for the whole of a hand-over, so that a
    /// request arriving meanwhile waits for it instead of finding its group not loaded yet.
    adopted: futures::lock::Mutex<Arc<ClusterView>>,
}

impl GroupCore {
    /// Follows `board` until the executor stops, handing groups over on every new view.
    pub async fn follow_ownership(self: Rc<Self>, board: Arc<ClusterBoard>) {
        let initial = board.view();
        self.give_up_groups(&initial);
        *self.ownership.borrow_mut() = Some(Rc::new(Ownership {
            board,
            adopted: futures::lock::Mutex::new(initial),
        }));
        loop {
            glommio::timer::sleep(Duration::from_millis(VIEW_POLL_MS)).await;
            // Giving up runs here only, never in front of a request: a request that passed the
            // agent's routing by the view before must find its group still there, so it is
            // answered (or refused) as that view said, not UNKNOWN_MEMBER_ID.
            if let Some(ownership) = self.ownership.borrow().clone() {
                self.give_up_groups(&ownership.board.view());
            }
            self.adopt_newest_view().await;
        }
    }

    /// Takes over the groups the agent's newest view gives this core and the adopted one did not.
    /// Runs every [`VIEW_POLL_MS`] (after giving up the groups the newest view gives away) and
    /// before every group request this core serves (`router::GroupRouter::on_core`): the agent
    /// routes a group request by its newest view (`protocol::cluster_routing::not_coordinator`),
    /// so without this a member that found the new coordinator within a poll of the view change
    /// would reach a core that has not loaded its group and be answered UNKNOWN_MEMBER_ID — and
    /// rejoin, a rebalance the hand-over exists to avoid. Alone (no cluster) it does nothing.
    pub async fn adopt_newest_view(&self) {
        let Some(ownership) = self.ownership.borrow().clone() else {
            return;
        };
        let mut adopted = ownership.adopted.lock().await;
        let current = ownership.board.view();
        if Arc::ptr_eq(&current, &adopted) {
            return;
        }
        // Bounded: requests wait behind this lock, and a metadata core that no longer answers
        // (the agent stopping) must not hold them until the connections' drain timeout.
        let previous = Arc::clone(&adopted);
        let outcome = {
            let take_over = self.take_over_groups(&previous, &current);
            let limit = glommio::timer::sleep(Duration::from_millis(TAKE_OVER_TIMEOUT_MS));
            futures::pin_mut!(take_over, limit);
            match futures::future::select(take_over, limit).await {
                futures::future::Either::Left((result, _)) => Some(result),
                futures::future::Either::Right(_) => None,
            }
        };
        match outcome {
            Some(Ok(_)) => {}
            Some(Err(error)) => tracing::warn!(%error, "cannot take over consumer groups"),
            None => tracing::warn!(
                timeout_ms = TAKE_OVER_TIMEOUT_MS,
                "cannot take over consumer groups: the metadata core did not answer in time"
            ),
        }
        *adopted = current;
    }

    /// Whether the agent's newest view still gives it `group` (always, alone). A request that
    /// passed the agent's routing and then awaited (a commit's partition lookup) can find its
    /// group given up by the view's tick meanwhile: it must then be answered NOT_COORDINATOR,
    /// as the routing would answer it now, not as for a group this agent never had
    /// (UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION, which make the member rejoin).
    pub(super) fn still_coordinates(&self, group: &str) -> bool {
        self.ownership
            .borrow()
            .as_ref()
            .is_none_or(|ownership| ownership.board.view().coordinates(group))
    }

    /// Drops every group in memory that `view` says another agent coordinates.
    fn give_up_groups(&self, view: &ClusterView) {
        let given_up: Vec<String> = {
            let mut groups = self.groups.borrow_mut();
            let ids: Vec<String> = groups
                .classic
                .group_ids()
                .chain(groups.consumer.group_ids())
                .filter(|group| !view.coordinates(group))
                .collect();
            for group in &ids {
                groups.classic.abandon(group);
                groups.consumer.abandon(group);
            }
            ids
        };
        if given_up.is_empty() {
            return;
        }
        for group in &given_up {
            self.writer.abandon(group, error_code::NOT_COORDINATOR);
        }
        tracing::info!(
            groups = given_up.len(),
            core = self.core_index,
            "consumer groups handed over to the agents that now coordinate them"
        );
    }

    /// Loads the stored groups of this core that `current` gives this agent and `previous` did
    /// not. Returns how many.
    async fn take_over_groups(
        &self,
        previous: &ClusterView,
        current: &ClusterView,
    ) -> Result<usize, super::core::LoadError> {
        let (index, cores) = (self.core_index, self.core_count);
        let (previous, current) = (previous.clone(), current.clone());
        let records = self
            .metadata
            .query(move |state| {
                state
                    .stored_groups()
                    .filter(|(group, _)| {
                        owner_core(group, cores) == index
                            && current.coordinates(group)
                            && !previous.coordinates(group)
                    })
                    .map(|(group, record)| (group.to_owned(), record.clone()))
                    .collect::<Vec<(String, GroupRecord)>>()
            })
            .await
            .map_err(|_| super::core::LoadError)?;
        if records.is_empty() {
            return Ok(0);
        }
        self.restore_records(&records);
        tracing::info!(
            groups = records.len(),
            core = index,
            "took over consumer groups; members have a full session to heartbeat"
        );
        Ok(records.len())
    }
}
