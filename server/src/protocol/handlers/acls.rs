//! CreateAcls, DescribeAcls and DeleteAcls: the bindings of the metadata state machine
//! (`sluice_engine::metadata::acl`), created and deleted through the metadata log.
//!
//! As in Kafka: without an authorizer the three answer SECURITY_DISABLED; with one, creating and
//! deleting need ALTER on the cluster and describing needs DESCRIBE on it
//! (CLUSTER_AUTHORIZATION_FAILED otherwise). A creation is checked here (codes, ANY and MATCH are
//! filters only) and by the state machine when its entry is applied (names, principal, the cap).
//! A deletion's filter is applied by the state machine; the bindings the response lists are those
//! the filter matched just before the entry was written (a binding created by another request in
//! between is deleted too but not listed). After a change the agent's ACL snapshot is refreshed
//! before the response is sent, so the next request on any core sees it.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::acl::{
    OperationFilter, PatternFilter, PermissionFilter, ResourceTypeFilter,
};
use sluice_engine::metadata::{
    AclBinding, AclBindingFilter, AclEntry, AclOperation, AclPatternType, AclPermission,
    AclResource, AclResourceType, COMMANDS_PER_ENTRY_MAX, Command,
};

use crate::auth::RequestAuth;
use crate::metadata_core::{CommandFailure, CoreHandle};

type Failure = (i16, String);

/// Kafka codes of filter values that are valid but name nothing stored here: delegation tokens
/// (6) and users (7) as resource types, CREATE_TOKENS (13) and DESCRIBE_TOKENS (14).
const RESOURCE_TYPES_ELSEWHERE: [i8; 2] = [6, 7];
const OPERATIONS_ELSEWHERE: [i8; 2] = [13, 14];
const ANY: i8 = 1;
/// Creations or deletion filters one request may carry (one log entry's worth of commands); the
/// ones past it are refused without being written, so a request cannot fill the log.
pub const ACL_CHANGES_PER_REQUEST_MAX: usize = COMMANDS_PER_ENTRY_MAX;
const MATCH: i8 = 2;

fn security_disabled() -> Failure {
    (
        ResponseError::SecurityDisabled.code(),
        "no authorizer is configured (set authorizer = \"acl\")".to_owned(),
    )
}

fn cluster_denied(operation: &str) -> Failure {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        format!("{operation} on the cluster is not allowed"),
    )
}

fn invalid(reason: String) -> Failure {
    (ResponseError::InvalidRequest.code(), reason)
}

fn too_many(what: &str) -> Failure {
    invalid(format!(
        "more than {ACL_CHANGES_PER_REQUEST_MAX} {what} in one request"
    ))
}

/// Whether the request may go on: an authorizer is on and allows `operation` on the cluster.
async fn check_cluster(auth: &RequestAuth<'_>, operation: AclOperation) -> Result<(), Failure> {
    if !auth.enabled() {
        return Err(security_disabled());
    }
    if !auth.allowed_on_cluster(operation).await {
        return Err(cluster_denied(match operation {
            AclOperation::Describe => "DESCRIBE",
            _ => "ALTER",
        }));
    }
    Ok(())
}

fn binding_from(
    creation: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, Failure> {
    let code =
        |what: &str, code: i8| invalid(format!("{what} {code} cannot be stored in a binding"));
    Ok(AclBinding {
        resource: AclResource {
            resource_type: AclResourceType::from_code(creation.resource_type)
                .ok_or_else(|| code("resource type", creation.resource_type))?,
            pattern_type: AclPatternType::from_code(creation.resource_pattern_type)
                .ok_or_else(|| code("pattern type", creation.resource_pattern_type))?,
            name: creation.resource_name.to_string(),
        },
        entry: AclEntry {
            principal: creation.principal.to_string(),
            host: creation.host.to_string(),
            operation: AclOperation::from_code(creation.operation)
                .ok_or_else(|| code("operation", creation.operation))?,
            permission: AclPermission::from_code(creation.permission_type)
                .ok_or_else(|| code("permission", creation.permission_type))?,
        },
    })
}

/// The filter's fields as the wire carries them.
struct WireFilter<'a> {
    resource_type: i8,
    name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission: i8,
}

/// Kafka's `AclBindingFilter` from the wire: `Ok(None)` for a valid filter that can match
/// nothing stored here; UNKNOWN (0) or an unknown code is INVALID_REQUEST.
fn filter_from(wire: &WireFilter<'_>) -> Result<Option<AclBindingFilter>, Failure> {
    let bad = |what: &str, code: i8| invalid(format!("invalid {what} {code} in an ACL filter"));
    let resource_type = match wire.resource_type {
        ANY => ResourceTypeFilter::Any,
        code if RESOURCE_TYPES_ELSEWHERE.contains(&code) => return Ok(None),
        code => ResourceTypeFilter::Is(
            AclResourceType::from_code(code).ok_or_else(|| bad("resource type", code))?,
        ),
    };
    let pattern = match wire.pattern_type {
        ANY => PatternFilter::Any,
        MATCH => PatternFilter::Match,
        code => PatternFilter::Is(
            AclPatternType::from_code(code).ok_or_else(|| bad("pattern type", code))?,
        ),
    };
    let operation = match wire.operation {
        ANY => OperationFilter::Any,
        code if OPERATIONS_ELSEWHERE.contains(&code) => return Ok(None),
        code => OperationFilter::Is(
            AclOperation::from_code(code).ok_or_else(|| bad("operation", code))?,
        ),
    };
    let permission = match wire.permission {
        ANY => PermissionFilter::Any,
        code => PermissionFilter::Is(
            AclPermission::from_code(code).ok_or_else(|| bad("permission", code))?,
        ),
    };
    Ok(Some(AclBindingFilter {
        resource_type,
        name: wire.name.map(ToString::to_string),
        pattern,
        principal: wire.principal.map(ToString::to_string),
        host: wire.host.map(ToString::to_string),
        operation,
        permission,
    }))
}

fn from_failure(failure: &CommandFailure) -> Failure {
    match failure {
        CommandFailure::Rejected(error) => (error.kafka_error_code(), error.to_string()),
        CommandFailure::LogFailed { code, reason } => (*code, reason.clone()),
    }
}

/// Appends `commands` in entries of at most [`COMMANDS_PER_ENTRY_MAX`]; one outcome per command.
async fn run_commands(core: &CoreHandle, commands: Vec<Command>) -> Vec<Result<(), Failure>> {
    let mut outcomes = Vec::with_capacity(commands.len());
    let mut rest = commands;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(COMMANDS_PER_ENTRY_MAX));
        let count = rest.len();
        match core.commands(rest).await {
            Ok(answers) => outcomes.extend(
                answers
                    .iter()
                    .map(|answer| answer.as_ref().map(|_| ()).map_err(from_failure)),
            ),
            Err(error) => outcomes.extend(
                (0..count)
                    .map(|_| Err((ResponseError::UnknownServerError.code(), error.to_string()))),
            ),
        }
        rest = tail;
    }
    outcomes
}

pub async fn create_acls(
    core: &CoreHandle,
    auth: RequestAuth<'_>,
    request: &CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |outcome: Result<(), Failure>| match outcome {
        Ok(()) => AclCreationResult::default(),
        Err((code, message)) => AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message))),
    };
    if let Err(failure) = check_cluster(&auth, AclOperation::Alter).await {
        let results = request
            .creations
            .iter()
            .map(|_| result(Err(failure.clone())))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let mut commands = Vec::new();
    let planned: Vec<Result<usize, Failure>> = request
        .creations
        .iter()
        .enumerate()
        .map(|(position, creation)| {
            if position >= ACL_CHANGES_PER_REQUEST_MAX {
                return Err(too_many("creations"));
            }
            binding_from(creation).map(|binding| {
                commands.push(Command::CreateAcl {
                    binding: Box::new(binding),
                });
                commands.len() - 1
            })
        })
        .collect();
    let changed = !commands.is_empty();
    let outcomes = run_commands(core, commands).await;
    if changed && let Some(authorizer) = auth.authorizer {
        authorizer.refresh().await;
    }
    let results = planned
        .into_iter()
        .map(|plan| {
            result(plan.and_then(|index| {
                outcomes.get(index).cloned().unwrap_or_else(|| {
                    Err((
                        ResponseError::UnknownServerError.code(),
                        "no outcome".to_owned(),
                    ))
                })
            }))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Bindings grouped by resource, as DescribeAcls answers them.
fn describe_resources(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut by_resource: BTreeMap<AclResource, Vec<AclEntry>> = BTreeMap::new();
    for binding in bindings {
        by_resource
            .entry(binding.resource)
            .or_default()
            .push(binding.entry);
    }
    by_resource
        .into_iter()
        .map(|(resource, entries)| {
            DescribeAclsResource::default()
                .with_resource_type(resource.resource_type.code())
                .with_resource_name(StrBytes::from_string(resource.name))
                .with_pattern_type(resource.pattern_type.code())
                .with_acls(
                    entries
                        .into_iter()
                        .map(|entry| {
                            AclDescription::default()
                                .with_principal(StrBytes::from_string(entry.principal))
                                .with_host(StrBytes::from_string(entry.host))
                                .with_operation(entry.operation.code())
                                .with_permission_type(entry.permission.code())
                        })
                        .collect(),
                )
        })
        .collect()
}

pub async fn describe_acls(
    core: &CoreHandle,
    auth: RequestAuth<'_>,
    request: &DescribeAclsRequest,
) -> DescribeAclsResponse {
    let failed = |(code, message): Failure| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err(failure) = check_cluster(&auth, AclOperation::Describe).await {
        return failed(failure);
    }
    let filter = match filter_from(&WireFilter {
        resource_type: request.resource_type_filter,
        name: request.resource_name_filter.as_ref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_ref(),
        host: request.host_filter.as_ref(),
        operation: request.operation,
        permission: request.permission_type,
    }) {
        Ok(Some(filter)) => filter,
        Ok(None) => return DescribeAclsResponse::default(),
        Err(failure) => return failed(failure),
    };
    match core
        .query(move |state| state.acls().matching(&filter))
        .await
    {
        Ok(bindings) => {
            DescribeAclsResponse::default().with_resources(describe_resources(bindings))
        }
        Err(error) => failed((ResponseError::UnknownServerError.code(), error.to_string())),
    }
}

pub async fn delete_acls(
    core: &CoreHandle,
    auth: RequestAuth<'_>,
    request: &DeleteAclsRequest,
) -> DeleteAclsResponse {
    let result = |outcome: Result<Vec<AclBinding>, Failure>| match outcome {
        Ok(deleted) => DeleteAclsFilterResult::default().with_matching_acls(
            deleted
                .into_iter()
                .map(|binding| {
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(binding.resource.resource_type.code())
                        .with_resource_name(StrBytes::from_string(binding.resource.name))
                        .with_pattern_type(binding.resource.pattern_type.code())
                        .with_principal(StrBytes::from_string(binding.entry.principal))
                        .with_host(StrBytes::from_string(binding.entry.host))
                        .with_operation(binding.entry.operation.code())
                        .with_permission_type(binding.entry.permission.code())
                })
                .collect(),
        ),
        Err((code, message)) => DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message))),
    };
    if let Err(failure) = check_cluster(&auth, AclOperation::Alter).await {
        let results = request
            .filters
            .iter()
            .map(|_| result(Err(failure.clone())))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<Option<AclBindingFilter>, Failure>> = request
        .filters
        .iter()
        .enumerate()
        .map(|(position, filter)| {
            if position >= ACL_CHANGES_PER_REQUEST_MAX {
                return Err(too_many("filters"));
            }
            filter_from(&WireFilter {
                resource_type: filter.resource_type_filter,
                name: filter.resource_name_filter.as_ref(),
                pattern_type: filter.pattern_type_filter,
                principal: filter.principal_filter.as_ref(),
                host: filter.host_filter.as_ref(),
                operation: filter.operation,
                permission: filter.permission_type,
            })
        })
        .collect();
    let filters: Vec<AclBindingFilter> = parsed
        .iter()
        .filter_map(|parsed| parsed.as_ref().ok().and_then(Clone::clone))
        .collect();
    let query_filters = filters.clone();
    let matched: Vec<Vec<AclBinding>> = core
        .query(move |state| {
            query_filters
                .iter()
                .map(|filter| state.acls().matching(filter))
                .collect()
        })
        .await
        .unwrap_or_default();
    let commands: Vec<Command> = filters
        .into_iter()
        .map(|filter| Command::DeleteAcls {
            filter: Box::new(filter),
        })
        .collect();
    let changed = matched.iter().any(|bindings| !bindings.is_empty());
    let mut outcomes = run_commands(core, commands).await.into_iter().zip(matched);
    if changed && let Some(authorizer) = auth.authorizer {
        authorizer.refresh().await;
    }
    let results = parsed
        .into_iter()
        .map(|parsed| match parsed {
            Err(failure) => result(Err(failure)),
            Ok(None) => result(Ok(Vec::new())),
            Ok(Some(_)) => result(match outcomes.next() {
                Some((Ok(()), deleted)) => Ok(deleted),
                Some((Err(failure), _)) => Err(failure),
                None => Err((
                    ResponseError::UnknownServerError.code(),
                    "no outcome".to_owned(),
                )),
            }),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
