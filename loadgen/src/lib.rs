//! `sluice-loadgen`: an open-loop load generator for any Kafka-compatible broker.
//!
//! The one idea this crate is built around: **latency is measured from the time a record was
//! supposed to be sent, not from the time it was sent.** A closed-loop generator (send, wait, send)
//! slows down when the broker slows down, so a 2-second stall costs one slow sample and the
//! thousands of records that *should* have been sent during it are never measured — the stall
//! hides itself ("coordinated omission"). Here a scheduler fixes every record's intended send time
//! up front from the target rate ([`schedule`]); the intended time travels inside the record
//! ([`payload`]); produce latency is `ack − intended` and end-to-end latency is
//! `consume − intended`, recorded in HDR histograms ([`latency`]). If the generator or the broker
//! falls behind, the queueing delay shows up in the percentiles instead of disappearing.
//!
//! Layout: pure parts with no I/O and no clock ([`options`], [`schedule`], [`keys`], [`payload`],
//! [`latency`], [`summary`], [`progress`]) are unit tested without a broker; the Kafka shell
//! ([`kafka`]) and the orchestration ([`run`]) speak to a real broker through librdkafka.
//! `--mode replay` reads an existing topic from its first offsets to its end instead, as fast as
//! the client fetches, and verifies that no record is missing ([`replay`], [`run_replay`]).
//! The method is documented in `docs/loadgen.md`.

pub mod kafka;
pub mod keys;
pub mod latency;
pub mod options;
pub mod payload;
pub mod progress;
pub mod replay;
pub mod run;
pub mod run_replay;
pub mod schedule;
pub mod summary;
