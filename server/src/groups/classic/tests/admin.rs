//! Error codes, commit checks, DescribeGroups/ListGroups/DeleteGroups, the timer index and the
//! encodability of every response.

use super::*;

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
