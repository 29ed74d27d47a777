//! The ledger the Kafka Streams application aggregates: its input, a pure function of
//! `(seed, records, keys)`, and the table that input must produce. The Java driver
//! (`tests/clients/java/.../Ledger.java`) implements the same; the unit test pins record 0 as it
//! produced it, so the two cannot drift apart silently.
//!
//! ```text
//! h       = splitmix64(seed * 0x100000001B3 + i)            (wrapping 64-bit arithmetic)
//! account = "account-%03d" of h % keys
//! amount  = 0 if (h >> 20) % 50 == 0 (the account is closed: a tombstone), else 1 + (h >> 32) % 1000
//! ```

use std::collections::BTreeMap;

use crate::generator::splitmix64;

/// One in this many records closes its account.
pub const CLOSE_EVERY: u64 = 50;
/// Amounts are `1..=AMOUNT_MAX`.
pub const AMOUNT_MAX: u64 = 1_000;

/// One open account of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub count: u64,
    pub sum: u64,
}

/// The generator's parameters, the ones the Java driver takes on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub seed: u64,
    /// Distinct accounts; at most 1,000 so that every name has three digits.
    pub keys: u64,
}

impl Ledger {
    fn hash(&self, index: u64) -> u64 {
        splitmix64(
            self.seed
                .wrapping_mul(0x0000_0100_0000_01B3)
                .wrapping_add(index),
        )
    }

    pub fn account(&self, index: u64) -> String {
        format!("account-{:03}", self.hash(index) % self.keys.max(1))
    }

    /// The record's amount; 0 closes the account.
    pub fn amount(&self, index: u64) -> u64 {
        let hash = self.hash(index);
        if (hash >> 20).is_multiple_of(CLOSE_EVERY) {
            0
        } else {
            1 + (hash >> 32) % AMOUNT_MAX
        }
    }

    /// The table after records `0..records`: open accounts only. An amount adds one to the count
    /// and itself to the sum; a 0 removes the account, and a later amount opens it from zero.
    pub fn expected(&self, records: u64) -> BTreeMap<String, Balance> {
        let mut table = BTreeMap::new();
        for index in 0..records {
            let account = self.account(index);
            match self.amount(index) {
                0 => {
                    table.remove(&account);
                }
                amount => {
                    let balance: &mut Balance = table.entry(account).or_default();
                    balance.count += 1;
                    balance.sum += amount;
                }
            }
        }
        table
    }

    /// How many of records `0..records` close their account.
    pub fn closes(&self, records: u64) -> u64 {
        (0..records)
            .filter(|&index| self.amount(index) == 0)
            .map(|_| 1)
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn record_zero_and_the_closes_are_what_the_java_driver_produced() {
        // From the Java driver's `produced` line for seed 1, 20,000 records, 200 keys.
        let ledger = Ledger { seed: 1, keys: 200 };
        assert_eq!(ledger.account(0), "account-112");
        assert_eq!(ledger.amount(0), 242);
        assert_eq!(ledger.closes(20_000), 402);
    }

    #[test]
    fn the_table_folds_amounts_and_forgets_closed_accounts() {
        let ledger = Ledger { seed: 7, keys: 20 };
        let records = 5_000;
        let table = ledger.expected(records);
        // Recount each account from its last close, the long way round.
        for (account, balance) in &table {
            let mut count = 0;
            let mut sum = 0;
            for index in 0..records {
                if &ledger.account(index) != account {
                    continue;
                }
                match ledger.amount(index) {
                    0 => (count, sum) = (0, 0),
                    amount => (count, sum) = (count + 1, sum + amount),
                }
            }
            assert_eq!(*balance, Balance { count, sum }, "{account}");
        }
        // A closed account is absent, not zero.
        assert!(table.values().all(|balance| balance.count > 0));
        assert!(ledger.closes(records) > 0);
        assert!(table.len() <= 20);
    }
}
