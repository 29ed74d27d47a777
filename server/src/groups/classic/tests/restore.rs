//! A group stored when Stable or Empty and restored by a restarted coordinator: same generation,
//! leader, members and assignments; members carry on; sessions restart at the restore; a member
//! that stays silent is removed and told UNKNOWN_MEMBER_ID.

use super::*;
use crate::groups::classic::ClassicRecord;

fn record(groups: &ClassicGroups) -> sluice_engine::metadata::ClassicGroupRecord {
    match groups.record(GROUP) {
        ClassicRecord::Record(record) => record,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn a_restored_group_is_the_stored_one_and_its_members_carry_on() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, at_ms) = stable_group(&mut groups, &["a", "b"]);
    let stored = record(&groups);
    assert_eq!(stored.generation, generation);
    assert_eq!(stored.leader.as_deref(), Some(ids[0].as_str()));
    assert_eq!(stored.members.len(), 2);
    assert!(groups.take_dirty().contains(GROUP));

    // A new coordinator, much later by its own clock.
    let restart_ms = at_ms + 1_000_000;
    let mut restored = ClassicGroups::new(config());
    restored.restore(GROUP, &stored, restart_ms);
    assert_eq!(record(&restored), stored);
    restored.groups[GROUP].group.check_invariants().unwrap();
    assert!(restored.take_dirty().is_empty(), "loading writes nothing");
    assert_eq!(state(&restored), "Stable");
    let described = restored.describe(GROUP, 5);
    let assignments: Vec<(String, Vec<u8>)> = described
        .members
        .iter()
        .map(|member| {
            (
                member.member_id.to_string(),
                member.member_assignment.to_vec(),
            )
        })
        .collect();
    for id in &ids {
        assert!(assignments.contains(&(id.clone(), format!("assigned-{id}").into_bytes())));
    }
    // Both members have a full session from the restore.
    advance(
        &mut restored,
        restart_ms + u64::try_from(SESSION_MS).unwrap() - 1,
    );
    for id in &ids {
        assert_eq!(
            heartbeat(&mut restored, id, generation, restart_ms + 1),
            NONE
        );
    }
    assert_eq!(
        restored.check_commit(GROUP, generation, &ids[1], None, restart_ms + 2),
        Ok(())
    );
    // A follower that rejoins with the same metadata stays in the generation.
    let rejoined = now(restored.join(
        &join_request(&ids[1], None, &range(b"b")),
        5,
        "b",
        "/10.0.0.1",
        restart_ms + 3,
    ));
    assert_eq!(
        (rejoined.error_code, rejoined.generation_id),
        (NONE, generation)
    );
    assert_eq!(state(&restored), "Stable");
}

#[test]
fn a_member_silent_after_the_restore_expires_and_must_rejoin() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, at_ms) = stable_group(&mut groups, &["a", "b"]);
    let stored = record(&groups);
    let restart_ms = at_ms + 50_000;
    let mut restored = ClassicGroups::new(config());
    restored.restore(GROUP, &stored, restart_ms);
    let end_ms = keep_alive(
        &mut restored,
        &[(ids[0].as_str(), generation)],
        restart_ms,
        restart_ms + u64::try_from(SESSION_MS).unwrap() + 3_000,
    );
    advance(&mut restored, end_ms);
    assert_eq!(state(&restored), "PreparingRebalance");
    assert_eq!(
        heartbeat(&mut restored, &ids[1], generation, end_ms),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        restored.check_commit(GROUP, generation, &ids[1], None, end_ms),
        Err(UNKNOWN_MEMBER_ID)
    );
    // In the middle of a rebalance the stored record stays what it was.
    assert_eq!(restored.record(GROUP), ClassicRecord::Unsettled);
}

#[test]
fn empty_groups_keep_their_generation_and_gone_groups_are_absent() {
    let mut groups = ClassicGroups::new(config());
    let (ids, generation, at_ms) = stable_group(&mut groups, &["a"]);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[0]))]);
    groups.leave(&leave, 3, at_ms);
    advance(&mut groups, at_ms + 1);
    let stored = record(&groups);
    assert!(stored.members.is_empty());
    assert_eq!(stored.leader, None);
    assert!(stored.generation > generation);
    let mut restored = ClassicGroups::new(config());
    restored.restore(GROUP, &stored, 0);
    assert_eq!(state(&restored), "Empty");
    assert_eq!(record(&restored), stored);
    assert!(restored.delete(GROUP).is_ok());
    assert_eq!(restored.record(GROUP), ClassicRecord::Absent);
    assert!(
        restored.take_dirty().contains(GROUP),
        "a deleted group is written as gone"
    );
}
