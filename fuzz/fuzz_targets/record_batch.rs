//! A Produce request's `records` field, as the agent receives it from a client: split into
//! batches and validated (`split_batches`, `validate_batch`), stamped for a LogAppendTime topic
//! (`apply_topic_timestamp_type`), then read record by record through the decompression codecs and
//! key-compacted (`read_records`, `compact_keys`), the one place the agent reads inside batches.
//!
//! Checks, beyond "no panic":
//! - the accepted batches tile the input exactly, each a zero-copy slice that re-validates to the
//!   same header;
//! - a stamped batch still validates, with only its timestamp type, `maxTimestamp` and CRC changed;
//! - a batch's records number `recordCount`, their offsets lie inside the batch;
//! - key compaction keeps every batch's offsets, writes valid batches, keeps only records it read,
//!   one per key, and a second pass over its output keeps the same records;
//! - the codecs: whatever decompresses re-compresses and decompresses to the same bytes.
//!
//! Input: a mode byte, then the records field. Mode bit 0 repairs every batch's CRC-32C first;
//! bits 1-3 pick the codec the whole rest is also decompressed with.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::codec::{self, compress, decompress};
use sluice_engine::batch::{
    BatchHeader, Compression, TimestampType, apply_topic_timestamp_type, split_batches,
    validate_batch,
};
use sluice_engine::compact::keys::{KeyCompactionLimits, OffsetBatch, compact_keys, read_records};

/// Small enough that a decompression bomb fails fast instead of filling memory.
const DECOMPRESSED_BYTES_MAX: usize = 1 << 20;
const BATCH_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let mut records = rest.to_vec();
    if mode & 1 == 1 {
        sluice_fuzz::repair::repair_batches(&mut records);
    }
    if let Some(compression) = Compression::from_codec((mode >> 1) & 0b111) {
        codec_round_trip(compression, rest);
    }
    let records = Bytes::from(records);
    let Ok(batches) = split_batches(records.clone(), BATCH_BYTES_MAX) else {
        return;
    };
    let mut position = 0usize;
    let mut next_offset = 0u64;
    let mut offset_batches = Vec::with_capacity(batches.len());
    for (header, batch) in &batches {
        assert_eq!(
            batch.as_ptr(),
            records[position..].as_ptr(),
            "not a zero-copy slice"
        );
        assert_eq!(batch.len(), header.total_len());
        assert_eq!(validate_batch(batch).as_ref(), Ok(header));
        position += batch.len();
        stamp(header, batch);
        offset_batches.push(OffsetBatch {
            base_offset: next_offset,
            header: *header,
            bytes: batch.clone(),
        });
        next_offset += header.offset_count();
    }
    assert_eq!(position, records.len(), "batches do not tile the records");
    compact(&offset_batches, mode);
});

fn codec_round_trip(compression: Compression, input: &[u8]) {
    let Ok(plain) = decompress(compression, input, DECOMPRESSED_BYTES_MAX) else {
        return;
    };
    let again = compress(compression, &plain).expect("compress what was decompressed");
    let round = decompress(compression, &again, codec::DECOMPRESSED_BYTES_MAX)
        .expect("decompress what was compressed");
    assert_eq!(round, plain, "{compression:?} round trip");
}

/// Both topic timestamp types: a refusal or a batch that is still valid.
fn stamp(header: &BatchHeader, batch: &Bytes) {
    for (topic_type, now_ms) in [
        (TimestampType::LogAppendTime, 1_764_000_000_000),
        (TimestampType::CreateTime, 0),
    ] {
        let Ok((stamped_header, stamped)) =
            apply_topic_timestamp_type(batch, header, topic_type, now_ms)
        else {
            continue;
        };
        assert_eq!(validate_batch(&stamped).as_ref(), Ok(&stamped_header));
        assert_eq!(stamped_header.timestamp_type(), topic_type);
        let unchanged = |h: &BatchHeader| {
            (
                h.base_offset,
                h.batch_length,
                h.last_offset_delta,
                h.base_timestamp,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.record_count,
                h.attributes & !(1 << 3),
            )
        };
        assert_eq!(unchanged(&stamped_header), unchanged(header));
        assert_eq!(stamped.get(61..), batch.get(61..), "records changed");
        if topic_type == TimestampType::LogAppendTime {
            assert_eq!(stamped_header.max_timestamp, now_ms);
        }
    }
}

fn compact(batches: &[OffsetBatch], mode: u8) {
    let limits = KeyCompactionLimits {
        key_bytes_max: 1 << 20,
        decompressed_bytes_max: DECOMPRESSED_BYTES_MAX,
    };
    let mut read = Vec::new();
    for batch in batches {
        let Ok(records) = read_records(batch, &limits) else {
            // Compaction decodes the same records and must refuse them too.
            assert!(compact_keys(batches, 0, 0, &limits).is_err());
            return;
        };
        assert_eq!(
            records.len() as u64,
            u64::try_from(batch.header.record_count).unwrap_or(0)
        );
        for record in &records {
            assert!(record.offset >= batch.base_offset);
            assert!(record.offset < batch.base_offset + batch.header.offset_count().max(1));
        }
        read.extend(records);
    }
    // Half the inputs remove expired tombstones (a clock past every horizon), half mark them.
    let now_ms = if mode & 0x10 == 0 { 0 } else { i64::MAX };
    let Ok((compacted, _)) = compact_keys(batches, now_ms, 1000, &limits) else {
        return;
    };
    assert_eq!(compacted.len(), batches.len());
    let mut kept = Vec::new();
    for (before, after) in batches.iter().zip(&compacted) {
        assert_eq!(after.base_offset, before.base_offset);
        assert_eq!(after.header.offset_count(), before.header.offset_count());
        assert_eq!(
            validate_batch(&after.bytes).as_ref(),
            Ok(&after.header),
            "compacted batch invalid"
        );
        let records = read_records(after, &limits).expect("compacted batch must read back");
        kept.extend(records);
    }
    let mut latest: std::collections::HashMap<&Bytes, u64> = std::collections::HashMap::new();
    for record in &read {
        if let Some(key) = &record.key {
            let offset = latest.entry(key).or_insert(record.offset);
            *offset = (*offset).max(record.offset);
        }
    }
    for record in &kept {
        assert!(
            read.iter().any(|original| original == record),
            "compaction made up or changed a record: {record:?}; read at that offset: {:?}",
            read.iter()
                .filter(|original| original.offset == record.offset)
                .collect::<Vec<_>>()
        );
        if let Some(key) = &record.key {
            assert_eq!(
                latest.get(key),
                Some(&record.offset),
                "a superseded record was kept"
            );
        }
    }
    if now_ms != 0 {
        // Past every horizon, a second pass also drops the tombstones the first one marked.
        return;
    }
    let (again, _) =
        compact_keys(&compacted, now_ms, 1000, &limits).expect("compact its own output");
    let again: Vec<_> = again
        .iter()
        .flat_map(|batch| read_records(batch, &limits).expect("read back"))
        .collect();
    assert_eq!(again, kept, "a second pass changed what the first kept");
}
