//! Retrying the idempotent set-up calls (metadata, watermarks, topic creation) through the short
//! window in which a broker has answered CreateTopics but is not yet ready to serve the topic.
//!
//! Apache Kafka shows it on a busy machine: the metadata already names a leader for every
//! partition, yet the first ListOffsets answers NOT_LEADER_OR_FOLLOWER (or
//! UNKNOWN_TOPIC_OR_PARTITION) until the partition's leader has loaded it. The calls retried here
//! change nothing on the broker (or, for CreateTopics, treat "already exists" as success), so
//! repeating them is safe. The produce path is not retried here: librdkafka retries produce
//! requests itself, and the load generator counts what still fails.
//!
//! Everything has a limit: a policy bounds the total time and the pause between attempts.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// No attempt starts after this much time.
    pub limit: Duration,
    /// Pause after the first failure; doubled after each further one.
    pub backoff_first: Duration,
    /// Longest pause.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// Set-up calls against a broker that may have created the topic a moment ago.
    pub const SET_UP: RetryPolicy = RetryPolicy {
        limit: Duration::from_secs(30),
        backoff_first: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
    };

    /// Offset lookups for many partitions at once: a broker that reads its object store per
    /// partition (Tansu) needs more than a minute for 1,000 of them. Within the runs' 120 s
    /// limit on consumers getting ready.
    pub const OFFSET_LOOKUP: RetryPolicy = RetryPolicy {
        limit: Duration::from_secs(110),
        ..RetryPolicy::SET_UP
    };
}

/// True for the errors a broker returns while a new topic's partitions settle (or while it is
/// briefly unreachable), after which the same call can succeed.
pub fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::ReplicaNotAvailable
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::KafkaStorageError
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::OffsetNotAvailable
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::TimedOutQueue
    )
}

/// True if `error` carries a transient code (see [`is_transient`]).
pub fn is_transient_error(error: &KafkaError) -> bool {
    error.rdkafka_error_code().is_some_and(is_transient)
}

/// Calls `call` until it succeeds, fails with an error that is not transient, or the policy's
/// limit passes (then the last error is returned). `call` receives the time left, to use as its
/// own timeout (at least one second).
pub fn retry<T>(
    policy: RetryPolicy,
    mut call: impl FnMut(Duration) -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = Instant::now() + policy.limit;
    let mut backoff = policy.backoff_first;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match call(left) {
            Ok(value) => return Ok(value),
            Err(error) if is_transient_error(&error) && Instant::now() + backoff < deadline => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(policy.backoff_max);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const QUICK: RetryPolicy = RetryPolicy {
        limit: Duration::from_secs(5),
        backoff_first: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
    };

    fn not_leader() -> KafkaError {
        KafkaError::MetadataFetch(RDKafkaErrorCode::NotLeaderForPartition)
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let result = retry(QUICK, |_| {
            calls += 1;
            if calls < 4 {
                Err(not_leader())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.unwrap(), 4);
    }

    #[test]
    fn other_errors_fail_at_once() {
        let mut calls = 0;
        let result: Result<(), _> = retry(QUICK, |_| {
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
        assert!(!is_transient(RDKafkaErrorCode::InvalidTopic));
        assert!(is_transient(RDKafkaErrorCode::UnknownTopicOrPartition));
    }

    #[test]
    fn retries_stop_at_the_limit_with_the_last_error() {
        let policy = RetryPolicy {
            limit: Duration::from_millis(30),
            ..QUICK
        };
        let started = Instant::now();
        let mut calls = 0;
        let result: Result<(), _> = retry(policy, |_| {
            calls += 1;
            Err(not_leader())
        });
        assert_eq!(
            result.unwrap_err().rdkafka_error_code(),
            Some(RDKafkaErrorCode::NotLeaderForPartition)
        );
        assert!(calls > 1, "retried");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the limit"
        );
    }
}
