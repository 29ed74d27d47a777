//! Fetch data: the batches holding `fetch_offset` onward, with their real offsets written in.
//!
//! Kafka's rules, as the Java broker applies them: the response starts with the whole batch that
//! contains the fetch offset (clients skip the records before it), holds whole batches only, and
//! stays within `max_bytes` — except that the first batch is always returned whole even when it is
//! larger (KIP-74), so a consumer can never get stuck behind a big batch.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader};
use crate::metadata::IndexEntry;
use crate::types::LogSeq;

/// Byte offsets of the fields the broker owns in a v2 batch header.
const BASE_OFFSET_AT: usize = 0;
const PARTITION_LEADER_EPOCH_AT: usize = 12;

/// Batches ready for a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledRecords {
    /// Whole batches, contiguous, with `baseOffset` and `partitionLeaderEpoch` rewritten.
    pub records: Bytes,
    pub batch_count: usize,
    /// The offset after the last included batch (where the next fetch continues).
    pub next_offset: u64,
    /// Where in its object the batch at `next_offset` starts, when it is in the same entry as the
    /// last included batch: `(object, byte position)`. A reader of a large entry remembers it, so
    /// the next fetch can read from there instead of from the entry's start.
    pub next_position: Option<(LogSeq, u64)>,
}

/// The stored bytes do not match the index: a corrupt object or a bug, reported with its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error(
        "object {key}: bad batch in the range of offsets {base_offset}..{end_offset}: {source}"
    )]
    Batch {
        key: String,
        base_offset: u64,
        end_offset: u64,
        source: BatchError,
    },
    #[error("object {key}: batches cover {found} offsets where the index says {expected}")]
    OffsetMismatch {
        key: String,
        expected: u64,
        found: u64,
    },
    /// A part that stops before its entry's end ends inside the first batch the answer needs: read
    /// the part again up to `needed_end` (a position in the object) and assemble again.
    #[error("object {key}: the first batch needs the bytes up to {needed_end}")]
    Short { key: String, needed_end: u64 },
}

/// Bytes of one index entry from a batch boundary: the whole entry (`from == entry.byte_start`,
/// `from_offset == entry.base_offset`, every byte), or — for a large entry of a compacted object —
/// the bytes from the batch at `from_offset`, which starts at object position `from`, possibly
/// stopping before the entry's end (a *prefix*: a batch cut at its end is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPart {
    pub entry: IndexEntry,
    pub from: u64,
    pub from_offset: u64,
    pub slices: Vec<Bytes>,
    /// The slices may stop before the entry's end (read to a byte budget, not to the end): a cut
    /// batch at their end is left out. Otherwise a cut batch is corruption.
    pub prefix: bool,
}

impl SegmentPart {
    /// The whole entry from its bytes.
    pub fn whole(entry: IndexEntry, slices: Vec<Bytes>) -> SegmentPart {
        SegmentPart {
            entry,
            from: entry.byte_start,
            from_offset: entry.base_offset,
            slices,
            prefix: false,
        }
    }
}

/// Builds the records of one partition's fetch from index entries (in offset order) and each
/// entry's stored bytes (`entry.byte_len` bytes, possibly in several slices, as the cache returns
/// them). Stops at `max_bytes` (but always returns at least one batch if any holds `fetch_offset` or
/// later). `partition_leader_epoch` is written into every batch.
pub fn assemble_records(
    parts: &[(IndexEntry, Vec<Bytes>)],
    fetch_offset: u64,
    max_bytes: usize,
    partition_leader_epoch: i32,
) -> Result<AssembledRecords, AssembleError> {
    let parts: Vec<SegmentPart> = parts
        .iter()
        .map(|(entry, slices)| SegmentPart::whole(*entry, slices.clone()))
        .collect();
    assemble_parts(&parts, fetch_offset, max_bytes, partition_leader_epoch)
}

/// [`assemble_records`] for parts that may start inside an entry (at a batch boundary) and stop
/// before its end. A part that stops before its entry's end is the last one used: its cut batch
/// and everything after it are left for the next fetch. If that cut batch is the first the answer
/// needs, the answer is [`AssembleError::Short`].
pub fn assemble_parts(
    parts: &[SegmentPart],
    fetch_offset: u64,
    max_bytes: usize,
    partition_leader_epoch: i32,
) -> Result<AssembledRecords, AssembleError> {
    let mut out = BytesMut::new();
    let mut batch_count = 0;
    let mut next_offset = fetch_offset;
    let mut next_position = None;
    'entries: for part in parts {
        let entry = &part.entry;
        let key = crate::types::object_key(entry.seq);
        let segment = contiguous(&part.slices);
        let entry_end = entry.byte_start.saturating_add(entry.byte_len);
        let prefix = part.prefix && part.from.saturating_add(segment.len() as u64) < entry_end;
        let mut position = 0usize;
        let mut offset = part.from_offset;
        while position < segment.len() {
            let rest = segment.get(position..).unwrap_or_default();
            let at = part.from + position as u64;
            let header = match BatchHeader::parse(rest) {
                Ok(header) => header,
                Err(BatchError::Truncated { .. }) if prefix => {
                    if batch_count == 0 {
                        return Err(AssembleError::Short {
                            key,
                            needed_end: at + BATCH_HEADER_LEN as u64,
                        });
                    }
                    break 'entries;
                }
                Err(source) => return Err(batch_error(&key, entry, source)),
            };
            let batch_len = header.total_len();
            let Some(batch) = rest.get(..batch_len) else {
                if prefix {
                    if batch_count == 0 {
                        return Err(AssembleError::Short {
                            key,
                            needed_end: at + batch_len as u64,
                        });
                    }
                    break 'entries;
                }
                let source = BatchError::Truncated {
                    len: rest.len(),
                    needed: batch_len,
                };
                return Err(batch_error(&key, entry, source));
            };
            let batch_end_offset = offset + header.offset_count();
            if batch_end_offset > fetch_offset {
                if batch_count > 0 && out.len() + batch_len > max_bytes {
                    break 'entries;
                }
                append_patched(&mut out, batch, offset, partition_leader_epoch);
                batch_count += 1;
                next_offset = batch_end_offset;
                let after = at + batch_len as u64;
                next_position = (after < entry_end).then_some((entry.seq, after));
            }
            offset = batch_end_offset;
            position += batch_len;
        }
        if prefix {
            break;
        }
        if offset != entry.end_offset {
            return Err(AssembleError::OffsetMismatch {
                key,
                expected: entry.end_offset - entry.base_offset,
                found: offset - entry.base_offset,
            });
        }
    }
    Ok(AssembledRecords {
        records: out.freeze(),
        batch_count,
        next_offset,
        next_position,
    })
}

fn batch_error(key: &str, entry: &IndexEntry, source: BatchError) -> AssembleError {
    AssembleError::Batch {
        key: key.to_owned(),
        base_offset: entry.base_offset,
        end_offset: entry.end_offset,
        source,
    }
}

/// One buffer for the segment: the slice itself when there is one, else a copy of them joined.
fn contiguous(slices: &[Bytes]) -> Bytes {
    match slices {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut joined = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for slice in many {
                joined.put_slice(slice);
            }
            joined.freeze()
        }
    }
}

fn append_patched(out: &mut BytesMut, batch: &[u8], base_offset: u64, partition_leader_epoch: i32) {
    let start = out.len();
    out.put_slice(batch);
    debug_assert!(batch.len() >= BATCH_HEADER_LEN);
    let base = i64::try_from(base_offset).unwrap_or(i64::MAX).to_be_bytes();
    if let Some(field) = out.get_mut(start + BASE_OFFSET_AT..start + BASE_OFFSET_AT + 8) {
        field.copy_from_slice(&base);
    }
    let epoch = partition_leader_epoch.to_be_bytes();
    if let Some(field) =
        out.get_mut(start + PARTITION_LEADER_EPOCH_AT..start + PARTITION_LEADER_EPOCH_AT + 4)
    {
        field.copy_from_slice(&epoch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, split_batches, validate_batch};

    fn batch(records: usize, tag: u8) -> Bytes {
        let mut builder = BatchBuilder::new(1_000);
        for i in 0..records {
            builder = builder.record(i as i64, None, &[tag, i as u8]);
        }
        builder.encode()
    }

    fn entry(seq: u64, base: u64, batches: &[Bytes]) -> (IndexEntry, Vec<Bytes>) {
        let offsets: u64 = batches
            .iter()
            .map(|b| validate_batch(b).unwrap().offset_count())
            .sum();
        let len: usize = batches.iter().map(Bytes::len).sum();
        let index = IndexEntry {
            base_offset: base,
            end_offset: base + offsets,
            seq: LogSeq(seq),
            byte_start: 0,
            byte_len: len as u64,
            max_timestamp: 0,
        };
        (index, batches.to_vec())
    }

    #[test]
    fn patches_offsets_and_epochs_and_keeps_crcs_valid() {
        let parts = vec![
            entry(1, 0, &[batch(2, 1), batch(3, 2)]),
            entry(2, 5, &[batch(1, 3)]),
        ];
        let assembled = assemble_records(&parts, 0, usize::MAX, 7).unwrap();
        assert_eq!(assembled.batch_count, 3);
        assert_eq!(assembled.next_offset, 6);
        let batches = split_batches(assembled.records, usize::MAX).unwrap();
        let bases: Vec<i64> = batches
            .iter()
            .map(|(header, _)| header.base_offset)
            .collect();
        assert_eq!(bases, vec![0, 2, 5]);
        assert!(
            batches
                .iter()
                .all(|(header, _)| header.partition_leader_epoch == 7)
        );
    }

    #[test]
    fn starts_at_the_batch_holding_the_fetch_offset() {
        let parts = vec![entry(1, 10, &[batch(2, 1), batch(3, 2), batch(4, 3)])];
        let assembled = assemble_records(&parts, 13, usize::MAX, 0).unwrap();
        let bases: Vec<i64> = split_batches(assembled.records, usize::MAX)
            .unwrap()
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect();
        assert_eq!(bases, vec![12, 15]);
        assert_eq!(assembled.next_offset, 19);
    }

    #[test]
    fn max_bytes_is_soft_for_the_first_batch_only() {
        let big = batch(50, 9);
        let small = batch(1, 1);
        let parts = vec![entry(1, 0, &[big.clone(), small.clone(), small])];
        let first_only = assemble_records(&parts, 0, 10, 0).unwrap();
        assert_eq!(
            first_only.batch_count, 1,
            "the first batch comes whole even over max_bytes"
        );
        assert_eq!(first_only.next_offset, 50);
        let two = assemble_records(&parts, 0, big.len() + 100, 0).unwrap();
        assert_eq!(two.batch_count, 2);
    }

    #[test]
    fn multi_slice_segments_and_corruption() {
        let (index, slices) = entry(4, 0, &[batch(2, 1), batch(2, 2)]);
        // The cache may return a batch cut across two slices.
        let joined = contiguous(&slices);
        let split = vec![joined.slice(..30), joined.slice(30..)];
        let assembled = assemble_records(&[(index, split)], 0, usize::MAX, 0).unwrap();
        assert_eq!(assembled.batch_count, 2);

        let truncated = vec![joined.slice(..joined.len() - 5)];
        let error = assemble_records(&[(index, truncated)], 0, usize::MAX, 0).unwrap_err();
        assert!(
            error.to_string().contains("log/00000000000000000004"),
            "{error}"
        );

        let mut wrong = index;
        wrong.end_offset += 1;
        assert!(matches!(
            assemble_records(&[(wrong, slices)], 0, usize::MAX, 0),
            Err(AssembleError::OffsetMismatch { .. })
        ));
    }

    #[test]
    fn a_part_from_inside_an_entry_stops_before_a_cut_batch_and_says_where_the_next_starts() {
        let batches = [batch(2, 1), batch(3, 2), batch(4, 3)];
        let (mut index, _) = entry(9, 10, &batches);
        index.byte_start = 1_000;
        let joined = contiguous(&batches);
        let (first, second) = (batches[0].len() as u64, batches[1].len() as u64);
        // From the second batch (offset 12, position 1000 + first), cut inside the third.
        let cut = joined.slice(first as usize..joined.len() - 3);
        let part = SegmentPart {
            entry: index,
            from: 1_000 + first,
            from_offset: 12,
            slices: vec![cut],
            prefix: true,
        };
        let assembled = assemble_parts(std::slice::from_ref(&part), 13, usize::MAX, 0).unwrap();
        assert_eq!(assembled.batch_count, 1);
        assert_eq!(assembled.next_offset, 15);
        assert_eq!(
            assembled.next_position,
            Some((LogSeq(9), 1_000 + first + second))
        );

        // A part cut inside the first batch it needs asks for the bytes up to that batch's end.
        let short = SegmentPart {
            slices: vec![joined.slice(first as usize..first as usize + BATCH_HEADER_LEN + 1)],
            ..part.clone()
        };
        match assemble_parts(&[short], 12, usize::MAX, 0) {
            Err(AssembleError::Short { needed_end, .. }) => {
                assert_eq!(needed_end, 1_000 + first + second)
            }
            other => panic!("{other:?}"),
        }
        let header_cut = SegmentPart {
            slices: vec![joined.slice(first as usize..first as usize + 5)],
            ..part.clone()
        };
        assert!(matches!(
            assemble_parts(&[header_cut], 12, usize::MAX, 0),
            Err(AssembleError::Short { needed_end, .. }) if needed_end == 1_000 + first + BATCH_HEADER_LEN as u64
        ));

        // The whole entry: the next position is known until its last batch, then it is the next entry's start.
        let whole = SegmentPart::whole(index, vec![joined.clone()]);
        let two = assemble_parts(
            std::slice::from_ref(&whole),
            10,
            (first + second) as usize,
            0,
        )
        .unwrap();
        assert_eq!(
            (two.batch_count, two.next_position),
            (2, Some((LogSeq(9), 1_000 + first + second)))
        );
        let all = assemble_parts(&[whole], 10, usize::MAX, 0).unwrap();
        assert_eq!((all.next_offset, all.next_position), (19, None));
        // A whole entry that is truncated is still corruption, not a prefix.
        let truncated = SegmentPart::whole(index, vec![joined.slice(..joined.len() - 3)]);
        assert!(matches!(
            assemble_parts(&[truncated], 10, usize::MAX, 0),
            Err(AssembleError::Batch { .. })
        ));
    }
}
