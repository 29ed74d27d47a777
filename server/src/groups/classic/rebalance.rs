//! The transitions of one classic group, mirroring Kafka's `GroupMetadataManager` classic paths
//! (the method names in the comments are Kafka's). Every method takes the time as `now_ms` and
//! answers requests through the waiters it is given or has parked; none does I/O.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse, leave_group_request::MemberIdentity, leave_group_response::MemberResponse,
};
use uuid::Uuid;

use super::ClassicConfig;
use super::errors::{
    ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED, NONE,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, UNKNOWN_SERVER_ERROR,
};
use super::group::{
    Group, JoinTimer, Member, Protocol, State, Waiter, join_error, str_bytes, sync_error,
};

/// How long a new member's JoinGroup may wait for the rebalance before the member is dropped
/// (Kafka's `group.classic.new.member.join.timeout.ms`, not configurable there either).
pub(super) const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// A JoinGroup after the checks that need no group (group id, session timeout).
pub(super) struct Join<'a> {
    pub(super) request: &'a JoinGroupRequest,
    pub(super) version: i16,
    pub(super) client_id: &'a str,
    pub(super) client_host: &'a str,
    pub(super) protocols: Vec<Protocol>,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) now_ms: u64,
}

impl Join<'_> {
    fn instance_id(&self) -> Option<&str> {
        self.request.group_instance_id.as_deref()
    }
}

fn ms(value: i32) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Group {
    /// Kafka's `acceptJoiningMember`: whether the group has room for `member_id`.
    pub(super) fn accepts_joining_member(&self, member_id: &str, max_size: Option<usize>) -> bool {
        let Some(max_size) = max_size else {
            return true;
        };
        match self.state {
            State::Empty => true,
            // Counting the members that have rejoined (not all members) lets a group whose limit
            // was lowered shed the last rejoiners.
            State::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(Member::is_awaiting_join)
                    || self.awaiting_join_count() < max_size
            }
            State::CompletingRebalance | State::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    /// Kafka's `classicGroupJoinNewMember`: a JoinGroup with an empty member id.
    pub(super) fn join_new_member(
        &mut self,
        join: Join<'_>,
        waiter: Waiter<JoinGroupResponse>,
        config: &ClassicConfig,
    ) {
        if !self.supports_protocols(&join.request.protocol_type, &join.protocols) {
            waiter.send(join_error("", INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        // Static members' ids start with the instance id, dynamic ones' with the client id.
        let prefix = join.instance_id().unwrap_or(join.client_id);
        let new_id = format!("{prefix}-{}", Uuid::new_v4());
        match join.instance_id() {
            Some(instance_id) => match self.static_members.get(instance_id).cloned() {
                Some(old_id) => self.rejoin_static_member(join, &old_id, &new_id, waiter, config),
                None => self.add_member(join, new_id, waiter, config),
            },
            // KIP-394: from v4 a dynamic member first gets its id and must come back with it,
            // so a client that times out and retries does not leave ghost members behind.
            None if join.version >= 4 => {
                let deadline_ms = join.now_ms + ms(join.request.session_timeout_ms);
                self.pending_join.insert(new_id.clone(), deadline_ms);
                waiter.send(join_error(&new_id, MEMBER_ID_REQUIRED));
            }
            None => self.add_member(join, new_id, waiter, config),
        }
    }

    /// Kafka's `classicGroupJoinExistingMember`: a JoinGroup with a member id.
    pub(super) fn join_existing_member(
        &mut self,
        join: Join<'_>,
        waiter: Waiter<JoinGroupResponse>,
        config: &ClassicConfig,
    ) {
        let member_id = join.request.member_id.to_string();
        if !self.supports_protocols(&join.request.protocol_type, &join.protocols) {
            waiter.send(join_error(&member_id, INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        if self.pending_join.contains_key(&member_id) {
            // Pending ids are only handed to dynamic members; Kafka fails such a request with
            // an internal error.
            if join.instance_id().is_some() {
                waiter.send(join_error(&member_id, UNKNOWN_SERVER_ERROR));
            } else {
                self.add_member(join, member_id, waiter, config);
            }
            return;
        }
        if let Err(error_code) = self.validate_member(&member_id, join.instance_id()) {
            waiter.send(join_error(&member_id, error_code));
            return;
        }
        let unchanged = self
            .members
            .get(&member_id)
            .is_some_and(|member| member.matches(&join.protocols));
        match self.state {
            State::PreparingRebalance => self.update_member_then_rebalance(join, waiter, config),
            // Same metadata: the member probably lost the JoinGroup response; give it the
            // current generation again.
            State::CompletingRebalance if unchanged => {
                let is_leader = self.is_leader(&member_id);
                waiter.send(self.join_response(&member_id, is_leader));
            }
            // The leader may rejoin to rebalance for reasons the metadata does not show (topic
            // metadata changes); a follower only when its metadata changed, which is how the
            // second rebalance of a cooperative round starts.
            State::CompletingRebalance | State::Stable
                if !unchanged || self.is_leader(&member_id) =>
            {
                self.update_member_then_rebalance(join, waiter, config)
            }
            State::Stable => waiter.send(self.join_response(&member_id, false)),
            State::CompletingRebalance => unreachable_state(waiter, &member_id),
            // An Empty group has no members, so validation failed above.
            State::Empty => waiter.send(join_error(&member_id, UNKNOWN_MEMBER_ID)),
        }
    }

    /// Kafka's `updateMemberThenRebalanceOrCompleteJoin`.
    fn update_member_then_rebalance(
        &mut self,
        join: Join<'_>,
        waiter: Waiter<JoinGroupResponse>,
        config: &ClassicConfig,
    ) {
        let member_id = join.request.member_id.to_string();
        self.update_member(
            &member_id,
            join.protocols,
            join.rebalance_timeout_ms,
            join.request.session_timeout_ms,
            Some(waiter),
        );
        self.prepare_rebalance_or_complete_join(join.now_ms, config);
    }

    /// Kafka's `addMemberThenRebalanceOrCompleteJoin`.
    fn add_member(
        &mut self,
        join: Join<'_>,
        member_id: String,
        waiter: Waiter<JoinGroupResponse>,
        config: &ClassicConfig,
    ) {
        let member = Member {
            id: member_id,
            instance_id: join.instance_id().map(str::to_owned),
            client_id: join.client_id.to_owned(),
            client_host: join.client_host.to_owned(),
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            session_timeout_ms: join.request.session_timeout_ms,
            protocol_type: join.request.protocol_type.to_string(),
            protocols: join.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(waiter),
            sync_waiter: None,
            is_new: true,
            // A new member cannot heartbeat while its JoinGroup is parked, and a client that
            // gave up would otherwise stay a member forever: bound the wait.
            session_deadline_ms: Some(join.now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS),
        };
        if self.state == State::PreparingRebalance && self.previous_state == Some(State::Empty) {
            self.new_member_added = true;
        }
        self.add(member);
        self.prepare_rebalance_or_complete_join(join.now_ms, config);
    }

    /// Kafka's `updateStaticMemberThenRebalanceOrCompleteJoin`: a known instance id joins with
    /// an empty member id (a restarted static member). The old member id is fenced; in Stable,
    /// unless the group's protocol would change, the member gets its old assignment back
    /// without a rebalance.
    fn rejoin_static_member(
        &mut self,
        join: Join<'_>,
        old_id: &str,
        new_id: &str,
        waiter: Waiter<JoinGroupResponse>,
        config: &ClassicConfig,
    ) {
        let Some(instance_id) = join.instance_id().map(str::to_owned) else {
            return;
        };
        let leader_before = self.leader.clone().unwrap_or_default();
        self.replace_static_member(&instance_id, old_id, new_id);
        if let Some(member) = self.members.get_mut(new_id) {
            member.session_deadline_ms = Some(join.now_ms + ms(member.session_timeout_ms));
        }
        self.update_member(
            new_id,
            join.protocols,
            join.rebalance_timeout_ms,
            join.request.session_timeout_ms,
            Some(waiter),
        );
        match self.state {
            State::Stable => {
                if self.select_protocol() == self.protocol_name {
                    self.answer_static_rejoin(new_id, &leader_before, join.version, join.now_ms);
                } else {
                    self.prepare_rebalance_or_complete_join(join.now_ms, config);
                }
            }
            // The leader may already be assigning with the old member id, which the new one
            // would never match: rebalance again.
            State::CompletingRebalance => self.prepare_rebalance(join.now_ms, config),
            State::PreparingRebalance | State::Empty => self.maybe_complete_join(join.now_ms),
        }
    }

    /// The answer to a static member that rejoined a Stable group without a rebalance. From v9
    /// a rejoining leader gets the member list with `skip_assignment` (it must not reassign but
    /// still learns the members); before, it is told the old leader id so that it acts as a
    /// follower and fetches its assignment with SyncGroup.
    fn answer_static_rejoin(
        &mut self,
        member_id: &str,
        leader_before: &str,
        version: i16,
        now_ms: u64,
    ) {
        let is_leader = self.is_leader(member_id);
        let response = if version >= 9 {
            self.join_response(member_id, is_leader)
                .with_skip_assignment(is_leader)
        } else {
            self.join_response(member_id, false)
                .with_leader(str_bytes(leader_before))
        };
        if let Some(member) = self.members.get_mut(member_id) {
            if let Some(waiter) = member.join_waiter.take() {
                waiter.send(response);
            }
            member.session_deadline_ms = Some(now_ms + ms(member.session_timeout_ms));
        }
    }

    /// Kafka's `maybePrepareRebalanceOrCompleteJoin`.
    pub(super) fn prepare_rebalance_or_complete_join(
        &mut self,
        now_ms: u64,
        config: &ClassicConfig,
    ) {
        if self.can_rebalance() {
            self.prepare_rebalance(now_ms, config);
        } else {
            self.maybe_complete_join(now_ms);
        }
    }

    /// Kafka's `prepareRebalance`: enter PreparingRebalance. Parked SyncGroups are answered
    /// REBALANCE_IN_PROGRESS so their members rejoin. The first rebalance of an empty group
    /// waits the initial delay; any other completes as soon as every member has rejoined, or at
    /// the rebalance timeout.
    pub(super) fn prepare_rebalance(&mut self, now_ms: u64, config: &ClassicConfig) {
        if self.state == State::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
            }
            self.propagate_assignment(REBALANCE_IN_PROGRESS, now_ms);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == State::Empty;
        if initial {
            let delay_ms = config.initial_rebalance_delay_ms;
            let remaining_ms = self.rebalance_timeout_ms().saturating_sub(delay_ms);
            self.join_timer = Some(JoinTimer::Initial {
                deadline_ms: now_ms + delay_ms,
                delay_ms,
                remaining_ms,
            });
        }
        self.transition(State::PreparingRebalance);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(now_ms);
            } else {
                self.join_timer = Some(JoinTimer::Rebalance {
                    deadline_ms: now_ms + self.rebalance_timeout_ms(),
                });
            }
        }
    }

    /// Kafka's `maybeCompleteJoinPhase`: complete the join phase if every member has rejoined,
    /// except during the initial delay, which always runs to its timer.
    pub(super) fn maybe_complete_join(&mut self, now_ms: u64) {
        if self.state == State::PreparingRebalance
            && self.previous_state != Some(State::Empty)
            && self.has_all_members_joined()
        {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's `completeClassicGroupJoin`: dynamic members that did not rejoin are removed,
    /// the generation increments, the protocol is chosen, and every parked JoinGroup is answered
    /// (the leader's with the member list). The group waits for SyncGroups, at most the
    /// rebalance timeout.
    pub(super) fn complete_join(&mut self, now_ms: u64) {
        self.join_timer = None;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.is_awaiting_join() && member.instance_id.is_none())
            .map(|member| member.id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove(&member_id);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait another rebalance timeout for the session timeouts to clear
            // the members out.
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline_ms: now_ms + self.rebalance_timeout_ms(),
            });
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(State::Empty);
            return;
        }
        self.protocol_name = Some(self.select_protocol().unwrap_or_default());
        self.transition(State::CompletingRebalance);
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let is_leader = self.is_leader(&member_id);
            let response = self.join_response(&member_id, is_leader);
            if let Some(member) = self.members.get_mut(&member_id) {
                if let Some(waiter) = member.join_waiter.take() {
                    waiter.send(response);
                }
                member.session_deadline_ms = Some(now_ms + ms(member.session_timeout_ms));
                member.is_new = false;
            }
            self.pending_sync.insert(member_id);
        }
        self.sync_timer = Some((now_ms + self.rebalance_timeout_ms(), self.generation));
    }

    /// Kafka's `propagateAssignment`: answers every parked SyncGroup with the member's
    /// assignment (or `error_code`) and restarts its session.
    fn propagate_assignment(&mut self, error_code: i16, now_ms: u64) {
        let (protocol_type, protocol_name) = if error_code == NONE {
            (
                self.protocol_type.as_deref().map(str_bytes),
                self.protocol_name.as_deref().map(str_bytes),
            )
        } else {
            (None, None)
        };
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                waiter.send(
                    SyncGroupResponse::default()
                        .with_error_code(error_code)
                        .with_protocol_type(protocol_type.clone())
                        .with_protocol_name(protocol_name.clone())
                        .with_assignment(member.assignment.clone()),
                );
                member.session_deadline_ms = Some(now_ms + ms(member.session_timeout_ms));
            }
        }
    }

    /// Kafka's `classicGroupSyncToClassicGroup`, after the group was found non-empty.
    pub(super) fn sync(
        &mut self,
        request: &SyncGroupRequest,
        waiter: Waiter<SyncGroupResponse>,
        now_ms: u64,
    ) {
        let member_id = request.member_id.as_str();
        if let Err(error_code) =
            self.validate_member(member_id, request.group_instance_id.as_deref())
        {
            waiter.send(sync_error(error_code));
            return;
        }
        if request.generation_id != self.generation {
            waiter.send(sync_error(ILLEGAL_GENERATION));
            return;
        }
        if inconsistent(
            request.protocol_type.as_deref(),
            self.protocol_type.as_deref(),
        ) || inconsistent(
            request.protocol_name.as_deref(),
            self.protocol_name.as_deref(),
        ) {
            waiter.send(sync_error(INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        match self.state {
            State::PreparingRebalance => waiter.send(sync_error(REBALANCE_IN_PROGRESS)),
            State::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.park_sync(waiter);
                }
                self.remove_pending_sync(member_id);
                if self.is_leader(member_id) {
                    let mut assignments: BTreeMap<&str, &Bytes> = BTreeMap::new();
                    for assignment in &request.assignments {
                        assignments.insert(assignment.member_id.as_str(), &assignment.assignment);
                    }
                    for member in self.members.values_mut() {
                        member.assignment = assignments
                            .get(member.id.as_str())
                            .map(|assignment| (*assignment).clone())
                            .unwrap_or_default();
                    }
                    self.propagate_assignment(NONE, now_ms);
                    self.transition(State::Stable);
                }
            }
            State::Stable => {
                self.remove_pending_sync(member_id);
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|member| member.assignment.clone())
                    .unwrap_or_default();
                waiter.send(
                    SyncGroupResponse::default()
                        .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
                        .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
                        .with_assignment(assignment),
                );
            }
            // An Empty group has no members, so validation failed above.
            State::Empty => waiter.send(sync_error(UNKNOWN_MEMBER_ID)),
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    /// Kafka's `classicGroupHeartbeatToClassicGroup`.
    pub(super) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: u64,
    ) -> HeartbeatResponse {
        let error_code = match self.validate_member(member_id, instance_id) {
            Err(error_code) => error_code,
            Ok(()) if generation_id != self.generation => ILLEGAL_GENERATION,
            Ok(()) => {
                self.refresh_session(member_id, now_ms);
                match self.state {
                    State::Empty => UNKNOWN_MEMBER_ID,
                    // Tells the member to rejoin.
                    State::PreparingRebalance => REBALANCE_IN_PROGRESS,
                    // A member may heartbeat as soon as it has its JoinGroup response.
                    State::CompletingRebalance | State::Stable => NONE,
                }
            }
        };
        HeartbeatResponse::default().with_error_code(error_code)
    }

    pub(super) fn refresh_session(&mut self, member_id: &str, now_ms: u64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_deadline_ms = Some(now_ms + ms(member.session_timeout_ms));
        }
    }

    /// Kafka's `classicGroupLeaveToClassicGroup`: removes each listed member (by member id, or by
    /// instance id alone for an administrative removal) and rebalances once for all of them.
    pub(super) fn leave(
        &mut self,
        leaving: &[MemberIdentity],
        now_ms: u64,
        config: &ClassicConfig,
    ) -> LeaveGroupResponse {
        let mut responses = Vec::with_capacity(leaving.len());
        let mut removed_any = false;
        for identity in leaving {
            let member_id = identity.member_id.as_str();
            let instance_id = identity.group_instance_id.as_deref();
            let error_code = if member_id.is_empty() {
                match instance_id.and_then(|id| self.static_members.get(id).cloned()) {
                    Some(holder) => {
                        self.remove_current_member(&holder);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if self.pending_join.remove(member_id).is_some() {
                NONE
            } else {
                match self.validate_member(member_id, instance_id) {
                    Ok(()) => {
                        self.remove_current_member(member_id);
                        NONE
                    }
                    Err(error_code) => error_code,
                }
            };
            removed_any |= error_code == NONE;
            responses.push(
                MemberResponse::default()
                    .with_member_id(identity.member_id.clone())
                    .with_group_instance_id(identity.group_instance_id.clone())
                    .with_error_code(error_code),
            );
        }
        if removed_any {
            match self.state {
                State::Stable | State::CompletingRebalance => {
                    self.prepare_rebalance_or_complete_join(now_ms, config)
                }
                State::PreparingRebalance => self.maybe_complete_join(now_ms),
                State::Empty => {}
            }
        }
        LeaveGroupResponse::default().with_members(responses)
    }

    /// Kafka's `removeCurrentMemberFromClassicGroup`: a parked JoinGroup of the member is
    /// answered UNKNOWN_MEMBER_ID (so a client that is still there rejoins).
    fn remove_current_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.remove(member_id)
            && let Some(waiter) = member.join_waiter.take()
        {
            waiter.send(join_error("", UNKNOWN_MEMBER_ID));
        }
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit` for a non-transactional commit, plus the
    /// session refresh of `commitOffset`.
    pub(super) fn check_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), i16> {
        if generation_id < 0 && self.state == State::Empty {
            // The admin client, or a consumer that assigns partitions itself.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation_id != self.generation {
                return Err(ILLEGAL_GENERATION);
            }
        } else if self.state != State::Empty {
            // Without a member id and generation, commits are only accepted while the group
            // has no members.
            return Err(UNKNOWN_MEMBER_ID);
        }
        match self.state {
            // The member has its JoinGroup response but not yet its assignment.
            State::CompletingRebalance => Err(REBALANCE_IN_PROGRESS),
            State::Stable | State::PreparingRebalance => {
                self.refresh_session(member_id, now_ms);
                Ok(())
            }
            State::Empty => Ok(()),
        }
    }

    /// Runs every timer of the group that is due at `now_ms`.
    pub(super) fn tick(&mut self, now_ms: u64, config: &ClassicConfig) {
        let expired_pending: Vec<String> = self
            .pending_join
            .iter()
            .filter(|(_, deadline_ms)| **deadline_ms <= now_ms)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in expired_pending {
            // Kafka's `removePendingMemberAndUpdateClassicGroup`.
            self.pending_join.remove(&member_id);
            if self.state == State::PreparingRebalance && self.has_all_members_joined() {
                self.complete_join(now_ms);
            }
        }

        let expired_members: Vec<String> = self
            .members
            .values()
            .filter(|member| member.session_deadline_ms.is_some_and(|d| d <= now_ms))
            .map(|member| member.id.clone())
            .collect();
        for member_id in expired_members {
            self.expire_session(&member_id, now_ms, config);
        }

        if let Some(timer) = self.join_timer
            && timer.deadline_ms() <= now_ms
        {
            self.join_timer = None;
            match timer {
                JoinTimer::Initial {
                    delay_ms,
                    remaining_ms,
                    ..
                } => self.initial_delay_expired(delay_ms, remaining_ms, now_ms, config),
                JoinTimer::Rebalance { .. } => {
                    if self.state == State::PreparingRebalance {
                        self.complete_join(now_ms);
                    }
                }
            }
        }

        if let Some((deadline_ms, generation)) = self.sync_timer
            && deadline_ms <= now_ms
        {
            self.sync_timer = None;
            self.sync_expired(generation, now_ms, config);
        }
    }

    /// Kafka's `expireClassicGroupMemberHeartbeat`: a member whose session ran out is removed,
    /// unless it is parked in a JoinGroup or SyncGroup (then its session restarts when that is
    /// answered).
    fn expire_session(&mut self, member_id: &str, now_ms: u64, config: &ClassicConfig) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        // An earlier timer of this tick may have restarted the session (a rebalance answering
        // parked requests), or removed the member.
        if member
            .session_deadline_ms
            .is_none_or(|deadline_ms| deadline_ms > now_ms)
        {
            return;
        }
        member.session_deadline_ms = None;
        if member.has_satisfied_heartbeat() {
            return;
        }
        // Kafka's `removeMemberAndUpdateClassicGroup`.
        self.remove_current_member(member_id);
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance_or_complete_join(now_ms, config)
            }
            State::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(now_ms)
            }
            State::PreparingRebalance | State::Empty => {}
        }
    }

    /// Kafka's `tryCompleteInitialRebalanceElseSchedule`: while members keep arriving, wait
    /// another delay (never past the rebalance timeout); then complete the join phase.
    fn initial_delay_expired(
        &mut self,
        delay_ms: u64,
        remaining_ms: u64,
        now_ms: u64,
        config: &ClassicConfig,
    ) {
        if self.state != State::PreparingRebalance {
            return;
        }
        if self.new_member_added && remaining_ms != 0 {
            self.new_member_added = false;
            let next_delay_ms = config.initial_rebalance_delay_ms.min(remaining_ms);
            self.join_timer = Some(JoinTimer::Initial {
                deadline_ms: now_ms + next_delay_ms,
                delay_ms: next_delay_ms,
                remaining_ms: remaining_ms.saturating_sub(delay_ms),
            });
        } else {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's `expirePendingSync`: members of `generation` that never sent SyncGroup are
    /// removed and the group rebalances.
    fn sync_expired(&mut self, generation: i32, now_ms: u64, config: &ClassicConfig) {
        if generation != self.generation
            || !matches!(self.state, State::CompletingRebalance | State::Stable)
            || self.pending_sync.is_empty()
        {
            return;
        }
        let missing: Vec<String> = self.pending_sync.iter().cloned().collect();
        for member_id in missing {
            self.remove(&member_id);
        }
        self.prepare_rebalance(now_ms, config);
    }
}

/// A SyncGroup field the client sent that differs from the group's (`None` is not checked).
fn inconsistent(requested: Option<&str>, group: Option<&str>) -> bool {
    requested.is_some_and(|requested| Some(requested) != group)
}

/// A state the match guards above make impossible; answered like Kafka answers an internal
/// error rather than panicking.
fn unreachable_state(waiter: Waiter<JoinGroupResponse>, member_id: &str) {
    waiter.send(join_error(member_id, UNKNOWN_SERVER_ERROR));
}
