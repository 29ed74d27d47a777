//! Stopping an agent closes its connections, frees its port and its executors, so the next agent
//! (in this process or another) can start on the same port; and it drains first: requests read
//! before the stop are answered.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceResponse};
use sluice_engine::store::{ObjectInfo, ObjectStorage, ObjectStoreBackend, StoreResult};

#[test]
fn shutdown_closes_connections_and_frees_the_port() {
    let mut agent = common::start_agent(|_| {});
    let addr = agent.addr();
    let mut client = common::RawClient::connect(addr);
    let _: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());

    agent.agent.take().unwrap().shutdown().unwrap();
    assert!(
        client.is_closed_by_agent(),
        "an open connection is closed by shutdown"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
    drop(agent);

    // The same port again, now that the first agent is gone.
    let again = common::start_agent(|config| config.listen = addr.to_string());
    let mut client = common::RawClient::connect(again.addr());
    let response: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

/// A connection the stop ends before it answered anything is reset, not closed: a client that
/// connected just before the stop reads a reset, which every client retries, where an orderly
/// close before its first answer (ApiVersions) reads as a protocol or TLS mismatch (franz-go's
/// `ErrFirstReadEOF`, not retried). A connection that has answered is still closed with a FIN.
#[test]
fn shutdown_resets_a_connection_that_has_answered_nothing() {
    use std::io::Read;

    let mut agent = common::start_agent(|_| {});
    let addr = agent.addr();
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    let mut answered = common::RawClient::connect(addr);
    let _: ApiVersionsResponse =
        answered.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    // Both accepted (the silent one's task runs) before the stop.
    let metrics = Arc::clone(agent.agent.as_ref().unwrap().metrics());
    let accepted = || {
        metrics
            .cores
            .iter()
            .map(|core| core.connections_accepted.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted() < 2 {
        assert!(Instant::now() < deadline, "the agent never accepted both");
        std::thread::sleep(Duration::from_millis(1));
    }

    agent.agent.take().unwrap().shutdown().unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut byte = [0_u8; 1];
    match silent.read(&mut byte) {
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the unanswered connection is reset: {error}"
        ),
        Ok(read) => panic!("the unanswered connection was closed (read {read} bytes), not reset"),
    }
    let mut byte = [0_u8; 1];
    assert_eq!(
        answered.stream.read(&mut byte).unwrap(),
        0,
        "the answered connection is closed with a FIN"
    );
}

/// Pinned (io_uring-registered) memory of this process, from /proc/self/status.
fn pinned_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmPin:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Known upstream limitation, kept as a test so that a glommio upgrade that fixes it is noticed:
/// glommio 0.9 never frees an executor's io_uring rings, so the registered io memory (3 ×
/// `io_memory_bytes` per executor) stays pinned after the executor is dropped and its thread
/// joined; measured even for an executor that only ran a timer. Harmless for the binary (one
/// agent per process); a test process that starts many agents runs out of RLIMIT_MEMLOCK after a
/// few, and glommio then falls back to unregistered buffers with a logged warning.
#[test]
#[ignore = "glommio 0.9 leaks each executor's rings and registered io memory when it is dropped"]
fn stopping_releases_locked_memory() {
    let before = pinned_kib();
    for _ in 0..5 {
        let agent = common::start_agent(|_| {});
        let mut client = common::RawClient::connect(agent.addr());
        let _: ApiVersionsResponse =
            client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        drop(agent);
    }
    assert_eq!(
        pinned_kib(),
        before,
        "executors must unregister their io memory when stopped"
    );
}

/// A store whose PUTs wait while the gate is shut, counting the PUTs that reached it.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn ObjectStorage>,
    open: tokio::sync::watch::Receiver<bool>,
    puts_arrived: AtomicU64,
}

#[async_trait::async_trait]
impl ObjectStorage for GatedStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.puts_arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open).await;
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
}

/// Stopping drains: a produce the agent has read before the stop is acknowledged — its window
/// sealed, uploaded and committed — and only then is the connection closed. Before draining, the
/// stop dropped the connection with the produce unanswered (the client saw a reset and had to
/// retry against another agent).
///
/// Decided by events, not time: the window's PUT is held at a gate until (1) the PUT has reached
/// the store, which proves the agent read the request and sealed its window, and (2) the
/// listener refuses connections, which proves the network core has taken the stop.
#[test]
fn shutdown_answers_a_produce_it_has_read() {
    let (open_gate, open) = tokio::sync::watch::channel(true);
    let store = Arc::new(GatedStore {
        inner: Arc::new(ObjectStoreBackend::in_memory()),
        open,
        puts_arrived: AtomicU64::new(0),
    });
    let mut agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |_| {});
    let addr = agent.addr();
    agent.create_topic("drained", 1);

    open_gate.send_replace(false);
    let puts_before = store.puts_arrived.load(Ordering::SeqCst);
    let mut client = common::RawClient::connect(addr);
    let request =
        common::produce_request(-1, &[("drained", 0, common::batch(3, common::now_ms()))]);
    let correlation_id = client.send(ApiKey::Produce, 9, &request);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.puts_arrived.load(Ordering::SeqCst) == puts_before {
        assert!(
            Instant::now() < deadline,
            "the produce's window never reached the store"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    let running = agent.agent.take().unwrap();
    let stopping = std::thread::spawn(move || running.shutdown());
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    open_gate.send_replace(true);

    let response: ProduceResponse = client.receive(ApiKey::Produce, 9, correlation_id);
    assert_eq!(
        common::produce_results(&response),
        vec![("drained".to_owned(), 0, 0, 0)],
        "the produce read before the stop is acknowledged at offset 0"
    );
    assert!(client.is_closed_by_agent(), "then the connection is closed");
    stopping.join().unwrap().unwrap();
}

/// Stopping keeps every network core up until all of them have drained: an OffsetCommit read by
/// one core for a group another core owns (the request runs on the owner core) is answered at a
/// graceful stop. Before, the owner core, with no connection of its own to drain, ended at once;
/// glommio drops no task when its executor ends, so the commit's answer never came and its
/// connection was closed unanswered at the drain timeout (10 s) — what Java members saw as
/// commits timing out during a rolling restart.
///
/// Decided by events: the commit's window is held at the store's gate until (1) its PUT has
/// reached the store, which proves the commit is running on the owner core and waits for its
/// window, and (2) the listener refuses connections, which proves the stop has reached the cores.
#[test]
fn shutdown_answers_a_commit_for_a_group_another_core_owns() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetCommitResponse};
    use kafka_protocol::protocol::StrBytes;
    use sluice_server::groups::router::owner_core;

    const CORES: usize = 2;
    let (open_gate, open) = tokio::sync::watch::channel(true);
    let store = Arc::new(GatedStore {
        inner: Arc::new(ObjectStoreBackend::in_memory()),
        open,
        puts_arrived: AtomicU64::new(0),
    });
    let mut agent =
        common::start_agent_with_store(Arc::clone(&store) as Arc<dyn ObjectStorage>, |config| {
            config.cpus = Some((0..CORES).collect())
        });
    let addr = agent.addr();
    agent.create_topic("committed", 1);
    let metrics = Arc::clone(agent.agent.as_ref().unwrap().metrics());
    let accepted = || -> Vec<u64> {
        metrics
            .cores
            .iter()
            .map(|core| core.connections_accepted.load(Ordering::Relaxed))
            .collect()
    };
    assert_eq!(accepted().len(), CORES);

    // The core that accepts the client's connection, and a group the other core owns.
    let before = accepted();
    let mut client = common::RawClient::connect(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let core = loop {
        if let Some(core) = (0..CORES).find(|&core| accepted()[core] > before[core]) {
            break core;
        }
        assert!(
            Instant::now() < deadline,
            "the connection was never accepted"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let group = (0..)
        .map(|n| format!("drained-group-{n}"))
        .find(|group| owner_core(group, CORES) != core)
        .unwrap();

    open_gate.send_replace(false);
    let puts_before = store.puts_arrived.load(Ordering::SeqCst);
    // A commit outside any generation (-1), as admin tools commit.
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(common::topic_name("committed"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(0),
                ]),
        ]);
    let correlation_id = client.send(ApiKey::OffsetCommit, 8, &request);
    while store.puts_arrived.load(Ordering::SeqCst) == puts_before {
        assert!(
            Instant::now() < deadline,
            "the commit's window never reached the store"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    let running = agent.agent.take().unwrap();
    let stopping = std::thread::spawn(move || running.shutdown());
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    open_gate.send_replace(true);

    let answering = Instant::now();
    let response: OffsetCommitResponse = client.receive(ApiKey::OffsetCommit, 8, correlation_id);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        0,
        "the commit of {group} (owner core {}, read by core {core}) is answered",
        owner_core(&group, CORES)
    );
    assert!(client.is_closed_by_agent(), "then the connection is closed");
    stopping.join().unwrap().unwrap();
    println!(
        "commit read by core {core} for a group of core {} answered {:.1} ms after the store took its window",
        owner_core(&group, CORES),
        answering.elapsed().as_secs_f64() * 1e3
    );
}

/// A JoinGroup parked in a rebalance (here: a new group's initial delay of a minute) is answered
/// NOT_COORDINATOR when the agent stops, as Kafka's coordinator answers it when it resigns, so
/// its client looks the coordinator up again instead of waiting out the drain timeout (10 s).
#[test]
fn shutdown_answers_a_parked_join_group_not_coordinator() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, DescribeGroupsResponse, GroupId, JoinGroupRequest, JoinGroupResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    const NOT_COORDINATOR: i16 = 16;

    let mut agent = common::start_agent(|config| {
        config.group_initial_rebalance_delay_ms = 60_000;
    });
    let addr = agent.addr();
    let mut member = common::RawClient::connect(addr);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("parked")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")),
        ]);
    // v3: no MEMBER_ID_REQUIRED round; the join waits for the initial delay.
    let correlation_id = member.send(ApiKey::JoinGroup, 3, &join);
    // Parked once the group shows the member preparing a rebalance.
    let mut admin = common::RawClient::connect(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described: DescribeGroupsResponse = admin.call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("parked"))]),
        );
        let group = &described.groups[0];
        if group.group_state.as_str() == "PreparingRebalance" && group.members.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the join never parked: {group:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(admin);

    let running = agent.agent.take().unwrap();
    let stop_started = Instant::now();
    let stopping = std::thread::spawn(move || running.shutdown());
    let response: JoinGroupResponse = member.receive(ApiKey::JoinGroup, 3, correlation_id);
    let answered_after = stop_started.elapsed();
    assert_eq!(response.error_code, NOT_COORDINATOR);
    assert!(
        answered_after < Duration::from_secs(5),
        "answered only after {answered_after:?}: the drain timeout, not the stop"
    );
    stopping.join().unwrap().unwrap();
    println!(
        "parked JoinGroup answered NOT_COORDINATOR {:.1} ms after the stop began",
        answered_after.as_secs_f64() * 1e3
    );
}

/// A clean stop writes a checkpoint of everything applied: the next start replays no log entry
/// (each is one GET; up to `checkpoint_interval_entries` of them otherwise), and the state it
/// recovers still holds every produced batch.
#[test]
fn a_clean_stop_leaves_a_checkpoint_so_the_next_start_replays_nothing() {
    let store_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?fsync=false", store_dir.path().display());
    let open = || {
        sluice_engine::store::open_store(
            &sluice_engine::store::StoreConfig::from_url(&url).unwrap(),
        )
        .unwrap()
    };
    let mut agent = common::start_agent_with_store(open(), |_| {});
    agent.create_topic("clean-stop", 1);
    let mut client = common::RawClient::connect(agent.addr());
    for round in 0..5 {
        let request = common::produce_request(
            -1,
            &[("clean-stop", 0, common::batch(2, common::now_ms() + round))],
        );
        let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
        assert_eq!(
            common::produce_results(&response),
            vec![("clean-stop".to_owned(), 0, 0, round * 2)]
        );
    }
    agent.agent.take().unwrap().shutdown().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (state, stats) = runtime
        .block_on(sluice_engine::log::recover(
            open().as_ref(),
            &sluice_engine::log::LogConfig::default(),
            None,
        ))
        .unwrap();
    assert!(stats.checkpoint_seq.is_some(), "{stats:?}");
    assert_eq!(stats.entries_replayed, 0, "{stats:?}");
    let (_, topic) = state.topic_by_name("clean-stop").unwrap();
    assert_eq!(topic.partitions()[0].high_watermark(), 10);
}
