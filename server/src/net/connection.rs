//! One client connection, from accept to close, on the core that accepted it.
//!
//! Reads fill a buffer; every complete frame in it is dispatched in arrival order and the
//! responses are gathered and written together, so a pipelining client costs one write per read
//! rather than one per request, and responses leave in request order. A response is a list of
//! byte segments (a Fetch response's records are slices of the block cache, see
//! [`crate::protocol::fetch_frame`]): the gathered segments are written with vectored writes
//! (`sendmsg` with up to [`WRITE_SLICES_MAX`] slices a call, [`super::vectored`]) and never copied
//! into an output buffer. A frame is
//! never larger than `request_bytes_max` (checked from its size prefix, before its body is
//! buffered), at most [`REQUESTS_INFLIGHT_MAX`] frames are held, and the gathered responses are
//! flushed once they pass [`RESPONSE_BATCH_BYTES_MAX`], so a connection's memory is bounded by
//! those numbers (produced bytes are further bounded per core by `flush_buffer_bytes_max`). A
//! queued Fetch response holds references to the cache buffers its records come from: one the
//! cache evicts meanwhile stays in memory until the response is written (see "Zero-copy answers"
//! in `docs/agent.md` for the bound).
//!
//! **Stopping drains.** When the agent stops, a connection stops reading, answers every request it
//! has already read (a produce waiting for its flush window gets its acknowledgement), writes the
//! answers and only then closes: a client that sent a request before the stop gets its answer,
//! not a reset. The network core bounds the drain (see `network_core`). A connection that has
//! answered nothing when the stop ends it is reset instead (`network_core`): a client reads a
//! close before its first answer as a protocol mismatch and may not retry it, a reset it retries.
//!
//! Requests are pipelined: a connection keeps reading while up to [`REQUESTS_INFLIGHT_MAX`]
//! requests are being handled (a produce waits a whole flush window, and a client with
//! `max.in.flight.requests.per.connection = 5` must not be served one window at a time), and the
//! responses are written strictly in request order, which Kafka clients rely on. Past the limit
//! the connection stops reading until the oldest request is answered: that is its backpressure.
//!
//! **Each request sees the ones before it** ([`super::request_order`]). Only consecutive Produce
//! requests, and consecutive Fetch requests, run side by side; any other request, and the first
//! after one of another kind, is held (read, not started, and nothing more read) until every
//! earlier request has completed. So a client that pipelines CreateTopics then Metadata, or a
//! Produce then a Fetch, sees its own change, as on Kafka, which handles one request of a
//! connection at a time. Held, a frame counts as not yet read: a stop or a refusal drops it.
//!
//! **Muted while throttled.** When a client quota answers a request with a throttle time
//! (`crate::quota`, KIP-219), the connection reads nothing and starts no buffered request until
//! that time has passed, as Kafka mutes a throttled channel: a client that ignores
//! `throttle_time_ms` waits all the same, so it cannot exceed its quota. Requests already being
//! handled are answered meanwhile. A Produce's bytes are measured as its frame is started, so a
//! pipelining client's next request is held as soon as one is over (Kafka, which reads one request
//! of a connection at a time, holds the next one the same way).
//!
//! **Re-authentication** (KIP-368). On a SASL connection whose session expires
//! (`connections_max_reauth_ms` > 0), a SaslHandshake stops the loop as a refusal does: no frame
//! after it is started, the requests before it are answered and written, and the loop ends with
//! [`ConnectionEnd::Reauthenticate`], handing the handshake and the bytes behind it to the SASL
//! exchange (`sasl::reauthenticate`), after which the connection is served again. Kafka, which
//! reads one request of a connection at a time, sees the same order. Any other request after the
//! session expired closes the connection unanswered, as Kafka's `SocketServer` does.

use std::cell::Cell;
use std::io::IoSlice;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::FusedFuture;
use futures::future::{Either, LocalBoxFuture, select};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use kafka_protocol::messages::ApiKey;

use super::request_order::{InflightRequests, RequestKind};
use crate::auth::ConnectionAuth;
use crate::metadata_source::MetadataSource;
use crate::metrics::CoreSlot;
use crate::protocol::frame::{FrameError, frame_rest, size_prefix, split_frame};
use crate::protocol::{Dispatcher, ProduceOrder, SegmentsOutcome};

/// Bytes asked of the socket per read, at most.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes asked of the socket per read, at least.
const READ_CHUNK_BYTES_MIN: usize = 4 * 1024;
/// Room reserved for the rest of a frame being read: at most this many times the bytes the
/// client has already sent. A large frame's buffer then grows once or twice instead of doubling
/// (each growth copies what arrived: over a TLS connection, whose reads return 16 KiB records,
/// that copying was about half of the network core's `memmove`), while four bytes from a client
/// still cannot make the agent allocate the size they announce.
const FRAME_RESERVE_FACTOR: usize = 16;
/// Gathered responses are written out once they reach this size.
pub const RESPONSE_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Slices handed to one vectored write (Linux's `IOV_MAX`).
pub const WRITE_SLICES_MAX: usize = 1024;

/// The bytes to ask of the socket next, after a read of `read` bytes asked `asked`. The room is
/// zero-filled before each read (a read needs initialised memory), so asking for much more than
/// a read returns costs a `memset` of the difference every time: over TLS each read returns one
/// record (at most 16 KiB of plaintext), and a consumer's fetch request is a few hundred bytes,
/// where 64 KiB were zeroed per read. A read that filled what it asked doubles the next one (a
/// large produce frame on a plaintext socket keeps reading 64 KiB at a time); one that did not
/// asks for what it got, rounded up to a power of two, and at least half of what it asked.
fn next_read_chunk(asked: usize, read: usize) -> usize {
    let next = if read >= asked {
        asked.saturating_mul(2)
    } else {
        read.next_power_of_two().max(asked / 2)
    };
    next.clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES)
}

/// How a connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionEnd {
    #[error("client closed the connection")]
    ClientClosed,
    #[error(
        "client closed the connection in the middle of a frame ({buffered_bytes} bytes buffered)"
    )]
    ClosedMidFrame { buffered_bytes: usize },
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("closed by the agent: {0}")]
    Refused(crate::protocol::dispatch::CloseReason),
    #[error("agent stopping")]
    AgentStopping,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("SASL: {0}")]
    Sasl(String),
    /// The client started a re-authentication: `input` holds its SaslHandshake frame (size
    /// prefix included) and the bytes read after it. Not an end for the caller, which runs the
    /// exchange and serves the connection again.
    #[error("SASL re-authentication")]
    Reauthenticate { input: BytesMut },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl ConnectionEnd {
    /// Whether this is how clients ordinarily leave: a close, or a reset or broken pipe (clients
    /// that exit without closing their sockets, load balancers' health checks). Such ends are
    /// not worth an operator's attention; the others (bad frames, refusals, other socket errors)
    /// are.
    pub fn is_ordinary(&self) -> bool {
        match self {
            ConnectionEnd::ClientClosed | ConnectionEnd::AgentStopping => true,
            ConnectionEnd::Io(error) => matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// Requests read and not yet answered, per connection.
pub const REQUESTS_INFLIGHT_MAX: usize = 64;

type Pending = LocalBoxFuture<'static, (SegmentsOutcome, u64)>;

/// Serves one connection until it ends; the returned value says how. Once `stop` completes the
/// connection reads no more requests, answers those it has read, and ends with
/// [`ConnectionEnd::AgentStopping`].
pub async fn serve<S, T, F>(
    stream: &mut T,
    dispatcher: Rc<Dispatcher<S>>,
    request_bytes_max: u32,
    peer: Option<IpAddr>,
    metrics: CoreSlot,
    stop: F,
) -> ConnectionEnd
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    serve_with_input(
        stream,
        dispatcher,
        request_bytes_max,
        peer,
        metrics,
        stop,
        input,
        Rc::new(ConnectionAuth::anonymous(peer)),
        None,
        &Cell::new(false),
    )
    .await
}

/// [`serve`], starting with `input`: bytes the client sent that were read before (after a SASL
/// exchange, the requests it sent right behind its last token), as `auth` (who the client
/// authenticated as, for the authorizer). `session_expires_at` is when its SASL session ends
/// unless it re-authenticates; `None` when it never does (no SASL, or re-authentication off),
/// and then a SaslHandshake goes to the dispatcher, which answers ILLEGAL_SASL_STATE. `answered`
/// is set once a response has been written.
#[expect(
    clippy::too_many_arguments,
    reason = "one connection's context, each part from a different owner"
)]
pub async fn serve_with_input<S, T, F>(
    stream: &mut T,
    dispatcher: Rc<Dispatcher<S>>,
    request_bytes_max: u32,
    peer: Option<IpAddr>,
    metrics: CoreSlot,
    stop: F,
    mut input: BytesMut,
    auth: Rc<ConnectionAuth>,
    session_expires_at: Option<Instant>,
    answered: &Cell<bool>,
) -> ConnectionEnd
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut output = Output::default();
    // Started requests, in read order; a request of another kind than the ones running waits for
    // them all (`request_order`).
    let mut inflight: InflightRequests<Pending> = InflightRequests::default();
    // A frame read whose turn has not come: it starts once every request before it has completed,
    // and nothing more is read meanwhile.
    let mut held: Option<Bytes> = None;
    // Produce requests reach the metadata core in the order they were read.
    let mut produce_order = ProduceOrder::default();
    let mut refusal: Option<ConnectionEnd> = None;
    // Until when a quota's throttle mutes the connection (KIP-219).
    let mut muted_until: Option<Instant> = None;
    // What the next read asks of the socket (`next_read_chunk`).
    let mut read_chunk = READ_CHUNK_BYTES;
    // Each request's task holds the core's metrics through this connection's `Rc`: cloning the
    // `Arc` inside per request would touch a reference count every core shares.
    let metrics = Rc::new(metrics);
    // Fused: polled until it fires, never after.
    let stop = stop.fuse();
    futures::pin_mut!(stop);
    loop {
        if refusal.is_none() && stop.is_terminated() {
            refusal = Some(ConnectionEnd::AgentStopping);
        }
        if muted_until.is_some_and(|until| until <= Instant::now()) {
            muted_until = None;
        }
        // Start every complete frame already buffered, in order, up to the limit, until one must
        // wait for the requests before it.
        while refusal.is_none() && muted_until.is_none() && inflight.len() < REQUESTS_INFLIGHT_MAX {
            let frame = match held.take() {
                Some(frame) => frame,
                None => match split_frame(&mut input, request_bytes_max) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        refusal = Some(error.into());
                        break;
                    }
                },
            };
            // The request header starts with the API key; a frame too short to hold one is
            // refused by the dispatcher (and counted under no API).
            let api_key = frame
                .first_chunk::<2>()
                .map_or(-1, |key| i16::from_be_bytes(*key));
            let kind = RequestKind::of(api_key);
            if !inflight.may_start(kind) {
                held = Some(frame);
                break;
            }
            if let Some(expires_at) = session_expires_at {
                if api_key == ApiKey::SaslHandshake as i16 {
                    // The bytes after it are appended once the loop ends.
                    refusal = Some(reauthentication(&frame));
                    break;
                }
                if Instant::now() >= expires_at {
                    refusal = Some(ConnectionEnd::Sasl(
                        "session expired without re-authentication \
                         (connections_max_reauth_ms)"
                            .to_owned(),
                    ));
                    break;
                }
            }
            // A Produce over its byte-rate quota mutes the connection before the next frame is
            // started (`Dispatcher::admit`).
            let admitted_ms = dispatcher.admit(&frame, &auth);
            if admitted_ms > 0 {
                let until = Instant::now() + std::time::Duration::from_millis(admitted_ms);
                muted_until = Some(muted_until.map_or(until, |muted| muted.max(until)));
            }
            let dispatcher = Rc::clone(&dispatcher);
            let metrics = Rc::clone(&metrics);
            let auth = Rc::clone(&auth);
            let started = Instant::now();
            let turn = (kind == RequestKind::Produce).then(|| produce_order.next_turn());
            inflight.start(
                kind,
                Box::pin(async move {
                    let (outcome, throttle_ms) = dispatcher
                        .handle_frame_throttled(frame, peer, &auth, admitted_ms, turn)
                        .await;
                    if let Some(core) = metrics.core() {
                        core.request_done(api_key, started.elapsed());
                        if matches!(outcome, SegmentsOutcome::Close(_)) {
                            core.requests_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    (outcome, throttle_ms)
                }),
            );
        }
        // Gather what is ready (in order) and write it with one call.
        while output.bytes < RESPONSE_BATCH_BYTES_MAX
            && let Some(Some(outcome)) = inflight.next().now_or_never()
        {
            take(
                outcome,
                &mut output,
                &mut refusal,
                &mut inflight,
                &mut muted_until,
            );
        }
        let out_bytes = output.bytes as u64;
        if let Err(error) = write_out(stream, &mut output).await {
            return error.into();
        }
        if out_bytes > 0 {
            answered.set(true);
        }
        if let Some(core) = metrics.core() {
            core.bytes_out.fetch_add(out_bytes, Ordering::Relaxed);
        }
        if inflight.is_empty()
            && let Some(mut end) = refusal
        {
            // Responses to the requests before a bad one were still owed, and are written.
            if let ConnectionEnd::Reauthenticate { input: handshake } = &mut end {
                handshake.unsplit(input);
            }
            return end;
        }

        if let Some(until) = muted_until
            && refusal.is_none()
        {
            // Throttled: no read until the mute ends; answers and the stop still come through.
            let now = Instant::now();
            let unmuted = glommio::timer::sleep(until.saturating_duration_since(now));
            let answered = async {
                if inflight.is_empty() {
                    futures::future::pending().await
                } else {
                    inflight.next().await
                }
            };
            futures::pin_mut!(unmuted, answered);
            match select(select(unmuted, answered), stop.as_mut()).await {
                Either::Left((Either::Left(_), _)) | Either::Right(((), _)) => {}
                Either::Left((Either::Right((outcome, _)), _)) => {
                    if let Some(outcome) = outcome {
                        take(
                            outcome,
                            &mut output,
                            &mut refusal,
                            &mut inflight,
                            &mut muted_until,
                        );
                    }
                }
            }
            continue;
        }
        if refusal.is_some() || inflight.len() >= REQUESTS_INFLIGHT_MAX || held.is_some() {
            // No read while a frame is held: like the limit, that is the client's backpressure.
            if let Some(outcome) = inflight.next().await {
                take(
                    outcome,
                    &mut output,
                    &mut refusal,
                    &mut inflight,
                    &mut muted_until,
                );
            }
            continue;
        }
        let filled = input.len();
        let frame_room = frame_rest(&input, request_bytes_max).map_or(0, |rest| {
            rest.min(filled.saturating_mul(FRAME_RESERVE_FACTOR))
        });
        input.reserve(frame_room.max(read_chunk));
        input.resize(filled + read_chunk, 0);
        let read = match input.get_mut(filled..) {
            Some(free) => {
                // Reads are cancel-safe: nothing is consumed until a poll is ready.
                let read = stream.read(free);
                let answered = async {
                    if inflight.is_empty() {
                        futures::future::pending().await
                    } else {
                        inflight.next().await
                    }
                };
                futures::pin_mut!(answered);
                match select(select(read, answered), stop.as_mut()).await {
                    Either::Left((Either::Left((read, _)), _)) => read,
                    Either::Left((Either::Right((outcome, _)), _)) => {
                        input.truncate(filled);
                        if let Some(outcome) = outcome {
                            take(
                                outcome,
                                &mut output,
                                &mut refusal,
                                &mut inflight,
                                &mut muted_until,
                            );
                        }
                        continue;
                    }
                    Either::Right(((), _)) => {
                        input.truncate(filled);
                        continue;
                    }
                }
            }
            None => Ok(0),
        };
        match read {
            Ok(0) => {
                input.truncate(filled);
                return if input.is_empty() {
                    ConnectionEnd::ClientClosed
                } else {
                    ConnectionEnd::ClosedMidFrame {
                        buffered_bytes: input.len(),
                    }
                };
            }
            Ok(bytes) => {
                input.truncate(filled + bytes);
                read_chunk = next_read_chunk(read_chunk, bytes);
                if let Some(core) = metrics.core() {
                    core.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
                }
            }
            Err(error) => return error.into(),
        }
    }
}

/// The end that hands a SaslHandshake `frame` (its body) to the re-authentication.
fn reauthentication(frame: &Bytes) -> ConnectionEnd {
    // The frame was read under `request_bytes_max`, so its size fits the prefix.
    let prefix = size_prefix(frame.len()).unwrap_or_default();
    let mut input = BytesMut::with_capacity(prefix.len() + frame.len());
    input.extend_from_slice(&prefix);
    input.extend_from_slice(frame);
    ConnectionEnd::Reauthenticate { input }
}

/// Responses gathered for one write: their segments in order, and how many bytes they hold.
#[derive(Debug, Default)]
struct Output {
    segments: Vec<Bytes>,
    bytes: usize,
}

/// Adds one finished request's response to `output`; a close drops every later request; a
/// throttle mutes the connection until it has passed.
fn take(
    (outcome, throttle_ms): (SegmentsOutcome, u64),
    output: &mut Output,
    refusal: &mut Option<ConnectionEnd>,
    inflight: &mut InflightRequests<Pending>,
    muted_until: &mut Option<Instant>,
) {
    if throttle_ms > 0 {
        let until = Instant::now() + std::time::Duration::from_millis(throttle_ms);
        *muted_until = Some(muted_until.map_or(until, |muted| muted.max(until)));
    }
    match outcome {
        SegmentsOutcome::Respond(segments) => {
            output.bytes += segments.iter().map(Bytes::len).sum::<usize>();
            output.segments.extend(segments);
        }
        SegmentsOutcome::NoResponse => {}
        SegmentsOutcome::Close(reason) => {
            *refusal = Some(ConnectionEnd::Refused(reason));
            // Requests after the refused one are never answered (the connection closes).
            inflight.clear();
        }
    }
}

/// Writes every gathered segment, in order, with vectored writes of up to [`WRITE_SLICES_MAX`]
/// slices, then drops them (and with them the references into the cache).
async fn write_out<T: AsyncWrite + Unpin>(
    stream: &mut T,
    output: &mut Output,
) -> std::io::Result<()> {
    if output.bytes == 0 {
        output.segments.clear();
        return Ok(());
    }
    // The first segment not yet written whole, and how much of it is.
    let (mut index, mut within) = (0usize, 0usize);
    while index < output.segments.len() {
        let pending = output.segments.get(index..).unwrap_or_default();
        let slices: Vec<IoSlice<'_>> = pending
            .iter()
            .take(WRITE_SLICES_MAX)
            .enumerate()
            .map(|(at, segment)| {
                let from = if at == 0 { within } else { 0 };
                IoSlice::new(segment.get(from..).unwrap_or_default())
            })
            .collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(segment) = output.segments.get(index) else {
                break;
            };
            let left = segment.len() - within;
            if written >= left {
                written -= left;
                index += 1;
                within = 0;
            } else {
                within += written;
                written = 0;
            }
        }
    }
    stream.flush().await?;
    output.segments.clear();
    output.bytes = 0;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::executor::block_on;

    use super::*;

    #[test]
    fn reads_ask_for_about_what_the_socket_gives() {
        const TLS_RECORD: usize = 16 * 1024;
        // A plaintext socket with a large frame waiting fills every read: 64 KiB stays.
        assert_eq!(
            next_read_chunk(READ_CHUNK_BYTES, READ_CHUNK_BYTES),
            READ_CHUNK_BYTES
        );
        // TLS: each read returns one record; the room zeroed per read falls from 64 KiB to
        // between 16 and 32 KiB, and never below a record.
        let mut asked = READ_CHUNK_BYTES;
        let mut zeroed = 0;
        for _ in 0..100 {
            let read = TLS_RECORD.min(asked);
            assert_eq!(read, TLS_RECORD, "a read asked {asked}, less than a record");
            zeroed += asked;
            asked = next_read_chunk(asked, read);
        }
        assert!(zeroed <= 100 * 2 * TLS_RECORD, "{zeroed}");
        // Small requests: down to the minimum, and back to 64 KiB in four reads once a large
        // frame arrives.
        let mut asked = READ_CHUNK_BYTES;
        for _ in 0..10 {
            asked = next_read_chunk(asked, 120);
        }
        assert_eq!(asked, READ_CHUNK_BYTES_MIN);
        let mut reads = 0;
        while asked < READ_CHUNK_BYTES {
            asked = next_read_chunk(asked, asked);
            reads += 1;
        }
        assert_eq!(reads, 4);
        // Never zero, whatever a read returned.
        assert_eq!(
            next_read_chunk(READ_CHUNK_BYTES_MIN, 0),
            READ_CHUNK_BYTES_MIN
        );
    }

    /// A stream that takes at most `step` bytes per write, from at most two slices.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.calls += 1;
            let mut budget = self.step;
            let mut taken = 0;
            for buf in bufs.iter().take(2) {
                let take = buf.len().min(budget);
                self.written.extend_from_slice(&buf[..take]);
                budget -= take;
                taken += take;
            }
            Poll::Ready(Ok(taken))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_vectored_writes_resume_where_they_stopped() {
        let segments: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![i as u8; 1 + (i as usize * 7) % 50]))
            .collect();
        let expected: Vec<u8> = segments.concat();
        for step in [1, 7, 64, 100_000] {
            let mut output = Output::default();
            take(
                (SegmentsOutcome::Respond(segments.clone()), 0),
                &mut output,
                &mut None,
                &mut InflightRequests::default(),
                &mut None,
            );
            assert_eq!(output.bytes, expected.len());
            let mut stream = Trickle {
                written: Vec::new(),
                step,
                calls: 0,
            };
            block_on(write_out(&mut stream, &mut output)).unwrap();
            assert_eq!(stream.written, expected, "step {step}");
            assert!(output.segments.is_empty() && output.bytes == 0);
        }
    }
}
