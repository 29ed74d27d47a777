//! One consumer client timing end-to-end latency.
//!
//! Partitions are assigned by hand, each starting at its high watermark read *before* the
//! schedule starts: no group rebalance delays the first fetch, no record of this run can be
//! skipped by an `auto.offset.reset=latest` that resolves late, and older data on the topic is
//! never read. Records of other runs that land on the same topic meanwhile are recognised by the
//! run id in their header and counted apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Clock, ConsumeShared, PartitionEnd, RunWindow, list_offsets};
use crate::payload::RecordHeader;

/// How long one poll waits, which bounds how late a stop request is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// What one consumer thread needs.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// Topic to read.
    pub topic: String,
    /// Partitions this consumer reads.
    pub partitions: Vec<i32>,
    /// The run's id.
    pub run_id: u32,
    /// The run created the topic, so every partition ends at offset 0 and no offset lookup is
    /// needed (a broker may take minutes to answer one for 10,000 partitions).
    pub empty_topic: bool,
}

/// Assigns the partitions at their current ends, reports readiness on `ready`, then records
/// end-to-end latency until `stop` is set.
///
/// The run's window is published in `window` by the runner once every consumer is in place;
/// until then nothing of this run can have been produced.
pub fn run_consumer(
    config: &ClientConfig,
    plan: &ConsumerPlan,
    clock: Clock,
    ready: &Sender<Result<(), KafkaError>>,
    window: &OnceLock<RunWindow>,
    shared: &Arc<ConsumeShared>,
    stop: &AtomicBool,
) -> Result<(), KafkaError> {
    let consumer = match assign_at_end(config, plan) {
        Ok(consumer) => consumer,
        Err(error) => {
            let _ = ready.send(Err(error.clone()));
            return Err(error);
        }
    };
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let now_offset_ns = clock.offset_ns();
        let message = match result {
            Ok(message) => message,
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let header = match message.payload().map(RecordHeader::read_from) {
            Some(Ok(header)) => header,
            _ => {
                shared.undecodable.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if header.run_id != plan.run_id {
            shared.foreign.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        shared.consumed.fetch_add(1, Ordering::Relaxed);
        let intended_offset_ns = clock.offset_of_unix_ns(header.intended_unix_ns);
        if window
            .get()
            .is_some_and(|window| window.is_measured(intended_offset_ns))
        {
            shared.measured_consumed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut latency) = shared.latency.lock() {
                latency.record_us(now_offset_ns.saturating_sub(intended_offset_ns) / 1_000);
            }
        }
    }
    Ok(())
}

fn assign_at_end(config: &ClientConfig, plan: &ConsumerPlan) -> Result<BaseConsumer, KafkaError> {
    let consumer: BaseConsumer = config.create()?;
    // Retried: right after CreateTopics a broker may name a leader in its metadata and still
    // refuse ListOffsets for a moment (see `retry`).
    let ends = if plan.empty_topic {
        vec![0; plan.partitions.len()]
    } else {
        list_offsets(&consumer, &plan.topic, &plan.partitions, PartitionEnd::End)?
    };
    let mut assignment = TopicPartitionList::new();
    for (&partition, &high) in plan.partitions.iter().zip(&ends) {
        assignment.add_partition_offset(&plan.topic, partition, Offset::Offset(high))?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Splits partitions over consumers round-robin: consumer `c` reads partitions `p` with
/// `p % consumers == c`. Pure.
pub fn split_partitions(partitions: &[i32], consumers: u32) -> Vec<Vec<i32>> {
    let consumers = usize::try_from(consumers).unwrap_or(usize::MAX).max(1);
    let mut split = vec![Vec::new(); consumers.min(partitions.len().max(1))];
    let buckets = split.len();
    for (position, &partition) in partitions.iter().enumerate() {
        if let Some(bucket) = split.get_mut(position % buckets) {
            bucket.push(partition);
        }
    }
    split
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn partitions_are_split_round_robin_without_loss() {
        let partitions: Vec<i32> = (0..8).collect();
        let split = split_partitions(&partitions, 3);
        assert_eq!(split, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        assert_eq!(split_partitions(&partitions, 1), vec![partitions.clone()]);
        // More consumers than partitions: one consumer per partition, none idle.
        assert_eq!(split_partitions(&[0, 1], 5), vec![vec![0], vec![1]]);
    }
}
