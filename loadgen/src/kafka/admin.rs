//! Topic set-up: create the topic if it is missing, then wait until every partition has a leader.
//! Transient refusals while the broker settles are retried until the set-up limit (see
//! [`super::retry`]); what is still not ready then is an error naming the topic.
//!
//! An existing topic is used as it is, whatever its partition count (the run reports the count it
//! actually used): changing a topic someone else may be using is not a load generator's call.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
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
/// Partitions asked for in one CreateTopics or CreatePartitions request when the broker refuses
/// the whole count at once. Apache Kafka's KRaft controller writes at most 10,000 records per
/// request (`MAX_RECORDS_PER_USER_OP`): a topic record plus one per partition, so a 10,000-
/// partition topic fails with POLICY_VIOLATION unless it is created in steps.
const PARTITIONS_PER_REQUEST_MAX: u32 = 5_000;
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

/// A topic with leaders for all its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyTopic {
    /// Partition ids in ascending order.
    pub partitions: Vec<i32>,
    /// True if this call created the topic: every partition is empty, its end offset is 0, and
    /// nobody needs to ask the broker for it (Tansu takes minutes to answer ListOffsets for
    /// 10,000 partitions).
    pub created: bool,
}

/// Makes sure the settings' topic exists with leaders for all partitions. Blocking (metadata
/// calls); run it off the async runtime's workers.
pub fn ensure_topic(settings: &Settings) -> Result<ReadyTopic, TopicError> {
    ready_topic(settings, true)
}

/// Waits until the settings' topic exists with leaders for all partitions, without creating it
/// (a replay reads a topic someone filled); returns its partition ids in ascending order.
pub fn existing_topic(settings: &Settings) -> Result<Vec<i32>, TopicError> {
    ready_topic(settings, false).map(|ready| ready.partitions)
}

fn ready_topic(settings: &Settings, create: bool) -> Result<ReadyTopic, TopicError> {
    let topic = settings.topic.as_str();
    let kafka = |source| TopicError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap)
        // Without this a metadata request for a missing topic makes a broker with
        // `auto.create.topics.enable` create it with its default partition count.
        .set("allow.auto.create.topics", "false");
    for (key, value) in &settings.client_properties {
        config.set(key, value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(kafka)?;
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    // Created, or found to exist already: from then on only the leaders are waited for.
    let mut exists = !create;
    let mut created = false;
    let started = Instant::now();
    loop {
        // A transient error (the broker settling after CreateTopics, a dropped connection) is
        // the same as "not ready yet": metadata requests change nothing, so they are repeated.
        match topic_state(&admin, topic, deadline) {
            Ok(TopicState::Ready(partitions)) => {
                return Ok(ReadyTopic {
                    partitions,
                    created,
                });
            }
            Ok(TopicState::Missing) if !create && started.elapsed() >= TOPIC_MISSING_TIMEOUT => {
                return Err(TopicError::Missing {
                    topic: topic.to_owned(),
                });
            }
            Ok(_) => {}
            Err(error) if retry::is_transient_error(&error) => {}
            Err(error) => return Err(kafka(error)),
        }
        if !exists {
            match create_topic(&admin, settings, deadline)? {
                Some(Creation::Created) => (exists, created) = (true, true),
                Some(Creation::Existed) => exists = true,
                None => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(TopicError::NotReady {
                topic: topic.to_owned(),
            });
        }
        std::thread::sleep(METADATA_RETRY);
    }
}

/// What a CreateTopics request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creation {
    Created,
    Existed,
}

/// Asks for the topic; `Ok(Some(_))` once it was created or found to exist already, `Ok(None)`
/// after a transient refusal (asked again on the next round).
fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    settings: &Settings,
    deadline: Instant,
) -> Result<Option<Creation>, TopicError> {
    let topic = settings.topic.as_str();
    let new_topic = NewTopic::new(
        topic,
        i32::try_from(settings.partitions).unwrap_or(i32::MAX),
        TopicReplication::Fixed(i32::from(settings.replication_factor)),
    );
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = match block_on(admin.create_topics([&new_topic], &options)) {
        Ok(results) => results,
        Err(error) if retry::is_transient_error(&error) => return Ok(None),
        Err(source) => {
            return Err(TopicError::Kafka {
                topic: topic.to_owned(),
                source,
            });
        }
    };
    let mut creation = Creation::Created;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => creation = Creation::Existed,
            Err((_, code)) if retry::is_transient(code) => return Ok(None),
            Err((_, RDKafkaErrorCode::PolicyViolation))
                if settings.partitions > PARTITIONS_PER_REQUEST_MAX =>
            {
                create_in_steps(admin, settings, deadline)?;
            }
            Err((_, code)) => {
                return Err(TopicError::Create {
                    topic: topic.to_owned(),
                    code,
                });
            }
        }
    }
    Ok(Some(creation))
}

/// Creates the topic with [`PARTITIONS_PER_REQUEST_MAX`] partitions, then adds that many per
/// CreatePartitions request up to the settings' count. Every step is idempotent (an existing
/// topic, or one that already has the count, is a step done), and transient refusals are asked
/// again until `deadline`; it returns only once the topic has every partition, so no caller sees
/// a half-grown topic as ready.
fn create_in_steps(
    admin: &AdminClient<DefaultClientContext>,
    settings: &Settings,
    deadline: Instant,
) -> Result<(), TopicError> {
    let topic = settings.topic.as_str();
    let first = NewTopic::new(
        topic,
        i32::try_from(PARTITIONS_PER_REQUEST_MAX).unwrap_or(i32::MAX),
        TopicReplication::Fixed(i32::from(settings.replication_factor)),
    );
    let counts = partition_steps(settings.partitions, PARTITIONS_PER_REQUEST_MAX);
    for (step, &count) in counts.iter().enumerate() {
        loop {
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let options = AdminOptions::new().operation_timeout(Some(timeout));
            let outcome = if step == 0 {
                block_on(admin.create_topics([&first], &options))
            } else {
                let grow = NewPartitions::new(topic, usize::try_from(count).unwrap_or(usize::MAX));
                block_on(admin.create_partitions([&grow], &options))
            };
            let code = match outcome {
                Ok(results) => results
                    .into_iter()
                    .find_map(Result::err)
                    .map(|(_, code)| code),
                Err(error) if retry::is_transient_error(&error) => {
                    Some(RDKafkaErrorCode::RequestTimedOut)
                }
                Err(source) => {
                    return Err(TopicError::Kafka {
                        topic: topic.to_owned(),
                        source,
                    });
                }
            };
            match code {
                // Done now, or by an earlier attempt of this step.
                None
                | Some(
                    RDKafkaErrorCode::TopicAlreadyExists | RDKafkaErrorCode::InvalidPartitions,
                ) => break,
                Some(code) if retry::is_transient(code) && Instant::now() < deadline => {
                    std::thread::sleep(METADATA_RETRY);
                }
                Some(code) => {
                    return Err(TopicError::Create {
                        topic: topic.to_owned(),
                        code,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The partition counts a topic of `total` partitions passes through when created `step` at a
/// time: `step`, `2 × step`, …, `total`. Pure.
fn partition_steps(total: u32, step: u32) -> Vec<u32> {
    let step = step.max(1);
    let mut counts = vec![step.min(total)];
    while let Some(&last) = counts.last()
        && last < total
    {
        counts.push(last.saturating_add(step).min(total));
    }
    counts
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
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|candidate| candidate.name() == topic)
    else {
        return Ok(TopicState::Missing);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(TopicState::Missing);
    }
    if found
        .partitions()
        .iter()
        .any(|partition| partition.leader() < 0 || partition.error().is_some())
    {
        return Ok(TopicState::NoLeaders);
    }
    let mut partitions: Vec<i32> = found
        .partitions()
        .iter()
        .map(|partition| partition.id())
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_topics_grow_in_steps_that_end_at_the_count() {
        assert_eq!(partition_steps(10_000, 5_000), vec![5_000, 10_000]);
        assert_eq!(partition_steps(12_001, 5_000), vec![5_000, 10_000, 12_001]);
        assert_eq!(partition_steps(3, 5_000), vec![3]);
        assert_eq!(partition_steps(4, 0), vec![1, 2, 3, 4]);
    }
}
