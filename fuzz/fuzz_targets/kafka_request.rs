//! A whole Kafka request as the agent receives it: the frame layer (`split_frame`), the header and
//! shape checks and the body decoder (`codec::decode_request`), then dispatch to every handler
//! (produce, fetch, the admin APIs, consumer groups) of a real agent on an in-memory store. See
//! `src/agent.rs` for how the agent runs without sockets.
//!
//! Checks, beyond "no panic" (in the agent's tasks too):
//! - every answer is a response frame of the request's API and version, with its correlation id,
//!   that a client decodes to the last byte; only a Produce (acks=0) goes unanswered;
//! - whatever the requests made the agent write, the store's log recovers, the recovered state
//!   survives a checkpoint (encode, decode, the same state), and an agent restarted on the store
//!   opens the log and loads every consumer group the first one stored;
//! - every acknowledged produce is in the recovered state: its partition's high watermark is past
//!   the acknowledged base offset.
//!
//! Input: what a client sends on one connection, size-prefixed frames back to back (the seeds are
//! real clients' traffic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::metadata::MetadataState;
use sluice_engine::types::TopicPartition;

fuzz_target!(|data: &[u8]| {
    let report = sluice_fuzz::agent::run(data);
    if let Some(error) = &report.groups_not_loaded {
        panic!("a restarted agent cannot load the stored groups: {error}");
    }
    let state = match report.recovered {
        Some(Ok(state)) => state,
        Some(Err(error)) => panic!("the agent wrote a log it cannot recover: {error}"),
        None => return,
    };
    let encoded = state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&encoded)
        .unwrap_or_else(|error| panic!("checkpoint of the recovered state: {error}"));
    assert_eq!(
        decoded, state,
        "the recovered state changed through a checkpoint"
    );
    if report.deleted_topics {
        return;
    }
    for (topic, partition, base_offset) in &report.acknowledged {
        let Some((topic_id, _)) = state.topic_by_name(topic) else {
            panic!("acknowledged a produce to {topic}, which recovery does not know");
        };
        let high_watermark = state
            .high_watermark(TopicPartition::new(topic_id, *partition))
            .unwrap_or_else(|error| panic!("acknowledged {topic}/{partition}: {error}"));
        assert!(
            u64::try_from(*base_offset).is_ok_and(|base| base < high_watermark),
            "{topic}/{partition}: acknowledged at {base_offset}, recovered high watermark {high_watermark}"
        );
    }
});
