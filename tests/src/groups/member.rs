//! Group-member processes: which client library and protocol, how to start one, how it ends.
//!
//! A member ends in one of two ways the scenarios care about: SIGTERM, on which every member
//! program closes its consumer (a clean leave: LeaveGroup, or the KIP-848 leave heartbeat) and
//! exits, and SIGKILL, a crash the group only notices when the session times out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::HarnessError;
use crate::api_versions::{FETCH, LIST_OFFSETS, METADATA, PRODUCE};
use crate::clients::{ClientKind, clients_dir};
use crate::groups::events::{MemberEvent, read_events};
use crate::process::{ChildGuard, log_tail};
use crate::tools::python;

pub const FIND_COORDINATOR: (i16, &str) = (10, "FindCoordinator");
pub const JOIN_GROUP: (i16, &str) = (11, "JoinGroup");
pub const HEARTBEAT: (i16, &str) = (12, "Heartbeat");
pub const LEAVE_GROUP: (i16, &str) = (13, "LeaveGroup");
pub const SYNC_GROUP: (i16, &str) = (14, "SyncGroup");
pub const OFFSET_COMMIT: (i16, &str) = (8, "OffsetCommit");
pub const OFFSET_FETCH: (i16, &str) = (9, "OffsetFetch");
pub const CONSUMER_GROUP_HEARTBEAT: (i16, &str) = (68, "ConsumerGroupHeartbeat");

/// How long a member gets to close and exit after SIGTERM (a JVM's close takes about a second).
const EXIT_AFTER_TERM_TIMEOUT_S: u64 = 40;

/// Which group protocol a member speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// JoinGroup / SyncGroup / Heartbeat, assignment computed by the group leader.
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat, assignment computed by the broker.
    Consumer,
}

/// A client library with its group protocol and assignor: one column of the group scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupClient {
    /// The Java client, classic protocol, CooperativeStickyAssignor (incremental rebalances).
    JavaCooperative,
    /// The Java client with `group.protocol=consumer` (KIP-848), the broker's default assignor.
    JavaConsumer,
    /// librdkafka, classic protocol, the eager range assignor.
    LibrdkafkaRange,
    /// librdkafka, classic protocol, cooperative-sticky (incremental rebalances).
    LibrdkafkaCooperative,
    /// franz-go, classic protocol, the eager round-robin balancer.
    FranzRoundRobin,
    /// franz-go, classic protocol, cooperative-sticky.
    FranzCooperative,
}

impl GroupClient {
    pub const ALL: [GroupClient; 6] = [
        GroupClient::JavaCooperative,
        GroupClient::JavaConsumer,
        GroupClient::LibrdkafkaRange,
        GroupClient::LibrdkafkaCooperative,
        GroupClient::FranzRoundRobin,
        GroupClient::FranzCooperative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupClient::JavaCooperative => "java-cooperative-sticky",
            GroupClient::JavaConsumer => "java-consumer-protocol",
            GroupClient::LibrdkafkaRange => "librdkafka-range",
            GroupClient::LibrdkafkaCooperative => "librdkafka-cooperative-sticky",
            GroupClient::FranzRoundRobin => "franz-go-roundrobin",
            GroupClient::FranzCooperative => "franz-go-cooperative-sticky",
        }
    }

    pub fn library(self) -> ClientKind {
        match self {
            GroupClient::JavaCooperative | GroupClient::JavaConsumer => ClientKind::Java,
            GroupClient::LibrdkafkaRange | GroupClient::LibrdkafkaCooperative => {
                ClientKind::Librdkafka
            }
            GroupClient::FranzRoundRobin | GroupClient::FranzCooperative => ClientKind::Go,
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            GroupClient::JavaConsumer => Protocol::Consumer,
            _ => Protocol::Classic,
        }
    }

    /// The assignor as the member programs name it (`--assignor`); empty: the broker's default.
    fn assignor(self) -> &'static str {
        match self {
            GroupClient::JavaCooperative
            | GroupClient::LibrdkafkaCooperative
            | GroupClient::FranzCooperative => "cooperative-sticky",
            GroupClient::JavaConsumer => "",
            GroupClient::LibrdkafkaRange => "range",
            GroupClient::FranzRoundRobin => "roundrobin",
        }
    }

    /// Whether a rebalance revokes only what moves (cooperative or KIP-848) rather than everything.
    pub fn incremental(self) -> bool {
        !matches!(
            self,
            GroupClient::LibrdkafkaRange | GroupClient::FranzRoundRobin
        )
    }

    /// The Kafka APIs a member of this kind calls (with produce and fetch).
    pub fn apis(self) -> Vec<(i16, &'static str)> {
        let mut apis = vec![
            METADATA,
            PRODUCE,
            LIST_OFFSETS,
            FETCH,
            FIND_COORDINATOR,
            OFFSET_COMMIT,
            OFFSET_FETCH,
        ];
        match self.protocol() {
            Protocol::Classic => apis.extend([JOIN_GROUP, SYNC_GROUP, HEARTBEAT, LEAVE_GROUP]),
            Protocol::Consumer => apis.push(CONSUMER_GROUP_HEARTBEAT),
        }
        apis
    }

    fn command(self) -> Command {
        let clients = clients_dir();
        match self.library() {
            ClientKind::Java => {
                let java = clients.join("java");
                let mut command = Command::new("java");
                command
                    .arg("-Xmx192m")
                    .arg("-XX:+UseSerialGC")
                    .arg("-XX:TieredStopAtLevel=1")
                    .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
                    .arg("-cp")
                    .arg(format!(
                        "{}:{}/*",
                        java.join("target/classes").display(),
                        java.join("target/lib").display()
                    ))
                    .arg("dev.sluice.e2e.GroupMember");
                command
            }
            ClientKind::Go => {
                let mut command = Command::new(clients.join("go/e2e-client"));
                command.arg("group-member");
                command
            }
            ClientKind::Librdkafka | ClientKind::KafkaPython => {
                let mut command = Command::new(python());
                command.arg(clients.join("python/rdkafka_group_member.py"));
                command
            }
        }
    }
}

/// One member to start.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub client: GroupClient,
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// Names the member in messages and is its client id; also names its report.
    pub name: String,
    /// `group.instance.id`: a static member (KIP-345).
    pub instance_id: Option<String>,
    /// Classic protocol only (the KIP-848 session timeout is the broker's).
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    /// Records per second the member processes; 0 for no limit.
    pub rate: u32,
    /// Once this file exists the member stops pacing itself.
    pub pace_file: Option<PathBuf>,
    /// Log the client's committed() answer for every newly assigned partition.
    pub log_committed: bool,
    pub timeout_s: u64,
    pub work_dir: PathBuf,
}

impl MemberSpec {
    pub fn report(&self) -> PathBuf {
        self.work_dir.join(format!("{}.jsonl", self.name))
    }

    pub fn log(&self) -> PathBuf {
        self.work_dir.join(format!("{}.log", self.name))
    }

    pub fn spawn(&self) -> Result<Member, HarnessError> {
        let mut command = self.client.command();
        command
            .arg("--bootstrap")
            .arg(&self.bootstrap)
            .arg("--topic")
            .arg(&self.topic)
            .arg("--group")
            .arg(&self.group)
            .arg("--report")
            .arg(self.report())
            .arg("--protocol")
            .arg(match self.client.protocol() {
                Protocol::Classic => "classic",
                Protocol::Consumer => "consumer",
            })
            .arg("--assignor")
            .arg(self.client.assignor())
            .arg("--session-timeout-ms")
            .arg(self.session_timeout_ms.to_string())
            .arg("--heartbeat-interval-ms")
            .arg(self.heartbeat_interval_ms.to_string())
            .arg("--rate")
            .arg(self.rate.to_string())
            .arg("--log-committed")
            .arg(self.log_committed.to_string())
            .arg("--timeout-s")
            .arg(self.timeout_s.to_string())
            .arg("--name")
            .arg(&self.name);
        if let Some(instance_id) = &self.instance_id {
            command.arg("--instance-id").arg(instance_id);
        }
        if let Some(pace_file) = &self.pace_file {
            command.arg("--pace-file").arg(pace_file);
        }
        let child = ChildGuard::spawn(
            &format!("{} member {}", self.client.name(), self.name),
            &mut command,
            &self.log(),
        )?;
        Ok(Member {
            spec: self.clone(),
            child,
            ended_us: None,
            killed: false,
        })
    }
}

/// A running (or ended) member process.
#[derive(Debug)]
pub struct Member {
    pub spec: MemberSpec,
    child: ChildGuard,
    /// When the harness ended it (SIGTERM sent or SIGKILL), wall-clock microseconds.
    ended_us: Option<i64>,
    killed: bool,
}

impl Member {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn events(&self) -> Result<Vec<MemberEvent>, HarnessError> {
        read_events(&self.spec.report())
    }

    /// Neither terminated nor killed by the harness.
    pub fn is_live(&self) -> bool {
        self.ended_us.is_none()
    }

    pub fn was_killed(&self) -> bool {
        self.killed
    }

    /// When the harness ended the member; for a killed member, also when its ownership ended.
    pub fn ended_us(&self) -> Option<i64> {
        self.ended_us
    }

    /// SIGTERM, then waits for the member to close its consumer and exit.
    pub fn terminate(&mut self) -> Result<(), HarnessError> {
        if self.ended_us.is_none() {
            self.ended_us = Some(now_us());
        }
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
        // SAFETY: kill(2) with a pid this process spawned and has not reaped (the guard reaps).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        self.child
            .wait_with_timeout(Duration::from_secs(EXIT_AFTER_TERM_TIMEOUT_S))?;
        Ok(())
    }

    /// SIGKILL: a crash. The group notices when the member's session expires.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.ended_us = Some(now_us());
        self.killed = true;
        self.child.kill()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>, HarnessError> {
        self.child.try_status()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.spec.log())
    }
}

/// Wall-clock microseconds, the clock of the members' reports.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Polls `condition` every 100 ms until it yields a value or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    mut condition: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("not reached within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates the file that tells members to stop pacing themselves.
pub fn release_pace(pace_file: &Path) -> Result<(), HarnessError> {
    std::fs::write(pace_file, b"go")
        .map_err(HarnessError::io(format!("create {}", pace_file.display())))
}
