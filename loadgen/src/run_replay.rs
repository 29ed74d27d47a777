//! A replay run, end to end: find the topic, start the readers, say "go", wait (at most
//! `--replay-timeout-s`), merge what they saw, write `summary.json`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rdkafka::error::KafkaError;

use crate::kafka::consumer::split_partitions;
use crate::kafka::replay::{Go, ReplayPlan, ReplayProgress, run_replay_reader};
use crate::kafka::{Clock, admin, consumer_config};
use crate::options::{BYTES_PER_MB, Settings};
use crate::replay::{PartitionRange, ReplaySummary, ReplayTiming, ReplayTracker};

/// Limit on readers connecting and reading their watermarks (each lookup retries transient
/// errors for up to 30 s on its own).
const READERS_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the runner checks whether the readers are done.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How often the progress line is printed.
const PROGRESS_INTERVAL_NS: u64 = 1_000_000_000;

type Reader = JoinHandle<Result<(ReplayTracker, bool), KafkaError>>;

/// Reads the settings' topic from its first offsets to its ends, writes `summary.json` into
/// `settings.out` and returns the summary. Progress goes to stderr.
pub async fn run_replay(settings: Settings) -> anyhow::Result<ReplaySummary> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let clock = Clock::start();
    let started_at_unix_ms = clock.now_unix_ns() / 1_000_000;
    let topic_settings = settings.clone();
    let partitions =
        tokio::task::spawn_blocking(move || admin::existing_topic(&topic_settings)).await??;
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(Arc::clone(&stop), Arc::clone(&interrupted));
    let progress = Arc::new(ReplayProgress::default());
    // The group id is only a required name: partitions are assigned by hand, nothing committed.
    let mut config = consumer_config(&settings, std::process::id());
    // The history is read from explicit offsets; if one is gone (retention), say so, do not
    // silently jump elsewhere.
    config.set("auto.offset.reset", "error");
    for (key, value) in &settings.consumer_properties {
        config.set(key, value);
    }

    let (ready_sender, ready_receiver) = mpsc::channel();
    let mut readers: Vec<Reader> = Vec::new();
    let mut go_senders = Vec::new();
    for (index, assigned) in split_partitions(&partitions, settings.consumers)
        .into_iter()
        .enumerate()
    {
        let plan = ReplayPlan {
            topic: settings.topic.clone(),
            partitions: assigned,
        };
        let (go_sender, go_receiver) = mpsc::channel::<Go>();
        go_senders.push(go_sender);
        let (config, ready, progress, stop) = (
            config.clone(),
            ready_sender.clone(),
            Arc::clone(&progress),
            Arc::clone(&stop),
        );
        readers.push(
            thread::Builder::new()
                .name(format!("loadgen-replay-{index}"))
                .spawn(move || {
                    run_replay_reader(
                        &config,
                        &plan,
                        clock,
                        &ready,
                        &go_receiver,
                        &progress,
                        &stop,
                    )
                })?,
        );
    }
    let expected = readers.len();
    let readiness = tokio::task::spawn_blocking(move || {
        (0..expected)
            .map(|_| ready_receiver.recv_timeout(READERS_READY_TIMEOUT))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let ranges: Vec<PartitionRange> = match readiness {
        Ok(results) => match results.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(ranges) => ranges.into_iter().flatten().collect(),
            Err(error) => return Err(abort(go_senders, anyhow!("replay set-up: {error}"))),
        },
        Err(_) => {
            return Err(abort(
                go_senders,
                anyhow!("readers not ready within {READERS_READY_TIMEOUT:?}"),
            ));
        }
    };
    let records_expected: u64 = ranges.iter().map(PartitionRange::len).sum();
    eprintln!(
        "replay: topic {} has {} partitions, {} records to read",
        settings.topic,
        ranges.len(),
        records_expected
    );

    let go_offset_ns = clock.offset_ns();
    let deadline_offset_ns =
        go_offset_ns.saturating_add(settings.replay_timeout_s.saturating_mul(1_000_000_000));
    for sender in &go_senders {
        let _ = sender.send(Some((go_offset_ns, deadline_offset_ns)));
    }
    let mut last_print = (go_offset_ns, 0_u64);
    while !readers.iter().all(JoinHandle::is_finished) {
        tokio::time::sleep(CHECK_INTERVAL).await;
        let now_offset_ns = clock.offset_ns();
        if now_offset_ns.saturating_sub(last_print.0) >= PROGRESS_INTERVAL_NS {
            let bytes = progress.value_bytes.load(Ordering::Relaxed);
            let interval_s = now_offset_ns.saturating_sub(last_print.0) as f64 / 1e9;
            eprintln!(
                "[{:7.1}s replay] read {} of {} records, {:.1} MB/s",
                now_offset_ns.saturating_sub(go_offset_ns) as f64 / 1e9,
                progress.records.load(Ordering::Relaxed),
                records_expected,
                bytes.saturating_sub(last_print.1) as f64 / BYTES_PER_MB / interval_s
            );
            last_print = (now_offset_ns, bytes);
        }
    }
    let mut merged = ReplayTracker::default();
    let mut timed_out = false;
    for reader in readers {
        let (tracker, reader_timed_out) = reader
            .join()
            .map_err(|_| anyhow!("a replay reader panicked"))?
            .context("replay reader")?;
        merged.merge(tracker);
        timed_out |= reader_timed_out;
    }
    let timing = ReplayTiming {
        started_offset_ns: 0,
        go_offset_ns,
        timed_out,
        interrupted: interrupted.load(Ordering::Relaxed),
    };
    let summary = ReplaySummary::build(&settings, started_at_unix_ms, &merged, timing);
    let path = settings.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(summary)
}

/// Tells every reader to give up and returns `error`.
fn abort(go_senders: Vec<mpsc::Sender<Go>>, error: anyhow::Error) -> anyhow::Error {
    for sender in go_senders {
        let _ = sender.send(None);
    }
    error
}

/// First Ctrl-C stops the readers (the summary is still written); the second exits at once.
fn watch_ctrl_c(stop: Arc<AtomicBool>, interrupted: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: stopping the replay and writing the results (Ctrl-C again to abort)"
            );
            interrupted.store(true, Ordering::Release);
            stop.store(true, Ordering::Release);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}
