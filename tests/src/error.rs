//! One error type for the harness; each variant names the process, file or address involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited before it was ready ({status}); last lines of {log}:\n{tail}")]
    ExitedEarly {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} did not finish within {timeout_s} s (killed); last lines of {log}:\n{tail}")]
    TimedOut {
        name: String,
        timeout_s: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("{name} failed ({status}); last lines of {log}:\n{tail}")]
    Failed {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("report {path}, line {line}: {message}")]
    Report {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("Kafka protocol probe of {address}: {message}")]
    Protocol { address: String, message: String },
}

impl HarnessError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}
