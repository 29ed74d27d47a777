//! Which network core owns a group, and how a request gets there.
//!
//! Every group lives on exactly one network core: the one whose index is
//! `stable_hash(group_id) % network_cores`. The hash is FNV-1a, fixed by this file rather than by
//! the standard library's per-process random keys, so a group has the same owner in every run of
//! the agent with the same core count (nothing durable depends on it: stored groups and committed
//! offsets live in the metadata state, and each core loads the groups it owns at start).
//!
//! A request that arrives on another core travels to the owner as a *job*: a `Send` closure that
//! carries the decoded request and the `oneshot` its answer comes back on. The owner core runs one
//! task draining its inbox ([`serve_inbox`]) which starts each job as a task of its own, so a
//! JoinGroup parked until the rebalance completes never blocks the heartbeats queued behind it.
//! A request on the owner core itself runs in place, with no message at all. The inbox is bounded
//! ([`GROUP_JOBS_QUEUED_MAX`]): a full one makes the sending connection wait, which is the same
//! backpressure the metadata core's channel gives.

use std::future::Future;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{SinkExt, StreamExt};

use super::core::GroupCore;

/// Jobs queued for one core's groups before senders wait.
pub const GROUP_JOBS_QUEUED_MAX: usize = 1024;

/// FNV-1a, 64 bits: stable across runs, builds and platforms.
pub fn stable_hash(group_id: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    group_id.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The index of the core that owns `group_id` among `cores` network cores.
pub fn owner_core(group_id: &str, cores: usize) -> usize {
    let cores = u64::try_from(cores.max(1)).unwrap_or(u64::MAX);
    // The remainder is below `cores`, which came from a usize.
    usize::try_from(stable_hash(group_id) % cores).unwrap_or(0)
}

/// Work for the owner core: runs there against its [`GroupCore`].
type Job = Box<dyn FnOnce(Rc<GroupCore>) -> LocalBoxFuture<'static, ()> + Send>;

/// The way into one core's groups, from any core. Cheap to clone.
#[derive(Clone)]
pub struct GroupSender(mpsc::Sender<Job>);

impl std::fmt::Debug for GroupSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupSender")
    }
}

/// The receiving end of one core's jobs, given to [`serve_inbox`] on that core.
pub struct GroupInbox(mpsc::Receiver<Job>);

impl std::fmt::Debug for GroupInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupInbox")
    }
}

/// One channel per network core, created before the executors start: every core gets all the
/// senders and its own inbox.
pub fn group_channels(cores: usize) -> (Vec<GroupSender>, Vec<GroupInbox>) {
    (0..cores)
        .map(|_| {
            let (sender, receiver) = mpsc::channel(GROUP_JOBS_QUEUED_MAX);
            (GroupSender(sender), GroupInbox(receiver))
        })
        .unzip()
}

/// The owner core is gone (the agent is stopping) or dropped the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the group coordinator core is not available")]
pub struct CoordinatorUnavailable;

/// One network core's way to every core's groups, its own included.
#[derive(Debug, Clone)]
pub struct GroupRouter {
    index: usize,
    local: Rc<GroupCore>,
    cores: Vec<GroupSender>,
}

impl GroupRouter {
    /// `cores[index]` must be the sender of `local`'s own inbox.
    pub fn new(index: usize, local: Rc<GroupCore>, cores: Vec<GroupSender>) -> Self {
        Self {
            index,
            local,
            cores,
        }
    }

    pub fn core_count(&self) -> usize {
        self.cores.len().max(1)
    }

    /// This core's groups.
    pub fn local(&self) -> &Rc<GroupCore> {
        &self.local
    }

    /// The core that owns `group_id`.
    pub fn owner(&self, group_id: &str) -> usize {
        owner_core(group_id, self.core_count())
    }

    /// Runs `job` on the core that owns `group_id` and returns its result.
    pub async fn on_owner<R, F, Fut>(
        &self,
        group_id: &str,
        job: F,
    ) -> Result<R, CoordinatorUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(Rc<GroupCore>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        self.on_core(self.owner(group_id), job).await
    }

    /// Runs `job` on core `core` (in place when that is this core).
    pub async fn on_core<R, F, Fut>(&self, core: usize, job: F) -> Result<R, CoordinatorUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(Rc<GroupCore>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if core == self.index || self.cores.len() <= 1 {
            self.local.adopt_newest_view().await;
            return Ok(job(Rc::clone(&self.local)).await);
        }
        let Some(GroupSender(sender)) = self.cores.get(core) else {
            return Err(CoordinatorUnavailable);
        };
        let (reply, answer) = oneshot::channel();
        let boxed: Job = Box::new(move |owner| {
            Box::pin(async move {
                // In a cluster, the groups of the agent's newest view first (`ownership.rs`).
                owner.adopt_newest_view().await;
                // The requester may be gone (connection closed); the work stands anyway.
                let _ = reply.send(job(owner).await);
            })
        });
        // A clone per call, as `CoreHandle::send` does: `send` needs `&mut`.
        let mut sender = sender.clone();
        sender
            .send(boxed)
            .await
            .map_err(|_| CoordinatorUnavailable)?;
        answer.await.map_err(|_| CoordinatorUnavailable)
    }
}

/// Runs on each network core until its executor stops: starts every job that arrives for this
/// core's groups as a task of its own.
pub async fn serve_inbox(core: Rc<GroupCore>, inbox: GroupInbox) {
    let GroupInbox(mut receiver) = inbox;
    while let Some(job) = receiver.next().await {
        glommio::spawn_local(job(Rc::clone(&core))).detach();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn owners_spread_over_the_cores_and_one_core_owns_everything() {
        let mut counts = [0_usize; 4];
        for index in 0..4_000 {
            counts[owner_core(&format!("group-{index}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 800), "{counts:?}");
        assert_eq!(owner_core("anything", 1), 0);
        assert_eq!(owner_core("anything", 0), 0);
    }
}
