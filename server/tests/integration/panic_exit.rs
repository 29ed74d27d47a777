//! A panic on any thread of the `sluice` process ends the process (`lifecycle::exit_on_panic`),
//! with a log line naming the thread; the log has no ANSI colours when stderr is not a terminal,
//! and `SLUICE_LOG_FORMAT=json` makes it one JSON object per line.
//!
//! The test runs itself as a child process (the same test binary, with `SLUICE_PANIC_CHILD` set)
//! that sets up logging and the hook as the binary does, and panics on a thread named like a
//! network core. Without the hook the thread would die alone and the child would go on to exit 0.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

const CHILD: &str = "SLUICE_PANIC_CHILD";

fn run_child(log_format: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // The test's path in this binary (`panic_exit::…`): the module path less the crate.
            concat!(module_path!(), "::a_panic_on_any_thread_ends_the_process")
                .split_once("::")
                .unwrap()
                .1,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("SLUICE_LOG_FORMAT", log_format)
        .env("SLUICE_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn a_panic_on_any_thread_ends_the_process() {
    if std::env::var_os(CHILD).is_some() {
        sluice_server::lifecycle::init_logging().unwrap();
        sluice_server::lifecycle::exit_on_panic();
        let core = std::thread::Builder::new()
            .name("sluice-net-7".to_owned())
            .spawn(|| panic!("planted panic"))
            .unwrap();
        // With the hook the process is gone before the join returns.
        let _ = core.join();
        std::process::exit(0);
    }

    let text = run_child("text");
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert_eq!(
        text.status.code(),
        Some(sluice_server::lifecycle::PANIC_EXIT_CODE),
        "{stderr}"
    );
    assert!(
        stderr.contains("sluice-net-7")
            && stderr.contains("planted panic")
            && stderr.contains("the agent exits"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI escapes when stderr is a pipe: {stderr}"
    );

    let json = run_child("json");
    let stderr = String::from_utf8_lossy(&json.stderr);
    assert_eq!(
        json.status.code(),
        Some(sluice_server::lifecycle::PANIC_EXIT_CODE),
        "{stderr}"
    );
    let line: serde_json::Value = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .find(|line: &serde_json::Value| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in {stderr}"));
    assert_eq!(line["fields"]["thread"], "sluice-net-7", "{line}");
    assert_eq!(line["fields"]["message"], "planted panic", "{line}");
    assert!(
        line["fields"]["location"]
            .as_str()
            .unwrap()
            .contains("panic_exit.rs"),
        "{line}"
    );
}

#[test]
fn a_wrong_log_format_is_refused_by_the_binary() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--version")
        .env("SLUICE_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`text` or `json`"), "{stderr}");
}
