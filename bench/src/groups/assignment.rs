//! The consumer protocol inside JoinGroup and SyncGroup, as the Java classic consumer speaks it:
//! a member's subscription and its assignment travel as opaque bytes (a big-endian `i16` version,
//! then the struct of that version), and the group leader, not the broker, computes the
//! assignment. The leader here runs the range assignor the way Java's `RangeAssignor` does for
//! members without racks, so a broker sees the same bytes and the same split a Java group sends.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Java 4.x writes subscriptions and assignments at the highest version it knows: 3.
pub const SUBSCRIPTION_VERSION: i16 = 3;
pub const ASSIGNMENT_VERSION: i16 = 3;

/// Partitions of one topic, as a member owns or is assigned them.
pub type TopicPartitions = (String, Vec<i32>);

fn with_version<M: Encodable>(version: i16, message: &M) -> anyhow::Result<Bytes> {
    let mut buffer = BytesMut::with_capacity(2 + message.compute_size(version)?);
    buffer.put_i16(version);
    message.encode(&mut buffer, version)?;
    Ok(buffer.freeze())
}

/// Splits the leading version off; a version newer than ours is read as ours, as Java does
/// (newer versions only append fields).
fn versioned<M: Decodable>(mut bytes: Bytes, highest: i16) -> anyhow::Result<(i16, M)> {
    anyhow::ensure!(
        bytes.len() >= 2,
        "consumer protocol bytes shorter than a version"
    );
    let version = bytes.get_i16();
    anyhow::ensure!(version >= 0, "negative consumer protocol version {version}");
    let message = M::decode(&mut bytes, version.min(highest))?;
    Ok((version, message))
}

/// The JoinGroup metadata of a member subscribed to `topics` (`generation_id` -1 before its first
/// generation; no rack; nothing owned, as an eager member owns nothing when it rejoins).
pub fn encode_subscription(topics: &[&str], generation_id: i32) -> anyhow::Result<Bytes> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|topic| StrBytes::from_string((*topic).to_owned()))
                .collect(),
        )
        .with_generation_id(generation_id);
    with_version(SUBSCRIPTION_VERSION, &subscription)
}

/// The topics a member's JoinGroup metadata subscribes to.
pub fn decode_subscription(bytes: Bytes) -> anyhow::Result<Vec<String>> {
    let (_, subscription): (_, ConsumerProtocolSubscription) =
        versioned(bytes, SUBSCRIPTION_VERSION)?;
    Ok(subscription
        .topics
        .iter()
        .map(|topic| topic.as_str().to_owned())
        .collect())
}

pub fn encode_assignment(partitions: &[TopicPartitions]) -> anyhow::Result<Bytes> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, partitions)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    with_version(ASSIGNMENT_VERSION, &assignment)
}

/// The partitions a SyncGroup response assigns. Empty bytes are an empty assignment (what a
/// broker answers a member the leader left out).
pub fn decode_assignment(bytes: Bytes) -> anyhow::Result<Vec<TopicPartitions>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (_, assignment): (_, ConsumerProtocolAssignment) = versioned(bytes, ASSIGNMENT_VERSION)?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .map(|assigned| (assigned.topic.0.as_str().to_owned(), assigned.partitions))
        .collect())
}

/// The range assignor: for each topic, its subscribers sorted by member id split the partitions
/// into consecutive ranges; the first `partitions % subscribers` members get one more. Topics
/// missing from `partition_counts` (unknown to the leader) are not assigned. Every member gets an
/// entry, empty if it is assigned nothing.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartitions>> {
    let mut assignments: BTreeMap<String, Vec<TopicPartitions>> = subscriptions
        .keys()
        .map(|member| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        // BTreeMap keys iterate sorted: the member order Java's RangeAssignor sorts into.
        let subscribers: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(member, _)| member)
            .collect();
        let Ok(members) = i32::try_from(subscribers.len()) else {
            continue;
        };
        if members == 0 || count <= 0 {
            continue;
        }
        let per_member = count / members;
        let extra = count % members;
        for (index, member) in (0..members).zip(subscribers) {
            let start = per_member * index + index.min(extra);
            let length = per_member + i32::from(index < extra);
            if length == 0 {
                continue;
            }
            if let Some(assigned) = assignments.get_mut(member) {
                assigned.push((topic.clone(), (start..start + length).collect()));
            }
        }
    }
    assignments
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
