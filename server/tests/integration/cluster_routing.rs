//! Two agents of one cluster (`--metadata`, one store, one PostgreSQL), in process: Metadata lists
//! both as brokers and both name the same leader for every partition (the client's zone when its
//! `client.id` says `sluice_az=ZONE`), FindCoordinator names the same coordinator on both, the
//! agent that does not coordinate a group answers its group requests with NOT_COORDINATOR, and
//! produces to one partition through both agents take offsets from one order.
//!
//! Waits are for events (a Metadata answer listing both agents), bounded by a deadline.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common;

use common::{
    RawClient, batch, create_topics_request, produce_request, produce_results, topic_name,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, JoinGroupRequest, JoinGroupResponse,
    MetadataRequest, MetadataResponse, ProduceResponse, ResponseHeader,
};
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_server::protocol::client_codec::{decode_response, encode_request};
use sluice_server::{Agent, Config};
use sluice_tests::postgres::TestPostgres;

const NOT_COORDINATOR: i16 = 16;
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(30);

fn start(url: &str, store_dir: &std::path::Path, agent_id: &str) -> (Agent, tempfile::TempDir) {
    common::start_cluster_agent(url, store_dir, agent_id, |_| {})
}

/// Metadata for `topics` with `client_id` (the zone rides in it).
fn metadata(client: &mut RawClient, client_id: &str, topics: &[&str]) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect(),
    ));
    let frame = encode_request(ApiKey::Metadata, 12, 1, Some(client_id), &request).unwrap();
    client.send_raw(&frame);
    let common::Reply::Frame(frame) = client.read_reply() else {
        panic!("agent closed the connection")
    };
    let (_, response): (ResponseHeader, MetadataResponse) =
        decode_response(frame, ApiKey::Metadata, 12).unwrap();
    response
}

fn wait_for_brokers(client: &mut RawClient, count: usize) -> MetadataResponse {
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    loop {
        let response = metadata(client, "raw-test-client", &[]);
        if response.brokers.len() == count {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "Metadata still lists {} brokers after {MEMBERSHIP_TIMEOUT:?}",
            response.brokers.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leaders(response: &MetadataResponse) -> Vec<i32> {
    response.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.leader_id.0)
        .collect()
}

fn coordinators(client: &mut RawClient, groups: &[String]) -> Vec<(i32, i32)> {
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from_string(g.clone()))
                .collect(),
        );
    let response: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 4, &request);
    response
        .coordinators
        .iter()
        .map(|coordinator| {
            assert_eq!(coordinator.error_code, 0);
            (coordinator.node_id.0, coordinator.port)
        })
        .collect()
}

#[test]
fn two_agents_agree_on_brokers_leaders_and_coordinators() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_routing") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(&postgres.url(), store_dir.path(), "a");
    let (b, _b_dir) = start(&postgres.url(), store_dir.path(), "b");
    let mut to_a = RawClient::connect(a.local_addr());
    let mut to_b = RawClient::connect(b.local_addr());
    let from_a = wait_for_brokers(&mut to_a, 2);
    let from_b = wait_for_brokers(&mut to_b, 2);
    assert_eq!(
        from_a.brokers, from_b.brokers,
        "the two agents list different brokers"
    );
    assert_eq!(from_a.cluster_id, from_b.cluster_id);
    let ports: BTreeSet<i32> = from_a.brokers.iter().map(|broker| broker.port).collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            i32::from(a.local_addr().port()),
            i32::from(b.local_addr().port())
        ])
    );
    let node_of = |port: u16| {
        from_a
            .brokers
            .iter()
            .find(|broker| broker.port == i32::from(port))
            .unwrap()
            .node_id
            .0
    };
    let (node_a, node_b) = (
        node_of(a.local_addr().port()),
        node_of(b.local_addr().port()),
    );

    // DescribeCluster (Admin.describeCluster, kafka-broker-api-versions, the metadata quorum
    // tool) lists the same brokers as Metadata on both agents, and each names itself controller.
    for (client, own) in [(&mut to_a, node_a), (&mut to_b, node_b)] {
        let described: DescribeClusterResponse = client.call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        );
        assert_eq!(described.error_code, 0);
        let mut listed: Vec<(i32, i32)> = described
            .brokers
            .iter()
            .map(|broker| (broker.broker_id.0, broker.port))
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<(i32, i32)> = from_a
            .brokers
            .iter()
            .map(|broker| (broker.node_id.0, broker.port))
            .collect();
        expected.sort_unstable();
        assert_eq!(
            listed, expected,
            "DescribeCluster names other brokers than Metadata"
        );
        assert_eq!(described.controller_id.0, own);
        assert_eq!(Some(described.cluster_id), from_a.cluster_id.clone());
    }

    // Leaders: the same on both agents, spread over both; in one zone for a client of that zone.
    let created: CreateTopicsResponse = to_a.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[("routed", 16)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let on_a = leaders(&metadata(&mut to_a, "raw-test-client", &["routed"]));
    // B learns of the topic when its tailer applies A's record.
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    let on_b = loop {
        let response = metadata(&mut to_b, "raw-test-client", &["routed"]);
        if response.topics[0].error_code == 0 {
            break leaders(&response);
        }
        assert!(
            Instant::now() < deadline,
            "B never learned of the topic A created"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(on_a.len(), 16);
    assert_eq!(on_a, on_b, "the agents name different leaders");
    assert_eq!(
        on_a.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([node_a, node_b]),
        "16 partitions all led by one agent"
    );
    for (client, zone, node) in [(&mut to_a, "a", node_a), (&mut to_b, "b", node_b)] {
        let in_zone = leaders(&metadata(
            client,
            &format!("app,sluice_az={zone}"),
            &["routed"],
        ));
        assert!(
            in_zone.iter().all(|leader| *leader == node),
            "zone {zone}: {in_zone:?}"
        );
    }

    // Coordinators: the same on both agents, spread over both.
    let groups: Vec<String> = (0..32).map(|group| format!("group-{group}")).collect();
    let by_a = coordinators(&mut to_a, &groups);
    assert_eq!(by_a, coordinators(&mut to_b, &groups));
    assert_eq!(
        by_a.iter().map(|(node, _)| *node).collect::<BTreeSet<_>>(),
        BTreeSet::from([node_a, node_b])
    );

    // A group B coordinates, joined through A: NOT_COORDINATOR; through B: a member id.
    let index = by_a.iter().position(|(node, _)| *node == node_b).unwrap();
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(groups[index].clone())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")),
        ]);
    let refused: JoinGroupResponse = to_a.call(ApiKey::JoinGroup, 9, &join);
    assert_eq!(refused.error_code, NOT_COORDINATOR);
    let accepted: JoinGroupResponse = to_b.call(ApiKey::JoinGroup, 9, &join);
    assert_ne!(accepted.error_code, NOT_COORDINATOR);

    // One partition, produced through both agents: offsets from one order.
    let mut offsets = Vec::new();
    for round in 0..4_i64 {
        let client = if round % 2 == 0 { &mut to_a } else { &mut to_b };
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &produce_request(-1, &[("routed", 3, batch(2, round))]),
        );
        let result = &produce_results(&response)[0];
        assert_eq!(result.2, 0, "produce {round}");
        offsets.push(result.3);
    }
    assert_eq!(offsets, vec![0, 2, 4, 6]);
    drop((to_a, to_b));
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}

#[test]
fn a_bucket_an_agent_used_alone_is_refused_by_a_cluster() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_routing refuses a used bucket")
    else {
        return;
    };
    let alone = common::start_agent(|_| {});
    alone.create_topic("alone", 1);
    let store_dir = alone.data_dir.as_ref().unwrap().path().join("store");
    let data_dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        io_memory_bytes: 64 * 1024,
        data_dir: data_dir.path().to_owned(),
        store: Some(format!("file://{}?fsync=false", store_dir.display())),
        metadata: Some(postgres.url()),
        ..Config::default()
    };
    let error = Agent::start(&config).unwrap_err().to_string();
    assert!(error.contains("without --metadata"), "{error}");
    drop(alone);
}

/// A classic group coordinated by B, Stable with one member; B stops; once A lists only itself it
/// coordinates the group and has taken over its stored state: the member's heartbeat with its
/// member id and generation is answered NONE, not UNKNOWN_MEMBER_ID.
#[test]
fn a_group_moves_with_its_state_when_its_coordinator_leaves() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_routing group hand-over") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(&postgres.url(), store_dir.path(), "a");
    let (b, _b_dir) = start(&postgres.url(), store_dir.path(), "b");
    let mut to_a = RawClient::connect(a.local_addr());
    let mut to_b = RawClient::connect(b.local_addr());
    wait_for_brokers(&mut to_a, 2);
    let from_b = wait_for_brokers(&mut to_b, 2);
    let node_b = from_b
        .brokers
        .iter()
        .find(|broker| broker.port == i32::from(b.local_addr().port()))
        .unwrap()
        .node_id
        .0;
    let groups: Vec<String> = (0..32).map(|group| format!("moving-{group}")).collect();
    let owners = coordinators(&mut to_a, &groups);
    let group = groups[owners.iter().position(|(node, _)| *node == node_b).unwrap()].clone();
    let group_id = GroupId(StrBytes::from_string(group.clone()));

    let join = JoinGroupRequest::default()
        .with_group_id(group_id.clone())
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")),
        ]);
    let joined: JoinGroupResponse = to_b.call(ApiKey::JoinGroup, 3, &join);
    assert_eq!(joined.error_code, 0);
    let member_id = joined.member_id.clone();
    let synced: SyncGroupResponse = to_b.call(
        ApiKey::SyncGroup,
        3,
        &SyncGroupRequest::default()
            .with_group_id(group_id.clone())
            .with_generation_id(joined.generation_id)
            .with_member_id(member_id.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(member_id.clone())
                    .with_assignment(bytes::Bytes::from_static(b"assignment")),
            ]),
    );
    assert_eq!(synced.error_code, 0);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group_id)
        .with_generation_id(joined.generation_id)
        .with_member_id(member_id);
    let answer: HeartbeatResponse = to_a.call(ApiKey::Heartbeat, 3, &heartbeat);
    assert_eq!(
        answer.error_code, NOT_COORDINATOR,
        "A answered for B's group"
    );

    drop(to_b);
    b.shutdown().unwrap();
    // B's lease runs out (3 s); A's next listing has A alone, and A's group cores take over.
    // The heartbeat goes out the moment A's Metadata lists A alone, as a member that found the
    // new coordinator at once would send it: A must not answer it (or any after it) before its
    // group core holds the group — UNKNOWN_MEMBER_ID would make the member rejoin.
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    while metadata(&mut to_a, "raw-test-client", &[]).brokers.len() != 1 {
        assert!(Instant::now() < deadline, "A still lists B");
        std::thread::sleep(Duration::from_millis(2));
    }
    loop {
        let answer: HeartbeatResponse = to_a.call(ApiKey::Heartbeat, 3, &heartbeat);
        if answer.error_code == 0 {
            break;
        }
        assert_eq!(
            answer.error_code, NOT_COORDINATOR,
            "A answered the member's heartbeat with {} after listing A alone",
            answer.error_code
        );
        assert!(
            Instant::now() < deadline,
            "A still answers {} for the group it took over",
            answer.error_code
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(to_a);
    a.shutdown().unwrap();
}
