//! An open catches up with what other writers wrote by listing and reading, not by writing at
//! every position it finds taken.
//!
//! - After a writer stopped with a full pipeline above an empty position, the new writer claims
//!   the empty position and reads the older writer's entries above it. Before, it wrote a filler
//!   at each of them in turn (a PUT that found the key taken, then a read-back, then a second
//!   read): a PUT and two reads per entry that had been in flight, one position after another.
//! - A claim that finds its position taken (entries landed after the listing) replays everything
//!   that landed since in one listing and claims after it. Before, it stepped one position per
//!   PUT and gave up after 16.
//!
//! Both cost seconds on S3 Standard, and the deterministic simulation (`sim/`, seeds 1053, 1164,
//! 1369, 2801, 3264, 3280, 3553 of a campaign from seed 1000) found opens still under way
//! after its 3 s drain, or given up after 16 claim attempts.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use crate::common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use common::log_harness::*;
use sluice_engine::log::{LogConfig, LogError, MetadataLog};
use sluice_engine::store::{Fault, FaultInjection, ObjectInfo, ObjectStorage, Op, StoreResult};

/// Entries in flight behind the one that fails.
const PIPELINED: usize = 8;

fn config() -> LogConfig {
    LogConfig {
        put_attempts_max: 1,
        ..LogConfig::default()
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_open_reads_the_entries_above_a_gap_instead_of_writing_at_them() {
    let base = memory_store();
    let mut run = Run::new(1164);

    // The old writer: a few acknowledged entries, then a pipeline whose first PUT fails (the
    // position stays empty: it times out without reaching the store) while the ones behind it
    // land.
    let faults = Arc::new(FaultInjection::new(base.clone(), 11));
    let old = run.open(faults.clone(), config()).await;
    run.append_some(&old, 3).await;
    assert_eq!(run.failed, 0);
    faults.fail_next(Op::Put, Fault::Timeout).unwrap();
    let contents: Vec<_> = (0..=PIPELINED).map(|_| run.entry(2)).collect();
    let results =
        futures::future::join_all(contents.iter().map(|content| old.append(content.clone()))).await;
    for result in &results {
        assert!(
            matches!(result, Err(LogError::Broken { .. })),
            "nothing after the failed entry is acknowledged: {result:?}"
        );
    }
    drop(old);
    let listed = keys(base.as_ref(), "log").await;
    let (_, stats) = sluice_engine::log::recover(base.as_ref(), &config(), None)
        .await
        .unwrap();
    let first_free = stats.first_free;
    assert_eq!(
        listed.len() as u64,
        first_free.0 + PIPELINED as u64,
        "one empty position, {PIPELINED} entries above it: {listed:?}"
    );

    // The new writer claims the empty position and PUTs nothing else: the entries above it are
    // read (and ignored by the chain rule), not written at.
    let counted = Arc::new(FaultInjection::new(base.clone(), 12));
    let store: Arc<dyn ObjectStorage> = counted.clone();
    let (log, stats) = MetadataLog::open(store, config(), 0).await.unwrap();
    assert_eq!(stats.first_free, first_free);
    assert_eq!(
        counted.calls(Op::Put),
        1,
        "the open wrote more than its claim"
    );
    assert_eq!(
        log.with_state(|state| state.last_offered_seq()),
        Some(sluice_engine::types::LogSeq(
            first_free.0 + PIPELINED as u64
        )),
        "the open offered every entry above its claim"
    );

    // It goes on from there, and every acknowledged batch survives a recovery.
    run.append_some(&log, 3).await;
    assert_eq!(run.failed, 0);
    drop(log);
    run.recover_and_verify(base, config()).await;
}

/// A store whose first listing of the log misses its newest `hidden` entries: they landed after
/// the listing was taken, as another writer's entries do while an agent recovers.
#[derive(Debug)]
struct StaleFirstListing {
    inner: Arc<dyn ObjectStorage>,
    hidden: usize,
    listed: AtomicBool,
}

#[async_trait::async_trait]
impl ObjectStorage for StaleFirstListing {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        self.inner.put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_tail(key, len).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        let mut listed = self.inner.list(prefix, start_after).await?;
        if prefix == "log" && !self.listed.swap(true, Ordering::SeqCst) {
            listed.truncate(listed.len().saturating_sub(self.hidden));
        }
        Ok(listed)
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_claim_that_loses_its_position_catches_up_in_one_listing() {
    const HIDDEN: usize = 20;
    let base = memory_store();
    let mut run = Run::new(1369);
    let old = run.open(base.clone(), config()).await;
    run.append_some(&old, 3 + HIDDEN).await;
    assert_eq!(run.failed, 0);
    drop(old);

    let counted = Arc::new(FaultInjection::new(base.clone(), 13));
    let store: Arc<dyn ObjectStorage> = Arc::new(StaleFirstListing {
        inner: counted.clone(),
        hidden: HIDDEN,
        listed: AtomicBool::new(false),
    });
    let (log, _) = MetadataLog::open(store, config(), 0)
        .await
        .expect("the open gave up");
    assert_eq!(
        counted.calls(Op::Put),
        2,
        "one claim lost to the entries the listing missed, one after them"
    );
    assert_eq!(log.epoch(), 2);
    run.append_some(&log, 3).await;
    assert_eq!(run.failed, 0);
    drop(log);
    run.recover_and_verify(base, config()).await;
}
