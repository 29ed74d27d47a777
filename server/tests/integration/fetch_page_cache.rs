//! A restarted agent on a local directory (its default store) reads its window objects back from
//! the page cache on the network core (`PageCacheReads`): the same bytes at the same offsets,
//! counted as the store's GETs and as inline GETs in the metrics.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;
use crate::fetch_support;
use crate::metrics::{get, sample};

use common::{RawClient, batch};
use fetch_support::*;

const INLINE_GETS: &str = "sluice_store_inline_gets_total{pool=\"hot\"}";
const GETS: &str = "sluice_store_requests_total{pool=\"hot\",op=\"get\"}";

#[test]
fn a_restarted_agent_reads_its_local_directory_from_the_page_cache() {
    let with_metrics = |config: &mut sluice_server::Config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
    };
    let agent = common::start_agent(with_metrics);
    let mut client = RawClient::connect(agent.addr());
    let topic_id = create_topic(&mut client, "paged", 2);
    for round in 0..6 {
        produce(&mut client, "paged", round % 2, batch(3, i64::from(round)));
    }
    let read_all = |client: &mut RawClient| {
        let response = fetch(
            client,
            13,
            &fetch_request("paged", topic_id, &[want(0, 0), want(1, 0)], 0, 0),
        );
        partitions(&response)
            .iter()
            .map(|partition| batches_of(&partition.records))
            .collect::<Vec<_>>()
    };
    let before_restart = read_all(&mut client);
    assert_eq!(before_restart[0].len(), 3);
    assert_eq!(before_restart[1].len(), 3);
    drop(client);
    let data_dir = agent.stop().unwrap();

    // Same directory, new agent: its block cache is empty, the kernel's page cache is not.
    let agent = common::start_agent_in(data_dir, with_metrics);
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    let inline_before = sample(&get(endpoint, "/metrics").1, INLINE_GETS).unwrap();
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(
        read_all(&mut client),
        before_restart,
        "the same bytes at the same offsets"
    );
    let metrics = get(endpoint, "/metrics").1;
    let inline = sample(&metrics, INLINE_GETS).unwrap() - inline_before;
    assert!(
        inline >= 1.0,
        "the window objects were read inline: {inline} inline GETs"
    );
    assert!(
        sample(&metrics, GETS).unwrap() >= inline,
        "inline GETs are GETs of the store too"
    );
}
