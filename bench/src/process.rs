//! Child processes the harness starts (brokers, the load generator): killed on drop, logs kept,
//! CPU time read from `/proc/<pid>/stat`.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped (SIGTERM, then SIGKILL after `STOP_GRACE`) when dropped.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    child: Child,
    log: PathBuf,
}

const STOP_GRACE: Duration = Duration::from_secs(10);

impl Guarded {
    /// Spawns `command` with stdout and stderr appended to `log` (appended, so a restarted
    /// broker's log follows the first run's).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Guarded> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| anyhow::anyhow!("{name}: cannot start {command:?}: {error}"))?;
        Ok(Guarded {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `address` accepts TCP connections, the process exits, or `limit` passes.
    pub fn wait_listening(&mut self, address: SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                anyhow::bail!(
                    "{} exited ({status}) before listening: {}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} not listening on {address} after {limit:?}: {}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for exit at most `limit`; kills the process after it.
    pub fn wait_with_limit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!("{} still running after {limit:?}; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the log, on one line, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!(
            "log {} ends: {}",
            self.log.display(),
            strip_ansi(&tail.join(" | "))
        )
    }

    /// User + system CPU seconds of the process so far (`None` if it is gone or unreadable).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let ticks = cpu_ticks(&stat)?;
        // SAFETY: sysconf reads a constant of the running system; no memory is touched.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        #[expect(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
        (per_second > 0).then(|| ticks as f64 / per_second as f64)
    }
}

impl Guarded {
    /// SIGKILL at once, then reaps the process (the `chaos` scenario's kill -9).
    pub fn kill_now(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the running process; nothing once it has exited.
    pub fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: signals our own child, which has not been reaped (checked just above), so its
        // pid cannot have been reused.
        let result = unsafe { libc::kill(pid, signal) };
        anyhow::ensure!(
            result == 0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Guarded {
    /// Stops the process: SIGTERM, then SIGKILL after `STOP_GRACE`. Returns once it has exited;
    /// true when it had to be killed.
    pub fn stop(&mut self) -> bool {
        if self.exited().is_some() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            let _ = self.child.kill();
            return true;
        };
        // SAFETY: signals our own child, whose pid cannot be reused before we reap it below.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        true
    }
}

/// How to start a broker again: its program, arguments, environment and log. Kept so the
/// harness can restart a broker on the same data (the `replay` scenario reads after a restart,
/// from the store rather than from caches the writes filled).
#[derive(Clone, Debug)]
pub struct Launch {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub envs: Vec<(String, String)>,
    pub log: PathBuf,
}

impl Launch {
    pub fn new(name: &str, program: impl Into<PathBuf>, log: &Path) -> Launch {
        Launch {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            log: log.to_owned(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Launch {
        self.envs.push((key.to_owned(), value.into()));
        self
    }

    /// The argument after the first `flag` (e.g. the store URL after `--store`), if any.
    pub fn arg_after(&self, flag: &str) -> Option<&OsStr> {
        let mut args = self.args.iter();
        args.find(|arg| *arg == flag)?;
        args.next().map(OsString::as_os_str)
    }

    pub fn spawn(&self) -> anyhow::Result<Guarded> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        Guarded::spawn(&self.name, command, &self.log)
    }
}

/// Drops terminal colour sequences (`ESC [ ... letter`), which some brokers log even to a file.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the sequence's final letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After ')' come field 3 (state), 4, ...: utime is field 14, i.e. the 12th here.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A free TCP port on loopback (bound then released; another process could take it in between,
/// which on a test machine is rare enough and shows up as a start failure, not a wrong number).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_argument_after_a_flag_is_found() {
        let launch = Launch::new("a", "/bin/true", Path::new("/tmp/a.log"))
            .arg("serve")
            .arg("--store")
            .arg("file:///tmp/store")
            .arg("--listen");
        assert_eq!(
            launch.arg_after("--store"),
            Some(OsStr::new("file:///tmp/store"))
        );
        assert_eq!(launch.arg_after("--listen"), None);
        assert_eq!(launch.arg_after("--data-dir"), None);
    }

    #[test]
    fn reads_utime_and_stime_past_a_tricky_name() {
        let stat = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 30 0";
        assert_eq!(cpu_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn strips_colour_codes() {
        assert_eq!(
            strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m x"),
            "time ERROR x"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn a_launch_starts_again_and_appends_to_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("echo.log");
        let launch = Launch::new("echo", "sh", &log)
            .arg("-c")
            .arg("echo run $WORD")
            .env("WORD", "again");
        for _ in 0..2 {
            let mut child = launch.spawn().unwrap();
            assert!(
                child
                    .wait_with_limit(Duration::from_secs(10))
                    .unwrap()
                    .success()
            );
        }
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "run again\nrun again\n"
        );
    }

    #[test]
    fn stop_ends_a_running_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Launch::new("sleep", "sleep", &dir.path().join("sleep.log"))
            .arg("60")
            .spawn()
            .unwrap();
        assert!(child.exited().is_none());
        assert!(!child.stop(), "sleep ends on SIGTERM");
        assert!(child.exited().is_some());
    }

    #[test]
    fn kill_now_ends_a_stopped_process_and_reports_the_signal() {
        use std::os::unix::process::ExitStatusExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Launch::new("sleep", "sleep", &dir.path().join("sleep.log"))
            .arg("60")
            .spawn()
            .unwrap();
        child.signal(libc::SIGSTOP).unwrap();
        child.signal(libc::SIGCONT).unwrap();
        child.signal(libc::SIGSTOP).unwrap();
        let status = child.kill_now().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Once reaped: no signal is sent, and a second kill reports the same exit.
        child.signal(libc::SIGCONT).unwrap();
        assert_eq!(child.kill_now().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn own_process_cpu_is_readable() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks(&stat).is_some());
    }
}
