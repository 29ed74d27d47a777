//! The state itself and its read-only queries (committed offsets: see [`super::offsets`]; stored
//! group state: [`super::groups`]).

use std::collections::{BTreeMap, HashMap};

use super::acl::AclSet;
use super::config::{ConfigEntry, describe_configs};
use super::error::MetadataError;
use super::groups::StoredGroup;
use super::index::IndexEntry;
use super::offsets::GroupOffsets;
use super::partition::PartitionState;
use super::quota::QuotaSet;
use super::scram::ScramCredentialSet;
use super::topic::Topic;
use crate::types::{LogSeq, TopicId, TopicPartition};

/// `ahash` for the hot map (every segment of every commit looks its topic up); its random seed is
/// harmless because nothing observable depends on iteration order (checkpoints sort by id).
pub(super) type TopicMap = HashMap<TopicId, Topic, ahash::RandomState>;

/// The metadata of a whole Sluice log: topics, partition indexes, and the chain position.
/// Pure and deterministic: see the module docs of [`crate::metadata`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataState {
    /// Epoch of the writer that owns the log; 0 before the first claim.
    pub(super) writer_epoch: u64,
    /// The last entry that extended the chain.
    pub(super) last_valid_seq: Option<LogSeq>,
    /// The last entry offered, valid or not.
    pub(super) last_offered_seq: Option<LogSeq>,
    pub(super) topics: TopicMap,
    /// Derived from `topics`; sorted so that listings are deterministic.
    pub(super) topic_ids_by_name: BTreeMap<String, TopicId>,
    /// Derived from `topics`: sum of partition counts, checked against the total limit.
    pub(super) partition_count_total: u64,
    /// The next producer id InitProducerId hands out; only ever grows.
    pub(super) next_producer_id: u64,
    /// Committed offsets: group → topic name → partition. No empty group or topic maps.
    pub(super) group_offsets: BTreeMap<String, std::sync::Arc<GroupOffsets>>,
    /// Derived from `group_offsets`: offsets across all groups, checked against the limit.
    pub(super) committed_offset_count: usize,
    /// Stored group coordinator state, by group id (see [`super::groups`]).
    pub(super) group_states: BTreeMap<String, StoredGroup>,
    /// Derived from `group_states`: the bytes of every record, checked against the total limit.
    pub(super) group_state_bytes: usize,
    /// ACL bindings. Shared: the agent hands each network core a snapshot (an `Arc` clone) for its
    /// authorizer, and a change copies the set once (`Arc::make_mut`) rather than locking it.
    pub(super) acls: std::sync::Arc<AclSet>,
    /// Client quotas, shared with the cores' quota enforcement the same way as `acls`.
    pub(super) quotas: std::sync::Arc<QuotaSet>,
    /// SCRAM credentials, shared with the agent's SCRAM authenticator the same way as `acls`.
    pub(super) scram_credentials: std::sync::Arc<ScramCredentialSet>,
}

impl MetadataState {
    /// An empty log: no writer, no entries, no topics.
    pub fn new() -> MetadataState {
        MetadataState::default()
    }

    /// Epoch of the writer that owns the log (0 = none has claimed it yet).
    pub fn writer_epoch(&self) -> u64 {
        self.writer_epoch
    }

    /// The last entry that extended the chain; the next valid entry must name it as `prev_seq`.
    pub fn last_valid_seq(&self) -> Option<LogSeq> {
        self.last_valid_seq
    }

    /// The last entry offered (valid or ignored); the next offer must have a higher seq.
    pub fn last_offered_seq(&self) -> Option<LogSeq> {
        self.last_offered_seq
    }

    pub fn topic(&self, topic_id: TopicId) -> Option<&Topic> {
        self.topics.get(&topic_id)
    }

    pub fn topic_id_by_name(&self, name: &str) -> Option<TopicId> {
        self.topic_ids_by_name.get(name).copied()
    }

    pub fn topic_by_name(&self, name: &str) -> Option<(TopicId, &Topic)> {
        let topic_id = self.topic_id_by_name(name)?;
        Some((topic_id, self.topics.get(&topic_id)?))
    }

    /// Every topic as `(name, id)`, sorted by name.
    pub fn topics(&self) -> impl Iterator<Item = (&str, TopicId)> + '_ {
        self.topic_ids_by_name
            .iter()
            .map(|(name, topic_id)| (name.as_str(), *topic_id))
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn partition_count(&self, topic_id: TopicId) -> Option<u32> {
        self.topic(topic_id).map(Topic::partition_count)
    }

    /// The ACL bindings.
    pub fn acls(&self) -> &AclSet {
        &self.acls
    }

    /// The ACL bindings as a snapshot that outlives this borrow (a reference count, no copy).
    pub fn acls_shared(&self) -> std::sync::Arc<AclSet> {
        std::sync::Arc::clone(&self.acls)
    }

    /// The client quotas.
    pub fn quotas(&self) -> &QuotaSet {
        &self.quotas
    }

    /// The client quotas as a snapshot that outlives this borrow (a reference count, no copy).
    pub fn quotas_shared(&self) -> std::sync::Arc<QuotaSet> {
        std::sync::Arc::clone(&self.quotas)
    }

    /// The SCRAM credentials.
    pub fn scram_credentials(&self) -> &ScramCredentialSet {
        &self.scram_credentials
    }

    /// The SCRAM credentials as a snapshot that outlives this borrow (a reference count).
    pub fn scram_credentials_shared(&self) -> std::sync::Arc<ScramCredentialSet> {
        std::sync::Arc::clone(&self.scram_credentials)
    }

    /// The producer id the next InitProducerId will hand out.
    pub fn next_producer_id(&self) -> u64 {
        self.next_producer_id
    }

    /// Sum of partition counts across topics.
    pub fn partition_count_total(&self) -> u64 {
        self.partition_count_total
    }

    /// DescribeConfigs: every known config of the topic, defaults filled in, sorted by name.
    pub fn topic_configs(&self, topic_id: TopicId) -> Result<Vec<ConfigEntry>, MetadataError> {
        let topic = self
            .topic(topic_id)
            .ok_or(MetadataError::UnknownTopicId { topic_id })?;
        Ok(describe_configs(&topic.configs))
    }

    pub fn partition(&self, tp: TopicPartition) -> Result<&PartitionState, MetadataError> {
        let topic = self
            .topics
            .get(&tp.topic_id)
            .ok_or(MetadataError::UnknownTopicId {
                topic_id: tp.topic_id,
            })?;
        topic
            .partition(tp.partition)
            .ok_or(MetadataError::UnknownPartition { tp })
    }

    pub fn high_watermark(&self, tp: TopicPartition) -> Result<u64, MetadataError> {
        self.partition(tp).map(PartitionState::high_watermark)
    }

    pub fn log_start_offset(&self, tp: TopicPartition) -> Result<u64, MetadataError> {
        self.partition(tp).map(PartitionState::log_start_offset)
    }

    /// The index entries holding `offset` onward (at most `entries_max`); the first one contains
    /// `offset`. Empty when `offset` is the high watermark; `OffsetOutOfRange` below the log start
    /// offset or past the high watermark. O(log n).
    pub fn find_from(
        &self,
        tp: TopicPartition,
        offset: u64,
        entries_max: usize,
    ) -> Result<Vec<IndexEntry>, MetadataError> {
        self.partition(tp)?.find_from(tp, offset, entries_max)
    }

    /// ListOffsets by timestamp: the first index entry whose `max_timestamp >= timestamp_ms`; the
    /// caller refines within its batches. `Ok(None)` when no entry is that late. O(log n).
    pub fn offset_for_timestamp(
        &self,
        tp: TopicPartition,
        timestamp_ms: i64,
    ) -> Result<Option<&IndexEntry>, MetadataError> {
        Ok(self.partition(tp)?.offset_for_timestamp(timestamp_ms))
    }
}
