//! KIP-848 consumer groups (being written: the API is final, the behaviour is not yet).

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::topics::TopicsView;

const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_MEMBER_ID: i16 = 25;

/// Settings of the KIP-848 protocol (server config `group_consumer_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Interval the members are told to heartbeat at.
    pub heartbeat_interval_ms: i32,
    /// A member not heard from for this long is removed.
    pub session_timeout_ms: i32,
    /// Server assignors members may pick; the first is the default.
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

/// Every KIP-848 group owned by one core.
#[derive(Debug)]
pub struct ConsumerGroups {
    config: ConsumerConfig,
}

impl ConsumerGroups {
    /// No groups yet.
    pub fn new(config: ConsumerConfig) -> Self {
        Self { config }
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
        let _ = (req, version, client, topics, now_ms);
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(UNKNOWN_MEMBER_ID)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms)
    }

    /// ConsumerGroupDescribe of one group.
    pub fn describe(
        &self,
        group_id: &str,
        topics: &TopicsView,
        include_authorized_operations: bool,
    ) -> DescribedGroup {
        let _ = (topics, include_authorized_operations);
        DescribedGroup::default()
            .with_group_id(StrBytes::from_string(group_id.to_string()).into())
            .with_error_code(GROUP_ID_NOT_FOUND)
    }

    /// OffsetCommit from a KIP-848 member: generation_id in the request is the member epoch.
    pub fn check_commit(
        &mut self,
        group_id: &str,
        member_epoch: i32,
        member_id: &str,
        now_ms: u64,
    ) -> Result<(), i16> {
        let _ = (group_id, member_epoch, member_id, now_ms);
        Err(GROUP_ID_NOT_FOUND)
    }

    /// OffsetFetch v9 with member id/epoch.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_epoch: i32,
        member_id: &str,
    ) -> Result<(), i16> {
        let _ = (group_id, member_epoch, member_id);
        Err(GROUP_ID_NOT_FOUND)
    }

    /// Every group, with its state name.
    pub fn list(&self) -> Vec<ListedConsumerGroup> {
        Vec::new()
    }

    /// DeleteGroups: NON_EMPTY_GROUP while the group has members, GROUP_ID_NOT_FOUND if unknown.
    pub fn delete(&mut self, group_id: &str) -> Result<(), i16> {
        let _ = group_id;
        Err(GROUP_ID_NOT_FOUND)
    }

    /// Whether this core holds the group.
    pub fn contains(&self, group_id: &str) -> bool {
        let _ = group_id;
        false
    }

    /// Whether the group has no members (true for an unknown group).
    pub fn is_empty(&self, group_id: &str) -> bool {
        let _ = group_id;
        true
    }

    /// Topic names the group's members subscribe to (explicit names and regex matches), for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn subscribed_topics(&self, group_id: &str, topics: &TopicsView) -> BTreeSet<String> {
        let _ = (group_id, topics);
        BTreeSet::new()
    }

    /// Session expiry (and rebalance-timeout expiry of members that do not revoke in time).
    pub fn tick(&mut self, now_ms: u64, topics: &TopicsView) {
        let _ = (now_ms, topics);
    }

    /// When `tick` next has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        None
    }

    /// Topic metadata changed (partitions added, topic created/deleted): bump epochs where subscribed.
    pub fn topics_changed(&mut self, topics: &TopicsView) {
        let _ = topics;
    }
}
