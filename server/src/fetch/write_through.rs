//! Write-through: the bytes of an object this agent wrote reach every core's block cache with the
//! commit, so a fetch at the live edge never reads the object store (DESIGN.md, invariant 8).
//!
//! The log hands back the object exactly as it was uploaded (`AppendOutcome::chunks`: refcounted
//! views of the producer's buffers, no copy), so its layout is never worked out twice: each chunk is
//! cached at its position in the object. That includes batches the state machine did not index (an
//! idempotent retry's duplicate): their ranges are simply never asked for.

use sluice_engine::log::AppendOutcome;

use crate::metadata_core::watermarks::CommittedObject;

/// The pieces of the object `appended` committed, by byte offset; `None` for an object that held
/// no batches (commands or a claim only), which no fetch reads.
pub fn committed_object(appended: &AppendOutcome) -> Option<CommittedObject> {
    if !appended.events.iter().any(|event| {
        matches!(
            event,
            sluice_engine::metadata::Event::SegmentAppended { .. }
                | sluice_engine::metadata::Event::SegmentBatches { .. }
        )
    }) {
        return None;
    }
    let mut position = 0u64;
    let pieces = appended
        .chunks
        .iter()
        .map(|chunk| {
            let piece = (position, chunk.clone());
            position += chunk.len() as u64;
            piece
        })
        .collect();
    Some(CommittedObject {
        seq: appended.seq,
        pieces,
    })
}
