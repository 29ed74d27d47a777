//! The Kafka calls the soak makes itself: creating its topic with `retention.ms` (the load
//! generator creates topics without configs), and asking whether a restarted agent serves it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::groups::wire::{Connection, Versions};

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Limit on one answer while waiting for an agent (a restarted one answers within seconds).
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Creates `topic` with `partitions` and the topic `configs`, then waits (at most `limit`) until
/// every partition has a leader.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, String)],
    limit: Duration,
) -> anyhow::Result<()> {
    let connection = Connection::connect(bootstrap, "sluice-bench-soak")
        .await
        .context("connect")?;
    let versions = Versions::negotiate(&connection).await?;
    let version = versions
        .pick(ApiKey::CreateTopics, VersionRange { min: 2, max: 7 })
        .map_err(anyhow::Error::msg)?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_num_partitions(partitions)
                .with_replication_factor(if version >= 4 { -1 } else { 1 })
                .with_configs(
                    configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string((*name).to_owned()))
                                .with_value(Some(StrBytes::from_string(value.clone())))
                        })
                        .collect(),
                ),
        ]);
    let answer = connection.call(version, &request).await?.body;
    for created in &answer.topics {
        anyhow::ensure!(
            created.error_code == 0 || created.error_code == TOPIC_ALREADY_EXISTS,
            "CreateTopics {topic}: error {} {:?}",
            created.error_code,
            created.error_message
        );
    }
    let deadline = Instant::now() + limit;
    while !serving(bootstrap, topic, partitions).await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic} has no leader for every partition after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Whether the agent answers a Metadata request for `topic` naming a leader for each of its
/// `partitions`. `Ok(false)` while it does not listen or answer yet; `Err` on a protocol error.
pub async fn serving(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<bool> {
    let Ok(connection) = Connection::connect(bootstrap, "sluice-bench-soak").await else {
        return Ok(false);
    };
    let Ok(Ok(versions)) = tokio::time::timeout(CALL_LIMIT, Versions::negotiate(&connection)).await
    else {
        return Ok(false);
    };
    let version = versions
        .pick(ApiKey::Metadata, VersionRange { min: 4, max: 12 })
        .map_err(anyhow::Error::msg)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_owned())),
        ))]));
    let Ok(answer) = connection
        .call_with_timeout(version, &request, CALL_LIMIT)
        .await
    else {
        return Ok(false);
    };
    Ok(answer.body.topics.iter().any(|found| {
        found.error_code == 0
            && i32::try_from(found.partitions.len()) == Ok(partitions)
            && found
                .partitions
                .iter()
                .all(|partition| partition.error_code == 0 && partition.leader_id.0 >= 0)
    }))
}
