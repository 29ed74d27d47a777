//! Scenario `groups`: 1,000 consumer groups of 3 classic-protocol members on one 12-partition
//! topic, heartbeating every 3 s and committing offsets once a second (issue 5, "Performance").
//!
//! Members are simulated (see [`member`]), not JVM consumers: 3,000 `KafkaConsumer`s do not fit
//! on a 2-core machine, and their own CPU would be charged to the same cores as the broker's.
//! They speak the Java classic consumer's requests at the versions both sides support, over one
//! connection each, on one client thread.
//!
//! Per target: create the topic and wait until the broker names a coordinator (Kafka creates
//! `__consumer_offsets` on the first FindCoordinator), start every member, time until every group
//! has been Stable (*forming*), then measure for a fixed span (*steady state*): heartbeat and
//! offset-commit latency, the broker's CPU seconds per second, errors by code, rebalances, and
//! for Sluice the object-store PUTs (commits must ride the flush windows, not add PUTs).

mod assignment;
mod member;
mod report;
mod sched;
mod stats;
pub(crate) mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FindCoordinatorRequest, GroupId, MetadataRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::report::Status;
use crate::targets::{self, Env, Running, StartError};
use member::{Picked, Seat, Shared};
use report::{GroupsReport, GroupsRow};
use stats::{Acknowledged, Board, OffsetCheck, Recorder};
use wire::{Connection, Versions};

/// The sizes of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    pub groups: usize,
    pub members_per_group: usize,
    pub partitions: i32,
    pub commit_interval: Duration,
    /// Measured after every group has been Stable.
    pub steady: Duration,
    /// Forming gives up after this; the steady state is measured anyway, with the groups
    /// Stable at that point reported.
    pub forming_limit: Duration,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        Plan {
            groups: if quick { 100 } else { 1_000 },
            members_per_group: 3,
            partitions: 12,
            commit_interval: Duration::from_secs(1),
            steady: Duration::from_secs(if quick { 30 } else { 60 }),
            forming_limit: Duration::from_secs(if quick { 60 } else { 180 }),
        }
    }

    pub fn settings(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("groups".into(), json!(self.groups));
        map.insert("members_per_group".into(), json!(self.members_per_group));
        map.insert("partitions".into(), json!(self.partitions));
        map.insert("assignor".into(), json!("range (client side)"));
        map.insert(
            "heartbeat_interval_ms".into(),
            json!(member::HEARTBEAT_INTERVAL.as_millis()),
        );
        map.insert(
            "session_timeout_ms".into(),
            json!(member::SESSION_TIMEOUT_MS),
        );
        map.insert(
            "commit_interval_ms".into(),
            json!(self.commit_interval.as_millis()),
        );
        map.insert("steady_s".into(), json!(self.steady.as_secs()));
        map
    }
}

const TOPIC: &str = "bench-groups";
/// Connection set-ups in progress at once (see [`Shared::connecting`]).
const CONNECTING_MAX: usize = 32;
const SETUP_LIMIT: Duration = Duration::from_secs(90);
/// Sluice's default `flush_interval_ms`; the target is commit P99 < window + 20 ms.
pub const SLUICE_FLUSH_INTERVAL_MS: f64 = 10.0;
pub const COMMIT_TARGET_MARGIN_MS: f64 = 20.0;

/// Runs the scenario against every target, one after another, and writes `report.json` and
/// `report.md` to `out`.
pub fn run(env: &Env, target_names: &[String], quick: bool, out: &Path) -> anyhow::Result<()> {
    raise_open_files_limit();
    let plan = Plan::new(quick);
    let load_at_start = crate::load_average();
    // The members' own thread, apart from the harness runtime that drives the S3 proxy.
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-members")
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for name in target_names {
        eprintln!("sluice-bench: {name}: starting");
        let mut settings = plan.settings();
        let row = match targets::start(name, env) {
            Ok(running) => {
                settings.extend(running.settings.clone());
                client.block_on(measure(name, &running, plan, settings))
            }
            Err(error) => {
                let status = match error {
                    StartError::NotInstalled(hint) => Status::NotInstalled(hint),
                    StartError::Failed(reason) => {
                        Status::Failed(format!("could not start: {reason}"))
                    }
                };
                GroupsRow::without_numbers(name, status, settings)
            }
        };
        eprintln!("sluice-bench: {name}: {:?}", row.status);
        rows.push(row);
        for suffix in ["", "-stderr"] {
            let log = env.work_dir.join(format!("{name}{suffix}.log"));
            let _ = std::fs::copy(&log, out.join(format!("{name}{suffix}.log")));
        }
        let _ = std::fs::remove_dir_all(env.work_dir.join(name));
    }
    let report = GroupsReport {
        scenario: "groups".to_owned(),
        quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix_ms: unix_ms(),
        machine: format!(
            "{}; load average {load_at_start} at the start",
            crate::machine()
        ),
        findings: report::findings(&rows),
        rows,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = report::render(&report);
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("sluice-bench: wrote {}", out.display());
    // Like the other scenarios: a target that did not run cleanly fails the command.
    let failures: Vec<&GroupsRow> = report
        .rows
        .iter()
        .filter(|row| row.status != Status::Ran)
        .collect();
    if !failures.is_empty() {
        for row in failures {
            eprintln!("sluice-bench: FAILED: {}: {:?}", row.target, row.status);
        }
        std::process::exit(crate::FAILED_EXIT_CODE);
    }
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 3,000 members hold 3,000 sockets here and as many in the broker (a child, which inherits the
/// limit): lift the soft limit to the hard one.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass; no other memory is touched.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

async fn measure(
    name: &str,
    running: &Running,
    plan: Plan,
    mut settings: Map<String, Value>,
) -> GroupsRow {
    let picked = match set_up(&running.bootstrap, plan.partitions).await {
        Ok(Ok(picked)) => picked,
        Ok(Err(missing)) => {
            return GroupsRow::without_numbers(name, Status::NotImplemented(missing), settings);
        }
        Err(error) => {
            return GroupsRow::without_numbers(
                name,
                Status::Failed(format!("set-up: {error:#}")),
                settings,
            );
        }
    };
    settings.insert(
        "api_versions".into(),
        json!(format!(
            "FindCoordinator v{}, JoinGroup v{}, SyncGroup v{}, Heartbeat v{}, OffsetCommit v{}",
            picked.find_coordinator,
            picked.join_group,
            picked.sync_group,
            picked.heartbeat,
            picked.offset_commit
        )),
    );
    let started = Instant::now();
    let recorder = Arc::new(Recorder::default());
    let acknowledged = Arc::new(Acknowledged::default());
    let board = Arc::new(Board::new(plan.groups, plan.members_per_group, started));
    let shared = Arc::new(Shared {
        bootstrap: running.bootstrap.clone(),
        topic: TOPIC.to_owned(),
        partitions: plan.partitions,
        commit_interval: plan.commit_interval,
        versions: picked,
        recorder: Arc::clone(&recorder),
        board: Arc::clone(&board),
        acknowledged: Arc::clone(&acknowledged),
        connecting: Arc::new(Semaphore::new(CONNECTING_MAX)),
    });
    let (stop, stopped) = watch::channel(false);
    let cpu_at_start = running.broker.cpu_seconds();
    let mut members = JoinSet::new();
    for group in 0..plan.groups {
        for member in 0..plan.members_per_group {
            let seat = Seat {
                group,
                member,
                population_index: group * plan.members_per_group + member,
            };
            members.spawn(member::run(Arc::clone(&shared), seat, stopped.clone()));
        }
    }

    // Forming: until every group has been Stable once, or the limit.
    let mut last_progress = Instant::now();
    loop {
        let (stable, _) = board.first_stable();
        if stable == plan.groups || started.elapsed() >= plan.forming_limit {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "sluice-bench: {name}: {stable}/{} groups Stable after {:.0} s",
                plan.groups,
                started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forming_s = started.elapsed().as_secs_f64();
    let (groups_stable, last_stable_at) = board.first_stable();
    let forming = recorder.take();
    let cpu_at_steady = running.broker.cpu_seconds();
    eprintln!(
        "sluice-bench: {name}: {groups_stable}/{} groups Stable in {forming_s:.1} s; \
         measuring {} s of steady state",
        plan.groups,
        plan.steady.as_secs()
    );

    // Steady state.
    let store_before = running
        .store_counters
        .as_ref()
        .map(|counters| counters.snapshot());
    let broker_wait_before = sched::run_delay_seconds(running.broker.pid());
    let harness_wait_before = sched::run_delay_seconds(std::process::id());
    let steady_started = Instant::now();
    let steady_started_unix_ms = unix_ms();
    tokio::time::sleep(plan.steady).await;
    let steady_s = steady_started.elapsed().as_secs_f64();
    let steady = recorder.take();
    let cpu_at_end = running.broker.cpu_seconds();
    let broker_wait_after = sched::run_delay_seconds(running.broker.pid());
    let harness_wait_after = sched::run_delay_seconds(std::process::id());
    let store = running
        .store_counters
        .as_ref()
        .zip(store_before)
        .map(|(counters, before)| counters.snapshot().since(&before));
    let stable_at_end = board.stable_now();

    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while members.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        members.abort_all();
    }
    let offsets = match read_back(&running.bootstrap, picked, plan, &acknowledged).await {
        Ok(check) => Ok(check),
        Err(error) => Err(format!("{error:#}")),
    };

    let cpu = |from: Option<f64>, to: Option<f64>, seconds: f64| {
        from.zip(to)
            .map(|(from, to)| (to - from) / seconds.max(f64::EPSILON))
    };
    report::build_row(report::Measured {
        target: name,
        settings,
        plan,
        groups_stable,
        all_stable_after_s: (groups_stable == plan.groups)
            .then(|| last_stable_at.map(|d| d.as_secs_f64()))
            .flatten(),
        stable_at_end,
        forming,
        forming_s,
        forming_cpu_per_s: cpu(cpu_at_start, cpu_at_steady, forming_s),
        steady,
        steady_s,
        steady_started_unix_ms,
        steady_cpu_per_s: cpu(cpu_at_steady, cpu_at_end, steady_s),
        broker_cpu_wait_per_s: cpu(broker_wait_before, broker_wait_after, steady_s),
        harness_cpu_wait_per_s: cpu(harness_wait_before, harness_wait_after, steady_s),
        store,
        offsets,
    })
}

/// Reads every group's committed offsets back (OffsetFetch, after the members stopped) and
/// compares them with the commits the broker acknowledged: a broker that answered commits
/// without storing them fails here.
async fn read_back(
    bootstrap: &str,
    picked: Picked,
    plan: Plan,
    acknowledged: &Acknowledged,
) -> anyhow::Result<OffsetCheck> {
    let connection = Connection::connect(bootstrap, "sluice-bench-verify").await?;
    let version = picked.offset_fetch;
    let mut check = OffsetCheck::default();
    for group in 0..plan.groups {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(member::group_id(group))))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_indexes((0..plan.partitions).collect()),
            ]));
        let answer = connection.call(version, &request).await?.body;
        anyhow::ensure!(
            answer.error_code == 0,
            "OffsetFetch {}: error {}",
            member::group_id(group),
            answer.error_code
        );
        let stored = answer
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .map(|p| {
                let offset = if p.error_code == 0 {
                    p.committed_offset
                } else {
                    -1
                };
                (p.partition_index, offset)
            })
            .collect();
        check.add_group(&acknowledged.of_group(group), &stored);
    }
    Ok(check)
}

/// Creates the topic, waits until its partitions have leaders and the broker names a group
/// coordinator. `Ok(Err(reason))` when the broker does not speak the group APIs.
async fn set_up(bootstrap: &str, partitions: i32) -> anyhow::Result<Result<Picked, String>> {
    let deadline = Instant::now() + SETUP_LIMIT;
    let connection = loop {
        match Connection::connect(bootstrap, "sluice-bench-admin").await {
            Ok(connection) => break connection,
            Err(error) if Instant::now() < deadline => {
                eprintln!("sluice-bench: connecting to {bootstrap}: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context("connect"),
        }
    };
    let versions = Versions::negotiate(&connection).await?;
    let picked = match Picked::from(&versions) {
        Ok(picked) => picked,
        Err(missing) => return Ok(Err(missing)),
    };
    let range = |min, max| VersionRange { min, max };
    let create_version = versions
        .pick(ApiKey::CreateTopics, range(2, 7))
        .map_err(anyhow::Error::msg)?;
    let metadata_version = versions
        .pick(ApiKey::Metadata, range(4, 12))
        .map_err(anyhow::Error::msg)?;
    let topic_name = TopicName(StrBytes::from_static_str(TOPIC));
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name.clone())
                .with_num_partitions(partitions)
                .with_replication_factor(if create_version >= 4 { -1 } else { 1 }),
        ]);
    let created = connection.call(create_version, &create).await?.body;
    const TOPIC_ALREADY_EXISTS: i16 = 36;
    for topic in &created.topics {
        anyhow::ensure!(
            topic.error_code == 0 || topic.error_code == TOPIC_ALREADY_EXISTS,
            "CreateTopics {TOPIC}: error {} {:?}",
            topic.error_code,
            topic.error_message
        );
    }
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name)),
    ]));
    loop {
        let answer = connection.call(metadata_version, &metadata).await?.body;
        let ready = answer.topics.iter().any(|topic| {
            topic.error_code == 0
                && i32::try_from(topic.partitions.len()) == Ok(partitions)
                && topic
                    .partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
        });
        if ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{TOPIC} has no leader for every partition after {SETUP_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first FindCoordinator on Kafka creates `__consumer_offsets`; wait for it here so that
    // forming times measure groups, not that topic's creation.
    let find = if picked.find_coordinator >= 4 {
        FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("bench-group-probe")])
    } else {
        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("bench-group-probe"))
    };
    loop {
        let answer = connection.call(picked.find_coordinator, &find).await?.body;
        let code = if picked.find_coordinator >= 4 {
            answer.coordinators.first().map_or(-1, |c| c.error_code)
        } else {
            answer.error_code
        };
        if code == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "FindCoordinator still answers error {code} after {SETUP_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Ok(picked))
}
