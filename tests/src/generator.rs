//! The deterministic record generator every client implements (docs/testing.md, "The record
//! generator"): record `i` of a run is a pure function of `(seed, i, partitions, timestamp_base_ms)`,
//! so the expected bytes never travel between processes — only the seed does.
//!
//! The shape exercises what clients encode differently: null keys (every tenth record), values of
//! 1 to 300 bytes that compress but not trivially, zero to two extra headers including one with an
//! empty value, and explicit timestamps.

/// One record as a producer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRecord {
    pub index: u64,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: i64,
}

/// The generator's parameters, the same ones the clients take on their command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordGenerator {
    pub seed: u64,
    pub partitions: u32,
    pub timestamp_base_ms: i64,
}

/// SplitMix64's output function: a cheap, well-mixed hash that every client language can write in
/// five lines with wrapping 64-bit arithmetic.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RecordGenerator {
    pub fn record(&self, index: u64) -> ExpectedRecord {
        let hash = splitmix64(
            self.seed
                .wrapping_mul(0x0000_0100_0000_01B3)
                .wrapping_add(index),
        );
        let partitions = u64::from(self.partitions.max(1));
        let key = (index % 10 != 9).then(|| format!("key-{index}").into_bytes());
        let length = 1 + hash % 300;
        let value = (0..length)
            .map(|j| {
                let byte = (hash >> ((j % 8) * 8)) & 0xFF;
                // `% 26` keeps the sum below 26, so the narrowing cannot lose anything.
                b'a' + u8::try_from((byte + j) % 26).unwrap_or(0)
            })
            .collect();
        let mut headers = vec![("seq".to_string(), index.to_string().into_bytes())];
        if index.is_multiple_of(3) {
            headers.push(("hash".to_string(), hash.to_be_bytes().to_vec()));
        }
        if index.is_multiple_of(5) {
            headers.push(("empty".to_string(), Vec::new()));
        }
        ExpectedRecord {
            index,
            partition: i32::try_from(index % partitions).unwrap_or(i32::MAX),
            key,
            value,
            headers,
            timestamp_ms: self
                .timestamp_base_ms
                .saturating_add(i64::try_from(index).unwrap_or(i64::MAX)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn generator() -> RecordGenerator {
        RecordGenerator {
            seed: 1,
            partitions: 8,
            timestamp_base_ms: 1_764_000_000_000,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Record 0 of seed 1 as the Python, Java and Go clients printed it (captured from their reports
    /// against Apache Kafka): the four implementations agree.
    #[test]
    fn record_zero_matches_the_clients() {
        let record = generator().record(0);
        assert_eq!(record.partition, 0);
        assert_eq!(record.key.as_deref(), Some(&b"key-0"[..]));
        assert_eq!(hex(&record.value), "6d75766f6c6d6b657563647774");
        assert_eq!(
            record.headers,
            vec![
                ("seq".to_string(), b"0".to_vec()),
                (
                    "hash".to_string(),
                    vec![0x7f, 0xee, 0x3b, 0x89, 0x59, 0x2d, 0x13, 0xa8]
                ),
                ("empty".to_string(), Vec::new()),
            ]
        );
        assert_eq!(record.timestamp_ms, 1_764_000_000_000);
    }

    #[test]
    fn record_two_matches_the_go_client() {
        let record = generator().record(2);
        assert_eq!(record.partition, 2);
        assert!(hex(&record.value).starts_with("6e736f7766677a73766177656e6f68616469656d"));
        assert_eq!(record.headers, vec![("seq".to_string(), b"2".to_vec())]);
    }

    #[test]
    fn every_tenth_key_is_null_and_values_stay_in_range() {
        let generator = generator();
        for index in 0..1000 {
            let record = generator.record(index);
            assert_eq!(record.key.is_none(), index % 10 == 9, "record {index}");
            assert!((1..=300).contains(&record.value.len()), "record {index}");
            assert!(
                record.value.iter().all(u8::is_ascii_lowercase),
                "record {index}"
            );
            assert_eq!(record.partition, i32::try_from(index % 8).unwrap());
        }
    }

    #[test]
    fn seeds_give_different_records() {
        let other = RecordGenerator {
            seed: 2,
            ..generator()
        };
        assert_ne!(generator().record(5).value, other.record(5).value);
    }
}
