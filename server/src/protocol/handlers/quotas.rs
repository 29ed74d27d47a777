//! AlterClientQuotas (API 49) and DescribeClientQuotas (API 48): the client quotas of the
//! metadata state machine (`sluice_engine::metadata::quota`), changed through the metadata log.
//!
//! As in Kafka (`ControllerApis`, `ClientQuotaControlManager`, `ClientQuotasImage`): altering
//! needs ALTER_CONFIGS on the cluster and describing DESCRIBE_CONFIGS (when an authorizer is on);
//! entities are `user`, `client-id` or both, a null name is `<default>`; the keys are
//! `producer_byte_rate`, `consumer_byte_rate` and `request_percentage`, and an unknown key is
//! INVALID_REQUEST "Invalid configuration key …". What Sluice does not enforce is refused with
//! INVALID_REQUEST and says so, never stored and ignored: `controller_mutation_rate` (KIP-599)
//! and IP entities (`connection_creation_rate`, KIP-612). Each entity is all or nothing (Kafka
//! reports one error per entity too); `validate_only` checks everything the state machine would,
//! the cap included, and writes nothing. After a change the agent's quota snapshot is refreshed
//! before the response is sent, so the next request on any core is measured against it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData as DescribedEntry, ValueData,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::quota::{validate_entity, validate_value};
use sluice_engine::metadata::{
    AclOperation, COMMANDS_PER_ENTRY_MAX, Command, QuotaAlteration, QuotaEntity, QuotaFilter,
    QuotaKey, QuotaMatch, QuotaName, QuotaValue,
};

use crate::auth::RequestAuth;
use crate::metadata_core::{CommandFailure, CoreHandle};
use crate::quota::QuotaBoard;

type Failure = (i16, String);

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";
/// Entities one AlterClientQuotas request may alter (one log entry's worth of commands).
pub const QUOTA_ALTERATIONS_PER_REQUEST_MAX: usize = COMMANDS_PER_ENTRY_MAX;

fn invalid(reason: impl Into<String>) -> Failure {
    (ResponseError::InvalidRequest.code(), reason.into())
}

fn not_enforced_ip() -> Failure {
    invalid(
        "IP quotas (connection_creation_rate, KIP-612) are not enforced by Sluice; refused rather \
         than stored and ignored",
    )
}

/// The entity of one AlterClientQuotas entry, checked as Kafka's controller checks it.
fn entity_from(entry: &AlterEntry) -> Result<QuotaEntity, Failure> {
    if entry.entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    let mut ip = false;
    for component in &entry.entity {
        let name = QuotaName::from_wire(component.entity_name.as_deref());
        let slot = match component.entity_type.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => {
                if ip {
                    return Err(invalid(format!(
                        "Invalid empty client quota entity, duplicate entity entry {IP}"
                    )));
                }
                ip = true;
                continue;
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )));
            }
        };
        if slot.is_some() {
            return Err(invalid(format!(
                "Invalid empty client quota entity, duplicate entity entry {}",
                component.entity_type.as_str()
            )));
        }
        *slot = Some(name);
    }
    if ip {
        return Err(if entity.user.is_some() || entity.client_id.is_some() {
            invalid("Invalid empty client quota entity")
        } else {
            not_enforced_ip()
        });
    }
    validate_entity(&entity).map_err(invalid)?;
    Ok(entity)
}

/// One entry's alteration: the entity and its operations (a key named twice: the last wins, as
/// Kafka's map of operations keeps it).
fn alteration_from(entry: &AlterEntry) -> Result<QuotaAlteration, Failure> {
    let entity = entity_from(entry)?;
    let mut ops: Vec<(QuotaKey, Option<QuotaValue>)> = Vec::new();
    for op in &entry.ops {
        let name = op.key.as_str();
        let Some(key) = QuotaKey::from_name(name) else {
            return Err(invalid(if name == "controller_mutation_rate" {
                "controller_mutation_rate (KIP-599) is not enforced by Sluice; refused rather than \
                 stored and ignored"
                    .to_owned()
            } else {
                format!("Invalid configuration key {name}")
            }));
        };
        let value = if op.remove {
            None
        } else {
            Some(validate_value(key, op.value).map_err(invalid)?)
        };
        ops.retain(|(earlier, _)| *earlier != key);
        ops.push((key, value));
    }
    Ok(QuotaAlteration { entity, ops })
}

fn from_failure(failure: &CommandFailure) -> Failure {
    match failure {
        CommandFailure::Rejected(error) => (error.kafka_error_code(), error.to_string()),
        CommandFailure::LogFailed { code, reason } => (*code, reason.clone()),
    }
}

fn entity_data(entry: &AlterEntry) -> Vec<AlteredEntity> {
    entry
        .entity
        .iter()
        .map(|component| {
            AlteredEntity::default()
                .with_entity_type(component.entity_type.clone())
                .with_entity_name(component.entity_name.clone())
        })
        .collect()
}

pub async fn alter_client_quotas(
    core: &CoreHandle,
    board: Option<&QuotaBoard>,
    auth: RequestAuth<'_>,
    request: &AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let denied = auth.enabled() && !auth.allowed_on_cluster(AclOperation::AlterConfigs).await;
    let mut outcomes: Vec<Result<(), Failure>> = Vec::with_capacity(request.entries.len());
    let mut planned: Vec<(usize, QuotaAlteration)> = Vec::new();
    for (position, entry) in request.entries.iter().enumerate() {
        let outcome = if denied {
            Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                "ALTER_CONFIGS on the cluster is not allowed".to_owned(),
            ))
        } else if position >= QUOTA_ALTERATIONS_PER_REQUEST_MAX {
            Err(invalid(format!(
                "more than {QUOTA_ALTERATIONS_PER_REQUEST_MAX} entities in one request"
            )))
        } else {
            alteration_from(entry).map(|alteration| planned.push((position, alteration)))
        };
        outcomes.push(outcome);
    }
    if request.validate_only {
        // What the state machine would refuse (the cap): checked against the current state.
        let alterations: Vec<QuotaAlteration> = planned
            .iter()
            .map(|(_, alteration)| alteration.clone())
            .collect();
        let checked = core
            .query(move |state| {
                alterations
                    .iter()
                    .map(|alteration| state.quotas().check(alteration).map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .await;
        match checked {
            Ok(checked) => {
                for ((position, _), check) in planned.iter().zip(checked) {
                    if let (Err(reason), Some(slot)) = (check, outcomes.get_mut(*position)) {
                        *slot = Err(invalid(reason));
                    }
                }
            }
            Err(error) => {
                for (position, _) in &planned {
                    if let Some(slot) = outcomes.get_mut(*position) {
                        *slot = Err((ResponseError::UnknownServerError.code(), error.to_string()));
                    }
                }
            }
        }
    } else if !planned.is_empty() {
        let commands = planned
            .iter()
            .map(|(_, alteration)| Command::AlterClientQuotas {
                alteration: Box::new(alteration.clone()),
            })
            .collect();
        match core.commands(commands).await {
            Ok(answers) => {
                for ((position, _), answer) in planned.iter().zip(answers) {
                    if let (Err(failure), Some(slot)) = (answer, outcomes.get_mut(*position)) {
                        *slot = Err(from_failure(&failure));
                    }
                }
            }
            Err(error) => {
                for (position, _) in &planned {
                    if let Some(slot) = outcomes.get_mut(*position) {
                        *slot = Err((ResponseError::UnknownServerError.code(), error.to_string()));
                    }
                }
            }
        }
        if let Some(board) = board {
            board.refresh(core).await;
        }
    }
    let entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let result = AlteredEntry::default().with_entity(entity_data(entry));
            match outcome {
                // Null on success, as Kafka sends it (the type's default is an empty string).
                Ok(()) => result.with_error_message(None),
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// Kafka's filter from the request (`ClientQuotasImage.describe`); `Ok(None)`: a valid filter on
/// IP entities, of which none are stored.
fn filter_from(request: &DescribeClientQuotasRequest) -> Result<Option<QuotaFilter>, Failure> {
    let mut filter = QuotaFilter {
        user: None,
        client_id: None,
        strict: request.strict,
    };
    let mut ip = false;
    for component in &request.components {
        let entity_type = component.entity_type.as_str();
        if entity_type.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        let slot = match entity_type {
            USER => Some(&mut filter.user),
            CLIENT_ID => Some(&mut filter.client_id),
            IP => None,
            other => {
                return Err((
                    ResponseError::UnsupportedVersion.code(),
                    format!("Unsupported entity type {other}"),
                ));
            }
        };
        let duplicate = match &slot {
            Some(slot) => slot.is_some(),
            None => ip,
        };
        if duplicate {
            return Err(invalid(format!(
                "Entity type {entity_type} cannot appear more than once in the filter."
            )));
        }
        let matched = match (component.match_type, component._match.as_ref()) {
            (0, Some(name)) => QuotaMatch::Exact(name.to_string()),
            (0, None) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                ));
            }
            (1, None) => QuotaMatch::Default,
            (1, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.",
                ));
            }
            (2, None) => QuotaMatch::Specified,
            (2, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.",
                ));
            }
            (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
        };
        match slot {
            Some(slot) => *slot = Some(matched),
            None => ip = true,
        }
    }
    if ip {
        if filter.user.is_some() || filter.client_id.is_some() {
            return Err(invalid(
                "Invalid entity filter component combination. IP filter component should not be \
                 used with user or clientId filter component.",
            ));
        }
        return Ok(None);
    }
    Ok(Some(filter))
}

fn described(entity: &QuotaEntity, values: Vec<(QuotaKey, f64)>) -> DescribedEntry {
    let component = |entity_type: &'static str, name: &QuotaName| {
        DescribedEntity::default()
            .with_entity_type(StrBytes::from_static_str(entity_type))
            .with_entity_name(
                name.as_wire()
                    .map(|name| StrBytes::from_string(name.to_owned())),
            )
    };
    let mut components = Vec::with_capacity(2);
    if let Some(user) = &entity.user {
        components.push(component(USER, user));
    }
    if let Some(client_id) = &entity.client_id {
        components.push(component(CLIENT_ID, client_id));
    }
    DescribedEntry::default()
        .with_entity(components)
        .with_values(
            values
                .into_iter()
                .map(|(key, value)| {
                    ValueData::default()
                        .with_key(StrBytes::from_static_str(key.name()))
                        .with_value(value)
                })
                .collect(),
        )
}

pub async fn describe_client_quotas(
    core: &CoreHandle,
    auth: RequestAuth<'_>,
    request: &DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let failed = |(code, message): Failure| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_entries(None)
    };
    if auth.enabled() && !auth.allowed_on_cluster(AclOperation::DescribeConfigs).await {
        return failed((
            ResponseError::ClusterAuthorizationFailed.code(),
            "DESCRIBE_CONFIGS on the cluster is not allowed".to_owned(),
        ));
    }
    let filter = match filter_from(request) {
        Ok(Some(filter)) => filter,
        Ok(None) => {
            return DescribeClientQuotasResponse::default()
                .with_error_message(None)
                .with_entries(Some(Vec::new()));
        }
        Err(failure) => return failed(failure),
    };
    let found = core
        .query(move |state| {
            state
                .quotas()
                .describe(&filter)
                .into_iter()
                .map(|(entity, values)| {
                    let values: Vec<(QuotaKey, f64)> = values
                        .iter()
                        .map(|(key, value)| (*key, value.get()))
                        .collect();
                    (entity.clone(), values)
                })
                .collect::<Vec<_>>()
        })
        .await;
    match found {
        Ok(found) => DescribeClientQuotasResponse::default()
            .with_error_message(None)
            .with_entries(Some(
                found
                    .into_iter()
                    .map(|(entity, values)| described(&entity, values))
                    .collect(),
            )),
        Err(error) => failed((ResponseError::UnknownServerError.code(), error.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    use super::*;

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> AlterEntry {
        AlterEntry::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(entity_type, name)| {
                        EntityData::default()
                            .with_entity_type(StrBytes::from_string((*entity_type).to_owned()))
                            .with_entity_name(name.map(|n| StrBytes::from_string(n.to_owned())))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(key, value, remove)| {
                        OpData::default()
                            .with_key(StrBytes::from_string((*key).to_owned()))
                            .with_value(*value)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    fn refused(entry: &AlterEntry) -> String {
        let (code, message) = alteration_from(entry).unwrap_err();
        assert_eq!(code, 42, "{message}");
        message
    }

    #[test]
    fn alterations_are_checked_as_kafka_checks_them() {
        let ok = alteration_from(&entry(
            &[("user", Some("alice")), ("client-id", None)],
            &[
                ("producer_byte_rate", 1024.0, false),
                ("request_percentage", 0.0, true),
                ("producer_byte_rate", 2048.0, false),
            ],
        ))
        .unwrap();
        assert_eq!(
            ok.entity,
            QuotaEntity {
                user: Some(QuotaName::Named("alice".to_owned())),
                client_id: Some(QuotaName::Default),
            }
        );
        // The last operation on a key wins.
        assert_eq!(
            ok.ops,
            vec![
                (QuotaKey::RequestPercentage, None),
                (QuotaKey::ProducerByteRate, QuotaValue::new(2048.0)),
            ]
        );
        assert_eq!(
            refused(&entry(&[("user", Some("a"))], &[("bogus", 1.0, false)])),
            "Invalid configuration key bogus"
        );
        assert!(
            refused(&entry(
                &[("user", Some("a"))],
                &[("controller_mutation_rate", 1.0, false)]
            ))
            .contains("not enforced")
        );
        assert!(
            refused(&entry(
                &[("ip", Some("1.2.3.4"))],
                &[("connection_creation_rate", 1.0, false)]
            ))
            .contains("not enforced")
        );
        assert_eq!(
            refused(&entry(
                &[("user", Some("a"))],
                &[("producer_byte_rate", 1.5, false)]
            )),
            "Configuration producer_byte_rate must be a Long value"
        );
        assert_eq!(
            refused(&entry(&[], &[("producer_byte_rate", 1.0, false)])),
            "Invalid empty client quota entity"
        );
        assert_eq!(
            refused(&entry(&[("group", Some("g"))], &[])),
            "Unhandled client quota entity type: group"
        );
        assert!(
            refused(&entry(&[("user", Some("a")), ("user", Some("b"))], &[])).contains("duplicate")
        );
        assert_eq!(
            refused(&entry(&[("client-id", Some(""))], &[])),
            "Empty client-id not supported"
        );
    }

    fn describe(
        components: &[(&str, i8, Option<&str>)],
        strict: bool,
    ) -> DescribeClientQuotasRequest {
        DescribeClientQuotasRequest::default()
            .with_strict(strict)
            .with_components(
                components
                    .iter()
                    .map(|(entity_type, match_type, name)| {
                        ComponentData::default()
                            .with_entity_type(StrBytes::from_string((*entity_type).to_owned()))
                            .with_match_type(*match_type)
                            .with_match(name.map(|n| StrBytes::from_string(n.to_owned())))
                    })
                    .collect(),
            )
    }

    #[test]
    fn describe_filters_are_checked_as_kafka_checks_them() {
        let filter = filter_from(&describe(
            &[("user", 0, Some("alice")), ("client-id", 1, None)],
            true,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(filter.user, Some(QuotaMatch::Exact("alice".to_owned())));
        assert_eq!(filter.client_id, Some(QuotaMatch::Default));
        assert_eq!(
            filter_from(&describe(&[("ip", 2, None)], false)).unwrap(),
            None
        );
        let code = |request| filter_from(&request).unwrap_err().0;
        assert_eq!(code(describe(&[("group", 2, None)], false)), 35);
        assert_eq!(code(describe(&[("user", 0, None)], false)), 42);
        assert_eq!(code(describe(&[("user", 1, Some("a"))], false)), 42);
        assert_eq!(
            code(describe(&[("user", 2, None), ("user", 2, None)], false)),
            42
        );
        assert_eq!(
            code(describe(&[("ip", 2, None), ("user", 2, None)], false)),
            42
        );
        assert_eq!(code(describe(&[("user", 7, None)], false)), 42);
    }
}
