//! The chain rule against a model: random interleavings of entries from several writers.
//!
//! Writers claim with various epochs and chain from the right entry, their own last entry, an
//! arbitrary earlier one or none; some offers repeat a position. The model is the rule written
//! the plainest possible way; the state must accept exactly the entries the model accepts, apply
//! exactly their commands, and a second replay of the same sequence must give the same outcomes
//! and an identical state.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sluice_engine::metadata::{
    Command, EntryKind, EntryMeta, EntryOutcome, IgnoreReason, MetadataState,
};
use sluice_engine::types::{LogSeq, TopicId};

const WRITERS: usize = 3;

/// Which `prev_seq` an entry names.
#[derive(Debug, Clone, Copy)]
enum Prev {
    /// The last valid entry (what a writer with an up-to-date view names).
    Right,
    /// The writer's own last entry (a pipelining writer that may have been overtaken).
    Own,
    /// Some earlier position, by fraction of the current length.
    Earlier(u8),
    None,
}

#[derive(Debug, Clone)]
struct Offer {
    writer: usize,
    claim: bool,
    /// For a claim, the epoch it asks for; data entries use the writer's last claimed epoch.
    claim_epoch: u64,
    prev: Prev,
    /// Advance of seq over the last offer; 0 re-offers the same position (must be ignored).
    seq_gap: u64,
}

fn offer() -> impl Strategy<Value = Offer> {
    let prev = prop_oneof![5 => Just(Prev::Right), 3 => Just(Prev::Own), 1 => any::<u8>().prop_map(Prev::Earlier), 1 => Just(Prev::None)];
    (
        0..WRITERS,
        prop::bool::weighted(0.25),
        0u64..8,
        prev,
        prop_oneof![8 => Just(1u64), 2 => Just(2u64), 1 => Just(0u64)],
    )
        .prop_map(|(writer, claim, claim_epoch, prev, seq_gap)| Offer {
            writer,
            claim,
            claim_epoch,
            prev,
            seq_gap,
        })
}

/// The rule, written plainly.
#[derive(Debug, Default, Clone)]
struct Model {
    writer_epoch: u64,
    last_valid_seq: Option<LogSeq>,
    last_offered_seq: Option<LogSeq>,
}

impl Model {
    fn accepts(&mut self, meta: &EntryMeta) -> bool {
        if self.last_offered_seq.is_some_and(|last| meta.seq <= last) {
            return false;
        }
        self.last_offered_seq = Some(meta.seq);
        let epoch_ok = match meta.kind {
            EntryKind::Claim => meta.writer_epoch > self.writer_epoch,
            EntryKind::Data => meta.writer_epoch == self.writer_epoch && self.writer_epoch > 0,
        };
        let valid = meta.prev_seq == self.last_valid_seq && epoch_ok;
        if valid {
            if meta.kind == EntryKind::Claim {
                self.writer_epoch = meta.writer_epoch;
            }
            self.last_valid_seq = Some(meta.seq);
        }
        valid
    }
}

/// Turns offers into concrete entries, each data entry creating a topic named after its seq so that
/// the state shows exactly which entries were applied.
fn entries(offers: &[Offer]) -> Vec<(EntryMeta, Vec<Command>)> {
    let mut model = Model::default();
    let mut writer_epochs = [0u64; WRITERS];
    let mut writer_last: [Option<LogSeq>; WRITERS] = [None; WRITERS];
    let mut next_seq = 0u64;
    let mut out = Vec::new();
    for offer in offers {
        let seq = LogSeq((next_seq + offer.seq_gap).saturating_sub(1));
        next_seq = seq.0 + 1;
        let prev_seq = match offer.prev {
            Prev::Right => model.last_valid_seq,
            Prev::Own => writer_last[offer.writer],
            Prev::Earlier(fraction) => Some(LogSeq(seq.0 * u64::from(fraction) / 256)),
            Prev::None => None,
        };
        let (kind, writer_epoch) = if offer.claim {
            writer_epochs[offer.writer] = offer.claim_epoch;
            (EntryKind::Claim, offer.claim_epoch)
        } else {
            (EntryKind::Data, writer_epochs[offer.writer])
        };
        let meta = EntryMeta {
            seq,
            writer_epoch,
            prev_seq,
            kind,
        };
        let _ = model.accepts(&meta);
        writer_last[offer.writer] = Some(seq);
        let commands = vec![Command::CreateTopic {
            name: format!("entry-{}", seq.0),
            topic_id: TopicId::from_uuid(uuid_for(seq)),
            partition_count: 1,
            configs: BTreeMap::new(),
        }];
        out.push((meta, commands));
    }
    out
}

fn uuid_for(seq: LogSeq) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(1, seq.0 + 1)
}

fn replay(entries: &[(EntryMeta, Vec<Command>)]) -> (MetadataState, Vec<EntryOutcome>) {
    let mut state = MetadataState::new();
    let outcomes = entries
        .iter()
        .map(|(meta, commands)| state.apply_entry(meta, commands, None))
        .collect();
    (state, outcomes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_set_is_exactly_the_rule(offers in prop::collection::vec(offer(), 1..60)) {
        let entries = entries(&offers);
        let (state, outcomes) = replay(&entries);
        let mut model = Model::default();
        let mut applied_names = Vec::new();
        for ((meta, _), outcome) in entries.iter().zip(&outcomes) {
            let valid = model.accepts(meta);
            prop_assert_eq!(matches!(outcome, EntryOutcome::Applied(_)), valid, "{:?} -> {:?}", meta, outcome);
            if let EntryOutcome::Ignored { reason: IgnoreReason::NotAfterLastOffered { seq, last_offered_seq } } = outcome {
                prop_assert!(seq <= last_offered_seq);
            }
            // A claim's own command applies too: any valid entry applies its commands.
            if valid {
                applied_names.push(format!("entry-{}", meta.seq.0));
            }
        }
        prop_assert_eq!(state.writer_epoch(), model.writer_epoch);
        prop_assert_eq!(state.last_valid_seq(), model.last_valid_seq);
        prop_assert_eq!(state.last_offered_seq(), model.last_offered_seq);
        applied_names.sort();
        let names: Vec<&str> = state.topics().map(|(name, _)| name).collect();
        prop_assert_eq!(names, applied_names.iter().map(String::as_str).collect::<Vec<_>>());

        // Determinism: the same keys give the same outcomes and the same state, also when the
        // replay starts from a checkpoint taken half-way.
        let (again, outcomes_again) = replay(&entries);
        prop_assert_eq!(&again, &state);
        prop_assert_eq!(&outcomes_again, &outcomes);
        let half = entries.len() / 2;
        let (head, _) = replay(&entries[..half]);
        let mut resumed = MetadataState::decode_checkpoint(&head.encode_checkpoint()).unwrap();
        for (meta, commands) in &entries[half..] {
            let _ = resumed.apply_entry(meta, commands, None);
        }
        prop_assert_eq!(resumed, state);
    }
}

/// Two writers racing: whatever the interleaving, entries of the fenced writer that land after the
/// new claim never apply, while the new writer's entries all do.
#[test]
fn fenced_pipeline_is_discarded_as_a_block() {
    let meta = |seq, writer_epoch, prev: Option<u64>, kind| EntryMeta {
        seq: LogSeq(seq),
        writer_epoch,
        prev_seq: prev.map(LogSeq),
        kind,
    };
    let mut state = MetadataState::new();
    let sequence = [
        (meta(0, 1, None, EntryKind::Claim), true),
        (meta(1, 1, Some(0), EntryKind::Data), true),
        // Writer 2 replayed up to 1 and claims 2.
        (meta(2, 2, Some(1), EntryKind::Claim), true),
        // Writer 1's pipelined entries 3..6, each chaining from the previous one of its own.
        (meta(3, 1, Some(2), EntryKind::Data), false),
        (meta(4, 1, Some(3), EntryKind::Data), false),
        // Writer 2 did not see 3 and 4 in its chain; it chains from its claim.
        (meta(5, 2, Some(2), EntryKind::Data), true),
        (meta(6, 1, Some(4), EntryKind::Data), false),
        (meta(7, 2, Some(5), EntryKind::Data), true),
    ];
    for (meta, valid) in sequence {
        let outcome = state.apply_entry(&meta, &[], None);
        assert_eq!(
            matches!(outcome, EntryOutcome::Applied(_)),
            valid,
            "{meta:?} -> {outcome:?}"
        );
    }
    assert_eq!(
        (state.writer_epoch(), state.last_valid_seq()),
        (2, Some(LogSeq(7)))
    );
}
