//! OAUTHBEARER keys from a JWKS endpoint (`sasl_oauthbearer_jwks_endpoint_url`): a tiny HTTP
//! server on loopback in the test serves the JWKS and counts the fetches. A rotated key logs in
//! without a restart (the unknown `kid` asks for an early refetch) and the removed key is refused;
//! a failed refresh keeps the keys; an endpoint that fails at start stops the start; a flood of
//! tokens with unknown `kid`s is a handful of fetches; an `https://` endpoint with a private CA;
//! the fetcher thread ends with its agent.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sluice_server::{Agent, Config};

use crate::common;

/// An ES256 key and its public half as a JWK.
fn es256(kid: &str) -> (EncodingKey, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
}

fn token(key: &EncodingKey, kid: &str, subject: &str) -> String {
    let now = common::now_ms() / 1_000;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let claims = json!({"sub": subject, "iat": now, "exp": now + 600});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// An HTTP/1.1 server on loopback answering every request with the current status and body,
/// counting the requests.
struct JwksServer {
    addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(status: u16, body: String) -> JwksServer {
        JwksServer::start_with(status, body, None)
    }

    /// A server whose connections are TLS with `tls`, when given.
    fn start_with(status: u16, body: String, tls: Option<Arc<rustls::ServerConfig>>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new((status, body)));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (answer_, requests_, stop_) = (
            Arc::clone(&answer),
            Arc::clone(&requests),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let mut stream: Box<dyn ReadWrite> = match &tls {
                    None => Box::new(stream),
                    Some(config) => Box::new(rustls::StreamOwned::new(
                        rustls::ServerConnection::new(Arc::clone(config)).unwrap(),
                        stream,
                    )),
                };
                // Read the request head (a GET has no body).
                let mut head = Vec::new();
                let mut byte = [0_u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                if !head.ends_with(b"\r\n\r\n") {
                    continue;
                }
                requests_.fetch_add(1, Ordering::AcqRel);
                let (status, body) = answer_.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
            }
        });
        JwksServer {
            addr,
            answer,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://{}/.well-known/jwks.json", self.addr)
    }

    fn serve(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn jwks(keys: &[&serde_json::Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// An agent whose JWKS endpoint is `url`, refreshed every hour (the default): within a test only
/// an early refetch fetches again.
fn start(url: &str) -> common::TestAgent {
    start_refreshing(url, 3_600_000)
}

fn start_refreshing(url: &str, refresh_ms: u64) -> common::TestAgent {
    common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_mechanisms = vec!["OAUTHBEARER".to_owned()];
        config.sasl_oauthbearer_jwks_endpoint_url = Some(url.to_owned());
        config.sasl_oauthbearer_jwks_endpoint_refresh_ms = refresh_ms;
        // The refusals below must not lock the test's own address out.
        config.sasl_failed_logins_max = 0;
    })
}

/// One OAUTHBEARER exchange on a raw connection: `Ok` or the agent's error message.
fn login(agent: &common::TestAgent, jwt: &str) -> Result<(), String> {
    let mut client = common::RawClient::connect(agent.addr());
    let handshake: SaslHandshakeResponse = client.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("OAUTHBEARER".into()),
    );
    assert_eq!(handshake.error_code, 0);
    let message = format!("n,,\u{1}auth=Bearer {jwt}\u{1}\u{1}");
    let answer: SaslAuthenticateResponse = client.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
    );
    match answer.error_code {
        0 => Ok(()),
        code => {
            assert_eq!(code, 58, "SASL_AUTHENTICATION_FAILED");
            Err(answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default())
        }
    }
}

/// Logs in with `jwt` until it succeeds, within 10 s; the attempts it took.
fn login_eventually(agent: &common::TestAgent, jwt: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match login(agent, jwt) {
            Ok(()) => return attempts,
            Err(message) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after {attempts} attempts: {message}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Waits (within 10 s) until the server has answered more than `seen` requests.
fn wait_for_fetch(server: &JwksServer, seen: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.requests() <= seen {
        assert!(Instant::now() < deadline, "no fetch after {seen}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_rotated_key_logs_in_without_a_restart_and_the_removed_key_is_refused() {
    let (key1, jwk1) = es256("k1");
    let (key2, jwk2) = es256("k2");
    let server = JwksServer::start(200, jwks(&[&jwk1]));
    let agent = start(&server.url());
    assert_eq!(server.requests(), 1, "fetched once at start");
    login(&agent, &token(&key1, "k1", "alice")).unwrap();

    // The provider rotates: key 2 only. A token of key 2 names a kid the agent does not know:
    // refused, and the JWKS is fetched again early, so a retry logs in (the periodic refresh is
    // an hour away).
    server.serve(200, jwks(&[&jwk2]));
    let first = login(&agent, &token(&key2, "k2", "bob")).unwrap_err();
    assert!(
        first.contains("\"k2\"") && first.contains("fetched again"),
        "{first}"
    );
    let started = Instant::now();
    let attempts = login_eventually(&agent, &token(&key2, "k2", "bob"));
    eprintln!(
        "key 2 logged in after {attempts} more attempts, {:?} after the first refusal; {} fetches",
        started.elapsed(),
        server.requests()
    );
    // Key 1 is gone from the refetched set.
    let refused = login(&agent, &token(&key1, "k1", "alice")).unwrap_err();
    assert!(refused.contains("\"k1\""), "{refused}");

    // A failed refresh keeps the keys in use: the endpoint fails, an unknown kid asks for a
    // refetch, which fails; key 2 still logs in.
    server.serve(500, "down".to_owned());
    let seen = server.requests();
    let (stranger, _) = es256("k3");
    assert!(login(&agent, &token(&stranger, "k3", "eve")).is_err());
    wait_for_fetch(&server, seen);
    login(&agent, &token(&key2, "k2", "bob")).unwrap();
}

#[test]
fn the_periodic_refresh_drops_a_removed_key_and_a_failed_one_keeps_the_keys() {
    let (key1, jwk1) = es256("k1");
    let (key2, jwk2) = es256("k2");
    let server = JwksServer::start(200, jwks(&[&jwk1, &jwk2]));
    let agent = start_refreshing(&server.url(), 1_000);
    login(&agent, &token(&key1, "k1", "alice")).unwrap();
    // The provider drops key 1; no token asks for a refetch, only the refresh fetches again.
    server.serve(200, jwks(&[&jwk2]));
    // The fetch reaches the server before its keys are in use: poll until key 1 is refused.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let refused = loop {
        match login(&agent, &token(&key1, "k1", "alice")) {
            Ok(()) => assert!(Instant::now() < deadline, "key 1 still logs in"),
            Err(message) => break message,
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let refreshed = started.elapsed();
    assert!(refused.contains("\"k1\""), "{refused}");
    login(&agent, &token(&key2, "k2", "bob")).unwrap();
    // The endpoint fails: the next refresh fails and key 2 stays in use.
    server.serve(503, "maintenance".to_owned());
    let seen = server.requests();
    wait_for_fetch(&server, seen);
    login(&agent, &token(&key2, "k2", "bob")).unwrap();
    eprintln!(
        "refreshed {refreshed:?} after the rotation (refresh 1 s); {} fetches",
        server.requests()
    );
}

#[test]
fn the_retry_backoff_is_a_setting() {
    // A minute between early fetches: unknown kids right after the start's fetch fetch nothing.
    let (key, jwk) = es256("k1");
    let server = JwksServer::start(200, jwks(&[&jwk]));
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_mechanisms = vec!["OAUTHBEARER".to_owned()];
        config.sasl_oauthbearer_jwks_endpoint_url = Some(server.url());
        config.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms = 60_000;
        config.sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms = 60_000;
        config.sasl_failed_logins_max = 0;
    });
    for n in 0..20 {
        assert!(login(&agent, &token(&key, &format!("unknown-{n}"), "mallory")).is_err());
    }
    // Give a wrongly timed fetch the time the default backoff (100 ms) would need.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.requests(), 1, "no early fetch within the minute");
}

/// The ids of this process's threads named `sluice-jwks`.
fn fetcher_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            (name.trim() == "sluice-jwks").then(|| path.file_name()?.to_str().map(str::to_owned))?
        })
        .collect()
}

#[test]
fn the_fetcher_thread_ends_with_the_agent() {
    let (_, jwk) = es256("k1");
    let server = JwksServer::start(200, jwks(&[&jwk]));
    let before = fetcher_threads();
    let agent = start(&server.url());
    // Threads that appeared meanwhile: this agent's, and perhaps the fetcher of an agent another
    // test just stopped (it ends within a second too).
    let new: Vec<String> = fetcher_threads()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!new.is_empty(), "the agent runs a fetcher thread");
    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetcher_threads().iter().any(|id| new.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "the fetcher thread outlives its agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_endpoint_that_fails_at_start_stops_the_start() {
    let (_, jwk) = es256("k1");
    let too_many: Vec<serde_json::Value> = (0..65)
        .map(|n| {
            let mut key = jwk.clone();
            key["kid"] = json!(format!("k{n}"));
            key
        })
        .collect();
    for (status, body, says) in [
        (500, "down".to_owned(), "HTTP 500"),
        (200, "not json".to_owned(), "not a JWK set"),
        (200, r#"{"keys": []}"#.to_owned(), "no key"),
        (200, json!({ "keys": too_many }).to_string(), "65 keys"),
        (200, " ".repeat(1024 * 1024 + 1), "larger than"),
    ] {
        let server = JwksServer::start(status, body);
        let error = start_error(&server.url());
        assert!(
            error.contains(&server.url()) && error.contains(says),
            "{says}: {error}"
        );
    }
    // Nothing listens: the cause is in the error, not only reqwest's "error sending request".
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/jwks.json");
    let error = start_error(&url);
    assert!(
        error.contains(&url) && error.contains("Connection refused"),
        "{error}"
    );
}

#[test]
fn an_https_endpoint_with_a_private_ca_and_without_it() {
    let pki = crate::tls::Pki::new();
    pki.issue("idp", "localhost", &["localhost", "127.0.0.1"]);
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_file_iter(pki.path("idp.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_file(pki.path("idp-key.pem")).unwrap(),
        )
        .unwrap();
    let (key, jwk) = es256("k1");
    let server = JwksServer::start_with(200, jwks(&[&jwk]), Some(Arc::new(config)));
    // The platform's roots do not know the test CA: the start fails, saying why.
    let error = start_error(&server.https_url());
    assert!(
        error.contains(&server.https_url()) && error.contains("certificate"),
        "{error}"
    );
    eprintln!("without the CA file: {error}");
    assert_eq!(server.requests(), 0);
    // With the CA file, the endpoint is trusted.
    let ca = pki.path("ca.pem");
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_mechanisms = vec!["OAUTHBEARER".to_owned()];
        config.sasl_oauthbearer_jwks_endpoint_url = Some(server.https_url());
        config.sasl_oauthbearer_jwks_endpoint_ca_file = Some(ca);
    });
    assert_eq!(server.requests(), 1);
    login(&agent, &token(&key, "k1", "alice")).unwrap();
}

#[test]
fn the_first_fetch_works_from_inside_a_tokio_runtime() {
    // The first fetch runs on the fetcher's thread: an agent started by a caller inside a
    // runtime does not panic with "Cannot start a runtime from within a runtime".
    let server = JwksServer::start(500, "down".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let error = runtime.block_on(async { start_error(&server.url()) });
    assert!(error.contains("HTTP 500"), "{error}");
}

/// Why an agent whose JWKS endpoint is `url` does not start.
fn start_error(url: &str) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        data_dir: data_dir.path().to_owned(),
        store: Some(format!(
            "file://{}?fsync=false",
            data_dir.path().join("store").display()
        )),
        listen_sasl: true,
        sasl_mechanisms: vec!["OAUTHBEARER".to_owned()],
        sasl_oauthbearer_jwks_endpoint_url: Some(url.to_owned()),
        ..Config::default()
    };
    let Err(error) = Agent::start(&config) else {
        panic!("the start succeeds with the endpoint {url}");
    };
    error.to_string()
}

#[test]
fn a_flood_of_unknown_kids_is_a_handful_of_fetches() {
    let (key, jwk) = es256("k1");
    let server = JwksServer::start(200, jwks(&[&jwk]));
    let agent = start(&server.url());
    assert_eq!(server.requests(), 1);
    let started = Instant::now();
    for n in 0..100 {
        let kid = format!("unknown-{n}-{}", uuid::Uuid::new_v4());
        let refused = login(&agent, &token(&key, &kid, "mallory")).unwrap_err();
        assert!(refused.contains(&kid), "{refused}");
    }
    let flood = started.elapsed();
    // At least one early refetch happened (the requests are heard) ...
    wait_for_fetch(&server, 1);
    // ... and few: each early refetch that changes nothing doubles the wait before the next
    // (100 ms, 200 ms, 400 ms, ...), so over the flood and a second after it there are at most
    // log2((flood + 1 s) / 100 ms) + 2 of them.
    std::thread::sleep(Duration::from_secs(1));
    let fetches = server.requests() - 1;
    eprintln!("100 unknown kids over {flood:?}: {fetches} early fetches");
    let bound = ((flood.as_secs_f64() + 1.0) / 0.1).log2().ceil() as usize + 2;
    assert!(
        fetches <= bound,
        "{fetches} fetches, at most {bound} expected"
    );
    // The valid key still logs in.
    login(&agent, &token(&key, "k1", "alice")).unwrap();
}
