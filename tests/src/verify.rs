//! Checks a client's report against the generator: what was acknowledged is what is served, byte for
//! byte, at the acknowledged offset, with no gap in any partition's offsets.
//!
//! Each served record names its own index in its `seq` header, so a record is compared with the
//! record the generator makes for that index — the check does not depend on the order in which the
//! broker interleaved batches (a non-idempotent producer may reorder across a retry, which Kafka
//! allows), only on what each offset holds.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::generator::RecordGenerator;
use crate::report::{Ack, ConsumedRecord};

/// At most this many problems are listed; the rest are counted.
const PROBLEMS_LISTED_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// A clean run: records `0..records` each acknowledged once and served once.
    ExactlyOnce { records: u64 },
    /// A run with a crash in it: every acknowledged record is served at its acknowledged offset;
    /// records never acknowledged may be missing or (retried without idempotence) served twice, but
    /// every served record is one the producer sent, intact.
    AcknowledgedSurvive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub acknowledged: usize,
    pub consumed: usize,
    pub partitions_with_data: usize,
}

/// What is wrong, in words a person can act on; the first [`PROBLEMS_LISTED_MAX`] are listed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems {
    pub listed: Vec<String>,
    pub omitted: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.listed.len() < PROBLEMS_LISTED_MAX {
            self.listed.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.listed {
            writeln!(f, "  - {problem}")?;
        }
        if self.omitted > 0 {
            writeln!(f, "  ... and {} more", self.omitted)?;
        }
        Ok(())
    }
}

pub fn verify(
    generator: &RecordGenerator,
    acks: &[Ack],
    records: &[ConsumedRecord],
    expectation: Expectation,
) -> Result<Summary, Problems> {
    let mut problems = Problems::default();

    // Acknowledgements: right partition, and no offset acknowledged twice (that would be an offset
    // reused for different data).
    let mut acked_at: HashMap<(i32, i64), u64> = HashMap::with_capacity(acks.len());
    let mut acks_per_index: HashMap<u64, usize> = HashMap::with_capacity(acks.len());
    for ack in acks {
        let expected_partition = generator.record(ack.index).partition;
        if ack.partition != expected_partition {
            problems.push(format!(
                "record {} acknowledged on partition {}, sent to {expected_partition}",
                ack.index, ack.partition
            ));
        }
        if ack.offset < 0 {
            problems.push(format!(
                "record {} acknowledged with offset {}",
                ack.index, ack.offset
            ));
        }
        if let Some(previous) = acked_at.insert((ack.partition, ack.offset), ack.index) {
            problems.push(format!(
                "partition {} offset {} acknowledged for record {previous} and for record {}",
                ack.partition, ack.offset, ack.index
            ));
        }
        *acks_per_index.entry(ack.index).or_default() += 1;
    }

    // Served records: contiguous offsets from 0 per partition, each one intact.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut served_at: HashMap<(i32, i64), u64> = HashMap::with_capacity(records.len());
    let mut serves_per_index: HashMap<u64, usize> = HashMap::with_capacity(records.len());
    for record in records {
        let expected_offset = next_offset.entry(record.partition).or_insert(0);
        if record.offset != *expected_offset {
            problems.push(format!(
                "partition {}: offset {} served after {} (gap or repeat)",
                record.partition,
                record.offset,
                *expected_offset - 1
            ));
        }
        *expected_offset = record.offset + 1;
        let Some(index) = sequence_number(record) else {
            problems.push(format!(
                "partition {} offset {}: no readable `seq` header ({:?})",
                record.partition, record.offset, record.headers
            ));
            continue;
        };
        compare(&mut problems, generator, index, record);
        served_at.insert((record.partition, record.offset), index);
        *serves_per_index.entry(index).or_default() += 1;
    }

    // Every acknowledgement is served, at its offset.
    for ack in acks {
        match served_at.get(&(ack.partition, ack.offset)) {
            Some(index) if *index == ack.index => {}
            Some(index) => problems.push(format!(
                "partition {} offset {} was acknowledged for record {} but serves record {index}",
                ack.partition, ack.offset, ack.index
            )),
            None => problems.push(format!(
                "record {} acknowledged at partition {} offset {} is not served",
                ack.index, ack.partition, ack.offset
            )),
        }
    }

    if let Expectation::ExactlyOnce { records: count } = expectation {
        for index in 0..count {
            let acked = acks_per_index.get(&index).copied().unwrap_or(0);
            let served = serves_per_index.get(&index).copied().unwrap_or(0);
            if acked != 1 || served != 1 {
                problems.push(format!(
                    "record {index}: acknowledged {acked} times, served {served} times (want 1 and 1)"
                ));
            }
        }
        let beyond = serves_per_index
            .keys()
            .filter(|index| **index >= count)
            .count();
        if beyond > 0 {
            problems.push(format!(
                "{beyond} served records have an index beyond the {count} sent"
            ));
        }
    }

    if problems.is_empty() {
        Ok(Summary {
            acknowledged: acks.len(),
            consumed: records.len(),
            partitions_with_data: next_offset.len(),
        })
    } else {
        Err(problems)
    }
}

/// One producer's share of a topic several producers wrote at once. `served` is everything the
/// topic serves, sorted by (partition, offset); the records at the offsets this producer was
/// told are renumbered densely per partition (order kept), with its acknowledgements, so
/// [`verify`]'s checks — each record intact at its offset, contiguous offsets, each index once —
/// apply to its share. That no offset went to two producers, and that the topic holds nothing
/// else, the caller checks across the producers.
pub fn verify_share(
    generator: &RecordGenerator,
    acks: &[Ack],
    served: &[ConsumedRecord],
    expectation: Expectation,
) -> Result<Summary, Problems> {
    let ours: std::collections::HashSet<(i32, i64)> =
        acks.iter().map(|ack| (ack.partition, ack.offset)).collect();
    let mut dense: HashMap<(i32, i64), i64> = HashMap::with_capacity(acks.len());
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut records: Vec<ConsumedRecord> = Vec::with_capacity(acks.len());
    for record in served {
        if !ours.contains(&(record.partition, record.offset)) {
            continue;
        }
        let slot = next.entry(record.partition).or_insert(0);
        dense.insert((record.partition, record.offset), *slot);
        records.push(ConsumedRecord {
            offset: *slot,
            ..record.clone()
        });
        *slot += 1;
    }
    let mut problems = Problems::default();
    let mut renumbered = Vec::with_capacity(acks.len());
    for ack in acks {
        match dense.get(&(ack.partition, ack.offset)) {
            Some(offset) => renumbered.push(Ack {
                offset: *offset,
                ..*ack
            }),
            None => problems.push(format!(
                "record {} acknowledged at partition {} offset {} is not served",
                ack.index, ack.partition, ack.offset
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    verify(generator, &renumbered, &records, expectation)
}

fn sequence_number(record: &ConsumedRecord) -> Option<u64> {
    let (_, digits) = record.headers.iter().find(|(name, _)| name == "seq")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn compare(
    problems: &mut Problems,
    generator: &RecordGenerator,
    index: u64,
    record: &ConsumedRecord,
) {
    let expected = generator.record(index);
    let place = format!(
        "partition {} offset {} (record {index})",
        record.partition, record.offset
    );
    if record.partition != expected.partition {
        problems.push(format!("{place}: sent to partition {}", expected.partition));
    }
    if record.key != expected.key {
        problems.push(format!(
            "{place}: key {:?}, sent {:?}",
            record.key, expected.key
        ));
    }
    if record.value != expected.value {
        problems.push(format!(
            "{place}: value of {} bytes differs from the {} bytes sent",
            record.value.len(),
            expected.value.len()
        ));
    }
    if record.headers != expected.headers {
        problems.push(format!(
            "{place}: headers {:?}, sent {:?}",
            record.headers, expected.headers
        ));
    }
    if record.timestamp_ms != expected.timestamp_ms {
        problems.push(format!(
            "{place}: timestamp {} ms, sent {} ms",
            record.timestamp_ms, expected.timestamp_ms
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const GENERATOR: RecordGenerator = RecordGenerator {
        seed: 7,
        partitions: 3,
        timestamp_base_ms: 1_000,
    };

    /// A perfect run of `count` records: acks and served records as a broker would give them.
    fn perfect(count: u64) -> (Vec<Ack>, Vec<ConsumedRecord>) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut acks = Vec::new();
        let mut records = Vec::new();
        for index in 0..count {
            let sent = GENERATOR.record(index);
            let offset = next.entry(sent.partition).or_insert(0);
            acks.push(Ack {
                index,
                partition: sent.partition,
                offset: *offset,
            });
            records.push(ConsumedRecord {
                partition: sent.partition,
                offset: *offset,
                key: sent.key,
                value: sent.value,
                headers: sent.headers,
                timestamp_ms: sent.timestamp_ms,
            });
            *offset += 1;
        }
        records.sort_by_key(|record| (record.partition, record.offset));
        (acks, records)
    }

    #[test]
    fn a_perfect_run_passes() {
        let (acks, records) = perfect(100);
        let summary = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::ExactlyOnce { records: 100 },
        )
        .unwrap();
        assert_eq!(summary.acknowledged, 100);
        assert_eq!(summary.consumed, 100);
        assert_eq!(summary.partitions_with_data, 3);
    }

    #[test]
    fn one_flipped_value_byte_fails() {
        let (acks, mut records) = perfect(100);
        records[41].value[0] ^= 1;
        let problems = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::ExactlyOnce { records: 100 },
        )
        .unwrap_err();
        assert_eq!(problems.listed.len(), 1, "{problems}");
        assert!(problems.listed[0].contains("value"), "{problems}");
    }

    #[test]
    fn a_missing_record_is_a_gap_and_an_unserved_ack() {
        let (acks, mut records) = perfect(30);
        records.remove(4);
        let problems = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::AcknowledgedSurvive,
        )
        .unwrap_err();
        let text = problems.to_string();
        assert!(text.contains("gap or repeat"), "{text}");
        assert!(text.contains("is not served"), "{text}");
    }

    #[test]
    fn a_lost_ack_fails_exactly_once_but_not_acknowledged_survive() {
        let (mut acks, records) = perfect(30);
        acks.remove(10);
        assert!(
            verify(
                &GENERATOR,
                &acks,
                &records,
                Expectation::AcknowledgedSurvive
            )
            .is_ok()
        );
        let problems = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::ExactlyOnce { records: 30 },
        )
        .unwrap_err();
        assert!(
            problems
                .to_string()
                .contains("record 10: acknowledged 0 times"),
            "{problems}"
        );
    }

    #[test]
    fn an_offset_acknowledged_twice_fails() {
        let (mut acks, records) = perfect(30);
        acks[4].offset = acks[1].offset;
        acks[4].partition = acks[1].partition;
        let problems = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::AcknowledgedSurvive,
        )
        .unwrap_err();
        assert!(
            problems
                .to_string()
                .contains("acknowledged for record 1 and for record 4"),
            "{problems}"
        );
    }

    #[test]
    fn problems_are_capped() {
        let (acks, mut records) = perfect(100);
        for record in &mut records {
            record.timestamp_ms += 1;
        }
        let problems = verify(
            &GENERATOR,
            &acks,
            &records,
            Expectation::ExactlyOnce { records: 100 },
        )
        .unwrap_err();
        assert_eq!(problems.listed.len(), PROBLEMS_LISTED_MAX);
        assert_eq!(problems.omitted, 100 - PROBLEMS_LISTED_MAX);
    }
}
