//! ACLs (`authorizer = "acl"`), spoken in raw frames over SASL PLAIN: CreateAcls, DescribeAcls and
//! DeleteAcls with their filters, who may call them, the bindings surviving a restart, and the
//! answer without an authorizer. Enforcement on the other APIs is in `acl_enforcement.rs`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use bytes::Bytes;
use common::RawClient;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};

pub const USERS: &str =
    "[users]\nadmin = \"admin-secret\"\nalice = \"alice-secret\"\nbob = \"bob-secret\"\n";

// Kafka's codes.
pub const TOPIC: i8 = 2;
pub const GROUP: i8 = 3;
pub const CLUSTER: i8 = 4;
pub const LITERAL: i8 = 3;
pub const PREFIXED: i8 = 4;
pub const ANY: i8 = 1;
pub const MATCH: i8 = 2;
pub const ALL: i8 = 2;
pub const READ: i8 = 3;
pub const WRITE: i8 = 4;
pub const DENY: i8 = 2;
pub const ALLOW: i8 = 3;

/// An agent whose plaintext listener requires SASL ([`USERS`]), with the ACL authorizer on and
/// `User:admin` a super user; `configure` adjusts the rest.
pub fn acl_agent_in(
    dir: tempfile::TempDir,
    users: &std::path::Path,
    configure: impl FnOnce(&mut sluice_server::Config),
) -> common::TestAgent {
    let users = users.to_owned();
    common::start_agent_in(dir, |config| {
        config.listen_sasl = true;
        config.sasl_users_file = Some(users);
        config.sasl_mechanisms = vec!["PLAIN".to_owned()];
        config.authorizer = Some("acl".to_owned());
        config.super_users = vec!["User:admin".to_owned()];
        configure(config);
    })
}

/// A client logged in with PLAIN as `user` (password `<user>-secret`).
pub fn login(agent: &common::TestAgent, user: &str) -> RawClient {
    let mut client = RawClient::connect(agent.addr());
    let handshake: SaslHandshakeResponse = client.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("PLAIN".into()),
    );
    assert_eq!(handshake.error_code, 0);
    let token = format!("\0{user}\0{user}-secret");
    let response: SaslAuthenticateResponse = client.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
    );
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    client
}

pub fn creation(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(name.to_owned().into())
        .with_resource_pattern_type(pattern)
        .with_principal(principal.to_owned().into())
        .with_host("*".into())
        .with_operation(operation)
        .with_permission_type(permission)
}

/// Creates bindings as `client`; the error code of each.
pub fn create(client: &mut RawClient, version: i16, creations: Vec<AclCreation>) -> Vec<i16> {
    let response: CreateAclsResponse = client.call(
        ApiKey::CreateAcls,
        version,
        &CreateAclsRequest::default().with_creations(creations),
    );
    response
        .results
        .iter()
        .map(|result| result.error_code)
        .collect()
}

fn describe_request(resource_type: i8, name: Option<&str>, pattern: i8) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(name.map(|name| name.to_owned().into()))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// A DeleteAcls filter matching everything (the crate's defaults are empty strings, not null).
pub fn delete_filter() -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// `(resource type, name, pattern, principal, operation, permission)` of every binding.
type Row = (i8, String, i8, String, i8, i8);

fn describe(
    client: &mut RawClient,
    version: i16,
    request: &DescribeAclsRequest,
) -> (i16, Vec<Row>) {
    let response: DescribeAclsResponse = client.call(ApiKey::DescribeAcls, version, request);
    let rows = response
        .resources
        .iter()
        .flat_map(|resource| {
            resource.acls.iter().map(|acl| {
                (
                    resource.resource_type,
                    resource.resource_name.to_string(),
                    resource.pattern_type,
                    acl.principal.to_string(),
                    acl.operation,
                    acl.permission_type,
                )
            })
        })
        .collect();
    (response.error_code, rows)
}

fn row(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> Row {
    (
        resource_type,
        name.to_owned(),
        pattern,
        principal.to_owned(),
        operation,
        permission,
    )
}

#[test]
fn without_an_authorizer_the_acl_apis_answer_security_disabled() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    let codes = create(
        &mut client,
        3,
        vec![creation(TOPIC, "t", LITERAL, "User:alice", READ, ALLOW)],
    );
    assert_eq!(codes, [54]);
    let (code, rows) = describe(&mut client, 3, &describe_request(ANY, None, ANY));
    assert_eq!((code, rows.len()), (54, 0));
    let response: DeleteAclsResponse = client.call(
        ApiKey::DeleteAcls,
        2,
        &DeleteAclsRequest::default().with_filters(vec![delete_filter()]),
    );
    assert_eq!(response.filter_results[0].error_code, 54);
}

#[test]
fn admin_manages_acls_others_may_not_and_they_survive_a_restart() {
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = acl_agent_in(tempfile::tempdir().unwrap(), &users, |_| {});

    // Alice has no ALTER on the cluster: CLUSTER_AUTHORIZATION_FAILED, and nothing is stored.
    let mut alice = login(&agent, "alice");
    let refused = create(
        &mut alice,
        3,
        vec![creation(TOPIC, "t", LITERAL, "User:alice", ALL, ALLOW)],
    );
    assert_eq!(refused, [31]);
    assert_eq!(
        describe(&mut alice, 3, &describe_request(ANY, None, ANY)).0,
        31
    );

    let mut admin = login(&agent, "admin");
    let codes = create(
        &mut admin,
        3,
        vec![
            creation(TOPIC, "payments", LITERAL, "User:alice", WRITE, ALLOW),
            creation(TOPIC, "pay", PREFIXED, "User:bob", READ, ALLOW),
            creation(TOPIC, "payments", LITERAL, "User:bob", WRITE, DENY),
            creation(GROUP, "*", LITERAL, "User:*", READ, ALLOW),
            // Refused: ANY is a filter, the cluster has one name, a principal needs a type.
            creation(TOPIC, "x", ANY, "User:alice", READ, ALLOW),
            creation(CLUSTER, "other", LITERAL, "User:alice", ALL, ALLOW),
            creation(TOPIC, "x", LITERAL, "alice", READ, ALLOW),
        ],
    );
    assert_eq!(codes, [0, 0, 0, 0, 42, 42, 42]);
    // Creating one again succeeds and changes nothing (v1: not flexible).
    let again = create(
        &mut admin,
        1,
        vec![creation(
            TOPIC,
            "payments",
            LITERAL,
            "User:alice",
            WRITE,
            ALLOW,
        )],
    );
    assert_eq!(again, [0]);

    let (code, all) = describe(&mut admin, 3, &describe_request(ANY, None, ANY));
    assert_eq!(code, 0);
    assert_eq!(
        all,
        [
            row(TOPIC, "payments", LITERAL, "User:alice", WRITE, ALLOW),
            row(TOPIC, "payments", LITERAL, "User:bob", WRITE, DENY),
            row(TOPIC, "pay", PREFIXED, "User:bob", READ, ALLOW),
            row(GROUP, "*", LITERAL, "User:*", READ, ALLOW),
        ]
    );
    // MATCH: the bindings that apply to the topic "payments" (literal and prefixed).
    let (_, applying) = describe(
        &mut admin,
        1,
        &describe_request(TOPIC, Some("payments"), MATCH),
    );
    assert_eq!(applying.len(), 3);
    // A literal filter on "pay" finds nothing; a prefixed one finds the prefix.
    assert!(
        describe(
            &mut admin,
            2,
            &describe_request(TOPIC, Some("pay"), LITERAL)
        )
        .1
        .is_empty()
    );
    assert_eq!(
        describe(
            &mut admin,
            2,
            &describe_request(TOPIC, Some("pay"), PREFIXED)
        )
        .1
        .len(),
        1
    );
    // UNKNOWN (0) in a filter is INVALID_REQUEST.
    assert_eq!(
        describe(&mut admin, 3, &describe_request(0, None, ANY)).0,
        42
    );

    // Delete bob's DENY and every group binding, in one request of two filters.
    let deleted: DeleteAclsResponse = admin.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![
            delete_filter()
                .with_principal_filter(Some("User:bob".into()))
                .with_permission_type(DENY),
            delete_filter().with_resource_type_filter(GROUP),
        ]),
    );
    let listed: Vec<Vec<(String, i8)>> = deleted
        .filter_results
        .iter()
        .map(|result| {
            assert_eq!(result.error_code, 0);
            result
                .matching_acls
                .iter()
                .map(|acl| (acl.resource_name.to_string(), acl.permission_type))
                .collect()
        })
        .collect();
    assert_eq!(
        listed,
        [
            vec![("payments".to_owned(), DENY)],
            vec![("*".to_owned(), ALLOW)]
        ]
    );
    // Alice may not delete.
    let refused: DeleteAclsResponse = alice.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![delete_filter()]),
    );
    assert_eq!(refused.filter_results[0].error_code, 31);

    // The bindings are in the metadata log: a restart on the same store has them, and the first
    // request after it is checked against them.
    let created: kafka_protocol::messages::CreateTopicsResponse = admin.call(
        ApiKey::CreateTopics,
        7,
        &common::create_topics_request(&[("payments", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    drop((admin, alice));
    let data_dir = agent.stop().unwrap();
    let agent = acl_agent_in(data_dir, &users, |_| {});
    let produce = |client: &mut RawClient| {
        let request =
            common::produce_request(-1, &[("payments", 0, common::batch(1, common::now_ms()))]);
        let response: kafka_protocol::messages::ProduceResponse =
            client.call(ApiKey::Produce, 9, &request);
        common::produce_results(&response)[0].2
    };
    assert_eq!(produce(&mut login(&agent, "bob")), 29);
    assert_eq!(produce(&mut login(&agent, "alice")), 0);
    let mut admin = login(&agent, "admin");
    let (_, after) = describe(&mut admin, 3, &describe_request(ANY, None, ANY));
    assert_eq!(
        after,
        [
            row(TOPIC, "payments", LITERAL, "User:alice", WRITE, ALLOW),
            row(TOPIC, "pay", PREFIXED, "User:bob", READ, ALLOW),
        ]
    );
    // A user with ALTER on the cluster may manage ACLs too.
    let codes = create(
        &mut admin,
        3,
        vec![creation(
            CLUSTER,
            "kafka-cluster",
            LITERAL,
            "User:bob",
            ALL,
            ALLOW,
        )],
    );
    assert_eq!(codes, [0]);
    let mut bob = login(&agent, "bob");
    assert_eq!(
        describe(&mut bob, 3, &describe_request(ANY, None, ANY))
            .1
            .len(),
        3
    );
}

#[test]
fn one_request_changes_at_most_a_thousand_bindings() {
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = acl_agent_in(tempfile::tempdir().unwrap(), &users, |_| {});
    let mut admin = login(&agent, "admin");
    let creations = (0..1_001)
        .map(|n| creation(TOPIC, &format!("t{n}"), LITERAL, "User:alice", READ, ALLOW))
        .collect();
    let codes = create(&mut admin, 3, creations);
    assert_eq!(codes.len(), 1_001);
    assert!(codes[..1_000].iter().all(|code| *code == 0));
    assert_eq!(codes[1_000], 42);
    let (_, rows) = describe(&mut admin, 3, &describe_request(TOPIC, None, ANY));
    assert_eq!(rows.len(), 1_000);
}
