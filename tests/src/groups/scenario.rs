//! The consumer-group scenarios, shared by the Apache Kafka and Sluice test files. Each returns a
//! one-line summary or everything that went wrong; the test files run every client through them
//! and fail at the end listing the failures, like the matrix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clients::{ClientRun, Codec, Mode};
use crate::groups::events::MemberEvent;
use crate::groups::handoff::{Acks, check_handoff, last_commits};
use crate::groups::member::{
    GroupClient, Member, MemberSpec, Protocol, now_us, release_pace, wait_for,
};
use crate::groups::ownership::{
    MemberView, Settle, check_consumed_while_owned, check_exclusive, settle,
};
use crate::matrix::timestamp_base_ms;
use crate::report::Report;
use crate::sluice::SluiceAgent;

/// The topic of every group scenario has this many partitions.
pub const PARTITIONS: u32 = 12;
/// Classic members' session timeout: a crash is noticed this long after it happened.
pub const SESSION_TIMEOUT_MS: u32 = 6_000;
/// Every member's heartbeat interval (KIP-848: the broker's setting; see the test files).
pub const HEARTBEAT_INTERVAL_MS: u32 = 1_000;
/// Static members get longer, so that a restart (a JVM start) fits well inside it.
pub const STATIC_SESSION_TIMEOUT_MS: u32 = 10_000;
/// Records in the membership scenario's topic unless `SLUICE_E2E_GROUP_RECORDS` says otherwise.
pub const RECORDS_DEFAULT: u64 = 2_400;
/// What each member processes per second until the pace file appears: slow enough that the
/// records are still flowing through every join, leave and crash of the scenario.
pub const MEMBER_RATE: u32 = 25;
/// No rebalance callback for this long, with a full and balanced assignment: settled. Longer than
/// a heartbeat interval, so a rebalance about to start shows up first.
const QUIET_MS: i64 = 1_500;
pub(crate) const SETTLE_TIMEOUT_S: u64 = 40;
/// After the pace file, how long the remaining members get to process and commit everything.
pub(crate) const DRAIN_TIMEOUT_S: u64 = 90;
/// How long to watch for a rebalance after a static member came back.
const STATIC_OBSERVE_MS: u64 = 3_000;
const MEMBER_TIMEOUT_S: u64 = 300;
const PRODUCE_TIMEOUT_S: u64 = 120;

/// Where the scenarios run.
#[derive(Debug, Clone)]
pub struct Target {
    /// `kafka` or `sluice`, in messages.
    pub name: String,
    pub bootstrap: String,
    pub work_dir: PathBuf,
}

/// `SLUICE_E2E_GROUP_RECORDS`, else [`RECORDS_DEFAULT`].
pub fn records() -> u64 {
    std::env::var("SLUICE_E2E_GROUP_RECORDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|records: &u64| *records >= u64::from(PARTITIONS))
        .unwrap_or(RECORDS_DEFAULT)
}

/// The clients to run: `SLUICE_E2E_GROUP_CLIENTS` (names, comma-separated), else all.
pub fn selected_clients() -> Vec<GroupClient> {
    match std::env::var("SLUICE_E2E_GROUP_CLIENTS") {
        Ok(names) if !names.trim().is_empty() => GroupClient::ALL
            .into_iter()
            .filter(|client| names.split(',').any(|name| name.trim() == client.name()))
            .collect(),
        _ => GroupClient::ALL.to_vec(),
    }
}

/// `SLUICE_E2E_KEEP_REPORTS` is set: keep the members' reports of a passing run too.
pub fn keep_reports() -> bool {
    std::env::var_os("SLUICE_E2E_KEEP_REPORTS").is_some()
}

/// A topic with its produced records.
#[derive(Debug, Clone)]
pub struct PreparedTopic {
    pub topic: String,
    pub acks: Acks,
    pub end_offsets: BTreeMap<i32, i64>,
}

/// Creates `topic` with [`PARTITIONS`] partitions and produces `records` keyed records into it with
/// `client`'s library (the generator of docs/testing.md, record i to partition i % 12).
pub fn prepare_topic(
    target: &Target,
    client: GroupClient,
    topic: &str,
    records: u64,
) -> Result<PreparedTopic, String> {
    let library = client.library();
    library
        .build(&target.work_dir)
        .map_err(|error| format!("build: {error}"))?;
    let run = ClientRun {
        client: library,
        bootstrap: target.bootstrap.clone(),
        topic: topic.to_string(),
        records,
        codec: Codec::Lz4,
        mode: Mode::Produce,
        partitions: PARTITIONS,
        seed: 5,
        timestamp_base_ms: timestamp_base_ms(),
        timeout_s: PRODUCE_TIMEOUT_S,
        report: target.work_dir.join(format!("{topic}-produce.jsonl")),
    };
    let (report, status): (Report, _) = run
        .run()
        .map_err(|error| format!("produce to {topic}: {error}"))?;
    if !status.success() || !report.errors.is_empty() || report.acks.len() as u64 != records {
        return Err(format!(
            "produce to {topic}: {status}, {} of {records} acknowledged, errors {:?}",
            report.acks.len(),
            report.errors
        ));
    }
    let mut acks = Acks::new();
    let mut end_offsets = BTreeMap::new();
    for ack in &report.acks {
        let index = i64::try_from(ack.index).unwrap_or(i64::MAX);
        acks.insert(index, (ack.partition, ack.offset));
        let end = end_offsets.entry(ack.partition).or_insert(0);
        *end = (*end).max(ack.offset + 1);
    }
    Ok(PreparedTopic {
        topic: topic.to_string(),
        acks,
        end_offsets,
    })
}

/// The members of one group in one scenario.
pub(crate) struct Group {
    client: GroupClient,
    members: Vec<Member>,
    work_dir: PathBuf,
    started: Instant,
    /// What happened, for the summary.
    pub(crate) timeline: Vec<String>,
}

impl Group {
    pub(crate) fn new(client: GroupClient, work_dir: &Path) -> Group {
        Group {
            client,
            members: Vec::new(),
            work_dir: work_dir.to_path_buf(),
            started: Instant::now(),
            timeline: Vec::new(),
        }
    }

    pub(crate) fn start(&mut self, spec: MemberSpec) -> Result<(), String> {
        let member = spec
            .spawn()
            .map_err(|error| format!("start {}: {error}", spec.name))?;
        self.members.push(member);
        Ok(())
    }

    fn member(&mut self, name: &str) -> Result<&mut Member, String> {
        self.members
            .iter_mut()
            .find(|member| member.name() == name)
            .ok_or_else(|| format!("no member {name}"))
    }

    pub(crate) fn views(&self) -> Result<Vec<MemberView>, String> {
        self.members
            .iter()
            .map(|member| {
                Ok(MemberView {
                    name: member.name().to_string(),
                    events: member.events().map_err(|error| error.to_string())?,
                    live: member.is_live(),
                    killed_us: member.was_killed().then(|| member.ended_us()).flatten(),
                })
            })
            .collect()
    }

    /// Fails if a member the harness did not end has exited, or any member reported an error.
    pub(crate) fn health(&mut self) -> Result<(), String> {
        for member in &mut self.members {
            if member.is_live() {
                let exited = member.exited().map_err(|error| error.to_string())?;
                if let Some(status) = exited {
                    return Err(format!(
                        "{} exited by itself ({status}); its log:\n{}",
                        member.name(),
                        member.log_tail()
                    ));
                }
            }
            let events = member.events().map_err(|error| error.to_string())?;
            if let Some(MemberEvent::Error { message, .. }) = events
                .iter()
                .find(|event| matches!(event, MemberEvent::Error { .. }))
            {
                return Err(format!(
                    "{} reported an error: {message}; its log:\n{}",
                    member.name(),
                    member.log_tail()
                ));
            }
        }
        Ok(())
    }

    /// Waits until the live members have settled (see `ownership::settle`); records how long it
    /// took under `step`.
    pub(crate) fn settle(
        &mut self,
        step: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<String, BTreeSet<i32>>, String> {
        let began = Instant::now();
        let mut last_state = String::new();
        let outcome = wait_for(timeout, || {
            self.health()?;
            let views = self.views()?;
            match settle(&views, PARTITIONS, QUIET_MS * 1000, now_us()) {
                Settle::Settled(assignment) => Ok(Some(assignment)),
                Settle::NotYet(why) => {
                    last_state = why;
                    Ok(None)
                }
            }
        });
        match outcome {
            Ok(assignment) => {
                let counts: Vec<usize> = assignment.values().map(BTreeSet::len).collect();
                self.timeline.push(format!(
                    "{step}: settled in {:.1} s {counts:?}",
                    began.elapsed().as_secs_f64()
                ));
                Ok(assignment)
            }
            Err(error) => Err(format!(
                "{step}: the group did not settle ({error}); last seen: {last_state}"
            )),
        }
    }

    fn terminate(&mut self, name: &str) -> Result<(), String> {
        let member = self.member(name)?;
        member
            .terminate()
            .map_err(|error| format!("stop {name}: {error}"))?;
        let events = member.events().map_err(|error| error.to_string())?;
        if !events
            .iter()
            .any(|event| matches!(event, MemberEvent::Closed { .. }))
        {
            return Err(format!(
                "{name} did not close its consumer after SIGTERM; its log:\n{}",
                member.log_tail()
            ));
        }
        Ok(())
    }

    fn kill(&mut self, name: &str) -> Result<(), String> {
        self.member(name)?
            .kill()
            .map_err(|error| format!("kill {name}: {error}"))
    }

    pub(crate) fn terminate_all(&mut self) -> Result<(), String> {
        let names: Vec<String> = self
            .members
            .iter()
            .filter(|member| member.is_live())
            .map(|member| member.name().to_string())
            .collect();
        for name in names {
            self.terminate(&name)?;
        }
        Ok(())
    }

    /// The checks over the whole run that hold in every scenario.
    pub(crate) fn check_ownership(&self) -> Result<Vec<MemberView>, String> {
        let views = self.views()?;
        let mut problems = check_exclusive(&views);
        problems.extend(check_consumed_while_owned(&views));
        if problems.is_empty() {
            Ok(views)
        } else {
            Err(problems.join("\n"))
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({:.0} s; reports in {})",
            self.timeline.join("; "),
            self.started.elapsed().as_secs_f64(),
            self.work_dir.display()
        )
    }

    pub(crate) fn spec(&self, target: &Target, topic: &str, group: &str, name: &str) -> MemberSpec {
        MemberSpec {
            client: self.client,
            bootstrap: target.bootstrap.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
            name: name.to_string(),
            instance_id: None,
            session_timeout_ms: SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            rate: 0,
            pace_file: None,
            log_committed: false,
            timeout_s: MEMBER_TIMEOUT_S,
            work_dir: self.work_dir.clone(),
        }
    }
}

pub(crate) fn scenario_dir(
    target: &Target,
    scenario: &str,
    client: GroupClient,
) -> Result<PathBuf, String> {
    let dir = target
        .work_dir
        .join(format!("{scenario}-{}", client.name()));
    std::fs::create_dir_all(&dir).map_err(|error| format!("create {}: {error}", dir.display()))?;
    Ok(dir)
}

/// Scenarios 1 and 2 in one run: three members settle; a fourth joins; one leaves cleanly; one
/// crashes (SIGKILL, noticed at the session timeout). After each step every partition has exactly
/// one owner. Meanwhile the members process the topic's records slowly, committing after each
/// batch, so partitions change hands mid-stream; at the end the handoff checks (module
/// `handoff`) run over everything they logged.
pub fn membership_and_handoff(
    target: &Target,
    client: GroupClient,
    prepared: &PreparedTopic,
) -> Result<String, String> {
    let dir = scenario_dir(target, "membership", client)?;
    let group_id = format!("membership-{}", client.name());
    let pace_file = dir.join("pace");
    let mut group = Group::new(client, &dir);
    let spec = |group: &Group, name: &str| MemberSpec {
        rate: MEMBER_RATE,
        pace_file: Some(pace_file.clone()),
        ..group.spec(target, &prepared.topic, &group_id, name)
    };
    let outcome = (|| {
        for name in ["m1", "m2", "m3"] {
            group.start(spec(&group, name))?;
        }
        let settle_timeout = Duration::from_secs(SETTLE_TIMEOUT_S);
        group.settle("3 members", settle_timeout)?;
        group.start(spec(&group, "m4"))?;
        group.settle("m4 joined", settle_timeout)?;
        group.terminate("m1")?;
        group.settle("m1 left", settle_timeout)?;
        group.kill("m2")?;
        group.settle(
            "m2 killed",
            settle_timeout + Duration::from_millis(u64::from(SESSION_TIMEOUT_MS)),
        )?;
        let processed_before_release = group
            .views()?
            .iter()
            .flat_map(|view| &view.events)
            .filter(|event| matches!(event, MemberEvent::Consumed { .. }))
            .count();
        release_pace(&pace_file).map_err(|error| error.to_string())?;
        let drained = wait_for(Duration::from_secs(DRAIN_TIMEOUT_S), || {
            group.health()?;
            let committed = last_commits(&group.views()?);
            Ok(prepared
                .end_offsets
                .iter()
                .all(|(partition, end)| committed.get(partition) == Some(end))
                .then_some(()))
        });
        if let Err(error) = drained {
            return Err(format!(
                "the last members did not commit every partition's end offset ({error}): committed {:?}, ends {:?}",
                last_commits(&group.views()?),
                prepared.end_offsets
            ));
        }
        group.terminate_all()?;
        group.health()?;
        let views = group.check_ownership()?;
        if client.protocol() == Protocol::Consumer {
            check_no_refused_commit(&views)?;
        }
        let summary = check_handoff(&views, &prepared.acks, &prepared.end_offsets)
            .map_err(|problems| problems.join("\n"))?;
        Ok(format!(
            "{} records ({processed_before_release} processed before the last step), {} processed, {} twice (uncommitted), {} commits, {} refused",
            prepared.acks.len(),
            summary.processed,
            summary.reprocessed,
            summary.commits,
            summary.commits_failed
        ))
    })();
    finish(group, outcome)
}

/// KIP-848 members commit only partitions they own, and Kafka 4.4 accepts such a commit even when
/// it carries an older member epoch than the broker's, as long as the partitions were assigned at
/// or before that epoch (KIP-1251; `ConsumerGroup.validateOffsetCommit`): the commit races the
/// heartbeat that bumps the epoch, and refusing it surfaces as a CommitFailedException in the
/// application. So with the consumer protocol no commit may be refused.
fn check_no_refused_commit(views: &[MemberView]) -> Result<(), String> {
    let refused: Vec<String> = views
        .iter()
        .flat_map(|view| {
            view.events.iter().filter_map(move |event| match event {
                MemberEvent::CommitFailed { message, .. } => {
                    Some(format!("{}: {message}", view.name))
                }
                _ => None,
            })
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} commits of owned partitions refused (Kafka 4.4 accepts a commit with an older member epoch for partitions assigned at or before it):\n{}",
            refused.len(),
            refused.join("\n")
        ))
    }
}

/// Scenario 3: three static members (`group.instance.id`) settle; the third is restarted within
/// its session timeout — SIGKILL for the classic protocol (a static member sends no LeaveGroup
/// anyway), a close for KIP-848 (which tells the broker the member will be back: leave epoch -2;
/// a killed KIP-848 static member's instance id stays taken until its session expires). The new
/// process must get the same partitions, and the other two must see no rebalance at all — no
/// callback, not even an empty one.
pub fn static_member_restart(
    target: &Target,
    client: GroupClient,
    prepared: &PreparedTopic,
) -> Result<String, String> {
    let dir = scenario_dir(target, "static", client)?;
    let group_id = format!("static-{}", client.name());
    let mut group = Group::new(client, &dir);
    let spec = |group: &Group, name: &str, instance: &str| MemberSpec {
        instance_id: Some(format!("{instance}-{}", client.name())),
        session_timeout_ms: STATIC_SESSION_TIMEOUT_MS,
        ..group.spec(target, &prepared.topic, &group_id, name)
    };
    let outcome = (|| {
        let settle_timeout = Duration::from_secs(SETTLE_TIMEOUT_S);
        // The first member alone first: it becomes the classic group's leader, and the restarted
        // member is then not the leader (whose rejoin Kafka handles differently, KIP-814).
        group.start(spec(&group, "s1", "static-1"))?;
        group.settle("s1 alone", settle_timeout)?;
        group.start(spec(&group, "s2", "static-2"))?;
        group.start(spec(&group, "s3", "static-3"))?;
        let before = group.settle("3 static members", settle_timeout)?;
        let owned_before = before.get("s3").cloned().unwrap_or_default();
        let cut_us = now_us();
        match client.protocol() {
            Protocol::Classic => group.kill("s3")?,
            Protocol::Consumer => group.terminate("s3")?,
        }
        let restarted_at = Instant::now();
        group.start(spec(&group, "s3-restarted", "static-3"))?;
        let owned_after = wait_for(Duration::from_secs(SETTLE_TIMEOUT_S), || {
            group.health()?;
            let views = group.views()?;
            let owned = views
                .iter()
                .find(|view| view.name == "s3-restarted")
                .map(MemberView::owned)
                .unwrap_or_default();
            Ok((!owned.is_empty()).then_some(owned))
        })
        .map_err(|error| format!("the restarted static member got no partitions ({error})"))?;
        let back_after = restarted_at.elapsed();
        std::thread::sleep(Duration::from_millis(STATIC_OBSERVE_MS));
        group.health()?;
        let views = group.views()?;
        let mut problems = Vec::new();
        if owned_after != owned_before {
            problems.push(format!(
                "s3 owned {owned_before:?} before the restart, the restarted process got {owned_after:?}"
            ));
        }
        for view in views
            .iter()
            .filter(|view| view.name == "s1" || view.name == "s2")
        {
            let callbacks: Vec<&MemberEvent> = view
                .events
                .iter()
                .filter(|event| event.is_rebalance_callback() && event.time_us() > cut_us)
                .collect();
            if !callbacks.is_empty() {
                problems.push(format!(
                    "{} saw a rebalance when the static member restarted: {callbacks:?}",
                    view.name
                ));
            }
        }
        let restarted_callbacks = views
            .iter()
            .filter(|view| view.name == "s3-restarted")
            .flat_map(|view| &view.events)
            .filter(|event| event.is_rebalance_callback())
            .count();
        if restarted_callbacks != 1 {
            problems.push(format!(
                "the restarted member had {restarted_callbacks} rebalance callbacks, expected one assignment"
            ));
        }
        group.timeline.push(format!(
            "s3 back with {owned_after:?} after {:.1} s",
            back_after.as_secs_f64()
        ));
        group.terminate_all()?;
        group.check_ownership()?;
        if problems.is_empty() {
            Ok("same partitions, no rebalance".to_string())
        } else {
            Err(problems.join("\n"))
        }
    })();
    finish(group, outcome)
}

/// Scenario 4 (Sluice only): a member processes part of the topic, committing as it goes, and
/// leaves; the agent is killed with SIGKILL and restarted on the same bucket with an empty data
/// directory; a new member of the group asks for the committed offsets (committed(), i.e.
/// OffsetFetch) and must get exactly the last ones committed before the kill, start there, and
/// finish the topic.
pub fn committed_offsets_survive_agent_restart(
    target: &Target,
    agent: &mut SluiceAgent,
    client: GroupClient,
    prepared: &PreparedTopic,
) -> Result<String, String> {
    let dir = scenario_dir(target, "restart", client)?;
    let group_id = format!("restart-{}", client.name());
    let mut group = Group::new(client, &dir);
    let total = prepared.acks.len();
    let outcome = (|| {
        let first = MemberSpec {
            rate: 200,
            ..group.spec(target, &prepared.topic, &group_id, "before")
        };
        group.start(first)?;
        wait_for(Duration::from_secs(SETTLE_TIMEOUT_S * 2), || {
            group.health()?;
            let processed = group
                .views()?
                .iter()
                .flat_map(|view| &view.events)
                .filter(|event| matches!(event, MemberEvent::Consumed { .. }))
                .count();
            Ok((processed >= total / 2).then_some(()))
        })
        .map_err(|error| format!("the first member did not process half the topic ({error})"))?;
        group.terminate("before")?;
        let committed_before = last_commits(&group.views()?);
        if committed_before.is_empty() {
            return Err(
                "the first member committed nothing; the check would be vacuous".to_string(),
            );
        }
        agent
            .restart_on_fresh_disk()
            .map_err(|error| format!("restart the agent: {error}"))?;
        group.timeline.push(format!(
            "agent restarted after commits {committed_before:?}"
        ));
        let second = MemberSpec {
            log_committed: true,
            ..group.spec(target, &prepared.topic, &group_id, "after")
        };
        group.start(second)?;
        wait_for(Duration::from_secs(DRAIN_TIMEOUT_S), || {
            group.health()?;
            let committed = last_commits(&group.views()?);
            Ok(prepared
                .end_offsets
                .iter()
                .all(|(partition, end)| committed.get(partition) == Some(end))
                .then_some(()))
        })
        .map_err(|error| format!("the new member did not finish the topic ({error})"))?;
        group.terminate_all()?;
        let views = group.check_ownership()?;
        let fetched: BTreeMap<i32, i64> = views
            .iter()
            .filter(|view| view.name == "after")
            .flat_map(|view| &view.events)
            .filter_map(|event| match event {
                MemberEvent::CommittedFetch { offsets, .. } => Some(offsets.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let expected: BTreeMap<i32, i64> = (0..i32::try_from(PARTITIONS).unwrap_or(0))
            .map(|partition| {
                (
                    partition,
                    committed_before.get(&partition).copied().unwrap_or(-1),
                )
            })
            .collect();
        if fetched != expected {
            return Err(format!(
                "after the restart committed() answered {fetched:?}; committed before the kill: {expected:?}"
            ));
        }
        let summary = check_handoff(&views, &prepared.acks, &prepared.end_offsets)
            .map_err(|problems| problems.join("\n"))?;
        Ok(format!(
            "committed() after restart = offsets committed before it; {} processed, {} twice",
            summary.processed, summary.reprocessed
        ))
    })();
    finish(group, outcome)
}

/// Ends every member still running and adds the timeline to the outcome.
pub(crate) fn finish(mut group: Group, outcome: Result<String, String>) -> Result<String, String> {
    for member in &mut group.members {
        if member.is_live() {
            let _ = member.kill();
        }
    }
    match outcome {
        Ok(summary) => Ok(format!("{summary}; {}", group.describe())),
        Err(error) => Err(format!("{error}\n  timeline: {}", group.describe())),
    }
}

/// Broker settings the scenarios need from Apache Kafka: no initial rebalance delay, and KIP-848
/// session and heartbeat times as short as the classic members' (the broker decides them for the
/// consumer protocol; its defaults, 45 s and 5 s, would make a crash take most of a minute).
pub const KAFKA_BROKER_SETTINGS: [(&str, &str); 5] = [
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.consumer.session.timeout.ms", "6000"),
    ("group.consumer.min.session.timeout.ms", "6000"),
    ("group.consumer.heartbeat.interval.ms", "1000"),
    ("group.consumer.min.heartbeat.interval.ms", "1000"),
];

/// The same settings as `sluice serve` flags.
pub const SLUICE_FLAGS: [(&str, &str); 3] = [
    ("--group-initial-rebalance-delay-ms", "0"),
    ("--group-consumer-session-timeout-ms", "6000"),
    ("--group-consumer-heartbeat-interval-ms", "1000"),
];

/// One scenario run with one client.
#[derive(Debug)]
pub struct Outcome {
    pub client: GroupClient,
    pub scenario: &'static str,
    pub elapsed: Duration,
    pub result: Result<String, String>,
}

impl Outcome {
    /// Prints the outcome past the output capture: `kafka: membership  java-consumer-protocol  21.3 s  ok ...`.
    pub fn announce(&self, target: &str) {
        let verdict = match &self.result {
            Ok(summary) => format!("ok: {summary}"),
            Err(error) => format!("FAILED: {error}"),
        };
        crate::tools::loud(&format!(
            "{target}: {:<10} {:<30} {:>5.1} s  {verdict}",
            self.scenario,
            self.client.name(),
            self.elapsed.as_secs_f64()
        ));
    }
}

/// Runs `scenario` and times it.
pub fn timed(
    client: GroupClient,
    scenario: &'static str,
    run: impl FnOnce() -> Result<String, String>,
) -> Outcome {
    let began = Instant::now();
    let result = run();
    Outcome {
        client,
        scenario,
        elapsed: began.elapsed(),
        result,
    }
}

/// Scenarios 1–3 for each of `clients` (whose tools are present) against `target`, printing each
/// outcome as it comes. The client libraries run side by side, one thread each (their scenarios
/// use their own topics and groups), and each library's variants one after the other: the members
/// spend most of their time paced or waiting for a session to expire, so this takes the wall time
/// of the slowest library (the JVM's) instead of the sum, at under one core on average.
pub fn run_clients(target: &Target, clients: &[GroupClient]) -> Vec<Outcome> {
    let records = records();
    let mut libraries: Vec<Vec<GroupClient>> = Vec::new();
    for client in clients {
        match libraries
            .iter_mut()
            .find(|same| same.first().map(|other| other.library()) == Some(client.library()))
        {
            Some(same) => same.push(*client),
            None => libraries.push(vec![*client]),
        }
    }
    std::thread::scope(|scope| {
        let runs: Vec<_> = libraries
            .into_iter()
            .map(|variants| scope.spawn(move || run_library(target, &variants, records)))
            .collect();
        runs.into_iter()
            .flat_map(|run| {
                run.join().unwrap_or_else(|_| {
                    vec![Outcome {
                        client: GroupClient::JavaCooperative,
                        scenario: "harness",
                        elapsed: Duration::ZERO,
                        result: Err("a scenario thread panicked".to_string()),
                    }]
                })
            })
            .collect()
    })
}

/// [`run_clients`] for the variants of one library, in order.
fn run_library(target: &Target, variants: &[GroupClient], records: u64) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for client in variants {
        let client = *client;
        if !crate::tools::require(
            &format!("{} groups, {} client", target.name, client.name()),
            &client.library().tools(),
        ) {
            continue;
        }
        let topic = format!("groups-{}", client.name());
        let prepared = match prepare_topic(target, client, &topic, records) {
            Ok(prepared) => prepared,
            Err(error) => {
                let outcome = Outcome {
                    client,
                    scenario: "produce",
                    elapsed: Duration::ZERO,
                    result: Err(error),
                };
                outcome.announce(&target.name);
                outcomes.push(outcome);
                continue;
            }
        };
        let outcome = timed(client, "membership", || {
            membership_and_handoff(target, client, &prepared)
        });
        outcome.announce(&target.name);
        outcomes.push(outcome);
        let outcome = timed(client, "static", || {
            static_member_restart(target, client, &prepared)
        });
        outcome.announce(&target.name);
        outcomes.push(outcome);
    }
    outcomes
}

/// Fails the test listing every failed outcome.
pub fn assert_all_passed(target: &str, outcomes: &[Outcome]) {
    let failures: Vec<String> =
        outcomes
            .iter()
            .filter_map(|outcome| {
                outcome.result.as_ref().err().map(|error| {
                    format!("{} / {}: {error}", outcome.scenario, outcome.client.name())
                })
            })
            .collect();
    assert!(
        failures.is_empty(),
        "{} of {} group scenarios failed on {target}:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n\n")
    );
}
