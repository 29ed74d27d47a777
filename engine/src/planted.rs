//! Bugs planted on purpose, so the deterministic simulation (`sim/`, `docs/testing.md`) can show
//! that it catches them. Only with the `sim-planted-bugs` feature; without it this module and every
//! hook are compiled out.
//!
//! A bug is switched on per thread ([`plant`]): the simulation runs one seed on one thread (a
//! current-thread runtime), and tests running in parallel on other threads see no bug. Each hook
//! is one [`active`] check at the place the bug lives, a thread-local read.

use std::cell::Cell;

/// A deliberate bug the simulation must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlantedBug {
    /// The log writer acknowledges an entry before its PUT is durable (the PUT still runs, and its
    /// failure is ignored). Breaks DESIGN invariant 3.
    AckBeforePut,
    /// The log writer takes `AlreadyExists` at its position as "my own earlier attempt landed"
    /// without reading the entry back: a fenced writer keeps acknowledging.
    TrustAlreadyExists,
    /// The state machine applies every data entry, whatever its epoch and `prev_seq` (no chain
    /// rule): writes of a fenced or crashed writer that land late are replayed.
    SkipChainRule,
    /// The state machine appends every idempotent batch without checking its sequence: a retried
    /// batch whose first attempt landed is written twice.
    SkipIdempotenceCheck,
    /// Recovery claims after the highest position listed instead of at the first gap.
    ClaimPastGap,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 5] = [
        PlantedBug::AckBeforePut,
        PlantedBug::TrustAlreadyExists,
        PlantedBug::SkipChainRule,
        PlantedBug::SkipIdempotenceCheck,
        PlantedBug::ClaimPastGap,
    ];

    /// The name `sluice-sim --plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforePut => "ack-before-put",
            PlantedBug::TrustAlreadyExists => "trust-already-exists",
            PlantedBug::SkipChainRule => "skip-chain-rule",
            PlantedBug::SkipIdempotenceCheck => "skip-idempotence-check",
            PlantedBug::ClaimPastGap => "claim-past-gap",
        }
    }

    pub fn parse(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

thread_local! {
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// Switches `bugs` on for this thread (and every other bug off).
pub fn plant(bugs: &[PlantedBug]) {
    ACTIVE.with(|active| active.set(bugs.iter().fold(0, |bits, bug| bits | bug.bit())));
}

/// Whether `bug` is switched on for this thread.
pub fn active(bug: PlantedBug) -> bool {
    ACTIVE.with(|active| active.get() & bug.bit() != 0)
}
