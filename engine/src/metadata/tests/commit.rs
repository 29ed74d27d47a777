//! Data commits: offset assignment, rejections, and lookups.

use super::*;

#[test]
fn segments_take_contiguous_offsets_in_order() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 2);
    let (p0, p1) = (TopicPartition::new(id(1), 0), TopicPartition::new(id(1), 1));
    let events = harness.commit(vec![
        segment(p0, 3, 10),
        segment(p1, 5, 10),
        segment(p0, 2, 10),
    ]);
    assert_eq!(
        events,
        vec![
            Event::SegmentAppended {
                segment_index: 0,
                tp: p0,
                base_offset: 0,
                end_offset: 3
            },
            Event::SegmentAppended {
                segment_index: 1,
                tp: p1,
                base_offset: 0,
                end_offset: 5
            },
            Event::SegmentAppended {
                segment_index: 2,
                tp: p0,
                base_offset: 3,
                end_offset: 5
            },
        ]
    );
    let seq = harness.state.last_valid_seq().unwrap();
    let events = harness.commit(vec![segment(p0, 1, 10)]);
    assert_eq!(
        events,
        vec![Event::SegmentAppended {
            segment_index: 0,
            tp: p0,
            base_offset: 5,
            end_offset: 6
        }]
    );
    let index = harness.state.partition(p0).unwrap().index();
    assert_eq!(index.len(), 3);
    assert_eq!(
        index.iter().nth(1).unwrap(),
        &IndexEntry {
            base_offset: 3,
            end_offset: 5,
            seq,
            byte_start: 100,
            byte_len: 10,
            max_timestamp: 10
        }
    );
    assert_eq!(harness.state.high_watermark(p0), Ok(6));
    assert_eq!(harness.state.high_watermark(p1), Ok(5));
}

#[test]
fn bad_segments_are_rejected_alone() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    let outside = SegmentCommit {
        byte_start: u64::MAX,
        ..segment(tp, 1, 0)
    };
    let empty_bytes = SegmentCommit {
        byte_len: 0,
        ..segment(tp, 1, 0)
    };
    let events = harness.commit(vec![
        segment(tp, 0, 0),
        segment(TopicPartition::new(id(1), 1), 1, 0),
        segment(TopicPartition::new(id(9), 0), 1, 0),
        outside,
        empty_bytes,
        segment(tp, 4, 0),
    ]);
    let codes: Vec<i16> = events[..5].iter().map(rejected_code).collect();
    assert_eq!(codes, vec![87, 3, 100, 87, 87]);
    assert_eq!(
        events[5],
        Event::SegmentAppended {
            segment_index: 5,
            tp,
            base_offset: 0,
            end_offset: 4
        }
    );
}

#[test]
fn offsets_never_pass_i64_max() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    harness.commit(vec![segment(tp, i64::MAX as u64 - 1, 0)]);
    let events = harness.commit(vec![segment(tp, 2, 0), segment(tp, 1, 0)]);
    assert!(matches!(
        events[0],
        Event::SegmentRejected {
            error: MetadataError::OffsetOverflow { .. },
            ..
        }
    ));
    assert_eq!(
        events[1],
        Event::SegmentAppended {
            segment_index: 1,
            tp,
            base_offset: i64::MAX as u64 - 1,
            end_offset: i64::MAX as u64
        }
    );
}

#[test]
fn find_from_returns_the_entry_holding_the_offset_onward() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    for count in [3, 1, 4, 1, 5] {
        harness.commit(vec![segment(tp, count, 0)]);
    }
    // Entries: 0..3, 3..4, 4..8, 8..9, 9..14.
    let bases = |offset, max| -> Vec<u64> {
        harness
            .state
            .find_from(tp, offset, max)
            .unwrap()
            .iter()
            .map(|entry| entry.base_offset)
            .collect()
    };
    assert_eq!(bases(0, 10), vec![0, 3, 4, 8, 9]);
    assert_eq!(bases(2, 2), vec![0, 3]);
    assert_eq!(bases(3, 1), vec![3]);
    assert_eq!(bases(7, 10), vec![4, 8, 9]);
    assert_eq!(bases(13, 10), vec![9]);
    assert_eq!(bases(14, 10), Vec::<u64>::new());
    assert_eq!(bases(5, 0), Vec::<u64>::new());
    let error = harness.state.find_from(tp, 15, 10).unwrap_err();
    assert_eq!(
        error,
        MetadataError::OffsetOutOfRange {
            tp,
            offset: 15,
            log_start_offset: 0,
            high_watermark: 14
        }
    );
}

#[test]
fn offset_for_timestamp_handles_non_monotonic_timestamps() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    for timestamp in [100, 50, 300, 200, 400] {
        harness.commit(vec![segment(tp, 10, timestamp)]);
    }
    let base = |timestamp| {
        harness
            .state
            .offset_for_timestamp(tp, timestamp)
            .unwrap()
            .map(|entry| entry.base_offset)
    };
    assert_eq!(base(i64::MIN), Some(0));
    assert_eq!(base(100), Some(0));
    assert_eq!(
        base(101),
        Some(20),
        "entry 1 (ts 50) is skipped; entry 2 is the first with max >= 101"
    );
    assert_eq!(base(250), Some(20));
    assert_eq!(base(301), Some(40), "entry 3 (ts 200) is not >= 301");
    assert_eq!(base(401), None);
    // Against a plain scan for every timestamp in range.
    let index: Vec<IndexEntry> = harness
        .state
        .partition(tp)
        .unwrap()
        .index()
        .iter()
        .copied()
        .collect();
    for timestamp in 0..450 {
        let scanned = index
            .iter()
            .find(|entry| entry.max_timestamp >= timestamp)
            .map(|entry| entry.base_offset);
        assert_eq!(base(timestamp), scanned, "ts {timestamp}");
    }
}
