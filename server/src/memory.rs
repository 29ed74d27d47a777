//! Giving freed memory back to the kernel on a schedule (`allocator_trim_interval_ms`).
//!
//! `main` raises glibc's mmap and trim thresholds so that the agent's large buffers (GET bodies,
//! flush windows) are reused rather than mapped and faulted in again on every use, and caps the
//! arenas. The price is that free memory inside an arena's heap stays resident: at the fraud load
//! on a local-directory store the agent held 890 MiB of which 616 MiB were in use, and its RSS
//! crept up by about 5 MiB a minute over a 30-minute soak (docs/benchmarks.md, "The same soak
//! with the arenas capped"). `malloc_trim(0)` hands back the whole pages inside every free chunk
//! in the bins of every arena (`madvise(MADV_DONTNEED)`, nothing is moved) and the free top of
//! the main heap; a thread arena keeps its free top (at most one 64 MiB heap's worth each), and
//! the per-thread caches keep their chunks. Once every interval a thread of its own does that.
//! Each arena is locked while it is trimmed; the time the trims take is exported
//! (`sluice_allocator_trim_seconds_total`, `sluice_allocator_trim_longest_seconds`) so that
//! their share of the hot path can be read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The thread that trims the allocator every interval; stopping it (drop) waits for it.
#[derive(Debug)]
pub struct Trimmer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Trimmer {
    /// Starts trimming every `interval`; `None` when `interval` is zero or the allocator is not
    /// glibc's (nothing to trim).
    pub fn start(interval: Duration, metrics: Arc<Metrics>) -> std::io::Result<Option<Self>> {
        if interval.is_zero() || !SUPPORTED {
            return Ok(None);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-trim".to_owned())
            .spawn(move || {
                // A message or a dropped sender both mean stop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    trim_once(&metrics);
                }
            })?;
        Ok(Some(Self {
            stop: Some(stop),
            thread: Some(thread),
        }))
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The loop cannot panic (and a panic ends the process, `lifecycle::exit_on_panic`).
            let _ = thread.join();
        }
    }
}

/// Whether this build can trim (Linux with glibc).
const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// One trim, counted in `metrics.allocator`: how long it took and by how much it lowered the
/// resident memory (other threads allocate meanwhile, so this is what was seen, not exact).
fn trim_once(metrics: &Metrics) {
    let before = resident_bytes();
    let started = Instant::now();
    release_free_memory();
    let took = started.elapsed();
    let after = resident_bytes();
    let released = before.zip(after).map_or(0, |(b, a)| b.saturating_sub(a));
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    let allocator = &metrics.allocator;
    allocator.trims.fetch_add(1, Ordering::Relaxed);
    allocator.trim_nanos.fetch_add(nanos, Ordering::Relaxed);
    allocator
        .trim_nanos_longest
        .fetch_max(nanos, Ordering::Relaxed);
    allocator
        .released_bytes
        .fetch_add(released, Ordering::Relaxed);
    tracing::debug!(
        took_us = took.as_micros(),
        released_bytes = released,
        "trimmed the allocator"
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free memory to the kernel; it takes each arena's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// This process's resident bytes (`/proc/self/stat`, as the metrics read them), if readable.
fn resident_bytes() -> Option<u64> {
    crate::metrics::process_stats().map(|(rss_bytes, _, _)| rss_bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The thread trims until it is dropped, and counts each trim; the drop waits for it to end.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_trimmer_trims_on_its_interval_and_stops_when_dropped() {
        let metrics = Arc::new(Metrics::new(&[0]));
        let trimmer = Trimmer::start(Duration::from_millis(1), Arc::clone(&metrics))
            .unwrap()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.allocator.trims.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "no three trims in 60 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(trimmer);
        // The thread has ended: it no longer holds the metrics.
        assert_eq!(Arc::strong_count(&metrics), 1);
        let trims = metrics.allocator.trims.load(Ordering::Relaxed);
        assert!(metrics.allocator.trim_nanos.load(Ordering::Relaxed) > 0);
        let text = metrics.render();
        assert!(
            text.contains(&format!("sluice_allocator_trims_total {trims}\n")),
            "{text}"
        );
    }

    #[test]
    fn a_zero_interval_starts_no_thread() {
        let metrics = Arc::new(Metrics::new(&[0]));
        assert!(Trimmer::start(Duration::ZERO, metrics).unwrap().is_none());
    }

    #[test]
    fn the_resident_memory_is_read() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
    }
}
