//! Recovery rebuilds the exact state, falls back past an unreadable checkpoint (but not past one
//! the store failed to serve), and refuses to skip a corrupt log entry.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError, MetadataLog, recover};
use sluice_engine::types::{LogSeq, checkpoint_key, log_key};

fn config() -> LogConfig {
    LogConfig {
        checkpoint_interval_entries: 3,
        ..LogConfig::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn recovery_rebuilds_the_exact_state() {
    let store = memory_store();
    let mut run = Run::new(1);
    let log = run.open(store.clone(), config()).await;
    for round in 0..4 {
        run.append_some(&log, 2).await;
        if round % 2 == 1 {
            log.write_checkpoint().await.unwrap();
        }
    }
    run.append_some(&log, 2).await;
    let live = log.with_state(|state| state.encode_checkpoint());

    let (recovered, stats) = recover(store.as_ref(), &config(), None).await.unwrap();
    assert!(
        stats.checkpoint_seq.is_some(),
        "recovery starts from a checkpoint"
    );
    assert!(stats.entries_replayed >= 2, "and replays the tail after it");
    let checkpoint = store
        .get(&checkpoint_key(stats.checkpoint_seq.unwrap()))
        .await
        .unwrap();
    assert_eq!(
        stats.checkpoint_bytes,
        checkpoint.len() as u64,
        "the stats give the size of the checkpoint read"
    );
    assert_eq!(
        recovered.encode_checkpoint(),
        live,
        "recovered state differs from the writer's"
    );

    // From no checkpoint at all (every entry replayed) the state is the same too.
    let bare = memory_store();
    for key in list_all(store.as_ref(), "log").await {
        bare.put_create(&key, vec![store.get(&key).await.unwrap()])
            .await
            .unwrap();
    }
    let (replayed, stats) = recover(bare.as_ref(), &config(), None).await.unwrap();
    assert_eq!(stats.checkpoint_seq, None);
    assert_eq!(stats.checkpoint_bytes, 0);
    assert_eq!(replayed.encode_checkpoint(), live);
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreadable_checkpoint_is_skipped_for_an_older_one() {
    let store = memory_store();
    let mut run = Run::new(2);
    let log = run.open(store.clone(), config()).await;
    run.append_some(&log, 3).await;
    let older = log.write_checkpoint().await.unwrap().unwrap();
    run.append_some(&log, 3).await;
    let live = log.with_state(|state| state.encode_checkpoint());
    drop(log);

    // A newer checkpoint that is garbage (bit rot, a bug, a half-written tool output).
    let newer = LogSeq(older.0 + 2);
    store
        .put_create(
            &checkpoint_key(newer),
            vec![Bytes::from_static(b"not a checkpoint")],
        )
        .await
        .unwrap();

    let (state, stats) = recover(store.as_ref(), &config(), None).await.unwrap();
    assert_eq!(stats.checkpoint_seq, Some(older));
    assert_eq!(stats.checkpoints_skipped, 1);
    // The size is the checkpoint's that was loaded, not the garbage's.
    let loaded = store.get(&checkpoint_key(older)).await.unwrap();
    assert_eq!(stats.checkpoint_bytes, loaded.len() as u64);
    assert_eq!(state.encode_checkpoint(), live);
    run.recover_and_verify(store, config()).await;
}

/// A checkpoint the store fails to serve once (a 503) is not skipped: recovery fails, to be tried
/// again, and the next attempt starts from that same newest checkpoint. Skipping it made each
/// transient error a fallback to an older checkpoint, past those garbage collection keeps.
#[tokio::test(flavor = "current_thread")]
async fn a_checkpoint_the_store_fails_to_serve_is_retried_not_skipped() {
    use sluice_engine::store::{Fault, FaultInjection, Op};
    let store = memory_store();
    let mut run = Run::new(4);
    let log = run.open(store.clone(), config()).await;
    run.append_some(&log, 3).await;
    let older = log.write_checkpoint().await.unwrap().unwrap();
    run.append_some(&log, 3).await;
    let newer = log.write_checkpoint().await.unwrap().unwrap();
    assert!(newer > older);
    drop(log);

    let faulty = std::sync::Arc::new(FaultInjection::new(store.clone(), 7));
    // The first GET recovery makes is the newest checkpoint's.
    faulty.fail_next(Op::Get, Fault::Error).unwrap();
    let error = recover(faulty.as_ref(), &config(), None)
        .await
        .expect_err("a checkpoint the store did not serve must not be skipped");
    assert!(
        matches!(error, LogError::Store(_)),
        "the store's error, to retry: {error:?}"
    );
    let (_, stats) = recover(faulty.as_ref(), &config(), None).await.unwrap();
    assert_eq!(stats.checkpoint_seq, Some(newer));
    assert_eq!(stats.checkpoints_skipped, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_corrupt_entry_stops_recovery_with_its_key() {
    let store = memory_store();
    let mut run = Run::new(3);
    let log = run.open(store.clone(), LogConfig::default()).await;
    run.append_some(&log, 2).await;
    let (next, _) = MetadataLog::open(store.clone(), LogConfig::default(), 0)
        .await
        .unwrap();
    drop((log, next));

    // Rewrite nothing in place (the store refuses); instead build a store where one entry is corrupt.
    let corrupt = memory_store();
    let keys = list_all(store.as_ref(), "log").await;
    let victim = log_key(LogSeq(2));
    for key in &keys {
        let mut bytes = store.get(key).await.unwrap().to_vec();
        if *key == victim {
            let last = bytes.len() - 20;
            bytes[last] ^= 0xff; // inside the trailer's checksummed fields
        }
        corrupt
            .put_create(key, vec![Bytes::from(bytes)])
            .await
            .unwrap();
    }
    let error = recover(corrupt.as_ref(), &LogConfig::default(), None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(&victim),
        "error does not name {victim}: {error}"
    );
    assert!(
        matches!(error, LogError::Format(_) | LogError::CorruptEntry { .. }),
        "{error:?}"
    );
}

async fn list_all(store: &dyn sluice_engine::store::ObjectStorage, folder: &str) -> Vec<String> {
    store
        .list(folder, None)
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key)
        .collect()
}

/// A checkpoint whose PUT fails leaves every entry it would have covered counted: it stays due by
/// the count that made it so, and the count is still the tail a recovery would replay (the
/// flusher decides by that count at several thresholds, see the server's `CheckpointPolicy`).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_checkpoint_put_leaves_its_entries_counted() {
    use sluice_engine::store::{Fault, FaultInjection, Op};
    let store = Arc::new(FaultInjection::new(memory_store(), 11));
    let mut run = Run::new(11);
    let log = run.open(store.clone(), config()).await;
    run.append_some(&log, 5).await;
    let counted = log.entries_since_checkpoint();
    assert!(counted >= 5, "{counted}");
    assert!(log.checkpoint_due());

    // The next PUT is the checkpoint's.
    store.fail_next(Op::Put, Fault::Error).unwrap();
    assert!(log.write_checkpoint().await.is_err());
    assert_eq!(log.entries_since_checkpoint(), counted);
    assert!(log.checkpoint_due());
    run.append_some(&log, 1).await;
    assert_eq!(log.entries_since_checkpoint(), counted + 1);

    assert!(log.write_checkpoint().await.unwrap().is_some());
    assert_eq!(log.entries_since_checkpoint(), 0);
}
