//! Scenario 5 (Sluice only): a group rides through repeated kill -9 of the agent.
//!
//! Two members consume a paced topic, committing after every batch. Once the group has settled,
//! the agent is killed with SIGKILL and started again on the same bucket, [`AGENT_KILLS`] times;
//! before each kill, and after the last restart, every member must have committed again (the
//! harness waits for those events, never for a fixed time). Then the members drain the topic.
//!
//! What must hold, as it does with Apache Kafka, whose group metadata survives a coordinator
//! failover (issue 14; docs/groups.md):
//! - no commit failed once the group had settled (a restarted agent that forgot the group
//!   answers GROUP_ID_NOT_FOUND or UNKNOWN_MEMBER_ID, and the Java client gives the commit up);
//! - no rebalance after the first settle: no rebalance callback at all in any member after it;
//! - re-delivery only of records after the last commit (the handoff checks: no record processed
//!   after it was committed), none lost, and every partition committed to its end.

use std::time::Duration;

use crate::groups::events::MemberEvent;
use crate::groups::handoff::{check_handoff, last_commits};
use crate::groups::member::{GroupClient, MemberSpec, now_us, release_pace, wait_for};
use crate::groups::ownership::MemberView;
use crate::groups::scenario::{
    DRAIN_TIMEOUT_S, Group, MEMBER_RATE, PreparedTopic, SETTLE_TIMEOUT_S, Target, finish,
    scenario_dir,
};
use crate::sluice::SluiceAgent;

/// How many times the agent is killed and restarted under the group.
pub const AGENT_KILLS: usize = 3;
/// How long a member gets to commit again after the agent came back (a reconnect, a
/// FindCoordinator and a commit; generous for a loaded machine).
const COMMIT_AFTER_RESTART_TIMEOUT_S: u64 = 60;

/// Whether every member in `views` logged a successful commit after `since_us`.
fn all_committed_since(views: &[MemberView], since_us: i64) -> bool {
    views.iter().all(|view| {
        view.events
            .iter()
            .any(|event| matches!(event, MemberEvent::Committed { t, .. } if *t > since_us))
    })
}

/// The commits that failed after `since_us`, `member: message`. (During the first rebalance a
/// classic member's commit may be refused with REBALANCE_IN_PROGRESS, with Kafka too.)
fn failed_commits_since(views: &[MemberView], since_us: i64) -> Vec<String> {
    views
        .iter()
        .flat_map(|view| {
            view.events.iter().filter_map(move |event| match event {
                MemberEvent::CommitFailed { t, message } if *t > since_us => {
                    Some(format!("{}: {message}", view.name))
                }
                _ => None,
            })
        })
        .collect()
}

/// Rebalance callbacks strictly between `after_us` and `before_us`, `member: event`.
fn callbacks_between(views: &[MemberView], after_us: i64, before_us: i64) -> Vec<String> {
    views
        .iter()
        .flat_map(|view| {
            view.events
                .iter()
                .filter(move |event| {
                    event.is_rebalance_callback()
                        && event.time_us() > after_us
                        && event.time_us() < before_us
                })
                .map(move |event| format!("{}: {event:?}", view.name))
        })
        .collect()
}

/// See the module docs.
pub fn consumes_through_agent_kills(
    target: &Target,
    agent: &mut SluiceAgent,
    client: GroupClient,
    prepared: &PreparedTopic,
) -> Result<String, String> {
    let dir = scenario_dir(target, "agent-kills", client)?;
    let group_id = format!("agent-kills-{}", client.name());
    let pace_file = dir.join("pace");
    let mut group = Group::new(client, &dir);
    let spec = |group: &Group, name: &str| MemberSpec {
        rate: MEMBER_RATE,
        pace_file: Some(pace_file.clone()),
        ..group.spec(target, &prepared.topic, &group_id, name)
    };
    let outcome = (|| {
        group.start(spec(&group, "k1"))?;
        group.start(spec(&group, "k2"))?;
        group.settle("2 members", Duration::from_secs(SETTLE_TIMEOUT_S))?;
        let settled_us = now_us();
        let commit_timeout = Duration::from_secs(COMMIT_AFTER_RESTART_TIMEOUT_S);
        let mut since_us = settled_us;
        for kill in 1..=AGENT_KILLS {
            wait_for(commit_timeout, || {
                group.health()?;
                Ok(all_committed_since(&group.views()?, since_us).then_some(()))
            })
            .map_err(|error| format!("before kill {kill}: not every member committed ({error})"))?;
            agent
                .restart()
                .map_err(|error| format!("kill -9 and restart {kill}: {error}"))?;
            since_us = now_us();
            group
                .timeline
                .push(format!("agent killed and restarted ({kill})"));
        }
        wait_for(commit_timeout, || {
            group.health()?;
            Ok(all_committed_since(&group.views()?, since_us).then_some(()))
        })
        .map_err(|error| {
            format!(
                "after the last restart not every member committed ({error}); agent log:\n{}",
                agent.log_tail()
            )
        })?;
        let consumed_before_release = group
            .views()?
            .iter()
            .flat_map(|view| &view.events)
            .filter(|event| matches!(event, MemberEvent::Consumed { .. }))
            .count();
        if consumed_before_release >= prepared.acks.len() {
            return Err(format!(
                "the members consumed the whole topic before the last kill; lower MEMBER_RATE or raise the records ({consumed_before_release})"
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
        let failed = failed_commits_since(&views, settled_us);
        if !failed.is_empty() {
            problems.push(format!(
                "{} commits failed:\n{}",
                failed.len(),
                failed.join("\n")
            ));
        }
        // The members closing at the end revoke their partitions: a callback, not a rebalance.
        let closing_us = views
            .iter()
            .flat_map(|view| &view.events)
            .filter_map(|event| match event {
                MemberEvent::Closing { t } => Some(*t),
                _ => None,
            })
            .min()
            .unwrap_or(i64::MAX);
        let rebalances = callbacks_between(&views, settled_us, closing_us);
        if !rebalances.is_empty() {
            problems.push(format!(
                "rebalance callbacks after the group settled:\n{}",
                rebalances.join("\n")
            ));
        }
        let summary = match check_handoff(&views, &prepared.acks, &prepared.end_offsets) {
            Ok(summary) => Some(summary),
            Err(found) => {
                problems.extend(found);
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        let summary = summary.unwrap_or_default();
        Ok(format!(
            "{AGENT_KILLS} kills: {} records processed, {} twice (after the last commit), {} commits, none failed after the first rebalance ({} during it), no rebalance after the first",
            summary.processed, summary.reprocessed, summary.commits, summary.commits_failed
        ))
    })();
    finish(group, outcome)
}
