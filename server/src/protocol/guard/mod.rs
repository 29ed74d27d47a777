//! ACL checks of each API, with Kafka's error codes (`KafkaApis`): the part of a request the
//! connection may not touch is taken out before the handler runs and answered here, or the
//! handler's answer is filtered after it. Handlers stay unaware of ACLs; the dispatcher calls
//! these only when an authorizer is configured ([`RequestAuth::enabled`]), so an agent without
//! one pays nothing. Decisions are cached per connection (see [`crate::auth`]).
//!
//! | API | needs | denied |
//! |---|---|---|
//! | Produce | WRITE topic | TOPIC_AUTHORIZATION_FAILED (29) per partition |
//! | Fetch | READ topic | 29 per partition, no records |
//! | ListOffsets | DESCRIBE topic | 29 per partition |
//! | Metadata | DESCRIBE topic (auto-creation: CREATE cluster or topic) | topic hidden (listing all) or 29 (named) |
//! | InitProducerId (idempotent) | IDEMPOTENT_WRITE cluster, or WRITE on some topic | CLUSTER_AUTHORIZATION_FAILED (31) |
//! | CreateTopics | CREATE cluster or topic | 29 |
//! | DeleteTopics | DELETE topic | 29 |
//! | CreatePartitions | ALTER topic | 29 |
//! | DeleteRecords | DELETE topic | 29 per partition |
//! | DescribeConfigs / IncrementalAlterConfigs | DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, cluster or group | 29 / 31 / 30 |
//! | group APIs | READ group (DescribeGroups, ConsumerGroupDescribe: DESCRIBE; DeleteGroups: DELETE) | GROUP_AUTHORIZATION_FAILED (30) |
//! | OffsetCommit | READ group, READ topic | 30, or 29 per partition |
//! | OffsetFetch | DESCRIBE group, DESCRIBE topic | 30 (per group from v8), 29 per partition |
//! | ConsumerGroupHeartbeat | READ group, DESCRIBE on each subscribed topic | 30, 29 |
//! | FindCoordinator | DESCRIBE group (transactional id) | 30 (53) |
//! | ListGroups | DESCRIBE cluster, else DESCRIBE per group | groups left out |
//! | DescribeLogDirs, DescribeQuorum / ElectLeaders | DESCRIBE / ALTER cluster | 31 |

use std::collections::HashSet;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::metadata::{AclOperation, AclResourceType};
use sluice_engine::types::TopicId;

use super::fetch_frame::{FetchAnswer, PartitionAnswer};
use crate::auth::RequestAuth;
use crate::metadata_core::CoreHandle;

mod groups;

pub use groups::{
    find_coordinator, list_groups, offset_commit, offset_fetch_groups, offset_fetch_response,
    refuse, split_groups,
};

/// Kafka's codes for a denied topic, group, cluster and transactional id.
pub const TOPIC_DENIED: i16 = kafka_protocol::ResponseError::TopicAuthorizationFailed.code();
pub const GROUP_DENIED: i16 = kafka_protocol::ResponseError::GroupAuthorizationFailed.code();
pub const CLUSTER_DENIED: i16 = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
pub const TRANSACTIONAL_ID_DENIED: i16 =
    kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code();

/// ConfigResource types (Kafka's `ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;
const CONFIG_GROUP: i8 = 32;

async fn topic_allowed(auth: &RequestAuth<'_>, operation: AclOperation, name: &str) -> bool {
    auth.allowed(operation, AclResourceType::Topic, name).await
}

/// Produce: topics without WRITE are taken out and answered 29.
pub async fn produce(
    auth: &RequestAuth<'_>,
    mut request: ProduceRequest,
) -> (ProduceRequest, Vec<TopicProduceResponse>) {
    // The usual case, every topic allowed, leaves the request as it is (no new vector).
    let mut all_allowed = true;
    for topic in &request.topic_data {
        all_allowed &= topic_allowed(auth, AclOperation::Write, topic.name.as_str()).await;
    }
    if all_allowed {
        return (request, Vec::new());
    }
    let mut denied = Vec::new();
    let mut allowed = Vec::with_capacity(request.topic_data.len());
    for topic in std::mem::take(&mut request.topic_data) {
        if topic_allowed(auth, AclOperation::Write, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            let partitions = topic
                .partition_data
                .iter()
                .map(|partition| {
                    PartitionProduceResponse::default()
                        .with_index(partition.index)
                        .with_error_code(TOPIC_DENIED)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            denied.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(partitions),
            );
        }
    }
    request.topic_data = allowed;
    (request, denied)
}

/// Topic names of ids, read from the metadata core; `None` for ids it does not know.
async fn topic_names(core: &CoreHandle, ids: Vec<uuid::Uuid>) -> Vec<Option<String>> {
    let count = ids.len();
    core.query(move |state| {
        ids.iter()
            .map(|id| {
                state
                    .topic(TopicId::from_uuid(*id))
                    .map(|topic| topic.name().to_owned())
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![None; count])
}

/// Fetch: partitions of topics without READ lose their records and answer 29 (also those of a
/// fetch session's earlier requests). Topics named by id (v13+) are looked up by name first.
pub async fn fetch(auth: &RequestAuth<'_>, core: &CoreHandle, answer: &mut FetchAnswer) {
    let by_id: Vec<uuid::Uuid> = answer
        .topics
        .iter()
        .filter(|topic| topic.topic.is_empty() && !topic.topic_id.is_nil())
        .map(|topic| topic.topic_id)
        .collect();
    let mut names = if by_id.is_empty() {
        Vec::new()
    } else {
        topic_names(core, by_id).await
    }
    .into_iter();
    for topic in &mut answer.topics {
        let name = if topic.topic.is_empty() && !topic.topic_id.is_nil() {
            match names.next().flatten() {
                Some(name) => name,
                // Unknown id: the handler already answered UNKNOWN_TOPIC_ID.
                None => continue,
            }
        } else {
            topic.topic.to_string()
        };
        if !topic_allowed(auth, AclOperation::Read, &name).await {
            for partition in &mut topic.partitions {
                *partition = PartitionAnswer {
                    partition_index: partition.partition_index,
                    error_code: TOPIC_DENIED,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted_transactions: None,
                    preferred_read_replica: -1,
                    records: None,
                };
            }
        }
    }
}

/// ListOffsets: topics without DESCRIBE are taken out and answered 29.
pub async fn list_offsets(
    auth: &RequestAuth<'_>,
    mut request: ListOffsetsRequest,
) -> (ListOffsetsRequest, Vec<ListOffsetsTopicResponse>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        if topic_allowed(auth, AclOperation::Describe, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(TOPIC_DENIED)
                        .with_timestamp(-1)
                        .with_offset(-1)
                })
                .collect();
            denied.push(
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
    }
    request.topics = allowed;
    (request, denied)
}

/// What a Metadata request turns into: the request with only describable named topics, the
/// names denied, the names asked (`None`: all topics), and whether auto-creation stays on.
pub struct MetadataPlan {
    pub request: MetadataRequest,
    cluster_operations: bool,
    topic_operations: bool,
    denied: Vec<String>,
    asked: Option<HashSet<String>>,
    pub auto_create_partitions: Option<u32>,
}

/// Metadata, before the handler: named topics without DESCRIBE are taken out; auto-creation
/// stays on only with CREATE on the cluster or on every named topic.
pub async fn metadata_request(
    auth: &RequestAuth<'_>,
    mut request: MetadataRequest,
    auto_create_partitions: Option<u32>,
) -> MetadataPlan {
    let cluster_operations = request.include_cluster_authorized_operations;
    let topic_operations = request.include_topic_authorized_operations;
    let Some(topics) = request.topics.take() else {
        return MetadataPlan {
            cluster_operations,
            topic_operations,
            request,
            denied: Vec::new(),
            asked: None,
            auto_create_partitions,
        };
    };
    let mut denied = Vec::new();
    let mut asked = HashSet::new();
    let mut allowed = Vec::with_capacity(topics.len());
    let cluster_create = auth.allowed_on_cluster(AclOperation::Create).await;
    // Without CREATE on the cluster, every named topic must allow CREATE.
    let mut may_create = true;
    let mut by_id = false;
    for topic in topics {
        let Some(name) = topic.name.as_ref().map(|name| name.to_string()) else {
            // Named by id: left to the handler, its answer filtered by name after.
            by_id = true;
            allowed.push(topic);
            continue;
        };
        asked.insert(name.clone());
        if topic_allowed(auth, AclOperation::Describe, &name).await {
            if !cluster_create && may_create {
                may_create = topic_allowed(auth, AclOperation::Create, &name).await;
            }
            allowed.push(topic);
        } else {
            denied.push(name);
        }
    }
    request.topics = Some(allowed);
    MetadataPlan {
        cluster_operations,
        topic_operations,
        request,
        denied,
        // v0 reads an empty list as "all topics": the answer is cut back to what was asked.
        asked: (!by_id).then_some(asked),
        auto_create_partitions: auto_create_partitions.filter(|_| cluster_create || may_create),
    }
}

/// Metadata, after the handler: topics without DESCRIBE are hidden, the denied named ones are
/// answered 29, and the authorized operations asked for are the connection's.
pub async fn metadata_response(
    auth: &RequestAuth<'_>,
    response: &mut MetadataResponse,
    plan: MetadataPlan,
) {
    if plan.cluster_operations {
        response.cluster_authorized_operations = cluster_operations(auth).await;
    }
    if plan.topic_operations {
        for topic in &mut response.topics {
            if let Some(name) = &topic.name {
                topic.topic_authorized_operations = operations(
                    auth,
                    AclResourceType::Topic,
                    name.as_str(),
                    TOPIC_OPERATIONS,
                )
                .await;
            }
        }
    }
    let mut visible = Vec::with_capacity(response.topics.len());
    for topic in std::mem::take(&mut response.topics) {
        let name = topic.name.as_ref().map(|name| name.as_str().to_owned());
        let keep = match &name {
            None => true,
            Some(name) => {
                plan.asked.as_ref().is_none_or(|asked| asked.contains(name))
                    && topic_allowed(auth, AclOperation::Describe, name).await
            }
        };
        if keep {
            visible.push(topic);
        }
    }
    response.topics = visible;
    for name in plan.denied {
        response.topics.push(
            MetadataResponseTopic::default()
                .with_error_code(TOPIC_DENIED)
                .with_name(Some(TopicName(StrBytes::from_string(name)))),
        );
    }
}

/// CreateTopics: topics without CREATE (cluster or topic) are taken out and answered 29.
pub async fn create_topics(
    auth: &RequestAuth<'_>,
    mut request: CreateTopicsRequest,
) -> (CreateTopicsRequest, Vec<CreatableTopicResult>) {
    if auth.allowed_on_cluster(AclOperation::Create).await {
        return (request, Vec::new());
    }
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        if topic_allowed(auth, AclOperation::Create, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            denied.push(
                CreatableTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
        }
    }
    request.topics = allowed;
    (request, denied)
}

/// DeleteTopics: topics without DELETE are taken out and answered 29 (ids are looked up).
pub async fn delete_topics(
    auth: &RequestAuth<'_>,
    core: &CoreHandle,
    mut request: DeleteTopicsRequest,
) -> (DeleteTopicsRequest, Vec<DeletableTopicResult>) {
    let denied_result = |name: Option<TopicName>, topic_id: uuid::Uuid| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(topic_id)
            .with_error_code(TOPIC_DENIED)
            .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
    };
    let mut denied = Vec::new();
    let mut names = Vec::new();
    for name in std::mem::take(&mut request.topic_names) {
        if topic_allowed(auth, AclOperation::Delete, name.as_str()).await {
            names.push(name);
        } else {
            denied.push(denied_result(Some(name), uuid::Uuid::nil()));
        }
    }
    request.topic_names = names;
    let ids: Vec<uuid::Uuid> = request
        .topics
        .iter()
        .filter(|topic| topic.name.is_none())
        .map(|topic| topic.topic_id)
        .collect();
    let mut resolved = if ids.is_empty() {
        Vec::new()
    } else {
        topic_names(core, ids).await
    }
    .into_iter();
    let mut states = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        let name = match &topic.name {
            Some(name) => Some(name.to_string()),
            None => resolved.next().flatten(),
        };
        match name {
            // An unknown id: the handler answers UNKNOWN_TOPIC_ID.
            None => states.push(topic),
            Some(name) if topic_allowed(auth, AclOperation::Delete, &name).await => {
                states.push(topic)
            }
            Some(_) => denied.push(denied_result(topic.name, topic.topic_id)),
        }
    }
    request.topics = states;
    (request, denied)
}

/// CreatePartitions: topics without ALTER are taken out; their names are returned.
pub async fn create_partitions(
    auth: &RequestAuth<'_>,
    mut request: CreatePartitionsRequest,
) -> (CreatePartitionsRequest, Vec<TopicName>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        if topic_allowed(auth, AclOperation::Alter, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            denied.push(topic.name);
        }
    }
    request.topics = allowed;
    (request, denied)
}

/// DeleteRecords: topics without DELETE are taken out and answered 29.
pub async fn delete_records(
    auth: &RequestAuth<'_>,
    mut request: DeleteRecordsRequest,
) -> (DeleteRecordsRequest, Vec<DeleteRecordsTopicResult>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for topic in std::mem::take(&mut request.topics) {
        if topic_allowed(auth, AclOperation::Delete, topic.name.as_str()).await {
            allowed.push(topic);
        } else {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(TOPIC_DENIED)
                })
                .collect();
            denied.push(
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
    }
    request.topics = allowed;
    (request, denied)
}

/// The code a config resource answers when `operation` on it is denied, `None` when allowed.
async fn config_resource_denied(
    auth: &RequestAuth<'_>,
    operation: AclOperation,
    resource_type: i8,
    name: &str,
) -> Option<i16> {
    match resource_type {
        CONFIG_TOPIC => (!topic_allowed(auth, operation, name).await).then_some(TOPIC_DENIED),
        CONFIG_GROUP => {
            (!auth.allowed(operation, AclResourceType::Group, name).await).then_some(GROUP_DENIED)
        }
        CONFIG_BROKER | CONFIG_BROKER_LOGGER => {
            (!auth.allowed_on_cluster(operation).await).then_some(CLUSTER_DENIED)
        }
        // Anything else is refused by the handler.
        _ => None,
    }
}

/// DescribeConfigs: resources without DESCRIBE_CONFIGS are taken out; `(type, name, code)`.
pub async fn describe_configs(
    auth: &RequestAuth<'_>,
    mut request: DescribeConfigsRequest,
) -> (DescribeConfigsRequest, Vec<(i8, StrBytes, i16)>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for resource in std::mem::take(&mut request.resources) {
        match config_resource_denied(
            auth,
            AclOperation::DescribeConfigs,
            resource.resource_type,
            resource.resource_name.as_str(),
        )
        .await
        {
            Some(code) => denied.push((resource.resource_type, resource.resource_name, code)),
            None => allowed.push(resource),
        }
    }
    request.resources = allowed;
    (request, denied)
}

/// IncrementalAlterConfigs: resources without ALTER_CONFIGS are taken out; `(type, name, code)`.
pub async fn incremental_alter_configs(
    auth: &RequestAuth<'_>,
    mut request: IncrementalAlterConfigsRequest,
) -> (IncrementalAlterConfigsRequest, Vec<(i8, StrBytes, i16)>) {
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for resource in std::mem::take(&mut request.resources) {
        match config_resource_denied(
            auth,
            AclOperation::AlterConfigs,
            resource.resource_type,
            resource.resource_name.as_str(),
        )
        .await
        {
            Some(code) => denied.push((resource.resource_type, resource.resource_name, code)),
            None => allowed.push(resource),
        }
    }
    request.resources = allowed;
    (request, denied)
}

/// The message clients print with a denied request.
pub fn denied_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed."))
}

/// Operations Kafka reports on a topic, a group and the cluster (`AclEntry.supportedOperations`).
const TOPIC_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];
const GROUP_OPERATIONS: &[AclOperation] = &[
    AclOperation::Read,
    AclOperation::Describe,
    AclOperation::Delete,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];
const CLUSTER_OPERATIONS: &[AclOperation] = &[
    AclOperation::Create,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::Alter,
    AclOperation::Describe,
];

/// The bit set (bit = Kafka's operation code) of `operations` the connection may perform.
async fn operations(
    auth: &RequestAuth<'_>,
    resource_type: AclResourceType,
    name: &str,
    operations: &[AclOperation],
) -> i32 {
    let mut allowed = 0i32;
    for operation in operations {
        if auth.allowed(*operation, resource_type, name).await {
            allowed |= 1 << operation.code();
        }
    }
    allowed
}

/// The authorized operations of the cluster (DescribeCluster, Metadata).
pub async fn cluster_operations(auth: &RequestAuth<'_>) -> i32 {
    operations(
        auth,
        AclResourceType::Cluster,
        sluice_engine::metadata::acl::CLUSTER_RESOURCE_NAME,
        CLUSTER_OPERATIONS,
    )
    .await
}

/// The authorized operations of a group (DescribeGroups, ConsumerGroupDescribe).
pub async fn group_operations(auth: &RequestAuth<'_>, group: &str) -> i32 {
    operations(auth, AclResourceType::Group, group, GROUP_OPERATIONS).await
}
