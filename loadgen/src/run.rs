//! One run, end to end: topic, consumers, producers, progress, drain, report.
//!
//! Order matters for honest numbers. Consumers are assigned (at the partitions' current ends)
//! before the schedule's clock starts, so the first records are not charged for consumer start-up
//! beyond what the warm-up absorbs. After the schedule ends, the run waits — at most
//! `--drain-timeout-s` — for late sends, acknowledgements and consumption; whatever is still
//! missing then is reported as unsent, unacked or missing rather than waited for forever.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use crate::kafka::consumer::{ConsumerPlan, run_consumer, split_partitions};
use crate::kafka::producer::{ProducerPlan, ProducerReport, run_producer};
use crate::kafka::{
    Clock, ConsumeShared, ProduceShared, RunWindow, admin, consumer_config, producer_config,
};
use crate::latency::{LatencyRecorder, new_histogram, percentile_distribution};
use crate::options::Settings;
use crate::progress::{ProgressSnapshot, format_line};
use crate::schedule::{Schedule, Share};
use crate::summary::{ConsumeCounts, ProduceCounts, Summary, SummaryInput};

/// Limit on consumers assigning their partitions before the run starts (their offset lookups
/// retry transient errors for up to 30 s on their own; 10,000 partitions take a while).
const CONSUMERS_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the run checks whether producers or the drain are done.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How often the progress line is printed.
const PROGRESS_INTERVAL_NS: u64 = 1_000_000_000;
/// After an interruption, how long consumers may still catch up.
const INTERRUPTED_DRAIN_NS: u64 = 2_000_000_000;
/// `interrupted_at_offset_ns` before any interruption.
const NOT_INTERRUPTED: u64 = u64::MAX;
/// Gap between consumers being ready and the first intended send.
const START_DELAY_NS: u64 = 100_000_000;

/// Runs the load described by `settings`, writes `produce.hgrm`, `e2e.hgrm` and `summary.json`
/// into `settings.out`, and returns the summary. Progress goes to stderr.
pub async fn run(settings: Settings) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let topic_settings = settings.clone();
    let topic = tokio::task::spawn_blocking(move || admin::ensure_topic(&topic_settings)).await??;
    let partitions = &topic.partitions;
    if partitions.len() != usize::try_from(settings.partitions).unwrap_or(usize::MAX) {
        eprintln!(
            "note: topic {} already exists with {} partitions (asked for {}); using it as it is",
            settings.topic,
            partitions.len(),
            settings.partitions
        );
    }

    let clock = Clock::start();
    let interrupted = Arc::new(AtomicBool::new(false));
    let interrupted_at_offset_ns = Arc::new(AtomicU64::new(NOT_INTERRUPTED));
    watch_ctrl_c(
        clock,
        Arc::clone(&interrupted),
        Arc::clone(&interrupted_at_offset_ns),
    );
    let run_id = run_id(clock.now_unix_ns());
    let produce = Arc::new(ProduceShared::default());
    let consume = Arc::new(ConsumeShared::default());
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let window_cell = Arc::new(OnceLock::new());
    // If the run returns early with an error, every thread it started still stops by itself.
    let _stop_guard = StopOnDrop(vec![Arc::clone(&interrupted), Arc::clone(&stop_consumers)]);

    let consumers = start_consumers(
        &settings,
        &topic,
        run_id,
        clock,
        &consume,
        &stop_consumers,
        &window_cell,
    )
    .await?;

    let window = RunWindow::new(
        clock.offset_ns() + START_DELAY_NS,
        settings.warmup_s,
        settings.duration_s,
    );
    let _ = window_cell.set(window);
    let started_at_unix_ms = clock.unix_ns_at(window.start_offset_ns) / 1_000_000;
    let schedule = Schedule::new(
        settings.records_per_sec,
        window.end_offset_ns - window.start_offset_ns,
    )?;
    let deadline_offset_ns = window
        .end_offset_ns
        .saturating_add(settings.drain_timeout_s.saturating_mul(1_000_000_000));
    let producers = start_producers(
        &settings,
        schedule,
        window,
        deadline_offset_ns,
        run_id,
        clock,
        &produce,
        &interrupted,
    )?;

    let mut progress = Progress::new(
        clock,
        window,
        schedule,
        settings.warmup_s,
        settings.consumers > 0,
    );
    while !producers.iter().all(JoinHandle::is_finished) {
        tokio::time::sleep(CHECK_INTERVAL).await;
        progress.maybe_print(&produce, &consume);
    }
    let interrupted_at_offset_ns = match interrupted_at_offset_ns.load(Ordering::Acquire) {
        NOT_INTERRUPTED => None,
        at_offset_ns => Some(at_offset_ns),
    };
    let mut handled = 0;
    let mut unacked = 0;
    let mut send_lag = new_histogram();
    for producer in producers {
        let report: ProducerReport = producer
            .join()
            .map_err(|_| anyhow!("a producer thread panicked"))?
            .context("producer")?;
        handled += report.handled;
        unacked += report.unacked;
        send_lag
            .add(&report.send_lag)
            .map_err(|error| anyhow!("merging histograms: {error:?}"))?;
    }

    if !consumers.is_empty() {
        let now_offset_ns = clock.offset_ns();
        let drain_end_offset_ns = if interrupted_at_offset_ns.is_some() {
            now_offset_ns + INTERRUPTED_DRAIN_NS
        } else {
            deadline_offset_ns.max(now_offset_ns + INTERRUPTED_DRAIN_NS)
        };
        while consume.consumed.load(Ordering::Relaxed) < produce.acked.load(Ordering::Relaxed)
            && clock.offset_ns() < drain_end_offset_ns
            && !(interrupted.load(Ordering::Relaxed) && interrupted_at_offset_ns.is_none())
        {
            tokio::time::sleep(CHECK_INTERVAL).await;
            progress.maybe_print(&produce, &consume);
        }
    }
    stop_consumers.store(true, Ordering::Relaxed);
    for consumer in consumers {
        consumer
            .join()
            .map_err(|_| anyhow!("a consumer thread panicked"))?
            .context("consumer")?;
    }
    progress.print(&produce, &consume);

    let measured_window_ns = match interrupted_at_offset_ns {
        Some(at_ns) => {
            at_ns.clamp(window.warmup_end_offset_ns, window.end_offset_ns)
                - window.warmup_end_offset_ns
        }
        None => window.end_offset_ns - window.warmup_end_offset_ns,
    };
    // An interrupted run intended only the records due before the interruption.
    let intended = match interrupted_at_offset_ns {
        Some(at_offset_ns) => {
            schedule.records_due_before(at_offset_ns.saturating_sub(window.start_offset_ns))
        }
        None => schedule.total_records(),
    };
    let produce_counts = ProduceCounts {
        intended,
        sent: produce.sent.load(Ordering::Relaxed),
        acked: produce.acked.load(Ordering::Relaxed),
        measured_acked: produce.measured_acked.load(Ordering::Relaxed),
        errors_by_kind: produce
            .errors_by_kind
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default(),
        unsent: intended.saturating_sub(handled),
        unacked,
        last_measured_ack_offset_ns: produce.last_measured_ack_offset_ns.load(Ordering::Relaxed),
    };
    let consume_counts = ConsumeCounts {
        consumed: consume.consumed.load(Ordering::Relaxed),
        measured_consumed: consume.measured_consumed.load(Ordering::Relaxed),
        foreign: consume.foreign.load(Ordering::Relaxed),
        undecodable: consume.undecodable.load(Ordering::Relaxed),
        errors: consume.errors.load(Ordering::Relaxed),
    };
    let produce_latency = total_of(&produce.latency);
    let end_to_end_latency = total_of(&consume.latency);
    let summary = Summary::build(&SummaryInput {
        settings: &settings,
        run_id,
        started_at_unix_ms,
        produce: &produce_counts,
        consume: &consume_counts,
        produce_latency: &produce_latency,
        end_to_end_latency: &end_to_end_latency,
        send_lag: &send_lag,
        measured_window_ns,
        interrupted: interrupted_at_offset_ns.is_some(),
    });
    write_outputs(
        &settings.out,
        &summary,
        &produce_latency,
        &end_to_end_latency,
    )?;
    Ok(summary)
}

/// Writes the three output files into `dir`.
pub fn write_outputs(
    dir: &Path,
    summary: &Summary,
    produce_latency: &hdrhistogram::Histogram<u64>,
    end_to_end_latency: &hdrhistogram::Histogram<u64>,
) -> anyhow::Result<()> {
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
    };
    write("produce.hgrm", percentile_distribution(produce_latency))?;
    write("e2e.hgrm", percentile_distribution(end_to_end_latency))?;
    write(
        "summary.json",
        serde_json::to_string_pretty(summary)? + "\n",
    )?;
    Ok(())
}

fn total_of(recorder: &std::sync::Mutex<LatencyRecorder>) -> hdrhistogram::Histogram<u64> {
    recorder
        .lock()
        .map(|recorder| recorder.total().clone())
        .unwrap_or_else(|_| new_histogram())
}

/// A per-run id from the start time and process id, mixed (splitmix64) so runs started in the
/// same second differ in every bit.
fn run_id(unix_ns: u64) -> u32 {
    let mut mixed = unix_ns ^ (u64::from(std::process::id()) << 32);
    mixed = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^= mixed >> 31;
    (mixed >> 32) as u32
}

/// First Ctrl-C: stop scheduling and report what was measured. Second: exit at once.
fn watch_ctrl_c(
    clock: Clock,
    interrupted: Arc<AtomicBool>,
    interrupted_at_offset_ns: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: stopping producers and writing the results (Ctrl-C again to abort)"
            );
            interrupted_at_offset_ns.store(clock.offset_ns(), Ordering::Release);
            interrupted.store(true, Ordering::Release);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

async fn start_consumers(
    settings: &Settings,
    topic: &admin::ReadyTopic,
    run_id: u32,
    clock: Clock,
    consume: &Arc<ConsumeShared>,
    stop: &Arc<AtomicBool>,
    window: &Arc<OnceLock<RunWindow>>,
) -> anyhow::Result<Vec<JoinHandle<Result<(), rdkafka::error::KafkaError>>>> {
    if settings.consumers == 0 {
        return Ok(Vec::new());
    }
    let config = consumer_config(settings, run_id);
    let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for (consumer, assigned) in split_partitions(&topic.partitions, settings.consumers)
        .into_iter()
        .enumerate()
    {
        let plan = ConsumerPlan {
            topic: settings.topic.clone(),
            partitions: assigned,
            run_id,
            empty_topic: topic.created,
        };
        let (config, ready, shared, stop, window) = (
            config.clone(),
            ready_sender.clone(),
            Arc::clone(consume),
            Arc::clone(stop),
            Arc::clone(window),
        );
        threads.push(
            thread::Builder::new()
                .name(format!("loadgen-consumer-{consumer}"))
                .spawn(move || {
                    run_consumer(&config, &plan, clock, &ready, &window, &shared, &stop)
                })?,
        );
    }
    let expected = threads.len();
    let readiness = tokio::task::spawn_blocking(move || {
        (0..expected)
            .map(|_| ready_receiver.recv_timeout(CONSUMERS_READY_TIMEOUT))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let failure = match readiness {
        Ok(results) => results
            .into_iter()
            .find_map(Result::err)
            .map(|error| anyhow!("consumer assignment: {error}")),
        Err(_) => Some(anyhow!(
            "consumers not assigned within {CONSUMERS_READY_TIMEOUT:?}"
        )),
    };
    if let Some(failure) = failure {
        stop.store(true, Ordering::Relaxed);
        return Err(failure);
    }
    Ok(threads)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the values are the run's shared context"
)]
fn start_producers(
    settings: &Settings,
    schedule: Schedule,
    window: RunWindow,
    deadline_offset_ns: u64,
    run_id: u32,
    clock: Clock,
    produce: &Arc<ProduceShared>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<Result<ProducerReport, rdkafka::error::KafkaError>>>> {
    let config = producer_config(settings);
    let mut threads = Vec::new();
    for producer in 0..settings.producers {
        let plan = ProducerPlan {
            share: Share::new(producer, settings.producers)?,
            schedule,
            window,
            deadline_offset_ns,
            topic: settings.topic.clone(),
            keys: settings.key_spec,
            record_bytes: settings.record_bytes,
            run_id,
            seed: settings
                .seed
                .wrapping_add(u64::from(producer).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        };
        let (config, shared, stop) = (config.clone(), Arc::clone(produce), Arc::clone(stop));
        threads.push(
            thread::Builder::new()
                .name(format!("loadgen-producer-{producer}"))
                .spawn(move || run_producer(&config, &plan, clock, &shared, &stop))?,
        );
    }
    Ok(threads)
}

/// Sets every flag when dropped.
struct StopOnDrop(Vec<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for flag in &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Prints the progress line at most once per [`PROGRESS_INTERVAL_NS`].
struct Progress {
    clock: Clock,
    window: RunWindow,
    schedule: Schedule,
    warmup_s: u64,
    with_consumers: bool,
    last_print_offset_ns: u64,
    acked_at_last_print: u64,
}

impl Progress {
    fn new(
        clock: Clock,
        window: RunWindow,
        schedule: Schedule,
        warmup_s: u64,
        with_consumers: bool,
    ) -> Self {
        let last_print_offset_ns = window.start_offset_ns;
        Self {
            clock,
            window,
            schedule,
            warmup_s,
            with_consumers,
            last_print_offset_ns,
            acked_at_last_print: 0,
        }
    }

    fn maybe_print(&mut self, produce: &ProduceShared, consume: &ConsumeShared) {
        if self
            .clock
            .offset_ns()
            .saturating_sub(self.last_print_offset_ns)
            >= PROGRESS_INTERVAL_NS
        {
            self.print(produce, consume);
        }
    }

    fn print(&mut self, produce: &ProduceShared, consume: &ConsumeShared) {
        let now_offset_ns = self.clock.offset_ns();
        let produce_interval = produce
            .latency
            .lock()
            .map(|mut latency| latency.take_interval())
            .unwrap_or_else(|_| new_histogram());
        let end_to_end_interval = consume
            .latency
            .lock()
            .map(|mut latency| latency.take_interval())
            .unwrap_or_else(|_| new_histogram());
        let acked = produce.acked.load(Ordering::Relaxed);
        let errors = produce.error_count.load(Ordering::Relaxed);
        let line = format_line(&ProgressSnapshot {
            elapsed_s: now_offset_ns.saturating_sub(self.window.start_offset_ns) as f64 / 1e9,
            warmup_s: self.warmup_s,
            sent: produce.sent.load(Ordering::Relaxed) + errors,
            due: self
                .schedule
                .records_due_before(now_offset_ns.saturating_sub(self.window.start_offset_ns)),
            acked,
            acked_before: self.acked_at_last_print,
            interval_s: now_offset_ns.saturating_sub(self.last_print_offset_ns) as f64 / 1e9,
            errors,
            consumed: consume.consumed.load(Ordering::Relaxed),
            produce_interval: &produce_interval,
            end_to_end_interval: self.with_consumers.then_some(&end_to_end_interval),
        });
        eprintln!("{line}");
        self.last_print_offset_ns = now_offset_ns;
        self.acked_at_last_print = acked;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn run_ids_differ_for_nearby_starts() {
        let ids: std::collections::HashSet<u32> = (0..1_000)
            .map(|step| run_id(1_764_000_000_000_000_000 + step))
            .collect();
        assert_eq!(ids.len(), 1_000);
    }
}
