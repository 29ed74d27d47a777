//! High-watermark broadcast: how a commit wakes the fetches waiting at the live edge on every core.
//!
//! The metadata core is the only place a high watermark moves. After each applied entry it
//! publishes the partitions whose watermark advanced, `(tp, new_hw)`, to every network core over a
//! bounded channel per core. Each core runs one task ([`run_subscription`]) that feeds its
//! [`WatermarkWaiters`], a core-local registry (no lock: it lives on one thread) in which a fetch
//! parked at the live edge waits for "the watermark of `tp` passed `offset`". So a long poll is
//! woken by the commit itself, not by a timer (DESIGN.md, invariant 8).
//!
//! Limits: a core's queue holds [`WATERMARK_UPDATES_QUEUED_MAX`] updates. When it is full the
//! update is dropped and the core is marked *lagged*; the core then wakes every waiter (each fetch
//! re-reads the watermark and parks again if it must), which is always correct and only costs
//! spurious wake-ups. A core parks at most [`WAITERS_PER_CORE_MAX`] fetches; beyond that
//! [`WatermarkWaiters::wait_beyond`] refuses and the fetch answers with what it has.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use sluice_engine::types::{LogSeq, TopicPartition};

/// Updates queued per core before the core is marked lagged.
pub const WATERMARK_UPDATES_QUEUED_MAX: usize = 1024;
/// Fetches parked per core.
pub const WAITERS_PER_CORE_MAX: usize = 100_000;

/// The partitions one commit advanced, with their new high watermarks.
pub type WatermarkUpdate = Arc<[(TopicPartition, u64)]>;

/// The batch bytes of an object this agent just wrote, by their byte offset in the object, so each
/// core's block cache holds them before the fetches the commit wakes read them (invariant 8).
/// `Bytes` are shared views of the buffers that were uploaded: publishing copies nothing.
#[derive(Debug)]
pub struct CommittedObject {
    pub seq: LogSeq,
    pub pieces: Vec<(u64, Bytes)>,
}

/// What one commit tells every core: the watermarks it moved and, when known, its bytes.
#[derive(Debug, Clone)]
pub struct CommitNotice {
    pub watermarks: WatermarkUpdate,
    pub object: Option<Arc<CommittedObject>>,
}

#[derive(Debug)]
struct Subscriber {
    sender: mpsc::Sender<CommitNotice>,
    lagged: Arc<AtomicBool>,
}

/// The metadata core's side: one subscriber per network core.
#[derive(Debug, Default)]
pub struct WatermarkBroadcaster {
    subscribers: Vec<Subscriber>,
}

/// A network core's side of the broadcast.
#[derive(Debug)]
pub struct WatermarkSubscription {
    receiver: mpsc::Receiver<CommitNotice>,
    lagged: Arc<AtomicBool>,
}

impl WatermarkBroadcaster {
    pub fn subscribe(&mut self) -> WatermarkSubscription {
        let (sender, receiver) = mpsc::channel(WATERMARK_UPDATES_QUEUED_MAX);
        let lagged = Arc::new(AtomicBool::new(false));
        self.subscribers.push(Subscriber {
            sender,
            lagged: Arc::clone(&lagged),
        });
        WatermarkSubscription { receiver, lagged }
    }

    /// Sends `update` to every core without waiting; a full core is marked lagged instead.
    pub fn publish(&mut self, update: &WatermarkUpdate) {
        self.publish_commit(update, None);
    }

    /// Sends the watermarks and the bytes of one commit to every core without waiting; a full
    /// core is marked lagged instead (it then reads those bytes from the store on a miss).
    pub fn publish_commit(
        &mut self,
        update: &WatermarkUpdate,
        object: Option<Arc<CommittedObject>>,
    ) {
        if update.is_empty() && object.is_none() {
            return;
        }
        let notice = CommitNotice {
            watermarks: Arc::clone(update),
            object,
        };
        self.subscribers.retain_mut(|subscriber| {
            match subscriber.sender.try_send(notice.clone()) {
                Ok(()) => true,
                Err(error) if error.is_full() => {
                    subscriber.lagged.store(true, Ordering::Release);
                    true
                }
                // That core has stopped.
                Err(_) => false,
            }
        });
    }
}

/// A core-local registry of fetches waiting for a partition's high watermark to pass an offset.
#[derive(Debug, Default)]
pub struct WatermarkWaiters {
    inner: RefCell<WaitersInner>,
}

#[derive(Debug, Default)]
struct WaitersInner {
    /// The last watermark this core heard of, per partition that has moved since it started.
    known: HashMap<TopicPartition, u64>,
    waiting: HashMap<TopicPartition, Vec<(u64, oneshot::Sender<()>)>>,
    waiting_count: usize,
}

impl WatermarkWaiters {
    /// Resolves once `tp`'s high watermark is above `offset` (or when the core lagged and every
    /// waiter must re-check). `None` when the registry is full: do not wait.
    pub fn wait_beyond(&self, tp: TopicPartition, offset: u64) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.inner.borrow_mut();
        let (sender, receiver) = oneshot::channel();
        if inner.known.get(&tp).is_some_and(|&hw| hw > offset) {
            let _ = sender.send(());
            return Some(receiver);
        }
        // Fetches that gave up (timed out, connection closed) leave their senders behind; drop
        // this partition's before adding, so re-polling an idle partition does not pile them up.
        let mut abandoned = 0;
        if let Some(waiters) = inner.waiting.get_mut(&tp) {
            let before = waiters.len();
            waiters.retain(|(_, sender)| !sender.is_canceled());
            abandoned = before - waiters.len();
        }
        inner.waiting_count = inner.waiting_count.saturating_sub(abandoned);
        if inner.waiting_count >= WAITERS_PER_CORE_MAX {
            return None;
        }
        inner.waiting_count += 1;
        inner.waiting.entry(tp).or_default().push((offset, sender));
        Some(receiver)
    }

    /// Records new watermarks and wakes the waiters they satisfy.
    pub fn apply(&self, update: &[(TopicPartition, u64)]) {
        let mut inner = self.inner.borrow_mut();
        for &(tp, hw) in update {
            let known = inner.known.entry(tp).or_insert(hw);
            *known = (*known).max(hw);
            let Some(waiters) = inner.waiting.remove(&tp) else {
                continue;
            };
            let mut still_waiting = Vec::new();
            for (offset, sender) in waiters {
                if offset < hw {
                    // The fetch may have given up meanwhile; nothing to do then.
                    let _ = sender.send(());
                    inner.waiting_count = inner.waiting_count.saturating_sub(1);
                } else {
                    still_waiting.push((offset, sender));
                }
            }
            if !still_waiting.is_empty() {
                inner.waiting.insert(tp, still_waiting);
            }
        }
    }

    /// Wakes every waiter (after a lag: updates were lost).
    pub fn wake_all(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.waiting.clear();
        inner.waiting_count = 0;
    }

    /// Fetches currently parked.
    pub fn waiting_count(&self) -> usize {
        self.inner.borrow().waiting_count
    }
}

/// A network core's task: feeds `waiters` from `subscription` until the metadata core goes away.
pub async fn run_subscription(subscription: WatermarkSubscription, waiters: Rc<WatermarkWaiters>) {
    run_subscription_with(subscription, waiters, |_| {}).await;
}

/// [`run_subscription`], handing each commit's bytes to `on_object` (the core's block cache)
/// before the waiters it satisfies are woken, so they find the bytes in memory.
pub async fn run_subscription_with(
    mut subscription: WatermarkSubscription,
    waiters: Rc<WatermarkWaiters>,
    mut on_object: impl FnMut(&CommittedObject),
) {
    while let Some(notice) = subscription.receiver.next().await {
        if let Some(object) = &notice.object {
            on_object(object);
        }
        if subscription.lagged.swap(false, Ordering::AcqRel) {
            waiters.wake_all();
        }
        waiters.apply(&notice.watermarks);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use futures::FutureExt;
    use sluice_engine::types::TopicId;

    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new(TopicId([1; 16]), partition)
    }

    #[test]
    fn a_commit_wakes_exactly_the_waiters_it_satisfies() {
        let waiters = WatermarkWaiters::default();
        let at_5 = waiters.wait_beyond(tp(0), 5).unwrap();
        let mut at_9 = waiters.wait_beyond(tp(0), 9).unwrap();
        let mut other = waiters.wait_beyond(tp(1), 0).unwrap();
        waiters.apply(&[(tp(0), 6)]);
        assert!(at_5.now_or_never().is_some(), "hw 6 passes offset 5");
        assert!((&mut at_9).now_or_never().is_none());
        assert!((&mut other).now_or_never().is_none());
        assert_eq!(waiters.waiting_count(), 2);
        // A registration after the update sees the known watermark at once.
        assert!(
            waiters
                .wait_beyond(tp(0), 5)
                .unwrap()
                .now_or_never()
                .is_some()
        );
        waiters.wake_all();
        assert!(at_9.now_or_never().is_some());
        assert!(other.now_or_never().is_some());
        assert_eq!(waiters.waiting_count(), 0);
    }

    #[test]
    fn a_full_queue_marks_the_core_lagged_instead_of_blocking() {
        let mut broadcaster = WatermarkBroadcaster::default();
        let mut subscription = broadcaster.subscribe();
        let update: WatermarkUpdate = Arc::from(vec![(tp(0), 1)]);
        // futures' bounded channel holds capacity + one slot per sender.
        for _ in 0..WATERMARK_UPDATES_QUEUED_MAX + 2 {
            broadcaster.publish(&update);
        }
        assert!(subscription.lagged.load(Ordering::Acquire));
        assert!(
            subscription
                .receiver
                .next()
                .now_or_never()
                .flatten()
                .is_some()
        );
        drop(subscription);
        broadcaster.publish(&update);
        assert!(
            broadcaster.subscribers.is_empty(),
            "a stopped core is forgotten"
        );
    }
}
