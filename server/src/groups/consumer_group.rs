//! One KIP-848 group: its members, epochs, target assignment and the reconciliation of each member
//! towards its target (Kafka's `ConsumerGroup` + `CurrentAssignmentBuilder`). The protocol rules are
//! in the module doc of `consumer.rs`; this file is the bookkeeping that enforces them.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use uuid::Uuid;

use super::ClientInfo;

#[path = "consumer_record.rs"]
mod record;
use crate::groups::assignor::{Assignment, AssignorKind, MemberSpec};
use crate::groups::topics::TopicsView;

/// Where a member stands in moving from its current assignment to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberState {
    /// The member owns its whole target at the group's assignment epoch (or is moving to it with
    /// nothing to wait for).
    Stable,
    /// The member must release `pending_revocation` first; it stays at its epoch until a heartbeat
    /// shows them gone (or its rebalance timeout fences it).
    UnrevokedPartitions,
    /// The member is at the target epoch but some of its target partitions are still held by
    /// other members; they are handed over once released.
    UnreleasedPartitions,
}

/// A member's subscribed topic regex, compiled once when it changes.
#[derive(Debug, Clone)]
pub(super) struct TopicRegex {
    /// The expression as the client sent it (described back verbatim).
    pub(super) source: String,
    /// Compiled as a full match, like Java's `Matcher.matches()`.
    pub(super) compiled: Regex,
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) rack_id: Option<String>,
    pub(super) client: ClientInfo,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) subscribed_names: BTreeSet<String>,
    pub(super) subscribed_regex: Option<TopicRegex>,
    pub(super) server_assignor: Option<AssignorKind>,
    pub(super) state: MemberState,
    pub(super) member_epoch: i32,
    pub(super) previous_member_epoch: i32,
    /// Partitions the member owns or has been told to take (Kafka's "assigned partitions").
    pub(super) assigned: Assignment,
    /// Partitions the member was told to release and has not yet reported released.
    pub(super) pending_revocation: Assignment,
    pub(super) session_deadline_ms: u64,
    /// Set while in `UnrevokedPartitions`: past it the member is removed from the group.
    pub(super) rebalance_deadline_ms: Option<u64>,
    /// The deadline this member currently has in the `Deadlines` index.
    indexed_deadline_ms: Option<u64>,
}

impl Member {
    pub(super) fn new(member_id: String, now_ms: u64) -> Self {
        Self {
            member_id,
            instance_id: None,
            rack_id: None,
            client: ClientInfo::default(),
            rebalance_timeout_ms: 0,
            subscribed_names: BTreeSet::new(),
            subscribed_regex: None,
            server_assignor: None,
            state: MemberState::Stable,
            member_epoch: 0,
            previous_member_epoch: 0,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: now_ms,
            rebalance_deadline_ms: None,
            indexed_deadline_ms: None,
        }
    }

    /// The member's index entry was taken by `Deadlines::pop_due`.
    pub(super) fn forget_indexed_deadline(&mut self) {
        self.indexed_deadline_ms = None;
    }

    fn deadline_ms(&self) -> u64 {
        self.rebalance_deadline_ms
            .map_or(self.session_deadline_ms, |rebalance| {
                rebalance.min(self.session_deadline_ms)
            })
    }

    /// Whether the member is at `epoch` with nothing left to do.
    pub(super) fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    /// The topics this member subscribes to that exist in `topics`: its names plus regex matches.
    pub(super) fn resolve<'a>(
        &'a self,
        topics: &'a TopicsView,
    ) -> impl Iterator<Item = (&'a str, Uuid, u32)> + 'a {
        let named = self.subscribed_names.iter().filter_map(|name| {
            topics
                .by_name(name)
                .map(|(id, count)| (name.as_str(), id, count))
        });
        let matched = self.subscribed_regex.iter().flat_map(move |regex| {
            topics
                .names()
                .filter(|name| regex.compiled.is_match(name))
                .filter_map(|name| topics.by_name(name).map(|(id, count)| (name, id, count)))
        });
        named.chain(matched)
    }
}

/// Every member's next deadline (the earlier of session and rebalance), ordered, so `tick` and
/// `next_deadline_ms` touch only what is due instead of scanning every member.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(u64, String, String)>,
}

impl Deadlines {
    /// Brings the member's entry in line with its current deadlines.
    pub(super) fn sync(&mut self, group_id: &str, member: &mut Member) {
        let wanted = member.deadline_ms();
        if member.indexed_deadline_ms == Some(wanted) {
            return;
        }
        self.forget(group_id, member);
        self.by_time
            .insert((wanted, group_id.to_string(), member.member_id.clone()));
        member.indexed_deadline_ms = Some(wanted);
    }

    /// Drops the member's entry (before it is removed or renamed).
    pub(super) fn forget(&mut self, group_id: &str, member: &mut Member) {
        if let Some(old) = member.indexed_deadline_ms.take() {
            self.by_time
                .remove(&(old, group_id.to_string(), member.member_id.clone()));
        }
    }

    /// The earliest deadline.
    pub(super) fn first_ms(&self) -> Option<u64> {
        self.by_time.first().map(|(deadline, _, _)| *deadline)
    }

    /// Takes the earliest entry if it is due at `now_ms`: `(group id, member id)`. The member's
    /// `indexed_deadline_ms` must be cleared by the caller (it no longer has an entry).
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<(String, String)> {
        if self.first_ms()? > now_ms {
            return None;
        }
        self.by_time
            .pop_first()
            .map(|(_, group_id, member_id)| (group_id, member_id))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_time.len()
    }
}

/// The state of one group.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) group_id: String,
    /// Bumped on every change of membership, subscriptions or subscribed topic metadata.
    pub(super) group_epoch: i32,
    /// The group epoch the current target assignment was computed for.
    pub(super) assignment_epoch: i32,
    pub(super) members: BTreeMap<String, Member>,
    /// Instance id → member id of static members.
    pub(super) static_members: BTreeMap<String, String>,
    /// Member id → the partitions the member should own at `assignment_epoch`.
    pub(super) target: BTreeMap<String, Assignment>,
    /// Partition → the member that holds it (assigned or pending revocation). A partition is never
    /// handed to a member while another one holds it.
    owners: BTreeMap<(Uuid, u32), String>,
    /// The topics some member subscribes to, as last resolved: name → (topic id, partitions).
    pub(super) subscribed: BTreeMap<String, (Uuid, u32)>,
    /// Fingerprint of the `TopicsView` `subscribed` was resolved against.
    topics_fingerprint: Option<u64>,
    /// The assignor the current target was computed with.
    pub(super) assignor: AssignorKind,
}

impl Group {
    pub(super) fn new(group_id: String, assignor: AssignorKind) -> Self {
        Self {
            group_id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            topics_fingerprint: None,
            assignor,
        }
    }

    /// Kafka's group state name.
    pub(super) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|member| !member.is_reconciled_to(self.assignment_epoch))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Adds a new member (epoch 0, nothing assigned).
    pub(super) fn add_member(&mut self, member: Member) {
        if let Some(instance_id) = &member.instance_id {
            self.static_members
                .insert(instance_id.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member and frees every partition it held. The caller bumps the group epoch.
    pub(super) fn remove_member(
        &mut self,
        member_id: &str,
        deadlines: &mut Deadlines,
    ) -> Option<Member> {
        let mut member = self.members.remove(member_id)?;
        deadlines.forget(&self.group_id, &mut member);
        if let Some(instance_id) = &member.instance_id
            && self
                .static_members
                .get(instance_id)
                .is_some_and(|id| id == member_id)
        {
            self.static_members.remove(instance_id);
        }
        self.target.remove(member_id);
        self.release(member_id, &member.assigned);
        self.release(member_id, &member.pending_revocation);
        Some(member)
    }

    /// A static member rejoining under a new member id takes over the old member's place: its
    /// assignment, its target and the partitions it holds, with no rebalance of the others.
    pub(super) fn rename_member(&mut self, old_id: &str, new_id: &str, deadlines: &mut Deadlines) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        deadlines.forget(&self.group_id, &mut member);
        member.member_id = new_id.to_string();
        if let Some(instance_id) = &member.instance_id {
            self.static_members
                .insert(instance_id.clone(), new_id.to_string());
        }
        if let Some(target) = self.target.remove(old_id) {
            self.target.insert(new_id.to_string(), target);
        }
        for owner in self.owners.values_mut() {
            if owner == old_id {
                *owner = new_id.to_string();
            }
        }
        self.members.insert(new_id.to_string(), member);
    }

    /// A member (re)joining with epoch 0 has abandoned every partition it had: forget what it was
    /// revoking, and let reconciliation hand its assignment back (no one else holds it).
    pub(super) fn reset_for_rejoin(&mut self, member_id: &str) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let pending = std::mem::take(&mut member.pending_revocation);
        member.member_epoch = 0;
        member.previous_member_epoch = 0;
        member.state = MemberState::Stable;
        member.rebalance_deadline_ms = None;
        self.release(member_id, &pending);
    }

    /// A static member leaving temporarily (epoch -2) keeps its assignment until its session
    /// expires; what it was revoking is released now.
    pub(super) fn park_static_member(&mut self, member_id: &str) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let pending = std::mem::take(&mut member.pending_revocation);
        member.member_epoch = super::LEAVE_GROUP_STATIC_MEMBER_EPOCH;
        member.state = MemberState::Stable;
        member.rebalance_deadline_ms = None;
        self.release(member_id, &pending);
    }

    fn release(&mut self, member_id: &str, partitions: &Assignment) {
        for (topic, set) in partitions {
            for partition in set {
                if self
                    .owners
                    .get(&(*topic, *partition))
                    .is_some_and(|owner| owner == member_id)
                {
                    self.owners.remove(&(*topic, *partition));
                }
            }
        }
    }

    fn hold(&mut self, member_id: &str, partitions: &Assignment) {
        for (topic, set) in partitions {
            for partition in set {
                let previous = self
                    .owners
                    .insert((*topic, *partition), member_id.to_string());
                debug_assert!(
                    previous.as_deref().is_none_or(|owner| owner == member_id),
                    "partition {topic}-{partition} handed to {member_id} while {previous:?} holds it"
                );
            }
        }
    }

    /// Whether `member_id` may be given the partition now: no other member holds it.
    fn is_free_for(&self, member_id: &str, topic: Uuid, partition: u32) -> bool {
        self.owners
            .get(&(topic, partition))
            .is_none_or(|owner| owner == member_id)
    }

    /// Re-resolves the subscribed topics if the topic metadata or a subscription changed
    /// (`force`). Returns whether the group's subscription metadata changed (the caller bumps the
    /// group epoch).
    pub(super) fn refresh_subscriptions(&mut self, topics: &TopicsView, force: bool) -> bool {
        if !force && self.topics_fingerprint == Some(topics.fingerprint()) {
            return false;
        }
        self.topics_fingerprint = Some(topics.fingerprint());
        let mut subscribed = BTreeMap::new();
        for member in self.members.values() {
            for (name, id, count) in member.resolve(topics) {
                subscribed.insert(name.to_string(), (id, count));
            }
        }
        let changed = subscribed != self.subscribed;
        self.subscribed = subscribed;
        changed
    }

    /// The assignor the members prefer most (ties: the one first in the configured list), else
    /// the configured default.
    fn preferred_assignor(&self, configured: &[AssignorKind]) -> AssignorKind {
        let default = configured.first().copied().unwrap_or(AssignorKind::Uniform);
        let mut votes: BTreeMap<AssignorKind, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(kind) = member.server_assignor {
                *votes.entry(kind).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        if best == 0 {
            return default;
        }
        configured
            .iter()
            .copied()
            .find(|kind| votes.get(kind) == Some(&best))
            .unwrap_or(default)
    }

    /// Computes the target assignment for the current group epoch.
    pub(super) fn compute_target(&mut self, topics: &TopicsView, configured: &[AssignorKind]) {
        self.assignor = self.preferred_assignor(configured);
        let partitions: BTreeMap<Uuid, u32> = self.subscribed.values().copied().collect();
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|member| {
                let spec = MemberSpec {
                    instance_id: member.instance_id.clone(),
                    subscribed: member.resolve(topics).map(|(_, id, _)| id).collect(),
                    current: self
                        .target
                        .get(&member.member_id)
                        .cloned()
                        .unwrap_or_default(),
                };
                (member.member_id.clone(), spec)
            })
            .collect();
        self.target = self.assignor.assign(&specs, &partitions);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves the member one step towards its target (Kafka's `CurrentAssignmentBuilder`).
    /// `owned` is what the member reported owning (`None`: not reported in this heartbeat, which
    /// counts as still owning everything it was given). Returns whether the member changed.
    pub(super) fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
        now_ms: u64,
    ) -> bool {
        let target_epoch = self.assignment_epoch;
        let Some(member) = self.members.get(member_id) else {
            return false;
        };
        if member.is_reconciled_to(target_epoch) || member.member_epoch < 0 {
            return false;
        }
        let step_epoch = match member.state {
            MemberState::Stable | MemberState::UnreleasedPartitions => member.member_epoch,
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &member.pending_revocation) {
                    return false;
                }
                member.member_epoch.saturating_add(1)
            }
        };
        let empty = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&empty);

        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        let mut free = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target
            .keys()
            .chain(member.assigned.keys())
            .copied()
            .collect();
        for topic in topics {
            let wanted = target.get(&topic).unwrap_or(&BTreeSet::new()).clone();
            let current = member.assigned.get(&topic).cloned().unwrap_or_default();
            let keep: BTreeSet<u32> = current.intersection(&wanted).copied().collect();
            let gone: BTreeSet<u32> = current.difference(&keep).copied().collect();
            for partition in wanted.difference(&keep) {
                if self.is_free_for(member_id, topic, *partition) {
                    free.entry(topic).or_default().insert(*partition);
                } else {
                    unreleased = true;
                }
            }
            if !keep.is_empty() {
                kept.insert(topic, keep);
            }
            if !gone.is_empty() {
                revoke.insert(topic, gone);
            }
        }

        let (state, epoch, assigned, pending) = if !revoke.is_empty() && owns_any(owned, &revoke) {
            (MemberState::UnrevokedPartitions, step_epoch, kept, revoke)
        } else {
            for (topic, set) in free {
                kept.entry(topic).or_default().extend(set);
            }
            let state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            (state, target_epoch, kept, Assignment::new())
        };

        let Some(member) = self.members.get(member_id) else {
            return false;
        };
        let changed = member.state != state
            || member.member_epoch != epoch
            || member.assigned != assigned
            || member.pending_revocation != pending;
        if !changed {
            return false;
        }
        let old_assigned = member.assigned.clone();
        let old_pending = member.pending_revocation.clone();
        self.release(member_id, &old_assigned);
        self.release(member_id, &old_pending);
        self.hold(member_id, &assigned);
        self.hold(member_id, &pending);
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        if member.member_epoch != epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = epoch;
        }
        member.state = state;
        member.assigned = assigned;
        member.pending_revocation = pending;
        member.rebalance_deadline_ms = (state == MemberState::UnrevokedPartitions).then(|| {
            now_ms.saturating_add(u64::try_from(member.rebalance_timeout_ms).unwrap_or(0))
        });
        true
    }

    /// Checks the bookkeeping invariants (tests and debug builds): every held partition is held
    /// by exactly the member whose assigned or pending set contains it.
    #[cfg(test)]
    pub(super) fn assert_consistent(&self) {
        let mut held: BTreeMap<(Uuid, u32), &str> = BTreeMap::new();
        for member in self.members.values() {
            for set in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in set {
                    for partition in partitions {
                        let previous = held.insert((*topic, *partition), member.member_id.as_str());
                        assert!(
                            previous.is_none(),
                            "{topic}-{partition} held by {previous:?} and {}",
                            member.member_id
                        );
                    }
                }
            }
        }
        let owners: BTreeMap<(Uuid, u32), &str> = self
            .owners
            .iter()
            .map(|(key, owner)| (*key, owner.as_str()))
            .collect();
        assert_eq!(
            held, owners,
            "owner index out of sync in group {}",
            self.group_id
        );
    }
}

/// Whether the member still owns any of `partitions`, judging by what it reported (`None`: it did
/// not report, so assume it does).
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    partitions
        .iter()
        .any(|(topic, set)| owned.get(topic).is_some_and(|held| !held.is_disjoint(set)))
}
