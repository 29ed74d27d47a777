//! JoinGroup and SyncGroup: member ids, the initial delay, protocol selection, rejoins and the
//! two rounds of a cooperative rebalance.

use super::*;

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
