//! What the end-to-end tests need from the machine, and what happens when it is missing.
//!
//! Locally a missing tool skips the test with a message naming what to install, so `cargo test` on a
//! machine without a JVM still passes the rest. In CI (`CI=true`) the same absence fails the test:
//! `scripts/install-test-deps.sh` is supposed to have installed everything, and a matrix that quietly
//! skipped would hide that it did not.

use std::io::Write;
use std::process::{Command, Stdio};

/// Something a test needs; `missing` says why not, naming what to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Java,
    Maven,
    Go,
    Python,
    /// A Python module (import name, pip package).
    PythonModule(&'static str, &'static str),
    /// Prometheus's `promtool` (Debian's `prometheus` package), to check the metrics text.
    Promtool,
}

impl Tool {
    /// `None` when present, else what to install.
    pub fn missing(self) -> Option<String> {
        let works = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        match self {
            Tool::Java => (!works("java", &["-version"]))
                .then(|| "java 17+ (apt-get install openjdk-17-jdk-headless)".to_string()),
            Tool::Maven => (!works("mvn", &["-v"])).then(|| "maven (apt-get install maven)".to_string()),
            Tool::Go => (!works("go", &["version"])).then(|| "go 1.24+ (https://go.dev/dl)".to_string()),
            Tool::Python => (!works(&python(), &["--version"]))
                .then(|| "python3 (or set SLUICE_E2E_PYTHON)".to_string()),
            Tool::Promtool => (!works("promtool", &["--version"]))
                .then(|| "promtool (apt-get install prometheus)".to_string()),
            Tool::PythonModule(module, package) => {
                (!works(&python(), &["-c", &format!("import {module}")])).then(|| {
                    format!(
                        "the Python package {package} (pip install -r tests/clients/python/requirements.txt)"
                    )
                })
            }
        }
    }
}

/// The Python interpreter the clients run under: `SLUICE_E2E_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("SLUICE_E2E_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// `CI=true` (or `1`), as CI services and `.ci/run` set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Writes straight to the process's stderr, past the test harness's output capture, so that a skip
/// is seen in a passing run and not only in a failing one.
pub fn loud(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{message}");
    let _ = stderr.flush();
}

/// Whether the tools are there. In CI a missing tool panics (the test fails, naming what to
/// install); locally it prints `SKIPPED: ...` and returns `false` ([`skip_or_fail`]).
pub fn require(test: &str, tools: &[Tool]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    let mut python_missing = false;
    for tool in tools {
        // Without the interpreter every module is missing too; naming each would bury the cause.
        if python_missing && matches!(tool, Tool::PythonModule(..)) {
            continue;
        }
        let absent = tool.missing();
        python_missing |= *tool == Tool::Python && absent.is_some();
        missing.extend(absent);
    }
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "{test}: missing {}; run `bash scripts/install-test-deps.sh`",
        missing.join(", ")
    ));
    false
}

/// A test that cannot run here, and `reason` says why (a missing client or tool, an API the agent
/// does not advertise). In CI (`CI=true`) this panics with the reason, so the test fails; locally it
/// prints `SKIPPED: {reason}` past the output capture and returns, and the caller returns too.
/// Every test that skips goes through here, so that no skip passes quietly in CI.
pub fn skip_or_fail(reason: &str) {
    assert!(
        !in_ci(),
        "{reason} (CI=true, so this is a failure, not a skip)"
    );
    loud(&format!("SKIPPED: {reason}"));
}
