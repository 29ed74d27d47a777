//! The object-store servers the tests run Sluice on, each started on loopback by the test that
//! needs it (ephemeral ports, a temporary directory, killed on drop):
//!
//! - `s3s-fs` ([`S3TestServer`], a Rust dev-dependency: always there),
//! - SeaweedFS ([`SeaweedFs`]), an S3-compatible server in MinIO's role,
//! - fake-gcs-server ([`FakeGcsServer`]), an emulator of Google Cloud Storage,
//! - Azurite ([`Azurite`]), Microsoft's emulator of Azure Blob Storage.
//!
//! The last three are installed by `scripts/install-store-servers.sh` (called by
//! `scripts/install-test-deps.sh`) under `target/store-servers/`. A missing one skips the test
//! locally and fails it under `CI=true` ([`start_or_skip`], `tools::skip_or_fail`).
//!
//! Where a server departs from the service it stands in for, its module says so, and so does
//! docs/object-stores.md ("Servers under test"); the store conformance suite has a test per
//! departure that fails once the server stops departing.

mod azurite;
mod fake_gcs;
pub mod http;
mod seaweedfs;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use sluice_engine::store::S3TestServer;

pub use azurite::{AZURITE_CONTAINER, Azurite};
pub use fake_gcs::{FAKE_GCS_BUCKET, FakeGcsServer};
pub use seaweedfs::{SEAWEEDFS_BUCKET, SeaweedFs};

use crate::tools::skip_or_fail;
use crate::{HarnessError, repository_root};

/// A running object-store server a Sluice agent (or the engine's store) can use.
pub trait StoreServer: std::fmt::Debug + Send {
    /// A `--store` URL for a store under `prefix` (a folder of the bucket or container).
    fn store_url(&self, prefix: &str) -> String;
}

impl StoreServer for S3TestServer {
    fn store_url(&self, prefix: &str) -> String {
        S3TestServer::store_url(self, prefix)
    }
}

/// The servers, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreServerKind {
    S3sFs,
    SeaweedFs,
    FakeGcs,
    Azurite,
}

impl StoreServerKind {
    pub const ALL: [StoreServerKind; 4] = [
        StoreServerKind::S3sFs,
        StoreServerKind::SeaweedFs,
        StoreServerKind::FakeGcs,
        StoreServerKind::Azurite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreServerKind::S3sFs => "s3s-fs",
            StoreServerKind::SeaweedFs => "SeaweedFS",
            StoreServerKind::FakeGcs => "fake-gcs-server",
            StoreServerKind::Azurite => "Azurite",
        }
    }

    /// Starts one: `Ok(None)` when it is not installed (after `skip_or_fail`, which panics in CI).
    pub fn start(self) -> Result<Option<Box<dyn StoreServer>>, HarnessError> {
        Ok(match self {
            StoreServerKind::S3sFs => Some(Box::new(
                S3TestServer::start().map_err(HarnessError::io("start s3s-fs"))?,
            )),
            StoreServerKind::SeaweedFs => match SeaweedFs::binary() {
                Some(binary) => Some(Box::new(SeaweedFs::start(&binary)?)),
                None => None,
            },
            StoreServerKind::FakeGcs => match FakeGcsServer::binary() {
                Some(binary) => Some(Box::new(FakeGcsServer::start(&binary)?)),
                None => None,
            },
            StoreServerKind::Azurite => match Azurite::binary() {
                Some(binary) => Some(Box::new(Azurite::start(&binary)?)),
                None => None,
            },
        })
    }
}

/// Starts `kind` for `test`, or skips (locally) / fails (`CI=true`) naming the install script
/// when it is not installed; `None` means the caller returns. A server that is installed but
/// does not start panics with its log.
pub fn start_or_skip(kind: StoreServerKind, test: &str) -> Option<Box<dyn StoreServer>> {
    match kind.start() {
        Ok(Some(server)) => Some(server),
        Ok(None) => {
            skip_not_installed(test, kind.name());
            None
        }
        Err(error) => panic!("{test}: {} did not start: {error}", kind.name()),
    }
}

/// Skips `test` (locally) or fails it (`CI=true`) because `server` is not installed, naming the
/// install script and appending its failures ([`install_failures`]).
pub fn skip_not_installed(test: &str, server: &str) {
    skip_or_fail(&format!(
        "{test}: {server} is not installed; run `bash scripts/install-test-deps.sh` \
         (it builds it into target/store-servers/){}",
        install_failures()
    ));
}

/// Why the last run of `scripts/install-store-servers.sh` could not install a server, as it wrote
/// in `target/store-servers/install-failures.log` (the command, its last lines, the free disk
/// space), prefixed for a failure message; empty when that run installed everything or the log is
/// unreadable. A CI log that shows only the failing tests then still shows the cause. At most
/// 4,000 bytes of it, the end kept.
pub fn install_failures() -> String {
    install_failures_in(&install_dir())
}

fn install_failures_in(dir: &std::path::Path) -> String {
    const SHOWN_MAX: usize = 4_000;
    let Ok(log) = std::fs::read_to_string(dir.join("install-failures.log")) else {
        return String::new();
    };
    let log = log.trim();
    if log.is_empty() {
        return String::new();
    }
    let mut start = log.len().saturating_sub(SHOWN_MAX);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "; the install script's failures (target/store-servers/install-failures.log):\n{}",
        log.get(start..).unwrap_or_default()
    )
}

/// Where `scripts/install-store-servers.sh` puts the servers.
fn install_dir() -> PathBuf {
    repository_root().join("target").join("store-servers")
}

/// `env` if set, else `installed` if it exists.
fn find_binary(env: &str, installed: PathBuf) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    installed.is_file().then_some(installed)
}

/// `count` distinct loopback ports that were free a moment ago (all held while they are chosen).
/// Racy by nature, as [`crate::process::free_port`] is.
fn free_ports<const N: usize>() -> Result<[u16; N], HarnessError> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("bind 127.0.0.1:0"))?;
        *port = listener
            .local_addr()
            .map_err(HarnessError::io("local_addr"))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::install_failures_in;

    #[test]
    fn the_install_scripts_failures_are_shown_with_their_end_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            install_failures_in(dir.path()),
            "",
            "no log: nothing to add"
        );
        let log = dir.path().join("install-failures.log");
        std::fs::write(&log, "\n").unwrap();
        assert_eq!(
            install_failures_in(dir.path()),
            "",
            "an empty log: nothing to add"
        );
        // 6,033 bytes: the cut 4,000 from the end falls inside a two-byte character.
        let long = format!("{}go install fake-gcs-server failed\n", "é".repeat(3_000));
        std::fs::write(&log, &long).unwrap();
        let shown = install_failures_in(dir.path());
        assert!(
            shown.starts_with("; the install script's failures"),
            "{shown}"
        );
        assert!(
            shown.ends_with("go install fake-gcs-server failed"),
            "{shown}"
        );
        assert!(
            shown.len() < 4_100,
            "at most 4,000 bytes of the log: {}",
            shown.len()
        );
    }
}
