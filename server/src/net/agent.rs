//! Starting and stopping an agent: the executors, their CPUs and their listeners.
//!
//! [`Agent::start`] does every check that can fail before any executor runs (configuration, CPU
//! ids, locked-memory budget, binding the port) and then waits until each executor reports that
//! it was created, so a caller (the binary, or a test) either gets a running agent listening on
//! [`Agent::local_addr`] or an error that says what to fix; never a half-started agent. Each
//! executor is created inside its own thread (glommio pins the creating thread), and reports its
//! creation over a channel.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_engine::log::data_gc::DataGcConfig;
use sluice_engine::log::{LogConfig, LogError, MetadataLog, RecoveryStats};
use sluice_engine::store::{
    ObjectStorage, PageCacheReads, StoreConfig, StoreError, StoreRuntime, StoreRuntimeConfig,
    check_create_only, hedge::HedgedPuts, open_store,
};

use super::executor::{Executor, spawn_executor};
use super::network_core::{DRAIN_TIMEOUT, StopSignal, network_core};
use crate::auth::{AclBoard, Authorizer};
use crate::config::{Config, ConfigError};
use crate::fetch::owners::{
    BlockOwners, CompactedOffers, block_channels, serve_inbox as serve_block_inbox,
};
use crate::fetch::{FetchConfig, FetchCore};
use crate::groups::classic::ClassicConfig;
use crate::groups::consumer::ConsumerConfig;
use crate::groups::{GroupConfig, GroupCore, GroupRouter, group_channels};
use crate::memlock::{self, MemlockError, MemlockLimit};
use crate::metadata_core::cluster_gc::ClusterHousekeeping;
use crate::metadata_core::cluster_view::{ListenerAddress, node_id_of};
use crate::metadata_core::housekeeping::{
    CacheFeed, HOUSEKEEPING_SHARES, HousekeepingConfig, run_housekeeping,
};
use crate::metadata_core::watermarks::{
    WatermarkBroadcaster, WatermarkWaiters, run_subscription_with,
};
use crate::metadata_core::{core_channel, run_metadata_core, run_metadata_core_of};
use crate::metrics::http::MetricsServer;
use crate::metrics::{
    CoreSlot, HEARTBEAT_INTERVAL, INDEX_ENTRIES_REFRESH_INTERVAL, MeteredStore, Metrics, Phase,
};
use crate::protocol::services::CoreServices;
use crate::protocol::{BrokerIdentity, Dispatcher};
use crate::quota::{QuotaBoard, QuotaEnforcer};
use futures::FutureExt;

/// Node id this agent reports for itself (a single agent per cluster for now).
pub const NODE_ID: i32 = 0;
/// Cluster id reported to clients. One bucket is one cluster; until the cluster id is stored in
/// the bucket itself it is this constant.
pub const CLUSTER_ID: &str = "sluice";
/// How long startup waits for the metadata log to be recovered and claimed.
pub const LOG_OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts of the create-only probe at start when the store answers with a transient error
/// (each with a fresh key: a failed write's outcome is unknown).
const CREATE_ONLY_PROBE_ATTEMPTS_MAX: u32 = 8;
/// Pause after the first failed attempt, doubled after each (100, 200, ... ms, capped at 2 s).
const CREATE_ONLY_PROBE_BACKOFF_MS: u64 = 100;
const CREATE_ONLY_PROBE_BACKOFF_MS_MAX: u64 = 2_000;
/// Tries of the metadata log's open (recovery and claim) when the store fails transiently, and the
/// pause before the second try (doubled before each further one): about 6 s in all, well inside
/// [`LOG_OPEN_TIMEOUT`].
const LOG_OPEN_ATTEMPTS_MAX: u32 = 6;
const LOG_OPEN_BACKOFF_FIRST: Duration = Duration::from_millis(200);

/// Why an agent could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cpu {cpu} (in `{key}`) is not online; online CPUs: {online:?}")]
    CpuNotOnline {
        key: &'static str,
        cpu: usize,
        online: Vec<usize>,
    },
    #[error("cannot read the online CPUs: {message}")]
    CpuTopology { message: String },
    #[error("cannot read RLIMIT_MEMLOCK: {0}")]
    MemlockUnreadable(std::io::Error),
    #[error(transparent)]
    Memlock(#[from] MemlockError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error(transparent)]
    SaslUsers(#[from] super::sasl::UsersError),
    #[error(transparent)]
    Jwks(#[from] super::sasl::oauthbearer::JwksError),
    #[error("cannot start executor {name}: {message}")]
    Executor { name: String, message: String },
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("executor {name} panicked")]
    ExecutorPanicked { name: String },
    #[error("object store: {0}")]
    Store(#[from] sluice_engine::store::StoreError),
    #[error("create-only check of the object store failed: {0}")]
    CreateOnly(StoreError),
    #[error("cannot open the metadata log: {message}")]
    MetadataLog { message: String },
}

/// Where each executor runs, resolved against the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    pub network_cpus: Vec<usize>,
    pub metadata_cpu: usize,
}

/// Resolves `cpus`/`metadata_cpu` against the online CPUs.
pub fn plan_cpus(config: &Config, online: &[usize]) -> Result<CpuPlan, AgentError> {
    let network_cpus = config.cpus.clone().unwrap_or_else(|| online.to_vec());
    for &cpu in &network_cpus {
        if !online.contains(&cpu) {
            return Err(AgentError::CpuNotOnline {
                key: "cpus",
                cpu,
                online: online.to_vec(),
            });
        }
    }
    let Some(&first) = network_cpus.first() else {
        return Err(ConfigError::Invalid {
            key: "cpus",
            reason: "no CPU to run on".to_owned(),
        }
        .into());
    };
    let metadata_cpu = config.metadata_cpu.unwrap_or(first);
    if !online.contains(&metadata_cpu) {
        return Err(AgentError::CpuNotOnline {
            key: "metadata_cpu",
            cpu: metadata_cpu,
            online: online.to_vec(),
        });
    }
    Ok(CpuPlan {
        network_cpus,
        metadata_cpu,
    })
}

/// The machine's online CPUs, ascending: where the network cores go when `cpus` is not set.
pub fn online_cpus() -> Result<Vec<usize>, AgentError> {
    let cpus = glommio::CpuSet::online().map_err(|error| AgentError::CpuTopology {
        message: error.to_string(),
    })?;
    let mut ids: Vec<usize> = cpus.into_iter().map(|location| location.cpu).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Refuses a store that does not honour create-only writes, before the metadata log writes
/// anything (`sluice_engine::store::check_create_only`): its fence against a second writer
/// would be no fence. Transient errors are retried a few times, each with a fresh probe key.
fn probe_create_only(store: &dyn ObjectStorage) -> Result<(), AgentError> {
    let mut backoff_ms = CREATE_ONLY_PROBE_BACKOFF_MS;
    let mut attempt = 1;
    loop {
        let probe_id = uuid::Uuid::new_v4().simple().to_string();
        // The store runs on its own runtime and answers on a channel any executor can await.
        match futures::executor::block_on(check_create_only(store, &probe_id)) {
            Ok(()) => return Ok(()),
            Err(error) if error.is_transient() && attempt < CREATE_ONLY_PROBE_ATTEMPTS_MAX => {
                tracing::warn!(%error, attempt, "create-only probe of the object store; retrying");
                std::thread::sleep(Duration::from_millis(backoff_ms));
                backoff_ms = (backoff_ms * 2).min(CREATE_ONLY_PROBE_BACKOFF_MS_MAX);
                attempt += 1;
            }
            Err(error) => return Err(AgentError::CreateOnly(error)),
        }
    }
}

/// A running agent. Dropping it stops it (and waits for its executors).
#[derive(Debug)]
pub struct Agent {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    /// Every Kafka listener's name and bound address, in configuration order.
    listener_addrs: Vec<(String, SocketAddr)>,
    plan: CpuPlan,
    executors: Vec<Executor>,
    metrics: Arc<Metrics>,
    /// Dropped after the executors (declared after them): `/readyz` says "stopping" meanwhile.
    metrics_server: Option<MetricsServer>,
    /// Scheduled allocator trims (`allocator_trim_interval_ms`).
    trimmer: Option<crate::memory::Trimmer>,
}

impl Agent {
    /// Opens the configured object store (`store`, or a local directory `data_dir/store`) and
    /// starts the agent on it.
    pub fn start(config: &Config) -> Result<Self, AgentError> {
        config.validate()?;
        let store_config = match &config.store {
            Some(url) => StoreConfig::from_url(url)?,
            None => StoreConfig::Local {
                path: config.data_dir.join("store"),
                fsync: true,
            },
        };
        if let StoreConfig::Local { path, .. } = &store_config {
            std::fs::create_dir_all(path).map_err(|error| AgentError::MetadataLog {
                message: format!(
                    "cannot create the local store directory {}: {error}",
                    path.display()
                ),
            })?;
        }
        let store = open_store(&store_config)?;
        // Background work gets a client of its own (its own connection pool, driven by its own
        // low-priority runtime); an in-memory store cannot be opened twice, so it shares.
        let background = match store_config {
            StoreConfig::Memory => Arc::clone(&store),
            _ => open_store(&store_config)?,
        };
        // A local directory: reads of what the page cache holds need no store thread.
        let page_cache_root = match store_config {
            StoreConfig::Local { path, .. } => Some(path),
            _ => None,
        };
        Self::start_with_stores(config, store, background, page_cache_root)
    }

    /// Starts the metadata executor (which recovers and claims the metadata log in `store`) and
    /// the network executors; returns once the log is open and every core listens. `store` must
    /// not have been called yet (it is moved onto the agent's store runtime). The default PUT
    /// budget follows `config.store` ([`Config::flush_puts_per_second_max`]), not `store`: name
    /// an object store's bucket in `config.store` too, or its budget is a local directory's.
    pub fn start_with_store(
        config: &Config,
        store: Arc<dyn ObjectStorage>,
    ) -> Result<Self, AgentError> {
        let background = Arc::clone(&store);
        Self::start_with_stores(config, store, background, None)
    }

    /// [`Agent::start_with_store`], with `background` (the same bucket) for compaction and
    /// garbage collection: it runs on a store runtime of its own whose thread yields to the hot
    /// path's (nice 10), so that a compaction job's burst of GETs and its large PUT are not
    /// queued with the flush windows' PUTs on one thread. `page_cache_root` is the directory of a
    /// local store: its ranged reads are then tried from the page cache on the calling core first
    /// ([`PageCacheReads`]).
    fn start_with_stores(
        config: &Config,
        store: Arc<dyn ObjectStorage>,
        background: Arc<dyn ObjectStorage>,
        page_cache_root: Option<std::path::PathBuf>,
    ) -> Result<Self, AgentError> {
        config.validate()?;
        let plan = plan_cpus(config, &online_cpus()?)?;
        let executor_count = plan.network_cpus.len() as u64 + 1;
        let limit = memlock::current_limit().map_err(AgentError::MemlockUnreadable)?;
        memlock::check(limit, executor_count, config.io_memory_bytes)?;

        let (listeners, local_addr, broker) = bind_listeners(config, plan.network_cpus.len())?;
        let advertised: Vec<ListenerAddress> = listeners
            .iter()
            .map(|bound| ListenerAddress {
                name: bound.name.clone(),
                host: bound.identity.host.clone(),
                port: bound.identity.port,
            })
            .collect();
        // SASL (SASL_PLAINTEXT / SASL_SSL): the users file is read (and its SCRAM credentials
        // derived) once; every core and listener share the settings and the failed-login table.
        // SCRAM credentials of the metadata log: one board for the agent, read by every login and
        // refreshed by the AlterUserScramCredentials handler (`sasl::credentials`).
        let scram_board = Arc::new(super::sasl::ScramBoard::new());
        let sasl = match config.sasl_mechanisms()? {
            Some(mechanisms) => {
                // config.sasl_mechanisms() asks for a users file when PLAIN or SCRAM is offered.
                let users = match &config.sasl_users_file {
                    Some(path) => super::sasl::Users::load(path)?,
                    None => {
                        super::sasl::Users::none().map_err(|reason| super::sasl::UsersError {
                            path: "(none)".to_owned(),
                            reason,
                        })?
                    }
                };
                let oauth_settings = super::sasl::oauthbearer::OAuthSettings {
                    expected_issuer: config.sasl_oauthbearer_expected_issuer.clone(),
                    expected_audience: config.sasl_oauthbearer_expected_audience.clone(),
                    sub_claim_name: config.sasl_oauthbearer_sub_claim_name.clone(),
                    clock_skew_seconds: config.sasl_oauthbearer_clock_skew_seconds,
                };
                // config.sasl_mechanisms() allows at most one of the file and the endpoint.
                let oauth = match (
                    &config.sasl_oauthbearer_jwks_file,
                    &config.sasl_oauthbearer_jwks_endpoint_url,
                ) {
                    (Some(path), _) => {
                        let validator =
                            super::sasl::oauthbearer::TokenValidator::load(path, oauth_settings)?;
                        tracing::info!(
                            keys = validator.key_count(),
                            jwks = %path.display(),
                            "OAUTHBEARER tokens are checked against the JWKS file"
                        );
                        Some(validator)
                    }
                    (None, Some(url)) => {
                        // The first fetch happens here: a failure stops the start.
                        let board = super::sasl::jwks_endpoint::start(
                            url,
                            &super::sasl::jwks_endpoint::EndpointOptions {
                                refresh: Duration::from_millis(
                                    config.sasl_oauthbearer_jwks_endpoint_refresh_ms,
                                ),
                                backoff_min: Duration::from_millis(
                                    config.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms,
                                ),
                                backoff_max: Duration::from_millis(
                                    config.sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms,
                                ),
                                ca_file: config.sasl_oauthbearer_jwks_endpoint_ca_file.as_deref(),
                            },
                        )?;
                        let validator = super::sasl::oauthbearer::TokenValidator::from_board(
                            board,
                            oauth_settings,
                        );
                        tracing::info!(
                            keys = validator.key_count(),
                            jwks = %url,
                            refresh_ms = config.sasl_oauthbearer_jwks_endpoint_refresh_ms,
                            "OAUTHBEARER tokens are checked against the JWKS endpoint"
                        );
                        Some(validator)
                    }
                    (None, None) => None,
                };
                tracing::info!(
                    users = users.len(),
                    mechanisms = ?mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>(),
                    listeners = ?listeners
                        .iter()
                        .filter(|bound| bound.sasl)
                        .map(|bound| bound.name.as_str())
                        .collect::<Vec<_>>(),
                    "SASL authentication required"
                );
                let failed_logins = super::sasl::FailedLogins::new(
                    config.sasl_failed_logins_max,
                    Duration::from_millis(config.sasl_failed_logins_window_ms),
                    Duration::from_millis(config.sasl_lockout_ms),
                    super::sasl::limiter::ADDRESSES_MAX,
                );
                let settings = super::sasl::SaslSettings::new(mechanisms, users, failed_logins)
                    .with_scram_credentials(Arc::clone(&scram_board))
                    .with_session_lifetime_max(
                        (config.connections_max_reauth_ms > 0)
                            .then(|| Duration::from_millis(config.connections_max_reauth_ms)),
                    );
                Some(Arc::new(match oauth {
                    Some(validator) => settings.with_oauth(validator),
                    None => settings,
                }))
            }
            None => None,
        };
        // Every core gets a socket of every listener, with what serving it needs.
        let listener_addrs: Vec<(String, SocketAddr)> = listeners
            .iter()
            .map(|bound| (bound.name.clone(), bound.address))
            .collect();
        let tls_addr = listeners
            .iter()
            .find(|bound| bound.acceptor.is_some())
            .map(|bound| bound.address);
        let mut core_listeners: Vec<Vec<CoreListener>> = (0..plan.network_cpus.len())
            .map(|_| Vec::with_capacity(listeners.len()))
            .collect();
        for bound in listeners {
            let listener_sasl = match (&sasl, &bound.sasl_mechanisms) {
                (Some(settings), Some(mechanisms)) if bound.sasl => {
                    Some(Arc::new(settings.with_mechanisms(mechanisms.clone())))
                }
                _ => sasl.clone().filter(|_| bound.sasl),
            };
            for (sockets, socket) in core_listeners.iter_mut().zip(bound.sockets) {
                sockets.push(CoreListener {
                    name: bound.name.clone(),
                    socket,
                    identity: bound.identity.clone(),
                    acceptor: bound.acceptor.clone(),
                    sasl: listener_sasl.clone(),
                });
            }
        }
        let auto_create_partitions = config
            .auto_create_topics
            .then_some(config.default_partitions);
        // validate() bounds request_bytes_max to i32::MAX.
        let request_bytes_max = u32::try_from(config.request_bytes_max).unwrap_or(i32::MAX as u32);

        // The metrics endpoint first: while the log recovers, `/readyz` says so.
        let metrics = Arc::new(Metrics::new(&plan.network_cpus));
        let metrics_server = match config.metrics_address()? {
            Some(address) => Some(
                MetricsServer::start(address, Arc::clone(&metrics))
                    .map_err(|source| AgentError::Bind { address, source })?,
            ),
            None => None,
        };
        let mut agent = Self {
            local_addr,
            tls_addr,
            listener_addrs,
            plan: plan.clone(),
            executors: Vec::new(),
            metrics: Arc::clone(&metrics),
            metrics_server,
            trimmer: None,
        };
        let io_memory_bytes = usize::try_from(config.io_memory_bytes).unwrap_or(usize::MAX);
        let memlock_error = |limit_bytes: u64| MemlockError {
            limit: MemlockLimit::Bytes(limit_bytes),
            executors: executor_count,
            io_memory_bytes: config.io_memory_bytes,
            needed_bytes: memlock::needed_bytes(executor_count, config.io_memory_bytes),
        };

        // Hedging runs under the bridge: its copies and timers live on the store's tokio runtime.
        // Metered below hedging: each copy of a hedged PUT is a PUT of its own on the bill.
        let store: Arc<dyn ObjectStorage> =
            Arc::new(MeteredStore::new(store, Arc::clone(&metrics), false));
        let background: Arc<dyn ObjectStorage> =
            Arc::new(MeteredStore::new(background, Arc::clone(&metrics), true));
        let store: Arc<dyn ObjectStorage> =
            Arc::new(HedgedPuts::new(store, config.hedge_config())?);
        let store = StoreRuntime::start(store, StoreRuntimeConfig::default())?;
        // Above the runtime, so that a read the page cache holds takes no thread hand-off; such
        // a read is still a GET of the store in the metrics.
        let store: Arc<dyn ObjectStorage> = match page_cache_root {
            Some(root) => {
                let metered = Arc::clone(&metrics);
                Arc::new(PageCacheReads::new(root, store).with_hook(Arc::new(
                    move |started, bytes| {
                        metered.store.record_inline_get(started, bytes);
                    },
                )))
            }
            None => store,
        };
        let background = StoreRuntime::start(
            background,
            StoreRuntimeConfig {
                worker_threads: 1,
                inflight_requests_max: BACKGROUND_STORE_REQUESTS_MAX,
                thread_name: "sluice-store-bg",
                thread_nice: crate::metadata_core::off_core::BACKGROUND_NICE,
            },
        )?;
        probe_create_only(&*background)?;
        // A cluster (`--metadata`): connect to the sequencer before anything listens.
        let cluster = match &config.metadata {
            Some(url) => Some(super::cluster::connect(config, url, &broker, &advertised)?),
            None => None,
        };
        let cluster_id = cluster
            .as_ref()
            .map_or_else(|| CLUSTER_ID.to_owned(), |cluster| cluster.cluster_id());
        let cluster_board = cluster.as_ref().map(|cluster| cluster.board());
        let (core, inbox) = core_channel(Arc::clone(&store), &cluster_id);
        let core = core.with_background_store(background);
        scram_board.attach(core.clone());
        let mut broadcaster = WatermarkBroadcaster::default();
        let subscriptions: Vec<_> = plan
            .network_cpus
            .iter()
            .map(|_| broadcaster.subscribe())
            .collect();
        // Every core's block inbox: each block is read and cached by its owner core (and the
        // compactor offers what it wrote to the owners).
        let (block_senders, block_inboxes) = block_channels(plan.network_cpus.len());
        let offers = CompactedOffers::new(block_senders.clone(), Arc::clone(&metrics));
        let flush = config.flush_config();
        let housekeeping = config.housekeeping_config();
        let log_config = config.log_config();
        let housekeeping_core = core.clone();
        let core_metrics = Arc::clone(&metrics);
        let (opened_sender, opened) = std::sync::mpsc::sync_channel::<Result<String, String>>(1);
        let metadata_name = format!("sluice-metadata-{}", plan.metadata_cpu);
        agent.executors.push(spawn_executor(
            &metadata_name,
            plan.metadata_cpu,
            io_memory_bytes,
            &memlock_error,
            limit,
            move |stop| async move {
                if let Some(cluster) = cluster {
                    match cluster.open(store, log_config).await {
                        Ok((log, recovery, membership)) => {
                            let _ = opened_sender.send(Ok(format!("cluster log {recovery:?}")));
                            // Compaction runs on every agent, over the partitions it owns,
                            // naming its objects by its incarnation's token (docs/cluster.md).
                            let cluster_housekeeping = ClusterHousekeeping {
                                sequencer: log.sequencer().clone(),
                                board: Arc::clone(&membership.0.board),
                                lease_ms: membership.0.lease_ms,
                            };
                            let data_gc = DataGcConfig::for_cluster(
                                membership.0.lease_ms,
                                log.sequencer().operation_timeout_ms(),
                            );
                            spawn_housekeeping(
                                housekeeping_core,
                                housekeeping,
                                Some((cluster_housekeeping, data_gc)),
                                offers,
                                Arc::clone(&core_metrics),
                            );
                            run_metadata_core_of(
                                log.into(),
                                Some(membership),
                                inbox,
                                broadcaster,
                                flush,
                                Some(core_metrics),
                                stop,
                            )
                            .await;
                        }
                        Err(message) => {
                            let _ = opened_sender.send(Err(message));
                        }
                    }
                    return;
                }
                match open_metadata_log(store, log_config).await {
                    Ok((log, stats)) => {
                        let _ = opened_sender.send(Ok(format!("{stats:?} epoch {}", log.epoch())));
                        spawn_housekeeping(
                            housekeeping_core,
                            housekeeping,
                            None,
                            offers,
                            Arc::clone(&core_metrics),
                        );
                        run_metadata_core(log, inbox, broadcaster, flush, Some(core_metrics), stop)
                            .await;
                    }
                    Err(error) => {
                        let _ = opened_sender.send(Err(error.to_string()));
                    }
                }
            },
        )?);
        // On error `agent` is dropped, which stops the executors already running.
        match opened.recv_timeout(LOG_OPEN_TIMEOUT) {
            Ok(Ok(stats)) => tracing::info!(%stats, "metadata log open"),
            Ok(Err(message)) => return Err(AgentError::MetadataLog { message }),
            Err(_) => {
                return Err(AgentError::MetadataLog {
                    message: format!(
                        "not open after {LOG_OPEN_TIMEOUT:?} (is the store reachable?)"
                    ),
                });
            }
        }

        let flush_buffer_bytes_max = config.flush_buffer_bytes_max;
        let fetch_config = FetchConfig {
            block_cache_bytes_max: config.block_cache_bytes_max,
            fetch_sessions_max: config.fetch_sessions_max,
        };
        let default_partitions = config.default_partitions;
        let group_config = group_config(config);
        // ACL checks: one snapshot board for the agent, one authorizer per core (`crate::auth`).
        let authorizer_policy = config.authorizer_policy()?;
        if let Some(policy) = &authorizer_policy {
            tracing::info!(
                super_users = ?policy.super_users,
                allow_everyone_if_no_acl_found = policy.allow_everyone_if_no_acl_found,
                "ACL authorizer on"
            );
        }
        let acl_board = Arc::new(AclBoard::new());
        // Client quotas: one snapshot board for the agent, one enforcer per core (`crate::quota`).
        let quota_board = Arc::new(QuotaBoard::new());
        let quota_window = config.quota_window();
        // Every core needs every core's group inbox before any of them runs.
        let (group_senders, group_inboxes) = group_channels(plan.network_cpus.len());
        // Network cores whose connections have not all drained yet (see `wait_for_every_drain`).
        let draining = Arc::new(AtomicUsize::new(plan.network_cpus.len()));
        for (index, ((((cpu, core_listeners), subscription), group_inbox), block_inbox)) in plan
            .network_cpus
            .iter()
            .copied()
            .zip(core_listeners)
            .zip(subscriptions)
            .zip(group_inboxes)
            .zip(block_inboxes)
            .enumerate()
        {
            let core = core.clone();
            let cluster_board = cluster_board.clone();
            let group_config = group_config.clone();
            let group_senders = group_senders.clone();
            let block_owners = BlockOwners::new(index, block_senders.clone());
            let authorizer_policy = authorizer_policy.clone();
            let acl_board = Arc::clone(&acl_board);
            let quota_board = Arc::clone(&quota_board);
            let scram_board = Arc::clone(&scram_board);
            let quota_metrics = Arc::clone(&metrics);
            let draining = Arc::clone(&draining);
            let name = format!("sluice-net-{cpu}");
            let slot = CoreSlot::new(Arc::clone(&metrics), index);
            let executor = spawn_executor(
                &name,
                cpu,
                io_memory_bytes,
                &memlock_error,
                limit,
                move |stop| async move {
                    // Inside the executor: glommio tasks and semaphores belong to this core.
                    let waiters = Rc::new(WatermarkWaiters::default());
                    let fetch = Rc::new(FetchCore::new(fetch_config).with_owners(block_owners));
                    glommio::spawn_local(serve_block_inbox(Rc::clone(&fetch), block_inbox))
                        .detach();
                    glommio::spawn_local(heartbeat(slot.clone(), Rc::clone(&fetch))).detach();
                    // Each commit's bytes enter this core's cache before its fetches wake.
                    let cache = Rc::clone(&fetch);
                    glommio::spawn_local(run_subscription_with(
                        subscription,
                        Rc::clone(&waiters),
                        move |object| cache.cache_object(object),
                    ))
                    .detach();
                    // This core's groups: requests forwarded by other cores, and the timers.
                    let cores = group_senders.len();
                    let groups =
                        Rc::new(GroupCore::new(group_config, core.clone()).owning(index, cores));
                    // Before any group request is served, here or forwarded: the groups a
                    // previous run stored come back with their generations and epochs.
                    if let Err(error) = groups.load_stored_groups().await {
                        tracing::error!(%error, core = index, "consumer groups not resumed");
                    }
                    glommio::spawn_local(Rc::clone(&groups).run_writer()).detach();
                    glommio::spawn_local(crate::groups::router::serve_inbox(
                        Rc::clone(&groups),
                        group_inbox,
                    ))
                    .detach();
                    glommio::spawn_local(Rc::clone(&groups).run_timer()).detach();
                    // In a cluster, groups change hands as agents come and go.
                    if let Some(board) = &cluster_board {
                        glommio::spawn_local(
                            Rc::clone(&groups).follow_ownership(Arc::clone(board)),
                        )
                        .detach();
                    }
                    let router = Rc::new(GroupRouter::new(index, groups, group_senders));
                    let services = Rc::new(
                        CoreServices::new(core.clone(), waiters, flush_buffer_bytes_max)
                            .with_fetch(fetch)
                            .with_groups(router),
                    );
                    let stop: StopSignal = stop.map(|_| ()).boxed_local().shared();
                    let authorizer = authorizer_policy
                        .map(|policy| Rc::new(Authorizer::new(policy, acl_board, core.clone())));
                    let quotas = Rc::new(QuotaEnforcer::new(
                        quota_window,
                        quota_board,
                        core.clone(),
                        quota_metrics,
                    ));
                    // The stored quotas, read before the first connection is accepted: a
                    // Produce's bytes are measured as its frame is read, from this snapshot.
                    let _ = quotas.quotas().await;
                    let with_authorizer = |dispatcher: Dispatcher<_>| {
                        let dispatcher = dispatcher
                            .with_quotas(Rc::clone(&quotas))
                            .with_scram_credentials(Arc::clone(&scram_board));
                        match &authorizer {
                            Some(authorizer) => dispatcher.with_authorizer(Rc::clone(authorizer)),
                            None => dispatcher,
                        }
                    };
                    let serving: Vec<_> = core_listeners
                        .into_iter()
                        .map(|listener| {
                            let dispatcher = with_authorizer(
                                Dispatcher::new(
                                    core.clone(),
                                    listener.identity,
                                    auto_create_partitions,
                                )
                                .with_services(Rc::clone(&services), default_partitions)
                                .with_cluster(cluster_board.clone())
                                .with_listener(&listener.name),
                            );
                            network_core(
                                listener.socket,
                                dispatcher,
                                request_bytes_max,
                                slot.clone(),
                                listener.acceptor,
                                listener.sasl,
                                stop.clone(),
                            )
                        })
                        .collect();
                    futures::future::join_all(serving).await;
                    wait_for_every_drain(&draining).await;
                },
            );
            agent.executors.push(executor?);
        }
        tracing::info!(%local_addr, listeners = ?agent.listener_addrs, metrics_addr = ?agent.metrics_addr(), network_cpus = ?plan.network_cpus, metadata_cpu = plan.metadata_cpu, "agent listening");
        agent.trimmer = crate::memory::Trimmer::start(
            Duration::from_millis(config.allocator_trim_interval_ms),
            Arc::clone(&metrics),
        )
        .map_err(|source| AgentError::Thread {
            name: "sluice-trim",
            source,
        })?;
        metrics.set_phase(Phase::Serving);
        Ok(agent)
    }

    /// The address every network core listens on (port 0 in the config resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The first TLS listener's address (`tls_listen`, or the first SSL or SASL_SSL listener of
    /// `listeners`), port 0 resolved.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Every Kafka listener's name and bound address (port 0 resolved), in configuration order.
    pub fn listener_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listener_addrs
    }

    /// The bound address of the listener named `name` (upper case, as in `listeners`; `PLAINTEXT`,
    /// `SSL`, ... for the `listen` and `tls_listen` shorthands).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs
            .iter()
            .find(|(listener, _)| listener.eq_ignore_ascii_case(name))
            .map(|(_, address)| *address)
    }

    /// The agent's metrics (what its endpoint exports).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics endpoint's address, when `metrics_listen` is set (port 0 resolved).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// Which CPUs the executors run on.
    pub fn cpu_plan(&self) -> &CpuPlan {
        &self.plan
    }

    /// Stops accepting, closes connections, and waits for every executor to exit.
    pub fn shutdown(mut self) -> Result<(), AgentError> {
        self.stop_all()
    }

    /// Network cores first (they were started after the metadata core): they drain — answer
    /// the requests they have read, produces included, which need the metadata core to seal and
    /// commit their windows — and only once every one has exited is the metadata core stopped.
    fn stop_all(&mut self) -> Result<(), AgentError> {
        self.metrics.set_phase(Phase::Stopping);
        // No more trims while the cores drain (dropping the trimmer waits for one in progress).
        drop(self.trimmer.take());
        let (metadata, network) = match self.executors.split_first_mut() {
            Some((metadata, network)) => (Some(metadata), network),
            None => (None, &mut [][..]),
        };
        for executor in network.iter_mut() {
            if let Some(stop) = executor.stop.take() {
                // An executor that already exited dropped its receiver; nothing left to stop.
                let _ = stop.send(());
            }
        }
        let mut result = network
            .iter_mut()
            .map(Executor::join)
            .fold(Ok(()), Result::and);
        if let Some(metadata) = metadata {
            if let Some(stop) = metadata.stop.take() {
                let _ = stop.send(());
            }
            result = result.and(metadata.join());
        }
        result
    }
}

/// How often a drained network core looks whether the others have drained too.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How long a drained network core waits for the others beyond [`DRAIN_TIMEOUT`] (which bounds
/// every core's drain from the stop, and all cores get the stop together).
const DRAIN_WAIT_SLACK: Duration = Duration::from_secs(1);

/// Keeps a network core's executor running, once its own connections have drained, until every
/// other network core's have too (`draining` counts the cores still draining; this one is
/// counted off here), at most [`DRAIN_TIMEOUT`] + [`DRAIN_WAIT_SLACK`]. Another core's
/// connections may still be waiting on this core: a group request goes to the core that owns
/// its group (`groups::router`), a block read to the core that owns its block
/// (`fetch::owners`), and the tasks that serve them run on this executor. glommio drops no task
/// when its executor ends, so had this one ended, their answers would never come and those
/// connections would wait out the drain timeout (an OffsetCommit in flight at a graceful stop
/// stayed unanswered for 10 s that way).
async fn wait_for_every_drain(draining: &AtomicUsize) {
    draining.fetch_sub(1, Ordering::AcqRel);
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT + DRAIN_WAIT_SLACK;
    while draining.load(Ordering::Acquire) > 0 {
        if std::time::Instant::now() >= deadline {
            tracing::warn!("stopping while another network core is still draining");
            return;
        }
        glommio::timer::sleep(DRAIN_POLL).await;
    }
}

/// One listener, bound on every network core.
struct BoundListener {
    name: String,
    /// One socket per network core, all on `address`.
    sockets: Vec<std::net::TcpListener>,
    address: SocketAddr,
    /// This agent as clients of this listener are told of it.
    identity: BrokerIdentity,
    acceptor: Option<Arc<super::tls::Acceptor>>,
    sasl: bool,
    /// The listener's own SASL mechanisms (`None`: the agent-wide ones).
    sasl_mechanisms: Option<Vec<super::sasl::Mechanism>>,
}

/// What one network core serves one listener with.
struct CoreListener {
    name: String,
    socket: std::net::TcpListener,
    identity: BrokerIdentity,
    acceptor: Option<Arc<super::tls::Acceptor>>,
    sasl: Option<Arc<super::sasl::SaslSettings>>,
}

/// Binds every listener of `config` on `cores` sockets each (`SO_REUSEPORT`), loads the TLS
/// listeners' certificates, and says how each listener presents this agent: its advertised address
/// (port 0: the port bound). Returns them, the first listener's bound address, and the first
/// listener's identity (the agent's default id in a cluster is that address).
fn bind_listeners(
    config: &Config,
    cores: usize,
) -> Result<(Vec<BoundListener>, SocketAddr, BrokerIdentity), AgentError> {
    let mut bound = Vec::new();
    for listener in config.listeners_resolved()? {
        let address = listener.address;
        let (sockets, local) = super::listener::bind_reuseport(address, cores)
            .map_err(|source| AgentError::Bind { address, source })?;
        let (host, port) = listener.advertised.clone();
        let acceptor = match listener.tls_files(config) {
            Some(files) => Some(super::tls::acceptor(&files)?),
            // validate() refuses a TLS listener without certificate files; never serve one in
            // plaintext should that check ever be bypassed.
            None if listener.protocol.tls() => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert_file",
                    reason: format!(
                        "listener {} speaks TLS but has no certificate",
                        listener.name
                    ),
                }
                .into());
            }
            None => None,
        };
        bound.push(BoundListener {
            name: listener.name.clone(),
            sockets,
            address: local,
            identity: BrokerIdentity {
                node_id: NODE_ID,
                host,
                port: if port == 0 { local.port() } else { port },
            },
            acceptor,
            sasl: listener.protocol.sasl(),
            sasl_mechanisms: listener.sasl_mechanisms.clone(),
        });
    }
    let Some(first) = bound.first() else {
        return Err(ConfigError::Invalid {
            key: "listeners",
            reason: "no listener".to_owned(),
        }
        .into());
    };
    let (local_addr, mut broker) = (first.address, first.identity.clone());
    // In a cluster an agent is known by a node id derived from its agent id, the same on every
    // agent (`metadata_core::cluster_view`), whichever listener a client came in on.
    if config.metadata.is_some() {
        broker.node_id = node_id_of(&super::cluster::agent_id(config, &broker));
        for listener in &mut bound {
            listener.identity.node_id = broker.node_id;
        }
    }
    Ok((bound, local_addr, broker))
}

/// The consumer-group settings of `config`.
pub fn group_config(config: &Config) -> GroupConfig {
    GroupConfig {
        classic: ClassicConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            max_size: Some(usize::try_from(config.group_max_size).unwrap_or(usize::MAX)),
        },
        consumer: ConsumerConfig {
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            assignors: config.group_consumer_assignors.clone(),
            max_size: Some(usize::try_from(config.group_consumer_max_size).unwrap_or(usize::MAX)),
        },
        offset_metadata_bytes_max: config.offset_metadata_bytes_max,
        cleanup_interval_ms: config.offsets_retention_check_interval_ms,
        offsets_retention_ms: config.offsets_retention_ms,
    }
}

/// Store calls of background work in flight at once (compaction reads one object at a time; a
/// garbage-collection sweep is one bulk delete per 1,000 keys).
const BACKGROUND_STORE_REQUESTS_MAX: usize = 16;

/// Runs retention, garbage collection and compaction on this (the metadata) executor, in a task
/// queue of its own with a small share, so that the flusher goes first when both want the CPU.
/// Applied compactions' bytes go to their owner cores' caches through `offers`. The same queue
/// runs [`report_index_entries`], whatever retention and compaction are set to.
fn spawn_housekeeping(
    core: crate::metadata_core::CoreHandle,
    config: HousekeepingConfig,
    cluster: Option<(ClusterHousekeeping, DataGcConfig)>,
    offers: CompactedOffers,
    metrics: Arc<Metrics>,
) {
    let looks = offers.clone();
    let feed = CacheFeed {
        offer: Arc::new(move |blocks| offers.offer(blocks)),
        lookup: Arc::new(move |spans| {
            let looks = looks.clone();
            async move { looks.lookup(spans).await }.boxed_local()
        }),
    };
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(HOUSEKEEPING_SHARES),
        glommio::Latency::NotImportant,
        "housekeeping",
    );
    match glommio::spawn_local_into(report_index_entries(core.clone(), metrics), queue) {
        Ok(task) => {
            task.detach();
        }
        Err(error) => {
            tracing::error!(%error, "sluice_index_entries not reported: its task did not start");
        }
    }
    match glommio::spawn_local_into(run_housekeeping(core, config, cluster, Some(feed)), queue) {
        Ok(task) => {
            task.detach();
        }
        Err(error) => {
            tracing::error!(%error, "housekeeping not started: retention and garbage collection are off");
        }
    }
}

/// Copies the applied state's index entry count into `sluice_index_entries`: at once (the query
/// waits in the core's inbox until the opened log's core runs; until it is answered the endpoint
/// leaves the sample out) and then once per [`INDEX_ENTRIES_REFRESH_INTERVAL`]. The timer runs in
/// the housekeeping queue; each refresh is one query answered in the metadata core's request
/// loop, one pass over the partitions (microseconds for thousands), which a command queued
/// behind it waits out — once a second, never per produce or fetch. In a cluster each agent
/// reports its own replica of the state. Ends with the metadata core (its inbox closes), or
/// with the executor.
async fn report_index_entries(core: crate::metadata_core::CoreHandle, metrics: Arc<Metrics>) {
    loop {
        match core.query(|state| state.index_entry_count()).await {
            Ok(entries) => {
                let log = &metrics.log;
                log.index_entries
                    .store(entries, std::sync::atomic::Ordering::Relaxed);
                log.index_entries_known
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => return,
        }
        glommio::timer::sleep(INDEX_ENTRIES_REFRESH_INTERVAL).await;
    }
}

/// A network core's heartbeat: marks the core alive for `/livez` and copies its block cache's
/// statistics into its metrics, once per [`HEARTBEAT_INTERVAL`]. It runs on the core's default
/// task queue, so a core too busy (or stuck) to run it is exactly what it reports.
async fn heartbeat(slot: CoreSlot, fetch: Rc<FetchCore>) {
    loop {
        if let Some(core) = slot.core() {
            core.beat(slot.metrics(), fetch.cache_stats());
        }
        glommio::timer::sleep(HEARTBEAT_INTERVAL).await;
    }
}

/// Milliseconds since the Unix epoch, for the log's claim entry.
/// Opens the metadata log, trying again after a transient store failure (a 503, a reset, a
/// timeout; or a claim the store would not settle): a store that hiccups while the agent starts
/// must not stop it. An open that fails is harmless to repeat — recovery only reads, and a claim
/// that landed unseen is replayed by the next recovery and claimed past. Anything else (a corrupt
/// entry, a bad configuration) fails at once.
async fn open_metadata_log(
    store: Arc<dyn ObjectStorage>,
    config: LogConfig,
) -> Result<(MetadataLog, RecoveryStats), LogError> {
    let mut pause = LOG_OPEN_BACKOFF_FIRST;
    let mut attempt = 1;
    loop {
        match MetadataLog::open(Arc::clone(&store), config.clone(), wall_clock_ms()).await {
            Err(error) if attempt < LOG_OPEN_ATTEMPTS_MAX && open_failure_is_transient(&error) => {
                tracing::warn!(%error, attempt, "metadata log open failed; trying again");
                glommio::timer::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            opened => return opened,
        }
    }
}

fn open_failure_is_transient(error: &LogError) -> bool {
    match error {
        LogError::Store(error) => error.is_transient(),
        LogError::Broken { .. } => true,
        _ => false,
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Err(error) = self.stop_all() {
            tracing::error!(%error, "agent did not stop cleanly");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn cpu_plan_defaults_to_all_online_and_the_first_for_metadata() {
        let plan = plan_cpus(&Config::default(), &[0, 1, 2]).unwrap();
        assert_eq!(
            plan,
            CpuPlan {
                network_cpus: vec![0, 1, 2],
                metadata_cpu: 0
            }
        );
        let config = Config {
            cpus: Some(vec![2, 1]),
            metadata_cpu: Some(0),
            ..Config::default()
        };
        assert_eq!(
            plan_cpus(&config, &[0, 1, 2]).unwrap(),
            CpuPlan {
                network_cpus: vec![2, 1],
                metadata_cpu: 0
            }
        );
    }

    #[test]
    fn cpu_plan_refuses_offline_cpus_naming_the_key() {
        let config = Config {
            cpus: Some(vec![0, 5]),
            ..Config::default()
        };
        let error = plan_cpus(&config, &[0, 1]).unwrap_err().to_string();
        assert!(
            error.contains("cpu 5") && error.contains("`cpus`"),
            "{error}"
        );
        let config = Config {
            metadata_cpu: Some(9),
            ..Config::default()
        };
        let error = plan_cpus(&config, &[0, 1]).unwrap_err().to_string();
        assert!(error.contains("metadata_cpu"), "{error}");
    }
}
