//! The record value: a 24-byte header carrying the intended send time, then filler.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "SLG1"
//!      4     4  run id, u32 big-endian (records of other runs on the same topic are ignored)
//!      8     8  intended send time, u64 big-endian, nanoseconds since the Unix epoch
//!     16     8  sequence, u64 big-endian: the record's index in the run's schedule
//!     24     *  filler up to the configured record size
//! ```
//!
//! The timestamp lives in the value rather than in a Kafka record header or the record's own
//! timestamp because the value is the one part every Kafka-compatible broker must return byte for
//! byte: record headers need a v2 batch, and the batch timestamp may be rewritten by the broker
//! (`message.timestamp.type=LogAppendTime`). It is the *intended* time, not the moment of the
//! `send` call (see the crate docs on coordinated omission).
//!
//! Filler is random uppercase ASCII, like Kafka's own `kafka-producer-perf-test`: it compresses
//! to roughly 60 % with any codec, so `--compression` does real work without being either
//! incompressible noise or a trivially compressible run of zeros.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

/// The first four bytes of every value this tool writes.
pub const MAGIC: [u8; 4] = *b"SLG1";
/// Bytes taken by the header; the smallest allowed record size.
pub const HEADER_BYTES: usize = 24;

/// Why a consumed value could not be read as a load-generator record.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The value is shorter than the header.
    #[error("record value of {len} bytes is shorter than the {HEADER_BYTES}-byte header")]
    TooShort {
        /// The value's length.
        len: usize,
    },
    /// The value does not start with [`MAGIC`].
    #[error("record value starts with {found:02x?}, not the loadgen magic")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
}

/// The header fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Identifies the run that wrote the record.
    pub run_id: u32,
    /// When the schedule wanted the record sent, in nanoseconds since the Unix epoch.
    pub intended_unix_ns: u64,
    /// The record's index in the run's schedule.
    pub sequence: u64,
}

impl RecordHeader {
    /// Writes the header into the first [`HEADER_BYTES`] of `value`.
    ///
    /// Returns `false` (and writes nothing) if `value` is too short.
    pub fn write_to(&self, value: &mut [u8]) -> bool {
        let Some(header) = value.get_mut(..HEADER_BYTES) else {
            return false;
        };
        let (magic, rest) = header.split_at_mut(4);
        let (run_id, rest) = rest.split_at_mut(4);
        let (intended, sequence) = rest.split_at_mut(8);
        magic.copy_from_slice(&MAGIC);
        run_id.copy_from_slice(&self.run_id.to_be_bytes());
        intended.copy_from_slice(&self.intended_unix_ns.to_be_bytes());
        sequence.copy_from_slice(&self.sequence.to_be_bytes());
        true
    }

    /// Reads the header at the start of `value`.
    pub fn read_from(value: &[u8]) -> Result<Self, PayloadError> {
        let Some(
            &[
                m0,
                m1,
                m2,
                m3,
                r0,
                r1,
                r2,
                r3,
                i0,
                i1,
                i2,
                i3,
                i4,
                i5,
                i6,
                i7,
                s0,
                s1,
                s2,
                s3,
                s4,
                s5,
                s6,
                s7,
            ],
        ) = value.get(..HEADER_BYTES)
        else {
            return Err(PayloadError::TooShort { len: value.len() });
        };
        let found = [m0, m1, m2, m3];
        if found != MAGIC {
            return Err(PayloadError::BadMagic { found });
        }
        Ok(Self {
            run_id: u32::from_be_bytes([r0, r1, r2, r3]),
            intended_unix_ns: u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
            sequence: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        })
    }
}

/// Builds record values of a fixed size into one reused buffer.
///
/// The filler is drawn once, `FILLER_SLACK_BYTES` longer than a record's filler, and each record
/// takes a window starting at `sequence % FILLER_SLACK_BYTES`, so consecutive records differ
/// (a codec cannot collapse a batch of identical values) without drawing random bytes per record.
#[derive(Debug)]
pub struct PayloadBuilder {
    filler: Vec<u8>,
    value: Vec<u8>,
}

const FILLER_SLACK_BYTES: usize = 4_096;

impl PayloadBuilder {
    /// A builder of `record_bytes`-byte values (at least [`HEADER_BYTES`]) with filler from `seed`.
    pub fn new(record_bytes: usize, seed: u64) -> Result<Self, PayloadError> {
        if record_bytes < HEADER_BYTES {
            return Err(PayloadError::TooShort { len: record_bytes });
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let filler_bytes = record_bytes - HEADER_BYTES + FILLER_SLACK_BYTES;
        let filler = (0..filler_bytes)
            .map(|_| rng.random_range(b'A'..=b'Z'))
            .collect();
        Ok(Self {
            filler,
            value: vec![0; record_bytes],
        })
    }

    /// The value for `header`; valid until the next call.
    pub fn build(&mut self, header: &RecordHeader) -> &[u8] {
        let filler_len = self.value.len().saturating_sub(HEADER_BYTES);
        // The modulo keeps the start below the slack, so the window fits by construction; the
        // fallback only guards the arithmetic.
        let start = usize::try_from(header.sequence % FILLER_SLACK_BYTES as u64).unwrap_or(0);
        if let (Some(window), Some(target)) = (
            self.filler.get(start..start + filler_len),
            self.value.get_mut(HEADER_BYTES..),
        ) {
            target.copy_from_slice(window);
        }
        header.write_to(&mut self.value);
        &self.value
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = RecordHeader {
            run_id: 0xdead_beef,
            intended_unix_ns: 1_764_000_000_123_456_789,
            sequence: 42,
        };
        let mut value = [0_u8; 30];
        assert!(header.write_to(&mut value));
        assert_eq!(&value[..4], b"SLG1");
        assert_eq!(RecordHeader::read_from(&value).unwrap(), header);
    }

    #[test]
    fn header_is_big_endian_at_fixed_offsets() {
        let header = RecordHeader {
            run_id: 1,
            intended_unix_ns: 2,
            sequence: 3,
        };
        let mut value = [0_u8; HEADER_BYTES];
        header.write_to(&mut value);
        assert_eq!(value[7], 1);
        assert_eq!(value[15], 2);
        assert_eq!(value[23], 3);
        assert_eq!(value[4..7], [0, 0, 0]);
    }

    #[test]
    fn short_or_foreign_values_are_errors_not_panics() {
        for len in 0..HEADER_BYTES {
            assert_eq!(
                RecordHeader::read_from(&vec![0; len]),
                Err(PayloadError::TooShort { len })
            );
        }
        let foreign = [b'x'; 64];
        assert_eq!(
            RecordHeader::read_from(&foreign),
            Err(PayloadError::BadMagic { found: *b"xxxx" })
        );
        assert!(
            !RecordHeader {
                run_id: 0,
                intended_unix_ns: 0,
                sequence: 0
            }
            .write_to(&mut [0; 23])
        );
    }

    #[test]
    fn builder_makes_values_of_the_configured_size_that_decode() {
        for record_bytes in [HEADER_BYTES, 25, 100, 1_024, 65_536] {
            let mut builder = PayloadBuilder::new(record_bytes, 9).unwrap();
            for sequence in [0, 1, 4_095, 4_096, 1_000_003] {
                let header = RecordHeader {
                    run_id: 7,
                    intended_unix_ns: sequence * 10,
                    sequence,
                };
                let value = builder.build(&header);
                assert_eq!(value.len(), record_bytes);
                assert_eq!(RecordHeader::read_from(value).unwrap(), header);
                assert!(value[HEADER_BYTES..].iter().all(u8::is_ascii_uppercase));
            }
        }
        assert!(PayloadBuilder::new(HEADER_BYTES - 1, 0).is_err());
    }

    #[test]
    fn consecutive_values_have_different_filler() {
        let mut builder = PayloadBuilder::new(256, 1).unwrap();
        let first = builder.build(&RecordHeader {
            run_id: 1,
            intended_unix_ns: 0,
            sequence: 0,
        })[HEADER_BYTES..]
            .to_vec();
        let second = builder.build(&RecordHeader {
            run_id: 1,
            intended_unix_ns: 0,
            sequence: 1,
        })[HEADER_BYTES..]
            .to_vec();
        assert_ne!(first, second);
    }

    proptest::proptest! {
        #[test]
        fn any_header_round_trips_through_any_record_size(
            run_id: u32,
            intended_unix_ns: u64,
            sequence: u64,
            record_bytes in HEADER_BYTES..4_096_usize,
            seed: u64,
        ) {
            let header = RecordHeader { run_id, intended_unix_ns, sequence };
            let mut builder = PayloadBuilder::new(record_bytes, seed).unwrap();
            let value = builder.build(&header);
            proptest::prop_assert_eq!(value.len(), record_bytes);
            proptest::prop_assert_eq!(RecordHeader::read_from(value), Ok(header));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(value: Vec<u8>) {
            let decoded = RecordHeader::read_from(&value);
            proptest::prop_assert_eq!(decoded.is_ok(), value.len() >= HEADER_BYTES && value[..4] == MAGIC);
        }
    }
}
