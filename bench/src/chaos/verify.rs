//! What the producer was told and what the consumer read back, compared. Pure.
//!
//! Every record's value names its producer id, partition and sequence number, so the consumer can
//! tell each record from every other: a record read twice is a duplicate, a sequence number
//! acknowledged and never read is lost, one read at another offset than it was acknowledged at has
//! moved. The [`Ledger`] holds what the producer knows: per partition, every acknowledged batch
//! (base offset, base sequence, count) and the one batch still in doubt when it stopped (sent, maybe
//! written, never acknowledged). In-doubt records may be present once or not at all; anything else
//! read back that was never sent is a phantom.

use serde::Serialize;

/// `chaos` + producer id + partition + sequence, then filler that depends on all three, so a
/// torn or swapped value does not decode.
const VALUE_MAGIC: &[u8; 5] = b"chaos";
const VALUE_FILLER_BYTES: usize = 32;
pub const VALUE_BYTES: usize = VALUE_MAGIC.len() + 8 + 4 + 4 + VALUE_FILLER_BYTES;

/// The identity a record's value carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordId {
    pub producer_id: i64,
    pub partition: i32,
    pub sequence: i32,
}

fn filler(id: RecordId, index: usize) -> u8 {
    let mixed = (id.producer_id as u64)
        .wrapping_mul(31)
        .wrapping_add(u64::from(id.partition.unsigned_abs()).wrapping_mul(131))
        .wrapping_add(u64::from(id.sequence.unsigned_abs()).wrapping_mul(1_000_003))
        .wrapping_add(index as u64);
    b'a' + (mixed % 26) as u8
}

pub fn encode_value(id: RecordId) -> Vec<u8> {
    let mut value = Vec::with_capacity(VALUE_BYTES);
    value.extend_from_slice(VALUE_MAGIC);
    value.extend_from_slice(&id.producer_id.to_be_bytes());
    value.extend_from_slice(&id.partition.to_be_bytes());
    value.extend_from_slice(&id.sequence.to_be_bytes());
    value.extend((0..VALUE_FILLER_BYTES).map(|index| filler(id, index)));
    value
}

/// The identity in `value`, or `None` when it is not a whole, intact chaos value.
pub fn decode_value(value: &[u8]) -> Option<RecordId> {
    let rest = value.strip_prefix(VALUE_MAGIC.as_slice())?;
    let (producer_id, rest) = rest.split_first_chunk::<8>()?;
    let (partition, rest) = rest.split_first_chunk::<4>()?;
    let (sequence, rest) = rest.split_first_chunk::<4>()?;
    let id = RecordId {
        producer_id: i64::from_be_bytes(*producer_id),
        partition: i32::from_be_bytes(*partition),
        sequence: i32::from_be_bytes(*sequence),
    };
    let intact = rest.len() == VALUE_FILLER_BYTES
        && rest
            .iter()
            .enumerate()
            .all(|(index, byte)| *byte == filler(id, index));
    intact.then_some(id)
}

/// One batch the agent acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AckedBatch {
    pub base_offset: i64,
    pub base_sequence: i32,
    pub records: i32,
}

/// One partition's share of the [`Ledger`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionLedger {
    pub acked: Vec<AckedBatch>,
    /// `(base_sequence, records)` of the batch sent and not (yet) acknowledged.
    pub in_doubt: Option<(i32, i32)>,
}

impl PartitionLedger {
    /// The offset after the last acknowledged record (0 when none is).
    pub fn acked_end(&self) -> i64 {
        self.acked
            .iter()
            .map(|batch| batch.base_offset + i64::from(batch.records))
            .max()
            .unwrap_or(0)
    }

    pub fn acked_records(&self) -> u64 {
        self.acked
            .iter()
            .map(|batch| u64::try_from(batch.records).unwrap_or(0))
            .sum()
    }
}

/// What the producer knows: one [`PartitionLedger`] per partition, and its producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub producer_id: i64,
    pub partitions: Vec<PartitionLedger>,
}

impl Ledger {
    pub fn new(producer_id: i64, partitions: usize) -> Ledger {
        Ledger {
            producer_id,
            partitions: vec![PartitionLedger::default(); partitions],
        }
    }

    pub fn acked_records(&self) -> u64 {
        self.partitions
            .iter()
            .map(PartitionLedger::acked_records)
            .sum()
    }

    pub fn acked_ends(&self) -> Vec<i64> {
        self.partitions
            .iter()
            .map(PartitionLedger::acked_end)
            .collect()
    }
}

/// One record as the consumer read it: its offset, and the identity its value carries (`None`:
/// the value did not decode, or disagreed with the batch header's producer id or sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub offset: i64,
    pub id: Option<RecordId>,
}

/// What a partition's read gave: the log start offset, the high watermark, and the records in the
/// order they were read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionRead {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub records: Vec<Served>,
}

/// The verdict. A correct agent shows zeros everywhere but `acknowledged`, `served`,
/// `in_doubt_sent` and `in_doubt_served`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub acknowledged: u64,
    pub served: u64,
    /// Acknowledged, and read nowhere.
    pub lost: u64,
    /// Acknowledged, and read only at another offset than the one acknowledged.
    pub moved: u64,
    /// Reads of a record beyond its first.
    pub duplicated: u64,
    /// Read, and never sent (or sent by another producer, or to another partition).
    pub phantom: u64,
    /// Values that did not decode or disagreed with their batch header.
    pub corrupt: u64,
    /// Offsets between the log start and the high watermark that were not read, or read twice.
    pub offset_gaps: u64,
    pub offset_repeats: u64,
    /// Records whose sequence number is not above the one read before it.
    pub out_of_order: u64,
    /// Log start offsets above 0 (nothing in the campaign deletes records).
    pub truncated_partitions: u64,
    pub in_doubt_sent: u64,
    pub in_doubt_served: u64,
    /// The first few problems, one sentence each.
    pub examples: Vec<String>,
}

const EXAMPLES_MAX: usize = 20;

impl Verification {
    /// Whether the read back is what a durable, idempotent log must give.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.moved == 0
            && self.duplicated == 0
            && self.phantom == 0
            && self.corrupt == 0
            && self.offset_gaps == 0
            && self.offset_repeats == 0
            && self.out_of_order == 0
            && self.truncated_partitions == 0
    }

    fn example(&mut self, text: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(text());
        }
    }
}

/// Compares every partition's read with the ledger.
pub fn verify(ledger: &Ledger, reads: &[PartitionRead]) -> Verification {
    let mut result = Verification {
        acknowledged: ledger.acked_records(),
        ..Verification::default()
    };
    if reads.len() != ledger.partitions.len() {
        result.example(|| {
            format!(
                "{} partitions read, {} produced to",
                reads.len(),
                ledger.partitions.len()
            )
        });
        result.lost = result.acknowledged;
        return result;
    }
    for (partition, (book, read)) in ledger.partitions.iter().zip(reads).enumerate() {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        verify_partition(ledger.producer_id, partition, book, read, &mut result);
    }
    result
}

fn verify_partition(
    producer_id: i64,
    partition: i32,
    book: &PartitionLedger,
    read: &PartitionRead,
    result: &mut Verification,
) {
    result.served += read.records.len() as u64;
    if read.log_start_offset != 0 {
        result.truncated_partitions += 1;
        result.example(|| {
            format!(
                "partition {partition}: log starts at {}",
                read.log_start_offset
            )
        });
    }
    // Offsets: each of log start .. high watermark read exactly once, in order.
    let mut expected = read.log_start_offset;
    for served in &read.records {
        if served.offset == expected {
            expected += 1;
        } else if served.offset > expected {
            result.offset_gaps += u64::try_from(served.offset - expected).unwrap_or(0);
            result.example(|| {
                format!(
                    "partition {partition}: offsets {expected}..{} never read",
                    served.offset
                )
            });
            expected = served.offset + 1;
        } else {
            result.offset_repeats += 1;
            result.example(|| {
                format!(
                    "partition {partition}: offset {} read again after {}",
                    served.offset,
                    expected - 1
                )
            });
        }
    }
    if expected < read.high_watermark {
        result.offset_gaps += u64::try_from(read.high_watermark - expected).unwrap_or(0);
        result.example(|| {
            format!(
                "partition {partition}: offsets {expected}..{} below the high watermark never read",
                read.high_watermark
            )
        });
    }

    // Sequences sent: every acknowledged one, and the batch in doubt.
    let sent_end = book
        .acked
        .iter()
        .map(|batch| batch.base_sequence + batch.records)
        .chain(book.in_doubt.map(|(base, records)| base + records))
        .max()
        .unwrap_or(0);
    let sent_len = usize::try_from(sent_end).unwrap_or(0);
    let mut times_read = vec![0_u32; sent_len];
    let mut at_offset = std::collections::HashMap::with_capacity(read.records.len());
    let mut previous_sequence: Option<i32> = None;
    for served in &read.records {
        let Some(id) = served.id else {
            result.corrupt += 1;
            result.example(|| {
                format!(
                    "partition {partition}: offset {} holds no intact value",
                    served.offset
                )
            });
            continue;
        };
        let slot = usize::try_from(id.sequence)
            .ok()
            .and_then(|index| times_read.get_mut(index));
        let Some(slot) =
            slot.filter(|_| id.producer_id == producer_id && id.partition == partition)
        else {
            result.phantom += 1;
            result.example(|| {
                format!(
                    "partition {partition}: offset {} holds {id:?}, never sent here",
                    served.offset
                )
            });
            continue;
        };
        *slot += 1;
        if *slot > 1 {
            result.duplicated += 1;
            result.example(|| {
                format!(
                    "partition {partition}: sequence {} read again at offset {}",
                    id.sequence, served.offset
                )
            });
        }
        if previous_sequence.is_some_and(|previous| id.sequence <= previous) {
            result.out_of_order += 1;
        }
        previous_sequence = Some(id.sequence);
        at_offset.insert(served.offset, id.sequence);
    }

    let mut acked = vec![false; sent_len];
    for batch in &book.acked {
        for delta in 0..batch.records {
            let sequence = batch.base_sequence + delta;
            let offset = batch.base_offset + i64::from(delta);
            if let Some(flag) = usize::try_from(sequence)
                .ok()
                .and_then(|index| acked.get_mut(index))
            {
                *flag = true;
            }
            let count = usize::try_from(sequence)
                .ok()
                .and_then(|index| times_read.get(index))
                .copied()
                .unwrap_or(0);
            if at_offset.get(&offset) == Some(&sequence) {
                continue;
            }
            if count == 0 {
                result.lost += 1;
                result.example(|| {
                    format!(
                        "partition {partition}: sequence {sequence} acknowledged at offset {offset}, never read"
                    )
                });
            } else {
                result.moved += 1;
                result.example(|| {
                    format!(
                        "partition {partition}: sequence {sequence} acknowledged at offset {offset}, read elsewhere"
                    )
                });
            }
        }
    }
    if let Some((base, records)) = book.in_doubt {
        result.in_doubt_sent += u64::try_from(records).unwrap_or(0);
        for sequence in base..base + records {
            let index = usize::try_from(sequence).unwrap_or(usize::MAX);
            let read_count = times_read.get(index).copied().unwrap_or(0);
            if read_count > 0 && !acked.get(index).copied().unwrap_or(false) {
                result.in_doubt_served += 1;
            }
        }
    }
    // Read, not acknowledged and not in doubt: sent in a batch whose acknowledgement the ledger
    // lacks. The producer retries each batch until it is acknowledged, so only the last one can
    // be in doubt; anything else is a phantom.
    let in_doubt = book
        .in_doubt
        .map_or(0..0, |(base, records)| base..base + records);
    for (sequence, count) in times_read.iter().enumerate() {
        let sequence_i32 = i32::try_from(sequence).unwrap_or(i32::MAX);
        if *count > 0
            && !acked.get(sequence).copied().unwrap_or(false)
            && !in_doubt.contains(&sequence_i32)
        {
            result.phantom += 1;
            result.example(|| {
                format!("partition {partition}: sequence {sequence} read, never acknowledged")
            });
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
