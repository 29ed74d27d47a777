//! The reference model: what clients were told, and the invariants any state of the log must keep
//! with it.
//!
//! The model never predicts offsets; it records acknowledgements as they arrive and checks:
//!
//! - *at every acknowledgement*: no offset is acknowledged for two different batches, no two
//!   acknowledged batches overlap, an idempotent batch is only ever acknowledged at one offset, and
//!   no producer id is handed out twice;
//! - *against a state* (the live agent's, the committed log's, a recovered one): every acknowledged
//!   record at or above the log start offset is readable at its acknowledged offset, byte for byte,
//!   through the read path's own assembly; the partition's index tiles its offsets from the log
//!   start to the high watermark with no gap and no overlap; no idempotent producer's batch is in
//!   the log twice; every acknowledged offset commit is there (or a later commit of the same
//!   partition); every acknowledged topic deletion and DeleteRecords holds.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sluice_engine::batch::{BatchHeader, MAGIC_OFFSET};
use sluice_engine::metadata::{IndexEntry, MetadataState};
use sluice_engine::read::assemble_records;
use sluice_engine::types::{TopicId, TopicPartition, object_key};

/// One acknowledged batch.
#[derive(Debug, Clone)]
pub struct AckedBatch {
    pub bytes: Bytes,
    pub offset_count: u64,
    /// `(producer id, epoch, base sequence)` of an idempotent batch.
    pub producer: Option<(i64, i16, i32)>,
}

#[derive(Debug, Default)]
pub struct PartitionModel {
    /// Base offset → the batch acknowledged there.
    pub acked: BTreeMap<u64, AckedBatch>,
    /// The highest end offset acknowledged.
    pub acked_end: u64,
    /// The highest DeleteRecords offset acknowledged, and the highest sent.
    pub log_start_acked: u64,
    pub log_start_sent: u64,
}

#[derive(Debug, Clone)]
pub struct TopicModel {
    pub name: String,
    pub id: TopicId,
    /// Partitions the topic is known to have (creation and CreatePartitions acknowledged).
    pub partitions: u32,
    /// Scratch topics are deleted during the run; nothing idempotent or committed goes there.
    pub scratch: bool,
    pub delete_sent: bool,
    pub delete_acked: bool,
}

#[derive(Debug, Default)]
struct CommitModel {
    /// Offsets sent, in the order sent (one committer per group, so also log order).
    sent: Vec<i64>,
    last_acked: Option<usize>,
}

/// What clients were told, and checks against it.
#[derive(Debug, Default)]
pub struct Model {
    pub topics: BTreeMap<String, TopicModel>,
    pub partitions: BTreeMap<TopicPartition, PartitionModel>,
    idempotent: BTreeMap<(i64, i16, TopicPartition, i32), u64>,
    producer_ids: BTreeSet<i64>,
    commits: BTreeMap<(String, String, u32), CommitModel>,
    /// Acknowledgements not yet seen in the committed log (checked as the oracle catches up).
    pub unchecked: Vec<(TopicPartition, u64)>,
    pub acks: u64,
    pub commits_acked: u64,
}

/// Bytes of the batch a reader gets and bytes acknowledged are the same batch: everything but the
/// two fields the read path rewrites (`baseOffset`, `partitionLeaderEpoch`).
fn same_batch(read: &[u8], acked: &[u8]) -> bool {
    read.len() == acked.len()
        && read.get(8..12) == acked.get(8..12)
        && read.get(MAGIC_OFFSET..) == acked.get(MAGIC_OFFSET..)
}

impl Model {
    pub fn topic_by_id(&self, topic_id: TopicId) -> Option<&TopicModel> {
        self.topics.values().find(|topic| topic.id == topic_id)
    }

    /// A produce was acknowledged: `bytes` at `base_offset` of `tp`.
    pub fn ack(
        &mut self,
        tp: TopicPartition,
        base_offset: u64,
        header: &BatchHeader,
        bytes: &Bytes,
    ) -> Result<(), String> {
        self.acks += 1;
        let offset_count = header.offset_count();
        let producer = (header.producer_id >= 0).then_some((
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        ));
        if let Some((producer_id, epoch, sequence)) = producer {
            let key = (producer_id, epoch, tp, sequence);
            match self.idempotent.get(&key) {
                Some(&first) if first != base_offset => {
                    return Err(format!(
                        "idempotent batch (producer {producer_id}, epoch {epoch}, sequence \
                         {sequence}) of {tp} acknowledged at offset {first} and again at \
                         {base_offset}"
                    ));
                }
                Some(_) => return Ok(()),
                None => {
                    self.idempotent.insert(key, base_offset);
                }
            }
        }
        let partition = self.partitions.entry(tp).or_default();
        if let Some(existing) = partition.acked.get(&base_offset) {
            if existing.bytes != *bytes {
                return Err(format!(
                    "offset {base_offset} of {tp} acknowledged for two different batches"
                ));
            }
            return Ok(());
        }
        let end = base_offset + offset_count;
        if let Some((previous_base, previous)) = partition.acked.range(..base_offset).next_back()
            && previous_base + previous.offset_count > base_offset
        {
            return Err(format!(
                "{tp}: batch acknowledged at {base_offset}..{end} overlaps the one at \
                 {previous_base}..{}",
                previous_base + previous.offset_count
            ));
        }
        if let Some((next_base, _)) = partition.acked.range(base_offset + 1..).next()
            && *next_base < end
        {
            return Err(format!(
                "{tp}: batch acknowledged at {base_offset}..{end} overlaps the one at {next_base}"
            ));
        }
        partition.acked.insert(
            base_offset,
            AckedBatch {
                bytes: bytes.clone(),
                offset_count,
                producer,
            },
        );
        partition.acked_end = partition.acked_end.max(end);
        self.unchecked.push((tp, base_offset));
        Ok(())
    }

    pub fn producer_id_acked(&mut self, producer_id: i64) -> Result<(), String> {
        if !self.producer_ids.insert(producer_id) {
            return Err(format!("producer id {producer_id} handed out twice"));
        }
        Ok(())
    }

    pub fn commit_sent(&mut self, group: &str, topic: &str, partition: u32, offset: i64) {
        self.commits
            .entry((group.to_owned(), topic.to_owned(), partition))
            .or_default()
            .sent
            .push(offset);
    }

    /// The last commit sent for this partition was acknowledged.
    pub fn commit_acked(&mut self, group: &str, topic: &str, partition: u32) {
        self.commits_acked += 1;
        if let Some(commit) = self
            .commits
            .get_mut(&(group.to_owned(), topic.to_owned(), partition))
        {
            commit.last_acked = commit.sent.len().checked_sub(1);
        }
    }

    pub fn delete_records_sent(&mut self, tp: TopicPartition, before_offset: u64) {
        let partition = self.partitions.entry(tp).or_default();
        partition.log_start_sent = partition.log_start_sent.max(before_offset);
    }

    pub fn delete_records_acked(&mut self, tp: TopicPartition, log_start_offset: u64) {
        let partition = self.partitions.entry(tp).or_default();
        partition.log_start_acked = partition.log_start_acked.max(log_start_offset);
    }

    /// Whether the model still expects `tp`'s records (its topic is not being deleted).
    fn expects(&self, tp: TopicPartition) -> bool {
        self.topic_by_id(tp.topic_id)
            .is_none_or(|topic| !topic.delete_sent)
    }

    /// Cheap checks of a serving agent's state: it holds at least every acknowledged offset and
    /// DeleteRecords, and every acknowledged commit.
    pub fn check_bounds(&self, state: &MetadataState) -> Result<(), String> {
        for (tp, partition) in &self.partitions {
            if !self.expects(*tp) {
                continue;
            }
            let Ok(high_watermark) = state.high_watermark(*tp) else {
                if partition.acked.is_empty() {
                    continue;
                }
                let name = self
                    .topic_by_id(tp.topic_id)
                    .map_or("?", |topic| topic.name.as_str());
                let topics: Vec<(&str, u32)> = state
                    .topics()
                    .map(|(name, topic_id)| (name, state.partition_count(topic_id).unwrap_or(0)))
                    .collect();
                return Err(format!(
                    "{tp} (topic {name}) has acknowledged records but is not in the state \
                     (topics {topics:?}, positions {:?}/{:?}, epoch {})",
                    state.last_valid_seq(),
                    state.last_offered_seq(),
                    state.writer_epoch()
                ));
            };
            if high_watermark < partition.acked_end {
                return Err(format!(
                    "{tp}: high watermark {high_watermark} below the acknowledged end {}",
                    partition.acked_end
                ));
            }
            let log_start = state.log_start_offset(*tp).unwrap_or(0);
            if log_start < partition.log_start_acked || log_start > partition.log_start_sent {
                return Err(format!(
                    "{tp}: log start offset {log_start} outside the acknowledged {} and the \
                     requested {}",
                    partition.log_start_acked, partition.log_start_sent
                ));
            }
        }
        self.check_commits(state)?;
        for topic in self.topics.values() {
            if topic.delete_acked && state.topic(topic.id).is_some() {
                return Err(format!(
                    "topic {} is still there after its deletion was acknowledged",
                    topic.name
                ));
            }
        }
        Ok(())
    }

    fn check_commits(&self, state: &MetadataState) -> Result<(), String> {
        for ((group, topic, partition), commit) in &self.commits {
            let Some(first_allowed) = commit.last_acked else {
                continue;
            };
            let allowed = commit.sent.get(first_allowed..).unwrap_or_default();
            let stored = state.committed_offset(group, topic, *partition);
            match stored {
                Some(stored) if allowed.contains(&stored.offset) => {}
                other => {
                    return Err(format!(
                        "group {group} {topic}-{partition}: committed offset {:?}, but the last \
                         acknowledged commit was {:?} (later ones sent: {:?})",
                        other.map(|stored| stored.offset),
                        allowed.first(),
                        allowed.get(1..)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the acknowledgements the committed log now covers; keeps the others for later.
    pub fn check_unchecked(
        &mut self,
        state: &MetadataState,
        object: &dyn Fn(&str) -> Option<Bytes>,
    ) -> Result<(), String> {
        let unchecked = std::mem::take(&mut self.unchecked);
        for (tp, base_offset) in unchecked {
            let covered = state
                .high_watermark(tp)
                .is_ok_and(|high_watermark| high_watermark > base_offset);
            if !covered && self.expects(tp) {
                self.unchecked.push((tp, base_offset));
                continue;
            }
            self.check_acked(state, object, tp, base_offset)?;
        }
        Ok(())
    }

    /// One acknowledged batch is readable at its offset in `state`.
    fn check_acked(
        &self,
        state: &MetadataState,
        object: &dyn Fn(&str) -> Option<Bytes>,
        tp: TopicPartition,
        base_offset: u64,
    ) -> Result<(), String> {
        let Some(acked) = self
            .partitions
            .get(&tp)
            .and_then(|partition| partition.acked.get(&base_offset))
        else {
            return Ok(());
        };
        if state.topic(tp.topic_id).is_none() && !self.expects(tp) {
            return Ok(());
        }
        let log_start = state.log_start_offset(tp).unwrap_or(0);
        if base_offset < log_start {
            return Ok(());
        }
        let entries = state
            .find_from(tp, base_offset, 1)
            .map_err(|error| format!("{tp}: acknowledged offset {base_offset}: {error}"))?;
        let Some(entry) = entries.first() else {
            return Err(format!(
                "{tp}: acknowledged offset {base_offset} is at the high watermark"
            ));
        };
        let read = read_entry_bytes(object, entry)?;
        let assembled = assemble_records(&[(*entry, vec![read])], base_offset, usize::MAX, 0)
            .map_err(|error| format!("{tp}: reading offset {base_offset}: {error}"))?;
        let bytes = assembled.records.to_bytes();
        let first = batches_of(&bytes)
            .next()
            .ok_or_else(|| format!("{tp}: offset {base_offset} reads no batch"))?;
        let (read_base, read_batch) = first;
        if read_base != base_offset || !same_batch(read_batch, &acked.bytes) {
            return Err(format!(
                "{tp}: the batch acknowledged at offset {base_offset} reads as another batch \
                 (starting at {read_base}, {} bytes instead of {})",
                read_batch.len(),
                acked.bytes.len()
            ));
        }
        Ok(())
    }

    /// Every invariant against `state`, reading every partition whole.
    pub fn check_full(
        &self,
        state: &MetadataState,
        object: &dyn Fn(&str) -> Option<Bytes>,
    ) -> Result<FullCheck, String> {
        self.check_bounds(state)?;
        let mut summary = FullCheck::default();
        let topics: Vec<(String, TopicId)> = state
            .topics()
            .map(|(name, topic_id)| (name.to_owned(), topic_id))
            .collect();
        for (_, topic_id) in topics {
            let partition_count = state.partition_count(topic_id).unwrap_or(0);
            for partition in 0..partition_count {
                let Ok(partition) = i32::try_from(partition) else {
                    continue;
                };
                let tp = TopicPartition::new(topic_id, partition);
                summary.add(self.check_partition(state, object, tp)?);
            }
        }
        Ok(summary)
    }

    /// One partition, read from its log start to its high watermark.
    fn check_partition(
        &self,
        state: &MetadataState,
        object: &dyn Fn(&str) -> Option<Bytes>,
        tp: TopicPartition,
    ) -> Result<FullCheck, String> {
        let log_start = state
            .log_start_offset(tp)
            .map_err(|error| error.to_string())?;
        let high_watermark = state
            .high_watermark(tp)
            .map_err(|error| error.to_string())?;
        let entries = state
            .find_from(tp, log_start, usize::MAX)
            .map_err(|error| format!("{tp}: {error}"))?;
        let mut summary = FullCheck {
            partitions: 1,
            ..FullCheck::default()
        };
        let mut expected = match entries.first() {
            Some(first) if first.base_offset <= log_start && log_start < first.end_offset => {
                first.base_offset
            }
            Some(first) => {
                return Err(format!(
                    "{tp}: the first index entry {}..{} does not hold the log start {log_start}",
                    first.base_offset, first.end_offset
                ));
            }
            None if log_start == high_watermark => log_start,
            None => {
                return Err(format!(
                    "{tp}: no index entry for offsets {log_start}..{high_watermark}"
                ));
            }
        };
        let partition = self.partitions.get(&tp);
        let mut producer_batches = BTreeSet::new();
        for entry in &entries {
            if entry.base_offset != expected {
                return Err(format!(
                    "{tp}: index entry {}..{} after offset {expected}: offsets not contiguous",
                    entry.base_offset, entry.end_offset
                ));
            }
            let read = read_entry_bytes(object, entry)?;
            let mut offset = entry.base_offset;
            for (header, batch) in raw_batches(&read)
                .map_err(|reason| format!("{tp}: entry at {}: {reason}", entry.base_offset))?
            {
                summary.batches += 1;
                if header.producer_id >= 0
                    && !producer_batches.insert((
                        header.producer_id,
                        header.producer_epoch,
                        header.base_sequence,
                    ))
                {
                    return Err(format!(
                        "{tp}: idempotent producer {} wrote sequence {} (epoch {}) twice; the \
                         second at offset {offset}",
                        header.producer_id, header.base_sequence, header.producer_epoch
                    ));
                }
                if let Some(partition) = partition {
                    if let Some(acked) = partition.acked.get(&offset) {
                        if !same_batch(batch, &acked.bytes) {
                            return Err(format!(
                                "{tp}: offset {offset} holds another batch than the one \
                                 acknowledged there"
                            ));
                        }
                        if offset >= log_start {
                            summary.acked_seen += 1;
                        }
                    } else if let Some((base, acked)) = partition.acked.range(..offset).next_back()
                        && base + acked.offset_count > offset
                    {
                        return Err(format!(
                            "{tp}: a batch starts at {offset}, inside the one acknowledged at \
                             {base}"
                        ));
                    }
                }
                offset += header.offset_count();
            }
            if offset != entry.end_offset {
                return Err(format!(
                    "{tp}: entry {}..{} holds batches up to {offset}",
                    entry.base_offset, entry.end_offset
                ));
            }
            expected = entry.end_offset;
        }
        if expected != high_watermark {
            return Err(format!(
                "{tp}: index ends at {expected}, high watermark {high_watermark}"
            ));
        }
        if let Some(partition) = partition
            && self.expects(tp)
        {
            let owed = partition.acked.range(log_start..).count() as u64;
            if summary.acked_seen != owed {
                return Err(format!(
                    "{tp}: {} of the {owed} batches acknowledged at or after the log start {log_start} \
                     are in the log",
                    summary.acked_seen
                ));
            }
        }
        Ok(summary)
    }
}

/// What a full check read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FullCheck {
    pub partitions: u64,
    pub batches: u64,
    pub acked_seen: u64,
}

impl FullCheck {
    fn add(&mut self, other: FullCheck) {
        self.partitions += other.partitions;
        self.batches += other.batches;
        self.acked_seen += other.acked_seen;
    }
}

fn read_entry_bytes(
    object: &dyn Fn(&str) -> Option<Bytes>,
    entry: &IndexEntry,
) -> Result<Bytes, String> {
    let key = object_key(entry.seq);
    let whole = object(&key).ok_or_else(|| {
        format!("object {key} is in the index but not in the bucket (never durable)")
    })?;
    let start = usize::try_from(entry.byte_start).map_err(|error| error.to_string())?;
    let len = usize::try_from(entry.byte_len).map_err(|error| error.to_string())?;
    let end = start.saturating_add(len);
    if end > whole.len() {
        return Err(format!(
            "object {key}: index range {start}..{end} past its {} bytes",
            whole.len()
        ));
    }
    Ok(whole.slice(start..end))
}

/// The batches of a fetch answer, with the base offsets the read path wrote into them.
fn batches_of(bytes: &Bytes) -> impl Iterator<Item = (u64, &[u8])> + '_ {
    let mut position = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(position..)?;
        let header = BatchHeader::parse(rest).ok()?;
        let batch = rest.get(..header.total_len())?;
        position += header.total_len();
        Some((u64::try_from(header.base_offset).unwrap_or(u64::MAX), batch))
    })
}

/// The stored batches of one index entry, each validated.
fn raw_batches(bytes: &Bytes) -> Result<Vec<(BatchHeader, &[u8])>, String> {
    let mut batches = Vec::new();
    let mut position = 0usize;
    while let Some(rest) = bytes.get(position..).filter(|rest| !rest.is_empty()) {
        let header = BatchHeader::parse(rest).map_err(|error| error.to_string())?;
        let batch = rest
            .get(..header.total_len())
            .ok_or_else(|| "a batch is cut at the end of the range".to_owned())?;
        sluice_engine::batch::validate_batch(batch).map_err(|error| error.to_string())?;
        position += header.total_len();
        batches.push((header, batch));
    }
    Ok(batches)
}
