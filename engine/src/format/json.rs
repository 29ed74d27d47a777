//! An object as JSON, for `sluice dump` and for reading fixtures by eye.

use serde_json::{Value, json};

use super::FORMAT_VERSION;
use super::decoder::ObjectReader;
use super::error::FormatError;
use crate::batch::validate_batch;

/// Header, index (segments with their batches) and each batch's own header and CRC verdict.
pub fn to_json(key: &str, reader: &ObjectReader) -> Result<Value, FormatError> {
    let index = reader.to_index()?;
    let segments: Vec<Value> = index
        .segments
        .iter()
        .map(|segment| {
            let first = segment.batch_start as usize;
            let batches: Vec<Value> = index
                .batches
                .iter()
                .enumerate()
                .skip(first)
                .take(segment.batch_count as usize)
                .map(|(number, batch)| {
                    let bytes = reader.batch_bytes(number).unwrap_or_default();
                    let kafka_header = match validate_batch(&bytes) {
                        Ok(header) => json!({ "crc_ok": true, "header": header }),
                        Err(error) => json!({ "crc_ok": false, "error": error.to_string() }),
                    };
                    json!({ "number": number, "index": batch, "batch": kafka_header })
                })
                .collect();
            json!({
                "topic_partition": segment.tp.to_string(),
                "segment": segment,
                "batches": batches,
            })
        })
        .collect();
    Ok(json!({
        "key": key,
        "format_version": FORMAT_VERSION,
        "object_len": reader.len(),
        "entry": reader.header(),
        "commands_len": reader.commands().len(),
        "segments": segments,
    }))
}
