//! TLS to PostgreSQL from an agent of a cluster, set in the `--metadata` URL with libpq's
//! parameters (`sslmode`, `sslrootcert`): a PostgreSQL with `ssl = on` and a certificate signed by
//! the test's own certificate authority (rcgen).
//!
//! 1. An agent with `sslmode=verify-full&sslrootcert=ca.pem` starts, takes a produce and serves
//!    it back, and every one of its connections shows as encrypted in `pg_stat_ssl`.
//! 2. A wrong certificate authority is refused at the start, and the error names the TLS
//!    settings; the URL's password appears nowhere in it.
//! 3. `verify-full` compares the host: `localhost` (not in the certificate) is refused, while
//!    `verify-ca` (the chain only) accepts it.
//!    Without `sslmode` (libpq's `prefer`) the connections are encrypted too.
//! 4. `sslmode=require` against a PostgreSQL without TLS fails the start clearly.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::common;
use crate::fetch_support::{batches_of, fetch, fetch_request, partitions, want};
use crate::tls::Pki;

use common::{RawClient, batch, create_topics_request, produce_request, produce_results};
use kafka_protocol::messages::{ApiKey, CreateTopicsResponse, ProduceResponse};
use sluice_engine::sequencer::{ErrorKind, SequencerClient, SequencerConfig};
use sluice_server::{Agent, Config};
use sluice_tests::postgres::TestPostgres;

const PASSWORD: &str = "never-in-a-message";

fn config(url: &str, store_dir: &std::path::Path, data_dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".to_owned(),
        cpus: Some(vec![0]),
        io_memory_bytes: 64 * 1024,
        data_dir: data_dir.to_owned(),
        store: Some(format!("file://{}?fsync=false", store_dir.display())),
        metadata: Some(url.to_owned()),
        agent_id: Some("tls".to_owned()),
        zone: "a".to_owned(),
        lease_ms: 3_000,
        auto_create_topics: false,
        ..Config::default()
    }
}

/// A PostgreSQL with TLS, its certificate for `127.0.0.1` signed by `pki`'s authority.
fn start_postgres(test: &str, pki: &Pki) -> Option<TestPostgres> {
    pki.issue("postgres", "127.0.0.1", &["127.0.0.1"]);
    let certificate = std::fs::read_to_string(pki.path("postgres.pem")).unwrap();
    let key = std::fs::read_to_string(pki.path("postgres-key.pem")).unwrap();
    TestPostgres::start_tls_with_or_skip(test, &certificate, &key)
}

/// `postgres.url()` with a password and `query` appended.
fn url_with(postgres: &TestPostgres, host: &str, query: &str) -> String {
    postgres
        .url()
        .replace("postgres@127.0.0.1", &format!("postgres:{PASSWORD}@{host}"))
        + "?"
        + query
}

#[test]
fn an_agent_verifies_postgresql_and_its_connections_are_encrypted() {
    let test = "cluster_postgres_tls verify-full";
    let pki = Pki::new();
    let Some(postgres) = start_postgres(test, &pki) else {
        return;
    };
    let ca = pki.path("ca.pem");
    let url = url_with(
        &postgres,
        "127.0.0.1",
        &format!(
            "application_name=tls-agent&sslmode=verify-full&sslrootcert={}",
            ca.display()
        ),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(&url, store_dir.path(), data_dir.path())).unwrap();

    let mut client = RawClient::connect(agent.local_addr());
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[("over-tls", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let produced = batch(5, common::now_ms());
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[("over-tls", 0, produced.clone())]),
    );
    let result = &produce_results(&response)[0];
    assert_eq!((result.2, result.3), (0, 0), "produce through the agent");
    let fetched = fetch(
        &mut client,
        4,
        &fetch_request("over-tls", uuid::Uuid::nil(), &[want(0, 0)], 1_000, 1),
    );
    let partition = partitions(&fetched)[0];
    assert_eq!(partition.error_code, 0);
    let batches = batches_of(&partition.records);
    assert_eq!(batches.len(), 1, "the produced batch served back");
    assert_eq!(batches[0].0, 0);
    assert_eq!(batches[0].1.len(), produced.len());

    // Every connection of the agent is encrypted (the writer and the watcher at least).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (encrypted, plain) = runtime.block_on(async {
        let admin = postgres.admin().await;
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_stat_ssl.ssl), \
                        count(*) FILTER (WHERE NOT pg_stat_ssl.ssl) \
                 FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE application_name = 'tls-agent'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    });
    eprintln!("{test}: the agent's connections: {encrypted} encrypted, {plain} plain");
    assert!(encrypted >= 2, "{encrypted} encrypted connections");
    assert_eq!(plain, 0, "a connection of the agent in plain text");
    drop(client);
    agent.shutdown().unwrap();

    // 2. Another authority: refused at the start, the settings named, the password not.
    let other = Pki::new();
    let wrong_url = url_with(
        &postgres,
        "127.0.0.1",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            other.path("ca.pem").display()
        ),
    );
    let started = Instant::now();
    let error = Agent::start(&config(&wrong_url, store_dir.path(), data_dir.path()))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    eprintln!(
        "{test}: wrong authority refused after {:?}: {error}",
        started.elapsed()
    );
    assert!(
        // The two authorities share a name: the signature is what fails (UnknownIssuer when
        // the names differ).
        error.contains("sslrootcert=") && error.contains("invalid peer certificate"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "the password in {error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");

    // 3. verify-full compares the host; verify-ca does not.
    let by_name = |mode: &str| {
        SequencerClient::connect(SequencerConfig::new(
            url_with(
                &postgres,
                "localhost",
                &format!("sslmode={mode}&sslrootcert={}", ca.display()),
            ),
            "tls",
        ))
    };
    let refused = by_name("verify-full").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Fatal);
    assert!(
        refused.to_string().contains("not valid for name"),
        "{refused}"
    );
    by_name("verify-ca").unwrap();

    // 4. No sslmode is libpq's prefer: TLS when the server offers it (unverified without
    // sslrootcert).
    let _preferring = SequencerClient::connect(SequencerConfig::new(
        url_with(&postgres, "127.0.0.1", "application_name=prefer"),
        "tls",
    ))
    .unwrap();
    let (encrypted, plain) = runtime.block_on(async {
        let row = postgres
            .admin()
            .await
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_stat_ssl.ssl), \
                        count(*) FILTER (WHERE NOT pg_stat_ssl.ssl) \
                 FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE application_name = 'prefer'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    });
    assert_eq!(
        (encrypted, plain),
        (2, 0),
        "prefer against a server with TLS"
    );
}

#[test]
fn require_against_a_postgresql_without_tls_fails_the_start() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_postgres_tls require") else {
        return;
    };
    let url = url_with(&postgres, "127.0.0.1", "sslmode=require");
    let store_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let error = Agent::start(&config(&url, store_dir.path(), data_dir.path()))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    eprintln!("require without TLS: {error}");
    assert!(
        error.contains("sslmode=require") && error.contains("server does not support TLS"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "the password in {error}");
    // The same URL without sslmode (libpq's prefer) connects in plain text.
    let plain = url_with(&postgres, "127.0.0.1", "application_name=plain");
    SequencerClient::connect(SequencerConfig::new(plain, "plain")).unwrap();
}

#[test]
fn a_client_certificate_is_presented_when_the_server_requires_one() {
    let test = "cluster_postgres_tls client certificate";
    let pki = Pki::new();
    pki.issue("postgres", "127.0.0.1", &["127.0.0.1"]);
    // clientcert=verify-full: signed by the authority, and the common name is the user.
    pki.issue("client", "postgres", &["postgres"]);
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    let Some(postgres) = TestPostgres::start_tls_with_client_ca_or_skip(
        test,
        &read("postgres.pem"),
        &read("postgres-key.pem"),
        Some(&read("ca.pem")),
    ) else {
        return;
    };
    let ca = pki.path("ca.pem");
    let base = format!(
        "application_name=client-cert&sslmode=verify-full&sslrootcert={}",
        ca.display()
    );

    let refused = SequencerClient::connect(SequencerConfig::new(
        url_with(&postgres, "127.0.0.1", &base),
        "tls",
    ))
    .unwrap_err();
    eprintln!("{test}: without sslcert: {refused}");
    assert_eq!(refused.kind(), ErrorKind::Fatal);
    assert!(refused.to_string().contains("certificate"), "{refused}");
    assert!(!refused.to_string().contains(PASSWORD), "{refused}");

    let with_certificate = format!(
        "{base}&sslcert={}&sslkey={}",
        pki.path("client.pem").display(),
        pki.path("client-key.pem").display()
    );
    let _sequencer = SequencerClient::connect(SequencerConfig::new(
        url_with(&postgres, "127.0.0.1", &with_certificate),
        "tls",
    ))
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client_names: Vec<String> = runtime.block_on(async {
        postgres
            .admin()
            .await
            .query(
                "SELECT pg_stat_ssl.client_dn FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE application_name = 'client-cert' AND pg_stat_ssl.ssl",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, Option<String>>(0).unwrap_or_default())
            .collect()
    });
    eprintln!("{test}: with sslcert: connections as {client_names:?}");
    assert!(client_names.len() >= 2, "{client_names:?}");
    assert!(
        client_names.iter().all(|name| name.contains("CN=postgres")),
        "{client_names:?}"
    );
}
