//! The agent's request path without sockets, for the `kafka_request` fuzz target.
//!
//! # Why a glommio executor, and only one
//!
//! The real dispatcher with its services (produce, fetch, groups, admin) needs glommio: produce
//! and fetch spawn local tasks, the flusher and the group timers use glommio timers, and the
//! produce budget is a glommio semaphore. So the harness runs the agent's own wiring
//! (`Agent::start_with_store`, minus listeners and CPU pinning) inside **one** unpinned glommio
//! executor: the metadata core and one network core are tasks of that executor, as they would be
//! threads of an agent. glommio registers its io memory with io_uring, which is charged to
//! RLIMIT_MEMLOCK (8 MiB on these machines); one executor with the 64 KiB minimum needs 192 KiB,
//! and it is created once per fuzzing process and reused, because glommio does not give the memory
//! back when an executor stops.
//!
//! Every input gets a fresh agent: an empty in-memory store, a freshly opened metadata log, fresh
//! groups and fetch sessions. Its frames go through the frame layer (`split_frame`) and the
//! dispatcher (`Dispatcher::handle_frame`) one at a time, as a connection would send them; then
//! the agent stops, the harness recovers the store's log and restarts an agent on it, and checks
//! what the first one answered and what it left in the store.

use std::rc::Rc;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{Either, select};
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use sluice_engine::log::{MetadataLog, recover};
use sluice_engine::metadata::MetadataState;
use sluice_engine::store::{ObjectStorage, ObjectStoreBackend};
use sluice_server::Config;
use sluice_server::fetch::{FetchConfig, FetchCore};
use sluice_server::groups::{GroupCore, GroupRouter, group_channels};
use sluice_server::metadata_core::watermarks::{
    WatermarkBroadcaster, WatermarkWaiters, run_subscription_with,
};
use sluice_server::metadata_core::{CoreHandle, core_channel, run_metadata_core};
use sluice_server::net::agent::group_config;
use sluice_server::protocol::codec::{Decoded, decode_request};
use sluice_server::protocol::frame::split_frame;
use sluice_server::protocol::services::CoreServices;
use sluice_server::protocol::{BrokerIdentity, Dispatcher, FrameOutcome};

/// Frames handled per input; the rest is ignored (a connection holds at most 64 in flight).
pub const FRAMES_PER_INPUT_MAX: usize = 64;
/// The frame size limit of the harness's agent (`request_bytes_max`).
pub const REQUEST_BYTES_MAX: u32 = 1 << 20;
/// How long one request may take before the harness gives up on it, as a client's timeout would.
/// A produce here takes one flush window (1 ms) and an in-memory PUT, about 1.5 ms; what waits
/// longer is a long-polling fetch or a group member waiting for the others, which are not errors,
/// and every such request costs this much time of the input.
pub const REQUEST_WAIT: Duration = Duration::from_millis(10);
/// Milliseconds since the epoch that the harness's metadata log is opened at.
const NOW_MS: i64 = 1_764_000_000_000;

/// What one input did, for the fuzz target's assertions.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames the dispatcher answered, closed on, or that timed out.
    pub frames: usize,
    /// Produce partitions acknowledged with no error: `(topic, partition, base_offset)`.
    pub acknowledged: Vec<(String, i32, i64)>,
    /// True when some request deleted topics (the acknowledged offsets may be gone with them).
    pub deleted_topics: bool,
    /// The state recovered from the store after the agent stopped, or why recovery failed.
    pub recovered: Option<Result<MetadataState, String>>,
    /// Why an agent restarted on the same store could not load the stored consumer groups.
    pub groups_not_loaded: Option<String>,
}

type Job = (Vec<u8>, mpsc::SyncSender<std::thread::Result<Report>>);

/// Runs `input` (a client's byte stream: size-prefixed frames) against a fresh agent on the
/// harness's executor thread. Panics of the agent are re-raised here, so libFuzzer sees them.
pub fn run(input: &[u8]) -> Report {
    static EXECUTOR: OnceLock<mpsc::SyncSender<Job>> = OnceLock::new();
    let jobs = EXECUTOR.get_or_init(start_executor);
    let (reply, result) = mpsc::sync_channel(1);
    jobs.send((input.to_vec(), reply))
        .expect("harness executor running");
    match result.recv().expect("harness executor answered") {
        Ok(report) => report,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn start_executor() -> mpsc::SyncSender<Job> {
    let (sender, jobs) = mpsc::sync_channel::<Job>(0);
    std::thread::Builder::new()
        .name("fuzz-agent".to_owned())
        .spawn(move || {
            let executor = LocalExecutorBuilder::new(Placement::Unbound)
                .name("fuzz-agent")
                .io_memory(64 * 1024)
                .make()
                .expect("a glommio executor (RLIMIT_MEMLOCK of at least 192 KiB)");
            executor.run(async move {
                // Blocking here is fine: between inputs this executor has nothing else to run.
                while let Ok((input, reply)) = jobs.recv() {
                    let outcome = std::panic::AssertUnwindSafe(run_agent(input))
                        .catch_unwind()
                        .await;
                    let _ = reply.send(outcome);
                }
            });
        })
        .expect("spawn the harness thread");
    sender
}

/// The agent's settings in the harness: the defaults, with a 1 ms flush window and no group join
/// delay so that produces and joins answer within [`REQUEST_WAIT`], and topics auto-created.
pub fn harness_config() -> Config {
    Config {
        flush_interval_ms: 1,
        group_initial_rebalance_delay_ms: 0,
        auto_create_topics: true,
        default_partitions: 3,
        ..Config::default()
    }
}

/// One agent of the harness: a metadata core and one network core on `store`, as
/// `Agent::start_with_store` wires them (keep the two in step), and its dispatcher.
struct HarnessAgent {
    dispatcher: Dispatcher<CoreHandle>,
    /// The network core's background loops, each stopped by its sender.
    background: Vec<(oneshot::Sender<()>, glommio::Task<()>)>,
    stop_metadata_core: oneshot::Sender<()>,
    metadata_core: glommio::Task<()>,
    /// Why the groups a previous agent stored could not be loaded, if they could not.
    groups_not_loaded: Option<String>,
}

impl HarnessAgent {
    async fn start(store: &Arc<dyn ObjectStorage>, config: &Config) -> HarnessAgent {
        let (log, _) = MetadataLog::open(Arc::clone(store), config.log_config(), NOW_MS)
            .await
            .unwrap_or_else(|error| panic!("the metadata log does not open: {error}"));
        let (core, inbox) = core_channel(Arc::clone(store), "fuzz");
        let mut broadcaster = WatermarkBroadcaster::default();
        let subscription = broadcaster.subscribe();
        let flush = config.flush_config();
        let (stop_metadata_core, stopped) = oneshot::channel();
        let metadata_core = glommio::spawn_local(run_metadata_core(
            log,
            inbox,
            broadcaster,
            flush,
            None,
            stopped,
        ));

        let waiters = Rc::new(WatermarkWaiters::default());
        let fetch = Rc::new(FetchCore::new(FetchConfig {
            block_cache_bytes_max: config.block_cache_bytes_max,
            fetch_sessions_max: config.fetch_sessions_max,
        }));
        let cache = Rc::clone(&fetch);
        let mut background = vec![spawn_until_stopped(run_subscription_with(
            subscription,
            Rc::clone(&waiters),
            move |object| cache.cache_object(object),
        ))];
        let (group_senders, group_inboxes) = group_channels(1);
        let groups = Rc::new(GroupCore::new(group_config(config), core.clone()).owning(0, 1));
        let groups_not_loaded = groups
            .load_stored_groups()
            .await
            .err()
            .map(|error| error.to_string());
        background.push(spawn_until_stopped(Rc::clone(&groups).run_writer()));
        for inbox in group_inboxes {
            background.push(spawn_until_stopped(
                sluice_server::groups::router::serve_inbox(Rc::clone(&groups), inbox),
            ));
        }
        background.push(spawn_until_stopped(Rc::clone(&groups).run_timer()));
        let router = Rc::new(GroupRouter::new(0, groups, group_senders));
        let services = Rc::new(
            CoreServices::new(core.clone(), waiters, config.flush_buffer_bytes_max)
                .with_fetch(fetch)
                .with_groups(router),
        );
        let broker = BrokerIdentity {
            node_id: 0,
            host: "127.0.0.1".to_owned(),
            port: 9092,
        };
        let dispatcher = Dispatcher::new(core, broker, Some(config.default_partitions))
            .with_services(services, config.default_partitions);
        HarnessAgent {
            dispatcher,
            background,
            stop_metadata_core,
            metadata_core,
            groups_not_loaded,
        }
    }

    /// Stops the network core's loops, then the metadata core (which seals its open window and
    /// waits for the entries in flight, as on shutdown).
    async fn stop(self) {
        drop(self.dispatcher);
        for (stop, task) in self.background {
            let _ = stop.send(());
            task.await;
        }
        let _ = self.stop_metadata_core.send(());
        self.metadata_core.await;
    }
}

async fn run_agent(input: Vec<u8>) -> Report {
    let config = harness_config();
    let store: Arc<dyn ObjectStorage> = Arc::new(ObjectStoreBackend::in_memory());
    let agent = HarnessAgent::start(&store, &config).await;
    let mut report = Report::default();
    let mut buffer = BytesMut::from(&input[..]);
    while report.frames < FRAMES_PER_INPUT_MAX {
        // A bad size prefix, or a stream that ends mid-frame, ends the connection.
        let Ok(Some(frame)) = split_frame(&mut buffer, REQUEST_BYTES_MAX) else {
            break;
        };
        report.frames += 1;
        let handled = agent.dispatcher.handle_frame(frame.clone());
        futures::pin_mut!(handled);
        let waited = glommio::timer::sleep(REQUEST_WAIT).boxed_local();
        let outcome = match select(handled, waited).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(_) => continue,
        };
        match outcome {
            FrameOutcome::Respond(response) => check_response(&frame, response, &mut report),
            FrameOutcome::NoResponse => {
                assert_eq!(
                    frame.get(0..2),
                    Some(&(ApiKey::Produce as i16).to_be_bytes()[..]),
                    "only a Produce with acks=0 goes unanswered"
                );
            }
            // The agent refuses the request and closes the connection: nothing after it is read.
            FrameOutcome::Close(_) => break,
        }
    }
    agent.stop().await;
    report.recovered = Some(
        recover(&*store, &config.log_config(), None)
            .await
            .map(|(state, _)| state)
            .map_err(|error| error.to_string()),
    );
    // A restart on the same bucket: the log opens (recovery, a new claim) and every group the
    // first agent stored loads.
    let restarted = HarnessAgent::start(&store, &config).await;
    report.groups_not_loaded = restarted.groups_not_loaded.clone();
    restarted.stop().await;
    report
}

/// Spawns `work` (a loop that runs as long as the agent) so that it ends when told to, instead of
/// being cancelled: glommio 0.9 does not free a cancelled task that is parked on a timer or a
/// channel (LeakSanitizer sees each one), and an input runs thousands of agents.
fn spawn_until_stopped(
    work: impl Future<Output = ()> + 'static,
) -> (oneshot::Sender<()>, glommio::Task<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = glommio::spawn_local(async move {
        futures::pin_mut!(work);
        let _ = select(work, stopped).await;
    });
    (stop, task)
}

/// Every answer must be a well-formed response frame of the request's API and version, with its
/// correlation id, that a client decodes to the end.
fn check_response(request: &Bytes, response: Bytes, report: &mut Report) {
    let (api_key, version, correlation_id) = match decode_request(request.clone()) {
        Ok(Decoded::Request(request)) => (
            request.api_key,
            request.api_version(),
            request.header.correlation_id,
        ),
        // KIP-511: an ApiVersions of an unknown version gets a version-0 answer.
        Ok(Decoded::UnsupportedApiVersions { correlation_id, .. }) => {
            (ApiKey::ApiVersions, 0, correlation_id)
        }
        Err(error) => panic!("answered a request that does not decode: {error}"),
    };
    let mut frame = response;
    assert!(frame.len() >= 4, "response shorter than its size prefix");
    let size = frame.get_i32();
    assert_eq!(
        usize::try_from(size).ok(),
        Some(frame.len()),
        "size prefix of the response"
    );
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .unwrap_or_else(|error| panic!("{api_key:?} v{version}: response header: {error}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "{api_key:?} v{version}: correlation id"
    );
    let body = ResponseKind::decode(api_key, &mut frame, version)
        .unwrap_or_else(|error| panic!("{api_key:?} v{version}: response body: {error}"));
    assert!(
        frame.is_empty(),
        "{api_key:?} v{version}: {} bytes after the response",
        frame.len()
    );
    match body {
        ResponseKind::Produce(produce) => {
            for topic in &produce.responses {
                for partition in &topic.partition_responses {
                    if partition.error_code == 0 {
                        report.acknowledged.push((
                            topic.name.to_string(),
                            partition.index,
                            partition.base_offset,
                        ));
                    }
                }
            }
        }
        ResponseKind::DeleteTopics(_) => report.deleted_topics = true,
        _ => {}
    }
}
