//! Two compactors of one partition at once, as two agents of a cluster are for a moment after a
//! view change (each believes it owns the partition): each plans, writes its object (named by its
//! token, `types::cluster_compacted_object_id`) and sends its swap. Whichever way they race, the
//! index stays right and the loser's object is an orphan (for the collector):
//!
//! - plans of different runs (the later planner saw more windows): the earlier plan's swap, sent
//!   last, finds no run with its exact offsets and is rejected;
//! - plans of the same run: the swap sent last replaces the first one's entry with one of the
//!   same offsets and the same bytes; the first object is left unreferenced.
//!
//! Every acknowledged batch reads back at its offset after each. And a key a token's earlier
//! incarnation left is refused by the create-only PUT: the job fails before any swap names it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::log_harness::*;
use sluice_engine::compact::{CompactionError, CompactionRange, build_compacted_object};
use sluice_engine::log::MetadataLog;
use sluice_engine::metadata::MetadataState;
use sluice_engine::store::S3TestServer;
use sluice_engine::types::cluster_compacted_object_id;

fn plan(log: &MetadataLog) -> Vec<CompactionRange> {
    let plan = compaction_plan(log);
    assert!(!plan.is_empty());
    plan
}

/// Every acknowledged batch at its offset; the compacted objects the index names.
async fn verify(
    store: &Arc<dyn sluice_engine::store::ObjectStorage>,
    run: &Run,
    log: &MetadataLog,
) -> BTreeSet<sluice_engine::types::LogSeq> {
    let state = log.with_state(MetadataState::clone);
    assert_eq!(
        verify_retained(store.as_ref(), &state, &run.acked, run.topic_id).await,
        run.acked.len()
    );
    state.referenced_compacted_objects()
}

#[tokio::test(flavor = "current_thread")]
async fn two_compactors_of_one_partition_cost_an_orphan_never_a_wrong_index() {
    let server = S3TestServer::start().unwrap();
    let (store, mut run, log) = open_on_s3(&server, "two-compactors", 33).await;
    // Different runs: agent 7 plans 24 windows; agent 9, later, 32. 9's swap lands first.
    append_with_checkpoints(&mut run, &log, 24).await;
    let earlier = plan(&log);
    append_with_checkpoints(&mut run, &log, 8).await;
    let later = plan(&log);
    let (seven, nine) = (
        cluster_compacted_object_id(7, 0),
        cluster_compacted_object_id(9, 0),
    );
    let seven_job = build_compacted_object(store.as_ref(), &earlier, seven, 1, 0)
        .await
        .unwrap();
    let nine_job = build_compacted_object(store.as_ref(), &later, nine, 1, 0)
        .await
        .unwrap();
    assert_eq!(swap(&log, nine_job.swap.clone()).await, nine_job.swap.len());
    assert_eq!(
        swap(&log, seven_job.swap.clone()).await,
        0,
        "the index moved: rejected"
    );
    assert_eq!(verify(&store, &run, &log).await, BTreeSet::from([nine]));

    // The same run: both swaps apply in turn; the last one's object is the one named.
    append_with_checkpoints(&mut run, &log, 16).await;
    let same = plan(&log);
    let (first, second) = (
        cluster_compacted_object_id(7, 1),
        cluster_compacted_object_id(9, 1),
    );
    let first_job = build_compacted_object(store.as_ref(), &same, first, 1, 0)
        .await
        .unwrap();
    let second_job = build_compacted_object(store.as_ref(), &same, second, 1, 0)
        .await
        .unwrap();
    assert_eq!(
        swap(&log, first_job.swap.clone()).await,
        first_job.swap.len()
    );
    assert_eq!(
        swap(&log, second_job.swap.clone()).await,
        second_job.swap.len()
    );
    assert_eq!(
        verify(&store, &run, &log).await,
        BTreeSet::from([nine, second])
    );

    // A key a token's earlier incarnation left: the create-only PUT refuses it, the job fails.
    append_with_checkpoints(&mut run, &log, 8).await;
    let refused = build_compacted_object(store.as_ref(), &plan(&log), second, 1, 0).await;
    assert!(
        matches!(refused, Err(CompactionError::Write { .. })),
        "{refused:?}"
    );
    assert_eq!(
        verify(&store, &run, &log).await,
        BTreeSet::from([nine, second])
    );
}
