//! One simulated classic-protocol consumer: the requests a Java `KafkaConsumer` with
//! `group.protocol=classic`, `partition.assignment.strategy=range` and default timeouts sends, in
//! the order it sends them, without fetching records.
//!
//! - ApiVersions on its connection, FindCoordinator for its group (retried every 100 ms while the
//!   broker answers COORDINATOR_NOT_AVAILABLE / COORDINATOR_LOAD_IN_PROGRESS).
//! - JoinGroup with an empty member id, MEMBER_ID_REQUIRED, JoinGroup again with the id it was
//!   given (KIP-394). The leader decodes every member's subscription, runs the range assignor and
//!   sends the assignments in its SyncGroup; the others send an empty SyncGroup.
//! - Then a Heartbeat every 3 s (one in flight at a time) and an OffsetCommit of its partitions
//!   every second, side by side on the connection.
//! - REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION → rejoin with the same member id;
//!   UNKNOWN_MEMBER_ID → rejoin with an empty id; NOT_COORDINATOR, a closed connection → find the
//!   coordinator again on a new connection (as `AbstractCoordinator` does).
//!
//! One connection per member, to the coordinator: Java opens a second connection for the
//! coordinator even when it is the bootstrap broker; here the bootstrap connection is reused when
//! FindCoordinator names the same address, which changes the socket count, not the requests.
//! Each member's heartbeat and commit timers start at its own phase (a golden-ratio sequence over
//! the interval), as independent consumers started over time would; members that joined in the
//! same instant would otherwise fire in lockstep forever.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::assignment::{self, TopicPartitions};
use super::stats::{Acknowledged, Board, Call, Recorder};
use super::wire::{CallError, Connection, Versions};

// Kafka error codes the member reacts to.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;

/// Java consumer defaults.
pub const SESSION_TIMEOUT_MS: i32 = 45_000;
pub const REBALANCE_TIMEOUT_MS: i32 = 300_000; // max.poll.interval.ms
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// FindCoordinator attempts before the member starts over on a new connection.
const FIND_COORDINATOR_ATTEMPTS_MAX: u32 = 600;
/// Java waits for JoinGroup (and here SyncGroup) up to the rebalance timeout plus 5 s.
const JOIN_TIMEOUT: Duration = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 5_000);
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";

/// The API versions the members use (the highest both the broker and the benchmark speak).
#[derive(Clone, Copy, Debug)]
pub struct Picked {
    pub find_coordinator: i16,
    pub join_group: i16,
    pub sync_group: i16,
    pub heartbeat: i16,
    pub offset_commit: i16,
    /// Only to read the offsets back after the run.
    pub offset_fetch: i16,
}

impl Picked {
    /// JoinGroup from v4 (MEMBER_ID_REQUIRED), the rest at versions that carry every field we
    /// send; capped at what kafka-protocol 0.18 encodes.
    pub fn from(versions: &Versions) -> Result<Picked, String> {
        use kafka_protocol::messages::ApiKey;
        use kafka_protocol::protocol::VersionRange;
        let range = |min, max| VersionRange { min, max };
        Ok(Picked {
            find_coordinator: versions.pick(ApiKey::FindCoordinator, range(1, 6))?,
            join_group: versions.pick(ApiKey::JoinGroup, range(4, 9))?,
            sync_group: versions.pick(ApiKey::SyncGroup, range(3, 5))?,
            heartbeat: versions.pick(ApiKey::Heartbeat, range(3, 4))?,
            offset_commit: versions.pick(ApiKey::OffsetCommit, range(2, 9))?,
            offset_fetch: versions.pick(ApiKey::OffsetFetch, range(1, 7))?,
        })
    }
}

/// What every member shares.
#[derive(Debug)]
pub struct Shared {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub commit_interval: Duration,
    pub versions: Picked,
    pub recorder: Arc<Recorder>,
    pub board: Arc<Board>,
    pub acknowledged: Arc<Acknowledged>,
    /// Bounds connection set-ups in progress: a burst of thousands of SYNs overflows a listen
    /// backlog (Kafka's `socket.listen.backlog.size` is 50) and turns into 1 s SYN retries.
    pub connecting: Arc<Semaphore>,
}

/// Which member of which group, and its place in the whole population (for timer phases).
#[derive(Clone, Copy, Debug)]
pub struct Seat {
    pub group: usize,
    pub member: usize,
    pub population_index: usize,
}

pub fn group_id(group: usize) -> String {
    format!("bench-group-{group:05}")
}

/// The fractional part of `index × golden ratio`, in [0, 1): consecutive indices spread evenly.
pub fn phase(index: usize, offset: f64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    #[expect(clippy::cast_precision_loss, reason = "indices far below 2^52")]
    let x = index as f64 * GOLDEN + offset;
    x - x.floor()
}

fn str(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// How one connection's session ended.
enum Ended {
    Stopped,
    /// Find the coordinator again on a new connection (after a pause).
    Lost,
}

/// Why the member leaves its Stable loop.
enum Rejoin {
    KeepMemberId,
    ResetMemberId,
}

/// Runs the member until `stop` turns true.
pub async fn run(shared: Arc<Shared>, seat: Seat, mut stop: watch::Receiver<bool>) {
    let mut member = Member {
        group_id: group_id(seat.group),
        member_id: String::new(),
        generation: -1,
        shared,
        seat,
        commit_sequence: 0,
    };
    loop {
        let ended = tokio::select! {
            ended = member.session() => ended,
            _ = stop.wait_for(|stopped| *stopped) => Ended::Stopped,
        };
        member.shared.board.set(seat.group, seat.member, None);
        match ended {
            Ended::Stopped => return,
            Ended::Lost => {
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_BACKOFF) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    }
}

struct Member {
    group_id: String,
    member_id: String,
    generation: i32,
    shared: Arc<Shared>,
    seat: Seat,
    /// The offset committed next: one more each commit, so every commit changes the stored
    /// value (a consumer making progress), not a no-op a broker could skip.
    commit_sequence: i64,
}

/// The answer of one call made from the Stable loop.
enum Outcome {
    Heartbeat(Result<(i16, Duration), CallError>),
    /// The offset sent, and each partition's answer.
    Commit(i64, Result<(Vec<(i32, i16)>, Duration), CallError>),
}

impl Member {
    fn record(&self, f: impl FnOnce(&mut super::stats::Stats)) {
        self.shared.recorder.with(f);
    }

    fn fail(&self, call: Call, error: &CallError) {
        self.record(|stats| stats.record_failure(call, error.kind()));
    }

    /// Connects, finds the coordinator, then joins and stays in the group until the connection
    /// is lost.
    async fn session(&mut self) -> Ended {
        let Some(connection) = self.connect(&self.shared.bootstrap.clone()).await else {
            return Ended::Lost;
        };
        let Some(address) = self.find_coordinator(&connection).await else {
            return Ended::Lost;
        };
        let connection = if address == self.shared.bootstrap {
            connection
        } else {
            drop(connection);
            match self.connect(&address).await {
                Some(connection) => connection,
                None => return Ended::Lost,
            }
        };
        loop {
            let Some(assigned) = self.join_and_sync(&connection).await else {
                return Ended::Lost;
            };
            let partitions: usize = assigned.iter().map(|(_, p)| p.len()).sum();
            self.shared.board.set(
                self.seat.group,
                self.seat.member,
                (partitions > 0).then_some(self.generation),
            );
            match self.stable(&connection, &assigned).await {
                Ok(Rejoin::KeepMemberId) => {}
                Ok(Rejoin::ResetMemberId) => self.member_id.clear(),
                Err(ended) => return ended,
            }
            self.shared
                .board
                .set(self.seat.group, self.seat.member, None);
        }
    }

    async fn connect(&self, address: &str) -> Option<Arc<Connection>> {
        let client_id = format!("{}-member-{}", self.group_id, self.seat.member);
        let _permit = self.shared.connecting.acquire().await.ok()?;
        let connection = match Connection::connect(address, &client_id).await {
            Ok(connection) => connection,
            Err(error) => {
                self.fail(Call::Connect, &error);
                return None;
            }
        };
        // Java's first request on every connection; the versions were picked once for all.
        if let Err(error) = Versions::negotiate(&connection).await {
            self.fail(Call::Connect, &error);
            return None;
        }
        Some(connection)
    }

    /// The coordinator's `host:port`, or `None` after a connection failure or too many tries.
    async fn find_coordinator(&self, connection: &Connection) -> Option<String> {
        let version = self.shared.versions.find_coordinator;
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![str(&self.group_id)])
        } else {
            FindCoordinatorRequest::default().with_key(str(&self.group_id))
        };
        for _ in 0..FIND_COORDINATOR_ATTEMPTS_MAX {
            let answer = match connection.call(version, &request).await {
                Ok(answer) => answer.body,
                Err(error) => {
                    self.fail(Call::FindCoordinator, &error);
                    return None;
                }
            };
            let (code, host, port) = if version >= 4 {
                match answer.coordinators.first() {
                    Some(c) => (c.error_code, c.host.to_string(), c.port),
                    None => (COORDINATOR_NOT_AVAILABLE, String::new(), 0),
                }
            } else {
                (answer.error_code, answer.host.to_string(), answer.port)
            };
            if code == 0 {
                return Some(format!("{host}:{port}"));
            }
            self.record(|stats| stats.record_code(Call::FindCoordinator, code));
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        None
    }

    /// JoinGroup (twice on a first join) and SyncGroup until the member holds an assignment of
    /// a generation; `None` when the coordinator moved or the connection broke.
    async fn join_and_sync(&mut self, connection: &Connection) -> Option<Vec<TopicPartitions>> {
        let versions = self.shared.versions;
        loop {
            let subscription =
                match assignment::encode_subscription(&[&self.shared.topic], self.generation) {
                    Ok(bytes) => bytes,
                    Err(_) => return None,
                };
            let mut join = JoinGroupRequest::default()
                .with_group_id(GroupId(str(&self.group_id)))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_member_id(str(&self.member_id))
                .with_protocol_type(str(PROTOCOL_TYPE))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(str(ASSIGNOR))
                        .with_metadata(subscription),
                ]);
            if versions.join_group >= 8 {
                join = join.with_reason(Some(str("")));
            }
            self.record(|stats| stats.joins += 1);
            let answer = match connection
                .call_with_timeout(versions.join_group, &join, JOIN_TIMEOUT)
                .await
            {
                Ok(answer) => answer,
                Err(error) => {
                    self.fail(Call::JoinGroup, &error);
                    return None;
                }
            };
            let joined = answer.body;
            self.record(|stats| {
                stats.record_latency(Call::JoinGroup, answer.latency);
                stats.record_code(Call::JoinGroup, joined.error_code);
            });
            match joined.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    self.generation = -1;
                    continue;
                }
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => return None,
                REBALANCE_IN_PROGRESS | COORDINATOR_LOAD_IN_PROGRESS => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                _ => {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let protocol_name = joined
                .protocol_name
                .clone()
                .unwrap_or_else(|| str(ASSIGNOR));
            let assignments = if joined.leader == joined.member_id {
                self.assign(&joined.members)
            } else {
                Vec::new()
            };
            let mut sync = SyncGroupRequest::default()
                .with_group_id(GroupId(str(&self.group_id)))
                .with_generation_id(self.generation)
                .with_member_id(str(&self.member_id))
                .with_assignments(assignments);
            if versions.sync_group >= 5 {
                sync = sync
                    .with_protocol_type(Some(str(PROTOCOL_TYPE)))
                    .with_protocol_name(Some(protocol_name));
            }
            let answer = match connection
                .call_with_timeout(versions.sync_group, &sync, JOIN_TIMEOUT)
                .await
            {
                Ok(answer) => answer,
                Err(error) => {
                    self.fail(Call::SyncGroup, &error);
                    return None;
                }
            };
            let synced = answer.body;
            self.record(|stats| {
                stats.record_latency(Call::SyncGroup, answer.latency);
                stats.record_code(Call::SyncGroup, synced.error_code);
            });
            match synced.error_code {
                0 => {}
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    self.generation = -1;
                    continue;
                }
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => continue,
                NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => return None,
                _ => {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
            match assignment::decode_assignment(synced.assignment) {
                Ok(assigned) => return Some(assigned),
                Err(_) => {
                    self.record(|stats| stats.record_failure(Call::SyncGroup, "bad assignment"));
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }

    /// The leader's range assignment of the subscriptions in its JoinGroup answer.
    fn assign(
        &self,
        members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    ) -> Vec<SyncGroupRequestAssignment> {
        let subscriptions: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|member| {
                let topics =
                    assignment::decode_subscription(member.metadata.clone()).unwrap_or_default();
                (member.member_id.to_string(), topics)
            })
            .collect();
        let counts = BTreeMap::from([(self.shared.topic.clone(), self.shared.partitions)]);
        assignment::range_assign(&subscriptions, &counts)
            .into_iter()
            .filter_map(|(member_id, partitions)| {
                let bytes = assignment::encode_assignment(&partitions).ok()?;
                Some(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(str(&member_id))
                        .with_assignment(bytes),
                )
            })
            .collect()
    }

    /// Heartbeats and commits until the group rebalances (`Ok`) or the session ends (`Err`).
    async fn stable(
        &mut self,
        connection: &Arc<Connection>,
        assigned: &[TopicPartitions],
    ) -> Result<Rejoin, Ended> {
        let start = tokio::time::Instant::now();
        let index = self.seat.population_index;
        let mut next_heartbeat = start + HEARTBEAT_INTERVAL.mul_f64(phase(index, 0.0));
        let mut next_commit = start + self.shared.commit_interval.mul_f64(phase(index, 0.5));
        let mut heartbeat_in_flight = false;
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_heartbeat), if !heartbeat_in_flight => {
                    self.record_lag(next_heartbeat);
                    heartbeat_in_flight = true;
                    next_heartbeat = later(next_heartbeat, HEARTBEAT_INTERVAL);
                    in_flight.spawn(self.heartbeat(Arc::clone(connection)));
                }
                () = tokio::time::sleep_until(next_commit) => {
                    self.record_lag(next_commit);
                    next_commit = later(next_commit, self.shared.commit_interval);
                    in_flight.spawn(self.commit(Arc::clone(connection), assigned));
                }
                Some(joined) = in_flight.join_next() => {
                    let Ok(outcome) = joined else { continue };
                    if let Outcome::Heartbeat(_) = outcome {
                        heartbeat_in_flight = false;
                    }
                    if let Some(next) = self.react(outcome)? {
                        return Ok(next);
                    }
                }
            }
        }
    }

    fn record_lag(&self, scheduled: tokio::time::Instant) {
        let lag = tokio::time::Instant::now().saturating_duration_since(scheduled);
        self.record(|stats| stats.record_send_lag(lag));
    }

    fn heartbeat(
        &self,
        connection: Arc<Connection>,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str(&self.group_id)))
            .with_generation_id(self.generation)
            .with_member_id(str(&self.member_id));
        let version = self.shared.versions.heartbeat;
        async move {
            Outcome::Heartbeat(
                connection
                    .call(version, &request)
                    .await
                    .map(|answer| (answer.body.error_code, answer.latency)),
            )
        }
    }

    fn commit(
        &mut self,
        connection: Arc<Connection>,
        assigned: &[TopicPartitions],
    ) -> impl Future<Output = Outcome> + Send + 'static {
        self.commit_sequence += 1;
        let offset = self.commit_sequence;
        let topics = assigned
            .iter()
            .map(|(topic, partitions)| {
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(str(topic)))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&partition| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(offset)
                            })
                            .collect(),
                    )
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str(&self.group_id)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(str(&self.member_id))
            .with_topics(topics);
        let version = self.shared.versions.offset_commit;
        async move {
            let answered = connection.call(version, &request).await.map(|answer| {
                let codes = answer
                    .body
                    .topics
                    .iter()
                    .flat_map(|topic| {
                        topic
                            .partitions
                            .iter()
                            .map(|p| (p.partition_index, p.error_code))
                    })
                    .collect();
                (codes, answer.latency)
            });
            Outcome::Commit(offset, answered)
        }
    }

    /// Records an answer and decides what follows: `Ok(None)` carry on, `Ok(Some(_))` rejoin,
    /// `Err(_)` end the session.
    fn react(&self, outcome: Outcome) -> Result<Option<Rejoin>, Ended> {
        let (call, answered) = match outcome {
            Outcome::Heartbeat(result) => (
                Call::Heartbeat,
                result.map(|(code, latency)| (vec![code], latency, 0)),
            ),
            Outcome::Commit(offset, result) => (
                Call::OffsetCommit,
                result.map(|(codes, latency)| {
                    let mut committed: u64 = 0;
                    for &(partition, code) in &codes {
                        if code == 0 {
                            committed += 1;
                            self.shared
                                .acknowledged
                                .record(self.seat.group, partition, offset);
                        }
                    }
                    (
                        codes.into_iter().map(|(_, code)| code).collect(),
                        latency,
                        committed,
                    )
                }),
            ),
        };
        let (codes, latency, committed) = match answered {
            Ok(answered) => answered,
            Err(error) => {
                self.fail(call, &error);
                return match error {
                    CallError::Timeout => Ok(None),
                    _ => Err(Ended::Lost),
                };
            }
        };
        // One error per answer (a commit's partitions fail together for group errors).
        let code = codes.iter().copied().find(|code| *code != 0).unwrap_or(0);
        self.record(|stats| {
            stats.record_latency(call, latency);
            stats.record_code(call, code);
            stats.committed_partitions += committed;
        });
        Ok(match code {
            ILLEGAL_GENERATION => Some(Rejoin::KeepMemberId),
            UNKNOWN_MEMBER_ID => Some(Rejoin::ResetMemberId),
            // A commit's REBALANCE_IN_PROGRESS is left to the heartbeat, as Java does.
            REBALANCE_IN_PROGRESS if call == Call::Heartbeat => Some(Rejoin::KeepMemberId),
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => return Err(Ended::Lost),
            _ => None,
        })
    }
}

/// The next firing of a periodic timer: one interval on, or one interval from now when the
/// client fell more than an interval behind (late firings are not bunched up).
fn later(scheduled: tokio::time::Instant, interval: Duration) -> tokio::time::Instant {
    let next = scheduled + interval;
    let now = tokio::time::Instant::now();
    if next < now { now + interval } else { next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_spread_over_the_interval() {
        let mut buckets = [0_u32; 10];
        for index in 0..3_000 {
            let p = phase(index, 0.5);
            assert!((0.0..1.0).contains(&p));
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "0..10"
            )]
            let bucket = (p * 10.0) as usize;
            if let Some(count) = buckets.get_mut(bucket) {
                *count += 1;
            }
        }
        // A golden-ratio sequence fills every tenth of the interval almost exactly evenly.
        assert!(
            buckets.iter().all(|&n| (290..=310).contains(&n)),
            "{buckets:?}"
        );
    }
}
