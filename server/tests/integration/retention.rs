//! Retention by time and by bytes on the real S3 API (s3s-fs on loopback): the log start offset
//! moves as Kafka's rules say, ListOffsets earliest and Fetch follow it (OFFSET_OUT_OF_RANGE
//! below it), the objects that held only deleted records leave the bucket after the delete
//! delay, old checkpoints go, and an agent restarted on what is left serves the same log.
//!
//! Timestamps are chosen far from any boundary (hours old against an hour of retention), and
//! every wait is for the event itself (a log start offset, an object count), never a sleep.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, batch, create_topic_with_configs, list_keys, now_ms, topic_name};
use fetch_support::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use sluice_engine::store::{S3TestServer, StoreConfig, open_store};
use sluice_server::Config;
use uuid::Uuid;

const HOUR_MS: i64 = 3_600_000;
/// Longest wait for an event a housekeeping round (every 100 ms here) causes.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const OFFSET_OUT_OF_RANGE: i16 = 1;
const INVALID_CONFIG: i16 = 40;

/// Retention every 100 ms, objects deleted 300 ms after nothing needs them, a checkpoint every 4
/// entries. Compaction runs too (it must not hold back retention).
fn configure(config: &mut Config, url: &str) {
    common::configure_fast_housekeeping(config, url);
    config.checkpoint_interval_entries = 4;
}

fn earliest(client: &mut RawClient, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                ]),
        ]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 6, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, EVENT_TIMEOUT, POLL_INTERVAL, check)
}

/// Fetches from `offset` and returns the batches' base offsets, or the partition's error code
/// (with OFFSET_OUT_OF_RANGE, Kafka's broker answers log start and high watermark -1: unknown).
fn fetch_bases(
    client: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
    offset: i64,
) -> Result<Vec<i64>, i16> {
    let response = fetch(
        client,
        12,
        &fetch_request(topic, topic_id, &[want(0, offset)], 0, 0),
    );
    let partition = partitions(&response)[0];
    if partition.error_code != 0 {
        return Err(partition.error_code);
    }
    Ok(batches_of(&partition.records)
        .iter()
        .map(|(base, _)| *base)
        .collect())
}

#[test]
fn retention_by_time_moves_the_log_start_and_empties_the_bucket_of_expired_objects() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("by-time");
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    let (code, topic_id) =
        create_topic_with_configs(&mut client, "clicks", &[("retention.ms", "3600000")]);
    assert_eq!(code, 0);
    let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();

    // Ten windows of records two hours old (offsets 0..30), then ten of fresh ones (30..60).
    let old_timestamp = now_ms() - 2 * HOUR_MS;
    let mut old_batches = Vec::new();
    for _ in 0..10 {
        let records: Bytes = batch(3, old_timestamp);
        produce(&mut client, "clicks", 0, records.clone());
        old_batches.push(records);
    }
    let objects_with_old_data = list_keys(store.as_ref(), "log");
    for _ in 0..10 {
        produce(&mut client, "clicks", 0, batch(3, now_ms()));
    }

    // The next retention round moves the log start past every old record, and no further.
    wait_for("retention by time", || {
        (earliest(&mut client, "clicks") == 30).then_some(())
    });
    assert_eq!(
        fetch_bases(&mut client, "clicks", topic_id, 29),
        Err(OFFSET_OUT_OF_RANGE)
    );
    assert_eq!(
        fetch_bases(&mut client, "clicks", topic_id, 0),
        Err(OFFSET_OUT_OF_RANGE)
    );
    let bases = fetch_bases(&mut client, "clicks", topic_id, 30).unwrap();
    assert_eq!(bases, (30..60).step_by(3).collect::<Vec<i64>>());

    // Entries above the oldest kept checkpoint are never deleted (`log::gc`), so the old ones go
    // once two checkpoints have passed them. Windows of another topic move the checkpoints on, as
    // a live agent's traffic does. Without them it depended on where the compaction swap and the
    // retention round landed among the checkpoints: an agent that falls idle keeps the expired
    // entries written after its second-newest checkpoint (at most about twice
    // `checkpoint_interval_entries`) until it writes two more.
    let (code, _) = create_topic_with_configs(&mut client, "ticks", &[]);
    assert_eq!(code, 0);
    for _ in 0..20 {
        produce(&mut client, "ticks", 0, batch(1, now_ms()));
    }

    // Every object that held only old records (and the claim and topic creation before them)
    // leaves the bucket once checkpoints cover it and the delay has passed.
    wait_for("garbage collection of the expired objects", || {
        let left = list_keys(store.as_ref(), "log");
        objects_with_old_data.is_disjoint(&left).then_some(())
    });
    wait_for("old checkpoints deleted", || {
        (list_keys(store.as_ref(), "checkpoint").len() <= 2).then_some(())
    });

    // An agent restarted on what is left serves the same log.
    drop(client);
    drop(agent.stop());
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(earliest(&mut client, "clicks"), 30);
    assert_eq!(
        fetch_bases(&mut client, "clicks", topic_id, 30).unwrap(),
        (30..60).step_by(3).collect::<Vec<i64>>()
    );
    assert_eq!(produce(&mut client, "clicks", 0, batch(1, now_ms())), 60);
}

#[test]
fn retention_by_bytes_keeps_at_least_retention_bytes() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("by-bytes");
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    let one_batch = batch(4, now_ms());
    let batch_bytes = one_batch.len();
    // Keep at least two and a half batches: Kafka's rule keeps three (the oldest goes only while
    // what remains is still at least retention.bytes).
    let retention_bytes = (batch_bytes * 5 / 2).to_string();
    let (code, topic_id) = create_topic_with_configs(
        &mut client,
        "sized",
        &[("retention.bytes", &retention_bytes)],
    );
    assert_eq!(code, 0);
    for _ in 0..8 {
        produce(&mut client, "sized", 0, batch(4, now_ms()));
    }
    wait_for("retention by bytes", || {
        (earliest(&mut client, "sized") == 20).then_some(())
    });
    assert_eq!(
        fetch_bases(&mut client, "sized", topic_id, 20).unwrap(),
        vec![20, 24, 28]
    );
    assert_eq!(
        fetch_bases(&mut client, "sized", topic_id, 19),
        Err(OFFSET_OUT_OF_RANGE)
    );
}

#[test]
fn broker_default_applies_to_topics_without_an_override_and_bad_values_are_refused() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("defaults");
    let agent = common::start_agent(|config| {
        configure(config, &url);
        config.log_retention_ms = Some(HOUR_MS);
    });
    let mut client = RawClient::connect(agent.addr());
    for (name, value) in [
        ("retention.ms", "-2"),
        ("retention.bytes", "-5"),
        ("retention.ms", "soon"),
        ("cleanup.policy", "shred"),
        ("max.compaction.lag.ms", "0"),
        ("min.compaction.lag.ms", "-1"),
        ("delete.retention.ms", "-1"),
        // Accepted by Kafka, but batches are stored as the producer compressed them.
        ("compression.type", "zstd"),
    ] {
        let (code, _) = create_topic_with_configs(&mut client, "refused", &[(name, value)]);
        assert_eq!(code, INVALID_CONFIG, "{name}={value}");
    }
    let (code, _) =
        create_topic_with_configs(&mut client, "plain", &[("compression.type", "producer")]);
    assert_eq!(code, 0);
    let (code, _) = create_topic_with_configs(&mut client, "forever", &[("retention.ms", "-1")]);
    assert_eq!(code, 0);
    // "forever" is written first: the round that moves "plain" planned both from one state.
    let old = now_ms() - 2 * HOUR_MS;
    for topic in ["forever", "plain"] {
        produce(&mut client, topic, 0, batch(2, old));
        produce(&mut client, topic, 0, batch(2, now_ms()));
    }
    wait_for("the broker default", || {
        (earliest(&mut client, "plain") == 2).then_some(())
    });
    assert_eq!(earliest(&mut client, "forever"), 0);
}
