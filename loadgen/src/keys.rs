//! Record keys: none, uniform over N keys, or Zipf-skewed over N keys.
//!
//! Keys decide partitions (the client hashes them), so the distribution is how a run models hot
//! partitions: `uniform:N` spreads load evenly, `zipf:N:s` concentrates it on a few keys the way
//! real tenant or user ids do. Keys are drawn from a seeded generator so a run can be repeated
//! exactly; the key text is `key-<rank>` so a hot key is easy to spot in a dump.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Uniform, Zipf};
use thiserror::Error;

/// Why a `--keys` value was not understood.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum KeySpecError {
    /// Not one of `none`, `uniform:N`, `zipf:N:s`.
    #[error("key distribution {0:?} is not one of none, uniform:N, zipf:N:s")]
    Unknown(String),
    /// `N` must be an integer of at least 1.
    #[error("key count {0:?} must be an integer >= 1")]
    BadCount(String),
    /// The Zipf exponent must be a finite number >= 0.
    #[error("zipf exponent {0:?} must be a finite number >= 0")]
    BadExponent(String),
}

/// How keys are chosen, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeySpec {
    /// No key: the client spreads records over partitions itself.
    None,
    /// Each of `keys` keys equally likely.
    Uniform {
        /// Number of distinct keys.
        keys: u64,
    },
    /// Key of rank `k` (1-based) has probability proportional to `1 / k^exponent`.
    Zipf {
        /// Number of distinct keys.
        keys: u64,
        /// Skew: 0 is uniform, about 1 is the classic web-traffic skew.
        exponent: f64,
    },
}

impl FromStr for KeySpec {
    type Err = KeySpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["none"] => Ok(Self::None),
            ["uniform", keys] => Ok(Self::Uniform {
                keys: parse_count(keys)?,
            }),
            ["zipf", keys, exponent] => {
                let keys = parse_count(keys)?;
                let exponent: f64 = exponent
                    .parse()
                    .map_err(|_| KeySpecError::BadExponent((*exponent).to_owned()))?;
                if !exponent.is_finite() || exponent < 0.0 {
                    return Err(KeySpecError::BadExponent(exponent.to_string()));
                }
                Ok(Self::Zipf { keys, exponent })
            }
            _ => Err(KeySpecError::Unknown(text.to_owned())),
        }
    }
}

fn parse_count(text: &str) -> Result<u64, KeySpecError> {
    match text.parse::<u64>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(KeySpecError::BadCount(text.to_owned())),
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => write!(formatter, "none"),
            Self::Uniform { keys } => write!(formatter, "uniform:{keys}"),
            Self::Zipf { keys, exponent } => write!(formatter, "zipf:{keys}:{exponent}"),
        }
    }
}

/// A seeded source of keys following a [`KeySpec`].
#[derive(Debug)]
pub struct KeyGenerator {
    rng: SmallRng,
    kind: KeyKind,
    /// Reused so drawing a key does not allocate.
    buffer: String,
}

#[derive(Debug)]
enum KeyKind {
    None,
    Uniform(Uniform<u64>),
    Zipf(Zipf<f64>),
}

impl KeyGenerator {
    /// A generator for `spec` seeded with `seed`.
    pub fn new(spec: KeySpec, seed: u64) -> Result<Self, KeySpecError> {
        let kind = match spec {
            KeySpec::None => KeyKind::None,
            KeySpec::Uniform { keys } => KeyKind::Uniform(
                Uniform::new(0, keys).map_err(|_| KeySpecError::BadCount(keys.to_string()))?,
            ),
            KeySpec::Zipf { keys, exponent } => {
                // Zipf's support is 1..=n as f64; key counts beyond 2^53 are not meaningful here.
                let keys_f64 = keys as f64;
                KeyKind::Zipf(
                    Zipf::new(keys_f64, exponent)
                        .map_err(|_| KeySpecError::BadExponent(exponent.to_string()))?,
                )
            }
        };
        Ok(Self {
            rng: SmallRng::seed_from_u64(seed),
            kind,
            buffer: String::new(),
        })
    }

    /// The next key's zero-based rank, or `None` when the spec has no keys.
    pub fn next_rank(&mut self) -> Option<u64> {
        match &self.kind {
            KeyKind::None => None,
            KeyKind::Uniform(uniform) => Some(uniform.sample(&mut self.rng)),
            KeyKind::Zipf(zipf) => {
                let rank_one_based = zipf.sample(&mut self.rng);
                // The sample is an integral value in 1..=n.
                let rank = rank_one_based as u64;
                Some(rank.saturating_sub(1))
            }
        }
    }

    /// The next key's bytes (`key-<rank>`), or `None` when the spec has no keys.
    pub fn next_key(&mut self) -> Option<&[u8]> {
        let rank = self.next_rank()?;
        self.buffer.clear();
        self.buffer.push_str("key-");
        self.buffer.push_str(&rank.to_string());
        Some(self.buffer.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["none", "uniform:10", "zipf:1000:1.2"] {
            assert_eq!(text.parse::<KeySpec>().unwrap().to_string(), text);
        }
        assert_eq!(
            "zipf:5:0".parse::<KeySpec>().unwrap(),
            KeySpec::Zipf {
                keys: 5,
                exponent: 0.0
            }
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        assert!(matches!(
            "uniform".parse::<KeySpec>(),
            Err(KeySpecError::Unknown(_))
        ));
        assert!(matches!(
            "uniform:0".parse::<KeySpec>(),
            Err(KeySpecError::BadCount(_))
        ));
        assert!(matches!(
            "uniform:-3".parse::<KeySpec>(),
            Err(KeySpecError::BadCount(_))
        ));
        assert!(matches!(
            "zipf:10:-1".parse::<KeySpec>(),
            Err(KeySpecError::BadExponent(_))
        ));
        assert!(matches!(
            "zipf:10:x".parse::<KeySpec>(),
            Err(KeySpecError::BadExponent(_))
        ));
        assert!(matches!(
            "random".parse::<KeySpec>(),
            Err(KeySpecError::Unknown(_))
        ));
    }

    #[test]
    fn no_keys_means_no_key() {
        let mut generator = KeyGenerator::new(KeySpec::None, 1).unwrap();
        assert!(generator.next_key().is_none());
    }

    fn histogram(spec: KeySpec, keys: usize, draws: usize) -> Vec<u64> {
        let mut generator = KeyGenerator::new(spec, 42).unwrap();
        let mut counts = vec![0_u64; keys];
        for _ in 0..draws {
            counts[generator.next_rank().unwrap() as usize] += 1;
        }
        counts
    }

    #[test]
    fn uniform_keys_are_roughly_even_and_in_range() {
        let counts = histogram(KeySpec::Uniform { keys: 10 }, 10, 100_000);
        for count in counts {
            // Expected 10,000 each; 5 standard deviations is about 475.
            assert!((9_500..=10_500).contains(&count), "{count}");
        }
    }

    #[test]
    fn zipf_keys_are_skewed_towards_low_ranks() {
        let counts = histogram(
            KeySpec::Zipf {
                keys: 100,
                exponent: 1.0,
            },
            100,
            100_000,
        );
        // With s = 1 and n = 100, P(rank 1) = 1 / H(100) ≈ 0.193 and P(rank 2) is half of it.
        let first = counts[0] as f64 / 100_000.0;
        assert!((0.18..0.21).contains(&first), "{first}");
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        assert!(counts[99] < counts[9]);
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let spec = KeySpec::Zipf {
            keys: 50,
            exponent: 0.9,
        };
        let mut first = KeyGenerator::new(spec, 7).unwrap();
        let mut second = KeyGenerator::new(spec, 7).unwrap();
        for _ in 0..1_000 {
            assert_eq!(
                first.next_key().map(<[u8]>::to_vec),
                second.next_key().map(<[u8]>::to_vec)
            );
        }
        assert_eq!(
            KeyGenerator::new(KeySpec::Uniform { keys: 3 }, 1)
                .unwrap()
                .next_key()
                .unwrap()
                .len(),
            5
        );
    }
}
