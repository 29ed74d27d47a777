//! Log entries as recovery reads them from the bucket: each entry's tail (trailer, index, commands
//! section) through `read_entry`, then applied in order by the metadata state machine (`recover`
//! over an in-memory store). This is every byte of `log/…` a restarted agent trusts.
//!
//! Checks, beyond "no panic", whenever recovery succeeds:
//! - the recovered state survives a checkpoint: it encodes, decodes to the same state and
//!   re-encodes to the same bytes;
//! - recovery is deterministic: the same entries give the same state again;
//! - a checkpoint in the middle changes nothing: recovering the first half, checkpointing it, then
//!   recovering from that checkpoint plus the rest of the log gives the state of a full replay.
//!
//! Input: a mode byte, then up to 8 entries, each prefixed by its length (`u32`, little-endian),
//! stored at `log/0`, `log/1`, …. Mode bit 0 repairs each entry's header CRC, commands section
//! CRC and tail checksum first; bit 1 makes recovery's first tail read short (the `NeedMore` path).
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use sluice_engine::log::{LogConfig, recover, write_checkpoint};
use sluice_engine::metadata::MetadataState;
use sluice_engine::store::{ObjectStorage, ObjectStoreBackend};
use sluice_engine::types::{LogSeq, log_key};

const ENTRIES_MAX: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = sluice_fuzz::mode(data) else {
        return;
    };
    let entries: Vec<Bytes> = sluice_fuzz::split_parts(rest, ENTRIES_MAX)
        .into_iter()
        .map(|entry| {
            let mut entry = entry.to_vec();
            if mode & 1 == 1 {
                sluice_fuzz::repair::repair_object_commands(&mut entry);
                sluice_fuzz::repair::repair_object(&mut entry);
            }
            Bytes::from(entry)
        })
        .collect();
    let config = LogConfig {
        tail_read_bytes: if mode & 2 == 2 {
            1
        } else {
            LogConfig::default().tail_read_bytes
        },
        ..LogConfig::default()
    };
    let Ok(full) = block_on(recover_from(&entries, &config)) else {
        return;
    };
    let encoded = full.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&encoded)
        .unwrap_or_else(|error| panic!("a recovered state's checkpoint does not decode: {error}"));
    assert_eq!(
        decoded, full,
        "the recovered state changed through a checkpoint"
    );
    assert_eq!(decoded.encode_checkpoint(), encoded);
    let again = block_on(recover_from(&entries, &config)).expect("the same log recovers twice");
    assert_eq!(again, full, "recovery is not deterministic");

    // Half the log, a checkpoint of it, then the rest.
    let half = entries.len() / 2;
    let store = memory_store();
    block_on(put_entries(&*store, &entries[..half], 0));
    let (state, _) =
        block_on(recover(&*store, &config, None)).expect("a prefix of a good log recovers");
    block_on(write_checkpoint(&*store, &state)).expect("checkpoint in memory");
    block_on(put_entries(&*store, &entries[half..], half));
    let (resumed, stats) =
        block_on(recover(&*store, &config, None)).expect("checkpoint plus the rest recovers");
    assert_eq!(stats.checkpoint_seq, state.last_offered_seq());
    assert_eq!(
        resumed, full,
        "checkpoint plus replay differs from a full replay"
    );
});

fn memory_store() -> Arc<dyn ObjectStorage> {
    Arc::new(ObjectStoreBackend::in_memory())
}

async fn put_entries(store: &dyn ObjectStorage, entries: &[Bytes], first: usize) {
    for (seq, entry) in (first..).zip(entries) {
        store
            .put_create(&log_key(LogSeq(seq as u64)), vec![entry.clone()])
            .await
            .expect("put into an empty memory store");
    }
}

async fn recover_from(entries: &[Bytes], config: &LogConfig) -> Result<MetadataState, String> {
    let store = memory_store();
    put_entries(&*store, entries, 0).await;
    recover(&*store, config, None)
        .await
        .map(|(state, _)| state)
        .map_err(|error| error.to_string())
}
