//! The TLS listener (Kafka's `SSL`): certificates from PEM files, reloaded without a restart,
//! client certificates when a CA is configured, and a real client (librdkafka through
//! confluent-kafka) producing and consuming over TLS. Certificates are made per test with rcgen:
//! a CA, a server certificate for `localhost` and `127.0.0.1`, a client certificate.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ResponseHeader,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sluice_server::protocol::client_codec::{decode_response, encode_request};

pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_params,
            ca_key,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a certificate for `names` signed by the CA, as `{stem}.pem` and `{stem}-key.pem`;
    /// returns its DER.
    pub(crate) fn issue(&self, stem: &str, common_name: &str, names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let certificate = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.path(&format!("{stem}.pem")), certificate.pem()).unwrap();
        std::fs::write(self.path(&format!("{stem}-key.pem")), key.serialize_pem()).unwrap();
        certificate.der().to_vec()
    }
}

/// A blocking TLS client that trusts the test CA, optionally presenting `client`.
pub(crate) fn connect(
    pki: &Pki,
    address: SocketAddr,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // Drive the handshake to the end (a refusal surfaces here).
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One request and its decoded response over a TLS stream.
pub(crate) fn call<
    R: kafka_protocol::protocol::Encodable,
    P: kafka_protocol::protocol::Decodable,
>(
    stream: &mut impl ReadWrite,
    api_key: ApiKey,
    version: i16,
    body: &R,
) -> std::io::Result<P> {
    let frame = encode_request(api_key, version, 7, Some("tls-test"), body).unwrap();
    stream.write_all(&frame)?;
    stream.flush()?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let mut response = prefix.to_vec();
    response.resize(4 + i32::from_be_bytes(prefix) as usize, 0);
    stream.read_exact(&mut response[4..])?;
    let (header, body): (ResponseHeader, P) =
        decode_response(Bytes::from(response), api_key, version).unwrap();
    assert_eq!(header.correlation_id, 7);
    Ok(body)
}

pub(crate) trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn tls_agent(pki: &Pki, client_ca: bool) -> common::TestAgent {
    common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(pki.path("server.pem"));
        config.tls_key_file = Some(pki.path("server-key.pem"));
        config.tls_client_ca_file = client_ca.then(|| pki.path("ca.pem"));
    })
}

#[test]
fn tls_listener_serves_kafka_and_reloads_its_certificate() {
    let pki = Pki::new();
    let first = pki.issue("server", "sluice-1", &["localhost", "127.0.0.1"]);
    let agent = tls_agent(&pki, false);
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    assert_ne!(tls_addr, agent.addr(), "a port of its own");

    let mut stream = connect(&pki, tls_addr, None).unwrap();
    let peer = stream.conn.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(peer, first);
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name("tls-test".into())
            .with_client_software_version("1".into()),
    )
    .unwrap();
    assert_eq!(versions.error_code, 0);
    // A client that came in over TLS is told the TLS listener's address.
    let metadata: MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default(),
    )
    .unwrap();
    let broker = &metadata.brokers[0];
    assert_eq!(
        (broker.host.as_str(), broker.port),
        ("localhost", i32::from(tls_addr.port()))
    );
    // ... and a plaintext client the plaintext one.
    let mut plain = common::RawClient::connect(agent.addr());
    let metadata: MetadataResponse = plain.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(metadata.brokers[0].port, i32::from(agent.addr().port()));

    // Plaintext on the TLS port: the handshake fails — the agent answers with a TLS alert
    // record (content type 21), never a Kafka response — closes, and serves on.
    let mut wrong = common::RawClient::connect(tls_addr);
    wrong.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let mut answer = Vec::new();
    wrong.stream.read_to_end(&mut answer).unwrap();
    assert!(
        answer.is_empty() || answer[0] == 21,
        "not a TLS alert: {answer:?}"
    );

    // A renewed certificate in the same files is served to the next connection, no restart.
    let second = pki.issue("server", "sluice-2", &["localhost", "127.0.0.1"]);
    assert_ne!(first, second);
    let renewed = connect(&pki, tls_addr, None).unwrap();
    assert_eq!(
        renewed.conn.peer_certificates().unwrap()[0].to_vec(),
        second
    );
    // A broken renewal keeps the certificate in use.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    let kept = connect(&pki, tls_addr, None).unwrap();
    assert_eq!(kept.conn.peer_certificates().unwrap()[0].to_vec(), second);
    // The open connection was never disturbed.
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .unwrap();
    assert_eq!(versions.error_code, 0);
}

#[test]
fn with_a_client_ca_a_client_needs_a_certificate_it_signed() {
    let pki = Pki::new();
    pki.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    pki.issue("client", "app-1", &["app-1"]);
    let agent = tls_agent(&pki, true);
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();

    let refused = connect(&pki, tls_addr, None).and_then(|mut stream| {
        call::<_, ApiVersionsResponse>(
            &mut stream,
            ApiKey::ApiVersions,
            0,
            &ApiVersionsRequest::default(),
        )
    });
    assert!(refused.is_err(), "no client certificate, no service");

    let client = (pki.path("client.pem"), pki.path("client-key.pem"));
    let mut stream = connect(&pki, tls_addr, Some((&client.0, &client.1))).unwrap();
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        0,
        &ApiVersionsRequest::default(),
    )
    .unwrap();
    assert_eq!(versions.error_code, 0);
}

/// An ApiVersions call over a fresh TLS connection presenting `client`'s certificate: whether the
/// agent served it.
fn served_with(pki: &Pki, address: SocketAddr, client: &Pki, stem: &str) -> bool {
    let cert = client.path(&format!("{stem}.pem"));
    let key = client.path(&format!("{stem}-key.pem"));
    connect(pki, address, Some((&cert, &key)))
        .and_then(|mut stream| {
            call::<_, ApiVersionsResponse>(
                &mut stream,
                ApiKey::ApiVersions,
                0,
                &ApiVersionsRequest::default(),
            )
        })
        .is_ok_and(|versions| versions.error_code == 0)
}

#[test]
fn the_client_ca_file_is_reloaded_without_a_restart() {
    // The server's certificate and app-1's come from one CA, app-2's from another.
    let pki = Pki::new();
    pki.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    pki.issue("app-1", "app-1", &["app-1"]);
    let other = Pki::new();
    other.issue("app-2", "app-2", &["app-2"]);
    let first_ca = std::fs::read(pki.path("ca.pem")).unwrap();
    let second_ca = std::fs::read(other.path("ca.pem")).unwrap();
    let client_ca = pki.path("client-ca.pem");
    std::fs::write(&client_ca, &first_ca).unwrap();
    let agent = common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(pki.path("server.pem"));
        config.tls_key_file = Some(pki.path("server-key.pem"));
        config.tls_client_ca_file = Some(client_ca.clone());
    });
    let address = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    assert!(served_with(&pki, address, &pki, "app-1"));
    assert!(
        !served_with(&pki, address, &other, "app-2"),
        "a certificate of a CA the file does not hold is refused"
    );

    // Both CAs: app-2 is served from the next connection on, without a restart.
    std::fs::write(
        &client_ca,
        [first_ca.as_slice(), second_ca.as_slice()].concat(),
    )
    .unwrap();
    assert!(served_with(&pki, address, &other, "app-2"));
    assert!(served_with(&pki, address, &pki, "app-1"));

    // A file that does not load keeps the CAs in use.
    std::fs::write(&client_ca, b"not a certificate").unwrap();
    assert!(served_with(&pki, address, &other, "app-2"));
    assert!(served_with(&pki, address, &pki, "app-1"));

    // Only the second CA: app-1 is refused from then on.
    std::fs::write(&client_ca, &second_ca).unwrap();
    assert!(served_with(&pki, address, &other, "app-2"));
    assert!(!served_with(&pki, address, &pki, "app-1"));
}

#[test]
fn tls_without_a_certificate_or_with_a_bad_one_does_not_start() {
    let mut config = sluice_server::Config {
        tls_listen: Some("127.0.0.1:0".to_owned()),
        ..sluice_server::Config::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("tls_cert_file"), "{error}");
    config.tls_listen = None;
    config.tls_cert_file = Some(PathBuf::from("/c.pem"));
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("set tls_listen"), "{error}");

    let pki = Pki::new();
    std::fs::write(pki.path("server.pem"), "garbage").unwrap();
    std::fs::write(pki.path("server-key.pem"), "garbage").unwrap();
    let files = sluice_server::net::tls::TlsFiles {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server-key.pem"),
        client_ca_file: None,
    };
    let Err(error) = sluice_server::net::tls::acceptor(&files) else {
        panic!("a garbage certificate was accepted");
    };
    let error = error.to_string();
    assert!(error.contains("server.pem"), "{error}");
}

#[test]
fn librdkafka_produces_and_consumes_over_tls_with_a_client_certificate() {
    let Some(python) = common::python_with(
        "librdkafka_produces_and_consumes_over_tls_with_a_client_certificate",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let pki = Pki::new();
    pki.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    pki.issue("client", "app-1", &["app-1"]);
    let agent = tls_agent(&pki, true);
    agent.create_topic("secured", 1);
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    let script = format!("{}/tests/python/tls_check.py", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(format!("localhost:{}", tls_addr.port()))
        .args(["secured", "500"])
        .arg(pki.path("ca.pem"))
        .arg(pki.path("client.pem"))
        .arg(pki.path("client-key.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "stdout: {stdout}\nstderr: {stderr}"
    );
}
