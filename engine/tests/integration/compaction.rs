//! Object compaction on a real S3-API server (s3s-fs on loopback): small window objects merged
//! into one, swapped in through the log; every acknowledged batch read back byte for byte at its
//! offset before, after the swap and after a fresh agent recovers; a job "killed" before its PUT,
//! after it and after its swap leaves nothing lost and nothing that is never collected; a compacted
//! object of a newer writer is never collected by an older one; a missing or corrupt input fails
//! the job with the key named and changes nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::log_harness::*;
use sluice_engine::compact::{CompactionError, build_compacted_object};
use sluice_engine::log::gc::{GarbageCollector, GcConfig};
use sluice_engine::log::{MetadataLog, recover};
use sluice_engine::metadata::MetadataState;
use sluice_engine::store::{ObjectStorage, S3TestServer};
use sluice_engine::types::{compacted_object_id, log_key, object_key};

const DELAY_MS: u64 = 1_000;

/// Plans and builds one job (PUT included), without the swap.
async fn build(
    log: &MetadataLog,
    store: &dyn ObjectStorage,
    job: u32,
) -> Result<sluice_engine::compact::CompactedObject, CompactionError> {
    let plan = compaction_plan(log);
    let epoch = log.with_state(MetadataState::writer_epoch);
    assert!(!plan.is_empty());
    build_compacted_object(store, &plan, compacted_object_id(epoch, job), epoch, 0).await
}

async fn sweep_everything(
    store: &dyn ObjectStorage,
    log: &MetadataLog,
) -> sluice_engine::log::gc::GcStats {
    let mut gc = GarbageCollector::new(GcConfig {
        checkpoints_retained: 2,
        delete_delay_ms: DELAY_MS,
    });
    let candidates = gc_candidates(store, log, &gc).await;
    gc.sweep(store, &candidates, 0).await;
    gc.sweep(store, &candidates, DELAY_MS).await
}

#[tokio::test(flavor = "current_thread")]
async fn compaction_merges_windows_and_every_batch_is_served_before_and_after() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "compaction", 21).await;
    append_with_checkpoints(&mut run, &log, 40).await;
    let entries_before = log.with_state(MetadataState::index_entry_count);
    assert!(entries_before >= 40, "{entries_before} index entries");
    let acked = verify_retained(
        store.as_ref(),
        &log.with_state(MetadataState::clone),
        &run.acked,
        run.topic_id,
    )
    .await;
    assert_eq!(acked, run.acked.len());

    let object = build(&log, store.as_ref(), 0).await.unwrap();
    assert_eq!(object.key, object_key(object.id));
    assert!(
        object.objects_read >= 40,
        "one GET per source object: {}",
        object.objects_read
    );
    // Until the swap the windows serve; the compacted object already exists.
    assert!(
        keys(store.as_ref(), "compacted")
            .await
            .contains(&object.key)
    );
    let swapped = swap(&log, object.swap.clone()).await;
    assert_eq!(swapped, object.swap.len());
    assert_eq!(swapped as u32, PARTITIONS);
    // One entry per partition now, and every batch still at its offset, byte for byte.
    assert_eq!(
        log.with_state(MetadataState::index_entry_count),
        u64::from(PARTITIONS)
    );
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );

    // New windows after the swap; the windows it replaced are collected once checkpoints cover
    // them, the compacted object is not.
    append_with_checkpoints(&mut run, &log, 24).await;
    let windows_before_gc = keys(store.as_ref(), "log").await;
    let stats = sweep_everything(store.as_ref(), &log).await;
    assert!(stats.entries_deleted >= 40, "{stats:?}");
    assert_eq!(stats.compacted_deleted, 0);
    assert!(
        keys(store.as_ref(), "compacted")
            .await
            .contains(&object.key)
    );
    assert!(keys(store.as_ref(), "log").await.len() < windows_before_gc.len());
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );

    // A fresh agent recovers the same state from what is left, serves everything, writes on.
    drop(log);
    let fresh = agent_store(&server, "compaction");
    let (recovered, _) = recover(fresh.as_ref(), &checkpoint_every_8_entries(), None)
        .await
        .unwrap();
    assert_eq!(recovered, state);
    assert_eq!(
        verify_retained(fresh.as_ref(), &recovered, &run.acked, run.topic_id).await,
        run.acked.len()
    );
    let log = run.open(fresh, checkpoint_every_8_entries()).await;
    run.append_some(&log, 3).await;
    assert_eq!(run.failed, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_killed_at_any_step_loses_nothing_and_leaves_nothing_uncollected() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, mut log) = open_on_s3(&server, "compaction-kill", 22).await;
    append_with_checkpoints(&mut run, &log, 24).await;

    // Killed before the PUT: nothing was written, nothing changed.
    assert!(!compaction_plan(&log).is_empty());
    assert!(keys(store.as_ref(), "compacted").await.is_empty());

    // Killed after the PUT, before the swap: the agent restarts (a new writer epoch), the object
    // is referenced by nothing, and the collector deletes it after the delay.
    let orphan = build(&log, store.as_ref(), 0).await.unwrap();
    drop(log);
    log = run
        .open(Arc::clone(&store), checkpoint_every_8_entries())
        .await;
    append_with_checkpoints(&mut run, &log, 16).await;
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );
    let stats = sweep_everything(store.as_ref(), &log).await;
    assert_eq!(stats.compacted_deleted, 1, "{stats:?}");
    assert!(
        !keys(store.as_ref(), "compacted")
            .await
            .contains(&orphan.key)
    );

    // A compacted object of a *newer* epoch (a successor this writer has not seen) is never a
    // candidate, whatever this state references.
    let epoch = log.with_state(MetadataState::writer_epoch);
    let newer = object_key(compacted_object_id(epoch + 1, 0));
    store
        .put_create(&newer, vec![Bytes::from_static(b"a successor's object")])
        .await
        .unwrap();
    sweep_everything(store.as_ref(), &log).await;
    assert!(keys(store.as_ref(), "compacted").await.contains(&newer));
    store.delete(&newer).await.unwrap();

    // Killed after the swap: a restart finds the swap in the log, serves everything from the
    // compacted object, and collects the replaced windows.
    let object = build(&log, store.as_ref(), 1).await.unwrap();
    assert!(swap(&log, object.swap.clone()).await > 0);
    drop(log);
    log = run
        .open(Arc::clone(&store), checkpoint_every_8_entries())
        .await;
    append_with_checkpoints(&mut run, &log, 16).await;
    let state = log.with_state(MetadataState::clone);
    assert!(state.referenced_compacted_objects().contains(&object.id));
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );

    // Killed half-way through the deletions: the next sweep (of a restarted collector) finishes.
    let mut gc = GarbageCollector::new(GcConfig {
        checkpoints_retained: 2,
        delete_delay_ms: DELAY_MS,
    });
    let due = gc_candidates(store.as_ref(), &log, &gc).await;
    assert!(due.entries.len() >= 10, "{due:?}");
    gc.sweep(store.as_ref(), &due, 0).await;
    for seq in due.entries.iter().take(due.entries.len() / 2) {
        store.delete(&log_key(*seq)).await.unwrap();
    }
    drop(log);
    let fresh = agent_store(&server, "compaction-kill");
    let log = run
        .open(Arc::clone(&fresh), checkpoint_every_8_entries())
        .await;
    let stats = sweep_everything(fresh.as_ref(), &log).await;
    assert!(
        stats.entries_deleted >= (due.entries.len() - due.entries.len() / 2) as u64,
        "{stats:?}"
    );
    assert!(
        gc_candidates(fresh.as_ref(), &log, &gc)
            .await
            .entries
            .is_empty()
    );
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(fresh.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );
    let (recovered, _) = recover(fresh.as_ref(), &checkpoint_every_8_entries(), None)
        .await
        .unwrap();
    assert_eq!(recovered, state);
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_or_corrupt_input_fails_the_job_and_changes_nothing() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "compaction-bad", 23).await;
    append_with_checkpoints(&mut run, &log, 12).await;
    let plan = compaction_plan(&log);
    let epoch = log.with_state(MetadataState::writer_epoch);
    let victim = plan[0].entries[1];
    let key = object_key(victim.seq);
    let original = store.get(&key).await.unwrap();

    // Corrupt: one byte inside the victim's batches flipped (the CRC catches it).
    let mut corrupt = original.to_vec();
    corrupt[(victim.byte_start + victim.byte_len / 2) as usize] ^= 0xff;
    store.delete(&key).await.unwrap();
    store
        .put_create(&key, vec![Bytes::from(corrupt)])
        .await
        .unwrap();
    let error = build_compacted_object(
        store.as_ref(),
        &plan,
        compacted_object_id(epoch, 0),
        epoch,
        0,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, CompactionError::CorruptInput { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&key), "{error}");

    // Missing.
    store.delete(&key).await.unwrap();
    let error = build_compacted_object(
        store.as_ref(),
        &plan,
        compacted_object_id(epoch, 1),
        epoch,
        0,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, CompactionError::Read { .. }), "{error}");
    assert!(error.to_string().contains(&key), "{error}");

    // Nothing was written or swapped; with the input back the job succeeds.
    assert!(keys(store.as_ref(), "compacted").await.is_empty());
    store.put_create(&key, vec![original]).await.unwrap();
    let object = build_compacted_object(
        store.as_ref(),
        &plan,
        compacted_object_id(epoch, 2),
        epoch,
        0,
    )
    .await
    .unwrap();
    assert_eq!(swap(&log, object.swap).await, plan.len());
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );
}

/// The batch bytes a job hands back for a block cache are exactly the object's bytes at their
/// offsets, cover every batch of every range it swaps in, and are slices of the sources it had
/// at hand (no more pieces than input entries, none longer than the cap); a job that read its
/// sources from the store hands back nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_jobs_batch_pieces_are_the_objects_bytes_at_their_offsets() {
    use sluice_engine::compact::BATCH_PIECE_BYTES_MAX;
    use sluice_engine::metadata::Command;

    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "compaction-pieces", 23).await;
    append_with_checkpoints(&mut run, &log, 30).await;
    let inputs: usize = compaction_plan(&log)
        .iter()
        .map(|range| range.entries.len())
        .sum();
    // Read from the store, nothing goes back to a cache.
    let from_store = build(&log, store.as_ref(), 0).await.unwrap();
    assert!(from_store.batch_pieces.is_empty());
    // At hand (as from a cache), all of it does.
    let plan = compaction_plan(&log);
    let mut at_hand = sluice_engine::compact::SourcesAtHand::new();
    for (seq, span) in sluice_engine::compact::source_spans(&plan) {
        let bytes = store
            .get_range(&object_key(seq), span.clone())
            .await
            .unwrap();
        at_hand.insert(seq, (span, vec![bytes]));
    }
    let epoch = log.with_state(MetadataState::writer_epoch);
    let object = sluice_engine::compact::build_compacted_object_with(
        store.as_ref(),
        &plan,
        compacted_object_id(epoch, 1),
        epoch,
        0,
        at_hand,
    )
    .await
    .unwrap();
    assert_eq!(object.objects_read, 0);
    assert!(!object.batch_pieces.is_empty());
    assert!(
        object.batch_pieces.len() <= inputs,
        "{} pieces from {inputs} input entries",
        object.batch_pieces.len()
    );
    let stored = store.get(&object.key).await.unwrap();
    let mut end = 0u64;
    for (at, piece) in &object.batch_pieces {
        assert!(*at >= end, "pieces are in order and do not overlap");
        assert!(piece.len() <= BATCH_PIECE_BYTES_MAX);
        let from = usize::try_from(*at).unwrap();
        assert_eq!(
            &stored[from..from + piece.len()],
            &piece[..],
            "piece at {at}"
        );
        end = at + piece.len() as u64;
    }
    // Every byte of every swapped-in range is in a piece: a cache holding them serves the
    // whole range without a GET.
    for command in &object.swap {
        let Command::ReplaceIndexRange { swap } = command else {
            panic!("a job swaps ranges: {command:?}");
        };
        for piece in &swap.pieces {
            let range = piece.byte_start..piece.byte_start + piece.byte_len;
            let covered: u64 = object
                .batch_pieces
                .iter()
                .filter(|(at, bytes)| *at >= range.start && at + bytes.len() as u64 <= range.end)
                .map(|(_, bytes)| bytes.len() as u64)
                .sum();
            assert_eq!(covered, piece.byte_len, "range {range:?}");
        }
    }
}

/// Sources at hand (a block cache's copies, in pieces) replace the job's GETs, and the object
/// built from them serves every acknowledged batch byte for byte; a span that does not add up
/// is read from the store instead.
#[tokio::test(flavor = "current_thread")]
async fn a_job_takes_its_sources_at_hand_instead_of_reading_them() {
    use sluice_engine::compact::{SourcesAtHand, build_compacted_object_with, source_spans};

    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "compaction-at-hand", 29).await;
    append_with_checkpoints(&mut run, &log, 30).await;
    let plan = compaction_plan(&log);
    let spans = source_spans(&plan);
    assert!(spans.len() >= 30, "{} sources", spans.len());
    let mut at_hand = SourcesAtHand::new();
    for (index, (seq, span)) in spans.iter().enumerate() {
        let bytes = store
            .get_range(&object_key(*seq), span.clone())
            .await
            .unwrap();
        let pieces = if index == 0 {
            // One byte short: not the span, so read from the store.
            vec![bytes.slice(..bytes.len() - 1)]
        } else {
            // Cached objects come in pieces (their batches as uploaded).
            let middle = bytes.len() / 2;
            vec![bytes.slice(..middle), bytes.slice(middle..)]
        };
        at_hand.insert(*seq, (span.clone(), pieces));
    }
    let epoch = log.with_state(MetadataState::writer_epoch);
    let id = compacted_object_id(epoch, 0);
    let object = build_compacted_object_with(store.as_ref(), &plan, id, epoch, 0, at_hand)
        .await
        .unwrap();
    assert_eq!(object.objects_read, 1, "only the short span is read");
    assert_eq!(object.objects_at_hand, spans.len() - 1);
    let swapped = swap(&log, object.swap.clone()).await;
    assert_eq!(swapped, object.swap.len());
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );
}
