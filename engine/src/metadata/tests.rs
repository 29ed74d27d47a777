#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use super::*;
use crate::types::{LogSeq, TopicId, TopicPartition};

fn id(n: u8) -> TopicId {
    TopicId([n; 16])
}

/// A state driven through the public API only, with a helper for the chain fields.
struct Harness {
    state: MetadataState,
    next_seq: u64,
}

impl Harness {
    /// A log already claimed by epoch 1.
    fn new() -> Harness {
        let mut harness = Harness {
            state: MetadataState::new(),
            next_seq: 0,
        };
        let events = harness.entry(EntryKind::Claim, 1, &[], None);
        assert_eq!(events, vec![Event::Claimed { writer_epoch: 1 }]);
        harness
    }

    fn entry(
        &mut self,
        kind: EntryKind,
        epoch: u64,
        commands: &[Command],
        segments: Option<Vec<SegmentCommit>>,
    ) -> Vec<Event> {
        let seq = LogSeq(self.next_seq);
        self.next_seq += 1;
        let meta = EntryMeta {
            seq,
            writer_epoch: epoch,
            prev_seq: self.state.last_valid_seq(),
            kind,
        };
        let commit = segments.map(|segments| ObjectCommit {
            seq,
            object_len: 1 << 40,
            segments,
        });
        match self.state.apply_entry(&meta, commands, commit.as_ref()) {
            EntryOutcome::Applied(events) => events,
            EntryOutcome::Ignored { reason } => panic!("ignored: {reason}"),
        }
    }

    fn commands(&mut self, commands: &[Command]) -> Vec<Event> {
        let epoch = self.state.writer_epoch();
        self.entry(EntryKind::Data, epoch, commands, None)
    }

    fn command(&mut self, command: Command) -> Event {
        let mut events = self.commands(&[command]);
        assert_eq!(events.len(), 1);
        events.pop().unwrap()
    }

    fn commit(&mut self, segments: Vec<SegmentCommit>) -> Vec<Event> {
        let epoch = self.state.writer_epoch();
        self.entry(EntryKind::Data, epoch, &[], Some(segments))
    }

    fn create(&mut self, name: &str, topic_id: TopicId, partition_count: u32) {
        let event = self.command(create_topic(name, topic_id, partition_count));
        assert!(matches!(event, Event::TopicCreated { .. }), "{event:?}");
    }
}

fn create_topic(name: &str, topic_id: TopicId, partition_count: u32) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        topic_id,
        partition_count,
        configs: BTreeMap::new(),
    }
}

fn segment(tp: TopicPartition, offset_count: u64, max_timestamp: i64) -> SegmentCommit {
    SegmentCommit {
        tp,
        byte_start: 100,
        byte_len: 10,
        batch_count: 1,
        offset_count,
        record_count: offset_count,
        max_timestamp,
        batches: Vec::new(),
    }
}

fn rejected_code(event: &Event) -> i16 {
    match event {
        Event::CommandRejected { error, .. } | Event::SegmentRejected { error, .. } => {
            error.kafka_error_code()
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

mod acl;
mod chain;
mod checkpoint;
mod commands;
mod commit;
mod groups;
mod index;
mod offsets;
mod producer;
mod quota;
mod retention;
mod scram;
