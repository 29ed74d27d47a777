//! Tests of the classic coordinator: each drives `ClassicGroups` with explicit `now_ms` the way
//! a client would and inspects the replies.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use bytes::Bytes;
use futures::channel::oneshot::Receiver;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::errors::*;
use super::{ClassicConfig, ClassicGroups, ListedClassicGroup};
use crate::groups::reply::Reply;

const GROUP: &str = "payments";
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: u64 = 3_000;
/// When the first rebalance of members that joined at 0 completes: the second member's arrival
/// during the initial delay extends it once.
const SETTLED_MS: u64 = 2 * DELAY_MS;

fn config() -> ClassicConfig {
    ClassicConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 1_800_000,
        max_size: None,
    }
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn join_request(
    member_id: &str,
    instance_id: Option<&str>,
    protocols: &[(&str, &[u8])],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance_id.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|(name, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(name))
                        .with_metadata(Bytes::copy_from_slice(metadata))
                })
                .collect(),
        )
}

fn range(metadata: &[u8]) -> Vec<(&'static str, &[u8])> {
    vec![("range", metadata)]
}

fn sync_request(
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(
            assignments
                .iter()
                .map(|(member, assignment)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(member))
                        .with_assignment(Bytes::copy_from_slice(assignment))
                })
                .collect(),
        )
}

fn heartbeat_request(member_id: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
}

fn now<T: std::fmt::Debug>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Later(_) => panic!("expected an immediate reply"),
    }
}

fn later<T>(reply: Reply<T>) -> Receiver<T> {
    match reply {
        Reply::Now(_) => panic!("expected a parked reply"),
        Reply::Later(receiver) => receiver,
    }
}

fn ready<T>(receiver: &mut Receiver<T>) -> T {
    receiver
        .try_recv()
        .expect("not canceled")
        .expect("answered")
}

fn waiting<T>(receiver: &mut Receiver<T>) -> bool {
    matches!(receiver.try_recv(), Ok(None))
}

/// The first JoinGroup (v5, no instance id) of a new client: MEMBER_ID_REQUIRED, then the join
/// with the given id, whose reply is returned.
fn join_dynamic(
    groups: &mut ClassicGroups,
    client: &str,
    metadata: &[u8],
    now_ms: u64,
) -> (String, Reply<JoinGroupResponse>) {
    let first = now(groups.join(
        &join_request("", None, &range(metadata)),
        5,
        client,
        "/10.0.0.1",
        now_ms,
    ));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member_id = first.member_id.to_string();
    let reply = groups.join(
        &join_request(&member_id, None, &range(metadata)),
        5,
        client,
        "/10.0.0.1",
        now_ms,
    );
    (member_id, reply)
}

fn heartbeat(groups: &mut ClassicGroups, member_id: &str, generation: i32, now_ms: u64) -> i16 {
    groups
        .heartbeat(&heartbeat_request(member_id, generation), 4, now_ms)
        .error_code
}

/// A Stable group of the given clients (dynamic members, joined at 0, completed by the initial
/// delay); returns their member ids (the first is the leader) and the generation.
fn stable_group(groups: &mut ClassicGroups, clients: &[&str]) -> (Vec<String>, i32, u64) {
    let mut ids = Vec::new();
    let mut receivers = Vec::new();
    for client in clients {
        let (id, reply) = join_dynamic(groups, client, client.as_bytes(), 0);
        ids.push(id);
        receivers.push(later(reply));
    }
    advance(groups, SETTLED_MS);
    let responses: Vec<JoinGroupResponse> = receivers.iter_mut().map(ready).collect();
    let leader = responses[0].leader.to_string();
    let generation = responses[0].generation_id;
    // Put the leader first.
    ids.sort_by_key(|id| *id != leader);
    let assignments: Vec<(String, Vec<u8>)> = ids
        .iter()
        .map(|id| (id.clone(), format!("assigned-{id}").into_bytes()))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = assignments
        .iter()
        .map(|(id, a)| (id.as_str(), a.as_slice()))
        .collect();
    let mut follower_syncs: Vec<Receiver<SyncGroupResponse>> = ids[1..]
        .iter()
        .map(|id| later(groups.sync(&sync_request(id, generation, &[]), 5, SETTLED_MS)))
        .collect();
    let leader_sync =
        now(groups.sync(&sync_request(&ids[0], generation, &borrowed), 5, SETTLED_MS));
    assert_eq!(leader_sync.error_code, NONE);
    for sync in &mut follower_syncs {
        assert_eq!(ready(sync).error_code, NONE);
    }
    (ids, generation, SETTLED_MS)
}

/// Heartbeats the given members every 3 s from `from_ms` to `to_ms` (exclusive), ticking at
/// each step; returns `to_ms`.
fn keep_alive(
    groups: &mut ClassicGroups,
    members: &[(&str, i32)],
    from_ms: u64,
    to_ms: u64,
) -> u64 {
    let mut time = from_ms;
    while time + 3_000 < to_ms {
        time += 3_000;
        for (member_id, generation) in members {
            heartbeat(groups, member_id, *generation, time);
        }
        advance(groups, time);
    }
    to_ms
}

/// Moves the clock to `to_ms` the way the owner core does: a tick at every deadline on the way.
fn advance(groups: &mut ClassicGroups, to_ms: u64) {
    while let Some(deadline_ms) = groups.next_deadline_ms().filter(|d| *d < to_ms) {
        groups.tick(deadline_ms);
    }
    groups.tick(to_ms);
}

fn state(groups: &ClassicGroups) -> String {
    groups.describe(GROUP, 5).group_state.to_string()
}

#[test]
fn error_codes_are_the_java_brokers() {
    use kafka_protocol::ResponseError as E;
    for (ours, theirs) in [
        (UNKNOWN_SERVER_ERROR, E::UnknownServerError),
        (ILLEGAL_GENERATION, E::IllegalGeneration),
        (INCONSISTENT_GROUP_PROTOCOL, E::InconsistentGroupProtocol),
        (INVALID_GROUP_ID, E::InvalidGroupId),
        (UNKNOWN_MEMBER_ID, E::UnknownMemberId),
        (INVALID_SESSION_TIMEOUT, E::InvalidSessionTimeout),
        (REBALANCE_IN_PROGRESS, E::RebalanceInProgress),
        (NON_EMPTY_GROUP, E::NonEmptyGroup),
        (GROUP_ID_NOT_FOUND, E::GroupIdNotFound),
        (MEMBER_ID_REQUIRED, E::MemberIdRequired),
        (GROUP_MAX_SIZE_REACHED, E::GroupMaxSizeReached),
        (FENCED_INSTANCE_ID, E::FencedInstanceId),
    ] {
        assert_eq!(ours, theirs.code(), "{theirs:?}");
    }
}

#[test]
fn v4_join_requires_a_member_id_then_completes_after_the_initial_delay() {
    let mut groups = ClassicGroups::new(config());
    let first = now(groups.join(
        &join_request("", None, &range(b"m")),
        4,
        "app-1",
        "/10.0.0.1",
        0,
    ));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("app-1-"), "{member_id}");
    assert_eq!(member_id.len(), "app-1-".len() + 36);
    // The pending id expires after the session timeout of the request.
    assert_eq!(groups.next_deadline_ms(), Some(SESSION_MS as u64));

    let mut reply = later(groups.join(
        &join_request(&member_id, None, &range(b"m")),
        4,
        "app-1",
        "/10.0.0.1",
        0,
    ));
    assert_eq!(state(&groups), "PreparingRebalance");
    advance(&mut groups, DELAY_MS - 1);
    assert!(waiting(&mut reply), "the initial delay has not passed");
    advance(&mut groups, DELAY_MS);
    let response = ready(&mut reply);
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader.as_str(), member_id);
    assert_eq!(response.member_id.as_str(), member_id);
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1);
    assert_eq!(response.members[0].metadata.as_ref(), b"m");
    assert_eq!(state(&groups), "CompletingRebalance");

    let sync = now(groups.sync(
        &sync_request(&member_id, 1, &[(&member_id, b"all")]),
        5,
        DELAY_MS,
    ));
    assert_eq!(sync.error_code, NONE);
    assert_eq!(sync.assignment.as_ref(), b"all");
    assert_eq!(sync.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(state(&groups), "Stable");
    assert_eq!(heartbeat(&mut groups, &member_id, 1, DELAY_MS + 1), NONE);
}

#[test]
fn v3_joins_without_a_member_id_round_trip() {
    let mut groups = ClassicGroups::new(config());
    let mut reply = later(groups.join(&join_request("", None, &range(b"m")), 3, "old", "h", 0));
    advance(&mut groups, DELAY_MS);
    let response = ready(&mut reply);
    assert_eq!(response.error_code, NONE);
    assert!(response.member_id.starts_with("old-"));
    assert_eq!(response.generation_id, 1);
}

#[test]
fn join_validation_errors() {
    let mut groups = ClassicGroups::new(config());
    let mut request = join_request("", None, &range(b"m"));
    request.group_id = GroupId(s(""));
    assert_eq!(
        now(groups.join(&request, 5, "c", "h", 0)).error_code,
        INVALID_GROUP_ID
    );

    for timeout in [5_999, 1_800_001] {
        let request = join_request("", None, &range(b"m")).with_session_timeout_ms(timeout);
        assert_eq!(
            now(groups.join(&request, 5, "c", "h", 0)).error_code,
            INVALID_SESSION_TIMEOUT
        );
    }
    // A member id for a group that does not exist.
    assert_eq!(
        now(groups.join(&join_request("ghost", None, &range(b"m")), 5, "c", "h", 0)).error_code,
        UNKNOWN_MEMBER_ID
    );
    // No protocols, or no protocol type: the group is not even created.
    assert_eq!(
        now(groups.join(&join_request("", None, &[]), 5, "c", "h", 0)).error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        now(groups.join(
            &join_request("", None, &range(b"m")).with_protocol_type(s("")),
            3,
            "c",
            "h",
            0
        ))
        .error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    assert!(!groups.contains(GROUP));

    let (ids, generation, t) = stable_group(&mut groups, &["a"]);
    // Another protocol type, or no protocol in common with the members.
    let other_type = join_request("", None, &range(b"m")).with_protocol_type(s("connect"));
    assert_eq!(
        now(groups.join(&other_type, 3, "c", "h", t)).error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let other_protocol = join_request("", None, &[("roundrobin", &b"m"[..])]);
    assert_eq!(
        now(groups.join(&other_protocol, 3, "c", "h", t)).error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    // An unknown member id in an existing group.
    assert_eq!(
        now(groups.join(&join_request("ghost", None, &range(b"m")), 5, "c", "h", t)).error_code,
        UNKNOWN_MEMBER_ID
    );
    // None of that disturbed the group.
    assert_eq!(state(&groups), "Stable");
    assert_eq!(heartbeat(&mut groups, &ids[0], generation, t), NONE);
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut groups = ClassicGroups::new(ClassicConfig {
        max_size: Some(2),
        ..config()
    });
    let (_, _, t) = stable_group(&mut groups, &["a", "b"]);
    let response = now(groups.join(&join_request("", None, &range(b"c")), 3, "c", "h", t));
    assert_eq!(response.error_code, GROUP_MAX_SIZE_REACHED);
    assert_eq!(state(&groups), "Stable");
    assert_eq!(groups.describe(GROUP, 5).members.len(), 2);
}

#[test]
fn the_initial_delay_is_extended_by_new_members_up_to_the_rebalance_timeout() {
    let mut groups = ClassicGroups::new(config());
    let short =
        |member: &str| join_request(member, None, &range(b"m")).with_rebalance_timeout_ms(5_000);
    let mut a = later(groups.join(&short(""), 3, "a", "h", 0));
    // A new member during the delay: at 3000 the delay is extended by min(3000, 5000 - 3000).
    let mut b = later(groups.join(&short(""), 3, "b", "h", 1_000));
    advance(&mut groups, 3_000);
    assert!(waiting(&mut a));
    assert_eq!(groups.next_deadline_ms(), Some(5_000));
    // Another new member: no time remains, so the phase completes at 5000 all the same.
    let mut c = later(groups.join(&short(""), 3, "c", "h", 4_000));
    advance(&mut groups, 4_999);
    assert!(waiting(&mut a));
    advance(&mut groups, 5_000);
    for reply in [&mut a, &mut b, &mut c] {
        let response = ready(reply);
        assert_eq!(response.error_code, NONE);
        assert_eq!(response.generation_id, 1);
    }
}

#[test]
fn without_new_members_the_initial_delay_is_not_extended() {
    let mut groups = ClassicGroups::new(config());
    let mut a = later(groups.join(&join_request("", None, &range(b"m")), 3, "a", "h", 0));
    advance(&mut groups, DELAY_MS);
    assert_eq!(ready(&mut a).generation_id, 1);
}

#[test]
fn the_leader_gets_every_members_metadata_and_followers_wait_for_its_assignment() {
    let mut groups = ClassicGroups::new(config());
    let (a, ra) = join_dynamic(&mut groups, "a", b"meta-a", 0);
    let (b, rb) = join_dynamic(&mut groups, "b", b"meta-b", 10);
    let (mut ra, mut rb) = (later(ra), later(rb));
    advance(&mut groups, SETTLED_MS);
    let (ja, jb) = (ready(&mut ra), ready(&mut rb));
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower, leader_join, follower_join) = if ja.leader.as_str() == a {
        (&a, &b, ja, jb)
    } else {
        (&b, &a, jb, ja)
    };
    let mut metadata: Vec<(String, Vec<u8>)> = leader_join
        .members
        .iter()
        .map(|member| (member.member_id.to_string(), member.metadata.to_vec()))
        .collect();
    metadata.sort();
    let mut expected = vec![
        (a.clone(), b"meta-a".to_vec()),
        (b.clone(), b"meta-b".to_vec()),
    ];
    expected.sort();
    assert_eq!(metadata, expected);
    assert!(follower_join.members.is_empty());
    assert_eq!(follower_join.generation_id, leader_join.generation_id);

    let generation = leader_join.generation_id;
    let mut follower_sync =
        later(groups.sync(&sync_request(follower, generation, &[]), 5, SETTLED_MS));
    // Heartbeats are fine while the leader is assigning.
    assert_eq!(
        heartbeat(&mut groups, follower, generation, SETTLED_MS),
        NONE
    );
    // A commit is not: the member has no assignment yet.
    assert_eq!(
        groups.check_commit(GROUP, generation, follower, None, SETTLED_MS),
        Err(REBALANCE_IN_PROGRESS)
    );
    let leader_sync = now(groups.sync(
        &sync_request(
            leader,
            generation,
            &[
                (leader, b"for-leader"),
                (follower, b"for-follower"),
                ("stranger", b"x"),
            ],
        ),
        5,
        SETTLED_MS + 5,
    ));
    assert_eq!(leader_sync.assignment.as_ref(), b"for-leader");
    assert_eq!(
        ready(&mut follower_sync).assignment.as_ref(),
        b"for-follower"
    );
    assert_eq!(state(&groups), "Stable");
    // A late SyncGroup in Stable gets the current assignment.
    let again = now(groups.sync(&sync_request(follower, generation, &[]), 5, SETTLED_MS + 6));
    assert_eq!(again.assignment.as_ref(), b"for-follower");
}

#[test]
fn the_protocol_is_the_one_all_members_support_that_most_prefer() {
    let mut groups = ClassicGroups::new(config());
    let mut replies = Vec::new();
    for protocols in [
        vec![("roundrobin", &b"1"[..]), ("range", b"1"), ("sticky", b"1")],
        vec![("sticky", &b"2"[..]), ("range", b"2"), ("roundrobin", b"2")],
        vec![("range", &b"3"[..]), ("sticky", b"3")],
    ] {
        replies.push(later(groups.join(
            &join_request("", None, &protocols),
            3,
            "c",
            "h",
            0,
        )));
    }
    advance(&mut groups, SETTLED_MS);
    // Candidates are range and sticky (the third member lacks roundrobin); the first member
    // votes range, the second sticky, the third range.
    for reply in &mut replies {
        assert_eq!(ready(reply).protocol_name.as_deref(), Some("range"));
    }
    // The leader receives each member's metadata for the chosen protocol.
}

#[test]
fn a_follower_rejoining_unchanged_while_stable_gets_the_current_generation_but_the_leader_rebalances()
 {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    let (leader, follower) = (&ids[0], &ids[1]);

    let response = now(groups.join(
        &join_request(follower, None, &range(b"b")),
        5,
        "b",
        "h",
        t + 1,
    ));
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.generation_id, generation);
    assert!(response.members.is_empty());
    assert_eq!(response.leader.as_str(), leader);
    assert_eq!(state(&groups), "Stable");

    // The leader rejoining with the same metadata starts a rebalance.
    let mut leader_join = later(groups.join(
        &join_request(leader, None, &range(b"a")),
        5,
        "a",
        "h",
        t + 2,
    ));
    assert_eq!(state(&groups), "PreparingRebalance");
    assert_eq!(
        heartbeat(&mut groups, follower, generation, t + 3),
        REBALANCE_IN_PROGRESS
    );
    let follower_join = now(groups.join(
        &join_request(follower, None, &range(b"b")),
        5,
        "b",
        "h",
        t + 4,
    ));
    // Everyone rejoined: the phase completes without waiting for the timeout.
    assert_eq!(ready(&mut leader_join).generation_id, generation + 1);
    assert_eq!(follower_join.generation_id, generation + 1);
}

#[test]
fn a_follower_rejoining_with_new_metadata_while_stable_rebalances() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    let mut follower_join =
        later(groups.join(&join_request(&ids[1], None, &range(b"new")), 5, "b", "h", t));
    assert_eq!(state(&groups), "PreparingRebalance");
    let leader_response = now(groups.join(
        &join_request(&ids[0], None, &range(b"a")),
        5,
        "a",
        "h",
        t + 1,
    ));
    assert_eq!(leader_response.generation_id, generation + 1);
    let follower_metadata = leader_response
        .members
        .iter()
        .find(|m| m.member_id.as_str() == ids[1])
        .unwrap();
    assert_eq!(follower_metadata.metadata.as_ref(), b"new");
    assert_eq!(ready(&mut follower_join).generation_id, generation + 1);
}

#[test]
fn heartbeat_errors() {
    let mut groups = ClassicGroups::new(config());
    assert_eq!(
        heartbeat(&mut groups, "m", 1, 0),
        UNKNOWN_MEMBER_ID,
        "unknown group"
    );
    let empty_group = heartbeat_request("m", 1).with_group_id(GroupId(s("")));
    assert_eq!(
        groups.heartbeat(&empty_group, 4, 0).error_code,
        INVALID_GROUP_ID
    );
    let (ids, generation, t) = stable_group(&mut groups, &["a"]);
    assert_eq!(
        heartbeat(&mut groups, "ghost", generation, t),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut groups, &ids[0], generation - 1, t),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut groups, &ids[0], generation + 1, t),
        ILLEGAL_GENERATION
    );
    assert_eq!(heartbeat(&mut groups, &ids[0], generation, t), NONE);
    // An instance id nobody holds.
    let with_instance = heartbeat_request(&ids[0], generation).with_group_instance_id(Some(s("i")));
    assert_eq!(
        groups.heartbeat(&with_instance, 4, t).error_code,
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn session_expiry_removes_the_member_and_rebalances() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    // Only a keeps heartbeating.
    let mut time = t;
    while time < t + SESSION_MS as u64 {
        time += 3_000;
        assert_eq!(heartbeat(&mut groups, a, generation, time), NONE);
        advance(&mut groups, time);
    }
    // b's session ended at t + SESSION_MS; the tick at that time removed it.
    assert!(groups.next_deadline_ms().is_some());
    assert_eq!(state(&groups), "PreparingRebalance");
    assert_eq!(
        heartbeat(&mut groups, b, generation, time),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut groups, a, generation, time),
        REBALANCE_IN_PROGRESS
    );
    let response = now(groups.join(&join_request(a, None, &range(b"a")), 5, "a", "h", time));
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);

    // The last member expiring empties the group.
    advance(&mut groups, time + SESSION_MS as u64);
    assert_eq!(state(&groups), "Empty");
    assert!(groups.is_empty(GROUP));
    assert!(groups.contains(GROUP));
    assert_eq!(groups.next_deadline_ms(), None);
}

#[test]
fn members_that_do_not_rejoin_within_the_rebalance_timeout_are_removed() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    let (c, c_reply) = join_dynamic(&mut groups, "c", b"c", t);
    let mut c_reply = later(c_reply);
    let mut a_reply = later(groups.join(
        &join_request(&ids[0], None, &range(b"a")),
        5,
        "a",
        "h",
        t + 1,
    ));
    // b keeps its session alive but never rejoins.
    assert_eq!(
        heartbeat(&mut groups, &ids[1], generation, t + 1),
        REBALANCE_IN_PROGRESS
    );
    keep_alive(
        &mut groups,
        &[(&ids[1], generation)],
        t + 1,
        t + REBALANCE_MS as u64,
    );
    advance(&mut groups, t + REBALANCE_MS as u64 - 1);
    assert!(waiting(&mut a_reply));
    advance(&mut groups, t + REBALANCE_MS as u64);
    let a_response = ready(&mut a_reply);
    assert_eq!(a_response.generation_id, generation + 1);
    let mut members: Vec<String> = a_response
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    members.sort();
    let mut expected = vec![ids[0].clone(), c.clone()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(ready(&mut c_reply).generation_id, generation + 1);
    assert_eq!(
        heartbeat(&mut groups, &ids[1], generation, t + REBALANCE_MS as u64),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_pending_member_id_holds_the_rebalance_until_it_expires() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a"]);
    // A new client gets its id but never comes back with it.
    let first = now(groups.join(&join_request("", None, &range(b"x")), 5, "x", "h", t));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    // The leader rejoins (rebalance); the pending id keeps the phase open.
    let mut a_reply = later(groups.join(
        &join_request(&ids[0], None, &range(b"a")),
        5,
        "a",
        "h",
        t + 1,
    ));
    advance(&mut groups, t + SESSION_MS as u64 - 1);
    assert!(waiting(&mut a_reply));
    advance(&mut groups, t + SESSION_MS as u64);
    let response = ready(&mut a_reply);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
    // The expired id is no longer accepted.
    let late = now(groups.join(
        &join_request(first.member_id.as_str(), None, &range(b"x")),
        5,
        "x",
        "h",
        t + SESSION_MS as u64,
    ));
    assert_eq!(late.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn members_that_never_sync_are_removed_at_the_rebalance_timeout() {
    let mut groups = ClassicGroups::new(config());
    let (a, ra) = join_dynamic(&mut groups, "a", b"a", 0);
    let (b, rb) = join_dynamic(&mut groups, "b", b"b", 0);
    let (mut ra, mut rb) = (later(ra), later(rb));
    advance(&mut groups, SETTLED_MS);
    let (ja, _) = (ready(&mut ra), ready(&mut rb));
    let leader = ja.leader.to_string();
    let follower = if leader == a { &b } else { &a };
    let generation = ja.generation_id;
    now(groups.sync(&sync_request(&leader, generation, &[]), 5, SETTLED_MS));
    assert_eq!(state(&groups), "Stable");
    // The follower never sends SyncGroup, though it heartbeats.
    let members = [
        (leader.as_str(), generation),
        (follower.as_str(), generation),
    ];
    keep_alive(
        &mut groups,
        &members,
        SETTLED_MS,
        SETTLED_MS + REBALANCE_MS as u64,
    );
    assert_eq!(state(&groups), "Stable");
    advance(&mut groups, SETTLED_MS + REBALANCE_MS as u64);
    assert_eq!(state(&groups), "PreparingRebalance");
    assert_eq!(
        heartbeat(
            &mut groups,
            follower,
            generation,
            SETTLED_MS + REBALANCE_MS as u64
        ),
        UNKNOWN_MEMBER_ID
    );
    let response = now(groups.join(
        &join_request(&leader, None, &range(b"a")),
        5,
        "a",
        "h",
        SETTLED_MS + REBALANCE_MS as u64,
    ));
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
}

#[test]
fn leader_expiry_while_completing_answers_parked_syncs_with_rebalance_in_progress() {
    let mut groups = ClassicGroups::new(config());
    let (a, ra) = join_dynamic(&mut groups, "a", b"a", 0);
    let (b, rb) = join_dynamic(&mut groups, "b", b"b", 0);
    let (mut ra, mut rb) = (later(ra), later(rb));
    advance(&mut groups, SETTLED_MS);
    let (ja, _) = (ready(&mut ra), ready(&mut rb));
    let leader = ja.leader.to_string();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let mut follower_sync = later(groups.sync(
        &sync_request(&follower, ja.generation_id, &[]),
        5,
        SETTLED_MS,
    ));
    // The leader crashed before its SyncGroup: its session runs out first (the follower's is
    // kept alive by its parked SyncGroup).
    advance(&mut groups, SETTLED_MS + SESSION_MS as u64);
    assert_eq!(ready(&mut follower_sync).error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(state(&groups), "PreparingRebalance");
    let response = now(groups.join(
        &join_request(&follower, None, &range(b"x")),
        5,
        "x",
        "h",
        SETTLED_MS + SESSION_MS as u64,
    ));
    assert_eq!(response.leader.as_str(), follower);
}

#[test]
fn leave_group_batch_and_single() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b", "c"]);
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&ids[1])),
            MemberIdentity::default().with_member_id(s("ghost")),
            MemberIdentity::default()
                .with_member_id(s(&ids[2]))
                .with_group_instance_id(Some(s("nobody"))),
        ]);
    let response = groups.leave(&request, 5, t);
    assert_eq!(response.error_code, NONE);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [NONE, UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID]);
    assert_eq!(state(&groups), "PreparingRebalance");
    // Remaining members rejoin and the group settles without the one that left.
    let mut a = later(groups.join(&join_request(&ids[0], None, &range(b"a")), 5, "a", "h", t));
    let c = now(groups.join(&join_request(&ids[2], None, &range(b"c")), 5, "c", "h", t));
    assert_eq!(c.generation_id, generation + 1);
    assert_eq!(ready(&mut a).members.len(), 2);

    // v0–2: the single member's error is the top-level error, and there is no member list.
    let single = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s("ghost"));
    let response = groups.leave(&single, 2, t);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    assert!(response.members.is_empty());
    let single = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(&ids[2]));
    assert_eq!(groups.leave(&single, 1, t).error_code, NONE);
    // Unknown group.
    let unknown = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("other")))
        .with_members(vec![MemberIdentity::default().with_member_id(s("m"))]);
    let response = groups.leave(&unknown, 4, t);
    assert_eq!(response.members[0].error_code, UNKNOWN_MEMBER_ID);
    let empty = LeaveGroupRequest::default().with_group_id(GroupId(s("")));
    assert_eq!(groups.leave(&empty, 4, t).error_code, INVALID_GROUP_ID);
}

#[test]
fn leaving_completes_a_rebalance_that_only_waited_for_the_leaver() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    let mut a = later(groups.join(&join_request(&ids[0], None, &range(b"a")), 5, "a", "h", t));
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[1]))]);
    groups.leave(&request, 5, t + 1);
    let response = ready(&mut a);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
    // The last member leaving empties the group.
    now(groups.sync(&sync_request(&ids[0], generation + 1, &[]), 5, t + 2));
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[0]))]);
    groups.leave(&request, 5, t + 3);
    assert_eq!(state(&groups), "Empty");
    assert_eq!(groups.describe(GROUP, 5).protocol_type.as_str(), "consumer");
}

#[test]
fn leaving_with_a_parked_join_answers_it_unknown_member() {
    let mut groups = ClassicGroups::new(config());
    let (ids, _, t) = stable_group(&mut groups, &["a", "b"]);
    let mut b = later(groups.join(&join_request(&ids[1], None, &range(b"b2")), 5, "b", "h", t));
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[1]))]);
    groups.leave(&request, 5, t);
    assert_eq!(ready(&mut b).error_code, UNKNOWN_MEMBER_ID);
}

/// A static member "s" (the leader) and a dynamic member, Stable.
fn stable_static_group(groups: &mut ClassicGroups, version: i16) -> (String, String, i32, u64) {
    let mut s_reply = later(groups.join(
        &join_request("", Some("s"), &range(b"s")),
        version,
        "c1",
        "h",
        0,
    ));
    let (d, d_reply) = join_dynamic(groups, "d", b"d", 1);
    let mut d_reply = later(d_reply);
    advance(groups, SETTLED_MS);
    let s_join = ready(&mut s_reply);
    let d_join = ready(&mut d_reply);
    let s_id = s_join.member_id.to_string();
    assert!(
        s_id.starts_with("s-"),
        "a static member's id starts with its instance id: {s_id}"
    );
    assert_eq!(s_join.leader.as_str(), s_id);
    let generation = s_join.generation_id;
    assert_eq!(d_join.generation_id, generation);
    let mut d_sync = later(groups.sync(&sync_request(&d, generation, &[]), 5, SETTLED_MS));
    let assignments = [(s_id.as_str(), &b"p0 p1"[..]), (d.as_str(), b"p2 p3")];
    now(groups.sync(
        &sync_request(&s_id, generation, &assignments),
        5,
        SETTLED_MS,
    ));
    assert_eq!(ready(&mut d_sync).assignment.as_ref(), b"p2 p3");
    (s_id, d, generation, SETTLED_MS)
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    for version in [5, 9] {
        let mut groups = ClassicGroups::new(config());
        let (old, d, generation, t) = stable_static_group(&mut groups, version);
        // The static member restarts: no member id, same instance id and protocols.
        let response = now(groups.join(
            &join_request("", Some("s"), &range(b"s")),
            version,
            "c1",
            "h",
            t + 100,
        ));
        assert_eq!(
            response.error_code, NONE,
            "static members never get MEMBER_ID_REQUIRED"
        );
        let new = response.member_id.to_string();
        assert_ne!(new, old);
        assert_eq!(response.generation_id, generation);
        assert_eq!(state(&groups), "Stable", "no rebalance");
        if version >= 9 {
            // It was the leader: it learns the members but must not reassign.
            assert!(response.skip_assignment);
            assert_eq!(response.leader.as_str(), new);
            assert_eq!(response.members.len(), 2);
        } else {
            // Told the old leader id, it acts as a follower.
            assert!(!response.skip_assignment);
            assert_eq!(response.leader.as_str(), old);
            assert!(response.members.is_empty());
        }
        let sync = now(groups.sync(
            &sync_request(&new, generation, &[]).with_group_instance_id(Some(s("s"))),
            5,
            t + 101,
        ));
        assert_eq!(sync.error_code, NONE);
        assert_eq!(sync.assignment.as_ref(), b"p0 p1");
        // The other member did not notice.
        assert_eq!(heartbeat(&mut groups, &d, generation, t + 102), NONE);

        // The old incarnation is fenced everywhere.
        let old_heartbeat =
            heartbeat_request(&old, generation).with_group_instance_id(Some(s("s")));
        assert_eq!(
            groups.heartbeat(&old_heartbeat, 4, t + 103).error_code,
            FENCED_INSTANCE_ID
        );
        assert_eq!(
            groups.check_commit(GROUP, generation, &old, Some("s"), t + 103),
            Err(FENCED_INSTANCE_ID)
        );
        let old_sync = sync_request(&old, generation, &[]).with_group_instance_id(Some(s("s")));
        assert_eq!(
            now(groups.sync(&old_sync, 5, t + 103)).error_code,
            FENCED_INSTANCE_ID
        );
        let old_join = join_request(&old, Some("s"), &range(b"s"));
        assert_eq!(
            now(groups.join(&old_join, version, "c1", "h", t + 103)).error_code,
            FENCED_INSTANCE_ID
        );
        let old_leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_members(vec![
                MemberIdentity::default()
                    .with_member_id(s(&old))
                    .with_group_instance_id(Some(s("s"))),
            ]);
        assert_eq!(
            groups.leave(&old_leave, 5, t + 103).members[0].error_code,
            FENCED_INSTANCE_ID
        );
        assert_eq!(state(&groups), "Stable");
    }
}

#[test]
fn a_static_member_rejoining_with_another_protocol_rebalances() {
    let mut groups = ClassicGroups::new(config());
    let (_, d, generation, t) = stable_static_group(&mut groups, 5);
    // Both members support roundrobin now; the static one prefers it, but the dynamic one only
    // has range, so range stays selected: no rebalance.
    let both = [("roundrobin", &b"s"[..]), ("range", b"s")];
    let response = now(groups.join(&join_request("", Some("s"), &both), 5, "c1", "h", t));
    assert_eq!(response.generation_id, generation);
    assert_eq!(state(&groups), "Stable");
    // The dynamic member switches to roundrobin first: that is new metadata, so it rebalances,
    // and the selected protocol becomes roundrobin.
    let mut d_reply = later(groups.join(
        &join_request(&d, None, &[("roundrobin", b"d"), ("range", b"d")]),
        5,
        "d",
        "h",
        t + 1,
    ));
    assert_eq!(state(&groups), "PreparingRebalance");
    let s_id = response.member_id.to_string();
    let s_reply = now(groups.join(&join_request(&s_id, Some("s"), &both), 5, "c1", "h", t + 2));
    assert_eq!(s_reply.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(ready(&mut d_reply).generation_id, generation + 1);
    now(groups.sync(&sync_request(&s_id, generation + 1, &[]), 5, t + 3));
    // Now the static member restarts preferring range only: the group's protocol would change.
    let mut restarted = later(groups.join(
        &join_request("", Some("s"), &range(b"s")),
        5,
        "c1",
        "h",
        t + 4,
    ));
    assert_eq!(state(&groups), "PreparingRebalance");
    now(groups.join(
        &join_request(&d, None, &[("roundrobin", b"d"), ("range", b"d")]),
        5,
        "d",
        "h",
        t + 5,
    ));
    let response = ready(&mut restarted);
    assert_eq!(response.generation_id, generation + 2);
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
}

#[test]
fn a_static_member_that_goes_away_keeps_its_place_until_its_session_ends() {
    let mut groups = ClassicGroups::new(config());
    let (s_id, d, generation, t) = stable_static_group(&mut groups, 5);
    // A rebalance starts (d rejoins with new metadata); the static member is silent.
    let mut d_reply = later(groups.join(&join_request(&d, None, &range(b"d2")), 5, "d", "h", t));
    // Its session ends at t + SESSION_MS (last refreshed at its SyncGroup), before the
    // rebalance timeout: that is what removes it.
    advance(&mut groups, t + SESSION_MS as u64);
    let response = ready(&mut d_reply);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
    assert_eq!(response.leader.as_str(), d);
    assert_eq!(
        heartbeat(&mut groups, &s_id, generation, t + SESSION_MS as u64),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_silent_static_member_survives_the_rebalance_timeout() {
    let mut groups = ClassicGroups::new(config());
    let long_session = |member: &str, instance: Option<&str>, metadata: &[u8]| {
        join_request(member, instance, &range(metadata)).with_session_timeout_ms(60_000)
    };
    let mut s_reply = later(groups.join(&long_session("", Some("s"), b"s"), 5, "c1", "h", 0));
    let mut d_reply = later(groups.join(&long_session("", None, b"d"), 3, "d", "h", 0));
    advance(&mut groups, SETTLED_MS);
    let s_join = ready(&mut s_reply);
    let d_join = ready(&mut d_reply);
    let (s_id, d_id) = (s_join.member_id.to_string(), d_join.member_id.to_string());
    let generation = s_join.generation_id;
    now(groups.sync(&sync_request(&s_id, generation, &[]), 5, SETTLED_MS));
    now(groups.sync(&sync_request(&d_id, generation, &[]), 5, SETTLED_MS));
    let mut d_rejoin =
        later(groups.join(&long_session(&d_id, None, b"d2"), 3, "d", "h", SETTLED_MS));
    advance(&mut groups, SETTLED_MS + REBALANCE_MS as u64);
    // The static member did not rejoin but is still a member of the new generation.
    let response = ready(&mut d_rejoin);
    assert_eq!(response.generation_id, generation + 1);
    let described = groups.describe(GROUP, 5);
    assert_eq!(described.members.len(), 2);
    assert!(
        described
            .members
            .iter()
            .any(|m| m.group_instance_id.as_deref() == Some("s"))
    );
}

#[test]
fn a_static_member_leaving_by_instance_id_is_removed() {
    let mut groups = ClassicGroups::new(config());
    let (_, d, generation, t) = stable_static_group(&mut groups, 5);
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![
            MemberIdentity::default().with_group_instance_id(Some(s("s"))),
            MemberIdentity::default().with_group_instance_id(Some(s("unknown"))),
        ]);
    let response = groups.leave(&request, 5, t);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [NONE, UNKNOWN_MEMBER_ID]);
    assert_eq!(state(&groups), "PreparingRebalance");
    let response = now(groups.join(&join_request(&d, None, &range(b"d")), 5, "d", "h", t));
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
}

#[test]
fn a_static_member_rejoining_during_completing_rebalance_fences_the_old_and_rebalances() {
    let mut groups = ClassicGroups::new(config());
    let mut s_reply =
        later(groups.join(&join_request("", Some("s"), &range(b"s")), 5, "c1", "h", 0));
    let (d, d_reply) = join_dynamic(&mut groups, "d", b"d", 0);
    let mut d_reply = later(d_reply);
    advance(&mut groups, SETTLED_MS);
    let old = ready(&mut s_reply);
    let generation = old.generation_id;
    ready(&mut d_reply);
    let mut d_sync = later(groups.sync(&sync_request(&d, generation, &[]), 5, SETTLED_MS));
    // The static member (leader) restarts before sending its assignment.
    let mut restarted = later(groups.join(
        &join_request("", Some("s"), &range(b"s")),
        5,
        "c1",
        "h",
        SETTLED_MS + 1,
    ));
    assert_eq!(ready(&mut d_sync).error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(state(&groups), "PreparingRebalance");
    now(groups.join(
        &join_request(&d, None, &range(b"d")),
        5,
        "d",
        "h",
        SETTLED_MS + 2,
    ));
    let response = ready(&mut restarted);
    assert_eq!(response.generation_id, generation + 1);
    assert_ne!(response.member_id, old.member_id);
}

#[test]
fn commit_checks() {
    let mut groups = ClassicGroups::new(config());
    // Absent group: a simple consumer may commit; a stale group member may not.
    assert_eq!(groups.check_commit(GROUP, -1, "", None, 0), Ok(()));
    assert_eq!(
        groups.check_commit(GROUP, 3, "m", None, 0),
        Err(ILLEGAL_GENERATION)
    );
    assert_eq!(
        groups.check_commit("", -1, "", None, 0),
        Err(INVALID_GROUP_ID)
    );
    assert!(!groups.contains(GROUP), "a commit does not create a group");

    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    assert_eq!(
        groups.check_commit(GROUP, generation, &ids[1], None, t),
        Ok(())
    );
    assert_eq!(
        groups.check_commit(GROUP, generation - 1, &ids[1], None, t),
        Err(ILLEGAL_GENERATION)
    );
    assert_eq!(
        groups.check_commit(GROUP, generation, "ghost", None, t),
        Err(UNKNOWN_MEMBER_ID)
    );
    // A simple-consumer commit to a group with members.
    assert_eq!(
        groups.check_commit(GROUP, -1, "", None, t),
        Err(UNKNOWN_MEMBER_ID)
    );

    // Commits keep a member's session alive like heartbeats do.
    let mut time = t;
    for _ in 0..5 {
        time += 5_000;
        assert_eq!(
            groups.check_commit(GROUP, generation, &ids[0], None, time),
            Ok(())
        );
        assert_eq!(heartbeat(&mut groups, &ids[1], generation, time), NONE);
        advance(&mut groups, time);
    }
    assert_eq!(state(&groups), "Stable");

    // While PreparingRebalance, members of the current generation may still commit (a
    // consumer commits before giving up partitions).
    let _rejoin = groups.join(
        &join_request(&ids[0], None, &range(b"a")),
        5,
        "a",
        "h",
        time,
    );
    assert_eq!(state(&groups), "PreparingRebalance");
    assert_eq!(
        groups.check_commit(GROUP, generation, &ids[1], None, time),
        Ok(())
    );

    // Empty again: generation -1 commits are accepted.
    let mut empty = ClassicGroups::new(config());
    let (ids, _, t) = stable_group(&mut empty, &["a"]);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[0]))]);
    empty.leave(&leave, 5, t);
    assert_eq!(empty.check_commit(GROUP, -1, "", None, t), Ok(()));
    assert_eq!(
        empty.check_commit(GROUP, 1, &ids[0], None, t),
        Err(UNKNOWN_MEMBER_ID)
    );
}

fn coop(owned: &[u8]) -> Vec<(&'static str, &[u8])> {
    vec![("cooperative-sticky", owned)]
}

fn join_coop(
    groups: &mut ClassicGroups,
    client: &str,
    now_ms: u64,
) -> (String, Reply<JoinGroupResponse>) {
    let first = now(groups.join(
        &join_request("", None, &coop(b"owned:")),
        5,
        client,
        "h",
        now_ms,
    ));
    let member_id = first.member_id.to_string();
    let reply = groups.join(
        &join_request(&member_id, None, &coop(b"owned:")),
        5,
        client,
        "h",
        now_ms,
    );
    (member_id, reply)
}

/// Cooperative-sticky (incremental) rebalancing: the leader first only revokes the partitions
/// that move, the members that lost some rejoin with their smaller owned set, and the second
/// rebalance hands the revoked partitions to the newcomer.
#[test]
fn a_cooperative_round_takes_two_rebalances() {
    let mut groups = ClassicGroups::new(config());
    // Generation 1: a and b own p0..p3.
    let (a, a_reply) = join_coop(&mut groups, "a", 0);
    let (b, b_reply) = join_coop(&mut groups, "b", 0);
    let (mut a_reply, mut b_reply) = (later(a_reply), later(b_reply));
    advance(&mut groups, SETTLED_MS);
    let first = ready(&mut a_reply);
    ready(&mut b_reply);
    let g1 = first.generation_id;
    let leader = first.leader.to_string();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let mut follower_sync = later(groups.sync(&sync_request(&follower, g1, &[]), 5, SETTLED_MS));
    now(groups.sync(
        &sync_request(&leader, g1, &[(&leader, b"p0 p1"), (&follower, b"p2 p3")]),
        5,
        SETTLED_MS,
    ));
    ready(&mut follower_sync);
    let mut t = SETTLED_MS + 1_000;

    // c joins: first rebalance. Members learn it from their heartbeats and rejoin with the
    // partitions they own.
    let (c, c_reply) = join_coop(&mut groups, "c", t);
    let mut c_reply = later(c_reply);
    assert_eq!(
        heartbeat(&mut groups, &leader, g1, t),
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        heartbeat(&mut groups, &follower, g1, t),
        REBALANCE_IN_PROGRESS
    );
    // Committing the partitions about to be revoked is still allowed in this generation.
    assert_eq!(groups.check_commit(GROUP, g1, &follower, None, t), Ok(()));
    let mut leader_reply = later(groups.join(
        &join_request(&leader, None, &coop(&b"owned:p0 p1"[..])),
        5,
        "x",
        "h",
        t,
    ));
    let follower_join = now(groups.join(
        &join_request(&follower, None, &coop(&b"owned:p2 p3"[..])),
        5,
        "x",
        "h",
        t,
    ));
    let leader_join = ready(&mut leader_reply);
    let g2 = leader_join.generation_id;
    assert_eq!(g2, g1 + 1);
    assert_eq!(leader_join.members.len(), 3);
    assert_eq!(follower_join.generation_id, g2);
    assert_eq!(ready(&mut c_reply).generation_id, g2);
    // The leader revokes p1 and p3 but does not hand them out yet.
    let mut follower_sync = later(groups.sync(&sync_request(&follower, g2, &[]), 5, t));
    let mut c_sync = later(groups.sync(&sync_request(&c, g2, &[]), 5, t));
    now(groups.sync(
        &sync_request(
            &leader,
            g2,
            &[(&leader, b"p0"), (&follower, b"p2"), (&c, b"")],
        ),
        5,
        t,
    ));
    assert_eq!(ready(&mut follower_sync).assignment.as_ref(), b"p2");
    assert_eq!(ready(&mut c_sync).assignment.as_ref(), b"");
    assert_eq!(state(&groups), "Stable");
    t += 10;

    // Second rebalance: the members that lost partitions rejoin with their new owned set
    // (changed metadata), the other learns it from its heartbeat.
    let mut follower_reply = later(groups.join(
        &join_request(&follower, None, &coop(&b"owned:p2"[..])),
        5,
        "x",
        "h",
        t,
    ));
    assert_eq!(state(&groups), "PreparingRebalance");
    let mut leader_reply = later(groups.join(
        &join_request(&leader, None, &coop(&b"owned:p0"[..])),
        5,
        "x",
        "h",
        t + 1,
    ));
    assert_eq!(heartbeat(&mut groups, &c, g2, t + 2), REBALANCE_IN_PROGRESS);
    let c_join = now(groups.join(
        &join_request(&c, None, &coop(&b"owned:"[..])),
        5,
        "c",
        "h",
        t + 3,
    ));
    let leader_join = ready(&mut leader_reply);
    let g3 = leader_join.generation_id;
    assert_eq!(g3, g2 + 1);
    let owned: Vec<&[u8]> = leader_join
        .members
        .iter()
        .map(|m| m.metadata.as_ref())
        .collect();
    assert!(owned.contains(&&b"owned:p2"[..]) && owned.contains(&&b"owned:p0"[..]));
    assert_eq!(ready(&mut follower_reply).generation_id, g3);
    assert_eq!(c_join.generation_id, g3);
    let mut c_sync = later(groups.sync(&sync_request(&c, g3, &[]), 5, t + 4));
    now(groups.sync(
        &sync_request(
            &leader,
            g3,
            &[(&leader, b"p0"), (&follower, b"p2"), (&c, b"p1 p3")],
        ),
        5,
        t + 4,
    ));
    assert_eq!(ready(&mut c_sync).assignment.as_ref(), b"p1 p3");
    assert_eq!(state(&groups), "Stable");
}

#[test]
fn a_member_that_lost_its_join_response_gets_it_again_while_completing() {
    let mut groups = ClassicGroups::new(config());
    let (a, ra) = join_dynamic(&mut groups, "a", b"a", 0);
    let mut ra = later(ra);
    advance(&mut groups, DELAY_MS);
    let first = ready(&mut ra);
    assert_eq!(state(&groups), "CompletingRebalance");
    let again = now(groups.join(
        &join_request(&a, None, &range(b"a")),
        5,
        "a",
        "h",
        DELAY_MS + 1,
    ));
    assert_eq!(again.generation_id, first.generation_id);
    assert_eq!(
        again.members.len(),
        1,
        "the leader gets the member list again"
    );
    assert_eq!(state(&groups), "CompletingRebalance");
    // With changed metadata it rebalances instead.
    let changed = now(groups.join(
        &join_request(&a, None, &range(b"a2")),
        5,
        "a",
        "h",
        DELAY_MS + 2,
    ));
    assert!(changed.generation_id > first.generation_id);
}

#[test]
fn a_repeated_join_replaces_the_parked_one() {
    let mut groups = ClassicGroups::new(config());
    let (a, first) = join_dynamic(&mut groups, "a", b"a", 0);
    let mut first = later(first);
    let mut second = later(groups.join(&join_request(&a, None, &range(b"a")), 5, "a", "h", 10));
    assert!(
        first.try_recv().is_err(),
        "the abandoned request is dropped, not answered"
    );
    advance(&mut groups, DELAY_MS);
    assert_eq!(ready(&mut second).generation_id, 1);
}

#[test]
fn sync_errors() {
    let mut groups = ClassicGroups::new(config());
    assert_eq!(
        now(groups.sync(&sync_request("m", 1, &[]), 5, 0)).error_code,
        UNKNOWN_MEMBER_ID
    );
    let empty = sync_request("m", 1, &[]).with_group_id(GroupId(s("")));
    assert_eq!(now(groups.sync(&empty, 5, 0)).error_code, INVALID_GROUP_ID);
    let (ids, generation, t) = stable_group(&mut groups, &["a", "b"]);
    assert_eq!(
        now(groups.sync(&sync_request("ghost", generation, &[]), 5, t)).error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        now(groups.sync(&sync_request(&ids[1], generation + 1, &[]), 5, t)).error_code,
        ILLEGAL_GENERATION
    );
    let wrong_protocol = sync_request(&ids[1], generation, &[])
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("roundrobin")));
    assert_eq!(
        now(groups.sync(&wrong_protocol, 5, t)).error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let right_protocol = sync_request(&ids[1], generation, &[])
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")));
    assert_eq!(now(groups.sync(&right_protocol, 5, t)).error_code, NONE);
    let _ = groups.join(&join_request(&ids[0], None, &range(b"a")), 5, "a", "h", t);
    assert_eq!(
        now(groups.sync(&sync_request(&ids[1], generation, &[]), 5, t)).error_code,
        REBALANCE_IN_PROGRESS
    );
}

#[test]
fn a_new_member_whose_join_never_completes_is_dropped_after_five_minutes() {
    let mut groups = ClassicGroups::new(config());
    let (_, generation, t) = stable_static_group_with_long_sessions(&mut groups);
    let (_, reply) = join_dynamic(&mut groups, "n", b"n", t);
    let mut reply = later(reply);
    // The static member never rejoins and its session is longer than the join timeout.
    advance(
        &mut groups,
        t + super::rebalance::NEW_MEMBER_JOIN_TIMEOUT_MS,
    );
    assert_eq!(ready(&mut reply).error_code, UNKNOWN_MEMBER_ID);
    let _ = generation;
}

fn stable_static_group_with_long_sessions(groups: &mut ClassicGroups) -> (String, i32, u64) {
    let request = join_request("", Some("s"), &range(b"s"))
        .with_session_timeout_ms(600_000)
        .with_rebalance_timeout_ms(600_000);
    let mut reply = later(groups.join(&request, 5, "c", "h", 0));
    advance(groups, DELAY_MS);
    let response = ready(&mut reply);
    let id = response.member_id.to_string();
    now(groups.sync(&sync_request(&id, response.generation_id, &[]), 5, DELAY_MS));
    (id, response.generation_id, DELAY_MS)
}

#[test]
fn describe_list_and_delete() {
    let mut groups = ClassicGroups::new(config());
    let absent = groups.describe(GROUP, 5);
    assert_eq!(
        (absent.error_code, absent.group_state.as_str()),
        (NONE, "Dead")
    );
    let absent = groups.describe(GROUP, 6);
    assert_eq!(
        (absent.error_code, absent.group_state.as_str()),
        (GROUP_ID_NOT_FOUND, "Dead")
    );
    assert!(absent.error_message.is_some());
    assert_eq!(groups.delete(GROUP), Ok(()));

    let (ids, _, t) = stable_group(&mut groups, &["a", "b"]);
    let described = groups.describe(GROUP, 5);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "range");
    assert_eq!(described.members.len(), 2);
    for member in &described.members {
        assert_eq!(member.client_host.as_str(), "/10.0.0.1");
        assert_eq!(member.member_metadata.as_ref(), member.client_id.as_bytes());
        assert_eq!(
            member.member_assignment.as_ref(),
            format!("assigned-{}", member.member_id.as_str()).as_bytes()
        );
    }
    assert_eq!(
        groups.list(),
        vec![ListedClassicGroup {
            group_id: GROUP.to_owned(),
            protocol_type: "consumer".to_owned(),
            state: "Stable"
        }]
    );
    assert_eq!(groups.delete(GROUP), Err(NON_EMPTY_GROUP));
    assert!(!groups.is_empty(GROUP));

    // Rebalancing: members are listed without metadata or assignment.
    let _ = groups.join(&join_request(&ids[0], None, &range(b"a")), 5, "a", "h", t);
    let described = groups.describe(GROUP, 5);
    assert_eq!(described.group_state.as_str(), "PreparingRebalance");
    assert_eq!(described.protocol_data.as_str(), "");
    assert!(
        described
            .members
            .iter()
            .all(|m| m.member_assignment.is_empty() && m.member_metadata.is_empty())
    );

    // Everyone leaves: Empty, deletable, and then gone.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(
            ids.iter()
                .map(|id| MemberIdentity::default().with_member_id(s(id)))
                .collect(),
        );
    groups.leave(&leave, 5, t);
    assert_eq!(state(&groups), "Empty");
    assert!(groups.is_empty(GROUP));
    assert_eq!(groups.list()[0].state, "Empty");
    assert_eq!(groups.delete(GROUP), Ok(()));
    assert!(!groups.contains(GROUP));
    assert!(groups.list().is_empty());
    assert_eq!(groups.next_deadline_ms(), None);
}

#[test]
fn next_deadline_follows_the_earliest_timer_of_any_group() {
    let mut groups = ClassicGroups::new(config());
    assert_eq!(groups.next_deadline_ms(), None);
    let _a = groups.join(&join_request("", None, &range(b"m")), 3, "a", "h", 100);
    assert_eq!(groups.next_deadline_ms(), Some(100 + DELAY_MS));
    let other = join_request("", None, &range(b"m")).with_group_id(GroupId(s("other")));
    let _b = groups.join(&other, 4, "b", "h", 50);
    assert_eq!(
        groups.next_deadline_ms(),
        Some(100 + DELAY_MS),
        "still the initial delay"
    );
    advance(&mut groups, 100 + DELAY_MS);
    // The first group completed; the other group's pending id is still the earliest.
    assert_eq!(groups.next_deadline_ms(), Some(50 + SESSION_MS as u64));
    advance(&mut groups, 50 + SESSION_MS as u64);
    // The first group waits for its SyncGroup (rebalance timeout) and its member's session.
    assert_eq!(
        groups.next_deadline_ms(),
        Some(100 + DELAY_MS + SESSION_MS as u64)
    );
    assert!(!groups.contains("other") || groups.is_empty("other"));
}

#[test]
fn every_response_encodes_in_the_version_it_answers() {
    for version in 0..=9 {
        let mut groups = ClassicGroups::new(config());
        let instance = if version >= 5 { Some("s") } else { None };
        let first = groups.join(
            &join_request("", instance, &range(b"m")),
            version,
            "c",
            "h",
            0,
        );
        let mut receiver = match first {
            Reply::Now(response) => {
                assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
                encode(&response, version);
                later(groups.join(
                    &join_request(&response.member_id, None, &range(b"m")),
                    version,
                    "c",
                    "h",
                    0,
                ))
            }
            Reply::Later(receiver) => receiver,
        };
        advance(&mut groups, DELAY_MS);
        let response = ready(&mut receiver);
        assert_eq!(response.error_code, NONE);
        encode(&response, version);
        let error = now(groups.join(
            &join_request("ghost", None, &range(b"m")),
            version,
            "c",
            "h",
            0,
        ));
        encode(&error, version);
        if version >= 5 {
            // The static rejoin answer (skip_assignment from v9).
            now(groups.sync(
                &sync_request(&response.member_id, response.generation_id, &[]),
                5,
                DELAY_MS,
            ));
            let rejoin = now(groups.join(
                &join_request("", Some("s"), &range(b"m")),
                version,
                "c",
                "h",
                DELAY_MS,
            ));
            assert_eq!(rejoin.error_code, NONE);
            encode(&rejoin, version);
        }
    }
    for version in 0..=5 {
        let mut groups = ClassicGroups::new(config());
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s("m"))
            .with_members(if version >= 3 {
                vec![MemberIdentity::default().with_member_id(s("m"))]
            } else {
                vec![]
            });
        encode(&groups.leave(&leave, version, 0), version);
        encode(
            &now(groups.sync(&sync_request("m", 1, &[]), version, 0)),
            version,
        );
    }
    let groups = ClassicGroups::new(config());
    for version in 0..=6 {
        encode(&groups.describe(GROUP, version), version);
    }
}

fn encode<T: Encodable>(message: &T, version: i16) {
    let mut buffer = bytes::BytesMut::new();
    message
        .encode(&mut buffer, version)
        .unwrap_or_else(|error| panic!("v{version}: {error}"));
}
