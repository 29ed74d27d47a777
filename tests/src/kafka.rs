//! [`ApacheKafka`]: one Apache Kafka 4.x KRaft node (`scripts/kafka/run-kafka.sh`) on loopback ports,
//! in a temporary directory, killed and deleted on drop. It is the reference the harness is
//! validated against: a check that fails here is a bug in the harness or a client, not in Sluice.

use std::net::SocketAddr;
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
        let data_dir = tempfile::Builder::new()
            .prefix("sluice-e2e-kafka-")
            .tempdir()
            .map_err(HarnessError::io("create a temporary directory for Kafka"))?;
        let (port, controller_port) = free_port_pair()?;
        let script = repository_root().join("scripts/kafka/run-kafka.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .arg(port.to_string())
            .arg(data_dir.path())
            .arg(controller_port.to_string());
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
