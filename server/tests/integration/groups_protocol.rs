//! Consumer groups over the wire with the raw client codec: FindCoordinator, the classic
//! join/sync/heartbeat/commit/fetch cycle and its error codes (the Java broker's), simple
//! commits, OffsetDelete, DeleteGroups, ListGroups/DescribeGroups, KIP-848 heartbeats, committed
//! offsets and the group across a restart on a fresh data directory, offset commits riding one
//! window (one PUT), the group size limits, the cleanup of empty groups and the expiry of their offsets, and groups
//! spread over two network cores.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

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
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::store::{ObjectStorage, StoreConfig, open_store};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const STALE_MEMBER_EPOCH: i16 = 113;

/// One partition of an OffsetFetch answer: topic, partition, offset, leader epoch, metadata, error.
type FetchedRow = (String, i32, i64, i32, String, i16);

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group(value: &str) -> GroupId {
    GroupId(text(value))
}

/// Groups' first rebalance need not wait: tests join one member at a time.
fn start() -> TestAgent {
    common::start_agent(|config| config.group_initial_rebalance_delay_ms = 0)
}

/// A `ConsumerProtocolSubscription` v0 for `topics` (what Java and librdkafka send).
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

fn join_request(group_id: &str, member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// Joins as a new member with JoinGroup v9 (MEMBER_ID_REQUIRED first) and syncs as the leader
/// of a one-member group: `(member id, generation)`.
fn join_and_sync(client: &mut RawClient, group_id: &str, topics: &[&str]) -> (String, i32) {
    let first: JoinGroupResponse =
        client.call(ApiKey::JoinGroup, 9, &join_request(group_id, "", topics));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED, "{first:?}");
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("raw-test-client-"), "{member_id}");
    let joined: JoinGroupResponse = client.call(
        ApiKey::JoinGroup,
        9,
        &join_request(group_id, &member_id, topics),
    );
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader.as_str(), member_id, "a lone member leads");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_ref().unwrap().as_str(), "range");
    let generation = joined.generation_id;
    let synced: SyncGroupResponse = client.call(
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(group(group_id))
            .with_generation_id(generation)
            .with_member_id(text(&member_id))
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range")))
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(text(&member_id))
                    .with_assignment(Bytes::from_static(b"assignment-bytes")),
            ]),
    );
    assert_eq!(synced.error_code, 0, "{synced:?}");
    assert_eq!(synced.assignment.as_ref(), b"assignment-bytes");
    (member_id, generation)
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

fn commit_request(
    group_id: &str,
    generation: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64, &str)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in offsets {
        let entry = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(3)
            .with_committed_metadata(Some(text(metadata)));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(existing) => existing.partitions.push(entry),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(topics)
}

/// `(topic, partition, error code)` of a commit response, in response order.
fn commit_codes(response: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    response
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| (topic.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

fn commit(
    client: &mut RawClient,
    version: i16,
    request: &OffsetCommitRequest,
) -> Vec<(String, i32, i16)> {
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, version, request);
    commit_codes(&response)
}

/// OffsetFetch v8 of one group: `(topic, partition, offset, leader epoch, metadata, error)`, and
/// the group's error code. `topics` `None` asks for everything committed.
fn fetch(
    client: &mut RawClient,
    group_id: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Vec<FetchedRow>) {
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(group(group_id))
            .with_topics(topics.map(|topics| {
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name(name))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect()
            })),
    ]);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 8, &request);
    assert_eq!(response.groups.len(), 1);
    let fetched = &response.groups[0];
    assert_eq!(fetched.group_id.as_str(), group_id);
    let rows = fetched
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                (
                    topic.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_ref().map(ToString::to_string).unwrap(),
                    p.error_code,
                )
            })
        })
        .collect();
    (fetched.error_code, rows)
}

fn row(topic: &str, partition: i32, offset: i64, epoch: i32, metadata: &str) -> FetchedRow {
    (
        topic.to_owned(),
        partition,
        offset,
        epoch,
        metadata.to_owned(),
        0,
    )
}

fn delete_groups(client: &mut RawClient, groups: &[&str]) -> Vec<(String, i16)> {
    let response: DeleteGroupsResponse = client.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|g| group(g)).collect()),
    );
    response
        .results
        .iter()
        .map(|r| (r.group_id.to_string(), r.error_code))
        .collect()
}

fn list_groups(client: &mut RawClient, states: &[&str]) -> Vec<(String, String, String, String)> {
    let response: ListGroupsResponse = client.call(
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_states_filter(states.iter().map(|s| text(s)).collect()),
    );
    assert_eq!(response.error_code, 0);
    response
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect()
}

fn describe(client: &mut RawClient, group_id: &str) -> DescribeGroupsResponse {
    client.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![group(group_id)]),
    )
}

#[test]
fn find_coordinator_names_this_agent_for_groups_and_transactions() {
    let agent = start();
    let mut client = RawClient::connect(agent.addr());
    for version in 0..=3 {
        let request = FindCoordinatorRequest::default()
            .with_key(text("g"))
            .with_key_type(if version == 0 { 0 } else { 1 });
        let response: FindCoordinatorResponse =
            client.call(ApiKey::FindCoordinator, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.port, i32::from(agent.addr().port()));
        assert_eq!(response.host.as_str(), "127.0.0.1");
    }
    let batched = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![text("a"), text("b"), text("c")]);
    let response: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 6, &batched);
    assert_eq!(response.coordinators.len(), 3);
    for coordinator in &response.coordinators {
        assert_eq!(coordinator.error_code, 0);
        assert_eq!(coordinator.port, i32::from(agent.addr().port()));
    }
    let share = batched.with_key_type(2);
    let response: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 6, &share);
    assert!(
        response
            .coordinators
            .iter()
            .all(|c| c.error_code == INVALID_REQUEST)
    );
}

#[test]
fn classic_group_cycle_with_the_java_brokers_error_codes() {
    let agent = start();
    agent.create_topic("orders", 3);
    let mut client = RawClient::connect(agent.addr());
    let group_id = "billing";

    // A group that does not exist: heartbeat and sync are UNKNOWN_MEMBER_ID (Kafka 4's answer).
    assert_eq!(
        heartbeat(&mut client, group_id, "nobody", 1),
        UNKNOWN_MEMBER_ID
    );

    let (member, generation) = join_and_sync(&mut client, group_id, &["orders"]);
    assert_eq!(generation, 1);
    assert_eq!(heartbeat(&mut client, group_id, &member, generation), 0);
    assert_eq!(
        heartbeat(&mut client, group_id, &member, generation + 5),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut client, group_id, "someone-else", generation),
        UNKNOWN_MEMBER_ID
    );

    // Commits: the member's generation is accepted, a stale one is not.
    let offsets = [("orders", 0, 10, "m0"), ("orders", 2, 30, "")];
    let request = commit_request(group_id, generation, &member, &offsets);
    assert_eq!(
        commit(&mut client, 8, &request),
        [("orders".to_owned(), 0, 0), ("orders".to_owned(), 2, 0)]
    );
    let stale = commit_request(group_id, generation - 1, &member, &[("orders", 1, 5, "")]);
    assert_eq!(
        commit(&mut client, 8, &stale),
        [("orders".to_owned(), 1, ILLEGAL_GENERATION)]
    );
    let stranger = commit_request(group_id, generation, "stranger", &[("orders", 1, 5, "")]);
    assert_eq!(
        commit(&mut client, 9, &stranger),
        [("orders".to_owned(), 1, UNKNOWN_MEMBER_ID)]
    );
    // Unknown topic and partition are refused per partition; the rest of the request commits.
    let long_metadata = "x".repeat(5_000);
    let mixed = commit_request(
        group_id,
        generation,
        &member,
        &[
            ("orders", 1, 20, "m1"),
            ("orders", 7, 1, ""),
            ("nope", 0, 1, ""),
            ("orders", 1, 21, &long_metadata),
        ],
    );
    assert_eq!(
        commit(&mut client, 8, &mixed),
        [
            ("orders".to_owned(), 1, 0),
            ("orders".to_owned(), 7, UNKNOWN_TOPIC_OR_PARTITION),
            ("orders".to_owned(), 1, OFFSET_METADATA_TOO_LARGE),
            ("nope".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );

    // Fetch by partition (v8): never-committed partitions are -1 with metadata "".
    let (code, rows) = fetch(
        &mut client,
        group_id,
        Some(&[("orders", &[0, 1, 2]), ("other", &[0])]),
    );
    assert_eq!(code, 0);
    assert_eq!(
        rows,
        [
            row("orders", 0, 10, 3, "m0"),
            row("orders", 1, 20, 3, "m1"),
            row("orders", 2, 30, 3, ""),
            row("other", 0, -1, -1, ""),
        ]
    );
    // Everything committed (null topics), and the old single-group layout (v5).
    let (_, all) = fetch(&mut client, group_id, None);
    assert_eq!(all.len(), 3);
    let old: OffsetFetchResponse = client.call(
        ApiKey::OffsetFetch,
        5,
        &OffsetFetchRequest::default()
            .with_group_id(group(group_id))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partition_indexes(vec![2]),
            ])),
    );
    assert_eq!(old.error_code, 0);
    assert_eq!(old.topics[0].partitions[0].committed_offset, 30);

    // Describe and list see the Stable group with its member.
    let described = describe(&mut client, group_id);
    let described = &described.groups[0];
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "range");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id.as_str(), member);
    assert_eq!(described.members[0].client_id.as_str(), "raw-test-client");
    // The connection's address, written as the Java broker writes it.
    assert_eq!(described.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(
        list_groups(&mut client, &["stable"]),
        [(
            group_id.to_owned(),
            "consumer".to_owned(),
            "Stable".to_owned(),
            "classic".to_owned()
        )]
    );
    assert!(list_groups(&mut client, &["Empty"]).is_empty());

    // A group with members cannot be deleted; once the member leaves it can, offsets and all.
    assert_eq!(
        delete_groups(&mut client, &[group_id]),
        [(group_id.to_owned(), NON_EMPTY_GROUP)]
    );
    let left: LeaveGroupResponse = client.call(
        ApiKey::LeaveGroup,
        5,
        &LeaveGroupRequest::default()
            .with_group_id(group(group_id))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text(&member)),
            ]),
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        describe(&mut client, group_id).groups[0]
            .group_state
            .as_str(),
        "Empty"
    );
    assert_eq!(
        delete_groups(&mut client, &[group_id, "never-existed"]),
        [
            (group_id.to_owned(), 0),
            ("never-existed".to_owned(), GROUP_ID_NOT_FOUND)
        ]
    );
    let (_, after) = fetch(&mut client, group_id, None);
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(
        describe(&mut client, group_id).groups[0]
            .group_state
            .as_str(),
        "Dead"
    );
    assert!(list_groups(&mut client, &[]).is_empty());
}

#[test]
fn old_join_versions_join_directly() {
    let agent = start();
    let mut client = RawClient::connect(agent.addr());
    for version in 0..=3 {
        let group_id = format!("old-{version}");
        let joined: JoinGroupResponse = client.call(
            ApiKey::JoinGroup,
            version,
            &join_request(&group_id, "", &["t"]),
        );
        assert_eq!(joined.error_code, 0, "v{version}: {joined:?}");
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
    }
}

#[test]
fn simple_commits_offset_delete_and_subscribed_topics() {
    let agent = start();
    agent.create_topic("a", 2);
    agent.create_topic("b", 1);
    let mut client = RawClient::connect(agent.addr());

    // A commit with generation -1 and no member needs no group (admin tools, assign()).
    let simple = commit_request("simple", -1, "", &[("a", 0, 5, ""), ("b", 0, 7, "")]);
    assert!(
        commit(&mut client, 2, &simple)
            .iter()
            .all(|(_, _, code)| *code == 0)
    );
    // A positive generation for a group nobody knows: ILLEGAL_GENERATION before v9,
    // GROUP_ID_NOT_FOUND from v9 (Kafka's answers).
    let unknown = commit_request("unknown", 4, "m", &[("a", 0, 1, "")]);
    assert_eq!(commit(&mut client, 8, &unknown)[0].2, ILLEGAL_GENERATION);
    assert_eq!(commit(&mut client, 9, &unknown)[0].2, GROUP_ID_NOT_FOUND);
    // A group known only by its offsets lists as an Empty classic group.
    assert_eq!(
        list_groups(&mut client, &[]),
        [(
            "simple".to_owned(),
            String::new(),
            "Empty".to_owned(),
            "classic".to_owned()
        )]
    );

    let delete = |topics: &[(&str, &[i32])]| {
        OffsetDeleteRequest::default()
            .with_group_id(group("simple"))
            .with_topics(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteRequestPartition::default()
                                            .with_partition_index(*p)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    };
    let response: OffsetDeleteResponse = client.call(
        ApiKey::OffsetDelete,
        0,
        &delete(&[("a", &[0]), ("zzz", &[0])]),
    );
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        response.topics[1].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let (_, rows) = fetch(&mut client, "simple", None);
    assert_eq!(
        rows,
        [row("b", 0, 7, -1, "")],
        "v2 commits carry no leader epoch"
    );
    let unknown_group: OffsetDeleteResponse = client.call(
        ApiKey::OffsetDelete,
        0,
        &delete(&[("a", &[0])]).with_group_id(group("nobody")),
    );
    assert_eq!(unknown_group.error_code, GROUP_ID_NOT_FOUND);

    // A Stable consumer group subscribed to "b": its offsets of "b" stay, of "a" go.
    let (member, generation) = join_and_sync(&mut client, "simple", &["b"]);
    let codes = commit(
        &mut client,
        9,
        &commit_request("simple", generation, &member, &[("a", 1, 9, "")]),
    );
    assert_eq!(codes[0].2, 0);
    let response: OffsetDeleteResponse = client.call(
        ApiKey::OffsetDelete,
        0,
        &delete(&[("a", &[1]), ("b", &[0])]),
    );
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        response.topics[1].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );
    let (_, rows) = fetch(&mut client, "simple", None);
    assert_eq!(
        rows,
        [row("b", 0, 7, -1, "")],
        "v2 commits carry no leader epoch"
    );
}

#[test]
fn groups_and_committed_offsets_survive_a_restart_on_a_fresh_data_dir() {
    let store_dir = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}?fsync=false", store_dir.path().display());
    let url = store_url.clone();
    let agent = common::start_agent(move |config| {
        config.store = Some(url);
        config.group_initial_rebalance_delay_ms = 0;
    });
    agent.create_topic("events", 2);
    let mut client = RawClient::connect(agent.addr());
    let (member, generation) = join_and_sync(&mut client, "durable", &["events"]);
    let request = commit_request(
        "durable",
        generation,
        &member,
        &[("events", 0, 100, "zero"), ("events", 1, 200, "one")],
    );
    assert!(
        commit(&mut client, 9, &request)
            .iter()
            .all(|(_, _, code)| *code == 0)
    );
    drop(client);
    drop(agent);

    // Another data directory, the same bucket: what a replacement agent on a new machine sees.
    let url = store_url.clone();
    let agent = common::start_agent(move |config| config.store = Some(url));
    let mut client = RawClient::connect(agent.addr());
    let (code, rows) = fetch(&mut client, "durable", None);
    assert_eq!(code, 0);
    assert_eq!(
        rows,
        [
            row("events", 0, 100, 3, "zero"),
            row("events", 1, 200, 3, "one")
        ]
    );
    // The group itself was stored too: the member carries on at its generation, without
    // rejoining (docs/groups.md).
    let described = describe(&mut client, "durable");
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].protocol_type.as_str(), "consumer");
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(heartbeat(&mut client, "durable", &member, generation), 0);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    assert_eq!(
        list_groups(&mut client, &["Stable"]),
        [(
            "durable".to_owned(),
            "consumer".to_owned(),
            "Stable".to_owned(),
            "classic".to_owned()
        )]
    );
}

#[test]
fn offset_commits_of_one_window_share_one_put() {
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
    let window = Duration::from_millis(400);
    let agent = common::start_agent_with_store(store, |config| {
        config.flush_interval_ms = window.as_millis() as u64;
    });
    agent.create_topic("clicks", 4);
    let consumers = 40;
    let mut clients: Vec<RawClient> = (0..consumers)
        .map(|_| RawClient::connect(agent.addr()))
        .collect();
    let puts_before = counting.put_count();
    let started = Instant::now();
    let sent: Vec<i32> = clients
        .iter_mut()
        .enumerate()
        .map(|(index, client)| {
            let request = commit_request(
                &format!("consumer-{index}"),
                -1,
                "",
                &[("clicks", (index % 4) as i32, index as i64, "")],
            );
            client.send(ApiKey::OffsetCommit, 9, &request)
        })
        .collect();
    for (client, correlation_id) in clients.iter_mut().zip(sent) {
        let response: OffsetCommitResponse =
            client.receive(ApiKey::OffsetCommit, 9, correlation_id);
        assert_eq!(commit_codes(&response)[0].2, 0);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        counting.put_count() - puts_before,
        1,
        "{consumers} commits in one window are one log entry"
    );
    // Commits wait for the window's timer, unlike admin commands that seal it at once.
    assert!(
        elapsed >= window - Duration::from_millis(50),
        "answered after {elapsed:?}, before the window closed"
    );
    // And each is durable: a fresh read sees every one.
    let (_, rows) = fetch(&mut clients[0], "consumer-39", None);
    assert_eq!(rows, [row("clicks", 3, 39, 3, "")]);
}

#[test]
fn kip848_consumer_group_heartbeats_commits_and_conflicts() {
    let agent = start();
    agent.create_topic("events", 4);
    let mut client = RawClient::connect(agent.addr());
    let member_id = uuid::Uuid::new_v4().to_string();
    let heartbeat = |epoch: i32| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group("modern"))
            .with_member_id(text(&member_id))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(30_000)
    };
    let joined: ConsumerGroupHeartbeatResponse = client.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &heartbeat(0)
            .with_subscribed_topic_names(Some(vec![topic_name("events")]))
            .with_topic_partitions(Some(vec![])),
    );
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let epoch = joined.member_epoch;
    assert!(epoch >= 1);
    let assignment = joined.assignment.as_ref().unwrap();
    let owned: Vec<i32> = assignment.topic_partitions[0].partitions.clone();
    assert_eq!(owned.len(), 4, "a lone member gets every partition");
    let topic_id = assignment.topic_partitions[0].topic_id;
    // Acknowledge the assignment.
    let acked: ConsumerGroupHeartbeatResponse = client.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &heartbeat(epoch).with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(owned),
        ])),
    );
    assert_eq!(acked.error_code, 0, "{acked:?}");

    // OffsetCommit v9 carries the member epoch.
    let request = commit_request("modern", epoch, &member_id, &[("events", 1, 11, "")]);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    let stale = commit_request("modern", epoch + 7, &member_id, &[("events", 1, 12, "")]);
    assert_eq!(commit(&mut client, 9, &stale)[0].2, STALE_MEMBER_EPOCH);
    // OffsetFetch v9 checks the member too.
    let fetch_as = |member: &str, member_epoch: i32| {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group("modern"))
                .with_member_id(Some(text(member)))
                .with_member_epoch(member_epoch)
                .with_topics(None),
        ])
    };
    let fetched: OffsetFetchResponse =
        client.call(ApiKey::OffsetFetch, 9, &fetch_as(&member_id, epoch));
    assert_eq!(fetched.groups[0].error_code, 0);
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        11
    );
    let fetched: OffsetFetchResponse =
        client.call(ApiKey::OffsetFetch, 9, &fetch_as(&member_id, epoch + 3));
    assert_eq!(fetched.groups[0].error_code, STALE_MEMBER_EPOCH);

    let described: ConsumerGroupDescribeResponse = client.call(
        ApiKey::ConsumerGroupDescribe,
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group("modern")]),
    );
    let described = &described.groups[0];
    assert_eq!(described.error_code, 0, "{described:?}");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id.as_str(), member_id);
    assert_eq!(described.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(
        described.members[0].assignment.topic_partitions[0]
            .partitions
            .len(),
        4
    );
    assert_eq!(
        list_groups(&mut client, &[]),
        [(
            "modern".to_owned(),
            "consumer".to_owned(),
            described.group_state.to_string(),
            "consumer".to_owned()
        )]
    );

    // The classic protocol cannot join a KIP-848 group with members, nor the reverse.
    let conflict: JoinGroupResponse = client.call(
        ApiKey::JoinGroup,
        9,
        &join_request("modern", "x", &["events"]),
    );
    assert_eq!(conflict.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let (_, _) = join_and_sync(&mut client, "classic-one", &["events"]);
    let refused: ConsumerGroupHeartbeatResponse = client.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &heartbeat(0)
            .with_group_id(group("classic-one"))
            .with_subscribed_topic_names(Some(vec![topic_name("events")]))
            .with_topic_partitions(Some(vec![])),
    );
    assert_eq!(refused.error_code, GROUP_ID_NOT_FOUND);

    // Leaving empties the group; then a classic member may take the id over.
    let left: ConsumerGroupHeartbeatResponse =
        client.call(ApiKey::ConsumerGroupHeartbeat, 1, &heartbeat(-1));
    assert_eq!(left.error_code, 0, "{left:?}");
    let (_, generation) = join_and_sync(&mut client, "modern", &["events"]);
    assert_eq!(generation, 1);
}

#[test]
fn group_max_size_settings_refuse_members_beyond_them() {
    let agent = common::start_agent(|config| {
        config.group_initial_rebalance_delay_ms = 0;
        config.group_max_size = 1;
        config.group_consumer_max_size = 1;
    });
    agent.create_topic("capped", 2);
    let mut first = RawClient::connect(agent.addr());
    let mut second = RawClient::connect(agent.addr());

    // Classic: a second member is refused before it gets a member id; the first still rejoins.
    let (member_id, generation) = join_and_sync(&mut first, "classic-capped", &["capped"]);
    let refused: JoinGroupResponse = second.call(
        ApiKey::JoinGroup,
        9,
        &join_request("classic-capped", "", &["capped"]),
    );
    assert_eq!(refused.error_code, GROUP_MAX_SIZE_REACHED, "{refused:?}");
    assert_eq!(
        heartbeat(&mut first, "classic-capped", &member_id, generation),
        0
    );
    let rejoined: JoinGroupResponse = first.call(
        ApiKey::JoinGroup,
        9,
        &join_request("classic-capped", &member_id, &["capped"]),
    );
    assert_eq!(rejoined.error_code, 0, "{rejoined:?}");
    assert_eq!(rejoined.members.len(), 1);

    // KIP-848: the same for a second member's first heartbeat.
    let join_848 = |member: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group("modern-capped"))
            .with_member_id(text(member))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![topic_name("capped")]))
            .with_topic_partitions(Some(vec![]))
    };
    let one = uuid::Uuid::new_v4().to_string();
    let joined: ConsumerGroupHeartbeatResponse =
        first.call(ApiKey::ConsumerGroupHeartbeat, 1, &join_848(&one));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let two = uuid::Uuid::new_v4().to_string();
    let refused: ConsumerGroupHeartbeatResponse =
        second.call(ApiKey::ConsumerGroupHeartbeat, 1, &join_848(&two));
    assert_eq!(refused.error_code, GROUP_MAX_SIZE_REACHED, "{refused:?}");
}

#[test]
fn empty_groups_without_offsets_are_forgotten_on_the_retention_check() {
    let agent = common::start_agent(|config| {
        config.group_initial_rebalance_delay_ms = 0;
        config.offsets_retention_check_interval_ms = 200;
    });
    agent.create_topic("brief", 1);
    let mut client = RawClient::connect(agent.addr());
    let leave = |client: &mut RawClient, group_id: &str, member: &str| {
        let left: LeaveGroupResponse = client.call(
            ApiKey::LeaveGroup,
            5,
            &LeaveGroupRequest::default()
                .with_group_id(group(group_id))
                .with_members(vec![MemberIdentity::default().with_member_id(text(member))]),
        );
        assert_eq!(left.error_code, 0, "{left:?}");
    };
    let (passing, _) = join_and_sync(&mut client, "passing", &["brief"]);
    let (keeping, generation) = join_and_sync(&mut client, "keeping", &["brief"]);
    let request = commit_request("keeping", generation, &keeping, &[("brief", 0, 5, "")]);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    // A group with a member is never forgotten.
    let (staying, staying_generation) = join_and_sync(&mut client, "staying", &["brief"]);
    leave(&mut client, "passing", &passing);
    leave(&mut client, "keeping", &keeping);
    // A KIP-848 group whose only member left.
    let modern_member = uuid::Uuid::new_v4().to_string();
    let modern = |epoch: i32| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group("modern-passing"))
            .with_member_id(text(&modern_member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![topic_name("brief")]))
            .with_topic_partitions(Some(vec![]))
    };
    let joined: ConsumerGroupHeartbeatResponse =
        client.call(ApiKey::ConsumerGroupHeartbeat, 1, &modern(0));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let left: ConsumerGroupHeartbeatResponse =
        client.call(ApiKey::ConsumerGroupHeartbeat, 1, &modern(-1));
    assert_eq!(left.error_code, 0, "{left:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Keeps the member's session alive however long this takes.
        assert_eq!(
            heartbeat(&mut client, "staying", &staying, staying_generation),
            0
        );
        let mut listed: Vec<(String, String)> = list_groups(&mut client, &[])
            .into_iter()
            .map(|(id, _, state, _)| (id, state))
            .collect();
        listed.sort();
        let expected = [
            ("keeping".to_owned(), "Empty".to_owned()),
            ("staying".to_owned(), "Stable".to_owned()),
        ];
        if listed == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the empty group without offsets is still listed: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        describe(&mut client, "passing").groups[0]
            .group_state
            .as_str(),
        "Dead"
    );
    let (_, rows) = fetch(&mut client, "keeping", None);
    assert_eq!(rows, [row("brief", 0, 5, 3, "")]);
    // The forgotten group starts again at generation 1.
    let (_, generation) = join_and_sync(&mut client, "passing", &["brief"]);
    assert_eq!(generation, 1);
}

#[test]
fn offsets_of_groups_without_members_expire_after_the_retention() {
    let retention = Duration::from_millis(1_500);
    let agent = common::start_agent(|config| {
        config.group_initial_rebalance_delay_ms = 0;
        config.offsets_retention_check_interval_ms = 200;
        config.offsets_retention_ms = 1_500;
        // Two cores when there are two CPUs: each expires only the groups it owns, so an
        // active group owned by the other core must never look empty to this one.
        if std::thread::available_parallelism().map_or(1, usize::from) >= 2 {
            config.cpus = Some(vec![0, 1]);
        }
    });
    agent.create_topic("kept", 1);
    let mut client = RawClient::connect(agent.addr());
    // A group that commits, stays past the retention, then leaves: its offsets expire once it
    // has been without members for the retention.
    let (leaving, generation) = join_and_sync(&mut client, "leaving", &["kept"]);
    let request = commit_request("leaving", generation, &leaving, &[("kept", 0, 7, "")]);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    // A group with a member keeps its offsets however old they get.
    let (active, active_generation) = join_and_sync(&mut client, "active", &["kept"]);
    let request = commit_request("active", active_generation, &active, &[("kept", 0, 8, "")]);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    // More groups with members, spread over the cores by their ids' hashes.
    let spread: Vec<(String, String, i32)> = (0..6)
        .map(|index| {
            let group_id = format!("active-{index}");
            let (member, generation) = join_and_sync(&mut client, &group_id, &["kept"]);
            let request = commit_request(&group_id, generation, &member, &[("kept", 0, 20, "")]);
            assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
            (group_id, member, generation)
        })
        .collect();
    // A simple consumer (no members, generation -1) that keeps committing keeps its offsets.
    let simple_commit = |client: &mut RawClient, offset: i64| {
        let request = commit_request("simple", -1, "", &[("kept", 0, offset, "")]);
        assert_eq!(commit(client, 9, &request)[0].2, 0);
    };
    simple_commit(&mut client, 1);
    let mut simple_offset = 1;
    // Past the retention with members: the commits are old, but nothing expires.
    let members_until = Instant::now() + retention + Duration::from_millis(500);
    // The groups that keep their members throughout, heartbeating; the simple consumer commits.
    let mut alive: Vec<(String, String, i32)> = spread.clone();
    alive.push(("active".to_owned(), active.clone(), active_generation));
    let keep_alive = |client: &mut RawClient, simple_offset: &mut i64| {
        for (group_id, member, generation) in &alive {
            assert_eq!(heartbeat(client, group_id, member, *generation), 0);
        }
        *simple_offset += 1;
        simple_commit(client, *simple_offset);
    };
    while Instant::now() < members_until {
        assert_eq!(heartbeat(&mut client, "leaving", &leaving, generation), 0);
        keep_alive(&mut client, &mut simple_offset);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        fetch(&mut client, "leaving", None).1,
        [row("kept", 0, 7, 3, "")]
    );
    let left: LeaveGroupResponse = client.call(
        ApiKey::LeaveGroup,
        5,
        &LeaveGroupRequest::default()
            .with_group_id(group("leaving"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text(&leaving)),
            ]),
    );
    assert_eq!(left.error_code, 0, "{left:?}");
    let left_at = Instant::now();

    let deadline = left_at + Duration::from_secs(20);
    loop {
        keep_alive(&mut client, &mut simple_offset);
        let (code, rows) = fetch(&mut client, "leaving", None);
        assert_eq!(code, 0);
        if rows.is_empty() {
            break;
        }
        assert_eq!(rows, [row("kept", 0, 7, 3, "")]);
        assert!(
            Instant::now() < deadline,
            "offsets of the empty group never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let expired_after = left_at.elapsed();
    assert!(
        expired_after >= retention,
        "expired after {expired_after:?}, before the retention of {retention:?}"
    );
    assert_eq!(
        fetch(&mut client, "active", None).1,
        [row("kept", 0, 8, 3, "")]
    );
    for (group_id, _, _) in &spread {
        assert_eq!(
            fetch(&mut client, group_id, None).1,
            [row("kept", 0, 20, 3, "")]
        );
    }
    assert_eq!(
        fetch(&mut client, "simple", None).1,
        [row("kept", 0, simple_offset, 3, "")]
    );
    assert!(
        list_groups(&mut client, &[])
            .iter()
            .all(|(id, ..)| id != "leaving"),
        "the expired group is still listed"
    );
    // The group can start over and commit again.
    let (member, generation) = join_and_sync(&mut client, "leaving", &["kept"]);
    let request = commit_request("leaving", generation, &member, &[("kept", 0, 9, "")]);
    assert_eq!(commit(&mut client, 9, &request)[0].2, 0);
    assert_eq!(
        fetch(&mut client, "leaving", None).1,
        [row("kept", 0, 9, 3, "")]
    );
}

#[test]
fn groups_spread_over_two_cores_answer_from_any_connection() {
    let online = std::thread::available_parallelism().map_or(1, usize::from);
    if online < 2 {
        sluice_tests::tools::skip_or_fail(&format!(
            "groups_spread_over_two_cores_answer_from_any_connection: needs two CPUs, {online} here"
        ));
        return;
    }
    let agent = common::start_agent(|config| {
        config.cpus = Some(vec![0, 1]);
        config.group_initial_rebalance_delay_ms = 0;
    });
    agent.create_topic("shared", 8);
    // Connections land on either core (SO_REUSEPORT); groups are owned by either core.
    let mut clients: Vec<RawClient> = (0..8).map(|_| RawClient::connect(agent.addr())).collect();
    let mut members = Vec::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let group_id = format!("spread-{index}");
        let (member, generation) = join_and_sync(client, &group_id, &["shared"]);
        let request = commit_request(
            &group_id,
            generation,
            &member,
            &[("shared", index as i32, 1_000 + index as i64, "")],
        );
        assert_eq!(commit(client, 9, &request)[0].2, 0);
        members.push((group_id, member, generation));
    }
    // Every connection reads every group, wherever it lives, and heartbeats reach the owner.
    for client in &mut clients {
        for (index, (group_id, member, generation)) in members.iter().enumerate() {
            let (_, rows) = fetch(client, group_id, None);
            assert_eq!(
                rows,
                [row("shared", index as i32, 1_000 + index as i64, 3, "")]
            );
            assert_eq!(heartbeat(client, group_id, member, *generation), 0);
        }
        assert_eq!(list_groups(client, &["Stable"]).len(), 8);
    }
}

#[test]
fn a_group_request_claiming_a_huge_array_closes_the_connection_only() {
    let agent = start();
    let mut client = RawClient::connect(agent.addr());
    // OffsetCommit v2 whose topic array claims i32::MAX entries.
    let mut body = vec![0, 1, b'g', 0, 0, 0, 1, 0, 0];
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    let header = sluice_server::protocol::client_codec::encode_request(
        ApiKey::OffsetCommit,
        2,
        1,
        Some("raw-test-client"),
        &OffsetCommitRequest::default(),
    )
    .unwrap();
    // After the size prefix: the 25 header bytes (client id "raw-test-client"), then the body.
    let mut frame = header[4..29].to_vec();
    frame.extend_from_slice(&body);
    let mut bytes = (frame.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    client.send_raw(&bytes);
    assert!(client.is_closed_by_agent());
    // The agent still serves.
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(heartbeat(&mut client, "g", "m", 1), UNKNOWN_MEMBER_ID);
}
