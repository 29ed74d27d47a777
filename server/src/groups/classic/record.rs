//! A classic group's durable state ([`ClassicGroupRecord`]) and the group rebuilt from it.
//!
//! Like Kafka's `GroupMetadataValue`, a record is taken only in the states a restarted
//! coordinator can resume: `Stable` (a generation with every member's assignment) and `Empty`
//! (keeping the generation). A group in the middle of a rebalance keeps its last stored
//! generation: after a restart its members find the group Stable at that generation and either
//! carry on (it is theirs) or get ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID and rejoin, which is what
//! a Kafka coordinator failover in the middle of a rebalance does too.

use bytes::Bytes;
use sluice_engine::metadata::{ClassicGroupRecord, ClassicMemberRecord};

use super::group::{Group, Member, Protocol, State};

impl Group {
    /// The durable state of the group, when it is in a state a restart can resume.
    pub(super) fn record(&self) -> Option<ClassicGroupRecord> {
        if !matches!(self.state, State::Stable | State::Empty) {
            return None;
        }
        let members = self
            .members
            .values()
            .map(|member| ClassicMemberRecord {
                member_id: member.id.clone(),
                instance_id: member.instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                session_timeout_ms: member.session_timeout_ms,
                protocols: member
                    .protocols
                    .iter()
                    .map(|protocol| (protocol.name.clone(), protocol.metadata.to_vec()))
                    .collect(),
                assignment: member.assignment.to_vec(),
            })
            .collect();
        Some(ClassicGroupRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members,
        })
    }

    /// The group as a restarted coordinator resumes it (Kafka's `replay` of a
    /// `GroupMetadataValue` and `onLoaded`): Stable with its members, or Empty; every member has a
    /// full session from `now_ms`.
    pub(super) fn from_record(id: String, record: &ClassicGroupRecord, now_ms: u64) -> Group {
        let mut group = Group::new(id);
        for stored in &record.members {
            let session_ms = u64::try_from(stored.session_timeout_ms).unwrap_or(0);
            group.add(Member {
                id: stored.member_id.clone(),
                instance_id: stored.instance_id.clone(),
                client_id: stored.client_id.clone(),
                client_host: stored.client_host.clone(),
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                session_timeout_ms: stored.session_timeout_ms,
                protocol_type: record.protocol_type.clone(),
                protocols: stored
                    .protocols
                    .iter()
                    .map(|(name, metadata)| Protocol {
                        name: name.clone(),
                        metadata: Bytes::from(metadata.clone()),
                    })
                    .collect(),
                assignment: Bytes::from(stored.assignment.clone()),
                join_waiter: None,
                sync_waiter: None,
                is_new: false,
                session_deadline_ms: Some(now_ms.saturating_add(session_ms)),
            });
        }
        group.generation = record.generation;
        group.protocol_type =
            (!record.protocol_type.is_empty()).then(|| record.protocol_type.clone());
        group.protocol_name = record.protocol_name.clone();
        if group.members.is_empty() {
            group.leader = None;
            group.protocol_name = None;
        } else {
            group.leader = record
                .leader
                .clone()
                .filter(|leader| group.members.contains_key(leader))
                .or_else(|| group.members.keys().next().cloned());
            group.previous_state = Some(State::CompletingRebalance);
            group.state = State::Stable;
            if group.protocol_name.is_none() {
                group.protocol_name = group.select_protocol();
            }
        }
        group
    }
}
