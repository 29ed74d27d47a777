//! Scenarios of a consumer group spread over the agents of a cluster (`--metadata`): the group's
//! coordinator killed with kill -9 and not restarted ([`consumes_through_coordinator_kill`]), and
//! the helpers the rolling-restart test shares (who coordinates a group, the longest pause in
//! the members' processing).
//!
//! Three members each bootstrap at a different agent, so each one's first FindCoordinator goes to
//! another agent; all three agree on the group's coordinator (the rendezvous owner of the group
//! id over the live agents). Killing it leaves the members heartbeating and committing into a
//! dead connection; they look the coordinator up again, and the surviving agents name the dead
//! one until its lease runs out and their next renewal drops it from their view. Then the new
//! owner loads the group from the log (`server/src/groups/ownership.rs`) and the members carry on
//! with their member ids and generations or epochs — or, if it had to, the group rebalances.
//!
//! What must hold, as a Kafka coordinator failover gives: no committed offset lost (a commit never
//! goes backwards, a committed() answer is never below a commit that returned before it), every
//! acknowledged record processed, re-delivery only of records after the last commit, and every
//! partition committed to its end. And since the new owner loads the group as it was, no commit
//! fails and no rebalance callback runs after the kill (a commit in flight at the kill is retried
//! by the client until the new coordinator answers, within its 10 s timeout).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::api_versions::find_coordinator;
use crate::groups::events::MemberEvent;
use crate::groups::handoff::{Acks, check_handoff, commits_gone_back, last_commits};
use crate::groups::member::{GroupClient, MemberSpec, now_us, release_pace, wait_for};
use crate::groups::ownership::MemberView;
use crate::groups::scenario::{
    DRAIN_TIMEOUT_S, Group, MEMBER_RATE, PreparedTopic, SETTLE_TIMEOUT_S, Target, finish,
    scenario_dir,
};
use crate::report::Ack;
use crate::sluice::Cluster;

/// The cluster's lease in these scenarios: a killed agent leaves the others' view within it (and
/// a third of it, their next renewal).
pub const LEASE_MS: u64 = 3_000;
/// How long the members get to commit again after the kill: the lease, a renewal, a
/// FindCoordinator and a commit, with slack for a loaded 2-core machine.
const COMMIT_AFTER_KILL_TIMEOUT_S: u64 = 45;
/// How long the survivors get to name another coordinator after the kill.
const NEW_COORDINATOR_TIMEOUT_S: u64 = 30;

/// The agent (index into `cluster.agents`) that the live agents `live` all name as `group`'s
/// coordinator; an error if one cannot be asked or they disagree.
pub fn coordinator(cluster: &Cluster, live: &[usize], group: &str) -> Result<usize, String> {
    let mut named = Vec::with_capacity(live.len());
    for &index in live {
        let agent = cluster
            .agents
            .get(index)
            .ok_or_else(|| format!("no agent {index}"))?;
        let (_, port) = find_coordinator(agent.address(), group)
            .map_err(|error| format!("FindCoordinator at agent {index}: {error}"))?;
        let owner = cluster
            .agents
            .iter()
            .position(|agent| agent.address().port() == port)
            .ok_or_else(|| format!("agent {index} names port {port}, no agent of the cluster"))?;
        named.push(owner);
    }
    match named.first() {
        Some(first) if named.iter().all(|owner| owner == first) => Ok(*first),
        _ => Err(format!(
            "the agents {live:?} name different coordinators: {named:?}"
        )),
    }
}

/// When each member first committed successfully after `since_us`, if it has.
fn first_commits_after(views: &[MemberView], since_us: i64) -> Vec<Option<i64>> {
    views
        .iter()
        .map(|view| {
            view.events.iter().find_map(|event| match event {
                MemberEvent::Committed { t, .. } if *t > since_us => Some(*t),
                _ => None,
            })
        })
        .collect()
}

/// `(commits failed, rebalance callbacks)` logged after `since_us` and before the members began
/// to close.
fn trouble_after(views: &[MemberView], since_us: i64) -> (usize, usize) {
    let closing_us = views
        .iter()
        .flat_map(|view| &view.events)
        .filter_map(|event| match event {
            MemberEvent::Closing { t } => Some(*t),
            _ => None,
        })
        .min()
        .unwrap_or(i64::MAX);
    let during = |event: &&MemberEvent| event.time_us() > since_us && event.time_us() < closing_us;
    let events = views.iter().flat_map(|view| &view.events).filter(during);
    let failed = events
        .clone()
        .filter(|event| matches!(event, MemberEvent::CommitFailed { .. }))
        .count();
    let callbacks = events.filter(|event| event.is_rebalance_callback()).count();
    (failed, callbacks)
}

/// The distinct messages of the commits that failed after `since_us`, with their counts
/// (`3 × message; …`).
pub fn commit_failures(views: &[MemberView], since_us: i64) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for event in views.iter().flat_map(|view| &view.events) {
        if let MemberEvent::CommitFailed { t, message } = event
            && *t > since_us
        {
            *counts.entry(message.as_str()).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(message, count)| format!("{count} × {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The longest time between two records processed (by any member) within `[from_us, to_us]`,
/// counting from `from_us`: how long the group stopped making progress around an event.
pub fn longest_pause_us(views: &[MemberView], from_us: i64, to_us: i64) -> i64 {
    let mut times: Vec<i64> = views
        .iter()
        .flat_map(|view| &view.events)
        .filter_map(|event| match event {
            MemberEvent::Consumed { t, .. } if *t >= from_us && *t <= to_us => Some(*t),
            _ => None,
        })
        .collect();
    times.sort_unstable();
    let mut previous = from_us;
    let mut longest = 0;
    for t in times.into_iter().chain(std::iter::once(to_us)) {
        longest = longest.max(t - previous);
        previous = t;
    }
    longest
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// See the module docs. `cluster` has three agents that all list each other; `prepared` is the
/// topic's records. The coordinator is killed and left dead.
pub fn consumes_through_coordinator_kill(
    cluster: &mut Cluster,
    target: &Target,
    client: GroupClient,
    prepared: &PreparedTopic,
) -> Result<String, String> {
    let dir = scenario_dir(target, "coordinator-kill", client)?;
    let group_id = format!("coordinator-kill-{}", client.name());
    let pace_file = dir.join("pace");
    let mut group = Group::new(client, &dir);
    let bootstraps: Vec<String> = cluster
        .agents
        .iter()
        .map(|agent| agent.bootstrap())
        .collect();
    let spec = |group: &Group, name: &str, bootstrap: &str| MemberSpec {
        bootstrap: bootstrap.to_owned(),
        rate: MEMBER_RATE,
        pace_file: Some(pace_file.clone()),
        log_committed: true,
        ..group.spec(target, &prepared.topic, &group_id, name)
    };
    let outcome = (|| {
        // Member `m-a` bootstraps at agent a, `m-b` at b, `m-c` at c.
        for (letter, bootstrap) in ["a", "b", "c"].iter().zip(&bootstraps) {
            group.start(spec(&group, &format!("m-{letter}"), bootstrap))?;
        }
        group.settle("3 members", Duration::from_secs(SETTLE_TIMEOUT_S))?;
        let settled_us = now_us();
        let commit_timeout = Duration::from_secs(COMMIT_AFTER_KILL_TIMEOUT_S);
        wait_for(commit_timeout, || {
            group.health()?;
            Ok(first_commits_after(&group.views()?, settled_us)
                .iter()
                .all(Option::is_some)
                .then_some(()))
        })
        .map_err(|error| format!("before the kill not every member committed ({error})"))?;
        let live: Vec<usize> = (0..cluster.agents.len()).collect();
        let dead = coordinator(cluster, &live, &group_id)?;
        cluster
            .agents
            .get_mut(dead)
            .ok_or("no coordinator agent")?
            .kill9()
            .map_err(|error| format!("kill -9 the coordinator: {error}"))?;
        let kill_us = now_us();
        group
            .timeline
            .push(format!("coordinator agent {dead} killed with kill -9"));
        let survivors: Vec<usize> = live.into_iter().filter(|index| *index != dead).collect();
        let first_us = wait_for(commit_timeout, || {
            group.health()?;
            Ok(first_commits_after(&group.views()?, kill_us)
                .into_iter()
                .flatten()
                .min())
        })
        .map_err(|error| format!("no member committed after the kill ({error})"))?;
        let new_owner = wait_for(Duration::from_secs(NEW_COORDINATOR_TIMEOUT_S), || {
            Ok(coordinator(cluster, &survivors, &group_id)
                .ok()
                .filter(|owner| *owner != dead))
        })
        .map_err(|error| format!("the survivors still name the dead coordinator ({error})"))?;
        let named_us = now_us();
        let all_us = wait_for(commit_timeout, || {
            group.health()?;
            let firsts = first_commits_after(&group.views()?, kill_us);
            Ok(firsts
                .iter()
                .all(Option::is_some)
                .then(|| firsts.into_iter().flatten().max())
                .flatten())
        })
        .map_err(|error| format!("not every member committed after the kill ({error})"))?;
        group.timeline.push(format!(
            "first commit {:.1} s after the kill, every member's {:.1} s; agent {new_owner} named coordinator by {:.1} s",
            seconds(first_us - kill_us),
            seconds(all_us - kill_us),
            seconds(named_us - kill_us)
        ));
        let consumed_before_release = group
            .views()?
            .iter()
            .flat_map(|view| &view.events)
            .filter(|event| matches!(event, MemberEvent::Consumed { .. }))
            .count();
        if consumed_before_release >= prepared.acks.len() {
            return Err(format!(
                "the members consumed the whole topic before the group moved; lower MEMBER_RATE or raise the records ({consumed_before_release})"
            ));
        }
        release_pace(&pace_file).map_err(|error| error.to_string())?;
        wait_for(Duration::from_secs(DRAIN_TIMEOUT_S), || {
            group.health()?;
            let committed = last_commits(&group.views()?);
            Ok(prepared
                .end_offsets
                .iter()
                .all(|(partition, end)| committed.get(partition) == Some(end))
                .then_some(()))
        })
        .map_err(|error| format!("the members did not commit every end offset ({error})"))?;
        group.terminate_all()?;
        let mut problems = Vec::new();
        if let Err(shared) = group.check_ownership() {
            problems.push(shared);
        }
        let views = group.views()?;
        let backwards = commits_gone_back(&views);
        if !backwards.is_empty() {
            problems.push(format!(
                "{} commits went backwards:\n{}",
                backwards.len(),
                backwards.join("\n")
            ));
        }
        let summary = match check_handoff(&views, &prepared.acks, &prepared.end_offsets) {
            Ok(summary) => Some(summary),
            Err(found) => {
                problems.extend(found);
                None
            }
        };
        // The new owner loads the group as it was: the members keep their member ids and
        // generations or epochs, so nothing fails and nothing rebalances (as in a Kafka
        // coordinator failover).
        let (failed, callbacks) = trouble_after(&views, kill_us);
        if failed + callbacks > 0 {
            problems.push(format!(
                "after the kill {failed} commits failed ({}) and {callbacks} rebalance callbacks ran",
                commit_failures(&views, kill_us)
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let summary = summary.unwrap_or_default();
        Ok(format!(
            "coordinator {dead} killed: first commit after {:.1} s (all members {:.1} s); {} records processed, {} twice (after the last commit), {} commits; after the kill {failed} commits failed ({}) and {callbacks} rebalance callbacks",
            seconds(first_us - kill_us),
            seconds(all_us - kill_us),
            summary.processed,
            summary.reprocessed,
            summary.commits,
            commit_failures(&views, kill_us),
        ))
    })();
    finish(group, outcome)
}

/// A group of three members, `m-a` bootstrapped at agent a, `m-b` at b, `m-c` at c, consuming a
/// topic that is still being written (no pacing), committing after every batch: the group of the
/// rolling-restart test.
pub struct RollingGroup {
    group: Group,
    /// When the members had settled (0 before).
    settled_us: i64,
}

impl std::fmt::Debug for RollingGroup {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RollingGroup")
    }
}

impl RollingGroup {
    /// Starts the members in `work_dir/rolling-<client>` on `topic` (which must exist, with
    /// [`crate::groups::scenario::PARTITIONS`] partitions).
    pub fn start(
        cluster: &Cluster,
        client: GroupClient,
        topic: &str,
        work_dir: &Path,
    ) -> Result<RollingGroup, String> {
        let target = Target {
            name: "sluice cluster".to_owned(),
            bootstrap: cluster.bootstrap(),
            work_dir: work_dir.to_path_buf(),
        };
        let dir = scenario_dir(&target, "rolling", client)?;
        let group_id = format!("rolling-{}", client.name());
        let mut group = Group::new(client, &dir);
        for (letter, agent) in ["a", "b", "c"].iter().zip(&cluster.agents) {
            let spec = MemberSpec {
                bootstrap: agent.bootstrap(),
                log_committed: true,
                ..group.spec(&target, topic, &group_id, &format!("m-{letter}"))
            };
            group.start(spec)?;
        }
        Ok(RollingGroup {
            group,
            settled_us: 0,
        })
    }

    /// Waits until the three members have settled.
    pub fn settle(&mut self) -> Result<(), String> {
        self.group
            .settle("3 members", Duration::from_secs(SETTLE_TIMEOUT_S))?;
        self.settled_us = now_us();
        Ok(())
    }

    /// Fails if a member exited by itself or reported an error (gave up).
    pub fn health(&mut self) -> Result<(), String> {
        self.group.health()
    }

    /// Waits until the members have processed `records` records in all (each counted as often as
    /// it was processed).
    pub fn wait_until_processed(
        &mut self,
        records: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let group = &mut self.group;
        wait_for(timeout, || {
            group.health()?;
            let processed = group
                .views()?
                .iter()
                .flat_map(|view| &view.events)
                .filter(|event| matches!(event, MemberEvent::Consumed { .. }))
                .count();
            Ok((processed >= records).then_some(()))
        })
        .map_err(|error| format!("the group did not process {records} records ({error})"))
    }

    /// Waits until the members have committed every partition to the end `acks` imply, stops them
    /// (SIGTERM: each must close its consumer), and checks that no partition was owned by two
    /// members at once, no commit went backwards, and no commit failed and no rebalance callback
    /// ran after the group had settled. Returns what the members logged.
    pub fn drain_and_stop(self, acks: &[Ack]) -> Result<Vec<MemberView>, String> {
        let RollingGroup {
            mut group,
            settled_us,
        } = self;
        let ends = end_offsets(acks);
        let mut views = Vec::new();
        let outcome = (|| {
            wait_for(Duration::from_secs(DRAIN_TIMEOUT_S), || {
                group.health()?;
                let committed = last_commits(&group.views()?);
                Ok(ends
                    .iter()
                    .all(|(partition, end)| committed.get(partition) == Some(end))
                    .then_some(()))
            })
            .map_err(|error| {
                format!(
                    "the members did not commit every end offset ({error}): committed {:?}, ends {ends:?}",
                    group.views().map(|views| last_commits(&views)).unwrap_or_default()
                )
            })?;
            group.terminate_all()?;
            views = group.check_ownership()?;
            let backwards = commits_gone_back(&views);
            if !backwards.is_empty() {
                return Err(format!(
                    "{} commits went backwards:\n{}",
                    backwards.len(),
                    backwards.join("\n")
                ));
            }
            // The agents' groups move to the others and back: the members keep their member
            // ids and generations, so no commit fails and nothing rebalances once settled.
            let (failed, callbacks) = trouble_after(&views, settled_us);
            if failed + callbacks > 0 {
                return Err(format!(
                    "after the group settled {failed} commits failed ({}) and {callbacks} rebalance callbacks ran",
                    commit_failures(&views, settled_us)
                ));
            }
            let (failed, _) = trouble_after(&views, 0);
            Ok(format!(
                "no failed commit and no rebalance after the group settled ({failed} commits failed during the first rebalance)"
            ))
        })();
        let summary = finish(group, outcome)?;
        crate::tools::loud(&format!("the group drained: {summary}"));
        Ok(views)
    }
}

fn end_offsets(acks: &[Ack]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for ack in acks {
        let end = ends.entry(ack.partition).or_insert(0);
        *end = (*end).max(ack.offset + 1);
    }
    ends
}

/// The handoff checks (`handoff::check_handoff`) for a topic several producers wrote: their
/// record indexes repeat, so records are matched by (partition, offset) instead, through an index
/// of their own. Returns a one-line summary.
pub fn check_group_consumed_every_ack(
    views: &[MemberView],
    acks: &[Ack],
) -> Result<String, String> {
    let index_of: HashMap<(i32, i64), i64> = acks
        .iter()
        .zip(0_i64..)
        .map(|(ack, index)| ((ack.partition, ack.offset), index))
        .collect();
    let by_offset: Acks = index_of
        .iter()
        .map(|(&(partition, offset), &index)| (index, (partition, offset)))
        .collect();
    let remapped: Vec<MemberView> = views
        .iter()
        .map(|view| MemberView {
            events: view
                .events
                .iter()
                .map(|event| match event {
                    MemberEvent::Consumed { t, p, o, .. } => MemberEvent::Consumed {
                        t: *t,
                        p: *p,
                        o: *o,
                        // Never acknowledged: an index no acknowledgement has.
                        i: index_of.get(&(*p, *o)).copied().unwrap_or(-1),
                    },
                    other => other.clone(),
                })
                .collect(),
            ..view.clone()
        })
        .collect();
    let summary = check_handoff(&remapped, &by_offset, &end_offsets(acks))
        .map_err(|problems| problems.join("\n"))?;
    Ok(format!(
        "{} acknowledged records, {} processed, {} twice (after the last commit), {} commits, {} failed",
        acks.len(),
        summary.processed,
        summary.reprocessed,
        summary.commits,
        summary.commits_failed
    ))
}
