//! The agent on the real S3 API (s3s-fs on loopback): produce, restart on the same bucket, and
//! the PUT count of a flush window, which must not depend on how many partitions it holds.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::sync::Arc;

use common::{CountingStore, RawClient, batch, produce_request, produce_results};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceResponse};
use sluice_engine::store::{S3TestServer, StoreConfig, open_store};

#[test]
fn produce_and_restart_on_the_s3_api() {
    let server = S3TestServer::start().unwrap();
    let url = server.store_url("restart");
    let agent = common::start_agent(|config| config.store = Some(url.clone()));
    agent.create_topic("payments", 2);
    let mut client = RawClient::connect(agent.addr());
    for round in 0..3_i64 {
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &produce_request(
                -1,
                &[("payments", 0, batch(5, 1)), ("payments", 1, batch(2, 1))],
            ),
        );
        let results = produce_results(&response);
        assert_eq!((results[0].2, results[0].3), (0, round * 5));
        assert_eq!((results[1].2, results[1].3), (0, round * 2));
    }
    drop(client);
    drop(agent.stop());

    let agent = common::start_agent(|config| config.store = Some(url.clone()));
    let mut client = RawClient::connect(agent.addr());
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(1, &[("payments", 1, batch(1, 1))]),
    );
    assert_eq!(
        produce_results(&response)[0].3,
        6,
        "offsets continue on the same bucket"
    );
}

/// Sends `requests` pipelined on one connection (all within one flush window) and waits for
/// every answer; returns the base offsets.
fn pipelined(client: &mut RawClient, requests: &[(&str, i32)]) -> Vec<(i32, i64)> {
    let ids: Vec<i32> = requests
        .iter()
        .map(|(topic, partition)| {
            client.send(
                ApiKey::Produce,
                9,
                &produce_request(1, &[(topic, *partition, batch(3, 1))]),
            )
        })
        .collect();
    ids.into_iter()
        .map(|id| {
            let response: ProduceResponse = client.receive(ApiKey::Produce, 9, id);
            let result = &produce_results(&response)[0];
            assert_eq!(result.2, 0, "{result:?}");
            (result.1, result.3)
        })
        .collect()
}

#[test]
fn one_put_per_flush_window_whatever_the_partition_count() {
    let server = S3TestServer::start().unwrap();
    let inner = open_store(&StoreConfig::from_url(&server.store_url("puts")).unwrap()).unwrap();
    let counting = CountingStore::wrap(inner);
    let store: Arc<dyn sluice_engine::store::ObjectStorage> = counting.clone();
    // A window long enough that 64 pipelined requests certainly fall into one, and fixed: with
    // group commit the first request would go out alone while the store is idle.
    let agent = common::start_agent_with_store(store, |config| {
        config.flush_interval_ms = 400;
        config.flush_group_commit = false;
    });
    agent.create_topic("one", 1);
    agent.create_topic("many", 64);

    let before = counting.put_count();
    let one: Vec<(&str, i32)> = (0..64).map(|_| ("one", 0)).collect();
    let offsets = pipelined(&mut RawClient::connect(agent.addr()), &one);
    let puts_one_partition = counting.put_count() - before;
    // 64 requests of 3 records each to one partition: contiguous, in request order.
    assert_eq!(
        offsets,
        (0..64).map(|index| (0, index * 3)).collect::<Vec<_>>()
    );

    let before = counting.put_count();
    let many: Vec<(&str, i32)> = (0..64).map(|partition| ("many", partition)).collect();
    let offsets = pipelined(&mut RawClient::connect(agent.addr()), &many);
    let puts_many_partitions = counting.put_count() - before;
    assert_eq!(
        offsets,
        (0..64).map(|partition| (partition, 0)).collect::<Vec<_>>()
    );

    println!(
        "PUTs: 64 produces to 1 partition = {puts_one_partition}, to 64 partitions = {puts_many_partitions}"
    );
    assert_eq!(puts_one_partition, 1);
    assert_eq!(puts_many_partitions, 1);
}

/// Sequential acks=all produces of one small batch against the S3 loopback server, with group
/// commit and with fixed windows: prints both latency distributions (each produce finds the agent
/// idle, so this is the acknowledgement floor). A measurement, not a check: `cargo test -p
/// sluice-server --test integration -- s3_store:: --ignored --nocapture`.
#[test]
#[ignore = "measurement; run explicitly"]
fn measure_sequential_produce_latency() {
    let server = S3TestServer::start().unwrap();
    for group_commit in [true, false] {
        let url = server.store_url(if group_commit {
            "latency-early"
        } else {
            "latency-fixed"
        });
        let agent = common::start_agent(|config| {
            config.store = Some(url.clone());
            config.flush_interval_ms = 10;
            config.flush_group_commit = group_commit;
        });
        agent.create_topic("latency", 1);
        let mut client = RawClient::connect(agent.addr());
        let mut latencies_us: Vec<u128> = (0..300)
            .map(|_| {
                let started = std::time::Instant::now();
                let response: ProduceResponse = client.call(
                    ApiKey::Produce,
                    9,
                    &produce_request(-1, &[("latency", 0, batch(10, 1))]),
                );
                assert_eq!(produce_results(&response)[0].2, 0);
                started.elapsed().as_micros()
            })
            .collect();
        latencies_us.sort_unstable();
        let at =
            |quantile: f64| latencies_us[((latencies_us.len() - 1) as f64 * quantile) as usize];
        println!(
            "produce acks=all, flush_interval_ms=10, group commit {group_commit}, s3s-fs loopback: \
             p50 {} us, p90 {} us, p99 {} us, max {} us",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
}
