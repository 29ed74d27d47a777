//! The answer of a group request that may have to wait for other members.
//!
//! JoinGroup and SyncGroup are long-running in the classic protocol: a JoinGroup is answered when
//! the rebalance completes (every known member rejoined, or the rebalance timeout expired), a
//! follower's SyncGroup when the leader has sent the assignment. The group state machines do no
//! I/O, so they hand the caller either the response now or the receiving half of a oneshot channel
//! that a later call (another member's request, or `tick`) completes. A receiver whose sender is
//! dropped (the group was deleted, the core shut down) resolves to `Canceled`; callers answer that
//! with `COORDINATOR_NOT_AVAILABLE` so the client retries.

use futures::channel::oneshot;

/// A response available now, or one that a later event of the group will complete.
#[derive(Debug)]
pub enum Reply<T> {
    /// The response is ready.
    Now(T),
    /// The response comes when the group completes the pending rebalance or assignment.
    Later(oneshot::Receiver<T>),
}

impl<T> Reply<T> {
    /// The response if it is ready now.
    pub fn now(self) -> Option<T> {
        match self {
            Reply::Now(value) => Some(value),
            Reply::Later(_) => None,
        }
    }

    /// Whether the response has to be awaited.
    pub fn is_later(&self) -> bool {
        matches!(self, Reply::Later(_))
    }

    /// Waits for the response; `None` when the group dropped the request without answering it.
    pub async fn wait(self) -> Option<T> {
        match self {
            Reply::Now(value) => Some(value),
            Reply::Later(receiver) => receiver.await.ok(),
        }
    }
}
