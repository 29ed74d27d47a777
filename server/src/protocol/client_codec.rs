//! The client side of the codec: encode a request frame, decode a response frame.
//!
//! The agent never sends requests; this exists so that tests, the load generator and tools
//! speak the protocol through the same crate the agent uses, without a client library.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::frame::{FRAME_SIZE_PREFIX_BYTES, size_prefix};

/// Encodes a complete request frame (size prefix, header of the right version, body).
pub fn encode_request<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &R,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|id| StrBytes::from_string(id.to_owned())));
    let header_version = api_key.request_header_version(version);
    let message_bytes = header
        .compute_size(header_version)
        .map_err(|e| e.to_string())?
        + body.compute_size(version).map_err(|e| e.to_string())?;
    let prefix = size_prefix(message_bytes).ok_or("request too large")?;
    let mut buffer = BytesMut::with_capacity(FRAME_SIZE_PREFIX_BYTES + message_bytes);
    buffer.put_slice(&prefix);
    header
        .encode(&mut buffer, header_version)
        .map_err(|e| e.to_string())?;
    body.encode(&mut buffer, version)
        .map_err(|e| e.to_string())?;
    Ok(buffer.freeze())
}

/// Decodes a response frame (size prefix included) of `api_key` at `version`.
pub fn decode_response<R: Decodable>(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, R), String> {
    if frame.len() < FRAME_SIZE_PREFIX_BYTES {
        return Err("frame shorter than its size prefix".to_owned());
    }
    let size_bytes = frame.get_i32();
    if usize::try_from(size_bytes).ok() != Some(frame.len()) {
        return Err(format!(
            "size prefix {size_bytes} but {} bytes follow",
            frame.len()
        ));
    }
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(|e| e.to_string())?;
    let body = R::decode(&mut frame, version).map_err(|e| e.to_string())?;
    if !frame.is_empty() {
        return Err(format!(
            "{} bytes left after the response body",
            frame.len()
        ));
    }
    Ok((header, body))
}
