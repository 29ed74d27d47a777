//! Helpers shared by the engine's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::expect_used
)]

pub mod log_harness;
pub mod postgres;
