//! Write-through: the bytes of an object this agent wrote reach every core's block cache with the
//! commit, so a fetch at the live edge never reads the object store (DESIGN.md, invariant 8).
//!
//! The log's append consumes the window's batches and does not hand the encoded object back, so
//! the flusher keeps its own `Bytes` handles of the batches (refcounts, no copy) and this module
//! places them: the object groups a window's batches by partition in push order, one segment per
//! partition, and the state's index knows where each segment starts. A segment whose batches do
//! not add up to the indexed length is left out (its fetches then read the store): a wrong byte
//! in a cache would be served to clients, a missing one only costs a GET.

use std::collections::HashMap;

use bytes::Bytes;
use sluice_engine::log::AppendOutcome;
use sluice_engine::metadata::{Event, MetadataState};
use sluice_engine::types::TopicPartition;

use crate::metadata_core::watermarks::CommittedObject;

/// The batch pieces of the object `appended` committed, by byte offset; `None` if it held none.
/// `written` is the window's batches in push order. Runs on the metadata core, right after the
/// commit was applied.
pub fn committed_object(
    state: &MetadataState,
    appended: &AppendOutcome,
    written: Vec<(TopicPartition, Bytes)>,
) -> Option<CommittedObject> {
    let mut by_partition: HashMap<TopicPartition, Vec<Bytes>> = HashMap::new();
    for (tp, batch) in written {
        by_partition.entry(tp).or_default().push(batch);
    }
    let mut pieces = Vec::new();
    for event in &appended.events {
        let Event::SegmentAppended {
            tp, base_offset, ..
        } = event
        else {
            continue;
        };
        let Some(batches) = by_partition.remove(tp) else {
            continue;
        };
        let Some(entry) = state
            .find_from(*tp, *base_offset, 1)
            .ok()
            .and_then(|entries| entries.into_iter().next())
            .filter(|entry| entry.seq == appended.seq && entry.base_offset == *base_offset)
        else {
            continue;
        };
        let total: u64 = batches.iter().map(|batch| batch.len() as u64).sum();
        if total != entry.byte_len {
            tracing::warn!(%tp, seq = ?appended.seq, total, indexed = entry.byte_len, "write-through skipped: batches do not match the index");
            continue;
        }
        let mut position = entry.byte_start;
        for batch in batches {
            let len = batch.len() as u64;
            pieces.push((position, batch));
            position += len;
        }
    }
    (!pieces.is_empty()).then_some(CommittedObject {
        seq: appended.seq,
        pieces,
    })
}
