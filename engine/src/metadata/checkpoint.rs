//! Checkpoint codec: the complete state as one flat, little-endian byte string.
//!
//! Recovery decodes the newest checkpoint, then replays only the log after it, so decode speed is
//! recovery time. A hand-written flat layout was chosen over rkyv: the bulk of a checkpoint is index
//! entries, which here are six fixed-width words read in one linear pass (about as fast as memory
//! bandwidth allows, one CRC-32C pass included), and the decoder rebuilds the in-memory maps directly
//! instead of going through an archived `HashMap` and a second deserialisation. It also lets the
//! decoder check every invariant of the state (contiguous indexes, limits, config values) so that a
//! checkpoint written by a buggy build is refused rather than trusted. Encoding sorts topics by id
//! (and producers by producer id), so equal states give equal bytes. Layout, v2 (byte-exact spec:
//! `docs/metadata.md`); v1 is v2 without `next_producer_id` and `producers`, and still decodes (a v1
//! build never handed out a producer id nor kept producer state, so both start empty):
//!
//! ```text
//! | magic "SLUICECK" 8 | version u16 | reserved u16 = 0 | body_len u64 | body | crc32c u32 |
//! body  = writer_epoch u64 | last_valid_seq opt_u64 | last_offered_seq opt_u64 | next_producer_id u64
//!         | topic_count u32 | topic*
//! opt_u64 = present u8 (0|1) | value u64 (0 when absent)
//! topic = id [16] | name_len u16 | name | config_count u16 | (name_len u16 | name | value_len u16 | value)*
//!         | partition_count u32 | partition*
//! partition = log_start_offset u64 | high_watermark u64 | entry_count u32 | entry* | producers
//! entry = base_offset u64 | end_offset u64 | seq u64 | byte_start u64 | byte_len u64 | max_timestamp i64
//! producers = producer_count u32 | (producer_id i64 | epoch i16 | batch_count u8
//!             | (base_sequence i32 | last_sequence i32 | base_offset u64)*)*
//! ```
//! The CRC covers every byte before it.

use std::collections::BTreeMap;

use super::config::validate_config;
use super::error::CheckpointError;
use super::index::{IndexEntry, PartitionIndex};
use super::partition::{INDEX_ENTRIES_PER_PARTITION_MAX, PartitionState};
use super::producer::{
    PRODUCER_BATCHES_RETAINED, PRODUCERS_PER_PARTITION_MAX, ProducerEntry, ProducerMap,
    SequenceRange,
};
use super::state::{MetadataState, TopicMap};
use super::topic::{
    PARTITIONS_PER_TOPIC_MAX, PARTITIONS_TOTAL_MAX, TOPICS_MAX, Topic, validate_topic_name,
};
use crate::types::{LogSeq, TopicId};

const CHECKPOINT_MAGIC: [u8; 8] = *b"SLUICECK";
/// The version this code writes and the newest it reads.
pub const CHECKPOINT_VERSION: u16 = 2;
/// The oldest version still decoded (migrated: no producer state).
const CHECKPOINT_VERSION_MIN: u16 = 1;
const HEADER_LEN: usize = 20;
const CRC_LEN: usize = 4;
const INDEX_ENTRY_LEN: usize = 48;

impl MetadataState {
    /// The complete state (chain position included) as a self-describing byte string.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let entry_count: usize = self
            .topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .map(|partition| partition.index().len())
            .sum();
        let mut out = Vec::with_capacity(
            HEADER_LEN + 64 + self.topics.len() * 512 + entry_count * INDEX_ENTRY_LEN,
        );
        out.extend_from_slice(&CHECKPOINT_MAGIC);
        out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // body_len, patched below
        out.extend_from_slice(&self.writer_epoch.to_le_bytes());
        put_optional_seq(&mut out, self.last_valid_seq);
        put_optional_seq(&mut out, self.last_offered_seq);
        out.extend_from_slice(&self.next_producer_id.to_le_bytes());
        let mut topics: Vec<(&TopicId, &Topic)> = self.topics.iter().collect();
        topics.sort_unstable_by_key(|(topic_id, _)| **topic_id);
        // Bounded by TOPICS_MAX, and every length below by its own limit, so the casts are lossless.
        out.extend_from_slice(&(topics.len() as u32).to_le_bytes());
        for (topic_id, topic) in topics {
            out.extend_from_slice(&topic_id.0);
            put_short_bytes(&mut out, topic.name.as_bytes());
            out.extend_from_slice(&(topic.configs.len() as u16).to_le_bytes());
            for (name, value) in &topic.configs {
                put_short_bytes(&mut out, name.as_bytes());
                put_short_bytes(&mut out, value.as_bytes());
            }
            out.extend_from_slice(&topic.partition_count().to_le_bytes());
            for partition in &topic.partitions {
                out.extend_from_slice(&partition.log_start_offset().to_le_bytes());
                out.extend_from_slice(&partition.high_watermark().to_le_bytes());
                out.extend_from_slice(&(partition.index().len() as u32).to_le_bytes());
                for entry in partition.index().iter() {
                    out.extend_from_slice(&entry.base_offset.to_le_bytes());
                    out.extend_from_slice(&entry.end_offset.to_le_bytes());
                    out.extend_from_slice(&entry.seq.0.to_le_bytes());
                    out.extend_from_slice(&entry.byte_start.to_le_bytes());
                    out.extend_from_slice(&entry.byte_len.to_le_bytes());
                    out.extend_from_slice(&entry.max_timestamp.to_le_bytes());
                }
                put_producers(&mut out, partition.producers());
            }
        }
        let body_len = (out.len() - HEADER_LEN) as u64;
        if let Some(field) = out.get_mut(12..HEADER_LEN) {
            field.copy_from_slice(&body_len.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and fully validates a checkpoint written by [`MetadataState::encode_checkpoint`].
    /// Never panics on any input.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<MetadataState, CheckpointError> {
        let (version, body) = verified_body(bytes)?;
        let mut reader = Reader {
            bytes: body,
            version,
        };
        let writer_epoch = reader.u64("writer_epoch")?;
        let last_valid_seq = reader.optional_seq("last_valid_seq")?;
        let last_offered_seq = reader.optional_seq("last_offered_seq")?;
        if last_valid_seq > last_offered_seq {
            return Err(invalid(
                "last_valid_seq is after last_offered_seq".to_owned(),
            ));
        }
        if last_valid_seq.is_some() != (writer_epoch > 0) {
            return Err(invalid(
                "a valid entry exists iff a writer has claimed the log".to_owned(),
            ));
        }
        let next_producer_id = if version >= 2 {
            reader.u64("next_producer_id")?
        } else {
            0
        };
        let topic_count = reader.u32("topic_count")? as usize;
        if topic_count > TOPICS_MAX {
            return Err(invalid(format!(
                "{topic_count} topics (limit {TOPICS_MAX})"
            )));
        }
        let mut topics = TopicMap::with_capacity_and_hasher(topic_count, ahash::RandomState::new());
        let mut topic_ids_by_name = BTreeMap::new();
        let mut partition_count_total = 0u64;
        for _ in 0..topic_count {
            let topic_id = TopicId(reader.array::<16>("topic id")?);
            let (name, topic) = read_topic(&mut reader)?;
            partition_count_total += u64::from(topic.partition_count());
            if partition_count_total > PARTITIONS_TOTAL_MAX {
                return Err(invalid(format!(
                    "more than {PARTITIONS_TOTAL_MAX} partitions"
                )));
            }
            if topic_ids_by_name.insert(name, topic_id).is_some()
                || topics.insert(topic_id, topic).is_some()
            {
                return Err(invalid(format!("duplicate topic {topic_id}")));
            }
        }
        if !reader.bytes.is_empty() {
            return Err(invalid(format!(
                "{} bytes after the last topic",
                reader.bytes.len()
            )));
        }
        Ok(MetadataState {
            writer_epoch,
            last_valid_seq,
            last_offered_seq,
            topics,
            topic_ids_by_name,
            partition_count_total,
            next_producer_id,
            group_offsets: BTreeMap::new(),
            committed_offset_count: 0,
        })
    }
}

/// Checks magic, version, length and CRC; returns the version and the body.
fn verified_body(bytes: &[u8]) -> Result<(u16, &[u8]), CheckpointError> {
    let too_short = || CheckpointError::TooShort { len: bytes.len() };
    let (covered, crc_bytes) = bytes.split_last_chunk::<CRC_LEN>().ok_or_else(too_short)?;
    let (header, body) = covered
        .split_first_chunk::<HEADER_LEN>()
        .ok_or_else(too_short)?;
    let mut header_reader = Reader {
        bytes: header,
        version: CHECKPOINT_VERSION,
    };
    let magic = header_reader.array::<8>("magic")?;
    if magic != CHECKPOINT_MAGIC {
        return Err(CheckpointError::BadMagic { found: magic });
    }
    let version = header_reader.u16("version")?;
    if !(CHECKPOINT_VERSION_MIN..=CHECKPOINT_VERSION).contains(&version) {
        return Err(CheckpointError::UnsupportedVersion {
            version,
            supported: CHECKPOINT_VERSION,
        });
    }
    let _reserved = header_reader.u16("reserved")?;
    let declared = header_reader.u64("body_len")?;
    if declared != body.len() as u64 {
        return Err(CheckpointError::LengthMismatch {
            declared,
            actual: body.len() as u64,
        });
    }
    let expected = u32::from_le_bytes(*crc_bytes);
    let got = crc32c::crc32c(covered);
    if expected != got {
        return Err(CheckpointError::ChecksumMismatch { expected, got });
    }
    Ok((version, body))
}

fn read_topic(reader: &mut Reader<'_>) -> Result<(String, Topic), CheckpointError> {
    let name = reader.short_string("topic name")?;
    validate_topic_name(&name).map_err(|error| invalid(error.to_string()))?;
    let config_count = reader.u16("config_count")?;
    let mut configs = BTreeMap::new();
    for _ in 0..config_count {
        let config_name = reader.short_string("config name")?;
        let value = reader.short_string("config value")?;
        validate_config(&config_name, &value).map_err(|error| invalid(error.to_string()))?;
        if configs.insert(config_name, value).is_some() {
            return Err(invalid(format!("duplicate config in topic '{name}'")));
        }
    }
    let partition_count = reader.u32("partition_count")?;
    if partition_count == 0 || partition_count > PARTITIONS_PER_TOPIC_MAX {
        return Err(invalid(format!(
            "topic '{name}' has {partition_count} partitions"
        )));
    }
    let mut partitions = Vec::with_capacity(partition_count as usize);
    for _ in 0..partition_count {
        partitions.push(read_partition(reader)?);
    }
    Ok((
        name.clone(),
        Topic {
            name,
            configs,
            partitions,
        },
    ))
}

fn read_partition(reader: &mut Reader<'_>) -> Result<PartitionState, CheckpointError> {
    let log_start_offset = reader.u64("log_start_offset")?;
    let high_watermark = reader.u64("high_watermark")?;
    let entry_count = reader.u32("entry_count")? as usize;
    if entry_count > INDEX_ENTRIES_PER_PARTITION_MAX {
        return Err(invalid(format!(
            "{entry_count} index entries (limit {INDEX_ENTRIES_PER_PARTITION_MAX})"
        )));
    }
    // Take the bytes first, so a corrupt count cannot make us allocate more than the input holds.
    let entry_bytes = reader.take(entry_count * INDEX_ENTRY_LEN, "index entries")?;
    let (entries, _) = entry_bytes.as_chunks::<INDEX_ENTRY_LEN>();
    let index = PartitionIndex::from_entries(entries.len(), entries.iter().map(decode_index_entry));
    let producers = if reader.version >= 2 {
        read_producers(reader)?
    } else {
        ProducerMap::new()
    };
    PartitionState::from_parts(log_start_offset, high_watermark, index, producers).map_err(invalid)
}

/// Counts are bounded by [`PRODUCERS_PER_PARTITION_MAX`] and [`PRODUCER_BATCHES_RETAINED`].
fn put_producers(out: &mut Vec<u8>, producers: &ProducerMap) {
    out.extend_from_slice(&(producers.len() as u32).to_le_bytes());
    for (producer_id, entry) in producers {
        out.extend_from_slice(&producer_id.to_le_bytes());
        out.extend_from_slice(&entry.epoch.to_le_bytes());
        out.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            out.extend_from_slice(&batch.base_sequence.to_le_bytes());
            out.extend_from_slice(&batch.last_sequence.to_le_bytes());
            out.extend_from_slice(&batch.base_offset.to_le_bytes());
        }
    }
}

fn read_producers(reader: &mut Reader<'_>) -> Result<ProducerMap, CheckpointError> {
    let producer_count = reader.u32("producer_count")? as usize;
    if producer_count > PRODUCERS_PER_PARTITION_MAX {
        return Err(invalid(format!(
            "{producer_count} producers (limit {PRODUCERS_PER_PARTITION_MAX})"
        )));
    }
    let mut producers = ProducerMap::new();
    let mut previous_id = -1i64;
    for _ in 0..producer_count {
        let producer_id = i64::from_le_bytes(reader.array::<8>("producer_id")?);
        let epoch = i16::from_le_bytes(reader.array::<2>("producer epoch")?);
        let [batch_count] = reader.array::<1>("producer batch_count")?;
        if producer_id <= previous_id || epoch < 0 {
            return Err(invalid(format!(
                "producer {producer_id} (epoch {epoch}) out of order or negative"
            )));
        }
        previous_id = producer_id;
        let batch_count = usize::from(batch_count);
        if batch_count == 0 || batch_count > PRODUCER_BATCHES_RETAINED {
            return Err(invalid(format!(
                "producer {producer_id} keeps {batch_count} batches"
            )));
        }
        let mut batches = Vec::with_capacity(batch_count);
        for _ in 0..batch_count {
            let base_sequence = i32::from_le_bytes(reader.array::<4>("base_sequence")?);
            let last_sequence = i32::from_le_bytes(reader.array::<4>("last_sequence")?);
            let base_offset = reader.u64("producer base_offset")?;
            if base_sequence < 0 || last_sequence < 0 {
                return Err(invalid(format!(
                    "producer {producer_id} has a negative sequence"
                )));
            }
            batches.push(SequenceRange {
                base_sequence,
                last_sequence,
                base_offset,
            });
        }
        producers.insert(producer_id, ProducerEntry { epoch, batches });
    }
    Ok(producers)
}

fn decode_index_entry(bytes: &[u8; INDEX_ENTRY_LEN]) -> IndexEntry {
    let (words, _) = bytes.as_chunks::<8>();
    let mut words = words.iter().map(|word| u64::from_le_bytes(*word));
    // Exactly six words: the defaults are never used.
    let mut next = move || words.next().unwrap_or_default();
    IndexEntry {
        base_offset: next(),
        end_offset: next(),
        seq: LogSeq(next()),
        byte_start: next(),
        byte_len: next(),
        max_timestamp: i64::from_le_bytes(next().to_le_bytes()),
    }
}

fn invalid(reason: String) -> CheckpointError {
    CheckpointError::Invalid { reason }
}

fn put_optional_seq(out: &mut Vec<u8>, seq: Option<LogSeq>) {
    out.push(u8::from(seq.is_some()));
    out.extend_from_slice(&seq.map_or(0, |seq| seq.0).to_le_bytes());
}

/// Names and config values are bounded well below `u16::MAX` by validation.
fn put_short_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    /// The checkpoint's format version, for fields that only later versions have.
    version: u16,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CheckpointError> {
        let (taken, rest) = self
            .bytes
            .split_at_checked(len)
            .ok_or(CheckpointError::Truncated { what })?;
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CheckpointError> {
        let (taken, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(CheckpointError::Truncated { what })?;
        self.bytes = rest;
        Ok(*taken)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CheckpointError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CheckpointError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CheckpointError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn optional_seq(&mut self, what: &'static str) -> Result<Option<LogSeq>, CheckpointError> {
        let [present] = self.array::<1>(what)?;
        let value = self.u64(what)?;
        match present {
            0 if value == 0 => Ok(None),
            1 => Ok(Some(LogSeq(value))),
            _ => Err(invalid(format!("{what}: bad option tag {present}"))),
        }
    }

    fn short_string(&mut self, what: &'static str) -> Result<String, CheckpointError> {
        let len = self.u16(what)?;
        let bytes = self.take(usize::from(len), what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }
}
