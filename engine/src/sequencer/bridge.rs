//! The sequencer seen from a glommio executor: its calls run on a tokio runtime of their own.
//!
//! `tokio-postgres` needs a tokio runtime (its connections are tokio tasks); the agent's executors
//! are glommio's. As for the object store (`crate::store::runtime`), the boundary is explicit: one
//! small tokio runtime (one worker thread: the sequencer's work is a few statements per window)
//! owns the connections, and each call crosses to it and back through a `futures` oneshot, which
//! wakes a glommio task from any thread. The head watch ([`PgSequencer::subscribe`]) needs no
//! runtime to be awaited.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    AgentInfo, AgentRegistration, Fence, Lease, PgSequencer, SequencerConfig, SequencerError,
};

/// A [`PgSequencer`] on its own tokio runtime, callable from any executor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SequencerClient {
    sequencer: Arc<PgSequencer>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl SequencerClient {
    /// Starts the runtime and connects (blocking the calling thread until connected). Call it
    /// from a plain thread, never from inside an async task.
    pub fn connect(config: SequencerConfig) -> Result<SequencerClient, SequencerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-sequencer")
            .enable_all()
            .build()
            .map_err(|error| SequencerError::Config {
                reason: format!("cannot start the sequencer's runtime: {error}"),
            })?;
        let sequencer = runtime.block_on(PgSequencer::connect_with(config))?;
        Ok(SequencerClient {
            sequencer: Arc::new(sequencer),
            runtime: Arc::new(runtime),
        })
    }

    async fn call<T, F, Fut>(&self, call: F) -> Result<T, SequencerError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<PgSequencer>) -> Fut,
        Fut: Future<Output = Result<T, SequencerError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let future = call(Arc::clone(&self.sequencer));
        self.runtime.spawn(async move {
            let _ = reply.send(future.await);
        });
        answer.await.map_err(|_| SequencerError::Config {
            reason: "the sequencer's runtime stopped".to_owned(),
        })?
    }

    pub fn cluster_id(&self) -> Uuid {
        self.sequencer.cluster_id()
    }

    /// See [`PgSequencer::operation_timeout_ms`].
    pub fn operation_timeout_ms(&self) -> u64 {
        self.sequencer.operation_timeout_ms()
    }

    /// See [`PgSequencer::forget_expired_agents`].
    pub async fn forget_expired_agents(&self, expired_for_ms: u64) -> Result<u64, SequencerError> {
        self.call(async move |sequencer| sequencer.forget_expired_agents(expired_for_ms).await)
            .await
    }

    /// See [`PgSequencer::subscribe`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sequencer.subscribe()
    }

    /// See [`PgSequencer::subscribe_agents`].
    pub fn subscribe_agents(&self) -> watch::Receiver<u64> {
        self.sequencer.subscribe_agents()
    }

    /// See [`PgSequencer::append`].
    pub async fn append(&self, records: Vec<Bytes>) -> Result<Range<u64>, SequencerError> {
        self.call(async move |sequencer| sequencer.append(records).await)
            .await
    }

    /// See [`PgSequencer::append_fenced`].
    pub async fn append_fenced(
        &self,
        records: Vec<Bytes>,
        fence: Fence,
    ) -> Result<Range<u64>, SequencerError> {
        self.call(async move |sequencer| sequencer.append_fenced(records, &fence).await)
            .await
    }

    /// See [`PgSequencer::read_after`].
    pub async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, SequencerError> {
        self.call(async move |sequencer| sequencer.read_after(after, limit).await)
            .await
    }

    /// See [`PgSequencer::head`].
    pub async fn head(&self) -> Result<u64, SequencerError> {
        self.call(async move |sequencer| sequencer.head().await)
            .await
    }

    /// See [`PgSequencer::truncate_before`].
    pub async fn truncate_before(&self, position: u64) -> Result<u64, SequencerError> {
        self.call(async move |sequencer| sequencer.truncate_before(position).await)
            .await
    }

    /// See [`PgSequencer::register`].
    pub async fn register(
        &self,
        agent: AgentRegistration,
        lease_ms: u64,
    ) -> Result<Lease, SequencerError> {
        self.call(async move |sequencer| sequencer.register(&agent, lease_ms).await)
            .await
    }

    /// See [`PgSequencer::renew`].
    pub async fn renew(&self, lease: Lease, lease_ms: u64) -> Result<Lease, SequencerError> {
        self.call(async move |sequencer| sequencer.renew(&lease, lease_ms).await)
            .await
    }

    /// See [`PgSequencer::live_agents`].
    pub async fn live_agents(&self) -> Result<Vec<AgentInfo>, SequencerError> {
        self.call(async move |sequencer| sequencer.live_agents().await)
            .await
    }

    /// See [`PgSequencer::deregister`].
    pub async fn deregister(&self, lease: Lease) -> Result<bool, SequencerError> {
        self.call(async move |sequencer| sequencer.deregister(&lease).await)
            .await
    }
}
