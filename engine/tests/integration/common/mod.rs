//! Helpers shared by the engine's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::expect_used
)]

pub mod log_harness;
pub mod sequenced;
/// The PostgreSQL test server lives in `sluice-tests`, shared with the server's and the
/// end-to-end tests.
pub mod postgres {
    pub use sluice_tests::postgres::*;
}
