//! One network core's groups: the classic and KIP-848 state machines, their timers, and the
//! topic metadata the KIP-848 assignors read.
//!
//! A [`GroupCore`] is created inside its network executor and lives there (`Rc`, `RefCell`):
//! every request for the groups it owns runs on this core, whether it arrived on one of this
//! core's connections or was forwarded by another core ([`super::router`]). The state machines
//! are pure; this shell gives them the time (`now_ms`, monotonic milliseconds since the core
//! started), drives their timers, answers their parked requests, and reaches the metadata core
//! for what is durable (committed offsets, in `offsets.rs` next to this file) or shared (topics).
//!
//! **Borrows never cross an await.** Each operation borrows the state machines, takes what it
//! needs (a response, or the receiver of a parked one), and releases them before it awaits, so
//! any number of requests can be in flight on the core at once.
//!
//! **Timers.** One task per core ([`GroupCore::run_timer`]) sleeps until the earliest deadline
//! of either state machine (at most [`TIMER_IDLE_MS`]), then calls their `tick`. A request that
//! creates an earlier deadline (a new member, a zero initial delay) wakes it at once.
//!
//! **Topics for KIP-848.** Assignments are computed from a [`TopicsView`] built from the metadata
//! state. Each core caches one and refreshes it when it is older than [`TOPICS_REFRESH_MS`], or
//! when a heartbeat subscribes to a name the view lacks; a view whose content changed
//! (fingerprint) is announced to the groups (`topics_changed`), which bump their epochs where a
//! subscribed topic changed.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::classic::{ClassicConfig, ClassicGroups, ListedClassicGroup};
use super::consumer::{ClientInfo, ConsumerConfig, ConsumerGroups, ListedConsumerGroup};
use super::reply::Reply;
use super::topics::TopicsView;
use crate::metadata_core::{CommandFailure, CoreHandle};

/// The longest the timer task sleeps when no deadline is near (it also refreshes the topics of
/// KIP-848 groups on this beat).
pub const TIMER_IDLE_MS: u64 = 1_000;
/// A KIP-848 core re-reads the topic metadata when its view is older than this.
pub const TOPICS_REFRESH_MS: u64 = 1_000;

/// Kafka error codes the integration layer answers with.
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = kafka_protocol::ResponseError::UnknownServerError.code();
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 =
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
    pub const OFFSET_METADATA_TOO_LARGE: i16 =
        kafka_protocol::ResponseError::OffsetMetadataTooLarge.code();
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 =
        kafka_protocol::ResponseError::CoordinatorLoadInProgress.code();
    pub const COORDINATOR_NOT_AVAILABLE: i16 =
        kafka_protocol::ResponseError::CoordinatorNotAvailable.code();
    pub const NOT_COORDINATOR: i16 = kafka_protocol::ResponseError::NotCoordinator.code();
    pub const ILLEGAL_GENERATION: i16 = kafka_protocol::ResponseError::IllegalGeneration.code();
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 =
        kafka_protocol::ResponseError::InconsistentGroupProtocol.code();
    pub const INVALID_GROUP_ID: i16 = kafka_protocol::ResponseError::InvalidGroupId.code();
    pub const UNKNOWN_MEMBER_ID: i16 = kafka_protocol::ResponseError::UnknownMemberId.code();
    pub const NON_EMPTY_GROUP: i16 = kafka_protocol::ResponseError::NonEmptyGroup.code();
    pub const GROUP_ID_NOT_FOUND: i16 = kafka_protocol::ResponseError::GroupIdNotFound.code();
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 =
        kafka_protocol::ResponseError::GroupSubscribedToTopic.code();
}

/// ACL operation bits of a group (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS), what
/// DescribeGroups reports when asked for authorized operations: Sluice has no ACLs.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);

/// The groups' settings, from the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub classic: ClassicConfig,
    pub consumer: ConsumerConfig,
    /// Kafka's `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// Kafka's `offsets.retention.check.interval.ms`: how often empty groups without committed
    /// offsets are forgotten and expired offsets deleted.
    pub cleanup_interval_ms: u64,
    /// Kafka's `offsets.retention.minutes`, in milliseconds: how long a group without members
    /// keeps its committed offsets.
    pub offsets_retention_ms: u64,
}

/// Both state machines of one core.
#[derive(Debug)]
pub(super) struct Groups {
    pub(super) classic: ClassicGroups,
    pub(super) consumer: ConsumerGroups,
}

impl Groups {
    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        match (
            self.classic.next_deadline_ms(),
            self.consumer.next_deadline_ms(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Default)]
struct TopicsCache {
    view: TopicsView,
    refreshed_at_ms: Option<u64>,
}

/// Wakes a task (the timer, the group writer) early; at most one wake-up is pending.
#[derive(Debug, Default)]
pub(super) struct TimerWake {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// When the timer task will next look, if it is sleeping.
    scheduled_ms: Cell<Option<u64>>,
}

impl TimerWake {
    pub(super) fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub(super) async fn wait(&self) {
        poll_fn(|context| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// One network core's groups. See the module docs.
#[derive(Debug)]
pub struct GroupCore {
    pub(super) groups: RefCell<Groups>,
    topics: RefCell<TopicsCache>,
    pub(super) metadata: CoreHandle,
    pub(super) offset_metadata_bytes_max: usize,
    started: Instant,
    timer: TimerWake,
    /// Set by the first KIP-848 heartbeat (or a loaded KIP-848 group): from then on the timer
    /// keeps the topics fresh.
    pub(super) consumer_groups_seen: Cell<bool>,
    cleanup_interval_ms: u64,
    /// When the timer next runs the cleanup round (`now_ms` time).
    next_cleanup_ms: Cell<u64>,
    /// This core's index among `core_count` network cores: a cleanup round expires the offsets of
    /// the groups this core owns, and only those.
    pub(super) core_index: usize,
    pub(super) core_count: usize,
    pub(super) offsets_retention_ms: u64,
    /// Groups with committed offsets and no members: when a cleanup round first found them so
    /// (`now_ms` time). Cleared when a member appears.
    pub(super) empty_since_ms: RefCell<HashMap<String, u64>>,
    /// OffsetCommits running on this core, per group: a group with one in flight never expires.
    /// Bounded by the requests in flight.
    pub(super) commits_in_flight: RefCell<HashMap<String, usize>>,
    /// While a cleanup round runs (`Some`): the groups whose commits finished during it, which its
    /// read of the stored commit times may have missed. Bounded by the commits of one round.
    pub(super) committed_during_cleanup: RefCell<Option<HashSet<String>>>,
    /// Groups whose expired offsets are being deleted: their commits are refused with the
    /// retriable COORDINATOR_LOAD_IN_PROGRESS until the delete is durable.
    pub(super) expiring: RefCell<HashSet<String>>,
    /// The groups' durable state on its way to the metadata log (`persist.rs`).
    pub(super) writer: super::persist::GroupWriter,
    /// In a cluster: the agent's view this core's groups follow (`ownership.rs`); `None` alone.
    pub(super) ownership: RefCell<Option<std::rc::Rc<super::ownership::Ownership>>>,
}

/// The stored groups could not be read (the metadata core is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the stored consumer groups: the metadata core is not running")]
pub struct LoadError;

/// What one core lists for ListGroups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreGroupList {
    pub classic: Vec<ListedClassicGroup>,
    pub consumer: Vec<ListedConsumerGroup>,
}

impl GroupCore {
    pub fn new(config: GroupConfig, metadata: CoreHandle) -> Self {
        Self {
            groups: RefCell::new(Groups {
                classic: ClassicGroups::new(config.classic),
                consumer: ConsumerGroups::new(config.consumer),
            }),
            topics: RefCell::default(),
            metadata,
            offset_metadata_bytes_max: config.offset_metadata_bytes_max,
            started: Instant::now(),
            timer: TimerWake::default(),
            consumer_groups_seen: Cell::new(false),
            cleanup_interval_ms: config.cleanup_interval_ms,
            next_cleanup_ms: Cell::new(config.cleanup_interval_ms),
            core_index: 0,
            core_count: 1,
            offsets_retention_ms: config.offsets_retention_ms,
            empty_since_ms: RefCell::default(),
            commits_in_flight: RefCell::default(),
            committed_during_cleanup: RefCell::default(),
            expiring: RefCell::default(),
            writer: super::persist::GroupWriter::default(),
            ownership: RefCell::default(),
        }
    }

    /// This core is `index` of `cores` network cores (the groups it owns are those
    /// [`super::router::owner_core`] gives it).
    #[must_use]
    pub fn owning(mut self, index: usize, cores: usize) -> Self {
        self.core_index = index;
        self.core_count = cores.max(1);
        self
    }

    /// Monotonic milliseconds since this core's groups started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// After a call that may have set an earlier deadline: wake the timer if it sleeps past it.
    pub(super) fn deadlines_changed(&self) {
        let next = self.groups.borrow().next_deadline_ms();
        let Some(next) = next else { return };
        if self
            .timer
            .scheduled_ms
            .get()
            .is_none_or(|scheduled| next < scheduled)
        {
            self.timer.notify();
        }
    }

    /// JoinGroup. A JoinGroup for a KIP-848 group with members is INCONSISTENT_GROUP_PROTOCOL
    /// (Sluice does not convert between the protocols); an empty one is replaced.
    pub async fn join(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> JoinGroupResponse {
        let reply = {
            let mut groups = self.groups.borrow_mut();
            let group_id = request.group_id.as_str();
            if groups.consumer.contains(group_id) {
                if !groups.consumer.is_empty(group_id) {
                    return JoinGroupResponse::default()
                        .with_error_code(error_code::INCONSISTENT_GROUP_PROTOCOL)
                        .with_member_id(request.member_id.clone());
                }
                let _ = groups.consumer.delete(group_id);
            }
            groups
                .classic
                .join(&request, version, &client_id, &client_host, self.now_ms())
        };
        self.collect_dirty();
        self.deadlines_changed();
        let response = match reply {
            Reply::Now(response) => response,
            Reply::Later(answer) => answer.await.unwrap_or_else(|_| {
                JoinGroupResponse::default()
                    .with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
                    .with_member_id(request.member_id.clone())
            }),
        };
        match self.settled(request.group_id.as_str()).await {
            Ok(()) => response,
            Err(code) if response.error_code == error_code::NONE => JoinGroupResponse::default()
                .with_error_code(code)
                .with_member_id(request.member_id),
            Err(_) => response,
        }
    }

    pub async fn sync(&self, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let reply = self
            .groups
            .borrow_mut()
            .classic
            .sync(&request, version, self.now_ms());
        self.collect_dirty();
        self.deadlines_changed();
        let response = match reply {
            Reply::Now(response) => response,
            Reply::Later(answer) => answer.await.unwrap_or_else(|_| {
                SyncGroupResponse::default().with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
            }),
        };
        match self.settled(request.group_id.as_str()).await {
            Err(code) if response.error_code == error_code::NONE => {
                SyncGroupResponse::default().with_error_code(code)
            }
            _ => response,
        }
    }

    /// The agent is stopping: every JoinGroup and SyncGroup parked in a rebalance on this core is
    /// answered NOT_COORDINATOR now, as Kafka's coordinator answers them when it resigns, so its
    /// client looks the coordinator up again (another agent of a cluster, or this one once it is
    /// back) instead of waiting out the connections' drain timeout.
    pub fn release_parked_at_stop(&self) {
        let released = self
            .groups
            .borrow_mut()
            .classic
            .release_waiters(error_code::NOT_COORDINATOR);
        if released > 0 {
            tracing::info!(
                requests = released,
                core = self.core_index,
                "stopping: parked JoinGroup and SyncGroup requests answered NOT_COORDINATOR"
            );
        }
    }

    pub fn heartbeat(&self, request: &HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let response = self
            .groups
            .borrow_mut()
            .classic
            .heartbeat(request, version, self.now_ms());
        self.deadlines_changed();
        response
    }

    pub async fn leave(&self, request: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let response = self
            .groups
            .borrow_mut()
            .classic
            .leave(request, version, self.now_ms());
        self.collect_dirty();
        self.deadlines_changed();
        match self.settled(request.group_id.as_str()).await {
            Err(code) if response.error_code == error_code::NONE => {
                LeaveGroupResponse::default().with_error_code(code)
            }
            _ => response,
        }
    }

    /// ConsumerGroupHeartbeat. A classic group with members answers GROUP_ID_NOT_FOUND (as
    /// Kafka does when it cannot convert the group); an empty classic group is replaced.
    pub async fn consumer_heartbeat(
        &self,
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
        client: ClientInfo,
    ) -> ConsumerGroupHeartbeatResponse {
        self.consumer_groups_seen.set(true);
        {
            let mut groups = self.groups.borrow_mut();
            let group_id = request.group_id.as_str();
            if groups.classic.contains(group_id) {
                if !groups.classic.is_empty(group_id) {
                    return ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(error_code::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Group {group_id} is not a consumer group."
                        ))));
                }
                let _ = groups.classic.delete(group_id);
            }
        }
        let missing_name = request
            .subscribed_topic_names
            .as_ref()
            .is_some_and(|names| {
                let topics = self.topics.borrow();
                names
                    .iter()
                    .any(|name| topics.view.by_name(name.as_str()).is_none())
            });
        self.refresh_topics(missing_name).await;
        let response = {
            let topics = self.topics.borrow();
            self.groups.borrow_mut().consumer.heartbeat_from(
                &request,
                version,
                &client,
                &topics.view,
                self.now_ms(),
            )
        };
        self.collect_dirty();
        self.deadlines_changed();
        match self.settled(request.group_id.as_str()).await {
            Err(code) if response.error_code == error_code::NONE => {
                ConsumerGroupHeartbeatResponse::default().with_error_code(code)
            }
            _ => response,
        }
    }

    /// ConsumerGroupDescribe of one group (GROUP_ID_NOT_FOUND for a classic or unknown one).
    pub async fn consumer_describe(
        &self,
        group_id: &str,
        include_authorized_operations: bool,
    ) -> ConsumerDescribedGroup {
        self.refresh_topics(false).await;
        let topics = self.topics.borrow();
        self.groups.borrow().consumer.describe(
            group_id,
            &topics.view,
            include_authorized_operations,
        )
    }

    /// DescribeGroups of one group, as Kafka after a restart: a group only the metadata state
    /// knows (it has committed offsets) is an Empty classic group with protocol type "".
    pub async fn describe(
        &self,
        group_id: &str,
        version: i16,
        include_authorized_operations: bool,
    ) -> DescribedGroup {
        let (described, in_memory, is_consumer) = {
            let groups = self.groups.borrow();
            (
                groups.classic.describe(group_id, version),
                groups.classic.contains(group_id),
                groups.consumer.contains(group_id),
            )
        };
        let mut described = if in_memory {
            described
        } else if is_consumer {
            // Kafka's `classicGroup()` refuses a group of the other type.
            if version >= 6 {
                described.with_error_message(Some(StrBytes::from_string(format!(
                    "Group {group_id} is not a classic group."
                ))))
            } else {
                described
            }
        } else {
            match self.has_offsets(group_id).await {
                Ok(true) => described
                    .with_error_code(error_code::NONE)
                    .with_error_message(None)
                    .with_group_state(StrBytes::from_static_str("Empty")),
                Ok(false) => described,
                Err(code) => described.with_error_code(code),
            }
        };
        if include_authorized_operations && version >= 3 {
            described.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
        }
        described
    }

    /// Every group this core holds in memory.
    pub fn list(&self) -> CoreGroupList {
        let groups = self.groups.borrow();
        CoreGroupList {
            classic: groups.classic.list(),
            consumer: groups.consumer.list(),
        }
    }

    /// DeleteGroups for the groups this core owns: NON_EMPTY_GROUP while a group has members,
    /// GROUP_ID_NOT_FOUND when neither this core nor the metadata state knows it; otherwise its
    /// committed offsets are deleted durably (one `DeleteGroups` command for all of them) and
    /// the group is forgotten.
    pub async fn delete_groups(&self, group_ids: Vec<String>) -> Vec<(String, i16)> {
        let mut outcomes: Vec<(String, i16)> = Vec::with_capacity(group_ids.len());
        let mut candidates: Vec<(usize, bool)> = Vec::new();
        {
            let groups = self.groups.borrow();
            for group_id in group_ids {
                let code = if group_id.is_empty() {
                    Some(error_code::INVALID_GROUP_ID)
                } else if !groups.classic.is_empty(&group_id)
                    || !groups.consumer.is_empty(&group_id)
                {
                    Some(error_code::NON_EMPTY_GROUP)
                } else {
                    None
                };
                if code.is_none() {
                    let in_memory =
                        groups.classic.contains(&group_id) || groups.consumer.contains(&group_id);
                    candidates.push((outcomes.len(), in_memory));
                }
                outcomes.push((group_id, code.unwrap_or(error_code::NONE)));
            }
        }
        if candidates.is_empty() {
            return outcomes;
        }
        let names: Vec<String> = candidates
            .iter()
            .filter_map(|(index, _)| outcomes.get(*index).map(|(id, _)| id.clone()))
            .collect();
        let with_offsets = match self.groups_with_offsets(names).await {
            Ok(found) => found,
            Err(code) => {
                for (index, _) in &candidates {
                    if let Some(outcome) = outcomes.get_mut(*index) {
                        outcome.1 = code;
                    }
                }
                return outcomes;
            }
        };
        let mut durable_deletes = Vec::new();
        for ((index, in_memory), has_offsets) in candidates.iter().zip(&with_offsets) {
            let Some(outcome) = outcomes.get_mut(*index) else {
                continue;
            };
            if *has_offsets {
                durable_deletes.push(*index);
            } else if !in_memory {
                outcome.1 = error_code::GROUP_ID_NOT_FOUND;
            }
        }
        if !durable_deletes.is_empty() {
            let groups: Vec<String> = durable_deletes
                .iter()
                .filter_map(|index| outcomes.get(*index).map(|(id, _)| id.clone()))
                .collect();
            let code = match self
                .metadata
                .commands(vec![sluice_engine::metadata::Command::DeleteGroups {
                    groups,
                }])
                .await
            {
                Ok(results) => results
                    .into_iter()
                    .next()
                    .map_or(error_code::COORDINATOR_NOT_AVAILABLE, |result| {
                        command_code(&result)
                    }),
                Err(_) => error_code::COORDINATOR_NOT_AVAILABLE,
            };
            if code == error_code::NONE {
                self.forget_stored(&groups_deleted(&outcomes, &durable_deletes));
            } else {
                for index in durable_deletes {
                    if let Some(outcome) = outcomes.get_mut(index) {
                        outcome.1 = code;
                    }
                }
            }
        }
        let mut groups = self.groups.borrow_mut();
        for (index, _) in candidates {
            let Some((group_id, code)) = outcomes.get(index) else {
                continue;
            };
            if *code == error_code::NONE {
                // A member may have joined while the delete was being written: then the group
                // stays (its offsets are gone, as after Kafka's delete and a quick rejoin).
                let _ = groups.classic.delete(group_id);
                if groups.consumer.contains(group_id) {
                    let _ = groups.consumer.delete(group_id);
                }
            }
        }
        drop(groups);
        self.collect_dirty();
        outcomes
    }

    /// Topic names the group is subscribed to, for OffsetDelete: KIP-848 members' subscriptions,
    /// or a classic `consumer` group's members' (decoded from their protocol metadata). `None`
    /// means "cannot tell, treat every topic as subscribed" (a classic group with members
    /// between generations, whose metadata the state machine does not expose).
    pub(super) async fn subscribed_topics(
        &self,
        group_id: &str,
    ) -> Option<std::collections::BTreeSet<String>> {
        let is_consumer = self.groups.borrow().consumer.contains(group_id);
        if is_consumer {
            self.refresh_topics(false).await;
            let topics = self.topics.borrow();
            return Some(
                self.groups
                    .borrow()
                    .consumer
                    .subscribed_topics(group_id, &topics.view),
            );
        }
        let groups = self.groups.borrow();
        if groups.classic.is_empty(group_id) {
            return Some(std::collections::BTreeSet::new());
        }
        let described = groups.classic.describe(group_id, 5);
        if described.protocol_type.as_str() != "consumer" {
            return Some(std::collections::BTreeSet::new());
        }
        if described.group_state.as_str() != "Stable" {
            return None;
        }
        let mut topics = std::collections::BTreeSet::new();
        for member in &described.members {
            topics.extend(super::subscription::subscribed_topics(
                &member.member_metadata,
            )?);
        }
        Some(topics)
    }

    /// The protocol type of a classic group with members (`None` if absent or empty).
    pub(super) fn classic_protocol_type(&self, group_id: &str) -> Option<String> {
        let groups = self.groups.borrow();
        if groups.classic.is_empty(group_id) {
            return None;
        }
        Some(
            groups
                .classic
                .describe(group_id, 5)
                .protocol_type
                .to_string(),
        )
    }

    /// Re-reads the topic metadata when the view is stale (or `force`d, at most once per
    /// 100 ms), and tells the KIP-848 groups if it changed.
    async fn refresh_topics(&self, force: bool) {
        let now_ms = self.now_ms();
        let due = {
            let topics = self.topics.borrow();
            match topics.refreshed_at_ms {
                None => true,
                Some(at) => {
                    let age = now_ms.saturating_sub(at);
                    age >= TOPICS_REFRESH_MS || (force && age >= 100)
                }
            }
        };
        if !due {
            return;
        }
        let read = self
            .metadata
            .query(|state| {
                state
                    .topics()
                    .map(|(name, topic_id)| {
                        (
                            name.to_owned(),
                            topic_id.as_uuid(),
                            state.partition_count(topic_id).unwrap_or(0),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let Ok(topics) = read else {
            return;
        };
        let view = TopicsView::new(topics);
        let changed = {
            let mut cache = self.topics.borrow_mut();
            cache.refreshed_at_ms = Some(now_ms);
            let changed = cache.view.fingerprint() != view.fingerprint();
            cache.view = view;
            changed
        };
        if changed {
            let topics = self.topics.borrow();
            self.groups
                .borrow_mut()
                .consumer
                .topics_changed(&topics.view);
            drop(topics);
            self.collect_dirty();
            self.deadlines_changed();
        }
    }

    /// Runs both state machines' timers; keeps the KIP-848 topics fresh once this core has seen
    /// such a group (a topic that grows partitions is then noticed within a second or so).
    async fn tick(&self) {
        if self.consumer_groups_seen.get() {
            self.refresh_topics(false).await;
        }
        if self.now_ms() >= self.next_cleanup_ms.get() {
            self.next_cleanup_ms
                .set(self.now_ms().saturating_add(self.cleanup_interval_ms));
            self.clean_up_groups().await;
        }
        let now_ms = self.now_ms();
        {
            let topics = self.topics.borrow();
            let mut groups = self.groups.borrow_mut();
            groups.classic.tick(now_ms);
            groups.consumer.tick(now_ms, &topics.view);
        }
        self.collect_dirty();
    }

    /// Kafka's periodic group cleanup (`offsets.retention.check.interval.ms`): reads which of
    /// this core's groups have committed offsets and when each last committed, forgets the groups
    /// that have neither members nor offsets (ListGroups stops showing them; a later join starts
    /// again at generation 1), and deletes the offsets of groups that have been without members
    /// for the retention ([`Self::expire_offsets`]). A failed read leaves everything for the next
    /// round.
    async fn clean_up_groups(&self) {
        let (index, cores) = (self.core_index, self.core_count);
        *self.committed_during_cleanup.borrow_mut() = Some(HashSet::new());
        let Ok(owned) = self
            .metadata
            .query(move |state| {
                state
                    .offset_groups()
                    .filter(|group_id| super::router::owner_core(group_id, cores) == index)
                    .map(|group_id| {
                        let newest = state
                            .committed_offsets(group_id)
                            .map(|(_, offset)| offset.commit_timestamp_ms)
                            .max()
                            .unwrap_or(i64::MIN);
                        (group_id.to_owned(), newest)
                    })
                    .collect::<Vec<(String, i64)>>()
            })
            .await
        else {
            *self.committed_during_cleanup.borrow_mut() = None;
            return;
        };
        self.forget_empty_groups(&owned);
        self.expire_offsets(owned).await;
    }

    /// Forgets every group of this core that has no members and is not in `with_offsets`.
    fn forget_empty_groups(&self, with_offsets: &[(String, i64)]) {
        let with_offsets: HashSet<&str> = with_offsets.iter().map(|(id, _)| id.as_str()).collect();
        let mut groups = self.groups.borrow_mut();
        let mut candidates = groups.classic.empty_group_ids();
        candidates.extend(groups.consumer.empty_group_ids());
        let mut forgotten = 0_usize;
        for group_id in candidates {
            if !with_offsets.contains(group_id.as_str())
                && (groups.classic.forget_if_empty(&group_id)
                    || groups.consumer.forget_if_empty(&group_id))
            {
                forgotten += 1;
            }
        }
        drop(groups);
        self.collect_dirty();
        if forgotten > 0 {
            tracing::debug!(forgotten, "forgot empty groups without committed offsets");
        }
    }

    /// The timer task of this core (runs until the executor stops).
    pub async fn run_timer(self: std::rc::Rc<Self>) {
        loop {
            self.tick().await;
            let now_ms = self.now_ms();
            let idle_until = now_ms.saturating_add(TIMER_IDLE_MS);
            let wake_at = self
                .groups
                .borrow()
                .next_deadline_ms()
                .map_or(idle_until, |deadline| deadline.min(idle_until));
            self.timer.scheduled_ms.set(Some(wake_at));
            let sleep =
                glommio::timer::sleep(Duration::from_millis(wake_at.saturating_sub(now_ms))).fuse();
            let woken = self.timer.wait().fuse();
            futures::pin_mut!(sleep, woken);
            futures::select_biased! {
                () = woken => {},
                () = sleep => {},
            }
            self.timer.scheduled_ms.set(None);
        }
    }
}

/// The ids of `outcomes` at `indexes`.
fn groups_deleted(outcomes: &[(String, i16)], indexes: &[usize]) -> Vec<String> {
    indexes
        .iter()
        .filter_map(|index| outcomes.get(*index).map(|(id, _)| id.clone()))
        .collect()
}

/// The Kafka code of a durable command's outcome, as the group coordinator answers it: the log's
/// retriable failures become coordinator errors the clients retry on (Kafka's
/// `CoordinatorOperationExceptionHelper`: REQUEST_TIMED_OUT → COORDINATOR_NOT_AVAILABLE,
/// NOT_LEADER_OR_FOLLOWER and KAFKA_STORAGE_ERROR → NOT_COORDINATOR).
pub(super) fn command_code(result: &Result<(), CommandFailure>) -> i16 {
    match result {
        Ok(()) => error_code::NONE,
        Err(CommandFailure::LogFailed { code, .. }) => coordinator_code(*code),
        Err(CommandFailure::Rejected(error)) => coordinator_code(error.kafka_error_code()),
    }
}

/// Kafka's mapping of storage errors to coordinator errors.
pub(super) fn coordinator_code(code: i16) -> i16 {
    // UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS.
    const UNAVAILABLE: [i16; 3] = [3, 7, 19];
    // NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR.
    const NOT_COORDINATOR: [i16; 2] = [6, 56];
    // MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_FETCH_SIZE.
    const UNKNOWN: [i16; 3] = [10, 18, 4];
    if UNAVAILABLE.contains(&code) {
        error_code::COORDINATOR_NOT_AVAILABLE
    } else if NOT_COORDINATOR.contains(&code) {
        error_code::NOT_COORDINATOR
    } else if UNKNOWN.contains(&code) {
        error_code::UNKNOWN_SERVER_ERROR
    } else {
        code
    }
}
