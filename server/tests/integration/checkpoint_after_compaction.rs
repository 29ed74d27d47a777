//! With compaction on, an agent alone writes its checkpoint right after a compaction tick that
//! swapped (the index at its smallest), once half of `checkpoint_interval_entries` entries were
//! applied since the last; the count alone writes one only at twice that
//! (`server/src/metadata_core/flusher.rs`, `CheckpointPolicy`). On the real S3 API (s3s-fs on
//! loopback); every wait is for the event itself.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support::*;

use std::time::Duration;

use common::{RawClient, batch, list_keys, now_ms};
use sluice_engine::store::{S3TestServer, StoreConfig, open_store};

/// Checkpoint interval of the agent under test: by the count alone, the first checkpoint would
/// be at log position 60 or later (120 with compaction on).
const INTERVAL_ENTRIES: u64 = 60;
/// Windows produced: more than half the interval, with the topic's creation and the log's claim
/// well under the whole of it.
const WINDOWS: usize = 34;

fn checkpoint_positions(keys: &std::collections::BTreeSet<String>) -> Vec<u64> {
    keys.iter()
        .filter_map(|key| key.rsplit('/').next()?.parse().ok())
        .collect()
}

#[test]
fn a_checkpoint_follows_a_compaction_tick_before_the_count_would_write_one() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("checkpoint-after-compaction");
    let agent = common::start_agent(|config| {
        common::configure_fast_housekeeping(config, &url);
        config.checkpoint_interval_entries = INTERVAL_ENTRIES;
    });
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    let mut client = RawClient::connect(agent.addr());
    create_topic(&mut client, "ticks", 1);
    // Records older than a run needs to settle, so each tick merges what is there.
    let old = now_ms() - 120_000;
    for window in 0..WINDOWS {
        let base = produce(&mut client, "ticks", 0, batch(2, old + window as i64));
        assert_eq!(base, 2 * window as i64);
    }

    let checkpoint = common::wait_for(
        "a checkpoint after a compaction tick",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let positions = checkpoint_positions(&list_keys(store.as_ref(), "checkpoint"));
            positions.into_iter().max()
        },
    );
    assert!(
        !list_keys(store.as_ref(), "compacted").is_empty(),
        "a checkpoint without any compaction"
    );
    // Written after at least half the interval (the claim, the topic, the windows and the
    // swaps so far), long before the count alone would have.
    assert!(
        (INTERVAL_ENTRIES / 2..INTERVAL_ENTRIES).contains(&checkpoint),
        "checkpoint at log position {checkpoint}"
    );

    // The state it holds serves the log after a restart.
    drop(client);
    drop(agent.stop());
    let agent = common::start_agent(|config| {
        common::configure_fast_housekeeping(config, &url);
        config.checkpoint_interval_entries = INTERVAL_ENTRIES;
    });
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(
        produce(&mut client, "ticks", 0, batch(1, now_ms())),
        2 * WINDOWS as i64
    );
}
