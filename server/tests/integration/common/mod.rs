//! Shared helpers for the agent tests: an in-process agent on an ephemeral port and a raw
//! Kafka client built from `kafka-protocol` over a blocking `std` socket.
//!
//! Locked memory: the agent's glommio executors charge their io memory to RLIMIT_MEMLOCK (8 MiB
//! on the development machines). An in-process test agent runs one network core plus the
//! metadata core, two executors, and [`start_agent`] holds a process-wide mutex for the agent's
//! lifetime, so tests in one file never run two agents at once even under the default parallel
//! test runner (`--test-threads=1` is therefore not required). glommio 0.9 does not release an
//! executor's registered memory when it stops (see `shutdown.rs`), so after a few agents in one
//! test process glommio falls back to unregistered buffers; that changes speed, not behaviour.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_engine::batch::BatchBuilder;
use sluice_engine::store::{ObjectInfo, ObjectStorage, StoreResult};
use sluice_server::protocol::client_codec::{decode_response, encode_request};
use sluice_server::{Agent, Config};

static ONE_AGENT_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running in-process agent; stops when dropped.
pub struct TestAgent {
    pub agent: Option<Agent>,
    /// The agent's `data_dir` (and its local store, unless the config names another).
    pub data_dir: Option<tempfile::TempDir>,
    _serialised: MutexGuard<'static, ()>,
}

impl TestAgent {
    pub fn addr(&self) -> SocketAddr {
        self.agent.as_ref().unwrap().local_addr()
    }

    /// Creates a topic through the agent's CreateTopics API.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let mut client = RawClient::connect(self.addr());
        let response: CreateTopicsResponse = client.call(
            ApiKey::CreateTopics,
            7,
            &create_topics_request(&[(name, partitions)]),
        );
        assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    }

    /// Stops the agent and keeps its data directory (for a restart on the same store).
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().unwrap();
        }
        self.data_dir.take()
    }
}

pub fn create_topics_request(topics: &[(&str, i32)]) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(topic_name(name))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(-1)
                })
                .collect(),
        )
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// One valid v2 batch of `records` small records.
pub fn batch(records: usize, base_timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(base_timestamp);
    for index in 0..records {
        builder = builder.record(index as i64, None, format!("record-{index}").as_bytes());
    }
    builder.encode()
}

/// A Produce request with one batch per (topic, partition).
pub fn produce_request(acks: i16, partitions: &[(&str, i32, Bytes)]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (topic, partition, records) in partitions {
        let data = PartitionProduceData::default()
            .with_index(*partition)
            .with_records(Some(records.clone()));
        match topics
            .iter_mut()
            .find(|entry| entry.name.as_str() == *topic)
        {
            Some(entry) => entry.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(topics)
}

/// `(error code, base offset)` per partition of a Produce response, in response order.
pub fn produce_results(response: &ProduceResponse) -> Vec<(String, i32, i16, i64)> {
    response
        .responses
        .iter()
        .flat_map(|topic| {
            topic.partition_responses.iter().map(move |partition| {
                (
                    topic.name.as_str().to_owned(),
                    partition.index,
                    partition.error_code,
                    partition.base_offset,
                )
            })
        })
        .collect()
}

/// A store wrapper that counts calls, to show how many PUTs a workload costs.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: Arc<dyn ObjectStorage>,
    pub puts: AtomicU64,
}

impl CountingStore {
    pub fn wrap(inner: Arc<dyn ObjectStorage>) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner,
            puts: AtomicU64::new(0),
        })
    }

    pub fn put_count(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ObjectStorage for CountingStore {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
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

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().unwrap();
        }
    }
}

fn test_config(data_dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        data_dir: data_dir.to_owned(),
        // Tests do not need fsync for their assertions, and it would dominate their time.
        store: Some(format!(
            "file://{}?fsync=false",
            data_dir.join("store").display()
        )),
        ..Config::default()
    }
}

/// An agent of a cluster, in process: PostgreSQL at `url`, the directory store `store_dir`
/// (shared by the cluster's agents), one core, agent id and zone `agent_id`, a 3 s lease, no
/// auto-created topics; `configure` adjusts the rest. Returned with its data directory, which must
/// live as long as it.
pub fn start_cluster_agent(
    url: &str,
    store_dir: &std::path::Path,
    agent_id: &str,
    configure: impl FnOnce(&mut Config),
) -> (Agent, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        io_memory_bytes: 64 * 1024,
        data_dir: data_dir.path().to_owned(),
        store: Some(format!("file://{}?fsync=false", store_dir.display())),
        metadata: Some(url.to_owned()),
        agent_id: Some(agent_id.to_owned()),
        zone: agent_id.to_owned(),
        lease_ms: 3_000,
        auto_create_topics: false,
        ..Config::default()
    };
    configure(&mut config);
    (Agent::start(&config).unwrap(), data_dir)
}

/// Starts an agent with one network core on CPU 0, an ephemeral port, and a fresh local store
/// in a temporary directory.
pub fn start_agent(configure: impl FnOnce(&mut Config)) -> TestAgent {
    start_agent_in(tempfile::tempdir().unwrap(), configure)
}

/// Starts an agent whose data directory (and default store) is `data_dir`.
pub fn start_agent_in(
    data_dir: tempfile::TempDir,
    configure: impl FnOnce(&mut Config),
) -> TestAgent {
    let serialised = ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut config = test_config(data_dir.path());
    std::fs::create_dir_all(data_dir.path().join("store")).unwrap();
    configure(&mut config);
    let agent = Agent::start(&config).unwrap();
    TestAgent {
        agent: Some(agent),
        data_dir: Some(data_dir),
        _serialised: serialised,
    }
}

/// Starts an agent on a store built by the test (for wrappers such as [`CountingStore`]).
pub fn start_agent_with_store(
    store: Arc<dyn ObjectStorage>,
    configure: impl FnOnce(&mut Config),
) -> TestAgent {
    let serialised = ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    configure(&mut config);
    let agent = Agent::start_with_store(&config, store).unwrap();
    TestAgent {
        agent: Some(agent),
        data_dir: Some(data_dir),
        _serialised: serialised,
    }
}

/// A blocking client connection speaking raw Kafka frames.
pub struct RawClient {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

/// What came back for a request.
#[derive(Debug)]
pub enum Reply {
    Frame(Bytes),
    Closed,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client over a stream the test connected itself (from a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            stream,
            next_correlation_id: 1,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame (size prefix included), or reports that the agent closed.
    pub fn read_reply(&mut self) -> Reply {
        let mut prefix = [0_u8; 4];
        match self.stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return Reply::Closed;
            }
            Err(error) => panic!("reading a reply: {error}"),
        }
        let size = i32::from_be_bytes(prefix) as usize;
        let mut frame = vec![0_u8; 4 + size];
        frame[..4].copy_from_slice(&prefix);
        self.stream.read_exact(&mut frame[4..]).unwrap();
        Reply::Frame(Bytes::from(frame))
    }

    /// Sends a request; returns the correlation id used.
    pub fn send<R: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &R) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode_request(
            api_key,
            version,
            correlation_id,
            Some("raw-test-client"),
            body,
        )
        .unwrap();
        self.send_raw(&frame);
        correlation_id
    }

    /// Sends a request and decodes its response, checking the correlation id.
    pub fn call<R: Encodable, P: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &R,
    ) -> P {
        let correlation_id = self.send(api_key, version, body);
        self.receive(api_key, version, correlation_id)
    }

    pub fn receive<P: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> P {
        let Reply::Frame(frame) = self.read_reply() else {
            panic!("agent closed the connection")
        };
        let (header, body): (ResponseHeader, P) = decode_response(frame, api_key, version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        body
    }

    /// True when the agent has closed this connection (EOF within the read timeout).
    pub fn is_closed_by_agent(&mut self) -> bool {
        matches!(self.read_reply(), Reply::Closed)
    }
}

/// The test interpreter (`$SLUICE_TEST_PYTHON`, else `python3`) if it can import `module` (pip
/// package `package`). When it cannot, `test` is skipped loudly, or fails under `CI=true`
/// (`sluice_tests::tools::skip_or_fail`): `.ci/run` installs the packages, so a real-client test
/// that does not run in CI is a broken install, not a pass.
pub fn python_with(test: &str, module: &str, package: &str) -> Option<String> {
    let python = std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let imports = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|probe| probe.status.success());
    if imports {
        return Some(python);
    }
    sluice_tests::tools::skip_or_fail(&format!(
        "{test}: `{python}` cannot import {module} (pip package {package}); run `bash \
         scripts/install-test-deps.sh`, or set SLUICE_TEST_PYTHON to an interpreter that has it"
    ));
    None
}

/// Milliseconds since the Unix epoch (record timestamps in tests).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Creates a one-partition topic with `configs`; its error code and topic id.
pub fn create_topic_with_configs(
    client: &mut RawClient,
    name: &str,
    configs: &[(&str, &str)],
) -> (i16, uuid::Uuid) {
    create_topic_with_partitions_and_configs(client, name, 1, configs)
}

/// Creates a topic of `partitions` partitions with `configs`; its error code and topic id.
pub fn create_topic_with_partitions_and_configs(
    client: &mut RawClient,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> (i16, uuid::Uuid) {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let mut request = create_topics_request(&[(name, partitions)]);
    request.topics[0].configs = configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string((*name).to_owned()))
                .with_value(Some(StrBytes::from_string((*value).to_owned())))
        })
        .collect();
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    (response.topics[0].error_code, response.topics[0].topic_id)
}

/// Housekeeping on a short clock for the tests that watch it happen, on the store at `store_url`:
/// 5 ms flush windows, retention and compaction every 100 ms, objects deleted 300 ms after
/// nothing needs them. Short enough for a test, the same code paths as the defaults.
pub fn configure_fast_housekeeping(config: &mut Config, store_url: &str) {
    config.store = Some(store_url.to_owned());
    config.flush_interval_ms = 5;
    config.log_retention_check_interval_ms = 100;
    config.log_segment_delete_delay_ms = 300;
    config.compaction_interval_ms = 100;
}

/// Calls `check` every `poll_interval` until it returns a value, and returns that; fails the
/// test, naming `what`, when `timeout` passes first. Waits for the event itself, whenever it
/// comes within the bound.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    poll_interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(poll_interval);
    }
}

/// The keys under `dir` in `store`, listed from a runtime of its own. The test server's LIST can
/// answer 500 when a key is deleted while it lists (an agent's collector is deleting): it lists
/// again, up to 20 times.
pub fn list_keys(store: &dyn ObjectStorage, dir: &str) -> std::collections::BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..20 {
        if let Ok(listed) = runtime.block_on(store.list(dir, None)) {
            return listed.into_iter().map(|info| info.key).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("listing {dir} failed 20 times")
}
