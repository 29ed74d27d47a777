#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

const PRODUCER: i64 = 77;

fn id(partition: i32, sequence: i32) -> Option<RecordId> {
    Some(RecordId {
        producer_id: PRODUCER,
        partition,
        sequence,
    })
}

/// Partition 0 with batches of 3, 2 and 4 records acknowledged at offsets 0, 3, 5, one batch of 2
/// in doubt; the read returns exactly the acknowledged records.
fn clean() -> (Ledger, Vec<PartitionRead>) {
    let mut ledger = Ledger::new(PRODUCER, 1);
    ledger.partitions[0].acked = vec![
        AckedBatch {
            base_offset: 0,
            base_sequence: 0,
            records: 3,
        },
        AckedBatch {
            base_offset: 3,
            base_sequence: 3,
            records: 2,
        },
        AckedBatch {
            base_offset: 5,
            base_sequence: 5,
            records: 4,
        },
    ];
    ledger.partitions[0].in_doubt = Some((9, 2));
    let records = (0..9)
        .map(|offset| Served {
            offset,
            id: id(0, i32::try_from(offset).unwrap()),
        })
        .collect();
    let read = PartitionRead {
        log_start_offset: 0,
        high_watermark: 9,
        records,
    };
    (ledger, vec![read])
}

#[test]
fn values_round_trip_and_damage_is_seen() {
    let record = RecordId {
        producer_id: 5,
        partition: 3,
        sequence: 1_234,
    };
    let value = encode_value(record);
    assert_eq!(value.len(), VALUE_BYTES);
    assert_eq!(decode_value(&value), Some(record));
    let mut torn = value.clone();
    torn.pop();
    assert_eq!(decode_value(&torn), None);
    let mut flipped = value.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(decode_value(&flipped), None);
    // Another record's filler under this header: swapped bytes do not pass.
    let mut swapped = value.clone();
    swapped[VALUE_BYTES - VALUE_FILLER_BYTES..].copy_from_slice(
        &encode_value(RecordId {
            sequence: 1_235,
            ..record
        })[VALUE_BYTES - VALUE_FILLER_BYTES..],
    );
    assert_eq!(decode_value(&swapped), None);
    assert_eq!(decode_value(b"other"), None);
}

#[test]
fn a_clean_read_passes() {
    let (ledger, reads) = clean();
    let result = verify(&ledger, &reads);
    assert!(result.passed(), "{result:?}");
    assert_eq!((result.acknowledged, result.served), (9, 9));
    assert_eq!((result.in_doubt_sent, result.in_doubt_served), (2, 0));
    assert!(result.examples.is_empty());
}

#[test]
fn an_in_doubt_batch_may_be_present_once() {
    let (ledger, mut reads) = clean();
    reads[0].records.push(Served {
        offset: 9,
        id: id(0, 9),
    });
    reads[0].records.push(Served {
        offset: 10,
        id: id(0, 10),
    });
    reads[0].high_watermark = 11;
    let result = verify(&ledger, &reads);
    assert!(result.passed(), "{result:?}");
    assert_eq!(result.in_doubt_served, 2);
}

#[test]
fn a_planted_gap_is_lost_records_and_missing_offsets() {
    let (ledger, mut reads) = clean();
    // Offsets 3 and 4 (sequences 3, 4) gone; the high watermark still says 9.
    reads[0]
        .records
        .retain(|served| !(3..5).contains(&served.offset));
    let result = verify(&ledger, &reads);
    assert!(!result.passed());
    assert_eq!(result.lost, 2);
    assert_eq!(result.offset_gaps, 2);
    assert!(
        result
            .examples
            .iter()
            .any(|text| text.contains("sequence 3 acknowledged at offset 3, never read")),
        "{:?}",
        result.examples
    );

    // The tail gone with the high watermark lowered to match: still lost.
    let (ledger, mut reads) = clean();
    reads[0].records.truncate(7);
    reads[0].high_watermark = 7;
    let result = verify(&ledger, &reads);
    assert_eq!((result.lost, result.offset_gaps), (2, 0));
}

#[test]
fn a_planted_duplicate_is_counted_once_per_extra_read() {
    let (ledger, mut reads) = clean();
    // A retried batch appended again (sequences 5..9 at offsets 9..13).
    for (offset, sequence) in (9..13).zip(5..9) {
        reads[0].records.push(Served {
            offset,
            id: id(0, sequence),
        });
    }
    reads[0].high_watermark = 13;
    let result = verify(&ledger, &reads);
    assert!(!result.passed());
    assert_eq!(result.duplicated, 4);
    assert_eq!(result.out_of_order, 1, "sequence 5 after 8");
    assert_eq!(
        result.lost, 0,
        "the first copies are where they were acknowledged"
    );
}

#[test]
fn moved_phantom_and_corrupt_records_fail() {
    // Two records swapped: both moved.
    let (ledger, mut reads) = clean();
    reads[0].records[1].id = id(0, 2);
    reads[0].records[2].id = id(0, 1);
    let result = verify(&ledger, &reads);
    assert_eq!((result.moved, result.lost), (2, 0));
    assert_eq!(result.out_of_order, 1);

    // A record no one sent (another producer id; a sequence beyond anything sent; one sent to
    // another partition).
    for phantom in [
        Some(RecordId {
            producer_id: PRODUCER + 1,
            partition: 0,
            sequence: 0,
        }),
        id(0, 500),
        id(1, 9),
    ] {
        let (ledger, mut reads) = clean();
        reads[0].records.push(Served {
            offset: 9,
            id: phantom,
        });
        reads[0].high_watermark = 10;
        let result = verify(&ledger, &reads);
        assert_eq!(result.phantom, 1, "{phantom:?}: {result:?}");
        assert!(!result.passed());
    }

    // A sequence inside the sent range whose acknowledgement the ledger lacks.
    let (mut ledger, reads) = clean();
    ledger.partitions[0].acked.remove(1);
    let result = verify(&ledger, &reads);
    assert_eq!(result.phantom, 2, "{result:?}");

    let (ledger, mut reads) = clean();
    reads[0].records[4].id = None;
    let result = verify(&ledger, &reads);
    assert_eq!((result.corrupt, result.lost), (1, 1));
}

#[test]
fn repeated_offsets_truncation_and_missing_partitions_fail() {
    let (ledger, mut reads) = clean();
    let again = reads[0].records[8];
    reads[0].records.push(again);
    let result = verify(&ledger, &reads);
    assert_eq!((result.offset_repeats, result.duplicated), (1, 1));

    let (ledger, mut reads) = clean();
    reads[0].log_start_offset = 3;
    reads[0].records.drain(..3);
    let result = verify(&ledger, &reads);
    assert_eq!((result.truncated_partitions, result.lost), (1, 3));

    let (ledger, _) = clean();
    let result = verify(&ledger, &[]);
    assert_eq!(result.lost, 9);
    assert!(!result.passed() || result.lost > 0);
}

#[test]
fn examples_are_capped() {
    let (ledger, mut reads) = clean();
    reads[0].records.clear();
    reads[0].high_watermark = 0;
    let mut big = ledger.clone();
    big.partitions[0].acked.push(AckedBatch {
        base_offset: 9,
        base_sequence: 9,
        records: 100,
    });
    big.partitions[0].in_doubt = None;
    let result = verify(&big, &reads);
    assert_eq!(result.lost, 109);
    assert_eq!(result.examples.len(), EXAMPLES_MAX);
}
