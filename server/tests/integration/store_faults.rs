//! The flusher under store faults: a lost PUT response is settled by the log (the produce
//! succeeds once), a PUT that keeps failing answers a retriable error and the next window
//! re-opens the log and carries on without reusing or skipping offsets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::sync::Arc;

use common::{RawClient, batch, produce_request, produce_results};
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use sluice_engine::store::{Fault, FaultInjection, ObjectStorage, Op, StoreConfig, open_store};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// `LogConfig::default().put_attempts_max`.
const PUT_ATTEMPTS: usize = 4;

fn produce_one(client: &mut RawClient) -> (i16, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[("faults", 0, batch(3, 1))]),
    );
    let result = &produce_results(&response)[0];
    (result.2, result.3)
}

#[test]
fn lost_responses_and_failed_puts_never_cost_offsets() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("file://{}?fsync=false", directory.path().display());
    let faults = Arc::new(FaultInjection::new(
        open_store(&StoreConfig::from_url(&url).unwrap()).unwrap(),
        7,
    ));
    let store: Arc<dyn ObjectStorage> = faults.clone();
    let agent = common::start_agent_with_store(store, |_| {});
    agent.create_topic("faults", 1);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(produce_one(&mut client), (0, 0));

    // The store applies the PUT but the answer is lost: the log reads the key back, finds its
    // own entry, and acknowledges it once.
    faults.fail_next(Op::Put, Fault::LostResponse).unwrap();
    assert_eq!(produce_one(&mut client), (0, 3));

    // Every attempt at the next position fails: the produce gets a retriable error...
    for _ in 0..PUT_ATTEMPTS {
        faults.fail_next(Op::Put, Fault::Error).unwrap();
    }
    assert_eq!(produce_one(&mut client).0, NOT_LEADER_OR_FOLLOWER);
    // ...and the next window re-opens the log (replay + a new claim) and continues the offsets
    // from the last acknowledged batch.
    assert_eq!(produce_one(&mut client), (0, 6));
    assert_eq!(produce_one(&mut client), (0, 9));
}

/// A store that fails while the agent starts (found by the bench's chaos campaign, where one 503
/// on a recovery GET made the agent exit): the open is tried again, and the agent starts, with
/// nothing lost or reused.
#[test]
fn transient_store_failures_while_starting_are_tried_again() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("file://{}?fsync=false", directory.path().display());
    let open = || open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
    {
        let agent = common::start_agent_with_store(open(), |_| {});
        agent.create_topic("faults", 1);
        let mut client = RawClient::connect(agent.addr());
        assert_eq!(produce_one(&mut client), (0, 0));
    }

    let faults = Arc::new(FaultInjection::new(open(), 7));
    // Recovery's first listing fails, then every attempt of the claim's PUT: two failed opens.
    faults.fail_next(Op::List, Fault::Error).unwrap();
    for _ in 0..PUT_ATTEMPTS {
        faults.fail_next(Op::Put, Fault::Error).unwrap();
    }
    let store: Arc<dyn ObjectStorage> = faults.clone();
    let agent = common::start_agent_with_store(store, |_| {});
    let injected = faults.injected();
    assert_eq!(injected.len(), 1 + PUT_ATTEMPTS, "{injected:?}");
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(
        produce_one(&mut client),
        (0, 3),
        "the first batch kept its offsets"
    );
}
