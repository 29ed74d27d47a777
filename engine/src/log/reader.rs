//! Reading one log entry from the store: only its tail (trailer, index, commands), never its batches.

use bytes::Bytes;

use super::{LogConfig, LogError};
use crate::format::{EntryHeader, ObjectIndex, SegmentIndex, TailRead, read_tail};
use crate::metadata::{
    BatchCommit, Command, EntryMeta, ObjectCommit, SegmentCommit, decode_commands,
};
use crate::store::ObjectStorage;
use crate::types::{LogSeq, object_key};

/// Reads of one entry's tail: the first guess, then exactly what the trailer says is needed.
const TAIL_READS_MAX: u32 = 2;

/// One log entry as the state machine needs it.
#[derive(Debug, Clone)]
pub struct EntryRead {
    pub key: String,
    pub object_len: u64,
    pub header: EntryHeader,
    pub commands: Vec<Command>,
    /// The entry's batches as a commit, if it holds any.
    pub commit: Option<ObjectCommit>,
}

impl EntryRead {
    pub fn meta(&self) -> EntryMeta {
        entry_meta(&self.header)
    }
}

/// The state machine's view of an entry's header.
pub(crate) fn entry_meta(header: &EntryHeader) -> EntryMeta {
    EntryMeta {
        seq: header.seq,
        writer_epoch: header.writer_epoch,
        prev_seq: header.prev_seq,
        kind: header.kind,
    }
}

/// The commit an object's index describes: one segment per partition, in the object's order.
pub(crate) fn commit_of(object_len: u64, index: &ObjectIndex) -> Option<ObjectCommit> {
    if index.segments.is_empty() {
        return None;
    }
    let segments = index
        .segments
        .iter()
        .map(|segment| SegmentCommit {
            tp: segment.tp,
            byte_start: segment.byte_start,
            byte_len: segment.byte_len,
            batch_count: segment.batch_count,
            offset_count: segment.offset_count,
            record_count: segment.record_count,
            max_timestamp: segment.max_timestamp,
            batches: segment_batches(index, segment),
        })
        .collect();
    Some(ObjectCommit {
        seq: index.entry.seq,
        object_len,
        segments,
    })
}

/// The segment's batches with their producer fields, which the state machine needs only when some
/// batch is idempotent: otherwise none are listed and the segment is appended whole, without the
/// per-batch allocation. A range the index does not hold (validation rules it out) lists none.
fn segment_batches(index: &ObjectIndex, segment: &SegmentIndex) -> Vec<BatchCommit> {
    let start = segment.batch_start as usize;
    let end = start.saturating_add(segment.batch_count as usize);
    let Some(batches) = index.batches.get(start..end) else {
        return Vec::new();
    };
    if !batches.iter().any(|batch| batch.producer_id >= 0) {
        return Vec::new();
    }
    batches
        .iter()
        .map(|batch| BatchCommit {
            byte_start: batch.byte_start,
            byte_len: u64::from(batch.byte_len),
            offset_count: u64::from(batch.offset_count),
            max_timestamp: batch.max_timestamp,
            producer_id: batch.producer_id,
            producer_epoch: batch.producer_epoch,
            base_sequence: batch.base_sequence,
        })
        .collect()
}

/// Reads the entry at `seq` from its tail. `NotFound` comes back as [`LogError::Store`].
pub async fn read_entry(
    store: &dyn ObjectStorage,
    seq: LogSeq,
    config: &LogConfig,
) -> Result<EntryRead, LogError> {
    let key = object_key(seq);
    let mut want = config.tail_read_bytes.max(crate::format::MIN_OBJECT_LEN);
    for _ in 0..TAIL_READS_MAX {
        let (tail, object_len) = store.get_tail(&key, want).await?;
        match read_tail(&key, object_len, tail)? {
            TailRead::Complete(tail) => {
                return decode_entry(
                    key,
                    seq,
                    tail.object_len(),
                    &tail.to_index()?,
                    tail.commands(),
                );
            }
            TailRead::NeedMore { tail_len_needed } if tail_len_needed > want => {
                want = tail_len_needed
            }
            TailRead::NeedMore { tail_len_needed } => {
                return Err(LogError::CorruptEntry {
                    key,
                    reason: format!(
                        "tail of {want} bytes reported incomplete, needing {tail_len_needed}"
                    ),
                });
            }
        }
    }
    Err(LogError::CorruptEntry {
        key,
        reason: format!("index still incomplete after a {want}-byte tail read"),
    })
}

fn decode_entry(
    key: String,
    seq: LogSeq,
    object_len: u64,
    index: &ObjectIndex,
    commands: Bytes,
) -> Result<EntryRead, LogError> {
    let header = index.entry;
    if header.seq != seq {
        return Err(LogError::CorruptEntry {
            key,
            reason: format!("entry says it is at position {}", header.seq.0),
        });
    }
    let commands = if commands.is_empty() {
        Vec::new()
    } else {
        decode_commands(&commands).map_err(|error| LogError::CorruptEntry {
            key: key.clone(),
            reason: format!("commands: {error}"),
        })?
    };
    let commit = commit_of(object_len, index);
    Ok(EntryRead {
        key,
        object_len,
        header,
        commands,
        commit,
    })
}
