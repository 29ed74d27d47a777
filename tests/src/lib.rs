//! The end-to-end harness: real Kafka clients against a real broker, compared byte for byte.
//!
//! Every client (the Java client, franz-go, librdkafka, kafka-python) is a small program under
//! `tests/clients/` that creates an 8-partition topic, produces records generated deterministically
//! from a seed, consumes every partition from the beginning without a consumer group, and writes a
//! JSON-lines report of what the broker acknowledged and what it served. The Rust side regenerates the
//! expected records from the same seed ([`generator`]) and checks the report ([`verify`]): every
//! acknowledged record is served at the offset it was acknowledged with, with the same key, value,
//! headers and timestamp, and offsets are contiguous per partition.
//!
//! The trade-off: the clients are separate processes in four languages rather than Rust crates, so a
//! run costs a process start (a JVM's second or so) and a report file, and the harness needs java,
//! maven, go and python on the machine. In exchange the bytes on the wire are exactly what those
//! client libraries send in production — batching, compression, header encoding, retries — which no
//! Rust re-implementation would reproduce.
//!
//! Targets: [`kafka::ApacheKafka`] (one KRaft node from the jars on Maven Central, the reference the
//! harness itself is validated against) and [`sluice::SluiceAgent`] (the `sluice` binary against a
//! loopback S3-API server). See `docs/testing.md`.

pub mod api_versions;
pub mod clients;
pub mod error;
pub mod generator;
pub mod groups;
pub mod kafka;
pub mod kafka_tools;
pub mod matrix;
pub mod postgres;
pub mod process;
pub mod report;
pub mod sluice;
pub mod stores;
pub mod streams;
pub mod tools;
pub mod verify;

pub use error::HarnessError;

/// The repository root (the workspace holding this crate).
pub fn repository_root() -> std::path::PathBuf {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Serializes the end-to-end scenarios of the `integration` test binary: each starts agents, a
/// broker or an S3-API server and several client processes, and was a test binary of its own,
/// which cargo ran one at a time. Every scenario takes this guard first; a scenario that panicked
/// (a failed test) does not hold the others up.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SCENARIO: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SCENARIO
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
