//! Broker-owned timestamps: the one place the write path changes a producer's bytes.
//!
//! A topic with `message.timestamp.type=LogAppendTime` wants every batch to carry the time the broker
//! appended it, not the producer's clock. Kafka does this without touching the records
//! (`DefaultRecordBatch.setMaxTimestamp`): it sets the timestamp-type bit of `attributes`, writes the
//! append time into `maxTimestamp`, and recomputes the CRC-32C; consumers then report every record's
//! timestamp as the batch's `maxTimestamp`. `baseTimestamp` and the records' timestamp deltas keep the
//! producer's values, unread.
//!
//! The bytes arrive as a zero-copy slice of the request frame (shared with every other batch of the
//! request), so the patch cannot happen in place: a stamped batch is copied once, 10 bytes are
//! changed, and the CRC is computed over the copy. Batches that need no change stay the slices they
//! were. The cost therefore falls only on LogAppendTime topics: one copy and one CRC pass per batch.
//!
//! [`apply_topic_timestamp_type`] is Kafka's `LogValidator` reduced to what a header can decide (see
//! `docs/format.md`, "Timestamps the broker sets"):
//!
//! | topic \ batch | CreateTime | LogAppendTime (set by the producer) |
//! |---|---|---|
//! | CreateTime    | unchanged  | bit cleared, `maxTimestamp` kept; refused if `maxTimestamp` is -1 |
//! | LogAppendTime | stamped    | refused |
//!
//! Kafka recomputes a CreateTime batch's `maxTimestamp` from its records; Sluice never reads the
//! records (they may be compressed), so it keeps the producer's value, as it always has.

use bytes::{Bytes, BytesMut};

use super::{BATCH_HEADER_LEN, BatchError, BatchHeader, CRC_COVERED_FROM, TimestampType};

/// Where `attributes` (i16) sits in the batch.
const ATTRIBUTES_OFFSET: usize = 21;
/// Where `maxTimestamp` (i64) sits in the batch.
const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Where the CRC-32C (u32) sits; it covers the batch from [`CRC_COVERED_FROM`] to the end.
const CRC_OFFSET: usize = 17;
/// Attributes bit 3: 0 = CreateTime, 1 = LogAppendTime.
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

/// `batch` with its timestamp type set to `timestamp_type` and its `maxTimestamp` to
/// `max_timestamp_ms`, with a fresh CRC-32C; the records and every other field are unchanged.
///
/// `header` must be the header [`super::validate_batch`] returned for `batch`. A batch that already
/// has that type and that `maxTimestamp` is returned as it is, without a copy (as Kafka skips the CRC
/// then); any other is copied once.
pub fn with_max_timestamp(
    batch: &Bytes,
    header: &BatchHeader,
    timestamp_type: TimestampType,
    max_timestamp_ms: i64,
) -> Result<(BatchHeader, Bytes), BatchError> {
    if batch.len() != header.total_len() || batch.len() < BATCH_HEADER_LEN {
        return Err(BatchError::InvalidLength {
            batch_length: header.batch_length,
            len: batch.len(),
        });
    }
    if header.timestamp_type() == timestamp_type && header.max_timestamp == max_timestamp_ms {
        return Ok((*header, batch.clone()));
    }
    let attributes = match timestamp_type {
        TimestampType::CreateTime => header.attributes & !TIMESTAMP_TYPE_BIT,
        TimestampType::LogAppendTime => header.attributes | TIMESTAMP_TYPE_BIT,
    };
    let mut copy = BytesMut::from(batch.as_ref());
    put(&mut copy, ATTRIBUTES_OFFSET, &attributes.to_be_bytes());
    put(
        &mut copy,
        MAX_TIMESTAMP_OFFSET,
        &max_timestamp_ms.to_be_bytes(),
    );
    let crc = crc32c::crc32c(copy.get(CRC_COVERED_FROM..).unwrap_or_default());
    put(&mut copy, CRC_OFFSET, &crc.to_be_bytes());
    let stamped = BatchHeader {
        crc,
        attributes,
        max_timestamp: max_timestamp_ms,
        ..*header
    };
    Ok((stamped, copy.freeze()))
}

/// `batch` as a LogAppendTime topic stores it: timestamp type LogAppendTime, `maxTimestamp` =
/// `timestamp_ms` (the broker's append time), CRC recomputed. See [`with_max_timestamp`].
pub fn with_log_append_time(
    batch: &Bytes,
    header: &BatchHeader,
    timestamp_ms: i64,
) -> Result<(BatchHeader, Bytes), BatchError> {
    with_max_timestamp(batch, header, TimestampType::LogAppendTime, timestamp_ms)
}

/// Applies the rules of a topic whose `message.timestamp.type` is `topic_type` to one produced
/// batch (the table in the module docs); `now_ms` is the append time for a LogAppendTime topic.
pub fn apply_topic_timestamp_type(
    batch: &Bytes,
    header: &BatchHeader,
    topic_type: TimestampType,
    now_ms: i64,
) -> Result<(BatchHeader, Bytes), BatchError> {
    let producer_chose_log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    match topic_type {
        TimestampType::LogAppendTime if producer_chose_log_append_time => {
            Err(BatchError::LogAppendTimeFromProducer)
        }
        TimestampType::LogAppendTime => with_log_append_time(batch, header, now_ms),
        // Kafka reads every record's timestamp as the batch's maxTimestamp here; -1 is "none".
        TimestampType::CreateTime
            if producer_chose_log_append_time && header.max_timestamp == NO_TIMESTAMP =>
        {
            Err(BatchError::LogAppendTimeFromProducer)
        }
        TimestampType::CreateTime if producer_chose_log_append_time => with_max_timestamp(
            batch,
            header,
            TimestampType::CreateTime,
            header.max_timestamp,
        ),
        TimestampType::CreateTime => Ok((*header, batch.clone())),
    }
}

/// Writes `field` at `offset`; the caller checked that the batch holds a whole header.
fn put(bytes: &mut BytesMut, offset: usize, field: &[u8]) {
    if let Some(target) = bytes.get_mut(offset..offset + field.len()) {
        target.copy_from_slice(field);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::super::{BatchBuilder, validate_batch};
    use super::*;

    fn sample(records: usize, attributes: i16, base_timestamp: i64) -> (BatchHeader, Bytes) {
        let mut builder = BatchBuilder::new(base_timestamp)
            .attributes(attributes)
            .producer(7, 1, 40);
        for index in 0..records {
            builder = builder.record(
                index as i64 * 3,
                Some(b"key"),
                format!("v{index}").as_bytes(),
            );
        }
        let bytes = builder.encode();
        (validate_batch(&bytes).unwrap(), bytes)
    }

    /// Everything of `after` that must equal `before` after a stamp: bytes 0..17 (offset, length,
    /// leader epoch, magic), baseTimestamp and lastOffsetDelta, the tail of the header, the records.
    fn assert_only_stamp_fields_differ(before: &[u8], after: &[u8]) {
        assert_eq!(before.len(), after.len());
        assert_eq!(before[..CRC_OFFSET], after[..CRC_OFFSET]);
        assert_eq!(
            before[23..MAX_TIMESTAMP_OFFSET],
            after[23..MAX_TIMESTAMP_OFFSET]
        );
        assert_eq!(before[43..], after[43..]);
    }

    #[test]
    fn log_append_time_sets_the_bit_and_max_timestamp_and_a_valid_crc() {
        let (header, batch) = sample(4, 0b10_0011, 1_000); // lz4 + control bit
        let (stamped, bytes) = with_log_append_time(&batch, &header, 1_765_000_000_123).unwrap();
        let reparsed = validate_batch(&bytes).unwrap();
        assert_eq!(reparsed, stamped);
        assert_eq!(stamped.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(stamped.max_timestamp, 1_765_000_000_123);
        assert_eq!(
            stamped.base_timestamp, 1_000,
            "baseTimestamp is the producer's"
        );
        assert_eq!(
            stamped.attributes, 0b10_1011,
            "the other attribute bits are kept"
        );
        assert_eq!(
            (
                stamped.producer_id,
                stamped.base_sequence,
                stamped.record_count
            ),
            (7, 40, 4)
        );
        assert_only_stamp_fields_differ(&batch, &bytes);
        assert_ne!(
            bytes.as_ptr(),
            batch.as_ptr(),
            "a copy, the request's bytes are shared"
        );
    }

    #[test]
    fn an_unchanged_batch_is_not_copied() {
        let (header, batch) = sample(2, 0, 1_000);
        let (same, bytes) = with_max_timestamp(
            &batch,
            &header,
            TimestampType::CreateTime,
            header.max_timestamp,
        )
        .unwrap();
        assert_eq!(same, header);
        assert_eq!(bytes.as_ptr(), batch.as_ptr());
        // Stamping twice with the same time: the second is free.
        let (stamped, once) = with_log_append_time(&batch, &header, 5).unwrap();
        let (again, twice) = with_log_append_time(&once, &stamped, 5).unwrap();
        assert_eq!(again, stamped);
        assert_eq!(twice.as_ptr(), once.as_ptr());
    }

    #[test]
    fn kafka_rules_per_topic_type_and_batch_type() {
        let (create, create_bytes) = sample(3, 0, 2_000);
        let (log_append, log_append_bytes) = sample(3, 0b1000, 2_000);

        // CreateTime topic, CreateTime batch: the producer's bytes, zero-copy.
        let (header, bytes) =
            apply_topic_timestamp_type(&create_bytes, &create, TimestampType::CreateTime, 9)
                .unwrap();
        assert_eq!(header, create);
        assert_eq!(bytes.as_ptr(), create_bytes.as_ptr());

        // LogAppendTime topic, CreateTime batch: stamped.
        let (header, bytes) =
            apply_topic_timestamp_type(&create_bytes, &create, TimestampType::LogAppendTime, 9)
                .unwrap();
        assert_eq!(
            (header.timestamp_type(), header.max_timestamp),
            (TimestampType::LogAppendTime, 9)
        );
        assert_eq!(validate_batch(&bytes).unwrap(), header);

        // LogAppendTime chosen by the producer: refused on a LogAppendTime topic ...
        assert_eq!(
            apply_topic_timestamp_type(
                &log_append_bytes,
                &log_append,
                TimestampType::LogAppendTime,
                9
            ),
            Err(BatchError::LogAppendTimeFromProducer)
        );
        // ... and on a CreateTime topic it becomes CreateTime with its maxTimestamp kept.
        let (header, bytes) = apply_topic_timestamp_type(
            &log_append_bytes,
            &log_append,
            TimestampType::CreateTime,
            9,
        )
        .unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(header.max_timestamp, log_append.max_timestamp);
        assert_eq!(validate_batch(&bytes).unwrap(), header);
        assert_only_stamp_fields_differ(&log_append_bytes, &bytes);

        // ... unless it has no timestamp at all (Kafka: INVALID_TIMESTAMP).
        let mut builder = BatchBuilder::new(NO_TIMESTAMP).attributes(0b1000);
        builder = builder.record(0, None, b"v");
        let no_timestamp = builder.encode();
        let header = validate_batch(&no_timestamp).unwrap();
        assert_eq!(header.max_timestamp, NO_TIMESTAMP);
        assert_eq!(
            apply_topic_timestamp_type(&no_timestamp, &header, TimestampType::CreateTime, 9),
            Err(BatchError::LogAppendTimeFromProducer)
        );
    }

    #[test]
    fn a_header_that_does_not_match_the_bytes_is_refused_not_patched() {
        let (header, batch) = sample(2, 0, 1_000);
        let short = batch.slice(..batch.len() - 1);
        assert!(matches!(
            with_log_append_time(&short, &header, 5),
            Err(BatchError::InvalidLength { .. })
        ));
        let tiny = Bytes::from_static(&[0; 20]);
        let tiny_header = BatchHeader {
            batch_length: 8,
            ..header
        };
        assert!(matches!(
            with_log_append_time(&tiny, &tiny_header, 5),
            Err(BatchError::InvalidLength { .. })
        ));
    }

    fn any_batch() -> impl Strategy<Value = (BatchHeader, Bytes)> {
        let record = (
            -1_000i64..1_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::collection::vec(any::<u8>(), 0..200),
        );
        (
            proptest::collection::vec(record, 1..20),
            0i16..=4,
            any::<bool>(),
            any::<bool>(),
            -1i64..2_000_000_000_000,
            any::<(i64, i16, i32)>(),
        )
            .prop_map(
                |(records, codec, transactional, log_append, base_timestamp, producer)| {
                    let attributes = codec
                        | if transactional { 1 << 4 } else { 0 }
                        | if log_append { TIMESTAMP_TYPE_BIT } else { 0 };
                    let mut builder = BatchBuilder::new(base_timestamp)
                        .attributes(attributes)
                        .producer(producer.0, producer.1, producer.2);
                    for (delta, key, value) in records {
                        builder = builder.record(delta, key.as_deref(), &value);
                    }
                    let bytes = builder.encode();
                    (validate_batch(&bytes).unwrap(), bytes)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn stamping_any_batch_keeps_it_valid_and_changes_only_the_stamp(
            (header, batch) in any_batch(),
            now_ms in any::<i64>(),
        ) {
            let (stamped, bytes) = with_log_append_time(&batch, &header, now_ms).unwrap();
            prop_assert_eq!(validate_batch(&bytes), Ok(stamped));
            prop_assert_eq!(stamped.timestamp_type(), TimestampType::LogAppendTime);
            prop_assert_eq!(stamped.max_timestamp, now_ms);
            prop_assert_eq!(stamped.attributes & !TIMESTAMP_TYPE_BIT, header.attributes & !TIMESTAMP_TYPE_BIT);
            prop_assert_eq!(
                BatchHeader { crc: 0, attributes: 0, max_timestamp: 0, ..stamped },
                BatchHeader { crc: 0, attributes: 0, max_timestamp: 0, ..header }
            );
            prop_assert_eq!(&bytes[..CRC_OFFSET], &batch[..CRC_OFFSET]);
            prop_assert_eq!(&bytes[23..MAX_TIMESTAMP_OFFSET], &batch[23..MAX_TIMESTAMP_OFFSET]);
            prop_assert_eq!(&bytes[43..], &batch[43..]);

            // And back: CreateTime with the original maxTimestamp restores the producer's bytes.
            let (restored, original) = with_max_timestamp(
                &bytes,
                &stamped,
                header.timestamp_type(),
                header.max_timestamp,
            )
            .unwrap();
            prop_assert_eq!(restored, header);
            prop_assert_eq!(original, batch);
        }
    }
}
