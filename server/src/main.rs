//! The `sluice` binary: sets up logging, parses the command line, runs the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `SLUICE_LOG` (tracing's filter syntax) and `SLUICE_LOG_FORMAT` (`text` or `json`).
    if let Err(message) = sluice_server::lifecycle::init_logging() {
        eprintln!("sluice: {message}");
        return ExitCode::FAILURE;
    }
    sluice_server::cli::run(sluice_server::cli::Cli::parse())
}
