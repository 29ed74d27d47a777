//! Applying log entries: the chain rule, then commands, then the data commit.

use super::command::{COMMANDS_PER_ENTRY_MAX, Command};
use super::config::{is_known_config, unknown_config, validate_config, validate_configs};
use super::entry::{
    BatchOutcome, EntryKind, EntryMeta, EntryOutcome, Event, IgnoreReason, ObjectCommit,
    SegmentCommit,
};
use super::error::MetadataError;
use super::partition::PartitionState;
use super::producer::{BatchCommit, SequenceCheck, check_batch, record_batch};
use super::state::MetadataState;
use super::topic::{
    PARTITIONS_TOTAL_MAX, TOPICS_MAX, Topic, validate_partition_count, validate_topic_id,
    validate_topic_name,
};
use crate::types::{LogSeq, TopicId, TopicPartition};

/// Segments one commit may carry; beyond it segments are rejected (deterministically).
pub const SEGMENTS_PER_COMMIT_MAX: usize = 1_000_000;

impl MetadataState {
    /// Applies one log entry. Deterministic: the same state and the same entry give the same
    /// outcome on every machine.
    ///
    /// An entry is *valid* iff `meta.prev_seq == last_valid_seq` and either it is a claim with an
    /// epoch above the current one, or it is a data entry of the current (non-zero) epoch. A valid
    /// claim sets the epoch; every valid entry becomes `last_valid_seq`, then its commands apply in
    /// order, then its commit. An invalid entry changes nothing but `last_offered_seq`. Entries must
    /// be offered in strictly increasing seq order; one that is not is ignored without any change.
    /// `commit.seq` must equal `meta.seq`, or every segment is rejected.
    pub fn apply_entry(
        &mut self,
        meta: &EntryMeta,
        commands: &[Command],
        commit: Option<&ObjectCommit>,
    ) -> EntryOutcome {
        if let Some(last_offered_seq) = self.last_offered_seq
            && meta.seq <= last_offered_seq
        {
            return EntryOutcome::Ignored {
                reason: IgnoreReason::NotAfterLastOffered {
                    seq: meta.seq,
                    last_offered_seq,
                },
            };
        }
        self.last_offered_seq = Some(meta.seq);
        if let Err(reason) = self.check_chain(meta) {
            return EntryOutcome::Ignored { reason };
        }
        self.last_valid_seq = Some(meta.seq);
        let mut events = Vec::with_capacity(
            commands.len() + commit.map_or(0, |commit| commit.segments.len()) + 1,
        );
        if meta.kind == EntryKind::Claim {
            self.writer_epoch = meta.writer_epoch;
            events.push(Event::Claimed {
                writer_epoch: meta.writer_epoch,
            });
        }
        for (index, command) in commands.iter().enumerate() {
            let event = if index >= COMMANDS_PER_ENTRY_MAX {
                Err(MetadataError::TooManyCommands {
                    index,
                    limit: COMMANDS_PER_ENTRY_MAX,
                })
            } else {
                self.apply_command(index, command)
            };
            events.push(event.unwrap_or_else(|error| Event::CommandRejected { index, error }));
        }
        if let Some(commit) = commit {
            self.apply_commit(meta.seq, commit, &mut events);
        }
        EntryOutcome::Applied(events)
    }

    /// The chain rule. See `docs/metadata.md` for why it is exactly this.
    fn check_chain(&self, meta: &EntryMeta) -> Result<(), IgnoreReason> {
        #[cfg(feature = "sim-planted-bugs")]
        if meta.kind == EntryKind::Data
            && crate::planted::active(crate::planted::PlantedBug::SkipChainRule)
        {
            return Ok(());
        }
        if meta.prev_seq != self.last_valid_seq {
            return Err(IgnoreReason::ChainBroken {
                prev_seq: meta.prev_seq,
                last_valid_seq: self.last_valid_seq,
            });
        }
        let current_epoch = self.writer_epoch;
        match meta.kind {
            EntryKind::Claim if meta.writer_epoch > current_epoch => Ok(()),
            EntryKind::Claim => Err(IgnoreReason::StaleClaim {
                writer_epoch: meta.writer_epoch,
                current_epoch,
            }),
            EntryKind::Data if meta.writer_epoch == current_epoch && current_epoch > 0 => Ok(()),
            EntryKind::Data => Err(IgnoreReason::WrongEpoch {
                writer_epoch: meta.writer_epoch,
                current_epoch,
            }),
        }
    }

    /// Applies one command, all or nothing.
    fn apply_command(&mut self, index: usize, command: &Command) -> Result<Event, MetadataError> {
        match command {
            Command::CreateTopic {
                name,
                topic_id,
                partition_count,
                configs,
            } => {
                validate_topic_name(name)?;
                validate_topic_id(*topic_id)?;
                validate_partition_count(*partition_count, 0)?;
                validate_configs(configs)?;
                if self.topic_ids_by_name.contains_key(name) {
                    return Err(MetadataError::TopicAlreadyExists { name: name.clone() });
                }
                if self.topics.contains_key(topic_id) {
                    return Err(MetadataError::TopicIdAlreadyExists {
                        topic_id: *topic_id,
                    });
                }
                if self.topics.len() >= TOPICS_MAX {
                    return Err(MetadataError::TooManyTopics { limit: TOPICS_MAX });
                }
                let partition_count_total =
                    self.checked_total_after(u64::from(*partition_count))?;
                let topic = Topic {
                    name: name.clone(),
                    configs: configs.clone(),
                    partitions: vec![PartitionState::default(); *partition_count as usize],
                };
                self.topics.insert(*topic_id, topic);
                self.topic_ids_by_name.insert(name.clone(), *topic_id);
                self.partition_count_total = partition_count_total;
                Ok(Event::TopicCreated {
                    index,
                    topic_id: *topic_id,
                    name: name.clone(),
                    partition_count: *partition_count,
                })
            }
            Command::DeleteTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or(MetadataError::UnknownTopicId {
                        topic_id: *topic_id,
                    })?;
                self.topic_ids_by_name.remove(&topic.name);
                self.drop_topic_offsets(&topic.name);
                self.partition_count_total = self
                    .partition_count_total
                    .saturating_sub(u64::from(topic.partition_count()));
                Ok(Event::TopicDeleted {
                    index,
                    topic_id: *topic_id,
                    name: topic.name,
                })
            }
            Command::CreatePartitions {
                topic_id,
                partition_count,
            } => {
                let current = self.topic_or_err(*topic_id)?.partition_count();
                validate_partition_count(*partition_count, current)?;
                let partition_count_total =
                    self.checked_total_after(u64::from(*partition_count - current))?;
                let topic = self.topic_mut_or_err(*topic_id)?;
                topic
                    .partitions
                    .resize(*partition_count as usize, PartitionState::default());
                self.partition_count_total = partition_count_total;
                Ok(Event::PartitionsCreated {
                    index,
                    topic_id: *topic_id,
                    previous_count: current,
                    partition_count: *partition_count,
                })
            }
            Command::AlterTopicConfigs { topic_id, set } => {
                self.topic_or_err(*topic_id)?;
                // Validate everything before changing anything: a command is all or nothing.
                for (name, value) in set {
                    match value {
                        Some(value) => validate_config(name, value)?,
                        // Deleting an override of a known name is fine; an unknown name is not.
                        None if is_known_config(name) => {}
                        None => return Err(unknown_config(name)),
                    }
                }
                let topic = self.topic_mut_or_err(*topic_id)?;
                for (name, value) in set {
                    match value {
                        Some(value) => topic.configs.insert(name.clone(), value.clone()),
                        None => topic.configs.remove(name),
                    };
                }
                Ok(Event::TopicConfigsAltered {
                    index,
                    topic_id: *topic_id,
                })
            }
            Command::ReplaceIndexRange { swap } => {
                let tp = swap.tp;
                let entries_replaced = self.partition_mut_or_err(tp)?.replace_range(swap)?;
                Ok(Event::IndexRangeReplaced {
                    index,
                    tp,
                    entries_replaced,
                })
            }
            Command::DeleteRecords { tp, before_offset } => {
                let partition = self.partition_mut_or_err(*tp)?;
                let log_start_offset = partition.delete_records(*tp, *before_offset)?;
                Ok(Event::RecordsDeleted {
                    index,
                    tp: *tp,
                    log_start_offset,
                })
            }
            Command::InitProducerId { transactional_id } => {
                if let Some(transactional_id) = transactional_id {
                    return Err(MetadataError::TransactionsUnsupported {
                        transactional_id: transactional_id.clone(),
                    });
                }
                let producer_id = i64::try_from(self.next_producer_id)
                    .map_err(|_| MetadataError::ProducerIdsExhausted)?;
                self.next_producer_id = self.next_producer_id.saturating_add(1);
                Ok(Event::ProducerIdAllocated {
                    index,
                    producer_id,
                    producer_epoch: 0,
                })
            }
            Command::CommitOffsets { group, offsets } => self.commit_offsets(index, group, offsets),
            Command::DeleteOffsets { group, partitions } => {
                Ok(self.delete_offsets(index, group, partitions))
            }
            Command::DeleteGroups { groups } => Ok(self.delete_groups(index, groups)),
            Command::StoreGroup { store } => self.store_group(index, store),
            Command::CreateAcl { binding } => {
                let created =
                    std::sync::Arc::make_mut(&mut self.acls).insert((**binding).clone())?;
                Ok(Event::AclCreated { index, created })
            }
            Command::DeleteAcls { filter } => {
                // Only a filter that matches something changes (and so copies) the shared set.
                let deleted = if self.acls.matching(filter).is_empty() {
                    Vec::new()
                } else {
                    std::sync::Arc::make_mut(&mut self.acls).remove_matching(filter)
                };
                Ok(Event::AclsDeleted { index, deleted })
            }
            Command::AlterClientQuotas { alteration } => {
                // Checked first so a refused alteration never copies the shared set.
                self.quotas.check(alteration)?;
                std::sync::Arc::make_mut(&mut self.quotas).alter(alteration)?;
                Ok(Event::ClientQuotasAltered { index })
            }
            Command::UpsertScramCredential { upsertion } => {
                // Checked first so a refused upsertion never copies the shared set.
                self.scram_credentials.check_upsert(upsertion)?;
                std::sync::Arc::make_mut(&mut self.scram_credentials).upsert(upsertion)?;
                Ok(Event::ScramCredentialAltered { index })
            }
            Command::DeleteScramCredential { deletion } => {
                self.scram_credentials.check_delete(deletion)?;
                std::sync::Arc::make_mut(&mut self.scram_credentials).delete(deletion)?;
                Ok(Event::ScramCredentialAltered { index })
            }
        }
    }

    /// Assigns offsets to every segment in order; a bad segment is rejected alone.
    fn apply_commit(&mut self, seq: LogSeq, commit: &ObjectCommit, events: &mut Vec<Event>) {
        for (segment_index, segment) in commit.segments.iter().enumerate() {
            // A cluster's window object is not a log position: the sequencer's record at `seq`
            // commits the object its id names (`docs/cluster.md`).
            let appended = if commit.seq != seq && !crate::types::is_agent_object(commit.seq) {
                Err(MetadataError::CommitSeqMismatch {
                    entry_seq: seq,
                    commit_seq: commit.seq,
                })
            } else if segment_index >= SEGMENTS_PER_COMMIT_MAX {
                Err(MetadataError::TooManySegments {
                    index: segment_index,
                    limit: SEGMENTS_PER_COMMIT_MAX,
                })
            } else {
                self.append_segment(commit.seq, commit.object_len, segment)
            };
            events.push(match appended {
                Ok(Appended::Whole {
                    base_offset,
                    end_offset,
                }) => Event::SegmentAppended {
                    segment_index,
                    tp: segment.tp,
                    base_offset,
                    end_offset,
                },
                Ok(Appended::Batches {
                    batches,
                    end_offset,
                }) => Event::SegmentBatches {
                    segment_index,
                    tp: segment.tp,
                    batches,
                    end_offset,
                },
                Err(error) => Event::SegmentRejected {
                    segment_index,
                    error,
                },
            });
        }
    }

    fn append_segment(
        &mut self,
        seq: LogSeq,
        object_len: u64,
        segment: &SegmentCommit,
    ) -> Result<Appended, MetadataError> {
        if segment.offset_count == 0 {
            return Err(MetadataError::InvalidSegment {
                reason: "offset_count is 0",
            });
        }
        if segment.byte_len == 0 {
            return Err(MetadataError::InvalidSegment {
                reason: "byte_len is 0",
            });
        }
        let within_object = segment
            .byte_start
            .checked_add(segment.byte_len)
            .is_some_and(|end| end <= object_len);
        if !within_object {
            return Err(MetadataError::InvalidSegment {
                reason: "byte range outside the object",
            });
        }
        if !segment.batches.is_empty() {
            check_batches_tile(segment)?;
        }
        let partition = self.partition_mut_or_err(segment.tp)?;
        if !segment.batches.iter().any(BatchCommit::is_idempotent) {
            let (base_offset, end_offset) = partition.append(
                segment.tp,
                seq,
                segment.byte_start,
                segment.byte_len,
                segment.offset_count,
                segment.max_timestamp,
            )?;
            return Ok(Appended::Whole {
                base_offset,
                end_offset,
            });
        }
        append_batches(partition, seq, segment)
    }

    fn checked_total_after(&self, added: u64) -> Result<u64, MetadataError> {
        let requested = self.partition_count_total.saturating_add(added);
        if requested > PARTITIONS_TOTAL_MAX {
            return Err(MetadataError::TooManyPartitions {
                requested,
                limit: PARTITIONS_TOTAL_MAX,
            });
        }
        Ok(requested)
    }

    fn topic_or_err(&self, topic_id: TopicId) -> Result<&Topic, MetadataError> {
        self.topics
            .get(&topic_id)
            .ok_or(MetadataError::UnknownTopicId { topic_id })
    }

    fn topic_mut_or_err(&mut self, topic_id: TopicId) -> Result<&mut Topic, MetadataError> {
        self.topics
            .get_mut(&topic_id)
            .ok_or(MetadataError::UnknownTopicId { topic_id })
    }

    fn partition_mut_or_err(
        &mut self,
        tp: TopicPartition,
    ) -> Result<&mut PartitionState, MetadataError> {
        self.topic_mut_or_err(tp.topic_id)?
            .partition_mut(tp.partition)
            .ok_or(MetadataError::UnknownPartition { tp })
    }
}

/// How a segment was appended.
enum Appended {
    /// Every batch, as one index entry.
    Whole { base_offset: u64, end_offset: u64 },
    /// Batch by batch (some were duplicates or refused); `end_offset` is the new high watermark.
    Batches {
        batches: Vec<BatchOutcome>,
        end_offset: u64,
    },
}

/// The batches must lie back to back over exactly the segment's bytes and offsets.
fn check_batches_tile(segment: &SegmentCommit) -> Result<(), MetadataError> {
    let mut position = segment.byte_start;
    let mut offsets = 0u64;
    for batch in &segment.batches {
        if batch.byte_start != position || batch.byte_len == 0 || batch.offset_count == 0 {
            return Err(MetadataError::InvalidSegment {
                reason: "batches do not tile the segment",
            });
        }
        position = position.saturating_add(batch.byte_len);
        offsets = offsets.saturating_add(batch.offset_count);
    }
    if position != segment.byte_start.saturating_add(segment.byte_len)
        || offsets != segment.offset_count
    {
        return Err(MetadataError::InvalidSegment {
            reason: "batches do not add up to the segment",
        });
    }
    Ok(())
}

/// A run of consecutive appended batches: one index entry.
struct Run {
    byte_start: u64,
    byte_len: u64,
    offset_count: u64,
    max_timestamp: i64,
}

/// Appends a segment holding idempotent batches: each is checked against the producer state in
/// order (so a later batch sees an earlier one of the same producer), consecutive accepted batches
/// become one index entry, and duplicates and refused batches take no offsets. Index entries stay
/// contiguous in offsets; only their byte ranges skip what was not appended.
fn append_batches(
    partition: &mut PartitionState,
    seq: LogSeq,
    segment: &SegmentCommit,
) -> Result<Appended, MetadataError> {
    let tp = segment.tp;
    // Room for the worst case (one entry per batch) up front, so no run fails after producer
    // state has moved.
    partition.check_room(tp, segment.batches.len(), segment.offset_count)?;
    let mut outcomes = Vec::with_capacity(segment.batches.len());
    let mut run: Option<Run> = None;
    for batch in &segment.batches {
        let verdict = if batch.is_idempotent() {
            check_batch(&partition.producers, tp, batch)
        } else {
            Ok(SequenceCheck::Append)
        };
        match verdict {
            Ok(SequenceCheck::Append) => {
                let run_offsets = run.as_ref().map_or(0, |run| run.offset_count);
                let base_offset = partition.high_watermark().saturating_add(run_offsets);
                if batch.is_idempotent() {
                    record_batch(&mut partition.producers, batch, base_offset);
                }
                outcomes.push(BatchOutcome::Appended {
                    base_offset,
                    end_offset: base_offset.saturating_add(batch.offset_count),
                });
                match &mut run {
                    Some(run) => {
                        run.byte_len = run.byte_len.saturating_add(batch.byte_len);
                        run.offset_count = run.offset_count.saturating_add(batch.offset_count);
                        run.max_timestamp = run.max_timestamp.max(batch.max_timestamp);
                    }
                    None => {
                        run = Some(Run {
                            byte_start: batch.byte_start,
                            byte_len: batch.byte_len,
                            offset_count: batch.offset_count,
                            max_timestamp: batch.max_timestamp,
                        });
                    }
                }
            }
            Ok(SequenceCheck::Duplicate { base_offset }) => {
                flush_run(partition, tp, seq, run.take())?;
                outcomes.push(BatchOutcome::Duplicate { base_offset });
            }
            Err(error) => {
                flush_run(partition, tp, seq, run.take())?;
                outcomes.push(BatchOutcome::Rejected { error });
            }
        }
    }
    flush_run(partition, tp, seq, run.take())?;
    let end_offset = partition.high_watermark();
    let whole = outcomes
        .iter()
        .all(|outcome| matches!(outcome, BatchOutcome::Appended { .. }));
    if whole && let Some(BatchOutcome::Appended { base_offset, .. }) = outcomes.first() {
        return Ok(Appended::Whole {
            base_offset: *base_offset,
            end_offset,
        });
    }
    Ok(Appended::Batches {
        batches: outcomes,
        end_offset,
    })
}

fn flush_run(
    partition: &mut PartitionState,
    tp: TopicPartition,
    seq: LogSeq,
    run: Option<Run>,
) -> Result<(), MetadataError> {
    let Some(run) = run else {
        return Ok(());
    };
    // Cannot fail: `check_room` reserved room for every batch.
    partition
        .append(
            tp,
            seq,
            run.byte_start,
            run.byte_len,
            run.offset_count,
            run.max_timestamp,
        )
        .map(|_| ())
}
