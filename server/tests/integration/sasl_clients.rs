//! Real clients over SASL: librdkafka (confluent-kafka) producing and consuming with
//! `SASL_PLAINTEXT` and PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and with `SASL_SSL` and
//! SCRAM-SHA-512; the Java client with `SASL_SSL` and SCRAM-SHA-512; franz-go with `SASL_SSL` and
//! both SCRAMs (certificates made per test with rcgen). With a wrong password each client must
//! fail with the agent's SASL_AUTHENTICATION_FAILED message. A missing client or tool fails these
//! tests under `CI=true` (`common::python_with`, `sluice_tests::tools::require`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const USERS: &str = "[users]\nalice = \"alice-secret\"\n";

/// A test CA and a server certificate for `localhost` signed by it, in `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "sluice");
    let certificate = params
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    std::fs::write(dir.join("server.pem"), certificate.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
}

fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users.toml");
    std::fs::write(&path, USERS).unwrap();
    path
}

/// Creates `topic` through a connection that logs in with PLAIN.
fn create_topic_as_alice(agent: &common::TestAgent, topic: &str) {
    let mut client = common::RawClient::connect(agent.addr());
    let handshake: SaslHandshakeResponse = client.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("PLAIN".into()),
    );
    assert_eq!(handshake.error_code, 0);
    let login: SaslAuthenticateResponse = client.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
    );
    assert_eq!(login.error_code, 0);
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[(topic, 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
}

/// Runs `sasl_check.py`; panics with its output unless it printed "ok".
fn run_check(
    python: &str,
    bootstrap: &str,
    topic: &str,
    protocol: &str,
    mechanism: &str,
    tls: Option<(&Path, bool)>,
) {
    let script = format!("{}/tests/python/sasl_check.py", env!("CARGO_MANIFEST_DIR"));
    let mut command = std::process::Command::new(python);
    command.arg(script).args([
        bootstrap,
        topic,
        "300",
        protocol,
        mechanism,
        "alice",
        "alice-secret",
    ]);
    if let Some((ca_file, wrong_password_check)) = tls {
        command
            .arg(ca_file)
            .arg(if wrong_password_check { "1" } else { "0" });
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{protocol} {mechanism}\nstdout: {stdout}\nstderr: {stderr}"
    );
}

#[test]
fn librdkafka_over_sasl_plaintext_with_plain_and_both_scrams() {
    let Some(python) = common::python_with(
        "librdkafka_over_sasl_plaintext_with_plain_and_both_scrams",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let agent = common::start_agent(|config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users);
        config.group_initial_rebalance_delay_ms = 0;
    });
    let bootstrap = format!("127.0.0.1:{}", agent.addr().port());
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let topic = format!("sasl-{}", mechanism.to_lowercase());
        create_topic_as_alice(&agent, &topic);
        run_check(
            &python,
            &bootstrap,
            &topic,
            "SASL_PLAINTEXT",
            mechanism,
            None,
        );
    }
}

#[test]
fn librdkafka_over_sasl_ssl_with_scram_sha_512_and_a_wrong_password_refused() {
    let Some(python) = common::python_with(
        "librdkafka_over_sasl_ssl_with_scram_sha_512_and_a_wrong_password_refused",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let users = users_file(dir.path());
    let agent = common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(dir.path().join("server.pem"));
        config.tls_key_file = Some(dir.path().join("server-key.pem"));
        config.tls_listen_sasl = true;
        config.sasl_mechanisms = vec!["SCRAM-SHA-512".to_owned()];
        config.sasl_users_file = Some(users);
        config.group_initial_rebalance_delay_ms = 0;
    });
    // The plaintext listener does not require SASL here: the topic is made through it.
    agent.create_topic("sasl-ssl", 1);
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    let ca_file = dir.path().join("ca.pem");
    run_check(
        &python,
        &format!("localhost:{}", tls_addr.port()),
        "sasl-ssl",
        "SASL_SSL",
        "SCRAM-SHA-512",
        Some((&ca_file, true)),
    );
}

/// Runs the Java end-to-end client (`tests/clients/java`) against `bootstrap` with `properties`;
/// its exit status and report.
fn run_java(work: &Path, bootstrap: &str, mode: &str, properties: &[String]) -> ClientOutcome {
    run_java_with(work, "java-sasl", bootstrap, mode, properties, &[])
}

/// [`run_java`] on `topic`, with `jvm_properties` (`-Dname=value`) given to the JVM.
pub(crate) fn run_java_with(
    work: &Path,
    topic: &str,
    bootstrap: &str,
    mode: &str,
    properties: &[String],
    jvm_properties: &[String],
) -> ClientOutcome {
    let java = sluice_tests::repository_root().join("tests/clients/java");
    let mut command = std::process::Command::new("java");
    command
        .args(["-Xmx256m", "-XX:+UseSerialGC"])
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .args(jvm_properties)
        .arg("-cp")
        .arg(format!(
            "{}:{}/*",
            java.join("target/classes").display(),
            java.join("target/lib").display()
        ))
        .arg("dev.sluice.e2e.Client");
    for property in properties {
        command.args(["--property", property]);
    }
    run_client(command, work, topic, bootstrap, mode)
}

/// A client's exit status, report and output.
type ClientOutcome = (
    std::process::ExitStatus,
    sluice_tests::report::Report,
    String,
);

/// Runs an end-to-end client (`command`, its security arguments given) for 500 records of
/// `topic` in 2 partitions (60 s a phase: the Java producer wants a delivery timeout above its
/// 30 s request timeout).
fn run_client(
    mut command: std::process::Command,
    work: &Path,
    topic: &str,
    bootstrap: &str,
    mode: &str,
) -> ClientOutcome {
    let report = work.join(format!("{topic}-{mode}.jsonl"));
    command
        .args([
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--records",
            "500",
        ])
        .args(["--mode", mode, "--partitions", "2", "--seed", "7"])
        .args(["--timeout-s", "60", "--timestamp-base-ms"])
        .arg(common::now_ms().to_string())
        .arg("--report")
        .arg(&report);
    let output = command.output().unwrap();
    let log = format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed = sluice_tests::report::Report::read(&report)
        .unwrap_or_else(|error| panic!("no report from the Java client: {error}\n{log}"));
    (output.status, parsed, log)
}

#[test]
fn java_client_over_sasl_ssl_with_scram_sha_512_and_a_wrong_password_refused() {
    use sluice_tests::tools::Tool;
    let test = "java_client_over_sasl_ssl_with_scram_sha_512_and_a_wrong_password_refused";
    if !sluice_tests::tools::require(test, &[Tool::Java, Tool::Maven]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::clients::ClientKind::Java
        .build(dir.path())
        .unwrap();
    certificates(dir.path());
    let users = users_file(dir.path());
    let agent = common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(dir.path().join("server.pem"));
        config.tls_key_file = Some(dir.path().join("server-key.pem"));
        config.tls_listen_sasl = true;
        config.sasl_users_file = Some(users);
    });
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    let bootstrap = format!("localhost:{}", tls_addr.port());
    let properties = |password: &str| {
        vec![
            "security.protocol=SASL_SSL".to_owned(),
            "sasl.mechanism=SCRAM-SHA-512".to_owned(),
            format!(
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                 required username=\"alice\" password=\"{password}\";"
            ),
            "ssl.truststore.type=PEM".to_owned(),
            format!(
                "ssl.truststore.location={}",
                dir.path().join("ca.pem").display()
            ),
        ]
    };
    // The admin client creates the topic, the producer writes 500 records, the consumer reads
    // them back: every connection authenticated with SCRAM-SHA-512 over TLS.
    let (status, report, log) = run_java(
        dir.path(),
        &bootstrap,
        "roundtrip",
        &properties("alice-secret"),
    );
    assert!(status.success(), "{:?}\n{log}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.acks.len(), 500, "{log}");
    assert_eq!(report.records.len(), 500, "{log}");
    let done = report.done.unwrap();
    assert_eq!((done.produced, done.consumed), (500, 500));

    // A wrong password: Java's SaslAuthenticationException, carrying the agent's message.
    let (status, report, log) = run_java(dir.path(), &bootstrap, "produce", &properties("guess"));
    assert!(!status.success(), "{log}");
    let error = report.errors.first().unwrap_or_else(|| panic!("{log}"));
    assert!(
        error.contains("SaslAuthenticationException")
            && error.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"),
        "{error}"
    );
}

#[test]
fn franz_go_over_sasl_ssl_with_both_scrams_and_a_wrong_password_refused() {
    use sluice_tests::tools::Tool;
    let test = "franz_go_over_sasl_ssl_with_both_scrams_and_a_wrong_password_refused";
    if !sluice_tests::tools::require(test, &[Tool::Go]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::clients::ClientKind::Go
        .build(dir.path())
        .unwrap();
    certificates(dir.path());
    let users = users_file(dir.path());
    let agent = common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(dir.path().join("server.pem"));
        config.tls_key_file = Some(dir.path().join("server-key.pem"));
        config.tls_listen_sasl = true;
        config.sasl_users_file = Some(users);
    });
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    let bootstrap = format!("localhost:{}", tls_addr.port());
    let go = |mechanism: &str, password: &str| {
        let mut command = std::process::Command::new(
            sluice_tests::repository_root().join("tests/clients/go/e2e-client"),
        );
        command
            .arg("-tls-ca")
            .arg(dir.path().join("ca.pem"))
            .args(["-sasl-mechanism", mechanism, "-sasl-user", "alice"])
            .args(["-sasl-password", password]);
        command
    };
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256"] {
        let topic = format!("go-{}", mechanism.to_lowercase());
        let (status, report, log) = run_client(
            go(mechanism, "alice-secret"),
            dir.path(),
            &topic,
            &bootstrap,
            "roundtrip",
        );
        assert!(status.success(), "{mechanism}: {:?}\n{log}", report.errors);
        assert_eq!(report.acks.len(), 500, "{log}");
        assert_eq!(report.records.len(), 500, "{log}");
    }
    let (status, report, log) = run_client(
        go("SCRAM-SHA-512", "guess"),
        dir.path(),
        "go-refused",
        &bootstrap,
        "produce",
    );
    assert!(!status.success(), "{log}");
    let error = report.errors.first().unwrap_or_else(|| panic!("{log}"));
    assert!(
        error.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"),
        "{error}"
    );
}
