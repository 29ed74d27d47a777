//! ACLs in a cluster: a binding created through one agent is enforced by the others. Each agent
//! keeps its own snapshot of the bindings (`auth::AclBoard`); bindings that arrive in other
//! agents' records must reach it too (read again once a second, `auth::ACL_REFRESH_MS`).
//!
//! Two agents of one cluster in process (one directory store, one PostgreSQL), the ACL authorizer
//! on with `allow_everyone_if_no_acl_found`, clients anonymous on plaintext listeners.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use crate::acls::{DENY, LITERAL, TOPIC, WRITE, create, creation, delete_filter};
use crate::common::{
    self, RawClient, batch, create_topics_request, produce_request, produce_results,
};

use kafka_protocol::messages::{
    ApiKey, CreateTopicsResponse, DeleteAclsRequest, DeleteAclsResponse, ProduceResponse,
};
use sluice_server::Agent;
use sluice_tests::postgres::TestPostgres;

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// Far longer than the refresh period; the wait ends at the event.
const ENFORCED_WITHIN: Duration = Duration::from_secs(20);

fn start(url: &str, store_dir: &std::path::Path, agent_id: &str) -> (Agent, tempfile::TempDir) {
    common::start_cluster_agent(url, store_dir, agent_id, |config| {
        config.authorizer = Some("acl".to_owned());
        config.allow_everyone_if_no_acl_found = true;
    })
}

/// The error code of one produce to `guarded` partition 0 through `client`.
fn produce(client: &mut RawClient, round: i64) -> i16 {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(-1, &[("guarded", 0, batch(1, round))]),
    );
    produce_results(&response)[0].2
}

/// Produces through `client` until the answer is `code`; how long that took.
fn until(client: &mut RawClient, code: i16, what: &str) -> Duration {
    let started = Instant::now();
    for round in 0.. {
        if produce(client, round) == code {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ENFORCED_WITHIN,
            "{what}: not within {ENFORCED_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!()
}

#[test]
fn a_binding_made_through_one_agent_is_enforced_by_the_other() {
    let Some(postgres) = TestPostgres::start_or_skip("cluster_acls") else {
        return;
    };
    let store_dir = tempfile::tempdir().unwrap();
    let (a, _a_dir) = start(&postgres.url(), store_dir.path(), "a");
    let (b, _b_dir) = start(&postgres.url(), store_dir.path(), "b");
    let mut to_a = RawClient::connect(a.local_addr());
    let mut to_b = RawClient::connect(b.local_addr());
    let created: CreateTopicsResponse = to_b.call(
        ApiKey::CreateTopics,
        7,
        &create_topics_request(&[("guarded", 1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    // A learns of the topic from B's record; no binding names it, so everyone may write.
    until(&mut to_a, 0, "A accepting a produce to B's topic");

    // B denies anonymous writes; A must refuse them too, without a restart.
    let deny = creation(TOPIC, "guarded", LITERAL, "User:ANONYMOUS", WRITE, DENY);
    assert_eq!(create(&mut to_b, 3, vec![deny]), vec![0]);
    assert_eq!(
        produce(&mut to_b, 1),
        TOPIC_AUTHORIZATION_FAILED,
        "B itself at once"
    );
    let denied_after = until(
        &mut to_a,
        TOPIC_AUTHORIZATION_FAILED,
        "A enforcing B's DENY",
    );

    // B deletes every binding; A lets the writes through again.
    let deleted: DeleteAclsResponse = to_b.call(
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![delete_filter()]),
    );
    assert_eq!(deleted.filter_results[0].error_code, 0);
    let allowed_after = until(&mut to_a, 0, "A seeing B's DeleteAcls");
    eprintln!(
        "cluster_acls: A enforced B's DENY after {denied_after:?} and its deletion after {allowed_after:?}"
    );
    drop((to_a, to_b));
    a.shutdown().unwrap();
    b.shutdown().unwrap();
}
