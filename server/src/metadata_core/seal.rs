//! When to seal the open flush window: as soon as it pays, within a budget of PUTs per second.
//!
//! A produce is acknowledged after its window is sealed *and* the window's object is durable, so
//! the time a window stays open is latency every produce in it pays. A fixed window
//! (`flush_interval_ms` after its first batch) makes an idle agent's lone produce wait the whole
//! window for nothing: there is no upload to share. Sealing sooner costs PUTs, and PUTs are what
//! an agent is billed for. So the policy seals a window *early* only when that buys latency and
//! the budget allows it:
//!
//! - **group commit**: no upload is in flight (the previous window's entry is durable and applied)
//!   and produced bytes are waiting — the store is idle, waiting buys nothing;
//! - **size**: the window holds [`EAGER_SEAL_BYTES`] of batches — a PUT that large pays for itself
//!   (its time is transfer, and it is the size where hedged copies stop);
//! - **at the latest** `interval_ms` after the window opened (`flush_interval_ms`, stretched on a
//!   slow store), as before.
//!
//! Every one of these waits for a token of a [`PutBudget`] (a token bucket refilled at
//! `flush_puts_per_second_max`, holding a tenth of a second of it). A window that *must* close — it
//! reached `flush_bytes_max`, or carries admin commands a client waits on — does not wait, and still
//! takes a token when there is one. So over any `T` seconds the windows sealed are at most
//! `burst + budget × T`, plus the full windows (at most bytes produced / `flush_bytes_max`) and the
//! admin entries. With an object store's default budget (`1000 / flush_interval_ms`; a lone agent
//! on a local directory defaults to 1,000, `config::FLUSH_PUTS_PER_SECOND_LOCAL_DEFAULT`) that is
//! the ceiling fixed windows had: under continuous load windows are as long as before, and only
//! an agent with room in its budget (light or bursty load) answers faster.
//!
//! Windows holding only consumer-group commits never seal early: they ride the next produce
//! window or the timer, so a thousand committing consumers still share one PUT per window.
//!
//! The policy reads no clock: time comes in as monotonic milliseconds, so it is tested on a
//! virtual clock and the simulator (`sim/`) drives the same code.

/// A window holding this many bytes of batches seals as soon as the budget allows, without waiting
/// for the store to be idle: a 1 MiB PUT is mostly transfer, and entries over 1 MiB go out as one
/// copy (`store::hedge`), so waiting longer only adds latency.
pub const EAGER_SEAL_BYTES: u64 = 1 << 20;
/// The bucket holds `budget / BURST_DIVISOR` tokens (a tenth of a second of the budget), at least
/// one: enough for a burst of produces after a pause, small enough that any one second sees at
/// most 1.1 × the budget.
const BURST_DIVISOR: u64 = 10;
/// Tokens are counted in thousandths, so that a budget of `R` PUTs per second refills exactly `R`
/// of them per millisecond.
const MILLI: u64 = 1_000;

/// How windows are sealed (from the agent configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealConfig {
    /// Windows sealed per second at most, on average (`flush_puts_per_second_max`); at least 1.
    pub puts_per_second_max: u64,
    /// Whether windows seal early (group commit, [`EAGER_SEAL_BYTES`]); `false` seals only at the
    /// interval's end and when a window must close, as before.
    pub group_commit: bool,
}

/// What the policy needs to know of the open window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenWindow {
    /// When its first item entered (monotonic milliseconds).
    pub opened_at_ms: u64,
    /// Bytes of produced batches in it (0 for a window of group commits only).
    pub batch_bytes: u64,
    /// How long it may stay open: `flush_interval_ms`, or longer on a slow store.
    pub interval_ms: u64,
}

/// Decides when the open window is sealed. See the module documentation.
#[derive(Debug, Clone)]
pub struct SealPolicy {
    group_commit: bool,
    budget: PutBudget,
    /// The open window has waited for a token beyond the moment it wanted (reported, and reset,
    /// by [`SealPolicy::note_seal`]).
    held_by_budget: bool,
}

impl SealPolicy {
    /// A policy whose budget starts full at `now_ms`.
    pub fn new(config: SealConfig, now_ms: u64) -> SealPolicy {
        SealPolicy {
            group_commit: config.group_commit,
            budget: PutBudget::new(config.puts_per_second_max, now_ms),
            held_by_budget: false,
        }
    }

    /// When `window` should be sealed: at or before `now_ms` means now; `None` when no window is
    /// open. `uploads_in_flight` counts sealed windows whose append has not returned yet.
    pub fn seal_at_ms(
        &mut self,
        now_ms: u64,
        window: Option<OpenWindow>,
        uploads_in_flight: usize,
    ) -> Option<u64> {
        let window = window?;
        let worth_a_put_now = self.group_commit
            && window.batch_bytes > 0
            && (uploads_in_flight == 0 || window.batch_bytes >= EAGER_SEAL_BYTES);
        let wanted_ms = if worth_a_put_now {
            now_ms
        } else {
            window.opened_at_ms.saturating_add(window.interval_ms)
        };
        let ready_ms = self.budget.ready_at_ms(now_ms);
        if ready_ms > wanted_ms.max(now_ms) {
            self.held_by_budget = true;
        }
        Some(wanted_ms.max(ready_ms))
    }

    /// Counts a window sealed at `now_ms`: it takes a token if there is one (a window that had to
    /// close may find none; it is not refused, see the module documentation). Returns whether the
    /// window waited for the budget (so that an operator can see when the budget binds).
    pub fn note_seal(&mut self, now_ms: u64) -> bool {
        self.budget.take(now_ms);
        std::mem::take(&mut self.held_by_budget)
    }

    pub fn budget(&self) -> &PutBudget {
        &self.budget
    }
}

/// A token bucket of PUTs: refilled at `puts_per_second` tokens a second, holding at most
/// [`PutBudget::burst`]. Integer arithmetic in thousandths of a token, on millisecond time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutBudget {
    /// Tokens per second, which is thousandths of a token per millisecond.
    puts_per_second: u64,
    capacity_milli: u64,
    level_milli: u64,
    refilled_at_ms: u64,
}

impl PutBudget {
    /// A full bucket at `now_ms`. A budget of 0 is taken as 1.
    pub fn new(puts_per_second: u64, now_ms: u64) -> PutBudget {
        let puts_per_second = puts_per_second.max(1);
        let capacity_milli = (puts_per_second / BURST_DIVISOR)
            .max(1)
            .saturating_mul(MILLI);
        PutBudget {
            puts_per_second,
            capacity_milli,
            level_milli: capacity_milli,
            refilled_at_ms: now_ms,
        }
    }

    /// Tokens the bucket holds when full.
    pub fn burst(&self) -> u64 {
        self.capacity_milli / MILLI
    }

    pub fn puts_per_second(&self) -> u64 {
        self.puts_per_second
    }

    /// Whole tokens available at `now_ms`.
    pub fn tokens(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        self.level_milli / MILLI
    }

    /// The first millisecond at or after `now_ms` at which a token is available.
    pub fn ready_at_ms(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        let missing_milli = MILLI.saturating_sub(self.level_milli);
        now_ms.saturating_add(missing_milli.div_ceil(self.puts_per_second))
    }

    /// Takes a token if one is available at `now_ms`; says whether it did.
    pub fn take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        match self.level_milli.checked_sub(MILLI) {
            Some(level_milli) => {
                self.level_milli = level_milli;
                true
            }
            None => false,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let Some(elapsed_ms) = now_ms.checked_sub(self.refilled_at_ms) else {
            return; // a clock that went back refills nothing
        };
        self.level_milli = self
            .level_milli
            .saturating_add(elapsed_ms.saturating_mul(self.puts_per_second))
            .min(self.capacity_milli);
        self.refilled_at_ms = now_ms;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const INTERVAL_MS: u64 = 10;

    fn policy(puts_per_second_max: u64, group_commit: bool) -> SealPolicy {
        SealPolicy::new(
            SealConfig {
                puts_per_second_max,
                group_commit,
            },
            0,
        )
    }

    fn window(opened_at_ms: u64, batch_bytes: u64) -> Option<OpenWindow> {
        Some(OpenWindow {
            opened_at_ms,
            batch_bytes,
            interval_ms: INTERVAL_MS,
        })
    }

    #[test]
    fn the_bucket_refills_at_the_budget_and_holds_a_tenth_of_a_second() {
        let mut budget = PutBudget::new(100, 0);
        assert_eq!(budget.burst(), 10);
        for _ in 0..10 {
            assert!(budget.take(0));
        }
        assert!(!budget.take(0), "empty after the burst");
        assert_eq!(budget.ready_at_ms(0), 10, "one token per 10 ms at 100/s");
        assert!(!budget.take(9));
        assert!(budget.take(10));
        assert_eq!(budget.tokens(10_000), 10, "never above the burst");
        // Small and odd budgets: at least one token, exact refill in thousandths.
        let mut slow = PutBudget::new(3, 0);
        assert_eq!(slow.burst(), 1);
        assert!(slow.take(0));
        assert_eq!(slow.ready_at_ms(0), 334);
        assert_eq!(PutBudget::new(0, 0).puts_per_second(), 1);
        let mut fast = PutBudget::new(5_000, 0);
        assert_eq!(fast.burst(), 500);
        for _ in 0..500 {
            assert!(fast.take(0));
        }
        assert_eq!(fast.ready_at_ms(0), 1);
        assert_eq!(fast.tokens(1), 5);
    }

    #[test]
    fn an_idle_agent_seals_a_lone_produce_at_once() {
        let mut policy = policy(100, true);
        assert_eq!(policy.seal_at_ms(5, None, 0), None, "nothing open");
        assert_eq!(policy.seal_at_ms(5, window(5, 1_024), 0), Some(5));
    }

    #[test]
    fn with_an_upload_in_flight_the_window_waits_for_it_or_its_interval() {
        let mut policy = policy(100, true);
        assert_eq!(policy.seal_at_ms(5, window(3, 1_024), 1), Some(13));
        // The upload settles: group commit seals what is waiting.
        assert_eq!(policy.seal_at_ms(7, window(3, 1_024), 0), Some(7));
    }

    #[test]
    fn a_window_of_a_mebibyte_does_not_wait_for_the_upload_in_flight() {
        let mut policy = policy(100, true);
        assert_eq!(
            policy.seal_at_ms(5, window(3, EAGER_SEAL_BYTES - 1), 4),
            Some(13)
        );
        assert_eq!(
            policy.seal_at_ms(5, window(3, EAGER_SEAL_BYTES), 4),
            Some(5)
        );
    }

    #[test]
    fn windows_of_group_commits_only_wait_for_their_interval() {
        let mut policy = policy(100, true);
        assert_eq!(policy.seal_at_ms(5, window(3, 0), 0), Some(13));
    }

    #[test]
    fn without_group_commit_windows_close_at_their_interval_as_before() {
        let mut policy = policy(100, false);
        assert_eq!(policy.seal_at_ms(5, window(5, 1_024), 0), Some(15));
        assert_eq!(policy.seal_at_ms(5, window(5, 100 << 20), 3), Some(15));
    }

    #[test]
    fn an_empty_bucket_holds_even_the_interval_back() {
        let mut policy = policy(20, true);
        assert_eq!(policy.budget().burst(), 2);
        assert!(!policy.note_seal(0));
        assert!(!policy.note_seal(0));
        // 20/s: the next token at 50 ms, past the window's 10 ms interval.
        assert_eq!(policy.seal_at_ms(1, window(1, 1_024), 0), Some(50));
        assert_eq!(policy.seal_at_ms(1, window(1, 0), 0), Some(50));
        // A window that had to close (full, admin commands) is counted without a token; it had
        // waited for the budget.
        assert!(policy.note_seal(2));
        assert_eq!(policy.seal_at_ms(50, window(3, 1_024), 0), Some(50));
        assert!(!policy.note_seal(50), "sealed when it wanted");
    }

    /// A virtual clock, a produce arriving every `arrival_every_ms`, uploads taking `upload_ms`:
    /// seals whenever the policy says so, and returns the seal times and every produce's wait for
    /// its seal.
    fn drive(
        policy: &mut SealPolicy,
        duration_ms: u64,
        arrival_every_ms: u64,
        upload_ms: u64,
    ) -> (Vec<u64>, Vec<u64>) {
        let mut seals = Vec::new();
        let mut waits = Vec::new();
        let mut waiting: Vec<u64> = Vec::new();
        let mut uploads_done_at: Vec<u64> = Vec::new();
        for now_ms in 0..duration_ms {
            uploads_done_at.retain(|done| *done > now_ms);
            if now_ms % arrival_every_ms == 0 {
                waiting.push(now_ms);
            }
            let open = waiting.first().map(|opened| OpenWindow {
                opened_at_ms: *opened,
                batch_bytes: 1_024 * waiting.len() as u64,
                interval_ms: INTERVAL_MS,
            });
            let due = policy.seal_at_ms(now_ms, open, uploads_done_at.len());
            if due.is_some_and(|at| at <= now_ms) {
                policy.note_seal(now_ms);
                seals.push(now_ms);
                waits.extend(waiting.drain(..).map(|arrived| now_ms - arrived));
                uploads_done_at.push(now_ms + upload_ms);
            }
        }
        (seals, waits)
    }

    fn most_in_any(seals: &[u64], span_ms: u64) -> usize {
        seals
            .iter()
            .map(|start| {
                seals
                    .iter()
                    .filter(|at| **at >= *start && **at < start + span_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn continuous_load_stays_within_the_budget_in_every_second() {
        for (budget, arrival_every_ms, upload_ms) in [
            (100, 1, 2),
            (100, 3, 1),
            (100, 1, 30),
            (40, 1, 2),
            (1_000, 1, 0),
        ] {
            let mut policy = policy(budget, true);
            let (seals, waits) = drive(&mut policy, 10_000, arrival_every_ms, upload_ms);
            let burst = policy.budget().burst() as usize;
            let per_second = most_in_any(&seals, 1_000);
            assert!(
                per_second <= budget as usize + burst,
                "{budget}/s, arrivals every {arrival_every_ms} ms, uploads {upload_ms} ms: \
                 {per_second} seals in one second"
            );
            assert!(
                seals.len() as u64 <= budget * 10 + burst as u64,
                "{} over 10 s",
                seals.len()
            );
            // No produce waits longer than a token's refill, or the window's interval.
            let longest = waits.iter().max().copied().unwrap();
            assert!(
                longest <= INTERVAL_MS.max(1_000_u64.div_ceil(budget)),
                "{budget}/s: waited {longest} ms"
            );
        }
    }

    #[test]
    fn the_default_budget_is_the_fixed_windows_ceiling() {
        // Continuous load on a fast store: group commit alone would seal every 2 ms; an object
        // store's default budget (1000 / flush_interval_ms) holds it to the ceiling fixed windows
        // had: one seal per interval, plus the burst once. (Fixed windows reach 1 per 11 ms here: each opens
        // at the first produce after the last seal.)
        let budget = 1_000 / INTERVAL_MS;
        let mut early = policy(budget, true);
        let (early_seals, early_waits) = drive(&mut early, 10_000, 1, 1);
        let mut fixed = policy(budget, false);
        let (fixed_seals, fixed_waits) = drive(&mut fixed, 10_000, 1, 1);
        let ceiling = (budget * 10) as usize;
        assert!(fixed_seals.len() <= ceiling, "{}", fixed_seals.len());
        assert!(
            early_seals.len() <= ceiling + early.budget().burst() as usize,
            "{}",
            early_seals.len()
        );
        assert_eq!(*fixed_waits.iter().max().unwrap(), INTERVAL_MS);
        assert!(*early_waits.iter().max().unwrap() <= INTERVAL_MS);
    }

    #[test]
    fn light_load_is_sealed_at_once_and_costs_one_put_per_produce() {
        // A produce every 50 ms, uploads of 3 ms: each one alone, sealed on arrival.
        let mut policy = policy(100, true);
        let (seals, waits) = drive(&mut policy, 1_000, 50, 3);
        assert_eq!(seals.len(), 20);
        assert!(waits.iter().all(|wait| *wait == 0), "{waits:?}");
        // The fixed window waits its full interval for each.
        let mut fixed = self::policy(100, false);
        let (_, fixed_waits) = drive(&mut fixed, 1_000, 50, 3);
        assert!(fixed_waits.iter().all(|wait| *wait == INTERVAL_MS));
    }

    #[test]
    fn group_commit_follows_the_upload_when_the_budget_is_generous() {
        // 10,000/s allows a seal every 0.1 ms; with 5 ms uploads group commit seals about once
        // per upload, not once per produce, and no produce waits past the interval.
        let mut policy = policy(10_000, true);
        let (seals, waits) = drive(&mut policy, 1_000, 1, 5);
        assert!(
            (150..=210).contains(&seals.len()),
            "{} seals in a second",
            seals.len()
        );
        assert!(waits.iter().all(|wait| *wait <= 5), "{waits:?}");
    }
}
