//! Agent configuration: one TOML file, then `SLUICE_*` environment variables, then command-line
//! flags, each layer overriding the one before.
//!
//! Every key is documented in `docs/configuration.md`. The file is parsed with
//! `deny_unknown_fields`: a misspelt key (`flush_intervall_ms`) is an error at startup rather
//! than a silently ignored setting that someone debugs in production a month later. The layers
//! are plain data ([`Overrides`]) so that the precedence rules are tested without touching the
//! process environment.

mod listeners;
mod overrides;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use listeners::{ClientAuth, LISTENERS_MAX, Listener, ListenerSettings, SecurityProtocol};
pub use overrides::{CpuList, NameList, Overrides, parse_cpu_list};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;
/// Largest `flush_puts_per_second_max` accepted: a window a tenth of a millisecond, far beyond
/// what a store takes from one writer.
pub const FLUSH_PUTS_PER_SECOND_LIMIT: u64 = 10_000;
/// glommio refuses to go below 64 KiB of io memory per executor.
pub const IO_MEMORY_BYTES_MIN: u64 = 64 * 1024;
/// Largest `offset_metadata_bytes_max` accepted: the protocol's string ceiling, which is also the
/// most the metadata state machine stores (committed offsets ride the metadata log).
pub const OFFSET_METADATA_BYTES_LIMIT: usize = 32_767;
/// Kafka's default `group.max.size` and `group.consumer.max.size`: `Integer.MAX_VALUE`, so no
/// limit in practice.
pub const GROUP_MAX_SIZE_DEFAULT: u32 = i32::MAX as u32;
/// Every SASL mechanism, the default of `sasl_mechanisms`.
pub const SASL_MECHANISMS_DEFAULT: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Server assignors of KIP-848 consumer groups (`group_consumer_assignors`).
pub const CONSUMER_ASSIGNORS_KNOWN: &[&str] = &["uniform", "range"];

/// The agent's settings. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Named Kafka listeners, `NAME://HOST:PORT` (Kafka's `listeners`); TOML takes a list or one
    /// comma-separated string. Empty: `listen` and `tls_listen` (see `config::listeners`).
    #[serde(deserialize_with = "listeners::string_or_list")]
    pub listeners: Vec<String>,
    /// What clients are told for each listener, `NAME://HOST:PORT` (Kafka's
    /// `advertised.listeners`); a listener not named here advertises its bound address.
    #[serde(deserialize_with = "listeners::string_or_list")]
    pub advertised_listeners: Vec<String>,
    /// `NAME:PROTOCOL` for each listener whose name is not itself a protocol (Kafka's
    /// `listener.security.protocol.map`).
    #[serde(deserialize_with = "listeners::string_or_list")]
    pub listener_security_protocol_map: Vec<String>,
    /// Per-listener settings, `[listener_name.NAME]` (Kafka's `listener.name.NAME.*`).
    pub listener_name: BTreeMap<String, ListenerSettings>,
    /// Address the Kafka listener binds on every network core, `HOST:PORT`.
    pub listen: String,
    /// Address clients are told to connect to (Metadata brokers list); defaults to `listen`.
    pub advertised_listen: Option<String>,
    /// Address of the metrics and health endpoint (`/metrics`, `/livez`, `/readyz`), `HOST:PORT`;
    /// `None` serves none.
    pub metrics_listen: Option<String>,
    /// Address of a second Kafka listener that speaks TLS (Kafka's `SSL`), `HOST:PORT`.
    pub tls_listen: Option<String>,
    /// Address clients of the TLS listener are told to connect to; defaults to `tls_listen`.
    pub tls_advertised_listen: Option<String>,
    /// PEM certificate chain (leaf first) of the TLS listener.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, TLS clients must present a certificate they signed (mTLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// The plaintext listener requires SASL authentication (Kafka's `SASL_PLAINTEXT`).
    pub listen_sasl: bool,
    /// The TLS listener requires SASL authentication (Kafka's `SASL_SSL`).
    pub tls_listen_sasl: bool,
    /// SASL mechanisms offered: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub sasl_mechanisms: Vec<String>,
    /// TOML file of SASL users and passwords (`[users]` table); required when a listener
    /// requires SASL.
    pub sasl_users_file: Option<PathBuf>,
    /// Failed SASL logins from one address within `sasl_failed_logins_window_ms` that lock it
    /// out for `sasl_lockout_ms`; 0 turns the lockout off.
    pub sasl_failed_logins_max: u32,
    /// The window failed SASL logins are counted over.
    pub sasl_failed_logins_window_ms: u64,
    /// How long an address with too many failed SASL logins is refused.
    pub sasl_lockout_ms: u64,
    /// Longest a SASL session lasts before the client must re-authenticate on its connection
    /// (Kafka's `connections.max.reauth.ms`, KIP-368); 0 turns re-authentication off.
    pub connections_max_reauth_ms: u64,
    /// JWKS file (a JSON Web Key Set) whose keys sign OAUTHBEARER tokens; required when
    /// `sasl_mechanisms` offers OAUTHBEARER (Kafka's `sasl.oauthbearer.jwks.endpoint.url`).
    pub sasl_oauthbearer_jwks_file: Option<PathBuf>,
    /// The `iss` claim OAUTHBEARER tokens must carry; `None` checks none.
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// Audiences, one of which OAUTHBEARER tokens must carry in `aud`; empty checks none.
    pub sasl_oauthbearer_expected_audience: Vec<String>,
    /// The token claim whose value is the principal's name.
    pub sasl_oauthbearer_sub_claim_name: String,
    /// Leeway on a token's `exp` and `nbf`, seconds.
    pub sasl_oauthbearer_clock_skew_seconds: u64,
    /// Local directory for the agent's own files (and the default object store).
    pub data_dir: PathBuf,
    /// Object store URL; `None` means a local directory under `data_dir`.
    pub store: Option<String>,
    /// CPU ids that run a network executor each; `None` means every online CPU.
    pub cpus: Option<Vec<usize>>,
    /// CPU id the metadata executor is pinned to; `None` means the first network CPU.
    pub metadata_cpu: Option<usize>,
    /// Per network core: bytes of produced data buffered before the core stops accepting more.
    pub flush_buffer_bytes_max: u64,
    /// Per network core: bytes of object blocks kept in memory for fetches.
    pub block_cache_bytes_max: u64,
    /// Per network core: incremental fetch sessions (KIP-227) kept, least recently used evicted.
    pub fetch_sessions_max: usize,
    /// Client quotas: samples a rate is measured over (Kafka's `quota.window.num`).
    pub quota_window_num: u32,
    /// Client quotas: seconds per sample (Kafka's `quota.window.size.seconds`).
    pub quota_window_size_seconds: u32,
    /// Per executor: glommio io memory, registered with io_uring (counts against RLIMIT_MEMLOCK).
    pub io_memory_bytes: u64,
    /// Longest time produced data waits before it is written as an object.
    pub flush_interval_ms: u64,
    /// A flush starts early once this many bytes are buffered.
    pub flush_bytes_max: u64,
    /// Flush windows whose log entry (one PUT each) is in flight at once; 1 to 1024.
    pub flush_windows_inflight_max: usize,
    /// Windows stretch to half the store's recent median PUT time, up to this (never below
    /// `flush_interval_ms`).
    pub flush_interval_max_ms: u64,
    /// Flush windows (log entries, one PUT each before hedged copies) sealed per second at most,
    /// on average; `None` means `1000 / flush_interval_ms` (the fixed windows' ceiling).
    pub flush_puts_per_second_max: Option<u64>,
    /// Seal a window early when the previous upload has returned or it holds 1 MiB, within the
    /// PUT budget; `false` seals only at the interval's end (and when a window must close).
    pub flush_group_commit: bool,
    /// Copies of one log entry's PUT at most (parallel and hedged); 1 turns hedging off.
    pub put_copies_max: u32,
    /// Copies start at once when one copy misses this time more than 1 % of the time.
    pub put_latency_target_ms: u64,
    /// A further copy starts after this percentile (1 to 99) of recent PUT times.
    pub put_hedge_percentile: u32,
    /// Floor of the hedge delay.
    pub put_hedge_delay_ms_min: u64,
    /// Payload bytes of extra PUT copies (every copy after an entry's first) in flight at most;
    /// 0 sends first copies only.
    pub put_copy_bytes_in_flight_max: u64,
    /// Largest request frame accepted; bigger frames close the connection.
    pub request_bytes_max: u64,
    /// Create a topic when a client asks for metadata of one that does not exist.
    pub auto_create_topics: bool,
    /// `acl` checks every request against the ACL bindings (Kafka's `authorizer.class.name`);
    /// `None` checks nothing and the ACL APIs answer SECURITY_DISABLED.
    pub authorizer: Option<String>,
    /// Principals the authorizer allows everything, e.g. `User:admin` (Kafka's `super.users`).
    pub super_users: Vec<String>,
    /// Allow a request on a resource no ACL binding names (Kafka's
    /// `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
    /// Partition count of auto-created topics.
    pub default_partitions: u32,
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// classic group waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms`: shortest session a classic member may ask for.
    pub group_min_session_timeout_ms: i32,
    /// Kafka's `group.max.session.timeout.ms`: longest session a classic member may ask for.
    pub group_max_session_timeout_ms: i32,
    /// Kafka's `group.max.size`: most members of one classic group; a JoinGroup beyond it is
    /// GROUP_MAX_SIZE_REACHED.
    pub group_max_size: u32,
    /// Kafka's `group.consumer.heartbeat.interval.ms`: KIP-848 members heartbeat this often.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Kafka's `group.consumer.session.timeout.ms`: a silent KIP-848 member is removed after it.
    pub group_consumer_session_timeout_ms: i32,
    /// Server assignors KIP-848 members may choose (`uniform`, `range`); the first is the default.
    pub group_consumer_assignors: Vec<String>,
    /// Kafka's `group.consumer.max.size`: most members of one KIP-848 group; a new member beyond
    /// it is GROUP_MAX_SIZE_REACHED.
    pub group_consumer_max_size: u32,
    /// Kafka's `offset.metadata.max.bytes`: longer commit metadata is OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_bytes_max: usize,
    /// Kafka's `offsets.retention.check.interval.ms`: how often each core forgets its empty
    /// groups that have no committed offsets and deletes expired offsets.
    pub offsets_retention_check_interval_ms: u64,
    /// Kafka's `offsets.retention.minutes`, in milliseconds: a group without members keeps its
    /// committed offsets this long.
    pub offsets_retention_ms: u64,
    /// Kafka's `log.retention.ms`: how long a topic without a `retention.ms` override keeps
    /// records (-1 = forever). Unset: `log_retention_hours` decides.
    pub log_retention_ms: Option<i64>,
    /// Kafka's `log.retention.hours`, used when `log_retention_ms` is unset (-1 = forever).
    pub log_retention_hours: i64,
    /// Kafka's `log.retention.bytes`: bytes per partition a topic without a `retention.bytes`
    /// override keeps at least (-1 = no limit).
    pub log_retention_bytes: i64,
    /// Kafka's `log.retention.check.interval.ms`: how often retention runs, and with it the
    /// garbage collection of objects nothing needs any more.
    pub log_retention_check_interval_ms: u64,
    /// Kafka's `log.segment.delete.delay.ms`: how long an object nothing needs stays in the
    /// store before it is deleted (longer than any fetch holds a reference to one).
    pub log_segment_delete_delay_ms: u64,
    /// How often object compaction looks for small objects to merge; 0 turns it off.
    pub compaction_interval_ms: u64,
    /// Size a compacted object aims at.
    pub compaction_object_bytes_target: u64,
    /// Index entries one compaction job merges at most.
    pub compaction_inputs_per_job_max: usize,
    /// A metadata-log checkpoint is written after this many entries; recovery replays at most
    /// about this many entries after the newest one.
    pub checkpoint_interval_entries: u64,
    /// Newest metadata-log checkpoints kept (older ones, and the log entries they cover that
    /// nothing references, are deleted); at least 2.
    pub checkpoints_retained: usize,
    /// The cluster's metadata log in PostgreSQL, `postgres://…` (`docs/cluster.md`); `None` keeps
    /// the agent's own log in object storage.
    pub metadata: Option<String>,
    /// The cluster's name in the database (1–64 of `[A-Za-z0-9_.-]`); one database can hold
    /// several clusters. Only with `metadata`.
    pub cluster_name: String,
    /// This agent's id in the cluster, stable across restarts; defaults to the advertised address.
    pub agent_id: Option<String>,
    /// This agent's zone (rack), told to clients and used to route them; may be empty.
    pub zone: String,
    /// The agent's lease in the cluster, renewed every third of it; an agent that cannot renew
    /// stops accepting writes when it runs out.
    pub lease_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: Vec::new(),
            listener_name: BTreeMap::new(),
            listen: listeners::LISTEN_DEFAULT.to_owned(),
            advertised_listen: None,
            metrics_listen: None,
            tls_listen: None,
            tls_advertised_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            listen_sasl: false,
            tls_listen_sasl: false,
            sasl_mechanisms: SASL_MECHANISMS_DEFAULT
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            sasl_users_file: None,
            sasl_failed_logins_max: crate::net::sasl::limiter::FAILED_LOGINS_MAX,
            sasl_failed_logins_window_ms: crate::net::sasl::limiter::FAILED_LOGINS_WINDOW_MS,
            sasl_lockout_ms: crate::net::sasl::limiter::LOCKOUT_MS,
            connections_max_reauth_ms: 0,
            sasl_oauthbearer_jwks_file: None,
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_expected_audience: Vec::new(),
            sasl_oauthbearer_sub_claim_name: crate::net::sasl::oauthbearer::SUB_CLAIM_DEFAULT
                .to_owned(),
            sasl_oauthbearer_clock_skew_seconds:
                crate::net::sasl::oauthbearer::CLOCK_SKEW_SECONDS_DEFAULT,
            data_dir: PathBuf::from("./sluice-data"),
            store: None,
            cpus: None,
            metadata_cpu: None,
            flush_buffer_bytes_max: 64 * 1024 * 1024,
            block_cache_bytes_max: 256 * 1024 * 1024,
            fetch_sessions_max: 1_000,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            io_memory_bytes: 512 * 1024,
            flush_interval_ms: 10,
            flush_bytes_max: 8 * 1024 * 1024,
            flush_windows_inflight_max: 128,
            flush_interval_max_ms: 50,
            flush_puts_per_second_max: None,
            flush_group_commit: true,
            put_copies_max: 6,
            put_latency_target_ms: 15,
            put_hedge_percentile: 95,
            put_hedge_delay_ms_min: 5,
            put_copy_bytes_in_flight_max: 8 * 1024 * 1024,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            auto_create_topics: true,
            authorizer: None,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            default_partitions: 1,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: GROUP_MAX_SIZE_DEFAULT,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_assignors: vec!["uniform".to_owned(), "range".to_owned()],
            group_consumer_max_size: GROUP_MAX_SIZE_DEFAULT,
            offset_metadata_bytes_max: 4096,
            offsets_retention_check_interval_ms: 600_000,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            log_retention_ms: None,
            log_retention_hours: 168,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_segment_delete_delay_ms: 60_000,
            compaction_interval_ms: 10_000,
            compaction_object_bytes_target: 32 * 1024 * 1024,
            compaction_inputs_per_job_max: 10_000,
            checkpoint_interval_entries: 1_000,
            checkpoints_retained: 2,
            metadata: None,
            cluster_name: "sluice".to_owned(),
            agent_id: None,
            zone: String::new(),
            lease_ms: 10_000,
        }
    }
}

/// Most index entries one compaction job may merge.
pub const COMMANDS_PER_JOB_INPUTS_MAX: usize = 1_000_000;

/// Most checkpoints `checkpoints_retained` may keep.
pub const CHECKPOINTS_RETAINED_MAX: usize = 100;

/// Why a configuration was refused. Each message names the key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value {value:?} for {source_name}: {reason}")]
    InvalidValue {
        source_name: String,
        value: String,
        reason: String,
    },
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Parses a TOML document; `path` is only used in error messages.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // toml's message already names the unknown key and lists the expected ones.
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// Builds the configuration from its three layers: the file (if any), the environment
    /// variables (only `SLUICE_*` ones are looked at), then the flags.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml_str(&text, path)?
            }
            None => Self::default(),
        };
        config.apply(&Overrides::from_environment(environment)?);
        config.apply(flags);
        config.validate()?;
        Ok(config)
    }

    /// Overwrites every setting that `overrides` carries.
    pub fn apply(&mut self, overrides: &Overrides) {
        overrides.apply_to(self);
    }

    /// Checks the settings that can be checked without looking at the machine (CPU ids are
    /// checked against the online set when the agent starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listeners_resolved()?;
        self.metrics_address()?;
        self.sasl_mechanisms()?;
        self.authorizer_policy()?;
        if !(1..=1_000).contains(&self.quota_window_num) {
            return Err(invalid(
                "quota_window_num",
                "must be between 1 and 1000 samples",
            ));
        }
        if !(1..=3_600).contains(&self.quota_window_size_seconds) {
            return Err(invalid(
                "quota_window_size_seconds",
                "must be between 1 and 3600 seconds",
            ));
        }
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return Err(invalid(
                    "cpus",
                    "the list is empty; give at least one CPU id",
                ));
            }
            let mut sorted = cpus.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != cpus.len() {
                return Err(invalid("cpus", format!("{cpus:?} lists a CPU twice")));
            }
        }
        if self.io_memory_bytes < IO_MEMORY_BYTES_MIN {
            return Err(invalid(
                "io_memory_bytes",
                format!(
                    "{} is below glommio's minimum of {IO_MEMORY_BYTES_MIN}",
                    self.io_memory_bytes
                ),
            ));
        }
        if self.flush_interval_ms == 0 {
            return Err(invalid("flush_interval_ms", "must be at least 1"));
        }
        if self.flush_bytes_max == 0 {
            return Err(invalid("flush_bytes_max", "must be at least 1"));
        }
        if self
            .flush_puts_per_second_max
            .is_some_and(|puts| !(1..=FLUSH_PUTS_PER_SECOND_LIMIT).contains(&puts))
        {
            return Err(invalid(
                "flush_puts_per_second_max",
                format!("must be in 1..={FLUSH_PUTS_PER_SECOND_LIMIT}"),
            ));
        }
        let inflight_limit = crate::metadata_core::FLUSH_WINDOWS_INFLIGHT_LIMIT;
        if !(1..=inflight_limit).contains(&self.flush_windows_inflight_max) {
            return Err(invalid(
                "flush_windows_inflight_max",
                format!("must be in 1..={inflight_limit}"),
            ));
        }
        let copies_limit = sluice_engine::store::hedge::COPIES_LIMIT;
        if !(1..=copies_limit).contains(&self.put_copies_max) {
            return Err(invalid(
                "put_copies_max",
                format!("must be in 1..={copies_limit}"),
            ));
        }
        if !(1..=99).contains(&self.put_hedge_percentile) {
            return Err(invalid("put_hedge_percentile", "must be in 1..=99"));
        }
        let copy_bytes_limit = sluice_engine::store::hedge::COPY_BYTES_IN_FLIGHT_LIMIT;
        if self.put_copy_bytes_in_flight_max > copy_bytes_limit {
            return Err(invalid(
                "put_copy_bytes_in_flight_max",
                format!("must be at most {copy_bytes_limit}"),
            ));
        }
        if self.flush_buffer_bytes_max < self.flush_bytes_max {
            return Err(invalid(
                "flush_buffer_bytes_max",
                format!(
                    "{} is smaller than flush_bytes_max ({}); a flush could never start",
                    self.flush_buffer_bytes_max, self.flush_bytes_max
                ),
            ));
        }
        // Kafka frames carry an i32 size; anything above i32::MAX could never be sent.
        if self.request_bytes_max == 0 || self.request_bytes_max > i32::MAX as u64 {
            return Err(invalid(
                "request_bytes_max",
                format!("must be in 1..={}", i32::MAX),
            ));
        }
        if self.default_partitions == 0 || self.default_partitions > i32::MAX as u32 {
            return Err(invalid(
                "default_partitions",
                format!("must be in 1..={}", i32::MAX),
            ));
        }
        self.validate_groups()?;
        self.validate_retention()
    }

    /// Retention and garbage-collection settings (Kafka's ranges).
    fn validate_retention(&self) -> Result<(), ConfigError> {
        if self.log_retention_ms.is_some_and(|ms| ms < -1) {
            return Err(invalid(
                "log_retention_ms",
                "must be -1 (forever) or at least 0",
            ));
        }
        if self.log_retention_hours < -1 || self.log_retention_hours > i64::MAX / 3_600_000 {
            return Err(invalid(
                "log_retention_hours",
                "must be -1 (forever) or a number of hours that fits in milliseconds",
            ));
        }
        if self.log_retention_bytes < -1 {
            return Err(invalid(
                "log_retention_bytes",
                "must be -1 (no limit) or at least 0",
            ));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.compaction_object_bytes_target) {
            return Err(invalid(
                "compaction_object_bytes_target",
                "must be in 1 MiB..=1 GiB",
            ));
        }
        if !(2..=COMMANDS_PER_JOB_INPUTS_MAX).contains(&self.compaction_inputs_per_job_max) {
            return Err(invalid(
                "compaction_inputs_per_job_max",
                format!("must be in 2..={COMMANDS_PER_JOB_INPUTS_MAX}"),
            ));
        }
        if self.checkpoint_interval_entries == 0 {
            return Err(invalid("checkpoint_interval_entries", "must be at least 1"));
        }
        if self.log_retention_check_interval_ms == 0 {
            return Err(invalid(
                "log_retention_check_interval_ms",
                "must be at least 1",
            ));
        }
        if !(sluice_engine::log::gc::CHECKPOINTS_RETAINED_MIN..=CHECKPOINTS_RETAINED_MAX)
            .contains(&self.checkpoints_retained)
        {
            return Err(invalid(
                "checkpoints_retained",
                format!(
                    "must be in {}..={CHECKPOINTS_RETAINED_MAX}",
                    sluice_engine::log::gc::CHECKPOINTS_RETAINED_MIN
                ),
            ));
        }
        Ok(())
    }

    /// The PUT budget: `flush_puts_per_second_max`, or by default as many windows a second as
    /// fixed windows of `flush_interval_ms` could seal (100 with the defaults).
    pub fn flush_puts_per_second_max(&self) -> u64 {
        self.flush_puts_per_second_max
            .unwrap_or_else(|| 1_000 / self.flush_interval_ms.max(1))
            .max(1)
    }

    /// The flusher's settings (the metadata core's window and its PUT budget).
    pub fn flush_config(&self) -> crate::metadata_core::FlushConfig {
        crate::metadata_core::FlushConfig {
            flush_interval_ms: self.flush_interval_ms,
            flush_interval_max_ms: self.flush_interval_max_ms,
            flush_bytes_max: self.flush_bytes_max,
            flush_windows_inflight_max: self.flush_windows_inflight_max,
            flush_puts_per_second_max: self.flush_puts_per_second_max(),
            flush_group_commit: self.flush_group_commit,
        }
    }

    /// The metadata log's settings.
    pub fn log_config(&self) -> sluice_engine::log::LogConfig {
        sluice_engine::log::LogConfig {
            checkpoint_interval_entries: self.checkpoint_interval_entries,
            ..sluice_engine::log::LogConfig::default()
        }
    }

    /// Retention and garbage collection, as the metadata executor runs them.
    pub fn housekeeping_config(&self) -> crate::metadata_core::housekeeping::HousekeepingConfig {
        crate::metadata_core::housekeeping::HousekeepingConfig {
            check_interval_ms: self.log_retention_check_interval_ms,
            compaction_interval_ms: self.compaction_interval_ms,
            compaction: sluice_engine::compact::CompactionConfig {
                object_bytes_target: self.compaction_object_bytes_target,
                inputs_per_job_max: self.compaction_inputs_per_job_max,
                ..sluice_engine::compact::CompactionConfig::default()
            },
            retention: self.retention_defaults(),
            gc: sluice_engine::log::gc::GcConfig {
                checkpoints_retained: self.checkpoints_retained,
                delete_delay_ms: self.log_segment_delete_delay_ms,
            },
        }
    }

    /// The broker-wide retention a topic without overrides gets.
    pub fn retention_defaults(&self) -> sluice_engine::metadata::RetentionDefaults {
        let retention_ms = self
            .log_retention_ms
            .unwrap_or(if self.log_retention_hours < 0 {
                -1
            } else {
                self.log_retention_hours.saturating_mul(3_600_000)
            });
        sluice_engine::metadata::RetentionDefaults {
            retention_ms,
            retention_bytes: self.log_retention_bytes,
        }
    }

    /// The consumer-group settings (Kafka's own constraints between them).
    fn validate_groups(&self) -> Result<(), ConfigError> {
        if self.group_min_session_timeout_ms <= 0 {
            return Err(invalid(
                "group_min_session_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return Err(invalid(
                "group_max_session_timeout_ms",
                format!(
                    "{} is below group_min_session_timeout_ms ({})",
                    self.group_max_session_timeout_ms, self.group_min_session_timeout_ms
                ),
            ));
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err(invalid(
                "offsets_retention_check_interval_ms",
                "must be at least 1",
            ));
        }
        if self.offsets_retention_ms == 0 {
            return Err(invalid("offsets_retention_ms", "must be at least 1"));
        }
        for (key, value) in [
            ("group_max_size", self.group_max_size),
            ("group_consumer_max_size", self.group_consumer_max_size),
        ] {
            if value == 0 || value > GROUP_MAX_SIZE_DEFAULT {
                return Err(invalid(
                    key,
                    format!("must be in 1..={GROUP_MAX_SIZE_DEFAULT}"),
                ));
            }
        }
        if self.group_consumer_heartbeat_interval_ms <= 0 {
            return Err(invalid(
                "group_consumer_heartbeat_interval_ms",
                "must be at least 1",
            ));
        }
        if self.group_consumer_session_timeout_ms <= self.group_consumer_heartbeat_interval_ms {
            return Err(invalid(
                "group_consumer_session_timeout_ms",
                format!(
                    "{} must be greater than group_consumer_heartbeat_interval_ms ({})",
                    self.group_consumer_session_timeout_ms,
                    self.group_consumer_heartbeat_interval_ms
                ),
            ));
        }
        if self.group_consumer_assignors.is_empty() {
            return Err(invalid(
                "group_consumer_assignors",
                "the list is empty; name at least one of uniform, range",
            ));
        }
        for (index, name) in self.group_consumer_assignors.iter().enumerate() {
            if !CONSUMER_ASSIGNORS_KNOWN.contains(&name.as_str()) {
                return Err(invalid(
                    "group_consumer_assignors",
                    format!("unknown assignor {name:?}; known: {CONSUMER_ASSIGNORS_KNOWN:?}"),
                ));
            }
            if self
                .group_consumer_assignors
                .iter()
                .take(index)
                .any(|other| other == name)
            {
                return Err(invalid(
                    "group_consumer_assignors",
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        if self.offset_metadata_bytes_max > OFFSET_METADATA_BYTES_LIMIT {
            return Err(invalid(
                "offset_metadata_bytes_max",
                format!("must be at most {OFFSET_METADATA_BYTES_LIMIT}"),
            ));
        }
        Ok(())
    }

    /// The hedging policy of the agent's object-store PUTs (`put_*` keys).
    pub fn hedge_config(&self) -> sluice_engine::store::hedge::HedgeConfig {
        sluice_engine::store::hedge::HedgeConfig {
            copies_max: self.put_copies_max,
            latency_target_ms: self.put_latency_target_ms,
            hedge_percentile: self.put_hedge_percentile,
            hedge_delay_ms_min: self.put_hedge_delay_ms_min,
            copy_bytes_in_flight_max: self.put_copy_bytes_in_flight_max,
            ..sluice_engine::store::hedge::HedgeConfig::default()
        }
    }

    /// The first address `listen` resolves to.
    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        resolve("listen", &self.listen)
    }

    /// The authorizer's policy when `authorizer = "acl"` (`None` when no authorizer is set).
    /// Refuses another authorizer name and super users not written `Type:name`.
    /// The client quotas' rate window (see `crate::quota::rate`).
    pub fn quota_window(&self) -> crate::quota::WindowSettings {
        crate::quota::WindowSettings {
            samples: self.quota_window_num.max(1),
            sample_ms: u64::from(self.quota_window_size_seconds.max(1)) * 1_000,
        }
    }

    pub fn authorizer_policy(
        &self,
    ) -> Result<Option<sluice_engine::metadata::AuthorizerPolicy>, ConfigError> {
        match self.authorizer.as_deref() {
            None => {}
            Some("acl") => {
                for user in &self.super_users {
                    if !matches!(user.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty())
                    {
                        return Err(invalid(
                            "super_users",
                            format!("'{user}' is not a principal: write it as User:NAME"),
                        ));
                    }
                }
                return Ok(Some(sluice_engine::metadata::AuthorizerPolicy {
                    super_users: self.super_users.clone(),
                    allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
                }));
            }
            Some(other) => {
                return Err(invalid(
                    "authorizer",
                    format!("unknown authorizer '{other}': the one there is is \"acl\""),
                ));
            }
        }
        Ok(None)
    }

    /// The SASL mechanisms to offer, when a listener requires SASL (`None` when none does).
    /// Refuses SASL without a users file, a users file without SASL, SASL on a TLS listener that
    /// does not exist, and unknown or no mechanisms. The users file itself is read when the agent
    /// starts ([`crate::net::sasl::Users::load`]).
    pub fn sasl_mechanisms(&self) -> Result<Option<Vec<crate::net::sasl::Mechanism>>, ConfigError> {
        if self.tls_listen_sasl && self.tls_listen.is_none() {
            return Err(invalid(
                "tls_listen_sasl",
                "SASL on the TLS listener needs a TLS listener: set tls_listen",
            ));
        }
        let any_sasl = self
            .listeners_resolved()?
            .iter()
            .any(|listener| listener.protocol.sasl());
        if !any_sasl {
            if self.sasl_users_file.is_some() {
                return Err(invalid(
                    "sasl_users_file",
                    "a SASL users file is set but no listener requires SASL: set listen_sasl \
                     (SASL_PLAINTEXT) or tls_listen_sasl (SASL_SSL), or name a SASL_PLAINTEXT or \
                     SASL_SSL listener in listeners",
                ));
            }
            if self.sasl_oauthbearer_jwks_file.is_some() {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_file",
                    "a JWKS file is set but no listener requires SASL: set listen_sasl \
                     (SASL_PLAINTEXT) or tls_listen_sasl (SASL_SSL), or name a SASL_PLAINTEXT or \
                     SASL_SSL listener in listeners",
                ));
            }
            return Ok(None);
        }
        let mut mechanisms = Vec::new();
        for name in &self.sasl_mechanisms {
            let mechanism = crate::net::sasl::Mechanism::from_name(name).ok_or_else(|| {
                invalid(
                    "sasl_mechanisms",
                    format!(
                        "{name:?} is not a mechanism this agent offers ({}, OAUTHBEARER)",
                        SASL_MECHANISMS_DEFAULT.join(", ")
                    ),
                )
            })?;
            if !mechanisms.contains(&mechanism) {
                mechanisms.push(mechanism);
            }
        }
        if mechanisms.is_empty() {
            return Err(invalid("sasl_mechanisms", "the list is empty"));
        }
        let passwords = mechanisms
            .iter()
            .any(|mechanism| mechanism.uses_passwords());
        if passwords && self.sasl_users_file.is_none() {
            return Err(invalid(
                "sasl_users_file",
                "a listener requires SASL (SASL_PLAINTEXT or SASL_SSL) with PLAIN or SCRAM \
                 but no users file is set: set sasl_users_file to a TOML file with a [users] table",
            ));
        }
        let oauth = mechanisms.contains(&crate::net::sasl::Mechanism::OAuthBearer);
        if oauth && self.sasl_oauthbearer_jwks_file.is_none() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_file",
                "sasl_mechanisms offers OAUTHBEARER but no JWKS file is set: set \
                 sasl_oauthbearer_jwks_file to the identity provider's JSON Web Key Set",
            ));
        }
        if !oauth && self.sasl_oauthbearer_jwks_file.is_some() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_file",
                "a JWKS file is set but sasl_mechanisms does not offer OAUTHBEARER",
            ));
        }
        Ok(Some(mechanisms))
    }

    /// The metrics endpoint's address, if one is configured.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.metrics_listen
            .as_deref()
            .map(|text| resolve("metrics_listen", text))
            .transpose()
    }

    /// The address advertised to clients: `advertised_listen`, else `listen`.
    pub fn advertised_address(&self) -> Result<(String, u16), ConfigError> {
        advertised(
            "advertised_listen",
            self.advertised_listen.as_deref(),
            "listen",
            &self.listen,
        )
    }
}

/// `HOST:PORT` clients are told for a listener: `advertised_key`'s value, else `listen_key`'s.
fn advertised(
    advertised_key: &'static str,
    advertised: Option<&str>,
    listen_key: &'static str,
    listen: &str,
) -> Result<(String, u16), ConfigError> {
    {
        let (key, text) = match advertised {
            Some(text) => (advertised_key, text),
            None => (listen_key, listen),
        };
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, format!("{text:?} is not HOST:PORT")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, format!("{text:?} has no valid port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // Telling clients to connect to 0.0.0.0 sends them to their own machine.
        if host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err(invalid(
                advertised_key,
                format!(
                    "{text:?} ({key}) is not an address clients can reach; set {advertised_key}"
                ),
            ));
        }
        Ok((host.to_owned(), port))
    }
}

fn resolve(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.to_socket_addrs()
        .map_err(|error| invalid(key, format!("{text:?} is not a usable HOST:PORT: {error}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{text:?} resolves to no address")))
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn no_environment() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn the_put_budget_defaults_to_what_fixed_windows_cost() {
        let config = Config::default();
        assert_eq!(config.flush_puts_per_second_max(), 100);
        assert!(config.flush_group_commit);
        let flush = config.flush_config();
        assert_eq!(flush.flush_puts_per_second_max, 100);
        assert!(flush.flush_group_commit);
        let slower = Config {
            flush_interval_ms: 25,
            ..Config::default()
        };
        assert_eq!(slower.flush_puts_per_second_max(), 40);
        let slowest = Config {
            flush_interval_ms: 5_000,
            ..Config::default()
        };
        assert_eq!(
            slowest.flush_puts_per_second_max(),
            1,
            "at least one a second"
        );
        let set = Config {
            flush_puts_per_second_max: Some(250),
            ..Config::default()
        };
        assert_eq!(set.flush_puts_per_second_max(), 250);
        assert!(set.validate().is_ok());
    }

    #[test]
    fn defaults_are_valid_and_match_the_documentation() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.listen, "127.0.0.1:9092");
        assert_eq!(config.flush_interval_ms, 10);
        assert_eq!(config.flush_bytes_max, 8 << 20);
        assert_eq!(config.flush_windows_inflight_max, 128);
        assert_eq!(config.flush_interval_max_ms, 50);
        assert_eq!(config.put_copies_max, 6);
        assert_eq!(config.hedge_config().latency_target_ms, 15);
        assert_eq!(config.hedge_config().copy_bytes_in_flight_max, 8 << 20);
        assert_eq!(config.request_bytes_max, 100 << 20);
        assert!(config.auto_create_topics);
        assert_eq!(config.default_partitions, 1);
        assert_eq!(config.group_initial_rebalance_delay_ms, 3_000);
        assert_eq!(config.group_min_session_timeout_ms, 6_000);
        assert_eq!(config.group_max_session_timeout_ms, 1_800_000);
        assert_eq!(config.group_consumer_heartbeat_interval_ms, 5_000);
        assert_eq!(config.group_consumer_session_timeout_ms, 45_000);
        assert_eq!(config.group_consumer_assignors, ["uniform", "range"]);
        assert_eq!(config.group_max_size, 2_147_483_647);
        assert_eq!(config.group_consumer_max_size, 2_147_483_647);
        assert_eq!(config.offset_metadata_bytes_max, 4096);
        assert_eq!(config.offsets_retention_check_interval_ms, 600_000);
        assert_eq!(config.offsets_retention_ms, 604_800_000);
    }

    #[test]
    fn group_settings_are_read_from_the_file_and_checked() {
        let text = "group_consumer_assignors = [\"range\"]\ngroup_initial_rebalance_delay_ms = 0\n";
        let config = Config::from_toml_str(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.group_consumer_assignors, ["range"]);
        assert_eq!(config.group_initial_rebalance_delay_ms, 0);
        config.validate().unwrap();
        let cases: Vec<(&str, Config)> = vec![
            (
                "group_consumer_assignors",
                Config {
                    group_consumer_assignors: vec!["sticky".to_owned()],
                    ..Config::default()
                },
            ),
            (
                "group_consumer_assignors",
                Config {
                    group_consumer_assignors: vec![],
                    ..Config::default()
                },
            ),
            (
                "group_consumer_assignors",
                Config {
                    group_consumer_assignors: vec!["range".to_owned(), "range".to_owned()],
                    ..Config::default()
                },
            ),
            (
                "group_max_session_timeout_ms",
                Config {
                    group_max_session_timeout_ms: 5_000,
                    ..Config::default()
                },
            ),
            (
                "group_min_session_timeout_ms",
                Config {
                    group_min_session_timeout_ms: 0,
                    ..Config::default()
                },
            ),
            (
                "offsets_retention_check_interval_ms",
                Config {
                    offsets_retention_check_interval_ms: 0,
                    ..Config::default()
                },
            ),
            (
                "offsets_retention_ms",
                Config {
                    offsets_retention_ms: 0,
                    ..Config::default()
                },
            ),
            (
                "group_max_size",
                Config {
                    group_max_size: 0,
                    ..Config::default()
                },
            ),
            (
                "group_consumer_max_size",
                Config {
                    group_consumer_max_size: u32::MAX,
                    ..Config::default()
                },
            ),
            (
                "group_consumer_session_timeout_ms",
                Config {
                    group_consumer_session_timeout_ms: 5_000,
                    ..Config::default()
                },
            ),
            (
                "offset_metadata_bytes_max",
                Config {
                    offset_metadata_bytes_max: 1 << 20,
                    ..Config::default()
                },
            ),
        ];
        for (key, config) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn file_values_override_defaults() {
        let text = "listen = \"127.0.0.1:19092\"\ncpus = [1]\nflush_interval_ms = 25\n";
        let config = Config::from_toml_str(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:19092");
        assert_eq!(config.cpus, Some(vec![1]));
        assert_eq!(config.flush_interval_ms, 25);
        assert_eq!(config.flush_bytes_max, Config::default().flush_bytes_max);
    }

    #[test]
    fn unknown_key_is_an_error_that_names_it() {
        let error = Config::from_toml_str("flush_intervall_ms = 5\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("flush_intervall_ms"), "{error}");
        assert!(error.contains("x.toml"), "{error}");
    }

    #[test]
    fn the_authorizer_is_acl_or_nothing_and_super_users_are_principals() {
        let text = "authorizer = \"acl\"\nsuper_users = [\"User:admin\"]\n\
                    allow_everyone_if_no_acl_found = true\n";
        let config = Config::from_toml_str(text, Path::new("x.toml")).unwrap();
        let policy = config.authorizer_policy().unwrap().unwrap();
        assert_eq!(policy.super_users, ["User:admin"]);
        assert!(policy.allow_everyone_if_no_acl_found);
        assert_eq!(Config::default().authorizer_policy().unwrap(), None);
        let other = Config {
            authorizer: Some("ranger".to_owned()),
            ..Config::default()
        };
        assert!(
            other
                .validate()
                .unwrap_err()
                .to_string()
                .contains("authorizer")
        );
        let bad_user = Config {
            authorizer: Some("acl".to_owned()),
            super_users: vec!["admin".to_owned()],
            ..Config::default()
        };
        assert!(
            bad_user
                .validate()
                .unwrap_err()
                .to_string()
                .contains("super_users")
        );
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert!(Config::from_toml_str("cpus = \"all\"\n", Path::new("x.toml")).is_err());
    }

    #[test]
    fn precedence_is_file_then_environment_then_flags() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("sluice.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1000\"\nflush_interval_ms = 20\ndata_dir = \"/f\"\n",
        )
        .unwrap();
        let environment = vec![
            ("SLUICE_LISTEN".to_owned(), "127.0.0.1:2000".to_owned()),
            ("SLUICE_FLUSH_INTERVAL_MS".to_owned(), "30".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let flags = Overrides {
            listen: Some("127.0.0.1:3000".to_owned()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), environment, &flags).unwrap();
        assert_eq!(
            config.listen, "127.0.0.1:3000",
            "flag wins over env and file"
        );
        assert_eq!(config.flush_interval_ms, 30, "env wins over file");
        assert_eq!(
            config.data_dir,
            PathBuf::from("/f"),
            "file wins over default"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let cases: Vec<(&str, Config)> = vec![
            (
                "cpus",
                Config {
                    cpus: Some(vec![]),
                    ..Config::default()
                },
            ),
            (
                "cpus",
                Config {
                    cpus: Some(vec![0, 0]),
                    ..Config::default()
                },
            ),
            (
                "io_memory_bytes",
                Config {
                    io_memory_bytes: 4096,
                    ..Config::default()
                },
            ),
            (
                "flush_interval_ms",
                Config {
                    flush_interval_ms: 0,
                    ..Config::default()
                },
            ),
            (
                "flush_puts_per_second_max",
                Config {
                    flush_puts_per_second_max: Some(0),
                    ..Config::default()
                },
            ),
            (
                "flush_puts_per_second_max",
                Config {
                    flush_puts_per_second_max: Some(FLUSH_PUTS_PER_SECOND_LIMIT + 1),
                    ..Config::default()
                },
            ),
            (
                "put_copies_max",
                Config {
                    put_copies_max: 0,
                    ..Config::default()
                },
            ),
            (
                "put_hedge_percentile",
                Config {
                    put_hedge_percentile: 100,
                    ..Config::default()
                },
            ),
            (
                "put_copy_bytes_in_flight_max",
                Config {
                    put_copy_bytes_in_flight_max: (1 << 30) + 1,
                    ..Config::default()
                },
            ),
            (
                "flush_windows_inflight_max",
                Config {
                    flush_windows_inflight_max: 1025,
                    ..Config::default()
                },
            ),
            (
                "request_bytes_max",
                Config {
                    request_bytes_max: 1 << 40,
                    ..Config::default()
                },
            ),
            (
                "default_partitions",
                Config {
                    default_partitions: 0,
                    ..Config::default()
                },
            ),
            (
                "listen",
                Config {
                    listen: "no-port".to_owned(),
                    ..Config::default()
                },
            ),
        ];
        for (key, config) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let error = Config::load(
            Some(Path::new("/nonexistent/sluice.toml")),
            no_environment(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }

    #[test]
    fn advertised_address_defaults_to_listen() {
        let config = Config {
            listen: "127.0.0.1:9999".to_owned(),
            ..Config::default()
        };
        assert_eq!(
            config.advertised_address().unwrap(),
            ("127.0.0.1".to_owned(), 9999)
        );
        let config = Config {
            advertised_listen: Some("[::1]:9".to_owned()),
            ..config
        };
        assert_eq!(config.advertised_address().unwrap(), ("::1".to_owned(), 9));
        let wildcard = Config {
            listen: "0.0.0.0:9092".to_owned(),
            ..Config::default()
        };
        let error = wildcard.validate().unwrap_err().to_string();
        assert!(error.contains("advertised_listen"), "{error}");
        let wildcard = Config {
            advertised_listen: Some("kafka.example.com:9092".to_owned()),
            ..wildcard
        };
        wildcard.validate().unwrap();
    }
}
