//! Deterministic simulation of the Sluice engine and the metadata core's write and read paths.
//!
//! One seed drives everything: a virtual clock (tokio's paused clock on a single-threaded
//! runtime), a simulated object store ([`store`]) with latency distributions, 5xx answers,
//! timeouts, lost responses, 409 conflicts and slow stragglers, crashes of an agent at any of its
//! store calls or at any instant, a second writer appearing, and a workload ([`client`]) of
//! produces (idempotent and not), fetches, topic changes and offset commits against agents that
//! run the real metadata log, state machine, hedged PUTs, checkpoints and recovery under the
//! server's window logic ([`agent`]).
//!
//! After every step (10 virtual ms) the driver checks the newest agent against the state of the
//! committed log ([`oracle`]) and the reference model ([`model`]); whenever an agent opens the log,
//! and at the end, it reads every partition whole and recovers the bucket from scratch and from
//! its checkpoints. The first broken invariant ends the run with its seed; the same seed replays
//! the same run, which [`Report::trace_hash`] makes checkable.
//!
//! Why tokio and not a home-made executor: the engine's hedged PUTs spawn tokio tasks and sleep on
//! tokio timers. Under `start_paused` a current-thread runtime is deterministic as long as nothing
//! asks it for randomness — the one `select!` on the simulated path is `biased` — and nothing reads
//! the wall clock where it decides anything (the log writer's PUT latency samples use
//! `std::time::Instant`, but only for a median the simulated flusher does not use). The simulation
//! itself keeps every map it iterates in a `BTreeMap`.
//!
//! See `docs/testing.md`, "Deterministic simulation", for the fault model, the invariants, what is
//! not simulated and how to replay a seed.

pub mod agent;
pub mod client;
pub mod clock;
pub mod model;
pub mod oracle;
pub mod run;
pub mod store;

pub use run::{Failure, Options, Report, Summary, run_seed};

thread_local! {
    static PRINT_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Print every traced event (store calls, landings, acknowledgements, crashes) to stderr as it
/// happens, on this thread: what `sluice-sim --seed N --trace` shows.
pub fn print_trace(on: bool) {
    PRINT_TRACE.with(|print| print.set(on));
}

pub(crate) fn tracing_printed() -> bool {
    PRINT_TRACE.with(std::cell::Cell::get)
}
pub use sluice_engine::planted::PlantedBug;
