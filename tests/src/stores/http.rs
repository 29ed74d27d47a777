//! A minimal HTTP/1.1 client over `std::net::TcpStream`, for the few setup calls the store servers
//! need (make a bucket, wait until writes land): one request per connection (`Connection: close`),
//! the answer read to the end. The tests' real traffic goes through `object_store`'s client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::HarnessError;

/// A setup call that takes longer than this is a hung server.
const CALL_TIMEOUT_S: u64 = 10;
/// Answers to setup calls are a few hundred bytes; the limit guards against a runaway body.
const ANSWER_BYTES_MAX: u64 = 1 << 20;

/// An answer: the status code and the raw bytes after the head (chunked bodies are not decoded).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends `method path` (path and query, already encoded) with `headers` and `body` to `address`.
pub fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Answer, HarnessError> {
    let what = format!("{method} http://{address}{path}");
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(CALL_TIMEOUT_S))
        .map_err(HarnessError::io(format!("connect for {what}")))?;
    for timeout in [
        stream.set_read_timeout(Some(Duration::from_secs(CALL_TIMEOUT_S))),
        stream.set_write_timeout(Some(Duration::from_secs(CALL_TIMEOUT_S))),
    ] {
        timeout.map_err(HarnessError::io(format!("set timeouts for {what}")))?;
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(HarnessError::io(format!("send {what}")))?;
    let mut answer = Vec::new();
    stream
        .take(ANSWER_BYTES_MAX)
        .read_to_end(&mut answer)
        .map_err(HarnessError::io(format!("read the answer to {what}")))?;
    let text = String::from_utf8_lossy(&answer);
    let malformed = || HarnessError::Protocol {
        address: address.to_string(),
        message: format!(
            "{what}: not an HTTP answer: {:?}",
            text.chars().take(200).collect::<String>()
        ),
    };
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(Answer { status, body })
}
