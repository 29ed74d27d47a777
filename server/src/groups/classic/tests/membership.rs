//! Heartbeats, session and rebalance timeouts, pending ids and syncs, and LeaveGroup.

use super::*;

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

#[test]
fn a_new_member_whose_join_never_completes_is_dropped_after_five_minutes() {
    let mut groups = ClassicGroups::new(config());
    let (_, generation, t) = stable_static_group_with_long_sessions(&mut groups);
    let (_, reply) = join_dynamic(&mut groups, "n", b"n", t);
    let mut reply = later(reply);
    // The static member never rejoins and its session is longer than the join timeout.
    advance(
        &mut groups,
        t + crate::groups::classic::rebalance::NEW_MEMBER_JOIN_TIMEOUT_MS,
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
