//! Stored consumer-group state: what a group coordinator needs to resume its groups after a
//! restart, as Apache Kafka keeps it in `__consumer_offsets` next to the offsets.
//!
//! Kafka's coordinators write a record whenever a group's durable state changes (a classic
//! group's `GroupMetadataValue` when a generation completes; a KIP-848 group's epoch, member,
//! target and current-assignment records when they change), and a coordinator that takes over
//! replays them: the members keep their ids, generations and epochs and carry on heartbeating as
//! if nothing happened. Sluice's group coordinators live in memory on the network cores, so the
//! same durable half lives here, changed only through [`Command::StoreGroup`] (and removed by
//! [`Command::DeleteGroups`], which also drops the group's offsets).
//!
//! A record is the *whole* durable state of one group, replacing the previous one: a coordinator
//! writes at most one record per group per log entry (it coalesces the changes made while a
//! write is in flight), so the cost of a write is bounded by the group's size and the rate of
//! entries, never by the number of heartbeats or intermediate steps. What is not stored is what a
//! coordinator rebuilds or restarts: session and rebalance deadlines (every member gets a full
//! session from the moment the groups are loaded, as after a Kafka coordinator failover), parked
//! requests, and the topic metadata cache.
//!
//! The state machine checks each record's shape (orders, sizes, enumerations) so that what it
//! stores always encodes into a checkpoint and decodes back; the meaning (who leads, which
//! partitions go where) is the coordinator's. Records may name topic ids that no longer exist: a
//! coordinator reassigns after a topic is deleted, as Kafka's does.
//!
//! [`Command::StoreGroup`]: super::Command::StoreGroup
//! [`Command::DeleteGroups`]: super::Command::DeleteGroups

use std::collections::BTreeSet;

use super::command::GroupStore;
use super::entry::Event;
use super::error::MetadataError;
use super::group_codec::encoded_record_len;
use super::offsets::validate_group_id;
use super::state::MetadataState;
use crate::types::TopicId;

/// The most bytes one group's stored state may take (its checkpoint encoding). Kafka's group
/// records must fit in one message of `__consumer_offsets` (1 MiB by default).
pub const GROUP_STATE_BYTES_MAX: usize = 1 << 20;
/// Groups whose state may be stored at once.
pub const GROUPS_STORED_MAX: usize = 100_000;
/// The most bytes of group state across all groups: bounds the state's memory and the checkpoint.
pub const GROUP_STATE_BYTES_TOTAL_MAX: usize = 256 << 20;
/// The longest string in a group record, in bytes (the protocol's string limit).
pub const GROUP_STRING_LEN_MAX: usize = 32_767;

/// The durable state of one group, of one of the two protocols.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum GroupRecord {
    /// JoinGroup / SyncGroup groups (Kafka's `GroupMetadataValue`).
    Classic(ClassicGroupRecord),
    /// KIP-848 groups (Kafka's `ConsumerGroupMetadataValue` and its member, target and
    /// current-assignment records, in one).
    Consumer(ConsumerGroupRecord),
}

/// A classic group as of its last completed generation (or Empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClassicGroupRecord {
    /// "" for a group that never had a member.
    pub protocol_type: String,
    /// The protocol of the generation (`None` when Empty).
    pub protocol_name: Option<String>,
    pub generation: i32,
    /// `Some` (and a member) iff there are members.
    pub leader: Option<String>,
    /// Strictly increasing member ids.
    pub members: Vec<ClassicMemberRecord>,
}

/// One member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ClassicMemberRecord {
    pub member_id: String,
    /// `group.instance.id` of a static member; unique in the group.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Every protocol the member supports, in its order of preference, with its metadata (its
    /// subscription); names unique. Kafka keeps only the chosen one's; all of them let a member
    /// that rejoins with the same list do so without a rebalance.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// What the leader assigned it in this generation.
    pub assignment: Vec<u8>,
}

/// A KIP-848 group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConsumerGroupRecord {
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// The server assignor the target was computed with (`uniform`, `range`).
    pub assignor: String,
    /// The subscribed topics as last resolved: (name, id, partition count), names strictly
    /// increasing. Kept so that a topic change the coordinator had not yet acted on before a
    /// restart is still seen as a change afterwards (Kafka's `ConsumerGroupPartitionMetadata`).
    pub subscribed: Vec<(String, TopicId, u32)>,
    /// Strictly increasing member ids.
    pub members: Vec<ConsumerMemberRecord>,
}

/// Where a KIP-848 member stands in moving to its target (Kafka's `MemberState`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum ConsumerMemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

/// One partition set: topics strictly increasing, each with strictly increasing partitions, none
/// empty.
pub type TopicPartitionSets = Vec<(TopicId, Vec<u32>)>;

/// One member of a KIP-848 group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ConsumerMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// Strictly increasing.
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub state: ConsumerMemberState,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: TopicPartitionSets,
    pub pending_revocation: TopicPartitionSets,
    /// The member's share of the target assignment at `assignment_epoch`.
    pub target: TopicPartitionSets,
}

/// A stored record and the bytes its checkpoint encoding takes (counted against the limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredGroup {
    /// Shared with checkpoint snapshots (a record is replaced whole, never changed in place).
    pub(super) record: std::sync::Arc<GroupRecord>,
    pub(super) encoded_len: usize,
}

/// Checks every rule of the record's shape and returns its encoded length.
pub fn validate_group_record(record: &GroupRecord) -> Result<usize, String> {
    match record {
        GroupRecord::Classic(classic) => validate_classic(classic)?,
        GroupRecord::Consumer(consumer) => validate_consumer(consumer)?,
    }
    Ok(encoded_record_len(record))
}

fn check_string(what: &str, value: &str) -> Result<(), String> {
    if value.len() > GROUP_STRING_LEN_MAX {
        return Err(format!(
            "{what} is {} bytes (limit {GROUP_STRING_LEN_MAX})",
            value.len()
        ));
    }
    Ok(())
}

fn check_optional(what: &str, value: Option<&String>) -> Result<(), String> {
    value.map_or(Ok(()), |value| check_string(what, value))
}

/// Strictly increasing, so that equal states encode to equal bytes and lookups are unambiguous.
fn check_increasing<T: Ord>(what: &str, items: impl Iterator<Item = T>) -> Result<(), String> {
    let mut previous: Option<T> = None;
    for item in items {
        if previous.as_ref().is_some_and(|previous| *previous >= item) {
            return Err(format!("{what} are not strictly increasing"));
        }
        previous = Some(item);
    }
    Ok(())
}

fn validate_classic(group: &ClassicGroupRecord) -> Result<(), String> {
    check_string("protocol type", &group.protocol_type)?;
    check_optional("protocol name", group.protocol_name.as_ref())?;
    check_optional("leader", group.leader.as_ref())?;
    check_increasing(
        "member ids",
        group.members.iter().map(|member| &member.member_id),
    )?;
    match &group.leader {
        None if !group.members.is_empty() => return Err("members but no leader".to_owned()),
        Some(leader)
            if !group
                .members
                .iter()
                .any(|member| &member.member_id == leader) =>
        {
            return Err(format!("leader {leader} is not a member"));
        }
        _ => {}
    }
    let mut instances = BTreeSet::new();
    for member in &group.members {
        check_string("member id", &member.member_id)?;
        check_optional("instance id", member.instance_id.as_ref())?;
        check_string("client id", &member.client_id)?;
        check_string("client host", &member.client_host)?;
        if let Some(instance) = &member.instance_id
            && !instances.insert(instance.as_str())
        {
            return Err(format!("instance id {instance} held by two members"));
        }
        if member.protocols.len() > usize::from(u16::MAX) {
            return Err(format!(
                "member {} lists too many protocols",
                member.member_id
            ));
        }
        let mut names = BTreeSet::new();
        for (name, _) in &member.protocols {
            check_string("protocol name", name)?;
            if !names.insert(name.as_str()) {
                return Err(format!(
                    "member {} lists protocol {name} twice",
                    member.member_id
                ));
            }
        }
    }
    Ok(())
}

fn validate_partition_sets(what: &str, sets: &TopicPartitionSets) -> Result<(), String> {
    check_increasing(what, sets.iter().map(|(topic, _)| *topic))?;
    for (topic, partitions) in sets {
        if partitions.is_empty() {
            return Err(format!("{what}: topic {topic} without partitions"));
        }
        check_increasing(what, partitions.iter())?;
    }
    Ok(())
}

fn validate_consumer(group: &ConsumerGroupRecord) -> Result<(), String> {
    check_string("assignor", &group.assignor)?;
    check_increasing(
        "subscribed topics",
        group.subscribed.iter().map(|(name, _, _)| name),
    )?;
    for (name, _, _) in &group.subscribed {
        check_string("subscribed topic", name)?;
    }
    check_increasing(
        "member ids",
        group.members.iter().map(|member| &member.member_id),
    )?;
    let mut instances = BTreeSet::new();
    for member in &group.members {
        check_string("member id", &member.member_id)?;
        check_optional("instance id", member.instance_id.as_ref())?;
        check_optional("rack id", member.rack_id.as_ref())?;
        check_string("client id", &member.client_id)?;
        check_string("client host", &member.client_host)?;
        check_optional("topic regex", member.subscribed_topic_regex.as_ref())?;
        check_optional("server assignor", member.server_assignor.as_ref())?;
        check_increasing(
            "subscribed topic names",
            member.subscribed_topic_names.iter(),
        )?;
        for name in &member.subscribed_topic_names {
            check_string("subscribed topic name", name)?;
        }
        if let Some(instance) = &member.instance_id
            && !instances.insert(instance.as_str())
        {
            return Err(format!("instance id {instance} held by two members"));
        }
        validate_partition_sets("assigned partitions", &member.assigned)?;
        validate_partition_sets("partitions pending revocation", &member.pending_revocation)?;
        validate_partition_sets("target partitions", &member.target)?;
    }
    Ok(())
}

impl MetadataState {
    /// The stored state of `group`, if any.
    pub fn stored_group(&self, group: &str) -> Option<&GroupRecord> {
        self.group_states
            .get(group)
            .map(|stored| stored.record.as_ref())
    }

    /// Every group with stored state, sorted by id.
    pub fn stored_groups(&self) -> impl Iterator<Item = (&str, &GroupRecord)> + '_ {
        self.group_states
            .iter()
            .map(|(group, stored)| (group.as_str(), stored.record.as_ref()))
    }

    /// Groups with stored state.
    pub fn stored_group_count(&self) -> usize {
        self.group_states.len()
    }

    /// Bytes of stored group state across all groups (their checkpoint encodings).
    pub fn group_state_bytes(&self) -> usize {
        self.group_state_bytes
    }

    /// StoreGroup: replaces (or removes) the stored state of one group. A record that breaks a
    /// rule or a limit is rejected whole and changes nothing.
    pub(super) fn store_group(
        &mut self,
        index: usize,
        store: &GroupStore,
    ) -> Result<Event, MetadataError> {
        let group = store.group.as_str();
        validate_group_id(group)?;
        let previous_len = self
            .group_states
            .get(group)
            .map_or(0, |stored| stored.encoded_len);
        let Some(record) = &store.record else {
            if self.group_states.remove(group).is_some() {
                self.group_state_bytes -= previous_len;
            }
            return Ok(Event::GroupStored {
                index,
                group: group.to_owned(),
                removed: true,
            });
        };
        let encoded_len =
            validate_group_record(record).map_err(|reason| MetadataError::InvalidGroupRecord {
                group: group.chars().take(256).collect(),
                reason,
            })?;
        if encoded_len > GROUP_STATE_BYTES_MAX {
            return Err(MetadataError::GroupStateTooLarge {
                group: group.chars().take(256).collect(),
                len: encoded_len,
                limit: GROUP_STATE_BYTES_MAX,
            });
        }
        let is_new = !self.group_states.contains_key(group);
        if is_new && self.group_states.len() >= GROUPS_STORED_MAX {
            return Err(MetadataError::GroupStateFull {
                reason: format!("{GROUPS_STORED_MAX} groups stored"),
            });
        }
        let total = self.group_state_bytes - previous_len + encoded_len;
        if encoded_len > previous_len && total > GROUP_STATE_BYTES_TOTAL_MAX {
            return Err(MetadataError::GroupStateFull {
                reason: format!(
                    "{total} bytes of group state (limit {GROUP_STATE_BYTES_TOTAL_MAX})"
                ),
            });
        }
        self.group_states.insert(
            group.to_owned(),
            StoredGroup {
                record: std::sync::Arc::new(record.clone()),
                encoded_len,
            },
        );
        self.group_state_bytes = total;
        Ok(Event::GroupStored {
            index,
            group: group.to_owned(),
            removed: false,
        })
    }

    /// DeleteGroups' share: the group's stored state goes with its offsets. Whether it had any.
    pub(super) fn drop_group_state(&mut self, group: &str) -> bool {
        match self.group_states.remove(group) {
            Some(stored) => {
                self.group_state_bytes -= stored.encoded_len;
                true
            }
            None => false,
        }
    }
}
