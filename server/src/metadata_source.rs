//! The seam between the Kafka front end and whatever owns topic metadata.
//!
//! The network cores answer Metadata requests through [`MetadataSource`]. In the agent the source
//! is [`crate::metadata_core::CoreHandle`] (a message over a cross-core channel, answered with a
//! oneshot), which is why the methods return futures and why the source is cloned into each core
//! rather than shared behind a lock. [`InMemoryMetadataStub`] remains for protocol-only unit
//! tests: it keeps topics in a process-wide map behind a mutex, which the real source must not do
//! on the request path.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// One topic as the Metadata API reports it. Every partition is led by this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Kafka topic id (KIP-516), a UUID.
    pub topic_id: [u8; 16],
    pub partition_count: u32,
    pub is_internal: bool,
}

/// Which topics a Metadata request asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicQuery {
    /// Every topic (the request's topic list was null, or empty in version 0).
    All,
    /// These names; missing ones are created with `create_missing_partitions` partitions when
    /// that is `Some` (the request allowed it and so does the agent's configuration).
    Named {
        names: Vec<String>,
        create_missing_partitions: Option<u32>,
    },
}

/// Why one named topic could not be described. Maps onto Kafka error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("unknown topic")]
    Unknown,
    #[error("invalid topic name: {reason}")]
    InvalidName { reason: String },
}

/// The answer for one requested topic, in request order.
pub type TopicAnswer = (String, Result<TopicMetadata, TopicError>);

/// A failure of the source as a whole (not of one topic): the request cannot be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("metadata core unavailable: {reason}")]
    Unavailable { reason: String },
}

/// Where a network core gets cluster and topic metadata from.
///
/// Contract: `topics` returns one answer per requested name for [`TopicQuery::Named`] (same
/// order, duplicates answered each time), every topic for [`TopicQuery::All`]; a topic created
/// because of `create_missing_partitions` is durable in the metadata log when the future
/// resolves. The source is cloned once per network core; clones share state.
pub trait MetadataSource: Clone + Send + 'static {
    /// The cluster id reported to clients (stable for the life of the bucket).
    fn cluster_id(&self) -> String;

    /// Describes topics, creating missing ones when the query allows.
    fn topics(
        &self,
        query: TopicQuery,
    ) -> impl Future<Output = Result<Vec<TopicAnswer>, MetadataError>>;
}

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Kafka's topic-name rule: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason: &str| {
        Err(TopicError::InvalidName {
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// STUB, to be replaced by the engine's metadata core: topics in a shared in-memory map.
#[derive(Debug, Clone)]
pub struct InMemoryMetadataStub {
    cluster_id: String,
    topics: Arc<Mutex<BTreeMap<String, TopicMetadata>>>,
}

impl InMemoryMetadataStub {
    pub fn new(cluster_id: impl Into<String>) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            topics: Arc::default(),
        }
    }

    /// Adds (or replaces) a topic; returns its metadata.
    pub fn create_topic(
        &self,
        name: &str,
        partition_count: u32,
    ) -> Result<TopicMetadata, TopicError> {
        validate_topic_name(name)?;
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let topic = TopicMetadata {
            name: name.to_owned(),
            topic_id: stub_topic_id(name),
            partition_count,
            is_internal: false,
        };
        topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }
}

/// A deterministic, non-nil id so that tests can predict it; the engine will assign real ones.
fn stub_topic_id(name: &str) -> [u8; 16] {
    // FNV-1a over the name, spread over two halves; good enough for a stub.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut id = [0_u8; 16];
    let (high, low) = id.split_at_mut(8);
    high.copy_from_slice(&hash.to_be_bytes());
    low.copy_from_slice(&(hash.rotate_left(29) | 1).to_be_bytes());
    id
}

impl MetadataSource for InMemoryMetadataStub {
    fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    async fn topics(&self, query: TopicQuery) -> Result<Vec<TopicAnswer>, MetadataError> {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let answers = match query {
            TopicQuery::All => topics
                .values()
                .map(|topic| (topic.name.clone(), Ok(topic.clone())))
                .collect(),
            TopicQuery::Named {
                names,
                create_missing_partitions,
            } => names
                .into_iter()
                .map(|name| {
                    let answer = match (topics.get(&name), create_missing_partitions) {
                        (Some(topic), _) => Ok(topic.clone()),
                        (None, Some(partition_count)) => validate_topic_name(&name).map(|()| {
                            let topic = TopicMetadata {
                                name: name.clone(),
                                topic_id: stub_topic_id(&name),
                                partition_count,
                                is_internal: false,
                            };
                            topics.insert(name.clone(), topic.clone());
                            topic
                        }),
                        (None, None) => validate_topic_name(&name).and(Err(TopicError::Unknown)),
                    };
                    (name, answer)
                })
                .collect(),
        };
        Ok(answers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stub_creates_only_when_allowed_and_lists_all() {
        let stub = InMemoryMetadataStub::new("c");
        let query = |create| TopicQuery::Named {
            names: vec!["orders".to_owned(), "bad name".to_owned()],
            create_missing_partitions: create,
        };
        let answers = block_on(stub.topics(query(None))).unwrap();
        assert_eq!(answers[0].1, Err(TopicError::Unknown));
        assert!(matches!(answers[1].1, Err(TopicError::InvalidName { .. })));

        let answers = block_on(stub.topics(query(Some(3)))).unwrap();
        let created = answers[0].1.clone().unwrap();
        assert_eq!(
            (created.name.as_str(), created.partition_count),
            ("orders", 3)
        );
        assert_ne!(created.topic_id, [0; 16]);
        assert!(matches!(answers[1].1, Err(TopicError::InvalidName { .. })));

        let all = block_on(stub.topics(TopicQuery::All)).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, Ok(created));
    }
}
