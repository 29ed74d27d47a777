//! One producer client paced by the open-loop schedule.
//!
//! The thread sends every record that is due, sleeps until the next one is, and never waits for
//! an acknowledgement. When librdkafka's local queue is full (`QueueFull`, its
//! `queue.buffering.max.messages` / `.kbytes` limits) the thread retries every millisecond: that
//! is the only backpressure, it is bounded by the drain deadline, and the records held up by it
//! keep their intended times, so the queueing shows in the latency. Acknowledgements are timed in
//! the delivery callback against the intended time read back from the record's own value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{Clock, ProduceShared, RunWindow};
use crate::keys::{KeyGenerator, KeySpec};
use crate::latency::new_histogram;
use crate::payload::{PayloadBuilder, RecordHeader};
use crate::schedule::{Schedule, Share};

/// Longest single sleep, so a stop request is noticed promptly even at very low rates.
const SLEEP_NS_MAX: u64 = 50_000_000;
/// Pause before retrying a send the client refused because its queue is full.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(1);

/// What one producer thread needs.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Which indices of the schedule this producer sends.
    pub share: Share,
    /// The run's schedule (offsets relative to `window.start_offset_ns`).
    pub schedule: Schedule,
    /// The run's window.
    pub window: RunWindow,
    /// Clock offset after which nothing more is sent or waited for.
    pub deadline_offset_ns: u64,
    /// Topic to send to.
    pub topic: String,
    /// Key distribution.
    pub keys: KeySpec,
    /// Bytes per value.
    pub record_bytes: usize,
    /// The run's id.
    pub run_id: u32,
    /// Seed for this producer's keys and filler.
    pub seed: u64,
}

/// What one producer thread reports when it ends.
#[derive(Debug)]
pub struct ProducerReport {
    /// Records of its share handed to the client or failed on the way (the rest were never sent).
    pub handled: u64,
    /// Records handed over but not acknowledged by the deadline.
    pub unacked: u64,
    /// Measured hand-off lateness (µs).
    pub send_lag: Histogram<u64>,
}

/// Times acknowledgements in librdkafka's delivery callback.
#[derive(Debug)]
pub struct DeliveryTimer {
    clock: Clock,
    window: RunWindow,
    run_id: u32,
    shared: Arc<ProduceShared>,
    /// Set once the producer gave up waiting: results after that (the purge on drop) were
    /// already counted as unacknowledged.
    finished: AtomicBool,
}

impl ClientContext for DeliveryTimer {}

impl ProducerContext for DeliveryTimer {
    type DeliveryOpaque = ();

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, _: ()) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        let now_offset_ns = self.clock.offset_ns();
        match delivery_result {
            Ok(message) => {
                self.shared.acked.fetch_add(1, Ordering::Relaxed);
                let Some(Ok(header)) = message.payload().map(RecordHeader::read_from) else {
                    return;
                };
                if header.run_id != self.run_id {
                    return;
                }
                let intended_offset_ns = self.clock.offset_of_unix_ns(header.intended_unix_ns);
                if !self.window.is_measured(intended_offset_ns) {
                    return;
                }
                self.shared.measured_acked.fetch_add(1, Ordering::Relaxed);
                self.shared.last_measured_ack_offset_ns.fetch_max(
                    now_offset_ns.saturating_sub(self.window.warmup_end_offset_ns),
                    Ordering::Relaxed,
                );
                if let Ok(mut latency) = self.shared.latency.lock() {
                    latency.record_us(now_offset_ns.saturating_sub(intended_offset_ns) / 1_000);
                }
            }
            Err((error, _)) => self.shared.count_error(error_kind(error)),
        }
    }
}

/// A short, stable name for an error, used as a key in `errors_by_kind`.
pub fn error_kind(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => error.to_string(),
    }
}

/// Runs one producer until its share of the schedule is sent and acknowledged, `stop` is set, or
/// the deadline passes.
pub fn run_producer(
    config: &rdkafka::ClientConfig,
    plan: &ProducerPlan,
    clock: Clock,
    shared: &Arc<ProduceShared>,
    stop: &AtomicBool,
) -> Result<ProducerReport, KafkaError> {
    let timer = DeliveryTimer {
        clock,
        window: plan.window,
        run_id: plan.run_id,
        shared: Arc::clone(shared),
        finished: AtomicBool::new(false),
    };
    let producer: ThreadedProducer<DeliveryTimer> = config.create_with_context(timer)?;
    let mut keys = KeyGenerator::new(plan.keys, plan.seed)
        .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
    let mut payloads = PayloadBuilder::new(plan.record_bytes, plan.seed)
        .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
    let mut send_lag = new_histogram();
    let total = plan.schedule.total_records();
    let mut handled = 0_u64;
    let mut index = plan.share.first_index();
    'schedule: while index < total {
        let intended_offset_ns = plan
            .window
            .start_offset_ns
            .saturating_add(plan.schedule.intended_offset_ns(index));
        let now_offset_ns = clock.offset_ns();
        if stop.load(Ordering::Relaxed) || now_offset_ns >= plan.deadline_offset_ns {
            break;
        }
        if now_offset_ns < intended_offset_ns {
            thread::sleep(Duration::from_nanos(
                (intended_offset_ns - now_offset_ns).min(SLEEP_NS_MAX),
            ));
            continue;
        }
        let header = RecordHeader {
            run_id: plan.run_id,
            intended_unix_ns: clock.unix_ns_at(intended_offset_ns),
            sequence: index,
        };
        let value = payloads.build(&header);
        let key = keys.next_key();
        loop {
            let mut record = BaseRecord::to(&plan.topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            match producer.send(record) {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    if plan.window.is_measured(intended_offset_ns) {
                        send_lag.saturating_record(
                            (clock.offset_ns().saturating_sub(intended_offset_ns) / 1_000).max(1),
                        );
                    }
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if stop.load(Ordering::Relaxed) || clock.offset_ns() >= plan.deadline_offset_ns
                    {
                        break 'schedule;
                    }
                    thread::sleep(QUEUE_FULL_RETRY);
                }
                Err((error, _)) => {
                    shared.count_error(error_kind(&error));
                    break;
                }
            }
        }
        handled += 1;
        index = plan.share.next_index(index);
    }
    let flush_ns = plan.deadline_offset_ns.saturating_sub(clock.offset_ns());
    if stop.load(Ordering::Relaxed) {
        // Interrupted: give in-flight records a short, fixed chance instead of the full drain.
        let _ = producer.flush(Duration::from_millis(
            flush_ns.min(2_000_000_000) / 1_000_000,
        ));
    } else {
        let _ = producer.flush(Duration::from_nanos(flush_ns));
    }
    // Stop counting first, then read what is left: an acknowledgement racing in between is then
    // counted once, as unacknowledged, never as both.
    producer.context().finished.store(true, Ordering::Release);
    let unacked = u64::try_from(producer.in_flight_count()).unwrap_or(0);
    Ok(ProducerReport {
        handled,
        unacked,
        send_lag,
    })
}
