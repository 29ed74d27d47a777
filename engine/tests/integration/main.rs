//! The crate's integration tests, one test binary (one link of the dependency tree instead of
//! one per file): each module is what was a file of its own under `tests/`.
//! Run one with `cargo test -p sluice-engine --test integration -- <module>::`.

mod common;
mod compaction;
mod compaction_two_compactors;
mod format_fixtures;
mod format_roundtrip;
mod group_offsets_recovery;
mod hedge_guards;
mod log_crash_recovery;
mod log_gc;
mod log_hedged_puts;
mod log_on_s3;
mod log_open_after_gap;
mod log_recovery;
mod log_reopen_failure;
mod log_reopen_yields;
mod metadata_chain;
mod metadata_model;
mod metadata_offsets_model;
mod metadata_producer_model;
mod pg_sequencer;
mod sequenced_log;
mod sequenced_send_by;
mod store_conformance;
mod store_loopback_floor;
mod store_s3_errors;
