//! Tests of the classic coordinator: each drives `ClassicGroups` with explicit `now_ms` the way
//! a client would and inspects the replies. The helpers are here; the scenarios are in `tests/`.

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

mod admin;
mod join;
mod membership;
mod properties;
mod restore;
mod static_members;

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
