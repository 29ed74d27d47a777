//! The classic consumer-group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup).
//!
//! (being written: the public API is final, the state machine is not filled in yet.)

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::reply::Reply;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// Limits of the classic protocol, from the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicConfig {
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
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
    pub protocol_type: String,
    /// Kafka's state name: "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead".
    pub state: &'static str,
}

/// Every classic group owned by one core.
#[derive(Debug, Default)]
pub struct ClassicGroups {
    config: ClassicConfig,
}

impl ClassicGroups {
    pub fn new(config: ClassicConfig) -> Self {
        Self { config }
    }

    pub fn join(
        &mut self,
        req: &JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
        now_ms: u64,
    ) -> Reply<JoinGroupResponse> {
        let _ = (req, version, client_id, client_host, now_ms, &self.config);
        Reply::Now(JoinGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE))
    }

    pub fn sync(
        &mut self,
        req: &SyncGroupRequest,
        version: i16,
        now_ms: u64,
    ) -> Reply<SyncGroupResponse> {
        let _ = (req, version, now_ms);
        Reply::Now(SyncGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE))
    }

    pub fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        version: i16,
        now_ms: u64,
    ) -> HeartbeatResponse {
        let _ = (req, version, now_ms);
        HeartbeatResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }

    pub fn leave(
        &mut self,
        req: &LeaveGroupRequest,
        version: i16,
        now_ms: u64,
    ) -> LeaveGroupResponse {
        let _ = (req, version, now_ms);
        LeaveGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }

    /// OffsetCommit validation (and it refreshes the member's session like a heartbeat).
    pub fn check_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), i16> {
        let _ = (
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            now_ms,
        );
        Err(COORDINATOR_NOT_AVAILABLE)
    }

    pub fn describe(&self, group_id: &str, version: i16) -> DescribedGroup {
        let _ = version;
        DescribedGroup::default()
            .with_group_id(kafka_protocol::messages::GroupId(
                kafka_protocol::protocol::StrBytes::from_string(group_id.to_owned()),
            ))
            .with_group_state(kafka_protocol::protocol::StrBytes::from_static_str("Dead"))
    }

    pub fn list(&self) -> Vec<ListedClassicGroup> {
        Vec::new()
    }

    /// NON_EMPTY_GROUP if the group has members; Ok if it is absent or Empty.
    pub fn delete(&mut self, group_id: &str) -> Result<(), i16> {
        let _ = group_id;
        Ok(())
    }

    pub fn contains(&self, group_id: &str) -> bool {
        let _ = group_id;
        false
    }

    /// Whether the group is absent or has no members.
    pub fn is_empty(&self, group_id: &str) -> bool {
        let _ = group_id;
        true
    }

    /// Session expiry, rebalance timeout, initial delay, pending-join expiry.
    pub fn tick(&mut self, now_ms: u64) {
        let _ = now_ms;
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        None
    }
}
