//! [`SluiceAgent`]: the `sluice` binary of this workspace, serving on a loopback port with its bucket
//! in a loopback object-store server (any [`StoreServer`]: `s3s-fs`, SeaweedFS, fake-gcs-server,
//! Azurite), so the whole path — Kafka protocol, flush, PUT, commit, fetch — is the one production
//! runs, minus the network.
//!
//! An agent can be killed with SIGKILL and started again on the same port and bucket: the crash
//! scenario of DESIGN.md's invariant 3.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::api_versions::{self, ApiRange};
use crate::process::{ChildGuard, free_port, log_tail, wait_for_port};
use crate::stores::StoreServer;
use crate::{HarnessError, repository_root};

/// Recovery on a small bucket takes well under a second; the rest is slack for a loaded machine.
const STARTUP_TIMEOUT_S: u64 = 60;
/// A cold build of the server on 2 cores takes a few minutes; a warm one, a second.
const BUILD_TIMEOUT_S: u64 = 1200;
/// Source trees are a few levels deep; the limit only guards against a symlink loop.
const SOURCE_TREE_DEPTH_MAX: usize = 12;

#[derive(Debug)]
pub struct SluiceAgent {
    process: Option<ChildGuard>,
    address: SocketAddr,
    binary: PathBuf,
    store_url: String,
    data_dir: tempfile::TempDir,
    starts: u32,
    /// Flags added to `sluice serve`, e.g. the group timeouts of the consumer-group scenarios.
    extra_args: Vec<String>,
    /// Which local data directory (`local`, `local-1`, ...) the agent uses: a fresh one after
    /// [`SluiceAgent::restart_on_fresh_disk`].
    disk: u32,
}

impl SluiceAgent {
    /// Starts an agent on a free loopback port, keeping its data in `store` under `prefix`.
    pub fn start(store: &dyn StoreServer, prefix: &str) -> Result<SluiceAgent, HarnessError> {
        SluiceAgent::start_with_args(store, prefix, &[])
    }

    /// [`SluiceAgent::start`] with `extra_args` added to every `sluice serve` of this agent.
    pub fn start_with_args(
        store: &dyn StoreServer,
        prefix: &str,
        extra_args: &[String],
    ) -> Result<SluiceAgent, HarnessError> {
        let binary = sluice_binary()?;
        let data_dir = tempfile::Builder::new()
            .prefix("sluice-e2e-agent-")
            .tempdir()
            .map_err(HarnessError::io(
                "create a temporary directory for the agent",
            ))?;
        let mut agent = SluiceAgent {
            process: None,
            address: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            binary,
            store_url: store.store_url(prefix),
            data_dir,
            starts: 0,
            extra_args: extra_args.to_vec(),
            disk: 0,
        };
        agent.launch()?;
        Ok(agent)
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        self.starts += 1;
        let log = self
            .data_dir
            .path()
            .join(format!("agent-{}.log", self.starts));
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(self.address.to_string())
            .arg("--store")
            .arg(&self.store_url)
            .arg("--data-dir")
            .arg(self.local_dir())
            .args(&self.extra_args);
        let mut process = ChildGuard::spawn(
            &format!("sluice agent (start {})", self.starts),
            &mut command,
            &log,
        )?;
        wait_for_port(
            self.address,
            &mut process,
            Duration::from_secs(STARTUP_TIMEOUT_S),
        )?;
        self.process = Some(process);
        Ok(())
    }

    /// The running agent process's id (`None` after [`SluiceAgent::kill9`]).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::id)
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The APIs this agent advertises (ApiVersions).
    pub fn advertised_apis(&self) -> Result<Vec<ApiRange>, HarnessError> {
        api_versions::advertised(self.address)
    }

    /// SIGKILL: no shutdown, no flush, no goodbye — what a crashed machine does.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the agent to stop gracefully (its last window
    /// settled, deregistered from a cluster) and exit; returns its exit status. On timeout the
    /// agent is killed and that is the error.
    pub fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, HarnessError> {
        let Some(mut process) = self.process.take() else {
            return Err(HarnessError::Io {
                what: "stop the agent".to_owned(),
                source: std::io::Error::other("the agent is not running"),
            });
        };
        let pid = libc::pid_t::try_from(process.id()).unwrap_or(libc::pid_t::MAX);
        // SAFETY: kill(2) with a pid this process spawned and has not reaped (the guard reaps).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        process.wait_with_timeout(timeout)
    }

    /// Starts the agent again after [`SluiceAgent::stop`] or [`SluiceAgent::kill9`]: the same
    /// port, bucket, prefix, flags (so the same agent id in a cluster) and local directory.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.process.is_some() {
            return Err(HarnessError::Io {
                what: "start the agent again".to_owned(),
                source: std::io::Error::other("the agent is still running"),
            });
        }
        self.launch()
    }

    /// Starts a fresh agent process on the same port, bucket and prefix.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill9()?;
        self.launch()
    }

    /// SIGKILL, then a fresh agent on the same port, bucket and prefix with an empty local data
    /// directory: what a replacement machine sees. Everything it serves comes from the bucket.
    pub fn restart_on_fresh_disk(&mut self) -> Result<(), HarnessError> {
        self.kill9()?;
        self.disk += 1;
        self.launch()
    }

    fn local_dir(&self) -> PathBuf {
        match self.disk {
            0 => self.data_dir.path().join("local"),
            disk => self.data_dir.path().join(format!("local-{disk}")),
        }
    }

    /// The log of the current (or last) agent process.
    pub fn log(&self) -> PathBuf {
        self.data_dir
            .path()
            .join(format!("agent-{}.log", self.starts))
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log())
    }
}

/// Which of `flags` (`--name` of `sluice serve`) the binary accepts, from `sluice serve --help`:
/// lets a scenario pass a setting that is still being added without failing to start the agent.
pub fn serve_flags_supported(flags: &[&str]) -> Result<Vec<String>, HarnessError> {
    let binary = sluice_binary()?;
    let output = Command::new(&binary)
        .args(["serve", "--help"])
        .output()
        .map_err(HarnessError::io(format!(
            "run {} serve --help",
            binary.display()
        )))?;
    let help = String::from_utf8_lossy(&output.stdout);
    Ok(flags
        .iter()
        .filter(|flag| {
            help.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|word| word == **flag)
        })
        .map(|flag| (*flag).to_string())
        .collect())
}

/// The `sluice` binary: `SLUICE_BIN` if set; else the one beside this test's own executable
/// (`target/debug/sluice`, which `cargo test --workspace` has just built) when it is newer than every
/// source of the server and the engine; else built now with the workspace's cargo. Reusing the fresh
/// binary matters: a `cargo build -p sluice-server` unifies features differently from `cargo test
/// --workspace` (dev-dependencies), so it would compile the engine and its dependencies a second time.
pub fn sluice_binary() -> Result<PathBuf, HarnessError> {
    static BINARY: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let mut cached = BINARY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    if let Some(path) = fresh_prebuilt_binary() {
        *cached = Some(path.clone());
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let log_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-build-")
        .tempdir()
        .map_err(HarnessError::io(
            "create a temporary directory for the build log",
        ))?;
    let messages = log_dir.path().join("cargo-messages.json");
    let log = log_dir.path().join("cargo-build.log");
    let mut command = Command::new(cargo);
    command.current_dir(repository_root()).args([
        "build",
        "-p",
        "sluice-server",
        "-p",
        "sluice-tests",
        "--bin",
        "sluice",
        "--message-format=json-render-diagnostics",
    ]);
    crate::process::run_to_completion(
        "cargo build of sluice",
        &mut command,
        &messages,
        &log,
        Duration::from_secs(BUILD_TIMEOUT_S),
    )?;
    let path = executable_from_cargo_messages(&messages)?;
    *cached = Some(path.clone());
    Ok(path)
}

/// `target/<profile>/sluice` beside the running test, if it exists and no source is newer.
fn fresh_prebuilt_binary() -> Option<PathBuf> {
    // The test runs as target/<profile>/deps/<name>-<hash>.
    let test_executable = std::env::current_exe().ok()?;
    let profile_dir = test_executable.parent()?.parent()?;
    let binary = profile_dir.join("sluice");
    let built = std::fs::metadata(&binary).ok()?.modified().ok()?;
    let root = repository_root();
    let sources = [
        root.join("Cargo.lock"),
        root.join("Cargo.toml"),
        root.join("server"),
        root.join("engine/src"),
        root.join("engine/Cargo.toml"),
    ];
    let newest = sources
        .iter()
        .filter_map(|path| newest_modification(path, 0))
        .max()?;
    (built >= newest).then_some(binary)
}

/// Latest modification time of `path` or anything under it (sources only: `target` and hidden
/// directories are skipped), at most [`SOURCE_TREE_DEPTH_MAX`] levels down.
fn newest_modification(path: &Path, depth: usize) -> Option<std::time::SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    let own = metadata.modified().ok()?;
    if !metadata.is_dir() || depth >= SOURCE_TREE_DEPTH_MAX {
        return Some(own);
    }
    let children = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name != "target"
        });
    children
        .filter_map(|entry| newest_modification(&entry.path(), depth + 1))
        .chain(std::iter::once(own))
        .max()
}

fn executable_from_cargo_messages(messages: &Path) -> Result<PathBuf, HarnessError> {
    let text = std::fs::read_to_string(messages)
        .map_err(HarnessError::io(format!("read {}", messages.display())))?;
    /// The fields of cargo's `--message-format=json` lines that name a built executable.
    #[derive(serde::Deserialize)]
    struct Message {
        reason: String,
        target: Option<Target>,
        executable: Option<PathBuf>,
    }
    #[derive(serde::Deserialize)]
    struct Target {
        name: String,
    }
    text.lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|message| {
            message.reason == "compiler-artifact"
                && message
                    .target
                    .as_ref()
                    .is_some_and(|target| target.name == "sluice")
        })
        .find_map(|message| message.executable)
        .ok_or_else(|| HarnessError::Report {
            path: messages.to_path_buf(),
            line: 0,
            message: "cargo named no `sluice` executable".to_string(),
        })
}

/// `sluice serve` flags that make the agent's housekeeping fast enough for a test: compaction every
/// 200 ms into 1 MiB objects, retention and garbage collection every second, objects deleted 2 s
/// after nothing needs them, a checkpoint every 64 log entries. The same code paths as the
/// defaults (5 minutes, 32 MiB, 60 s, 1,000 entries), at a test's pace.
pub fn fast_housekeeping_args() -> Vec<String> {
    [
        "--compaction-interval-ms",
        "200",
        "--compaction-object-bytes-target",
        "1048576",
        "--log-retention-check-interval-ms",
        "1000",
        "--log-segment-delete-delay-ms",
        "2000",
        "--checkpoint-interval-entries",
        "64",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
}

/// `sluice serve` flags of a cluster member: the database, the agent's id and zone, then `extra`.
pub fn cluster_args(postgres_url: &str, agent: &str, zone: &str, extra: &[String]) -> Vec<String> {
    [
        "--metadata",
        postgres_url,
        "--agent-id",
        agent,
        "--zone",
        zone,
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .chain(extra.iter().cloned())
    .collect()
}

/// Agents of one cluster on one bucket and one database, sharing a configuration file: agent
/// `a` in zone `a`, `b` in zone `b`, and so on. Each serves its metrics on a port of its own
/// ([`Cluster::metrics`]).
#[derive(Debug)]
pub struct Cluster {
    pub agents: Vec<SluiceAgent>,
    metrics: Vec<SocketAddr>,
    /// Holds the configuration file for as long as the agents may restart.
    _config_dir: tempfile::TempDir,
}

/// Agents a cluster of the tests may have (ids and zones are the letters `a` to `z`).
const CLUSTER_AGENTS_MAX: usize = 26;
/// A metrics scrape on loopback answers in milliseconds; the rest is slack for a loaded machine.
const METRICS_TIMEOUT_S: u64 = 10;

impl Cluster {
    /// Starts `agents` agents one after the other, in `store` under `prefix`, with `toml` as their
    /// configuration (e.g. `lease_ms = 3000`) and `extra` flags.
    pub fn start(
        store: &dyn StoreServer,
        prefix: &str,
        postgres_url: &str,
        toml: &str,
        extra: &[String],
        agents: usize,
    ) -> Result<Cluster, HarnessError> {
        if agents == 0 || agents > CLUSTER_AGENTS_MAX {
            return Err(HarnessError::Io {
                what: "start a cluster".to_owned(),
                source: std::io::Error::other(format!(
                    "a test cluster has 1 to {CLUSTER_AGENTS_MAX} agents, not {agents}"
                )),
            });
        }
        let config_dir = tempfile::tempdir().map_err(HarnessError::io(
            "create a directory for the agents' configuration",
        ))?;
        let config = config_dir.path().join("sluice.toml");
        std::fs::write(&config, toml).map_err(HarnessError::io("write sluice.toml"))?;
        let mut cluster = Cluster {
            agents: Vec::with_capacity(agents),
            metrics: Vec::with_capacity(agents),
            _config_dir: config_dir,
        };
        for letter in (b'a'..=b'z').take(agents) {
            let name = char::from(letter).to_string();
            let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut flags = vec![
                "--config".to_owned(),
                config.display().to_string(),
                "--metrics-listen".to_owned(),
                metrics.to_string(),
            ];
            flags.extend(extra.iter().cloned());
            cluster.agents.push(SluiceAgent::start_with_args(
                store,
                prefix,
                &cluster_args(postgres_url, &name, &name, &flags),
            )?);
            cluster.metrics.push(metrics);
        }
        Ok(cluster)
    }

    /// `bootstrap.servers` naming every agent.
    pub fn bootstrap(&self) -> String {
        self.agents
            .iter()
            .map(SluiceAgent::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `/metrics` text of agent `index` (a Prometheus exposition).
    pub fn metrics(&self, index: usize) -> Result<String, HarnessError> {
        let address = self.metrics.get(index).ok_or_else(|| HarnessError::Io {
            what: "scrape an agent's metrics".to_owned(),
            source: std::io::Error::other(format!(
                "no agent {index} in a cluster of {}",
                self.metrics.len()
            )),
        })?;
        scrape(*address)
    }

    /// Waits until every agent's Metadata lists every agent of the cluster. An agent lists the
    /// live agents at its start and at each lease renewal (every third of `lease_ms`), so one
    /// started before the others learns of them only at its next renewal; until then its
    /// Metadata names leaders among the agents it knows.
    pub fn wait_until_all_listed(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut listed = Vec::with_capacity(self.agents.len());
            for agent in &self.agents {
                listed.push(api_versions::metadata_brokers(agent.address())?.len());
            }
            if listed.iter().all(|brokers| *brokers == self.agents.len()) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(HarnessError::Io {
                    what: "wait until every agent lists the others".to_owned(),
                    source: std::io::Error::other(format!(
                        "after {} s the agents list {listed:?} brokers, not {}",
                        timeout.as_secs(),
                        self.agents.len()
                    )),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where each agent serves its metrics (for [`scrape`] from another thread).
    pub fn metrics_addresses(&self) -> Vec<SocketAddr> {
        self.metrics.clone()
    }
}

/// GET `/metrics` from `address` (HTTP/1.0: the server closes the connection after the body).
pub fn scrape(address: SocketAddr) -> Result<String, HarnessError> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(METRICS_TIMEOUT_S);
    let context = format!("scrape the metrics at {address}");
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(HarnessError::io(context.clone()))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(HarnessError::io(context.clone()))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(HarnessError::io(context.clone()))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(HarnessError::io(context))?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned()))
}

/// The sum of the samples of `family` in a Prometheus exposition whose line contains `labels`
/// (e.g. `request="Produce"`; empty: every sample); 0 without one.
pub fn metric_sum(exposition: &str, family: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains(labels))
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Two agents of one cluster, `a` (zone `a`) and `b` (zone `b`): a [`Cluster`] of two, by name.
#[derive(Debug)]
pub struct ClusterPair {
    pub a: SluiceAgent,
    pub b: SluiceAgent,
    /// The cluster the two came from (its configuration file and metrics addresses).
    _cluster: Cluster,
}

impl ClusterPair {
    /// Starts `a`, then `b`, in `store` under `prefix`, with `toml` as their configuration (e.g.
    /// `lease_ms = 3000`) and `extra` flags.
    pub fn start(
        store: &dyn StoreServer,
        prefix: &str,
        postgres_url: &str,
        toml: &str,
        extra: &[String],
    ) -> Result<ClusterPair, HarnessError> {
        let mut cluster = Cluster::start(store, prefix, postgres_url, toml, extra, 2)?;
        let mut agents = std::mem::take(&mut cluster.agents).into_iter();
        let (Some(a), Some(b)) = (agents.next(), agents.next()) else {
            return Err(HarnessError::Io {
                what: "start a pair of agents".to_owned(),
                source: std::io::Error::other("the cluster has fewer than two agents"),
            });
        };
        Ok(ClusterPair {
            a,
            b,
            _cluster: cluster,
        })
    }
}
