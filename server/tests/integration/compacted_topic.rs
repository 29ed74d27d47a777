//! Compacted topics on the real S3 API (s3s-fs on loopback): the agent's key compaction keeps the
//! latest record of every key at its offset, removes tombstones after `delete.retention.ms`, and
//! a fetch from offset 0 then reads exactly the latest value of every live key, before and after a
//! restart on the same bucket. Waits are for the event (the records a fetch returns), never sleeps.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RawClient, create_topic_with_configs, now_ms};
use fetch_support::*;
use sluice_engine::batch::{BatchBuilder, BatchHeader, RecordSpec};
use sluice_engine::compact::keys::{KeyCompactionLimits, OffsetBatch, read_records};
use sluice_engine::store::S3TestServer;
use sluice_server::Config;
use uuid::Uuid;

const KEYS: usize = 50;
const ROUNDS: usize = 20;
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

fn configure(config: &mut Config, url: &str) {
    config.store = Some(url.to_owned());
    config.flush_interval_ms = 5;
    config.compaction_interval_ms = 100;
    config.compaction_object_bytes_target = 1024 * 1024;
    config.log_retention_check_interval_ms = 200;
    config.log_segment_delete_delay_ms = 300;
    config.checkpoint_interval_entries = 16;
}

fn create_compacted(client: &mut RawClient, name: &str) -> Uuid {
    // `max.compaction.lag.ms` 1: every uncleaned record (the batches are an hour old) makes the
    // partition due whatever its dirty ratio. With the default (never), a key job that ran
    // between the last two rounds — a 100 ms tick landing there, likely on a loaded machine —
    // left the last round (smaller: it holds the tombstones) as under half of the partition's
    // bytes, below Kafka's default `min.cleanable.dirty.ratio` of 0.5, and never cleaned it.
    let configs = [
        ("cleanup.policy", "compact"),
        ("delete.retention.ms", "1000"),
        ("max.compaction.lag.ms", "1"),
    ];
    let (code, topic_id) = create_topic_with_configs(client, name, &configs);
    assert_eq!(code, 0);
    topic_id
}

/// One batch of `(key, value)` updates; `None` is a tombstone.
fn updates(records: &[(String, Option<String>)], timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp);
    for (index, (key, value)) in records.iter().enumerate() {
        builder.records.push(RecordSpec {
            timestamp_delta: 0,
            offset_delta: index as i32,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value
                .as_ref()
                .map(|value| Bytes::copy_from_slice(value.as_bytes())),
        });
    }
    builder.encode()
}

/// Every record a fetch from 0 reads, in offset order: (offset, key, value).
fn read_all(
    client: &mut RawClient,
    topic: &str,
    topic_id: Uuid,
) -> Vec<(u64, String, Option<String>)> {
    let mut records = Vec::new();
    let mut offset = 0i64;
    loop {
        let response = fetch(
            client,
            12,
            &fetch_request(topic, topic_id, &[want(0, offset)], 0, 0),
        );
        let partition = partitions(&response)[0];
        assert_eq!(partition.error_code, 0);
        let batches = batches_of(&partition.records);
        if batches.is_empty() {
            return records;
        }
        for (base, bytes) in batches {
            let header = BatchHeader::parse(&bytes).unwrap();
            let batch = OffsetBatch {
                base_offset: base as u64,
                header,
                bytes,
            };
            for record in read_records(&batch, &KeyCompactionLimits::default()).unwrap() {
                let text = |bytes: Bytes| String::from_utf8(bytes.to_vec()).unwrap();
                records.push((
                    record.offset,
                    text(record.key.unwrap()),
                    record.value.map(text),
                ));
            }
            offset = base + header.offset_count() as i64;
        }
    }
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_every_live_key_at_its_offset() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("compacted");
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_compacted(&mut client, "accounts");

    // ROUNDS windows, each updating every key; the last round deletes every 5th key. Timestamps
    // are an hour old, so tombstones are past delete.retention.ms (1 s) from the start.
    let old = now_ms() - 3_600_000;
    let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for round in 0..ROUNDS {
        let records: Vec<(String, Option<String>)> = (0..KEYS)
            .map(|key| {
                let deleted = round == ROUNDS - 1 && key % 5 == 0;
                (
                    format!("key-{key:03}"),
                    (!deleted).then(|| format!("value-{key}-{round}")),
                )
            })
            .collect();
        let base = produce(&mut client, "accounts", 0, updates(&records, old)) as u64;
        for (index, (key, value)) in records.into_iter().enumerate() {
            latest.insert(key, (base + index as u64, value));
        }
    }
    let mut expected: Vec<(u64, String, Option<String>)> = latest
        .iter()
        .filter(|(_, (_, value))| value.is_some())
        .map(|(key, (offset, value))| (*offset, key.clone(), value.clone()))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), KEYS - KEYS / 5);

    let started = Instant::now();
    loop {
        let records = read_all(&mut client, "accounts", topic_id);
        if records == expected {
            break;
        }
        assert!(
            started.elapsed() < EVENT_TIMEOUT,
            "not compacted after {EVENT_TIMEOUT:?}: {} records read, {} expected",
            records.len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // New updates after compaction keep their offsets; a restart on the same bucket serves the
    // same compacted log.
    let next = produce(
        &mut client,
        "accounts",
        0,
        updates(
            &[("key-001".to_owned(), Some("after".to_owned()))],
            now_ms(),
        ),
    ) as u64;
    assert_eq!(next, (KEYS * ROUNDS) as u64);
    drop(client);
    drop(agent.stop());
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    let started = Instant::now();
    loop {
        let records = read_all(&mut client, "accounts", topic_id);
        let live: BTreeMap<&String, &Option<String>> =
            records.iter().map(|(_, key, value)| (key, value)).collect();
        let offsets_increase = records.windows(2).all(|pair| pair[0].0 < pair[1].0);
        assert!(offsets_increase, "offsets out of order: {records:?}");
        if live.len() == KEYS - KEYS / 5
            && live.get(&"key-001".to_owned()) == Some(&&Some("after".to_owned()))
            && records.len() == live.len()
        {
            break;
        }
        assert!(
            started.elapsed() < EVENT_TIMEOUT,
            "after restart: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_young_tombstone_goes_once_it_is_old_enough_without_new_records() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("young-tombstones");
    let agent = common::start_agent(|config| configure(config, &url));
    let mut client = RawClient::connect(agent.addr());
    // delete.retention.ms is 1 s. Values and tombstones go in one window (one entry), so the first
    // job sees the tombstones, keeps them and marks their batch with a delete horizon; a later
    // job, with no new record in between, must remove them once the horizon has passed.
    let topic_id = create_compacted(&mut client, "sessions");
    let live = |key: usize| (format!("key-{key}"), Some(format!("value-{key}")));
    let deletes: Vec<(String, Option<String>)> =
        (0..5).map(|key| (format!("key-{key}"), None)).collect();
    let mut records = bytes::BytesMut::new();
    records.extend_from_slice(&updates(&(0..10).map(live).collect::<Vec<_>>(), now_ms()));
    records.extend_from_slice(&updates(&deletes, now_ms()));
    produce(&mut client, "sessions", 0, records.freeze());
    let expected: Vec<(u64, String, Option<String>)> = (5..10)
        .map(|key| {
            (
                key as u64,
                format!("key-{key}"),
                Some(format!("value-{key}")),
            )
        })
        .collect();
    let started = Instant::now();
    loop {
        let records = read_all(&mut client, "sessions", topic_id);
        if records == expected {
            break;
        }
        assert!(
            started.elapsed() < EVENT_TIMEOUT,
            "tombstones still there: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
