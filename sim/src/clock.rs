//! The virtual clock: tokio's paused clock, read as milliseconds since the run started.
//!
//! Under `start_paused` the clock moves only when every task waits on a timer, and then straight
//! to the next deadline, so a run's timing is a function of its seed and takes no wall-clock time.

use std::time::Duration;

/// Milliseconds since the Unix epoch at the start of every run (entry timestamps, commits).
pub const EPOCH_MS: i64 = 1_765_000_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: tokio::time::Instant,
}

impl Clock {
    /// A clock starting now; call inside the run's runtime.
    pub fn start() -> Clock {
        Clock {
            started: tokio::time::Instant::now(),
        }
    }

    /// Virtual milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The virtual wall clock (what an agent stamps entries and commits with).
    pub fn wall_ms(&self) -> i64 {
        EPOCH_MS.saturating_add(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))
    }

    /// The instant `ms` virtual milliseconds after the start.
    pub fn instant_at_ms(&self, ms: u64) -> tokio::time::Instant {
        self.started + Duration::from_millis(ms)
    }

    /// Sleeps until `ms` virtual milliseconds after the start.
    pub async fn sleep_until_ms(&self, ms: u64) {
        tokio::time::sleep_until(self.instant_at_ms(ms)).await;
    }
}

/// The run's trace: every event is hashed (the determinism check) and, with
/// [`crate::print_trace`], printed.
#[derive(Debug, Clone)]
pub struct Tracer {
    clock: Clock,
    hasher: std::rc::Rc<std::cell::RefCell<std::hash::DefaultHasher>>,
}

impl Tracer {
    pub fn new(clock: Clock) -> Tracer {
        Tracer {
            clock,
            hasher: std::rc::Rc::default(),
        }
    }

    pub fn trace(&self, event: impl std::hash::Hash + std::fmt::Debug) {
        if crate::tracing_printed() {
            eprintln!("{:>6} ms  {event:?}", self.clock.now_ms());
        }
        event.hash(&mut *self.hasher.borrow_mut());
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&*self.hasher.borrow())
    }
}
