//! Topic set-up: create the topic if it is missing, then wait until every partition has a leader.
//!
//! An existing topic is used as it is, whatever its partition count (the run reports the count it
//! actually used): changing a topic someone else may be using is not a load generator's call.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use crate::options::Settings;

/// How long topic creation and leader election may take before the run gives up.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Partitions still had no leader when the timeout ran out.
    #[error("topic {topic}: partitions without a leader after {TOPIC_READY_TIMEOUT:?}")]
    NotReady {
        /// The topic.
        topic: String,
    },
}

/// Makes sure the settings' topic exists with leaders for all partitions; returns its partition
/// ids in ascending order. Blocking (metadata calls); run it off the async runtime's workers.
pub fn ensure_topic(settings: &Settings) -> Result<Vec<i32>, TopicError> {
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
    if leader_partitions(&admin, topic, deadline).map_err(kafka)?.is_none() {
        let new_topic = NewTopic::new(
            topic,
            i32::try_from(settings.partitions).unwrap_or(i32::MAX),
            TopicReplication::Fixed(i32::from(settings.replication_factor)),
        );
        let options = AdminOptions::new().operation_timeout(Some(TOPIC_READY_TIMEOUT));
        let results = block_on(admin.create_topics([&new_topic], &options)).map_err(kafka)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(TopicError::Create { topic: topic.to_owned(), code }),
            }
        }
    }
    loop {
        if let Some(partitions) = leader_partitions(&admin, topic, deadline).map_err(kafka)? {
            return Ok(partitions);
        }
        if Instant::now() >= deadline {
            return Err(TopicError::NotReady { topic: topic.to_owned() });
        }
        std::thread::sleep(METADATA_RETRY);
    }
}

/// The topic's partition ids if it exists and every partition has a leader, else `None`.
fn leader_partitions(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    deadline: Instant,
) -> Result<Option<Vec<i32>>, KafkaError> {
    let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
        return Ok(None);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(None);
    }
    if found.partitions().iter().any(|partition| partition.leader() < 0 || partition.error().is_some()) {
        return Ok(None);
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|partition| partition.id()).collect();
    partitions.sort_unstable();
    Ok(Some(partitions))
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
