//! Static membership (KIP-345): restarts without a rebalance, fencing of the old member id,
//! and when a static member does leave.

use super::*;

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
