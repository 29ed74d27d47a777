//! Kafka's sampled rate and throttle time (`SampledStat`, `Rate`, `ClientQuotaManager.throttleTime`),
//! as pure arithmetic on a clock the caller passes in, so tests drive it on a virtual clock.
//!
//! A rate is measured over `samples` windows of `sample_ms` (Kafka's `quota.window.num` and
//! `quota.window.size.seconds`, 11 × 1 s by default). A sample starts at the first record after
//! the previous one ended (not aligned to a grid), samples older than the whole window are
//! dropped, and the rate divides the recorded total by the time the samples cover, counted as at
//! least `samples - 1` windows: a new client's first burst is spread over ten seconds, as in
//! Kafka. When the rate passes the quota after a record, the throttle time is how long the client
//! must stay silent for the rate to fall back to the quota:
//! `(rate - quota) / quota × window`, capped at the whole window.

/// The window settings (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    /// Kafka's `quota.window.num` (at least 2).
    pub samples: u32,
    /// Kafka's `quota.window.size.seconds`, in milliseconds.
    pub sample_ms: u64,
}

impl WindowSettings {
    /// Kafka's defaults: 11 samples of one second.
    pub const KAFKA: WindowSettings = WindowSettings {
        samples: 11,
        sample_ms: 1_000,
    };

    /// The whole window: every sample kept.
    pub fn window_ms(self) -> u64 {
        self.sample_ms.saturating_mul(u64::from(self.samples))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// One measured rate. At most `samples` samples are kept, so its size is fixed by the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampledRate {
    /// Oldest first.
    samples: std::collections::VecDeque<Sample>,
}

impl SampledRate {
    pub fn new() -> Self {
        Self::default()
    }

    fn purge(&mut self, settings: WindowSettings, now_ms: u64) {
        let expire_before = now_ms.saturating_sub(settings.window_ms());
        while self.samples.front().is_some_and(|sample| {
            sample.start_ms.saturating_add(settings.sample_ms) <= expire_before
        }) {
            self.samples.pop_front();
        }
    }

    /// Adds `value` at `now_ms` (a clock that never goes backwards).
    pub fn record(&mut self, settings: WindowSettings, value: f64, now_ms: u64) {
        self.purge(settings, now_ms);
        match self.samples.back_mut() {
            Some(current) if now_ms < current.start_ms.saturating_add(settings.sample_ms) => {
                current.value += value;
            }
            _ => {
                if self.samples.len() >= settings.samples as usize {
                    self.samples.pop_front();
                }
                self.samples.push_back(Sample {
                    start_ms: now_ms,
                    value,
                });
            }
        }
    }

    /// Kafka's `Rate.windowSize`: the time the samples cover, at least `samples - 1` windows.
    pub fn window_size_ms(&mut self, settings: WindowSettings, now_ms: u64) -> u64 {
        self.purge(settings, now_ms);
        let oldest = self
            .samples
            .front()
            .map_or(now_ms, |sample| sample.start_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full_windows = elapsed / settings.sample_ms.max(1);
        let minimum = u64::from(settings.samples.saturating_sub(1));
        if full_windows < minimum {
            elapsed += (minimum - full_windows) * settings.sample_ms;
        }
        elapsed.max(1)
    }

    /// The rate per second at `now_ms`.
    pub fn rate_per_second(&mut self, settings: WindowSettings, now_ms: u64) -> f64 {
        let window_ms = self.window_size_ms(settings, now_ms);
        let total: f64 = self.samples.iter().map(|sample| sample.value).sum();
        total * 1_000.0 / window_ms as f64
    }

    /// Records `value` and answers how long the client must be throttled (0: within `quota`).
    pub fn record_and_throttle_ms(
        &mut self,
        settings: WindowSettings,
        quota: f64,
        value: f64,
        now_ms: u64,
    ) -> u64 {
        self.record(settings, value, now_ms);
        self.throttle_ms(settings, quota, now_ms)
    }

    /// How long the client must stay silent for the rate to fall back to `quota`.
    pub fn throttle_ms(&mut self, settings: WindowSettings, quota: f64, now_ms: u64) -> u64 {
        let rate = self.rate_per_second(settings, now_ms);
        if quota <= 0.0 || rate <= quota {
            return 0;
        }
        let window_ms = self.window_size_ms(settings, now_ms) as f64;
        let throttle = ((rate - quota) / quota * window_ms).round();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "positive and capped at the whole window just below"
        )]
        let throttle = throttle.min(settings.window_ms() as f64) as u64;
        throttle
    }

    /// Takes `value` back out of the current sample (Kafka unrecords a throttled fetch's bytes:
    /// the response it would have sent is replaced by an empty one).
    pub fn unrecord(&mut self, value: f64) {
        if let Some(current) = self.samples.back_mut() {
            current.value -= value;
        }
    }

    /// Whether every sample has expired at `now_ms` (the rate is zero; the state can go).
    pub fn is_idle(&mut self, settings: WindowSettings, now_ms: u64) -> bool {
        self.purge(settings, now_ms);
        self.samples.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SETTINGS: WindowSettings = WindowSettings::KAFKA;

    #[test]
    fn a_new_client_is_averaged_over_ten_windows() {
        let mut rate = SampledRate::new();
        rate.record(SETTINGS, 10_000.0, 0);
        // 10,000 bytes over the minimum window of 10 s.
        assert_eq!(rate.window_size_ms(SETTINGS, 0), 10_000);
        assert_eq!(rate.rate_per_second(SETTINGS, 0), 1_000.0);
        // Under a 1,000 B/s quota: not throttled; one byte more is.
        assert_eq!(rate.throttle_ms(SETTINGS, 1_000.0, 0), 0);
        assert_eq!(
            rate.record_and_throttle_ms(SETTINGS, 1_000.0, 1_000.0, 0),
            1_000
        );
    }

    #[test]
    fn throttle_time_is_kafkas_formula() {
        let mut rate = SampledRate::new();
        // 30,000 bytes at t=0 against 1,000 B/s: rate 3,000 over 10 s, (3,000 - 1,000) / 1,000
        // × 10 s = 20 s, capped at the 11 s window.
        assert_eq!(
            rate.record_and_throttle_ms(SETTINGS, 1_000.0, 30_000.0, 0),
            11_000
        );
        let mut rate = SampledRate::new();
        // 15,000: rate 1,500, half over, 5 s.
        assert_eq!(
            rate.record_and_throttle_ms(SETTINGS, 1_000.0, 15_000.0, 0),
            5_000
        );
        // Until ten windows have passed the window stays ten seconds long, so 5 s later the rate
        // is the same (Kafka's arithmetic: the throttle converges over the next requests).
        assert_eq!(rate.rate_per_second(SETTINGS, 5_000), 1_500.0);
    }

    #[test]
    fn a_client_that_obeys_the_throttle_holds_the_quota() {
        // A client sends 5,000-byte requests as fast as allowed: after each it waits the throttle
        // time (plus 1 ms of its own). Over a minute its average is at most the quota plus the
        // first burst the ten-window minimum allows.
        let quota = 10_000.0;
        let mut rate = SampledRate::new();
        let mut now = 0u64;
        let mut sent = 0.0;
        while now < 60_000 {
            let throttle = rate.record_and_throttle_ms(SETTINGS, quota, 5_000.0, now);
            sent += 5_000.0;
            now += throttle + 1;
        }
        let average = sent * 1_000.0 / now as f64;
        assert!(average <= quota * 1.2, "average {average}");
        assert!(average >= quota * 0.8, "average {average}");
    }

    #[test]
    fn samples_expire_and_the_state_goes_idle() {
        let mut rate = SampledRate::new();
        for second in 0..20u64 {
            rate.record(SETTINGS, 100.0, second * 1_000);
        }
        // At most 11 samples are kept.
        assert!(rate.samples.len() <= 11);
        assert!(!rate.is_idle(SETTINGS, 20_000));
        assert!(rate.is_idle(SETTINGS, 19_000 + 12_001));
        assert_eq!(rate.rate_per_second(SETTINGS, 40_000), 0.0);
    }

    #[test]
    fn unrecord_takes_a_value_back() {
        let mut rate = SampledRate::new();
        rate.record(SETTINGS, 50_000.0, 0);
        rate.unrecord(50_000.0);
        assert_eq!(rate.throttle_ms(SETTINGS, 1.0, 0), 0);
    }
}
