//! Real clients over SASL/OAUTHBEARER: tokens signed with an ES256 key (made per test with rcgen)
//! whose public half is the agent's JWKS file. librdkafka (confluent-kafka) and the Java client
//! (its OAuthBearerLoginCallbackHandler reading the token from a file, KIP-768) produce and
//! consume with a valid token; an expired token, a token signed by another key and one for
//! another audience each fail with the agent's SASL_AUTHENTICATION_FAILED message. A missing
//! client or tool fails these tests under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use serde_json::json;

use crate::common;
use crate::sasl_clients::run_java_with;

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "sluice";

/// An ES256 key, and its public half as a JWKS file in `dir`.
fn signing_key(dir: &Path, kid: &str) -> (EncodingKey, PathBuf) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]});
    let path = dir.join(format!("jwks-{kid}.json"));
    std::fs::write(&path, jwks.to_string()).unwrap();
    (EncodingKey::from_ec_der(&pair.serialize_der()), path)
}

/// A token for `subject`, valid for `lifetime_s` (negative: already expired).
fn token(key: &EncodingKey, subject: &str, audience: &str, lifetime_s: i64) -> String {
    let now = common::now_ms() / 1_000;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".to_owned());
    let claims = json!({
        "sub": subject, "iss": ISSUER, "aud": audience,
        "iat": now, "exp": now + lifetime_s, "scope": "kafka",
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn start(jwks: PathBuf) -> common::TestAgent {
    start_with_reauth(jwks, 0)
}

/// [`start`], with sessions of at most `reauth_ms` (`connections_max_reauth_ms`).
fn start_with_reauth(jwks: PathBuf, reauth_ms: u64) -> common::TestAgent {
    common::start_agent(|config| {
        config.connections_max_reauth_ms = reauth_ms;
        config.listen_sasl = true;
        config.sasl_mechanisms = vec!["OAUTHBEARER".to_owned()];
        config.sasl_oauthbearer_jwks_file = Some(jwks);
        config.sasl_oauthbearer_expected_issuer = Some(ISSUER.to_owned());
        config.sasl_oauthbearer_expected_audience = vec![AUDIENCE.to_owned()];
        config.group_initial_rebalance_delay_ms = 0;
        // The refusals below must not lock the test's own address out.
        config.sasl_failed_logins_max = 0;
    })
}

/// One OAUTHBEARER exchange on a raw connection: the SaslAuthenticate answer.
fn login(agent: &common::TestAgent, jwt: &str) -> (common::RawClient, SaslAuthenticateResponse) {
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
    (client, answer)
}

#[test]
fn tokens_are_checked_on_a_raw_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = signing_key(dir.path(), "k1");
    let agent = start(jwks);
    let (mut client, answer) = login(&agent, &token(&key, "alice", AUDIENCE, 600));
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    // Authenticated: the connection now serves requests.
    let created: kafka_protocol::messages::CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("oauth", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);

    let (other, _) = signing_key(dir.path(), "other");
    for (jwt, says) in [
        (token(&key, "alice", AUDIENCE, -3_600), "ExpiredSignature"),
        (token(&other, "alice", AUDIENCE, 600), "InvalidSignature"),
        (token(&key, "alice", "elsewhere", 600), "InvalidAudience"),
        ("garbage".to_owned(), "header"),
    ] {
        let (_, answer) = login(&agent, &jwt);
        assert_eq!(
            answer.error_code, 58,
            "SASL_AUTHENTICATION_FAILED for {says}"
        );
        let message = answer.error_message.unwrap();
        assert!(
            message.as_str().starts_with("Authentication failed")
                && message.as_str().contains(says),
            "{message:?}"
        );
    }
}

#[test]
fn the_session_lifetime_is_the_token_expiry_when_sooner_than_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = signing_key(dir.path(), "k1");
    // A token for 600 s and sessions of up to an hour: the token bounds the session.
    let agent = start_with_reauth(jwks, 3_600_000);
    let (mut client, answer) = login(&agent, &token(&key, "alice", AUDIENCE, 600));
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    let lifetime_ms = answer.session_lifetime_ms;
    assert!(lifetime_ms > 0 && lifetime_ms <= 600_000, "{lifetime_ms}");
    // Re-authenticating with a fresh token renews the session on the same connection; a token
    // for another subject is refused.
    let message = |jwt: &str| format!("n,,\u{1}auth=Bearer {jwt}\u{1}\u{1}");
    let reauthenticate = |client: &mut common::RawClient, jwt: &str| {
        let handshake: SaslHandshakeResponse = client.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism("OAUTHBEARER".into()),
        );
        assert_eq!(handshake.error_code, 0);
        let answer: SaslAuthenticateResponse = client.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message(jwt))),
        );
        answer
    };
    let renewed = reauthenticate(&mut client, &token(&key, "alice", AUDIENCE, 1_200));
    assert_eq!(renewed.error_code, 0, "{:?}", renewed.error_message);
    assert!(renewed.session_lifetime_ms > 600_000 && renewed.session_lifetime_ms <= 1_200_000);
    let refused = reauthenticate(&mut client, &token(&key, "mallory", AUDIENCE, 600));
    assert_eq!(refused.error_code, 58);
    assert!(client.is_closed_by_agent());
}

#[test]
fn the_session_lifetime_is_the_setting_when_the_token_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = signing_key(dir.path(), "k1");
    let agent = start_with_reauth(jwks, 1_000);
    let (_, answer) = login(&agent, &token(&key, "alice", AUDIENCE, 600));
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.session_lifetime_ms, 1_000);
}

#[test]
fn librdkafka_over_oauthbearer_and_a_bad_token_refused() {
    let Some(python) = common::python_with(
        "librdkafka_over_oauthbearer_and_a_bad_token_refused",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = signing_key(dir.path(), "k1");
    let agent = start(jwks);
    let good = dir.path().join("good.jwt");
    std::fs::write(&good, token(&key, "librdkafka-app", AUDIENCE, 600)).unwrap();
    let bad = dir.path().join("bad.jwt");
    std::fs::write(&bad, token(&key, "librdkafka-app", AUDIENCE, -3_600)).unwrap();
    // Through a raw OAUTHBEARER connection: the plaintext listener requires SASL.
    let (mut client, answer) = login(&agent, &token(&key, "admin", AUDIENCE, 600));
    assert_eq!(answer.error_code, 0);
    let created: kafka_protocol::messages::CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("oauth-librdkafka", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);

    let script = format!("{}/tests/python/oauth_check.py", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(format!("127.0.0.1:{}", agent.addr().port()))
        .args(["oauth-librdkafka", "300"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "stdout: {stdout}\nstderr: {stderr}"
    );
}

#[test]
fn java_client_over_oauthbearer_and_a_token_for_another_audience_refused() {
    use sluice_tests::tools::Tool;
    let test = "java_client_over_oauthbearer_and_a_token_for_another_audience_refused";
    if !sluice_tests::tools::require(test, &[Tool::Java, Tool::Maven]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::clients::ClientKind::Java
        .build(dir.path())
        .unwrap();
    let (key, jwks) = signing_key(dir.path(), "k1");
    let agent = start(jwks);
    let bootstrap = format!("127.0.0.1:{}", agent.addr().port());
    let run = |token_file: &Path, mode: &str| {
        let url = format!("file://{}", token_file.display());
        let properties = [
            "security.protocol=SASL_PLAINTEXT".to_owned(),
            "sasl.mechanism=OAUTHBEARER".to_owned(),
            "sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.\
             OAuthBearerLoginCallbackHandler"
                .to_owned(),
            format!("sasl.oauthbearer.token.endpoint.url={url}"),
            "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.\
             OAuthBearerLoginModule required ;"
                .to_owned(),
        ];
        // Kafka 4 clients read token URLs only from an allow-list.
        let jvm = [format!(
            "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={url}"
        )];
        run_java_with(
            dir.path(),
            "java-oauth",
            &bootstrap,
            mode,
            &properties,
            &jvm,
        )
    };
    let good = dir.path().join("good.jwt");
    std::fs::write(&good, token(&key, "java-app", AUDIENCE, 600)).unwrap();
    let (status, report, log) = run(&good, "roundtrip");
    assert!(status.success(), "{:?}\n{log}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.acks.len(), 500, "{log}");
    assert_eq!(report.records.len(), 500, "{log}");

    // A token for another audience: Java's SaslAuthenticationException with the agent's reason.
    let wrong = dir.path().join("wrong.jwt");
    std::fs::write(&wrong, token(&key, "java-app", "elsewhere", 600)).unwrap();
    let (status, report, log) = run(&wrong, "produce");
    assert!(!status.success(), "{log}");
    let error = report.errors.first().unwrap_or_else(|| panic!("{log}"));
    assert!(
        error.contains("SaslAuthenticationException") && error.contains("InvalidAudience"),
        "{error}"
    );
}
