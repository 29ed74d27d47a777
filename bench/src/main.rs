//! `sluice-bench`: sets up each target on loopback, runs `sluice-loadgen` against it, and writes
//! `report.json`, `report.md` and latency plots. See `docs/benchmarks.md` ("Bench harness").
//!
//! Targets run one after another, never side by side: on a 2-core machine two brokers would
//! measure each other. Every requested target gets a row, with numbers or with the reason it has
//! none.

mod chaos;
mod cluster;
mod groups;
mod hgrm;
mod markdown;
mod plot;
mod plot_time;
mod process;
mod proxy;
mod proxy_faults;
mod replay;
mod report;
mod runner;
mod scenario;
mod seeded;
mod sequencer;
mod single_client;
mod soak;
mod step_cleanup;
mod targets;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;

use crate::report::{Report, Row, Status};
use crate::scenario::{Load, ReplayPlan, Scenario};
use crate::targets::{Env, StartError, StoreProxy};

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark Sluice, Apache Kafka and Tansu on loopback",
    after_help = "`sluice-bench tls-files --out DIR` writes the TLS+SCRAM targets' files instead."
)]
struct Args {
    /// fraud, throughput, partitions, replay, groups, soak, chaos, single-client, cluster or
    /// sequencer.
    #[arg(long)]
    scenario: String,
    /// Output directory for report.json, report.md, plots and raw load-generator output.
    #[arg(long)]
    out: PathBuf,
    /// Short runs (about a minute per target) for smoke tests; not headline numbers.
    #[arg(long)]
    quick: bool,
    /// Comma list of: sluice, sluice-s3-express, sluice-s3-standard, sluice-seaweedfs,
    /// sluice-seaweedfs-s3-express, sluice-external, sluice-file, sluice-file-tls-scram,
    /// sluice-cluster, sluice-cluster-s3-express, kafka, kafka-tls-scram, tansu. Default: sluice,
    /// sluice-s3-express, sluice-s3-standard, kafka, tansu; for `cluster` both cluster targets.
    #[arg(long)]
    targets: Option<String>,
    /// An S3 or MinIO store for the `sluice-external` target (added to the targets when given);
    /// credentials from AWS_* environment variables.
    #[arg(long)]
    store: Option<String>,
    /// The `sluice` binary (default: next to this one).
    #[arg(long)]
    sluice_bin: Option<PathBuf>,
    /// The `sluice-loadgen` binary (default: next to this one).
    #[arg(long)]
    loadgen_bin: Option<PathBuf>,
    /// Take `sluice` and `sluice-loadgen` from this directory (for example `target/debug`, to
    /// reuse the binaries a test build made) unless `--sluice-bin` / `--loadgen-bin` say otherwise.
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// chaos: the seed of the kill, pause and fault schedule (default: from the clock; the report
    /// names it, so a campaign can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// chaos: the number of kills (default 10 with --quick, else 1,000).
    #[arg(long)]
    kills: Option<u64>,
    /// chaos: run for this many seconds instead of a number of kills; sequencer: seconds per
    /// step (default 10, 3 with --quick).
    #[arg(long)]
    duration_s: Option<u64>,
    /// sequencer: simulated agents per step, a comma list (default 1,2,4,8,16).
    #[arg(long)]
    agents: Option<String>,
    /// sequencer: commit records of 1 KiB per append (default 1: each window its own commit).
    #[arg(long)]
    records_per_append: Option<usize>,
    /// sequencer: append without the database's lease and deadline check (agents always fence
    /// their appends; this measures what the check costs).
    #[arg(long)]
    unfenced: bool,
    /// When a target on the loopback S3 server talks to it through the harness's counting proxy:
    /// `when-needed` (latency profiles, chaos; otherwise the server counts requests itself) or
    /// `always` (as before 5 Dec 2026, to compare with earlier runs).
    #[arg(long, value_enum, default_value = "when-needed")]
    store_proxy: StoreProxy,
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from("target/release").join(name))
}

/// The binary `name`: the explicit option, else in `--binaries`, else next to this binary.
fn binary(explicit: Option<&PathBuf>, binaries: Option<&PathBuf>, name: &str) -> PathBuf {
    explicit
        .cloned()
        .or_else(|| binaries.map(|dir| dir.join(name)))
        .unwrap_or_else(|| sibling(name))
}

/// Exit code when a requested target did not run, lost records or failed verification (the
/// report is written first).
const FAILED_EXIT_CODE: i32 = 1;

fn main() -> anyhow::Result<()> {
    // `process::exit` runs no destructors: the exit code is decided only after `run` has
    // returned, so its temporary work directory, the S3 servers' files and every broker it
    // started are gone first.
    let code = run()?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// `sluice-bench tls-files --out DIR`: the TLS+SCRAM targets' files, for scripts that start a
/// broker on a SASL_SSL listener themselves (`scripts/ladder-profile.sh`).
#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench tls-files",
    about = "Write the TLS+SCRAM targets' files (a self-signed ECDSA P-256 certificate for \
             127.0.0.1: cert.pem, key.pem, key-and-cert.pem; users.toml; client.properties) into \
             DIR, and print the load generator's client properties, one a line"
)]
struct TlsFilesArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

/// The whole run; the process's exit code.
fn run() -> anyhow::Result<i32> {
    if std::env::args().nth(1).as_deref() == Some("tls-files") {
        let args = TlsFilesArgs::parse_from(std::env::args().skip(1));
        std::fs::create_dir_all(&args.out)?;
        for property in targets::write_tls_files(&args.out.canonicalize()?)? {
            println!("{property}");
        }
        return Ok(0);
    }
    let args = Args::parse();
    let scenario = Scenario::parse(&args.scenario).with_context(|| {
        format!(
            "unknown scenario {:?} (fraud, throughput, partitions, replay, groups, soak, chaos, single-client, cluster, sequencer)",
            args.scenario
        )
    })?;
    if scenario == Scenario::Sequencer {
        // Simulated agents on PostgreSQL: no target, no broker, no load generator.
        let plan = sequencer::Plan {
            fenced: !args.unfenced,
            ..sequencer::Plan::new(
                args.quick,
                args.agents.as_deref(),
                args.duration_s,
                args.records_per_append,
            )?
        };
        std::fs::create_dir_all(&args.out)?;
        return sequencer::run(&plan, args.quick, &args.out.canonicalize()?);
    }
    let target_names = target_names(scenario, args.targets.as_deref(), args.store.is_some())?;
    std::fs::create_dir_all(&args.out)?;
    let out = args.out.canonicalize()?;
    let work = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = Env {
        repo: repo.canonicalize().unwrap_or(repo),
        sluice_bin: binary(args.sluice_bin.as_ref(), args.binaries.as_ref(), "sluice"),
        work_dir: work.path().to_owned(),
        external_store: args.store.clone(),
        runtime: runtime.handle().clone(),
        agent_env: if scenario == Scenario::Soak {
            soak::agent_env(&soak::Plan::new(args.quick))
        } else {
            step_cleanup::sluice_agent_env(scenario)
        },
        kafka_env: step_cleanup::kafka_env(scenario),
        // The chaos scenario injects its store faults in the proxy.
        store_proxy: if scenario == Scenario::Chaos {
            StoreProxy::Always
        } else {
            args.store_proxy
        },
    };
    if scenario == Scenario::Chaos {
        let plan = chaos::Plan::new(
            args.quick,
            args.seed.unwrap_or_else(chaos::clock_seed),
            args.kills,
            args.duration_s,
        );
        return chaos::run(&env, &target_names, &plan, &out);
    }
    if scenario == Scenario::SingleClient {
        // Kafka's own Java perf tools, not the load generator: its own driver and report.
        return single_client::run(&env, &target_names, args.quick, &out);
    }
    if scenario == Scenario::Groups {
        // Simulated group members, not the load generator: its own driver and report.
        return groups::run(&env, &target_names, args.quick, &out).map(|()| 0);
    }
    let loadgen = binary(
        args.loadgen_bin.as_ref(),
        args.binaries.as_ref(),
        "sluice-loadgen",
    );
    if scenario == Scenario::Soak {
        return soak::run(&env, &target_names, args.quick, &loadgen, &out);
    }
    let load_at_start = load_average();
    let mut rows = Vec::new();
    let mut findings = Vec::new();
    for name in &target_names {
        eprintln!("sluice-bench: {name}: starting");
        let target_rows = run_target(name, &env, scenario, args.quick, &loadgen, &out);
        findings.extend(report::sustained_finding(name, &target_rows));
        findings.extend(target_rows.iter().filter_map(cluster::finding));
        rows.extend(target_rows);
        // Broker logs live in the temporary work dir; keep them next to the report. Then free
        // the target's disk (a 5 GB replay per target would otherwise add up). A cluster
        // target has one log and one data directory per agent.
        for process in cluster::process_names(name) {
            for suffix in ["", "-stderr"] {
                let log = work.path().join(format!("{process}{suffix}.log"));
                let _ = std::fs::copy(&log, out.join(format!("{process}{suffix}.log")));
            }
            let data = work.path().join(&process);
            if data.exists()
                && let Err(error) = std::fs::remove_dir_all(&data)
            {
                eprintln!(
                    "sluice-bench: {name}: could not remove {}: {error}",
                    data.display()
                );
            }
        }
    }
    let report = Report {
        scenario: scenario.name().to_owned(),
        quick: args.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        machine: format!(
            "{} CPUs, load average {load_at_start} at the start and {} at the end of the run",
            std::thread::available_parallelism().map_or(0, usize::from),
            load_average()
        ),
        findings,
        rows,
    };
    write_outputs(&report, &out)?;
    println!("{}", markdown::render(&report));
    println!("sluice-bench: wrote {}", out.display());
    let failures = report::failures(&report);
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("sluice-bench: FAILED: {failure}");
        }
        return Ok(FAILED_EXIT_CODE);
    }
    Ok(0)
}

/// The targets a run starts, from `--targets` (or the scenario's default) and `--store`. The
/// cluster targets run only in the `cluster` scenario, and it runs only them.
fn target_names(
    scenario: Scenario,
    targets: Option<&str>,
    external_store: bool,
) -> anyhow::Result<Vec<String>> {
    let default = if scenario == Scenario::Cluster {
        "sluice-cluster,sluice-cluster-s3-express"
    } else {
        "sluice,sluice-s3-express,sluice-s3-standard,kafka,tansu"
    };
    let mut names: Vec<String> = targets
        .unwrap_or(default)
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if let Some(unknown) = names
        .iter()
        .find(|name| !targets::ALL.contains(&name.as_str()))
    {
        anyhow::bail!(
            "unknown target {unknown:?} (known: {})",
            targets::ALL.join(",")
        );
    }
    // The TLS+SCRAM targets need clients that log in: Kafka's Java tools (single-client) and the
    // load generator (its librdkafka speaks TLS and SCRAM); the other scenarios' clients do not.
    let speaks_tls_scram = matches!(
        scenario,
        Scenario::SingleClient
            | Scenario::Fraud
            | Scenario::Throughput
            | Scenario::Partitions
            | Scenario::Replay
    );
    if !speaks_tls_scram
        && let Some(secured) = names
            .iter()
            .find(|name| targets::NEEDS_CLIENT_CONFIG.contains(&name.as_str()))
    {
        anyhow::bail!(
            "target {secured:?} needs clients that speak TLS and SCRAM: only the single-client, fraud, throughput, partitions and replay scenarios drive it"
        );
    }
    let is_cluster = scenario == Scenario::Cluster;
    if let Some(misplaced) = names
        .iter()
        .find(|name| cluster::is_cluster_target(name) != is_cluster)
    {
        anyhow::bail!(
            "target {misplaced:?} and scenario {:?} do not go together: the cluster scenario runs              only the sluice-cluster targets (sluice-cluster, sluice-cluster-s3-express), and they              run only in it",
            scenario.name()
        );
    }
    if external_store {
        anyhow::ensure!(
            !is_cluster,
            "--store: the cluster scenario runs on the loopback S3 server only"
        );
        if !names.iter().any(|name| name == "sluice-external") {
            names.push("sluice-external".to_owned());
        }
    }
    Ok(names)
}

/// CPUs and the load average now (the `groups` scenario's report line).
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{cpus} CPUs, load average {} at the end of the run",
        load_average()
    )
}

/// The one-minute load average, as `/proc/loadavg` prints it.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_owned()
}

/// Starts one target and runs the scenario against it; every outcome is at least one row.
fn run_target(
    name: &str,
    env: &Env,
    scenario: Scenario,
    quick: bool,
    loadgen: &Path,
    out: &Path,
) -> Vec<Row> {
    let replay_plan = ReplayPlan::new(quick);
    let steps = if scenario == Scenario::Replay {
        Ok(Vec::new())
    } else {
        scenario.steps(quick)
    };
    let steps = match steps {
        Ok(steps) => steps,
        Err(reason) => {
            return vec![Row::without_numbers(
                name,
                Status::NotImplemented(reason),
                serde_json::Map::new(),
            )];
        }
    };
    match targets::start(name, env) {
        Ok(running) if scenario == Scenario::Cluster => {
            cluster::run_target(name, &running, &steps, loadgen, out)
        }
        Ok(mut running) if scenario == Scenario::Replay => {
            replay::run_target(name, &mut running, &replay_plan, loadgen, out)
        }
        Ok(running) => {
            let cleaner = step_cleanup::cleans_up_steps(scenario).then(|| step_cleanup::Cleaner {
                runtime: env.runtime.clone(),
                data: step_cleanup::data_dirs(
                    name,
                    &env.work_dir,
                    running.server.as_ref().map(|server| server.data_dir()),
                ),
            });
            runner::run_target(
                name,
                &running,
                &steps,
                loadgen,
                out,
                scenario,
                cleaner.as_ref(),
            )
        }
        Err(error) => {
            let settings = if scenario == Scenario::Replay {
                replay_plan.settings()
            } else {
                steps.first().map(Load::settings).unwrap_or_default()
            };
            vec![start_failure_row(name, error, settings)]
        }
    }
}

/// The row of a target that did not start: not installed (with how to install it) or failed.
fn start_failure_row(
    name: &str,
    error: StartError,
    settings: serde_json::Map<String, serde_json::Value>,
) -> Row {
    let status = match error {
        StartError::NotInstalled(hint) => Status::NotInstalled(hint),
        StartError::Failed(reason) => Status::Failed(format!("could not start: {reason}")),
    };
    eprintln!("sluice-bench: {name}: {status:?}");
    Row::without_numbers(name, status, settings)
}

fn write_outputs(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("report.md"), markdown::render(report))?;
    let ran: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.status == Status::Ran)
        .collect();
    for (file, title, pick) in [
        (
            "produce-latency.svg",
            "produce latency",
            (|row: &Row| row.produce_curve.clone()) as fn(&Row) -> Vec<hgrm::Point>,
        ),
        ("e2e-latency.svg", "end-to-end latency", |row: &Row| {
            row.end_to_end_curve.clone()
        }),
    ] {
        let series: Vec<(String, Vec<hgrm::Point>)> = ran
            .iter()
            .map(|row| (row.target.clone(), pick(row)))
            .collect();
        let title = format!(
            "{title}, scenario {}{}",
            report.scenario,
            if report.quick { " (quick)" } else { "" }
        );
        std::fs::write(out.join(file), plot::render(&title, &series))?;
    }
    let reads: Vec<(String, f64)> = ran
        .iter()
        .filter(|row| row.replay.is_some())
        .map(|row| (row.target.clone(), row.mb_per_sec.unwrap_or(0.0)))
        .collect();
    if !reads.is_empty() {
        let title = format!(
            "replay from offset 0{}: MB/s",
            if report.quick { " (quick)" } else { "" }
        );
        std::fs::write(
            out.join("replay-mb-per-sec.svg"),
            plot::bars(
                &title,
                "MB/s of record values (1 MB = 1,048,576 bytes)",
                &reads,
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_target_that_cannot_start_gets_a_row_and_fails_the_run() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        let env = Env {
            repo: work.path().to_owned(),
            sluice_bin: work.path().join("no-such-sluice"),
            work_dir: work.path().to_owned(),
            external_store: None,
            runtime: runtime.handle().clone(),
            agent_env: Vec::new(),
            kafka_env: Vec::new(),
            store_proxy: StoreProxy::WhenNeeded,
        };
        let loadgen = work.path().join("no-such-loadgen");
        let mut rows = Vec::new();
        for (name, scenario) in [
            ("sluice", Scenario::Fraud),
            ("sluice-external", Scenario::Replay),
        ] {
            rows.extend(run_target(
                name,
                &env,
                scenario,
                true,
                &loadgen,
                work.path(),
            ));
        }
        assert_eq!(rows.len(), 2, "one row per target, none dropped");
        assert!(
            matches!(&rows[0].status, Status::NotInstalled(hint) if hint.contains("no-such-sluice")),
            "{:?}",
            rows[0].status
        );
        assert!(matches!(&rows[1].status, Status::NotInstalled(hint) if hint.contains("--store")));
        assert_eq!(rows[1].settings["partitions"], 64, "the replay's settings");
        let report = Report {
            scenario: "fraud".into(),
            quick: true,
            command: String::new(),
            started_at_unix_ms: 0,
            machine: String::new(),
            findings: Vec::new(),
            rows,
        };
        assert_eq!(report::failures(&report).len(), 2);
        let markdown = markdown::render(&report);
        assert!(markdown.contains("**not installed**"), "{markdown}");
    }

    #[test]
    fn the_cluster_scenario_runs_its_own_targets_and_only_it_runs_them() {
        assert_eq!(
            target_names(Scenario::Cluster, None, false).unwrap(),
            ["sluice-cluster", "sluice-cluster-s3-express"]
        );
        assert_eq!(
            target_names(Scenario::Cluster, Some("sluice-cluster"), false).unwrap(),
            ["sluice-cluster"]
        );
        for (scenario, targets) in [
            (Scenario::Cluster, "sluice-cluster,sluice"),
            (Scenario::Cluster, "kafka"),
            (Scenario::Fraud, "sluice-cluster-s3-express"),
        ] {
            let error = target_names(scenario, Some(targets), false)
                .unwrap_err()
                .to_string();
            assert!(error.contains("do not go together"), "{targets}: {error}");
        }
        assert!(target_names(Scenario::Cluster, None, true).is_err());
        assert_eq!(
            target_names(Scenario::Fraud, None, true).unwrap(),
            [
                "sluice",
                "sluice-s3-express",
                "sluice-s3-standard",
                "kafka",
                "tansu",
                "sluice-external"
            ]
        );
        let unknown = target_names(Scenario::Fraud, Some("sluice,nope"), false).unwrap_err();
        assert!(unknown.to_string().contains("unknown target \"nope\""));
        assert!(
            Scenario::parse("cluster").unwrap().steps(true).unwrap()[0]
                == scenario::fraud_load(true)
        );
    }

    #[test]
    fn binaries_come_from_the_option_then_the_directory_then_beside_the_harness() {
        let dir = PathBuf::from("/opt/b");
        let explicit = PathBuf::from("/x/sluice");
        assert_eq!(binary(Some(&explicit), Some(&dir), "sluice"), explicit);
        assert_eq!(
            binary(None, Some(&dir), "sluice-loadgen"),
            dir.join("sluice-loadgen")
        );
        assert_eq!(binary(None, None, "sluice").file_name().unwrap(), "sluice");
    }
}
