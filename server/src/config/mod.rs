//! Agent configuration: one TOML file, then `SLUICE_*` environment variables, then command-line
//! flags, each layer overriding the one before.
//!
//! Every key is documented in `docs/configuration.md`. The file is parsed with
//! `deny_unknown_fields`: a misspelt key (`flush_intervall_ms`) is an error at startup rather
//! than a silently ignored setting that someone debugs in production a month later. The layers
//! are plain data ([`Overrides`]) so that the precedence rules are tested without touching the
//! process environment.

mod declarations;
pub mod docs;
mod listeners;
mod overrides;
mod settings;
mod sources;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use sluice_engine::store::StoreConfig;

pub use declarations::{Config, Overrides, SETTINGS};
pub use listeners::{ClientAuth, LISTENERS_MAX, Listener, ListenerSettings, SecurityProtocol};
pub use overrides::{CpuList, NameList, parse_cpu_list};
pub use settings::Setting;
pub use sources::{Effective, REDACTED, Source, redact};

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;
/// Largest `flush_puts_per_second_max` accepted: a window a tenth of a millisecond, far beyond
/// what a store takes from one writer.
pub const FLUSH_PUTS_PER_SECOND_LIMIT: u64 = 10_000;
/// The PUT budget of a lone agent on a local directory (or in-memory) store when none is set. A
/// window there is a file and its fsyncs, not a billed request, and with group commit windows
/// seal no faster than the store takes them anyway; the budget of an object store (`1000 /
/// flush_interval_ms`) would make a Java producer with default settings wait for windows it
/// could have had for free (docs/agent.md, "The PUT budget: latency against PUT dollars").
pub const FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT: u64 = 1_000;
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
    /// variables (only `SLUICE_*` ones are looked at), then the flags; checks it.
    /// [`Effective::load`] does the same and also says where each value came from.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        Effective::load(file, environment, flags).map(|effective| effective.config)
    }

    /// Overwrites every setting that `overrides` carries; returns the keys it set.
    pub fn apply(&mut self, overrides: &Overrides) -> Vec<&'static str> {
        overrides.apply_to(self)
    }

    /// Checks the settings that can be checked without looking at the machine (CPU ids are
    /// checked against the online set when the agent starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The ranges declared with each setting (`config/declarations.rs`); then the rules that
        // involve several settings or more than a range.
        self.check_declared_ranges()?;
        self.listeners_resolved()?;
        self.metrics_address()?;
        self.sasl_mechanisms()?;
        self.authorizer_policy()?;
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
        if self.flush_buffer_bytes_max < self.flush_bytes_max {
            return Err(invalid(
                "flush_buffer_bytes_max",
                format!(
                    "{} is smaller than flush_bytes_max ({}); a flush could never start",
                    self.flush_buffer_bytes_max, self.flush_bytes_max
                ),
            ));
        }
        self.validate_groups()
    }

    /// The PUT budget: `flush_puts_per_second_max`, or by default as many windows a second as
    /// fixed windows of `flush_interval_ms` could seal (100 with the defaults) — except on a
    /// store whose windows bill no requests: a lone agent on a local directory or in memory gets
    /// [`FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT`].
    pub fn flush_puts_per_second_max(&self) -> u64 {
        self.flush_puts_per_second_max
            .unwrap_or_else(|| {
                if self.windows_bill_no_requests() {
                    FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT
                } else {
                    1_000 / self.flush_interval_ms.max(1)
                }
            })
            .max(1)
    }

    /// Whether a flush window costs no billed request: the store is a local directory (the
    /// default, `data_dir/store`) or memory, and no database orders the metadata log (in a
    /// cluster every window is also a commit of the database all agents share).
    /// An unparsable `store` counts as billed; the agent refuses it when it opens the store.
    pub fn windows_bill_no_requests(&self) -> bool {
        let local_store = match self.store.as_deref() {
            None => true,
            Some(url) => matches!(
                StoreConfig::from_url(url),
                Ok(StoreConfig::Local { .. } | StoreConfig::Memory)
            ),
        };
        local_store && self.metadata.is_none()
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
            checkpoints_follow_compaction: self.compaction_interval_ms > 0,
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
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return Err(invalid(
                "group_max_session_timeout_ms",
                format!(
                    "{} is below group_min_session_timeout_ms ({})",
                    self.group_max_session_timeout_ms, self.group_min_session_timeout_ms
                ),
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
            if self.sasl_oauthbearer_jwks_endpoint_url.is_some() {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_endpoint_url",
                    "a JWKS endpoint is set but no listener requires SASL: set listen_sasl \
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
        let file = self.sasl_oauthbearer_jwks_file.is_some();
        let endpoint = self.sasl_oauthbearer_jwks_endpoint_url.as_deref();
        if oauth && !file && endpoint.is_none() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_file",
                "sasl_mechanisms offers OAUTHBEARER but no JWKS is set: set \
                 sasl_oauthbearer_jwks_file to the identity provider's JSON Web Key Set, or \
                 sasl_oauthbearer_jwks_endpoint_url to its JWKS endpoint",
            ));
        }
        if file && endpoint.is_some() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_endpoint_url",
                "both a JWKS file and a JWKS endpoint are set: set only one of \
                 sasl_oauthbearer_jwks_file and sasl_oauthbearer_jwks_endpoint_url",
            ));
        }
        if !oauth && file {
            return Err(invalid(
                "sasl_oauthbearer_jwks_file",
                "a JWKS file is set but sasl_mechanisms does not offer OAUTHBEARER",
            ));
        }
        if endpoint.is_none() && self.sasl_oauthbearer_jwks_endpoint_ca_file.is_some() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_endpoint_ca_file",
                "a CA file is set but no JWKS endpoint: set sasl_oauthbearer_jwks_endpoint_url",
            ));
        }
        if !oauth && endpoint.is_some() {
            return Err(invalid(
                "sasl_oauthbearer_jwks_endpoint_url",
                "a JWKS endpoint is set but sasl_mechanisms does not offer OAUTHBEARER",
            ));
        }
        if let Some(url) = endpoint {
            crate::net::sasl::jwks_endpoint::check_url(url)
                .map_err(|reason| invalid("sasl_oauthbearer_jwks_endpoint_url", reason))?;
            if self.sasl_oauthbearer_jwks_endpoint_ca_file.is_some() && !url.starts_with("https://")
            {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_endpoint_ca_file",
                    "a CA file is set but the JWKS endpoint is not https://",
                ));
            }
            if self.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms == 0 {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_endpoint_retry_backoff_ms",
                    "must be at least 1",
                ));
            }
            if self.sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms
                < self.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms
            {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms",
                    "must be at least sasl_oauthbearer_jwks_endpoint_retry_backoff_ms",
                ));
            }
            if self.sasl_oauthbearer_jwks_endpoint_refresh_ms < 1_000 {
                return Err(invalid(
                    "sasl_oauthbearer_jwks_endpoint_refresh_ms",
                    "must be at least 1000 (one fetch a second)",
                ));
            }
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
    fn the_put_budget_defaults_to_what_fixed_windows_cost_on_an_object_store() {
        let s3 = |flush_interval_ms: u64| Config {
            store: Some("s3://bucket/prefix".to_owned()),
            flush_interval_ms,
            ..Config::default()
        };
        let config = s3(10);
        assert!(!config.windows_bill_no_requests());
        assert_eq!(config.flush_puts_per_second_max(), 100);
        assert!(config.flush_group_commit);
        let flush = config.flush_config();
        assert_eq!(flush.flush_puts_per_second_max, 100);
        assert!(flush.flush_group_commit);
        assert_eq!(s3(25).flush_puts_per_second_max(), 40);
        assert_eq!(
            s3(5_000).flush_puts_per_second_max(),
            1,
            "at least one a second"
        );
        for url in ["gs://bucket", "az://account/container"] {
            let other = Config {
                store: Some(url.to_owned()),
                ..Config::default()
            };
            assert_eq!(other.flush_puts_per_second_max(), 100, "{url}");
        }
        let set = Config {
            flush_puts_per_second_max: Some(250),
            ..s3(10)
        };
        assert_eq!(set.flush_puts_per_second_max(), 250);
        assert!(set.validate().is_ok());
    }

    #[test]
    fn a_lone_agent_on_a_local_store_gets_the_local_budget() {
        // The default store (`data_dir/store`), a file:// URL, a plain path and memory.
        for store in [
            None,
            Some("file:///var/lib/sluice/store"),
            Some("/var/lib/sluice/store"),
            Some("memory://"),
        ] {
            let config = Config {
                store: store.map(str::to_owned),
                ..Config::default()
            };
            assert!(config.windows_bill_no_requests(), "{store:?}");
            assert_eq!(
                config.flush_puts_per_second_max(),
                FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT,
                "{store:?}"
            );
            assert_eq!(
                config.flush_config().flush_puts_per_second_max,
                FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT
            );
        }
        // A longer interval does not lower the local budget.
        let slow = Config {
            flush_interval_ms: 500,
            ..Config::default()
        };
        assert_eq!(
            slow.flush_puts_per_second_max(),
            FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT
        );
        // Set explicitly, the budget is what was set, lower or higher.
        for budget in [30, 5_000] {
            let set = Config {
                flush_puts_per_second_max: Some(budget),
                ..Config::default()
            };
            assert_eq!(set.flush_puts_per_second_max(), budget);
        }
        // In a cluster every window is a commit of the shared database: the object-store rule.
        let cluster = Config {
            store: Some("file:///shared/store".to_owned()),
            metadata: Some("postgres://sluice@db/sluice".to_owned()),
            ..Config::default()
        };
        assert!(!cluster.windows_bill_no_requests());
        assert_eq!(cluster.flush_puts_per_second_max(), 100);
        // A store URL that does not parse is not taken for a local one.
        let unparsable = Config {
            store: Some("ftp://nowhere".to_owned()),
            ..Config::default()
        };
        assert!(!unparsable.windows_bill_no_requests());
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

    #[test]
    fn oauthbearer_needs_exactly_one_jwks_and_an_endpoint_must_be_https_or_loopback() {
        let oauth = |file: Option<&str>, url: Option<&str>| Config {
            listen_sasl: true,
            sasl_mechanisms: vec!["OAUTHBEARER".to_owned()],
            sasl_oauthbearer_jwks_file: file.map(std::path::PathBuf::from),
            sasl_oauthbearer_jwks_endpoint_url: url.map(str::to_owned),
            ..Config::default()
        };
        let refused = |config: Config| config.sasl_mechanisms().unwrap_err().to_string();
        assert!(oauth(Some("/jwks.json"), None).sasl_mechanisms().is_ok());
        assert!(
            oauth(None, Some("https://idp.example/jwks"))
                .sasl_mechanisms()
                .is_ok()
        );
        assert!(
            oauth(None, Some("http://127.0.0.1:8080/jwks"))
                .sasl_mechanisms()
                .is_ok()
        );
        assert!(refused(oauth(None, None)).contains("sasl_oauthbearer_jwks_endpoint_url"));
        assert!(
            refused(oauth(Some("/jwks.json"), Some("https://idp.example/jwks")))
                .contains("only one")
        );
        assert!(refused(oauth(None, Some("http://idp.example/jwks"))).contains("not a loopback"));
        let too_often = Config {
            sasl_oauthbearer_jwks_endpoint_refresh_ms: 10,
            ..oauth(None, Some("https://idp.example/jwks"))
        };
        assert!(refused(too_often).contains("sasl_oauthbearer_jwks_endpoint_refresh_ms"));
        let ca_for_http = Config {
            sasl_oauthbearer_jwks_endpoint_ca_file: Some(std::path::PathBuf::from("/ca.pem")),
            ..oauth(None, Some("http://127.0.0.1:1/jwks"))
        };
        assert!(refused(ca_for_http).contains("not https://"));
        let backoff = |min: u64, max: u64| Config {
            sasl_oauthbearer_jwks_endpoint_retry_backoff_ms: min,
            sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms: max,
            ..oauth(None, Some("https://idp.example/jwks"))
        };
        assert!(backoff(50, 50).sasl_mechanisms().is_ok());
        assert!(refused(backoff(0, 10)).contains("retry_backoff_ms"));
        assert!(refused(backoff(100, 99)).contains("retry_backoff_max_ms"));
        let ca_for_file = Config {
            sasl_oauthbearer_jwks_endpoint_ca_file: Some(std::path::PathBuf::from("/ca.pem")),
            ..oauth(Some("/jwks.json"), None)
        };
        assert!(refused(ca_for_file).contains("no JWKS endpoint"));
        let not_offered = Config {
            sasl_mechanisms: vec!["PLAIN".to_owned()],
            sasl_users_file: Some(std::path::PathBuf::from("/users.toml")),
            ..oauth(None, Some("https://idp.example/jwks"))
        };
        assert!(refused(not_offered).contains("does not offer OAUTHBEARER"));
    }
}
