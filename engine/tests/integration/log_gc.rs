//! Retention and garbage collection on a real S3-API server (s3s-fs on loopback): entries that
//! retention released are deleted after the delay, never one that the state or a recovery still
//! needs; old checkpoints go, the newest two stay; a fresh agent recovers from what is left with
//! every retained acknowledged batch at its offset; a sweep cut short is finished by the next one.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use common::log_harness::*;
use sluice_engine::log::gc::{GarbageCollector, GcCandidates, GcConfig, GcListing, GcReferences};
use sluice_engine::log::{MetadataLog, recover};
use sluice_engine::metadata::{Event, MetadataState, RetentionDefaults};
use sluice_engine::store::{ObjectStorage, S3TestServer};
use sluice_engine::types::{LogSeq, log_key};

const DELAY_MS: u64 = 60_000;

/// Applies retention (by bytes: keep at least `keep_bytes` per partition) through the log.
async fn apply_retention(log: &MetadataLog, keep_bytes: i64) -> usize {
    let defaults = RetentionDefaults {
        retention_ms: -1,
        retention_bytes: keep_bytes,
    };
    let commands = log.with_state(|state| state.retention_commands(0, &defaults));
    let count = commands.len();
    let outcome = append_commands(log, commands).await;
    for event in &outcome.events {
        assert!(matches!(event, Event::RecordsDeleted { .. }), "{event:?}");
    }
    count
}

#[tokio::test(flavor = "current_thread")]
async fn retention_then_gc_deletes_only_what_nothing_needs() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "gc", 7).await;
    append_with_checkpoints(&mut run, &log, 60).await;
    let entries_before = keys(store.as_ref(), "log").await;
    assert!(keys(store.as_ref(), "checkpoint").await.len() >= 5);

    // Nothing released yet: only old checkpoints are candidates, and nothing goes before the delay.
    let mut gc = GarbageCollector::new(GcConfig {
        checkpoints_retained: 2,
        delete_delay_ms: DELAY_MS,
    });
    let first = gc_candidates(store.as_ref(), &log, &gc).await;
    assert!(first.entries.iter().all(|seq| {
        // Unreferenced entries below the floor before retention: the claim and the topic's creation.
        log.with_state(|state| !state.referenced_log_seqs_up_to(*seq).contains(seq))
    }));
    let stats = gc.sweep(store.as_ref(), &first, 0).await;
    assert_eq!(stats.checkpoints_deleted + stats.entries_deleted, 0);
    assert_eq!(keys(store.as_ref(), "log").await, entries_before);

    // Retention keeps ~one batch per partition, then more entries and checkpoints follow.
    assert!(apply_retention(&log, 1).await > 0);
    append_with_checkpoints(&mut run, &log, 20).await;
    let released = gc_candidates(store.as_ref(), &log, &gc).await;
    assert!(
        released.entries.len() > 40,
        "retention released {} entries",
        released.entries.len()
    );
    let floor = GcListing::read(store.as_ref())
        .await
        .unwrap()
        .floor(gc.config())
        .unwrap();
    assert!(released.entries.iter().all(|seq| *seq <= floor));

    // Within the delay nothing is deleted; after it, exactly the candidates.
    gc.sweep(store.as_ref(), &released, DELAY_MS - 1).await;
    assert_eq!(
        keys(store.as_ref(), "log").await.len(),
        entries_before.len() + 21
    );
    let stats = gc.sweep(store.as_ref(), &released, 2 * DELAY_MS).await;
    assert_eq!(stats.entries_deleted, released.entries.len() as u64);
    assert_eq!(stats.delete_errors, 0);
    let checkpoints = keys(store.as_ref(), "checkpoint").await;
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    let left = keys(store.as_ref(), "log").await;
    for seq in &released.entries {
        assert!(!left.contains(&log_key(*seq)));
    }
    // Everything above the floor is still there.
    for key in entries_before
        .iter()
        .filter(|key| key.as_str() > log_key(floor).as_str())
    {
        assert!(
            left.contains(key),
            "{key} is above the floor and was deleted"
        );
    }

    // A fresh agent on the same bucket recovers the same state from what is left and serves every
    // retained acknowledged batch.
    let live = log.with_state(MetadataState::clone);
    drop(log);
    let fresh_store = agent_store(&server, "gc");
    let (recovered, _) = recover(fresh_store.as_ref(), &checkpoint_every_8_entries(), None)
        .await
        .unwrap();
    assert_eq!(recovered, live);
    let retained =
        verify_retained(fresh_store.as_ref(), &recovered, &run.acked, run.topic_id).await;
    assert!(retained > 0);
    // And it writes on from there without reusing an offset (record_ack checks every new one).
    let reopened = run.open(fresh_store, checkpoint_every_8_entries()).await;
    run.append_some(&reopened, 3).await;
    assert_eq!(run.failed, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_restarted_collector_waits_again_and_finishes_an_interrupted_sweep() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "gc-restart", 11).await;
    append_with_checkpoints(&mut run, &log, 40).await;
    apply_retention(&log, 1).await;
    append_with_checkpoints(&mut run, &log, 20).await;

    let mut gc = GarbageCollector::new(GcConfig::default());
    let due = gc_candidates(store.as_ref(), &log, &gc).await;
    assert!(!due.entries.is_empty());
    gc.sweep(store.as_ref(), &due, 0).await;
    // Half of the deletions happen, then the agent dies (simulated by deleting half by hand).
    for seq in due.entries.iter().take(due.entries.len() / 2) {
        store.delete(&log_key(*seq)).await.unwrap();
    }
    drop(gc);
    // The restarted collector sees the rest as candidates, but waits a whole delay again.
    let mut restarted = GarbageCollector::new(GcConfig::default());
    let rest = gc_candidates(store.as_ref(), &log, &restarted).await;
    assert_eq!(rest.entries, due.entries[due.entries.len() / 2..].to_vec());
    let stats = restarted.sweep(store.as_ref(), &rest, 1_000_000).await;
    assert_eq!(stats.entries_deleted, 0);
    let stats = restarted
        .sweep(
            store.as_ref(),
            &rest,
            1_000_000 + GcConfig::default().delete_delay_ms,
        )
        .await;
    assert_eq!(stats.entries_deleted, rest.entries.len() as u64);
    assert!(
        gc_candidates(store.as_ref(), &log, &restarted)
            .await
            .entries
            .is_empty()
    );
    let state = log.with_state(MetadataState::clone);
    verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await;
}

#[test]
fn no_entry_is_a_candidate_until_two_checkpoints_exist() {
    let listing = GcListing {
        checkpoints: vec![LogSeq(10)],
        entries: (0..20).map(LogSeq).collect(),
        compacted: Vec::new(),
    };
    let config = GcConfig::default();
    assert_eq!(listing.floor(&config), None);
    let none = GcCandidates::from_listing(&listing, &config, &GcReferences::default());
    assert!(none.is_empty());
    // With two, the older is the floor; referenced entries and entries above it stay.
    let listing = GcListing {
        checkpoints: vec![LogSeq(10), LogSeq(15)],
        ..listing
    };
    let references = GcReferences {
        log_entries: [LogSeq(3), LogSeq(9)].into_iter().collect(),
        ..GcReferences::default()
    };
    let candidates = GcCandidates::from_listing(&listing, &config, &references);
    assert!(candidates.checkpoints.is_empty());
    let expected: Vec<LogSeq> = (0..=10)
        .filter(|seq| *seq != 3 && *seq != 9)
        .map(LogSeq)
        .collect();
    assert_eq!(candidates.entries, expected);
    // A setting below two is raised to two: recovery must be able to skip one bad checkpoint.
    let one = GcConfig {
        checkpoints_retained: 1,
        ..config
    };
    assert_eq!(listing.floor(&one), Some(LogSeq(10)));
    // Three checkpoints with the default: the oldest is a candidate, the middle one is the floor.
    let listing = GcListing {
        checkpoints: vec![LogSeq(5), LogSeq(10), LogSeq(15)],
        ..listing
    };
    let candidates = GcCandidates::from_listing(&listing, &config, &GcReferences::default());
    assert_eq!(candidates.checkpoints, vec![LogSeq(5)]);
    assert_eq!(candidates.entries.last(), Some(&LogSeq(10)));
}
