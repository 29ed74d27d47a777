//! SCRAM credentials over the wire: AlterUserScramCredentials and DescribeUserScramCredentials
//! through the metadata log with Kafka's answers (who may call them, a user named twice, an empty
//! name, an unknown mechanism, iterations out of range, a missing credential), a SCRAM login with
//! a credential the request created — no restart — and none after its deletion, and the
//! credentials after a restart on the same store. Kafka's tools drive the same APIs end to end in
//! `tests/tests/integration/scram_credentials_sluice.rs`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::num::NonZeroU32;

use aws_lc_rs::{digest, pbkdf2};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::acls::{USERS, acl_agent_in, login};
use crate::common::{self, RawClient};
use crate::sasl::scram_client;

const SHA256: i8 = 1;
const SHA512: i8 = 2;

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// An upsertion as Kafka's admin client builds it: the salted password `Hi(password, salt, i)`.
fn upsertion(
    user: &str,
    mechanism: i8,
    iterations: i32,
    password: &str,
) -> ScramCredentialUpsertion {
    let salt = format!("salt-of-{user}").into_bytes();
    let (algorithm, len) = if mechanism == SHA512 {
        (pbkdf2::PBKDF2_HMAC_SHA512, digest::SHA512.output_len())
    } else {
        (pbkdf2::PBKDF2_HMAC_SHA256, digest::SHA256.output_len())
    };
    let mut salted = vec![0; len];
    pbkdf2::derive(
        algorithm,
        NonZeroU32::new(u32::try_from(iterations).unwrap_or(4096).max(1)).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_owned()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(Bytes::from(salt))
        .with_salted_password(Bytes::from(salted))
}

fn deletion(user: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.to_owned()))
        .with_mechanism(mechanism)
}

/// The answer per user: `user → (code, message)`, sorted.
fn alter(
    client: &mut RawClient,
    deletions: Vec<ScramCredentialDeletion>,
    upsertions: Vec<ScramCredentialUpsertion>,
) -> Vec<(String, i16, Option<String>)> {
    let request = AlterUserScramCredentialsRequest::default()
        .with_deletions(deletions)
        .with_upsertions(upsertions);
    let response: AlterUserScramCredentialsResponse =
        client.call(ApiKey::AlterUserScramCredentials, 0, &request);
    let mut results: Vec<_> = response
        .results
        .iter()
        .map(|result| {
            (
                result.user.to_string(),
                result.error_code,
                result.error_message.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    results.sort();
    results
}

/// `(top-level code, [(user, code, [(mechanism, iterations)])])`.
type Described = (i16, Vec<(String, i16, Vec<(i8, i32)>)>);

fn describe(client: &mut RawClient, users: Option<&[&str]>) -> Described {
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|users| {
        users
            .iter()
            .map(|user| UserName::default().with_name(StrBytes::from_string((*user).to_owned())))
            .collect()
    }));
    let response: DescribeUserScramCredentialsResponse =
        client.call(ApiKey::DescribeUserScramCredentials, 0, &request);
    (
        response.error_code,
        response
            .results
            .iter()
            .map(|result| {
                (
                    result.user.to_string(),
                    result.error_code,
                    result
                        .credential_infos
                        .iter()
                        .map(|info| (info.mechanism, info.iterations))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn scram_agent(dir: tempfile::TempDir, users: &std::path::Path) -> common::TestAgent {
    acl_agent_in(dir, users, |config| {
        config.sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
            .map(str::to_owned)
            .to_vec();
        // The failed logins below come from the address every client here uses.
        config.sasl_failed_logins_max = 0;
    })
}

#[test]
fn credentials_are_managed_through_the_log_and_used_by_the_next_login() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let agent = scram_agent(tempfile::tempdir().unwrap(), &users);

    // Both APIs are advertised, v0 only, as Kafka does.
    let mut admin = login(&agent, "admin");
    let versions: ApiVersionsResponse = admin.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name("scram-test".into())
            .with_client_software_version("1".into()),
    );
    assert_eq!(versions.error_code, 0);
    for key in [
        ApiKey::DescribeUserScramCredentials,
        ApiKey::AlterUserScramCredentials,
    ] {
        let api = versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} not advertised"));
        assert_eq!((api.min_version, api.max_version), (0, 0));
    }

    // Alice is no super user and has no ALTER / DESCRIBE on the cluster.
    let mut alice = login(&agent, "alice");
    let refused = alter(
        &mut alice,
        vec![],
        vec![upsertion("carol", SHA256, 4096, "x")],
    );
    assert_eq!(
        refused,
        vec![(
            "carol".to_owned(),
            code(ResponseError::ClusterAuthorizationFailed),
            Some("ALTER on the cluster is not allowed".to_owned())
        )]
    );
    assert_eq!(
        describe(&mut alice, None).0,
        code(ResponseError::ClusterAuthorizationFailed)
    );

    // Carol has no credential anywhere yet: her SCRAM login fails.
    let mut carol = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut carol, false, "carol", "carol-secret").error_code,
        code(ResponseError::SaslAuthenticationFailed)
    );

    let results = alter(
        &mut admin,
        vec![deletion("nobody", SHA256), deletion("frank", SHA256)],
        vec![
            upsertion("carol", SHA256, 4096, "carol-secret"),
            upsertion("dave", SHA512, 8192, "dave-secret"),
            upsertion("", SHA256, 4096, "x"),
            upsertion("eve", 0, 4096, "x"),
            upsertion("gina", SHA256, 20_000, "x"),
            upsertion("hank", SHA256, 4095, "x"),
            upsertion("ivan", SHA256, 4096, "x"),
            upsertion("ivan", SHA512, 4096, "x"),
            upsertion("frank", SHA256, 4096, "x"),
        ],
    );
    let codes: Vec<(&str, i16)> = results
        .iter()
        .map(|(user, code, _)| (user.as_str(), *code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("", code(ResponseError::UnacceptableCredential)),
            ("carol", 0),
            ("dave", 0),
            ("eve", code(ResponseError::UnsupportedSaslMechanism)),
            // Kafka checks a deletion first: frank has none, which refuses the user.
            ("frank", code(ResponseError::ResourceNotFound)),
            ("gina", code(ResponseError::UnacceptableCredential)),
            ("hank", code(ResponseError::UnacceptableCredential)),
            ("ivan", code(ResponseError::DuplicateResource)),
            ("nobody", code(ResponseError::ResourceNotFound)),
        ],
        "{results:?}"
    );
    let message = |user: &str| {
        results
            .iter()
            .find(|(name, _, _)| name == user)
            .and_then(|(_, _, message)| message.clone())
    };
    assert_eq!(message("carol"), None);
    assert_eq!(message("gina").as_deref(), Some("Too many iterations"));
    assert_eq!(message("hank").as_deref(), Some("Too few iterations"));
    assert_eq!(
        message("ivan").as_deref(),
        Some("A user credential cannot be altered twice in the same request")
    );

    // A user deleted and upserted in one request is refused whole (dave has a credential, so
    // the deletion alone would pass) and keeps what was stored.
    assert_eq!(
        alter(
            &mut admin,
            vec![deletion("dave", SHA512)],
            vec![upsertion("dave", SHA256, 4096, "y")]
        ),
        vec![(
            "dave".to_owned(),
            code(ResponseError::DuplicateResource),
            Some("A user credential cannot be altered twice in the same request".to_owned())
        )]
    );

    // Describe: everyone, then by name (a name twice, an unknown one).
    assert_eq!(
        describe(&mut admin, None),
        (
            0,
            vec![
                ("carol".to_owned(), 0, vec![(SHA256, 4096)]),
                ("dave".to_owned(), 0, vec![(SHA512, 8192)]),
            ]
        )
    );
    let (top, results) = describe(&mut admin, Some(&["dave", "zed", "carol", "zed"]));
    assert_eq!(top, 0);
    assert_eq!(
        results,
        vec![
            ("dave".to_owned(), 0, vec![(SHA512, 8192)]),
            (
                "zed".to_owned(),
                code(ResponseError::DuplicateResource),
                vec![]
            ),
            ("carol".to_owned(), 0, vec![(SHA256, 4096)]),
        ]
    );
    let request = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
        UserName::default().with_name(StrBytes::from_static_str("zed")),
        UserName::default().with_name(StrBytes::from_static_str("zed")),
        UserName::default().with_name(StrBytes::from_static_str("yan")),
    ]));
    let response: DescribeUserScramCredentialsResponse =
        admin.call(ApiKey::DescribeUserScramCredentials, 0, &request);
    let messages: Vec<Option<String>> = response
        .results
        .iter()
        .map(|result| result.error_message.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        messages,
        vec![
            Some(
                "Cannot describe SCRAM credentials for the same user twice in a single request: \
                 zed"
                .to_owned()
            ),
            Some("Attempt to describe a user credential that does not exist: yan".to_owned()),
        ]
    );
    assert_eq!(
        describe(&mut admin, Some(&["zed"])).1,
        vec![(
            "zed".to_owned(),
            code(ResponseError::ResourceNotFound),
            vec![]
        )]
    );

    // The credential the request created logs carol in, on a new connection, without a restart.
    let mut carol = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut carol, false, "carol", "carol-secret").error_code,
        0
    );
    let mut wrong = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut wrong, false, "carol", "not-carols").error_code,
        code(ResponseError::SaslAuthenticationFailed)
    );
    // The log's credential wins over the file's: alice's SCRAM password becomes a new one.
    alter(
        &mut admin,
        vec![],
        vec![upsertion("alice", SHA256, 4096, "alice-new")],
    );
    let mut from_log = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut from_log, false, "alice", "alice-new").error_code,
        0
    );
    let mut from_file = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut from_file, false, "alice", "alice-secret").error_code,
        code(ResponseError::SaslAuthenticationFailed)
    );
    // SCRAM-SHA-512 has no stored credential for alice: the file's is used.
    let mut sha512 = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut sha512, true, "alice", "alice-secret").error_code,
        0
    );

    // After a restart on the same store, the credentials are there and still log carol in.
    let data_dir = agent.stop().unwrap();
    let agent = scram_agent(data_dir, &users);
    let mut admin = login(&agent, "admin");
    assert_eq!(describe(&mut admin, Some(&["carol"])).1[0].1, 0);
    let mut carol = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut carol, false, "carol", "carol-secret").error_code,
        0
    );

    // Deleted: the next login fails, and deleting again is RESOURCE_NOT_FOUND.
    assert_eq!(
        alter(&mut admin, vec![deletion("carol", SHA256)], vec![]),
        vec![("carol".to_owned(), 0, None)]
    );
    let mut carol = RawClient::connect(agent.addr());
    assert_eq!(
        scram_client(&mut carol, false, "carol", "carol-secret").error_code,
        code(ResponseError::SaslAuthenticationFailed)
    );
    assert_eq!(
        alter(&mut admin, vec![deletion("carol", SHA256)], vec![])[0].1,
        code(ResponseError::ResourceNotFound)
    );
}
