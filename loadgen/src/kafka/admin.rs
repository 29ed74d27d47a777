//! Topic set-up: create the topic if it is missing, then wait until every partition has a leader.
//! Transient refusals while the broker settles are retried until the set-up limit (see
//! [`super::retry`]); what is still not ready then is an error naming the topic.
//!
//! An existing topic is used as it is, whatever its partition count (the run reports the count it
//! actually used): changing a topic someone else may be using is not a load generator's call.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use super::retry;
use crate::options::Settings;

/// How long topic creation and leader election may take before the run gives up.
/// Generous: Apache Kafka on 2 busy cores takes tens of seconds to elect 10,000 partitions.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a topic that is to be read, not created, may be absent from the metadata (a broker
/// that has just restarted may not list it at once).
const TOPIC_MISSING_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between metadata polls while waiting for leaders.
const METADATA_RETRY: Duration = Duration::from_millis(200);

/// Why the topic could not be made ready.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The client failed (connection, protocol, authorisation...).
    #[error("topic {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The broker refused to create the topic.
    #[error("topic {topic}: creation failed: {code:?}")]
    Create {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The topic is not there to be read (and is not created).
    #[error("topic {topic}: does not exist (still missing after {TOPIC_MISSING_TIMEOUT:?})")]
    Missing {
        /// The topic.
        topic: String,
    },
    /// The topic was missing, or partitions still had no leader, when the timeout ran out.
    #[error("topic {topic}: missing or partitions without a leader after {TOPIC_READY_TIMEOUT:?}")]
    NotReady {
        /// The topic.
        topic: String,
    },
}

/// Makes sure the settings' topic exists with leaders for all partitions; returns its partition
/// ids in ascending order. Blocking (metadata calls); run it off the async runtime's workers.
pub fn ensure_topic(settings: &Settings) -> Result<Vec<i32>, TopicError> {
    ready_topic(settings, true)
}

/// Waits until the settings' topic exists with leaders for all partitions, without creating it
/// (a replay reads a topic someone filled); returns its partition ids in ascending order.
pub fn existing_topic(settings: &Settings) -> Result<Vec<i32>, TopicError> {
    ready_topic(settings, false)
}

fn ready_topic(settings: &Settings, create: bool) -> Result<Vec<i32>, TopicError> {
    let topic = settings.topic.as_str();
    let kafka = |source| TopicError::Kafka { topic: topic.to_owned(), source };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        // Without this a metadata request for a missing topic makes a broker with
        // `auto.create.topics.enable` create it with its default partition count.
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(kafka)?;
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    // Created, or found to exist already: from then on only the leaders are waited for.
    let mut exists = !create;
    let started = Instant::now();
    loop {
        // A transient error (the broker settling after CreateTopics, a dropped connection) is
        // the same as "not ready yet": metadata requests change nothing, so they are repeated.
        match topic_state(&admin, topic, deadline) {
            Ok(TopicState::Ready(partitions)) => return Ok(partitions),
            Ok(TopicState::Missing) if !create && started.elapsed() >= TOPIC_MISSING_TIMEOUT => {
                return Err(TopicError::Missing { topic: topic.to_owned() });
            }
            Ok(_) => {}
            Err(error) if retry::is_transient_error(&error) => {}
            Err(error) => return Err(kafka(error)),
        }
        if !exists {
            exists = create_topic(&admin, settings, deadline)?;
        }
        if Instant::now() >= deadline {
            return Err(TopicError::NotReady { topic: topic.to_owned() });
        }
        std::thread::sleep(METADATA_RETRY);
    }
}

/// Asks for the topic; `Ok(true)` once it was created or already existed, `Ok(false)` after a
/// transient refusal (asked again on the next round).
fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    settings: &Settings,
    deadline: Instant,
) -> Result<bool, TopicError> {
    let topic = settings.topic.as_str();
    let new_topic = NewTopic::new(
        topic,
        i32::try_from(settings.partitions).unwrap_or(i32::MAX),
        TopicReplication::Fixed(i32::from(settings.replication_factor)),
    );
    let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = match block_on(admin.create_topics([&new_topic], &options)) {
        Ok(results) => results,
        Err(error) if retry::is_transient_error(&error) => return Ok(false),
        Err(source) => return Err(TopicError::Kafka { topic: topic.to_owned(), source }),
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) if retry::is_transient(code) => return Ok(false),
            Err((_, code)) => return Err(TopicError::Create { topic: topic.to_owned(), code }),
        }
    }
    Ok(true)
}

/// What the metadata says about a topic.
#[derive(Debug, PartialEq, Eq)]
enum TopicState {
    /// Not in the metadata (or named with an error).
    Missing,
    /// Exists, but some partition has no leader yet.
    NoLeaders,
    /// Exists with a leader for every partition: the partition ids, ascending.
    Ready(Vec<i32>),
}

/// The topic's state according to one metadata request.
fn topic_state(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    deadline: Instant,
) -> Result<TopicState, KafkaError> {
    let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
        return Ok(TopicState::Missing);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(TopicState::Missing);
    }
    if found.partitions().iter().any(|partition| partition.leader() < 0 || partition.error().is_some()) {
        return Ok(TopicState::NoLeaders);
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|partition| partition.id()).collect();
    partitions.sort_unstable();
    Ok(TopicState::Ready(partitions))
}

/// Waits for an admin future on this thread by parking between polls: the admin client resolves
/// its futures from its own background thread, so no async runtime is involved.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};

    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
