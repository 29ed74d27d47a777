//! Consumer groups across an agent restart on the same store (docs/groups.md): a classic group
//! and a KIP-848 group come back with the same generation or epochs, members and assignments;
//! their members heartbeat and commit without rejoining, each with a full session from the
//! restart; a member whose session really ran out is removed and told to rejoin
//! (UNKNOWN_MEMBER_ID, never GROUP_ID_NOT_FOUND); a deleted group stays deleted; and heartbeats
//! cost no PUT while changes do.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{CountingStore, RawClient, TestAgent, topic_name};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::store::{ObjectStorage, StoreConfig, open_store};
use uuid::Uuid;

const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// How long a test waits for an event (a session expiring) before it fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group(value: &str) -> GroupId {
    GroupId(text(value))
}

/// A `ConsumerProtocolSubscription` v0 for `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    bytes.put_i32(topics.len() as i32);
    for topic in topics {
        bytes.put_i16(topic.len() as i16);
        bytes.put_slice(topic.as_bytes());
    }
    bytes.put_i32(-1);
    bytes.freeze()
}

/// A local store every start of the test's agent shares: a restart is a new agent with a fresh
/// data directory on the same bucket.
struct Bucket {
    _dir: tempfile::TempDir,
    url: String,
}

impl Bucket {
    fn new() -> Bucket {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}?fsync=false", dir.path().display());
        Bucket { _dir: dir, url }
    }

    fn start(&self, configure: impl Fn(&mut sluice_server::Config)) -> TestAgent {
        let url = self.url.clone();
        common::start_agent(move |config| {
            config.store = Some(url);
            config.group_initial_rebalance_delay_ms = 0;
            config.group_min_session_timeout_ms = 1_000;
            configure(config);
        })
    }
}

fn join_request(group_id: &str, member_id: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(&["events"])),
        ])
}

/// JoinGroup v9 without a member id: the id the agent hands out (MEMBER_ID_REQUIRED).
fn member_id(client: &mut RawClient, group_id: &str, session_timeout_ms: i32) -> String {
    let first: JoinGroupResponse = client.call(
        ApiKey::JoinGroup,
        9,
        &join_request(group_id, "", session_timeout_ms),
    );
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED, "{first:?}");
    first.member_id.to_string()
}

fn sync(
    client: &mut RawClient,
    group_id: &str,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupResponse {
    client.call(
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(generation)
            .with_member_id(text(member_id))
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(text(member))
                            .with_assignment(Bytes::from_static(assignment))
                    })
                    .collect(),
            ),
    )
}

fn heartbeat(client: &mut RawClient, group_id: &str, member_id: &str, generation: i32) -> i16 {
    let response: HeartbeatResponse = client.call(
        ApiKey::Heartbeat,
        4,
        &HeartbeatRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(generation)
            .with_member_id(text(member_id)),
    );
    response.error_code
}

/// OffsetCommit v9 of one offset of `events`; the partition's error code.
fn commit(
    client: &mut RawClient,
    group_id: &str,
    generation_or_epoch: i32,
    member_id: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation_or_epoch)
        .with_member_id(text(member_id))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("events"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset),
                ]),
        ]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 9, &request);
    response.topics[0].partitions[0].error_code
}

fn describe(client: &mut RawClient, group_id: &str) -> DescribeGroupsResponse {
    client.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![group(group_id)]),
    )
}

/// Two members in generation 2 of a classic group: `(leader, follower)`.
fn two_member_group(
    leader_client: &mut RawClient,
    follower_client: &mut RawClient,
    group_id: &str,
    follower_session_ms: i32,
) -> (String, String) {
    let leader = member_id(leader_client, group_id, 10_000);
    let joined: JoinGroupResponse = leader_client.call(
        ApiKey::JoinGroup,
        9,
        &join_request(group_id, &leader, 10_000),
    );
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let synced = sync(leader_client, group_id, &leader, 1, &[(&leader, b"all")]);
    assert_eq!(synced.error_code, 0);
    // The second member's join starts generation 2; the leader learns it from its heartbeat.
    let follower = member_id(follower_client, group_id, follower_session_ms);
    let follower_join = follower_client.send(
        ApiKey::JoinGroup,
        9,
        &join_request(group_id, &follower, follower_session_ms),
    );
    heartbeat_until_rebalance(leader_client, group_id, &leader, 1);
    let rejoined: JoinGroupResponse = leader_client.call(
        ApiKey::JoinGroup,
        9,
        &join_request(group_id, &leader, 10_000),
    );
    let joined: JoinGroupResponse = follower_client.receive(ApiKey::JoinGroup, 9, follower_join);
    assert_eq!((rejoined.error_code, rejoined.generation_id), (0, 2));
    assert_eq!((joined.error_code, joined.generation_id), (0, 2));
    assert_eq!(rejoined.leader.as_str(), leader);
    let follower_sync = follower_client.send(
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(2)
            .with_member_id(text(&follower)),
    );
    let synced = sync(
        leader_client,
        group_id,
        &leader,
        2,
        &[(&leader, b"first-half"), (&follower, b"second-half")],
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment.as_ref(), b"first-half");
    let synced: SyncGroupResponse = follower_client.receive(ApiKey::SyncGroup, 5, follower_sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment.as_ref(), b"second-half");
    (leader, follower)
}

/// Heartbeats `member` until its group rebalances (a session of another member expired).
fn heartbeat_until_rebalance(
    client: &mut RawClient,
    group_id: &str,
    member: &str,
    generation: i32,
) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        match heartbeat(client, group_id, member, generation) {
            0 => {}
            REBALANCE_IN_PROGRESS => return,
            other => panic!("heartbeat answered {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "no rebalance within {EVENT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_classic_group_resumes_at_its_generation_and_only_expired_members_rejoin() {
    let bucket = Bucket::new();
    let agent = bucket.start(|_| {});
    agent.create_topic("events", 2);
    let mut leader_client = RawClient::connect(agent.addr());
    let mut follower_client = RawClient::connect(agent.addr());
    let follower_session_ms = 3_000;
    let (leader, follower) = two_member_group(
        &mut leader_client,
        &mut follower_client,
        "g",
        follower_session_ms,
    );
    assert_eq!(commit(&mut leader_client, "g", 2, &leader, 0, 10), 0);
    drop((leader_client, follower_client));
    drop(agent);
    // Down for longer than the follower's session: after the restart it still has a full one.
    std::thread::sleep(Duration::from_millis(
        u64::try_from(follower_session_ms).unwrap() + 500,
    ));

    let agent = bucket.start(|_| {});
    let mut leader_client = RawClient::connect(agent.addr());
    let mut follower_client = RawClient::connect(agent.addr());
    assert_eq!(heartbeat(&mut follower_client, "g", &follower, 2), 0);
    assert_eq!(heartbeat(&mut leader_client, "g", &leader, 2), 0);
    assert_eq!(commit(&mut follower_client, "g", 2, &follower, 1, 20), 0);
    let described = describe(&mut leader_client, "g");
    let described = &described.groups[0];
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "range");
    let members: BTreeSet<(String, Vec<u8>)> = described
        .members
        .iter()
        .map(|member| {
            (
                member.member_id.to_string(),
                member.member_assignment.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        members,
        BTreeSet::from([
            (leader.clone(), b"first-half".to_vec()),
            (follower.clone(), b"second-half".to_vec())
        ])
    );
    // A follower that rejoins with the same metadata (a lost response) stays in generation 2.
    let rejoined: JoinGroupResponse = follower_client.call(
        ApiKey::JoinGroup,
        9,
        &join_request("g", &follower, follower_session_ms),
    );
    assert_eq!((rejoined.error_code, rejoined.generation_id), (0, 2));
    assert_eq!(rejoined.leader.as_str(), leader);
    let synced = sync(&mut follower_client, "g", &follower, 2, &[]);
    assert_eq!(synced.assignment.as_ref(), b"second-half");

    // The follower goes silent: its session expires and the group rebalances without it.
    heartbeat_until_rebalance(&mut leader_client, "g", &leader, 2);
    assert_eq!(
        heartbeat(&mut follower_client, "g", &follower, 2),
        UNKNOWN_MEMBER_ID
    );
    let refused = commit(&mut follower_client, "g", 2, &follower, 1, 30);
    assert_eq!(
        refused, UNKNOWN_MEMBER_ID,
        "never GROUP_ID_NOT_FOUND ({GROUP_ID_NOT_FOUND})"
    );
    let rejoined: JoinGroupResponse =
        leader_client.call(ApiKey::JoinGroup, 9, &join_request("g", &leader, 10_000));
    assert_eq!((rejoined.error_code, rejoined.generation_id), (0, 3));
    assert_eq!(rejoined.members.len(), 1);
}

fn consumer_heartbeat(
    group_id: &str,
    member_id: &str,
    epoch: i32,
    owned: Option<(Uuid, &[i32])>,
) -> ConsumerGroupHeartbeatRequest {
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(text(member_id))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    let request = if epoch == 0 {
        request
            .with_subscribed_topic_names(Some(vec![topic_name("events")]))
            .with_topic_partitions(Some(vec![]))
    } else {
        request
    };
    match owned {
        Some((topic_id, partitions)) => request.with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions.to_vec()),
        ])),
        None => request,
    }
}

/// A KIP-848 member as a client keeps it: its epoch and the partitions it owns.
struct Kip848Member {
    id: String,
    epoch: i32,
    owned: Vec<i32>,
    topic_id: Uuid,
}

impl Kip848Member {
    fn join(client: &mut RawClient, group_id: &str) -> Kip848Member {
        let id = Uuid::new_v4().to_string();
        let response: ConsumerGroupHeartbeatResponse = client.call(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            &consumer_heartbeat(group_id, &id, 0, None),
        );
        assert_eq!(response.error_code, 0, "{response:?}");
        let mut member = Kip848Member {
            id,
            epoch: 0,
            owned: Vec::new(),
            topic_id: Uuid::nil(),
        };
        member.absorb(&response);
        member
    }

    fn absorb(&mut self, response: &ConsumerGroupHeartbeatResponse) {
        self.epoch = response.member_epoch;
        if let Some(assignment) = &response.assignment {
            self.owned = assignment
                .topic_partitions
                .iter()
                .flat_map(|topic| {
                    self.topic_id = topic.topic_id;
                    topic.partitions.iter().copied()
                })
                .collect();
            self.owned.sort_unstable();
        }
    }

    /// One heartbeat reporting what it owns; the response's error code.
    fn heartbeat(&mut self, client: &mut RawClient, group_id: &str) -> i16 {
        let owned = (self.topic_id != Uuid::nil()).then_some((self.topic_id, &self.owned[..]));
        let response: ConsumerGroupHeartbeatResponse = client.call(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            &consumer_heartbeat(group_id, &self.id, self.epoch, owned),
        );
        if response.error_code == 0 {
            self.absorb(&response);
        }
        response.error_code
    }
}

fn consumer_describe(client: &mut RawClient, group_id: &str) -> ConsumerGroupDescribeResponse {
    client.call(
        ApiKey::ConsumerGroupDescribe,
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group(group_id)]),
    )
}

/// What a KIP-848 group looks like from outside: `(group epoch, assignment epoch, [(member,
/// member epoch, partitions)])`.
type ConsumerView = (i32, i32, Vec<(String, i32, Vec<i32>)>);

/// The [`ConsumerView`] of a KIP-848 group.
fn consumer_view(client: &mut RawClient, group_id: &str) -> ConsumerView {
    let described = consumer_describe(client, group_id);
    let described = &described.groups[0];
    assert_eq!(described.error_code, 0, "{described:?}");
    let mut members: Vec<(String, i32, Vec<i32>)> = described
        .members
        .iter()
        .map(|member| {
            let mut partitions: Vec<i32> = member
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|topic| topic.partitions.iter().copied())
                .collect();
            partitions.sort_unstable();
            (
                member.member_id.to_string(),
                member.member_epoch,
                partitions,
            )
        })
        .collect();
    members.sort();
    (described.group_epoch, described.assignment_epoch, members)
}

#[test]
fn a_kip848_group_resumes_with_its_epochs_and_assignments() {
    let bucket = Bucket::new();
    let session_ms = 3_000;
    let configure = move |config: &mut sluice_server::Config| {
        config.group_consumer_session_timeout_ms = session_ms;
        config.group_consumer_heartbeat_interval_ms = 500;
    };
    let agent = bucket.start(configure);
    agent.create_topic("events", 4);
    let mut client_x = RawClient::connect(agent.addr());
    let mut client_y = RawClient::connect(agent.addr());
    let mut x = Kip848Member::join(&mut client_x, "modern");
    assert_eq!(x.owned, [0, 1, 2, 3]);
    let mut y = Kip848Member::join(&mut client_y, "modern");
    // Heartbeat both until each owns its share at the group's epoch.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        assert_eq!(x.heartbeat(&mut client_x, "modern"), 0);
        assert_eq!(y.heartbeat(&mut client_y, "modern"), 0);
        let (group_epoch, _, _) = consumer_view(&mut client_x, "modern");
        if x.epoch == group_epoch
            && y.epoch == group_epoch
            && x.owned.len() == 2
            && y.owned.len() == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not settle");
    }
    let before = consumer_view(&mut client_x, "modern");
    assert_eq!(
        commit(&mut client_x, "modern", x.epoch, &x.id, x.owned[0], 5),
        0
    );
    drop((client_x, client_y));
    drop(agent);
    std::thread::sleep(Duration::from_millis(
        u64::try_from(session_ms).unwrap() + 500,
    ));

    let agent = bucket.start(configure);
    let mut client_x = RawClient::connect(agent.addr());
    let mut client_y = RawClient::connect(agent.addr());
    assert_eq!(consumer_view(&mut client_x, "modern"), before);
    let (epoch_x, owned_x) = (x.epoch, x.owned.clone());
    assert_eq!(x.heartbeat(&mut client_x, "modern"), 0);
    assert_eq!(y.heartbeat(&mut client_y, "modern"), 0);
    assert_eq!((x.epoch, x.owned.clone()), (epoch_x, owned_x));
    assert_eq!(
        commit(&mut client_y, "modern", y.epoch, &y.id, y.owned[0], 7),
        0
    );
    assert_eq!(consumer_view(&mut client_x, "modern"), before);

    // y goes silent: after its session the group moves on without it, and x takes everything.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while x.owned.len() < 4 {
        assert_eq!(x.heartbeat(&mut client_x, "modern"), 0);
        assert!(Instant::now() < deadline, "y's partitions never came to x");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(x.epoch > before.0);
    assert_eq!(y.heartbeat(&mut client_y, "modern"), UNKNOWN_MEMBER_ID);
    assert_eq!(
        commit(&mut client_y, "modern", y.epoch, &y.id, 0, 9),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_deleted_group_stays_deleted_after_a_restart() {
    let bucket = Bucket::new();
    let agent = bucket.start(|_| {});
    agent.create_topic("events", 2);
    let mut client = RawClient::connect(agent.addr());
    let member = member_id(&mut client, "doomed", 10_000);
    let joined: JoinGroupResponse = client.call(
        ApiKey::JoinGroup,
        9,
        &join_request("doomed", &member, 10_000),
    );
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        sync(&mut client, "doomed", &member, 1, &[(&member, b"a")]).error_code,
        0
    );
    assert_eq!(commit(&mut client, "doomed", 1, &member, 0, 3), 0);
    let left: LeaveGroupResponse = client.call(
        ApiKey::LeaveGroup,
        3,
        &LeaveGroupRequest::default()
            .with_group_id(group("doomed"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text(&member)),
            ]),
    );
    assert_eq!(left.members[0].error_code, 0);
    let deleted: DeleteGroupsResponse = client.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![group("doomed")]),
    );
    assert_eq!(deleted.results[0].error_code, 0);
    drop(client);
    drop(agent);

    let agent = bucket.start(|_| {});
    let mut client = RawClient::connect(agent.addr());
    let described = describe(&mut client, "doomed");
    assert_eq!(described.groups[0].group_state.as_str(), "Dead");
    assert_eq!(
        heartbeat(&mut client, "doomed", &member, 1),
        UNKNOWN_MEMBER_ID
    );
}

/// Group state is written when it changes, never per heartbeat: a settled group costs no PUT
/// however long its members heartbeat; a member leaving costs one.
#[test]
fn heartbeats_write_nothing_and_changes_write_once() {
    let store_dir = tempfile::tempdir().unwrap();
    let inner = open_store(
        &StoreConfig::from_url(&format!(
            "file://{}?fsync=false",
            store_dir.path().display()
        ))
        .unwrap(),
    )
    .unwrap();
    let counting = CountingStore::wrap(inner);
    let store: Arc<dyn ObjectStorage> = counting.clone();
    let agent = common::start_agent_with_store(store, |config| {
        config.group_initial_rebalance_delay_ms = 0;
        config.group_min_session_timeout_ms = 1_000;
    });
    agent.create_topic("events", 2);
    let mut leader_client = RawClient::connect(agent.addr());
    let mut follower_client = RawClient::connect(agent.addr());
    let (leader, follower) =
        two_member_group(&mut leader_client, &mut follower_client, "quiet", 10_000);
    let puts_settled = counting.put_count();
    for _ in 0..50 {
        assert_eq!(heartbeat(&mut leader_client, "quiet", &leader, 2), 0);
        assert_eq!(heartbeat(&mut follower_client, "quiet", &follower, 2), 0);
    }
    assert_eq!(
        counting.put_count(),
        puts_settled,
        "100 heartbeats of a settled group wrote something"
    );
    let left: LeaveGroupResponse = follower_client.call(
        ApiKey::LeaveGroup,
        3,
        &LeaveGroupRequest::default()
            .with_group_id(group("quiet"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text(&follower)),
            ]),
    );
    assert_eq!(left.members[0].error_code, 0);
    // The leader's rejoin completes generation 3 alone; its SyncGroup stores it.
    heartbeat_until_rebalance(&mut leader_client, "quiet", &leader, 2);
    let rejoined: JoinGroupResponse = leader_client.call(
        ApiKey::JoinGroup,
        9,
        &join_request("quiet", &leader, 10_000),
    );
    assert_eq!(rejoined.generation_id, 3);
    let puts_before_sync = counting.put_count();
    assert_eq!(
        sync(
            &mut leader_client,
            "quiet",
            &leader,
            3,
            &[(&leader, b"all")]
        )
        .error_code,
        0
    );
    // The answer waited for the group's record: it is durable by now.
    assert_eq!(counting.put_count(), puts_before_sync + 1);
}
