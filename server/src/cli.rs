//! The `sluice` command line: `sluice serve` runs an agent, `sluice config` prints the
//! configuration it would run with, `sluice dump` prints a stored object.
//!
//! Kept in the library (not in `main.rs`) so that argument parsing is tested like the rest.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Effective, Overrides};
use crate::net::agent::Agent;
use crate::signals::TerminationSignals;

/// Sluice: a Kafka-compatible streaming agent that keeps every byte in object storage.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent.
    Serve(Box<ServeArgs>),
    /// Print the effective configuration (the same --config and flags as serve) and where each
    /// value came from: default, file, env or flag. Secrets are redacted.
    Config(Box<ServeArgs>),
    /// Print a stored object (header, index, batch headers) as JSON.
    Dump {
        /// A file (an object in a local-directory store), or a key such as
        /// `log/00000000000000000042` with `--store`.
        object: String,
        /// Object store URL to read the key from (`s3://bucket?endpoint=…`, `file:///dir`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Also check every batch's CRC-32C.
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config(args) => print_config(&args),
        Command::Dump {
            object,
            store,
            verify,
        } => {
            match crate::dump::dump(&crate::dump::DumpRequest {
                object,
                store,
                verify_batches: verify,
            }) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("sluice dump: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The process's environment, as the configuration reads it (names and values that are not
/// UTF-8 cannot be settings and are skipped).
fn process_environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// `sluice config`: the configuration `sluice serve` would run with, or its error (exit 1).
fn print_config(args: &ServeArgs) -> ExitCode {
    let text = Effective::load(
        args.config.as_deref(),
        process_environment(),
        &args.overrides,
    )
    .and_then(|effective| effective.render());
    match text {
        Ok(text) => {
            use std::io::Write as _;
            // A reader that closed the pipe (`sluice config | head`) is not an error.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    // Before any thread of the agent exists: a panic on any of them ends the process.
    crate::lifecycle::exit_on_panic();
    let config = match Config::load(
        args.config.as_deref(),
        process_environment(),
        &args.overrides,
    ) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sluice: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Before any executor thread exists, so that they all inherit the blocked mask.
    let signals = match TerminationSignals::block() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("sluice: cannot block termination signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let agent = match Agent::start(&config) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("sluice: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The first line is what scripts read (the first listener); then every listener by name.
    // One write, and its failure ignored: a reader that closed the pipe after the first line
    // (or a closed stdout) must not stop the agent, as `println!` would by panicking.
    let mut banner = format!("sluice: listening on {}\n", agent.local_addr());
    for (name, address) in agent.listener_addrs() {
        banner.push_str(&format!("sluice: listener {name} on {address}\n"));
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush());
    }
    match signals.wait() {
        Ok(signal) => tracing::info!(signal, "stopping"),
        Err(error) => tracing::error!(%error, "waiting for a termination signal failed; stopping"),
    }
    match agent.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sluice: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::CpuList;

    #[test]
    fn serve_flags_parse_into_overrides() {
        let cli = Cli::try_parse_from([
            "sluice",
            "serve",
            "--config",
            "s.toml",
            "--listen",
            "0.0.0.0:9",
            "--data-dir",
            "/d",
            "--store",
            "s3://b",
            "--cpus",
            "0-1",
            "--auto-create-topics",
            "false",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.config, Some(PathBuf::from("s.toml")));
        assert_eq!(args.overrides.listen.as_deref(), Some("0.0.0.0:9"));
        assert_eq!(args.overrides.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(args.overrides.store.as_deref(), Some("s3://b"));
        assert_eq!(args.overrides.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(args.overrides.auto_create_topics, Some(false));
    }

    #[test]
    fn listener_flags_take_kafkas_comma_strings() {
        let cli = Cli::try_parse_from([
            "sluice",
            "serve",
            "--listeners",
            "CLIENT://0.0.0.0:9094,INTERNAL://127.0.0.1:9092",
            "--advertised-listeners",
            "CLIENT://kafka-1.example.com:9094",
            "--listener-security-protocol-map",
            "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let mut config = crate::config::Config::default();
        config.apply(&args.overrides);
        assert_eq!(
            config.listeners,
            ["CLIENT://0.0.0.0:9094", "INTERNAL://127.0.0.1:9092"]
        );
        assert_eq!(
            config.advertised_listeners,
            ["CLIENT://kafka-1.example.com:9094"]
        );
        assert_eq!(
            config.listener_security_protocol_map,
            ["CLIENT:SASL_SSL", "INTERNAL:PLAINTEXT"]
        );
    }

    #[test]
    fn config_takes_the_flags_of_serve() {
        let cli = Cli::try_parse_from([
            "sluice",
            "config",
            "--config",
            "s.toml",
            "--flush-interval-ms",
            "25",
        ])
        .unwrap();
        let Command::Config(args) = cli.command else {
            panic!("expected config")
        };
        assert_eq!(args.config, Some(PathBuf::from("s.toml")));
        assert_eq!(args.overrides.flush_interval_ms, Some(25));
        let missing =
            Cli::try_parse_from(["sluice", "config", "--config", "/nonexistent/sluice.toml"])
                .unwrap();
        assert_eq!(run(missing), ExitCode::FAILURE);
    }

    #[test]
    fn bad_flag_values_and_unknown_flags_are_refused() {
        assert!(Cli::try_parse_from(["sluice", "serve", "--cpus", "x"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "serve", "--flush-intervall-ms", "1"]).is_err());
    }

    #[test]
    fn dump_of_a_missing_file_fails_cleanly() {
        let cli =
            Cli::try_parse_from(["sluice", "dump", "/nonexistent/object", "--verify"]).unwrap();
        assert_eq!(run(cli), ExitCode::FAILURE);
    }
}
