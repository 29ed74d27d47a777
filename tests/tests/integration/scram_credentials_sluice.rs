//! Scenario (run on Apache Kafka too, `scram_credentials_kafka.rs`): SCRAM credentials managed
//! with Apache Kafka's own `kafka-configs` (ConfigCommand, from the `kafka-tools` jar of
//! `scripts/kafka/pom.xml`) over SASL_PLAINTEXT. The operator, `admin`, logs in with PLAIN from
//! the users file; `alice` has no password anywhere until `kafka-configs --alter --add-config
//! 'SCRAM-SHA-256=[iterations=8192,password=alice-secret]'` stores one in the metadata log, and
//! then Kafka's Java producer (ProducerPerformance) logs in as alice with SCRAM-SHA-256 — no
//! restart. `--describe` lists the mechanism and its iterations; too many iterations are refused
//! with Kafka's words; the credential survives a kill -9 and a fresh agent on the same bucket;
//! after `--delete-config SCRAM-SHA-256` alice's next login fails (docs/operations.md).
//!
//! The agent's failed-login lockout is off (`--sasl-failed-logins-max 0`): the scenario's two
//! expected failures come from the address the operator uses too.
//!
//! Without java, or without the jars (`bash scripts/kafka/fetch-kafka.sh`), the test prints
//! `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use sluice_engine::store::S3TestServer;
use sluice_tests::kafka_tools;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{Tool, loud, require};

const TOPIC: &str = "scram-orders";
const RECORDS: usize = 100;

#[test]
fn kafka_configs_scram_credentials_log_alice_in_and_out() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("scram_credentials_sluice", &[Tool::Java]) {
        return;
    }
    let Some(lib) = kafka_tools::jars("scram_credentials_sluice") else {
        return;
    };
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-scram-")
        .tempdir()
        .unwrap();
    let users = work_dir.path().join("users.toml");
    std::fs::write(&users, "[users]\nadmin = \"admin-secret\"\n").unwrap();
    let store = S3TestServer::start().unwrap();
    let args: Vec<String> = [
        "--listen-sasl",
        "true",
        "--sasl-users-file",
        &users.display().to_string(),
        "--sasl-failed-logins-max",
        "0",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let mut agent = SluiceAgent::start_with_args(&store, "scram", &args).unwrap();
    let bootstrap = agent.bootstrap();
    let failures = scenario(&lib, &bootstrap, work_dir.path(), &mut || {
        agent.restart().unwrap();
        loud("scram: agent killed (-9) and started again on the same bucket");
    });
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}\nagent log:\n{}",
        failures.len(),
        failures.join("\n\n"),
        agent.log_tail()
    );
}

/// One step: whether it did what Kafka does; a failure is kept with the tool's output.
fn step(failures: &mut Vec<String>, name: &str, (ok, text): (bool, String), passed: bool) {
    loud(&format!(
        "scram: {name:<60} {}",
        if passed { "ok" } else { "FAILED" }
    ));
    if !passed {
        failures.push(format!("{name}: exit ok={ok}\n{text}"));
    }
}

fn login_failed(text: &str) -> bool {
    text.contains("SaslAuthenticationException") || text.contains("Authentication failed")
}

/// The client settings of `user` with `mechanism` over SASL_PLAINTEXT, as a file.
fn client_config(work_dir: &Path, bootstrap: &str, user: &str, mechanism: &str) -> String {
    let path = work_dir.join(format!("{user}-{mechanism}.properties"));
    let module = if mechanism == "PLAIN" {
        "plain.PlainLoginModule"
    } else {
        "scram.ScramLoginModule"
    };
    std::fs::write(
        &path,
        format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism={mechanism}\n\
             sasl.jaas.config=org.apache.kafka.common.security.{module} required \
             username=\"{user}\" password=\"{user}-secret\";\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The steps on the broker at `bootstrap`, whose client listener takes PLAIN (admin,
/// `admin-secret`) and SCRAM-SHA-256; `restart` kills the broker and starts it again on the same
/// storage (a no-op on Kafka). The failed steps, with the tools' output.
pub(crate) fn scenario(
    lib: &Path,
    bootstrap: &str,
    work_dir: &Path,
    restart: &mut dyn FnMut(),
) -> Vec<String> {
    let admin = client_config(work_dir, bootstrap, "admin", "PLAIN");
    let alice = client_config(work_dir, bootstrap, "alice", "SCRAM-SHA-256");
    let tool = |config: &str, class: &str, args: &[&str]| {
        let mut all = vec!["--bootstrap-server", bootstrap, "--command-config", config];
        all.extend_from_slice(args);
        kafka_tools::run(lib, work_dir, class, &all)
    };
    let configs = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--entity-type", "users", "--entity-name", "alice"]);
        tool(&admin, "org.apache.kafka.tools.ConfigCommand", &all)
    };
    let alice_lists_topics = || tool(&alice, "org.apache.kafka.tools.TopicCommand", &["--list"]);
    let alice_produces = || {
        let records = RECORDS.to_string();
        kafka_tools::run(
            lib,
            work_dir,
            "org.apache.kafka.tools.ProducerPerformance",
            &[
                "--topic",
                TOPIC,
                "--num-records",
                &records,
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--producer.config",
                &alice,
                "--producer-props",
                "acks=all",
                "max.block.ms=20000",
                "delivery.timeout.ms=30000",
                "request.timeout.ms=10000",
            ],
        )
    };
    let produced = |(ok, text): &(bool, String)| {
        *ok && text.contains(&format!("{RECORDS} records sent")) && !login_failed(text)
    };
    let mut failures = Vec::new();
    let f = &mut failures;

    let result = tool(
        &admin,
        "org.apache.kafka.tools.TopicCommand",
        &["--create", "--topic", TOPIC, "--partitions", "1"],
    );
    let passed = result.0 && result.1.contains(&format!("Created topic {TOPIC}."));
    step(f, "TopicCommand --create (admin, PLAIN)", result, passed);

    let result = alice_lists_topics();
    let passed = !result.0 && login_failed(&result.1);
    step(
        f,
        "alice cannot log in before she has a credential",
        result,
        passed,
    );

    // Too few iterations are refused by the tool itself; too many reach the broker.
    let result = configs(&[
        "--alter",
        "--add-config",
        "SCRAM-SHA-256=[iterations=20000,password=alice-secret]",
    ]);
    let passed = !result.0 && result.1.contains("Too many iterations");
    step(
        f,
        "iterations=20000 is refused (Too many iterations)",
        result,
        passed,
    );

    let result = configs(&[
        "--alter",
        "--add-config",
        "SCRAM-SHA-256=[iterations=8192,password=alice-secret]",
    ]);
    let passed = result.0
        && result
            .1
            .contains("Completed updating config for user alice");
    step(
        f,
        "kafka-configs --add-config SCRAM-SHA-256",
        result,
        passed,
    );

    let result = configs(&["--describe"]);
    let passed = result.0 && result.1.contains("SCRAM-SHA-256=iterations=8192");
    step(
        f,
        "kafka-configs --describe lists SCRAM-SHA-256",
        result,
        passed,
    );

    let result = alice_produces();
    let passed = produced(&result);
    step(
        f,
        "alice produces with SCRAM-SHA-256 (no restart)",
        result,
        passed,
    );

    restart();
    let result = alice_produces();
    let passed = produced(&result);
    step(f, "alice still logs in after a restart", result, passed);

    let result = configs(&["--alter", "--delete-config", "SCRAM-SHA-256"]);
    let passed = result.0
        && result
            .1
            .contains("Completed updating config for user alice");
    step(
        f,
        "kafka-configs --delete-config SCRAM-SHA-256",
        result,
        passed,
    );

    let result = configs(&["--describe"]);
    let passed = result.0 && !result.1.contains("SCRAM-SHA-256");
    step(
        f,
        "kafka-configs --describe no longer lists it",
        result,
        passed,
    );

    let result = alice_lists_topics();
    let passed = !result.0 && login_failed(&result.1);
    step(f, "alice's next login fails", result, passed);
    failures
}
