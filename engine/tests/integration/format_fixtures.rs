//! Golden fixtures of object format v1 (`engine/testdata/format/v1/`).
//!
//! The valid fixtures must still decode to what they hold *and* the encoder must still produce them
//! byte for byte: an accidental format change fails here, not in production against old objects.
//! The corrupt ones must fail with exactly the recorded error.
//!
//! Regenerate (only for a deliberate, versioned format change):
//! `SLUICE_REGEN_FIXTURES=1 cargo test -p sluice-engine --test integration -- format_fixtures::`
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use bytes::Bytes;
use sluice_engine::batch::{BatchBuilder, BatchError, validate_batch};
use sluice_engine::format::{
    ChecksumRegion, EncodedObject, EntryHeader, EntryKind, FormatError, ObjectBuilder,
    ObjectReader, TailRead, read_tail, to_json,
};
use sluice_engine::types::{LogSeq, TopicId, TopicPartition};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/format/v1")
}

fn entry(seq: u64, kind: EntryKind) -> EntryHeader {
    EntryHeader {
        seq: LogSeq(seq),
        writer_epoch: 2,
        prev_seq: seq.checked_sub(1).map(LogSeq),
        entry_nonce: 0x5eed_0000_0000_0000 + seq,
        kind,
        created_at_ms: 1_764_000_000_000 + seq as i64,
    }
}

fn tp(topic: u8, partition: i32) -> TopicPartition {
    TopicPartition::new(TopicId([topic; 16]), partition)
}

fn batch(base_timestamp: i64, attributes: i16, producer_id: i64, records: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(base_timestamp)
        .attributes(attributes)
        .producer(producer_id, 0, 0);
    for (i, value) in records.iter().enumerate() {
        builder = builder.record(
            i as i64,
            Some(format!("key-{i}").as_bytes()),
            value.as_bytes(),
        );
    }
    builder.encode()
}

fn object(
    entry: EntryHeader,
    batches: &[(TopicPartition, Bytes)],
    commands: &[u8],
) -> EncodedObject {
    let mut builder = ObjectBuilder::new(entry);
    for (tp, batch) in batches {
        builder
            .push_batch(*tp, &validate_batch(batch).unwrap(), batch.clone())
            .unwrap();
    }
    builder
        .set_commands(Bytes::copy_from_slice(commands))
        .unwrap();
    builder.finish().unwrap()
}

/// The valid fixtures: name → how to build it.
fn valid_fixtures() -> Vec<(&'static str, EncodedObject)> {
    let ts = 1_764_000_000_000;
    vec![
        ("empty_data", object(entry(0, EntryKind::Data), &[], b"")),
        (
            "one_partition",
            object(
                entry(1, EntryKind::Data),
                &[
                    (tp(1, 0), batch(ts, 0, 1000, &["a", "bb", "ccc"])),
                    (tp(1, 0), batch(ts + 10, 0, 1000, &["dddd"])),
                    (tp(1, 0), batch(ts + 20, 0, 1000, &["e", "f"])),
                ],
                b"",
            ),
        ),
        (
            "multi_partition_compressed",
            object(
                entry(2, EntryKind::Data),
                &[
                    (tp(2, 3), batch(ts, 1, -1, &["gzip-flag"])), // gzip
                    (tp(1, 0), batch(ts, 2, -1, &["snappy-flag", "x"])), // snappy
                    (tp(2, 3), batch(ts + 5, 3, -1, &["lz4-flag"])), // lz4
                    (tp(3, 7), batch(ts + 6, 4 | 1 << 4, 77, &["zstd"])), // zstd, transactional
                    (tp(1, 0), batch(ts + 7, 1 << 5 | 1 << 4, 77, &[""])), // control, transactional
                ],
                b"commit-offsets",
            ),
        ),
        (
            "commands_only",
            object(
                entry(3, EntryKind::Data),
                &[],
                b"create-topic orders 12 partitions",
            ),
        ),
        ("claim", object(entry(4, EntryKind::Claim), &[], b"")),
    ]
}

/// The corrupt fixtures: name → bytes derived from a valid one.
fn corrupt_fixtures(valid: &[(&'static str, EncodedObject)]) -> Vec<(&'static str, Bytes)> {
    let bytes = |name: &str| {
        valid
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .to_contiguous()
            .to_vec()
    };
    let one = bytes("one_partition");
    let len = one.len();
    let flip = |mut object: Vec<u8>, at: usize| {
        object[at] ^= 0x40;
        Bytes::from(object)
    };
    let mut version_2 = one.clone();
    version_2[8..10].copy_from_slice(&2u16.to_le_bytes());
    let header_crc = crc32c::crc32c(&version_2[..60]);
    version_2[60..64].copy_from_slice(&header_crc.to_le_bytes());
    version_2[len - 10..len - 8].copy_from_slice(&2u16.to_le_bytes());
    vec![
        ("corrupt_truncated", Bytes::copy_from_slice(&one[..len / 2])),
        (
            "corrupt_truncated_header",
            Bytes::copy_from_slice(&one[..40]),
        ),
        ("corrupt_checksum_flipped", flip(one.clone(), len - 14)), // a byte of the trailer checksum
        ("corrupt_index_flipped", flip(one.clone(), len - 38 - 20)), // a byte inside the index
        ("corrupt_header_flipped", flip(one.clone(), 20)),         // the seq field
        ("corrupt_bad_magic", flip(one.clone(), 0)),
        ("corrupt_version_2", Bytes::from(version_2)),
        ("corrupt_batch_payload_flipped", flip(one.clone(), 64 + 70)), // inside batch 0's records
    ]
}

fn path(name: &str, extension: &str) -> PathBuf {
    fixture_dir().join(format!("{name}.{extension}"))
}

/// Writes every fixture when `SLUICE_REGEN_FIXTURES` is set; every test calls it first, and the
/// `Once` keeps the tests (which run in parallel) from reading a half-written file.
fn regenerate_if_asked() {
    static REGENERATE: std::sync::Once = std::sync::Once::new();
    REGENERATE.call_once(|| {
        if std::env::var_os("SLUICE_REGEN_FIXTURES").is_some() {
            write_fixtures();
        }
    });
}

fn write_fixtures() {
    let valid = valid_fixtures();
    let corrupt = corrupt_fixtures(&valid);
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for (name, encoded) in &valid {
        let object = encoded.to_contiguous();
        std::fs::write(path(name, "bin"), &object).unwrap();
        let reader = ObjectReader::open(name, object).unwrap();
        let json = serde_json::to_string_pretty(&to_json(name, &reader).unwrap()).unwrap();
        std::fs::write(path(name, "json"), json + "\n").unwrap();
    }
    for (name, bytes) in &corrupt {
        std::fs::write(path(name, "bin"), bytes).unwrap();
    }
}

#[test]
fn fixtures_are_current() {
    regenerate_if_asked();
    let valid = valid_fixtures();
    let corrupt = corrupt_fixtures(&valid);
    for (name, encoded) in &valid {
        let stored = std::fs::read(path(name, "bin")).unwrap();
        assert!(
            stored == encoded.to_contiguous(),
            "{name}: the encoder no longer produces the v1 fixture"
        );
        let reader = ObjectReader::open(name, Bytes::from(stored)).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path(name, "json")).unwrap()).unwrap();
        assert_eq!(
            to_json(name, &reader).unwrap(),
            json,
            "{name}: JSON dump changed"
        );
    }
    for (name, bytes) in &corrupt {
        assert_eq!(
            std::fs::read(path(name, "bin")).unwrap(),
            bytes.to_vec(),
            "{name}: fixture differs from its recipe"
        );
    }
}

fn read(name: &str) -> Bytes {
    regenerate_if_asked();
    Bytes::from(std::fs::read(path(name, "bin")).unwrap())
}

fn open(name: &str) -> Result<ObjectReader, FormatError> {
    ObjectReader::open(name, read(name))
}

#[test]
fn valid_fixtures_decode_to_what_they_hold() {
    /// (name, seq, kind, prev_seq, partitions in layout order with batch counts, record total, commands)
    type Case<'a> = (
        &'a str,
        u64,
        EntryKind,
        Option<u64>,
        &'a [(TopicPartition, u32)],
        u64,
        &'a [u8],
    );
    let cases: [Case; 5] = [
        ("empty_data", 0, EntryKind::Data, None, &[], 0, b""),
        (
            "one_partition",
            1,
            EntryKind::Data,
            Some(0),
            &[(tp(1, 0), 3)],
            6,
            b"",
        ),
        (
            "multi_partition_compressed",
            2,
            EntryKind::Data,
            Some(1),
            &[(tp(2, 3), 2), (tp(1, 0), 2), (tp(3, 7), 1)],
            6,
            b"commit-offsets",
        ),
        (
            "commands_only",
            3,
            EntryKind::Data,
            Some(2),
            &[],
            0,
            b"create-topic orders 12 partitions",
        ),
        ("claim", 4, EntryKind::Claim, Some(3), &[], 0, b""),
    ];
    for (name, seq, kind, prev_seq, segments, records, commands) in cases {
        let reader = open(name).unwrap();
        reader.verify_batches().unwrap();
        let header = reader.header();
        assert_eq!(
            (header.seq, header.kind, header.prev_seq),
            (LogSeq(seq), kind, prev_seq.map(LogSeq)),
            "{name}"
        );
        assert_eq!(header.writer_epoch, 2);
        let index = reader.to_index().unwrap();
        let layout: Vec<(TopicPartition, u32)> = index
            .segments
            .iter()
            .map(|s| (s.tp, s.batch_count))
            .collect();
        assert_eq!(layout, segments, "{name}");
        assert_eq!(
            index.segments.iter().map(|s| s.record_count).sum::<u64>(),
            records,
            "{name}"
        );
        assert_eq!(
            reader.commands(),
            Bytes::copy_from_slice(commands),
            "{name}"
        );
        // Recovery's view: the tail alone gives the same index.
        let object = reader.as_bytes().clone();
        let TailRead::Complete(tail) = read_tail(name, object.len() as u64, object).unwrap() else {
            panic!("{name}: whole object as tail asked for more")
        };
        assert_eq!(tail.to_index().unwrap(), index, "{name}");
    }
    let compressed = open("multi_partition_compressed")
        .unwrap()
        .to_index()
        .unwrap();
    let attributes: Vec<i16> = compressed.batches.iter().map(|b| b.attributes).collect();
    assert_eq!(attributes, [1, 3, 2, 0b11_0000, 4 | 1 << 4]);
}

#[test]
fn corrupt_fixtures_fail_with_the_recorded_error() {
    let key = |name: &str| name.to_owned();
    let one_len = read("one_partition").len() as u64;

    let name = "corrupt_truncated";
    assert_eq!(
        open(name).unwrap_err(),
        FormatError::MissingTrailer {
            key: key(name),
            len: one_len / 2
        }
    );

    let name = "corrupt_truncated_header";
    assert_eq!(
        open(name).unwrap_err(),
        FormatError::Truncated {
            key: key(name),
            len: 40,
            needed: 102
        }
    );

    let name = "corrupt_bad_magic";
    assert_eq!(
        open(name).unwrap_err(),
        FormatError::BadMagic { key: key(name) }
    );

    let name = "corrupt_version_2";
    let newer = FormatError::UnsupportedVersion {
        key: key(name),
        version: 2,
        max_supported: 1,
    };
    assert_eq!(open(name).unwrap_err(), newer);
    // A tail reader sees the trailer's copy of the version.
    assert_eq!(read_tail(name, one_len, read(name)).unwrap_err(), newer);

    for name in ["corrupt_checksum_flipped", "corrupt_index_flipped"] {
        let error = open(name).unwrap_err();
        let FormatError::ChecksumMismatch {
            key: ref error_key,
            region,
            expected,
            got,
        } = error
        else {
            panic!("{name}: {error:?}")
        };
        assert_eq!((error_key.as_str(), region), (name, ChecksumRegion::Tail));
        assert_ne!(expected, got);
        assert!(matches!(
            read_tail(name, one_len, read(name)),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }

    let name = "corrupt_header_flipped";
    let error = open(name).unwrap_err();
    assert!(
        matches!(
            error,
            FormatError::ChecksumMismatch {
                region: ChecksumRegion::Header,
                ..
            }
        ),
        "{name}: {error:?}"
    );
    // The header is not part of the tail: a tail reader is unaffected, by design.
    assert!(matches!(
        read_tail(name, one_len, read(name)),
        Ok(TailRead::Complete(_))
    ));

    // Batch payloads are covered by their own CRC, checked on demand.
    let name = "corrupt_batch_payload_flipped";
    let reader = open(name).unwrap();
    let error = reader.verify_batches().unwrap_err();
    assert!(
        matches!(error, FormatError::BadBatch { ref key, batch: 0, source: BatchError::CrcMismatch { .. } } if key == name),
        "{error:?}"
    );
}
