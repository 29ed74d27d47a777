//! Child processes that cannot outlive the test: killed on drop, and by the kernel if the test
//! process itself dies (`PR_SET_PDEATHSIG`), so a crashed `cargo test` leaves no broker behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// How long [`wait_for_port`] sleeps between connection attempts.
const PORT_POLL_INTERVAL_MS: u64 = 100;
/// How much of a log [`log_tail`] returns.
const LOG_TAIL_BYTES_MAX: u64 = 4096;

/// A loopback port that was free a moment ago. Racy by nature (another process may take it before the
/// caller binds it); good enough on a test machine, and callers that need two ports ask twice while
/// holding the first.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::io("local_addr"))?
        .port();
    Ok(port)
}

/// Two distinct free ports (held together while both are chosen, so they differ).
pub fn free_port_pair() -> Result<(u16, u16), HarnessError> {
    let first = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("bind 127.0.0.1:0"))?;
    let second = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("bind 127.0.0.1:0"))?;
    let port = |listener: &TcpListener| -> Result<u16, HarnessError> {
        Ok(listener
            .local_addr()
            .map_err(HarnessError::io("local_addr"))?
            .port())
    };
    Ok((port(&first)?, port(&second)?))
}

/// A running child with its output in `log`. Dropping it sends SIGKILL and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `command` with stdout and stderr appended to `log`, dying with the test process.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        log: &Path,
    ) -> Result<ChildGuard, HarnessError> {
        ChildGuard::spawn_split(name, command, log, log)
    }

    /// [`ChildGuard::spawn`] with stdout in its own file (for output the caller parses); `log`
    /// gets stderr and is the one error messages quote.
    pub fn spawn_split(
        name: &str,
        command: &mut Command,
        stdout: &Path,
        log: &Path,
    ) -> Result<ChildGuard, HarnessError> {
        let open = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(HarnessError::io(format!("open {}", path.display())))
        };
        command
            .stdin(Stdio::null())
            .stdout(open(stdout)?)
            .stderr(open(log)?);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this is the only
        // thing run between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(HarnessError::io(format!("start {name} ({command:?})")))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        self.child
            .try_wait()
            .map_err(HarnessError::io(format!("wait for {}", self.name)))
    }

    /// SIGKILL, then reap. Harmless if it already exited.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        // An error here means the child is already gone, which is what we want.
        let _ = self.child.kill();
        self.child
            .wait()
            .map_err(HarnessError::io(format!("reap {}", self.name)))?;
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit on its own; on timeout kills it and says so.
    pub fn wait_with_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Err(HarnessError::TimedOut {
                    name: self.name.clone(),
                    timeout_s: timeout.as_secs(),
                    log: self.log.clone(),
                    tail: log_tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Waits until `address` accepts a TCP connection, failing early if `child` exits first.
pub fn wait_for_port(
    address: SocketAddr,
    child: &mut ChildGuard,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_status()? {
            return Err(HarnessError::ExitedEarly {
                name: child.name().to_string(),
                status: status.to_string(),
                log: child.log().to_path_buf(),
                tail: log_tail(child.log()),
            });
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::TimedOut {
                name: format!("{} (waiting for {address})", child.name()),
                timeout_s: timeout.as_secs(),
                log: child.log().to_path_buf(),
                tail: log_tail(child.log()),
            });
        }
        std::thread::sleep(Duration::from_millis(PORT_POLL_INTERVAL_MS));
    }
}

/// The last few KiB of a log file, for error messages; never fails (an unreadable log says so).
pub fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES_MAX)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|error| format!("(cannot read {}: {error})", path.display()))
}

/// Runs a short command to completion with stdout in `stdout` and stderr in `log` (the same file
/// is fine); fails with the log's tail.
pub fn run_to_completion(
    name: &str,
    command: &mut Command,
    stdout: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let mut child = ChildGuard::spawn_split(name, command, stdout, log)?;
    let status = child.wait_with_timeout(timeout)?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::Failed {
            name: name.to_string(),
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: log_tail(log),
        })
    }
}
