//! Google Cloud Storage: [`GcsConfig`], parsed from `gs://bucket/prefix?...` and built into
//! `object_store`'s GCS client.
//!
//! `object_store` talks to GCS's XML API and sends a create-only write (`PutMode::Create`) as
//! `x-goog-if-generation-match: 0`: "only if no live object has this name". GCS answers 412 when
//! one does, which `object_store` reports as `AlreadyExists`. Credentials come from the usual
//! places (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! application default credentials, then the instance metadata server); an emulator such as
//! fake-gcs-server is reached with `endpoint=http://host:port` (or `STORAGE_EMULATOR_HOST`, the
//! variable Google's own client libraries read) and anonymous requests.

use std::fmt;
use std::sync::Arc;

use object_store::StaticCredentialProvider;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};

use super::StoreResult;
use super::backends::ObjectStoreBackend;
use super::config::{HttpSettings, parse_value};
use super::error::StoreError;

/// The environment variable that points Google's client libraries at an emulator
/// (`host:port` or a URL).
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

/// A GCS bucket. `None` fields fall back to the `GOOGLE_*` environment variables, then to the
/// defaults documented on each field.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket: String,
    /// Folder inside the bucket that this store owns.
    #[serde(default)]
    pub prefix: String,
    /// Base URL of the service: `https://storage.googleapis.com` unless set here, in
    /// `GOOGLE_BASE_URL`, or (for an emulator) in `STORAGE_EMULATOR_HOST`.
    pub endpoint: Option<String>,
    /// Send requests unsigned. Default: true exactly when the endpoint is plain `http://` (an
    /// emulator: Google serves HTTPS only, and there is no token server to ask).
    pub anonymous: Option<bool>,
    /// Path of a service account's JSON key file (else `GOOGLE_SERVICE_ACCOUNT`, ...).
    pub service_account: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub retries_max: Option<usize>,
    pub retry_timeout_ms: Option<u64>,
}

// Hand-written to match the S3 and Azure configs (a key file's path is not a secret, but keep the
// habit in one place).
impl fmt::Debug for GcsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("anonymous", &self.anonymous)
            .field("service_account", &self.service_account)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("retries_max", &self.retries_max)
            .field("retry_timeout_ms", &self.retry_timeout_ms)
            .finish()
    }
}

impl GcsConfig {
    /// `gs://bucket/optional/prefix?endpoint=...&anonymous=...&...`.
    pub(super) fn from_url(url: &url::Url) -> StoreResult<GcsConfig> {
        let bucket = url.host_str().unwrap_or("").to_owned();
        if bucket.is_empty() {
            return Err(StoreError::invalid_config(
                "gs:// URL without a bucket (expected gs://bucket/prefix)",
            ));
        }
        let mut config = GcsConfig {
            bucket,
            prefix: url.path().trim_matches('/').to_owned(),
            ..GcsConfig::default()
        };
        for (name, value) in url.query_pairs() {
            let value = value.into_owned();
            match name.as_ref() {
                "endpoint" => config.endpoint = Some(value),
                "anonymous" => config.anonymous = Some(parse_value(&name, &value)?),
                "service_account" => config.service_account = Some(value),
                "request_timeout_ms" => {
                    config.request_timeout_ms = Some(parse_value(&name, &value)?)
                }
                "connect_timeout_ms" => {
                    config.connect_timeout_ms = Some(parse_value(&name, &value)?)
                }
                "retries_max" => config.retries_max = Some(parse_value(&name, &value)?),
                "retry_timeout_ms" => config.retry_timeout_ms = Some(parse_value(&name, &value)?),
                other => {
                    return Err(StoreError::invalid_config(format!(
                        "unknown gs:// URL parameter {other:?}"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The endpoint the client will use, if not Google's: this config's, else `GOOGLE_BASE_URL`,
    /// else `STORAGE_EMULATOR_HOST` (a bare `host:port` there means `http://host:port`).
    fn endpoint(&self) -> Option<String> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        self.endpoint
            .clone()
            .or_else(|| from_env("GOOGLE_BASE_URL"))
            .or_else(|| {
                from_env(STORAGE_EMULATOR_HOST).map(|host| {
                    if host.contains("://") {
                        host
                    } else {
                        format!("http://{host}")
                    }
                })
            })
            .map(|endpoint| endpoint.trim_end_matches('/').to_owned())
    }

    /// Builds the GCS client. Does no I/O: wrong credentials or a missing bucket show up on the
    /// first call.
    pub fn build(&self) -> StoreResult<ObjectStoreBackend> {
        if self.bucket.is_empty() {
            return Err(StoreError::invalid_config(
                "GCS store without a bucket name",
            ));
        }
        let endpoint = self.endpoint();
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("http://"));
        let http = HttpSettings {
            allow_http: plain_http,
            request_timeout_ms: self.request_timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            retries_max: self.retries_max,
            retry_timeout_ms: self.retry_timeout_ms,
        };
        let (client_options, retry, request_timeout_ms) = http.client("GCS")?;
        let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.bucket);
        if let Some(endpoint) = &endpoint {
            builder = builder.with_base_url(endpoint);
        }
        if let Some(path) = &self.service_account {
            builder = builder.with_service_account_path(path);
        }
        if self.anonymous.unwrap_or(plain_http) {
            // `object_store` 0.14.2 asks its credential provider before every XML API request
            // even with `skip_signature` (only signed URLs honour it), and the default provider
            // is the instance metadata server: give it a static empty token instead, as its
            // `disable_oauth` service-account option does.
            let anonymous = GcpCredential {
                bearer: String::new(),
            };
            builder = builder
                .with_skip_signature(true)
                .with_credentials(Arc::new(StaticCredentialProvider::new(anonymous)));
        }
        let gcs = builder
            .with_client_options(client_options)
            .with_retry(retry)
            .build()
            .map_err(|error| {
                StoreError::invalid_config(format!("GCS bucket {:?}: {error}", self.bucket))
            })?;
        Ok(ObjectStoreBackend::new(Arc::new(gcs), &self.prefix)?
            .with_request_timeout_ms(request_timeout_ms))
    }
}
