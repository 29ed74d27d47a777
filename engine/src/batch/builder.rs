//! A small encoder of uncompressed v2 record batches, for tests, fixtures, tools and load generators.
//!
//! The engine's own write path never encodes a batch (it keeps the producer's bytes); this exists so
//! that tests everywhere build real batches with a real CRC instead of hard-coded byte strings.
//! Setting a compression codec in `attributes` only sets the bit: the records are written as given,
//! which is enough for anything that treats records as opaque, as the engine does.

use bytes::{BufMut, Bytes, BytesMut};

use super::{BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX_LEN, CRC_COVERED_FROM, RECORD_BATCH_MAGIC};

/// One record of a [`BatchBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Builds one v2 record batch. Fields are public so a test can set any of them; `encode` derives
/// `batchLength`, `lastOffsetDelta`, `maxTimestamp`, `recordCount` and the CRC from the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchBuilder {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<RecordSpec>,
}

impl BatchBuilder {
    /// A batch as a non-idempotent producer sends it: base offset 0, no producer id.
    pub fn new(base_timestamp: i64) -> BatchBuilder {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }

    pub fn attributes(mut self, attributes: i16) -> BatchBuilder {
        self.attributes = attributes;
        self
    }

    pub fn producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends a record at the next offset delta, `timestamp_delta` ms after the base timestamp.
    pub fn record(
        mut self,
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> BatchBuilder {
        let offset_delta = i32::try_from(self.records.len()).unwrap_or(i32::MAX);
        self.records.push(RecordSpec {
            timestamp_delta,
            offset_delta,
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(value)),
        });
        self
    }

    /// Encodes the batch with its CRC-32C. An empty batch gets `lastOffsetDelta = -1`.
    pub fn encode(&self) -> Bytes {
        let mut records = BytesMut::new();
        for record in &self.records {
            encode_record(record, &mut records);
        }
        let last_offset_delta = self
            .records
            .iter()
            .map(|r| r.offset_delta)
            .max()
            .unwrap_or(-1);
        let max_timestamp_delta = self
            .records
            .iter()
            .map(|r| r.timestamp_delta)
            .max()
            .unwrap_or(0);
        let record_count = i32::try_from(self.records.len()).unwrap_or(i32::MAX);
        let batch_length =
            i32::try_from(BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX_LEN + records.len())
                .unwrap_or(i32::MAX);

        let mut batch = BytesMut::with_capacity(BATCH_HEADER_LEN + records.len());
        batch.put_i64(self.base_offset);
        batch.put_i32(batch_length);
        batch.put_i32(self.partition_leader_epoch);
        batch.put_i8(RECORD_BATCH_MAGIC);
        batch.put_u32(0); // CRC, patched below once the covered bytes exist
        batch.put_i16(self.attributes);
        batch.put_i32(last_offset_delta);
        batch.put_i64(self.base_timestamp);
        batch.put_i64(self.base_timestamp.saturating_add(max_timestamp_delta));
        batch.put_i64(self.producer_id);
        batch.put_i16(self.producer_epoch);
        batch.put_i32(self.base_sequence);
        batch.put_i32(record_count);
        batch.put_slice(&records);

        let crc = crc32c::crc32c(batch.get(CRC_COVERED_FROM..).unwrap_or_default());
        if let Some(field) = batch.get_mut(CRC_COVERED_FROM - 4..CRC_COVERED_FROM) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        batch.freeze()
    }
}

fn encode_record(record: &RecordSpec, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    body.put_i8(0); // record attributes: unused by Kafka
    put_varlong(&mut body, record.timestamp_delta);
    put_varlong(&mut body, i64::from(record.offset_delta));
    put_optional_bytes(&mut body, record.key.as_deref());
    put_optional_bytes(&mut body, record.value.as_deref());
    put_varlong(&mut body, 0); // no headers
    put_varlong(out, i64::try_from(body.len()).unwrap_or(i64::MAX));
    out.put_slice(&body);
}

fn put_optional_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, i64::try_from(bytes.len()).unwrap_or(i64::MAX));
            out.put_slice(bytes);
        }
    }
}

/// Kafka's zig-zag varint (as protobuf's sint64).
fn put_varlong(out: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}
