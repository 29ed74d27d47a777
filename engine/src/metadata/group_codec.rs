//! The checkpoint encoding of stored group records (v4's `stored_groups` section; byte-exact spec
//! in `docs/metadata.md`). Little-endian; `str` is `len u16 | UTF-8`, `opt_str` is
//! `present u8 (0|1) | str` (empty when absent), `bytes` is `len u32 | bytes`:
//!
//! ```text
//! record   = kind u8 (1 classic | 2 consumer) | classic | consumer
//! classic  = protocol_type str | protocol_name opt_str | generation i32 | leader opt_str
//!            | member_count u32 | (member_id str | instance_id opt_str | client_id str
//!            | client_host str | rebalance_timeout_ms i32 | session_timeout_ms i32
//!            | protocol_count u16 | (name str | metadata bytes)* | assignment bytes)*
//! consumer = group_epoch i32 | assignment_epoch i32 | assignor str
//!            | subscribed_count u32 | (name str | topic_id [16] | partition_count u32)*
//!            | member_count u32 | (member_id str | instance_id opt_str | rack_id opt_str
//!            | client_id str | client_host str | rebalance_timeout_ms i32
//!            | name_count u32 | name str* | regex opt_str | server_assignor opt_str
//!            | state u8 (0 stable | 1 unrevoked | 2 unreleased) | member_epoch i32
//!            | previous_member_epoch i32 | assigned sets | pending_revocation sets | target sets)*
//! sets     = topic_count u32 | (topic_id [16] | partition_count u32 | partition u32*)*
//! ```
//!
//! The same bytes are what a record counts against the group-state limits, so the limits are
//! exactly what the checkpoint pays.

use super::checkpoint::Reader;
use super::error::CheckpointError;
use super::groups::{
    ClassicGroupRecord, ClassicMemberRecord, ConsumerGroupRecord, ConsumerMemberRecord,
    ConsumerMemberState, GroupRecord, TopicPartitionSets,
};
use crate::types::TopicId;

const KIND_CLASSIC: u8 = 1;
const KIND_CONSUMER: u8 = 2;

/// The length of [`put_group_record`]'s output.
pub(super) fn encoded_record_len(record: &GroupRecord) -> usize {
    let mut out = Vec::new();
    put_group_record(&mut out, record);
    out.len()
}

/// Strings are bounded by `GROUP_STRING_LEN_MAX` (checked before a record is stored), so the
/// length casts are lossless; byte fields are bounded by `GROUP_STATE_BYTES_MAX`.
pub(super) fn put_group_record(out: &mut Vec<u8>, record: &GroupRecord) {
    match record {
        GroupRecord::Classic(group) => {
            out.push(KIND_CLASSIC);
            put_str(out, &group.protocol_type);
            put_opt_str(out, group.protocol_name.as_deref());
            out.extend_from_slice(&group.generation.to_le_bytes());
            put_opt_str(out, group.leader.as_deref());
            put_count(out, group.members.len());
            for member in &group.members {
                put_str(out, &member.member_id);
                put_opt_str(out, member.instance_id.as_deref());
                put_str(out, &member.client_id);
                put_str(out, &member.client_host);
                out.extend_from_slice(&member.rebalance_timeout_ms.to_le_bytes());
                out.extend_from_slice(&member.session_timeout_ms.to_le_bytes());
                out.extend_from_slice(&(member.protocols.len() as u16).to_le_bytes());
                for (name, metadata) in &member.protocols {
                    put_str(out, name);
                    put_bytes(out, metadata);
                }
                put_bytes(out, &member.assignment);
            }
        }
        GroupRecord::Consumer(group) => {
            out.push(KIND_CONSUMER);
            out.extend_from_slice(&group.group_epoch.to_le_bytes());
            out.extend_from_slice(&group.assignment_epoch.to_le_bytes());
            put_str(out, &group.assignor);
            put_count(out, group.subscribed.len());
            for (name, topic_id, partitions) in &group.subscribed {
                put_str(out, name);
                out.extend_from_slice(&topic_id.0);
                out.extend_from_slice(&partitions.to_le_bytes());
            }
            put_count(out, group.members.len());
            for member in &group.members {
                put_consumer_member(out, member);
            }
        }
    }
}

fn put_consumer_member(out: &mut Vec<u8>, member: &ConsumerMemberRecord) {
    put_str(out, &member.member_id);
    put_opt_str(out, member.instance_id.as_deref());
    put_opt_str(out, member.rack_id.as_deref());
    put_str(out, &member.client_id);
    put_str(out, &member.client_host);
    out.extend_from_slice(&member.rebalance_timeout_ms.to_le_bytes());
    put_count(out, member.subscribed_topic_names.len());
    for name in &member.subscribed_topic_names {
        put_str(out, name);
    }
    put_opt_str(out, member.subscribed_topic_regex.as_deref());
    put_opt_str(out, member.server_assignor.as_deref());
    out.push(match member.state {
        ConsumerMemberState::Stable => 0,
        ConsumerMemberState::UnrevokedPartitions => 1,
        ConsumerMemberState::UnreleasedPartitions => 2,
    });
    out.extend_from_slice(&member.member_epoch.to_le_bytes());
    out.extend_from_slice(&member.previous_member_epoch.to_le_bytes());
    put_sets(out, &member.assigned);
    put_sets(out, &member.pending_revocation);
    put_sets(out, &member.target);
}

fn put_sets(out: &mut Vec<u8>, sets: &TopicPartitionSets) {
    put_count(out, sets.len());
    for (topic_id, partitions) in sets {
        out.extend_from_slice(&topic_id.0);
        put_count(out, partitions.len());
        for partition in partitions {
            out.extend_from_slice(&partition.to_le_bytes());
        }
    }
}

/// Counts of a stored record are bounded by its size limit, far below `u32::MAX`.
fn put_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&(count as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    out.push(u8::from(value.is_some()));
    put_str(out, value.unwrap_or(""));
}

fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    put_count(out, value.len());
    out.extend_from_slice(value);
}

/// Reads one record; the caller validates its rules ([`super::groups::validate_group_record`]).
pub(super) fn read_group_record(reader: &mut Reader<'_>) -> Result<GroupRecord, CheckpointError> {
    let [kind] = reader.array::<1>("group record kind")?;
    match kind {
        KIND_CLASSIC => read_classic(reader).map(GroupRecord::Classic),
        KIND_CONSUMER => read_consumer(reader).map(GroupRecord::Consumer),
        other => Err(CheckpointError::Invalid {
            reason: format!("group record kind {other}"),
        }),
    }
}

fn read_classic(reader: &mut Reader<'_>) -> Result<ClassicGroupRecord, CheckpointError> {
    let protocol_type = reader.short_string("protocol type")?;
    let protocol_name = reader.optional_string("protocol name")?;
    let generation = reader.i32("generation")?;
    let leader = reader.optional_string("leader")?;
    let member_count = reader.u32("classic member_count")?;
    let mut members = Vec::new();
    for _ in 0..member_count {
        let member_id = reader.short_string("member id")?;
        let instance_id = reader.optional_string("instance id")?;
        let client_id = reader.short_string("client id")?;
        let client_host = reader.short_string("client host")?;
        let rebalance_timeout_ms = reader.i32("rebalance timeout")?;
        let session_timeout_ms = reader.i32("session timeout")?;
        let protocol_count = reader.u16("protocol_count")?;
        let mut protocols = Vec::new();
        for _ in 0..protocol_count {
            let name = reader.short_string("protocol name")?;
            let metadata = reader.long_bytes("protocol metadata")?;
            protocols.push((name, metadata));
        }
        let assignment = reader.long_bytes("assignment")?;
        members.push(ClassicMemberRecord {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocols,
            assignment,
        });
    }
    Ok(ClassicGroupRecord {
        protocol_type,
        protocol_name,
        generation,
        leader,
        members,
    })
}

fn read_consumer(reader: &mut Reader<'_>) -> Result<ConsumerGroupRecord, CheckpointError> {
    let group_epoch = reader.i32("group epoch")?;
    let assignment_epoch = reader.i32("assignment epoch")?;
    let assignor = reader.short_string("assignor")?;
    let subscribed_count = reader.u32("subscribed_count")?;
    let mut subscribed = Vec::new();
    for _ in 0..subscribed_count {
        let name = reader.short_string("subscribed topic")?;
        let topic_id = TopicId(reader.array::<16>("subscribed topic id")?);
        let partitions = reader.u32("subscribed partition count")?;
        subscribed.push((name, topic_id, partitions));
    }
    let member_count = reader.u32("consumer member_count")?;
    let mut members = Vec::new();
    for _ in 0..member_count {
        members.push(read_consumer_member(reader)?);
    }
    Ok(ConsumerGroupRecord {
        group_epoch,
        assignment_epoch,
        assignor,
        subscribed,
        members,
    })
}

fn read_consumer_member(reader: &mut Reader<'_>) -> Result<ConsumerMemberRecord, CheckpointError> {
    let member_id = reader.short_string("member id")?;
    let instance_id = reader.optional_string("instance id")?;
    let rack_id = reader.optional_string("rack id")?;
    let client_id = reader.short_string("client id")?;
    let client_host = reader.short_string("client host")?;
    let rebalance_timeout_ms = reader.i32("rebalance timeout")?;
    let name_count = reader.u32("subscribed name_count")?;
    let mut subscribed_topic_names = Vec::new();
    for _ in 0..name_count {
        subscribed_topic_names.push(reader.short_string("subscribed topic name")?);
    }
    let subscribed_topic_regex = reader.optional_string("topic regex")?;
    let server_assignor = reader.optional_string("server assignor")?;
    let [state] = reader.array::<1>("member state")?;
    let state = match state {
        0 => ConsumerMemberState::Stable,
        1 => ConsumerMemberState::UnrevokedPartitions,
        2 => ConsumerMemberState::UnreleasedPartitions,
        other => {
            return Err(CheckpointError::Invalid {
                reason: format!("member state {other}"),
            });
        }
    };
    let member_epoch = reader.i32("member epoch")?;
    let previous_member_epoch = reader.i32("previous member epoch")?;
    let assigned = read_sets(reader)?;
    let pending_revocation = read_sets(reader)?;
    let target = read_sets(reader)?;
    Ok(ConsumerMemberRecord {
        member_id,
        instance_id,
        rack_id,
        client_id,
        client_host,
        rebalance_timeout_ms,
        subscribed_topic_names,
        subscribed_topic_regex,
        server_assignor,
        state,
        member_epoch,
        previous_member_epoch,
        assigned,
        pending_revocation,
        target,
    })
}

fn read_sets(reader: &mut Reader<'_>) -> Result<TopicPartitionSets, CheckpointError> {
    let topic_count = reader.u32("partition set topic_count")?;
    let mut sets = Vec::new();
    for _ in 0..topic_count {
        let topic_id = TopicId(reader.array::<16>("partition set topic id")?);
        let partition_count = reader.u32("partition set partition_count")?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            partitions.push(reader.u32("partition")?);
        }
        sets.push((topic_id, partitions));
    }
    Ok(sets)
}
