//! One classic group: its members, their protocols, and the bookkeeping Kafka's `ClassicGroup`
//! keeps (leader, static instance ids, pending joins and syncs, protocol support counts).
//!
//! Nothing here decides a transition; `rebalance.rs` does. This file keeps the invariants that
//! every transition relies on: `supported_protocols` counts, per protocol name, the members that
//! list it; `static_members` maps each instance id to the one member that holds it; the leader is
//! a member whenever the group has members.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::{FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID};

/// The states of Kafka's `ClassicGroupState` that a live group can be in. "Dead" is what an absent
/// group reports; a group that would be dead is removed from the map instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No members. Offsets may still be committed with generation -1.
    Empty,
    /// Waiting for every known member to rejoin (or the rebalance timeout).
    PreparingRebalance,
    /// The generation is chosen; waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Every member has (or can fetch) its assignment.
    Stable,
}

impl State {
    /// Kafka's name of the state, as DescribeGroups and ListGroups report it.
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// One protocol a member supports, in its order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Protocol {
    pub(super) name: String,
    pub(super) metadata: Bytes,
}

/// The protocols of a JoinGroup request, with later duplicates of a name dropped so that the
/// support counts stay one per member.
pub(super) fn protocols_of(request: &[JoinGroupRequestProtocol]) -> Vec<Protocol> {
    let mut protocols: Vec<Protocol> = Vec::with_capacity(request.len());
    for protocol in request {
        if protocols
            .iter()
            .all(|known| known.name != protocol.name.as_str())
        {
            protocols.push(Protocol {
                name: protocol.name.to_string(),
                metadata: protocol.metadata.clone(),
            });
        }
    }
    protocols
}

/// A response channel parked in the group, with the request version the answer is encoded in.
#[derive(Debug)]
pub(super) struct Waiter<T> {
    sender: oneshot::Sender<T>,
    version: i16,
}

impl<T> Waiter<T> {
    pub(super) fn new(sender: oneshot::Sender<T>, version: i16) -> Self {
        Self { sender, version }
    }
}

impl Waiter<JoinGroupResponse> {
    /// Answers the JoinGroup. A client that went away is not an error.
    pub(super) fn send(self, response: JoinGroupResponse) {
        let _ = self.sender.send(fit_join_response(response, self.version));
    }
}

impl Waiter<SyncGroupResponse> {
    /// Answers the SyncGroup. A client that went away is not an error.
    pub(super) fn send(self, response: SyncGroupResponse) {
        let _ = self.sender.send(response);
    }
}

/// Makes a JoinGroup response encodable in `version`: before v7 the protocol name is a
/// non-nullable string (Kafka sends ""), and `skip_assignment` exists from v9 only.
pub(super) fn fit_join_response(
    mut response: JoinGroupResponse,
    version: i16,
) -> JoinGroupResponse {
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::from_static_str(""));
    }
    if version < 9 {
        response.skip_assignment = false;
    }
    response
}

/// A JoinGroup response carrying only an error.
pub(super) fn join_error(member_id: &str, error_code: i16) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error_code)
        .with_member_id(str_bytes(member_id))
}

/// A SyncGroup response carrying only an error.
pub(super) fn sync_error(error_code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error_code)
}

pub(super) fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// One member of a classic group.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) session_timeout_ms: i32,
    pub(super) protocol_type: String,
    pub(super) protocols: Vec<Protocol>,
    /// The assignment the leader gave this member for the current generation (empty until then).
    pub(super) assignment: Bytes,
    /// The member's JoinGroup waiting for the rebalance to complete.
    pub(super) join_waiter: Option<Waiter<JoinGroupResponse>>,
    /// The member's SyncGroup waiting for the leader's assignment.
    pub(super) sync_waiter: Option<Waiter<SyncGroupResponse>>,
    /// Joined in the current rebalance and not yet through it: such a member can expire even
    /// while its JoinGroup waits (Kafka's new-member join timeout).
    pub(super) is_new: bool,
    /// When the member's session expires unless refreshed; `None` while the member waits in a
    /// JoinGroup or SyncGroup (a parked request keeps the session alive, as in Kafka).
    pub(super) session_deadline_ms: Option<u64>,
}

impl Member {
    pub(super) fn is_awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    pub(super) fn is_awaiting_sync(&self) -> bool {
        self.sync_waiter.is_some()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member parked in a JoinGroup or SyncGroup does not
    /// expire, unless it is new.
    pub(super) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    /// Whether `protocols` are exactly the member's (names, metadata and order).
    pub(super) fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The metadata the member sent for `protocol`.
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|candidate| candidate.name == protocol)
            .map(|candidate| candidate.metadata.clone())
            .unwrap_or_default()
    }

    /// The member's first protocol, in its order of preference, that is among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Parks a JoinGroup. An older one of the same member is dropped unanswered (its receiver
    /// resolves to `Canceled`): a client only retries a JoinGroup it has given up on, and an
    /// error such as UNKNOWN_MEMBER_ID would make it throw its member id away.
    pub(super) fn park_join(&mut self, waiter: Waiter<JoinGroupResponse>) {
        self.join_waiter = Some(waiter);
    }

    /// Parks a SyncGroup; an older one of the same member is dropped unanswered.
    pub(super) fn park_sync(&mut self, waiter: Waiter<SyncGroupResponse>) {
        self.sync_waiter = Some(waiter);
    }
}

/// The timer of the join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinTimer {
    /// Kafka's InitialDelayedJoin: the first rebalance of an empty group waits `delay_ms`, and
    /// waits again (up to `remaining_ms` in all) as long as new members keep arriving.
    Initial {
        deadline_ms: u64,
        delay_ms: u64,
        remaining_ms: u64,
    },
    /// The rebalance timeout: members that have not rejoined by then are removed.
    Rebalance { deadline_ms: u64 },
}

impl JoinTimer {
    pub(super) fn deadline_ms(self) -> u64 {
        match self {
            JoinTimer::Initial { deadline_ms, .. } | JoinTimer::Rebalance { deadline_ms } => {
                deadline_ms
            }
        }
    }
}

/// One classic group.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: State,
    /// The state before the current one; `None` for a group that never left Empty. The first
    /// rebalance of an empty group is recognised by `previous_state == Some(Empty)`.
    pub(super) previous_state: Option<State>,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Instance id → the member id that holds it.
    pub(super) static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to rejoin with them.
    pub(super) pending_join: BTreeMap<String, u64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub(super) pending_sync: BTreeSet<String>,
    /// Protocol name → number of members that support it.
    supported_protocols: BTreeMap<String, usize>,
    /// A member joined during the initial delay, so the delay is extended once more.
    pub(super) new_member_added: bool,
    pub(super) join_timer: Option<JoinTimer>,
    /// Deadline for the members of `generation` to send SyncGroup: (deadline, generation).
    pub(super) sync_timer: Option<(u64, i32)>,
}

impl Group {
    /// Empty, with nobody in it or about to join: nothing but the generation would be lost by
    /// forgetting it.
    pub(super) fn is_forgettable(&self) -> bool {
        self.state == State::Empty && self.members.is_empty() && self.pending_join.is_empty()
    }

    pub(super) fn new(id: String) -> Self {
        Self {
            id,
            state: State::Empty,
            previous_state: None,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_join: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            supported_protocols: BTreeMap::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
        }
    }

    pub(super) fn transition(&mut self, state: State) {
        self.previous_state = Some(self.state);
        self.state = state;
    }

    pub(super) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Kafka's `canRebalance`: PreparingRebalance can be entered from these states.
    pub(super) fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            State::Empty | State::CompletingRebalance | State::Stable
        )
    }

    pub(super) fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|member| member.is_awaiting_join())
            .count()
    }

    /// Every member has a JoinGroup parked and no member id handed out is still unused.
    pub(super) fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count() && self.pending_join.is_empty()
    }

    /// The largest rebalance timeout of the members (Kafka's group rebalance timeout).
    pub(super) fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|member| u64::try_from(member.rebalance_timeout_ms).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol type and list;
    /// otherwise the type must match and one of the protocols must be supported by every member.
    pub(super) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == State::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|protocol| {
                self.supported_protocols
                    .get(&protocol.name)
                    .copied()
                    .unwrap_or(0)
                    == self.members.len()
            })
    }

    /// Kafka's `validateMember`: the instance id, if given, must belong to `member_id`
    /// (FENCED_INSTANCE_ID otherwise, UNKNOWN_MEMBER_ID if nobody holds it), and the member must
    /// exist.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), i16> {
        if let Some(instance_id) = instance_id {
            match self.static_members.get(instance_id) {
                None => return Err(UNKNOWN_MEMBER_ID),
                Some(holder) if holder != member_id => return Err(FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(UNKNOWN_MEMBER_ID)
        }
    }

    /// Adds a member (its protocols must be supported: checked by the caller).
    pub(super) fn add(&mut self, member: Member) {
        if let Some(instance_id) = &member.instance_id {
            self.static_members
                .insert(instance_id.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.count_protocols(&member.protocols, true);
        self.pending_join.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member (or a pending member id), electing another leader if it led. Parked
    /// requests of the member are dropped: callers answer them first when the member is still
    /// listening.
    pub(super) fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(member) = &removed {
            self.count_protocols(&member.protocols, false);
            if let Some(instance_id) = &member.instance_id
                && self.static_members.get(instance_id).map(String::as_str) == Some(member_id)
            {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Replaces the protocols and timeouts of a member and parks (or clears) its JoinGroup.
    pub(super) fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        waiter: Option<Waiter<JoinGroupResponse>>,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let old = std::mem::replace(&mut member.protocols, protocols);
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        match waiter {
            Some(waiter) => member.park_join(waiter),
            None => member.join_waiter = None,
        }
        let new = member.protocols.clone();
        self.count_protocols(&old, false);
        self.count_protocols(&new, true);
    }

    /// Kafka's `replaceStaticMember`: the instance's member id becomes `new_id`; requests parked
    /// under the old id are answered FENCED_INSTANCE_ID. The assignment and protocols carry over.
    pub(super) fn replace_static_member(&mut self, instance_id: &str, old_id: &str, new_id: &str) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        if let Some(waiter) = member.join_waiter.take() {
            waiter.send(
                join_error(old_id, FENCED_INSTANCE_ID).with_leader(StrBytes::from_static_str("")),
            );
        }
        if let Some(waiter) = member.sync_waiter.take() {
            waiter.send(sync_error(FENCED_INSTANCE_ID));
        }
        member.id = new_id.to_owned();
        member.is_new = false;
        self.members.insert(new_id.to_owned(), member);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_owned());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_owned());
        }
        self.static_members
            .insert(instance_id.to_owned(), new_id.to_owned());
    }

    fn count_protocols(&mut self, protocols: &[Protocol], add: bool) {
        for protocol in protocols {
            let count = self
                .supported_protocols
                .entry(protocol.name.clone())
                .or_insert(0);
            if add {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
            }
            if *count == 0 {
                self.supported_protocols.remove(&protocol.name);
            }
        }
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member votes
    /// for its most preferred one and the most voted wins (ties go to the smallest name, so the
    /// choice is deterministic). `None` only for a group without a common protocol, which the
    /// join checks prevent.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates: BTreeSet<&str> = self
            .supported_protocols
            .iter()
            .filter(|(_, count)| **count == self.members.len())
            .map(|(name, _)| name.as_str())
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = member.vote(&candidates) {
                *votes.entry(name).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// Kafka's `maybeElectNewJoinedLeader`: if the leader has not rejoined, another member that
    /// has becomes leader. False when no member has rejoined.
    pub(super) fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(Member::is_awaiting_join)
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|member| member.is_awaiting_join())
        {
            Some(member) => {
                self.leader = Some(member.id.clone());
                true
            }
            None => false,
        }
    }

    /// The member list the leader receives: every member's metadata for the chosen protocol.
    pub(super) fn leader_member_list(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|member| {
                JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(&member.id))
                    .with_group_instance_id(member.instance_id.as_deref().map(str_bytes))
                    .with_metadata(member.metadata(protocol))
            })
            .collect()
    }

    /// A successful JoinGroup response of the current generation for `member_id`.
    pub(super) fn join_response(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
            .with_leader(str_bytes(self.leader.as_deref().unwrap_or("")))
            .with_member_id(str_bytes(member_id))
            .with_members(if with_members {
                self.leader_member_list()
            } else {
                Vec::new()
            })
    }

    /// The earliest deadline of any timer of the group.
    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        let members = self
            .members
            .values()
            .filter_map(|member| member.session_deadline_ms);
        let pending = self.pending_join.values().copied();
        let join = self.join_timer.map(JoinTimer::deadline_ms);
        let sync = self.sync_timer.map(|(deadline_ms, _)| deadline_ms);
        members.chain(pending).chain(join).chain(sync).min()
    }

    /// Every invariant the transitions rely on; checked after each step of the property tests.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for member in self.members.values() {
            for protocol in &member.protocols {
                *counts.entry(protocol.name.clone()).or_insert(0) += 1;
            }
        }
        if counts != self.supported_protocols {
            return Err(format!(
                "protocol counts {:?} != {counts:?}",
                self.supported_protocols
            ));
        }
        match &self.leader {
            None if !self.members.is_empty() => return Err("members but no leader".into()),
            Some(leader) if !self.members.contains_key(leader) => {
                return Err(format!("leader {leader} is not a member"));
            }
            _ => {}
        }
        for (instance_id, member_id) in &self.static_members {
            let holder = self
                .members
                .get(member_id)
                .and_then(|m| m.instance_id.as_deref());
            if holder != Some(instance_id.as_str()) {
                return Err(format!("instance {instance_id} maps to {member_id}"));
            }
        }
        let statics = self
            .members
            .values()
            .filter(|m| m.instance_id.is_some())
            .count();
        if statics != self.static_members.len() {
            return Err("a static member is missing from the instance map".into());
        }
        if self
            .pending_join
            .keys()
            .any(|id| self.members.contains_key(id))
        {
            return Err("a pending id is also a member".into());
        }
        if self
            .pending_sync
            .iter()
            .any(|id| !self.members.contains_key(id))
        {
            return Err("a pending sync is not a member".into());
        }
        let settled = matches!(self.state, State::CompletingRebalance | State::Stable);
        if !self.pending_sync.is_empty() && !settled {
            return Err(format!("pending syncs in {:?}", self.state));
        }
        if settled && self.members.is_empty() {
            return Err(format!("{:?} without members", self.state));
        }
        if self.state == State::Empty && (!self.members.is_empty() || self.protocol_name.is_some())
        {
            return Err("Empty with members or a protocol".into());
        }
        if settled {
            let Some(protocol) = &self.protocol_name else {
                return Err(format!("{:?} without a protocol", self.state));
            };
            if self
                .members
                .values()
                .any(|m| m.protocols.iter().all(|p| &p.name != protocol))
            {
                return Err(format!(
                    "a member does not support the group protocol {protocol}"
                ));
            }
        }
        for member in self.members.values() {
            if member.is_awaiting_join() && self.state != State::PreparingRebalance {
                return Err(format!("a JoinGroup is parked in {:?}", self.state));
            }
            if member.is_awaiting_sync() && self.state != State::CompletingRebalance {
                return Err(format!("a SyncGroup is parked in {:?}", self.state));
            }
            // Liveness: a member without a session deadline must be parked, or nothing would
            // ever remove it.
            if member.session_deadline_ms.is_none()
                && !member.is_awaiting_join()
                && !member.is_awaiting_sync()
            {
                return Err(format!("member {} can never expire", member.id));
            }
        }
        if self.state == State::PreparingRebalance && self.join_timer.is_none() {
            return Err("PreparingRebalance without a join timer".into());
        }
        Ok(())
    }
}
