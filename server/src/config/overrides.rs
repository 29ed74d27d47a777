//! The environment and flag layers of the configuration.
//!
//! Both layers are the same data, [`Overrides`]: every key optional. The flags come from clap
//! (this struct is also the `sluice serve` argument group); the environment is parsed here from
//! an explicit list of `(name, value)` pairs rather than read from the process, so tests do not
//! race on `std::env::set_var`.

use std::path::PathBuf;
use std::str::FromStr;

use super::{Config, ConfigError};

/// A list of CPU ids as written on the command line or in `SLUICE_CPUS`: `0,2,4-7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_cpu_list(text).map(CpuList)
    }
}

/// Parses `0,2,4-7` into `[0, 2, 4, 5, 6, 7]`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    // A range wider than this is a typo, not a machine; the limit keeps a bad value from
    // allocating a huge vector.
    const CPU_ID_MAX: usize = 65_535;
    let mut cpus = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let number = |text: &str| -> Result<usize, String> {
            let cpu: usize = text
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a CPU id"))?;
            if cpu > CPU_ID_MAX {
                return Err(format!("CPU id {cpu} is above {CPU_ID_MAX}"));
            }
            Ok(cpu)
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("range {part:?} is backwards"));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(number(part)?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("{text:?} lists no CPU"));
    }
    Ok(cpus)
}

/// A comma-separated list of names as written on the command line or in an environment
/// variable: `uniform,range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl FromStr for NameList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let names: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(format!("{text:?} lists no name"));
        }
        Ok(NameList(names))
    }
}

/// Settings given on top of the file, by environment or by flag. `None` leaves the setting as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Overrides {
    /// Named Kafka listeners, NAME://HOST:PORT,... [env SLUICE_LISTENERS]
    #[arg(long, value_name = "LIST")]
    pub listeners: Option<NameList>,
    /// Addresses advertised per listener, NAME://HOST:PORT,... [env SLUICE_ADVERTISED_LISTENERS]
    #[arg(long, value_name = "LIST")]
    pub advertised_listeners: Option<NameList>,
    /// Security protocol of each listener, NAME:PROTOCOL,... [env SLUICE_LISTENER_SECURITY_PROTOCOL_MAP]
    #[arg(long, value_name = "LIST")]
    pub listener_security_protocol_map: Option<NameList>,
    /// Listener address, HOST:PORT [env SLUICE_LISTEN]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address advertised to clients, HOST:PORT [env SLUICE_ADVERTISED_LISTEN]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listen: Option<String>,
    /// The cluster's metadata log in PostgreSQL, postgres://… [env SLUICE_METADATA]
    #[arg(long, value_name = "URL")]
    pub metadata: Option<String>,
    /// This agent's zone [env SLUICE_ZONE]
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// This agent's id in the cluster [env SLUICE_AGENT_ID]
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Metrics and health endpoint, HOST:PORT [env SLUICE_METRICS_LISTEN]
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// TLS listener address, HOST:PORT [env SLUICE_TLS_LISTEN]
    #[arg(long, value_name = "HOST:PORT")]
    pub tls_listen: Option<String>,
    /// Address advertised to TLS clients, HOST:PORT [env SLUICE_TLS_ADVERTISED_LISTEN]
    #[arg(long, value_name = "HOST:PORT")]
    pub tls_advertised_listen: Option<String>,
    /// TLS certificate chain, PEM [env SLUICE_TLS_CERT_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key, PEM [env SLUICE_TLS_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates clients' certificates must chain to (mTLS), PEM [env SLUICE_TLS_CLIENT_CA_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// The plaintext listener requires SASL (SASL_PLAINTEXT) [env SLUICE_LISTEN_SASL]
    #[arg(long, value_name = "BOOL")]
    pub listen_sasl: Option<bool>,
    /// The TLS listener requires SASL (SASL_SSL) [env SLUICE_TLS_LISTEN_SASL]
    #[arg(long, value_name = "BOOL")]
    pub tls_listen_sasl: Option<bool>,
    /// SASL mechanisms offered, e.g. SCRAM-SHA-512,PLAIN [env SLUICE_SASL_MECHANISMS]
    #[arg(long, value_name = "LIST")]
    pub sasl_mechanisms: Option<NameList>,
    /// TOML file of SASL users and passwords [env SLUICE_SASL_USERS_FILE]
    #[arg(long, value_name = "FILE")]
    pub sasl_users_file: Option<PathBuf>,
    /// Failed SASL logins from one address that lock it out; 0 = off [env SLUICE_SASL_FAILED_LOGINS_MAX]
    #[arg(long, value_name = "COUNT")]
    pub sasl_failed_logins_max: Option<u32>,
    /// Window failed SASL logins are counted over [env SLUICE_SASL_FAILED_LOGINS_WINDOW_MS]
    #[arg(long, value_name = "MS")]
    pub sasl_failed_logins_window_ms: Option<u64>,
    /// How long a locked-out address is refused [env SLUICE_SASL_LOCKOUT_MS]
    #[arg(long, value_name = "MS")]
    pub sasl_lockout_ms: Option<u64>,
    /// Longest a SASL session lasts before re-authentication; 0 = off [env SLUICE_CONNECTIONS_MAX_REAUTH_MS]
    #[arg(long, value_name = "MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// JWKS file whose keys sign OAUTHBEARER tokens [env SLUICE_SASL_OAUTHBEARER_JWKS_FILE]
    #[arg(long, value_name = "FILE")]
    pub sasl_oauthbearer_jwks_file: Option<PathBuf>,
    /// The `iss` OAUTHBEARER tokens must carry [env SLUICE_SASL_OAUTHBEARER_EXPECTED_ISSUER]
    #[arg(long, value_name = "ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// Audiences, one of which OAUTHBEARER tokens must carry [env SLUICE_SASL_OAUTHBEARER_EXPECTED_AUDIENCE]
    #[arg(long, value_name = "LIST")]
    pub sasl_oauthbearer_expected_audience: Option<NameList>,
    /// The token claim naming the principal [env SLUICE_SASL_OAUTHBEARER_SUB_CLAIM_NAME]
    #[arg(long, value_name = "NAME")]
    pub sasl_oauthbearer_sub_claim_name: Option<String>,
    /// Leeway on a token's exp and nbf [env SLUICE_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS]
    #[arg(long, value_name = "SECONDS")]
    pub sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    /// Directory for the agent's local files [env SLUICE_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Object store URL [env SLUICE_STORE]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// CPU ids for network executors, e.g. 0,2-3 [env SLUICE_CPUS]
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,
    /// CPU id for the metadata executor [env SLUICE_METADATA_CPU]
    #[arg(long, value_name = "CPU")]
    pub metadata_cpu: Option<usize>,
    /// Per-core flush buffer limit in bytes [env SLUICE_FLUSH_BUFFER_BYTES_MAX]
    #[arg(long, value_name = "BYTES")]
    pub flush_buffer_bytes_max: Option<u64>,
    /// Per-core block cache limit in bytes [env SLUICE_BLOCK_CACHE_BYTES_MAX]
    #[arg(long, value_name = "BYTES")]
    pub block_cache_bytes_max: Option<u64>,
    /// Fetch sessions kept per core [env SLUICE_FETCH_SESSIONS_MAX]
    #[arg(long, value_name = "COUNT")]
    pub fetch_sessions_max: Option<usize>,
    /// Client quotas: samples per rate window [env SLUICE_QUOTA_WINDOW_NUM]
    #[arg(long, value_name = "COUNT")]
    pub quota_window_num: Option<u32>,
    /// Client quotas: seconds per sample [env SLUICE_QUOTA_WINDOW_SIZE_SECONDS]
    #[arg(long, value_name = "SECONDS")]
    pub quota_window_size_seconds: Option<u32>,
    /// glommio io memory per executor in bytes [env SLUICE_IO_MEMORY_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub io_memory_bytes: Option<u64>,
    /// Longest wait before buffered data is flushed [env SLUICE_FLUSH_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub flush_interval_ms: Option<u64>,
    /// Buffered bytes that start a flush early [env SLUICE_FLUSH_BYTES_MAX]
    #[arg(long, value_name = "BYTES")]
    pub flush_bytes_max: Option<u64>,
    /// Flush windows (PUTs) in flight at once [env SLUICE_FLUSH_WINDOWS_INFLIGHT_MAX]
    #[arg(long, value_name = "COUNT")]
    pub flush_windows_inflight_max: Option<usize>,
    /// Longest flush window when PUTs are slow [env SLUICE_FLUSH_INTERVAL_MAX_MS]
    #[arg(long, value_name = "MS")]
    pub flush_interval_max_ms: Option<u64>,
    /// Flush windows (PUTs) sealed per second at most; default 1000 / flush_interval_ms [env SLUICE_FLUSH_PUTS_PER_SECOND_MAX]
    #[arg(long, value_name = "COUNT")]
    pub flush_puts_per_second_max: Option<u64>,
    /// Seal windows early when the store is idle, within the PUT budget [env SLUICE_FLUSH_GROUP_COMMIT]
    #[arg(long, value_name = "BOOL")]
    pub flush_group_commit: Option<bool>,
    /// Copies of one log entry's PUT at most; 1 turns hedging off [env SLUICE_PUT_COPIES_MAX]
    #[arg(long, value_name = "COUNT")]
    pub put_copies_max: Option<u32>,
    /// PUT time that copies at once aim for [env SLUICE_PUT_LATENCY_TARGET_MS]
    #[arg(long, value_name = "MS")]
    pub put_latency_target_ms: Option<u64>,
    /// Percentile of PUT times after which a hedge starts [env SLUICE_PUT_HEDGE_PERCENTILE]
    #[arg(long, value_name = "PERCENT")]
    pub put_hedge_percentile: Option<u32>,
    /// Floor of the hedge delay [env SLUICE_PUT_HEDGE_DELAY_MS_MIN]
    #[arg(long, value_name = "MS")]
    pub put_hedge_delay_ms_min: Option<u64>,
    /// Payload bytes of extra PUT copies in flight at most; 0 sends first copies only [env SLUICE_PUT_COPY_BYTES_IN_FLIGHT_MAX]
    #[arg(long, value_name = "BYTES")]
    pub put_copy_bytes_in_flight_max: Option<u64>,
    /// Largest accepted request frame in bytes [env SLUICE_REQUEST_BYTES_MAX]
    #[arg(long, value_name = "BYTES")]
    pub request_bytes_max: Option<u64>,
    /// Create unknown topics on metadata requests [env SLUICE_AUTO_CREATE_TOPICS]
    #[arg(long, value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// `acl`: check requests against ACL bindings [env SLUICE_AUTHORIZER]
    #[arg(long, value_name = "NAME")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, e.g. User:admin [env SLUICE_SUPER_USERS]
    #[arg(long, value_name = "LIST")]
    pub super_users: Option<NameList>,
    /// Allow requests on resources no ACL names [env SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND]
    #[arg(long, value_name = "BOOL")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// Partition count of auto-created topics [env SLUICE_DEFAULT_PARTITIONS]
    #[arg(long, value_name = "COUNT")]
    pub default_partitions: Option<u32>,
    /// First rebalance delay of an empty classic group [env SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS]
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Shortest classic session timeout [env SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS]
    #[arg(long, value_name = "MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Longest classic session timeout [env SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS]
    #[arg(long, value_name = "MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Most members of one classic group [env SLUICE_GROUP_MAX_SIZE]
    #[arg(long, value_name = "COUNT")]
    pub group_max_size: Option<u32>,
    /// KIP-848 heartbeat interval [env SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    /// KIP-848 session timeout [env SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS]
    #[arg(long, value_name = "MS")]
    pub group_consumer_session_timeout_ms: Option<i32>,
    /// KIP-848 server assignors, default first, e.g. uniform,range [env SLUICE_GROUP_CONSUMER_ASSIGNORS]
    #[arg(long, value_name = "LIST")]
    pub group_consumer_assignors: Option<NameList>,
    /// Most members of one KIP-848 group [env SLUICE_GROUP_CONSUMER_MAX_SIZE]
    #[arg(long, value_name = "COUNT")]
    pub group_consumer_max_size: Option<u32>,
    /// Longest offset commit metadata in bytes [env SLUICE_OFFSET_METADATA_BYTES_MAX]
    #[arg(long, value_name = "BYTES")]
    pub offset_metadata_bytes_max: Option<usize>,
    /// How often empty groups without offsets are forgotten [env SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// How long a group without members keeps its offsets [env SLUICE_OFFSETS_RETENTION_MS]
    #[arg(long, value_name = "MS")]
    pub offsets_retention_ms: Option<u64>,
    /// How long topics keep records by default, -1 = forever [env SLUICE_LOG_RETENTION_MS]
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub log_retention_ms: Option<i64>,
    /// Default retention in hours when log_retention_ms is unset [env SLUICE_LOG_RETENTION_HOURS]
    #[arg(long, value_name = "HOURS", allow_negative_numbers = true)]
    pub log_retention_hours: Option<i64>,
    /// Bytes per partition kept by default, -1 = no limit [env SLUICE_LOG_RETENTION_BYTES]
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub log_retention_bytes: Option<i64>,
    /// How often retention and garbage collection run [env SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// How long an unneeded object waits before deletion [env SLUICE_LOG_SEGMENT_DELETE_DELAY_MS]
    #[arg(long, value_name = "MS")]
    pub log_segment_delete_delay_ms: Option<u64>,
    /// How often compaction looks for work, 0 = off [env SLUICE_COMPACTION_INTERVAL_MS]
    #[arg(long, value_name = "MS")]
    pub compaction_interval_ms: Option<u64>,
    /// Size a compacted object aims at [env SLUICE_COMPACTION_OBJECT_BYTES_TARGET]
    #[arg(long, value_name = "BYTES")]
    pub compaction_object_bytes_target: Option<u64>,
    /// Index entries one compaction job merges at most [env SLUICE_COMPACTION_INPUTS_PER_JOB_MAX]
    #[arg(long, value_name = "COUNT")]
    pub compaction_inputs_per_job_max: Option<usize>,
    /// Metadata-log entries between checkpoints [env SLUICE_CHECKPOINT_INTERVAL_ENTRIES]
    #[arg(long, value_name = "COUNT")]
    pub checkpoint_interval_entries: Option<u64>,
    /// Newest metadata-log checkpoints kept [env SLUICE_CHECKPOINTS_RETAINED]
    #[arg(long, value_name = "COUNT")]
    pub checkpoints_retained: Option<usize>,
}

/// Environment variables that are not settings but are still ours, so not warned about.
const ENVIRONMENT_NON_SETTINGS: &[&str] = &["SLUICE_LOG"];

impl Overrides {
    /// Reads the `SLUICE_*` variables out of `environment`; other variables are ignored. An
    /// unknown `SLUICE_*` name is logged (not an error: wrappers and test harnesses set their own
    /// `SLUICE_` variables), a bad value is an error naming the variable.
    pub fn from_environment(
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut overrides = Self::default();
        for (name, value) in environment {
            let Some(key) = name.strip_prefix("SLUICE_") else {
                continue;
            };
            let parsed = |reason: String| ConfigError::InvalidValue {
                source_name: name.clone(),
                value: value.clone(),
                reason,
            };
            match key {
                "LISTENERS" => overrides.listeners = Some(value.parse().map_err(parsed)?),
                "ADVERTISED_LISTENERS" => {
                    overrides.advertised_listeners = Some(value.parse().map_err(parsed)?);
                }
                "LISTENER_SECURITY_PROTOCOL_MAP" => {
                    overrides.listener_security_protocol_map = Some(value.parse().map_err(parsed)?);
                }
                "LISTEN" => overrides.listen = Some(value.clone()),
                "ADVERTISED_LISTEN" => overrides.advertised_listen = Some(value.clone()),
                "METADATA" => overrides.metadata = Some(value.clone()),
                "ZONE" => overrides.zone = Some(value.clone()),
                "AGENT_ID" => overrides.agent_id = Some(value.clone()),
                "METRICS_LISTEN" => overrides.metrics_listen = Some(value.clone()),
                "TLS_LISTEN" => overrides.tls_listen = Some(value.clone()),
                "TLS_ADVERTISED_LISTEN" => overrides.tls_advertised_listen = Some(value.clone()),
                "TLS_CERT_FILE" => overrides.tls_cert_file = Some(PathBuf::from(&value)),
                "TLS_KEY_FILE" => overrides.tls_key_file = Some(PathBuf::from(&value)),
                "TLS_CLIENT_CA_FILE" => overrides.tls_client_ca_file = Some(PathBuf::from(&value)),
                "LISTEN_SASL" => overrides.listen_sasl = Some(boolean(&value).map_err(parsed)?),
                "TLS_LISTEN_SASL" => {
                    overrides.tls_listen_sasl = Some(boolean(&value).map_err(parsed)?);
                }
                "SASL_MECHANISMS" => {
                    overrides.sasl_mechanisms = Some(value.parse().map_err(parsed)?);
                }
                "SASL_USERS_FILE" => overrides.sasl_users_file = Some(PathBuf::from(&value)),
                "SASL_FAILED_LOGINS_MAX" => {
                    overrides.sasl_failed_logins_max = Some(number(&value).map_err(parsed)?);
                }
                "SASL_FAILED_LOGINS_WINDOW_MS" => {
                    overrides.sasl_failed_logins_window_ms = Some(number(&value).map_err(parsed)?);
                }
                "SASL_LOCKOUT_MS" => {
                    overrides.sasl_lockout_ms = Some(number(&value).map_err(parsed)?);
                }
                "CONNECTIONS_MAX_REAUTH_MS" => {
                    overrides.connections_max_reauth_ms = Some(number(&value).map_err(parsed)?);
                }
                "SASL_OAUTHBEARER_JWKS_FILE" => {
                    overrides.sasl_oauthbearer_jwks_file = Some(PathBuf::from(&value));
                }
                "SASL_OAUTHBEARER_EXPECTED_ISSUER" => {
                    overrides.sasl_oauthbearer_expected_issuer = Some(value.clone());
                }
                "SASL_OAUTHBEARER_EXPECTED_AUDIENCE" => {
                    overrides.sasl_oauthbearer_expected_audience =
                        Some(value.parse().map_err(parsed)?);
                }
                "SASL_OAUTHBEARER_SUB_CLAIM_NAME" => {
                    overrides.sasl_oauthbearer_sub_claim_name = Some(value.clone());
                }
                "SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS" => {
                    overrides.sasl_oauthbearer_clock_skew_seconds =
                        Some(number(&value).map_err(parsed)?);
                }
                "DATA_DIR" => overrides.data_dir = Some(PathBuf::from(&value)),
                "STORE" => overrides.store = Some(value.clone()),
                "CPUS" => overrides.cpus = Some(value.parse().map_err(parsed)?),
                "METADATA_CPU" => overrides.metadata_cpu = Some(number(&value).map_err(parsed)?),
                "FLUSH_BUFFER_BYTES_MAX" => {
                    overrides.flush_buffer_bytes_max = Some(number(&value).map_err(parsed)?);
                }
                "BLOCK_CACHE_BYTES_MAX" => {
                    overrides.block_cache_bytes_max = Some(number(&value).map_err(parsed)?);
                }
                "FETCH_SESSIONS_MAX" => {
                    overrides.fetch_sessions_max = Some(number(&value).map_err(parsed)?);
                }
                "QUOTA_WINDOW_NUM" => {
                    overrides.quota_window_num = Some(number(&value).map_err(parsed)?);
                }
                "QUOTA_WINDOW_SIZE_SECONDS" => {
                    overrides.quota_window_size_seconds = Some(number(&value).map_err(parsed)?);
                }
                "IO_MEMORY_BYTES" => {
                    overrides.io_memory_bytes = Some(number(&value).map_err(parsed)?)
                }
                "FLUSH_INTERVAL_MS" => {
                    overrides.flush_interval_ms = Some(number(&value).map_err(parsed)?);
                }
                "FLUSH_BYTES_MAX" => {
                    overrides.flush_bytes_max = Some(number(&value).map_err(parsed)?)
                }
                "FLUSH_WINDOWS_INFLIGHT_MAX" => {
                    overrides.flush_windows_inflight_max = Some(number(&value).map_err(parsed)?);
                }
                "FLUSH_INTERVAL_MAX_MS" => {
                    overrides.flush_interval_max_ms = Some(number(&value).map_err(parsed)?);
                }
                "FLUSH_PUTS_PER_SECOND_MAX" => {
                    overrides.flush_puts_per_second_max = Some(number(&value).map_err(parsed)?);
                }
                "FLUSH_GROUP_COMMIT" => {
                    overrides.flush_group_commit = Some(boolean(&value).map_err(parsed)?);
                }
                "PUT_COPIES_MAX" => {
                    overrides.put_copies_max = Some(number(&value).map_err(parsed)?);
                }
                "PUT_LATENCY_TARGET_MS" => {
                    overrides.put_latency_target_ms = Some(number(&value).map_err(parsed)?);
                }
                "PUT_HEDGE_PERCENTILE" => {
                    overrides.put_hedge_percentile = Some(number(&value).map_err(parsed)?);
                }
                "PUT_HEDGE_DELAY_MS_MIN" => {
                    overrides.put_hedge_delay_ms_min = Some(number(&value).map_err(parsed)?);
                }
                "PUT_COPY_BYTES_IN_FLIGHT_MAX" => {
                    overrides.put_copy_bytes_in_flight_max = Some(number(&value).map_err(parsed)?);
                }
                "REQUEST_BYTES_MAX" => {
                    overrides.request_bytes_max = Some(number(&value).map_err(parsed)?);
                }
                "AUTO_CREATE_TOPICS" => {
                    overrides.auto_create_topics = Some(boolean(&value).map_err(parsed)?);
                }
                "AUTHORIZER" => overrides.authorizer = Some(value.clone()),
                "SUPER_USERS" => overrides.super_users = Some(value.parse().map_err(parsed)?),
                "ALLOW_EVERYONE_IF_NO_ACL_FOUND" => {
                    overrides.allow_everyone_if_no_acl_found =
                        Some(boolean(&value).map_err(parsed)?);
                }
                "DEFAULT_PARTITIONS" => {
                    overrides.default_partitions = Some(number(&value).map_err(parsed)?);
                }
                "GROUP_INITIAL_REBALANCE_DELAY_MS" => {
                    overrides.group_initial_rebalance_delay_ms =
                        Some(number(&value).map_err(parsed)?);
                }
                "GROUP_MIN_SESSION_TIMEOUT_MS" => {
                    overrides.group_min_session_timeout_ms = Some(number(&value).map_err(parsed)?);
                }
                "GROUP_MAX_SESSION_TIMEOUT_MS" => {
                    overrides.group_max_session_timeout_ms = Some(number(&value).map_err(parsed)?);
                }
                "GROUP_MAX_SIZE" => {
                    overrides.group_max_size = Some(number(&value).map_err(parsed)?);
                }
                "GROUP_CONSUMER_MAX_SIZE" => {
                    overrides.group_consumer_max_size = Some(number(&value).map_err(parsed)?);
                }
                "GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS" => {
                    overrides.group_consumer_heartbeat_interval_ms =
                        Some(number(&value).map_err(parsed)?);
                }
                "GROUP_CONSUMER_SESSION_TIMEOUT_MS" => {
                    overrides.group_consumer_session_timeout_ms =
                        Some(number(&value).map_err(parsed)?);
                }
                "GROUP_CONSUMER_ASSIGNORS" => {
                    overrides.group_consumer_assignors = Some(value.parse().map_err(parsed)?);
                }
                "OFFSET_METADATA_BYTES_MAX" => {
                    overrides.offset_metadata_bytes_max = Some(number(&value).map_err(parsed)?);
                }
                "OFFSETS_RETENTION_CHECK_INTERVAL_MS" => {
                    overrides.offsets_retention_check_interval_ms =
                        Some(number(&value).map_err(parsed)?);
                }
                "OFFSETS_RETENTION_MS" => {
                    overrides.offsets_retention_ms = Some(number(&value).map_err(parsed)?);
                }
                "LOG_RETENTION_MS" => {
                    overrides.log_retention_ms = Some(number(&value).map_err(parsed)?);
                }
                "LOG_RETENTION_HOURS" => {
                    overrides.log_retention_hours = Some(number(&value).map_err(parsed)?);
                }
                "LOG_RETENTION_BYTES" => {
                    overrides.log_retention_bytes = Some(number(&value).map_err(parsed)?);
                }
                "LOG_RETENTION_CHECK_INTERVAL_MS" => {
                    overrides.log_retention_check_interval_ms =
                        Some(number(&value).map_err(parsed)?);
                }
                "LOG_SEGMENT_DELETE_DELAY_MS" => {
                    overrides.log_segment_delete_delay_ms = Some(number(&value).map_err(parsed)?);
                }
                "COMPACTION_INTERVAL_MS" => {
                    overrides.compaction_interval_ms = Some(number(&value).map_err(parsed)?);
                }
                "COMPACTION_OBJECT_BYTES_TARGET" => {
                    overrides.compaction_object_bytes_target =
                        Some(number(&value).map_err(parsed)?);
                }
                "COMPACTION_INPUTS_PER_JOB_MAX" => {
                    overrides.compaction_inputs_per_job_max = Some(number(&value).map_err(parsed)?);
                }
                "CHECKPOINT_INTERVAL_ENTRIES" => {
                    overrides.checkpoint_interval_entries = Some(number(&value).map_err(parsed)?);
                }
                "CHECKPOINTS_RETAINED" => {
                    overrides.checkpoints_retained = Some(number(&value).map_err(parsed)?);
                }
                _ if ENVIRONMENT_NON_SETTINGS.contains(&name.as_str()) => {}
                _ => {
                    tracing::warn!(variable = %name, "ignoring unknown SLUICE_ environment variable")
                }
            }
        }
        Ok(overrides)
    }

    pub(super) fn apply_to(&self, config: &mut Config) {
        fn set<T: Clone>(target: &mut T, value: Option<&T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        for (target, value) in [
            (&mut config.listeners, &self.listeners),
            (&mut config.advertised_listeners, &self.advertised_listeners),
            (
                &mut config.listener_security_protocol_map,
                &self.listener_security_protocol_map,
            ),
        ] {
            if let Some(NameList(items)) = value {
                target.clone_from(items);
            }
        }
        if let Some(listen) = &self.listen {
            config.listen.clone_from(listen);
        }
        if self.advertised_listen.is_some() {
            config.advertised_listen.clone_from(&self.advertised_listen);
        }
        if self.metadata.is_some() {
            config.metadata.clone_from(&self.metadata);
        }
        if let Some(zone) = &self.zone {
            config.zone.clone_from(zone);
        }
        if self.agent_id.is_some() {
            config.agent_id.clone_from(&self.agent_id);
        }
        if self.metrics_listen.is_some() {
            config.metrics_listen.clone_from(&self.metrics_listen);
        }
        for (target, value) in [
            (&mut config.tls_listen, &self.tls_listen),
            (
                &mut config.tls_advertised_listen,
                &self.tls_advertised_listen,
            ),
        ] {
            if value.is_some() {
                target.clone_from(value);
            }
        }
        for (target, value) in [
            (&mut config.tls_cert_file, &self.tls_cert_file),
            (&mut config.tls_key_file, &self.tls_key_file),
            (&mut config.tls_client_ca_file, &self.tls_client_ca_file),
        ] {
            if value.is_some() {
                target.clone_from(value);
            }
        }
        set(&mut config.listen_sasl, self.listen_sasl.as_ref());
        set(&mut config.tls_listen_sasl, self.tls_listen_sasl.as_ref());
        if let Some(NameList(names)) = &self.sasl_mechanisms {
            config.sasl_mechanisms = names.clone();
        }
        if self.sasl_users_file.is_some() {
            config.sasl_users_file.clone_from(&self.sasl_users_file);
        }
        set(
            &mut config.sasl_failed_logins_max,
            self.sasl_failed_logins_max.as_ref(),
        );
        set(
            &mut config.sasl_failed_logins_window_ms,
            self.sasl_failed_logins_window_ms.as_ref(),
        );
        set(&mut config.sasl_lockout_ms, self.sasl_lockout_ms.as_ref());
        set(
            &mut config.connections_max_reauth_ms,
            self.connections_max_reauth_ms.as_ref(),
        );
        if self.sasl_oauthbearer_jwks_file.is_some() {
            config
                .sasl_oauthbearer_jwks_file
                .clone_from(&self.sasl_oauthbearer_jwks_file);
        }
        if self.sasl_oauthbearer_expected_issuer.is_some() {
            config
                .sasl_oauthbearer_expected_issuer
                .clone_from(&self.sasl_oauthbearer_expected_issuer);
        }
        if let Some(NameList(audiences)) = &self.sasl_oauthbearer_expected_audience {
            config.sasl_oauthbearer_expected_audience = audiences.clone();
        }
        set(
            &mut config.sasl_oauthbearer_sub_claim_name,
            self.sasl_oauthbearer_sub_claim_name.as_ref(),
        );
        set(
            &mut config.sasl_oauthbearer_clock_skew_seconds,
            self.sasl_oauthbearer_clock_skew_seconds.as_ref(),
        );
        set(&mut config.data_dir, self.data_dir.as_ref());
        if self.store.is_some() {
            config.store.clone_from(&self.store);
        }
        if let Some(CpuList(cpus)) = &self.cpus {
            config.cpus = Some(cpus.clone());
        }
        if self.metadata_cpu.is_some() {
            config.metadata_cpu = self.metadata_cpu;
        }
        set(
            &mut config.flush_buffer_bytes_max,
            self.flush_buffer_bytes_max.as_ref(),
        );
        set(
            &mut config.block_cache_bytes_max,
            self.block_cache_bytes_max.as_ref(),
        );
        set(
            &mut config.fetch_sessions_max,
            self.fetch_sessions_max.as_ref(),
        );
        set(&mut config.quota_window_num, self.quota_window_num.as_ref());
        set(
            &mut config.quota_window_size_seconds,
            self.quota_window_size_seconds.as_ref(),
        );
        set(&mut config.io_memory_bytes, self.io_memory_bytes.as_ref());
        set(
            &mut config.flush_interval_ms,
            self.flush_interval_ms.as_ref(),
        );
        set(&mut config.flush_bytes_max, self.flush_bytes_max.as_ref());
        set(
            &mut config.flush_windows_inflight_max,
            self.flush_windows_inflight_max.as_ref(),
        );
        set(
            &mut config.flush_interval_max_ms,
            self.flush_interval_max_ms.as_ref(),
        );
        if let Some(puts) = self.flush_puts_per_second_max {
            config.flush_puts_per_second_max = Some(puts);
        }
        set(
            &mut config.flush_group_commit,
            self.flush_group_commit.as_ref(),
        );
        set(&mut config.put_copies_max, self.put_copies_max.as_ref());
        set(
            &mut config.put_latency_target_ms,
            self.put_latency_target_ms.as_ref(),
        );
        set(
            &mut config.put_hedge_percentile,
            self.put_hedge_percentile.as_ref(),
        );
        set(
            &mut config.put_hedge_delay_ms_min,
            self.put_hedge_delay_ms_min.as_ref(),
        );
        set(
            &mut config.put_copy_bytes_in_flight_max,
            self.put_copy_bytes_in_flight_max.as_ref(),
        );
        set(
            &mut config.request_bytes_max,
            self.request_bytes_max.as_ref(),
        );
        set(
            &mut config.auto_create_topics,
            self.auto_create_topics.as_ref(),
        );
        if self.authorizer.is_some() {
            config.authorizer.clone_from(&self.authorizer);
        }
        if let Some(NameList(users)) = &self.super_users {
            config.super_users = users.clone();
        }
        set(
            &mut config.allow_everyone_if_no_acl_found,
            self.allow_everyone_if_no_acl_found.as_ref(),
        );
        set(
            &mut config.default_partitions,
            self.default_partitions.as_ref(),
        );
        set(
            &mut config.group_initial_rebalance_delay_ms,
            self.group_initial_rebalance_delay_ms.as_ref(),
        );
        set(
            &mut config.group_min_session_timeout_ms,
            self.group_min_session_timeout_ms.as_ref(),
        );
        set(
            &mut config.group_max_session_timeout_ms,
            self.group_max_session_timeout_ms.as_ref(),
        );
        set(
            &mut config.group_consumer_heartbeat_interval_ms,
            self.group_consumer_heartbeat_interval_ms.as_ref(),
        );
        set(
            &mut config.group_consumer_session_timeout_ms,
            self.group_consumer_session_timeout_ms.as_ref(),
        );
        if let Some(NameList(names)) = &self.group_consumer_assignors {
            config.group_consumer_assignors = names.clone();
        }
        set(&mut config.group_max_size, self.group_max_size.as_ref());
        set(
            &mut config.group_consumer_max_size,
            self.group_consumer_max_size.as_ref(),
        );
        set(
            &mut config.offset_metadata_bytes_max,
            self.offset_metadata_bytes_max.as_ref(),
        );
        set(
            &mut config.offsets_retention_check_interval_ms,
            self.offsets_retention_check_interval_ms.as_ref(),
        );
        set(
            &mut config.offsets_retention_ms,
            self.offsets_retention_ms.as_ref(),
        );
        if let Some(ms) = self.log_retention_ms {
            config.log_retention_ms = Some(ms);
        }
        set(
            &mut config.log_retention_hours,
            self.log_retention_hours.as_ref(),
        );
        set(
            &mut config.log_retention_bytes,
            self.log_retention_bytes.as_ref(),
        );
        set(
            &mut config.log_retention_check_interval_ms,
            self.log_retention_check_interval_ms.as_ref(),
        );
        set(
            &mut config.log_segment_delete_delay_ms,
            self.log_segment_delete_delay_ms.as_ref(),
        );
        set(
            &mut config.compaction_interval_ms,
            self.compaction_interval_ms.as_ref(),
        );
        set(
            &mut config.compaction_object_bytes_target,
            self.compaction_object_bytes_target.as_ref(),
        );
        set(
            &mut config.compaction_inputs_per_job_max,
            self.compaction_inputs_per_job_max.as_ref(),
        );
        set(
            &mut config.checkpoint_interval_entries,
            self.checkpoint_interval_entries.as_ref(),
        );
        set(
            &mut config.checkpoints_retained,
            self.checkpoints_retained.as_ref(),
        );
    }
}

fn number<T: FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| "not a non-negative integer".to_owned())
}

fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn cpu_lists_parse_ranges_and_reject_nonsense() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2,4-6").unwrap(), vec![0, 2, 4, 5, 6]);
        assert_eq!(parse_cpu_list(" 1 , 3 ").unwrap(), vec![1, 3]);
        for bad in ["", "a", "3-1", "0-999999", "-1", ","] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn every_setting_has_an_environment_variable() {
        let overrides = Overrides::from_environment(environment(&[
            ("SLUICE_LISTEN", "127.0.0.1:1"),
            ("SLUICE_LISTENERS", "A://127.0.0.1:3, B://127.0.0.1:4"),
            ("SLUICE_ADVERTISED_LISTENERS", "A://a.example.com:3"),
            ("SLUICE_LISTENER_SECURITY_PROTOCOL_MAP", "A:PLAINTEXT,B:SSL"),
            ("SLUICE_ADVERTISED_LISTEN", "example.com:2"),
            ("SLUICE_DATA_DIR", "/d"),
            ("SLUICE_STORE", "s3://bucket/prefix"),
            ("SLUICE_CPUS", "0-1"),
            ("SLUICE_METADATA_CPU", "1"),
            ("SLUICE_FLUSH_BUFFER_BYTES_MAX", "1"),
            ("SLUICE_BLOCK_CACHE_BYTES_MAX", "2"),
            ("SLUICE_FETCH_SESSIONS_MAX", "9"),
            ("SLUICE_QUOTA_WINDOW_NUM", "5"),
            ("SLUICE_QUOTA_WINDOW_SIZE_SECONDS", "2"),
            ("SLUICE_IO_MEMORY_BYTES", "3"),
            ("SLUICE_FLUSH_INTERVAL_MS", "4"),
            ("SLUICE_FLUSH_BYTES_MAX", "5"),
            ("SLUICE_FLUSH_WINDOWS_INFLIGHT_MAX", "8"),
            ("SLUICE_FLUSH_INTERVAL_MAX_MS", "10"),
            ("SLUICE_FLUSH_PUTS_PER_SECOND_MAX", "35"),
            ("SLUICE_FLUSH_GROUP_COMMIT", "false"),
            ("SLUICE_PUT_COPIES_MAX", "11"),
            ("SLUICE_PUT_LATENCY_TARGET_MS", "12"),
            ("SLUICE_PUT_HEDGE_PERCENTILE", "13"),
            ("SLUICE_PUT_HEDGE_DELAY_MS_MIN", "14"),
            ("SLUICE_PUT_COPY_BYTES_IN_FLIGHT_MAX", "16"),
            ("SLUICE_REQUEST_BYTES_MAX", "6"),
            ("SLUICE_AUTO_CREATE_TOPICS", "false"),
            ("SLUICE_AUTHORIZER", "acl"),
            ("SLUICE_SUPER_USERS", "User:admin, User:ops"),
            ("SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "true"),
            ("SLUICE_DEFAULT_PARTITIONS", "7"),
            ("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", "10"),
            ("SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS", "11"),
            ("SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS", "12"),
            ("SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", "13"),
            ("SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS", "14"),
            ("SLUICE_GROUP_CONSUMER_ASSIGNORS", "range, uniform"),
            ("SLUICE_OFFSET_METADATA_BYTES_MAX", "15"),
            ("SLUICE_GROUP_MAX_SIZE", "16"),
            ("SLUICE_GROUP_CONSUMER_MAX_SIZE", "17"),
            ("SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS", "18"),
            ("SLUICE_OFFSETS_RETENTION_MS", "19"),
            ("SLUICE_LOG_RETENTION_MS", "-1"),
            ("SLUICE_LOG_RETENTION_HOURS", "20"),
            ("SLUICE_LOG_RETENTION_BYTES", "21"),
            ("SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS", "22"),
            ("SLUICE_LOG_SEGMENT_DELETE_DELAY_MS", "23"),
            ("SLUICE_CHECKPOINT_INTERVAL_ENTRIES", "25"),
            ("SLUICE_COMPACTION_INTERVAL_MS", "26"),
            ("SLUICE_COMPACTION_OBJECT_BYTES_TARGET", "27"),
            ("SLUICE_COMPACTION_INPUTS_PER_JOB_MAX", "28"),
            ("SLUICE_CHECKPOINTS_RETAINED", "24"),
            ("SLUICE_METRICS_LISTEN", "127.0.0.1:29"),
            ("SLUICE_TLS_LISTEN", "127.0.0.1:30"),
            ("SLUICE_TLS_ADVERTISED_LISTEN", "tls.example.com:31"),
            ("SLUICE_TLS_CERT_FILE", "/c.pem"),
            ("SLUICE_TLS_KEY_FILE", "/k.pem"),
            ("SLUICE_TLS_CLIENT_CA_FILE", "/ca.pem"),
            ("SLUICE_LISTEN_SASL", "true"),
            ("SLUICE_TLS_LISTEN_SASL", "yes"),
            ("SLUICE_SASL_MECHANISMS", "SCRAM-SHA-512, PLAIN"),
            ("SLUICE_SASL_USERS_FILE", "/users.toml"),
            ("SLUICE_SASL_FAILED_LOGINS_MAX", "32"),
            ("SLUICE_SASL_FAILED_LOGINS_WINDOW_MS", "33"),
            ("SLUICE_SASL_LOCKOUT_MS", "34"),
            ("SLUICE_CONNECTIONS_MAX_REAUTH_MS", "36"),
            ("SLUICE_SASL_OAUTHBEARER_JWKS_FILE", "/jwks.json"),
            ("SLUICE_SASL_OAUTHBEARER_EXPECTED_ISSUER", "https://idp"),
            ("SLUICE_SASL_OAUTHBEARER_EXPECTED_AUDIENCE", "sluice, kafka"),
            ("SLUICE_SASL_OAUTHBEARER_SUB_CLAIM_NAME", "client_id"),
            ("SLUICE_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS", "35"),
            ("SLUICE_METADATA", "postgres://db/sluice"),
            ("SLUICE_ZONE", "eu-1a"),
            ("SLUICE_AGENT_ID", "agent-7"),
        ]))
        .unwrap();
        let mut config = Config::default();
        config.apply(&overrides);
        let expected = Config {
            metadata: Some("postgres://db/sluice".to_owned()),
            zone: "eu-1a".to_owned(),
            agent_id: Some("agent-7".to_owned()),
            listeners: vec!["A://127.0.0.1:3".to_owned(), "B://127.0.0.1:4".to_owned()],
            advertised_listeners: vec!["A://a.example.com:3".to_owned()],
            listener_security_protocol_map: vec!["A:PLAINTEXT".to_owned(), "B:SSL".to_owned()],
            listener_name: std::collections::BTreeMap::new(),
            listen: "127.0.0.1:1".to_owned(),
            advertised_listen: Some("example.com:2".to_owned()),
            metrics_listen: Some("127.0.0.1:29".to_owned()),
            tls_listen: Some("127.0.0.1:30".to_owned()),
            tls_advertised_listen: Some("tls.example.com:31".to_owned()),
            tls_cert_file: Some(PathBuf::from("/c.pem")),
            tls_key_file: Some(PathBuf::from("/k.pem")),
            tls_client_ca_file: Some(PathBuf::from("/ca.pem")),
            listen_sasl: true,
            tls_listen_sasl: true,
            sasl_mechanisms: vec!["SCRAM-SHA-512".to_owned(), "PLAIN".to_owned()],
            sasl_users_file: Some(PathBuf::from("/users.toml")),
            sasl_failed_logins_max: 32,
            sasl_failed_logins_window_ms: 33,
            sasl_lockout_ms: 34,
            connections_max_reauth_ms: 36,
            sasl_oauthbearer_jwks_file: Some(PathBuf::from("/jwks.json")),
            sasl_oauthbearer_expected_issuer: Some("https://idp".to_owned()),
            sasl_oauthbearer_expected_audience: vec!["sluice".to_owned(), "kafka".to_owned()],
            sasl_oauthbearer_sub_claim_name: "client_id".to_owned(),
            sasl_oauthbearer_clock_skew_seconds: 35,
            data_dir: PathBuf::from("/d"),
            store: Some("s3://bucket/prefix".to_owned()),
            cpus: Some(vec![0, 1]),
            metadata_cpu: Some(1),
            flush_buffer_bytes_max: 1,
            block_cache_bytes_max: 2,
            fetch_sessions_max: 9,
            quota_window_num: 5,
            quota_window_size_seconds: 2,
            io_memory_bytes: 3,
            flush_interval_ms: 4,
            flush_bytes_max: 5,
            flush_windows_inflight_max: 8,
            flush_interval_max_ms: 10,
            flush_puts_per_second_max: Some(35),
            flush_group_commit: false,
            put_copies_max: 11,
            put_latency_target_ms: 12,
            put_hedge_percentile: 13,
            put_hedge_delay_ms_min: 14,
            put_copy_bytes_in_flight_max: 16,
            request_bytes_max: 6,
            auto_create_topics: false,
            authorizer: Some("acl".to_owned()),
            super_users: vec!["User:admin".to_owned(), "User:ops".to_owned()],
            allow_everyone_if_no_acl_found: true,
            default_partitions: 7,
            group_initial_rebalance_delay_ms: 10,
            group_min_session_timeout_ms: 11,
            group_max_session_timeout_ms: 12,
            group_max_size: 16,
            group_consumer_heartbeat_interval_ms: 13,
            group_consumer_session_timeout_ms: 14,
            group_consumer_assignors: vec!["range".to_owned(), "uniform".to_owned()],
            group_consumer_max_size: 17,
            offset_metadata_bytes_max: 15,
            offsets_retention_check_interval_ms: 18,
            offsets_retention_ms: 19,
            log_retention_ms: Some(-1),
            log_retention_hours: 20,
            log_retention_bytes: 21,
            log_retention_check_interval_ms: 22,
            log_segment_delete_delay_ms: 23,
            checkpoint_interval_entries: 25,
            compaction_interval_ms: 26,
            compaction_object_bytes_target: 27,
            compaction_inputs_per_job_max: 28,
            checkpoints_retained: 24,
            cluster_name: "sluice".to_owned(),
            lease_ms: 10_000,
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let error =
            Overrides::from_environment(environment(&[("SLUICE_FLUSH_INTERVAL_MS", "soon")]))
                .unwrap_err()
                .to_string();
        assert!(error.contains("SLUICE_FLUSH_INTERVAL_MS"), "{error}");
        assert!(error.contains("soon"), "{error}");
    }

    #[test]
    fn unrelated_and_unknown_variables_are_ignored() {
        let overrides = Overrides::from_environment(environment(&[
            ("HOME", "/root"),
            ("SLUICE_LOG", "debug"),
            ("SLUICE_SOMETHING_ELSE", "x"),
        ]))
        .unwrap();
        assert_eq!(overrides, Overrides::default());
    }
}
