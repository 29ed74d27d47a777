//! Vectored writes on a glommio TCP stream.
//!
//! glommio 0.9's `TcpStream` implements only `poll_write` (a non-blocking `send`, then a wait for
//! the socket to take more), so `futures`' default `poll_write_vectored` would write one slice per
//! call: a Fetch response of a few thousand segments (field pieces, rewritten batch headers and
//! slices of the block cache) would cost a system call each. [`VectoredStream`] sends up to all
//! the slices it is given with one non-blocking `sendmsg`, as glommio's own write path sends one
//! buffer; when the socket is full it falls back to the stream's `poll_write` of the first slice,
//! which parks the task until the socket takes more, so waiting is still glommio's.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Slices one `sendmsg` takes at most (Linux's `IOV_MAX`).
const SLICES_PER_CALL_MAX: usize = 1024;

/// A stream whose vectored writes are one `sendmsg` each.
#[derive(Debug)]
pub struct VectoredStream<S> {
    inner: S,
}

impl<S> VectoredStream<S> {
    pub fn new(inner: S) -> VectoredStream<S> {
        VectoredStream { inner }
    }
}

/// Sends what the socket takes now of `slices`; `None` when it takes nothing without waiting.
fn send_now(fd: std::os::fd::RawFd, slices: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
    let slices = slices.get(..slices.len().min(SLICES_PER_CALL_MAX))?;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (a documented guarantee of std);
    // the header points at `slices`, which outlive the call, and the kernel only reads them.
    // An all-zero `msghdr` is valid (no address, no control data) on every libc.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = slices.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = slices.len() as _;
    // SAFETY: `fd` is the stream's open socket for the duration of the call, and `message` is a
    // valid header (above) with no address and no control data.
    let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent >= 0 {
        return Some(Ok(sent as usize));
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::WouldBlock => None,
        io::ErrorKind::Interrupted => None,
        _ => Some(Err(error)),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for VectoredStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + AsRawFd + Unpin> AsyncWrite for VectoredStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().find(|buf| !buf.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if let Some(result) = send_now(self.inner.as_raw_fd(), bufs) {
            return Poll::Ready(result);
        }
        // The socket is full: glommio's write waits for room (and writes what it can of `first`).
        Pin::new(&mut self.inner).poll_write(cx, first)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
