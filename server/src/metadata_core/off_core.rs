//! Background CPU work off the cooperative cores: compaction jobs and checkpoint encoding.
//!
//! The metadata executor is cooperative: a job's CPU work (a CRC pass over 32 MiB alone takes
//! milliseconds; encoding a checkpoint of a million index entries tens of them) would hold the
//! flusher for all of it, whatever the task queue's shares, and a produce's acknowledgement with
//! it. On a thread of its own the kernel preempts it instead, and at nice [`BACKGROUND_NICE`] the
//! network and metadata cores go first. One thread per job: jobs are seconds apart.

/// Nice value of background threads (the cores run at 0).
pub(crate) const BACKGROUND_NICE: libc::c_int = 10;

/// Runs `job` to completion on a new thread named `name` at nice [`BACKGROUND_NICE`] and awaits
/// its result here. `Err` only when the thread cannot be started or dies before answering.
pub(crate) async fn off_core<T, F>(name: &str, job: F) -> Result<T, String>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // SAFETY: setpriority only reads its integer arguments; `who = 0` with PRIO_PROCESS
            // is the calling thread on Linux (each thread has its own nice value). A failure
            // leaves the default priority, which is only slower for the hot path, never wrong.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
            }
            let _ = sender.send(futures::executor::block_on(job));
        })
        .map_err(|error| format!("cannot start a background thread ({name}): {error}"))?;
    receiver
        .await
        .map_err(|_| format!("the background thread ({name}) stopped before answering"))
}
