//! CreateTopics, DeleteTopics and CreatePartitions: validate here, then one log entry carrying
//! the commands.
//!
//! What needs no state (names, counts, configs, replication factor) is checked on the network
//! core; what does (existence) is checked by the state machine when the entry is applied, which is
//! the only check that cannot race with another core. `validate_only` runs the same checks plus
//! an existence query, and appends nothing.
//!
//! Replication factor: Sluice keeps one copy of each partition *in object storage*, whose
//! durability is the store's (S3: eleven nines across zones), and any agent can serve any
//! partition. There are no broker replicas to count, so the only honest factors are 1 and -1
//! ("the broker default"); anything else is INVALID_REPLICATION_FACTOR, as a one-broker Kafka
//! cluster would answer. Manual replica assignments are refused for the same reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::{
    Command, MetadataError, PARTITIONS_PER_TOPIC_MAX, kafka_code, validate_new_config,
    validate_topic_name,
};
use sluice_engine::types::TopicId;
use uuid::Uuid;

use crate::metadata_core::{CommandFailure, CoreHandle, create_topic_command};

const INVALID_REPLICATION_FACTOR: i16 =
    kafka_protocol::ResponseError::InvalidReplicationFactor.code();
const NOT_CONTROLLER_UNAVAILABLE: i16 = kafka_protocol::ResponseError::NotLeaderOrFollower.code();

/// A Kafka error code and message.
type Failure = (i16, String);
type Outcome = Result<(), Failure>;

fn from_metadata(error: &MetadataError) -> (i16, String) {
    (error.kafka_error_code(), error.to_string())
}

fn from_failure(failure: &CommandFailure) -> (i16, String) {
    match failure {
        CommandFailure::Rejected(error) => from_metadata(error),
        CommandFailure::LogFailed { code, reason } => (*code, reason.clone()),
    }
}

/// Appends `commands` and returns one outcome per command.
async fn run_commands(core: &CoreHandle, commands: Vec<Command>) -> Vec<Outcome> {
    let count = commands.len();
    if count == 0 {
        return Vec::new();
    }
    match core.commands(commands).await {
        Ok(outcomes) => outcomes
            .iter()
            .map(|outcome| outcome.as_ref().map_err(from_failure).map(|_| ()))
            .collect(),
        Err(error) => vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); count],
    }
}

/// A topic of a CreateTopics request after the stateless checks.
struct NewTopic {
    name: String,
    partition_count: u32,
    configs: BTreeMap<String, String>,
}

fn check_new_topic(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    default_partitions: u32,
) -> Result<NewTopic, (i16, String)> {
    let name = topic.name.as_str();
    validate_topic_name(name).map_err(|error| from_metadata(&error))?;
    let partition_count = match topic.num_partitions {
        -1 => default_partitions,
        count => u32::try_from(count)
            .ok()
            .filter(|count| (1..=PARTITIONS_PER_TOPIC_MAX).contains(count))
            .ok_or((
                kafka_code::INVALID_PARTITIONS,
                format!(
                    "partition count must be 1 to {PARTITIONS_PER_TOPIC_MAX}, or -1 for the default"
                ),
            ))?,
    };
    if !matches!(topic.replication_factor, 1 | -1) {
        return Err((
            INVALID_REPLICATION_FACTOR,
            "replication factor must be 1 or -1: object storage holds the only copy".to_owned(),
        ));
    }
    if !topic.assignments.is_empty() {
        return Err((
            kafka_code::INVALID_REQUEST,
            "manual replica assignment is not supported: every agent serves every partition"
                .to_owned(),
        ));
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        // A null value means "the default": nothing to store.
        let Some(value) = &config.value else { continue };
        validate_new_config(config.name.as_str(), value.as_str())
            .map_err(|error| from_metadata(&error))?;
        configs.insert(config.name.as_str().to_owned(), value.as_str().to_owned());
    }
    Ok(NewTopic {
        name: name.to_owned(),
        partition_count,
        configs,
    })
}

pub async fn create_topics(
    core: &CoreHandle,
    request: CreateTopicsRequest,
    default_partitions: u32,
) -> CreateTopicsResponse {
    let mut checked: Vec<Result<NewTopic, (i16, String)>> =
        Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let duplicate = request
            .topics
            .iter()
            .filter(|other| other.name == topic.name)
            .count()
            > 1;
        checked.push(if duplicate {
            Err((
                kafka_code::INVALID_REQUEST,
                "topic named twice in one request".to_owned(),
            ))
        } else {
            check_new_topic(topic, default_partitions)
        });
    }
    // (topic id, outcome) per topic.
    let mut results: Vec<Result<(TopicId, u32), (i16, String)>> = Vec::with_capacity(checked.len());
    if request.validate_only {
        let names: Vec<String> = checked
            .iter()
            .map(|topic| {
                topic
                    .as_ref()
                    .map(|topic| topic.name.clone())
                    .unwrap_or_default()
            })
            .collect();
        let existing = core
            .query(move |state| {
                names
                    .iter()
                    .map(|name| state.topic_id_by_name(name).is_some())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        for (index, topic) in checked.into_iter().enumerate() {
            results.push(topic.and_then(|topic| {
                if existing.get(index).copied().unwrap_or(false) {
                    Err(from_metadata(&MetadataError::TopicAlreadyExists {
                        name: topic.name,
                    }))
                } else {
                    Ok((TopicId::ZERO, topic.partition_count))
                }
            }));
        }
    } else {
        let mut commands = Vec::new();
        let mut planned = Vec::with_capacity(checked.len());
        for topic in checked {
            planned.push(topic.map(|topic| {
                let command =
                    create_topic_command(&topic.name, topic.partition_count, topic.configs);
                let topic_id = match &command {
                    Command::CreateTopic { topic_id, .. } => *topic_id,
                    _ => TopicId::ZERO,
                };
                commands.push(command);
                (topic_id, topic.partition_count, commands.len() - 1)
            }));
        }
        let outcomes = run_commands(core, commands).await;
        for plan in planned {
            results.push(plan.and_then(|(topic_id, partition_count, index)| {
                match outcomes.get(index) {
                    Some(Ok(())) => Ok((topic_id, partition_count)),
                    Some(Err(error)) => Err(error.clone()),
                    None => Err((NOT_CONTROLLER_UNAVAILABLE, "no outcome".to_owned())),
                }
            }));
        }
    }
    let topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let entry = CreatableTopicResult::default().with_name(topic.name.clone());
            match result {
                Ok((topic_id, partition_count)) => entry
                    .with_topic_id(topic_id.as_uuid())
                    .with_num_partitions(i32::try_from(partition_count).unwrap_or(i32::MAX))
                    .with_replication_factor(1),
                Err((code, message)) => entry
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub async fn delete_topics(
    core: &CoreHandle,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // Requested topics as (name, id); v6 may name either.
    let requested: Vec<(Option<String>, Option<TopicId>)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| {
                let id = (!topic.topic_id.is_nil()).then(|| TopicId::from_uuid(topic.topic_id));
                (topic.name.as_ref().map(|name| name.as_str().to_owned()), id)
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.as_str().to_owned()), None))
            .collect()
    };
    let lookup = Arc::new(requested);
    let query = Arc::clone(&lookup);
    let resolved: Vec<Result<(String, TopicId), (i16, String)>> = core
        .query(move |state| {
            query
                .iter()
                .map(|(name, id)| match (name, id) {
                    (_, Some(id)) => state
                        .topic(*id)
                        .map(|topic| (topic.name().to_owned(), *id))
                        .ok_or((
                            kafka_code::UNKNOWN_TOPIC_ID,
                            format!("unknown topic id {id}"),
                        )),
                    (Some(name), None) => state
                        .topic_id_by_name(name)
                        .map(|id| (name.clone(), id))
                        .ok_or((
                            kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
                            format!("unknown topic '{name}'"),
                        )),
                    (None, None) => Err((
                        kafka_code::INVALID_REQUEST,
                        "neither a name nor an id".to_owned(),
                    )),
                })
                .collect()
        })
        .await
        .unwrap_or_else(|error| {
            vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); lookup.len()]
        });
    let mut commands = Vec::new();
    let planned: Vec<Result<(String, TopicId, usize), Failure>> = resolved
        .into_iter()
        .map(|topic| {
            topic.map(|(name, topic_id)| {
                commands.push(Command::DeleteTopic { topic_id });
                (name, topic_id, commands.len() - 1)
            })
        })
        .collect();
    let outcomes = run_commands(core, commands).await;
    let responses = planned
        .into_iter()
        .zip(lookup.iter())
        .map(|(plan, (asked_name, asked_id))| {
            let entry = DeletableTopicResult::default()
                .with_name(
                    asked_name
                        .clone()
                        .map(|name| TopicName(StrBytes::from_string(name))),
                )
                .with_topic_id(asked_id.map_or(Uuid::nil(), |id| id.as_uuid()));
            let outcome = plan.and_then(|(name, topic_id, index)| {
                outcomes
                    .get(index)
                    .cloned()
                    .unwrap_or(Err((NOT_CONTROLLER_UNAVAILABLE, "no outcome".to_owned())))
                    .map(|()| (name, topic_id))
            });
            match outcome {
                Ok((name, topic_id)) => entry
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_id(topic_id.as_uuid()),
                Err((code, message)) => entry
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    core: &CoreHandle,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let asked: Arc<Vec<(String, i32, bool)>> = Arc::new(
        request
            .topics
            .iter()
            .map(|topic| {
                let manual = topic
                    .assignments
                    .as_ref()
                    .is_some_and(|assignments| !assignments.is_empty());
                (topic.name.as_str().to_owned(), topic.count, manual)
            })
            .collect(),
    );
    let query = Arc::clone(&asked);
    let checked: Vec<Result<Command, (i16, String)>> = core
        .query(move |state| {
            query
                .iter()
                .map(|(name, count, manual)| {
                    let (topic_id, topic) = state.topic_by_name(name).ok_or((
                        kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic '{name}'"),
                    ))?;
                    if *manual {
                        return Err((
                            kafka_code::INVALID_REQUEST,
                            "manual replica assignment is not supported".to_owned(),
                        ));
                    }
                    let current = topic.partition_count();
                    let requested = u32::try_from(*count).unwrap_or(0);
                    if requested <= current || requested > PARTITIONS_PER_TOPIC_MAX {
                        return Err(from_metadata(&MetadataError::InvalidPartitionCount {
                            requested,
                            current,
                            limit: PARTITIONS_PER_TOPIC_MAX,
                        }));
                    }
                    Ok(Command::CreatePartitions {
                        topic_id,
                        partition_count: requested,
                    })
                })
                .collect()
        })
        .await
        .unwrap_or_else(|error| {
            vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); asked.len()]
        });
    let mut commands = Vec::new();
    let planned: Vec<Result<usize, (i16, String)>> = checked
        .into_iter()
        .map(|command| {
            command.map(|command| {
                commands.push(command);
                commands.len() - 1
            })
        })
        .collect();
    let outcomes = if request.validate_only {
        vec![Ok(()); commands.len()]
    } else {
        run_commands(core, commands).await
    };
    let results = request
        .topics
        .iter()
        .zip(planned)
        .map(|(topic, plan)| {
            let entry = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let outcome = plan.and_then(|index| {
                outcomes
                    .get(index)
                    .cloned()
                    .unwrap_or(Err((NOT_CONTROLLER_UNAVAILABLE, "no outcome".to_owned())))
            });
            match outcome {
                Ok(()) => entry,
                Err((code, message)) => entry
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
