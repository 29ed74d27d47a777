//! Fetch measurements (not checks; ignored by default) on a local store behind the S3 latency
//! model: a cold read of many partitions after a restart, the same read warm, and the live edge.
//! `cargo test -p sluice-server --release --test integration -- fetch_measure:: --ignored --nocapture`
//! (`SLUICE_FETCH_LATENCY_PROFILE=s3-standard|s3-express|none`, default s3-express).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{RawClient, batch};
use fetch_support::*;
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use sluice_engine::store::{LatencyModel, LatencyProfile, ObjectStorage};

const PARTITIONS: i32 = 64;
const ROUNDS: usize = 10;

fn store_over(dir: &std::path::Path, seed: u64) -> (Arc<GetCountingStore>, Arc<dyn ObjectStorage>) {
    let profile =
        std::env::var("SLUICE_FETCH_LATENCY_PROFILE").unwrap_or_else(|_| "s3-express".to_owned());
    let counting = GetCountingStore::local(dir);
    let inner: Arc<dyn ObjectStorage> = Arc::clone(&counting) as Arc<dyn ObjectStorage>;
    let modelled =
        LatencyModel::new(inner, LatencyProfile::parse(&profile).unwrap(), seed).unwrap();
    (counting, Arc::new(modelled))
}

fn quantiles(mut samples_us: Vec<u128>) -> String {
    samples_us.sort_unstable();
    let at = |quantile: f64| {
        samples_us[((samples_us.len() - 1) as f64 * quantile) as usize] as f64 / 1000.0
    };
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

#[test]
#[ignore = "measurement; run explicitly"]
fn measure_cold_warm_and_live_edge_fetches() {
    let store_dir = tempfile::tempdir().unwrap();
    let (_, store) = store_over(store_dir.path(), 1);
    let agent = common::start_agent_with_store(store, |config| config.flush_interval_ms = 10);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "m", PARTITIONS);
    for round in 0..ROUNDS {
        let records: Vec<(&str, i32, Bytes)> = (0..PARTITIONS)
            .map(|partition| ("m", partition, batch(20, round as i64)))
            .collect();
        let response: ProduceResponse =
            client.call(ApiKey::Produce, 9, &common::produce_request(-1, &records));
        assert!(
            common::produce_results(&response)
                .iter()
                .all(|result| result.2 == 0)
        );
    }
    drop(client);
    agent.stop();

    let (counting, store) = store_over(store_dir.path(), 2);
    let agent = common::start_agent_with_store(store, |config| config.flush_interval_ms = 10);
    let mut consumer = RawClient::connect(agent.addr());
    let wants: Vec<Want> = (0..PARTITIONS)
        .map(|partition| want(partition, 0))
        .collect();
    let request = fetch_request("m", topic_id, &wants, 0, 0);
    let gets = counting.range_gets();
    let started = Instant::now();
    let response = fetch(&mut consumer, 13, &request);
    let cold = started.elapsed();
    let cold_gets = counting.range_gets() - gets;
    let batches: usize = partitions(&response)
        .iter()
        .map(|partition| batches_of(&partition.records).len())
        .sum();
    assert_eq!(batches, PARTITIONS as usize * ROUNDS);
    let started = Instant::now();
    fetch(&mut consumer, 13, &request);
    let warm = started.elapsed();
    println!(
        "fetch of {PARTITIONS} partitions x {ROUNDS} objects after restart: cold {cold:?} ({cold_gets} ranged GETs), warm {warm:?} ({} more GETs)",
        counting.range_gets() - gets - cold_gets
    );

    // Live edge: a consumer parked on partition 0, one batch produced per round.
    let mut producer = RawClient::connect(agent.addr());
    let mut offset = (ROUNDS * 20) as i64;
    let mut to_fetch_us = Vec::new();
    let mut to_ack_us = Vec::new();
    let gets = counting.range_gets();
    for round in 0..200 {
        let correlation_id = consumer.send(
            ApiKey::Fetch,
            13,
            &fetch_request("m", topic_id, &[want(0, offset)], 5_000, 1),
        );
        std::thread::sleep(Duration::from_millis(2));
        let started = Instant::now();
        let produce_id = producer.send(
            ApiKey::Produce,
            9,
            &common::produce_request(-1, &[("m", 0, batch(5, round))]),
        );
        let response: FetchResponse = consumer.receive(ApiKey::Fetch, 13, correlation_id);
        to_fetch_us.push(started.elapsed().as_micros());
        let _: ProduceResponse = producer.receive(ApiKey::Produce, 9, produce_id);
        to_ack_us.push(started.elapsed().as_micros());
        assert_eq!(batches_of(&partitions(&response)[0].records).len(), 1);
        offset += 5;
    }
    println!(
        "live edge, produce sent -> parked fetch answered: {}",
        quantiles(to_fetch_us)
    );
    println!(
        "live edge, produce sent -> produce acknowledged: {}",
        quantiles(to_ack_us)
    );
    println!(
        "live edge: {} ranged GETs over 200 fetches",
        counting.range_gets() - gets
    );
}
