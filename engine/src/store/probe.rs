//! The create-only probe: does this store refuse a second create-only write of one key?
//!
//! The metadata log's fence against a second writer is the create-only PUT (DESIGN invariant 2):
//! two agents racing for one log position must see one `Ok` and one `AlreadyExists`. A store that
//! ignores the precondition (an old S3-compatible server, an emulator, `AWS_CONDITIONAL_PUT`
//! turned off on a proxy) answers `Ok` to both and silently lets two writers each believe they own
//! the position. Nothing in normal operation would show it until two agents met. So the agent asks
//! once, at start: it writes a fresh probe key create-only, writes it again, and requires the
//! second answer to be `AlreadyExists` and the first bytes to be the ones stored; then it deletes
//! the key. Two PUTs, a GET and a DELETE, once per start.
//!
//! What it proves is narrow: the precondition is honoured for one key, once, sequentially. The
//! store conformance suite proves the rest (racing writers, every backend) before a store is
//! called supported; the probe catches a misconfigured or unsupported deployment.

use bytes::Bytes;

use super::error::{Op, StoreError};
use super::{ObjectStorage, StoreErrorKind, StoreResult};

/// The folder the probe writes its key in (one fresh key per probe, deleted afterwards).
pub const CREATE_ONLY_PROBE_FOLDER: &str = "probe";

/// Checks that `store` refuses a second create-only write of one key (see the module docs).
/// `probe_id` makes the key unique (an agent passes a random one). `Ok` when it does; an
/// [`StoreError::InvalidConfig`] naming the store's answer when it does not; the store's own
/// error when a call fails (unreachable, no permission).
pub async fn check_create_only(store: &dyn ObjectStorage, probe_id: &str) -> StoreResult<()> {
    let key = format!("{CREATE_ONLY_PROBE_FOLDER}/create-only-{probe_id}");
    let first = Bytes::from(format!("sluice create-only probe {probe_id}: first write"));
    let second = Bytes::from(format!("sluice create-only probe {probe_id}: second write"));
    store.put_create(&key, vec![first.clone()]).await?;
    let verdict = match store.put_create(&key, vec![second]).await {
        Ok(()) => Err(refusal(
            &key,
            "the second create-only PUT succeeded: the store ignored the precondition and \
             overwrote the object",
        )),
        Err(error) if error.kind() == StoreErrorKind::AlreadyExists => {
            match store.get(&key).await {
                Ok(stored) if stored == first => Ok(()),
                Ok(_) => Err(refusal(
                    &key,
                    "the second create-only PUT answered AlreadyExists but replaced the object",
                )),
                Err(error) => Err(error),
            }
        }
        Err(error) if error.is_transient() => Err(error),
        Err(error) => Err(refusal(
            &key,
            &format!(
                "the second create-only PUT failed with something else than AlreadyExists: {error}"
            ),
        )),
    };
    // Delete even after a refusal, so a probe leaves nothing behind; a failed delete only leaves a
    // few bytes under `probe/`, which nothing reads.
    if let Err(error) = store.delete(&key).await {
        tracing::warn!(%error, key, "could not delete the create-only probe");
    }
    verdict
}

fn refusal(key: &str, what: &str) -> StoreError {
    StoreError::invalid_config(format!(
        "this object store cannot do create-only writes, which the metadata log needs to fence \
         off a second writer ({what}; probe key {key:?}, {op}). Refusing to run the metadata log \
         on it: use a store that honours If-None-Match: * (S3), ifGenerationMatch=0 (GCS) or \
         If-None-Match: * on Put Blob (Azure); docs/object-stores.md lists the servers tested",
        op = Op::Put,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::ops::Range;
    use std::sync::Arc;

    use super::*;
    use crate::store::{ObjectInfo, ObjectStoreBackend};

    /// A store whose create-only PUT overwrites, as a server that ignores `If-None-Match` does.
    #[derive(Debug)]
    struct Overwrites(Arc<object_store::memory::InMemory>);

    #[async_trait::async_trait]
    impl ObjectStorage for Overwrites {
        async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
            use object_store::ObjectStoreExt;
            let payload: object_store::PutPayload = payload.into_iter().collect();
            self.0
                .put(&object_store::path::Path::from(key), payload)
                .await
                .unwrap();
            Ok(())
        }
        async fn get(&self, key: &str) -> StoreResult<Bytes> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .get(key)
                .await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .get_range(key, range)
                .await
        }
        async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .get_tail(key, len)
                .await
        }
        async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .head(key)
                .await
        }
        async fn list(&self, prefix: &str, after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .list(prefix, after)
                .await
        }
        async fn delete(&self, key: &str) -> StoreResult<()> {
            ObjectStoreBackend::new(self.0.clone(), "")
                .unwrap()
                .delete(key)
                .await
        }
    }

    #[tokio::test]
    async fn a_store_that_refuses_the_second_write_passes_and_is_left_clean() {
        let store = ObjectStoreBackend::in_memory();
        check_create_only(&store, "a").await.unwrap();
        assert!(
            store.list("", None).await.unwrap().is_empty(),
            "probe deleted"
        );
    }

    #[tokio::test]
    async fn a_store_that_overwrites_is_refused_with_a_clear_message() {
        let store = Overwrites(Arc::new(object_store::memory::InMemory::new()));
        let error = check_create_only(&store, "b").await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::InvalidConfig, "{error}");
        let message = error.to_string();
        assert!(
            message.contains("cannot do create-only writes"),
            "{message}"
        );
        assert!(message.contains("overwrote"), "{message}");
        assert!(
            store.list("", None).await.unwrap().is_empty(),
            "probe deleted"
        );
    }
}
