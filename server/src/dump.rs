//! `sluice dump`: print a stored object (header, index, batch headers) as JSON.
//!
//! The object is a file on disk (a local-directory store keeps each object as a file) or a key in a
//! store given by URL. Nothing is written; a corrupt object is reported with its key and the reason,
//! the same errors the agent would log.

use std::path::Path;

use bytes::Bytes;
use sluice_engine::format::{ObjectReader, to_json};
use sluice_engine::store::{StoreConfig, StoreRuntime, StoreRuntimeConfig, open_store};

/// What to dump and where from.
#[derive(Debug, Clone)]
pub struct DumpRequest {
    /// A file path, or a key such as `log/00000000000000000042` when `store` is given.
    pub object: String,
    /// Object store URL (`s3://…`, `file:///…`); `None` reads `object` as a file.
    pub store: Option<String>,
    /// Check every batch's CRC-32C too (reads every payload byte).
    pub verify_batches: bool,
}

/// Reads and decodes the object; returns pretty JSON or a message for the operator.
pub fn dump(request: &DumpRequest) -> Result<String, String> {
    let (key, bytes) = match &request.store {
        None => {
            let path = Path::new(&request.object);
            let bytes = std::fs::read(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            (request.object.clone(), Bytes::from(bytes))
        }
        Some(url) => {
            let config = StoreConfig::from_url(url).map_err(|error| error.to_string())?;
            let store = open_store(&config).map_err(|error| error.to_string())?;
            let store = StoreRuntime::start(
                store,
                StoreRuntimeConfig {
                    worker_threads: 1,
                    inflight_requests_max: 4,
                    ..StoreRuntimeConfig::default()
                },
            )
            .map_err(|error| error.to_string())?;
            let bytes = futures::executor::block_on(store.get(&request.object))
                .map_err(|error| error.to_string())?;
            (request.object.clone(), bytes)
        }
    };
    let reader = ObjectReader::open(&key, bytes).map_err(|error| error.to_string())?;
    let mut json = to_json(&key, &reader).map_err(|error| error.to_string())?;
    if request.verify_batches {
        let verified = reader.verify_batches().map_err(|error| error.to_string());
        if let serde_json::Value::Object(map) = &mut json {
            map.insert(
                "batches_verified".to_owned(),
                serde_json::Value::Bool(verified.is_ok()),
            );
        }
        verified?;
    }
    serde_json::to_string_pretty(&json).map_err(|error| error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice_engine::batch::{BatchBuilder, validate_batch};
    use sluice_engine::format::{EntryHeader, EntryKind, ObjectBuilder};
    use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

    fn object() -> Bytes {
        let header = EntryHeader {
            seq: LogSeq(42),
            writer_epoch: 3,
            prev_seq: Some(LogSeq(41)),
            entry_nonce: 7,
            kind: EntryKind::Data,
            created_at_ms: 1_700_000_000_000,
        };
        let mut builder = ObjectBuilder::new(header);
        let batch = BatchBuilder::new(1_700_000_000_000)
            .record(0, Some(b"k"), b"v")
            .encode();
        let batch_header = validate_batch(&batch).unwrap();
        builder
            .push_batch(
                TopicPartition::new(TopicId([9; 16]), 3),
                &batch_header,
                batch,
            )
            .unwrap();
        builder.finish().unwrap().to_contiguous()
    }

    #[test]
    fn dumps_a_file_and_names_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000042");
        std::fs::write(&path, object()).unwrap();
        let request = DumpRequest {
            object: path.display().to_string(),
            store: None,
            verify_batches: true,
        };
        let json = dump(&request).unwrap();
        assert!(json.contains("\"batches_verified\": true"), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(value.to_string().contains("42"), "{value}");

        let mut corrupt = object().to_vec();
        let at = corrupt.len() - 10;
        corrupt.truncate(at);
        std::fs::write(&path, corrupt).unwrap();
        let error = dump(&request).unwrap_err();
        assert!(error.contains("00000000000000000042"), "{error}");
    }

    #[test]
    fn dumps_a_key_from_a_store_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = open_store(&StoreConfig::from_url(&url).unwrap()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.put_create("log/00000000000000000042", vec![object()]))
            .unwrap();
        let request = DumpRequest {
            object: "log/00000000000000000042".to_owned(),
            store: Some(url),
            verify_batches: false,
        };
        assert!(dump(&request).unwrap().contains("\"writer_epoch\": 3"));
        let missing = DumpRequest {
            object: "log/nope".to_owned(),
            ..request
        };
        assert!(dump(&missing).is_err());
    }
}
