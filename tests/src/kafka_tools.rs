//! Apache Kafka's command-line tools (`kafka-tools`, fetched with the broker's jars by
//! `scripts/kafka/fetch-kafka.sh`), run as an operator runs them: the end-to-end admin-tools and
//! ACL scenarios drive Sluice and Apache Kafka with them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repository_root;
use crate::tools::skip_or_fail;

/// Each tool's own limit (a JVM start included), through coreutils' `timeout`.
pub const TOOL_TIMEOUT_S: u64 = 120;

/// The directory of Kafka's jars, tools included, or `None` after saying why `test` does not run
/// ([`skip_or_fail`]: a failure under `CI=true`).
pub fn jars(test: &str) -> Option<PathBuf> {
    let lib = repository_root().join("scripts/kafka/lib");
    let has_tools = std::fs::read_dir(&lib).is_ok_and(|mut entries| {
        entries.any(|entry| {
            entry.is_ok_and(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("kafka-tools-")
            })
        })
    });
    if !lib.join(".complete").exists() || !has_tools {
        skip_or_fail(&format!(
            "{test}: Kafka's tools are missing; run `bash scripts/kafka/fetch-kafka.sh`"
        ));
        return None;
    }
    Some(lib)
}

/// Runs the tool `class` with `args` in `work_dir`, on the jars in `lib`: whether it exited 0, and
/// its stdout and stderr together. A tool that cannot be started reads as a failed run.
pub fn run(lib: &Path, work_dir: &Path, class: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("timeout")
        .arg(TOOL_TIMEOUT_S.to_string())
        .arg("java")
        .arg("-Xmx256m")
        .arg("-XX:+UseSerialGC")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(class)
        .args(args)
        .current_dir(work_dir)
        .output();
    match output {
        Ok(output) => (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
        Err(error) => (false, format!("cannot run java {class}: {error}")),
    }
}
