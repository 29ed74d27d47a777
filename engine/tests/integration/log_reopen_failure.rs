//! A re-open whose recovery fails (a transient LIST or GET error) leaves the writer's state as it
//! was: every acknowledged entry's effect stays visible, and the next re-open continues from it.
//! Before the fix the state was moved into the failed recovery and lost, so the writer answered
//! from an empty state (no topics, no offsets) until a later re-open replayed the whole log —
//! found by the deterministic simulation (`sim/`, seed 19 of the first seed set).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError};
use sluice_engine::store::{Fault, FaultInjection, ObjectStorage, Op};

fn config() -> LogConfig {
    LogConfig {
        put_attempts_max: 2,
        ..LogConfig::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn failed_recovery_during_reopen_keeps_the_state() {
    let base = memory_store();
    let faults = Arc::new(FaultInjection::new(base.clone(), 7));
    let store: Arc<dyn ObjectStorage> = faults.clone();
    let mut run = Run::new(700);
    let log = run.open(store, config()).await;
    run.append_some(&log, 3).await;
    assert_eq!(run.failed, 0);
    let topic_id = run.topic_id;
    let high_watermarks = move |log: &sluice_engine::log::MetadataLog| {
        log.with_state(|state| {
            (0..PARTITIONS as i32)
                .map(|partition| {
                    state
                        .high_watermark(sluice_engine::types::TopicPartition::new(
                            topic_id, partition,
                        ))
                        .unwrap()
                })
                .collect::<Vec<u64>>()
        })
    };
    let before = high_watermarks(&log);
    let epoch_before = log.epoch();

    // Every attempt of the next entry fails and it is not there: the writer stops (Broken).
    for _ in 0..config().put_attempts_max {
        faults.fail_next(Op::Put, Fault::Error).unwrap();
    }
    let error = log.append(run.entry(2)).await.unwrap_err();
    assert!(matches!(error, LogError::Broken { .. }), "{error:?}");

    // The re-open's recovery fails at its listing: the state must be what it was.
    faults.fail_next(Op::List, Fault::Error).unwrap();
    let error = log.reopen(0).await.unwrap_err();
    assert!(matches!(error, LogError::Store(_)), "{error:?}");
    assert_eq!(
        high_watermarks(&log),
        before,
        "a failed re-open lost the state"
    );
    assert!(
        log.with_state(|state| state.topic(run.topic_id).is_some()),
        "a failed re-open lost the topic"
    );
    // Still stopped: no append with the old epoch before a claim landed.
    assert!(log.append(run.entry(1)).await.is_err());

    // The next re-open continues from the kept state, claims, and the writer goes on.
    log.reopen(0).await.unwrap();
    assert!(log.epoch() > epoch_before);
    assert_eq!(high_watermarks(&log), before);
    run.append_some(&log, 2).await;
    assert_eq!(run.failed, 0);
    drop(log);
    run.recover_and_verify(base, config()).await;
}
