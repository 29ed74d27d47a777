//! Starting each target on loopback: Sluice on the loopback S3 server (which counts its requests;
//! behind the harness's proxy under a latency profile or when asked), Sluice on SeaweedFS (a
//! self-hosted S3-compatible server, always behind the proxy, which counts its requests), an
//! external S3 store, Apache Kafka from `scripts/kafka/run-kafka.sh`, Tansu.
//!
//! Why the proxy only when needed: it is one more HTTP hop for every stored and read byte, inside
//! the harness, on the same two CPUs as the broker it measures (in a replay the S3 server and the
//! proxy together used twice the agent's CPU). Counting needs no hop: the S3 server reports each
//! request it answers ([`S3TestServer::start_counted`]) to the same [`Counters`] the proxy fills.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sluice_engine::store::{
    LatencyProfile, S3TestServer, TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY,
};

use sluice_tests::stores::{SeaweedFs, StoreServer};

use crate::process::{Guarded, Launch, free_port};
use crate::proxy::{Counters, S3Proxy};

/// Targets `--targets` accepts.
pub const ALL: [&str; 13] = [
    "sluice",
    "sluice-s3-express",
    "sluice-s3-standard",
    "sluice-seaweedfs",
    "sluice-seaweedfs-s3-express",
    "sluice-external",
    "sluice-file",
    "sluice-file-tls-scram",
    "sluice-cluster",
    "sluice-cluster-s3-express",
    "kafka",
    "kafka-tls-scram",
    "tansu",
];

/// Targets whose clients must authenticate over TLS: Kafka's Java tools (`single-client`) read
/// the target's client configuration file, the load generator gets the same settings as librdkafka
/// properties ([`Running::librdkafka_properties`]); scenarios with other clients refuse them.
pub const NEEDS_CLIENT_CONFIG: [&str; 2] = ["sluice-file-tls-scram", "kafka-tls-scram"];

/// Broker start-up limit (Kafka's JVM on a busy 2-core machine takes 10-20 s).
const START_LIMIT: Duration = Duration::from_secs(90);

/// A running target. Field order is drop order: the broker stops before its store goes away.
#[derive(Debug)]
pub struct Running {
    pub broker: Guarded,
    /// The other agents of a `sluice-cluster*` target and its PostgreSQL (stopped after the
    /// agents, before the store).
    pub cluster: Option<crate::cluster::Members>,
    /// How the broker was started, to start it again on the same data.
    pub launch: Launch,
    pub address: SocketAddr,
    pub bootstrap: String,
    /// A plaintext listener for the harness's own admin calls (deleting a ladder step's topic):
    /// the clients' listener, except for the TLS+SCRAM targets, whose brokers also listen in
    /// plaintext.
    pub admin_bootstrap: String,
    /// The store calls the broker made (from the proxy or the S3 server); `None`: not counted.
    pub store_counters: Option<Arc<Counters>>,
    /// The harness's proxy in front of the store, when there is one (latency profiles, faults).
    pub proxy: Option<S3Proxy>,
    /// Held so that it outlives the broker that writes to it (dropped after it); the `soak`
    /// scenario also lists its files.
    pub server: Option<S3TestServer>,
    /// The SeaweedFS process of a `sluice-seaweedfs*` target (dropped after the broker).
    pub _seaweedfs: Option<SeaweedFs>,
    pub settings: Map<String, Value>,
    /// Why there are no store counts, if there are none.
    pub store_note: Option<String>,
    /// A Java client configuration file (security settings) every client of this target needs.
    pub client_config: Option<PathBuf>,
    /// The same security settings as librdkafka properties (`KEY=VALUE`), which the load
    /// generator gives every client of this target (`--client-property`).
    pub librdkafka_properties: Vec<String>,
}

impl Running {
    /// User + system CPU seconds of the broker so far, of every agent for a cluster (`None` if a
    /// process is gone or unreadable).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let others = self
            .cluster
            .as_ref()
            .map_or(&[][..], |members| &members.agents[..]);
        others
            .iter()
            .map(Guarded::cpu_seconds)
            .try_fold(self.broker.cpu_seconds()?, |sum, seconds| {
                Some(sum + seconds?)
            })
    }

    /// Stops the broker and starts it again on the same data and store (the proxy and the S3
    /// server keep running), then waits until it listens. Its caches start empty.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.broker.stop();
        self.broker = self.launch.spawn()?;
        self.broker.wait_listening(self.address, START_LIMIT)
    }

    /// The directory holding a Sluice target's objects: on the loopback S3 server
    /// (`<data dir>/<bucket>/<prefix>`), or the agent's local-directory store (`--store
    /// file://<dir>`, as `sluice-file`), where `object_store` keeps each key as a file at its
    /// path; `None` for targets with neither (a remote store, or not Sluice).
    pub fn sluice_bucket_dir(&self) -> Option<PathBuf> {
        if let Some(server) = &self.server {
            return Some(
                server
                    .data_dir()
                    .join(server.bucket())
                    .join(SLUICE_STORE_PREFIX),
            );
        }
        local_store_dir(self.launch.arg_after("--store")?.to_str()?)
    }
}

/// The directory of a local-directory store (`file://…`, with or without parameters, or a plain
/// path), as the agent reads its `--store`; `None` for any other store.
fn local_store_dir(store_url: &str) -> Option<PathBuf> {
    match sluice_engine::store::StoreConfig::from_url(store_url) {
        Ok(sluice_engine::store::StoreConfig::Local { path, .. }) => Some(path),
        _ => None,
    }
}

/// The key prefix Sluice targets use on the loopback S3 server.
pub const SLUICE_STORE_PREFIX: &str = "bench";

/// "release build", "debug build" or the path: which build of a binary a row measured.
pub fn build_label(binary: &Path) -> String {
    let parent = binary
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str());
    match parent {
        Some("release") => "release build".to_owned(),
        Some("debug") => "debug build".to_owned(),
        _ => format!("build at {}", binary.display()),
    }
}

/// When a target on the loopback S3 server gets the harness's proxy in front of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreProxy {
    /// Under a latency profile (the proxy holds the answers) and for the chaos scenario (it
    /// injects the faults); otherwise the S3 server counts the requests itself.
    WhenNeeded,
    /// Always, as the harness did before 5 Dec 2026: to compare with earlier runs.
    Always,
}

/// Paths and options shared by all targets.
#[derive(Debug)]
pub struct Env {
    pub repo: PathBuf,
    pub sluice_bin: PathBuf,
    pub work_dir: PathBuf,
    pub external_store: Option<String>,
    pub runtime: tokio::runtime::Handle,
    /// Extra environment for every `sluice` agent started (`SLUICE_*` settings, `SLUICE_LOG`).
    pub agent_env: Vec<(String, String)>,
    /// Extra environment for `scripts/kafka/run-kafka.sh` (its `RUN_KAFKA_*` settings).
    pub kafka_env: Vec<(String, String)>,
    pub store_proxy: StoreProxy,
}

/// Why a target did not start: not installed (a hint to install it) or failed.
#[derive(Debug)]
pub enum StartError {
    NotInstalled(String),
    Failed(String),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> StartError {
        StartError::Failed(format!("{error:#}"))
    }
}

fn upstream_of(server: &S3TestServer) -> anyhow::Result<SocketAddr> {
    Ok(server.endpoint().trim_start_matches("http://").parse()?)
}

/// The loopback S3 server, what counts its requests, and the proxy in front of it if one is
/// needed (`profile`, or `env.store_proxy`); the endpoint the broker is given.
pub(crate) struct LoopbackStore {
    pub(crate) server: S3TestServer,
    pub(crate) counters: Arc<Counters>,
    pub(crate) proxy: Option<S3Proxy>,
    pub(crate) endpoint: String,
}

impl LoopbackStore {
    pub(crate) fn start(
        env: &Env,
        profile: Option<LatencyProfile>,
    ) -> anyhow::Result<LoopbackStore> {
        if profile.is_none() && env.store_proxy == StoreProxy::WhenNeeded {
            let counters = Arc::new(Counters::default());
            let server =
                S3TestServer::start_counted(crate::proxy::server_observer(Arc::clone(&counters)))?;
            let endpoint = server.endpoint();
            return Ok(LoopbackStore {
                server,
                counters,
                proxy: None,
                endpoint,
            });
        }
        let server = S3TestServer::start()?;
        let proxy = env.runtime.block_on(S3Proxy::start(
            upstream_of(&server)?,
            profile,
            1,
            Some(server.data_dir().to_owned()),
        ))?;
        Ok(LoopbackStore {
            counters: proxy.shared_counters(),
            endpoint: proxy.endpoint(),
            server,
            proxy: Some(proxy),
        })
    }

    /// What the report's `store` setting says about it.
    pub(crate) fn description(&self) -> &'static str {
        if self.proxy.is_some() {
            "s3s-fs on loopback behind the harness proxy"
        } else {
            "s3s-fs on loopback, requests counted by the server (no proxy)"
        }
    }
}

pub fn start(name: &str, env: &Env) -> Result<Running, StartError> {
    match name {
        "sluice" => start_sluice_local(env, name, None),
        "sluice-s3-express" => start_sluice_local(
            env,
            name,
            Some(("s3-express", LatencyProfile::s3_express())),
        ),
        "sluice-s3-standard" => start_sluice_local(
            env,
            name,
            Some(("s3-standard", LatencyProfile::s3_standard())),
        ),
        "sluice-seaweedfs" => start_sluice_seaweedfs(env, name, None),
        "sluice-seaweedfs-s3-express" => start_sluice_seaweedfs(
            env,
            name,
            Some(("s3-express", LatencyProfile::s3_express())),
        ),
        "sluice-external" => start_sluice_external(env),
        "sluice-file" => start_sluice_file(env),
        "sluice-file-tls-scram" => start_sluice_file_tls_scram(env),
        "sluice-cluster" => crate::cluster::start(env, name, None),
        "sluice-cluster-s3-express" => crate::cluster::start(
            env,
            name,
            Some(("s3-express", LatencyProfile::s3_express())),
        ),
        "kafka" => start_kafka(env),
        "kafka-tls-scram" => start_kafka_tls_scram(env),
        "tansu" => start_tansu(env),
        other => Err(StartError::Failed(format!("unknown target {other}"))),
    }
}

fn start_sluice(
    env: &Env,
    name: &str,
    store_url: &str,
) -> Result<(Guarded, Launch, SocketAddr), StartError> {
    start_sluice_with(env, name, store_url, &[])
}

/// [`start_sluice`] with more `sluice serve` arguments.
pub(crate) fn start_sluice_with(
    env: &Env,
    name: &str,
    store_url: &str,
    extra_args: &[String],
) -> Result<(Guarded, Launch, SocketAddr), StartError> {
    if !env.sluice_bin.exists() {
        return Err(StartError::NotInstalled(format!(
            "{} missing: run `cargo build --release -p sluice-server`",
            env.sluice_bin.display()
        )));
    }
    let port = free_port()?;
    let data_dir = env.work_dir.join(name);
    std::fs::create_dir_all(&data_dir).map_err(anyhow::Error::from)?;
    let launch = Launch::new(
        name,
        &env.sluice_bin,
        &env.work_dir.join(format!("{name}.log")),
    )
    .arg("serve")
    .arg("--listen")
    .arg(format!("127.0.0.1:{port}"))
    .arg("--data-dir")
    .arg(&data_dir)
    .arg("--store")
    .arg(store_url)
    .arg("--default-partitions")
    .arg("1")
    // As scripts/kafka/run-kafka.sh sets for Apache Kafka: a new group's first rebalance does not
    // wait for more members, so both brokers' groups settle alike.
    .arg("--group-initial-rebalance-delay-ms")
    .arg("0");
    let launch = extra_args
        .iter()
        .fold(launch, |launch, arg| launch.arg(arg.as_str()));
    let launch = env.agent_env.iter().fold(launch, |launch, (key, value)| {
        launch.env(key, value.as_str())
    });
    let mut broker = launch.spawn()?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    broker.wait_listening(address, START_LIMIT)?;
    Ok((broker, launch, address))
}

fn start_sluice_local(
    env: &Env,
    name: &str,
    profile: Option<(&str, LatencyProfile)>,
) -> Result<Running, StartError> {
    let store = LoopbackStore::start(env, profile.map(|(_, p)| p))?;
    let store_url = store
        .server
        .store_url(SLUICE_STORE_PREFIX)
        .replace(&store.server.endpoint(), &store.endpoint);
    let (broker, launch, address) = start_sluice(env, name, &store_url)?;
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!("sluice ({})", build_label(&env.sluice_bin))),
    );
    settings.insert("store".into(), json!(store.description()));
    settings.insert(
        "latency_profile".into(),
        json!(profile.map_or("none", |(n, _)| n)),
    );
    settings.insert("flush_interval_ms".into(), json!("agent default (10)"));
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: address.to_string(),
        store_counters: Some(store.counters),
        proxy: store.proxy,
        server: Some(store.server),
        _seaweedfs: None,
        settings,
        store_note: None,
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

/// Sluice on SeaweedFS (`weed server` on loopback, from `scripts/install-store-servers.sh`),
/// behind the harness proxy, which counts the requests and applies `profile`'s latency model.
fn start_sluice_seaweedfs(
    env: &Env,
    name: &str,
    profile: Option<(&str, LatencyProfile)>,
) -> Result<Running, StartError> {
    let Some(binary) = SeaweedFs::binary() else {
        return Err(StartError::NotInstalled(
            "SeaweedFS (weed) missing: run `bash scripts/install-store-servers.sh`, or set \
             SLUICE_SEAWEEDFS_BIN"
                .into(),
        ));
    };
    let seaweedfs =
        SeaweedFs::start(&binary).map_err(|error| StartError::Failed(error.to_string()))?;
    let upstream: SocketAddr = seaweedfs
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .map_err(anyhow::Error::from)?;
    let proxy = env
        .runtime
        .block_on(S3Proxy::start(upstream, profile.map(|(_, p)| p), 1, None))?;
    let store_url = seaweedfs
        .store_url(SLUICE_STORE_PREFIX)
        .replace(&seaweedfs.endpoint(), &proxy.endpoint());
    let (broker, launch, address) = start_sluice(env, name, &store_url)?;
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!("sluice ({})", build_label(&env.sluice_bin))),
    );
    settings.insert(
        "store".into(),
        json!("SeaweedFS (weed server) on loopback behind the harness proxy"),
    );
    settings.insert(
        "latency_profile".into(),
        json!(profile.map_or("none", |(n, _)| n)),
    );
    settings.insert("flush_interval_ms".into(), json!("agent default (10)"));
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: address.to_string(),
        store_counters: Some(proxy.shared_counters()),
        proxy: Some(proxy),
        server: None,
        _seaweedfs: Some(seaweedfs),
        settings,
        store_note: None,
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

fn start_sluice_external(env: &Env) -> Result<Running, StartError> {
    let Some(url) = &env.external_store else {
        return Err(StartError::NotInstalled(
            "give `--store s3://bucket/prefix?endpoint=...` (credentials from AWS_* env)".into(),
        ));
    };
    let (broker, launch, address) = start_sluice(env, "sluice-external", url)?;
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!("sluice ({})", build_label(&env.sluice_bin))),
    );
    // The URL may carry credentials in its query; report only what precedes it.
    settings.insert(
        "store".into(),
        json!(url.split('?').next().unwrap_or_default()),
    );
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: address.to_string(),
        store_counters: None,
        proxy: None,
        server: None,
        _seaweedfs: None,
        settings,
        store_note: Some(
            "external store: requests are not counted (not behind the harness proxy)".into(),
        ),
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

/// Sluice on a local-directory store (`file://`, fsync on), no S3 server and no proxy: the same
/// disk Kafka writes to, without the loopback S3 server's and the proxy's CPU on the same two
/// cores. A reference for where the time goes, not the deployment Sluice is built for.
fn start_sluice_file(env: &Env) -> Result<Running, StartError> {
    let name = "sluice-file";
    // Inside the target's data directory, so it is deleted with it after the target's run.
    let store_dir = env.work_dir.join(name).join("store");
    std::fs::create_dir_all(&store_dir).map_err(anyhow::Error::from)?;
    let (broker, launch, address) =
        start_sluice(env, name, &format!("file://{}", store_dir.display()))?;
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!("sluice ({})", build_label(&env.sluice_bin))),
    );
    settings.insert(
        "store".into(),
        json!("local directory (file://, fsync on), no S3 server, no proxy"),
    );
    settings.insert("flush_interval_ms".into(), json!("agent default (10)"));
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: address.to_string(),
        store_counters: None,
        proxy: None,
        server: None,
        _seaweedfs: None,
        settings,
        store_note: Some("local-directory store: requests are not counted".into()),
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

/// `sluice-file` with its clients on a second listener that speaks TLS and requires SASL
/// SCRAM-SHA-512 (Kafka's `SASL_SSL`): a self-signed certificate for 127.0.0.1 made here, one user
/// in a users file, and a Java client configuration that trusts the certificate and logs in. Set
/// beside `sluice-file` in one run, it measures what encryption and authentication cost.
fn start_sluice_file_tls_scram(env: &Env) -> Result<Running, StartError> {
    let name = "sluice-file-tls-scram";
    let dir = env.work_dir.join(name);
    let store_dir = dir.join("store");
    std::fs::create_dir_all(&store_dir).map_err(anyhow::Error::from)?;
    let tls_port = free_port()?;
    let files =
        write_tls_scram_files(&dir).map_err(|error| StartError::Failed(format!("{error:#}")))?;
    let extra = [
        "--tls-listen".to_owned(),
        format!("127.0.0.1:{tls_port}"),
        "--tls-cert-file".to_owned(),
        files.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        files.key.display().to_string(),
        "--tls-listen-sasl".to_owned(),
        "true".to_owned(),
        "--sasl-users-file".to_owned(),
        files.users.display().to_string(),
    ];
    let (mut broker, launch, plaintext) = start_sluice_with(
        env,
        name,
        &format!("file://{}", store_dir.display()),
        &extra,
    )?;
    let tls_address: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    broker.wait_listening(tls_address, START_LIMIT)?;
    let mut settings = Map::new();
    settings.insert(
        "broker".into(),
        json!(format!("sluice ({})", build_label(&env.sluice_bin))),
    );
    settings.insert(
        "store".into(),
        json!("local directory (file://, fsync on), no S3 server, no proxy"),
    );
    settings.insert(
        "listener".into(),
        json!("SASL_SSL: TLS (rustls, self-signed certificate, ECDSA P-256) + SCRAM-SHA-512"),
    );
    settings.insert("flush_interval_ms".into(), json!("agent default (10)"));
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address: tls_address,
        bootstrap: tls_address.to_string(),
        admin_bootstrap: plaintext.to_string(),
        store_counters: None,
        proxy: None,
        server: None,
        _seaweedfs: None,
        settings,
        store_note: Some("local-directory store: requests are not counted".into()),
        client_config: Some(files.client_config),
        librdkafka_properties: files.librdkafka,
    })
}

struct TlsScramFiles {
    cert: PathBuf,
    key: PathBuf,
    /// The key and the certificate in one file: Kafka's PEM keystore.
    key_and_cert: PathBuf,
    users: PathBuf,
    client_config: PathBuf,
    /// The client configuration's settings for librdkafka (the load generator's clients).
    librdkafka: Vec<String>,
}

/// The user and password of the TLS+SCRAM targets.
const TLS_SCRAM_USER: &str = "bench";
const TLS_SCRAM_PASSWORD: &str = "bench-secret";

/// Writes the TLS+SCRAM targets' files under `dir` (`sluice-bench tls-files`) and returns the
/// load generator's client properties for them.
pub fn write_tls_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    write_tls_scram_files(dir).map(|files| files.librdkafka)
}

/// The TLS+SCRAM target's files under `dir`.
fn write_tls_scram_files(dir: &Path) -> anyhow::Result<TlsScramFiles> {
    const USER: &str = TLS_SCRAM_USER;
    const PASSWORD: &str = TLS_SCRAM_PASSWORD;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let files = TlsScramFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        key_and_cert: dir.join("key-and-cert.pem"),
        users: dir.join("users.toml"),
        client_config: dir.join("client.properties"),
        librdkafka: Vec::new(),
    };
    std::fs::write(&files.cert, certified.cert.pem())?;
    std::fs::write(&files.key, certified.signing_key.serialize_pem())?;
    std::fs::write(
        &files.key_and_cert,
        format!(
            "{}{}",
            certified.signing_key.serialize_pem(),
            certified.cert.pem()
        ),
    )?;
    std::fs::write(&files.users, format!("[users]\n{USER} = \"{PASSWORD}\"\n"))?;
    // The agent warns about a users file others may read.
    std::fs::set_permissions(
        &files.users,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    std::fs::write(
        &files.client_config,
        format!(
            "security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{USER}\" password=\"{PASSWORD}\";\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={}\n",
            files.cert.display()
        ),
    )?;
    let librdkafka = vec![
        "security.protocol=SASL_SSL".to_owned(),
        "sasl.mechanisms=SCRAM-SHA-512".to_owned(),
        format!("sasl.username={USER}"),
        format!("sasl.password={PASSWORD}"),
        format!("ssl.ca.location={}", files.cert.display()),
    ];
    Ok(TlsScramFiles {
        librdkafka,
        ..files
    })
}

fn start_kafka(env: &Env) -> Result<Running, StartError> {
    let (broker, launch, address) = spawn_kafka(env, "kafka", &[])?;
    Ok(kafka_running(
        broker,
        launch,
        address,
        address,
        Map::new(),
        None,
        Vec::new(),
    ))
}

/// A running Kafka target: its clients on `address`, with `client_config` when they must log in.
fn kafka_running(
    broker: Guarded,
    launch: Launch,
    address: SocketAddr,
    plaintext: SocketAddr,
    mut settings: Map<String, Value>,
    client_config: Option<PathBuf>,
    librdkafka_properties: Vec<String>,
) -> Running {
    settings.insert(
        "broker".into(),
        json!("Apache Kafka 4.x, one KRaft node (run-kafka.sh), 512 MiB heap"),
    );
    settings.insert(
        "store".into(),
        json!("local disk (log.dirs), default flush policy (page cache)"),
    );
    Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: plaintext.to_string(),
        store_counters: None,
        proxy: None,
        server: None,
        _seaweedfs: None,
        settings,
        store_note: Some("local disk: no object-store requests".into()),
        client_config,
        librdkafka_properties,
    }
}

/// Starts `scripts/kafka/run-kafka.sh` for target `name` with `envs` (its optional SASL_SSL
/// listener), and waits for its plaintext listener.
fn spawn_kafka(
    env: &Env,
    name: &str,
    envs: &[(&str, String)],
) -> Result<(Guarded, Launch, SocketAddr), StartError> {
    let script = env.repo.join("scripts/kafka/run-kafka.sh");
    if !script.exists() {
        return Err(StartError::NotInstalled(format!(
            "{} missing",
            script.display()
        )));
    }
    let port = free_port()?;
    let controller_port = free_port()?;
    let data_dir = env.work_dir.join(name);
    let mut launch = Launch::new(name, "bash", &env.work_dir.join(format!("{name}.log")))
        .arg(&script)
        .arg(port.to_string())
        .arg(&data_dir)
        .arg(controller_port.to_string());
    for (key, value) in envs {
        launch = launch.env(key, value.clone());
    }
    for (key, value) in &env.kafka_env {
        launch = launch.env(key, value.clone());
    }
    let mut broker = launch.spawn()?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    broker.wait_listening(address, START_LIMIT)?;
    Ok((broker, launch, address))
}

/// `kafka` with its clients on a second listener speaking SASL_SSL with SCRAM-SHA-512: the same
/// certificate, user and client configuration as `sluice-file-tls-scram` (the JVM's TLS, JSSE, on
/// the broker's side), so that what encryption and authentication cost Sluice is set beside what
/// they cost Kafka on the same machine.
fn start_kafka_tls_scram(env: &Env) -> Result<Running, StartError> {
    let name = "kafka-tls-scram";
    let dir = env.work_dir.join(format!("{name}-files"));
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let files =
        write_tls_scram_files(&dir).map_err(|error| StartError::Failed(format!("{error:#}")))?;
    let tls_port = free_port()?;
    let envs = [
        ("RUN_KAFKA_SASL_SSL_PORT", tls_port.to_string()),
        (
            "RUN_KAFKA_SSL_PEM",
            files.key_and_cert.display().to_string(),
        ),
        ("RUN_KAFKA_SCRAM_USER", TLS_SCRAM_USER.to_owned()),
        ("RUN_KAFKA_SCRAM_PASSWORD", TLS_SCRAM_PASSWORD.to_owned()),
    ];
    let (mut broker, launch, plaintext) = spawn_kafka(env, name, &envs)?;
    let tls_address: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    broker.wait_listening(tls_address, START_LIMIT)?;
    let mut settings = Map::new();
    settings.insert(
        "listener".into(),
        json!("SASL_SSL: TLS (JSSE, self-signed certificate, ECDSA P-256) + SCRAM-SHA-512"),
    );
    Ok(kafka_running(
        broker,
        launch,
        tls_address,
        plaintext,
        settings,
        Some(files.client_config),
        files.librdkafka,
    ))
}

fn tansu_binary(repo: &Path) -> Option<PathBuf> {
    let local = repo.join("target/tools/bin/tansu");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|path| path.exists())
    })
}

fn start_tansu(env: &Env) -> Result<Running, StartError> {
    let Some(binary) = tansu_binary(&env.repo) else {
        return Err(StartError::NotInstalled(
            "run `cargo install tansu --locked --features dynostore --root target/tools` \
             (dynostore is Tansu's S3 storage engine, not in its default features)"
                .into(),
        ));
    };
    let store = LoopbackStore::start(env, None)?;
    let port = free_port()?;
    let launch = Launch::new("tansu", binary, &env.work_dir.join("tansu.log"))
        .arg("broker")
        .arg("--storage-engine")
        .arg(format!("s3://{}/", store.server.bucket()))
        .arg("--listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", TEST_REGION)
        .env("AWS_REGION", TEST_REGION)
        .env("AWS_ENDPOINT", store.endpoint.as_str())
        .env("AWS_ALLOW_HTTP", "true")
        .env("NO_COLOR", "1");
    let mut broker = launch.spawn()?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    broker.wait_listening(address, START_LIMIT)?;
    let mut settings = Map::new();
    settings.insert("broker".into(), json!("tansu (cargo install)"));
    settings.insert("store".into(), json!(store.description()));
    Ok(Running {
        broker,
        cluster: None,
        launch,
        address,
        bootstrap: address.to_string(),
        admin_bootstrap: address.to_string(),
        store_counters: Some(store.counters),
        proxy: store.proxy,
        server: Some(store.server),
        _seaweedfs: None,
        settings,
        store_note: None,
        client_config: None,
        librdkafka_properties: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_store_url_names_the_directory_the_soak_lists() {
        assert_eq!(
            local_store_dir("file:///tmp/bench/sluice-file/store"),
            Some(PathBuf::from("/tmp/bench/sluice-file/store"))
        );
        assert_eq!(
            local_store_dir("file:///tmp/store?fsync=false"),
            Some(PathBuf::from("/tmp/store"))
        );
        assert_eq!(
            local_store_dir("/tmp/plain/store"),
            Some(PathBuf::from("/tmp/plain/store"))
        );
        assert_eq!(local_store_dir("s3://bucket/bench"), None);
        assert_eq!(local_store_dir("memory://"), None);
    }
}
