//! Store faults the proxy injects while a fault window is open (the `chaos` scenario).
//!
//! The agent sees what a real S3 endpoint does on a bad day, without an option of its own: answers
//! of 503 SlowDown, connections closed without an answer, answers held for seconds, and the two
//! faults that matter most for durability because the store *did* apply the request: a request
//! forwarded and then answered 500, or forwarded and then cut off. A PUT the agent believes failed
//! has then landed, and it must find that out (a create-only retry meets its own object) instead of
//! writing the same log position twice or acknowledging nothing. A delay is applied before the
//! request is forwarded, so a PUT held past the agent's kill lands afterwards, as a zombie write.
//!
//! The window is switched at run time ([`FaultControl::set`]); each request then draws, from a
//! seeded generator, whether it is hit. Requests are counted per fault kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::seeded::Rng;

/// What happens to a request that a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answered 503 SlowDown; not forwarded.
    Error,
    /// Forwarded (the store applies it), then answered 500 InternalError instead of its answer.
    ErrorAfterForward,
    /// The connection is closed without an answer; not forwarded.
    Reset,
    /// Forwarded, then the connection is closed without an answer.
    ResetAfterForward,
    /// Held for the window's `delay_ms`, then forwarded.
    Delay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Error,
        FaultKind::ErrorAfterForward,
        FaultKind::Reset,
        FaultKind::ResetAfterForward,
        FaultKind::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::ErrorAfterForward => "error_after_forward",
            FaultKind::Reset => "reset",
            FaultKind::ResetAfterForward => "reset_after_forward",
            FaultKind::Delay => "delay",
        }
    }

    fn index(self) -> usize {
        match self {
            FaultKind::Error => 0,
            FaultKind::ErrorAfterForward => 1,
            FaultKind::Reset => 2,
            FaultKind::ResetAfterForward => 3,
            FaultKind::Delay => 4,
        }
    }
}

/// One fault window: which fault, how many requests in a hundred it hits, and (for `Delay`) for
/// how long each is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub percent: u32,
    pub delay_ms: u64,
}

/// The proxy's fault switch and its counts; shared between the proxy and whoever drives it.
#[derive(Debug, Default)]
pub struct FaultControl {
    window: Mutex<Option<(FaultSpec, Rng)>>,
    injected: [AtomicU64; 5],
}

/// Requests hit by each fault kind so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub error: u64,
    pub error_after_forward: u64,
    pub reset: u64,
    pub reset_after_forward: u64,
    pub delay: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.error + self.error_after_forward + self.reset + self.reset_after_forward + self.delay
    }
}

impl FaultControl {
    /// Opens a window (`Some`) or closes it (`None`); `seed` drives which requests are hit.
    pub fn set(&self, spec: Option<FaultSpec>, seed: u64) {
        *self.window.lock().unwrap_or_else(PoisonError::into_inner) =
            spec.map(|spec| (spec, Rng::new(seed)));
    }

    /// Whether the next request is hit, and how; counts the hit.
    pub fn decide(&self) -> Option<FaultSpec> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (spec, rng) = window.as_mut()?;
        if !rng.chance(spec.percent) {
            return None;
        }
        if let Some(counter) = self.injected.get(spec.kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Some(*spec)
    }

    pub fn counts(&self) -> FaultCounts {
        let count = |kind: FaultKind| {
            self.injected
                .get(kind.index())
                .map_or(0, |counter| counter.load(Ordering::Relaxed))
        };
        FaultCounts {
            error: count(FaultKind::Error),
            error_after_forward: count(FaultKind::ErrorAfterForward),
            reset: count(FaultKind::Reset),
            reset_after_forward: count(FaultKind::ResetAfterForward),
            delay: count(FaultKind::Delay),
        }
    }
}

/// The error a service returns to make hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("fault injected: connection closed without an answer")]
pub struct ConnectionCut;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_window_hits_its_share_and_counts_by_kind() {
        let control = FaultControl::default();
        assert_eq!(control.decide(), None, "closed: nothing is hit");
        let spec = FaultSpec {
            kind: FaultKind::Reset,
            percent: 25,
            delay_ms: 0,
        };
        control.set(Some(spec), 3);
        let hits = (0..4_000).filter(|_| control.decide().is_some()).count();
        assert!((800..1_200).contains(&hits), "{hits}");
        assert_eq!(control.counts().reset, u64::try_from(hits).unwrap());
        assert_eq!(control.counts().total(), control.counts().reset);
        control.set(
            Some(FaultSpec {
                kind: FaultKind::Delay,
                percent: 100,
                delay_ms: 40,
            }),
            3,
        );
        assert_eq!(control.decide().unwrap().delay_ms, 40);
        assert_eq!(control.counts().delay, 1);
        control.set(None, 0);
        assert_eq!(control.decide(), None);
    }

    #[test]
    fn the_same_seed_hits_the_same_requests() {
        let draws = |seed| {
            let control = FaultControl::default();
            control.set(
                Some(FaultSpec {
                    kind: FaultKind::Error,
                    percent: 50,
                    delay_ms: 0,
                }),
                seed,
            );
            (0..64)
                .map(|_| control.decide().is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(9), draws(9));
        assert_ne!(draws(9), draws(10));
    }
}
