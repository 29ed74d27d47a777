//! One client connection, from accept to close, on the core that accepted it.
//!
//! Reads fill a buffer; every complete frame in it is dispatched in arrival order and the
//! responses are gathered and written with one `write_all`, so a pipelining client costs one
//! write per read rather than one per request, and responses leave in request order. A frame is
//! never larger than `request_bytes_max` (checked from its size prefix, before its body is
//! buffered) and the gathered responses are flushed once they pass
//! [`RESPONSE_BATCH_BYTES_MAX`], so a connection's memory is bounded by those two numbers.
//!
//! Requests are handled one at a time per connection. Produce requests that wait for a flush
//! will need several in flight per connection (still answered in order); that is the place to
//! add a bounded in-order queue.

use std::rc::Rc;

use bytes::BytesMut;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Serves one connection until it ends; the returned value says how.
pub async fn serve<S, T>(
    stream: &mut T,
    dispatcher: Rc<Dispatcher<S>>,
    request_bytes_max: u32,
) -> ConnectionEnd
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = Vec::new();
    loop {
        // Answer every complete frame already buffered, in order.
        let mut refusal = None;
        loop {
            match split_frame(&mut input, request_bytes_max) {
                Ok(Some(frame)) => match dispatcher.handle_frame(frame).await {
                    FrameOutcome::Respond(bytes) => {
                        output.extend_from_slice(&bytes);
                        if output.len() >= RESPONSE_BATCH_BYTES_MAX
                            && let Err(error) = write_out(stream, &mut output).await
                        {
                            return error.into();
                        }
                    }
                    FrameOutcome::Close(reason) => {
                        refusal = Some(ConnectionEnd::Refused(reason));
                        break;
                    }
                },
                Ok(None) => break,
                Err(error) => {
                    refusal = Some(error.into());
                    break;
                }
            }
        }
        // Responses to the requests before a bad one are still owed to the client.
        if let Err(error) = write_out(stream, &mut output).await {
            return error.into();
        }
        if let Some(end) = refusal {
            return end;
        }

        let filled = input.len();
        input.resize(filled + READ_CHUNK_BYTES, 0);
        let read = match input.get_mut(filled..) {
            Some(free) => stream.read(free).await,
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
