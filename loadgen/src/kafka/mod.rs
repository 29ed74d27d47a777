//! The Kafka shell: librdkafka clients driven by OS threads, reporting into shared counters.
//!
//! Why OS threads and not tokio tasks for the hot loops: tokio's timer wheel has 1 ms granularity,
//! so a task sleeping until an intended send time wakes up to a millisecond late, and that
//! tool-made delay would be charged to the broker. A thread in `std::thread::sleep` wakes within
//! tens of microseconds. librdkafka brings its own I/O threads anyway; the producer thread only
//! paces `send` calls, and acknowledgements are timed in the client's delivery callback, on the
//! client's polling thread, without a hop through a future. tokio runs the control plane
//! (topic administration, the progress line, Ctrl-C).
//!
//! Both sides time against one [`Clock`]: a monotonic origin paired with the wall-clock time at
//! that origin, so latencies never go negative when NTP steps the wall clock mid-run.

pub mod admin;
pub mod consumer;
pub mod producer;
pub mod replay;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::latency::LatencyRecorder;
use crate::options::Settings;

/// A monotonic clock that also reads as nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Self {
        let origin_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since_epoch| u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            origin: Instant::now(),
            origin_unix_ns,
        }
    }

    /// Nanoseconds since the clock started.
    pub fn offset_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The Unix-epoch time of an offset.
    pub fn unix_ns_at(&self, offset_ns: u64) -> u64 {
        self.origin_unix_ns.saturating_add(offset_ns)
    }

    /// The offset of a Unix-epoch time (0 if before the origin).
    pub fn offset_of_unix_ns(&self, unix_ns: u64) -> u64 {
        unix_ns.saturating_sub(self.origin_unix_ns)
    }

    /// Now, in nanoseconds since the Unix epoch.
    pub fn now_unix_ns(&self) -> u64 {
        self.unix_ns_at(self.offset_ns())
    }
}

/// Where the run's intended send times fall, as [`Clock`] offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    /// Intended time of the schedule's first record.
    pub start_offset_ns: u64,
    /// Records intended at or after this are measured.
    pub warmup_end_offset_ns: u64,
    /// No record is intended at or after this.
    pub end_offset_ns: u64,
}

impl RunWindow {
    /// A window starting at `start_offset_ns` with the given warm-up and measured lengths.
    pub fn new(start_offset_ns: u64, warmup_s: u64, duration_s: u64) -> Self {
        let warmup_end_offset_ns =
            start_offset_ns.saturating_add(warmup_s.saturating_mul(1_000_000_000));
        Self {
            start_offset_ns,
            warmup_end_offset_ns,
            end_offset_ns: warmup_end_offset_ns
                .saturating_add(duration_s.saturating_mul(1_000_000_000)),
        }
    }

    /// True if a record intended at `offset_ns` counts towards the results.
    pub fn is_measured(&self, intended_offset_ns: u64) -> bool {
        (self.warmup_end_offset_ns..self.end_offset_ns).contains(&intended_offset_ns)
    }
}

/// Distinct error kinds kept by name; further kinds are counted under `other`.
const ERROR_KINDS_MAX: usize = 32;

/// Counters and histograms the producer threads and their delivery callbacks report into.
#[derive(Debug, Default)]
pub struct ProduceShared {
    /// Measured produce latency (µs).
    pub latency: Mutex<LatencyRecorder>,
    /// Records handed to a client.
    pub sent: AtomicU64,
    /// Records acknowledged.
    pub acked: AtomicU64,
    /// Measured records acknowledged.
    pub measured_acked: AtomicU64,
    /// Offset (from the measured window's start) of the last measured acknowledgement.
    pub last_measured_ack_offset_ns: AtomicU64,
    /// Failed records.
    pub error_count: AtomicU64,
    /// Failed records by kind.
    pub errors_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl ProduceShared {
    /// Counts one failure of `kind`.
    pub fn count_error(&self, kind: String) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let Ok(mut errors_by_kind) = self.errors_by_kind.lock() else {
            return;
        };
        let kind = if errors_by_kind.len() < ERROR_KINDS_MAX || errors_by_kind.contains_key(&kind) {
            kind
        } else {
            "other".to_owned()
        };
        *errors_by_kind.entry(kind).or_insert(0) += 1;
    }
}

/// Counters and histograms the consumer threads report into.
#[derive(Debug, Default)]
pub struct ConsumeShared {
    /// Measured end-to-end latency (µs).
    pub latency: Mutex<LatencyRecorder>,
    /// Records of this run consumed.
    pub consumed: AtomicU64,
    /// Measured records of this run consumed.
    pub measured_consumed: AtomicU64,
    /// Loadgen records of other runs.
    pub foreign: AtomicU64,
    /// Values that are not loadgen records.
    pub undecodable: AtomicU64,
    /// Consumer errors.
    pub errors: AtomicU64,
}

/// Which end of a partition [`list_offsets`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionEnd {
    /// The log start offset (low watermark).
    Start,
    /// The log end offset (high watermark).
    End,
}

impl PartitionEnd {
    /// The query for ListOffsets, whose special timestamps -2 (earliest) and -1 (latest) are
    /// what librdkafka stores for `Beginning` and `End`.
    fn query(self) -> Offset {
        match self {
            Self::Start => Offset::Beginning,
            Self::End => Offset::End,
        }
    }
}

/// The start or end offset of every partition in `partitions`, in partition order: one
/// ListOffsets request per broker for all of them (a watermark lookup per partition costs a
/// round trip each, which at 1,000 partitions on a slow broker passed 30 s). Transient errors,
/// of the whole request or of one partition, are retried (see [`retry`]).
pub fn list_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    end: PartitionEnd,
) -> Result<Vec<i64>, KafkaError> {
    retry::retry(retry::RetryPolicy::OFFSET_LOOKUP, |left| {
        let mut query = TopicPartitionList::with_capacity(partitions.len());
        for &partition in partitions {
            query.add_partition_offset(topic, partition, end.query())?;
        }
        let answer = consumer.offsets_for_times(query, left)?;
        partitions
            .iter()
            .map(|&partition| {
                let element = answer
                    .find_partition(topic, partition)
                    .ok_or(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition))?;
                element.error()?;
                match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Ok(offset),
                    // No offset yet: the broker has not answered for this partition.
                    _ => Err(KafkaError::OffsetFetch(
                        RDKafkaErrorCode::OffsetNotAvailable,
                    )),
                }
            })
            .collect()
    })
}

/// Producer client configuration for the settings; extra properties are applied last.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap)
        .set("client.id", "sluice-loadgen-producer")
        .set("acks", settings.acks.as_config())
        .set("compression.type", settings.compression.as_config())
        .set("linger.ms", settings.linger_ms.to_string())
        .set("batch.size", settings.batch_bytes.to_string())
        // A failed record is reported, not retried for minutes: the delivery timeout is the drain
        // limit, so nothing is still pending when the run reports.
        .set(
            "message.timeout.ms",
            (settings.drain_timeout_s.max(1) * 1_000).to_string(),
        );
    for (key, value) in settings
        .client_properties
        .iter()
        .chain(&settings.producer_properties)
    {
        config.set(key, value);
    }
    config
}

/// Consumer client configuration for the settings; extra properties are applied last.
pub fn consumer_config(settings: &Settings, run_id: u32) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap)
        .set("client.id", "sluice-loadgen-consumer")
        // Partitions are assigned by hand and nothing is committed; the group id is only a
        // required name, unique so runs never share state.
        .set("group.id", format!("sluice-loadgen-{run_id:08x}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in settings
        .client_properties
        .iter()
        .chain(&settings.consumer_properties)
    {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use clap::Parser;

    use super::*;
    use crate::options::Options;

    #[test]
    fn window_measures_only_after_warmup_and_before_end() {
        let window = RunWindow::new(100, 1, 2);
        assert!(!window.is_measured(100));
        assert!(window.is_measured(1_000_000_100));
        assert!(window.is_measured(3_000_000_099));
        assert!(!window.is_measured(3_000_000_100));
    }

    #[test]
    fn clock_offsets_and_unix_times_agree() {
        let clock = Clock::start();
        let offset_ns = clock.offset_ns();
        assert_eq!(
            clock.offset_of_unix_ns(clock.unix_ns_at(offset_ns)),
            offset_ns
        );
        assert!(clock.now_unix_ns() >= clock.unix_ns_at(offset_ns));
        assert_eq!(clock.offset_of_unix_ns(0), 0);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let shared = ProduceShared::default();
        for kind in 0..40 {
            shared.count_error(format!("kind-{kind}"));
        }
        shared.count_error("kind-0".to_owned());
        let errors_by_kind = shared.errors_by_kind.lock().unwrap();
        assert_eq!(errors_by_kind.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(errors_by_kind["other"], 8);
        assert_eq!(errors_by_kind["kind-0"], 2);
        assert_eq!(shared.error_count.load(Ordering::Relaxed), 41);
    }

    #[test]
    fn client_configs_carry_the_settings_and_overrides() {
        let settings = Options::try_parse_from([
            "loadgen",
            "--acks",
            "1",
            "--compression",
            "lz4",
            "--linger-ms",
            "7",
            "--batch-bytes",
            "4096",
            "--producer-property",
            "linger.ms=9",
            "--consumer-property",
            "fetch.wait.max.ms=10",
        ])
        .unwrap()
        .validate()
        .unwrap();
        let producer = producer_config(&settings);
        assert_eq!(producer.get("acks"), Some("1"));
        assert_eq!(producer.get("compression.type"), Some("lz4"));
        assert_eq!(producer.get("batch.size"), Some("4096"));
        assert_eq!(producer.get("linger.ms"), Some("9"), "overrides apply last");
        let consumer = consumer_config(&settings, 0xab);
        assert_eq!(consumer.get("group.id"), Some("sluice-loadgen-000000ab"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("10"));
    }
}
