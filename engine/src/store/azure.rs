//! Azure Blob Storage: [`AzureConfig`], parsed from `az://container/prefix?...` and built into
//! `object_store`'s Azure client.
//!
//! `object_store` sends a create-only write (`PutMode::Create`) as a Put Blob with
//! `If-None-Match: *`; Azure answers 409 (`BlobAlreadyExists`) or 412 when the blob exists, both
//! reported as `AlreadyExists`. Azure has no suffix ranges (`Range: bytes=-N`), so a tail read
//! (`get_tail`) is a HEAD and a ranged GET there. Credentials come from the usual `AZURE_*` environment variables
//! (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`,
//! `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, workload identity, managed identity).
//!
//! Emulators (Azurite): `use_emulator=true` uses Azurite's well-known account `devstoreaccount1`
//! and its published key, at `endpoint` (else `AZURITE_BLOB_STORAGE_URL`, else
//! `http://127.0.0.1:10000`). Unlike `object_store`'s own emulator switch, which reads the address
//! from the environment only, this lets one process talk to several emulators on ephemeral ports.

use std::fmt;
use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use super::StoreResult;
use super::backends::ObjectStoreBackend;
use super::config::{HttpSettings, parse_value};
use super::error::StoreError;

/// Azurite's (and the legacy storage emulator's) one account, the same on every installation.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published account key. Not a secret: Microsoft documents it for every emulator
/// (<https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key>).
pub const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Where Azurite listens for the Blob service unless told otherwise.
const AZURITE_URL_DEFAULT: &str = "http://127.0.0.1:10000";

/// An Azure Blob container. `None` fields fall back to the `AZURE_*` environment variables, then
/// to the defaults documented on each field.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    pub container: String,
    /// Folder inside the container that this store owns.
    #[serde(default)]
    pub prefix: String,
    /// Storage account name (else `AZURE_STORAGE_ACCOUNT_NAME`; `devstoreaccount1` with
    /// `use_emulator`).
    pub account: Option<String>,
    /// Account URL: `https://<account>.blob.core.windows.net` unless set here (or in
    /// `AZURE_STORAGE_ENDPOINT`). With `use_emulator`, the emulator's address without the account
    /// (`http://127.0.0.1:10000`).
    pub endpoint: Option<String>,
    /// Shared account key (else `AZURE_STORAGE_ACCOUNT_KEY`; Azurite's with `use_emulator`).
    pub access_key: Option<String>,
    /// SAS token (`sv=...&sig=...`), instead of an account key.
    pub sas_token: Option<String>,
    /// Talk to Azurite. Default: `AZURE_STORAGE_USE_EMULATOR`, else false.
    pub use_emulator: Option<bool>,
    pub request_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub retries_max: Option<usize>,
    pub retry_timeout_ms: Option<u64>,
}

// Hand-written so that secrets never reach a log line.
impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("AzureConfig")
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .field("access_key", &redact(&self.access_key))
            .field("sas_token", &redact(&self.sas_token))
            .field("use_emulator", &self.use_emulator)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("retries_max", &self.retries_max)
            .field("retry_timeout_ms", &self.retry_timeout_ms)
            .finish()
    }
}

impl AzureConfig {
    /// `az://container/optional/prefix?account=...&...` (also `azure://`).
    pub(super) fn from_url(url: &url::Url) -> StoreResult<AzureConfig> {
        let container = url.host_str().unwrap_or("").to_owned();
        if container.is_empty() {
            return Err(StoreError::invalid_config(
                "az:// URL without a container (expected az://container/prefix)",
            ));
        }
        let mut config = AzureConfig {
            container,
            prefix: url.path().trim_matches('/').to_owned(),
            ..AzureConfig::default()
        };
        for (name, value) in url.query_pairs() {
            let value = value.into_owned();
            match name.as_ref() {
                "account" => config.account = Some(value),
                "endpoint" => config.endpoint = Some(value),
                "access_key" => config.access_key = Some(value),
                "sas_token" => config.sas_token = Some(value),
                "use_emulator" => config.use_emulator = Some(parse_value(&name, &value)?),
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
                        "unknown az:// URL parameter {other:?}"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Builds the Azure client. Does no I/O: wrong credentials or a missing container show up on
    /// the first call.
    pub fn build(&self) -> StoreResult<ObjectStoreBackend> {
        if self.container.is_empty() {
            return Err(StoreError::invalid_config(
                "Azure store without a container name",
            ));
        }
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let use_emulator = match self.use_emulator {
            Some(use_emulator) => use_emulator,
            None => match env("AZURE_STORAGE_USE_EMULATOR") {
                Some(value) => parse_value("AZURE_STORAGE_USE_EMULATOR", &value)?,
                None => false,
            },
        };
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(&self.container)
            // The emulator is mapped onto an ordinary account URL below; `object_store`'s own
            // switch would take the address from the environment instead.
            .with_use_emulator(false);
        let mut endpoint = self.endpoint.clone();
        let mut access_key = self.access_key.clone();
        if use_emulator {
            let account = self.account.as_deref().unwrap_or(AZURITE_ACCOUNT);
            // Azurite serves accounts as the first path segment: http://host:port/account/container.
            let base = endpoint
                .or_else(|| env("AZURITE_BLOB_STORAGE_URL"))
                .unwrap_or_else(|| AZURITE_URL_DEFAULT.to_owned());
            endpoint = Some(format!("{}/{account}", base.trim_end_matches('/')));
            builder = builder.with_account(account);
            if access_key.is_none() && self.sas_token.is_none() {
                access_key = Some(AZURITE_ACCOUNT_KEY.to_owned());
            }
        } else if let Some(account) = &self.account {
            builder = builder.with_account(account);
        }
        let allow_http = endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("http://"));
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = access_key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = &self.sas_token {
            let pairs = object_store::azure::split_sas(sas)
                .map_err(|error| StoreError::invalid_config(format!("Azure SAS token: {error}")))?;
            builder = builder.with_sas_authorization(pairs);
        }
        let http = HttpSettings {
            allow_http,
            request_timeout_ms: self.request_timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            retries_max: self.retries_max,
            retry_timeout_ms: self.retry_timeout_ms,
        };
        let (client_options, retry, request_timeout_ms) = http.client("Azure")?;
        let azure = builder
            .with_client_options(client_options)
            .with_retry(retry)
            .build()
            .map_err(|error| {
                StoreError::invalid_config(format!("Azure container {:?}: {error}", self.container))
            })?;
        Ok(ObjectStoreBackend::new(Arc::new(azure), &self.prefix)?
            .with_request_timeout_ms(request_timeout_ms)
            .without_suffix_ranges())
    }
}
