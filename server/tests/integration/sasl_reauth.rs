//! SASL re-authentication (KIP-368, `connections_max_reauth_ms`), spoken in raw frames: the
//! session lifetime a login is told, a second SaslHandshake + SaslAuthenticate on the same
//! connection after which requests go on, the refusal of another principal or mechanism, and the
//! close of a connection whose session expired. The OAUTHBEARER bound (a token that expires before
//! the setting) is in `oauthbearer.rs`. Last, the Java client (kafka-clients) with sessions of
//! 1 s: its round trip of 500 records lasts several lifetimes and succeeds, with more logins
//! than connections (re-authentications); without Java and Maven it fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};

use crate::common::{self, RawClient, Reply};

const USERS: &str = "[users]\nalice = \"alice-secret\"\nbob = \"bob-secret\"\n";

/// An agent whose plaintext listener requires SASL, with sessions of at most `reauth_ms`.
fn agent(reauth_ms: u64) -> (common::TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users);
        config.connections_max_reauth_ms = reauth_ms;
        // The refusals below must not lock the test's own address out.
        config.sasl_failed_logins_max = 0;
    });
    (agent, dir)
}

fn handshake(client: &mut RawClient, mechanism: &str) -> SaslHandshakeResponse {
    client.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(mechanism.to_owned().into()),
    )
}

fn plain(client: &mut RawClient, version: i16, user: &str) -> SaslAuthenticateResponse {
    let token = format!("\0{user}\0{user}-secret");
    client.call(
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
    )
}

/// A PLAIN login (or re-login) on `client` as `user`: the SaslAuthenticate answer.
fn login(client: &mut RawClient, user: &str) -> SaslAuthenticateResponse {
    assert_eq!(handshake(client, "PLAIN").error_code, 0);
    plain(client, 2, user)
}

fn metadata_works(client: &mut RawClient) {
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);
}

#[test]
fn a_login_is_told_the_session_lifetime_when_reauthentication_is_on() {
    let (on, _dir) = agent(60_000);
    let mut client = RawClient::connect(on.addr());
    let answer = login(&mut client, "alice");
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    // PLAIN has no credential lifetime of its own: the session lasts the setting.
    assert_eq!(answer.session_lifetime_ms, 60_000);
    metadata_works(&mut client);
    // SaslAuthenticate v0 has no field for it; the login works all the same.
    let mut client = RawClient::connect(on.addr());
    assert_eq!(handshake(&mut client, "PLAIN").error_code, 0);
    assert_eq!(plain(&mut client, 0, "alice").error_code, 0);
    metadata_works(&mut client);
}

#[test]
fn without_reauthentication_the_lifetime_is_0_and_a_second_handshake_is_refused() {
    let (off, _dir) = agent(0);
    let mut client = RawClient::connect(off.addr());
    let answer = login(&mut client, "alice");
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.session_lifetime_ms, 0);
    // Without re-authentication, a second handshake is ILLEGAL_SASL_STATE (34), as in Kafka.
    assert_eq!(handshake(&mut client, "PLAIN").error_code, 34);
}

#[test]
fn a_reauthentication_on_the_same_connection_keeps_it_serving() {
    let (agent, _dir) = agent(60_000);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "alice").error_code, 0);
    metadata_works(&mut client);
    for _ in 0..3 {
        let answer = login(&mut client, "alice");
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        assert_eq!(answer.session_lifetime_ms, 60_000);
        metadata_works(&mut client);
    }
}

#[test]
fn requests_sent_before_a_reauthentication_are_answered_first() {
    let (agent, _dir) = agent(60_000);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "alice").error_code, 0);
    // Pipelined: two Metadata requests, then the handshake, written before reading anything.
    let first = client.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let second = client.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let shake = client.send(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("PLAIN".into()),
    );
    for correlation_id in [first, second] {
        let metadata: MetadataResponse = client.receive(ApiKey::Metadata, 12, correlation_id);
        assert_eq!(metadata.brokers.len(), 1);
    }
    let answer: SaslHandshakeResponse = client.receive(ApiKey::SaslHandshake, 1, shake);
    assert_eq!(answer.error_code, 0);
    assert_eq!(plain(&mut client, 2, "alice").error_code, 0);
    metadata_works(&mut client);
}

#[test]
fn a_reauthentication_as_another_principal_is_refused_and_closes() {
    let (agent, _dir) = agent(60_000);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "alice").error_code, 0);
    // Bob's password is right, but the connection is Alice's.
    let answer = login(&mut client, "bob");
    assert_eq!(answer.error_code, 58);
    let message = answer.error_message.unwrap().to_string();
    assert!(message.contains("Cannot change principals"), "{message}");
    assert!(client.is_closed_by_agent());
    // Bob on his own connection is fine.
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "bob").error_code, 0);
    metadata_works(&mut client);
}

#[test]
fn a_reauthentication_with_another_mechanism_is_refused_and_closes() {
    let (agent, _dir) = agent(60_000);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "alice").error_code, 0);
    // ILLEGAL_SASL_STATE (34).
    assert_eq!(handshake(&mut client, "SCRAM-SHA-256").error_code, 34);
    assert!(client.is_closed_by_agent());
}

#[test]
fn a_request_after_the_session_expired_closes_the_connection() {
    let (agent, _dir) = agent(300);
    let mut client = RawClient::connect(agent.addr());
    let answer = login(&mut client, "alice");
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.session_lifetime_ms, 300);
    // Well past the lifetime, without re-authenticating: the next request closes the connection
    // unanswered.
    std::thread::sleep(Duration::from_millis(1_000));
    client.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(matches!(client.read_reply(), Reply::Closed));
}

#[test]
fn a_reauthentication_after_expiry_still_renews_the_session() {
    // Kafka starts a re-authentication before checking the expiry: a late client is renewed,
    // not closed.
    let (agent, _dir) = agent(300);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(login(&mut client, "alice").error_code, 0);
    std::thread::sleep(Duration::from_millis(1_000));
    let answer = login(&mut client, "alice");
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    assert_eq!(answer.session_lifetime_ms, 300);
}

/// The sum over cores of the counter `name` in the agent's `/metrics` text.
fn counter_total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn get_metrics(address: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_java_client_reauthenticates_through_a_round_trip_of_many_lifetimes() {
    use sluice_tests::tools::Tool;
    let test = "the_java_client_reauthenticates_through_a_round_trip_of_many_lifetimes";
    if !sluice_tests::tools::require(test, &[Tool::Java, Tool::Maven]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::clients::ClientKind::Java
        .build(dir.path())
        .unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    // Sessions of 1 s (Kafka's clients re-authenticate at 85-95 % of it).
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users);
        config.connections_max_reauth_ms = 1_000;
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
        // Each produce waits a 20 ms window (below): 50 windows a second, the budget fixed
        // windows of 20 ms would cost (a local directory's default budget would seal them early).
        config.flush_interval_ms = 20;
        config.flush_puts_per_second_max = Some(50);
    });
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    let bootstrap = format!("127.0.0.1:{}", agent.addr().port());
    let properties = [
        "security.protocol=SASL_PLAINTEXT".to_owned(),
        "sasl.mechanism=PLAIN".to_owned(),
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"alice\" password=\"alice-secret\";"
            .to_owned(),
        // One record a request and one request at a time: 500 produce round trips, each
        // waiting a flush window, so the producer's connection lives several lifetimes.
        "batch.size=1".to_owned(),
        "max.in.flight.requests.per.connection=1".to_owned(),
    ];
    let started = std::time::Instant::now();
    let (status, report, log) = crate::sasl_clients::run_java_with(
        dir.path(),
        "java-reauth",
        &bootstrap,
        "roundtrip",
        &properties,
        &[],
    );
    let took = started.elapsed();
    assert!(status.success(), "{:?}\n{log}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.acks.len(), 500, "{log}");
    assert_eq!(report.records.len(), 500, "{log}");
    // More logins than connections: some connection logged in again on itself.
    let metrics = get_metrics(endpoint);
    let logins = counter_total(&metrics, "sluice_sasl_authentications_total");
    let connections = counter_total(&metrics, "sluice_connections_accepted_total");
    eprintln!("{logins} logins on {connections} connections in {took:?}");
    assert!(
        took > Duration::from_secs(3) && logins > connections,
        "{logins} logins on {connections} connections in {took:?}\n{metrics}"
    );
}
