//! Asks a broker which Kafka APIs it serves (ApiVersions v0, written by hand: twenty bytes out, a
//! flat array back), so that a Sluice test can tell "not implemented yet" from "broken" and skip
//! loudly instead of failing or passing silently; and which brokers it lists (Metadata v4, no
//! topics), so that a cluster test can wait until every agent knows every other.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::HarnessError;

const API_VERSIONS_KEY: i16 = 18;
/// An ApiVersions answer lists a few dozen APIs; anything near this is not one.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
const PROBE_TIMEOUT_MS: u64 = 10_000;

/// Kafka API keys the harness cares about, with their protocol names.
pub const PRODUCE: (i16, &str) = (0, "Produce");
pub const FETCH: (i16, &str) = (1, "Fetch");
pub const LIST_OFFSETS: (i16, &str) = (2, "ListOffsets");
pub const METADATA: (i16, &str) = (3, "Metadata");
pub const CREATE_TOPICS: (i16, &str) = (19, "CreateTopics");

/// What the matrix's clients call: metadata, topic creation, produce, the end offsets, fetch.
pub const MATRIX_APIS: [(i16, &str); 5] = [METADATA, CREATE_TOPICS, PRODUCE, LIST_OFFSETS, FETCH];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: i16,
    pub version_min: i16,
    pub version_max: i16,
}

/// The APIs `address` advertises.
pub fn advertised(address: SocketAddr) -> Result<Vec<ApiRange>, HarnessError> {
    let correlation_id: i32 = 0x5175_1ce0;
    let response = round_trip(address, API_VERSIONS_KEY, 0, correlation_id, &[])?;
    parse_response(&response, correlation_id).map_err(|message| HarnessError::Protocol {
        address: address.to_string(),
        message,
    })
}

/// The node ids of the brokers `address` lists in a Metadata (v4) answer naming no topic: in a
/// cluster, the live agents as that agent last listed them.
pub fn metadata_brokers(address: SocketAddr) -> Result<Vec<i32>, HarnessError> {
    let failed = |message: String| HarnessError::Protocol {
        address: address.to_string(),
        message,
    };
    let correlation_id: i32 = 0x5175_1ce1;
    // No topics (an empty array, not null: null asks for all), no auto-creation.
    let body = [0, 0, 0, 0, 0];
    let response = round_trip(address, METADATA.0, 4, correlation_id, &body)?;
    let mut reader = Reader(&response);
    if reader.i32()? != correlation_id {
        return Err(failed("wrong correlation id".into()));
    }
    let _throttle_time_ms = reader.i32()?;
    let count = reader.i32()?;
    let count = usize::try_from(count).map_err(|_| failed(format!("{count} brokers")))?;
    let mut brokers = Vec::with_capacity(count.min(RESPONSE_BYTES_MAX / 10));
    for _ in 0..count {
        let node_id = reader.i32()?;
        reader.string()?; // host
        reader.i32()?; // port
        reader.string()?; // rack (nullable)
        brokers.push(node_id);
    }
    Ok(brokers)
}

/// FindCoordinator's API key; v1 (not flexible) names one group and answers one coordinator.
const FIND_COORDINATOR_KEY: i16 = 10;

/// The coordinator `address` names for consumer group `group` (FindCoordinator v1): its node id
/// and port, or the error code it answered.
pub fn find_coordinator(address: SocketAddr, group: &str) -> Result<(i32, u16), HarnessError> {
    let failed = |message: String| HarnessError::Protocol {
        address: address.to_string(),
        message,
    };
    let correlation_id: i32 = 0x5175_1ce2;
    let key = group.as_bytes();
    let length =
        i16::try_from(key.len()).map_err(|_| failed(format!("a {}-byte group id", key.len())))?;
    let mut body = Vec::with_capacity(key.len() + 3);
    body.extend_from_slice(&length.to_be_bytes());
    body.extend_from_slice(key);
    body.push(0); // key type: a group
    let response = round_trip(address, FIND_COORDINATOR_KEY, 1, correlation_id, &body)?;
    let mut reader = Reader(&response);
    if reader.i32()? != correlation_id {
        return Err(failed("wrong correlation id".into()));
    }
    let _throttle_time_ms = reader.i32()?;
    let error_code = i16::from_be_bytes(reader.take::<2>()?);
    reader.string()?; // error message (nullable)
    let node_id = reader.i32()?;
    reader.string()?; // host
    let port = reader.i32()?;
    if error_code != 0 {
        return Err(failed(format!(
            "FindCoordinator answered error code {error_code}"
        )));
    }
    let port = u16::try_from(port).map_err(|_| failed(format!("port {port}")))?;
    Ok((node_id, port))
}

/// A big-endian reader over a response body; running out is an error.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], HarnessError> {
        let head = self
            .0
            .get(..N)
            .and_then(|head| <[u8; N]>::try_from(head).ok());
        let rest = self.0.get(N..);
        match (head, rest) {
            (Some(head), Some(rest)) => {
                self.0 = rest;
                Ok(head)
            }
            _ => Err(truncated()),
        }
    }

    fn i32(&mut self) -> Result<i32, HarnessError> {
        Ok(i32::from_be_bytes(self.take::<4>()?))
    }

    /// A (nullable) string: its length, then its bytes; -1 is null.
    fn string(&mut self) -> Result<(), HarnessError> {
        let length = i16::from_be_bytes(self.take::<2>()?);
        if let Ok(length) = usize::try_from(length) {
            self.0 = self.0.get(length..).ok_or_else(truncated)?;
        }
        Ok(())
    }
}

fn truncated() -> HarnessError {
    HarnessError::Protocol {
        address: String::new(),
        message: "a truncated answer".into(),
    }
}

/// Sends one request (header v1: key, version, correlation id, client id) and returns the
/// response body after its size prefix.
fn round_trip(
    address: SocketAddr,
    api_key: i16,
    version: i16,
    correlation_id: i32,
    request_body: &[u8],
) -> Result<Vec<u8>, HarnessError> {
    let failed = |message: String| HarnessError::Protocol {
        address: address.to_string(),
        message,
    };
    let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| failed(format!("connect: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| failed(format!("set timeout: {e}")))?;
    let client_id = b"sluice-e2e";
    let mut body = Vec::with_capacity(32 + request_body.len());
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&i16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(client_id);
    body.extend_from_slice(request_body);
    let mut request = Vec::with_capacity(body.len() + 4);
    request.extend_from_slice(&i32::try_from(body.len()).unwrap_or(0).to_be_bytes());
    request.extend_from_slice(&body);
    stream
        .write_all(&request)
        .map_err(|e| failed(format!("send: {e}")))?;

    let mut size = [0_u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| failed(format!("read size: {e}")))?;
    let size =
        usize::try_from(i32::from_be_bytes(size)).map_err(|_| failed("negative size".into()))?;
    if size > RESPONSE_BYTES_MAX {
        return Err(failed(format!("response of {size} bytes")));
    }
    let mut response = vec![0_u8; size];
    stream
        .read_exact(&mut response)
        .map_err(|e| failed(format!("read body: {e}")))?;
    Ok(response)
}

/// Parses an ApiVersions v0 response body (after the size prefix).
pub fn parse_response(body: &[u8], correlation_id: i32) -> Result<Vec<ApiRange>, String> {
    let mut cursor = body;
    let got_correlation = take_i32(&mut cursor)?;
    if got_correlation != correlation_id {
        return Err(format!(
            "correlation id {got_correlation}, sent {correlation_id}"
        ));
    }
    let error_code = take_i16(&mut cursor)?;
    // 35 (UNSUPPORTED_VERSION) still lists the ranges, so only other errors are fatal.
    if error_code != 0 && error_code != 35 {
        return Err(format!("error code {error_code}"));
    }
    let count = take_i32(&mut cursor)?;
    let count = usize::try_from(count).map_err(|_| format!("array length {count}"))?;
    if count > cursor.len() / 6 {
        return Err(format!(
            "array of {count} entries in {} bytes",
            cursor.len()
        ));
    }
    let mut ranges = Vec::with_capacity(count);
    for _ in 0..count {
        ranges.push(ApiRange {
            api_key: take_i16(&mut cursor)?,
            version_min: take_i16(&mut cursor)?,
            version_max: take_i16(&mut cursor)?,
        });
    }
    Ok(ranges)
}

/// The names of the `wanted` APIs that `advertised` lacks, in the order given.
pub fn missing<'a>(advertised: &[ApiRange], wanted: &[(i16, &'a str)]) -> Vec<&'a str> {
    wanted
        .iter()
        .filter(|(key, _)| !advertised.iter().any(|range| range.api_key == *key))
        .map(|(_, name)| *name)
        .collect()
}

fn take_i16(cursor: &mut &[u8]) -> Result<i16, String> {
    match *cursor {
        [a, b, rest @ ..] => {
            *cursor = rest;
            Ok(i16::from_be_bytes([*a, *b]))
        }
        _ => Err("truncated response".into()),
    }
}

fn take_i32(cursor: &mut &[u8]) -> Result<i32, String> {
    match *cursor {
        [a, b, c, d, rest @ ..] => {
            *cursor = rest;
            Ok(i32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => Err("truncated response".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn response(entries: &[(i16, i16, i16)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&7_i32.to_be_bytes());
        body.extend_from_slice(&0_i16.to_be_bytes());
        body.extend_from_slice(&i32::try_from(entries.len()).unwrap().to_be_bytes());
        for (key, min, max) in entries {
            for value in [key, min, max] {
                body.extend_from_slice(&value.to_be_bytes());
            }
        }
        body
    }

    #[test]
    fn parses_ranges_and_names_what_is_missing() {
        let ranges = parse_response(&response(&[(3, 0, 12), (18, 0, 4), (0, 3, 11)]), 7).unwrap();
        assert_eq!(ranges.len(), 3);
        assert_eq!(
            ranges[2],
            ApiRange {
                api_key: 0,
                version_min: 3,
                version_max: 11
            }
        );
        assert_eq!(
            missing(&ranges, &MATRIX_APIS),
            vec!["CreateTopics", "ListOffsets", "Fetch"]
        );
    }

    #[test]
    fn rejects_truncated_and_mismatched_responses() {
        let body = response(&[(3, 0, 12)]);
        assert!(parse_response(&body[..body.len() - 1], 7).is_err());
        assert!(
            parse_response(&body, 8)
                .unwrap_err()
                .contains("correlation")
        );
        let mut lying = response(&[]);
        lying[6..10].copy_from_slice(&1000_i32.to_be_bytes());
        assert!(parse_response(&lying, 7).is_err());
    }
}
