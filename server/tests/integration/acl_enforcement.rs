//! ACLs enforced (`authorizer = "acl"`), in raw frames over SASL PLAIN: Produce needs WRITE
//! (deny wins, prefixes apply), Fetch READ, Metadata hides what a principal may not describe,
//! idempotent InitProducerId needs IDEMPOTENT_WRITE or WRITE on some topic, topic admin needs
//! CREATE / DELETE, group APIs READ on the group; a change applies to the next request of an
//! open connection; `allow_everyone_if_no_acl_found`. Kafka's codes throughout.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::acls::{
    ALLOW, CLUSTER, DENY, GROUP, LITERAL, PREFIXED, READ, TOPIC, USERS, WRITE, acl_agent_in,
    create, creation, delete_filter, login,
};
use crate::common::{self, RawClient};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, CreateTopicsResponse,
    DeleteAclsRequest, DeleteAclsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceResponse,
};

const IDEMPOTENT_WRITE: i8 = 12;
const CREATE: i8 = 5;

fn acl_agent(
    configure: impl FnOnce(&mut sluice_server::Config),
) -> (common::TestAgent, tempfile::TempDir) {
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = acl_agent_in(tempfile::tempdir().unwrap(), &users, configure);
    (agent, users_dir)
}

/// The error code of a one-batch produce to partition 0 of `topic`.
fn produce(client: &mut RawClient, topic: &str) -> i16 {
    let request = common::produce_request(-1, &[(topic, 0, common::batch(2, common::now_ms()))]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    let results = common::produce_results(&response);
    assert_eq!(results.len(), 1, "{results:?}");
    results[0].2
}

fn fetch(client: &mut RawClient, topic: &str) -> (i16, usize) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(common::topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    (
        partition.error_code,
        partition
            .records
            .as_ref()
            .map_or(0, |records| records.len()),
    )
}

/// `(name, error code)` of every topic of a Metadata response.
fn metadata(client: &mut RawClient, topics: Option<&[&str]>) -> Vec<(String, i16)> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(common::topic_name(name)))
                })
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
    let mut topics: Vec<(String, i16)> = response
        .topics
        .iter()
        .map(|topic| {
            (
                topic.name.as_ref().unwrap().as_str().to_owned(),
                topic.error_code,
            )
        })
        .collect();
    topics.sort();
    topics
}

fn init_producer_id(client: &mut RawClient) -> i16 {
    let response: InitProducerIdResponse = client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    response.error_code
}

#[test]
fn produce_fetch_and_metadata_follow_the_acls() {
    let (agent, _users) = acl_agent(|_| {});
    let mut admin = login(&agent, "admin");
    for topic in ["payments", "pay-other", "secret"] {
        let created: CreateTopicsResponse = admin.call(
            ApiKey::CreateTopics,
            7,
            &common::create_topics_request(&[(topic, 1)]),
        );
        assert_eq!(created.topics[0].error_code, 0);
    }
    let codes = create(
        &mut admin,
        3,
        vec![
            creation(TOPIC, "payments", LITERAL, "User:alice", WRITE, ALLOW),
            creation(TOPIC, "payments", LITERAL, "User:alice", READ, ALLOW),
            creation(TOPIC, "pay", PREFIXED, "User:bob", WRITE, ALLOW),
            creation(TOPIC, "payments", LITERAL, "User:bob", WRITE, DENY),
        ],
    );
    assert_eq!(codes, [0, 0, 0, 0]);

    let mut alice = login(&agent, "alice");
    let mut bob = login(&agent, "bob");
    // Alice writes payments; bob's DENY on it wins over his prefix, which lets him write
    // pay-other; neither may write what no binding gives them.
    assert_eq!(produce(&mut alice, "payments"), 0);
    assert_eq!(produce(&mut bob, "payments"), 29);
    assert_eq!(produce(&mut bob, "pay-other"), 0);
    assert_eq!(produce(&mut alice, "pay-other"), 29);
    assert_eq!(produce(&mut alice, "secret"), 29);
    // The super user may do anything.
    assert_eq!(produce(&mut admin, "secret"), 0);

    // Fetch needs READ: alice reads payments, bob (WRITE only) may not.
    let (code, bytes) = fetch(&mut alice, "payments");
    assert_eq!(code, 0);
    assert!(bytes > 0);
    assert_eq!(fetch(&mut bob, "payments"), (29, 0));

    // Metadata: each sees what it may describe (WRITE and READ imply DESCRIBE; a DENY of WRITE
    // does not deny DESCRIBE); a named topic it may not describe answers 29.
    let names = |topics: Vec<(String, i16)>| -> Vec<String> {
        topics.into_iter().map(|(name, _)| name).collect()
    };
    assert_eq!(names(metadata(&mut alice, None)), ["payments"]);
    assert_eq!(names(metadata(&mut bob, None)), ["pay-other", "payments"]);
    assert_eq!(names(metadata(&mut admin, None)).len(), 3);
    assert_eq!(
        metadata(&mut alice, Some(&["secret", "payments"])),
        [("payments".to_owned(), 0), ("secret".to_owned(), 29)]
    );

    // Idempotent producers: WRITE on some topic is enough; nothing at all is not.
    assert_eq!(init_producer_id(&mut alice), 0);
    let deleted: DeleteAclsResponse = admin.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![
            delete_filter().with_principal_filter(Some("User:bob".into())),
        ]),
    );
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 2);
    // The change applies to bob's open connection at its next request.
    assert_eq!(produce(&mut bob, "pay-other"), 29);
    assert_eq!(init_producer_id(&mut bob), 31);
    assert_eq!(
        create(
            &mut admin,
            3,
            vec![creation(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                "User:bob",
                IDEMPOTENT_WRITE,
                ALLOW
            )]
        ),
        [0]
    );
    assert_eq!(init_producer_id(&mut bob), 0);

    // Authorized operations, when asked, are the connection's: alice may READ, WRITE and (by
    // implication) DESCRIBE payments; bob may only IDEMPOTENT_WRITE on the cluster.
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(common::topic_name("payments"))),
        ]))
        .with_include_topic_authorized_operations(true);
    let response: MetadataResponse = alice.call(ApiKey::Metadata, 12, &request);
    assert_eq!(
        response.topics[0].topic_authorized_operations,
        (1 << READ) | (1 << WRITE) | (1 << 8)
    );
    let cluster = |client: &mut RawClient| {
        let response: DescribeClusterResponse = client.call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        );
        response.cluster_authorized_operations
    };
    assert_eq!(cluster(&mut bob), 1 << IDEMPOTENT_WRITE);
    // A super user: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
    // IDEMPOTENT_WRITE.
    assert_eq!(
        cluster(&mut admin),
        [5, 7, 8, 9, 10, 11, 12]
            .iter()
            .map(|bit| 1 << bit)
            .sum::<i32>()
    );
}

#[test]
fn topic_admin_and_groups_need_their_operations() {
    let (agent, _users) = acl_agent(|_| {});
    let mut alice = login(&agent, "alice");
    let refused: CreateTopicsResponse = alice.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("mine", 1)]),
    );
    assert_eq!(refused.topics[0].error_code, 29);
    let mut admin = login(&agent, "admin");
    let codes = create(
        &mut admin,
        3,
        vec![creation(
            TOPIC,
            "mine",
            PREFIXED,
            "User:alice",
            CREATE,
            ALLOW,
        )],
    );
    assert_eq!(codes, [0]);
    let created: CreateTopicsResponse = alice.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("mine-1", 1), ("theirs", 1)]),
    );
    let mut results: Vec<(String, i16)> = created
        .topics
        .iter()
        .map(|topic| (topic.name.as_str().to_owned(), topic.error_code))
        .collect();
    results.sort();
    assert_eq!(
        results,
        [("mine-1".to_owned(), 0), ("theirs".to_owned(), 29)]
    );
    // Metadata auto-creates only with CREATE: alice may describe "auto-" topics but create only
    // "mine" ones.
    let codes = create(
        &mut admin,
        3,
        vec![creation(
            TOPIC,
            "auto-",
            PREFIXED,
            "User:alice",
            READ,
            ALLOW,
        )],
    );
    assert_eq!(codes, [0]);
    let auto = |client: &mut RawClient, name: &str| -> i16 {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(common::topic_name(name))),
            ]))
            .with_allow_auto_topic_creation(true);
        let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
        response.topics[0].error_code
    };
    assert_eq!(auto(&mut alice, "auto-1"), 3);
    assert_eq!(auto(&mut alice, "elsewhere"), 29);
    assert_eq!(auto(&mut admin, "auto-2"), 0);
    // CREATE does not give DELETE.
    let deleted: DeleteTopicsResponse = alice.call(
        ApiKey::DeleteTopics,
        5,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![common::topic_name("mine-1")])
            .with_timeout_ms(5_000),
    );
    assert_eq!(deleted.responses[0].error_code, 29);

    // A group needs READ on it: GROUP_AUTHORIZATION_FAILED before, the protocol after.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId("billing".to_owned().into()))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type("consumer".into())
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name("range".into())
                .with_metadata(bytes::Bytes::from_static(
                    b"\x00\x00\x00\x00\x00\x00\x00\x00",
                )),
        ]);
    let response: JoinGroupResponse = alice.call(ApiKey::JoinGroup, 9, &join);
    assert_eq!(response.error_code, 30);
    let codes = create(
        &mut admin,
        3,
        vec![creation(GROUP, "bill", PREFIXED, "User:alice", READ, ALLOW)],
    );
    assert_eq!(codes, [0]);
    let response: JoinGroupResponse = alice.call(ApiKey::JoinGroup, 9, &join);
    // MEMBER_ID_REQUIRED: the group protocol's first answer to a member without an id.
    assert_eq!(response.error_code, 79);
    // OffsetFetch v9 (many groups): each group is checked (READ implies DESCRIBE).
    let fetch = OffsetFetchRequest::default().with_groups(
        ["billing", "payroll"]
            .iter()
            .map(|group| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId((*group).to_owned().into()))
                    .with_topics(None)
            })
            .collect(),
    );
    let response: OffsetFetchResponse = alice.call(ApiKey::OffsetFetch, 9, &fetch);
    let mut codes: Vec<(String, i16)> = response
        .groups
        .iter()
        .map(|group| (group.group_id.as_str().to_owned(), group.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("billing".to_owned(), 0), ("payroll".to_owned(), 30)]
    );

    // OffsetCommit needs READ on each topic as well: CREATE on mine-1 is not enough.
    let commit = |client: &mut RawClient| -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId("billing".to_owned().into()))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(common::topic_name("mine-1"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(0),
                    ]),
            ]);
        let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 9, &request);
        response.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&mut alice), 29);
    let codes = create(
        &mut admin,
        3,
        vec![creation(
            TOPIC,
            "mine-1",
            LITERAL,
            "User:alice",
            READ,
            ALLOW,
        )],
    );
    assert_eq!(codes, [0]);
    assert_eq!(commit(&mut alice), 0);
    // KIP-848: subscribing to a topic the member may not describe is TOPIC_AUTHORIZATION_FAILED.
    let heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId("billing-848".to_owned().into()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![common::topic_name("theirs")]));
    let response: ConsumerGroupHeartbeatResponse =
        alice.call(ApiKey::ConsumerGroupHeartbeat, 0, &heartbeat);
    assert_eq!(response.error_code, 29);
}

#[test]
fn allow_everyone_if_no_acl_found_opens_unnamed_resources_only() {
    let (agent, _users) = acl_agent(|config| config.allow_everyone_if_no_acl_found = true);
    agent_topics(&agent, &["open", "closed"]);
    let mut admin = login(&agent, "admin");
    let codes = create(
        &mut admin,
        3,
        vec![creation(TOPIC, "closed", LITERAL, "User:bob", WRITE, ALLOW)],
    );
    assert_eq!(codes, [0]);
    let mut alice = login(&agent, "alice");
    assert_eq!(produce(&mut alice, "open"), 0);
    assert_eq!(produce(&mut alice, "closed"), 29);
    let mut bob = login(&agent, "bob");
    assert_eq!(produce(&mut bob, "closed"), 0);
}

fn agent_topics(agent: &common::TestAgent, topics: &[&str]) {
    let mut admin = login(agent, "admin");
    for topic in topics {
        let created: CreateTopicsResponse = admin.call(
            ApiKey::CreateTopics,
            7,
            &common::create_topics_request(&[(topic, 1)]),
        );
        assert_eq!(created.topics[0].error_code, 0);
    }
}

/// mTLS without SASL: the principal is `User:` and the certificate's subject, as in Kafka; a
/// plaintext client without SASL is `User:ANONYMOUS`.
#[test]
fn an_mtls_client_is_its_certificate_subject() {
    use crate::tls::{Pki, call, connect};
    let pki = Pki::new();
    pki.issue("server", "sluice", &["localhost", "127.0.0.1"]);
    pki.issue("admin", "admin", &["admin"]);
    pki.issue("alice", "alice", &["alice"]);
    let agent = common::start_agent(|config| {
        config.tls_listen = Some("127.0.0.1:0".to_owned());
        config.tls_advertised_listen = Some("localhost:0".to_owned());
        config.tls_cert_file = Some(pki.path("server.pem"));
        config.tls_key_file = Some(pki.path("server-key.pem"));
        config.tls_client_ca_file = Some(pki.path("ca.pem"));
        config.authorizer = Some("acl".to_owned());
        config.super_users = vec!["User:CN=admin".to_owned()];
    });
    let tls_addr = agent.agent.as_ref().unwrap().tls_addr().unwrap();
    let as_client = |stem: &str| {
        let (cert, key) = (
            pki.path(&format!("{stem}.pem")),
            pki.path(&format!("{stem}-key.pem")),
        );
        connect(&pki, tls_addr, Some((&cert, &key))).unwrap()
    };
    let mut admin = as_client("admin");
    let created: CreateTopicsResponse = call(
        &mut admin,
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("certified", 1)]),
    )
    .unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    let response: kafka_protocol::messages::CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![creation(
            TOPIC,
            "certified",
            LITERAL,
            "User:CN=alice",
            WRITE,
            ALLOW,
        )]),
    )
    .unwrap();
    assert_eq!(response.results[0].error_code, 0);
    let mut alice = as_client("alice");
    let request =
        common::produce_request(-1, &[("certified", 0, common::batch(1, common::now_ms()))]);
    let response: ProduceResponse = call(&mut alice, ApiKey::Produce, 9, &request).unwrap();
    assert_eq!(common::produce_results(&response)[0].2, 0);
    // The plaintext listener has no SASL: ANONYMOUS, who has no binding.
    let mut anonymous = RawClient::connect(agent.addr());
    assert_eq!(produce(&mut anonymous, "certified"), 29);
}

/// librdkafka (confluent-kafka) over SASL_PLAINTEXT with SCRAM-SHA-512: a principal with WRITE
/// delivers, one without sees TOPIC_AUTHORIZATION_FAILED on every record.
#[test]
fn librdkafka_producers_are_allowed_and_denied() {
    let Some(python) = common::python_with(
        "librdkafka_producers_are_allowed_and_denied",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    let (agent, _users) = acl_agent(|config| {
        config.sasl_mechanisms = vec!["PLAIN".to_owned(), "SCRAM-SHA-512".to_owned()];
    });
    agent_topics(&agent, &["ledger"]);
    let mut admin = login(&agent, "admin");
    let codes = create(
        &mut admin,
        3,
        vec![creation(
            TOPIC,
            "ledger",
            LITERAL,
            "User:alice",
            WRITE,
            ALLOW,
        )],
    );
    assert_eq!(codes, [0]);
    let script = format!("{}/tests/python/acl_check.py", env!("CARGO_MANIFEST_DIR"));
    let bootstrap = format!("127.0.0.1:{}", agent.addr().port());
    let run = |user: &str| {
        let output = std::process::Command::new(&python)
            .arg(&script)
            .args([&bootstrap, user, &format!("{user}-secret"), "ledger", "20"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success(),
            "{user}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    assert_eq!(run("alice"), "ok");
    assert_eq!(run("bob"), "denied");
}
