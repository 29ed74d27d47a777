//! The metadata core: the one place that owns the metadata log, assigns offsets and flushes.
//!
//! # Why one core, reached by messages
//!
//! Offsets must be assigned in one place (DESIGN.md, invariant 4), and the engine's
//! [`MetadataLog`] is single-threaded by design. So it lives on the metadata executor, and the
//! network cores reach it only through a bounded channel ([`CoreHandle`]): a request carries a
//! `oneshot` for its answer, which a glommio task on any core can await. Nothing on the request
//! path takes a lock; a full channel is backpressure, felt as an `await` on the sending core.
//!
//! # The flusher: one object per window for the whole agent
//!
//! Produce requests from every core land in one open [`window::Window`]. It is sealed as soon as
//! that pays within a budget of PUTs per second ([`seal`]: when the previous upload has returned
//! and produced bytes are waiting, or the window holds 1 MiB), at the latest `flush_interval_ms`
//! after its first batch; or once it holds `flush_bytes_max` bytes, or at once when it carries
//! admin commands (rare, and a client is waiting on them). It is appended to
//! the log as one entry: one PUT, whatever the number of partitions and cores (invariant 7). Up
//! to `flush_windows_inflight_max` entries are in flight; sealing the next waits for a slot, the
//! channel then fills, and the network cores wait in turn. Entries are acknowledged in log order
//! by the log itself, so every produce is answered only after its bytes and its offsets are
//! durable (invariant 3).
//!
//! Consumer-group offset commits join the open window the same way and do not seal it either:
//! a window is sealed early only when it holds `COMMANDS_PER_ENTRY_MAX` commands (or about
//! [`window::WINDOW_COMMAND_BYTES_MAX`] of them).
//!
//! # Failures
//!
//! An append that fails answers its waiters with a retriable code (the outcome of that PUT is
//! unknown to the client, as after a timeout in Kafka). After [`LogError::Broken`] the core waits
//! for every entry in flight to settle and re-opens the log (replay, new claim) before the next
//! window. After [`LogError::Fenced`] another agent owns the log: this one stops accepting writes
//! and says so loudly; reads keep working from the state it had.
//!
//! # Seams for fetch
//!
//! [`CoreHandle::query`] runs a closure against the current state on the metadata core (for
//! `find_from`, high watermarks, log start offsets), and every commit publishes the partitions
//! whose high watermark moved through [`watermarks`], which wakes fetches parked on any core.
//! See `docs/agent.md`.

pub mod cluster;
pub mod cluster_gc;
mod cluster_joins;
pub mod cluster_view;
mod flusher;
pub mod housekeeping;
pub(crate) mod off_core;
pub mod producer_ids;
pub mod seal;
mod source;
pub mod watermarks;
pub mod window;

use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::{mpsc, oneshot};
use sluice_engine::batch::BatchHeader;
use sluice_engine::metadata::{Command, MetadataState, OffsetCommit};
use sluice_engine::store::ObjectStorage;

pub use flusher::{
    FLUSH_WINDOWS_INFLIGHT_LIMIT, FlushConfig, create_topic_command, run_metadata_core,
    run_metadata_core_of,
};
pub use window::{CommandFailure, CommitOutcome};

/// Requests queued for the metadata core before senders wait.
pub const CORE_REQUESTS_QUEUED_MAX: usize = 4096;

/// One partition's validated batches, as a network core sends them.
#[derive(Debug)]
pub struct ProducePartition {
    pub topic: String,
    pub partition: i32,
    pub batches: Vec<(BatchHeader, Bytes)>,
}

/// `log_append_time_ms` of a partition whose topic keeps the producer's timestamps (Kafka's -1).
pub const NO_LOG_APPEND_TIME: i64 = -1;

/// Where a produced partition's first batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAppended {
    pub base_offset: u64,
    pub log_start_offset: u64,
    /// The append time its batches were stamped with (milliseconds since the Unix epoch) when its
    /// topic is `message.timestamp.type=LogAppendTime`; [`NO_LOG_APPEND_TIME`] otherwise.
    pub log_append_time_ms: i64,
}

/// The answer for one produced partition: its placement or a Kafka error code.
pub type PartitionOutcome = Result<PartitionAppended, i16>;

type StateQuery = Box<dyn FnOnce(&MetadataState) + Send>;

/// A message to the metadata core.
pub(crate) enum CoreRequest {
    Query(StateQuery),
    Produce {
        partitions: Vec<ProducePartition>,
        reply: oneshot::Sender<Vec<PartitionOutcome>>,
    },
    Commands {
        commands: Vec<Command>,
        /// A compaction swap's conditions in a cluster ([`CoreHandle::commands_with_deadline`]).
        deadline: Option<SwapDeadline>,
        reply: oneshot::Sender<Vec<Result<(), CommandFailure>>>,
    },
    /// The token of the cluster log's incarnation, `None` when it is stopped or for an agent
    /// alone ([`CoreHandle::incarnation_token`]).
    IncarnationToken {
        reply: oneshot::Sender<Option<u32>>,
    },
    InitProducerId {
        transactional_id: Option<String>,
        reply: oneshot::Sender<Result<(i64, i16), CommandFailure>>,
    },
    /// Group coordinator state (`Command::StoreGroup`): joins the open window without sealing
    /// it, like offset commits.
    GroupCommands {
        commands: Vec<Command>,
        reply: oneshot::Sender<Vec<Result<(), CommandFailure>>>,
    },
    /// A group's offset commit: joins the open window without sealing it.
    CommitOffsets {
        group: String,
        offsets: Vec<OffsetCommit>,
        reply: oneshot::Sender<CommitOutcome>,
    },
    /// A compaction tick applied swaps: the index is at its smallest, the time for an agent
    /// alone's checkpoint (`flusher::CheckpointPolicy`). No answer.
    CompactionSwapped,
}

impl std::fmt::Debug for CoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Query(_) => f.write_str("Query"),
            Self::Produce { partitions, .. } => f
                .debug_struct("Produce")
                .field("partitions", &partitions.len())
                .finish(),
            Self::Commands {
                commands, deadline, ..
            } => f
                .debug_struct("Commands")
                .field("commands", commands)
                .field("deadline", deadline)
                .finish(),
            Self::IncarnationToken { .. } => f.write_str("IncarnationToken"),
            Self::InitProducerId {
                transactional_id, ..
            } => f
                .debug_struct("InitProducerId")
                .field("transactional_id", transactional_id)
                .finish(),
            Self::GroupCommands { commands, .. } => f
                .debug_struct("GroupCommands")
                .field("commands", &commands.len())
                .finish(),
            Self::CommitOffsets { group, offsets, .. } => f
                .debug_struct("CommitOffsets")
                .field("group", group)
                .field("offsets", &offsets.len())
                .finish(),
            Self::CompactionSwapped => f.write_str("CompactionSwapped"),
        }
    }
}

/// What a compaction swap's commands need in a cluster: the window carrying them sends its
/// record only before `send_by` (one lease after the compacted object's PUT started), and only
/// while the log's incarnation is still the one of `token`, which named the object
/// (`sluice_engine::log::data_gc` has why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapDeadline {
    pub send_by: std::time::Instant,
    pub token: u32,
}

/// The metadata core is gone (agent stopping) or never started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the metadata core is not running")]
pub struct CoreUnavailable;

/// A network core's way to the metadata core. Cheap to clone; `Send`, so one is moved into
/// every network executor.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    sender: mpsc::Sender<CoreRequest>,
    store: Arc<dyn ObjectStorage>,
    /// The store for background work (compaction, garbage collection): the same bucket through
    /// a runtime of its own at a lower priority. The hot path's store unless set.
    background_store: Arc<dyn ObjectStorage>,
    cluster_id: Arc<str>,
}

/// The receiving end, given to [`run_metadata_core`].
#[derive(Debug)]
pub struct CoreInbox {
    pub(crate) receiver: mpsc::Receiver<CoreRequest>,
}

/// Creates the channel between the network cores and the metadata core.
pub fn core_channel(store: Arc<dyn ObjectStorage>, cluster_id: &str) -> (CoreHandle, CoreInbox) {
    let (sender, receiver) = mpsc::channel(CORE_REQUESTS_QUEUED_MAX);
    (
        CoreHandle {
            sender,
            background_store: Arc::clone(&store),
            store,
            cluster_id: Arc::from(cluster_id),
        },
        CoreInbox { receiver },
    )
}

impl CoreHandle {
    async fn send(&self, request: CoreRequest) -> Result<(), CoreUnavailable> {
        // A clone per call: `Sender::send` needs `&mut`, and connections on one core share this
        // handle across awaits. Each clone may hold one message beyond the channel's capacity,
        // bounded by the requests in flight per connection.
        let mut sender = self.sender.clone();
        sender.send(request).await.map_err(|_| CoreUnavailable)
    }

    /// Runs `read` on the metadata core against the state every acknowledged entry made.
    pub async fn query<R, F>(&self, read: F) -> Result<R, CoreUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(&MetadataState) -> R + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::Query(Box::new(move |state| {
            let _ = reply.send(read(state));
        })))
        .await?;
        answer.await.map_err(|_| CoreUnavailable)
    }

    /// Queues batches for the open window; the receiver resolves (one outcome per partition, in
    /// order) once the window's entry is durable and applied, or failed.
    pub async fn produce(
        &self,
        partitions: Vec<ProducePartition>,
    ) -> Result<oneshot::Receiver<Vec<PartitionOutcome>>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::Produce { partitions, reply })
            .await?;
        Ok(answer)
    }

    /// Appends metadata commands (in one entry); one outcome per command, in order.
    pub async fn commands(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<(), CommandFailure>>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::Commands {
            commands,
            deadline: None,
            reply,
        })
        .await?;
        answer.await.map_err(|_| CoreUnavailable)
    }

    /// [`CoreHandle::commands`] for a cluster's compaction swap: refused (every outcome a
    /// failure) unless the window carrying them sends its record before `deadline.send_by` and
    /// from the incarnation of `deadline.token`.
    pub async fn commands_with_deadline(
        &self,
        commands: Vec<Command>,
        deadline: SwapDeadline,
    ) -> Result<Vec<Result<(), CommandFailure>>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::Commands {
            commands,
            deadline: Some(deadline),
            reply,
        })
        .await?;
        answer.await.map_err(|_| CoreUnavailable)
    }

    /// Tells the metadata core that a compaction tick applied swaps, so that an agent alone may
    /// write its checkpoint while the index is at its smallest (`flusher::CheckpointPolicy`).
    pub async fn compaction_swapped(&self) -> Result<(), CoreUnavailable> {
        self.send(CoreRequest::CompactionSwapped).await
    }

    /// The token the cluster log's incarnation names its objects by; `None` while it is stopped
    /// (fenced) and for an agent alone.
    pub async fn incarnation_token(&self) -> Result<Option<u32>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::IncarnationToken { reply }).await?;
        answer.await.map_err(|_| CoreUnavailable)
    }

    /// Hands out a fresh producer id (epoch 0) through the metadata log: durable, and never handed
    /// out twice, once this returns `Ok`.
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<String>,
    ) -> Result<Result<(i64, i16), CommandFailure>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::InitProducerId {
            transactional_id,
            reply,
        })
        .await?;
        answer.await.map_err(|_| CoreUnavailable)
    }

    /// Queues a group's offset commit (one `Command::CommitOffsets`) for the open window. Unlike
    /// admin commands it does not seal the window: commits ride the next entry with the
    /// produces, so their cost is one PUT per window however many groups commit. The receiver
    /// resolves once that entry is durable and applied (or failed), with the offsets the state
    /// machine skipped.
    pub async fn commit_offsets(
        &self,
        group: String,
        offsets: Vec<OffsetCommit>,
    ) -> Result<oneshot::Receiver<CommitOutcome>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::CommitOffsets {
            group,
            offsets,
            reply,
        })
        .await?;
        Ok(answer)
    }

    /// Queues group coordinator commands (`Command::StoreGroup`) for the open window, in order,
    /// without sealing it: a group's state rides the next entry with the produces and commits.
    /// The receiver resolves (one outcome per command) once that entry is durable and applied,
    /// or failed. Commands sent by one task arrive in the order sent.
    pub async fn group_commands(
        &self,
        commands: Vec<Command>,
    ) -> Result<oneshot::Receiver<Vec<Result<(), CommandFailure>>>, CoreUnavailable> {
        let (reply, answer) = oneshot::channel();
        self.send(CoreRequest::GroupCommands { commands, reply })
            .await?;
        Ok(answer)
    }

    /// The object store (behind the store runtime, so any executor may await it).
    pub fn store(&self) -> &Arc<dyn ObjectStorage> {
        &self.store
    }

    /// The store background work uses ([`CoreHandle::with_background_store`]).
    pub fn background_store(&self) -> &Arc<dyn ObjectStorage> {
        &self.background_store
    }

    /// Routes background work's store calls through `store` (same bucket, its own runtime).
    #[must_use]
    pub fn with_background_store(mut self, store: Arc<dyn ObjectStorage>) -> CoreHandle {
        self.background_store = store;
        self
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }
}
