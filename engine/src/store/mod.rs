//! Object-store layer: the only door between the engine and durable storage.
//!
//! Every byte Sluice keeps lives in an object store (DESIGN invariant 1), so this module is small on
//! purpose. The engine sees one trait, [`ObjectStorage`], with seven methods whose contracts say what
//! is atomic and what is durable when they return. Everything else is a wrapper that implements the
//! same trait (the `object_store` habit):
//!
//! - [`ObjectStoreBackend`] adapts any `object_store::ObjectStore` (memory, local directory, S3 and
//!   S3-compatibles, Google Cloud Storage, Azure Blob Storage) — the engine never calls `object_store` outside this module, so swapping the
//!   client (or its HTTP stack) touches one file.
//! - [`StoreRuntime`] moves every call onto a dedicated tokio runtime behind a bounded channel: the
//!   agent's glommio cores cannot drive reqwest/hyper, and must never block on HTTP.
//! - [`LatencyModel`] delays calls by draws from published S3 latency distributions, so a laptop
//!   run shows the shape of a cloud run; [`FaultInjection`] injects errors, timeouts, slow calls and
//!   lost responses, seeded or scripted, for crash and recovery tests.
//! - [`PageCacheReads`] serves a local directory's ranged reads on the caller's thread when the
//!   page cache holds them (`preadv2(RWF_NOWAIT)`), and passes the rest to the runtime.
//!
//! The trade-off: the trait is narrower than `object_store` (no multipart, no copy, no overwrite).
//! Sluice writes each object once, to a new key, create-only where order or fencing matters
//! (invariant 2); leaving overwrite out of the trait makes that invariant hard to break by accident.
//! See `docs/object-stores.md` for backends, URLs and the latency profiles' sources.

mod azure;
mod backends;
mod config;
mod error;
mod fault;
mod gcs;
pub mod hedge;
mod latency;
mod page_cache;
mod probe;
mod runtime;
#[cfg(feature = "s3-test-server")]
mod test_server;

use std::ops::Range;

use bytes::Bytes;

pub use azure::{AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY, AzureConfig};
pub use backends::ObjectStoreBackend;
pub use config::{S3Config, StoreConfig, open_store};
pub use error::{Op, StoreError, StoreErrorKind};
pub use fault::{Fault, FaultInjection, FaultProbabilities};
pub use gcs::{GcsConfig, STORAGE_EMULATOR_HOST};
pub use latency::{LatencyDistribution, LatencyModel, LatencyProfile};
pub use page_cache::{INLINE_READ_BYTES_MAX, InlineReadHook, PageCacheReads};
pub use probe::{CREATE_ONLY_PROBE_FOLDER, check_create_only};
pub use runtime::{StoreRuntime, StoreRuntimeConfig};
#[cfg(feature = "s3-test-server")]
pub use test_server::{
    RequestObserver, S3TestServer, ServedRequest, TEST_ACCESS_KEY_ID, TEST_REGION,
    TEST_SECRET_ACCESS_KEY,
};

/// Result of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// One object as a listing or `head` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectInfo {
    /// The key relative to the store's root (a backend's key prefix is not part of it).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// The engine's view of an object store.
///
/// Keys are `/`-separated paths relative to the store's root, such as `log/00000000000000000042`.
/// Objects are immutable once written: there is no overwrite.
///
/// Errors: [`StoreError::kind`] tells callers what to do. After a failed *write* (`put_create`,
/// `delete`) with any error other than [`StoreError::AlreadyExists`] or [`StoreError::NotFound`],
/// the outcome is UNKNOWN: the write may or may not have happened (a response can be lost after the
/// store applied it). Callers that must know read the key back; a create-only PUT that is retried
/// and answers `AlreadyExists` may be its own earlier attempt.
#[async_trait::async_trait]
pub trait ObjectStorage: std::fmt::Debug + Send + Sync + 'static {
    /// Create-only write: atomically creates `key` holding the concatenation of `payload`'s chunks,
    /// or fails with [`StoreError::AlreadyExists`] if the key exists (S3 `If-None-Match: *`,
    /// `object_store::PutMode::Create`). Readers never see a partial object. Durable on `Ok`.
    ///
    /// The chunks are handed to the HTTP client as they are (no copy into one buffer).
    ///
    /// `AlreadyExists` does not prove another writer: the S3 client retries 5xx answers inside
    /// one call (`retries_max`), so the key may hold this call's own first attempt. Compare bytes.
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()>;

    /// The whole object.
    async fn get(&self, key: &str) -> StoreResult<Bytes>;

    /// Bytes `range.start..range.end` of the object. A range that ends past the object's end returns
    /// the bytes up to the end; an empty range or one starting at or past the end is an error.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// The last `len` bytes (the whole object if it is shorter) and the object's total size in bytes,
    /// in one request — how a reader fetches an object's trailer and index without a `head` first.
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)>;

    /// The object's size, without its body.
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo>;

    /// The objects under the folder `prefix` (`"log"` lists `log/...`, not `logs/...`; `""` lists
    /// everything), in lexicographic key order, strictly after `start_after` if given. A snapshot
    /// at some point during the call: on S3 it is paged (1,000 keys per request) and objects
    /// created meanwhile may or may not appear.
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>>;

    /// Deletes `key`. Deleting a missing key succeeds (S3 semantics), so a retried delete is safe.
    /// Durable on `Ok`.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Deletes every key in `keys`, in as few requests as the backend allows (S3's DeleteObjects
    /// takes 1,000 keys per request), and answers one result per key, in order, with `delete`'s
    /// contract for each (an absent key is deleted; after an error the outcome is unknown).
    /// Garbage collection deletes hundreds of objects a round: one request instead of hundreds
    /// keeps it from competing with the hot path's PUTs for the store's connections.
    ///
    /// The default deletes one key after the other.
    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        let mut results = Vec::with_capacity(keys.len());
        for key in keys {
            results.push(self.delete(key).await);
        }
        results
    }
}

/// A shared store is a store: wrappers and the engine hold `Arc<dyn ObjectStorage>`.
#[async_trait::async_trait]
impl<T: ObjectStorage + ?Sized> ObjectStorage for std::sync::Arc<T> {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        (**self).put_create(key, payload).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        (**self).get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        (**self).get_range(key, range).await
    }
    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        (**self).get_tail(key, len).await
    }
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        (**self).head(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        (**self).list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        (**self).delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        (**self).delete_many(keys).await
    }
}
