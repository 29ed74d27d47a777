//! The commit record of a cluster: what an agent appends to the sequencer for one window object.
//!
//! A record names the object (its id: the agent incarnation's token and counter) and carries the
//! object's *tail* — commands, index and trailer, exactly the bytes recovery reads from an
//! object's end — so every agent applies it without reading the object, through the same decoder
//! (and its checksums) that reads a tail from the store. The batches stay in the object.
//!
//! ```text
//! | magic "SLSQ" 4 | version u16 | reserved u16 | object id u64 | object_len u64 | tail_len u32 | crc32c u32 | tail |
//! ```
//!
//! Little-endian. The CRC-32C covers every byte before it; the tail has its own (the trailer's).

use bytes::{BufMut, Bytes, BytesMut};

use crate::format::{ObjectIndex, TailRead, read_tail};
use crate::types::{LogSeq, is_agent_object, object_key};

/// First four bytes of every commit record.
pub const RECORD_MAGIC: [u8; 4] = *b"SLSQ";
/// The version this code writes and the newest it reads.
pub const RECORD_VERSION: u16 = 1;
/// Bytes before the tail.
pub const RECORD_HEADER_LEN: usize = 4 + 2 + 2 + 8 + 8 + 4 + 4;
const HEADER_LEN: usize = RECORD_HEADER_LEN;

/// A decoded commit record: the object it commits, its index and its commands section.
#[derive(Debug, Clone)]
pub struct CommitRecord {
    /// The object's id ([`crate::types::agent_object_id`]); its key is [`object_key`] of it.
    pub object: LogSeq,
    pub object_len: u64,
    pub index: ObjectIndex,
    /// The encoded commands section (empty when the window carried none).
    pub commands: Bytes,
}

/// Why a record could not be decoded. Every agent reads the same bytes, so every agent fails the
/// same way: a record that does not decode is skipped by all of them alike.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record of {len} bytes is shorter than its header")]
    Truncated { len: usize },
    #[error("record magic {got:?} is not {RECORD_MAGIC:?}")]
    BadMagic { got: [u8; 4] },
    #[error("record version {version} is newer than {RECORD_VERSION}")]
    UnsupportedVersion { version: u16 },
    #[error("record's reserved field is {value}, not 0")]
    Reserved { value: u16 },
    #[error("record checksum mismatch: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch { expected: u32, got: u32 },
    #[error("record names object id {id:#x}, not an agent's window object")]
    NotAnAgentObject { id: u64 },
    #[error("record tail: {reason}")]
    Tail { reason: String },
}

/// Encodes the record of object `object` of `object_len` bytes whose tail (commands section
/// followed by the last chunk: padding, index, trailer) is `tail`.
pub fn encode_record(object: LogSeq, object_len: u64, tail: &[&[u8]]) -> Bytes {
    let tail_len: usize = tail.iter().map(|part| part.len()).sum();
    let mut out = BytesMut::with_capacity(HEADER_LEN + tail_len);
    out.put_slice(&RECORD_MAGIC);
    out.put_u16_le(RECORD_VERSION);
    out.put_u16_le(0);
    out.put_u64_le(object.0);
    out.put_u64_le(object_len);
    out.put_u32_le(u32::try_from(tail_len).unwrap_or(u32::MAX));
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    for part in tail {
        out.put_slice(part);
    }
    out.freeze()
}

/// Decodes and checks a record (header checksum, then the tail as recovery checks it).
pub fn decode_record(record: &Bytes) -> Result<CommitRecord, RecordError> {
    let truncated = || RecordError::Truncated { len: record.len() };
    let header = record.get(..HEADER_LEN).ok_or_else(truncated)?;
    let field = |at: usize, len: usize| header.get(at..at + len).ok_or_else(truncated);
    let magic: [u8; 4] = field(0, 4)?.try_into().map_err(|_| truncated())?;
    if magic != RECORD_MAGIC {
        return Err(RecordError::BadMagic { got: magic });
    }
    let u16_at = |at| -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(
            field(at, 2)?.try_into().map_err(|_| truncated())?,
        ))
    };
    let u32_at = |at| -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            field(at, 4)?.try_into().map_err(|_| truncated())?,
        ))
    };
    let u64_at = |at| -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(
            field(at, 8)?.try_into().map_err(|_| truncated())?,
        ))
    };
    let version = u16_at(4)?;
    if version != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion { version });
    }
    // Reserved for a later version's flags: nothing else decodes to the same record.
    let reserved = u16_at(6)?;
    if reserved != 0 {
        return Err(RecordError::Reserved { value: reserved });
    }
    let expected = u32_at(HEADER_LEN - 4)?;
    let got = crc32c::crc32c(field(0, HEADER_LEN - 4)?);
    if expected != got {
        return Err(RecordError::ChecksumMismatch { expected, got });
    }
    let object = LogSeq(u64_at(8)?);
    if !is_agent_object(object) {
        return Err(RecordError::NotAnAgentObject { id: object.0 });
    }
    let object_len = u64_at(16)?;
    let tail_len = u32_at(24)? as usize;
    if record.len() != HEADER_LEN + tail_len {
        return Err(truncated());
    }
    let key = object_key(object);
    let tail = record.slice(HEADER_LEN..);
    let tail = match read_tail(&key, object_len, tail) {
        Ok(TailRead::Complete(tail)) => tail,
        Ok(TailRead::NeedMore { tail_len_needed }) => {
            return Err(RecordError::Tail {
                reason: format!("{tail_len} bytes, the trailer needs {tail_len_needed}"),
            });
        }
        Err(error) => {
            return Err(RecordError::Tail {
                reason: error.to_string(),
            });
        }
    };
    let index = tail.to_index().map_err(|error| RecordError::Tail {
        reason: error.to_string(),
    })?;
    if index.entry.seq != object {
        return Err(RecordError::Tail {
            reason: format!(
                "the index names object {:#x}, the record {:#x}",
                index.entry.seq.0, object.0
            ),
        });
    }
    Ok(CommitRecord {
        object,
        object_len,
        index,
        commands: tail.commands(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{EntryHeader, EntryKind, ObjectBuilder};
    use crate::types::agent_object_id;

    fn object(with_commands: bool) -> (LogSeq, crate::format::EncodedObject, Bytes) {
        let id = agent_object_id(5, 9);
        let mut builder = ObjectBuilder::new(EntryHeader {
            seq: id,
            writer_epoch: 3,
            prev_seq: None,
            entry_nonce: 9,
            kind: EntryKind::Data,
            created_at_ms: 1,
        });
        let commands = if with_commands {
            Bytes::from_static(b"not decoded here")
        } else {
            Bytes::new()
        };
        if with_commands {
            builder
                .set_commands(commands.clone())
                .expect("commands fit");
        }
        (id, builder.finish().expect("encodes"), commands)
    }

    /// Writes the `commit_record` fuzz target's seeds (a mode byte 0, then a record: commands
    /// only, batches only, both): `cargo test -p sluice-engine --lib -- log::record --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds/commit_record"]
    fn write_fuzz_seeds() {
        use crate::batch::BatchBuilder;
        use crate::types::{TopicId, TopicPartition};
        let directory =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/commit_record");
        std::fs::create_dir_all(&directory).expect("seed directory");
        let commands = Bytes::from(
            crate::metadata::encode_commands(&[crate::metadata::Command::CreateTopic {
                name: "seed".to_owned(),
                topic_id: TopicId([7; 16]),
                partition_count: 2,
                configs: Default::default(),
            }])
            .expect("encodes"),
        );
        for (seed, (with_batches, with_commands)) in [(false, true), (true, false), (true, true)]
            .into_iter()
            .enumerate()
        {
            let id = agent_object_id(5, seed as u32);
            let mut builder = ObjectBuilder::new(EntryHeader {
                seq: id,
                writer_epoch: 3,
                prev_seq: None,
                entry_nonce: seed as u64,
                kind: EntryKind::Data,
                created_at_ms: 1,
            });
            if with_batches {
                for partition in 0..2 {
                    let bytes = BatchBuilder::new(1_000).record(0, None, b"value").encode();
                    let header = crate::batch::validate_batch(&bytes).expect("a header");
                    builder
                        .push_batch(
                            TopicPartition::new(TopicId([7; 16]), partition),
                            &header,
                            bytes,
                        )
                        .expect("fits");
                }
            }
            let section = if with_commands {
                builder.set_commands(commands.clone()).expect("fits");
                commands.clone()
            } else {
                Bytes::new()
            };
            let object = builder.finish().expect("encodes");
            let last = object.chunks().last().expect("a tail chunk").clone();
            let record = encode_record(id, object.len(), &[&section, &last]);
            decode_record(&record).expect("a seed decodes");
            let mut seed_bytes = vec![0_u8];
            seed_bytes.extend_from_slice(&record);
            std::fs::write(directory.join(format!("{seed:020}")), seed_bytes).expect("a seed");
        }
    }

    #[test]
    fn a_record_round_trips_and_checks_its_bytes() {
        for with_commands in [false, true] {
            let (id, encoded, commands) = object(with_commands);
            let last = encoded.chunks().last().expect("a tail chunk").clone();
            let record = encode_record(id, encoded.len(), &[&commands, &last]);
            let decoded = decode_record(&record).expect("decodes");
            assert_eq!(decoded.object, id);
            assert_eq!(decoded.object_len, encoded.len());
            assert_eq!(decoded.commands, commands);
            assert_eq!(decoded.index.entry.entry_nonce, 9);
            for at in 0..record.len() {
                let mut corrupt = record.to_vec();
                if let Some(byte) = corrupt.get_mut(at) {
                    *byte ^= 0x40;
                }
                assert!(
                    decode_record(&Bytes::from(corrupt)).is_err(),
                    "a flipped byte at {at} was accepted"
                );
            }
            assert!(decode_record(&record.slice(..record.len() - 1)).is_err());
            // A non-zero reserved field, checksummed: refused, so that a record has one encoding
            // (found by the commit_record fuzz target).
            let mut reserved = record.to_vec();
            if let Some(byte) = reserved.get_mut(6) {
                *byte = 0x64;
            }
            let crc = crc32c::crc32c(reserved.get(..RECORD_HEADER_LEN - 4).unwrap_or_default());
            if let Some(field) = reserved.get_mut(RECORD_HEADER_LEN - 4..RECORD_HEADER_LEN) {
                field.copy_from_slice(&crc.to_le_bytes());
            }
            assert!(matches!(
                decode_record(&Bytes::from(reserved)),
                Err(RecordError::Reserved { value: 0x64 })
            ));
        }
    }
}
