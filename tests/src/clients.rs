//! The client programs under `tests/clients/`, and how to build and run one.
//!
//! Every client takes the same arguments (docs/testing.md, "Client programs") and writes the same
//! report, so the harness treats them alike; only how each is built and started differs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::{ChildGuard, run_to_completion};
use crate::report::Report;
use crate::tools::{Tool, python};
use crate::{HarnessError, repository_root};

/// Longest a client build may take (a first Maven build downloads plugins).
const BUILD_TIMEOUT_S: u64 = 600;
/// A client is given its own `--timeout-s` per phase plus this much for starting and exiting.
const CLIENT_EXIT_GRACE_S: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// The official Java client (org.apache.kafka:kafka-clients).
    Java,
    /// franz-go (github.com/twmb/franz-go).
    Go,
    /// librdkafka, through Python's confluent-kafka.
    Librdkafka,
    /// kafka-python, a pure-Python client.
    KafkaPython,
}

impl ClientKind {
    pub const ALL: [ClientKind; 4] = [
        ClientKind::Java,
        ClientKind::Go,
        ClientKind::Librdkafka,
        ClientKind::KafkaPython,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Java => "java",
            ClientKind::Go => "franz-go",
            ClientKind::Librdkafka => "librdkafka",
            ClientKind::KafkaPython => "kafka-python",
        }
    }

    /// What must be on the machine to build and run this client.
    pub fn tools(self) -> Vec<Tool> {
        match self {
            ClientKind::Java => vec![Tool::Java, Tool::Maven],
            ClientKind::Go => vec![Tool::Go],
            ClientKind::Librdkafka => vec![
                Tool::Python,
                Tool::PythonModule("confluent_kafka", "confluent-kafka"),
            ],
            ClientKind::KafkaPython => vec![
                Tool::Python,
                Tool::PythonModule("kafka", "kafka-python"),
                Tool::PythonModule("snappy", "python-snappy"),
                Tool::PythonModule("lz4", "lz4"),
                Tool::PythonModule("zstandard", "zstandard"),
            ],
        }
    }

    /// Builds the client if needed (`tests/clients/build.sh`), once per test process.
    pub fn build(self, work_dir: &Path) -> Result<(), HarnessError> {
        static BUILT: Mutex<Option<HashSet<ClientKind>>> = Mutex::new(None);
        let target = match self {
            ClientKind::Java => "java",
            ClientKind::Go => "go",
            ClientKind::Librdkafka | ClientKind::KafkaPython => return Ok(()),
        };
        // A poisoned lock only means another test panicked mid-build; building again is safe.
        let mut built = BUILT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if built.as_ref().is_some_and(|set| set.contains(&self)) {
            return Ok(());
        }
        let script = clients_dir().join("build.sh");
        let log = work_dir.join(format!("build-{target}.log"));
        run_to_completion(
            &format!("build of the {} client", self.name()),
            Command::new("bash").arg(script).arg(target),
            &log,
            &log,
            Duration::from_secs(BUILD_TIMEOUT_S),
        )?;
        built.get_or_insert_with(HashSet::new).insert(self);
        Ok(())
    }

    fn command(self) -> Command {
        let clients = clients_dir();
        match self {
            ClientKind::Java => {
                let java = clients.join("java");
                let mut command = Command::new("java");
                command
                    .arg("-Xmx256m")
                    .arg("-XX:+UseSerialGC")
                    .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
                    .arg("-cp")
                    .arg(format!(
                        "{}:{}/*",
                        java.join("target/classes").display(),
                        java.join("target/lib").display()
                    ))
                    .arg("dev.sluice.e2e.Client");
                command
            }
            ClientKind::Go => Command::new(clients.join("go/e2e-client")),
            ClientKind::Librdkafka => {
                let mut command = Command::new(python());
                command.arg(clients.join("python/rdkafka_client.py"));
                command
            }
            ClientKind::KafkaPython => {
                let mut command = Command::new(python());
                command.arg(clients.join("python/kafka_python_client.py"));
                command
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create the topic and produce; the report holds `ack` lines.
    Produce,
    /// Read every partition from the beginning to the high watermark; the report holds `rec` lines.
    Consume,
    /// Both, in one process.
    Roundtrip,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::Roundtrip => "roundtrip",
        }
    }
}

/// One invocation of a client.
#[derive(Debug, Clone)]
pub struct ClientRun {
    pub client: ClientKind,
    pub bootstrap: String,
    pub topic: String,
    pub records: u64,
    pub codec: Codec,
    pub mode: Mode,
    pub partitions: u32,
    pub seed: u64,
    pub timestamp_base_ms: i64,
    /// Limit of each phase (produce, consume) inside the client.
    pub timeout_s: u64,
    /// The report file; the client's own output goes beside it with a `.log` extension.
    pub report: PathBuf,
}

impl ClientRun {
    pub fn log_path(&self) -> PathBuf {
        self.report.with_extension("log")
    }

    /// Starts the client in the background (for scenarios that act while it runs).
    pub fn spawn(&self) -> Result<ChildGuard, HarnessError> {
        self.spawn_with(&[])
    }

    /// [`ClientRun::spawn`] with `extra` arguments after the common ones: `--client-id ID` (every
    /// client but kafka-python), `--idempotent` (franz-go).
    pub fn spawn_with(&self, extra: &[String]) -> Result<ChildGuard, HarnessError> {
        let mut command = self.client.command();
        command
            .arg("--bootstrap")
            .arg(&self.bootstrap)
            .arg("--topic")
            .arg(&self.topic)
            .arg("--records")
            .arg(self.records.to_string())
            .arg("--codec")
            .arg(self.codec.name())
            .arg("--mode")
            .arg(self.mode.name())
            .arg("--partitions")
            .arg(self.partitions.to_string())
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--timestamp-base-ms")
            .arg(self.timestamp_base_ms.to_string())
            .arg("--timeout-s")
            .arg(self.timeout_s.to_string())
            .arg("--report")
            .arg(&self.report)
            .args(extra);
        let name = format!(
            "{} client ({} {})",
            self.client.name(),
            self.mode.name(),
            self.codec.name()
        );
        ChildGuard::spawn(&name, &mut command, &self.log_path())
    }

    /// Runs the client to completion and reads its report. A client that exits non-zero still
    /// yields its report when it wrote one (its `error` line says what went wrong), so the caller
    /// sees the client's own words; a client that wrote nothing is an error with its log's tail.
    pub fn run(&self) -> Result<(Report, std::process::ExitStatus), HarnessError> {
        self.run_with(&[])
    }

    /// [`ClientRun::run`] with `extra` arguments ([`ClientRun::spawn_with`]).
    pub fn run_with(
        &self,
        extra: &[String],
    ) -> Result<(Report, std::process::ExitStatus), HarnessError> {
        let mut child = self.spawn_with(extra)?;
        let phases = match self.mode {
            Mode::Roundtrip => 2,
            Mode::Produce | Mode::Consume => 1,
        };
        let status = child.wait_with_timeout(Duration::from_secs(
            self.timeout_s * phases + CLIENT_EXIT_GRACE_S,
        ))?;
        match Report::read(&self.report) {
            Ok(report) => Ok((report, status)),
            Err(error) if status.success() => Err(error),
            Err(_) => Err(HarnessError::Failed {
                name: child.name().to_string(),
                status: status.to_string(),
                log: self.log_path(),
                tail: crate::process::log_tail(&self.log_path()),
            }),
        }
    }
}

/// `tests/clients` in this repository.
pub fn clients_dir() -> PathBuf {
    repository_root().join("tests/clients")
}
