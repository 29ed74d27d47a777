//! The log an agent writes: its own in object storage (one agent, the default) or a cluster's,
//! ordered by the sequencer (`--metadata`). The metadata core sees one type and the same calls;
//! what differs is who orders entries and how a writer is fenced (`docs/cluster.md`).

use std::sync::Arc;

use super::{AppendOutcome, EntryContent, LogError, MetadataLog, SequencedLog};
use crate::metadata::MetadataState;
use crate::store::ObjectStorage;
use crate::types::LogSeq;

/// Either metadata log; every call goes to the one inside.
#[derive(Debug)]
pub enum AgentLog {
    /// The object-store log: the chain rule and create-only positions order and fence.
    Embedded(MetadataLog),
    /// A cluster's log: the sequencer orders, leases fence.
    Sequenced(SequencedLog),
}

impl AgentLog {
    /// See [`MetadataLog::append`]: returns once the entry is durable and applied.
    pub async fn append(&self, content: EntryContent) -> Result<AppendOutcome, LogError> {
        match self {
            AgentLog::Embedded(log) => log.append(content).await,
            AgentLog::Sequenced(log) => log.append(content).await,
        }
    }

    /// After a failed append: the embedded log replays and claims again
    /// ([`MetadataLog::reopen`]); a cluster's log only catches up, and refuses once its lease is
    /// lost ([`LogError::Fenced`]). Returns the entries replayed.
    pub async fn reopen(&self, now_ms: i64) -> Result<u64, LogError> {
        match self {
            AgentLog::Embedded(log) => Ok(log.reopen(now_ms).await?.entries_replayed),
            AgentLog::Sequenced(log) => {
                if let Some(reason) = log.stopped() {
                    return Err(LogError::Fenced {
                        key: format!("the agent's lease ({reason})"),
                        our_epoch: 0,
                        by_epoch: 0,
                    });
                }
                log.catch_up().await
            }
        }
    }

    pub fn with_state<R>(&self, read: impl FnOnce(&MetadataState) -> R) -> R {
        match self {
            AgentLog::Embedded(log) => log.with_state(read),
            AgentLog::Sequenced(log) => log.with_state(read),
        }
    }

    /// The writer epoch (embedded); a cluster's log has none and answers 0.
    pub fn epoch(&self) -> u64 {
        match self {
            AgentLog::Embedded(log) => log.epoch(),
            AgentLog::Sequenced(_) => 0,
        }
    }

    pub fn put_latency_ms_median(&self) -> Option<f64> {
        match self {
            AgentLog::Embedded(log) => log.put_latency_ms_median(),
            AgentLog::Sequenced(log) => log.put_latency_ms_median(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStorage> {
        match self {
            AgentLog::Embedded(log) => log.store(),
            AgentLog::Sequenced(log) => log.store(),
        }
    }

    /// Entries a restart of this agent would replay; 0 for a cluster's log, whose checkpoints
    /// keep their own schedule (they also truncate the sequencer).
    pub fn entries_since_checkpoint(&self) -> u64 {
        match self {
            AgentLog::Embedded(log) => log.entries_since_checkpoint(),
            AgentLog::Sequenced(_) => 0,
        }
    }

    /// Whether a checkpoint is due. An agent alone's: once `entries` (at least 1) were applied
    /// since the last one — the caller picks the count (`checkpoint_interval_entries`, or another
    /// when checkpoints follow compaction, see the server's flusher). A cluster's log keeps its own
    /// schedule, every `checkpoint_interval_entries` records, whatever `entries` says: its
    /// checkpoints also truncate the sequencer.
    pub fn checkpoint_due_after(&self, entries: u64) -> bool {
        match self {
            AgentLog::Embedded(log) => log.entries_since_checkpoint() >= entries.max(1),
            AgentLog::Sequenced(log) => log.checkpoint_due(),
        }
    }

    /// The log's `checkpoint_interval_entries`.
    pub fn checkpoint_interval_entries(&self) -> u64 {
        match self {
            AgentLog::Embedded(log) => log.checkpoint_interval_entries(),
            AgentLog::Sequenced(log) => log.checkpoint_interval_entries(),
        }
    }

    /// See [`MetadataLog::write_checkpoint_with`]; a cluster's log then truncates the sequencer.
    pub async fn write_checkpoint_with<F, Fut>(&self, encode: F) -> Result<Option<LogSeq>, LogError>
    where
        F: FnOnce(MetadataState) -> Fut,
        Fut: std::future::Future<Output = Vec<u8>>,
    {
        match self {
            AgentLog::Embedded(log) => log.write_checkpoint_with(encode).await,
            AgentLog::Sequenced(log) => log.write_checkpoint_with(encode).await,
        }
    }

    /// The cluster's log, if this is one.
    pub fn sequenced(&self) -> Option<&SequencedLog> {
        match self {
            AgentLog::Embedded(_) => None,
            AgentLog::Sequenced(log) => Some(log),
        }
    }
}

impl From<MetadataLog> for AgentLog {
    fn from(log: MetadataLog) -> Self {
        AgentLog::Embedded(log)
    }
}

impl From<SequencedLog> for AgentLog {
    fn from(log: SequencedLog) -> Self {
        AgentLog::Sequenced(log)
    }
}
