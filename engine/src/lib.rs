//! Sluice storage engine.
//!
//! The engine is the storage library the agent stands on. It is split into pure cores and thin I/O
//! shells (see `docs/design.md`):
//!
//! - [`batch`]: Kafka record batch (v2) headers — parsed and CRC-checked, never re-encoded.
//! - [`format`]: object format v1 (`docs/format.md`): one object per flush window holding the raw
//!   batches grouped by partition, an rkyv index read in place, and a trailer.
//! - [`store`]: the object-store layer on `object_store`, with create-only writes, a runtime bridge
//!   so glommio cores never block on HTTP, and latency-model and fault-injection wrappers.
//! - [`metadata`]: the pure, deterministic metadata state machine (topics, partition indexes, high
//!   watermarks, log start offsets). No I/O, no clock.
//! - [`log`]: the metadata log in object storage — every object is a log entry at a sequential,
//!   create-only key — with checkpoints, fencing of a second writer, and recovery.
//! - [`sequencer`]: a cluster's metadata log in PostgreSQL — gap-free positions in commit order,
//!   a head watch woken by `LISTEN`/`NOTIFY`, agent leases and the stored cluster id.

pub mod batch;
pub mod compact;
pub mod format;
pub mod log;
pub mod metadata;
#[cfg(feature = "sim-planted-bugs")]
pub mod planted;
pub mod read;
pub mod sequencer;
pub mod store;
pub mod types;
