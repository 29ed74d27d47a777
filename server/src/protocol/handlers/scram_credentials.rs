//! AlterUserScramCredentials (API 51) and DescribeUserScramCredentials (API 50): the SCRAM
//! credentials of the metadata state machine (`sluice_engine::metadata::scram`), changed through
//! the metadata log and used by the SCRAM authenticator (`net::sasl::credentials`).
//!
//! As in Kafka (`ControllerApis`, `ScramControlManager`, `ScramImage.describe`): altering needs
//! ALTER on the cluster and describing DESCRIBE (when an authorizer is on). One request may name a
//! user once: a user named twice, in deletions or upsertions or both, gets DUPLICATE_RESOURCE and
//! none of its changes apply; an empty name is UNACCEPTABLE_CREDENTIAL, a mechanism other than
//! SCRAM-SHA-256 (1) and SCRAM-SHA-512 (2) UNSUPPORTED_SASL_MECHANISM, iterations outside
//! `4096..=16384` UNACCEPTABLE_CREDENTIAL, and deleting a credential that is not stored
//! RESOURCE_NOT_FOUND (checked against the state when the request is read, as Kafka validates;
//! the state machine checks again when the command applies). Results come per user, deletions first, then upsertions, then refusals,
//! as Kafka orders them.
//!
//! The client sends the salted password (`Hi(password, salt, i)`); the handler derives RFC 5802's
//! StoredKey and ServerKey from it and writes only those, with the salt and the count, so neither
//! the password nor the salted password reaches the log. After a change the agent's SCRAM board is
//! refreshed before the response is sent, so the next login on any core uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::scram::{validate_iterations, validate_user};
use sluice_engine::metadata::{
    AclOperation, COMMANDS_PER_ENTRY_MAX, Command, ScramCredential, ScramDeletion, ScramUpsertion,
};

use crate::auth::RequestAuth;
use crate::metadata_core::{CommandFailure, CoreHandle};
use crate::net::sasl::ScramBoard;
use crate::net::sasl::scram::{self, ScramMechanism as WireMechanism};

type Failure = (i16, String);

/// Users one AlterUserScramCredentials request may change (one log entry's worth of commands).
pub const SCRAM_ALTERATIONS_PER_REQUEST_MAX: usize = COMMANDS_PER_ENTRY_MAX;

const DUPLICATE_ALTER: &str = "A user credential cannot be altered twice in the same request";
const DUPLICATE_DESCRIBE: &str =
    "Cannot describe SCRAM credentials for the same user twice in a single request";

fn from_metadata(error: &sluice_engine::metadata::MetadataError) -> Failure {
    (error.kafka_error_code(), error.to_string())
}

fn from_failure(failure: &CommandFailure) -> Failure {
    match failure {
        CommandFailure::Rejected(error) => from_metadata(error),
        CommandFailure::LogFailed { code, reason } => (*code, reason.clone()),
    }
}

/// Kafka's mechanism type codes; anything else (0 is UNKNOWN) is UNSUPPORTED_SASL_MECHANISM.
fn mechanism_from(code: i8) -> Result<sluice_engine::metadata::ScramMechanism, Failure> {
    sluice_engine::metadata::ScramMechanism::from_code(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism.code(),
            "Unknown SCRAM mechanism".to_owned(),
        )
    })
}

fn wire_mechanism(mechanism: sluice_engine::metadata::ScramMechanism) -> WireMechanism {
    match mechanism {
        sluice_engine::metadata::ScramMechanism::Sha256 => WireMechanism::Sha256,
        sluice_engine::metadata::ScramMechanism::Sha512 => WireMechanism::Sha512,
    }
}

/// The command of one deletion, checked as Kafka's controller checks it: `stored` says whether
/// the credential exists now (the state machine checks again when the command applies).
fn deletion_from(
    name: &str,
    mechanism: i8,
    stored: impl FnOnce(sluice_engine::metadata::ScramMechanism) -> bool,
) -> Result<Command, Failure> {
    validate_user(name).map_err(|error| from_metadata(&error))?;
    let mechanism = mechanism_from(mechanism)?;
    if !stored(mechanism) {
        return Err((
            ResponseError::ResourceNotFound.code(),
            "Attempt to delete a user credential that does not exist".to_owned(),
        ));
    }
    Ok(Command::DeleteScramCredential {
        deletion: Box::new(ScramDeletion {
            user: name.to_owned(),
            mechanism,
        }),
    })
}

/// The command of one upsertion: the keys derived from the salted password.
fn upsertion_from(
    name: &str,
    mechanism: i8,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<Command, Failure> {
    validate_user(name).map_err(|error| from_metadata(&error))?;
    let mechanism = mechanism_from(mechanism)?;
    let iterations =
        validate_iterations(i64::from(iterations)).map_err(|error| from_metadata(&error))?;
    let unacceptable = |reason: &str| {
        (
            ResponseError::UnacceptableCredential.code(),
            reason.to_owned(),
        )
    };
    if salted_password.is_empty() {
        return Err(unacceptable("The salted password must not be empty"));
    }
    let iterations_nonzero =
        NonZeroU32::new(iterations).ok_or_else(|| unacceptable("Too few iterations"))?;
    let derived = scram::ScramCredential::from_salted_password(
        wire_mechanism(mechanism),
        salted_password,
        salt.to_vec(),
        iterations_nonzero,
    );
    let credential = ScramCredential {
        salt: derived.salt,
        iterations,
        stored_key: derived.stored_key,
        server_key: derived.server_key,
    };
    sluice_engine::metadata::scram::validate_credential(mechanism, &credential)
        .map_err(|error| from_metadata(&error))?;
    Ok(Command::UpsertScramCredential {
        upsertion: Box::new(ScramUpsertion {
            user: name.to_owned(),
            mechanism,
            credential,
        }),
    })
}

fn alter_result(user: &str, outcome: Result<(), Failure>) -> AlterUserScramCredentialsResult {
    let result = AlterUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_owned()));
    match outcome {
        // Null on success, as Kafka sends it.
        Ok(()) => result.with_error_message(None),
        Err((code, message)) => result
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}

pub async fn alter_user_scram_credentials(
    core: &CoreHandle,
    board: Option<&ScramBoard>,
    auth: RequestAuth<'_>,
    request: &AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let names = request
        .deletions
        .iter()
        .map(|deletion| deletion.name.as_str())
        .chain(request.upsertions.iter().map(|upsert| upsert.name.as_str()));
    if auth.enabled() && !auth.allowed_on_cluster(AclOperation::Alter).await {
        let users: BTreeSet<&str> = names.collect();
        let results = users
            .into_iter()
            .map(|user| {
                alter_result(
                    user,
                    Err((
                        ResponseError::ClusterAuthorizationFailed.code(),
                        "ALTER on the cluster is not allowed".to_owned(),
                    )),
                )
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // Which credentials the deletions name exist now (Kafka checks that when it validates, so a
    // missing one is RESOURCE_NOT_FOUND even when the user is named again later in the request).
    let named: Vec<(String, i8)> = request
        .deletions
        .iter()
        .take(SCRAM_ALTERATIONS_PER_REQUEST_MAX)
        .map(|deletion| (deletion.name.to_string(), deletion.mechanism))
        .collect();
    let existing: BTreeSet<(String, i8)> = if named.is_empty() {
        BTreeSet::new()
    } else {
        core.query(move |state| {
            let credentials = state.scram_credentials();
            named
                .into_iter()
                .filter(|(user, code)| {
                    sluice_engine::metadata::ScramMechanism::from_code(*code)
                        .is_some_and(|mechanism| credentials.get(user, mechanism).is_some())
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    };
    // Kafka's order: deletions, then upsertions; a user seen twice is refused whole.
    let mut refused: BTreeMap<String, Failure> = BTreeMap::new();
    let mut deletions: BTreeMap<String, Command> = BTreeMap::new();
    let mut upsertions: BTreeMap<String, Command> = BTreeMap::new();
    let mut seen = 0usize;
    for deletion in &request.deletions {
        let name = deletion.name.as_str();
        seen += 1;
        if refused.contains_key(name) {
            continue;
        }
        if deletions.remove(name).is_some() {
            refused.insert(name.to_owned(), duplicate());
        } else if seen > SCRAM_ALTERATIONS_PER_REQUEST_MAX {
            refused.insert(name.to_owned(), too_many());
        } else {
            let stored = |mechanism: sluice_engine::metadata::ScramMechanism| {
                existing.contains(&(name.to_owned(), mechanism.code()))
            };
            match deletion_from(name, deletion.mechanism, stored) {
                Ok(command) => drop(deletions.insert(name.to_owned(), command)),
                Err(failure) => drop(refused.insert(name.to_owned(), failure)),
            }
        }
    }
    for upsertion in &request.upsertions {
        let name = upsertion.name.as_str();
        seen += 1;
        if refused.contains_key(name) {
            continue;
        }
        if deletions.remove(name).is_some() || upsertions.remove(name).is_some() {
            refused.insert(name.to_owned(), duplicate());
        } else if seen > SCRAM_ALTERATIONS_PER_REQUEST_MAX {
            refused.insert(name.to_owned(), too_many());
        } else {
            match upsertion_from(
                name,
                upsertion.mechanism,
                upsertion.iterations,
                &upsertion.salt,
                &upsertion.salted_password,
            ) {
                Ok(command) => drop(upsertions.insert(name.to_owned(), command)),
                Err(failure) => drop(refused.insert(name.to_owned(), failure)),
            }
        }
    }
    let planned: Vec<(String, Command)> = deletions.into_iter().chain(upsertions).collect();
    let mut results = Vec::with_capacity(planned.len() + refused.len());
    if !planned.is_empty() {
        let commands = planned.iter().map(|(_, command)| command.clone()).collect();
        let answers = core.commands(commands).await;
        for (position, (user, _)) in planned.iter().enumerate() {
            let outcome = match &answers {
                Ok(answers) => match answers.get(position) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(failure)) => Err(from_failure(failure)),
                    None => Err((
                        ResponseError::UnknownServerError.code(),
                        "no answer from the metadata core".to_owned(),
                    )),
                },
                Err(error) => Err((ResponseError::UnknownServerError.code(), error.to_string())),
            };
            results.push(alter_result(user, outcome));
        }
        if let Some(board) = board {
            board.refresh(core).await;
        }
    }
    results.extend(
        refused
            .into_iter()
            .map(|(user, failure)| alter_result(&user, Err(failure))),
    );
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn duplicate() -> Failure {
    (
        ResponseError::DuplicateResource.code(),
        DUPLICATE_ALTER.to_owned(),
    )
}

fn too_many() -> Failure {
    (
        ResponseError::InvalidRequest.code(),
        format!("more than {SCRAM_ALTERATIONS_PER_REQUEST_MAX} alterations in one request"),
    )
}

fn describe_result(
    user: &str,
    outcome: Result<Vec<(sluice_engine::metadata::ScramMechanism, u32)>, Failure>,
) -> DescribeUserScramCredentialsResult {
    let result = DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_owned()));
    match outcome {
        Ok(infos) => result.with_error_message(None).with_credential_infos(
            infos
                .into_iter()
                .map(|(mechanism, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism.code())
                        .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
                })
                .collect(),
        ),
        Err((code, message)) => result
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}

pub async fn describe_user_scram_credentials(
    core: &CoreHandle,
    auth: RequestAuth<'_>,
    request: &DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if auth.enabled() && !auth.allowed_on_cluster(AclOperation::Describe).await {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "DESCRIBE on the cluster is not allowed",
            )));
    }
    // Null or empty: every user with a credential, as Kafka answers.
    let wanted: Option<Vec<String>> = request
        .users
        .as_ref()
        .filter(|users| !users.is_empty())
        .map(|users| users.iter().map(|user| user.name.to_string()).collect());
    let read = core
        .query(move |state| {
            let credentials = state.scram_credentials();
            match wanted {
                None => credentials
                    .users()
                    .into_iter()
                    .map(|user| (user.to_owned(), Ok(credentials.describe(user))))
                    .collect::<Vec<_>>(),
                Some(users) => {
                    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                    for user in &users {
                        *counts.entry(user.as_str()).or_default() += 1;
                    }
                    let mut answered: BTreeSet<&str> = BTreeSet::new();
                    let mut results = Vec::with_capacity(counts.len());
                    for user in &users {
                        if !answered.insert(user.as_str()) {
                            continue;
                        }
                        let outcome = if counts.get(user.as_str()).copied().unwrap_or(0) > 1 {
                            Err((
                                ResponseError::DuplicateResource.code(),
                                format!("{DUPLICATE_DESCRIBE}: {user}"),
                            ))
                        } else {
                            let infos = credentials.describe(user);
                            if infos.is_empty() {
                                Err((
                                    ResponseError::ResourceNotFound.code(),
                                    format!(
                                        "Attempt to describe a user credential that does not \
                                         exist: {user}"
                                    ),
                                ))
                            } else {
                                Ok(infos)
                            }
                        };
                        results.push((user.clone(), outcome));
                    }
                    results
                }
            }
        })
        .await;
    match read {
        Ok(results) => DescribeUserScramCredentialsResponse::default()
            .with_error_message(None)
            .with_results(
                results
                    .into_iter()
                    .map(|(user, outcome)| describe_result(&user, outcome))
                    .collect(),
            ),
        Err(error) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code())
            .with_error_message(Some(StrBytes::from_string(error.to_string()))),
    }
}
