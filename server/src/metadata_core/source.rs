//! The Metadata API's [`MetadataSource`], answered by the metadata core.
//!
//! Describing topics is one query on the metadata core. Auto-creation (Metadata naming a missing
//! topic, when both the agent and the client allow it) appends one `CreateTopic` per missing name
//! in a single log entry, then describes again: if another core created the same topic meanwhile,
//! the state machine rejects our duplicate and the second description finds theirs, so the
//! answer is the same either way.

use std::collections::BTreeMap;

use sluice_engine::metadata::MetadataState;

use super::CoreHandle;
use super::flusher::create_topic_command;
use crate::metadata_source::{
    MetadataError, MetadataSource, TopicAnswer, TopicError, TopicMetadata, TopicQuery,
    validate_topic_name,
};

fn describe(state: &MetadataState, name: &str) -> Result<TopicMetadata, TopicError> {
    match state.topic_by_name(name) {
        Some((topic_id, topic)) => Ok(TopicMetadata {
            name: name.to_owned(),
            topic_id: topic_id.0,
            partition_count: topic.partition_count(),
            is_internal: false,
        }),
        None => validate_topic_name(name).and(Err(TopicError::Unknown)),
    }
}

fn describe_all(state: &MetadataState, names: &[String]) -> Vec<TopicAnswer> {
    names
        .iter()
        .map(|name| (name.clone(), describe(state, name)))
        .collect()
}

fn unavailable(_: super::CoreUnavailable) -> MetadataError {
    MetadataError::Unavailable {
        reason: "the metadata core is not running".to_owned(),
    }
}

impl MetadataSource for CoreHandle {
    fn cluster_id(&self) -> String {
        CoreHandle::cluster_id(self).to_owned()
    }

    async fn topics(&self, query: TopicQuery) -> Result<Vec<TopicAnswer>, MetadataError> {
        match query {
            TopicQuery::All => self
                .query(|state| {
                    let names: Vec<String> =
                        state.topics().map(|(name, _)| name.to_owned()).collect();
                    describe_all(state, &names)
                })
                .await
                .map_err(unavailable),
            TopicQuery::Named {
                names,
                create_missing_partitions,
            } => {
                let names = std::sync::Arc::new(names);
                let query_names = std::sync::Arc::clone(&names);
                let answers = self
                    .query(move |state| describe_all(state, &query_names))
                    .await
                    .map_err(unavailable)?;
                let Some(partition_count) = create_missing_partitions else {
                    return Ok(answers);
                };
                let mut missing: Vec<&str> = answers
                    .iter()
                    .filter(|(_, answer)| matches!(answer, Err(TopicError::Unknown)))
                    .map(|(name, _)| name.as_str())
                    .collect();
                missing.sort_unstable();
                missing.dedup();
                if missing.is_empty() {
                    return Ok(answers);
                }
                let commands = missing
                    .iter()
                    .map(|name| create_topic_command(name, partition_count, BTreeMap::new()))
                    .collect();
                for outcome in self.commands(commands).await.map_err(unavailable)? {
                    if let Err(failure) = outcome {
                        // Usually "already exists" (another core won the race): described below.
                        tracing::debug!(%failure, "auto-create");
                    }
                }
                self.query(move |state| describe_all(state, &names))
                    .await
                    .map_err(unavailable)
            }
        }
    }
}
