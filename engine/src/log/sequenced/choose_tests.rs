//! Choosing an incarnation's token ([`SequencedWriter::choose`]) against a real S3-API server on
//! loopback: a token is taken only when no object in the bucket carries it — no window object
//! under `data/{token}/` and no compacted object a cluster's compactor named by it. The draw is
//! forced ([`SequencedWriter::choose_drawing`]) so that the tokens in use come up first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;

use super::{SequencedWriter, TOKEN_CHOICES_MAX};
use crate::log::LogError;
use crate::store::{ObjectStorage, S3TestServer, StoreConfig, open_store};
use crate::types::{agent_object_id, cluster_compacted_object_id, compacted_object_id, object_key};

async fn put(store: &dyn ObjectStorage, key: &str) {
    store
        .put_create(key, vec![Bytes::from_static(b"object")])
        .await
        .unwrap();
}

fn s3(server: &S3TestServer, prefix: &str) -> Arc<dyn ObjectStorage> {
    open_store(&StoreConfig::from_url(&server.store_url(prefix)).unwrap()).unwrap()
}

/// A token whose old incarnation's compacted object is still in `compacted/` is passed over even
/// though its `data/` folder is empty (the collector may be timing that token as gone, and would
/// time a new incarnation under it from then), as is a token with a window object; an agent
/// alone's compacted object (named by a writer epoch, whatever its number) carries no token and
/// takes none.
#[tokio::test(flavor = "current_thread")]
async fn a_token_that_names_an_object_in_compacted_or_data_is_not_chosen() {
    let server = S3TestServer::start().unwrap();
    let store = s3(&server, "choose");
    let compacted_token = 7;
    let window_token = 8;
    let epoch_number = 9;
    put(
        store.as_ref(),
        &object_key(cluster_compacted_object_id(compacted_token, 3)),
    )
    .await;
    put(
        store.as_ref(),
        &object_key(agent_object_id(window_token, 0)),
    )
    .await;
    put(
        store.as_ref(),
        &object_key(compacted_object_id(u64::from(epoch_number), 0)),
    )
    .await;

    let mut draws = vec![compacted_token, window_token, epoch_number].into_iter();
    let mut drawn = 0;
    let writer = SequencedWriter::choose_drawing(store.as_ref(), 60_000, &mut || {
        drawn += 1;
        draws.next().expect("drew more than the tokens offered")
    })
    .await
    .unwrap();
    assert_eq!(writer.token, epoch_number);
    assert_eq!(writer.record_deadline_ms, 60_000);
    assert_eq!(drawn, 3, "the two tokens in use were drawn and passed over");
}

/// A draw that only ever gives a token in use gives up after [`TOKEN_CHOICES_MAX`] tries and
/// says where the tokens were in use.
#[tokio::test(flavor = "current_thread")]
async fn only_tokens_in_use_give_up_after_the_tries() {
    let server = S3TestServer::start().unwrap();
    let store = s3(&server, "give-up");
    put(
        store.as_ref(),
        &object_key(cluster_compacted_object_id(7, 0)),
    )
    .await;
    let mut drawn = 0;
    let error = SequencedWriter::choose_drawing(store.as_ref(), 60_000, &mut || {
        drawn += 1;
        7
    })
    .await
    .expect_err("every draw was in use");
    assert_eq!(drawn, TOKEN_CHOICES_MAX);
    assert!(
        matches!(&error, LogError::Broken { reason } if reason.contains("compacted/")),
        "{error}"
    );
}
