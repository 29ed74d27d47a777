//! One client connection, from accept to close, on the core that accepted it.
//!
//! Reads fill a buffer; every complete frame in it is dispatched in arrival order and the
//! responses are gathered and written with one `write_all`, so a pipelining client costs one
//! write per read rather than one per request, and responses leave in request order. A frame is
//! never larger than `request_bytes_max` (checked from its size prefix, before its body is
//! buffered), at most [`REQUESTS_INFLIGHT_MAX`] frames are held, and the gathered responses are
//! flushed once they pass [`RESPONSE_BATCH_BYTES_MAX`], so a connection's memory is bounded by
//! those numbers (produced bytes are further bounded per core by `flush_buffer_bytes_max`).
//!
//! Requests are pipelined: a connection keeps reading while up to [`REQUESTS_INFLIGHT_MAX`]
//! requests are being handled (a produce waits a whole flush window, and a client with
//! `max.in.flight.requests.per.connection = 5` must not be served one window at a time), and the
//! responses are written strictly in request order, which Kafka clients rely on. Past the limit
//! the connection stops reading until the oldest request is answered: that is its backpressure.

use std::net::IpAddr;
use std::rc::Rc;

use bytes::BytesMut;
use futures::future::{Either, LocalBoxFuture, select};
use futures::stream::FuturesOrdered;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};

use crate::metadata_source::MetadataSource;
use crate::protocol::frame::{FrameError, split_frame};
use crate::protocol::{Dispatcher, FrameOutcome};

/// Bytes asked of the socket per read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Gathered responses are written out once they reach this size.
pub const RESPONSE_BATCH_BYTES_MAX: usize = 1024 * 1024;

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
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Requests read and not yet answered, per connection.
pub const REQUESTS_INFLIGHT_MAX: usize = 64;

type Pending = LocalBoxFuture<'static, FrameOutcome>;

/// Serves one connection until it ends; the returned value says how.
pub async fn serve<S, T>(
    stream: &mut T,
    dispatcher: Rc<Dispatcher<S>>,
    request_bytes_max: u32,
    peer: Option<IpAddr>,
) -> ConnectionEnd
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = Vec::new();
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut refusal: Option<ConnectionEnd> = None;
    loop {
        // Start every complete frame already buffered, in order, up to the limit.
        while refusal.is_none() && inflight.len() < REQUESTS_INFLIGHT_MAX {
            match split_frame(&mut input, request_bytes_max) {
                Ok(Some(frame)) => {
                    let dispatcher = Rc::clone(&dispatcher);
                    inflight.push_back(Box::pin(async move {
                        dispatcher.handle_frame_from(frame, peer).await
                    }));
                }
                Ok(None) => break,
                Err(error) => refusal = Some(error.into()),
            }
        }
        // Gather what is ready (in order) and write it with one call.
        while output.len() < RESPONSE_BATCH_BYTES_MAX
            && let Some(Some(outcome)) = inflight.next().now_or_never()
        {
            take(outcome, &mut output, &mut refusal, &mut inflight);
        }
        if let Err(error) = write_out(stream, &mut output).await {
            return error.into();
        }
        if inflight.is_empty()
            && let Some(end) = refusal
        {
            // Responses to the requests before a bad one were still owed, and are written.
            return end;
        }

        if refusal.is_some() || inflight.len() >= REQUESTS_INFLIGHT_MAX {
            if let Some(outcome) = inflight.next().await {
                take(outcome, &mut output, &mut refusal, &mut inflight);
            }
            continue;
        }
        let filled = input.len();
        input.resize(filled + READ_CHUNK_BYTES, 0);
        let read = match input.get_mut(filled..) {
            Some(free) if inflight.is_empty() => stream.read(free).await,
            Some(free) => {
                let read = stream.read(free);
                match select(read, inflight.next()).await {
                    Either::Left((read, _)) => read,
                    Either::Right((outcome, read)) => {
                        // Reads are cancel-safe: nothing is consumed until a poll is ready.
                        drop(read);
                        input.truncate(filled);
                        if let Some(outcome) = outcome {
                            take(outcome, &mut output, &mut refusal, &mut inflight);
                        }
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
            Ok(bytes) => input.truncate(filled + bytes),
            Err(error) => return error.into(),
        }
    }
}

/// Adds one finished request's response to `output`; a close drops every later request.
fn take(
    outcome: FrameOutcome,
    output: &mut Vec<u8>,
    refusal: &mut Option<ConnectionEnd>,
    inflight: &mut FuturesOrdered<Pending>,
) {
    match outcome {
        FrameOutcome::Respond(bytes) => output.extend_from_slice(&bytes),
        FrameOutcome::NoResponse => {}
        FrameOutcome::Close(reason) => {
            *refusal = Some(ConnectionEnd::Refused(reason));
            // Requests after the refused one are never answered (the connection closes).
            *inflight = FuturesOrdered::new();
        }
    }
}

async fn write_out<T: AsyncWrite + Unpin>(
    stream: &mut T,
    output: &mut Vec<u8>,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await?;
    stream.flush().await?;
    output.clear();
    Ok(())
}
