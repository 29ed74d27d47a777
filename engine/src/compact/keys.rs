//! Key compaction (`cleanup.policy=compact`): of every key, only the latest record survives;
//! tombstones (a null value) go once `delete.retention.ms` has passed.
//!
//! # Offsets never move
//!
//! Fetch gives each stored batch its base offset by walking the batches of an index entry and
//! adding up their `lastOffsetDelta + 1`, and consumers commit and seek by offset. So a rewritten
//! batch keeps its header — base offset field, `lastOffsetDelta`, timestamps, producer id, epoch
//! and base sequence — and loses only records; its surviving records keep their offset and
//! timestamp deltas byte for byte. A batch left with no records stays as an empty batch (record
//! count 0) that still spans its offsets: Kafka's log cleaner keeps such batches too (for producer
//! state), and the clients skip them and move on. A batch that keeps every record is kept as it
//! was, without a copy.
//!
//! # Two passes, bounded
//!
//! The first pass maps every key to the offset of its latest record; the second keeps a record
//! when its offset is its key's latest. Keys are held in memory (copied out of the decompressed
//! records) up to [`KeyCompactionLimits::key_bytes_max`]; beyond it the job fails with a clear
//! error rather than grow without bound. Each batch's records decompress through
//! [`super::super::batch::codec`]'s limit.
//!
//! # Tombstones: Kafka's delete horizon (KIP-534)
//!
//! A tombstone must stay long enough for a reader that started before the cleaner passed it to
//! see it, whatever timestamp its producer gave it. So, as Kafka does, the first pass that keeps a
//! batch holding tombstones marks the batch: attributes bit 6 ("delete horizon") set and
//! `baseTimestamp` = the pass's time + `delete.retention.ms`, with every record's timestamp delta
//! rebased so that each record keeps its timestamp. A later pass removes the batch's tombstones
//! (those still the latest of their key) once its clock is past that horizon. The horizon is in
//! the stored batch, so it survives restarts and takeovers.
//!
//! # What differs from Kafka
//!
//! - Records without a key (which Kafka refuses to produce to a compacted topic) are kept.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::batch::codec::{self, CodecError};
use crate::batch::{
    BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX_LEN, BatchHeader, CRC_COVERED_FROM, Compression,
    TimestampType,
};

/// Bounds of one key-compaction pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCompactionLimits {
    /// Bytes of distinct keys the latest-offset map may hold (Kafka's
    /// `log.cleaner.dedupe.buffer.size` plays this role).
    pub key_bytes_max: usize,
    /// Bytes one batch's records may decompress to.
    pub decompressed_bytes_max: usize,
}

impl Default for KeyCompactionLimits {
    fn default() -> Self {
        KeyCompactionLimits {
            key_bytes_max: 128 * 1024 * 1024,
            decompressed_bytes_max: codec::DECOMPRESSED_BYTES_MAX,
        }
    }
}

/// A batch of the range, with the offset fetch gives it.
#[derive(Debug, Clone)]
pub struct OffsetBatch {
    pub base_offset: u64,
    pub header: BatchHeader,
    pub bytes: Bytes,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCompactionStats {
    pub records_read: u64,
    pub records_kept: u64,
    /// Records of a key that has a later record.
    pub records_superseded: u64,
    /// Latest records of their key that were tombstones past `delete.retention.ms`.
    pub tombstones_removed: u64,
    pub batches_rewritten: u64,
    pub batches_emptied: u64,
    pub distinct_keys: u64,
    /// The earliest delete horizon of a batch that still holds tombstones: once the clock passes
    /// it, the partition is worth cleaning again even with no new records.
    pub next_delete_horizon_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyCompactionError {
    #[error("batch at offset {base_offset}: {reason}")]
    CorruptBatch { base_offset: u64, reason: String },
    #[error("batch at offset {base_offset}: {source}")]
    Codec {
        base_offset: u64,
        source: CodecError,
    },
    #[error(
        "the keys of this range need more than {limit} bytes of key map; compacting it needs a larger key_bytes_max"
    )]
    TooManyKeys { limit: usize },
}

/// One record of a decompressed records section: where it is and what compaction needs of it.
struct RecordView {
    /// Its bytes (length prefix included) within the section.
    range: std::ops::Range<usize>,
    offset_delta: i64,
    timestamp_delta: i64,
    key: Option<std::ops::Range<usize>>,
    /// `None` for a tombstone.
    value: Option<std::ops::Range<usize>>,
    tombstone: bool,
}

/// One record as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Every record of `batch` with its offset (for tools and tests; compaction itself does not
/// copy records out).
pub fn read_records(
    batch: &OffsetBatch,
    limits: &KeyCompactionLimits,
) -> Result<Vec<RecordFields>, KeyCompactionError> {
    let (section, records) = decode(batch, limits)?;
    Ok(records
        .iter()
        .map(|record| RecordFields {
            offset: record_offset(batch, record),
            timestamp_ms: record_timestamp(&batch.header, record),
            key: record.key.clone().map(|key| section.slice(key)),
            value: record.value.clone().map(|value| section.slice(value)),
        })
        .collect())
}

/// Keeps, of `batches` (one partition's, in offset order), the latest record of every key; drops
/// the tombstones of batches whose delete horizon is before `now_ms`, and marks batches that keep
/// tombstones without a horizon with `now_ms + delete_retention_ms`. Returns the batches in the
/// same order, each spanning the same offsets.
pub fn compact_keys(
    batches: &[OffsetBatch],
    now_ms: i64,
    delete_retention_ms: i64,
    limits: &KeyCompactionLimits,
) -> Result<(Vec<OffsetBatch>, KeyCompactionStats), KeyCompactionError> {
    let mut stats = KeyCompactionStats::default();
    let mut latest: HashMap<Bytes, u64> = HashMap::new();
    let mut key_bytes = 0usize;
    for batch in batches {
        let (section, records) = decode(batch, limits)?;
        for record in &records {
            stats.records_read += 1;
            let Some(key) = &record.key else { continue };
            let key = section.slice(key.clone());
            let offset = record_offset(batch, record);
            match latest.get_mut(&key) {
                Some(at) => *at = (*at).max(offset),
                None => {
                    key_bytes = key_bytes.saturating_add(key.len() + 32);
                    if key_bytes > limits.key_bytes_max {
                        return Err(KeyCompactionError::TooManyKeys {
                            limit: limits.key_bytes_max,
                        });
                    }
                    // Owned: the section is dropped after this batch.
                    latest.insert(Bytes::copy_from_slice(&key), offset);
                }
            }
        }
    }
    stats.distinct_keys = latest.len() as u64;

    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let (section, records) = decode(batch, limits)?;
        let horizon = delete_horizon_ms(&batch.header);
        let tombstones_expire = horizon.is_some_and(|horizon| horizon <= now_ms);
        let mut kept: Vec<&RecordView> = Vec::with_capacity(records.len());
        let mut keeps_tombstones = false;
        for record in &records {
            let keep = match &record.key {
                None => true,
                Some(key) => {
                    let latest_offset = latest.get(&section.slice(key.clone())).copied();
                    if latest_offset != Some(record_offset(batch, record)) {
                        stats.records_superseded += 1;
                        false
                    } else if record.tombstone && tombstones_expire {
                        stats.tombstones_removed += 1;
                        false
                    } else {
                        keeps_tombstones |= record.tombstone;
                        true
                    }
                }
            };
            if keep {
                kept.push(record);
            }
        }
        stats.records_kept += kept.len() as u64;
        // A batch that keeps tombstones gets its horizon now if it has none.
        let new_horizon = (keeps_tombstones && horizon.is_none())
            .then(|| now_ms.saturating_add(delete_retention_ms.max(0)));
        if keeps_tombstones {
            let batch_horizon = new_horizon.or(horizon).unwrap_or(i64::MAX);
            stats.next_delete_horizon_ms = Some(
                stats
                    .next_delete_horizon_ms
                    .map_or(batch_horizon, |next| next.min(batch_horizon)),
            );
        }
        if kept.len() == records.len() && new_horizon.is_none() {
            out.push(batch.clone());
            continue;
        }
        stats.batches_rewritten += 1;
        if kept.is_empty() {
            stats.batches_emptied += 1;
        }
        out.push(rewrite(batch, &section, &kept, new_horizon)?);
    }
    Ok((out, stats))
}

fn record_offset(batch: &OffsetBatch, record: &RecordView) -> u64 {
    batch
        .base_offset
        .saturating_add(u64::try_from(record.offset_delta).unwrap_or(0))
}

fn record_timestamp(header: &BatchHeader, record: &RecordView) -> i64 {
    match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        // Wrapping, as Kafka's clients compute `baseTimestamp + timestampDelta` in a Java long: a
        // record's timestamp is what they read, even when a delta and a base overflow.
        TimestampType::CreateTime => header.base_timestamp.wrapping_add(record.timestamp_delta),
    }
}

/// The batch's records section, decompressed, and a view of each record.
fn decode(
    batch: &OffsetBatch,
    limits: &KeyCompactionLimits,
) -> Result<(Bytes, Vec<RecordView>), KeyCompactionError> {
    let corrupt = |reason: &str| KeyCompactionError::CorruptBatch {
        base_offset: batch.base_offset,
        reason: reason.to_owned(),
    };
    let compressed = batch
        .bytes
        .get(BATCH_HEADER_LEN..)
        .ok_or_else(|| corrupt("shorter than a batch header"))?;
    let section = Bytes::from(
        codec::decompress(
            batch.header.compression(),
            compressed,
            limits.decompressed_bytes_max,
        )
        .map_err(|source| KeyCompactionError::Codec {
            base_offset: batch.base_offset,
            source,
        })?,
    );
    let count = usize::try_from(batch.header.record_count).unwrap_or(0);
    let mut records = Vec::with_capacity(count.min(section.len()));
    let mut at = 0usize;
    for _ in 0..count {
        let (length, body_at) = varint(&section, at).ok_or_else(|| corrupt("record length"))?;
        let length = usize::try_from(length).map_err(|_| corrupt("negative record length"))?;
        let end = body_at
            .checked_add(length)
            .filter(|end| *end <= section.len())
            .ok_or_else(|| corrupt("record past the end of the batch"))?;
        let body = section.get(body_at..end).unwrap_or_default();
        // attributes (1 byte), timestampDelta, offsetDelta, keyLength, key, valueLength, ...
        let mut cursor = 1usize;
        let (timestamp_delta, next) = varint(body, cursor).ok_or_else(|| corrupt("timestamp"))?;
        cursor = next;
        let (offset_delta, next) = varint(body, cursor).ok_or_else(|| corrupt("offset delta"))?;
        cursor = next;
        let (key_length, next) = varint(body, cursor).ok_or_else(|| corrupt("key length"))?;
        cursor = next;
        let key = match usize::try_from(key_length) {
            Ok(len) => {
                let key_end = cursor
                    .checked_add(len)
                    .filter(|key_end| *key_end <= body.len())
                    .ok_or_else(|| corrupt("key past the end of the record"))?;
                let key = (body_at + cursor)..(body_at + key_end);
                cursor = key_end;
                Some(key)
            }
            Err(_) => None,
        };
        let (value_length, next) = varint(body, cursor).ok_or_else(|| corrupt("value length"))?;
        let value = match usize::try_from(value_length) {
            Ok(len) => Some(
                (body_at + next)
                    ..(body_at
                        + next
                            .checked_add(len)
                            .filter(|value_end| *value_end <= body.len())
                            .ok_or_else(|| corrupt("value past the end of the record"))?),
            ),
            Err(_) => None,
        };
        if !(0..=i64::from(batch.header.last_offset_delta)).contains(&offset_delta) {
            return Err(corrupt("offset delta outside the batch"));
        }
        records.push(RecordView {
            range: at..end,
            offset_delta,
            timestamp_delta,
            key,
            value,
            tombstone: value_length < 0,
        });
        at = end;
    }
    Ok((section, records))
}

/// The batch with only `kept` records: same header fields but the record count (and, for an
/// empty batch, no compression), a new length and CRC.
fn rewrite(
    batch: &OffsetBatch,
    section: &Bytes,
    kept: &[&RecordView],
    new_horizon: Option<i64>,
) -> Result<OffsetBatch, KeyCompactionError> {
    let mut records = Vec::with_capacity(kept.iter().map(|record| record.range.len()).sum());
    let base_timestamp = new_horizon.unwrap_or(batch.header.base_timestamp);
    for record in kept {
        let bytes = section.get(record.range.clone()).unwrap_or_default();
        match new_horizon {
            None => records.extend_from_slice(bytes),
            Some(_) => rebase_timestamp(
                bytes,
                record,
                batch.header.base_timestamp.wrapping_sub(base_timestamp),
                &mut records,
            )
            .ok_or_else(|| KeyCompactionError::CorruptBatch {
                base_offset: batch.base_offset,
                reason: "record cannot be rebased".to_owned(),
            })?,
        }
    }
    let mut attributes = batch.header.attributes;
    if new_horizon.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    let body = if kept.is_empty() {
        attributes &= !0x07;
        Vec::new()
    } else {
        codec::compress(batch.header.compression(), &records).map_err(|source| {
            KeyCompactionError::Codec {
                base_offset: batch.base_offset,
                source,
            }
        })?
    };
    let header_bytes =
        batch
            .bytes
            .get(..BATCH_HEADER_LEN)
            .ok_or_else(|| KeyCompactionError::CorruptBatch {
                base_offset: batch.base_offset,
                reason: "shorter than a batch header".to_owned(),
            })?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(header_bytes);
    out.extend_from_slice(&body);
    let batch_length = i32::try_from(out.len() - BATCH_LENGTH_PREFIX_LEN).unwrap_or(i32::MAX);
    let record_count = i32::try_from(kept.len()).unwrap_or(i32::MAX);
    put(&mut out, 8, &batch_length.to_be_bytes());
    put(&mut out, 21, &attributes.to_be_bytes());
    put(&mut out, 57, &record_count.to_be_bytes());
    put(&mut out, 27, &base_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(out.get(CRC_COVERED_FROM..).unwrap_or_default());
    put(&mut out, 17, &crc.to_be_bytes());
    let bytes = out.freeze();
    let header = BatchHeader::parse(&bytes).map_err(|error| KeyCompactionError::CorruptBatch {
        base_offset: batch.base_offset,
        reason: error.to_string(),
    })?;
    debug_assert_eq!(header.offset_count(), batch.header.offset_count());
    debug_assert!(header.compression() == Compression::None || !kept.is_empty());
    Ok(OffsetBatch {
        base_offset: batch.base_offset,
        header,
        bytes,
    })
}

/// Attributes bit 6: `baseTimestamp` is the batch's delete horizon (KIP-534).
const DELETE_HORIZON_FLAG: i16 = 0x40;

/// The batch's delete horizon, if a cleaner set one.
fn delete_horizon_ms(header: &BatchHeader) -> Option<i64> {
    (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp)
}

/// Writes `bytes` (one record, length prefix included) with its timestamp delta raised by
/// `shift` (the old base minus the new one), so its timestamp stays the same under the new base.
fn rebase_timestamp(
    bytes: &[u8],
    record: &RecordView,
    shift: i64,
    out: &mut Vec<u8>,
) -> Option<()> {
    let (_, body_at) = varint(bytes, 0)?;
    // attributes, then the timestamp delta we replace, then everything else verbatim.
    let attributes = *bytes.get(body_at)?;
    let (_, after_timestamp) = varint(bytes, body_at + 1)?;
    let rest = bytes.get(after_timestamp..)?;
    let mut body = Vec::with_capacity(rest.len() + 11);
    body.push(attributes);
    // Wrapping: (delta + old base - new base) + new base is the old timestamp in the clients'
    // two's-complement arithmetic for every base; saturating here changed the timestamps of a
    // batch whose base is far from the horizon (found by the record_batch fuzz target).
    put_varint(&mut body, record.timestamp_delta.wrapping_add(shift));
    body.extend_from_slice(rest);
    put_varint(out, i64::try_from(body.len()).ok()?);
    out.extend_from_slice(&body);
    Some(())
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put(bytes: &mut BytesMut, at: usize, field: &[u8]) {
    if let Some(target) = bytes.get_mut(at..at + field.len()) {
        target.copy_from_slice(field);
    }
}

/// A zigzag varint (Kafka's record fields) at `at`: the value and the position after it.
fn varint(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (index, shift) in (0..10).zip((0..70).step_by(7)) {
        let byte = *bytes.get(at + index)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, at + index + 1));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, RecordSpec, validate_batch};

    /// A batch of `(key, value)` records (value `None` = tombstone) at timestamp `base + i`.
    fn batch(
        records: &[(Option<&str>, Option<&str>)],
        base_timestamp: i64,
        codec: Compression,
    ) -> (BatchHeader, Bytes) {
        let mut builder = BatchBuilder::new(base_timestamp);
        for (index, (key, value)) in records.iter().enumerate() {
            builder.records.push(RecordSpec {
                timestamp_delta: index as i64,
                offset_delta: index as i32,
                key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
                value: value.map(|value| Bytes::copy_from_slice(value.as_bytes())),
            });
        }
        let plain = builder.encode();
        if codec == Compression::None {
            return (validate_batch(&plain).unwrap(), plain);
        }
        // The same records, compressed: header with the codec bits, new length and CRC.
        let body = codec::compress(codec, &plain[BATCH_HEADER_LEN..]).unwrap();
        let mut out = BytesMut::from(&plain[..BATCH_HEADER_LEN]);
        out.extend_from_slice(&body);
        let length = (out.len() - BATCH_LENGTH_PREFIX_LEN) as i32;
        put(&mut out, 8, &length.to_be_bytes());
        put(&mut out, 21, &i16::from(codec.codec()).to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
        put(&mut out, 17, &crc.to_be_bytes());
        let bytes = out.freeze();
        (validate_batch(&bytes).unwrap(), bytes)
    }

    fn at_offsets(batches: Vec<(BatchHeader, Bytes)>) -> Vec<OffsetBatch> {
        let mut offset = 0;
        batches
            .into_iter()
            .map(|(header, bytes)| {
                let batch = OffsetBatch {
                    base_offset: offset,
                    header,
                    bytes,
                };
                offset += header.offset_count();
                batch
            })
            .collect()
    }

    fn survivors(batches: &[OffsetBatch]) -> Vec<(u64, Option<String>, Option<String>)> {
        let text = |bytes: &Option<Bytes>| {
            bytes
                .as_ref()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        batches
            .iter()
            .flat_map(|batch| read_records(batch, &KeyCompactionLimits::default()).unwrap())
            .map(|record| (record.offset, text(&record.key), text(&record.value)))
            .collect()
    }

    #[test]
    fn the_latest_record_of_each_key_survives_at_its_offset_in_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batches = at_offsets(vec![
                batch(
                    &[
                        (Some("a"), Some("a1")),
                        (Some("b"), Some("b1")),
                        (Some("a"), Some("a2")),
                    ],
                    1_000,
                    codec,
                ),
                batch(
                    &[(Some("c"), Some("c1")), (Some("b"), Some("b2"))],
                    2_000,
                    codec,
                ),
                batch(
                    &[(Some("a"), Some("a3")), (None, Some("no key"))],
                    3_000,
                    codec,
                ),
            ]);
            let (out, stats) =
                compact_keys(&batches, 0, 1_000, &KeyCompactionLimits::default()).unwrap();
            assert_eq!(out.len(), 3, "{codec:?}: every batch keeps its place");
            for (before, after) in batches.iter().zip(&out) {
                assert_eq!(after.base_offset, before.base_offset);
                assert_eq!(after.header.offset_count(), before.header.offset_count());
                assert_eq!(after.header.base_timestamp, before.header.base_timestamp);
                validate_batch(&after.bytes).unwrap();
            }
            assert_eq!(
                survivors(&out),
                vec![
                    (3, Some("c".into()), Some("c1".into())),
                    (4, Some("b".into()), Some("b2".into())),
                    (5, Some("a".into()), Some("a3".into())),
                    (6, None, Some("no key".into())),
                ],
                "{codec:?}"
            );
            assert_eq!(stats.records_read, 7);
            assert_eq!(stats.records_superseded, 3);
            assert_eq!(stats.batches_emptied, 1);
            assert_eq!(out[0].header.record_count, 0);
            assert_eq!(out[0].header.compression(), Compression::None);
            // The last batch lost nothing: the very same bytes.
            assert_eq!(out[2].bytes.as_ptr(), batches[2].bytes.as_ptr());
        }
    }

    #[test]
    fn a_tombstone_goes_only_delete_retention_after_a_pass_first_kept_it() {
        let batches = at_offsets(vec![
            batch(
                &[(Some("a"), Some("a1")), (Some("b"), Some("b1"))],
                1_000,
                Compression::None,
            ),
            // Timestamped long ago: its age does not matter, the horizon does.
            batch(
                &[(Some("a"), None), (Some("c"), Some("c1"))],
                5_000,
                Compression::Lz4,
            ),
        ]);
        // First pass at 100,000: the tombstone stays (and hides a1); its batch gets a horizon.
        let (first, stats) =
            compact_keys(&batches, 100_000, 60_000, &KeyCompactionLimits::default()).unwrap();
        let survivors_first = survivors(&first);
        assert_eq!(
            survivors_first,
            vec![
                (1, Some("b".into()), Some("b1".into())),
                (2, Some("a".into()), None),
                (3, Some("c".into()), Some("c1".into())),
            ]
        );
        assert_eq!(stats.next_delete_horizon_ms, Some(160_000));
        assert_eq!(
            first[1].header.attributes & DELETE_HORIZON_FLAG,
            DELETE_HORIZON_FLAG
        );
        assert_eq!(first[1].header.base_timestamp, 160_000);
        validate_batch(&first[1].bytes).unwrap();
        // Every record keeps its timestamp under the new base.
        let limits = KeyCompactionLimits::default();
        let timestamps: Vec<i64> = read_records(&first[1], &limits)
            .unwrap()
            .iter()
            .map(|r| r.timestamp_ms)
            .collect();
        assert_eq!(timestamps, vec![5_000, 5_001]);
        // Before the horizon nothing changes; after it the tombstone goes, c1 stays.
        let (again, stats) = compact_keys(&first, 159_999, 60_000, &limits).unwrap();
        assert_eq!(survivors(&again), survivors_first);
        assert_eq!(stats.tombstones_removed, 0);
        assert_eq!(
            again[1].bytes.as_ptr(),
            first[1].bytes.as_ptr(),
            "no rewrite before the horizon"
        );
        let (after, stats) = compact_keys(&first, 160_000, 60_000, &limits).unwrap();
        assert_eq!(
            survivors(&after),
            vec![
                (1, Some("b".into()), Some("b1".into())),
                (3, Some("c".into()), Some("c1".into()))
            ]
        );
        assert_eq!(stats.tombstones_removed, 1);
        assert_eq!(stats.next_delete_horizon_ms, None);
        assert_eq!(after[1].header.offset_count(), 2);
    }

    #[test]
    fn records_keep_their_timestamps_under_a_horizon_far_from_their_base() {
        // A producer's base timestamp near i64::MIN and a horizon near i64::MAX: the shift between
        // them does not fit an i64, and every record must still read back at its timestamp.
        let limits = KeyCompactionLimits::default();
        for (base, now_ms, retention_ms) in [
            (i64::MIN + 5, i64::MAX - 10, 1_000),
            (-8_428_476_807_012_513_792, 0, i64::MAX),
            (i64::MAX - 1, i64::MIN + 1, 0),
        ] {
            let batches = at_offsets(vec![batch(
                &[(Some("a"), Some("a1")), (Some("b"), None)],
                base,
                Compression::None,
            )]);
            let before = read_records(&batches[0], &limits).unwrap();
            let (after, _) = compact_keys(&batches, now_ms, retention_ms, &limits).unwrap();
            assert_eq!(
                read_records(&after[0], &limits).unwrap(),
                before,
                "base {base}"
            );
        }
    }

    #[test]
    fn too_many_keys_is_a_clear_error() {
        let records: Vec<(Option<&str>, Option<&str>)> =
            (0..100).map(|_| (Some("0123456789"), Some("v"))).collect();
        let batches = at_offsets(vec![batch(&records, 0, Compression::None)]);
        let distinct: Vec<String> = (0..100).map(|n| format!("key-{n:04}")).collect();
        let records: Vec<(Option<&str>, Option<&str>)> = distinct
            .iter()
            .map(|key| (Some(key.as_str()), Some("v")))
            .collect();
        let many = at_offsets(vec![batch(&records, 0, Compression::None)]);
        let limits = KeyCompactionLimits {
            key_bytes_max: 1_000,
            ..KeyCompactionLimits::default()
        };
        assert!(compact_keys(&batches, 0, 0, &limits).is_ok());
        assert!(matches!(
            compact_keys(&many, 0, 0, &limits),
            Err(KeyCompactionError::TooManyKeys { .. })
        ));
    }

    #[test]
    fn a_corrupt_records_section_is_an_error_not_a_panic() {
        let (header, bytes) = batch(
            &[(Some("a"), Some("a1")), (Some("b"), Some("b1"))],
            0,
            Compression::None,
        );
        for cut in BATCH_HEADER_LEN..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[cut] = 0xff;
            let batch = OffsetBatch {
                base_offset: 0,
                header,
                bytes: Bytes::from(damaged),
            };
            let _ = compact_keys(&[batch], 0, 0, &KeyCompactionLimits::default());
        }
        let (header, bytes) = batch(&[(Some("a"), Some("a1"))], 0, Compression::Zstd);
        let batch = OffsetBatch {
            base_offset: 0,
            header,
            bytes: bytes.slice(..bytes.len() - 3),
        };
        assert!(compact_keys(&[batch], 0, 0, &KeyCompactionLimits::default()).is_err());
    }
}
