//! KIP-848 consumer groups: the `consumer` group protocol, with the assignment computed on the
//! server.
//!
//! # The protocol
//! A member speaks one request, ConsumerGroupHeartbeat, every `heartbeat_interval_ms` (the server
//! tells it the interval). The first heartbeat (member epoch 0) joins: it carries the subscription
//! (topic names and/or a regex), the rebalance timeout and optionally a preferred server assignor;
//! later heartbeats carry only what changed (null = unchanged) and the partitions the member owns
//! when that set changed. Epoch -1 leaves; epoch -2 is a static member (`group.instance.id`)
//! leaving *temporarily* — it keeps its assignment until its session expires, so a restarted
//! instance rejoining with the same instance id gets the same partitions back with no rebalance.
//! Member ids: in v0 the server generates them (a random uuid, in Kafka's base64 form); from v1
//! (KIP-1082) the client does, and an empty one is INVALID_REQUEST.
//!
//! # Epochs
//! - The **group epoch** is bumped whenever the membership, a subscription, the preferred assignor
//!   or the metadata of a subscribed topic (created, deleted, partitions added) changes.
//! - The **target assignment** is recomputed for each new group epoch by the assignor the members
//!   prefer most (else the first configured one): `uniform` or `range` (see `assignor.rs`). Its
//!   epoch is the **assignment epoch**. Sluice computes it at once, in the request or tick that
//!   bumped the epoch, so a group spends no time in Kafka's "Assigning" state.
//! - Each member has a **member epoch**: the assignment epoch it has caught up with.
//!
//! # Reconciliation (Kafka's `CurrentAssignmentBuilder`)
//! A member moves to its target in steps, each taken on one of its own heartbeats:
//! 1. Partitions it holds that are no longer in its target are revoked first. The member stays at
//!    its epoch in `UnrevokedPartitions`, its assignment shrunk to what it keeps, until a heartbeat
//!    reports owned partitions that no longer include the revoked ones. A heartbeat that does not
//!    report owned partitions counts as still owning them. If the member does not release them
//!    within its rebalance timeout it is removed from the group (fenced).
//! 2. Then it moves to the assignment epoch and receives the target partitions no other member
//!    holds. Partitions still held (assigned or pending revocation) by another member are withheld
//!    — the member is `UnreleasedPartitions` — and handed over on a later heartbeat once released.
//!
//! So a partition is never assigned to two members at once, and every member that heartbeats
//! eventually converges to its target. The response carries the member's assignment when it
//! changed, when the request was a full one (epoch 0, or all of rebalance timeout, subscription
//! and owned partitions set — what the Java client sends after an error), or when the owned
//! partitions the member reported differ from what it should own.
//!
//! # Errors (as Apache Kafka 4.x)
//! - Invalid fields → INVALID_REQUEST with Kafka's message; unknown server assignor →
//!   UNSUPPORTED_ASSIGNOR; a regex that does not compile → INVALID_REGULAR_EXPRESSION.
//! - Unknown member (epoch ≠ 0) → UNKNOWN_MEMBER_ID. A member epoch ahead of the server's, or
//!   behind it and not the previous epoch with owned partitions within the assignment (a lost
//!   response) → FENCED_MEMBER_EPOCH. Both make the Java client drop its partitions and rejoin
//!   with epoch 0 and the same member id, which is accepted (KAFKA-19233).
//! - Static members: instance id held by another active member → UNRELEASED_INSTANCE_ID; a
//!   request from a replaced member → FENCED_INSTANCE_ID; unknown instance id → UNKNOWN_MEMBER_ID.
//! - Full group → GROUP_MAX_SIZE_REACHED.
//! - One deliberate difference: a heartbeat (epoch ≠ 0) or leave for a group this core does not
//!   know answers UNKNOWN_MEMBER_ID, where Kafka answers GROUP_ID_NOT_FOUND. Groups survive an
//!   agent restart (their state is stored, see below), so this is a group that was deleted or
//!   expired; the Java client treats GROUP_ID_NOT_FOUND from a heartbeat as fatal but
//!   UNKNOWN_MEMBER_ID as "rejoin", which is what such a member should do.
//!
//! # Durability
//! A call that changes a group's durable state (its epochs, a member's subscription, epoch or
//! assignment; not a plain heartbeat) files it in a *dirty* set; the owner takes it
//! ([`ConsumerGroups::take_dirty`]) and stores each group's [`ConsumerGroups::record`] through
//! the metadata log; a restarted owner puts the groups back with [`ConsumerGroups::restore`]
//! (`consumer_record.rs`).
//!
//! # Timing
//! The state machine does no I/O and reads no clock: `now_ms` (monotonic) comes with every call,
//! `tick` expires sessions and rebalance timeouts, and `next_deadline_ms` says when `tick` next has
//! work. Deadlines are kept in an ordered index, so neither scans every member.
//!
//! Offset commits (OffsetCommit v9+ from these members) carry the member epoch as the generation:
//! `check_fetch` accepts it only from a current member at its current epoch (STALE_MEMBER_EPOCH
//! otherwise); `check_commit` also accepts an older positive epoch of a current member (Kafka 4.4,
//! KIP-1251: a partition is committed under the epoch it was assigned in, and Sluice keeps no
//! per-partition epochs) but never a newer one. Both accept epoch -1 from outside the group while
//! it has no members.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopicPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as ResponseAssignment, TopicPartitions as ResponseTopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use regex::RegexBuilder;
use uuid::Uuid;

use super::assignor::{Assignment, AssignorKind};
use super::topics::TopicsView;

#[path = "consumer_group.rs"]
mod group;

use group::{Deadlines, Group, Member, TopicRegex};

/// Member epoch of a member leaving the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (it keeps its assignment).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// First ConsumerGroupHeartbeat version whose members generate their own id (KIP-1082).
const CLIENT_GENERATED_MEMBER_ID_VERSION: i16 = 1;
/// Largest compiled size of a subscribed topic regex: a hostile pattern must not eat the core.
const TOPIC_REGEX_COMPILED_BYTES_MAX: usize = 1 << 20;
/// Longest subscribed topic regex accepted.
const TOPIC_REGEX_BYTES_MAX: usize = 4096;
/// Kafka's ConsumerGroupDescribe `member_type` of a member using the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;
/// Operations a group supports (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS as Kafka's
/// ACL operation bits), reported when describe asks for authorized operations: Sluice has no ACLs.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);
/// `authorized_operations` when they were not requested (Kafka's INT32_MIN sentinel).
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Settings of the KIP-848 protocol (server config `group_consumer_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Interval the members are told to heartbeat at.
    pub heartbeat_interval_ms: i32,
    /// A member not heard from for this long is removed.
    pub session_timeout_ms: i32,
    /// Server assignors members may pick; the first is the default. Unknown names are ignored
    /// (the config layer validates them).
    pub assignors: Vec<String>,
    /// Most members one group may have (`None`: unlimited).
    pub max_size: Option<usize>,
}

/// Who sent a heartbeat, for ConsumerGroupDescribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request header's client id.
    pub client_id: String,
    /// The client's address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
}

/// One row of ListGroups for a KIP-848 group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedConsumerGroup {
    /// The group id.
    pub group_id: String,
    /// Kafka's state name: "Empty", "Assigning", "Reconciling", "Stable" or "Dead".
    pub state: &'static str,
}

/// A heartbeat refused: the error code and Kafka's message.
#[derive(Debug)]
struct Refusal {
    error: ResponseError,
    message: String,
}

fn refuse<T>(error: ResponseError, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        error,
        message: message.into(),
    })
}

/// Every KIP-848 group owned by one core.
#[derive(Debug)]
pub struct ConsumerGroups {
    config: ConsumerConfig,
    /// The configured assignors that exist, default first.
    assignors: Vec<AssignorKind>,
    groups: BTreeMap<String, Group>,
    deadlines: Deadlines,
    /// Groups whose durable state changed since the owner last took the set.
    dirty: BTreeSet<String>,
}

impl ConsumerGroups {
    /// No groups yet.
    pub fn new(config: ConsumerConfig) -> Self {
        let mut assignors: Vec<AssignorKind> = Vec::new();
        for kind in config
            .assignors
            .iter()
            .filter_map(|name| AssignorKind::from_name(name))
        {
            if !assignors.contains(&kind) {
                assignors.push(kind);
            }
        }
        if assignors.is_empty() {
            assignors.push(AssignorKind::Uniform);
        }
        Self {
            config,
            assignors,
            groups: BTreeMap::new(),
            deadlines: Deadlines::default(),
            dirty: BTreeSet::new(),
        }
    }

    /// The groups whose durable state changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// The durable state of `group_id` (`None`: the group is gone).
    pub fn record(&self, group_id: &str) -> Option<sluice_engine::metadata::ConsumerGroupRecord> {
        self.groups.get(group_id).map(Group::record)
    }

    /// The ids of the groups in memory.
    pub fn group_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.groups.keys().cloned()
    }

    /// Drops `group_id` from memory without marking it for a write: another agent coordinates
    /// it now, and what it stores must not be overwritten from here.
    pub fn abandon(&mut self, group_id: &str) {
        if let Some(mut old) = self.groups.remove(group_id) {
            for member in old.members.values_mut() {
                self.deadlines.forget(group_id, member);
            }
        }
        self.dirty.remove(group_id);
    }

    /// Puts back a group a previous run stored, as Kafka's coordinator loads it: same epochs and
    /// assignments, every member with a full session from `now_ms`. Replaces any group of that id.
    pub fn restore(
        &mut self,
        group_id: &str,
        record: &sluice_engine::metadata::ConsumerGroupRecord,
        now_ms: u64,
    ) {
        if let Some(mut old) = self.groups.remove(group_id) {
            for member in old.members.values_mut() {
                self.deadlines.forget(group_id, member);
            }
        }
        self.dirty.remove(group_id);
        let default = self
            .assignors
            .first()
            .copied()
            .unwrap_or(AssignorKind::Uniform);
        let session_ms = u64::try_from(self.config.session_timeout_ms).unwrap_or(0);
        let group = Group::from_record(
            group_id.to_owned(),
            record,
            default,
            session_ms,
            now_ms,
            &mut self.deadlines,
            |source| compile_topic_regex(source).ok(),
        );
        self.groups.insert(group_id.to_owned(), group);
    }

    /// What a heartbeat may change of a group's durable state: its epochs, its member count and
    /// the member's own stored fields.
    fn stored_digest(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Option<(i32, i32, usize, Option<u64>)> {
        let group = self.groups.get(group_id)?;
        Some((
            group.group_epoch,
            group.assignment_epoch,
            group.members.len(),
            group.members.get(member_id).map(Member::stored_digest),
        ))
    }

    /// ConsumerGroupHeartbeat (v0-1).
    pub fn heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        topics: &TopicsView,
        now_ms: u64,
    ) -> ConsumerGroupHeartbeatResponse {
        self.heartbeat_from(req, version, &ClientInfo::default(), topics, now_ms)
    }

    /// ConsumerGroupHeartbeat, remembering the client's id and host for describe.
    pub fn heartbeat_from(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
        topics: &TopicsView,
        now_ms: u64,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = req.group_id.as_str();
        let before = self.stored_digest(group_id, req.member_id.as_str());
        let response = match self.handle(req, version, client, topics, now_ms) {
            Ok(response) => response,
            Err(refusal) => ConsumerGroupHeartbeatResponse::default()
                .with_error_code(refusal.error.code())
                .with_error_message(Some(StrBytes::from_string(refusal.message))),
        };
        let member_id = response
            .member_id
            .as_deref()
            .unwrap_or(req.member_id.as_str());
        if self.stored_digest(group_id, member_id) != before {
            self.dirty.insert(group_id.to_owned());
        }
        response
    }

    fn handle(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
        topics: &TopicsView,
        now_ms: u64,
    ) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
        self.validate(req, version)?;
        let regex = match req.subscribed_topic_regex.as_deref() {
            Some(source) if !source.is_empty() => Some(Some(compile_topic_regex(source)?)),
            Some(_) => Some(None),
            None => None,
        };
        let epoch = req.member_epoch;
        if epoch == LEAVE_GROUP_MEMBER_EPOCH || epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return self.leave(req, topics, now_ms);
        }

        let group_id: &str = &req.group_id;
        if epoch == 0 && !self.groups.contains_key(group_id) {
            let default = self
                .assignors
                .first()
                .copied()
                .unwrap_or(AssignorKind::Uniform);
            self.groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), default),
            );
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Group {group_id} is unknown to the coordinator (it restarted or the group was deleted); rejoin."
                ),
            );
        };
        let member_id = if req.member_id.is_empty() {
            generate_member_id()
        } else {
            req.member_id.to_string()
        };
        let owned = req.topic_partitions.as_deref().map(owned_assignment);
        let instance_id = req.instance_id.as_deref().map(str::to_string);

        // Who is this: a new member, a known one, or a static member taking over its old place.
        let mut joined = false;
        match &instance_id {
            Some(instance) => {
                let existing = group.static_members.get(instance).cloned();
                if epoch == 0 {
                    match existing {
                        Some(old_id) => {
                            let parked = group.members.get(&old_id).is_some_and(|old| {
                                old.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
                            });
                            if old_id != member_id && !parked {
                                return refuse(
                                    ResponseError::UnreleasedInstanceId,
                                    format!(
                                        "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {old_id} member."
                                    ),
                                );
                            }
                            if old_id != member_id {
                                if group.members.contains_key(&member_id) {
                                    // The new id is in use by another member: refuse rather than merge two.
                                    return refuse(
                                        ResponseError::UnreleasedInstanceId,
                                        format!(
                                            "Member id {member_id} is already used by another member."
                                        ),
                                    );
                                }
                                group.rename_member(&old_id, &member_id, &mut self.deadlines);
                            }
                            group.reset_for_rejoin(&member_id);
                        }
                        None => match group.members.get(&member_id) {
                            Some(_) => {
                                group
                                    .static_members
                                    .insert(instance.clone(), member_id.clone());
                                group.reset_for_rejoin(&member_id);
                            }
                            None => {
                                check_capacity(group, self.config.max_size)?;
                                let mut member = Member::new(member_id.clone(), now_ms);
                                member.instance_id = Some(instance.clone());
                                group.add_member(member);
                                joined = true;
                            }
                        },
                    }
                } else {
                    let Some(old_id) = existing else {
                        return refuse(
                            ResponseError::UnknownMemberId,
                            format!("Instance id {instance} is unknown."),
                        );
                    };
                    if old_id != member_id {
                        return refuse(
                            ResponseError::FencedInstanceId,
                            format!(
                                "Static member {member_id} with instance id {instance} was fenced by member {old_id}."
                            ),
                        );
                    }
                    let Some(member) = group.members.get(&member_id) else {
                        return refuse(
                            ResponseError::UnknownMemberId,
                            format!("Member {member_id} is unknown."),
                        );
                    };
                    check_member_epoch(member, epoch, owned.as_ref())?;
                }
            }
            None => match group.members.get(&member_id) {
                Some(member) if epoch != 0 => check_member_epoch(member, epoch, owned.as_ref())?,
                Some(_) => group.reset_for_rejoin(&member_id),
                None if epoch == 0 => {
                    check_capacity(group, self.config.max_size)?;
                    group.add_member(Member::new(member_id.clone(), now_ms));
                    joined = true;
                }
                None => {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!("Member {member_id} is not a member of group {group_id}."),
                    );
                }
            },
        }

        // Update what the member told us; a changed subscription or assignor bumps the group epoch.
        let Some(member) = group.members.get_mut(&member_id) else {
            return refuse(
                ResponseError::UnknownServerError,
                "member vanished while handling its heartbeat",
            );
        };
        let mut subscription_changed = joined;
        if let Some(instance) = &instance_id {
            member.instance_id = Some(instance.clone());
        }
        if let Some(rack) = req.rack_id.as_deref() {
            member.rack_id = Some(rack.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms.max(0);
        }
        if let Some(name) = req.server_assignor.as_deref() {
            let kind = AssignorKind::from_name(name);
            if member.server_assignor != kind {
                member.server_assignor = kind;
                subscription_changed = true;
            }
        }
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().map(|name| name.to_string()).collect();
            if member.subscribed_names != names {
                member.subscribed_names = names;
                subscription_changed = true;
            }
        }
        if let Some(regex) = regex {
            let before = member.subscribed_regex.as_ref().map(|r| r.source.as_str());
            if before != regex.as_ref().map(|r| r.source.as_str()) {
                member.subscribed_regex = regex;
                subscription_changed = true;
            }
        }
        member.client = client.clone();
        let assigned_before = member.assigned.clone();

        let metadata_changed = group.refresh_subscriptions(topics, subscription_changed);
        if subscription_changed || metadata_changed {
            group.group_epoch = group.group_epoch.saturating_add(1);
        }
        if group.group_epoch > group.assignment_epoch {
            group.compute_target(topics, &self.assignors);
        }
        group.reconcile(&member_id, owned.as_ref(), now_ms);

        let session_ms = u64::try_from(self.config.session_timeout_ms).unwrap_or(0);
        let Some(member) = group.members.get_mut(&member_id) else {
            return refuse(
                ResponseError::UnknownServerError,
                "member vanished while handling its heartbeat",
            );
        };
        member.session_deadline_ms = now_ms.saturating_add(session_ms);
        self.deadlines.sync(group_id, member);

        let full_request = epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.topic_partitions.is_some());
        let differs_from_owned = owned
            .as_ref()
            .is_some_and(|owned| *owned != member.assigned);
        let assignment = (full_request || member.assigned != assigned_before || differs_from_owned)
            .then(|| response_assignment(&member.assigned));
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(member.member_epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms)
            .with_assignment(assignment))
    }

    /// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
    fn validate(&self, req: &ConsumerGroupHeartbeatRequest, version: i16) -> Result<(), Refusal> {
        let epoch = req.member_epoch;
        if (version >= CLIENT_GENERATED_MEMBER_ID_VERSION
            || epoch > 0
            || epoch == LEAVE_GROUP_MEMBER_EPOCH)
            && req.member_id.is_empty()
        {
            return refuse(ResponseError::InvalidRequest, "MemberId can't be empty.");
        }
        if req.group_id.is_empty() {
            return refuse(ResponseError::InvalidRequest, "GroupId can't be empty.");
        }
        if req.instance_id.as_ref().is_some_and(|id| id.is_empty()) {
            return refuse(ResponseError::InvalidRequest, "InstanceId can't be empty.");
        }
        if req.rack_id.as_ref().is_some_and(|id| id.is_empty()) {
            return refuse(ResponseError::InvalidRequest, "RackId can't be empty.");
        }
        if epoch == 0 {
            if req.rebalance_timeout_ms == -1 {
                return refuse(
                    ResponseError::InvalidRequest,
                    "RebalanceTimeoutMs must be provided in first request.",
                );
            }
            if req
                .topic_partitions
                .as_ref()
                .is_none_or(|owned| !owned.is_empty())
            {
                return refuse(
                    ResponseError::InvalidRequest,
                    "TopicPartitions must be empty when (re-)joining.",
                );
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return refuse(
                    ResponseError::InvalidRequest,
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                );
            }
        } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            if req.instance_id.is_none() {
                return refuse(ResponseError::InvalidRequest, "InstanceId can't be null.");
            }
        } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return refuse(ResponseError::InvalidRequest, "MemberEpoch is invalid.");
        }
        if let Some(name) = req.server_assignor.as_deref()
            && !AssignorKind::from_name(name).is_some_and(|kind| self.assignors.contains(&kind))
        {
            let supported: Vec<&str> = self.assignors.iter().map(|kind| kind.name()).collect();
            return refuse(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    supported.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// Epoch -1 (leave) or -2 (static member leaving temporarily).
    fn leave(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &TopicsView,
        now_ms: u64,
    ) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
        let group_id: &str = &req.group_id;
        let member_id = req.member_id.to_string();
        let Some(group) = self.groups.get_mut(group_id) else {
            return refuse(
                ResponseError::UnknownMemberId,
                format!("Group {group_id} is unknown to the coordinator."),
            );
        };
        let mut epoch = LEAVE_GROUP_MEMBER_EPOCH;
        match req.instance_id.as_deref() {
            None => {
                if !group.members.contains_key(&member_id) {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!("Member {member_id} is not a member of group {group_id}."),
                    );
                }
            }
            Some(instance) => {
                let Some(owner) = group.static_members.get(instance) else {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    );
                };
                if *owner != member_id {
                    return refuse(
                        ResponseError::FencedInstanceId,
                        format!(
                            "Static member {member_id} with instance id {instance} was fenced by member {owner}."
                        ),
                    );
                }
                if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                }
            }
        }
        if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            group.park_static_member(&member_id);
            let session_ms = u64::try_from(self.config.session_timeout_ms).unwrap_or(0);
            if let Some(member) = group.members.get_mut(&member_id) {
                member.session_deadline_ms = now_ms.saturating_add(session_ms);
                self.deadlines.sync(group_id, member);
            }
        } else {
            group.remove_member(&member_id, &mut self.deadlines);
            membership_changed(group, topics, &self.assignors);
        }
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(epoch))
    }

    /// ConsumerGroupDescribe of one group.
    pub fn describe(
        &self,
        group_id: &str,
        topics: &TopicsView,
        include_authorized_operations: bool,
    ) -> DescribedGroup {
        let described = DescribedGroup::default()
            .with_group_id(StrBytes::from_string(group_id.to_string()).into())
            .with_authorized_operations(if include_authorized_operations {
                GROUP_AUTHORIZED_OPERATIONS
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            });
        let Some(group) = self.groups.get(group_id) else {
            return described
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "Group {group_id} not found."
                ))));
        };
        let empty = Assignment::new();
        let members = group
            .members
            .values()
            .map(|member| {
                DescribedMember::default()
                    .with_member_id(StrBytes::from_string(member.member_id.clone()))
                    .with_instance_id(member.instance_id.clone().map(StrBytes::from_string))
                    .with_rack_id(member.rack_id.clone().map(StrBytes::from_string))
                    .with_member_epoch(member.member_epoch)
                    .with_client_id(StrBytes::from_string(member.client.client_id.clone()))
                    .with_client_host(StrBytes::from_string(member.client.client_host.clone()))
                    .with_subscribed_topic_names(
                        member
                            .subscribed_names
                            .iter()
                            .map(|name| TopicName::from(StrBytes::from_string(name.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(
                        member
                            .subscribed_regex
                            .as_ref()
                            .map(|regex| StrBytes::from_string(regex.source.clone())),
                    )
                    .with_assignment(described_assignment(&member.assigned, topics))
                    .with_target_assignment(described_assignment(
                        group.target.get(&member.member_id).unwrap_or(&empty),
                        topics,
                    ))
                    .with_member_type(MEMBER_TYPE_CONSUMER)
            })
            .collect();
        described
            .with_group_state(StrBytes::from_static_str(group.state_name()))
            .with_group_epoch(group.group_epoch)
            .with_assignment_epoch(group.assignment_epoch)
            .with_assignor_name(StrBytes::from_static_str(group.assignor.name()))
            .with_members(members)
    }

    /// OffsetCommit from a KIP-848 member: generation_id in the request is the member epoch.
    /// Kafka's `ConsumerGroup.validateOffsetCommit`: epoch < 0 is accepted while the group has no
    /// members (admin tools, manual commits); otherwise the member must exist (UNKNOWN_MEMBER_ID)
    /// and the epoch be positive and not newer than the member's (STALE_MEMBER_EPOCH; see the
    /// comment in the body on older epochs). A group this core does not know →
    /// GROUP_ID_NOT_FOUND (the caller decides whether that is a simple-group commit).
    pub fn check_commit(
        &mut self,
        group_id: &str,
        member_epoch: i32,
        member_id: &str,
        now_ms: u64,
    ) -> Result<(), i16> {
        let _ = now_ms; // commits do not extend the session in the consumer protocol.
        let Some(group) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound.code());
        };
        if member_epoch < 0 && group.members.is_empty() {
            return Ok(());
        }
        let Some(member) = group.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        // Kafka 4.4 refuses only an epoch newer than the member's; an older one is accepted
        // for partitions assigned at or before it. Per-partition assignment epochs are not kept
        // here, so every older epoch of a current member is accepted: the Java client commits
        // only partitions it owns, and a revoked partition is committed before the member acks
        // the revocation, i.e. still under its current epoch.
        if member_epoch > member.member_epoch || member_epoch < 1 {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// OffsetFetch v9 with member id/epoch (Kafka's `validateOffsetFetch`). Pass an empty
    /// `member_id` for a null one: with epoch < 0 that is an admin fetch and always allowed.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_epoch: i32,
        member_id: &str,
    ) -> Result<(), i16> {
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        let Some(group) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound.code());
        };
        let Some(member) = group.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// Every group, with its state name.
    pub fn list(&self) -> Vec<ListedConsumerGroup> {
        self.groups
            .values()
            .map(|group| ListedConsumerGroup {
                group_id: group.group_id.clone(),
                state: group.state_name(),
            })
            .collect()
    }

    /// DeleteGroups: NON_EMPTY_GROUP while the group has members, GROUP_ID_NOT_FOUND if unknown.
    pub fn delete(&mut self, group_id: &str) -> Result<(), i16> {
        let Some(group) = self.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound.code());
        };
        if !group.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup.code());
        }
        self.groups.remove(group_id);
        self.dirty.insert(group_id.to_owned());
        Ok(())
    }

    /// Groups with no members: what the periodic cleanup forgets when they have no committed
    /// offsets.
    pub fn empty_group_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, group)| group.members.is_empty())
            .map(|(group_id, _)| group_id.clone())
            .collect()
    }

    /// Forgets the group if it still has no members; whether it was forgotten.
    pub fn forget_if_empty(&mut self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|group| group.members.is_empty())
            && self.delete(group_id).is_ok()
    }

    /// Whether this core holds the group.
    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether the group has no members (true for an unknown group).
    pub fn is_empty(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_none_or(|group| group.members.is_empty())
    }

    /// Topic names the group's members subscribe to (explicit names and regex matches), for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn subscribed_topics(&self, group_id: &str, topics: &TopicsView) -> BTreeSet<String> {
        let Some(group) = self.groups.get(group_id) else {
            return BTreeSet::new();
        };
        let mut names = BTreeSet::new();
        for member in group.members.values() {
            names.extend(member.subscribed_names.iter().cloned());
            names.extend(member.resolve(topics).map(|(name, _, _)| name.to_string()));
        }
        names
    }

    /// Session expiry (and rebalance-timeout expiry of members that do not revoke in time).
    pub fn tick(&mut self, now_ms: u64, topics: &TopicsView) {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        // Each round takes one due entry; an entry is put back only with a deadline after now.
        while let Some((group_id, member_id)) = self.deadlines.pop_due(now_ms) {
            let Some(group) = self.groups.get_mut(&group_id) else {
                continue;
            };
            let Some(member) = group.members.get_mut(&member_id) else {
                continue;
            };
            member.forget_indexed_deadline();
            let session_expired = member.session_deadline_ms <= now_ms;
            let revocation_expired = member
                .rebalance_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms);
            if session_expired || revocation_expired {
                group.remove_member(&member_id, &mut self.deadlines);
                touched.insert(group_id);
            } else {
                member.rebalance_deadline_ms = None;
                self.deadlines.sync(&group_id, member);
            }
        }
        for group_id in touched {
            if let Some(group) = self.groups.get_mut(&group_id) {
                membership_changed(group, topics, &self.assignors);
            }
            self.dirty.insert(group_id);
        }
    }

    /// When `tick` next has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first_ms()
    }

    /// Topic metadata changed (partitions added, topic created/deleted): bump epochs where subscribed.
    pub fn topics_changed(&mut self, topics: &TopicsView) {
        for group in self.groups.values_mut() {
            if group.refresh_subscriptions(topics, false) {
                group.group_epoch = group.group_epoch.saturating_add(1);
                group.compute_target(topics, &self.assignors);
                self.dirty.insert(group.group_id.clone());
            }
        }
    }

    /// Number of members across all groups (for metrics and tests).
    pub fn members_count(&self) -> usize {
        self.groups.values().map(|group| group.members.len()).sum()
    }

    #[cfg(test)]
    fn assert_consistent(&self) {
        let mut indexed = 0;
        for group in self.groups.values() {
            group.assert_consistent();
            indexed += group.members.len();
        }
        assert_eq!(
            indexed,
            self.deadlines.len(),
            "every member has exactly one deadline entry"
        );
    }
}

/// A member left or was removed: re-resolve subscriptions, bump the group epoch, reassign.
fn membership_changed(group: &mut Group, topics: &TopicsView, assignors: &[AssignorKind]) {
    group.refresh_subscriptions(topics, true);
    group.group_epoch = group.group_epoch.saturating_add(1);
    group.compute_target(topics, assignors);
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
fn check_member_epoch(
    member: &Member,
    epoch: i32,
    owned: Option<&Assignment>,
) -> Result<(), Refusal> {
    if epoch > member.member_epoch {
        return refuse(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        );
    }
    if epoch < member.member_epoch {
        // The previous epoch is fine if the member owns nothing outside its assignment: the
        // response that moved it forward was lost.
        let within = owned.is_some_and(|owned| is_subset(owned, &member.assigned));
        if epoch != member.previous_member_epoch || !within {
            return refuse(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    member.member_epoch
                ),
            );
        }
    }
    Ok(())
}

fn check_capacity(group: &Group, max_size: Option<usize>) -> Result<(), Refusal> {
    match max_size {
        Some(max) if group.members.len() >= max => refuse(
            ResponseError::GroupMaxSizeReached,
            format!("The consumer group has reached its maximum capacity of {max} members."),
        ),
        _ => Ok(()),
    }
}

fn is_subset(owned: &Assignment, assigned: &Assignment) -> bool {
    owned
        .iter()
        .all(|(topic, set)| assigned.get(topic).is_some_and(|held| set.is_subset(held)))
}

fn compile_topic_regex(source: &str) -> Result<TopicRegex, Refusal> {
    if source.len() > TOPIC_REGEX_BYTES_MAX {
        return refuse(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex is longer than {TOPIC_REGEX_BYTES_MAX} bytes."),
        );
    }
    match RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(TOPIC_REGEX_COMPILED_BYTES_MAX)
        .build()
    {
        Ok(compiled) => Ok(TopicRegex {
            source: source.to_string(),
            compiled,
        }),
        Err(error) => refuse(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex {source} is not a valid regular expression: {error}"),
        ),
    }
}

/// The owned partitions a heartbeat reported, without empty topics or impossible partitions.
fn owned_assignment(reported: &[OwnedTopicPartitions]) -> Assignment {
    let mut owned = Assignment::new();
    for topic in reported {
        let partitions: BTreeSet<u32> = topic
            .partitions
            .iter()
            .filter_map(|p| u32::try_from(*p).ok())
            .collect();
        if !partitions.is_empty() {
            owned.entry(topic.topic_id).or_default().extend(partitions);
        }
    }
    owned
}

fn partition_list(set: &BTreeSet<u32>) -> Vec<i32> {
    set.iter().filter_map(|p| i32::try_from(*p).ok()).collect()
}

fn response_assignment(assigned: &Assignment) -> ResponseAssignment {
    ResponseAssignment::default().with_topic_partitions(
        assigned
            .iter()
            .map(|(topic, set)| {
                ResponseTopicPartitions::default()
                    .with_topic_id(*topic)
                    .with_partitions(partition_list(set))
            })
            .collect(),
    )
}

fn described_assignment(assigned: &Assignment, topics: &TopicsView) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        assigned
            .iter()
            // Like Kafka, partitions of a topic no longer in the metadata are not described.
            .filter_map(|(topic, set)| {
                let (name, _) = topics.by_id(topic)?;
                Some(
                    DescribedTopicPartitions::default()
                        .with_topic_id(*topic)
                        .with_topic_name(TopicName::from(StrBytes::from_string(name.to_string())))
                        .with_partitions(partition_list(set)),
                )
            })
            .collect(),
    )
}

/// A new member id as Kafka's `Uuid.randomUuid().toString()`: a random version-4 uuid in URL-safe
/// base64 without padding (22 characters), never starting with '-' (Kafka draws again: such ids
/// read like command-line flags).
fn generate_member_id() -> String {
    loop {
        let id = base64_url(Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            if let Some(symbol) = ALPHABET.get(index as usize) {
                out.push(char::from(*symbol));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "consumer_restore_tests.rs"]
mod restore_tests;
