//! The campaign's schedule: for each agent lifetime (a *cycle*, from one start to the next kill),
//! when the kill comes, whether and when the agent is paused (SIGSTOP … SIGCONT), and whether and
//! when the store misbehaves (a proxy fault window). Pure: drawn from the seed alone, so a
//! campaign's instants replay from its seed; what the agent was doing at each instant does not.
//!
//! Instants are milliseconds after the agent was started, not after it answered: a kill can land
//! in recovery, which is where the interesting bugs live.

use serde::Serialize;

use crate::proxy_faults::{FaultKind, FaultSpec};
use crate::seeded::Rng;

/// The ranges the schedule draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// A cycle's kill comes uniformly in `kill_after_ms_min..=kill_after_ms_max` after the start…
    pub kill_after_ms_min: u64,
    pub kill_after_ms_max: u64,
    /// …except in `long_percent` of cycles, which last up to `long_ms_max`, so that the agent
    /// also dies after checkpoints and compaction jobs have had time to run.
    pub long_percent: u32,
    pub long_ms_max: u64,
    /// Share of cycles with a SIGSTOP pause, and the pause's length.
    pub pause_percent: u32,
    pub pause_ms_min: u64,
    pub pause_ms_max: u64,
    /// Share of cycles with a store fault window, and the window's length.
    pub fault_percent: u32,
    pub fault_ms_min: u64,
    pub fault_ms_max: u64,
}

impl Timing {
    /// Quick (CI, debug binaries, which start slower) lets each lifetime run a little longer.
    pub fn new(quick: bool) -> Timing {
        Timing {
            kill_after_ms_min: if quick { 300 } else { 50 },
            kill_after_ms_max: if quick { 4_000 } else { 3_000 },
            long_percent: 10,
            long_ms_max: if quick { 8_000 } else { 15_000 },
            pause_percent: 25,
            pause_ms_min: 100,
            pause_ms_max: 3_000,
            fault_percent: 35,
            fault_ms_min: 200,
            fault_ms_max: 3_000,
        }
    }
}

/// A span of a cycle, in ms after the agent's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub at_ms: u64,
    pub for_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    pub span: Span,
    pub spec: FaultSpec,
    /// Seeds the proxy's per-request draws in this window.
    pub seed: u64,
}

/// One agent lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cycle {
    pub index: u64,
    pub kill_after_ms: u64,
    pub pause: Option<Span>,
    pub fault: Option<FaultWindow>,
}

/// What the driver does at an instant of a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    FaultOn(FaultSpec, u64),
    FaultOff,
    Kill,
}

impl Cycle {
    /// The cycle's actions in time order, ending with the kill; a pause or window that would
    /// outlast the kill is ended by it (SIGKILL ends a stopped process too; the window is closed
    /// before the restart).
    pub fn actions(&self) -> Vec<(u64, Action)> {
        let mut actions = Vec::with_capacity(5);
        if let Some(pause) = self.pause {
            actions.push((pause.at_ms, Action::Pause));
            actions.push((pause.at_ms + pause.for_ms, Action::Resume));
        }
        if let Some(fault) = self.fault {
            actions.push((fault.span.at_ms, Action::FaultOn(fault.spec, fault.seed)));
            actions.push((fault.span.at_ms + fault.span.for_ms, Action::FaultOff));
        }
        actions.retain(|(at_ms, _)| *at_ms < self.kill_after_ms);
        // Stable: at equal instants, a start stays before its end.
        actions.sort_by_key(|(at_ms, _)| *at_ms);
        actions.push((self.kill_after_ms, Action::Kill));
        actions
    }
}

/// The endless sequence of cycles of a seed.
#[derive(Clone, Debug)]
pub struct Schedule {
    seed: u64,
    timing: Timing,
    next_index: u64,
}

impl Schedule {
    pub fn new(seed: u64, timing: Timing) -> Schedule {
        Schedule {
            seed,
            timing,
            next_index: 0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Cycle;

    fn next(&mut self) -> Option<Cycle> {
        let index = self.next_index;
        self.next_index += 1;
        Some(draw(self.seed, index, &self.timing))
    }
}

/// Cycle `index` of `seed`: a function of both alone (each cycle has its own stream).
pub fn draw(seed: u64, index: u64, timing: &Timing) -> Cycle {
    let mut rng = Rng::derive(seed, index);
    let kill_after_ms = if rng.chance(timing.long_percent) {
        rng.between(timing.kill_after_ms_max, timing.long_ms_max)
    } else {
        rng.between(timing.kill_after_ms_min, timing.kill_after_ms_max)
    };
    let pause = rng.chance(timing.pause_percent).then(|| Span {
        at_ms: rng.between(0, kill_after_ms),
        for_ms: rng.between(timing.pause_ms_min, timing.pause_ms_max),
    });
    let fault = rng.chance(timing.fault_percent).then(|| {
        let span = Span {
            at_ms: rng.between(0, kill_after_ms),
            for_ms: rng.between(timing.fault_ms_min, timing.fault_ms_max),
        };
        let kind = FaultKind::ALL
            .get(usize::try_from(rng.between(0, 4)).unwrap_or(0))
            .copied()
            .unwrap_or(FaultKind::Error);
        // A tenth of the delays outlast the agent's 10 s store request timeout.
        let delay_ms = if rng.chance(10) {
            12_000
        } else {
            rng.between(50, 3_000)
        };
        FaultWindow {
            span,
            spec: FaultSpec {
                kind,
                percent: [10, 30, 60, 100]
                    .get(usize::try_from(rng.between(0, 3)).unwrap_or(0))
                    .copied()
                    .unwrap_or(100),
                delay_ms: if kind == FaultKind::Delay {
                    delay_ms
                } else {
                    0
                },
            },
            seed: rng.next_u64(),
        }
    });
    Cycle {
        index,
        kill_after_ms,
        pause,
        fault,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_seed_replays_its_schedule_and_another_seed_does_not() {
        let timing = Timing::new(false);
        let first: Vec<Cycle> = Schedule::new(42, timing).take(200).collect();
        let again: Vec<Cycle> = Schedule::new(42, timing).take(200).collect();
        assert_eq!(first, again);
        let other: Vec<Cycle> = Schedule::new(43, timing).take(200).collect();
        assert_ne!(first, other);
        // Cycle k does not depend on how many were drawn before it.
        assert_eq!(draw(42, 150, &timing), first[150]);
    }

    #[test]
    fn instants_stay_in_their_ranges_and_every_kind_occurs() {
        let timing = Timing::new(false);
        let cycles: Vec<Cycle> = Schedule::new(7, timing).take(2_000).collect();
        assert!(cycles.iter().all(|cycle| {
            (timing.kill_after_ms_min..=timing.long_ms_max).contains(&cycle.kill_after_ms)
        }));
        let long = cycles
            .iter()
            .filter(|cycle| cycle.kill_after_ms > timing.kill_after_ms_max)
            .count();
        assert!((100..300).contains(&long), "{long} long cycles");
        let paused = cycles.iter().filter(|cycle| cycle.pause.is_some()).count();
        assert!((400..600).contains(&paused), "{paused} pauses");
        for cycle in &cycles {
            if let Some(pause) = cycle.pause {
                assert!(pause.at_ms <= cycle.kill_after_ms);
                assert!((100..=3_000).contains(&pause.for_ms));
            }
        }
        for kind in FaultKind::ALL {
            assert!(
                cycles
                    .iter()
                    .any(|cycle| cycle.fault.is_some_and(|fault| fault.spec.kind == kind)),
                "{kind:?} never drawn"
            );
        }
        assert!(cycles.iter().any(|cycle| {
            cycle
                .fault
                .is_some_and(|fault| fault.spec.delay_ms == 12_000)
        }));
    }

    #[test]
    fn actions_are_ordered_and_end_with_the_kill() {
        let spec = FaultSpec {
            kind: FaultKind::Reset,
            percent: 100,
            delay_ms: 0,
        };
        let cycle = Cycle {
            index: 0,
            kill_after_ms: 1_000,
            pause: Some(Span {
                at_ms: 500,
                for_ms: 200,
            }),
            fault: Some(FaultWindow {
                span: Span {
                    at_ms: 100,
                    for_ms: 2_000,
                },
                spec,
                seed: 5,
            }),
        };
        assert_eq!(
            cycle.actions(),
            vec![
                (100, Action::FaultOn(spec, 5)),
                (500, Action::Pause),
                (700, Action::Resume),
                (1_000, Action::Kill),
            ],
            "the window outlasting the kill is closed by it, not after"
        );
        let plain = Cycle {
            pause: None,
            fault: None,
            ..cycle
        };
        assert_eq!(plain.actions(), vec![(1_000, Action::Kill)]);
    }
}
