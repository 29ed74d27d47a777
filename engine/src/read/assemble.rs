//! Fetch data: the batches holding `fetch_offset` onward, with their real offsets written in.
//!
//! Kafka's rules, as the Java broker applies them: the response starts with the whole batch that
//! contains the fetch offset (clients skip the records before it), holds whole batches only, and
//! stays within `max_bytes` — except that the first batch is always returned whole even when it is
//! larger (KIP-74), so a consumer can never get stuck behind a big batch.
//!
//! **No copy of the records.** The answer is a list of [`Bytes`] segments ([`RecordSegments`]),
//! not one buffer: a batch whose stored `baseOffset` or `partitionLeaderEpoch` differs from what the
//! answer must say is sent as its first [`PATCHED_HEADER_BYTES`] bytes rewritten (one small buffer
//! holds them for the whole answer) followed by a zero-copy slice of the cached bytes from there on;
//! a batch that already says the right thing is a slice as it is, and neighbouring slices of one
//! cached buffer are joined. The CRC-32C covers the batch from `attributes` (byte 21) on, so neither
//! rewritten field touches it. The connection writes the segments with vectored writes; copying
//! each answer into a new buffer cost a page fault per 4 KiB of fresh memory and a memcpy of every
//! byte (two thirds of the agent's CPU in a replay, see `docs/benchmarks.md`). Batches of at most
//! [`COPIED_BATCH_BYTES_MAX`] are copied whole into the small buffer instead: at the live edge a
//! batch can be a hundred bytes, and a segment (a reference count, an `iovec`) for each would cost
//! more than the copy.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader};
use crate::metadata::IndexEntry;
use crate::types::LogSeq;

/// Byte offsets of the fields the broker owns in a v2 batch header.
const BASE_OFFSET_AT: usize = 0;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// The header bytes an answer rewrites: `baseOffset` (0..8), `batchLength` (8..12, unchanged) and
/// `partitionLeaderEpoch` (12..16). The CRC starts covering at byte 21.
pub const PATCHED_HEADER_BYTES: usize = 16;
/// Batches up to this size are copied whole rather than referenced (see the module doc).
pub const COPIED_BATCH_BYTES_MAX: usize = 4096;

/// A partition's records as an answer sends them: whole batches, as a list of byte segments whose
/// concatenation is the `records` field of the Fetch response. The segments reference the cached
/// buffers they come from (see the module doc); `to_bytes` joins them (a copy, for tests and for
/// callers that need one buffer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSegments {
    segments: Vec<Bytes>,
    len_bytes: usize,
}

impl RecordSegments {
    /// One segment holding `bytes`.
    pub fn from_bytes(bytes: Bytes) -> RecordSegments {
        RecordSegments::default().followed_by(bytes)
    }

    /// These records followed by `segment` (nothing if it is empty).
    pub fn followed_by(mut self, segment: Bytes) -> RecordSegments {
        if !segment.is_empty() {
            self.len_bytes += segment.len();
            self.segments.push(segment);
        }
        self
    }

    /// Bytes in all segments together.
    pub fn len(&self) -> usize {
        self.len_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// The segments, in order; none is empty.
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    pub fn into_segments(self) -> Vec<Bytes> {
        self.segments
    }

    /// The records in one buffer (a copy unless there is at most one segment).
    pub fn to_bytes(&self) -> Bytes {
        match self.segments.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(self.len_bytes);
                for segment in many {
                    joined.put_slice(segment);
                }
                joined.freeze()
            }
        }
    }
}

/// Batches ready for a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledRecords {
    /// Whole batches with `baseOffset` and `partitionLeaderEpoch` rewritten, as segments.
    pub records: RecordSegments,
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
    let mut out = Segments::default();
    let mut batch_count = 0;
    let mut next_offset = fetch_offset;
    let mut next_position = None;
    'entries: for part in parts {
        let entry = &part.entry;
        let key = crate::types::object_key(entry.seq);
        let mut cursor = Cursor::new(&part.slices);
        let entry_end = entry.byte_start.saturating_add(entry.byte_len);
        let prefix = part.prefix && part.from.saturating_add(cursor.remaining as u64) < entry_end;
        let mut offset = part.from_offset;
        let mut header_scratch = [0u8; BATCH_HEADER_LEN];
        while cursor.remaining > 0 {
            let at = part.from + cursor.position as u64;
            let header = match BatchHeader::parse(cursor.peek(&mut header_scratch)) {
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
            if cursor.remaining < batch_len {
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
                    len: cursor.remaining,
                    needed: batch_len,
                };
                return Err(batch_error(&key, entry, source));
            }
            let batch_end_offset = offset + header.offset_count();
            if batch_end_offset > fetch_offset {
                if batch_count > 0 && out.len_bytes + batch_len > max_bytes {
                    break 'entries;
                }
                out.push_batch(
                    &mut cursor,
                    &header,
                    batch_len,
                    offset,
                    partition_leader_epoch,
                );
                batch_count += 1;
                next_offset = batch_end_offset;
                let after = at + batch_len as u64;
                next_position = (after < entry_end).then_some((entry.seq, after));
            } else {
                cursor.skip(batch_len);
            }
            offset = batch_end_offset;
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
        records: out.finish(),
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

/// A read position in a part's slices (a batch may cross from one slice into the next).
struct Cursor<'a> {
    slices: &'a [Bytes],
    /// The slice the position is in, and where in it.
    index: usize,
    within: usize,
    /// Bytes from the start of the part, and bytes left after the position.
    position: usize,
    remaining: usize,
}

impl<'a> Cursor<'a> {
    fn new(slices: &'a [Bytes]) -> Cursor<'a> {
        Cursor {
            slices,
            index: 0,
            within: 0,
            position: 0,
            remaining: slices.iter().map(Bytes::len).sum(),
        }
    }

    /// Up to [`BATCH_HEADER_LEN`] bytes from the position, contiguous: a view of the current slice
    /// when it holds them, else a copy into `scratch` (a header cut between two slices).
    fn peek<'s>(&'s self, scratch: &'s mut [u8; BATCH_HEADER_LEN]) -> &'s [u8] {
        let current = self
            .slices
            .get(self.index)
            .and_then(|slice| slice.get(self.within..))
            .unwrap_or_default();
        if current.len() >= BATCH_HEADER_LEN || current.len() == self.remaining {
            return current;
        }
        let mut filled = 0;
        let mut within = self.within;
        for slice in self.slices.iter().skip(self.index) {
            let available = slice.get(within..).unwrap_or_default();
            let take = available.len().min(BATCH_HEADER_LEN - filled);
            if let (Some(to), Some(from)) = (
                scratch.get_mut(filled..filled + take),
                available.get(..take),
            ) {
                to.copy_from_slice(from);
            }
            filled += take;
            within = 0;
            if filled == BATCH_HEADER_LEN {
                break;
            }
        }
        scratch.get(..filled).unwrap_or_default()
    }

    /// Moves past `len` bytes, handing each piece of them (a zero-copy view, one per slice they
    /// touch) with the slice it belongs to and its range in it to `each`.
    fn take(&mut self, mut len: usize, mut each: impl FnMut(&'a Bytes, Range<usize>)) {
        debug_assert!(len <= self.remaining);
        while len > 0 {
            let Some(slice) = self.slices.get(self.index) else {
                return;
            };
            let available = slice.len() - self.within;
            let take = available.min(len);
            if take > 0 {
                each(slice, self.within..self.within + take);
            }
            len -= take;
            self.position += take;
            self.remaining -= take;
            if take == available {
                self.index += 1;
                self.within = 0;
            } else {
                self.within += take;
            }
        }
    }

    fn skip(&mut self, len: usize) {
        self.take(len, |_, _| {});
    }
}

/// One segment of an answer being built: bytes of the answer's own buffer, or of a stored slice.
enum Piece<'a> {
    Own(Range<usize>),
    Stored(&'a Bytes, Range<usize>),
}

/// The answer being built: the rewritten headers and copied small batches in one buffer, the rest
/// as references to the stored slices.
#[derive(Default)]
struct Segments<'a> {
    own: BytesMut,
    pieces: Vec<Piece<'a>>,
    len_bytes: usize,
}

impl<'a> Segments<'a> {
    /// Adds the batch at the cursor (`batch_len` bytes, header already parsed) as the answer must
    /// send it, and moves the cursor past it.
    fn push_batch(
        &mut self,
        cursor: &mut Cursor<'a>,
        header: &BatchHeader,
        batch_len: usize,
        base_offset: u64,
        partition_leader_epoch: i32,
    ) {
        debug_assert!(batch_len >= BATCH_HEADER_LEN);
        self.len_bytes += batch_len;
        let base_offset = i64::try_from(base_offset).unwrap_or(i64::MAX);
        let patched = header.base_offset != base_offset
            || header.partition_leader_epoch != partition_leader_epoch;
        if batch_len <= COPIED_BATCH_BYTES_MAX {
            let start = self.own.len();
            cursor.take(batch_len, |slice, range| {
                self.own.put_slice(slice.get(range).unwrap_or_default())
            });
            patch(&mut self.own, start, base_offset, partition_leader_epoch);
            self.push_own(start);
            return;
        }
        let mut stored_from = 0;
        if patched {
            let start = self.own.len();
            cursor.take(PATCHED_HEADER_BYTES, |slice, range| {
                self.own.put_slice(slice.get(range).unwrap_or_default())
            });
            patch(&mut self.own, start, base_offset, partition_leader_epoch);
            self.push_own(start);
            stored_from = PATCHED_HEADER_BYTES;
        }
        let pieces = &mut self.pieces;
        cursor.take(batch_len - stored_from, |slice, range| {
            if let Some(Piece::Stored(last, last_range)) = pieces.last_mut()
                && std::ptr::eq(*last, slice)
                && last_range.end == range.start
            {
                last_range.end = range.end;
                return;
            }
            pieces.push(Piece::Stored(slice, range));
        });
    }

    /// Records the own buffer's bytes from `start` to its end as the next segment.
    fn push_own(&mut self, start: usize) {
        let end = self.own.len();
        if let Some(Piece::Own(last)) = self.pieces.last_mut()
            && last.end == start
        {
            last.end = end;
            return;
        }
        self.pieces.push(Piece::Own(start..end));
    }

    fn finish(self) -> RecordSegments {
        let own = self.own.freeze();
        let segments = self
            .pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Own(range) => own.slice(range),
                Piece::Stored(slice, range) => slice.slice(range),
            })
            .collect();
        RecordSegments {
            segments,
            len_bytes: self.len_bytes,
        }
    }
}

/// Writes `baseOffset` and `partitionLeaderEpoch` into the batch header copied to `buffer` at
/// `start` (at least [`PATCHED_HEADER_BYTES`] bytes).
fn patch(buffer: &mut BytesMut, start: usize, base_offset: i64, partition_leader_epoch: i32) {
    let base = base_offset.to_be_bytes();
    if let Some(field) = buffer.get_mut(start + BASE_OFFSET_AT..start + BASE_OFFSET_AT + 8) {
        field.copy_from_slice(&base);
    }
    let epoch = partition_leader_epoch.to_be_bytes();
    if let Some(field) =
        buffer.get_mut(start + PARTITION_LEADER_EPOCH_AT..start + PARTITION_LEADER_EPOCH_AT + 4)
    {
        field.copy_from_slice(&epoch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, split_batches, validate_batch};

    /// The slices joined into one buffer (a copy).
    fn contiguous(slices: &[Bytes]) -> Bytes {
        slices.concat().into()
    }

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
        let batches = split_batches(assembled.records.to_bytes(), usize::MAX).unwrap();
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
        let bases: Vec<i64> = split_batches(assembled.records.to_bytes(), usize::MAX)
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

    /// A batch of `records` records of `payload_bytes` each, stored with `base_offset` and epoch 0.
    fn stored_batch(records: usize, payload_bytes: usize, base_offset: i64) -> Bytes {
        let mut builder = BatchBuilder::new(1_000);
        builder.base_offset = base_offset;
        builder.partition_leader_epoch = 0;
        for i in 0..records {
            builder = builder.record(i as i64, None, &vec![i as u8; payload_bytes]);
        }
        builder.encode()
    }

    /// Records, batch count, next offset and next position of an answer.
    type Answer = (Vec<u8>, usize, u64, Option<(LogSeq, u64)>);

    /// What assembly did before it stopped copying: every batch copied into one buffer and
    /// patched there. The reference the segments are checked against.
    fn copied_reference(
        parts: &[SegmentPart],
        fetch_offset: u64,
        max_bytes: usize,
        epoch: i32,
    ) -> Option<Answer> {
        let mut out = Vec::new();
        let (mut count, mut next_offset, mut next_position) = (0, fetch_offset, None);
        'entries: for part in parts {
            let segment = contiguous(&part.slices);
            let entry_end = part.entry.byte_start + part.entry.byte_len;
            let prefix = part.prefix && part.from + (segment.len() as u64) < entry_end;
            let (mut position, mut offset) = (0, part.from_offset);
            while position < segment.len() {
                let rest = &segment[position..];
                let Ok(header) = BatchHeader::parse(rest) else {
                    if prefix && count > 0 {
                        break 'entries;
                    }
                    return None;
                };
                let len = header.total_len();
                if rest.len() < len {
                    if prefix && count > 0 {
                        break 'entries;
                    }
                    return None;
                }
                let end_offset = offset + header.offset_count();
                if end_offset > fetch_offset {
                    if count > 0 && out.len() + len > max_bytes {
                        break 'entries;
                    }
                    let start = out.len();
                    out.extend_from_slice(&rest[..len]);
                    out[start..start + 8].copy_from_slice(&(offset as i64).to_be_bytes());
                    out[start + 12..start + 16].copy_from_slice(&epoch.to_be_bytes());
                    count += 1;
                    next_offset = end_offset;
                    let after = part.from + (position + len) as u64;
                    next_position = (after < entry_end).then_some((part.entry.seq, after));
                }
                offset = end_offset;
                position += len;
            }
            if prefix {
                break;
            }
        }
        Some((out, count, next_offset, next_position))
    }

    /// Cuts `bytes` at the given fractions (any byte, batch headers included).
    fn cut(bytes: &Bytes, cuts: &[u16]) -> Vec<Bytes> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|cut| usize::from(*cut) * bytes.len() / usize::from(u16::MAX))
            .collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| bytes.slice(w[0]..w[1])).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Segments joined are byte for byte what copying and patching gave, for batches small
        /// (copied) and large (referenced), stored with right or wrong offsets, cut anywhere into
        /// slices, from any fetch offset, within any budget, whole entries and prefixes.
        #[test]
        fn segments_equal_the_copied_answer(
            batches in proptest::collection::vec((1usize..4, 0usize..3000, proptest::bool::ANY), 1..12),
            cuts in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..6),
            fetch_delta in 0u64..12,
            max_bytes in 0usize..40_000,
            epoch in 0i32..3,
            prefix_cut in proptest::option::of(proptest::prelude::any::<u16>()),
        ) {
            let base = 100u64;
            let mut offset = base;
            let mut stored = Vec::new();
            for (records, payload, already_right) in &batches {
                let stored_base = if *already_right { offset as i64 } else { 0 };
                stored.push(stored_batch(*records, *payload, stored_base));
                offset += *records as u64;
            }
            let joined = contiguous(&stored);
            let entry = IndexEntry {
                base_offset: base,
                end_offset: offset,
                seq: LogSeq(7),
                byte_start: 500,
                byte_len: joined.len() as u64,
                max_timestamp: 0,
            };
            let part = match prefix_cut {
                None => SegmentPart::whole(entry, cut(&joined, &cuts)),
                Some(at) => {
                    let len = usize::from(at) * joined.len() / usize::from(u16::MAX);
                    SegmentPart { prefix: true, ..SegmentPart::whole(entry, cut(&joined.slice(..len), &cuts)) }
                }
            };
            let fetch_offset = base + fetch_delta;
            let reference = copied_reference(std::slice::from_ref(&part), fetch_offset, max_bytes, epoch);
            let assembled = assemble_parts(std::slice::from_ref(&part), fetch_offset, max_bytes, epoch);
            match (reference, assembled) {
                (Some((bytes, count, next, position)), Ok(assembled)) => {
                    proptest::prop_assert_eq!(&assembled.records.to_bytes()[..], &bytes[..]);
                    proptest::prop_assert_eq!(assembled.records.len(), bytes.len());
                    proptest::prop_assert!(assembled.records.segments().iter().all(|s| !s.is_empty()));
                    proptest::prop_assert_eq!(
                        (assembled.batch_count, assembled.next_offset, assembled.next_position),
                        (count, next, position)
                    );
                }
                (None, Err(_)) => {}
                (reference, assembled) => {
                    proptest::prop_assert!(false, "reference {:?}, assembled {:?}", reference.map(|r| r.1), assembled);
                }
            }
        }
    }

    /// Large batches are never copied: every byte of the answer but the rewritten headers is a
    /// view of the cached slices' memory, the headers are 16 bytes each, and a batch that already
    /// carries its offset is one view with nothing rewritten.
    #[test]
    fn large_batches_are_sent_from_the_cached_memory() {
        let batches = [
            stored_batch(3, 2_000, 0),
            stored_batch(2, 3_000, 0),
            stored_batch(4, 1_500, 5),
            stored_batch(1, 5_000, 0),
        ];
        let joined = contiguous(&batches);
        // As a cache returns it: two chunks, cut inside the second batch's header.
        let at = batches[0].len() + 10;
        let chunks = vec![joined.slice(..at), joined.slice(at..)];
        let (mut index, _) = entry(3, 0, &batches);
        index.byte_start = 0;
        let assembled = assemble_records(&[(index, chunks.clone())], 0, usize::MAX, 0).unwrap();
        assert_eq!(assembled.batch_count, 4);
        let inside = |segment: &Bytes| {
            chunks.iter().any(|chunk| {
                let range = chunk.as_ptr_range();
                range.contains(&segment.as_ptr())
                    && segment.as_ptr() as usize + segment.len() <= range.end as usize
            })
        };
        let (stored, own): (Vec<&Bytes>, Vec<&Bytes>) =
            assembled.records.segments().iter().partition(|s| inside(s));
        // Batches 1 and 3 are rewritten (stored at offset 0); batch 0 was stored at its offset 0
        // and batch 2 at its offset 5, with epoch 0: sent as they are.
        assert_eq!(
            own.iter().map(|s| s.len()).collect::<Vec<_>>(),
            vec![16, 16]
        );
        let referenced: usize = stored.iter().map(|s| s.len()).sum();
        assert_eq!(referenced, joined.len() - 2 * PATCHED_HEADER_BYTES);
        // Batch 0 whole; the rest of batch 1 joined with batch 2 (adjacent in the second chunk);
        // the rest of batch 3.
        assert_eq!(stored.len(), 3);
        let bases: Vec<i64> = split_batches(assembled.records.to_bytes(), usize::MAX)
            .unwrap()
            .iter()
            .map(|(header, _)| header.base_offset)
            .collect();
        assert_eq!(bases, vec![0, 3, 5, 9]);
        for batch in split_batches(assembled.records.to_bytes(), usize::MAX).unwrap() {
            validate_batch(&batch.1).unwrap();
        }
    }
}
