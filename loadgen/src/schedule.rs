//! The open-loop rate scheduler: when each record *should* be sent.
//!
//! Record `i` of a run at `rate` records/s is due `i / rate` seconds after the run's origin,
//! whatever happened to records `0..i`. Producers never ask "am I allowed to send the next one";
//! they ask "which records are due by now" and send all of them, so a producer that was held up
//! (by a full client queue, a slow broker or the OS scheduler) catches up in a burst and each late
//! record still carries its original intended time. That is what keeps the latency honest.
//!
//! Several producers split one schedule by index (`producer`, `producer + n`, `producer + 2n`, ...)
//! instead of each running at `rate / n` from the same origin: the merged stream is then evenly
//! spaced rather than `n` records arriving together every `n / rate` seconds.
//!
//! Pure: offsets are nanoseconds since the run's origin, the clock is the caller's.

use thiserror::Error;

/// Why a schedule cannot be built.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The rate must be a finite number of records per second above zero.
    #[error("rate must be a finite positive number of records/s, got {0}")]
    InvalidRate(f64),
    /// At least one producer must share the schedule, and `producer < producers`.
    #[error("producer {producer} is not in 0..{producers}")]
    InvalidShare {
        /// The producer's index.
        producer: u32,
        /// How many producers share the schedule.
        producers: u32,
    },
}

/// A fixed-rate schedule of intended send times, as nanosecond offsets from the run's origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    records_per_sec: f64,
    /// Records whose intended time falls before this offset belong to the run.
    end_offset_ns: u64,
}

impl Schedule {
    /// A schedule at `records_per_sec` whose last record is intended before `end_offset_ns`.
    pub fn new(records_per_sec: f64, end_offset_ns: u64) -> Result<Self, ScheduleError> {
        if !records_per_sec.is_finite() || records_per_sec <= 0.0 {
            return Err(ScheduleError::InvalidRate(records_per_sec));
        }
        Ok(Self {
            records_per_sec,
            end_offset_ns,
        })
    }

    /// Target rate in records per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records_per_sec
    }

    /// When record `index` should be sent, in nanoseconds after the origin.
    pub fn intended_offset_ns(&self, index: u64) -> u64 {
        // f64 is exact for indices below 2^53 (centuries at any realistic rate); the cast
        // saturates instead of wrapping if it ever were not.
        (index as f64 * 1e9 / self.records_per_sec) as u64
    }

    /// How many records the whole run holds: those intended strictly before the end offset.
    pub fn total_records(&self) -> u64 {
        self.records_due_before(self.end_offset_ns)
    }

    /// Number of records whose intended time is strictly before `offset_ns` (the index of the
    /// first record not yet due), capped at the run's end.
    pub fn records_due_before(&self, offset_ns: u64) -> u64 {
        let offset_ns = offset_ns.min(self.end_offset_ns);
        if offset_ns == 0 {
            return 0;
        }
        let mut due = ((offset_ns as f64) * self.records_per_sec / 1e9).ceil() as u64;
        // The float estimate can be off by one either way at boundaries; settle it against the
        // exact definition used by `intended_offset_ns`.
        while due > 0 && self.intended_offset_ns(due - 1) >= offset_ns {
            due -= 1;
        }
        while self.intended_offset_ns(due) < offset_ns {
            due += 1;
        }
        due
    }
}

/// One producer's share of a schedule: every `producers`-th index starting at `producer`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    producer: u32,
    producers: u32,
}

impl Share {
    /// Producer `producer` of `producers`.
    pub fn new(producer: u32, producers: u32) -> Result<Self, ScheduleError> {
        if producer >= producers {
            return Err(ScheduleError::InvalidShare {
                producer,
                producers,
            });
        }
        Ok(Self {
            producer,
            producers,
        })
    }

    /// The first index this producer owns.
    pub fn first_index(&self) -> u64 {
        u64::from(self.producer)
    }

    /// The index this producer owns after `index`.
    pub fn next_index(&self, index: u64) -> u64 {
        index.saturating_add(u64::from(self.producers))
    }

    /// How many of the first `total` indices this producer owns.
    pub fn count_of(&self, total: u64) -> u64 {
        let first = self.first_index();
        if total <= first {
            return 0;
        }
        (total - first).div_ceil(u64::from(self.producers))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_at_the_rate() {
        let schedule = Schedule::new(5_000.0, 1_000_000_000).unwrap();
        assert_eq!(schedule.intended_offset_ns(0), 0);
        assert_eq!(schedule.intended_offset_ns(1), 200_000);
        assert_eq!(schedule.intended_offset_ns(5_000), 1_000_000_000);
        assert_eq!(schedule.total_records(), 5_000);
    }

    #[test]
    fn fractional_rates_keep_their_average() {
        // 2.5 records/s over 4 s: intended at 0, 0.4, 0.8, ... 3.6 s.
        let schedule = Schedule::new(2.5, 4_000_000_000).unwrap();
        assert_eq!(schedule.total_records(), 10);
        assert_eq!(schedule.intended_offset_ns(9), 3_600_000_000);
    }

    #[test]
    fn due_count_matches_the_definition_everywhere() {
        for rate in [1.0, 3.0, 7.3, 1_000.0, 123_456.0] {
            let schedule = Schedule::new(rate, 2_000_000_000).unwrap();
            for offset_ns in (0..2_000_000_000).step_by(13_337_777) {
                let due = schedule.records_due_before(offset_ns);
                if due > 0 {
                    assert!(
                        schedule.intended_offset_ns(due - 1) < offset_ns,
                        "rate {rate} offset {offset_ns}"
                    );
                }
                if due < schedule.total_records() {
                    assert!(
                        schedule.intended_offset_ns(due) >= offset_ns,
                        "rate {rate} offset {offset_ns}"
                    );
                }
            }
        }
    }

    #[test]
    fn due_count_stops_at_the_end_of_the_run() {
        let schedule = Schedule::new(100.0, 1_000_000_000).unwrap();
        assert_eq!(schedule.records_due_before(u64::MAX), 100);
    }

    #[test]
    fn invalid_rates_are_rejected() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(rate, 1).is_err(), "{rate}");
        }
    }

    #[test]
    fn shares_partition_the_indices_without_gaps_or_overlap() {
        let total = 1_003;
        let producers = 4;
        let mut seen = vec![0_u32; total as usize];
        let mut counted = 0;
        for producer in 0..producers {
            let share = Share::new(producer, producers).unwrap();
            let mut index = share.first_index();
            let mut owned = 0;
            while index < total {
                seen[index as usize] += 1;
                owned += 1;
                index = share.next_index(index);
            }
            assert_eq!(share.count_of(total), owned);
            counted += owned;
        }
        assert_eq!(counted, total);
        assert!(seen.iter().all(|&times| times == 1));
        assert!(Share::new(4, 4).is_err());
        assert_eq!(Share::new(3, 4).unwrap().count_of(2), 0);
    }
}
