//! A deadline an entry carries (`EntryContent::send_by`, a compaction swap's in a cluster: one
//! lease after its compacted object's PUT started) tightens the window's own record deadline in
//! `SequencedLog::append`: a window whose carried deadline has passed after its PUT sends no
//! record (the sequencer's head stays put) and fails; the same content with a deadline ahead is
//! acknowledged. Real PostgreSQL, in-memory bucket.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use futures::executor::block_on;
use sluice_engine::log::LogConfig;

use crate::common::log_harness::{Run, memory_store};
use crate::common::postgres::TestPostgres;
use crate::common::sequenced::{append_result, open_sequenced};

#[test]
fn a_window_past_the_deadline_it_carries_sends_no_record() {
    let Some(postgres) = TestPostgres::start_or_skip("sequenced_send_by") else {
        return;
    };
    let log = open_sequenced(
        &postgres.url(),
        "send_by",
        &memory_store(),
        LogConfig::default(),
    );
    let sequencer = log.sequencer();
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
