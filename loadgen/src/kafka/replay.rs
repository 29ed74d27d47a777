//! One replay reader: reads its partitions from the low watermark to the high watermark taken at
//! the start, as fast as the client fetches, into a [`ReplayTracker`].
//!
//! Set-up (client, metadata, watermarks, with the transient-error retries of [`super::retry`])
//! happens before the runner's "go", and partitions are assigned only after it: the time to the
//! first record then measures the first fetch, not the connection set-up, and no fetch starts
//! before the clock does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Clock, PartitionEnd, list_offsets};
use crate::replay::{PartitionRange, ReplayTracker};

/// How long one poll waits, which bounds how late a stop request or the deadline is noticed.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// What one reader needs.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// Topic to read.
    pub topic: String,
    /// Partitions this reader reads.
    pub partitions: Vec<i32>,
}

/// The runner's start signal: the clock offsets of "go" and of the deadline, or `None` to give up.
pub type Go = Option<(u64, u64)>;

/// Counters the progress line reads while readers run.
#[derive(Debug, Default)]
pub struct ReplayProgress {
    /// Records read so far.
    pub records: AtomicU64,
    /// Value bytes read so far.
    pub value_bytes: AtomicU64,
}

/// Reads the watermarks, reports the ranges on `ready`, waits for `go`, then reads until every
/// partition reaches its end, `stop` is set, or the deadline passes. Returns what it saw and
/// whether the deadline ended it.
pub fn run_replay_reader(
    config: &ClientConfig,
    plan: &ReplayPlan,
    clock: Clock,
    ready: &Sender<Result<Vec<PartitionRange>, KafkaError>>,
    go: &Receiver<Go>,
    progress: &Arc<ReplayProgress>,
    stop: &AtomicBool,
) -> Result<(ReplayTracker, bool), KafkaError> {
    let set_up = || -> Result<(BaseConsumer, Vec<PartitionRange>), KafkaError> {
        let consumer: BaseConsumer = config.create()?;
        let lows = list_offsets(
            &consumer,
            &plan.topic,
            &plan.partitions,
            PartitionEnd::Start,
        )?;
        let highs = list_offsets(&consumer, &plan.topic, &plan.partitions, PartitionEnd::End)?;
        let ranges = plan
            .partitions
            .iter()
            .zip(lows.iter().zip(&highs))
            .map(|(&partition, (&low, &high))| PartitionRange {
                partition,
                low,
                high,
            })
            .collect();
        Ok((consumer, ranges))
    };
    let (consumer, ranges) = match set_up() {
        Ok(set) => set,
        Err(error) => {
            let _ = ready.send(Err(error.clone()));
            return Err(error);
        }
    };
    let _ = ready.send(Ok(ranges.clone()));
    let mut tracker = ReplayTracker::new(&ranges);
    let Ok(Some((_go_offset_ns, deadline_offset_ns))) = go.recv() else {
        return Ok((tracker, false));
    };
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|range| !range.is_empty()) {
        assignment.add_partition_offset(&plan.topic, range.partition, Offset::Offset(range.low))?;
    }
    if assignment.count() > 0 {
        consumer.assign(&assignment)?;
    }
    let mut timed_out = false;
    while !tracker.is_done() && !stop.load(Ordering::Relaxed) {
        if clock.offset_ns() >= deadline_offset_ns {
            timed_out = true;
            break;
        }
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let now_offset_ns = clock.offset_ns();
        match result {
            Ok(message) => {
                let value = message.payload();
                tracker.observe(message.partition(), message.offset(), value, now_offset_ns);
                progress.records.fetch_add(1, Ordering::Relaxed);
                progress.value_bytes.fetch_add(
                    value.map_or(0, |value| value.len() as u64),
                    Ordering::Relaxed,
                );
            }
            Err(_) => tracker.count_error(),
        }
    }
    Ok((tracker, timed_out))
}
