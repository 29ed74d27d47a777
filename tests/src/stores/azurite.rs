//! [`Azurite`]: Microsoft's Azure Storage emulator (its Blob service only, `azurite-blob`) on
//! loopback, with one container in a temporary directory.
//!
//! **Where it departs from Azure Blob Storage.** List Blobs ignores `startFrom` (Azure's offset
//! for a listing; Azure/Azurite#2619): a listing asked to start after a key returns the keys before
//! it too. `object_store` filters on the client in its own emulator mode; the engine's adapter
//! filters every listing whatever the backend (`backends.rs`), so Sluice is correct on both, and
//! `store_conformance`'s `azurite_departures` checks that Azurite still ignores it. Create-only
//! uploads (`If-None-Match: *`) are refused with 409 as on Azure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use sluice_engine::store::{AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY};

use super::http::call;
use super::{StoreServer, find_binary, free_ports, install_dir, loopback};
use crate::HarnessError;
use crate::process::{ChildGuard, wait_for_port};

/// The container every test store lives in (a folder per test inside it).
pub const AZURITE_CONTAINER: &str = "sluice-test";
const STARTUP_TIMEOUT_S: u64 = 60;

#[derive(Debug)]
pub struct Azurite {
    port: u16,
    // Dropped in field order: the process dies before its directory is removed.
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// `SLUICE_AZURITE_BIN`, else `target/store-servers/azurite/node_modules/.bin/azurite-blob`.
    pub fn binary() -> Option<PathBuf> {
        find_binary(
            "SLUICE_AZURITE_BIN",
            install_dir()
                .join("azurite")
                .join("node_modules")
                .join(".bin")
                .join("azurite-blob"),
        )
    }

    /// Starts the Blob service with its workspace in a temporary directory (no telemetry: there
    /// is no internet here) and creates the container.
    pub fn start(binary: &Path) -> Result<Azurite, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-azurite-")
            .tempdir()
            .map_err(HarnessError::io("create a directory for Azurite"))?;
        let [port] = free_ports::<1>()?;
        let mut command = Command::new(binary);
        command
            .current_dir(dir.path())
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(port.to_string())
            .arg("--location")
            .arg(dir.path())
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"]);
        let log = dir.path().join("azurite.log");
        let mut process = ChildGuard::spawn("Azurite", &mut command, &log)?;
        wait_for_port(
            loopback(port),
            &mut process,
            Duration::from_secs(STARTUP_TIMEOUT_S),
        )?;
        create_container(port)?;
        Ok(Azurite {
            port,
            process,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT` (the account is the first path segment below it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

impl StoreServer for Azurite {
    /// Azurite's well-known account and key (`use_emulator=true`).
    fn store_url(&self, prefix: &str) -> String {
        format!(
            "az://{AZURITE_CONTAINER}/{prefix}?use_emulator=true&endpoint={}",
            self.endpoint()
        )
    }
}

/// Create Container, signed with the emulator's shared key by `object_store`'s own signer (the
/// store client has no call for it; Azure needs a signature even from an emulator).
fn create_container(port: u16) -> Result<(), HarnessError> {
    let address = loopback(port);
    let protocol = |message: String| HarnessError::Protocol {
        address: address.to_string(),
        message,
    };
    let path = format!("/{AZURITE_ACCOUNT}/{AZURITE_CONTAINER}?restype=container");
    let mut request = HttpRequest::new(HttpRequestBody::from(Vec::new()));
    *request.method_mut() = "PUT"
        .parse()
        .map_err(|error| protocol(format!("method: {error}")))?;
    *request.uri_mut() = format!("http://{address}{path}")
        .parse()
        .map_err(|error| protocol(format!("uri: {error}")))?;
    request.headers_mut().insert(
        "content-length",
        "0".parse()
            .map_err(|error| protocol(format!("header: {error}")))?,
    );
    let key = AzureAccessKey::try_new(AZURITE_ACCOUNT_KEY)
        .map_err(|error| protocol(format!("account key: {error}")))?;
    let credential = AzureCredential::AccessKey(key);
    AzureAuthorizer::new(&credential, AZURITE_ACCOUNT)
        .try_authorize(&mut request)
        .map_err(|error| protocol(format!("signing Create Container: {error}")))?;
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|value| (name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    let answer = call(address, "PUT", &path, &headers, b"")?;
    if answer.status != 201 {
        return Err(protocol(format!(
            "Create Container {AZURITE_CONTAINER}: {} {}",
            answer.status, answer.body
        )));
    }
    Ok(())
}
