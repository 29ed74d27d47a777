//! A KIP-848 group's durable state ([`ConsumerGroupRecord`]) and the group rebuilt from it: what
//! Kafka's coordinator keeps in its group-epoch, member, target-assignment and
//! current-assignment records, and replays on a failover (`onLoaded`: every member gets a full
//! session; a member still revoking gets its rebalance timeout again).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use sluice_engine::metadata::{
    ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState, TopicPartitionSets,
};
use sluice_engine::types::TopicId;

use super::{Deadlines, Group, Member, MemberState, TopicRegex};
use crate::groups::assignor::{Assignment, AssignorKind};
use crate::groups::consumer::ClientInfo;

fn partition_sets(assignment: &Assignment) -> TopicPartitionSets {
    assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| {
            (
                TopicId::from_uuid(*topic),
                partitions.iter().copied().collect(),
            )
        })
        .collect()
}

fn assignment(sets: &TopicPartitionSets) -> Assignment {
    sets.iter()
        .map(|(topic, partitions)| (topic.as_uuid(), partitions.iter().copied().collect()))
        .collect()
}

impl Member {
    /// A digest of everything of the member that is stored: a heartbeat that leaves it (and the
    /// group's epochs) unchanged writes nothing.
    pub(in crate::groups) fn stored_digest(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.member_id.hash(&mut hasher);
        self.instance_id.hash(&mut hasher);
        self.rack_id.hash(&mut hasher);
        self.client.client_id.hash(&mut hasher);
        self.client.client_host.hash(&mut hasher);
        self.rebalance_timeout_ms.hash(&mut hasher);
        self.subscribed_names.hash(&mut hasher);
        self.subscribed_regex
            .as_ref()
            .map(|regex| regex.source.as_str())
            .hash(&mut hasher);
        self.server_assignor
            .map(AssignorKind::name)
            .hash(&mut hasher);
        (self.state as u8).hash(&mut hasher);
        self.member_epoch.hash(&mut hasher);
        self.previous_member_epoch.hash(&mut hasher);
        self.assigned.hash(&mut hasher);
        self.pending_revocation.hash(&mut hasher);
        hasher.finish()
    }
}

impl Group {
    /// The group's durable state.
    pub(in crate::groups) fn record(&self) -> ConsumerGroupRecord {
        let members = self
            .members
            .values()
            .map(|member| ConsumerMemberRecord {
                member_id: member.member_id.clone(),
                instance_id: member.instance_id.clone(),
                rack_id: member.rack_id.clone(),
                client_id: member.client.client_id.clone(),
                client_host: member.client.client_host.clone(),
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                subscribed_topic_names: member.subscribed_names.iter().cloned().collect(),
                subscribed_topic_regex: member
                    .subscribed_regex
                    .as_ref()
                    .map(|regex| regex.source.clone()),
                server_assignor: member.server_assignor.map(|kind| kind.name().to_owned()),
                state: match member.state {
                    MemberState::Stable => ConsumerMemberState::Stable,
                    MemberState::UnrevokedPartitions => ConsumerMemberState::UnrevokedPartitions,
                    MemberState::UnreleasedPartitions => ConsumerMemberState::UnreleasedPartitions,
                },
                member_epoch: member.member_epoch,
                previous_member_epoch: member.previous_member_epoch,
                assigned: partition_sets(&member.assigned),
                pending_revocation: partition_sets(&member.pending_revocation),
                target: self
                    .target
                    .get(&member.member_id)
                    .map(partition_sets)
                    .unwrap_or_default(),
            })
            .collect();
        ConsumerGroupRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.name().to_owned(),
            subscribed: self
                .subscribed
                .iter()
                .map(|(name, (topic, partitions))| {
                    (name.clone(), TopicId::from_uuid(*topic), *partitions)
                })
                .collect(),
            members,
        }
    }

    /// The group as a restarted coordinator resumes it: same epochs, members and assignments;
    /// sessions (and the rebalance timeouts of members still revoking) restart at `now_ms`. The
    /// topic view is not known yet (`topics_fingerprint` is unset), so the first heartbeat
    /// re-resolves the subscriptions and bumps the epoch only if a subscribed topic changed.
    /// `compile` turns a stored regex back into a matcher (`None`: drop it).
    pub(in crate::groups) fn from_record(
        group_id: String,
        record: &ConsumerGroupRecord,
        default_assignor: AssignorKind,
        session_ms: u64,
        now_ms: u64,
        deadlines: &mut Deadlines,
        compile: impl Fn(&str) -> Option<TopicRegex>,
    ) -> Group {
        let assignor = AssignorKind::from_name(&record.assignor).unwrap_or(default_assignor);
        let mut group = Group::new(group_id, assignor);
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.assignment_epoch;
        group.subscribed = record
            .subscribed
            .iter()
            .map(|(name, topic, partitions)| (name.clone(), (topic.as_uuid(), *partitions)))
            .collect::<BTreeMap<_, _>>();
        for stored in &record.members {
            let mut member = Member::new(stored.member_id.clone(), now_ms);
            member.instance_id = stored.instance_id.clone();
            member.rack_id = stored.rack_id.clone();
            member.client = ClientInfo {
                client_id: stored.client_id.clone(),
                client_host: stored.client_host.clone(),
            };
            member.rebalance_timeout_ms = stored.rebalance_timeout_ms;
            member.subscribed_names = stored.subscribed_topic_names.iter().cloned().collect();
            member.subscribed_regex = stored.subscribed_topic_regex.as_deref().and_then(&compile);
            member.server_assignor = stored
                .server_assignor
                .as_deref()
                .and_then(AssignorKind::from_name);
            member.state = match stored.state {
                ConsumerMemberState::Stable => MemberState::Stable,
                ConsumerMemberState::UnrevokedPartitions => MemberState::UnrevokedPartitions,
                ConsumerMemberState::UnreleasedPartitions => MemberState::UnreleasedPartitions,
            };
            member.member_epoch = stored.member_epoch;
            member.previous_member_epoch = stored.previous_member_epoch;
            member.assigned = assignment(&stored.assigned);
            member.pending_revocation = assignment(&stored.pending_revocation);
            member.session_deadline_ms = now_ms.saturating_add(session_ms);
            member.rebalance_deadline_ms =
                (member.state == MemberState::UnrevokedPartitions).then(|| {
                    now_ms.saturating_add(u64::try_from(member.rebalance_timeout_ms).unwrap_or(0))
                });
            if !stored.target.is_empty() {
                group
                    .target
                    .insert(stored.member_id.clone(), assignment(&stored.target));
            }
            let (assigned, pending) = (member.assigned.clone(), member.pending_revocation.clone());
            let member_id = member.member_id.clone();
            group.add_member(member);
            group.hold(&member_id, &assigned);
            group.hold(&member_id, &pending);
            if let Some(member) = group.members.get_mut(&member_id) {
                deadlines.sync(&group.group_id, member);
            }
        }
        group
    }
}
