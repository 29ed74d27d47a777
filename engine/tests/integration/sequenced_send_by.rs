//! A deadline an entry carries (`EntryContent::send_by`, a compaction swap's in a cluster: one
//! lease after its compacted object's PUT started) tightens the window's own record deadline in
//! `SequencedLog::append`: a window whose carried deadline has passed after its PUT sends no
//! record (the sequencer's head stays put) and fails; the same content with a deadline ahead is
//! acknowledged. Real PostgreSQL, in-memory bucket.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use sluice_engine::log::{AppendOutcome, EntryContent, LogConfig, LogError, SequencedLog};
use sluice_engine::sequencer::{SequencerClient, SequencerConfig};

use crate::common::log_harness::{Run, memory_store};
use crate::common::postgres::TestPostgres;

/// Appends `content`, driving the catch-ups that acknowledge it (a tailer's job in the agent).
async fn append_result(
    log: &SequencedLog,
    content: EntryContent,
) -> Result<AppendOutcome, LogError> {
    let mut head = log.sequencer().subscribe();
    let append = log.append(content);
    let tail = async {
        loop {
            log.catch_up().await.unwrap();
            if head.changed().await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
    };
    futures::pin_mut!(append, tail);
    match futures::future::select(append, tail).await {
        futures::future::Either::Left((outcome, _)) => outcome,
        futures::future::Either::Right(((), _)) => unreachable!("the tail loop never ends"),
    }
}

#[test]
fn a_window_past_the_deadline_it_carries_sends_no_record() {
    let Some(postgres) = TestPostgres::start_or_skip("sequenced_send_by") else {
        return;
    };
    let store = memory_store();
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), "send_by")).unwrap();
    let (log, _) = block_on(SequencedLog::open(
        Arc::clone(&store),
        sequencer.clone(),
        LogConfig::default(),
    ))
    .unwrap();
    let mut run = Run::new(5);

    // The window's own record deadline (10 s) is far away; the one it carries has passed.
    let mut late = run.entry(2);
    late.send_by = Some(Instant::now());
    let error = block_on(append_result(&log, late)).expect_err("past its carried deadline");
    assert!(
        error.to_string().contains("not committed"),
        "unexpected error: {error}"
    );
    assert_eq!(block_on(sequencer.head()).unwrap(), 0, "no record was sent");

    let mut on_time = run.entry(2);
    on_time.send_by = Some(Instant::now() + Duration::from_secs(60));
    block_on(append_result(&log, on_time)).unwrap();
    assert_eq!(block_on(sequencer.head()).unwrap(), 1);
}
