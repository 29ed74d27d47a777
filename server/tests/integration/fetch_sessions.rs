//! Fetch sessions (KIP-227) as the Java client uses them: a full fetch opens the session, then
//! incremental fetches list only changed partitions and are answered with only what changed;
//! forgotten partitions leave; wrong epochs and unknown ids get 71 and 70; epoch -1 closes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;

use std::time::Duration;

use common::{RawClient, batch};
use fetch_support::*;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use uuid::Uuid;

fn session_fetch(topic_id: Uuid, session_id: i32, epoch: i32, wants: &[Want]) -> FetchRequest {
    let topics = if wants.is_empty() {
        vec![]
    } else {
        vec![fetch_topic("s", topic_id, wants)]
    };
    fetch_request("s", topic_id, &[], 0, 0)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// `(partition, batch count)` of each partition in the response.
fn listed(response: &FetchResponse) -> Vec<(i32, usize)> {
    partitions(response)
        .iter()
        .map(|partition| {
            (
                partition.partition_index,
                batches_of(&partition.records).len(),
            )
        })
        .collect()
}

#[test]
fn incremental_fetches_carry_only_what_changed() {
    for version in [12_i16, 13, 17] {
        let agent = common::start_agent(|config| config.flush_interval_ms = 10);
        let mut client = RawClient::connect(agent.addr());
        let topic_id = create_topic(&mut client, "s", 3);
        produce(&mut client, "s", 0, batch(2, 1));
        produce(&mut client, "s", 1, batch(3, 1));

        // Full fetch, epoch 0: opens a session and lists every partition.
        let all = [want(0, 0), want(1, 0), want(2, 0)];
        let response = fetch(&mut client, version, &session_fetch(topic_id, 0, 0, &all));
        assert_eq!(response.error_code, 0);
        let session_id = response.session_id;
        assert_ne!(session_id, 0, "v{version}");
        assert_eq!(listed(&response), vec![(0, 1), (1, 1), (2, 0)]);

        // Epoch 1: the client moved past what it got; nothing changed since, so nothing is listed.
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, 1, &[want(0, 2), want(1, 3)]),
        );
        assert_eq!((response.error_code, response.session_id), (0, session_id));
        assert_eq!(listed(&response), vec![]);

        // New data on partition 2 (still at offset 0 in the session): only it comes back.
        produce(&mut client, "s", 2, batch(4, 2));
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, 2, &[]),
        );
        assert_eq!(listed(&response), vec![(2, 1)]);
        assert_eq!(partitions(&response)[0].high_watermark, 4);

        // Partition 2 is forgotten; a long poll in the session is woken by partition 1's data. Its
        // max_wait (60 s, the agent's cap) outlasts the client's read timeout (10 s): the answer
        // comes from the commit, never from the timer.
        let request = session_fetch(topic_id, session_id, 3, &[])
            .with_forgotten_topics_data(vec![forgotten("s", topic_id, &[2])])
            .with_max_wait_ms(60_000)
            .with_min_bytes(1);
        let correlation_id = client.send(ApiKey::Fetch, version, &request);
        let mut producer = RawClient::connect(agent.addr());
        std::thread::sleep(Duration::from_millis(100));
        produce(&mut producer, "s", 2, batch(1, 3));
        produce(&mut producer, "s", 1, batch(1, 3));
        let response: FetchResponse = client.receive(ApiKey::Fetch, version, correlation_id);
        assert_eq!(listed(&response), vec![(1, 1)], "partition 2 was forgotten");

        // A replayed epoch and an unknown session are refused at the top level.
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, 3, &[]),
        );
        assert_eq!((response.error_code, response.session_id), (71, 0));
        assert!(response.responses.is_empty());
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id.wrapping_add(1), 1, &[]),
        );
        assert_eq!(response.error_code, 70);
        // The session survives a refused request.
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, 4, &[want(1, 4)]),
        );
        assert_eq!(response.error_code, 0);

        // Epoch -1 closes it: this answer is sessionless and full, the id is gone afterwards.
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, -1, &[want(0, 0)]),
        );
        assert_eq!((response.error_code, response.session_id), (0, 0));
        assert_eq!(listed(&response), vec![(0, 1)]);
        let response = fetch(
            &mut client,
            version,
            &session_fetch(topic_id, session_id, 5, &[]),
        );
        assert_eq!(response.error_code, 70);
    }
}

#[test]
fn sessions_per_core_are_bounded_by_fetch_sessions_max() {
    let agent = common::start_agent(|config| {
        config.flush_interval_ms = 10;
        config.fetch_sessions_max = 8;
    });
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "s", 1);
    let open = |client: &mut RawClient| {
        fetch(client, 12, &session_fetch(topic_id, 0, 0, &[want(0, 0)])).session_id
    };
    let first = open(&mut client);
    let second = open(&mut client);
    // Using the first keeps it; opening 7 more evicts the least recently used: the second.
    assert_eq!(
        fetch(&mut client, 12, &session_fetch(topic_id, first, 1, &[])).error_code,
        0
    );
    let newer: Vec<i32> = (0..7).map(|_| open(&mut client)).collect();
    assert!(newer.iter().all(|id| *id != 0));
    assert_eq!(
        fetch(&mut client, 12, &session_fetch(topic_id, second, 1, &[])).error_code,
        70
    );
    assert_eq!(
        fetch(&mut client, 12, &session_fetch(topic_id, first, 2, &[])).error_code,
        0
    );
    for id in newer {
        assert_eq!(
            fetch(&mut client, 12, &session_fetch(topic_id, id, 1, &[])).error_code,
            0
        );
    }
    drop(client);
    drop(agent);

    // 0 turns sessions off: epoch 0 is answered in full, without a session id.
    let agent = common::start_agent(|config| config.fetch_sessions_max = 0);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "s", 1);
    let response = fetch(
        &mut client,
        12,
        &session_fetch(topic_id, 0, 0, &[want(0, 0)]),
    );
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(partitions(&response).len(), 1);
}

#[test]
fn a_busy_session_serves_its_partitions_in_turn() {
    let agent = common::start_agent(|config| config.flush_interval_ms = 5);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "s", 3);
    let one = batch(30, 1);
    for partition in 0..3 {
        for _ in 0..3 {
            produce(&mut client, "s", partition, one.clone());
        }
    }
    // Room for one batch per response: partitions compete for it.
    let max_bytes = one.len() as i32;
    let all = [want(0, 0), want(1, 0), want(2, 0)];
    let response = fetch(
        &mut client,
        13,
        &session_fetch(topic_id, 0, 0, &all).with_max_bytes(max_bytes),
    );
    let session_id = response.session_id;
    assert_eq!(listed(&response), vec![(0, 1), (1, 0), (2, 0)]);
    // The client does not move its offsets (say it is paused): each incremental answer still
    // serves the partition after the one served last, not partition 0 again.
    let mut served = Vec::new();
    for epoch in 1..=4 {
        let request = session_fetch(topic_id, session_id, epoch, &[]).with_max_bytes(max_bytes);
        let response = fetch(&mut client, 13, &request);
        let with_records: Vec<i32> = listed(&response)
            .into_iter()
            .filter(|(_, batches)| *batches > 0)
            .map(|(partition, _)| partition)
            .collect();
        assert_eq!(with_records.len(), 1, "{:?}", listed(&response));
        served.push(with_records[0]);
    }
    assert_eq!(served, vec![0, 1, 2, 0]);
}
