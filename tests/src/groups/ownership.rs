//! Who owns which partition, and when, from the members' own rebalance callbacks.
//!
//! Each member reports its whole assignment after every callback, so its ownership of a partition
//! is an interval: from the callback that added it to the one that took it away, or to the end of
//! the member (the moment it began closing, or the SIGKILL). Two checks follow:
//! - *settled*: every live member owns something, every partition is owned by exactly one live
//!   member, the counts differ by at most one, and no callback has fired for a quiet period;
//! - *exclusive*: at no instant did two members own the same partition. A callback is logged
//!   before the member tells the coordinator it gave the partition up, and the next owner hears of
//!   it only after that, so on one machine's clock the intervals of a correct group never overlap.

use std::collections::{BTreeMap, BTreeSet};

use crate::groups::events::MemberEvent;

/// A member as the checks see it: its events so far and how (if) it ended.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub name: String,
    pub events: Vec<MemberEvent>,
    /// Still running and not asked to stop.
    pub live: bool,
    /// When the harness killed it, if it did.
    pub killed_us: Option<i64>,
}

impl MemberView {
    /// The assignment after the last callback.
    pub fn owned(&self) -> BTreeSet<i32> {
        self.events
            .iter()
            .rev()
            .find_map(MemberEvent::owned_after)
            .unwrap_or_default()
    }

    /// When the member stopped owning anything: it began closing, or it was killed.
    pub fn end_us(&self) -> Option<i64> {
        let closing = self.events.iter().find_map(|event| match event {
            MemberEvent::Closing { t } => Some(*t),
            _ => None,
        });
        match (closing, self.killed_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time of the last rebalance callback.
    pub fn last_callback_us(&self) -> Option<i64> {
        self.events
            .iter()
            .filter(|event| event.is_rebalance_callback())
            .map(MemberEvent::time_us)
            .max()
    }
}

/// The settled assignment, or why the group is not settled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Settled(BTreeMap<String, BTreeSet<i32>>),
    NotYet(String),
}

/// Whether the live members have settled on `partitions` partitions (see the module docs).
pub fn settle(views: &[MemberView], partitions: u32, quiet_us: i64, now_us: i64) -> Settle {
    let live: Vec<&MemberView> = views.iter().filter(|view| view.live).collect();
    if live.is_empty() {
        return Settle::NotYet("no live member".to_string());
    }
    let mut owners: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let mut assignment = BTreeMap::new();
    for view in &live {
        let owned = view.owned();
        for partition in &owned {
            owners.entry(*partition).or_default().push(&view.name);
        }
        assignment.insert(view.name.clone(), owned);
    }
    let describe = || format!("{assignment:?}");
    if let Some((name, _)) = assignment.iter().find(|(_, owned)| owned.is_empty()) {
        return Settle::NotYet(format!("{name} owns nothing: {}", describe()));
    }
    let all: Vec<i32> = (0..i32::try_from(partitions).unwrap_or(i32::MAX)).collect();
    let orphans: Vec<i32> = all
        .iter()
        .copied()
        .filter(|partition| !owners.contains_key(partition))
        .collect();
    if !orphans.is_empty() {
        return Settle::NotYet(format!(
            "partitions {orphans:?} have no owner: {}",
            describe()
        ));
    }
    if let Some((partition, names)) = owners.iter().find(|(_, names)| names.len() > 1) {
        return Settle::NotYet(format!(
            "partition {partition} owned by {names:?}: {}",
            describe()
        ));
    }
    if let Some(partition) = owners.keys().find(|partition| !all.contains(partition)) {
        return Settle::NotYet(format!(
            "partition {partition} does not exist: {}",
            describe()
        ));
    }
    let counts = assignment.values().map(BTreeSet::len);
    let (fewest, most) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
    if most > fewest + 1 {
        return Settle::NotYet(format!("unbalanced: {}", describe()));
    }
    let last = live
        .iter()
        .filter_map(|view| view.last_callback_us())
        .max()
        .unwrap_or(0);
    if now_us - last < quiet_us {
        return Settle::NotYet(format!(
            "a callback fired {} ms ago: {}",
            (now_us - last) / 1000,
            describe()
        ));
    }
    Settle::Settled(assignment)
}

/// One member's ownership of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub member: String,
    pub partition: i32,
    pub from_us: i64,
    /// `i64::MAX` while it lasts.
    pub until_us: i64,
}

/// Every ownership interval of every member.
pub fn intervals(views: &[MemberView]) -> Vec<Ownership> {
    let mut all = Vec::new();
    for view in views {
        let end = view.end_us().unwrap_or(i64::MAX);
        let mut open: BTreeMap<i32, i64> = BTreeMap::new();
        for event in &view.events {
            let Some(owned) = event.owned_after() else {
                continue;
            };
            let t = event.time_us().min(end);
            let closed: Vec<i32> = open
                .keys()
                .copied()
                .filter(|partition| !owned.contains(partition))
                .collect();
            for partition in closed {
                if let Some(from_us) = open.remove(&partition) {
                    all.push(Ownership {
                        member: view.name.clone(),
                        partition,
                        from_us,
                        until_us: t,
                    });
                }
            }
            for partition in owned {
                open.entry(partition).or_insert(t);
            }
        }
        for (partition, from_us) in open {
            all.push(Ownership {
                member: view.name.clone(),
                partition,
                from_us,
                until_us: end,
            });
        }
    }
    all
}

/// Problems: instants at which two members owned the same partition.
pub fn check_exclusive(views: &[MemberView]) -> Vec<String> {
    let mut by_partition: BTreeMap<i32, Vec<Ownership>> = BTreeMap::new();
    for ownership in intervals(views) {
        if ownership.from_us < ownership.until_us {
            by_partition
                .entry(ownership.partition)
                .or_default()
                .push(ownership);
        }
    }
    let mut problems = Vec::new();
    for (partition, mut owners) in by_partition {
        owners.sort_by_key(|ownership| ownership.from_us);
        for (index, first) in owners.iter().enumerate() {
            for second in owners.iter().skip(index + 1) {
                if second.from_us < first.until_us && second.member != first.member {
                    problems.push(format!(
                        "partition {partition} owned by {} and {} at once: {} from {} to {}, {} from {} to {}",
                        first.member,
                        second.member,
                        first.member,
                        first.from_us,
                        describe_end(first.until_us),
                        second.member,
                        second.from_us,
                        describe_end(second.until_us)
                    ));
                }
            }
        }
    }
    problems
}

fn describe_end(until_us: i64) -> String {
    if until_us == i64::MAX {
        "the end".to_string()
    } else {
        until_us.to_string()
    }
}

/// Problems: records a member processed from a partition it did not own at the time (by its own
/// callbacks, in the order it logged them).
pub fn check_consumed_while_owned(views: &[MemberView]) -> Vec<String> {
    let mut problems = Vec::new();
    for view in views {
        let mut owned = BTreeSet::new();
        for event in &view.events {
            if let Some(after) = event.owned_after() {
                owned = after;
            } else if let MemberEvent::Consumed { p, o, .. } = event
                && !owned.contains(p)
            {
                problems.push(format!(
                    "{} processed ({p}, {o}) while owning only {owned:?}",
                    view.name
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn assigned(t: i64, owned: &[i32]) -> MemberEvent {
        MemberEvent::Assigned {
            t,
            partitions: owned.to_vec(),
            owned: owned.to_vec(),
        }
    }

    fn revoked(t: i64, owned: &[i32]) -> MemberEvent {
        MemberEvent::Revoked {
            t,
            partitions: Vec::new(),
            owned: owned.to_vec(),
        }
    }

    fn view(name: &str, events: Vec<MemberEvent>) -> MemberView {
        MemberView {
            name: name.to_string(),
            events,
            live: true,
            killed_us: None,
        }
    }

    #[test]
    fn a_group_settles_only_when_every_partition_has_one_owner_and_callbacks_are_quiet() {
        let a = view("a", vec![assigned(10, &[0, 1])]);
        let b = view("b", vec![assigned(20, &[2, 3])]);
        let views = [a.clone(), b.clone()];
        assert!(matches!(settle(&views, 4, 100, 200), Settle::Settled(_)));
        // Too recent.
        assert!(matches!(settle(&views, 4, 100, 110), Settle::NotYet(_)));
        // An orphan.
        assert!(matches!(settle(&views, 5, 100, 200), Settle::NotYet(_)));
        // A member without partitions (it has just joined).
        let c = view("c", Vec::new());
        assert!(matches!(
            settle(&[a.clone(), b.clone(), c], 4, 100, 200),
            Settle::NotYet(_)
        ));
        // Two owners.
        let d = view("d", vec![assigned(10, &[3])]);
        assert!(matches!(
            settle(&[a.clone(), b.clone(), d], 4, 100, 200),
            Settle::NotYet(_)
        ));
        // Unbalanced.
        let e = view("e", vec![assigned(10, &[0, 1, 2])]);
        let f = view("f", vec![assigned(10, &[3])]);
        assert!(matches!(settle(&[e, f], 4, 100, 200), Settle::NotYet(_)));
        // A dead member's partitions do not count.
        let mut dead = view("dead", vec![assigned(5, &[0, 1, 2, 3])]);
        dead.live = false;
        assert!(matches!(
            settle(&[a, b, dead], 4, 100, 200),
            Settle::Settled(_)
        ));
    }

    #[test]
    fn overlapping_ownership_is_found_and_a_handoff_is_not() {
        let a = view("a", vec![assigned(10, &[0, 1]), revoked(30, &[0])]);
        let b = view("b", vec![assigned(40, &[1])]);
        assert!(check_exclusive(&[a.clone(), b]).is_empty());
        let early = view("b", vec![assigned(25, &[1])]);
        let problems = check_exclusive(&[a.clone(), early]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        // A killed member's ownership ends at the kill.
        let mut killed = a;
        killed.killed_us = Some(20);
        let later = view("b", vec![assigned(25, &[0, 1])]);
        assert!(check_exclusive(&[killed, later]).is_empty());
    }

    #[test]
    fn a_record_from_a_partition_not_owned_is_found() {
        let consumed = |p| MemberEvent::Consumed {
            t: 0,
            p,
            o: 0,
            i: 0,
        };
        let a = view(
            "a",
            vec![assigned(1, &[0]), consumed(0), revoked(2, &[]), consumed(0)],
        );
        assert_eq!(check_consumed_while_owned(&[a]).len(), 1);
    }
}
