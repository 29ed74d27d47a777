//! [`ApacheKafka`]: one Apache Kafka 4.x KRaft node (`scripts/kafka/run-kafka.sh`) on loopback ports,
//! in a temporary directory, killed and deleted on drop. It is the reference the harness is
//! validated against: a check that fails here is a bug in the harness or a client, not in Sluice.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, free_port_pair, wait_for_port};
use crate::tools::Tool;
use crate::{HarnessError, repository_root};

/// Measured at about 5 s here; the first start may also copy the jars from Maven Central.
const STARTUP_TIMEOUT_S: u64 = 180;

#[derive(Debug)]
pub struct ApacheKafka {
    // Declared before `data_dir` so the broker dies before its directory is deleted.
    process: ChildGuard,
    address: SocketAddr,
    data_dir: tempfile::TempDir,
}

impl ApacheKafka {
    /// What starting a broker needs.
    pub const TOOLS: [Tool; 2] = [Tool::Java, Tool::Maven];

    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Result<ApacheKafka, HarnessError> {
        ApacheKafka::start_with(&[])
    }

    /// [`ApacheKafka::start`] with broker properties added to (or replacing) those of
    /// `run-kafka.sh`, e.g. the group timeouts of the consumer-group scenarios, which the broker
    /// reads only at start. `run-kafka.sh` takes no extra properties, so with overrides this writes
    /// the same configuration itself (see [`broker_properties`]) and runs the same two steps: format
    /// the KRaft storage, start `kafka.Kafka`.
    pub fn start_with(overrides: &[(&str, &str)]) -> Result<ApacheKafka, HarnessError> {
        let data_dir = tempfile::Builder::new()
            .prefix("sluice-e2e-kafka-")
            .tempdir()
            .map_err(HarnessError::io("create a temporary directory for Kafka"))?;
        let (port, controller_port) = free_port_pair()?;
        let mut command = if overrides.is_empty() {
            let script = repository_root().join("scripts/kafka/run-kafka.sh");
            let mut command = Command::new("bash");
            command
                .arg(script)
                .arg(port.to_string())
                .arg(data_dir.path())
                .arg(controller_port.to_string());
            command
        } else {
            broker_command(data_dir.path(), port, controller_port, overrides)?
        };
        let mut process = ChildGuard::spawn(
            "Apache Kafka",
            &mut command,
            &data_dir.path().join("kafka.out"),
        )?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(
            address,
            &mut process,
            Duration::from_secs(STARTUP_TIMEOUT_S),
        )?;
        Ok(ApacheKafka {
            process,
            address,
            data_dir,
        })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// What `scripts/kafka/run-kafka.sh` writes into `server.properties`, with `overrides` applied.
pub fn broker_properties(
    data_dir: &Path,
    port: u16,
    controller_port: u16,
    overrides: &[(&str, &str)],
) -> String {
    let logs = data_dir.join("logs");
    let mut properties: Vec<(String, String)> = [
        ("process.roles", "broker,controller".to_string()),
        ("node.id", "1".to_string()),
        (
            "controller.quorum.voters",
            format!("1@127.0.0.1:{controller_port}"),
        ),
        (
            "listeners",
            format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"),
        ),
        (
            "advertised.listeners",
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        ("controller.listener.names", "CONTROLLER".to_string()),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
        ),
        ("inter.broker.listener.name", "PLAINTEXT".to_string()),
        ("log.dirs", logs.display().to_string()),
        ("auto.create.topics.enable", "true".to_string()),
        ("num.partitions", "1".to_string()),
        ("default.replication.factor", "1".to_string()),
        ("offsets.topic.replication.factor", "1".to_string()),
        ("offsets.topic.num.partitions", "1".to_string()),
        ("transaction.state.log.replication.factor", "1".to_string()),
        ("transaction.state.log.min.isr", "1".to_string()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".to_string(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".to_string()),
        ("group.initial.rebalance.delay.ms", "0".to_string()),
        ("num.network.threads", "2".to_string()),
        ("num.io.threads", "2".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    for (key, value) in overrides {
        match properties.iter_mut().find(|(existing, _)| existing == key) {
            Some(entry) => entry.1 = (*value).to_string(),
            None => properties.push(((*key).to_string(), (*value).to_string())),
        }
    }
    properties
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// Fetches the jars, writes `server.properties`, formats the storage and returns the command that
/// runs the broker in the foreground: `run-kafka.sh`'s steps, with `overrides`.
fn broker_command(
    data_dir: &Path,
    port: u16,
    controller_port: u16,
    overrides: &[(&str, &str)],
) -> Result<Command, HarnessError> {
    let kafka_dir = repository_root().join("scripts/kafka");
    let fetch_log = data_dir.join("fetch.log");
    crate::process::run_to_completion(
        "fetch of Apache Kafka's jars",
        Command::new("bash").arg(kafka_dir.join("fetch-kafka.sh")),
        &fetch_log,
        &fetch_log,
        Duration::from_secs(STARTUP_TIMEOUT_S),
    )?;
    std::fs::create_dir_all(data_dir.join("logs"))
        .map_err(HarnessError::io("create Kafka's log directory"))?;
    let config = data_dir.join("server.properties");
    std::fs::write(
        &config,
        broker_properties(data_dir, port, controller_port, overrides),
    )
    .map_err(HarnessError::io(format!("write {}", config.display())))?;
    let java = |main_class: &str| {
        let mut command = Command::new("java");
        command
            .args([
                "-Xmx512m",
                "-Xms128m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
            ])
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
            .arg("-cp")
            .arg(format!("{}/*", kafka_dir.join("lib").display()))
            .arg(main_class);
        command
    };
    // A KRaft cluster id is 16 bytes in URL-safe base64 without padding; any fixed one will do
    // for a broker that lives in its own temporary directory.
    let format_log = data_dir.join("format.log");
    crate::process::run_to_completion(
        "format of Kafka's storage",
        java("kafka.tools.StorageTool")
            .args(["format", "-t", "c2x1aWNlLWUyZS1ncm91cA", "-c"])
            .arg(&config),
        &format_log,
        &format_log,
        Duration::from_secs(STARTUP_TIMEOUT_S),
    )?;
    let mut command = java("kafka.Kafka");
    command.arg(&config);
    Ok(command)
}
