#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn topic(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn spec(topics: &[Uuid]) -> MemberSpec {
    MemberSpec {
        instance_id: None,
        subscribed: topics.iter().copied().collect(),
        current: Assignment::new(),
    }
}

fn members(specs: &[(&str, MemberSpec)]) -> BTreeMap<String, MemberSpec> {
    specs
        .iter()
        .map(|(id, spec)| (id.to_string(), spec.clone()))
        .collect()
}

fn parts(assignment: &Assignment, topic: Uuid) -> Vec<u32> {
    assignment
        .get(&topic)
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default()
}

fn load(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// Every partition of a topic someone subscribes to is assigned exactly once, to a subscriber;
/// nothing else is assigned.
fn assert_valid(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, u32>,
    result: &BTreeMap<String, Assignment>,
) {
    assert_eq!(result.len(), members.len());
    let mut seen = BTreeSet::new();
    for (id, assignment) in result {
        let spec = &members[id];
        for (topic, set) in assignment {
            assert!(
                spec.subscribed.contains(topic),
                "{id} got unsubscribed topic {topic}"
            );
            for &partition in set {
                assert!(
                    partition < partitions[topic],
                    "{id} got nonexistent partition"
                );
                assert!(
                    seen.insert((*topic, partition)),
                    "partition {topic}-{partition} assigned twice"
                );
            }
        }
    }
    for (topic, count) in partitions {
        if members.values().any(|spec| spec.subscribed.contains(topic)) {
            for partition in 0..*count {
                assert!(
                    seen.contains(&(*topic, partition)),
                    "partition {topic}-{partition} unassigned"
                );
            }
        }
    }
}

#[test]
fn uniform_spreads_twelve_partitions_over_three_members() {
    let t = topic(1);
    let members = members(&[("a", spec(&[t])), ("b", spec(&[t])), ("c", spec(&[t]))]);
    let partitions = BTreeMap::from([(t, 12)]);
    let result = AssignorKind::Uniform.assign(&members, &partitions);
    assert_valid(&members, &partitions, &result);
    for assignment in result.values() {
        assert_eq!(load(assignment), 4);
    }
}

#[test]
fn uniform_is_sticky_when_a_member_joins_and_leaves() {
    let t = topic(1);
    let partitions = BTreeMap::from([(t, 12)]);
    let mut group = members(&[("a", spec(&[t])), ("b", spec(&[t])), ("c", spec(&[t]))]);
    let first = AssignorKind::Uniform.assign(&group, &partitions);
    for (id, assignment) in &first {
        group.get_mut(id).unwrap().current = assignment.clone();
    }

    // A fourth member joins: each of the three gives up exactly one partition.
    group.insert("d".to_string(), spec(&[t]));
    let second = AssignorKind::Uniform.assign(&group, &partitions);
    assert_valid(&group, &partitions, &second);
    for id in ["a", "b", "c"] {
        assert_eq!(load(&second[id]), 3);
        assert!(
            parts(&second[id], t)
                .iter()
                .all(|p| parts(&first[id], t).contains(p)),
            "{id} lost a partition it kept room for"
        );
    }
    assert_eq!(load(&second["d"]), 3);

    // "b" leaves: its three partitions are spread, the others keep theirs.
    for (id, assignment) in &second {
        group.get_mut(id).unwrap().current = assignment.clone();
    }
    group.remove("b");
    let third = AssignorKind::Uniform.assign(&group, &partitions);
    assert_valid(&group, &partitions, &third);
    for id in ["a", "c", "d"] {
        assert_eq!(load(&third[id]), 4);
        assert!(
            parts(&second[id], t)
                .iter()
                .all(|p| parts(&third[id], t).contains(p))
        );
    }
}

#[test]
fn uniform_respects_different_subscriptions() {
    let (t1, t2) = (topic(1), topic(2));
    let members = members(&[
        ("a", spec(&[t1, t2])),
        ("b", spec(&[t2])),
        ("c", spec(&[t2])),
    ]);
    let partitions = BTreeMap::from([(t1, 6), (t2, 3)]);
    let result = AssignorKind::Uniform.assign(&members, &partitions);
    assert_valid(&members, &partitions, &result);
    // "a" is the only subscriber of t1 and must hold all of it; t2 goes to b and c.
    assert_eq!(parts(&result["a"], t1), [0, 1, 2, 3, 4, 5]);
    assert!(parts(&result["a"], t2).is_empty());
    assert_eq!(load(&result["b"]) + load(&result["c"]), 3);
}

#[test]
fn uniform_drops_stale_current_partitions() {
    let (t1, t2) = (topic(1), topic(2));
    let mut a = spec(&[t1]);
    // Previous target held a partition beyond the count, a topic no longer subscribed, one deleted.
    a.current = BTreeMap::from([
        (t1, BTreeSet::from([0, 9])),
        (t2, BTreeSet::from([0])),
        (topic(3), BTreeSet::from([0])),
    ]);
    let members = members(&[("a", a), ("b", spec(&[t1]))]);
    let partitions = BTreeMap::from([(t1, 4), (t2, 2)]);
    let result = AssignorKind::Uniform.assign(&members, &partitions);
    assert_valid(&members, &partitions, &result);
    assert!(
        parts(&result["a"], t1).contains(&0),
        "kept its still-valid partition"
    );
    assert_eq!(load(&result["a"]), 2);
}

#[test]
fn range_gives_contiguous_ranges_and_co_partitions() {
    let (t1, t2) = (topic(1), topic(2));
    let members = members(&[
        ("m2", spec(&[t1, t2])),
        ("m1", spec(&[t1, t2])),
        ("m3", spec(&[t1, t2])),
    ]);
    let partitions = BTreeMap::from([(t1, 7), (t2, 7)]);
    let result = AssignorKind::Range.assign(&members, &partitions);
    assert_valid(&members, &partitions, &result);
    assert_eq!(parts(&result["m1"], t1), [0, 1, 2]);
    assert_eq!(parts(&result["m2"], t1), [3, 4]);
    assert_eq!(parts(&result["m3"], t1), [5, 6]);
    for id in ["m1", "m2", "m3"] {
        assert_eq!(
            parts(&result[id], t1),
            parts(&result[id], t2),
            "{id} is co-partitioned"
        );
    }
}

#[test]
fn range_differs_from_uniform_across_topics() {
    // Two topics of 3 partitions over 2 members: range gives the first member 2+2, uniform 3+3 split.
    let (t1, t2) = (topic(1), topic(2));
    let members = members(&[("a", spec(&[t1, t2])), ("b", spec(&[t1, t2]))]);
    let partitions = BTreeMap::from([(t1, 3), (t2, 3)]);
    let ranged = AssignorKind::Range.assign(&members, &partitions);
    assert_eq!(load(&ranged["a"]), 4);
    assert_eq!(load(&ranged["b"]), 2);
    let uniform = AssignorKind::Uniform.assign(&members, &partitions);
    assert_eq!(load(&uniform["a"]), 3);
    assert_eq!(load(&uniform["b"]), 3);
}

#[test]
fn range_orders_static_members_first_by_instance_id() {
    let t = topic(1);
    let mut z = spec(&[t]);
    z.instance_id = Some("i1".to_string());
    let mut y = spec(&[t]);
    y.instance_id = Some("i0".to_string());
    let members = members(&[("a", spec(&[t])), ("y", y), ("z", z)]);
    let partitions = BTreeMap::from([(t, 3)]);
    let result = AssignorKind::Range.assign(&members, &partitions);
    assert_eq!(parts(&result["y"], t), [0]);
    assert_eq!(parts(&result["z"], t), [1]);
    assert_eq!(parts(&result["a"], t), [2]);
}

#[test]
fn more_members_than_partitions_leaves_some_empty() {
    let t = topic(1);
    let members = members(&[("a", spec(&[t])), ("b", spec(&[t])), ("c", spec(&[t]))]);
    let partitions = BTreeMap::from([(t, 2)]);
    for kind in [AssignorKind::Uniform, AssignorKind::Range] {
        let result = kind.assign(&members, &partitions);
        assert_valid(&members, &partitions, &result);
        assert_eq!(result.values().filter(|a| a.is_empty()).count(), 1);
    }
}

#[test]
fn names_round_trip() {
    for kind in [AssignorKind::Uniform, AssignorKind::Range] {
        assert_eq!(AssignorKind::from_name(kind.name()), Some(kind));
    }
    assert_eq!(AssignorKind::from_name("sticky"), None);
}

fn arbitrary_group() -> impl Strategy<Value = (BTreeMap<String, MemberSpec>, BTreeMap<Uuid, u32>)> {
    let partitions = proptest::collection::vec(0u32..20, 1..4);
    let members = proptest::collection::vec(
        (
            proptest::collection::vec(any::<bool>(), 4),
            proptest::collection::vec(0u32..24, 0..8),
        ),
        0..7,
    );
    (partitions, members).prop_map(|(counts, members)| {
        let partitions: BTreeMap<Uuid, u32> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (topic(i as u128 + 1), *c))
            .collect();
        let members = members
            .into_iter()
            .enumerate()
            .map(|(i, (subscribed, current))| {
                // Subscriptions may name a topic that does not exist (index 4 → topic 4 maybe absent).
                let subscribed: BTreeSet<Uuid> = subscribed
                    .iter()
                    .enumerate()
                    .filter(|(_, on)| **on)
                    .map(|(t, _)| topic(t as u128 + 1))
                    .collect();
                let mut assignment = Assignment::new();
                for p in current {
                    assignment
                        .entry(topic(u128::from(p % 3) + 1))
                        .or_default()
                        .insert(p / 3);
                }
                (
                    format!("m{i}"),
                    MemberSpec {
                        instance_id: None,
                        subscribed,
                        current: assignment,
                    },
                )
            })
            .collect();
        (members, partitions)
    })
}

proptest! {
    #[test]
    fn both_assignors_assign_every_subscribed_partition_once((members, partitions) in arbitrary_group()) {
        for kind in [AssignorKind::Uniform, AssignorKind::Range] {
            let result = kind.assign(&members, &partitions);
            assert_valid(&members, &partitions, &result);
        }
    }

    #[test]
    fn uniform_is_balanced_for_identical_subscriptions((members, partitions) in arbitrary_group()) {
        let all: BTreeSet<Uuid> = partitions.keys().copied().collect();
        let members: BTreeMap<String, MemberSpec> = members
            .into_iter()
            .map(|(id, mut spec)| { spec.subscribed = all.clone(); (id, spec) })
            .collect();
        let result = AssignorKind::Uniform.assign(&members, &partitions);
        assert_valid(&members, &partitions, &result);
        let loads: Vec<usize> = result.values().map(load).collect();
        if let (Some(max), Some(min)) = (loads.iter().max(), loads.iter().min()) {
            prop_assert!(max - min <= 1, "loads {loads:?}");
        }
    }
}
