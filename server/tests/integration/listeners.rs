//! Named listeners (Kafka's `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`): one agent on two network cores with three listeners —
//! `INTERNAL` on PLAINTEXT, `CLIENT` on SASL_SSL without client certificates, `REPLAY` on SSL
//! requiring a client certificate (`[listener_name.REPLAY] ssl_client_auth = "required"`);
//! `CLIENT` offers PLAIN and SCRAM-SHA-512 only (`sasl_enabled_mechanisms`).
//! Metadata through each names that listener's advertised port (Kafka's rule), each listener
//! speaks only its own protocol, and librdkafka (confluent-kafka) and the Java client (its admin
//! creating the topic, a producer and a consumer; a PEM keystore for REPLAY's client
//! certificate) produce and consume through each. Certificates are made per test with rcgen (`tls::Pki`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::tls::{Pki, ReadWrite, call, connect};

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use sluice_server::config::{ClientAuth, ListenerSettings};

const USERS: &str = "[users]\nalice = \"alice-secret\"\n";

struct ThreeListeners {
    pki: Pki,
    agent: common::TestAgent,
    internal: SocketAddr,
    client: SocketAddr,
    replay: SocketAddr,
}

fn three_listeners() -> ThreeListeners {
    let pki = Pki::new();
    pki.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    pki.issue("app", "app-1", &["app-1"]);
    std::fs::write(pki.path("users.toml"), USERS).unwrap();
    let agent = common::start_agent(|config| {
        // `listeners` replaces `listen`, which must stay at its default.
        config.listen = "127.0.0.1:9092".to_owned();
        config.cpus = Some(vec![0, 1]);
        config.listeners = vec![
            "INTERNAL://127.0.0.1:0".to_owned(),
            "CLIENT://127.0.0.1:0".to_owned(),
            "REPLAY://127.0.0.1:0".to_owned(),
        ];
        // Port 0: the port bound is advertised; the TLS ones under the certificate's name.
        config.advertised_listeners = vec![
            "CLIENT://localhost:0".to_owned(),
            "REPLAY://localhost:0".to_owned(),
        ];
        config.listener_security_protocol_map = vec![
            "INTERNAL:PLAINTEXT".to_owned(),
            "CLIENT:SASL_SSL".to_owned(),
            "REPLAY:SSL".to_owned(),
        ];
        config.tls_cert_file = Some(pki.path("server.pem"));
        config.tls_key_file = Some(pki.path("server-key.pem"));
        config.tls_client_ca_file = Some(pki.path("ca.pem"));
        config.listener_name = BTreeMap::from([
            (
                "CLIENT".to_owned(),
                ListenerSettings {
                    ssl_client_auth: Some(ClientAuth::None),
                    sasl_enabled_mechanisms: Some(vec![
                        "PLAIN".to_owned(),
                        "SCRAM-SHA-512".to_owned(),
                    ]),
                    ..ListenerSettings::default()
                },
            ),
            (
                "REPLAY".to_owned(),
                ListenerSettings {
                    ssl_client_auth: Some(ClientAuth::Required),
                    ..ListenerSettings::default()
                },
            ),
        ]);
        config.sasl_users_file = Some(pki.path("users.toml"));
        config.group_initial_rebalance_delay_ms = 0;
    });
    let running = agent.agent.as_ref().unwrap();
    let internal = running.listener_addr("INTERNAL").unwrap();
    let client = running.listener_addr("client").unwrap();
    let replay = running.listener_addr("REPLAY").unwrap();
    assert_eq!(agent.addr(), internal, "the first listener is local_addr");
    assert_eq!(running.tls_addr(), Some(client), "the first TLS listener");
    ThreeListeners {
        pki,
        agent,
        internal,
        client,
        replay,
    }
}

/// The one broker Metadata names, as `(host, port)`.
fn metadata_broker(stream: &mut impl ReadWrite) -> (String, i32) {
    let metadata: MetadataResponse =
        call(stream, ApiKey::Metadata, 12, &MetadataRequest::default()).unwrap();
    assert_eq!(metadata.brokers.len(), 1, "{metadata:?}");
    let broker = &metadata.brokers[0];
    (broker.host.to_string(), broker.port)
}

fn login_plain(stream: &mut impl ReadWrite) {
    let handshake: SaslHandshakeResponse = call(
        stream,
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("PLAIN".into()),
    )
    .unwrap();
    assert_eq!(handshake.error_code, 0);
    let login: SaslAuthenticateResponse = call(
        stream,
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
    )
    .unwrap();
    assert_eq!(login.error_code, 0, "{login:?}");
}

#[test]
fn metadata_through_each_listener_names_that_listeners_advertised_address() {
    let setup = three_listeners();
    let ports = [setup.internal, setup.client, setup.replay].map(|address| address.port());
    assert!(
        ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2],
        "{ports:?}"
    );

    // Several connections each, so both network cores answer on every listener.
    for _ in 0..4 {
        let mut internal = common::RawClient::connect(setup.internal);
        let metadata: MetadataResponse =
            internal.call(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(
            (metadata.brokers[0].host.as_str(), metadata.brokers[0].port),
            ("127.0.0.1", i32::from(setup.internal.port()))
        );

        let mut client = connect(&setup.pki, setup.client, None).unwrap();
        login_plain(&mut client);
        assert_eq!(
            metadata_broker(&mut client),
            ("localhost".to_owned(), i32::from(setup.client.port()))
        );

        let app = (setup.pki.path("app.pem"), setup.pki.path("app-key.pem"));
        let mut replay = connect(
            &setup.pki,
            setup.replay,
            Some((app.0.as_path(), app.1.as_path())),
        )
        .unwrap();
        assert_eq!(
            metadata_broker(&mut replay),
            ("localhost".to_owned(), i32::from(setup.replay.port()))
        );
    }

    // REPLAY requires a client certificate; CLIENT (above) did not ask for one.
    let refused = connect(&setup.pki, setup.replay, None).and_then(|mut stream| {
        call::<_, MetadataResponse>(
            &mut stream,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default(),
        )
    });
    assert!(
        refused.is_err(),
        "REPLAY served a client without a certificate"
    );
    // CLIENT offers its own mechanisms (`sasl_enabled_mechanisms`), not the agent-wide three.
    let mut other_mechanism = connect(&setup.pki, setup.client, None).unwrap();
    let handshake: SaslHandshakeResponse = call(
        &mut other_mechanism,
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("SCRAM-SHA-256".into()),
    )
    .unwrap();
    assert_eq!(handshake.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let offered: Vec<&str> = handshake
        .mechanisms
        .iter()
        .map(|name| name.as_str())
        .collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-512"]);
    // CLIENT requires SASL: Metadata before authenticating closes the connection.
    let mut unauthenticated = connect(&setup.pki, setup.client, None).unwrap();
    assert!(
        call::<_, MetadataResponse>(
            &mut unauthenticated,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default()
        )
        .is_err()
    );
}

#[test]
fn librdkafka_produces_and_consumes_through_each_listener() {
    let Some(python) = common::python_with(
        "librdkafka_produces_and_consumes_through_each_listener",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let setup = three_listeners();
    let ca = setup.pki.path("ca.pem").display().to_string();
    let cases: [(&str, SocketAddr, Vec<String>); 3] = [
        (
            "internal",
            setup.internal,
            vec!["security.protocol=PLAINTEXT".to_owned()],
        ),
        (
            "client",
            setup.client,
            vec![
                "security.protocol=SASL_SSL".to_owned(),
                format!("ssl.ca.location={ca}"),
                "ssl.endpoint.identification.algorithm=https".to_owned(),
                "sasl.mechanism=SCRAM-SHA-512".to_owned(),
                "sasl.username=alice".to_owned(),
                "sasl.password=alice-secret".to_owned(),
            ],
        ),
        (
            "replay",
            setup.replay,
            vec![
                "security.protocol=SSL".to_owned(),
                format!("ssl.ca.location={ca}"),
                "ssl.endpoint.identification.algorithm=https".to_owned(),
                format!(
                    "ssl.certificate.location={}",
                    setup.pki.path("app.pem").display()
                ),
                format!(
                    "ssl.key.location={}",
                    setup.pki.path("app-key.pem").display()
                ),
            ],
        ),
    ];
    let script = format!(
        "{}/tests/python/listeners_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    for (name, address, settings) in cases {
        let topic = format!("through-{name}");
        setup.agent.create_topic(&topic, 1);
        let host = if name == "internal" {
            "127.0.0.1"
        } else {
            "localhost"
        };
        let started = std::time::Instant::now();
        let output = std::process::Command::new(&python)
            .arg(&script)
            .arg(format!("{host}:{}", address.port()))
            .args([topic.as_str(), "300"])
            .args(&settings)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.trim() == "ok",
            "{name}\nstdout: {stdout}\nstderr: {stderr}"
        );
        eprintln!(
            "{name}: 300 records produced and consumed in {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn java_client_round_trips_through_each_listener() {
    use sluice_tests::tools::Tool;
    let test = "java_client_round_trips_through_each_listener";
    if !sluice_tests::tools::require(test, &[Tool::Java, Tool::Maven]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    sluice_tests::clients::ClientKind::Java
        .build(work.path())
        .unwrap();
    let setup = three_listeners();
    let ca = setup.pki.path("ca.pem").display().to_string();
    // Java reads a PEM keystore holding the private key (PKCS#8) and the certificate.
    let keystore = setup.pki.path("app-keystore.pem");
    std::fs::write(
        &keystore,
        [
            std::fs::read_to_string(setup.pki.path("app-key.pem")).unwrap(),
            std::fs::read_to_string(setup.pki.path("app.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let trust = |mut settings: Vec<String>| {
        settings.push("ssl.truststore.type=PEM".to_owned());
        settings.push(format!("ssl.truststore.location={ca}"));
        settings
    };
    let cases: [(&str, String, Vec<String>); 3] = [
        (
            "internal",
            format!("127.0.0.1:{}", setup.internal.port()),
            vec!["security.protocol=PLAINTEXT".to_owned()],
        ),
        (
            "client",
            format!("localhost:{}", setup.client.port()),
            trust(vec![
                "security.protocol=SASL_SSL".to_owned(),
                "sasl.mechanism=SCRAM-SHA-512".to_owned(),
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                 required username=\"alice\" password=\"alice-secret\";"
                    .to_owned(),
            ]),
        ),
        (
            "replay",
            format!("localhost:{}", setup.replay.port()),
            trust(vec![
                "security.protocol=SSL".to_owned(),
                "ssl.keystore.type=PEM".to_owned(),
                format!("ssl.keystore.location={}", keystore.display()),
            ]),
        ),
    ];
    for (name, bootstrap, properties) in cases {
        // The admin client creates the topic, the producer writes 500 records, the consumer
        // reads them back, each connecting where Metadata through this listener says.
        let started = std::time::Instant::now();
        let (status, report, log) = crate::sasl_clients::run_java_with(
            work.path(),
            &format!("java-{name}"),
            &bootstrap,
            "roundtrip",
            &properties,
            &[],
        );
        assert!(status.success(), "{name}: {:?}\n{log}", report.errors);
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
        let done = report.done.unwrap();
        assert_eq!((done.produced, done.consumed), (500, 500), "{name}: {log}");
        eprintln!(
            "{name}: Java round trip of 500 records in {:?}",
            started.elapsed()
        );
    }
}

/// Two SSL listeners with certificates of two authorities (`[listener_name.PARTNER]` has its own
/// certificate and client CA): a client trusting one authority completes the handshake on its
/// listener and not on the other, and PARTNER asks its clients for a certificate of its CA.
#[test]
fn each_tls_listener_serves_its_own_certificate() {
    let public = Pki::new();
    public.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    let partner = Pki::new();
    partner.issue("server", "sluice-partner", &["localhost", "127.0.0.1"]);
    partner.issue("app", "partner-app", &["partner-app"]);
    let agent = common::start_agent(|config| {
        config.listen = "127.0.0.1:9092".to_owned();
        config.listeners = vec![
            "PUBLIC://127.0.0.1:0".to_owned(),
            "PARTNER://127.0.0.1:0".to_owned(),
        ];
        config.listener_security_protocol_map =
            vec!["PUBLIC:SSL".to_owned(), "PARTNER:SSL".to_owned()];
        config.tls_cert_file = Some(public.path("server.pem"));
        config.tls_key_file = Some(public.path("server-key.pem"));
        config.listener_name = BTreeMap::from([(
            "PARTNER".to_owned(),
            ListenerSettings {
                tls_cert_file: Some(partner.path("server.pem")),
                tls_key_file: Some(partner.path("server-key.pem")),
                tls_client_ca_file: Some(partner.path("ca.pem")),
                ..ListenerSettings::default()
            },
        )]);
    });
    let running = agent.agent.as_ref().unwrap();
    let public_addr = running.listener_addr("PUBLIC").unwrap();
    let partner_addr = running.listener_addr("PARTNER").unwrap();
    let versions = |pki: &Pki, address: SocketAddr, client: Option<(&Pki, &str)>| {
        let paths = client.map(|(pki, stem)| {
            (
                pki.path(&format!("{stem}.pem")),
                pki.path(&format!("{stem}-key.pem")),
            )
        });
        connect(
            pki,
            address,
            paths
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
        )
        .and_then(|mut stream| {
            call::<_, kafka_protocol::messages::ApiVersionsResponse>(
                &mut stream,
                ApiKey::ApiVersions,
                0,
                &kafka_protocol::messages::ApiVersionsRequest::default(),
            )
        })
        .is_ok_and(|answer| answer.error_code == 0)
    };
    assert!(
        versions(&public, public_addr, None),
        "PUBLIC serves the public certificate"
    );
    assert!(
        !versions(&partner, public_addr, None),
        "PUBLIC's certificate is not the partner authority's"
    );
    assert!(
        versions(&partner, partner_addr, Some((&partner, "app"))),
        "PARTNER serves its own certificate to a client of its CA"
    );
    assert!(
        !versions(&public, partner_addr, Some((&partner, "app"))),
        "PARTNER's certificate is not the public authority's"
    );
    assert!(
        !versions(&partner, partner_addr, None),
        "PARTNER asks for a client certificate of its CA"
    );
}
