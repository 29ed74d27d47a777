//! Termination signals for the binary: SIGINT and SIGTERM stop the agent cleanly.
//!
//! The signals are blocked in the main thread before any executor thread exists (threads
//! inherit the mask), and the main thread then waits for one with `sigwait`. No async signal
//! handler runs, so nothing has to be async-signal-safe, and the executors are never
//! interrupted: the main thread stops them through `Agent::shutdown` like any caller would.

use std::io;

/// The blocked set, to wait on later.
#[derive(Debug)]
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM for this thread and the threads it will create.
    pub fn block() -> io::Result<Self> {
        // SAFETY: `set` is a plain value initialised by `sigemptyset` before use; the libc calls
        // only read and write the set we pass.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            if libc::sigemptyset(&raw mut set) != 0
                || libc::sigaddset(&raw mut set, libc::SIGINT) != 0
                || libc::sigaddset(&raw mut set, libc::SIGTERM) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let status =
                libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
            if status != 0 {
                return Err(io::Error::from_raw_os_error(status));
            }
            Ok(Self { set })
        }
    }

    /// Blocks until SIGINT or SIGTERM arrives; returns the signal number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut signal: libc::c_int = 0;
        // SAFETY: both pointers are to live locals/fields for the duration of the call.
        let status = unsafe { libc::sigwait(&raw const self.set, &raw mut signal) };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
        Ok(signal)
    }
}
