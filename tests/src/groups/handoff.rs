//! Handoff correctness: with commits after processing, partitions moving between members lose no
//! record and hand over no committed record twice.
//!
//! The members log each record as they process it and each commit after it succeeded, with
//! wall-clock microseconds. A record (p, o) is *committed* from the moment any member's commit of
//! an offset above o on p returned. The checks:
//! - every consumed record is the one the producer acknowledged at that (partition, offset);
//! - every produced record was processed by some member (none skipped);
//! - no record was processed after it was committed (by anyone, the committer included): the next
//!   owner of a partition starts at its committed offset, never below;
//! - a committed() answer (OffsetFetch) is never below a commit that returned before it, and the
//!   member then starts exactly there;
//! - at the end the committed offset of every partition is its end offset.
//!
//! Records processed and never committed — a crashed member's last batch, a commit refused
//! because a rebalance had begun — may be processed again by the next owner: at-least-once.
//! A member killed between a commit and its log line makes the log miss a commit; that only hides
//! a duplicate, it never invents one.

use std::collections::{BTreeMap, HashMap};

use crate::groups::events::MemberEvent;
use crate::groups::ownership::MemberView;

/// What the handoff checks found acceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoffSummary {
    pub processed: usize,
    /// Records processed more than once (never after their commit).
    pub reprocessed: usize,
    pub commits: usize,
    pub commits_failed: usize,
}

/// What the producer acknowledged: record index → (partition, offset).
pub type Acks = HashMap<i64, (i32, i64)>;

struct Commit {
    t: i64,
    member: String,
    offset: i64,
}

/// Runs the checks (module docs); `Err` lists every problem found.
pub fn check_handoff(
    views: &[MemberView],
    acks: &Acks,
    end_offsets: &BTreeMap<i32, i64>,
) -> Result<HandoffSummary, Vec<String>> {
    let mut problems = Vec::new();
    let mut summary = HandoffSummary::default();
    // Commits per partition, in time order, with the running maximum.
    let mut commits: BTreeMap<i32, Vec<Commit>> = BTreeMap::new();
    for view in views {
        for event in &view.events {
            match event {
                MemberEvent::Committed { t, offsets } => {
                    summary.commits += 1;
                    for (partition, offset) in offsets {
                        commits.entry(*partition).or_default().push(Commit {
                            t: *t,
                            member: view.name.clone(),
                            offset: *offset,
                        });
                    }
                }
                MemberEvent::CommitFailed { .. } => summary.commits_failed += 1,
                _ => {}
            }
        }
    }
    for list in commits.values_mut() {
        list.sort_by_key(|commit| commit.t);
    }
    // The highest commit of `partition` that returned before `t`.
    let committed_before = |partition: i32, t: i64| -> Option<&Commit> {
        commits.get(&partition).and_then(|list| {
            list.iter()
                .take_while(|commit| commit.t < t)
                .max_by_key(|commit| commit.offset)
        })
    };

    let mut seen: HashMap<i64, usize> = HashMap::new();
    for view in views {
        // After a committed() answer, the next record of each partition must start there.
        let mut expected_start: HashMap<i32, i64> = HashMap::new();
        for event in &view.events {
            match event {
                MemberEvent::CommittedFetch { t, offsets } => {
                    for (partition, offset) in offsets {
                        if let Some(commit) = committed_before(*partition, *t)
                            && *offset < commit.offset
                        {
                            problems.push(format!(
                                "{} fetched committed offset {offset} for partition {partition}, but {} had committed {} before",
                                view.name, commit.member, commit.offset
                            ));
                        }
                        expected_start.insert(*partition, (*offset).max(0));
                    }
                }
                MemberEvent::Consumed { t, p, o, i } => {
                    summary.processed += 1;
                    *seen.entry(*i).or_default() += 1;
                    match acks.get(i) {
                        Some(&(partition, offset)) if (partition, offset) == (*p, *o) => {}
                        Some(&(partition, offset)) => problems.push(format!(
                            "{} processed record {i} at ({p}, {o}); it was acknowledged at ({partition}, {offset})",
                            view.name
                        )),
                        None => problems.push(format!(
                            "{} processed ({p}, {o}) carrying index {i}, which was never acknowledged",
                            view.name
                        )),
                    }
                    if let Some(commit) = committed_before(*p, *t)
                        && *o < commit.offset
                    {
                        problems.push(format!(
                            "{} processed ({p}, {o}) at {t} after {} had committed offset {} at {}",
                            view.name, commit.member, commit.offset, commit.t
                        ));
                    }
                    if let Some(start) = expected_start.remove(p)
                        && start != *o
                    {
                        problems.push(format!(
                            "{} fetched committed offset {start} for partition {p} but then started at {o}",
                            view.name
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    summary.reprocessed = seen.values().filter(|count| **count > 1).count();
    let mut missing: Vec<i64> = acks
        .keys()
        .copied()
        .filter(|index| !seen.contains_key(index))
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        problems.push(format!(
            "{} acknowledged records never processed, first {:?}",
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>()
        ));
    }
    for (partition, end) in end_offsets {
        let last = commits
            .get(partition)
            .and_then(|list| list.iter().map(|commit| commit.offset).max());
        if last != Some(*end) && *end > 0 {
            problems.push(format!(
                "partition {partition} ends at {end} but its last commit is {last:?}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// Commits that went backwards: a successful commit of partition p below an offset a commit of p
/// had already returned with (by any member). A coordinator that lost a commit, or let a member
/// with a stale assignment commit, shows here. `member: partition p committed o after m had
/// committed o'`.
pub fn commits_gone_back(views: &[MemberView]) -> Vec<String> {
    let mut commits: BTreeMap<i32, Vec<Commit>> = BTreeMap::new();
    for view in views {
        for event in &view.events {
            if let MemberEvent::Committed { t, offsets } = event {
                for (partition, offset) in offsets {
                    commits.entry(*partition).or_default().push(Commit {
                        t: *t,
                        member: view.name.clone(),
                        offset: *offset,
                    });
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (partition, list) in &mut commits {
        list.sort_by_key(|commit| commit.t);
        let mut highest: Option<&Commit> = None;
        for commit in list.iter() {
            match highest {
                Some(high) if commit.offset < high.offset => problems.push(format!(
                    "{}: partition {partition} committed {} at {} after {} had committed {} at {}",
                    commit.member, commit.offset, commit.t, high.member, high.offset, high.t
                )),
                Some(high) if commit.offset == high.offset => {}
                _ => highest = Some(commit),
            }
        }
    }
    problems
}

/// The highest offset each partition has a logged commit for.
pub fn last_commits(views: &[MemberView]) -> BTreeMap<i32, i64> {
    let mut last = BTreeMap::new();
    for view in views {
        for event in &view.events {
            if let MemberEvent::Committed { offsets, .. } = event {
                for (partition, offset) in offsets {
                    let entry = last.entry(*partition).or_insert(*offset);
                    *entry = (*entry).max(*offset);
                }
            }
        }
    }
    last
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn view(name: &str, events: Vec<MemberEvent>) -> MemberView {
        MemberView {
            name: name.to_string(),
            events,
            live: true,
            killed_us: None,
        }
    }

    fn consumed(t: i64, o: i64) -> MemberEvent {
        MemberEvent::Consumed { t, p: 0, o, i: o }
    }

    fn committed(t: i64, offset: i64) -> MemberEvent {
        MemberEvent::Committed {
            t,
            offsets: vec![(0, offset)],
        }
    }

    fn acks(count: i64) -> Acks {
        (0..count).map(|i| (i, (0, i))).collect()
    }

    #[test]
    fn a_clean_handoff_passes_and_an_uncommitted_batch_may_repeat() {
        let a = view(
            "a",
            vec![
                consumed(1, 0),
                consumed(2, 1),
                committed(3, 2),
                consumed(4, 2),
            ],
        );
        // b takes over at the committed offset 2 and reads 2 again: a never committed it.
        let b = view(
            "b",
            vec![
                MemberEvent::CommittedFetch {
                    t: 10,
                    offsets: vec![(0, 2)],
                },
                consumed(11, 2),
                consumed(12, 3),
                committed(13, 4),
            ],
        );
        let ends = BTreeMap::from([(0, 4)]);
        let summary = check_handoff(&[a, b], &acks(4), &ends).unwrap();
        assert_eq!(summary.processed, 5);
        assert_eq!(summary.reprocessed, 1);
    }

    #[test]
    fn a_commit_below_an_earlier_one_is_found() {
        let a = view("a", vec![committed(1, 5), committed(5, 9)]);
        let b = view("b", vec![committed(3, 7), committed(7, 9)]);
        assert!(commits_gone_back(&[a.clone(), b]).is_empty());
        let back = view("b", vec![committed(7, 6)]);
        let problems = commits_gone_back(&[a, back]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_committed_record_read_again_a_skip_and_a_lost_commit_are_found() {
        let a = view("a", vec![consumed(1, 0), consumed(2, 1), committed(3, 2)]);
        let again = view(
            "b",
            vec![consumed(10, 1), consumed(11, 2), committed(12, 3)],
        );
        let ends = BTreeMap::from([(0, 3)]);
        let problems = check_handoff(&[a.clone(), again], &acks(3), &ends).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");

        let skipped = view("b", vec![committed(12, 3)]);
        assert!(check_handoff(&[a.clone(), skipped], &acks(3), &ends).is_err());

        let stale_fetch = view(
            "b",
            vec![
                MemberEvent::CommittedFetch {
                    t: 10,
                    offsets: vec![(0, -1)],
                },
                consumed(11, 2),
                committed(12, 3),
            ],
        );
        let problems = check_handoff(&[a, stale_fetch], &acks(3), &ends).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
