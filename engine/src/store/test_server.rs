//! [`S3TestServer`]: a real S3-API server (`s3s-fs`) on loopback, for tests and benches.
//!
//! The memory and local backends skip the whole S3 path: request signing, HTTP, XML listings,
//! ranged GETs, `If-None-Match`. This server puts that path under test on every `cargo test`, with
//! no Docker and no network: `s3s-fs` stores objects as files in a fresh temporary directory.
//!
//! These details matter for what tests can conclude:
//! - TCP_NODELAY on every accepted socket. Without it Nagle's algorithm meets the client's delayed
//!   ACK and adds ~40 ms to every small response (see DESIGN.md, "Measured on these machines").
//! - Create-only writes are atomic. `s3s-fs` 0.14.1 honours `If-None-Match: *` by checking that the
//!   file exists and then renaming a temporary file into place — two racing create-only PUTs can
//!   both pass the check. [`CreateOnlyFs`] serialises create-only PUTs *of the same key* behind a
//!   lock of that key, which makes check-and-rename atomic for this single-process server (real S3
//!   does this server-side). Per key, not one lock for all: with one lock a large PUT (a 32 MiB
//!   compacted object takes ~100 ms here) held up every other create-only PUT — every flush
//!   window's — for all of its upload, a stall real S3 never imposes, which showed in the soak as
//!   produce P99 spikes at every compaction job.
//! - A suffix range longer than the object (`Range: bytes=-N`, N > size) returns the whole object,
//!   as RFC 9110 and S3 specify; `s3s-fs` 0.14.1 seeks before the file's start and answers 500, so
//!   [`CreateOnlyFs`] clamps N to the object's size first (and answers 416 for an empty object,
//!   where s3s-fs would underflow and panic).
//! - A listing never fails because a key was deleted while it ran, and a GET or HEAD of a key being
//!   deleted finds it or answers 404, as on S3. `s3s-fs` checks that a file exists and then stats
//!   or opens it, and a listing stats every file it walks: a delete in between answered 500 (the
//!   whole listing failed). So deletes run alone: they exclude listings, GETs, HEADs and each
//!   other (two deletes of one key raced the same way).
//! - A create-only PUT of a key that exists is answered 412 *after its body has been read*.
//!   `s3s-fs` refuses it before reading the body, and the connection is then closed under a client
//!   still writing a large body, which sees a broken pipe where S3 answers 412.
//!
//! [`S3TestServer::start_counted`] reports every answered request to a [`RequestObserver`]: the
//! bench harness counts the store calls of a broker there, with no proxy in between (a proxy is one
//! more HTTP hop for every byte, on the same CPUs as the broker it measures).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// The fixed test credentials the server accepts.
pub const TEST_ACCESS_KEY_ID: &str = "sluice-test-access-key";
pub const TEST_SECRET_ACCESS_KEY: &str = "sluice-test-secret-key";
pub const TEST_REGION: &str = "us-east-1";
const TEST_BUCKET: &str = "sluice-test";
/// Worker threads of the server's tokio runtime (besides the thread that accepts connections).
const SERVER_WORKER_THREADS: usize = 2;

/// What the server saw of one request it answered (see [`S3TestServer::start_counted`]).
#[derive(Debug, Clone, Copy)]
pub struct ServedRequest<'a> {
    /// `GET`, `PUT`, `HEAD`, `POST`, `DELETE`, ...
    pub method: &'a str,
    /// The request path, path-style: `/bucket/key`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The request's `Content-Length` (0 when it has none).
    pub request_body_bytes: u64,
    /// The answer's status; `None` when the server failed the request without an answer (the
    /// connection is then closed).
    pub status: Option<u16>,
    /// The answer's body length: its `Content-Length`, else the body's exact size, else 0. Known
    /// when the answer starts, before its body is sent.
    pub response_body_bytes: u64,
}

/// Called once per request, when its answer is ready, on one of the server's threads.
pub type RequestObserver = Arc<dyn Fn(&ServedRequest<'_>) + Send + Sync>;

/// An `s3s-fs` S3 server on `127.0.0.1:<ephemeral>`, serving one bucket from a temporary directory.
/// Dropping it stops the server and deletes the directory.
#[derive(Debug)]
pub struct S3TestServer {
    address: SocketAddr,
    data_dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3TestServer {
    /// Starts the server on its own thread and tokio runtime and creates the bucket.
    pub fn start() -> std::io::Result<S3TestServer> {
        S3TestServer::start_inner(true, None)
    }

    /// [`S3TestServer::start`], choosing whether accepted sockets get TCP_NODELAY. `false` exists
    /// only to measure what Nagle's algorithm costs (`tests/store_loopback_floor.rs`).
    pub fn start_with_nodelay(tcp_nodelay: bool) -> std::io::Result<S3TestServer> {
        S3TestServer::start_inner(tcp_nodelay, None)
    }

    /// [`S3TestServer::start`], calling `observer` with every request the server answers.
    pub fn start_counted(observer: RequestObserver) -> std::io::Result<S3TestServer> {
        S3TestServer::start_inner(true, Some(observer))
    }

    fn start_inner(
        tcp_nodelay: bool,
        observer: Option<RequestObserver>,
    ) -> std::io::Result<S3TestServer> {
        let data_dir = tempfile::Builder::new().prefix("sluice-s3-").tempdir()?;
        // s3s-fs keeps a bucket as a directory under its root; this is what CreateBucket does.
        std::fs::create_dir(data_dir.path().join(TEST_BUCKET))?;
        let file_system = s3s_fs::FileSystem::new(data_dir.path())
            .map_err(|error| std::io::Error::other(format!("s3s-fs: {error:?}")))?;
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(CreateOnlyFs {
                inner: file_system,
                root: data_dir.path().to_path_buf(),
                create_locks: std::sync::Mutex::new(std::collections::HashMap::new()),
                deletes: tokio::sync::RwLock::new(()),
            });
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                TEST_ACCESS_KEY_ID,
                TEST_SECRET_ACCESS_KEY,
            ));
            ObservedService {
                inner: builder.build(),
                observer,
            }
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        // Two workers, not one: S3 serves requests in parallel, and on a single thread one large
        // PUT or a burst of GETs (a compaction job's) queued every other request behind it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SERVER_WORKER_THREADS)
            .thread_name("s3-test-server-worker")
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("s3-test-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let http = ConnectionBuilder::new(TokioExecutor::new());
                    let mut stopped = std::pin::pin!(stopped);
                    loop {
                        let socket = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = stopped.as_mut() => break,
                        };
                        // See the module docs: Nagle + delayed ACK would add ~40 ms per call.
                        if tcp_nodelay {
                            let _ = socket.set_nodelay(true);
                        }
                        let connection = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                });
            })?;
        Ok(S3TestServer {
            address,
            data_dir,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn bucket(&self) -> &str {
        TEST_BUCKET
    }

    /// An `s3://` URL for [`crate::store::StoreConfig::from_url`] with the endpoint, region,
    /// path-style requests and the test credentials; `prefix` (may be empty) is the key prefix.
    /// Client retries are off so tests see the server's first answer.
    pub fn store_url(&self, prefix: &str) -> String {
        format!(
            "s3://{TEST_BUCKET}/{}?endpoint={}&region={TEST_REGION}&path_style=true&allow_http=true\
             &access_key_id={TEST_ACCESS_KEY_ID}&secret_access_key={TEST_SECRET_ACCESS_KEY}&retries_max=0",
            prefix.trim_matches('/'),
            self.endpoint(),
        )
    }

    /// The directory holding the bucket (`<data_dir>/<bucket>/<key>`).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The S3 service, telling an optional observer about each request it answers.
#[derive(Clone)]
struct ObservedService {
    inner: s3s::service::S3Service,
    observer: Option<RequestObserver>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + Send>>;

fn content_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ObservedService {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = ServiceFuture;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> ServiceFuture {
        let Some(observer) = self.observer.clone() else {
            return hyper::service::Service::call(&self.inner, request);
        };
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let request_body_bytes = content_length(request.headers()).unwrap_or(0);
        let answer = hyper::service::Service::call(&self.inner, request);
        Box::pin(async move {
            let answer = answer.await;
            let (status, response_body_bytes) = match &answer {
                Ok(response) => (
                    Some(response.status().as_u16()),
                    content_length(response.headers())
                        .or_else(|| hyper::body::Body::size_hint(response.body()).exact())
                        .unwrap_or(0),
                ),
                Err(_) => (None, 0),
            };
            observer(&ServedRequest {
                method: method.as_str(),
                path: &path,
                query: query.as_deref(),
                request_body_bytes,
                status,
                response_body_bytes,
            });
            answer
        })
    }
}

/// The first byte of a `Content-Range` value, `bytes FIRST-LAST/TOTAL`.
fn range_start(content_range: &str) -> Option<u64> {
    content_range
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// `length` bytes of the file at `path` from `start`, mapped rather than read: the body is the
/// page cache's own pages (`MAP_POPULATE` maps them in one call), so a GET costs neither a fresh
/// zeroed buffer — a page fault per 4 KiB, which was a third of this server's CPU in a replay —
/// nor a copy into it; the socket write is the only copy. Safe to map: `s3s-fs` writes every
/// object to a temporary file and renames it into place, so a mapped file is never changed, and
/// a DELETE only unlinks it (the mapping keeps its pages).
fn read_range(path: &Path, start: u64, length: usize) -> std::io::Result<bytes::Bytes> {
    if length == 0 {
        return Ok(bytes::Bytes::new());
    }
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() < start.saturating_add(length as u64) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "range beyond the end of the object",
        ));
    }
    // SAFETY: the file is never written in place (above), and its length was checked, so the
    // mapping's pages stay valid and unchanged while the body is alive.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(start)
            .len(length)
            .populate()
            .map(&file)?
    };
    Ok(bytes::Bytes::from_owner(map))
}

/// `s3s-fs` with the changes the module docs list: create-only PUTs made atomic, deletes run
/// alone, suffix ranges clamped and GET bodies mapped; the rest is passed through unchanged.
struct CreateOnlyFs {
    inner: s3s_fs::FileSystem,
    /// The file system's root: objects live at `root/<bucket>/<key>`.
    root: std::path::PathBuf,
    /// `bucket/key` → the lock of create-only PUTs of that key; an entry lives while a PUT of its
    /// key runs or waits.
    create_locks: std::sync::Mutex<CreateLocks>,
    /// Held exclusively by deletes and shared by listings, GETs and HEADs (see the module docs).
    deletes: tokio::sync::RwLock<()>,
}

type CreateLocks = std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>;

impl CreateOnlyFs {
    fn create_locks(&self) -> std::sync::MutexGuard<'_, CreateLocks> {
        self.create_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl S3 for CreateOnlyFs {
    async fn put_object(
        &self,
        mut request: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        if request.input.if_none_match.is_some() || request.input.if_match.is_some() {
            let name = format!("{}/{}", request.input.bucket, request.input.key);
            let lock = std::sync::Arc::clone(self.create_locks().entry(name.clone()).or_default());
            let result = {
                let _exclusive = lock.lock().await;
                let exists = request
                    .input
                    .if_none_match
                    .as_ref()
                    .is_some_and(|condition| condition.is_any())
                    && self.root.join(&name).exists();
                if exists {
                    // See the module docs: read the body first, so the client gets the 412.
                    if let Some(mut body) = request.input.body.take() {
                        use futures::StreamExt as _;
                        while let Some(Ok(_)) = body.next().await {}
                    }
                    Err(s3s::s3_error!(PreconditionFailed, "Object already exists"))
                } else {
                    self.inner.put_object(request).await
                }
            };
            // Forget the key's lock unless another PUT of it holds a handle (clones are made
            // under the map's lock, so none can appear between this check and the removal).
            let mut locks = self.create_locks();
            if locks
                .get(&name)
                .is_some_and(|held| std::sync::Arc::strong_count(held) <= 2)
            {
                locks.remove(&name);
            }
            result
        } else {
            self.inner.put_object(request).await
        }
    }

    async fn get_object(
        &self,
        mut request: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let _no_delete = self.deletes.read().await;
        if let Some(Range::Suffix { length }) = request.input.range {
            let path = self
                .root
                .join(&request.input.bucket)
                .join(&request.input.key);
            // A missing object falls through to s3s-fs, which answers NoSuchKey.
            if let Ok(metadata) = tokio::fs::metadata(&path).await
                && length > metadata.len()
            {
                if metadata.len() == 0 {
                    // No byte range of an empty object is satisfiable; S3 answers 416 (and s3s-fs
                    // would underflow).
                    return Err(s3s::s3_error!(InvalidRange));
                }
                request.input.range = Some(Range::Suffix {
                    length: metadata.len(),
                });
            }
        }
        let path = self
            .root
            .join(&request.input.bucket)
            .join(&request.input.key);
        let mut response = self.inner.get_object(request).await?;
        // s3s-fs streams a body in 4 KiB file reads, each a hop to tokio's blocking pool: replays
        // of gigabytes spent the server's CPU on thread hand-offs. The same bytes, mapped with one
        // call, make the loopback server a smaller part of what a read benchmark measures.
        let output = &mut response.output;
        let start = match output.content_range.as_deref() {
            None => Some(0),
            Some(range) => range_start(range),
        };
        let length = output
            .content_length
            .and_then(|length| usize::try_from(length).ok());
        if let (Some(start), Some(length)) = (start, length) {
            let read = tokio::task::spawn_blocking(move || read_range(&path, start, length)).await;
            if let Ok(Ok(bytes)) = read {
                output.body = Some(StreamingBlob::from(s3s::Body::from(bytes)));
            }
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        request: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let _no_delete = self.deletes.read().await;
        self.inner.head_object(request).await
    }

    async fn list_objects(
        &self,
        request: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let _no_delete = self.deletes.read().await;
        self.inner.list_objects(request).await
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let _no_delete = self.deletes.read().await;
        self.inner.list_objects_v2(request).await
    }

    async fn delete_object(
        &self,
        request: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let _alone = self.deletes.write().await;
        self.inner.delete_object(request).await
    }

    async fn delete_objects(
        &self,
        request: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let _alone = self.deletes.write().await;
        self.inner.delete_objects(request).await
    }

    async fn copy_object(
        &self,
        request: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.inner.copy_object(request).await
    }

    async fn create_bucket(
        &self,
        request: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(request).await
    }

    async fn head_bucket(
        &self,
        request: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(request).await
    }

    async fn list_buckets(
        &self,
        request: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(request).await
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(request).await
    }

    async fn upload_part(
        &self,
        request: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.inner.upload_part(request).await
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.inner.complete_multipart_upload(request).await
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(request).await
    }
}
