//! One pinned glommio executor on its own thread, and how its startup failures are reported.
//!
//! glommio pins the thread that creates an executor, so each executor is created inside the
//! thread it will run on; the thread reports success or the creation error over a channel, and
//! the starter waits for that report (bounded by [`EXECUTOR_START_TIMEOUT`]) before going on.
//! That turns glommio's startup errors, which otherwise surface as a panic in a detached
//! thread, into values the agent can explain.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::{GlommioError, LocalExecutorBuilder, Placement, ReactorErrorKind};

use super::agent::AgentError;
use crate::memlock::{MemlockError, MemlockLimit};

/// How long the starter waits for an executor to report that it was created.
pub const EXECUTOR_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running executor thread and the means to stop it.
#[derive(Debug)]
pub(super) struct Executor {
    pub(super) name: String,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl Executor {
    /// Waits for the thread; every executor is joined even if an earlier one panicked.
    pub(super) fn join(&mut self) -> Result<(), AgentError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(AgentError::ExecutorPanicked {
                name: self.name.clone(),
            }),
            Some(Ok(())) | None => Ok(()),
        }
    }
}

/// Starts one pinned executor running `main(stop)`; returns once the executor exists.
pub(super) fn spawn_executor<F, Fut>(
    name: &str,
    cpu: usize,
    io_memory_bytes: usize,
    memlock_error: &dyn Fn(u64) -> MemlockError,
    limit: MemlockLimit,
    main: F,
) -> Result<Executor, AgentError>
where
    F: FnOnce(oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (stop_sender, stop_receiver) = oneshot::channel();
    let (ready_sender, ready_receiver) = mpsc::sync_channel::<Result<(), GlommioError<()>>>(1);
    let thread_name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&thread_name)
                .io_memory(io_memory_bytes)
                .make();
            match executor {
                Ok(executor) => {
                    let _ = ready_sender.send(Ok(()));
                    executor.run(main(stop_receiver));
                }
                Err(error) => {
                    let _ = ready_sender.send(Err(error));
                }
            }
        })
        .map_err(|error| AgentError::Executor {
            name: name.to_owned(),
            message: error.to_string(),
        })?;
    let mut executor = Executor {
        name: name.to_owned(),
        stop: Some(stop_sender),
        thread: Some(thread),
    };
    let startup = ready_receiver.recv_timeout(EXECUTOR_START_TIMEOUT);
    match startup {
        Ok(Ok(())) => Ok(executor),
        Ok(Err(error)) => {
            if let Some(thread) = executor.thread.take() {
                let _ = thread.join();
            }
            Err(map_startup_error(name, error, memlock_error, limit))
        }
        Err(_) => {
            // The thread died or hung before reporting; detach it rather than block forever.
            executor.thread.take();
            Err(AgentError::Executor {
                name: name.to_owned(),
                message: format!("did not report startup within {EXECUTOR_START_TIMEOUT:?}"),
            })
        }
    }
}

/// glommio's memlock refusal (and the ENOMEM io_uring gives when rings cannot be locked on older
/// kernels) become the same message as our own budget check.
fn map_startup_error(
    name: &str,
    error: GlommioError<()>,
    memlock_error: &dyn Fn(u64) -> MemlockError,
    limit: MemlockLimit,
) -> AgentError {
    let limit_bytes = match limit {
        MemlockLimit::Bytes(bytes) => bytes,
        MemlockLimit::Unlimited => u64::MAX,
    };
    match &error {
        GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(limit_bytes, _)) => {
            memlock_error(*limit_bytes).into()
        }
        GlommioError::IoError(io) if io.raw_os_error() == Some(libc::ENOMEM) => {
            memlock_error(limit_bytes).into()
        }
        _ => AgentError::Executor {
            name: name.to_owned(),
            message: error.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn glommio_memlock_refusal_becomes_our_message() {
        let budget = |limit_bytes| MemlockError {
            limit: MemlockLimit::Bytes(limit_bytes),
            executors: 3,
            io_memory_bytes: 1,
            needed_bytes: 42,
        };
        let error = GlommioError::ReactorError(ReactorErrorKind::MemLockLimit(1024, 512 * 1024));
        let mapped = map_startup_error("x", error, &budget, MemlockLimit::Bytes(1024)).to_string();
        assert!(
            mapped.contains("RLIMIT_MEMLOCK") && mapped.contains("ulimit -l"),
            "{mapped}"
        );
        let error = GlommioError::IoError(std::io::Error::from_raw_os_error(libc::ENOMEM));
        let mapped = map_startup_error("x", error, &budget, MemlockLimit::Bytes(2048)).to_string();
        assert!(mapped.contains("2048 bytes"), "{mapped}");
        let error = GlommioError::IoError(std::io::Error::from_raw_os_error(libc::EPERM));
        let mapped = map_startup_error("x", error, &budget, MemlockLimit::Bytes(2048));
        assert!(matches!(mapped, AgentError::Executor { .. }), "{mapped}");
    }
}
