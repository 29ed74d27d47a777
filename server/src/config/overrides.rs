//! What the environment and flag layers take beyond single values: CPU lists (`0,2,4-7`) and
//! name lists (`uniform,range`), and the warning for a `SLUICE_*` variable that names no
//! setting. Both layers are [`Overrides`](super::Overrides), generated from the declarations
//! (`config/settings.rs`); the environment is read from an explicit list of `(name, value)`
//! pairs rather than from the process, so tests do not race on `std::env::set_var`.

use std::str::FromStr;

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

/// Environment variables that are not settings but are still ours, so not warned about.
const ENVIRONMENT_NON_SETTINGS: &[&str] = &["SLUICE_LOG", "SLUICE_LOG_FORMAT"];

/// A `SLUICE_*` variable that names no setting: logged, not refused (wrappers and test harnesses
/// set their own `SLUICE_` variables).
pub(super) fn unknown_variable(name: &str) {
    if !ENVIRONMENT_NON_SETTINGS.contains(&name) {
        tracing::warn!(variable = %name, "ignoring unknown SLUICE_ environment variable");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Config, Overrides};

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
            (
                "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL",
                "https://idp/jwks",
            ),
            ("SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS", "37"),
            (
                "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MS",
                "38",
            ),
            (
                "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS",
                "39",
            ),
            (
                "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_CA_FILE",
                "/idp-ca.pem",
            ),
            ("SLUICE_METADATA", "postgres://db/sluice"),
            ("SLUICE_ZONE", "eu-1a"),
            ("SLUICE_AGENT_ID", "agent-7"),
            ("SLUICE_ALLOCATOR_TRIM_INTERVAL_MS", "40"),
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
            sasl_oauthbearer_jwks_endpoint_url: Some("https://idp/jwks".to_owned()),
            sasl_oauthbearer_jwks_endpoint_refresh_ms: 37,
            sasl_oauthbearer_jwks_endpoint_ca_file: Some(PathBuf::from("/idp-ca.pem")),
            sasl_oauthbearer_jwks_endpoint_retry_backoff_ms: 38,
            sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms: 39,
            data_dir: PathBuf::from("/d"),
            store: Some("s3://bucket/prefix".to_owned()),
            cpus: Some(vec![0, 1]),
            metadata_cpu: Some(1),
            flush_buffer_bytes_max: 1,
            block_cache_bytes_max: 2,
            allocator_trim_interval_ms: 40,
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
            metadata_notify: true,
            metadata_poll_interval_ms: 1_000,
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
