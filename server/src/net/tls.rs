//! TLS for the Kafka listener (Kafka's `SSL` security protocol), with rustls.
//!
//! - **Versions**: TLS 1.2 and 1.3 (rustls's defaults), with rustls's default cipher suites.
//! - **Certificates** are PEM files: a chain (leaf first) and its private key (PKCS#8, PKCS#1 or
//!   SEC1). They are read at start — a missing or malformed file stops the start with the file's
//!   name — and **reloaded without a restart**: each handshake compares the two files' size and
//!   modification time with what was loaded (two `stat` calls; a handshake itself costs far
//!   more) and loads them again when either changed. A reload that fails (a half-written file,
//!   a key that does not match) keeps the certificate in use and logs a warning, so renewing a
//!   certificate can never take the listener down.
//! - **Client certificates (mTLS)**: with a CA file, every client must present a certificate
//!   chained to one of its certificates, or the handshake fails. The CA file is **reloaded
//!   without a restart** too: each accepted connection compares its size and modification time
//!   with what was loaded and, when it changed, builds the listener's TLS configuration again
//!   with the new CAs (connections already open keep the session they have). A CA file that
//!   does not load keeps the CAs in use and logs a warning.
//!
//! The handshake runs in the connection's task on its core and is bounded by
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a socket and sends nothing holds it for no longer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// Longest a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the listener's certificate, key and (for mTLS) client CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|error| TlsError(format!("cannot read {}: {error}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError(format!("{}: not PEM certificates: {error}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        TlsError(format!(
            "{}: no usable private key: {error}",
            path.display()
        ))
    })
}

/// The certificate and key, loaded and checked against each other.
fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert_file)?;
    let key = read_key(&files.key_file)?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|error| {
        TlsError(format!(
            "{} and {} do not make a usable certificate: {error}",
            files.cert_file.display(),
            files.key_file.display()
        ))
    })?;
    Ok(certified)
}

/// What identifies a file's version: size and modification time.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: [Option<(u64, SystemTime)>; 2],
}

/// Serves the certificate, loading it again when its files change (see the module doc).
struct ReloadingCert {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn stamps(&self) -> [Option<(u64, SystemTime)>; 2] {
        [stamp(&self.files.cert_file), stamp(&self.files.key_file)]
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let stamps = self.stamps();
        if stamps != loaded.stamps {
            match load_certified_key(&self.files) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                    loaded.key = Arc::new(key);
                }
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use");
                }
            }
            // Either way, this version of the files has been dealt with.
            loaded.stamps = stamps;
        }
        Some(Arc::clone(&loaded.key))
    }
}

/// The acceptor of one TLS listener: the certificate reloads itself at each handshake
/// ([`ReloadingCert`]); the client CAs are reloaded by [`Acceptor::current`], which builds the
/// TLS configuration again around the same certificate resolver.
pub struct Acceptor {
    files: TlsFiles,
    resolver: Arc<ReloadingCert>,
    current: Mutex<CurrentAcceptor>,
}

struct CurrentAcceptor {
    /// The client CA file's version the acceptor was built with.
    ca_stamp: Option<(u64, SystemTime)>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Acceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// The acceptor for the next connection: built again first when the client CA file changed
    /// since (a file that does not load keeps the previous CAs, with a warning).
    pub fn current(&self) -> TlsAcceptor {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = &self.files.client_ca_file {
            let stamp = stamp(path);
            if stamp != current.ca_stamp {
                match server_config(&self.files, &self.resolver) {
                    Ok(acceptor) => {
                        tracing::info!(client_ca = %path.display(), "TLS client CAs reloaded");
                        current.acceptor = acceptor;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS client CAs not reloaded; the previous ones stay in use");
                    }
                }
                // Either way, this version of the file has been dealt with.
                current.ca_stamp = stamp;
            }
        }
        current.acceptor.clone()
    }
}

/// The client certificate verifier of `path`'s CAs.
fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_chain(path)? {
        roots.add(certificate).map_err(|error| {
            TlsError(format!(
                "{}: not a usable CA certificate: {error}",
                path.display()
            ))
        })?;
    }
    WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|error| TlsError(format!("{}: {error}", path.display())))
}

/// The listener's TLS configuration: the certificate from `resolver` and, with a CA file, client
/// certificates required.
fn server_config(files: &TlsFiles, resolver: &Arc<ReloadingCert>) -> Result<TlsAcceptor, TlsError> {
    let builder = rustls::ServerConfig::builder();
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
    };
    let resolver: Arc<dyn ResolvesServerCert> = resolver.clone();
    let config = builder.with_cert_resolver(resolver);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor for a TLS listener: certificate (reloading) and, with a CA file, client
/// certificates required (reloading too).
pub fn acceptor(files: &TlsFiles) -> Result<Arc<Acceptor>, TlsError> {
    let stamps = [stamp(&files.cert_file), stamp(&files.key_file)];
    let resolver = Arc::new(ReloadingCert {
        files: files.clone(),
        loaded: Mutex::new(Loaded {
            key: Arc::new(load_certified_key(files)?),
            stamps,
        }),
    });
    let ca_stamp = files.client_ca_file.as_deref().and_then(stamp);
    let acceptor = server_config(files, &resolver)?;
    Ok(Arc::new(Acceptor {
        files: files.clone(),
        resolver,
        current: Mutex::new(CurrentAcceptor { ca_stamp, acceptor }),
    }))
}
