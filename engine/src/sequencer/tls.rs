//! TLS to the database from the URL, with libpq's parameter names and meanings, so that a
//! `postgres://` URL that works with `psql` works with an agent.
//!
//! `tokio-postgres` understands `sslmode=disable|prefer|require` only, and refuses keys it does not
//! know. So the TLS keys are taken out of the URL here (`sslrootcert`, `sslcert`, `sslkey`; the
//! `verify-ca` and `verify-full` modes are handed on as `require`), and the rustls configuration
//! they describe is built once, when the sequencer is created: a missing file or a file without a
//! certificate fails the start with the parameter's name, never a later connect. What each mode
//! checks follows libpq (`docs/cluster.md`, "TLS to PostgreSQL"):
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | if the server offers it | not checked, or its chain when `sslrootcert` is given |
//! | `require` | always | not checked, or its chain when `sslrootcert` is given (libpq's compatibility rule) |
//! | `verify-ca` | always | its chain up to `sslrootcert` (required) |
//! | `verify-full` | always | its chain, and the URL's host name or IP address in it |
//!
//! Unlike libpq, nothing is read from `~/.postgresql/` (an agent's home is no place for its
//! trust), `sslrootcert=system` is not supported, and `prefer` does not retry in plain text after
//! a failed handshake.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::error::SequencerError;

/// How the connection uses TLS: libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters of a URL, and the URL without the ones `tokio-postgres` does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// The URL to hand to `tokio-postgres`.
    pub(crate) url: String,
    /// `sslmode`; `None` in a `key=value` string (`tokio-postgres` reads it there).
    pub(crate) mode: Option<SslMode>,
    pub(crate) root_cert: Option<String>,
    pub(crate) client_cert: Option<String>,
    pub(crate) client_key: Option<String>,
}

impl UrlTls {
    /// Splits a `postgres://` or `postgresql://` URL. A `key=value` string is returned as it is:
    /// `tokio-postgres` reads its `sslmode` (and refuses the file keys, which only URLs take).
    pub(crate) fn parse(url: &str) -> Result<UrlTls, SequencerError> {
        let mut parsed = UrlTls {
            url: url.to_owned(),
            mode: None,
            root_cert: None,
            client_cert: None,
            client_key: None,
        };
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
            if is_url {
                parsed.mode = Some(SslMode::Prefer);
            }
            return Ok(parsed);
        };
        let mut kept = Vec::new();
        let mut mode = SslMode::Prefer;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                || percent_decode(raw_value).ok_or_else(|| config_error(url, key, "is not UTF-8"));
            match key {
                "sslmode" => {
                    let value = value()?;
                    mode = SslMode::parse(&value).ok_or_else(|| {
                        config_error(
                            url,
                            key,
                            &format!(
                                "is {value:?}; one of disable, prefer, require, verify-ca, \
                                 verify-full (libpq's allow is not supported)"
                            ),
                        )
                    })?;
                }
                "sslrootcert" => parsed.root_cert = Some(value()?),
                "sslcert" => parsed.client_cert = Some(value()?),
                "sslkey" => parsed.client_key = Some(value()?),
                _ => kept.push(pair),
            }
        }
        // tokio-postgres knows no verify modes; what they check is in the rustls configuration.
        let handed_on = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => SslMode::Require,
            other => other,
        };
        kept.push(match handed_on {
            SslMode::Disable => "sslmode=disable",
            SslMode::Prefer => "sslmode=prefer",
            _ => "sslmode=require",
        });
        parsed.url = format!("{base}?{}", kept.join("&"));
        parsed.mode = Some(mode);
        Ok(parsed)
    }

    /// Whether the URL names any file this module reads.
    pub(crate) fn names_files(&self) -> bool {
        self.root_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// The rustls configuration the parameters describe (`None` for `sslmode=disable`). `url`
    /// (redacted) names where the parameters came from in errors.
    pub(crate) fn client_config(
        &self,
        url: &str,
        mode: SslMode,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, SequencerError> {
        if mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = match &self.root_cert {
            Some(path) => Some(Arc::new(root_store(url, path)?)),
            None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(config_error(
                    url,
                    "sslmode",
                    &format!(
                        "is {} but the URL names no sslrootcert=/path/to/ca.pem to verify the \
                         server's certificate with",
                        mode.name()
                    ),
                ));
            }
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            None => Arc::new(Unverified(Arc::clone(&provider))),
            Some(roots) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|error| {
                            config_error(url, "sslrootcert", &format!("is unusable: {error}"))
                        })?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| SequencerError::Config {
                reason: format!("TLS to the database: {error}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert_path), Some(key_path)) => {
                let chain = certificates(url, "sslcert", cert_path)?;
                let key = read(url, "sslkey", key_path).and_then(|pem| {
                    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
                        config_error(
                            url,
                            "sslkey",
                            &format!("{key_path}: no private key in PEM: {error}"),
                        )
                    })
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    config_error(
                        url,
                        "sslkey",
                        &format!("{key_path} does not fit sslcert={cert_path}: {error}"),
                    )
                })?
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(config_error(
                    url,
                    "sslcert",
                    "and sslkey go together: name both or neither",
                ));
            }
        };
        Ok(Some(Arc::new(config)))
    }
}

/// `url` with its password replaced by `***`, for messages (the user info's and a `password=`
/// parameter's, in URLs and `key=value` strings).
pub(crate) fn redacted(url: &str) -> String {
    let mut text = url.to_owned();
    if let Some(scheme_end) = text.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = text[authority_start..]
            .find(['/', '?'])
            .map_or(text.len(), |end| authority_start + end);
        if let Some(at) = text[authority_start..authority_end].rfind('@')
            && let Some(colon) = text[authority_start..authority_start + at].find(':')
        {
            text.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    // `password=…` as a URL parameter (up to `&`) or a `key=value` pair (up to a space; a quoted
    // value up to its closing quote).
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(found) = rest.find("password=") {
        let at_boundary = found == 0
            || matches!(
                rest.as_bytes().get(found - 1),
                Some(b'?' | b'&' | b' ' | b'\t')
            );
        let value_start = found + "password=".len();
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if !at_boundary {
            continue;
        }
        let value_end = if let Some(quoted) = rest.strip_prefix('\'') {
            quoted.find('\'').map_or(rest.len(), |end| end + 2)
        } else {
            rest.find(['&', ' ', '\t']).unwrap_or(rest.len())
        };
        out.push_str("***");
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

fn config_error(url: &str, key: &str, what: &str) -> SequencerError {
    SequencerError::Config {
        reason: format!("{key} in the database URL {}: {what}", redacted(url)),
    }
}

fn read(url: &str, key: &str, path: &str) -> Result<Vec<u8>, SequencerError> {
    std::fs::read(path)
        .map_err(|error| config_error(url, key, &format!("cannot read {path}: {error}")))
}

/// Every certificate in the PEM file `path`; at least one.
fn certificates(
    url: &str,
    key: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, SequencerError> {
    let pem = read(url, key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error(url, key, &format!("{path}: bad PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(config_error(
            url,
            key,
            &format!("{path} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(certificates)
}

fn root_store(url: &str, path: &str) -> Result<rustls::RootCertStore, SequencerError> {
    if path == "system" {
        return Err(config_error(
            url,
            "sslrootcert",
            "is `system`, which is not supported: name a PEM file of the certificate authorities \
             to trust",
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(url, "sslrootcert", path)? {
        roots.add(certificate).map_err(|error| {
            config_error(
                url,
                "sslrootcert",
                &format!("{path}: a certificate that cannot be a root: {error}"),
            )
        })?;
    }
    Ok(roots)
}

/// `%XX` decoding of a URL parameter (as `tokio-postgres` does: `+` stays `+`); `None` when the
/// result is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, hex) {
            (b'%', Some(value)) => {
                decoded.push(value);
                index += 3;
            }
            _ => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// `sslmode=verify-ca` (and `require` or `prefer` with a root certificate): the chain must lead to
/// a trusted root; the name in the certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode=prefer` or `require` without a root certificate: encrypted, but any certificate is
/// accepted (libpq's meaning: protection from eavesdroppers, not from an impostor). The handshake's
/// signatures are still checked, so the session key belongs to whoever holds the certificate.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_leave_the_url_and_verify_modes_are_handed_on_as_require() {
        let parsed = UrlTls::parse(
            "postgres://u:p@db:5432/x?application_name=a&sslmode=verify-full\
             &sslrootcert=/etc/ca%20dir/ca.pem&sslcert=/c.pem&sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(
            parsed.url,
            "postgres://u:p@db:5432/x?application_name=a&sslmode=require"
        );
        assert_eq!(parsed.mode, Some(SslMode::VerifyFull));
        assert_eq!(parsed.root_cert.as_deref(), Some("/etc/ca dir/ca.pem"));
        assert_eq!(parsed.client_cert.as_deref(), Some("/c.pem"));
        assert_eq!(parsed.client_key.as_deref(), Some("/k.pem"));

        let plain = UrlTls::parse("postgres://db/x").unwrap();
        assert_eq!(plain.url, "postgres://db/x");
        assert_eq!(plain.mode, Some(SslMode::Prefer));
        let disabled = UrlTls::parse("postgresql://db/x?sslmode=disable").unwrap();
        assert_eq!(disabled.url, "postgresql://db/x?sslmode=disable");
        assert_eq!(disabled.mode, Some(SslMode::Disable));
        let key_value = UrlTls::parse("host=db sslmode=require").unwrap();
        assert_eq!(key_value.url, "host=db sslmode=require");
        assert_eq!(key_value.mode, None);
    }

    #[test]
    fn bad_parameters_are_named_and_the_password_is_not() {
        let message = |url: &str| {
            let tls = UrlTls::parse(url)?;
            tls.client_config(url, tls.mode.unwrap_or(SslMode::Prefer))
                .map(|_| ())
        };
        let cases = [
            ("postgres://u:secret@db/x?sslmode=allow", "sslmode"),
            (
                "postgres://u:secret@db/x?sslmode=verify-full",
                "sslrootcert",
            ),
            (
                "postgres://u:secret@db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert in the database URL postgres://u:***@db/x",
            ),
            ("postgres://u:secret@db/x?sslrootcert=system", "system"),
            ("postgres://u@db/x?sslcert=/c.pem&password=secret", "sslkey"),
        ];
        for (url, expected) in cases {
            let error = message(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
        // A file that holds no certificate.
        let directory = tempfile::tempdir().unwrap();
        let not_pem = directory.path().join("ca.pem");
        std::fs::write(&not_pem, b"not a certificate\n").unwrap();
        let url = format!(
            "postgres://u:secret@db/x?sslmode=require&sslrootcert={}",
            not_pem.display()
        );
        let error = message(&url).unwrap_err().to_string();
        assert!(
            error.contains("sslrootcert") && error.contains("holds no certificate"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn passwords_are_redacted() {
        for (url, expected) in [
            ("postgres://u:pw@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgres://u:p@w@db/x?a=1", "postgres://u:***@db/x?a=1"),
            ("postgres://u@db/x", "postgres://u@db/x"),
            (
                "postgres://db/x?password=pw&sslmode=require",
                "postgres://db/x?password=***&sslmode=require",
            ),
            (
                "host=db password='p w' user=u",
                "host=db password=*** user=u",
            ),
            ("host=db old_password=x", "host=db old_password=x"),
        ] {
            assert_eq!(redacted(url), expected);
        }
    }
}
