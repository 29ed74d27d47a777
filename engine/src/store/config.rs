//! Store configuration: a serde struct for the agent's TOML and a URL form for flags and tests.
//!
//! URLs (every query parameter is optional; see `docs/object-stores.md`):
//!
//! - `memory://` — a fresh in-memory store (tests; nothing survives the process).
//! - `file:///abs/dir` or a plain path `/abs/dir`, `./rel/dir` — a local directory, created if missing;
//!   `file:///abs/dir?fsync=false` skips fsync (tests and benches only).
//! - `s3://bucket/optional/key/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true`
//!   with `endpoint`, `region`, `path_style`, `allow_http`, `access_key_id`, `secret_access_key`,
//!   `session_token`, `s3_express`, `request_timeout_ms`, `connect_timeout_ms`, `retries_max`,
//!   `retry_timeout_ms`. Unknown parameters are an error, so a typo cannot silently fall back to a
//!   default. Values not given come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
//! - `gs://bucket/optional/key/prefix?endpoint=http://127.0.0.1:4443` — Google Cloud Storage
//!   ([`GcsConfig`]; credentials from the `GOOGLE_*` variables, emulators from
//!   `STORAGE_EMULATOR_HOST`).
//! - `az://container/optional/key/prefix?account=name` — Azure Blob Storage ([`AzureConfig`];
//!   credentials from the `AZURE_*` variables; Azurite with `use_emulator=true`).
//!
//! The timeout and retry parameters (`request_timeout_ms`, `connect_timeout_ms`, `retries_max`,
//! `retry_timeout_ms`) mean the same on S3, GCS and Azure ([`HttpSettings`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::azure::AzureConfig;
use super::backends::ObjectStoreBackend;
use super::error::StoreError;
use super::gcs::GcsConfig;
use super::{ObjectStorage, StoreResult};

/// Where the store lives. In TOML: `kind = "memory"`, `kind = "local"` with `path`,
/// `kind = "s3"` with the fields of [`S3Config`], `kind = "gcs"` with those of [`GcsConfig`], or
/// `kind = "azure"` with those of [`AzureConfig`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    Memory,
    Local {
        path: std::path::PathBuf,
        /// fsync every write (default true; see [`ObjectStoreBackend::local_dir_with_fsync`]).
        #[serde(default = "fsync_default")]
        fsync: bool,
    },
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

fn fsync_default() -> bool {
    true
}

/// An S3 or S3-compatible bucket. `None` fields fall back to the AWS environment variables, then to
/// the defaults documented on each field.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Folder inside the bucket that this store owns (no leading or trailing `/` needed).
    #[serde(default)]
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; AWS's regional endpoint if unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`, default) or virtual-hosted (`bucket.endpoint/key`;
    /// then `endpoint` must already name the bucket).
    pub path_style: Option<bool>,
    /// Allow plain HTTP. Default: true exactly when `endpoint` starts with `http://`.
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// S3 Express One Zone directory bucket. Default: true when the bucket name ends in `--x-s3`.
    pub s3_express: Option<bool>,
    /// Per-request timeout of the HTTP client. Default 10,000.
    pub request_timeout_ms: Option<u64>,
    /// TCP/TLS connect timeout. Default 2,000.
    pub connect_timeout_ms: Option<u64>,
    /// Retries of a failed request inside the HTTP client (5xx, 429, connection errors).
    /// Default 3; 0 disables them, leaving every retry decision to the caller.
    pub retries_max: Option<usize>,
    /// Upper bound on the time spent retrying one call. Default 20,000.
    pub retry_timeout_ms: Option<u64>,
}

// Hand-written so that secrets never reach a log line.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("s3_express", &self.s3_express)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("retries_max", &self.retries_max)
            .field("retry_timeout_ms", &self.retry_timeout_ms)
            .finish()
    }
}

const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 2_000;
const RETRIES_MAX_DEFAULT: usize = 3;
const RETRY_TIMEOUT_MS_DEFAULT: u64 = 20_000;

impl StoreConfig {
    /// Parses a store URL (see the module docs). Never panics; a bad URL is `InvalidConfig`.
    pub fn from_url(text: &str) -> StoreResult<StoreConfig> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StoreError::invalid_config("empty store URL"));
        }
        if !text.contains("://") {
            return Ok(StoreConfig::Local {
                path: text.into(),
                fsync: true,
            });
        }
        let url = url::Url::parse(text).map_err(|error| {
            StoreError::invalid_config(format!("cannot parse store URL {text:?}: {error}"))
        })?;
        match url.scheme() {
            "memory" => Ok(StoreConfig::Memory),
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    StoreError::invalid_config(format!(
                        "{text:?} is not an absolute local path (use file:///abs/dir)"
                    ))
                })?;
                let mut fsync = true;
                for (name, value) in url.query_pairs() {
                    match name.as_ref() {
                        "fsync" => fsync = parse_value(&name, &value)?,
                        other => {
                            return Err(StoreError::invalid_config(format!(
                                "unknown file:// URL parameter {other:?}"
                            )));
                        }
                    }
                }
                Ok(StoreConfig::Local { path, fsync })
            }
            "s3" | "s3a" => s3_config_from_url(&url).map(StoreConfig::S3),
            "gs" => GcsConfig::from_url(&url).map(StoreConfig::Gcs),
            "az" | "azure" => AzureConfig::from_url(&url).map(StoreConfig::Azure),
            other => Err(StoreError::invalid_config(format!(
                "unsupported store URL scheme {other:?} in {text:?} \
                 (expected memory://, file://, s3://, gs:// or az://)"
            ))),
        }
    }
}

fn s3_config_from_url(url: &url::Url) -> StoreResult<S3Config> {
    let bucket = url.host_str().unwrap_or("").to_owned();
    if bucket.is_empty() {
        return Err(StoreError::invalid_config(
            "s3:// URL without a bucket (expected s3://bucket/prefix)",
        ));
    }
    let mut config = S3Config {
        bucket,
        prefix: url.path().trim_matches('/').to_owned(),
        ..S3Config::default()
    };
    for (name, value) in url.query_pairs() {
        let value = value.into_owned();
        match name.as_ref() {
            "endpoint" => config.endpoint = Some(value),
            "region" => config.region = Some(value),
            "path_style" => config.path_style = Some(parse_value(&name, &value)?),
            "allow_http" => config.allow_http = Some(parse_value(&name, &value)?),
            "access_key_id" => config.access_key_id = Some(value),
            "secret_access_key" => config.secret_access_key = Some(value),
            "session_token" => config.session_token = Some(value),
            "s3_express" => config.s3_express = Some(parse_value(&name, &value)?),
            "request_timeout_ms" => config.request_timeout_ms = Some(parse_value(&name, &value)?),
            "connect_timeout_ms" => config.connect_timeout_ms = Some(parse_value(&name, &value)?),
            "retries_max" => config.retries_max = Some(parse_value(&name, &value)?),
            "retry_timeout_ms" => config.retry_timeout_ms = Some(parse_value(&name, &value)?),
            other => {
                return Err(StoreError::invalid_config(format!(
                    "unknown s3:// URL parameter {other:?}"
                )));
            }
        }
    }
    Ok(config)
}

pub(super) fn parse_value<T: std::str::FromStr>(name: &str, value: &str) -> StoreResult<T>
where
    T::Err: fmt::Display,
{
    value.parse().map_err(|error| {
        StoreError::invalid_config(format!("store URL parameter {name}={value:?}: {error}"))
    })
}

/// The HTTP client settings every cloud backend shares, with their defaults applied in
/// [`HttpSettings::client`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HttpSettings {
    /// Allow plain HTTP (loopback servers and emulators).
    pub allow_http: bool,
    /// Per-request timeout. Default 10,000.
    pub request_timeout_ms: Option<u64>,
    /// TCP/TLS connect timeout. Default 2,000.
    pub connect_timeout_ms: Option<u64>,
    /// Retries of a failed request inside the HTTP client (5xx, 429, connection errors).
    /// Default 3; 0 disables them, leaving every retry decision to the caller.
    pub retries_max: Option<usize>,
    /// Upper bound on the time spent retrying one call. Default 20,000.
    pub retry_timeout_ms: Option<u64>,
}

impl HttpSettings {
    /// The client options, the retry policy and the request timeout in milliseconds; `service`
    /// names the backend in errors.
    pub fn client(&self, service: &str) -> StoreResult<(ClientOptions, RetryConfig, u64)> {
        let request_timeout_ms = self
            .request_timeout_ms
            .unwrap_or(REQUEST_TIMEOUT_MS_DEFAULT);
        let connect_timeout_ms = self
            .connect_timeout_ms
            .unwrap_or(CONNECT_TIMEOUT_MS_DEFAULT);
        if request_timeout_ms == 0 || connect_timeout_ms == 0 {
            return Err(StoreError::invalid_config(format!(
                "{service} timeouts must be at least 1 ms"
            )));
        }
        // reqwest sets TCP_NODELAY on its sockets by default; see DESIGN.md on Nagle.
        let client_options = ClientOptions::new()
            .with_allow_http(self.allow_http)
            .with_timeout(Duration::from_millis(request_timeout_ms))
            .with_connect_timeout(Duration::from_millis(connect_timeout_ms));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.retries_max.unwrap_or(RETRIES_MAX_DEFAULT),
            retry_timeout: Duration::from_millis(
                self.retry_timeout_ms.unwrap_or(RETRY_TIMEOUT_MS_DEFAULT),
            ),
        };
        Ok((client_options, retry, request_timeout_ms))
    }
}

impl S3Config {
    /// Builds the S3 client. Create-only writes send `If-None-Match: *` (`S3ConditionalPut::ETagMatch`,
    /// set explicitly so that an `AWS_CONDITIONAL_PUT=disabled` in the environment cannot turn the
    /// fence off).
    pub fn build(&self) -> StoreResult<ObjectStoreBackend> {
        if self.bucket.is_empty() {
            return Err(StoreError::invalid_config("S3 store without a bucket name"));
        }
        let allow_http = self.allow_http.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .is_some_and(|endpoint| endpoint.starts_with("http://"))
        });
        let http = HttpSettings {
            allow_http,
            request_timeout_ms: self.request_timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            retries_max: self.retries_max,
            retry_timeout_ms: self.retry_timeout_ms,
        };
        let (client_options, retry, request_timeout_ms) = http.client("S3")?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(path_style) = self.path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        let s3_express = self
            .s3_express
            .unwrap_or_else(|| self.bucket.ends_with("--x-s3"));
        builder = builder.with_s3_express(s3_express);
        let s3 = builder
            .with_client_options(client_options)
            .with_retry(retry)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .map_err(|error| {
                StoreError::invalid_config(format!("S3 bucket {:?}: {error}", self.bucket))
            })?;
        Ok(ObjectStoreBackend::new(Arc::new(s3), &self.prefix)?
            .with_request_timeout_ms(request_timeout_ms))
    }
}

/// Opens the store `config` describes. The result talks to `object_store` directly: wrap it in
/// [`super::StoreRuntime`] before calling it from a glommio executor.
pub fn open_store(config: &StoreConfig) -> StoreResult<Arc<dyn ObjectStorage>> {
    Ok(match config {
        StoreConfig::Memory => Arc::new(ObjectStoreBackend::in_memory()),
        StoreConfig::Local { path, fsync } => {
            Arc::new(ObjectStoreBackend::local_dir_with_fsync(path, *fsync)?)
        }
        StoreConfig::S3(s3) => Arc::new(s3.build()?),
        StoreConfig::Gcs(gcs) => Arc::new(gcs.build()?),
        StoreConfig::Azure(azure) => Arc::new(azure.build()?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::StoreErrorKind;

    #[test]
    fn urls_parse_to_configs() {
        assert_eq!(
            StoreConfig::from_url("memory://").unwrap(),
            StoreConfig::Memory
        );
        assert_eq!(
            StoreConfig::from_url("file:///tmp/x").unwrap(),
            StoreConfig::Local {
                path: "/tmp/x".into(),
                fsync: true
            }
        );
        assert_eq!(
            StoreConfig::from_url("file:///tmp/x?fsync=false").unwrap(),
            StoreConfig::Local {
                path: "/tmp/x".into(),
                fsync: false
            }
        );
        assert_eq!(
            StoreConfig::from_url("./data").unwrap(),
            StoreConfig::Local {
                path: "./data".into(),
                fsync: true
            }
        );
        let StoreConfig::S3(s3) = StoreConfig::from_url(
            "s3://bkt/a/b/?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true\
             &access_key_id=AK&secret_access_key=S%2Fk%2B&retries_max=0&request_timeout_ms=500",
        )
        .unwrap() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "bkt");
        assert_eq!(s3.prefix, "a/b");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.path_style, Some(true));
        assert_eq!(s3.access_key_id.as_deref(), Some("AK"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("S/k+"));
        assert_eq!(s3.retries_max, Some(0));
        assert_eq!(s3.request_timeout_ms, Some(500));
        assert!(
            !format!("{s3:?}").contains("S/k+"),
            "secrets must not be printed"
        );
    }

    #[test]
    fn gcs_and_azure_urls_parse_to_configs() {
        let StoreConfig::Gcs(gcs) = StoreConfig::from_url(
            "gs://bkt/a/b?endpoint=http://127.0.0.1:4443&anonymous=true&retries_max=1",
        )
        .unwrap() else {
            panic!("not gcs")
        };
        assert_eq!(gcs.bucket, "bkt");
        assert_eq!(gcs.prefix, "a/b");
        assert_eq!(gcs.endpoint.as_deref(), Some("http://127.0.0.1:4443"));
        assert_eq!(gcs.anonymous, Some(true));
        assert_eq!(gcs.retries_max, Some(1));
        gcs.build().unwrap();

        let StoreConfig::Azure(azure) = StoreConfig::from_url(
            "az://ctr/p?account=acct&access_key=a2V5%2Bkey&endpoint=http://127.0.0.1:10000/acct",
        )
        .unwrap() else {
            panic!("not azure")
        };
        assert_eq!(azure.container, "ctr");
        assert_eq!(azure.prefix, "p");
        assert_eq!(azure.account.as_deref(), Some("acct"));
        assert_eq!(azure.access_key.as_deref(), Some("a2V5+key"));
        assert!(
            !format!("{azure:?}").contains("a2V5"),
            "secrets must not be printed"
        );
        let StoreConfig::Azure(emulator) =
            StoreConfig::from_url("azure://ctr?use_emulator=true&endpoint=http://127.0.0.1:1")
                .unwrap()
        else {
            panic!("not azure")
        };
        assert_eq!(emulator.use_emulator, Some(true));
        emulator.build().unwrap();
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for url in [
            "",
            "s3://",
            "s3://bkt?path_style=maybe",
            "s3://bkt?endpont=http://x",
            "ftp://host/x",
            "file://relative",
            "file:///tmp/x?fsync=sometimes",
            "file:///tmp/x?sync=true",
            "s3://bkt?request_timeout_ms=-1",
            "gs://",
            "gs://bkt?endpont=http://x",
            "gs://bkt?anonymous=perhaps",
            "az://",
            "az://ctr?acount=x",
            "az://ctr?use_emulator=yes",
        ] {
            let error = StoreConfig::from_url(url).unwrap_err();
            assert_eq!(
                error.kind(),
                StoreErrorKind::InvalidConfig,
                "{url:?} gave {error}"
            );
        }
    }

    #[test]
    fn toml_shaped_config_deserializes() {
        let config: StoreConfig = serde_json::from_str(
            r#"{"kind":"s3","bucket":"b","endpoint":"http://127.0.0.1:1","region":"r"}"#,
        )
        .unwrap();
        let StoreConfig::S3(s3) = config else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "b");
        let config: StoreConfig = serde_json::from_str(r#"{"kind":"local","path":"/x"}"#).unwrap();
        assert_eq!(
            config,
            StoreConfig::Local {
                path: "/x".into(),
                fsync: true
            }
        );
        assert!(
            serde_json::from_str::<StoreConfig>(r#"{"kind":"s3","bucket":"b","bucktt":"x"}"#)
                .is_err()
        );
    }

    #[test]
    fn s3_builds_without_network_and_rejects_bad_settings() {
        let ok = S3Config {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("s".into()),
            ..S3Config::default()
        };
        ok.build().unwrap();
        let express_without_zone = S3Config {
            bucket: "name--x-s3".into(),
            ..ok.clone()
        };
        assert_eq!(
            express_without_zone.build().unwrap_err().kind(),
            StoreErrorKind::InvalidConfig
        );
        let zero_timeout = S3Config {
            request_timeout_ms: Some(0),
            ..ok
        };
        assert_eq!(
            zero_timeout.build().unwrap_err().kind(),
            StoreErrorKind::InvalidConfig
        );
    }
}
