//! Failed logins, rate-limited per client address.
//!
//! After `sasl_failed_logins_max` (default [`FAILED_LOGINS_MAX`]) failed authentications from one
//! IP address within `sasl_failed_logins_window_ms` (default [`FAILED_LOGINS_WINDOW_MS`]), that
//! address is locked out for `sasl_lockout_ms` (default [`LOCKOUT_MS`]): its further
//! SaslAuthenticate requests fail at once, without the password being checked, so a password
//! cannot be guessed faster than that many tries per window. A maximum of 0 turns it off. A success does not reset
//! the count (a guesser who knows one password must not get unlimited guesses at the others).
//! Every client behind one NAT shares an address, and so shares a lockout: the price of a
//! per-address limit.
//!
//! One table for the agent (all cores), behind a mutex that only an authentication touches. It
//! holds at most [`ADDRESSES_MAX`] addresses; when full, entries whose window and lockout are
//! over go first, then the oldest. Pure: every call takes `now`, so tests need no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins from one address within the window that lock it out.
pub const FAILED_LOGINS_MAX: u32 = 5;
/// The window failures are counted over.
pub const FAILED_LOGINS_WINDOW_MS: u64 = 60_000;
/// How long a locked-out address is refused.
pub const LOCKOUT_MS: u64 = 60_000;
/// Addresses tracked at most (memory stays bounded under a flood from many addresses).
pub const ADDRESSES_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Entry {
    fn is_over(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.window_start) >= window
            && self.locked_until.is_none_or(|until| now >= until)
    }
}

/// The limits and the per-address counts.
#[derive(Debug)]
pub struct FailedLogins {
    failures_max: u32,
    window: Duration,
    lockout: Duration,
    addresses_max: usize,
    entries: HashMap<IpAddr, Entry>,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins::new(
            FAILED_LOGINS_MAX,
            Duration::from_millis(FAILED_LOGINS_WINDOW_MS),
            Duration::from_millis(LOCKOUT_MS),
            ADDRESSES_MAX,
        )
    }
}

impl FailedLogins {
    pub fn new(
        failures_max: u32,
        window: Duration,
        lockout: Duration,
        addresses_max: usize,
    ) -> Self {
        FailedLogins {
            failures_max,
            window,
            lockout,
            addresses_max: addresses_max.max(1),
            entries: HashMap::new(),
        }
    }

    /// How much longer `address` is locked out, if it is.
    pub fn locked_for(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.entries.get(&address)?.locked_until?;
        (now < until).then(|| until - now)
    }

    /// Counts a failed login from `address`; locks it out when that makes too many.
    pub fn record_failure(&mut self, address: IpAddr, now: Instant) {
        if self.failures_max == 0 {
            return;
        }
        if !self.entries.contains_key(&address) && self.entries.len() >= self.addresses_max {
            self.make_room(now);
        }
        let window = self.window;
        let entry = self.entries.entry(address).or_insert(Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
        });
        if now.saturating_duration_since(entry.window_start) >= window {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        if entry.failures >= self.failures_max {
            entry.locked_until = Some(now + self.lockout);
            entry.window_start = now;
            entry.failures = 0;
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, entry| !entry.is_over(now, window));
        if self.entries.len() >= self.addresses_max
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.window_start)
                .map(|(address, _)| *address)
        {
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn too_many_failures_lock_an_address_out_for_a_while() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut limiter =
            FailedLogins::new(3, Duration::from_secs(60), Duration::from_secs(30), 100);
        limiter.record_failure(ip(1), at(0));
        limiter.record_failure(ip(1), at(10));
        assert_eq!(limiter.locked_for(ip(1), at(10)), None);
        limiter.record_failure(ip(1), at(20));
        assert_eq!(
            limiter.locked_for(ip(1), at(20)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            limiter.locked_for(ip(1), at(49)),
            Some(Duration::from_secs(1))
        );
        // Another address is not affected.
        assert_eq!(limiter.locked_for(ip(2), at(20)), None);
        // The lockout ends.
        assert_eq!(limiter.locked_for(ip(1), at(50)), None);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let start = Instant::now();
        let mut limiter =
            FailedLogins::new(3, Duration::from_secs(60), Duration::from_secs(30), 100);
        // Two failures a window, never three.
        for window in 0..10 {
            limiter.record_failure(ip(1), start + Duration::from_secs(window * 61));
            limiter.record_failure(ip(1), start + Duration::from_secs(window * 61 + 1));
            assert_eq!(
                limiter.locked_for(ip(1), start + Duration::from_secs(window * 61 + 1)),
                None
            );
        }
        // A third within the window locks.
        limiter.record_failure(ip(1), start + Duration::from_secs(9 * 61 + 2));
        assert!(
            limiter
                .locked_for(ip(1), start + Duration::from_secs(9 * 61 + 2))
                .is_some()
        );
    }

    #[test]
    fn a_maximum_of_zero_turns_the_limit_off() {
        let start = Instant::now();
        let mut limiter = FailedLogins::new(0, Duration::from_secs(60), Duration::from_secs(60), 4);
        for _ in 0..100 {
            limiter.record_failure(ip(1), start);
        }
        assert_eq!(limiter.locked_for(ip(1), start), None);
        assert!(limiter.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let start = Instant::now();
        let mut limiter = FailedLogins::new(2, Duration::from_secs(60), Duration::from_secs(60), 4);
        // Failures from many addresses never grow the table past its bound: the oldest entry
        // goes (the bound wins over an old lockout).
        for last in 1..=200 {
            limiter.record_failure(ip(last), start + Duration::from_millis(u64::from(last)));
            assert!(limiter.len() <= 4);
        }
        assert_eq!(limiter.locked_for(ip(1), start), None);
        // Entries whose window is over go first.
        let later = start + Duration::from_secs(200);
        limiter.record_failure(ip(7), later);
        assert!(limiter.len() <= 4);
        assert!(!limiter.is_empty());
    }
}
