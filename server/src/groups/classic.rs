//! The classic consumer-group coordinator: JoinGroup, SyncGroup, Heartbeat and LeaveGroup as
//! Kafka's group coordinator implements them (`GroupMetadataManager`'s classic paths and
//! `ClassicGroup`), for every group one network core owns.
//!
//! # The state machine
//!
//! A group is `Empty` until a member joins. A join moves it to `PreparingRebalance`, where
//! every known member must send JoinGroup again; the request is parked (`Reply::Later`) until
//! the join phase completes. Completing it removes the dynamic members that did not rejoin,
//! increments the generation, picks the protocol every member supports that most members
//! prefer, and answers every parked JoinGroup: the leader's with all members' metadata, the
//! followers' with none. The group is then `CompletingRebalance` until the leader's SyncGroup
//! brings the assignment; followers' SyncGroups are parked until then, and every one is
//! answered with its member's share when the group becomes `Stable`. A new member, a member
//! that rejoins with different metadata, the leader rejoining, a member leaving or a session
//! expiring starts the next rebalance; parked SyncGroups are then answered
//! REBALANCE_IN_PROGRESS, and heartbeats get REBALANCE_IN_PROGRESS so that members rejoin.
//! A group whose last member goes returns to `Empty`, keeping its generation. Incremental
//! cooperative rebalancing needs nothing more: after the first round, members that gave up
//! partitions rejoin with changed metadata, which starts the second round.
//!
//! Since JoinGroup v4 (KIP-394) a member without an id first gets MEMBER_ID_REQUIRED and a
//! generated id, which it must join with within its session timeout; until then the id is
//! pending and a rebalance waits for it. Static members (KIP-345, `group.instance.id`) skip
//! that step: an instance id that is already a member replaces the old member id (requests
//! under the old id are fenced with FENCED_INSTANCE_ID) and, when the group is Stable and its
//! protocol would not change, gets its old assignment back without a rebalance. Static members
//! that did not rejoin are kept through a rebalance; only their session expiry or a LeaveGroup
//! removes them.
//!
//! # Timers
//!
//! The machine reads no clock: every call carries `now_ms` (monotonic milliseconds), and the
//! owner calls `tick` at `next_deadline_ms`. The timers, all Kafka's:
//! - a member's session expires `session_timeout_ms` after its last heartbeat, commit, or
//!   answered JoinGroup/SyncGroup; a member parked in JoinGroup or SyncGroup does not expire
//!   (the parked request is proof of life), except a member new in this rebalance, which
//!   waits at most five minutes;
//! - a pending member id expires after the session timeout of the request that got it;
//! - the first rebalance of an empty group waits `initial_rebalance_delay_ms`, again while new
//!   members keep arriving, never more than the rebalance timeout in all; any later rebalance
//!   completes as soon as every member has rejoined, or at the rebalance timeout (the largest
//!   of the members');
//! - the members of a new generation must send SyncGroup within the rebalance timeout, or are
//!   removed and the group rebalances.
//!
//! # Durability
//!
//! Every call that may change a group's durable state (join, sync, leave, a timer) files the
//! group in a *dirty* set; the owner takes it ([`ClassicGroups::take_dirty`]), reads each group's
//! [`ClassicGroups::record`] and stores it through the metadata log, and a restarted owner puts
//! the groups back with [`ClassicGroups::restore`] (`record.rs`). Committed offsets are the
//! metadata state's, not this module's: `check_commit` only says whether a commit may go ahead.

mod group;
mod rebalance;
mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use sluice_engine::metadata::ClassicGroupRecord;

use futures::channel::oneshot;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use self::errors::{
    GROUP_ID_NOT_FOUND, GROUP_MAX_SIZE_REACHED, ILLEGAL_GENERATION, INVALID_GROUP_ID,
    INVALID_SESSION_TIMEOUT, NON_EMPTY_GROUP, UNKNOWN_MEMBER_ID, UNKNOWN_SERVER_ERROR,
};
use self::group::{
    Group, State, Waiter, fit_join_response, join_error, protocols_of, str_bytes, sync_error,
};
use self::rebalance::Join;
use super::reply::Reply;

/// The Kafka error codes this module answers with (the values of the Java broker's `Errors`).
pub(crate) mod errors {
    pub(crate) const NONE: i16 = 0;
    pub(crate) const UNKNOWN_SERVER_ERROR: i16 =
        kafka_protocol::ResponseError::UnknownServerError.code();
    pub(crate) const ILLEGAL_GENERATION: i16 =
        kafka_protocol::ResponseError::IllegalGeneration.code();
    pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 =
        kafka_protocol::ResponseError::InconsistentGroupProtocol.code();
    pub(crate) const INVALID_GROUP_ID: i16 = kafka_protocol::ResponseError::InvalidGroupId.code();
    pub(crate) const UNKNOWN_MEMBER_ID: i16 = kafka_protocol::ResponseError::UnknownMemberId.code();
    pub(crate) const INVALID_SESSION_TIMEOUT: i16 =
        kafka_protocol::ResponseError::InvalidSessionTimeout.code();
    pub(crate) const REBALANCE_IN_PROGRESS: i16 =
        kafka_protocol::ResponseError::RebalanceInProgress.code();
    pub(crate) const NON_EMPTY_GROUP: i16 = kafka_protocol::ResponseError::NonEmptyGroup.code();
    pub(crate) const GROUP_ID_NOT_FOUND: i16 =
        kafka_protocol::ResponseError::GroupIdNotFound.code();
    pub(crate) const MEMBER_ID_REQUIRED: i16 =
        kafka_protocol::ResponseError::MemberIdRequired.code();
    pub(crate) const GROUP_MAX_SIZE_REACHED: i16 =
        kafka_protocol::ResponseError::GroupMaxSizeReached.code();
    pub(crate) const FENCED_INSTANCE_ID: i16 =
        kafka_protocol::ResponseError::FencedInstanceId.code();
}

/// Limits of the classic protocol, from the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicConfig {
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// Kafka's `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// Kafka's `group.max.size`; `None` is unlimited.
    pub max_size: Option<usize>,
}

impl Default for ClassicConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: None,
        }
    }
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClassicGroup {
    pub group_id: String,
    /// "" for a group that never had a member.
    pub protocol_type: String,
    /// Kafka's state name: "Empty", "PreparingRebalance", "CompletingRebalance" or "Stable".
    pub state: &'static str,
}

/// A group and the deadline it is filed under in the timer index.
#[derive(Debug)]
struct Slot {
    group: Group,
    indexed_deadline_ms: Option<u64>,
}

/// Every classic group owned by one core.
#[derive(Debug, Default)]
pub struct ClassicGroups {
    config: ClassicConfig,
    groups: HashMap<String, Slot>,
    /// (earliest deadline of the group, group id): `tick` visits only the groups that are due.
    deadlines: BTreeSet<(u64, String)>,
    /// Groups whose durable state may have changed since the owner last took the set.
    dirty: BTreeSet<String>,
}

/// What the owner should store for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicRecord {
    /// The group is gone: remove what is stored.
    Absent,
    /// In a rebalance: keep what is stored until the group is Stable or Empty again.
    Unsettled,
    Record(ClassicGroupRecord),
}

impl ClassicGroups {
    pub fn new(config: ClassicConfig) -> Self {
        Self {
            config,
            groups: HashMap::new(),
            deadlines: BTreeSet::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The groups whose durable state may have changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// What to store for `group_id` now.
    pub fn record(&self, group_id: &str) -> ClassicRecord {
        match self.groups.get(group_id) {
            None => ClassicRecord::Absent,
            Some(slot) => slot
                .group
                .record()
                .map_or(ClassicRecord::Unsettled, ClassicRecord::Record),
        }
    }

    /// The ids of the groups in memory.
    pub fn group_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.groups.keys().cloned()
    }

    /// Answers every parked JoinGroup and SyncGroup with `error_code` (the agent is stopping:
    /// a rebalance waiting on members would otherwise hold them until the connections' drain
    /// timeout). The groups stay as they are; returns how many requests were answered.
    pub fn release_waiters(&mut self, error_code: i16) -> usize {
        let mut released = 0;
        for slot in self.groups.values_mut() {
            for member in slot.group.members.values_mut() {
                if let Some(waiter) = member.join_waiter.take() {
                    waiter.send(group::join_error(&member.id, error_code));
                    released += 1;
                }
                if let Some(waiter) = member.sync_waiter.take() {
                    waiter.send(group::sync_error(error_code));
                    released += 1;
                }
            }
        }
        released
    }

    /// Drops `group_id` from memory without marking it for a write: another agent coordinates
    /// it now, and what it stores must not be overwritten from here.
    pub fn abandon(&mut self, group_id: &str) {
        self.remove_group(group_id);
        self.dirty.remove(group_id);
    }

    /// Puts back a group a previous run stored, as Kafka's coordinator loads it: Stable with its
    /// members (each with a full session from `now_ms`) or Empty. Replaces any group of that id.
    pub fn restore(&mut self, group_id: &str, record: &ClassicGroupRecord, now_ms: u64) {
        self.remove_group(group_id);
        self.dirty.remove(group_id);
        let group = Group::from_record(group_id.to_owned(), record, now_ms);
        self.groups.insert(
            group_id.to_owned(),
            Slot {
                group,
                indexed_deadline_ms: None,
            },
        );
        self.reindex(group_id);
    }

    /// JoinGroup. Answered now for errors, MEMBER_ID_REQUIRED and joins that need no rebalance;
    /// otherwise when the join phase completes (another member's request or `tick`). The
    /// response is already fitted to `version`.
    pub fn join(
        &mut self,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        now_ms: u64,
    ) -> Reply<JoinGroupResponse> {
        let (sender, mut receiver) = oneshot::channel();
        let waiter = Waiter::new(sender, version);
        self.join_into(req, version, client_id, client_host, now_ms, waiter);
        match receiver.try_recv() {
            Ok(Some(response)) => Reply::Now(response),
            Ok(None) => Reply::Later(receiver),
            Err(_) => Reply::Now(fit_join_response(
                join_error(&req.member_id, UNKNOWN_SERVER_ERROR),
                version,
            )),
        }
    }

    fn join_into(
        &mut self,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        now_ms: u64,
        waiter: Waiter<JoinGroupResponse>,
    ) {
        let group_id = req.group_id.as_str();
        let member_id = req.member_id.as_str();
        if group_id.is_empty() {
            return waiter.send(join_error(member_id, INVALID_GROUP_ID));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return waiter.send(join_error(member_id, INVALID_SESSION_TIMEOUT));
        }
        let created = !self.groups.contains_key(group_id);
        if created {
            if !member_id.is_empty() {
                return waiter.send(join_error(member_id, UNKNOWN_MEMBER_ID));
            }
            let slot = Slot {
                group: Group::new(group_id.to_owned()),
                indexed_deadline_ms: None,
            };
            self.groups.insert(group_id.to_owned(), slot);
        }
        let Some(slot) = self.groups.get_mut(group_id) else {
            return waiter.send(join_error(member_id, UNKNOWN_SERVER_ERROR));
        };
        let group = &mut slot.group;
        let join = Join {
            request: req,
            version,
            client_id,
            client_host,
            protocols: protocols_of(&req.protocols),
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            now_ms,
        };
        if !group.accepts_joining_member(member_id, self.config.max_size) {
            group.remove(member_id);
            waiter.send(join_error("", GROUP_MAX_SIZE_REACHED));
        } else if member_id.is_empty() {
            group.join_new_member(join, waiter, &self.config);
        } else {
            group.join_existing_member(join, waiter, &self.config);
        }
        // A group created by a join that added nobody (bad protocols, a full group) is not kept.
        if created && group.members.is_empty() && group.pending_join.is_empty() {
            self.remove_group(group_id);
        } else {
            self.reindex(group_id);
            self.dirty.insert(group_id.to_owned());
        }
    }

    /// SyncGroup. The leader's, and any member's while Stable, is answered now; a follower's in
    /// CompletingRebalance when the leader's arrives.
    pub fn sync(
        &mut self,
        req: &SyncGroupRequest,
        version: i16,
        now_ms: u64,
    ) -> Reply<SyncGroupResponse> {
        let _ = version; // Every field of the response exists in every version or is ignored.
        let group_id = req.group_id.as_str();
        if group_id.is_empty() {
            return Reply::Now(sync_error(INVALID_GROUP_ID));
        }
        let Some(slot) = self.groups.get_mut(group_id) else {
            return Reply::Now(sync_error(UNKNOWN_MEMBER_ID));
        };
        if slot.group.state == State::Empty {
            return Reply::Now(sync_error(UNKNOWN_MEMBER_ID));
        }
        let (sender, mut receiver) = oneshot::channel();
        slot.group.sync(req, Waiter::new(sender, version), now_ms);
        self.reindex(group_id);
        self.dirty.insert(group_id.to_owned());
        match receiver.try_recv() {
            Ok(Some(response)) => Reply::Now(response),
            Ok(None) => Reply::Later(receiver),
            Err(_) => Reply::Now(sync_error(UNKNOWN_SERVER_ERROR)),
        }
    }

    /// Heartbeat: refreshes the member's session.
    pub fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        version: i16,
        now_ms: u64,
    ) -> HeartbeatResponse {
        let _ = version; // Same fields in every version.
        let group_id = req.group_id.as_str();
        if group_id.is_empty() {
            return HeartbeatResponse::default().with_error_code(INVALID_GROUP_ID);
        }
        let Some(slot) = self.groups.get_mut(group_id) else {
            return HeartbeatResponse::default().with_error_code(UNKNOWN_MEMBER_ID);
        };
        let response = slot.group.heartbeat(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
            now_ms,
        );
        self.reindex(group_id);
        response
    }

    /// LeaveGroup: the v3+ batch of members, or the single member id of v0–2 (whose error is
    /// then the top-level error, as the Java broker reports it).
    pub fn leave(
        &mut self,
        req: &LeaveGroupRequest,
        version: i16,
        now_ms: u64,
    ) -> LeaveGroupResponse {
        let group_id = req.group_id.as_str();
        if group_id.is_empty() {
            return LeaveGroupResponse::default().with_error_code(INVALID_GROUP_ID);
        }
        let single;
        let leaving: &[MemberIdentity] = if version >= 3 {
            &req.members
        } else {
            single = [MemberIdentity::default().with_member_id(req.member_id.clone())];
            &single
        };
        let response = match self.groups.get_mut(group_id) {
            None => LeaveGroupResponse::default().with_members(
                leaving
                    .iter()
                    .map(|identity| {
                        MemberResponse::default()
                            .with_member_id(identity.member_id.clone())
                            .with_group_instance_id(identity.group_instance_id.clone())
                            .with_error_code(UNKNOWN_MEMBER_ID)
                    })
                    .collect(),
            ),
            Some(slot) => {
                let response = slot.group.leave(leaving, now_ms, &self.config);
                self.reindex(group_id);
                self.dirty.insert(group_id.to_owned());
                response
            }
        };
        if version >= 3 {
            return response;
        }
        let error_code = response
            .members
            .first()
            .map(|member| member.error_code)
            .unwrap_or(UNKNOWN_MEMBER_ID);
        LeaveGroupResponse::default().with_error_code(error_code)
    }

    /// OffsetCommit validation (and it refreshes the member's session like a heartbeat).
    ///
    /// A commit with generation -1 and no member id is accepted for an absent or Empty group
    /// (the admin client, or a consumer that assigns partitions itself) and refused with
    /// UNKNOWN_MEMBER_ID while the group has members. A commit with a generation to an absent
    /// group gets ILLEGAL_GENERATION; OffsetCommit v9+ answers GROUP_ID_NOT_FOUND there
    /// instead, which the caller substitutes (`contains` tells it the group is absent).
    pub fn check_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(INVALID_GROUP_ID);
        }
        let Some(slot) = self.groups.get_mut(group_id) else {
            return if generation_id < 0 {
                Ok(())
            } else {
                Err(ILLEGAL_GENERATION)
            };
        };
        let result = slot
            .group
            .check_commit(generation_id, member_id, group_instance_id, now_ms);
        self.reindex(group_id);
        result
    }

    /// DescribeGroups for one group. Members' metadata (for the chosen protocol) and
    /// assignments are reported only when the group is Stable, like Kafka's. An absent group is
    /// "Dead" with no error before v6 and GROUP_ID_NOT_FOUND from v6.
    pub fn describe(&self, group_id: &str, version: i16) -> DescribedGroup {
        let described = DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id)));
        let Some(slot) = self.groups.get(group_id) else {
            let dead = described.with_group_state(StrBytes::from_static_str("Dead"));
            return if version >= 6 {
                dead.with_error_code(GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(&format!("Group {group_id} not found."))))
            } else {
                dead
            };
        };
        let group = &slot.group;
        let stable = group.state == State::Stable;
        let protocol = group.protocol_name.as_deref().unwrap_or("");
        let members = group
            .members
            .values()
            .map(|member| {
                let described = DescribedGroupMember::default()
                    .with_member_id(str_bytes(&member.id))
                    .with_group_instance_id(member.instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&member.client_id))
                    .with_client_host(str_bytes(&member.client_host));
                if stable {
                    described
                        .with_member_metadata(member.metadata(protocol))
                        .with_member_assignment(member.assignment.clone())
                } else {
                    described
                }
            })
            .collect();
        described
            .with_group_state(StrBytes::from_static_str(group.state.name()))
            .with_protocol_type(str_bytes(group.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(str_bytes(if stable { protocol } else { "" }))
            .with_members(members)
    }

    /// Every group, in no particular order.
    pub fn list(&self) -> Vec<ListedClassicGroup> {
        self.groups
            .values()
            .map(|slot| ListedClassicGroup {
                group_id: slot.group.id.clone(),
                protocol_type: slot.group.protocol_type.clone().unwrap_or_default(),
                state: slot.group.state.name(),
            })
            .collect()
    }

    /// DeleteGroups: NON_EMPTY_GROUP while the group has members; Ok if it is absent or empty
    /// (then it is forgotten, its generation with it).
    pub fn delete(&mut self, group_id: &str) -> Result<(), i16> {
        match self.groups.get(group_id) {
            None => Ok(()),
            Some(slot) if !slot.group.members.is_empty() => Err(NON_EMPTY_GROUP),
            Some(_) => {
                self.remove_group(group_id);
                Ok(())
            }
        }
    }

    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Groups in state Empty with no member and no member waiting to rejoin: what the periodic
    /// cleanup forgets when they have no committed offsets.
    pub fn empty_group_ids(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, slot)| slot.group.is_forgettable())
            .map(|(group_id, _)| group_id.clone())
            .collect()
    }

    /// Forgets the group if it is still as [`Self::empty_group_ids`] listed it (a member may have
    /// joined since); whether it was forgotten.
    pub fn forget_if_empty(&mut self, group_id: &str) -> bool {
        let forgettable = self
            .groups
            .get(group_id)
            .is_some_and(|slot| slot.group.is_forgettable());
        if forgettable {
            self.remove_group(group_id);
        }
        forgettable
    }

    /// Whether the group is absent or has no members.
    pub fn is_empty(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_none_or(|slot| slot.group.members.is_empty())
    }

    /// Runs the timers that are due: session expiry, rebalance timeout, initial delay,
    /// pending-join expiry and SyncGroup expiry. Each due group runs once per call, so a timer
    /// that a zero timeout re-arms at `now_ms` waits for the next call.
    pub fn tick(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(deadline_ms, _)| *deadline_ms <= now_ms)
            .map(|(_, group_id)| group_id.clone())
            .collect();
        for group_id in due {
            if let Some(slot) = self.groups.get_mut(&group_id) {
                slot.group.tick(now_ms, &self.config);
                self.reindex(&group_id);
                self.dirty.insert(group_id);
            }
        }
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Files the group under its current earliest deadline.
    fn reindex(&mut self, group_id: &str) {
        let Some(slot) = self.groups.get_mut(group_id) else {
            return;
        };
        let deadline_ms = slot.group.next_deadline_ms();
        if deadline_ms == slot.indexed_deadline_ms {
            return;
        }
        if let Some(old) = slot.indexed_deadline_ms.take() {
            self.deadlines.remove(&(old, group_id.to_owned()));
        }
        if let Some(new) = deadline_ms {
            self.deadlines.insert((new, group_id.to_owned()));
        }
        slot.indexed_deadline_ms = deadline_ms;
    }

    fn remove_group(&mut self, group_id: &str) {
        if let Some(slot) = self.groups.remove(group_id) {
            self.dirty.insert(group_id.to_owned());
            if let Some(deadline_ms) = slot.indexed_deadline_ms {
                self.deadlines.remove(&(deadline_ms, group_id.to_owned()));
            }
        }
    }
}
