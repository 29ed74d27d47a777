#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use sluice_engine::read::RecordSegments;

use super::*;
use crate::protocol::apis::supported_api;
use crate::protocol::codec::{Response, encode_response};

/// Records as segments: `bytes` cut at `cuts` (zero-copy slices of one buffer).
fn segments(bytes: &[u8], cuts: &[usize]) -> RecordSegments {
    let bytes = Bytes::copy_from_slice(bytes);
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .filter_map(|window| match window {
            [from, to] => Some(bytes.slice(*from..*to)),
            _ => None,
        })
        .fold(RecordSegments::default(), RecordSegments::followed_by)
}

fn partition_strategy(version: i16) -> impl Strategy<Value = PartitionAnswer> {
    (
        any::<i32>(),
        any::<i16>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<(i64, i64)>(), 0..3)),
        any::<i32>(),
        proptest::option::of((
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(any::<usize>(), 0..5),
        )),
    )
        .prop_map(
            move |(index, error, hw, lso, start, aborted, replica, records)| PartitionAnswer {
                partition_index: index,
                error_code: error,
                high_watermark: hw,
                last_stable_offset: lso,
                log_start_offset: start,
                aborted_transactions: aborted,
                preferred_read_replica: if version >= 11 { replica } else { -1 },
                records: records.map(|(bytes, cuts)| segments(&bytes, &cuts)),
            },
        )
}

fn answer_strategy(version: i16) -> impl Strategy<Value = FetchAnswer> {
    let topic = (
        "[a-z._-]{0,20}",
        any::<u128>(),
        proptest::collection::vec(partition_strategy(version), 0..4),
    )
        .prop_map(|(name, id, partitions)| TopicAnswer {
            topic: TopicName(StrBytes::from_string(name)),
            topic_id: uuid::Uuid::from_u128(id),
            partitions,
        });
    (
        any::<i32>(),
        any::<i16>(),
        any::<i32>(),
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(move |(throttle, error, session, topics)| FetchAnswer {
            throttle_time_ms: throttle,
            error_code: error,
            session_id: if version >= 7 { session } else { 0 },
            topics,
        })
}

fn versions() -> std::ops::RangeInclusive<i16> {
    let api = supported_api(ApiKey::Fetch).unwrap();
    api.version_min..=api.version_max
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// For every advertised version, the segments joined are exactly what `kafka-protocol`
    /// encodes for the same response.
    #[test]
    fn segments_equal_the_reference_encoder(
        (version, answer) in (4i16..=17).prop_flat_map(|version| (Just(version), answer_strategy(version))),
        correlation_id in any::<i32>(),
    ) {
        prop_assert!(versions().contains(&version));
        let reference = encode_response(
            correlation_id,
            ApiKey::Fetch,
            version,
            &Response::Fetch(answer.to_response()),
        )
        .unwrap();
        let frame = encode_fetch_frame(correlation_id, version, answer).unwrap();
        prop_assert!(frame.iter().all(|segment| !segment.is_empty()));
        prop_assert_eq!(frame.concat(), reference.to_vec());
    }
}

#[test]
fn the_encoder_covers_every_advertised_version() {
    assert_eq!(versions(), VERSION_MIN..=VERSION_MAX);
}

/// The records reach the frame as the very segments the answer held: same memory, not copies.
#[test]
fn record_segments_are_placed_not_copied() {
    let first = Bytes::from(vec![7u8; 10_000]);
    let second = Bytes::from(vec![9u8; 5_000]);
    let records = RecordSegments::default()
        .followed_by(first.slice(16..))
        .followed_by(second.clone());
    let answer = FetchAnswer {
        topics: vec![TopicAnswer {
            topic: TopicName(StrBytes::from_static_str("t")),
            topic_id: uuid::Uuid::from_u128(5),
            partitions: vec![
                PartitionAnswer {
                    records: Some(records),
                    ..PartitionAnswer::default()
                },
                PartitionAnswer {
                    partition_index: 1,
                    records: Some(RecordSegments::default()),
                    ..PartitionAnswer::default()
                },
            ],
        }],
        ..FetchAnswer::default()
    };
    for version in versions() {
        let frame = encode_fetch_frame(1, version, answer.clone()).unwrap();
        let pointers: Vec<(*const u8, usize)> = frame
            .iter()
            .map(|segment| (segment.as_ptr(), segment.len()))
            .collect();
        assert!(pointers.contains(&(first.slice(16..).as_ptr(), first.len() - 16)));
        assert!(pointers.contains(&(second.as_ptr(), second.len())));
        // Fields, records, fields: three segments.
        assert_eq!(frame.len(), 4, "v{version}");
    }
}

#[test]
fn fields_a_version_cannot_carry_are_refused() {
    let with_session = FetchAnswer {
        session_id: 3,
        ..FetchAnswer::default()
    };
    assert!(encode_fetch_frame(1, 6, with_session.clone()).is_err());
    assert!(encode_fetch_frame(1, 7, with_session).is_ok());
    assert!(encode_fetch_frame(1, 3, FetchAnswer::default()).is_err());
    assert!(encode_fetch_frame(1, 18, FetchAnswer::default()).is_err());
}
