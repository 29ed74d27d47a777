//! Scenario: object compaction in a cluster. Two agents (`a`, `b`, in process) on one bucket of
//! the loopback S3 server and one PostgreSQL, compacting every 100 ms with a small target; a 3 s
//! lease, so the collector's grace is 23 s.
//!
//! 1. Once each agent's Metadata lists both, 30 rounds write one batch to each of 8 partitions
//!    (`segment.bytes` 1,200, so a run of about six windows is full and merged at once),
//!    alternating agents: 240 windows.
//! 2. The test waits (for the event, with a deadline) until a fresh recovery of the cluster's
//!    state — the newest checkpoint and the sequencer's records, as a new agent reads it — has
//!    fewer than half as many index entries as windows in every partition, each compacted entry
//!    naming an object in `compacted/` written by the partition's owner (the leader Metadata
//!    names; its token from the agents' registrations).
//! 3. Every acknowledged batch reads back byte for byte at its offset from both agents.
//! 4. The collector deletes every window object compaction replaced (at least half of them; the
//!    last run of each partition still grows) and every unreferenced compacted object, until the
//!    bucket's `data/` and `compacted/` hold only what the state references; at every poll
//!    nothing the recovered state references is missing. The batches still read back from both
//!    agents.
//!
//! PostgreSQL missing skips loudly, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use sluice_engine::batch::BatchBuilder;
use sluice_engine::log::data_gc::token_of_roles;
use sluice_engine::log::{LogConfig, SequencedLog};
use sluice_engine::sequencer::{SequencerClient, SequencerConfig};
use sluice_engine::store::{
    ObjectStorage, S3TestServer, StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store,
};
use sluice_engine::types::{
    AGENT_OBJECT_DIR, COMPACTED_DIR, LogSeq, cluster_compacted_object_parts, is_compacted_object,
    object_key,
};
use sluice_server::metadata_core::cluster_view::node_id_of;
use sluice_server::{Agent, Config};
use sluice_tests::postgres::TestPostgres;
use uuid::Uuid;

use crate::common::{self, RawClient, list_keys, now_ms, topic_name};
use crate::fetch_support::{
    assert_same_batch, batches_of, fetch, fetch_request, partitions, produce, want,
};

const TOPIC: &str = "compacted-in-a-cluster";
const PARTITIONS: i32 = 8;
const ROUNDS: usize = 30;
/// About six windows of one batch each.
const SEGMENT_BYTES: &str = "1200";
/// Compaction within seconds; the collector's grace (23 s) plus the delay after it.
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Each poll recovers the cluster's state from the bucket: not more often than this.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

fn configure(config: &mut Config, store_url: &str) {
    common::configure_fast_housekeeping(config, store_url);
    config.compaction_object_bytes_target = 1024 * 1024;
    config.checkpoint_interval_entries = 16;
}

fn metadata(client: &mut RawClient, topics: &[&str]) -> MetadataResponse {
    let request = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect(),
    ));
    client.call(ApiKey::Metadata, 12, &request)
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, EVENT_TIMEOUT, POLL_INTERVAL, check)
}

/// Per partition of the topic, the objects its index names (in offset order), recovered as a
/// new agent would: the newest checkpoint, then the sequencer's records.
fn recovered_index(
    store: &Arc<dyn ObjectStorage>,
    sequencer: &SequencerClient,
) -> BTreeMap<i32, Vec<LogSeq>> {
    let (log, _) = futures::executor::block_on(SequencedLog::open(
        Arc::clone(store),
        sequencer.clone(),
        LogConfig::default(),
    ))
    .unwrap();
    log.with_state(|state| {
        let (_, topic) = state.topic_by_name(TOPIC).unwrap();
        topic
            .partitions()
            .iter()
            .enumerate()
            .map(|(partition, state)| {
                (
                    partition as i32,
                    state.index().iter().map(|entry| entry.seq).collect(),
                )
            })
            .collect()
    })
}

/// Every object any index entry names, over the whole state.
fn referenced(index: &BTreeMap<i32, Vec<LogSeq>>) -> BTreeSet<String> {
    index.values().flatten().map(|id| object_key(*id)).collect()
}

/// Reads every batch of every partition from `client` and checks it against `produced`.
fn read_back(client: &mut RawClient, topic_id: Uuid, produced: &[Vec<(i64, Bytes)>], agent: &str) {
    for (partition, batches) in produced.iter().enumerate() {
        let mut fetched: Vec<(i64, Bytes)> = Vec::new();
        while fetched.len() < batches.len() {
            let offset = batches[fetched.len()].0;
            let response = fetch(
                client,
                12,
                &fetch_request(TOPIC, topic_id, &[want(partition as i32, offset)], 0, 0),
            );
            let data = partitions(&response)[0];
            assert_eq!(data.error_code, 0, "{agent}: partition {partition}");
            let got = batches_of(&data.records);
            assert!(
                !got.is_empty(),
                "{agent}: partition {partition} served nothing at offset {offset}"
            );
            fetched.extend(got);
        }
        assert_eq!(
            fetched.len(),
            batches.len(),
            "{agent}: partition {partition}"
        );
        for ((base, fetched), (expected_base, produced)) in fetched.iter().zip(batches) {
            assert_eq!(base, expected_base, "{agent}: partition {partition}");
            assert_same_batch(fetched, produced, *expected_base);
        }
    }
}

/// Creates the topic with 8 partitions and `segment.bytes` small enough that a run of about six
/// windows is full: it settles (and is merged) as the next window arrives, not a minute later.
fn create_topic(client: &mut RawClient) -> Uuid {
    let (code, topic_id) = common::create_topic_with_partitions_and_configs(
        client,
        TOPIC,
        PARTITIONS,
        &[("segment.bytes", SEGMENT_BYTES)],
    );
    assert_eq!(code, 0);
    topic_id
}

fn start(postgres: &TestPostgres, store_url: &str, id: &str) -> (Agent, tempfile::TempDir) {
    let unused = tempfile::tempdir().unwrap();
    common::start_cluster_agent(&postgres.url(), unused.path(), id, |config| {
        configure(config, store_url)
    })
}

#[test]
fn two_agents_compact_their_own_partitions_and_the_replaced_windows_are_collected() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(postgres) = TestPostgres::start_or_skip("cluster_compaction") else {
        return;
    };
    let server = S3TestServer::start().unwrap();
    let store_url = server.store_url("cluster-compaction");
    // Behind a runtime of its own, as the agent's: the recoveries below poll it from a plain
    // executor.
    let store = StoreRuntime::start(
        open_store(&StoreConfig::from_url(&store_url).unwrap()).unwrap(),
        StoreRuntimeConfig {
            worker_threads: 1,
            inflight_requests_max: 16,
            ..StoreRuntimeConfig::default()
        },
    )
    .unwrap();
    let sequencer =
        SequencerClient::connect(SequencerConfig::new(postgres.url(), "sluice")).unwrap();
    let (a, _a_dir) = start(&postgres, &store_url, "a");
    let (b, _b_dir) = start(&postgres, &store_url, "b");
    let mut clients = [
        RawClient::connect(a.local_addr()),
        RawClient::connect(b.local_addr()),
    ];
    // Each agent compacts what it owns by its view: both views must name both agents.
    for client in &mut clients {
        wait_for("both agents listed", || {
            (metadata(client, &[]).brokers.len() == 2).then_some(())
        });
    }
    let topic_id = create_topic(&mut clients[0]);
    wait_for("b knows the topic", || {
        let response = metadata(&mut clients[1], &[TOPIC]);
        (response.topics[0].error_code == 0).then_some(())
    });

    // 1. 240 windows, each one batch of one partition, alternating agents.
    let mut produced: Vec<Vec<(i64, Bytes)>> = vec![Vec::new(); PARTITIONS as usize];
    for round in 0..ROUNDS {
        for partition in 0..PARTITIONS {
            let mut builder = BatchBuilder::new(now_ms());
            for record in 0..3 {
                let value = format!("round {round} partition {partition} record {record}");
                builder = builder.record(record, None, value.as_bytes());
            }
            let bytes = builder.encode();
            let client = &mut clients[(round + partition as usize) % 2];
            let base = produce(client, TOPIC, partition, bytes.clone());
            assert_eq!(base, (round * 3) as i64, "partition {partition}");
            produced[partition as usize].push((base, bytes));
        }
    }
    let windows_written: BTreeSet<String> = list_keys(store.as_ref(), AGENT_OBJECT_DIR);

    // 2. Compaction: fewer than half as many index entries as windows in every partition, each
    // compacted entry written by its partition's owner.
    let started = Instant::now();
    let index = wait_for("every partition compacted", || {
        let index = recovered_index(&store, &sequencer);
        index
            .values()
            .all(|objects| objects.len() < ROUNDS / 2)
            .then_some(index)
    });
    eprintln!(
        "cluster compaction: every partition compacted {:.1} s after the last produce; entries per partition {:?}",
        started.elapsed().as_secs_f64(),
        index.values().map(Vec::len).collect::<Vec<_>>()
    );
    let agents = futures::executor::block_on(sequencer.live_agents()).unwrap();
    let token_of_node: BTreeMap<i32, u32> = agents
        .iter()
        .map(|agent| {
            (
                node_id_of(&agent.agent_id),
                token_of_roles(&agent.roles).unwrap(),
            )
        })
        .collect();
    let leaders = metadata(&mut clients[0], &[TOPIC]);
    let mut owners = BTreeSet::new();
    for partition in &leaders.topics[0].partitions {
        let owner_token = token_of_node[&partition.leader_id.0];
        owners.insert(owner_token);
        let objects = &index[&partition.partition_index];
        for object in objects.iter().filter(|id| is_compacted_object(**id)) {
            let (token, _) = cluster_compacted_object_parts(*object).unwrap();
            assert_eq!(
                token, owner_token,
                "partition {} compacted by token {token}, not by its owner's {owner_token}",
                partition.partition_index
            );
        }
    }
    assert_eq!(
        owners.len(),
        2,
        "the 8 partitions are spread over both agents"
    );

    // 3. Byte for byte from both agents.
    read_back(&mut clients[0], topic_id, &produced, "a");
    read_back(&mut clients[1], topic_id, &produced, "b");

    // 4. The collector deletes the replaced windows (and every other window and compacted
    // object nothing names); nothing referenced ever goes. Listed before the recovery, so a
    // referenced object missing from the listing was deleted.
    let started = Instant::now();
    let left = wait_for("the replaced windows collected", || {
        let data = list_keys(store.as_ref(), AGENT_OBJECT_DIR);
        let compacted = list_keys(store.as_ref(), COMPACTED_DIR);
        let referenced = referenced(&recovered_index(&store, &sequencer));
        let present: BTreeSet<String> = data.union(&compacted).cloned().collect();
        let missing: Vec<&String> = referenced.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "referenced objects deleted: {missing:?}"
        );
        present.is_subset(&referenced).then_some(data)
    });
    let collected = windows_written.difference(&left).count();
    eprintln!(
        "cluster compaction: {collected} of the {} window objects listed after the rounds collected {:.1} s after compaction; {} left, all referenced",
        windows_written.len(),
        started.elapsed().as_secs_f64(),
        left.len()
    );
    // The windows of the last runs, still growing at the live edge, stay (referenced).
    assert!(
        collected >= ROUNDS * PARTITIONS as usize / 2,
        "only {collected} window objects collected"
    );
    read_back(&mut clients[0], topic_id, &produced, "a");
    read_back(&mut clients[1], topic_id, &produced, "b");
}
