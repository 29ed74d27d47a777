//! One Kafka connection with requests in flight side by side, as the Java client keeps them: a
//! member's heartbeat does not wait behind its offset commit on the client side (the broker may
//! still answer one connection's requests in order — that is part of what is measured).
//!
//! Requests are written whole under a lock on the write half; one reader task per connection
//! splits responses by correlation id and stamps each with the instant its last byte arrived, so
//! a latency is "request written → response read", not including the caller's wake-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// Java's `request.timeout.ms` default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Larger responses are a protocol error here (ours are a few hundred bytes).
const RESPONSE_BYTES_MAX: usize = 16 << 20;

/// What went wrong with one call. Broker error codes are not here: they are in the response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connection closed")]
    Disconnected,
    #[error("no response in time")]
    Timeout,
    #[error("codec: {0}")]
    Codec(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl CallError {
    /// A short name for error counts.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Disconnected => "disconnected",
            CallError::Timeout => "timeout",
            CallError::Codec(_) => "codec",
            CallError::Io(_) => "io",
        }
    }
}

type Waiter = oneshot::Sender<(Instant, Bytes)>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<i32, Waiter>,
    closed: bool,
}

#[derive(Debug)]
pub struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    next_correlation_id: AtomicI32,
    client_id: StrBytes,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} waiting)", self.waiters.len())
    }
}

/// A response with the time it took.
#[derive(Debug)]
pub struct Answer<T> {
    pub body: T,
    pub latency: Duration,
}

impl Connection {
    pub async fn connect(address: &str, client_id: &str) -> Result<Arc<Connection>, CallError> {
        let stream = TcpStream::connect(address).await?;
        // Small requests and answers: Nagle's algorithm would add tens of ms to each.
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read_responses(reader, Arc::clone(&pending)));
        Ok(Arc::new(Connection {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_correlation_id: AtomicI32::new(1),
            client_id: StrBytes::from_string(client_id.to_owned()),
        }))
    }

    /// Sends `request` at `version` and waits for its response (at most [`REQUEST_TIMEOUT`]).
    pub async fn call<R: Request>(
        &self,
        version: i16,
        request: &R,
    ) -> Result<Answer<R::Response>, CallError> {
        self.call_with_timeout(version, request, REQUEST_TIMEOUT)
            .await
    }

    /// [`Connection::call`] with its own limit (JoinGroup waits up to the rebalance timeout).
    pub async fn call_with_timeout<R: Request>(
        &self,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<Answer<R::Response>, CallError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|()| CallError::Codec(format!("unknown api key {}", R::KEY)))?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(api_key, version, correlation_id, &self.client_id, request)
            .map_err(|error| CallError::Codec(format!("{error:#}")))?;
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.closed {
                return Err(CallError::Disconnected);
            }
            pending.waiters.insert(correlation_id, sender);
        }
        let written = {
            let mut writer = self.writer.lock().await;
            let started = Instant::now();
            writer.write_all(&frame).await.map(|()| started)
        };
        let started = match written {
            Ok(started) => started,
            Err(error) => {
                self.forget(correlation_id);
                return Err(error.into());
            }
        };
        let (arrived, mut body) = match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(CallError::Disconnected),
            Err(_) => {
                self.forget(correlation_id);
                return Err(CallError::Timeout);
            }
        };
        let decoded = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
            .and_then(|_| R::Response::decode(&mut body, version))
            .map_err(|error| CallError::Codec(format!("{api_key:?} v{version}: {error:#}")))?;
        Ok(Answer {
            body: decoded,
            latency: arrived.saturating_duration_since(started),
        })
    }

    fn forget(&self, correlation_id: i32) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiters
            .remove(&correlation_id);
    }
}

fn encode_request<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    body: &R,
) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = api_key.request_header_version(version);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buffer = BytesMut::with_capacity(4 + size);
    buffer.put_i32(i32::try_from(size)?);
    header.encode(&mut buffer, header_version)?;
    body.encode(&mut buffer, version)?;
    Ok(buffer.freeze())
}

/// Reads size-prefixed responses until the connection ends, handing each to its waiter (the
/// correlation id is the first field of every response header version). At the end every waiter
/// is dropped, which its caller sees as [`CallError::Disconnected`].
async fn read_responses(mut reader: OwnedReadHalf, pending: Arc<Mutex<Pending>>) {
    let mut size = [0_u8; 4];
    loop {
        if reader.read_exact(&mut size).await.is_err() {
            break;
        }
        let Ok(length) = usize::try_from(i32::from_be_bytes(size)) else {
            break;
        };
        if !(4..=RESPONSE_BYTES_MAX).contains(&length) {
            break;
        }
        let mut body = vec![0_u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            break;
        }
        let arrived = Instant::now();
        let mut body = Bytes::from(body);
        let correlation_id = body.clone().get_i32();
        let waiter = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiters
            .remove(&correlation_id);
        if let Some(waiter) = waiter {
            // The caller may have given up (timeout): nothing to do then.
            let _ = waiter.send((arrived, body.split_off(0)));
        }
    }
    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
    pending.closed = true;
    pending.waiters.clear();
}

/// The versions both sides speak, per API, from an ApiVersions answer.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    by_key: HashMap<i16, VersionRange>,
}

impl Versions {
    /// Asks the broker (ApiVersions v3, what Java sends first on every connection).
    pub async fn negotiate(connection: &Connection) -> Result<Versions, CallError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-bench"))
            .with_client_software_version(StrBytes::from_static_str("0.1"));
        let answer = connection.call(3, &request).await?;
        if answer.body.error_code != 0 {
            return Err(CallError::Codec(format!(
                "ApiVersions error {}",
                answer.body.error_code
            )));
        }
        Ok(Versions {
            by_key: answer
                .body
                .api_keys
                .iter()
                .map(|api| {
                    (
                        api.api_key,
                        VersionRange {
                            min: api.min_version,
                            max: api.max_version,
                        },
                    )
                })
                .collect(),
        })
    }

    /// The highest version of `api_key` in both the broker's range and `ours`; `Err` names what is
    /// missing.
    pub fn pick(&self, api_key: ApiKey, ours: VersionRange) -> Result<i16, String> {
        let theirs = self
            .by_key
            .get(&(api_key as i16))
            .ok_or_else(|| format!("the broker does not advertise {api_key:?}"))?;
        let both = theirs.intersect(&ours);
        if both.is_empty() {
            return Err(format!(
                "{api_key:?}: the broker speaks {theirs}, the benchmark needs {ours}"
            ));
        }
        Ok(both.max)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn versions(ranges: &[(ApiKey, i16, i16)]) -> Versions {
        Versions {
            by_key: ranges
                .iter()
                .map(|&(key, min, max)| (key as i16, VersionRange { min, max }))
                .collect(),
        }
    }

    #[test]
    fn picks_the_highest_common_version_or_says_what_is_missing() {
        let broker = versions(&[(ApiKey::JoinGroup, 0, 9), (ApiKey::OffsetCommit, 2, 10)]);
        let ours = |min, max| VersionRange { min, max };
        assert_eq!(broker.pick(ApiKey::JoinGroup, ours(4, 9)), Ok(9));
        assert_eq!(broker.pick(ApiKey::OffsetCommit, ours(2, 9)), Ok(9));
        let old = versions(&[(ApiKey::JoinGroup, 0, 3)]);
        assert!(
            old.pick(ApiKey::JoinGroup, ours(4, 9))
                .unwrap_err()
                .contains("0..3")
        );
        assert!(
            broker
                .pick(ApiKey::Heartbeat, ours(3, 4))
                .unwrap_err()
                .contains("does not advertise Heartbeat")
        );
    }

    #[test]
    fn requests_are_size_prefixed_and_carry_the_correlation_id() {
        let frame = encode_request(
            ApiKey::ApiVersions,
            3,
            42,
            &StrBytes::from_static_str("c"),
            &ApiVersionsRequest::default(),
        )
        .unwrap();
        let mut bytes = frame.clone();
        let size = usize::try_from(bytes.get_i32()).unwrap();
        assert_eq!(size, frame.len() - 4);
        assert_eq!(bytes.get_i16(), ApiKey::ApiVersions as i16);
        assert_eq!(bytes.get_i16(), 3);
        assert_eq!(bytes.get_i32(), 42);
    }
}
