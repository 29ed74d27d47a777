//! How the `sluice` process logs and how it ends when something is wrong.
//!
//! **A panic anywhere ends the process.** Each core is a thread of its own: left to Rust's
//! default, a panicking network core would unwind its thread and vanish while the other cores,
//! the listener's other sockets and the metadata core carried on — a half-alive agent that
//! accepts connections it can no longer serve and that no supervisor restarts. [`exit_on_panic`]
//! installs a hook that logs the panic (thread, location, message) and exits with
//! [`PANIC_EXIT_CODE`]. Exiting at once is safe for the data: a record is acknowledged only once
//! the object holding it is in the store, so the exit loses nothing acknowledged, exactly like a
//! `kill -9` (which the kill tests cover). The hook is the binary's choice: tests that start
//! agents inside their own process keep the default.
//!
//! **Logs** go to stderr: text, with ANSI colours only when stderr is a terminal (a redirected
//! log stays plain), or one JSON object per line with `SLUICE_LOG_FORMAT=json`. `SLUICE_LOG`
//! takes tracing's filter syntax (`info`, `sluice_server=debug`, ...).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The exit code after a panic: Rust's own for a panicking `main`.
pub const PANIC_EXIT_CODE: i32 = 101;

/// The log's format, from `SLUICE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `text` (or unset) or `json`; anything else is refused with the accepted values.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "SLUICE_LOG_FORMAT={other:?} is not a log format: use `text` or `json`"
            )),
        }
    }
}

/// Sets up the process's log from `SLUICE_LOG` and `SLUICE_LOG_FORMAT`.
pub fn init_logging() -> Result<(), String> {
    let format = LogFormat::parse(std::env::var("SLUICE_LOG_FORMAT").ok().as_deref())?;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_thread_names(true)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    }
    .map_err(|error| format!("cannot set up logging: {error}"))
}

/// The panic's message, when it is a string (as `panic!` and `expect` make it).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// Makes a panic on any thread end the process with [`PANIC_EXIT_CODE`], after logging which
/// thread panicked, where and why (and after Rust's own report, with a backtrace when
/// `RUST_BACKTRACE` asks for one).
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("(unnamed)");
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let message = panic_message(info.payload());
        tracing::error!(
            thread,
            location,
            message,
            "a thread panicked: the agent exits (code {PANIC_EXIT_CODE}) rather than run \
             without it; every acknowledged record is in the store"
        );
        report(info);
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_a_wrong_one_names_the_choices() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" json ")), Ok(LogFormat::Json));
        let error = LogFormat::parse(Some("yaml")).unwrap_err();
        assert!(error.contains("`text` or `json`"), "{error}");
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42_u8), "(a panic without a message)");
    }
}
