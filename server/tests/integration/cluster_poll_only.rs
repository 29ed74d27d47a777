//! A cluster without LISTEN/NOTIFY (`metadata_notify = false`, as on CockroachDB or
//! YugabyteDB): agents learn of each other's commits only by reading the head every
//! `metadata_poll_interval_ms`. A fetch waiting on B for a partition's next record is answered
//! once B's poll finds the commit A made; without the polls (or with notifications silently still
//! needed) it would wait out its 10 s `max_wait_ms` empty.
//!
//! Waits are for the event (a fetch answered with the record), with deadlines far above the
//! 100 ms poll.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::common::{self, RawClient, batch};
use crate::fetch_support::{
    batches_of, create_topic, fetch, fetch_request, partitions, produce, want,
};
use sluice_server::Agent;
use sluice_tests::postgres::TestPostgres;

const POLL_MS: u64 = 100;

fn start(url: &str, store_dir: &std::path::Path, agent_id: &str) -> (Agent, tempfile::TempDir) {
    common::start_cluster_agent(url, store_dir, agent_id, |config| {
        config.metadata_notify = false;
        config.metadata_poll_interval_ms = POLL_MS;
    })
}

#[test]
fn agents_without_notifications_learn_each_others_commits_by_polling() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_poll_only") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(&postgres.url(), store_dir.path(), "a");
    let (b, _b_dir) = start(&postgres.url(), store_dir.path(), "b");
    let mut to_a = RawClient::connect(a.local_addr());
    let topic_id = create_topic(&mut to_a, "polled", 1);

    // B knows the topic once its poll has applied A's CreateTopics.
    let mut to_b = RawClient::connect(b.local_addr());
    let known_by = Instant::now() + Duration::from_secs(20);
    loop {
        let response = fetch(
            &mut to_b,
            13,
            &fetch_request("polled", topic_id, &[want(0, 0)], 0, 0),
        );
        if partitions(&response)
            .first()
            .is_some_and(|partition| partition.error_code == 0)
        {
            break;
        }
        assert!(
            Instant::now() < known_by,
            "B never learned of the topic A created"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A fetch parked on B for offset 0, then a produce through A.
    let b_address = b.local_addr();
    let waiting = std::thread::spawn(move || {
        let mut client = RawClient::connect(b_address);
        let started = Instant::now();
        let response = fetch(
            &mut client,
            13,
            &fetch_request("polled", topic_id, &[want(0, 0)], 10_000, 1),
        );
        let partition = partitions(&response)[0];
        (
            partition.error_code,
            batches_of(&partition.records),
            started.elapsed(),
        )
    });
    // Give the fetch time to park; if it has not, it is answered at once with the record, which
    // the assertions accept as well.
    std::thread::sleep(Duration::from_millis(200));
    let produced = batch(3, 1);
    let produced_at = Instant::now();
    assert_eq!(produce(&mut to_a, "polled", 0, produced.clone()), 0);
    let (error_code, batches, waited) = waiting.join().unwrap();
    let answered_after = produced_at.elapsed();
    eprintln!(
        "cluster_poll_only: B's fetch answered {answered_after:?} after A's produce was \
         acknowledged (waited {waited:?} in all; poll every {POLL_MS} ms)"
    );
    assert_eq!(error_code, 0);
    assert_eq!(batches.len(), 1, "B's fetch came back without A's record");
    assert_eq!(batches[0].0, 0);
    assert!(
        waited < Duration::from_secs(9),
        "the fetch waited out its max_wait ({waited:?}): B learned of the commit only then"
    );
    drop((to_a, to_b));
    b.shutdown().unwrap();
    a.shutdown().unwrap();
}
