//! [`FakeGcsServer`]: fake-gcs-server, an emulator of Google Cloud Storage, on loopback, with one
//! bucket in a temporary directory, behind [`UploadShim`].
//!
//! **Where it departs from GCS.** `object_store`'s GCS client speaks GCS's XML API: an upload is
//! `PUT /bucket/object`, and a create-only upload carries `x-goog-if-generation-match: 0`.
//! fake-gcs-server 1.56.1 implements uploads through the JSON API only: a plain XML `PUT` is
//! refused (400 "invalid uploadType"; only signed-URL PUTs are accepted, and those ignore every
//! precondition), and it never reads the `x-goog-if-generation-match` header. Its JSON API does
//! honour `ifGenerationMatch=0`, atomically (under the backend's lock). Its XML listing ignores
//! `start-after` (it lists from the first key; the engine's adapter filters every listing, so
//! Sluice is correct on it). Reads, ranged and suffix reads, paged listings and deletes work as on
//! GCS.
//!
//! So the tests reach it through [`UploadShim`], a loopback proxy that rewrites exactly one
//! request — `PUT /bucket/object` with its generation header becomes the JSON API's
//! `POST /upload/storage/v1/b/bucket/o?uploadType=media&name=object&ifGenerationMatch=N` — and
//! passes every other request through untouched. The precondition is still decided by the
//! emulator, not by the shim. `store_conformance`'s `fake_gcs_server_departures` checks that the
//! raw emulator still refuses the XML upload (so the shim can go once it does not) and still
//! ignores `start-after`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::http::call;
use super::{StoreServer, find_binary, free_ports, install_dir, loopback};
use crate::HarnessError;
use crate::process::{ChildGuard, wait_for_port};

/// The bucket every test store lives in (a folder per test inside it).
pub const FAKE_GCS_BUCKET: &str = "sluice-test";
const STARTUP_TIMEOUT_S: u64 = 60;
/// Request heads are a few hundred bytes; a longer one is not from `object_store`.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// How long the shim waits on a silent client or emulator before dropping the connection.
const SHIM_IO_TIMEOUT_S: u64 = 60;

#[derive(Debug)]
pub struct FakeGcsServer {
    port: u16,
    shim: UploadShim,
    // Dropped in field order: the shim, then the process, then its directory.
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl FakeGcsServer {
    /// `SLUICE_FAKE_GCS_SERVER_BIN`, else `target/store-servers/bin/fake-gcs-server`.
    pub fn binary() -> Option<PathBuf> {
        find_binary(
            "SLUICE_FAKE_GCS_SERVER_BIN",
            install_dir().join("bin").join("fake-gcs-server"),
        )
    }

    /// Starts the emulator over plain HTTP with the filesystem backend, makes the bucket (JSON
    /// API) and starts the shim in front of it.
    pub fn start(binary: &Path) -> Result<FakeGcsServer, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-fake-gcs-")
            .tempdir()
            .map_err(HarnessError::io("create a directory for fake-gcs-server"))?;
        let [port] = free_ports::<1>()?;
        let address = loopback(port);
        let mut command = Command::new(binary);
        command
            .current_dir(dir.path())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "filesystem",
            ])
            .arg("-port")
            .arg(port.to_string())
            .arg("-filesystem-root")
            .arg(dir.path().join("root"))
            // Requests whose Host is this address are routed to the XML API.
            .arg("-public-host")
            .arg(address.to_string())
            .args(["-log-level", "warn"]);
        let log = dir.path().join("fake-gcs-server.log");
        let mut process = ChildGuard::spawn("fake-gcs-server", &mut command, &log)?;
        wait_for_port(
            address,
            &mut process,
            Duration::from_secs(STARTUP_TIMEOUT_S),
        )?;
        let body = format!("{{\"name\":\"{FAKE_GCS_BUCKET}\"}}");
        let answer = call(
            address,
            "POST",
            "/storage/v1/b",
            &[("Content-Type".to_owned(), "application/json".to_owned())],
            body.as_bytes(),
        )?;
        if answer.status != 200 {
            return Err(HarnessError::Protocol {
                address: address.to_string(),
                message: format!(
                    "creating bucket {FAKE_GCS_BUCKET}: {} {}",
                    answer.status, answer.body
                ),
            });
        }
        let shim = UploadShim::start(address)?;
        Ok(FakeGcsServer {
            port,
            shim,
            process,
            _dir: dir,
        })
    }

    /// A `gs://` URL that talks to the emulator directly, without the shim (its uploads fail).
    pub fn raw_store_url(&self, prefix: &str) -> String {
        gs_url(prefix, self.port)
    }

    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

fn gs_url(prefix: &str, port: u16) -> String {
    format!("gs://{FAKE_GCS_BUCKET}/{prefix}?endpoint=http://127.0.0.1:{port}")
}

impl StoreServer for FakeGcsServer {
    /// Through the shim; anonymous (the default for a plain-HTTP endpoint).
    fn store_url(&self, prefix: &str) -> String {
        gs_url(prefix, self.shim.address.port())
    }
}

/// The loopback proxy described in the module docs. One thread accepts; each connection gets a
/// thread and carries one request (the answer goes back with `Connection: close`, so the client
/// never reuses a connection the shim is closing). Stops accepting when dropped.
#[derive(Debug)]
pub struct UploadShim {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

impl UploadShim {
    fn start(upstream: SocketAddr) -> Result<UploadShim, HarnessError> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("bind the GCS shim"))?;
        let address = listener
            .local_addr()
            .map_err(HarnessError::io("local_addr of the GCS shim"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let accepter = std::thread::Builder::new()
            .name("gcs-shim".to_owned())
            .spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let _ = std::thread::Builder::new()
                        .name("gcs-shim-conn".to_owned())
                        .spawn(move || {
                            // A client that hangs up (the test ended, a pooled connection
                            // closed) is not news; anything else is printed for the post-mortem.
                            if let Err(error) = forward(client, upstream)
                                && !matches!(
                                    error.kind(),
                                    std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::BrokenPipe
                                )
                            {
                                crate::tools::loud(&format!("GCS shim: {error}"));
                            }
                        });
                }
            })
            .map_err(HarnessError::io("start the GCS shim's thread"))?;
        Ok(UploadShim {
            address,
            stopping,
            accepter: Some(accepter),
        })
    }
}

impl Drop for UploadShim {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

/// One request: read it, rewrite an upload, send it on, copy the answer back.
fn forward(client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let timeout = Some(Duration::from_secs(SHIM_IO_TIMEOUT_S));
    client.set_read_timeout(timeout)?;
    client.set_write_timeout(timeout)?;
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some((request_line, headers)) = read_head(&mut reader)? else {
        return Ok(()); // closed before a request: the accept loop's wake-up, or an idle client
    };
    let mut parts = request_line.split(' ');
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => (method.to_owned(), target.to_owned()),
        _ => {
            return Err(std::io::Error::other(format!(
                "bad request line {request_line:?}"
            )));
        }
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    if header("transfer-encoding").is_some() {
        return Err(std::io::Error::other(
            "chunked request bodies are not supported",
        ));
    }
    let length: usize = header("content-length")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;

    let json_target = if method == "PUT" {
        xml_upload_as_json(&target, header("x-goog-if-generation-match"))
    } else {
        None
    };
    let translated = json_target.is_some();
    let (method, target) = match json_target {
        Some(json_target) => ("POST".to_owned(), json_target),
        None => (method, target),
    };
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(timeout)?;
    server.set_write_timeout(timeout)?;
    server.set_nodelay(true)?;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n");
    for (name, value) in &headers {
        if !["host", "connection", "keep-alive"]
            .iter()
            .any(|skip| name.eq_ignore_ascii_case(skip))
        {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;

    let mut answer = BufReader::new(server);
    let Some((status_line, answer_headers)) = read_head(&mut answer)? else {
        return Err(std::io::Error::other(
            "the emulator closed without answering",
        ));
    };
    let mut rest = Vec::new();
    answer.read_to_end(&mut rest)?;
    let mut client = client;
    let mut head = format!("{status_line}\r\nConnection: close\r\n");
    for (name, value) in &answer_headers {
        if !["connection", "keep-alive"]
            .iter()
            .any(|skip| name.eq_ignore_ascii_case(skip))
        {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // The JSON API answers an upload with the object's resource; the XML API's answer carries its
    // ETag as a header, which `object_store` requires.
    if translated
        && status_line.contains(" 200 ")
        && !answer_headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("etag"))
    {
        let json = if answer_headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        }) {
            dechunk(&rest)
        } else {
            rest.clone()
        };
        let etag = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|resource| {
                resource
                    .get("etag")
                    .and_then(|etag| etag.as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        head.push_str(&format!("ETag: \"{etag}\"\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(&rest)?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// `/bucket/object...` (object percent-encoded, as `object_store` sends it) and the generation
/// precondition → the JSON API's media upload target; `None` for anything else.
fn xml_upload_as_json(target: &str, generation_match: Option<String>) -> Option<String> {
    let path = target.split('?').next()?;
    let (bucket, object) = path.strip_prefix('/')?.split_once('/')?;
    if bucket.is_empty() || object.is_empty() || bucket == "upload" || bucket == "storage" {
        return None;
    }
    let mut json = format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}");
    if let Some(generation) = generation_match {
        json.push_str(&format!("&ifGenerationMatch={}", generation.trim()));
    }
    Some(json)
}

/// An HTTP message's head: its first line and its headers, in order.
type Head = (String, Vec<(String, String)>);

/// The head of an HTTP message: the first line and the headers; `None` at a clean EOF.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    let mut total = first.len();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        total += read;
        if read == 0 || total > HEAD_BYTES_MAX {
            return Err(std::io::Error::other("truncated or oversized HTTP head"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(Some((
        first.trim_end_matches(['\r', '\n']).to_owned(),
        headers,
    )))
}

/// The payload of a chunked body (what is well-formed of it).
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(2).position(|pair| pair == b"\r\n") {
        let size_text = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let start = end + 2;
        let Some(chunk) = bytes.get(start..start + size) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.extend_from_slice(chunk);
        bytes = bytes.get(start + size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_object_puts_are_rewritten() {
        assert_eq!(
            xml_upload_as_json("/sluice-test/a%2Flog%2F1", Some("0".to_owned())).as_deref(),
            Some(
                "/upload/storage/v1/b/sluice-test/o?uploadType=media&name=a%2Flog%2F1&ifGenerationMatch=0"
            )
        );
        assert_eq!(
            xml_upload_as_json("/b/k", None).as_deref(),
            Some("/upload/storage/v1/b/b/o?uploadType=media&name=k")
        );
        assert_eq!(xml_upload_as_json("/sluice-test", None), None);
        assert_eq!(xml_upload_as_json("/upload/storage/v1/b/x/o", None), None);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }
}
