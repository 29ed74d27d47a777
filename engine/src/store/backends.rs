//! [`ObjectStoreBackend`]: the one adapter from `object_store` to [`ObjectStorage`].
//!
//! All backends (memory, local directory, S3 and S3-compatibles, GCS, Azure Blob) go through the
//! same code, so the conformance suite that passes on memory tells us something about S3. The
//! adapter adds what the engine's contract promises and `object_store` leaves open: a sorted
//! listing strictly after its offset, a tail read where the service has no suffix ranges (Azure),
//! `delete` of a missing key
//! succeeding on every backend, and errors mapped to kinds a caller can act on.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::error::{Op, StoreError, StoreErrorKind};
use super::{ObjectInfo, ObjectStorage, StoreResult};

/// Adapts any `object_store::ObjectStore` to [`ObjectStorage`], optionally under a key prefix
/// (a folder inside the bucket or directory that this store owns).
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    inner: Arc<dyn ObjectStore>,
    /// Folder prepended to every key, without a trailing `/`; empty for the root.
    key_prefix: String,
    /// The HTTP client's per-request timeout, reported in [`StoreError::Timeout`]; 0 if unknown.
    request_timeout_ms: u64,
    /// Whether the service answers a suffix range (`Range: bytes=-N`). Azure Blob does not
    /// (`object_store` refuses to send one): there `get_tail` is a HEAD and a ranged GET.
    suffix_ranges: bool,
}

impl ObjectStoreBackend {
    /// Wraps `inner`; `key_prefix` (such as `"cluster-a/agent"`, may be empty) is prepended to keys.
    pub fn new(inner: Arc<dyn ObjectStore>, key_prefix: &str) -> StoreResult<ObjectStoreBackend> {
        let key_prefix = key_prefix.trim_matches('/').to_owned();
        if !key_prefix.is_empty() {
            Path::parse(&key_prefix).map_err(|error| {
                StoreError::invalid_config(format!("invalid key prefix {key_prefix:?}: {error}"))
            })?;
        }
        Ok(ObjectStoreBackend {
            inner,
            key_prefix,
            request_timeout_ms: 0,
            suffix_ranges: true,
        })
    }

    /// Sets the request timeout that `Timeout` errors report (the HTTP client enforces it).
    pub fn with_request_timeout_ms(mut self, request_timeout_ms: u64) -> ObjectStoreBackend {
        self.request_timeout_ms = request_timeout_ms;
        self
    }

    /// Declares that the service cannot answer suffix ranges, so `get_tail` asks for the size
    /// first (two requests instead of one).
    pub fn without_suffix_ranges(mut self) -> ObjectStoreBackend {
        self.suffix_ranges = false;
        self
    }

    /// A fresh, empty in-memory store (`object_store::memory::InMemory`): for tests and benches.
    pub fn in_memory() -> ObjectStoreBackend {
        ObjectStoreBackend {
            inner: Arc::new(object_store::memory::InMemory::new()),
            key_prefix: String::new(),
            request_timeout_ms: 0,
            suffix_ranges: true,
        }
    }

    /// A store in the local directory `dir`, created if missing, with fsync on: a write is on disk
    /// (file and directory entry) when it returns, as the trait promises. Create-only writes are
    /// atomic: `object_store` stages a temporary file and hard-links it into place, which fails if
    /// the target exists.
    pub fn local_dir(dir: impl AsRef<std::path::Path>) -> StoreResult<ObjectStoreBackend> {
        ObjectStoreBackend::local_dir_with_fsync(dir, true)
    }

    /// [`ObjectStoreBackend::local_dir`] choosing fsync. Without it a write survives a process crash
    /// but not a power loss: for tests and benches that measure something else than the disk.
    pub fn local_dir_with_fsync(
        dir: impl AsRef<std::path::Path>,
        fsync: bool,
    ) -> StoreResult<ObjectStoreBackend> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|error| {
            StoreError::invalid_config(format!(
                "cannot create store directory {}: {error}",
                dir.display()
            ))
        })?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|error| {
                StoreError::invalid_config(format!(
                    "cannot open store directory {}: {error}",
                    dir.display()
                ))
            })?
            .with_fsync(fsync);
        ObjectStoreBackend::new(Arc::new(local), "")
    }

    /// The wrapped store, for the rare caller that needs an `object_store` feature the trait lacks.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn path(&self, op: Op, key: &str) -> StoreResult<Path> {
        let full = if self.key_prefix.is_empty() {
            Path::parse(key)
        } else {
            Path::parse(format!("{}/{key}", self.key_prefix))
        };
        full.map_err(|error| StoreError::Other {
            op,
            key: key.to_owned(),
            message: format!("invalid key: {error}"),
        })
    }

    /// The folder to list, or `None` for the store's root.
    fn folder(&self, prefix: &str) -> StoreResult<Option<Path>> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            return self.path(Op::List, prefix).map(Some);
        }
        Ok((!self.key_prefix.is_empty()).then(|| Path::from(self.key_prefix.as_str())))
    }

    fn relative_key(&self, location: &Path) -> String {
        let full = location.as_ref();
        if self.key_prefix.is_empty() {
            return full.to_owned();
        }
        full.strip_prefix(self.key_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(full)
            .to_owned()
    }

    fn map_error(&self, op: Op, key: &str, error: object_store::Error) -> StoreError {
        map_object_store_error(op, key, self.request_timeout_ms, error)
    }
}

/// Maps `object_store` errors to the kinds the engine branches on. Transport failures and 5xx/429
/// answers (after `object_store`'s own bounded retries) are transient; the rest is not.
pub(crate) fn map_object_store_error(
    op: Op,
    key: &str,
    timeout_ms: u64,
    error: object_store::Error,
) -> StoreError {
    let key = key.to_owned();
    match error {
        object_store::Error::NotFound { .. } => StoreError::NotFound { key },
        object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists { key },
        // S3-compatibles answer a failed If-None-Match with 412 (or 304): the key is taken.
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. }
            if op == Op::Put =>
        {
            StoreError::AlreadyExists { key }
        }
        other => {
            let message = error_chain(&other);
            match transport_kind(&other) {
                Some(object_store::client::HttpErrorKind::Timeout) => StoreError::Timeout {
                    op,
                    key,
                    after_ms: timeout_ms,
                },
                Some(_) => StoreError::Unavailable { op, key, message },
                None if is_retryable_status(&message) => {
                    StoreError::Unavailable { op, key, message }
                }
                None => StoreError::Other { op, key, message },
            }
        }
    }
}

/// The HTTP transport failure under `error`, if there is one.
fn transport_kind(error: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            return Some(http.kind());
        }
        source = current.source();
    }
    None
}

/// `object_store` does not export the HTTP status of a failed request (its `RetryError` is private),
/// so the status is read from the message it formats: "Server returned non-2xx status code: 503 ...".
fn is_retryable_status(message: &str) -> bool {
    const MARKER: &str = "status code: ";
    message.match_indices(MARKER).any(|(at, _)| {
        let code = message
            .get(at + MARKER.len()..at + MARKER.len() + 3)
            .unwrap_or("");
        code.starts_with('5') || code == "429"
    })
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = current.source();
    }
    message
}

#[async_trait::async_trait]
impl ObjectStorage for ObjectStoreBackend {
    async fn put_create(&self, key: &str, payload: Vec<Bytes>) -> StoreResult<()> {
        let path = self.path(Op::Put, key)?;
        let payload: PutPayload = payload.into_iter().collect();
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, payload, options)
            .await
            .map(|_| ())
            .map_err(|error| self.map_error(Op::Put, key, error))
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = self.path(Op::Get, key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|error| self.map_error(Op::Get, key, error))?;
        result
            .bytes()
            .await
            .map_err(|error| self.map_error(Op::Get, key, error))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path(Op::Get, key)?;
        if range.start >= range.end {
            return Err(StoreError::Other {
                op: Op::Get,
                key: key.to_owned(),
                message: format!("empty byte range {}..{}", range.start, range.end),
            });
        }
        self.inner
            .get_range(&path, range)
            .await
            .map_err(|error| self.map_error(Op::Get, key, error))
    }

    async fn get_tail(&self, key: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        if len == 0 {
            // A zero-length suffix is not a valid HTTP range; the size alone is what was asked.
            let info = self.head(key).await?;
            return Ok((Bytes::new(), info.size));
        }
        if !self.suffix_ranges {
            let size = self.head(key).await?.size;
            if size == 0 {
                return Ok((Bytes::new(), 0));
            }
            let bytes = self.get_range(key, size.saturating_sub(len)..size).await?;
            return Ok((bytes, size));
        }
        let path = self.path(Op::Get, key)?;
        let options = GetOptions {
            range: Some(GetRange::Suffix(len)),
            ..GetOptions::default()
        };
        let result = match self.inner.get_opts(&path, options).await {
            Ok(result) => result,
            Err(error) => {
                let error = self.map_error(Op::Get, key, error);
                if error.kind() != StoreErrorKind::Other {
                    return Err(error);
                }
                // S3 answers 416 to any range of an empty object; its tail is simply empty.
                return match self.head(key).await {
                    Ok(info) if info.size == 0 => Ok((Bytes::new(), 0)),
                    _ => Err(error),
                };
            }
        };
        let size = result.meta.size;
        let bytes = result
            .bytes()
            .await
            .map_err(|error| self.map_error(Op::Get, key, error))?;
        Ok((bytes, size))
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let path = self.path(Op::Head, key)?;
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|error| self.map_error(Op::Head, key, error))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: meta.size,
        })
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> StoreResult<Vec<ObjectInfo>> {
        let folder = self.folder(prefix)?;
        let stream = match start_after {
            // S3 pushes the offset down as `start-after`, so a tail listing reads only new pages.
            Some(after) => {
                let offset = self.path(Op::List, after)?;
                self.inner.list_with_offset(folder.as_ref(), &offset)
            }
            None => self.inner.list(folder.as_ref()),
        };
        let metas: Vec<object_store::ObjectMeta> = stream
            .try_collect()
            .await
            .map_err(|error| self.map_error(Op::List, prefix, error))?;
        let mut objects: Vec<ObjectInfo> = metas
            .iter()
            .map(|meta| ObjectInfo {
                key: self.relative_key(&meta.location),
                size: meta.size,
            })
            .collect();
        // `object_store` does not promise an order (the local backend walks directories); the
        // engine relies on key order being log order.
        objects.sort_unstable();
        // Nor does every server honour the offset it is sent: fake-gcs-server ignores the XML
        // listing's `start-after` (docs/object-stores.md, "Servers under test"). Filtering here
        // costs nothing where the server did.
        if let Some(after) = start_after {
            let first_after = objects.partition_point(|object| object.key.as_str() <= after);
            objects.drain(..first_after);
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(Op::Delete, key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.map_error(Op::Delete, key, error)),
        }
    }

    /// `object_store`'s bulk delete: S3 sends DeleteObjects requests of up to 1,000 keys (per-key
    /// outcomes in its answer); other backends delete key by key, concurrently.
    async fn delete_many(&self, keys: &[String]) -> Vec<StoreResult<()>> {
        let mut results: Vec<Option<StoreResult<()>>> = Vec::with_capacity(keys.len());
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            match self.path(Op::Delete, key) {
                Ok(path) => {
                    results.push(None);
                    paths.push(path);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let locations = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let answers: Vec<object_store::Result<object_store::path::Path>> =
            self.inner.delete_stream(locations).collect().await;
        // One answer per key, in input order — except that a failed bulk request answers one
        // error for all of its keys: then a key is deleted only if its path came back.
        let mut answered = if answers.len() == paths.len() {
            answers
                .into_iter()
                .map(|answer| match answer {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(error) => Err(error.to_string()),
                })
                .collect::<Vec<Result<(), String>>>()
        } else {
            let mut deleted = std::collections::HashSet::new();
            let mut first_error = None;
            for answer in answers {
                match answer {
                    Ok(path) => {
                        deleted.insert(path);
                    }
                    Err(error) => {
                        first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            let error = first_error.unwrap_or_else(|| "no answer for this key".to_owned());
            paths
                .iter()
                .map(|path| {
                    if deleted.contains(path) {
                        Ok(())
                    } else {
                        Err(error.clone())
                    }
                })
                .collect()
        }
        .into_iter();
        results
            .into_iter()
            .zip(keys)
            .map(|(result, key)| {
                if let Some(result) = result {
                    return result;
                }
                match answered.next() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(message)) => Err(StoreError::Unavailable {
                        op: Op::Delete,
                        key: key.clone(),
                        message,
                    }),
                    None => Err(StoreError::Unavailable {
                        op: Op::Delete,
                        key: key.clone(),
                        message: "no answer for this key".to_owned(),
                    }),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn retryable_status_is_read_from_the_message() {
        assert!(is_retryable_status(
            "Server returned non-2xx status code: 503 Service Unavailable: "
        ));
        assert!(is_retryable_status(
            "x: Server returned non-2xx status code: 429 Too Many Requests"
        ));
        assert!(!is_retryable_status(
            "Server returned non-2xx status code: 403 Forbidden"
        ));
        assert!(!is_retryable_status("status code: 5"));
    }

    #[tokio::test]
    async fn key_prefix_is_hidden_from_callers() {
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = ObjectStoreBackend::new(memory.clone(), "/tenant/a/").unwrap();
        store
            .put_create("log/1", vec![Bytes::from_static(b"x")])
            .await
            .unwrap();
        // The object sits under the prefix in the underlying store ...
        memory.head(&Path::from("tenant/a/log/1")).await.unwrap();
        // ... and callers see only their own key.
        let listed = store.list("log", None).await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "log/1".to_owned(),
                size: 1
            }]
        );
        let root = store.list("", None).await.unwrap();
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].key, "log/1");
    }

    #[test]
    fn invalid_prefix_is_a_config_error() {
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let error = ObjectStoreBackend::new(memory, "a/../b").unwrap_err();
        assert_eq!(error.kind(), super::super::StoreErrorKind::InvalidConfig);
    }
}
