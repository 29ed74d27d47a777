//! The client × codec matrix, shared by the Apache Kafka and Sluice scenarios: each client produces
//! and consumes its share of the records once per codec, on a fresh topic, and each run is verified.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::clients::{ClientKind, ClientRun, Codec, Mode};
use crate::generator::RecordGenerator;
use crate::tools::{loud, require};
use crate::verify::{Expectation, verify};

/// Records per client across all codecs against Apache Kafka when `SLUICE_E2E_RECORDS` is not set:
/// the reference only has to validate the harness, and its matrix then takes about 45 s on 2 cores.
pub const KAFKA_RECORDS_PER_CLIENT_DEFAULT: u64 = 20_000;
/// The same against Sluice: the target the matrix is meant to prove, about 80 s on 2 cores.
pub const SLUICE_RECORDS_PER_CLIENT_DEFAULT: u64 = 100_000;
pub const PARTITIONS: u32 = 8;
/// Limit of each phase (produce, consume) inside a client.
pub const PHASE_TIMEOUT_S: u64 = 180;

/// `SLUICE_E2E_RECORDS`, else `default`.
pub fn records_per_client(default: u64) -> u64 {
    std::env::var("SLUICE_E2E_RECORDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .filter(|records: &u64| *records > 0)
        .unwrap_or(default)
}

/// A timestamp base an hour in the past: inside any broker's accepted window (Kafka rejects
/// timestamps too far in the future) and far from any retention limit.
pub fn timestamp_base_ms() -> i64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        });
    now_ms - 3_600_000
}

/// One cell of the matrix and what came of it.
#[derive(Debug)]
pub struct Cell {
    pub client: ClientKind,
    pub codec: Codec,
    pub records: u64,
    /// What the client was asked to produce, and where its report is.
    pub generator: Option<RecordGenerator>,
    pub report: Option<PathBuf>,
    pub elapsed: Duration,
    /// `None` when the run verified; else what went wrong.
    pub failure: Option<String>,
}

/// Runs every available client × every codec against `bootstrap`, `records_per_client` records per
/// client split evenly over the codecs; `target` names the broker in messages. Clients whose tools
/// are missing are skipped (locally) or fail (CI).
pub fn run(target: &str, bootstrap: &str, records_per_client: u64, work_dir: &Path) -> Vec<Cell> {
    run_clients(
        target,
        bootstrap,
        &ClientKind::ALL,
        records_per_client,
        work_dir,
    )
}

/// [`run`] with only `clients` (each keeps the seeds it has in the full matrix).
pub fn run_clients(
    target: &str,
    bootstrap: &str,
    clients: &[ClientKind],
    records_per_client: u64,
    work_dir: &Path,
) -> Vec<Cell> {
    let per_codec = (records_per_client / Codec::ALL.len() as u64).max(1);
    let timestamp_base_ms = timestamp_base_ms();
    let mut cells = Vec::new();
    for (client_number, client) in ClientKind::ALL.into_iter().enumerate() {
        if !clients.contains(&client) {
            continue;
        }
        if !require(
            &format!("{target} matrix, {} client", client.name()),
            &client.tools(),
        ) {
            continue;
        }
        if let Err(error) = client.build(work_dir) {
            cells.push(Cell {
                client,
                codec: Codec::None,
                records: 0,
                generator: None,
                report: None,
                elapsed: Duration::ZERO,
                failure: Some(format!("build failed: {error}")),
            });
            continue;
        }
        for (codec_number, codec) in Codec::ALL.into_iter().enumerate() {
            let generator = RecordGenerator {
                seed: 1000 + (client_number * 10 + codec_number) as u64,
                partitions: PARTITIONS,
                timestamp_base_ms,
            };
            let run = ClientRun {
                client,
                bootstrap: bootstrap.to_string(),
                topic: format!("e2e-{}-{}", client.name(), codec.name()),
                records: per_codec,
                codec,
                mode: Mode::Roundtrip,
                partitions: PARTITIONS,
                seed: generator.seed,
                timestamp_base_ms,
                timeout_s: PHASE_TIMEOUT_S,
                report: work_dir.join(format!("{}-{}.jsonl", client.name(), codec.name())),
            };
            let started = Instant::now();
            let failure = run_cell(&run, &generator);
            let cell = Cell {
                client,
                codec,
                records: per_codec,
                generator: Some(generator),
                report: Some(run.report.clone()),
                elapsed: started.elapsed(),
                failure,
            };
            loud(&format!(
                "{target}: {:<12} {:<6} {:>7} records {:>6.1} s  {}",
                client.name(),
                codec.name(),
                cell.records,
                cell.elapsed.as_secs_f64(),
                if cell.failure.is_none() {
                    "ok"
                } else {
                    "FAILED"
                }
            ));
            cells.push(cell);
        }
    }
    cells
}

fn run_cell(run: &ClientRun, generator: &RecordGenerator) -> Option<String> {
    let (report, status) = match run.run() {
        Ok(result) => result,
        Err(error) => return Some(error.to_string()),
    };
    if !report.errors.is_empty() || !status.success() {
        return Some(format!(
            "client exited with {status}, reporting {:?}; its log is {}:\n{}",
            report.errors,
            run.log_path().display(),
            crate::process::log_tail(&run.log_path())
        ));
    }
    match verify(
        generator,
        &report.acks,
        &report.records,
        Expectation::ExactlyOnce {
            records: run.records,
        },
    ) {
        Ok(_) => None,
        Err(problems) => Some(format!(
            "report {} does not verify:\n{problems}",
            run.report.display()
        )),
    }
}

/// Panics with every failed cell, if any.
pub fn assert_all_passed(target: &str, cells: &[Cell]) {
    let failures: Vec<String> = cells
        .iter()
        .filter_map(|cell| {
            cell.failure
                .as_ref()
                .map(|failure| format!("{} / {}: {failure}", cell.client.name(), cell.codec.name()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{target}: {} of {} matrix runs failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n\n")
    );
}
