//! What a network core's dispatcher reaches beyond the protocol: the metadata core and this
//! core's own budgets.
//!
//! One [`CoreServices`] is created on each network core (inside its executor: the budget is a
//! glommio semaphore, local to the core) and shared by that core's connections.

use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};

use crate::fetch::FetchCore;
use crate::groups::GroupRouter;
use crate::metadata_core::CoreHandle;
use crate::metadata_core::watermarks::WatermarkWaiters;

/// The engine as one network core sees it.
#[derive(Debug)]
pub struct CoreServices {
    pub core: CoreHandle,
    /// Fetches parked at the live edge on this core (fed by the metadata core's broadcast).
    pub watermark_waiters: Rc<WatermarkWaiters>,
    /// This core's block cache and fetch sessions.
    pub fetch: Rc<FetchCore>,
    /// The consumer groups of every core, reached from this one; `None` until wired.
    pub groups: Option<Rc<GroupRouter>>,
    produce_budget: Rc<Semaphore>,
    produce_budget_bytes: u64,
}

impl CoreServices {
    /// `flush_buffer_bytes_max`: produced bytes this core lets wait for a flush at once.
    pub fn new(
        core: CoreHandle,
        watermark_waiters: Rc<WatermarkWaiters>,
        flush_buffer_bytes_max: u64,
    ) -> Self {
        let produce_budget_bytes = flush_buffer_bytes_max.max(1);
        Self {
            core,
            watermark_waiters,
            fetch: Rc::new(FetchCore::default()),
            groups: None,
            produce_budget: Rc::new(Semaphore::new(produce_budget_bytes)),
            produce_budget_bytes,
        }
    }

    /// Uses `fetch` (the core's configured block cache and sessions) instead of the default.
    pub fn with_fetch(mut self, fetch: Rc<FetchCore>) -> Self {
        self.fetch = fetch;
        self
    }

    /// Adds the consumer groups (this core's and its way to the others').
    pub fn with_groups(mut self, groups: Rc<GroupRouter>) -> Self {
        self.groups = Some(groups);
        self
    }

    /// Waits until `bytes` more produced bytes fit in this core's budget. A request larger than
    /// the whole budget takes all of it (it still gets through, alone).
    pub async fn reserve_produce_bytes(&self, bytes: u64) -> Option<StaticPermit> {
        let units = bytes.clamp(1, self.produce_budget_bytes);
        self.produce_budget.acquire_static_permit(units).await.ok()
    }

    /// Produced bytes currently waiting on this core.
    pub fn produce_bytes_waiting(&self) -> u64 {
        self.produce_budget_bytes
            .saturating_sub(self.produce_budget.available())
    }
}
