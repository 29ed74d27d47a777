//! The chunked index against a flat `Vec`, across many chunk boundaries.

use proptest::prelude::*;

use super::*;

fn tp() -> TopicPartition {
    TopicPartition::new(id(1), 0)
}

/// Builds a partition from `(offset_count, max_timestamp)` pairs and the flat model of its index.
fn build(appends: &[(u64, i64)]) -> (PartitionState, Vec<IndexEntry>) {
    let mut partition = PartitionState::default();
    let mut flat = Vec::new();
    for (at, &(offset_count, max_timestamp)) in appends.iter().enumerate() {
        let (base_offset, end_offset) = partition
            .append(
                tp(),
                LogSeq(at as u64),
                at as u64,
                1,
                offset_count,
                max_timestamp,
            )
            .unwrap();
        flat.push(IndexEntry {
            base_offset,
            end_offset,
            seq: LogSeq(at as u64),
            byte_start: at as u64,
            byte_len: 1,
            max_timestamp,
        });
    }
    (partition, flat)
}

fn check(
    partition: &PartitionState,
    flat: &[IndexEntry],
    probes: &[u64],
    timestamps: &[i64],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(partition.index().len(), flat.len());
    prop_assert!(partition.index().iter().eq(flat.iter()));
    let hw = partition.high_watermark();
    for probe in probes {
        let offset = partition.log_start_offset() + probe % (hw - partition.log_start_offset() + 1);
        let at = flat.partition_point(|entry| entry.end_offset <= offset);
        for entries_max in [1, 3, CHUNK_ENTRIES + 7] {
            let expected: Vec<IndexEntry> =
                flat.iter().skip(at).take(entries_max).copied().collect();
            prop_assert_eq!(
                partition.find_from(tp(), offset, entries_max).unwrap(),
                expected
            );
        }
    }
    for &timestamp in timestamps {
        let scanned = flat.iter().find(|entry| entry.max_timestamp >= timestamp);
        prop_assert_eq!(
            partition.offset_for_timestamp(timestamp),
            scanned,
            "ts {}",
            timestamp
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn chunked_index_matches_a_flat_vec(
        counts_and_noise in prop::collection::vec((1u64..4, -1_000i64..1_000), 0..(4 * CHUNK_ENTRIES + 50)),
        chunk_biases in prop::collection::vec(-1_000_000i64..1_000_000, 5),
        deletes in prop::collection::vec(0.0f64..0.5, 0..4),
        probes in prop::collection::vec(any::<u64>(), 16),
    ) {
        // Timestamps cluster per chunk around a random bias, so chunk maxima differ and are not
        // monotonic: both levels of the timestamp search matter.
        let appends: Vec<(u64, i64)> = counts_and_noise
            .iter()
            .enumerate()
            .map(|(at, &(count, noise))| (count, chunk_biases[at / CHUNK_ENTRIES] + noise))
            .collect();
        let timestamps: Vec<i64> = chunk_biases
            .iter()
            .flat_map(|bias| [bias - 1_001, bias - 500, *bias, bias + 500, bias + 999, bias + 1_000])
            .chain([i64::MIN, i64::MAX])
            .collect();
        let (mut partition, mut flat) = build(&appends);
        check(&partition, &flat, &probes, &timestamps)?;
        for fraction in deletes {
            // A checkpoint snapshot shares the chunks copy-on-write: whatever the live index does
            // next (drain the first chunk, append to the last), the snapshot must not change.
            let snapshot = partition.clone();
            let snapshot_flat = flat.clone();
            let hw = partition.high_watermark();
            let start = partition.log_start_offset();
            let before_offset = start + ((hw - start) as f64 * fraction) as u64;
            prop_assert_eq!(partition.delete_records(tp(), before_offset).unwrap(), before_offset.max(start));
            flat.retain(|entry| entry.end_offset > before_offset);
            check(&partition, &flat, &probes, &timestamps)?;
            // Appends after a partial drain of the first chunk still line up.
            let (base, _) = partition.append(tp(), LogSeq(u64::MAX), 0, 1, 2, 5).unwrap();
            flat.push(IndexEntry { base_offset: base, end_offset: base + 2, seq: LogSeq(u64::MAX), byte_start: 0, byte_len: 1, max_timestamp: 5 });
            check(&partition, &flat, &probes, &timestamps)?;
            check(&snapshot, &snapshot_flat, &probes, &timestamps)?;
        }
    }
}

/// A checkpoint re-chunks from the first entry; the decoded state must still be equal and behave
/// the same, including after a delete that left the first chunk partly drained.
#[test]
fn checkpoint_of_a_multi_chunk_partly_deleted_index() {
    let mut harness = Harness::new();
    harness.create("t", id(1), 1);
    let tp = TopicPartition::new(id(1), 0);
    for round in 0..(2 * CHUNK_ENTRIES + 10) {
        harness.commit(vec![segment(tp, 2, (round % 97) as i64)]);
    }
    harness.command(Command::DeleteRecords {
        tp,
        before_offset: 2 * (CHUNK_ENTRIES as u64 + 100) + 1,
    });
    let decoded = MetadataState::decode_checkpoint(&harness.state.encode_checkpoint()).unwrap();
    assert_eq!(decoded, harness.state);
    // Appending after decode (different chunk layout underneath) keeps both equal.
    let mut resumed = Harness {
        state: decoded,
        next_seq: harness.next_seq,
    };
    for round in 0..(CHUNK_ENTRIES + 3) {
        let events = harness.commit(vec![segment(tp, 1, round as i64)]);
        assert_eq!(resumed.commit(vec![segment(tp, 1, round as i64)]), events);
    }
    let (state, decoded) = (harness.state, resumed.state);
    assert_eq!(decoded, state);
    let log_start = 2 * (CHUNK_ENTRIES as u64 + 100) + 1;
    for offset in [
        log_start,
        log_start + 1,
        3 * CHUNK_ENTRIES as u64 + 5,
        4 * CHUNK_ENTRIES as u64 + 19,
    ] {
        assert_eq!(
            decoded.find_from(tp, offset, 5).unwrap(),
            state.find_from(tp, offset, 5).unwrap()
        );
    }
    for timestamp in [0, 50, 96, 97] {
        assert_eq!(
            decoded.offset_for_timestamp(tp, timestamp).unwrap(),
            state.offset_for_timestamp(tp, timestamp).unwrap()
        );
    }
}
