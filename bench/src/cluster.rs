//! Scenario `cluster`: the `fraud` load through three agents of one cluster — zones `a`, `b` and
//! `c`, one bucket on the loopback S3 server, one PostgreSQL for the metadata log
//! ([docs/cluster.md](../../docs/cluster.md)) — bootstrapped with all three.
//!
//! Targets: `sluice-cluster` (the S3 server with no added latency) and
//! `sluice-cluster-s3-express` (behind the harness proxy with the S3 Express latency model, as
//! `sluice-s3-express`). The load generator's client names no zone, so every agent names each
//! partition's leader by rendezvous hashing over all three and the producer spreads its
//! partitions over them: each agent writes its own windows (one PUT each) and appends one commit
//! record per window to PostgreSQL, and a produce is answered when its agent has applied that
//! record. So the PUTs per second are about agents × each agent's window rate, and produce P99 is
//! a window, a PUT and a commit through the database.
//!
//! The three agents start one after another; the load starts once every agent's Metadata lists
//! all three (an agent learns of the agents started after it at its next lease renewal, a third
//! of a lease later). PostgreSQL is started as the tests start it (`TestPostgres`: Debian's
//! package, a fresh cluster in a temporary directory, default durability).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sluice_engine::store::LatencyProfile;
use sluice_tests::postgres::TestPostgres;

use crate::process::{Guarded, free_port};
use crate::report::{Row, Status};
use crate::scenario::Load;
use crate::targets::{
    self, Env, LoopbackStore, Running, SLUICE_STORE_PREFIX, StartError, build_label,
};

/// The agents of a cluster target: their ids, which are also their zones.
pub const AGENTS: [&str; 3] = ["a", "b", "c"];

/// The goals the cluster's fraud load is measured against (milliseconds, P99).
pub const PRODUCE_P99_GOAL_MS: f64 = 35.0;
pub const END_TO_END_P99_GOAL_MS: f64 = 40.0;

/// The agent's default PUT budget (`flush_puts_per_second_max`): windows per second per agent.
pub const WINDOWS_PER_SECOND_PER_AGENT_MAX: f64 = 100.0;

/// How long the agents may take to list each other (a third of the default 10 s lease, plus
/// slack for a loaded machine).
const LISTING_LIMIT: Duration = Duration::from_secs(60);

/// The metrics family counting the windows an agent appended to the metadata log.
const WINDOWS_APPENDED: &str = "sluice_log_entries_appended_total";

/// What a cluster target holds besides the first agent (which is [`Running::broker`]). Field
/// order is drop order: the agents stop before their database.
#[derive(Debug)]
pub struct Members {
    /// Agents `b` and `c`.
    pub agents: Vec<Guarded>,
    /// Where agents `a`, `b` and `c` serve their metrics.
    pub metrics: Vec<SocketAddr>,
    pub _postgres: TestPostgres,
}

/// Whether `target` is one of the cluster's targets.
pub fn is_cluster_target(target: &str) -> bool {
    target.starts_with("sluice-cluster")
}

/// The names a target's processes run under (logs `{name}.log`, data directories `{name}/`):
/// one per agent for a cluster target, else the target's own name.
pub fn process_names(target: &str) -> Vec<String> {
    if is_cluster_target(target) {
        AGENTS
            .iter()
            .map(|agent| format!("{target}-{agent}"))
            .collect()
    } else {
        vec![target.to_owned()]
    }
}

/// Starts PostgreSQL, the loopback store (under `profile`, behind the proxy) and the three
/// agents, and waits until each lists all three.
pub fn start(
    env: &Env,
    name: &str,
    profile: Option<(&str, LatencyProfile)>,
) -> Result<Running, StartError> {
    if !env.sluice_bin.exists() {
        return Err(StartError::NotInstalled(format!(
            "{} missing: run `cargo build --release -p sluice-server`",
            env.sluice_bin.display()
        )));
    }
    let postgres = start_postgres("cluster")?;
    let store = LoopbackStore::start(env, profile.map(|(_, p)| p))?;
    let store_url = store
        .server
        .store_url(SLUICE_STORE_PREFIX)
        .replace(&store.server.endpoint(), &store.endpoint);
    let mut agents = Vec::with_capacity(AGENTS.len());
    let mut addresses = Vec::with_capacity(AGENTS.len());
    let mut metrics = Vec::with_capacity(AGENTS.len());
    let mut first_launch = None;
    for (agent, process) in AGENTS.iter().zip(process_names(name)) {
        let metrics_address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let extra = sluice_tests::sluice::cluster_args(
            &postgres.url(),
            agent,
            agent,
            &["--metrics-listen".to_owned(), metrics_address.to_string()],
        );
        let (broker, launch, address) =
            targets::start_sluice_with(env, &process, &store_url, &extra)?;
        first_launch.get_or_insert(launch);
        agents.push(broker);
        addresses.push(address);
        metrics.push(metrics_address);
    }
    let waited = Instant::now();
    wait_until_all_listed(&addresses, LISTING_LIMIT)?;
    eprintln!(
        "sluice-bench: {name}: every agent lists all {} {:.1} s after the last one started",
        AGENTS.len(),
        waited.elapsed().as_secs_f64()
    );
    let mut agents = agents.into_iter();
    let (Some(broker), Some(launch), Some(&address)) =
        (agents.next(), first_launch, addresses.first())
    else {
        return Err(StartError::Failed("no agent started".into()));
    };
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!(
            "sluice, {} agents of one cluster ({})",
            AGENTS.len(),
            build_label(&env.sluice_bin)
        )),
    );
    settings.insert("agents".into(), json!(AGENTS.len()));
    settings.insert("zones".into(), json!(AGENTS));
    settings.insert(
        "metadata".into(),
        json!("PostgreSQL on loopback (Debian package, fresh cluster, fsync on)"),
    );
    settings.insert("store".into(), json!(store.description()));
    settings.insert(
        "latency_profile".into(),
        json!(profile.map_or("none", |(n, _)| n)),
    );
    settings.insert("flush_interval_ms".into(), json!("agent default (10)"));
    settings.insert(
        "bootstrap".into(),
        json!("all three agents; the client names no zone"),
    );
    Ok(Running {
        broker,
        cluster: Some(Members {
            agents: agents.collect(),
            metrics,
            _postgres: postgres,
        }),
        launch,
        address,
        bootstrap: addresses
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(","),
        admin_bootstrap: address.to_string(),
        store_counters: Some(store.counters),
        proxy: store.proxy,
        server: Some(store.server),
        _seaweedfs: None,
        settings,
        store_note: None,
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

/// PostgreSQL as the tests start it. Not installed is a row saying how to install it; under
/// `CI=true` `TestPostgres` panics instead (a missing tool fails CI), which becomes a failed row.
pub(crate) fn start_postgres(scenario: &str) -> Result<TestPostgres, StartError> {
    let label = format!("sluice-bench {scenario}");
    let started = std::panic::catch_unwind(|| TestPostgres::start_or_skip(&label));
    match started {
        Ok(Some(postgres)) => Ok(postgres),
        Ok(None) => Err(StartError::NotInstalled(
            "PostgreSQL missing: run `bash scripts/install-test-deps.sh` (apt-get install \
             postgresql), or set SLUICE_POSTGRES_BIN_DIR"
                .into(),
        )),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "PostgreSQL did not start".to_owned());
            Err(StartError::Failed(reason))
        }
    }
}

/// Waits until every agent's Metadata lists every agent.
fn wait_until_all_listed(addresses: &[SocketAddr], limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let listed = addresses
            .iter()
            .map(|address| {
                sluice_tests::api_versions::metadata_brokers(*address).map(|brokers| brokers.len())
            })
            .collect::<Result<Vec<usize>, _>>()?;
        if listed.iter().all(|brokers| *brokers == addresses.len()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "after {} s the agents list {listed:?} brokers, not {}",
                limit.as_secs(),
                addresses.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The windows each agent has appended so far (`None` for an agent whose metrics did not answer).
fn windows_appended(members: &Members) -> Vec<Option<f64>> {
    members
        .metrics
        .iter()
        .map(|address| {
            sluice_tests::sluice::scrape(*address)
                .ok()
                .map(|text| sluice_tests::sluice::metric_sum(&text, WINDOWS_APPENDED, ""))
        })
        .collect()
}

/// Runs the scenario's steps on a started cluster target (as [`crate::runner::run_target`]) and
/// adds to each row the windows every agent appended during the target's run (readiness probe
/// included) and the findings on the goals.
pub fn run_target(
    name: &str,
    running: &Running,
    steps: &[Load],
    loadgen: &Path,
    out: &Path,
) -> Vec<Row> {
    let before = running.cluster.as_ref().map(windows_appended);
    let mut rows = crate::runner::run_target(
        name,
        running,
        steps,
        loadgen,
        out,
        crate::scenario::Scenario::Cluster,
        None,
    );
    let after = running.cluster.as_ref().map(windows_appended);
    if let (Some(before), Some(after)) = (before, after) {
        let by_agent: Map<String, Value> = AGENTS
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(agent, (before, after))| {
                let windows = before.zip(*after).map(|(before, after)| after - before);
                ((*agent).to_owned(), json!(windows))
            })
            .collect();
        for row in &mut rows {
            row.settings.insert(
                "windows_appended_by_agent".into(),
                Value::Object(by_agent.clone()),
            );
        }
    }
    rows
}

/// What a cluster row says against the goals: PUTs per second per agent (the PUT budget caps
/// windows, and every hedged copy of a window's PUT counts as a PUT too), produce and end-to-end
/// P99 against 35 and 40 ms.
pub fn finding(row: &Row) -> Option<String> {
    if !is_cluster_target(&row.target) || row.status != Status::Ran {
        return None;
    }
    let agents = row
        .settings
        .get("agents")
        .and_then(Value::as_u64)
        .unwrap_or(AGENTS.len() as u64);
    #[expect(clippy::cast_precision_loss, reason = "a handful of agents")]
    let agents_f = agents as f64;
    let puts = row.store.map_or_else(
        || "PUTs not counted".to_owned(),
        |store| {
            format!(
                "{:.0} PUT/s from {agents} agents ({:.0} per agent, hedged copies included; the \
                 PUT budget allows {:.0} windows per agent)",
                store.puts_per_sec,
                store.puts_per_sec / agents_f,
                WINDOWS_PER_SECOND_PER_AGENT_MAX
            )
        },
    );
    let against = |label: &str, p99: Option<f64>, goal: f64| match p99 {
        Some(p99) if p99 <= goal => format!("{label} P99 {p99:.1} ms (goal ≤ {goal:.0}: met)"),
        Some(p99) => format!("{label} P99 {p99:.1} ms (goal ≤ {goal:.0}: missed)"),
        None => format!("{label} P99 not measured"),
    };
    Some(format!(
        "{}: {puts}; {}; {}",
        row.target,
        against(
            "produce",
            row.produce.map(|l| l.p99_ms),
            PRODUCE_P99_GOAL_MS
        ),
        against(
            "end-to-end",
            row.end_to_end.map(|l| l.p99_ms),
            END_TO_END_P99_GOAL_MS
        ),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::proxy::CountSnapshot;
    use crate::report::{Latency, StoreRates};

    fn latency(p99_ms: f64) -> Latency {
        Latency {
            p50_ms: p99_ms / 2.0,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
            count: 1,
        }
    }

    #[test]
    fn a_cluster_target_runs_three_agents_with_their_own_logs() {
        assert_eq!(
            process_names("sluice-cluster-s3-express"),
            [
                "sluice-cluster-s3-express-a",
                "sluice-cluster-s3-express-b",
                "sluice-cluster-s3-express-c"
            ]
        );
        assert_eq!(process_names("sluice"), ["sluice"]);
        assert!(!is_cluster_target("sluice-s3-express"));
    }

    #[test]
    fn the_finding_divides_puts_by_agents_and_checks_both_goals() {
        let mut settings = Map::new();
        settings.insert("agents".into(), json!(3));
        let mut row = Row::without_numbers("sluice-cluster", Status::Ran, settings);
        row.produce = Some(latency(30.0));
        row.end_to_end = Some(latency(41.5));
        row.store = Some(StoreRates {
            counts: CountSnapshot::default(),
            puts_per_sec: 240.0,
            gets_per_sec: 0.0,
            puts_per_gb: 0.0,
            gets_per_gb: 0.0,
        });
        let text = finding(&row).unwrap();
        assert!(
            text.contains("240 PUT/s from 3 agents (80 per agent, hedged copies included"),
            "{text}"
        );
        assert!(
            text.contains("produce P99 30.0 ms (goal ≤ 35: met)"),
            "{text}"
        );
        assert!(
            text.contains("end-to-end P99 41.5 ms (goal ≤ 40: missed)"),
            "{text}"
        );
        row.status = Status::Failed("probe".into());
        assert_eq!(finding(&row), None, "no finding for a row without numbers");
        let single = Row::without_numbers("sluice", Status::Ran, Map::new());
        assert_eq!(finding(&single), None, "only cluster targets");
    }
}
