//! The `sluice` binary: parses the command line, sets up logging, runs the command.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // `SLUICE_LOG` takes tracing's filter syntax (`info`, `sluice_server=debug`, ...).
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_thread_names(true)
        .with_writer(std::io::stderr)
        .init();
    sluice_server::cli::run(sluice_server::cli::Cli::parse())
}
