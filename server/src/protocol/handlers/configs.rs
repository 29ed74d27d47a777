//! DescribeConfigs and IncrementalAlterConfigs: topic configs read from the state, changed
//! through the metadata log.
//!
//! A topic stores only its overrides (see the engine's `metadata::config`); describing fills in
//! the defaults and marks each row's source, so tools can tell "set on this topic"
//! (`TOPIC_CONFIG`) from "Kafka's default" (`DEFAULT_CONFIG`). A change is one
//! `Command::AlterTopicConfigs` per resource, all in one log entry, so it is durable and ordered
//! with every other metadata change once the response says so; the state machine re-validates
//! every value when it applies the entry, which makes the network core's checks an early answer,
//! not the authority.
//!
//! APPEND and SUBTRACT are read-modify-write: the new list is computed here from the value the
//! state held when queried, and the command carries the result. Two concurrent appends to the
//! same topic can therefore lose one another; Kafka's own controller serialises them, we accept
//! the race for a setting (`cleanup.policy`) that is changed by hand.
//!
//! Broker resources: the agent's settings come from its TOML file and are not dynamic. Describe
//! answers a few read-only rows (what `kafka-configs --entity-type brokers --describe --all` and
//! AdminClient callers look for); alter is refused with INVALID_REQUEST and a message saying so.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::{
    Command, ConfigEntry, MetadataError, is_known_config, kafka_code, known_configs,
    validate_new_config, validate_topic_name,
};
use sluice_engine::types::TopicId;

use crate::metadata_core::{CommandFailure, CoreHandle};
use crate::protocol::dispatch::BrokerIdentity;

/// Kafka's `ConfigResource.Type` codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
/// Consumer groups (KIP-848's group configs).
pub const RESOURCE_GROUP: i8 = 32;

/// Kafka's `ConfigSource` codes (DescribeConfigs v1+).
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Kafka's `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

const NOT_CONTROLLER_UNAVAILABLE: i16 = kafka_protocol::ResponseError::NotLeaderOrFollower.code();

/// A Kafka error code and message.
type Failure = (i16, String);

/// Kafka's `ConfigType` (DescribeConfigs v3+) of each topic config the engine knows.
///
/// Kept here rather than in the engine's table because only the wire answer needs it; a name
/// missing here answers UNKNOWN (0), which clients display as a plain string.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match name {
        "cleanup.policy" => LIST,
        "compression.type" | "message.timestamp.type" => STRING,
        "max.message.bytes" | "min.insync.replicas" | "segment.bytes" => INT,
        "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "max.compaction.lag.ms"
        | "retention.bytes"
        | "retention.ms"
        | "segment.ms" => LONG,
        "auto.create.topics.enable" => BOOLEAN,
        "node.id" | "broker.id" | "num.partitions" | "default.replication.factor" => INT,
        _ => 0,
    }
}

/// True for configs whose value is a comma-separated list (APPEND / SUBTRACT apply).
fn is_list_config(name: &str) -> bool {
    config_type(name) == 7
}

/// The broker-level facts a DescribeConfigs of this agent reports.
#[derive(Debug, Clone)]
pub struct BrokerSettings<'a> {
    pub identity: &'a BrokerIdentity,
    /// Partition count of auto-created topics; `None` when auto-creation is off.
    pub auto_create_partitions: Option<u32>,
    /// Partition count of a CreateTopics entry that asks for the default.
    pub default_partitions: u32,
}

impl BrokerSettings<'_> {
    /// Read-only rows, sorted by name: settings that come from the agent's configuration file.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let node_id = self.identity.node_id.to_string();
        vec![
            (
                "auto.create.topics.enable",
                self.auto_create_partitions.is_some().to_string(),
            ),
            ("broker.id", node_id.clone()),
            // Object storage holds the only copy: there are no broker replicas.
            ("default.replication.factor", "1".to_owned()),
            ("node.id", node_id),
            ("num.partitions", self.default_partitions.to_string()),
        ]
    }
}

fn message(text: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(text))
}

fn from_metadata(error: &MetadataError) -> Failure {
    // Requests here name topics, so a topic gone by id is "unknown topic" to the client.
    match error {
        MetadataError::UnknownTopicId { .. } => {
            (kafka_code::UNKNOWN_TOPIC_OR_PARTITION, error.to_string())
        }
        _ => (error.kafka_error_code(), error.to_string()),
    }
}

/// INVALID_CONFIG for a name outside the engine's table, echoing at most a short prefix of it.
fn unknown_config(name: &str) -> Failure {
    const ECHO_CHARS_MAX: usize = 64;
    let shown: String = name.chars().take(ECHO_CHARS_MAX).collect();
    (
        kafka_code::INVALID_CONFIG,
        format!("unknown topic config '{shown}'"),
    )
}

/// Kafka's default of a known topic config.
fn default_value(name: &str) -> Option<&'static str> {
    known_configs()
        .iter()
        .find(|spec| spec.name == name)
        .map(|spec| spec.default)
}

fn wanted(keys: Option<&Vec<StrBytes>>, name: &str) -> bool {
    keys.is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
}

fn topic_row(entry: &ConfigEntry, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let default = default_value(entry.name);
    let source = if entry.is_default {
        SOURCE_DEFAULT_CONFIG
    } else {
        SOURCE_TOPIC_CONFIG
    };
    let mut synonyms = Vec::new();
    if include_synonyms {
        // Java lists the effective value first, then what it overrides.
        synonyms.push(
            DescribeConfigsSynonym::default()
                .with_name(StrBytes::from_static_str(entry.name))
                .with_value(Some(StrBytes::from_string(entry.value.clone())))
                .with_source(source),
        );
        if !entry.is_default {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(entry.name))
                    .with_value(default.map(StrBytes::from_static_str))
                    .with_source(SOURCE_DEFAULT_CONFIG),
            );
        }
    }
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(entry.name))
        .with_value(Some(StrBytes::from_string(entry.value.clone())))
        .with_read_only(false)
        .with_config_source(source)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config_type(entry.name))
        .with_documentation(None)
}

fn broker_rows(
    settings: &BrokerSettings<'_>,
    resource_name: &str,
    keys: Option<&Vec<StrBytes>>,
    include_synonyms: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, Failure> {
    // An empty name asks for the cluster-wide dynamic defaults, of which there are none.
    if resource_name.is_empty() {
        return Ok(Vec::new());
    }
    if resource_name.parse::<i32>().ok() != Some(settings.identity.node_id) {
        return Err((
            kafka_code::INVALID_REQUEST,
            format!(
                "unexpected broker id, expected {} or empty string, but received {resource_name}",
                settings.identity.node_id
            ),
        ));
    }
    Ok(settings
        .rows()
        .into_iter()
        .filter(|(name, _)| wanted(keys, name))
        .map(|(name, value)| {
            let synonyms = if include_synonyms {
                vec![
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(StrBytes::from_string(value.clone())))
                        .with_source(SOURCE_STATIC_BROKER_CONFIG),
                ]
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC_BROKER_CONFIG)
                .with_synonyms(synonyms)
                .with_config_type(config_type(name))
        })
        .collect())
}

pub async fn describe_configs(
    core: &CoreHandle,
    request: &DescribeConfigsRequest,
    settings: &BrokerSettings<'_>,
) -> DescribeConfigsResponse {
    // One query for every topic resource: the overrides with defaults filled in.
    let topic_names: Arc<Vec<String>> = Arc::new(
        request
            .resources
            .iter()
            .filter(|resource| resource.resource_type == RESOURCE_TOPIC)
            .map(|resource| resource.resource_name.as_str().to_owned())
            .collect(),
    );
    let query = Arc::clone(&topic_names);
    let mut topic_answers = core
        .query(move |state| {
            query
                .iter()
                .map(|name| {
                    validate_topic_name(name).map_err(|error| from_metadata(&error))?;
                    let topic_id = state.topic_id_by_name(name).ok_or((
                        kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic '{name}'"),
                    ))?;
                    state
                        .topic_configs(topic_id)
                        .map_err(|error| from_metadata(&error))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|error| {
            vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); topic_names.len()]
        })
        .into_iter();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let keys = resource.configuration_keys.as_ref();
            let rows = match resource.resource_type {
                RESOURCE_TOPIC => topic_answers
                    .next()
                    .unwrap_or(Err((NOT_CONTROLLER_UNAVAILABLE, "no answer".to_owned())))
                    .map(|entries| {
                        entries
                            .iter()
                            .filter(|entry| wanted(keys, entry.name))
                            .map(|entry| topic_row(entry, request.include_synonyms))
                            .collect()
                    }),
                RESOURCE_BROKER => broker_rows(
                    settings,
                    resource.resource_name.as_str(),
                    keys,
                    request.include_synonyms,
                ),
                // No group takes a config of its own yet (IncrementalAlterConfigs refuses
                // them), so every group has no dynamic config: what `ConfigCommand --describe
                // --entity-type groups` prints from a Kafka broker for a group without any.
                RESOURCE_GROUP => Ok(Vec::new()),
                other => Err((
                    kafka_code::INVALID_REQUEST,
                    format!(
                        "unsupported resource type {other}: Sluice describes topics, brokers and groups"
                    ),
                )),
            };
            let entry = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match rows {
                // The protocol crate defaults the message to "", Kafka sends null on success.
                Ok(configs) => entry.with_configs(configs).with_error_message(None),
                Err((code, text)) => entry
                    .with_error_code(code)
                    .with_error_message(message(text)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The new value of a list config after APPEND or SUBTRACT of the comma-separated `change`.
fn edit_list(current: &str, change: &str, append: bool) -> String {
    let mut items: Vec<&str> = current
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    for item in change
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        if append {
            if !items.contains(&item) {
                items.push(item);
            }
        } else {
            items.retain(|existing| *existing != item);
        }
    }
    items.join(",")
}

/// One resource's operations as the command's `set` list, checked without state beyond
/// `current` (the topic's configs with defaults).
fn plan_alter(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    current: &[ConfigEntry],
) -> Result<Vec<(String, Option<String>)>, Failure> {
    let mut set: Vec<(String, Option<String>)> = Vec::with_capacity(configs.len());
    for config in configs {
        let name = config.name.as_str();
        if set.iter().any(|(seen, _)| seen == name) {
            return Err((
                kafka_code::INVALID_REQUEST,
                format!("config '{name}' appears twice in one resource"),
            ));
        }
        let value = config.value.as_ref().map(StrBytes::as_str);
        let invalid_request = |text: String| (kafka_code::INVALID_REQUEST, text);
        let new_value = match config.config_operation {
            OP_DELETE => {
                if !is_known_config(name) {
                    return Err(unknown_config(name));
                }
                None
            }
            OP_SET | OP_APPEND | OP_SUBTRACT => {
                let value = value.ok_or_else(|| {
                    invalid_request(format!("null value is only allowed for DELETE of '{name}'"))
                })?;
                let value = if config.config_operation == OP_SET {
                    value.to_owned()
                } else {
                    if !is_known_config(name) {
                        return Err(unknown_config(name));
                    }
                    if !is_list_config(name) {
                        return Err(invalid_request(format!(
                            "APPEND and SUBTRACT are only allowed for list configs, not '{name}'"
                        )));
                    }
                    let existing = current
                        .iter()
                        .find(|entry| entry.name == name)
                        .map(|entry| entry.value.as_str())
                        .unwrap_or_default();
                    edit_list(existing, value, config.config_operation == OP_APPEND)
                };
                validate_new_config(name, &value).map_err(|error| from_metadata(&error))?;
                Some(value)
            }
            other => return Err(invalid_request(format!("unknown config operation {other}"))),
        };
        set.push((name.to_owned(), new_value));
    }
    Ok(set)
}

pub async fn incremental_alter_configs(
    core: &CoreHandle,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let topic_names: Arc<Vec<String>> = Arc::new(
        request
            .resources
            .iter()
            .filter(|resource| resource.resource_type == RESOURCE_TOPIC)
            .map(|resource| resource.resource_name.as_str().to_owned())
            .collect(),
    );
    let query = Arc::clone(&topic_names);
    let mut topics = core
        .query(move |state| {
            query
                .iter()
                .map(|name| {
                    validate_topic_name(name).map_err(|error| from_metadata(&error))?;
                    let topic_id = state.topic_id_by_name(name).ok_or((
                        kafka_code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic '{name}'"),
                    ))?;
                    let configs = state
                        .topic_configs(topic_id)
                        .map_err(|error| from_metadata(&error))?;
                    Ok((topic_id, configs))
                })
                .collect::<Vec<Result<(TopicId, Vec<ConfigEntry>), Failure>>>()
        })
        .await
        .unwrap_or_else(|error| {
            vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); topic_names.len()]
        })
        .into_iter();

    let mut commands = Vec::new();
    let planned: Vec<Result<Option<usize>, Failure>> = request
        .resources
        .iter()
        .map(|resource| {
            let (kind, name) = (resource.resource_type, &resource.resource_name);
            let named_twice = request
                .resources
                .iter()
                .filter(|other| other.resource_type == kind && other.resource_name == *name)
                .count()
                > 1;
            let topic = (kind == RESOURCE_TOPIC).then(|| topics.next());
            if named_twice {
                return Err((
                    kafka_code::INVALID_REQUEST,
                    "resource named twice in one request".to_owned(),
                ));
            }
            match kind {
                RESOURCE_TOPIC => {
                    let (topic_id, current) = topic
                        .flatten()
                        .unwrap_or(Err((NOT_CONTROLLER_UNAVAILABLE, "no answer".to_owned())))?;
                    let set = plan_alter(&resource.configs, &current)?;
                    if request.validate_only {
                        return Ok(None);
                    }
                    commands.push(Command::AlterTopicConfigs { topic_id, set });
                    Ok(Some(commands.len() - 1))
                }
                RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => Err((
                    kafka_code::INVALID_REQUEST,
                    "dynamic broker configs are not supported: Sluice agents read their settings \
                     from their configuration file (TOML, environment, flags) at start"
                        .to_owned(),
                )),
                other => Err((
                    kafka_code::INVALID_REQUEST,
                    format!("unsupported resource type {other}: Sluice alters topic configs only"),
                )),
            }
        })
        .collect();

    let outcomes: Vec<Result<(), Failure>> = if commands.is_empty() {
        Vec::new()
    } else {
        let count = commands.len();
        match core.commands(commands).await {
            Ok(outcomes) => outcomes
                .iter()
                .map(|outcome| {
                    outcome
                        .as_ref()
                        .map(|_| ())
                        .map_err(|failure| match failure {
                            CommandFailure::Rejected(error) => from_metadata(error),
                            CommandFailure::LogFailed { code, reason } => (*code, reason.clone()),
                        })
                })
                .collect(),
            Err(error) => vec![Err((NOT_CONTROLLER_UNAVAILABLE, error.to_string())); count],
        }
    };
    let responses = request
        .resources
        .iter()
        .zip(planned)
        .map(|(resource, plan)| {
            let outcome = plan.and_then(|index| match index {
                None => Ok(()),
                Some(index) => outcomes
                    .get(index)
                    .cloned()
                    .unwrap_or(Err((NOT_CONTROLLER_UNAVAILABLE, "no outcome".to_owned()))),
            });
            let entry = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match outcome {
                Ok(()) => entry.with_error_message(None),
                Err((code, text)) => entry
                    .with_error_code(code)
                    .with_error_message(message(text)),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "configs_tests.rs"]
mod tests;
