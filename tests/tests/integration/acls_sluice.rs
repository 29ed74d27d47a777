//! Scenario: ACLs managed with Apache Kafka's AclCommand (`kafka-tools`, the version of
//! `scripts/kafka/pom.xml`) on an agent with `--authorizer acl`, over SASL_PLAINTEXT with
//! SCRAM-SHA-512 users, and enforced on Kafka's own Java producer (ProducerPerformance):
//! a principal with WRITE produces, one without gets TOPIC_AUTHORIZATION_FAILED, a prefixed ALLOW
//! lets a principal write every topic under the prefix, and a DENY wins over it until removed.
//! `acls_kafka.rs` runs the same steps, with the same expectations, on Apache Kafka with its
//! `StandardAuthorizer` (over SASL PLAIN): that is what "as in Kafka" means here.
//!
//! Without java, or without the jars (`bash scripts/kafka/fetch-kafka.sh`), the test prints
//! `SKIPPED` and passes locally; with `CI=true` it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use sluice_engine::store::S3TestServer;
use sluice_tests::kafka_tools;
use sluice_tests::sluice::SluiceAgent;
use sluice_tests::tools::{Tool, loud, require};

const USERS: &str =
    "[users]\nadmin = \"admin-secret\"\nalice = \"alice-secret\"\nbob = \"bob-secret\"\n";

pub(crate) struct Tools<'a> {
    /// Kafka's jars ([`kafka_tools::jars`]).
    pub(crate) lib: PathBuf,
    pub(crate) bootstrap: String,
    pub(crate) work_dir: &'a Path,
    /// `SCRAM-SHA-512` or `PLAIN`.
    pub(crate) mechanism: &'static str,
}

impl Tools<'_> {
    /// Runs `class` with `args`; stdout and stderr together, and whether it exited 0.
    fn run(&self, class: &str, args: &[&str]) -> (bool, String) {
        kafka_tools::run(&self.lib, self.work_dir, class, args)
    }

    /// The client settings of `user` (SCRAM-SHA-512 over SASL_PLAINTEXT), as a file.
    fn client_config(&self, user: &str) -> String {
        let path = self.work_dir.join(format!("{user}.properties"));
        let module = if self.mechanism == "PLAIN" {
            "plain.PlainLoginModule"
        } else {
            "scram.ScramLoginModule"
        };
        std::fs::write(
            &path,
            format!(
                "bootstrap.servers={}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism={}\n\
                 sasl.jaas.config=org.apache.kafka.common.security.{module} required \
                 username=\"{user}\" password=\"{user}-secret\";\n",
                self.bootstrap, self.mechanism
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    /// A tool that takes `--bootstrap-server` and `--command-config`, run as `user`.
    fn admin(&self, user: &str, class: &str, args: &[&str]) -> (bool, String) {
        let config = self.client_config(user);
        let mut all = vec![
            "--bootstrap-server",
            &self.bootstrap,
            "--command-config",
            &config,
        ];
        all.extend_from_slice(args);
        self.run(class, &all)
    }

    /// Kafka's ProducerPerformance as `user`: `records` records to `topic`.
    fn produce(&self, user: &str, topic: &str, records: usize) -> (bool, String) {
        let config = self.client_config(user);
        let records = records.to_string();
        self.run(
            "org.apache.kafka.tools.ProducerPerformance",
            &[
                "--topic",
                topic,
                "--num-records",
                &records,
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--producer.config",
                &config,
                "--producer-props",
                "acks=all",
                "max.block.ms=20000",
                "delivery.timeout.ms=30000",
                "request.timeout.ms=10000",
            ],
        )
    }
}

/// One step: whether it did what Kafka does; a failure is kept with the tool's output.
fn step(failures: &mut Vec<String>, name: &str, (ok, text): (bool, String), passed: bool) {
    loud(&format!(
        "acls: {name:<56} {}",
        if passed { "ok" } else { "FAILED" }
    ));
    if !passed {
        failures.push(format!("{name}: exit ok={ok}\n{text}"));
    }
}

fn denied(text: &str) -> bool {
    text.contains("TopicAuthorizationException") || text.contains("Not authorized to access topics")
}

fn produced(ok: bool, text: &str, records: usize) -> bool {
    ok && text.contains(&format!("{records} records sent")) && !denied(text)
}

#[test]
fn kafkas_acl_command_and_producer_on_sluice() {
    let _one_at_a_time = sluice_tests::one_at_a_time();
    if !require("acls_sluice", &[Tool::Java]) {
        return;
    }
    let Some(lib) = kafka_tools::jars("acls_sluice") else {
        return;
    };
    let work_dir = tempfile::Builder::new()
        .prefix("sluice-e2e-acls-")
        .tempdir()
        .unwrap();
    let users = work_dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let store = S3TestServer::start().unwrap();
    let args: Vec<String> = [
        "--listen-sasl",
        "true",
        "--sasl-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-users-file",
        &users.display().to_string(),
        "--authorizer",
        "acl",
        "--super-users",
        "User:admin",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let agent = SluiceAgent::start_with_args(&store, "acls", &args).unwrap();
    let tools = Tools {
        lib,
        bootstrap: agent.bootstrap(),
        work_dir: work_dir.path(),
        mechanism: "SCRAM-SHA-512",
    };
    let failures = scenario(&tools);
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}\nagent log:\n{}",
        failures.len(),
        failures.join("\n\n"),
        agent.log_tail()
    );
}

/// The steps, on whatever broker `tools` points at (users admin, alice and bob, passwords
/// `<user>-secret`, admin a super user); the failed ones, with the tools' output.
pub(crate) fn scenario(tools: &Tools<'_>) -> Vec<String> {
    let acl = "org.apache.kafka.tools.AclCommand";
    let topics = "org.apache.kafka.tools.TopicCommand";
    let mut failures: Vec<String> = Vec::new();
    let f = &mut failures;

    for topic in ["payments", "pay-audit"] {
        let result = tools.admin("admin", topics, &["--create", "--topic", topic]);
        let passed = result.0 && result.1.contains(&format!("Created topic {topic}."));
        step(
            f,
            &format!("TopicCommand --create {topic} (admin)"),
            result,
            passed,
        );
    }
    // Alice may not manage ACLs: she has no ALTER on the cluster.
    let result = tools.admin(
        "alice",
        acl,
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "payments",
        ],
    );
    let passed = result.1.contains("ClusterAuthorizationException");
    step(f, "AclCommand --add as alice is refused", result, passed);
    let adds: [&[&str]; 3] = [
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "payments",
        ],
        &[
            "--add",
            "--allow-principal",
            "User:bob",
            "--operation",
            "Write",
            "--topic",
            "pay",
            "--resource-pattern-type",
            "prefixed",
        ],
        &[
            "--add",
            "--deny-principal",
            "User:bob",
            "--operation",
            "Write",
            "--topic",
            "payments",
        ],
    ];
    for add in adds {
        let result = tools.admin("admin", acl, add);
        let passed = result.0 && result.1.contains("Adding ACLs for resource");
        step(
            f,
            &format!("AclCommand {}", add[1..].join(" ")),
            result,
            passed,
        );
    }
    let result = tools.admin("admin", acl, &["--list", "--topic", "payments"]);
    let passed = result.0
        && result
            .1
            .contains("principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW")
        && result
            .1
            .contains("principal=User:bob, host=*, operation=WRITE, permissionType=DENY");
    step(f, "AclCommand --list --topic payments", result, passed);
    let result = tools.admin("admin", acl, &["--list", "--principal", "User:bob"]);
    let passed = result.0 && result.1.contains("PREFIXED") && result.1.contains("pay");
    step(f, "AclCommand --list --principal User:bob", result, passed);

    // Alice has WRITE on payments: her (idempotent) producer writes.
    let result = tools.produce("alice", "payments", 50);
    let passed = produced(result.0, &result.1, 50);
    step(f, "alice produces to payments", result, passed);
    // Bob's DENY on payments wins over his prefixed ALLOW.
    let result = tools.produce("bob", "payments", 5);
    let passed = denied(&result.1);
    step(
        f,
        "bob gets TOPIC_AUTHORIZATION_FAILED on payments",
        result,
        passed,
    );
    // The prefix lets him write pay-audit; alice may not.
    let result = tools.produce("bob", "pay-audit", 50);
    let passed = produced(result.0, &result.1, 50);
    step(
        f,
        "bob produces to pay-audit (prefixed ALLOW)",
        result,
        passed,
    );
    let result = tools.produce("alice", "pay-audit", 5);
    let passed = denied(&result.1);
    step(
        f,
        "alice gets TOPIC_AUTHORIZATION_FAILED on pay-audit",
        result,
        passed,
    );
    // Without the DENY, the prefix applies to payments too.
    let result = tools.admin(
        "admin",
        acl,
        &[
            "--remove",
            "--force",
            "--deny-principal",
            "User:bob",
            "--operation",
            "Write",
            "--topic",
            "payments",
        ],
    );
    let passed = result.0;
    step(f, "AclCommand --remove the DENY", result, passed);
    let result = tools.admin("admin", acl, &["--list", "--topic", "payments"]);
    let passed =
        result.0 && result.1.contains("permissionType=ALLOW") && !result.1.contains("DENY");
    step(f, "AclCommand --list shows the DENY gone", result, passed);
    let result = tools.produce("bob", "payments", 50);
    let passed = produced(result.0, &result.1, 50);
    step(
        f,
        "bob produces to payments after the DENY is gone",
        result,
        passed,
    );

    failures
}
