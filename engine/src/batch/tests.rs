#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::{Bytes, BytesMut};

use super::*;

fn sample_batch(records: usize, attributes: i16) -> Bytes {
    let mut builder = BatchBuilder::new(1_700_000_000_000)
        .attributes(attributes)
        .producer(42, 3, 7);
    for i in 0..records {
        builder = builder.record(
            i as i64 * 10,
            Some(format!("k{i}").as_bytes()),
            format!("value-{i}").as_bytes(),
        );
    }
    builder.encode()
}

#[test]
fn parse_reads_every_field() {
    let batch = sample_batch(5, 0b10_0011); // lz4 + control
    let header = validate_batch(&batch).unwrap();
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.total_len(), batch.len());
    assert_eq!(header.partition_leader_epoch, -1);
    assert_eq!(header.magic, 2);
    assert_eq!(header.crc, crc32c::crc32c(&batch[CRC_COVERED_FROM..]));
    assert_eq!(header.last_offset_delta, 4);
    assert_eq!(header.offset_count(), 5);
    assert_eq!(header.record_count, 5);
    assert_eq!(header.base_timestamp, 1_700_000_000_000);
    assert_eq!(header.max_timestamp, 1_700_000_000_040);
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (42, 3, 7)
    );
    assert_eq!(header.compression(), Compression::Lz4);
    assert!(header.is_control());
    assert!(!header.is_transactional());
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
}

#[test]
fn attribute_bits_decode() {
    for codec in 0..=4u8 {
        let header = validate_batch(&sample_batch(1, i16::from(codec) | 1 << 4 | 1 << 3)).unwrap();
        assert_eq!(header.compression().codec(), codec);
        assert!(header.is_transactional());
        assert!(!header.is_control());
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    }
    for codec in 5..=7 {
        assert_eq!(
            validate_batch(&sample_batch(1, codec)),
            Err(BatchError::UnknownCompression { codec: codec as u8 })
        );
    }
}

#[test]
fn flipped_byte_anywhere_after_crc_field_fails_the_crc() {
    let batch = sample_batch(3, 0);
    for i in CRC_COVERED_FROM..batch.len() {
        let mut corrupt = batch.to_vec();
        corrupt[i] ^= 0x01;
        match validate_batch(&corrupt) {
            // Bits that a structural check catches first (compression codec, record count) are fine too.
            Err(BatchError::CrcMismatch { expected, got }) => {
                assert_eq!(
                    expected,
                    u32::from_be_bytes(batch[17..21].try_into().unwrap())
                );
                assert_ne!(expected, got);
            }
            Err(BatchError::UnknownCompression { .. } | BatchError::NegativeRecordCount { .. }) => {
            }
            other => panic!("flip at {i}: {other:?}"),
        }
    }
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let batch = sample_batch(3, 0);
    for len in 0..batch.len() {
        let error = validate_batch(&batch[..len]).unwrap_err();
        assert!(
            matches!(error, BatchError::Truncated { len: l, .. } if l == len),
            "len {len}: {error:?}"
        );
        let error = split_batches(batch.slice(..len), usize::MAX).unwrap_err();
        if len == 0 {
            assert_eq!(error, BatchError::Empty);
        } else {
            assert!(
                matches!(error, BatchError::Truncated { .. }),
                "len {len}: {error:?}"
            );
        }
    }
    let mut longer = batch.to_vec();
    longer.push(0);
    assert!(matches!(
        validate_batch(&longer),
        Err(BatchError::InvalidLength { .. })
    ));
}

#[test]
fn split_three_concatenated_batches_zero_copy() {
    let batches = [sample_batch(1, 0), sample_batch(4, 1), sample_batch(2, 4)];
    let mut records = BytesMut::new();
    for batch in &batches {
        records.extend_from_slice(batch);
    }
    let records = records.freeze();
    let split = split_batches(records.clone(), 1 << 20).unwrap();
    assert_eq!(split.len(), 3);
    let mut position = 0;
    for ((header, bytes), original) in split.iter().zip(&batches) {
        assert_eq!(bytes, original);
        assert_eq!(header.total_len(), original.len());
        // Zero copy: the slice points into the request buffer.
        assert_eq!(bytes.as_ptr(), records[position..].as_ptr());
        position += original.len();
    }
    assert_eq!(split[1].0.record_count, 4);
    assert_eq!(split[2].0.compression(), Compression::Zstd);
}

#[test]
fn split_rejects_oversized_old_magic_and_bad_crc() {
    let batch = sample_batch(2, 0);
    assert_eq!(
        split_batches(batch.clone(), batch.len() - 1),
        Err(BatchError::TooLarge {
            len: batch.len(),
            max_bytes: batch.len() - 1
        })
    );
    for magic in [0u8, 1] {
        let mut old = batch.to_vec();
        old[MAGIC_OFFSET] = magic;
        assert_eq!(
            split_batches(Bytes::from(old), usize::MAX),
            Err(BatchError::UnsupportedMagic { magic: magic as i8 })
        );
    }
    // A bad CRC in the second batch fails the whole request.
    let mut two = batch.to_vec();
    let mut second = batch.to_vec();
    *second.last_mut().unwrap() ^= 0xff;
    two.extend_from_slice(&second);
    assert!(matches!(
        split_batches(Bytes::from(two), usize::MAX),
        Err(BatchError::CrcMismatch { .. })
    ));
}

#[test]
fn negative_length_and_counts_are_rejected() {
    let batch = sample_batch(1, 0);
    let mut short_length = batch.to_vec();
    short_length[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(matches!(
        validate_batch(&short_length),
        Err(BatchError::InvalidLength {
            batch_length: 48,
            ..
        })
    ));
    short_length[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        split_batches(Bytes::from(short_length), usize::MAX),
        Err(BatchError::InvalidLength { .. })
    ));

    // Fields inside the CRC: rebuild the CRC so that only the structural check can catch them.
    let with_crc = |mut bytes: Vec<u8>| {
        let crc = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    };
    let mut negative_count = batch.to_vec();
    negative_count[57..61].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(
        validate_batch(&with_crc(negative_count)),
        Err(BatchError::NegativeRecordCount { record_count: -2 })
    );
    let mut negative_delta = batch.to_vec();
    negative_delta[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        validate_batch(&with_crc(negative_delta)),
        Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: -1,
            record_count: 1
        })
    );
}

#[test]
fn empty_batch_occupies_no_offsets() {
    let header = validate_batch(&BatchBuilder::new(5).encode()).unwrap();
    assert_eq!(header.record_count, 0);
    assert_eq!(header.offset_count(), 0);
    assert_eq!(header.total_len(), BATCH_HEADER_LEN);
}
