//! SASL on the Kafka listener (Kafka's `SASL_PLAINTEXT`), spoken in raw frames: only ApiVersions,
//! SaslHandshake and SaslAuthenticate before authentication; PLAIN and SCRAM with the right and
//! the wrong password; the bare tokens of SaslHandshake v0; the failed-login lockout; the answer
//! of a listener without SASL; and the checks at start. Real clients are in `sasl_clients.rs`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::num::NonZeroU32;
use std::path::PathBuf;

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::{RawClient, Reply};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsResponse, MetadataRequest,
    MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};

const USERS: &str = "[users]\nalice = \"alice-secret\"\n\"b,o=b\" = \"bob-secret\"\n";

/// An agent whose plaintext listener requires SASL, with [`USERS`].
fn sasl_agent(mechanisms: Option<&[&str]>) -> (common::TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users);
        if let Some(mechanisms) = mechanisms {
            config.sasl_mechanisms = mechanisms.iter().map(|m| (*m).to_owned()).collect();
        }
    });
    (agent, dir)
}

fn handshake(client: &mut RawClient, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    client.call(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(mechanism.to_owned().into()),
    )
}

fn authenticate(client: &mut RawClient, token: &[u8]) -> SaslAuthenticateResponse {
    client.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
}

fn plain_token(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// A client logged in with PLAIN.
fn plain_login(agent: &common::TestAgent, user: &str, password: &str) -> RawClient {
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(handshake(&mut client, 1, "PLAIN").error_code, 0);
    let response = authenticate(&mut client, &plain_token(user, password));
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    client
}

fn metadata_works(client: &mut RawClient) {
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);
}

#[test]
fn before_authentication_only_sasl_and_api_versions_are_answered() {
    let (agent, _dir) = sasl_agent(None);
    let mut client = RawClient::connect(agent.addr());
    let versions: ApiVersionsResponse = client.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name("sasl-test".into())
            .with_client_software_version("1".into()),
    );
    assert_eq!(versions.error_code, 0);
    let advertised = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    assert_eq!(advertised(ApiKey::SaslHandshake), Some((0, 1)));
    assert_eq!(advertised(ApiKey::SaslAuthenticate), Some((0, 2)));
    // Metadata before authenticating: the connection is closed, nothing is answered.
    client.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(client.is_closed_by_agent());
    // So is SaslAuthenticate before a handshake.
    let mut client = RawClient::connect(agent.addr());
    client.send(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b")),
    );
    assert!(client.is_closed_by_agent());
}

#[test]
fn plain_with_the_right_password_serves_and_with_a_wrong_one_fails_with_58() {
    let (agent, _dir) = sasl_agent(None);
    let mut client = RawClient::connect(agent.addr());
    let response = handshake(&mut client, 1, "PLAIN");
    assert_eq!(response.error_code, 0);
    let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    let refused = authenticate(&mut client, &plain_token("alice", "wrong"));
    assert_eq!(refused.error_code, 58);
    let message = refused.error_message.unwrap().to_string();
    assert!(
        message.contains("Invalid username or password"),
        "{message}"
    );
    assert!(client.is_closed_by_agent());
    // An unknown user fails the same way.
    let mut client = RawClient::connect(agent.addr());
    handshake(&mut client, 1, "PLAIN");
    assert_eq!(
        authenticate(&mut client, &plain_token("mallory", "alice-secret")).error_code,
        58
    );
    assert!(client.is_closed_by_agent());

    let mut client = plain_login(&agent, "alice", "alice-secret");
    metadata_works(&mut client);
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("after-login", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    // Once authenticated, SASL requests are Kafka's request handler's: ILLEGAL_SASL_STATE.
    let again = handshake(&mut client, 1, "PLAIN");
    assert_eq!(again.error_code, 34);
    metadata_works(&mut client);
    // Operators see both in the metrics.
    let metrics = agent.agent.as_ref().unwrap().metrics().render();
    assert!(
        metrics.contains("sluice_sasl_authentications_total{core=\"0\"} 1\n")
            && metrics.contains("sluice_sasl_authentication_failures_total{core=\"0\"} 2\n"),
        "{metrics}"
    );
}

#[test]
fn an_unsupported_mechanism_gets_33_with_the_enabled_list() {
    let (agent, _dir) = sasl_agent(Some(&["SCRAM-SHA-512"]));
    let mut client = RawClient::connect(agent.addr());
    let response = handshake(&mut client, 1, "PLAIN");
    assert_eq!(response.error_code, 33);
    let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["SCRAM-SHA-512"]);
    assert!(client.is_closed_by_agent());
}

/// The client's side of SCRAM (RFC 5802), as librdkafka and Java compute it, with the tokens in
/// SaslAuthenticate requests.
pub(crate) fn scram_client(
    client: &mut RawClient,
    sha512: bool,
    user_escaped: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    scram_exchange(client, sha512, user_escaped, password, false)
}

/// One SCRAM token sent and its answer, framed or bare.
fn send_token(client: &mut RawClient, token: &[u8], bare: bool) -> SaslAuthenticateResponse {
    if !bare {
        return authenticate(client, token);
    }
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    client.send_raw(&frame);
    match client.read_reply() {
        Reply::Frame(reply) => {
            SaslAuthenticateResponse::default().with_auth_bytes(reply.slice(4..))
        }
        Reply::Closed => SaslAuthenticateResponse::default().with_error_code(-1),
    }
}

/// [`scram_client`], with the tokens in SaslAuthenticate requests (SaslHandshake v1) or bare
/// (v0: a refusal is then a close, answered here as error code -1).
fn scram_exchange(
    client: &mut RawClient,
    sha512: bool,
    user_escaped: &str,
    password: &str,
    bare: bool,
) -> SaslAuthenticateResponse {
    let (mechanism, digest_algorithm, hmac_algorithm, pbkdf2_algorithm) = if sha512 {
        (
            "SCRAM-SHA-512",
            &digest::SHA512,
            hmac::HMAC_SHA512,
            pbkdf2::PBKDF2_HMAC_SHA512,
        )
    } else {
        (
            "SCRAM-SHA-256",
            &digest::SHA256,
            hmac::HMAC_SHA256,
            pbkdf2::PBKDF2_HMAC_SHA256,
        )
    };
    let version = if bare { 0 } else { 1 };
    assert_eq!(handshake(client, version, mechanism).error_code, 0);
    let client_first_bare = format!("n={user_escaped},r=fyko+d2lbbFgONRv9qkxdawL");
    let first = send_token(client, format!("n,,{client_first_bare}").as_bytes(), bare);
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for field in server_first.split(',') {
        match field.split_at(2) {
            ("r=", value) => nonce = value,
            ("s=", value) => salt = BASE64.decode(value).unwrap(),
            ("i=", value) => iterations = value.parse().unwrap(),
            _ => panic!("unexpected field in {server_first}"),
        }
    }
    assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL") && nonce.len() > 40);
    assert_eq!(iterations, 4096);
    let mut salted = vec![0; digest_algorithm.output_len()];
    pbkdf2::derive(
        pbkdf2_algorithm,
        NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let hmac_of = |key: &[u8], data: &[u8]| {
        hmac::sign(&hmac::Key::new(hmac_algorithm, key), data)
            .as_ref()
            .to_vec()
    };
    let client_key = hmac_of(&salted, b"Client Key");
    let stored_key = digest::digest(digest_algorithm, &client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac_of(stored_key.as_ref(), auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let last = send_token(
        client,
        format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes(),
        bare,
    );
    if last.error_code == 0 {
        // The server proves it knew the credential too.
        let server_key = hmac_of(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            BASE64.encode(hmac_of(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(last.auth_bytes.as_ref(), expected.as_bytes());
    }
    last
}

#[test]
fn scram_sha_256_and_512_accept_the_password_and_refuse_others() {
    let (agent, _dir) = sasl_agent(None);
    for sha512 in [false, true] {
        let mut client = RawClient::connect(agent.addr());
        let response = scram_client(&mut client, sha512, "alice", "alice-secret");
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        metadata_works(&mut client);
        // A user name with `,` and `=` travels escaped.
        let mut client = RawClient::connect(agent.addr());
        let response = scram_client(&mut client, sha512, "b=2Co=3Db", "bob-secret");
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        metadata_works(&mut client);

        let mut client = RawClient::connect(agent.addr());
        let refused = scram_client(&mut client, sha512, "alice", "bob-secret");
        assert_eq!(refused.error_code, 58);
        let message = refused.error_message.unwrap().to_string();
        assert!(message.contains("invalid credentials"), "{message}");
        assert!(client.is_closed_by_agent());
    }
}

#[test]
fn handshake_v0_carries_bare_tokens() {
    let (agent, _dir) = sasl_agent(None);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(handshake(&mut client, 0, "PLAIN").error_code, 0);
    let token = plain_token("alice", "alice-secret");
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&token);
    client.send_raw(&frame);
    let Reply::Frame(reply) = client.read_reply() else {
        panic!("closed after a bare PLAIN token");
    };
    assert_eq!(reply.as_ref(), [0, 0, 0, 0], "an empty bare token");
    metadata_works(&mut client);
}

#[test]
fn handshake_v0_carries_scram_as_bare_tokens_too() {
    let (agent, _dir) = sasl_agent(None);
    let mut client = RawClient::connect(agent.addr());
    let response = scram_exchange(&mut client, true, "alice", "alice-secret", true);
    assert_eq!(response.error_code, 0);
    metadata_works(&mut client);
    // A wrong password over bare tokens: no way to say why, so the connection is closed.
    let mut client = RawClient::connect(agent.addr());
    let refused = scram_exchange(&mut client, false, "alice", "wrong", true);
    assert_eq!(refused.error_code, -1);
}

#[test]
fn repeated_failures_lock_the_address_out() {
    let (agent, _dir) = sasl_agent(None);
    for _ in 0..5 {
        let mut client = RawClient::connect(agent.addr());
        handshake(&mut client, 1, "PLAIN");
        assert_eq!(
            authenticate(&mut client, &plain_token("alice", "guess")).error_code,
            58
        );
    }
    // Now even the right password is refused, without being checked.
    let mut client = RawClient::connect(agent.addr());
    handshake(&mut client, 1, "PLAIN");
    let refused = authenticate(&mut client, &plain_token("alice", "alice-secret"));
    assert_eq!(refused.error_code, 58);
    let message = refused.error_message.unwrap().to_string();
    assert!(message.contains("too many failed logins"), "{message}");
}

#[test]
fn a_listener_without_sasl_answers_illegal_sasl_state() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    let response = handshake(&mut client, 1, "PLAIN");
    assert_eq!(response.error_code, 34);
    assert!(response.mechanisms.is_empty());
    let response = authenticate(&mut client, &plain_token("alice", "alice-secret"));
    assert_eq!(response.error_code, 34);
    metadata_works(&mut client);
}

#[test]
fn malformed_and_oversized_tokens_close_only_their_connection() {
    let (agent, _dir) = sasl_agent(None);
    let mut bystander = plain_login(&agent, "alice", "alice-secret");
    // A frame above 512 KiB before authentication: closed on its size prefix alone.
    let mut client = RawClient::connect(agent.addr());
    client.send_raw(&(600 * 1024_i32).to_be_bytes());
    assert!(client.is_closed_by_agent());
    // Garbage where a SCRAM client-first message belongs: 58, closed.
    let mut client = RawClient::connect(agent.addr());
    handshake(&mut client, 1, "SCRAM-SHA-256");
    let refused = authenticate(&mut client, b"\xff\x00garbage,,,");
    assert_eq!(refused.error_code, 58);
    assert!(client.is_closed_by_agent());
    // A PLAIN token without separators: 58, closed.
    let mut client = RawClient::connect(agent.addr());
    handshake(&mut client, 1, "PLAIN");
    assert_eq!(authenticate(&mut client, &[b'x'; 4096]).error_code, 58);
    assert!(client.is_closed_by_agent());
    // A large (but allowed) token is just a wrong one.
    let mut client = RawClient::connect(agent.addr());
    handshake(&mut client, 1, "PLAIN");
    let mut token = plain_token("alice", "");
    token.resize(400 * 1024, b'p');
    assert_eq!(authenticate(&mut client, &token).error_code, 58);
    // The connection that logged in before is unaffected.
    metadata_works(&mut bystander);
}

#[test]
fn the_lockout_follows_its_settings_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let fail = |agent: &common::TestAgent, password: &str| {
        let mut client = RawClient::connect(agent.addr());
        handshake(&mut client, 1, "PLAIN");
        authenticate(&mut client, &plain_token("alice", password))
    };
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users.clone());
        config.sasl_failed_logins_max = 0;
    });
    for _ in 0..20 {
        assert_eq!(fail(&agent, "guess").error_code, 58);
    }
    assert_eq!(fail(&agent, "alice-secret").error_code, 0);
    drop(agent);

    // Two failures are enough with a maximum of 2 (the lockout's end is tested on an injected
    // clock in net/sasl/limiter.rs, not here on the wall clock).
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users.clone());
        config.sasl_failed_logins_max = 2;
    });
    fail(&agent, "guess");
    fail(&agent, "guess");
    let refused = fail(&agent, "alice-secret");
    assert!(
        refused
            .error_message
            .is_some_and(|message| message.contains("too many failed logins")),
    );
}

/// A raw client whose connection comes from `source` (any 127.0.0.0/8 address is this host).
fn connect_from(source: std::net::Ipv4Addr, agent: &common::TestAgent) -> RawClient {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .unwrap();
    socket.connect(&agent.addr().into()).unwrap();
    RawClient::from_stream(socket.into())
}

#[test]
fn a_flood_of_failed_logins_from_one_address_leaves_others_alone() {
    let (agent, _dir) = sasl_agent(None);
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut locked_out = 0;
    for attempt in 0..300 {
        let mut client = connect_from(attacker, &agent);
        handshake(&mut client, 1, "PLAIN");
        let refused = authenticate(
            &mut client,
            &plain_token("alice", &format!("guess-{attempt}")),
        );
        assert_eq!(refused.error_code, 58);
        if refused
            .error_message
            .is_some_and(|message| message.contains("too many failed logins"))
        {
            locked_out += 1;
        }
    }
    // All but the first five were refused unchecked.
    assert_eq!(locked_out, 295);
    // Another address logs in at once; the agent serves on.
    let mut client = plain_login(&agent, "alice", "alice-secret");
    metadata_works(&mut client);
}

#[test]
fn an_unauthenticated_connection_does_not_hold_up_a_stop() {
    let (agent, _dir) = sasl_agent(None);
    let mut idle = RawClient::connect(agent.addr());
    // In the exchange (answered, so its task runs), then silent.
    let versions: ApiVersionsResponse =
        idle.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let started = std::time::Instant::now();
    agent.stop();
    // A connection with requests in flight may hold a stop for the 10 s drain; one that has not
    // authenticated has none, and is closed at once.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(idle.is_closed_by_agent());
}

#[test]
fn sasl_settings_are_checked_at_start() {
    let mut config = sluice_server::Config {
        listen_sasl: true,
        ..sluice_server::Config::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("sasl_users_file"), "{error}");
    config.sasl_users_file = Some(PathBuf::from("/users.toml"));
    config.sasl_mechanisms = vec!["GSSAPI".to_owned()];
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("GSSAPI"), "{error}");
    config.sasl_mechanisms = vec!["SCRAM-SHA-512".to_owned()];
    config.validate().unwrap();
    config.listen_sasl = false;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("no listener requires SASL"), "{error}");
    config.tls_listen_sasl = true;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("tls_listen"), "{error}");

    // A users file that does not parse stops the start, naming the file, not quoting it.
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "[users]\nalice = \"hunter2\"\nbob hunter3\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = sluice_server::Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        data_dir: data.path().to_owned(),
        listen_sasl: true,
        sasl_users_file: Some(users),
        ..sluice_server::Config::default()
    };
    let error = sluice_server::Agent::start(&config)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("users.toml") && error.contains("line 3"),
        "{error}"
    );
    assert!(!error.contains("hunter"), "{error}");
}
