//! A counting, delaying reverse proxy in front of an S3-API endpoint, on loopback.
//!
//! Why a proxy rather than a store option of the agent: every target that talks S3 (Sluice, Tansu)
//! is measured the same way, with no cooperation from the broker: the proxy counts each request
//! by kind (the "PUTs and GETs per second and per GB" of the report) and, under a latency profile,
//! holds each answer for a draw from the engine's own fitted log-normals (`LatencyModel`), so the
//! modelled S3 is the same one the engine's tests use.
//!
//! Requests are forwarded byte for byte, `Host` header included: SigV4 signs the host the client
//! addressed (the proxy), and the upstream server checks the signature against the header it
//! receives, so nothing has to be re-signed. The proxy forwards to one upstream, over HTTP/1.1.
//!
//! Delays: a PUT waits *before* it is forwarded (the object becomes visible when the modelled PUT
//! completes, as in `LatencyModel`); every other call is forwarded at once and its answer held
//! for first byte plus transfer time, the size taken from the answer's `Content-Length`.
//!
//! Faults: while the `chaos` scenario holds a fault window open ([`FaultControl`], in
//! `proxy_faults.rs`), a request it hits is answered with an error, cut off or held, before or
//! after being forwarded. A request answered or cut off without being forwarded is not counted
//! as a call.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use sluice_engine::store::{
    LatencyModel, LatencyProfile, ObjectStoreBackend, Op, RequestObserver, ServedRequest,
};

use crate::proxy_faults::{ConnectionCut, FaultControl, FaultKind};

/// What kind of S3 call a request is, judged from its method, path and query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Call {
    Put,
    Get,
    Head,
    List,
    Delete,
    Other,
}

/// Path-style requests only (`/bucket/key`), which is what the harness configures. A GET without
/// a key, or with `list-type`, is a listing; a `POST ?delete` (multi-object delete, which is how
/// `object_store` deletes even one key) is a delete; other POSTs (multipart) are `Other`.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> S3Call {
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let has_param =
        |name: &str| query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(name)));
    let listing = has_param("list-type");
    match *method {
        Method::PUT => S3Call::Put,
        Method::GET if listing || !has_key => S3Call::List,
        Method::GET => S3Call::Get,
        Method::HEAD => S3Call::Head,
        Method::DELETE => S3Call::Delete,
        Method::POST if has_param("delete") => S3Call::Delete,
        _ => S3Call::Other,
    }
}

/// Request counters; `snapshot` them before and after a run and subtract.
#[derive(Debug, Default)]
pub struct Counters {
    puts: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    others: AtomicU64,
    put_bytes: AtomicU64,
    get_bytes: AtomicU64,
    put_conflicts: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CountSnapshot {
    pub puts: u64,
    pub gets: u64,
    pub heads: u64,
    pub lists: u64,
    pub deletes: u64,
    pub others: u64,
    pub put_bytes: u64,
    pub get_bytes: u64,
    /// PUTs answered 412 Precondition Failed: create-only writes to a key that exists (a
    /// hedged PUT's losing copy, a retried write that had landed). Included in `puts`.
    pub put_conflicts: u64,
}

impl Counters {
    pub fn record(&self, call: S3Call, put_bytes: u64, get_bytes: u64) {
        let counter = match call {
            S3Call::Put => &self.puts,
            S3Call::Get => &self.gets,
            S3Call::Head => &self.heads,
            S3Call::List => &self.lists,
            S3Call::Delete => &self.deletes,
            S3Call::Other => &self.others,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.put_bytes.fetch_add(put_bytes, Ordering::Relaxed);
        self.get_bytes.fetch_add(get_bytes, Ordering::Relaxed);
    }

    pub fn count_put_conflict(&self) {
        self.put_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountSnapshot {
        CountSnapshot {
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            heads: self.heads.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            others: self.others.load(Ordering::Relaxed),
            put_bytes: self.put_bytes.load(Ordering::Relaxed),
            get_bytes: self.get_bytes.load(Ordering::Relaxed),
            put_conflicts: self.put_conflicts.load(Ordering::Relaxed),
        }
    }
}

impl CountSnapshot {
    /// `self - earlier`, saturating (counters only grow, but never panic on odd input).
    pub fn since(&self, earlier: &CountSnapshot) -> CountSnapshot {
        CountSnapshot {
            puts: self.puts.saturating_sub(earlier.puts),
            gets: self.gets.saturating_sub(earlier.gets),
            heads: self.heads.saturating_sub(earlier.heads),
            lists: self.lists.saturating_sub(earlier.lists),
            deletes: self.deletes.saturating_sub(earlier.deletes),
            others: self.others.saturating_sub(earlier.others),
            put_bytes: self.put_bytes.saturating_sub(earlier.put_bytes),
            get_bytes: self.get_bytes.saturating_sub(earlier.get_bytes),
            put_conflicts: self.put_conflicts.saturating_sub(earlier.put_conflicts),
        }
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Tries of a request whose upstream connection failed.
const UPSTREAM_ATTEMPTS: u32 = 2;

struct Shared {
    upstream: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    /// No pool: a resent request goes on a new connection, not on another pooled one that the
    /// server may have closed as well.
    fresh_client: Client<HttpConnector, Full<Bytes>>,
    counters: Arc<Counters>,
    /// `None` forwards without delay. The inner store is never called: the model is used only
    /// for its fitted, seeded draws (`sample_delay_ms`).
    model: Option<LatencyModel<ObjectStoreBackend>>,
    /// The upstream server's files (s3s-fs keeps `bucket/key` as a file under it), to tell a
    /// create-only PUT the server refused from a failed one (see `forward`).
    objects_root: Option<PathBuf>,
    faults: Arc<FaultControl>,
}

/// The proxy; dropping it stops accepting (connections already open finish on the runtime).
#[derive(Debug)]
pub struct S3Proxy {
    address: SocketAddr,
    counters: Arc<Counters>,
    faults: Arc<FaultControl>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Proxy {
    /// Listens on `127.0.0.1:<ephemeral>` on the current tokio runtime and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        profile: Option<LatencyProfile>,
        seed: u64,
        objects_root: Option<PathBuf>,
    ) -> anyhow::Result<S3Proxy> {
        let model = match profile {
            Some(profile) => Some(LatencyModel::new(
                ObjectStoreBackend::in_memory(),
                profile,
                seed,
            )?),
            None => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        let fresh_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let counters = Arc::new(Counters::default());
        let faults = Arc::new(FaultControl::default());
        let shared = Arc::new(Shared {
            upstream,
            client,
            fresh_client,
            counters: Arc::clone(&counters),
            model,
            objects_root,
            faults: Arc::clone(&faults),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Nagle + delayed ACK would add ~40 ms to small answers (DESIGN.md).
                let _ = socket.set_nodelay(true);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { forward_or_fault(&shared, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Ok(S3Proxy {
            address,
            counters,
            faults,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters, to read after the proxy is gone or beside other counters.
    pub fn shared_counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// The fault switch (closed unless someone opens a window).
    pub fn faults(&self) -> &FaultControl {
        &self.faults
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts, in `counters`, what the loopback S3 server answers, as the proxy would count it when
/// forwarding (for a server started with [`S3TestServer::start_counted`], no proxy in front).
///
/// [`S3TestServer::start_counted`]: sluice_engine::store::S3TestServer::start_counted
pub fn server_observer(counters: Arc<Counters>) -> RequestObserver {
    Arc::new(move |request: &ServedRequest<'_>| {
        let call = Method::from_bytes(request.method.as_bytes()).map_or(S3Call::Other, |method| {
            classify(&method, request.path, request.query)
        });
        let put_bytes = if call == S3Call::Put {
            request.request_body_bytes
        } else {
            0
        };
        let get_bytes = match call {
            S3Call::Get | S3Call::List | S3Call::Other => request.response_body_bytes,
            S3Call::Put | S3Call::Head | S3Call::Delete => 0,
        };
        if call == S3Call::Put && request.status == Some(StatusCode::PRECONDITION_FAILED.as_u16()) {
            counters.count_put_conflict();
        }
        counters.record(call, put_bytes, get_bytes);
    })
}

fn content_length(headers: &hyper::HeaderMap) -> u64 {
    headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn op_of(call: S3Call) -> Op {
    match call {
        S3Call::Put => Op::Put,
        S3Call::Get | S3Call::Other => Op::Get,
        S3Call::Head => Op::Head,
        S3Call::List => Op::List,
        S3Call::Delete => Op::Delete,
    }
}

async fn sleep_ms(delay_ms: f64) {
    if delay_ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1000.0)).await;
    }
}

/// Forwards `request`, or injects the fault an open window draws for it. `Err` makes hyper close
/// the connection without an answer.
async fn forward_or_fault(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ConnectionCut> {
    let Some(fault) = shared.faults.decide() else {
        return Ok(forward(shared, request).await);
    };
    match fault.kind {
        FaultKind::Error => Ok(s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        )),
        FaultKind::Reset => Err(ConnectionCut),
        FaultKind::Delay => {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            Ok(forward(shared, request).await)
        }
        FaultKind::ErrorAfterForward => {
            let _applied = forward(shared, request).await;
            Ok(s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            ))
        }
        FaultKind::ResetAfterForward => {
            let _applied = forward(shared, request).await;
            Err(ConnectionCut)
        }
    }
}

/// An S3 error answer (`<Error><Code>...`), as the store sends it.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let mut response = error_response(
        status,
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message></Error>"
        ),
    );
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

async fn forward(shared: &Shared, request: Request<Incoming>) -> Response<ProxyBody> {
    let call = classify(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    let put_bytes = if call == S3Call::Put {
        content_length(request.headers())
    } else {
        0
    };
    if call == S3Call::Put
        && let Some(model) = &shared.model
    {
        sleep_ms(model.sample_delay_ms(Op::Put, put_bytes)).await;
    }
    let (mut parts, body) = request.into_parts();
    // The body is received whole before anything goes upstream: a client that gives up halfway
    // through a PUT (a timeout, a hedged PUT whose twin won) then never leaves a half-sent
    // request on a pooled upstream connection, and a read can be sent again unchanged.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("request body: {error}"));
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |value| value.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{}{path_and_query}", shared.upstream).parse() else {
        return error_response(StatusCode::BAD_REQUEST, "bad request target");
    };
    parts.uri = uri;
    // A create-only PUT on a key that exists is refused by s3s-fs before it reads the body,
    // and the server then closes the connection: the proxy, still writing the body, sees the
    // connection fail (broken pipe, or closed before the answer) where S3 would answer 412.
    // Such a PUT is answered 412 here when the key's file exists, as S3 would; the broker
    // then does what it does on any conflict (Sluice reads the key back to see whose it is).
    let create_only =
        call == S3Call::Put && parts.headers.contains_key(hyper::header::IF_NONE_MATCH);
    // A request whose upstream connection failed is sent once more, on a new connection (the
    // body is in memory; the usual failure is a pooled connection the server had just closed):
    // reads are idempotent, and so are Sluice's and Tansu's PUTs (a new key each, the same bytes
    // on a retry; a create-only retry that meets its own first copy is a conflict, as above).
    let attempts = if call == S3Call::Other {
        1
    } else {
        UPSTREAM_ATTEMPTS
    };
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let request = Request::from_parts(parts.clone(), Full::new(body.clone()));
        let client = if attempt == 1 {
            &shared.client
        } else {
            &shared.fresh_client
        };
        let error = match client.request(request).await {
            Ok(response) => break response,
            Err(error) => error,
        };
        let exists = create_only
            && shared
                .objects_root
                .as_deref()
                .and_then(|root| object_path(root, parts.uri.path()))
                .is_some_and(|path| path.exists());
        if exists {
            shared.counters.record(call, put_bytes, 0);
            shared.counters.count_put_conflict();
            return precondition_failed();
        }
        if attempt < attempts {
            continue;
        }
        shared.counters.record(call, put_bytes, 0);
        // The whole chain: hyper's own message hides the cause (reset, refused, closed).
        let mut message = format!("upstream: {error}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        eprintln!("sluice-bench: proxy: {call:?} {message}");
        return error_response(StatusCode::BAD_GATEWAY, &message);
    };
    if call == S3Call::Put && response.status() == StatusCode::PRECONDITION_FAILED {
        shared.counters.count_put_conflict();
    }
    // A HEAD answer names the object's size but carries no body.
    let get_bytes = match call {
        S3Call::Get | S3Call::List | S3Call::Other => content_length(response.headers()),
        S3Call::Put | S3Call::Head | S3Call::Delete => 0,
    };
    if call != S3Call::Put
        && let Some(model) = &shared.model
    {
        sleep_ms(model.sample_delay_ms(op_of(call), get_bytes)).await;
    }
    shared.counters.record(call, put_bytes, get_bytes);
    response.map(BodyExt::boxed)
}

/// The file s3s-fs keeps for a path-style request path (`/bucket/key`, percent-decoded) under
/// `root`; `None` for a path without a key or one that would leave the root.
pub fn object_path(root: &Path, request_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(request_path.trim_start_matches('/'))?;
    let (bucket, key) = decoded.split_once('/')?;
    if key.is_empty()
        || bucket.is_empty()
        || decoded.split('/').any(|part| part == ".." || part == ".")
    {
        return None;
    }
    Some(root.join(bucket).join(key))
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// S3's answer to a create-only PUT on a key that exists.
fn precondition_failed() -> Response<ProxyBody> {
    let mut response = error_response(
        StatusCode::PRECONDITION_FAILED,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>\
         <Message>At least one of the pre-conditions you specified did not hold</Message>\
         <Condition>If-None-Match</Condition></Error>",
    );
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(message.to_owned()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
