//! A network core's main task: accept on this core's listener, serve each connection here.
//!
//! Connections are tasks on this core's executor, entered through a glommio `Gate`. Stopping
//! first shuts the listening socket down (a client connecting from then on is refused, and tries
//! another of its brokers), then lets every connection drain (answer the requests it has read,
//! see `connection`) for at most [`DRAIN_TIMEOUT`], then closes whatever is left (the socket is
//! dropped with its task) and waits until all of them are gone, instead of abandoning tasks in an
//! executor that is about to disappear, which would leave their sockets open.
//!
//! **A connection the stop ends before it answered anything is reset** (`SO_LINGER` 0), not
//! closed: a client that connected just before the stop would otherwise read an orderly close
//! where it expects its first answer (ApiVersions), which franz-go takes for a TLS mismatch
//! (`ErrFirstReadEOF`) and does not retry; a reset every client retries. A connection that has
//! answered is closed as usual once its answers are written (a reset could drop them unsent).

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::{Either, select};
use futures::{AsyncRead, AsyncWrite, FutureExt};

use super::connection::{self, ConnectionEnd};
use super::sasl::{self, AUTHENTICATION_TIMEOUT, Principal, SaslSettings};
use super::tls::HANDSHAKE_TIMEOUT;
use super::vectored::VectoredStream;
use crate::auth::ConnectionAuth;
use crate::metadata_source::MetadataSource;
use crate::metrics::{CoreMetrics, CoreSlot};
use crate::protocol::Dispatcher;

/// Pause after a failed accept (for example EMFILE) so a persistent error does not spin the core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How long a stopping core lets its connections answer the requests they have read. A produce
/// waits at most a flush window and its PUT; a Fetch long poll that asked for more than this is
/// cut short (its client fetches again from another agent or after the restart).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping core still takes connections out of an accept already in flight after it
/// shut its listening socket down (the shutdown fails that accept at once; this only bounds it).
const ACCEPT_AFTER_STOP_MAX: Duration = Duration::from_millis(200);

/// The core's stop signal, shared by its listeners' accept loops and their connections.
pub(super) type StopSignal = futures::future::Shared<futures::future::LocalBoxFuture<'static, ()>>;

/// Counts a connection in its core's gauge while it lives.
struct ConnectionGauge<'a>(&'a CoreMetrics);

impl<'a> ConnectionGauge<'a> {
    fn open(core: &'a CoreMetrics) -> Self {
        core.connections_accepted.fetch_add(1, Ordering::Relaxed);
        core.connections_open.fetch_add(1, Ordering::Relaxed);
        ConnectionGauge(core)
    }
}

impl Drop for ConnectionGauge<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted connection's context, whatever stream (TCP or TLS) it is served over.
struct Session<'a, S> {
    dispatcher: Rc<Dispatcher<S>>,
    /// The listener requires SASL (`SASL_PLAINTEXT` / `SASL_SSL`).
    sasl: Option<Arc<SaslSettings>>,
    request_bytes_max: u32,
    peer: Option<IpAddr>,
    metrics: CoreSlot,
    stop: StopSignal,
    principal: &'a RefCell<Option<Principal>>,
    /// Set once the connection has written an answer (a SASL exchange's included).
    answered: &'a Cell<bool>,
}

impl<S: MetadataSource> Session<'_, S> {
    /// Authenticates the client when the listener requires it (bounded by
    /// [`AUTHENTICATION_TIMEOUT`] and by the stop), then serves its requests, re-authenticating
    /// it on the way whenever it asks (KIP-368, see `connection`).
    async fn serve<T: AsyncRead + AsyncWrite + Unpin>(self, stream: &mut T) -> ConnectionEnd {
        let (mut session, mut input) = match &self.sasl {
            None => (None, BytesMut::with_capacity(connection::READ_CHUNK_BYTES)),
            Some(settings) => {
                let exchange = sasl::authenticate(stream, &self.dispatcher, settings, self.peer);
                match self.bounded(exchange).await {
                    Ok((session, input)) => {
                        self.answered.set(true);
                        tracing::debug!(peer = ?self.peer, principal = %session.principal, "SASL authentication");
                        *self.principal.borrow_mut() = Some(session.principal.clone());
                        (Some(session), input)
                    }
                    Err(end) => return end,
                }
            }
        };
        // Kafka's principal: `User:<SASL name>` after SASL, else `User:<subject DN>` of an mTLS
        // client's certificate, else ANONYMOUS. A re-authentication keeps it.
        let auth = Rc::new(match self.principal.borrow().as_ref() {
            Some(principal) => ConnectionAuth::new(principal.to_string(), self.peer),
            None => ConnectionAuth::anonymous(self.peer),
        });
        loop {
            let end = connection::serve_with_input(
                stream,
                Rc::clone(&self.dispatcher),
                self.request_bytes_max,
                self.peer,
                self.metrics.clone(),
                self.stop.clone(),
                input,
                Rc::clone(&auth),
                session.as_ref().and_then(|session| session.expires_at),
                self.answered,
            )
            .await;
            let ConnectionEnd::Reauthenticate { input: handshake } = end else {
                return end;
            };
            // Only a session that expires hands a handshake back.
            let (Some(settings), Some(previous)) = (&self.sasl, &session) else {
                return ConnectionEnd::Sasl("re-authentication without a session".to_owned());
            };
            let exchange = sasl::reauthenticate(
                stream,
                &self.dispatcher,
                settings,
                self.peer,
                previous,
                handshake,
            );
            match self.bounded(exchange).await {
                Ok((renewed, rest)) => {
                    tracing::debug!(peer = ?self.peer, principal = %renewed.principal, "SASL re-authentication");
                    session = Some(renewed);
                    input = rest;
                }
                Err(end) => return end,
            }
        }
    }

    /// Runs a SASL exchange within [`AUTHENTICATION_TIMEOUT`] unless the agent stops, and counts
    /// its outcome.
    async fn bounded<F>(&self, exchange: F) -> Result<(sasl::Session, BytesMut), ConnectionEnd>
    where
        F: Future<Output = Result<(sasl::Session, BytesMut), ConnectionEnd>>,
    {
        let deadline = glommio::timer::sleep(AUTHENTICATION_TIMEOUT);
        let stop = self.stop.clone();
        futures::pin_mut!(exchange, deadline);
        let count = |counter: fn(&CoreMetrics) -> &AtomicU64| {
            if let Some(core) = self.metrics.core() {
                counter(core).fetch_add(1, Ordering::Relaxed);
            }
        };
        match select(select(exchange, deadline), stop).await {
            Either::Left((Either::Left((Ok(done), _)), _)) => {
                count(|core| &core.sasl_authentications);
                Ok(done)
            }
            Either::Left((Either::Left((Err(end), _)), _)) => {
                if !end.is_ordinary() {
                    count(|core| &core.sasl_authentications_failed);
                }
                Err(end)
            }
            Either::Left((Either::Right(_), _)) => {
                count(|core| &core.sasl_authentications_failed);
                Err(ConnectionEnd::Sasl(format!(
                    "not authenticated within {AUTHENTICATION_TIMEOUT:?}"
                )))
            }
            Either::Right(_) => Err(ConnectionEnd::AgentStopping),
        }
    }
}

/// Runs until `stop` fires (or its sender is dropped), then closes this core's connections.
pub(super) async fn network_core<S: MetadataSource>(
    listener: std::net::TcpListener,
    dispatcher: Dispatcher<S>,
    request_bytes_max: u32,
    metrics: CoreSlot,
    tls: Option<Arc<super::tls::Acceptor>>,
    sasl: Option<Arc<SaslSettings>>,
    stop: StopSignal,
) {
    // A second descriptor for the same socket, to shut it down on stop: an accept still queued
    // in io_uring holds its own reference to the socket, so closing our descriptor alone may
    // leave the port accepting connections until the ring is torn down.
    let listener_for_shutdown = match listener.try_clone() {
        Ok(clone) => Some(clone),
        Err(error) => {
            tracing::warn!(%error, "cannot duplicate the listener; stopping may be slower");
            None
        }
    };
    // SAFETY: the descriptor comes from `into_raw_fd`, so this is its only owner; it is a bound,
    // listening TCP socket, which is what glommio's listener expects.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let dispatcher = Rc::new(dispatcher);
    // Fires DRAIN_TIMEOUT after the stop: connections still draining are then closed.
    let drain_over = {
        let stop = stop.clone();
        async move {
            let _ = stop.await;
            glommio::timer::sleep(DRAIN_TIMEOUT).await;
        }
    }
    .boxed_local()
    .shared();
    let connections = glommio::sync::Gate::new();
    // Set once the stop fired: an accept that fails then ends the accept loop.
    let stopping = Cell::new(false);
    // The accept loop lives in this block so that it (and its borrow of the listener) is gone
    // before the listener is closed below.
    {
        let accept_loop = async {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::warn!(%error, "cannot set TCP_NODELAY");
                        }
                        let peer = stream.peer_addr().ok();
                        // Kept to reset the socket on the way out (see the module docs); the
                        // stream owns the descriptor, and every use below is while it lives.
                        let fd = stream.as_raw_fd();
                        // Responses are written as segments (Fetch records from the cache).
                        let mut stream = VectoredStream::new(stream);
                        let dispatcher = Rc::clone(&dispatcher);
                        let stop = stop.clone();
                        let drain_over = drain_over.clone();
                        let metrics = metrics.clone();
                        let tls = tls.clone();
                        let sasl = sasl.clone();
                        let spawned = connections.spawn(async move {
                            let open = metrics.core().map(ConnectionGauge::open);
                            let peer_ip = peer.map(|address| address.ip());
                            // Who the client authenticated as, kept for the connection's
                            // life (its log lines now; ACLs next).
                            let principal = RefCell::new(None);
                            let answered = Cell::new(false);
                            // Called while the stream is still open.
                            let closing = |end: ConnectionEnd| {
                                if matches!(end, ConnectionEnd::AgentStopping) && !answered.get() {
                                    reset_on_close(fd);
                                }
                                end
                            };
                            let session = Session {
                                dispatcher,
                                sasl,
                                request_bytes_max,
                                peer: peer_ip,
                                metrics: metrics.clone(),
                                stop,
                                principal: &principal,
                                answered: &answered,
                            };
                            let serve = async {
                                let Some(acceptor) = tls else {
                                    return closing(session.serve(&mut stream).await);
                                };
                                let handshake = acceptor.current().accept(stream);
                                let deadline = glommio::timer::sleep(HANDSHAKE_TIMEOUT);
                                futures::pin_mut!(handshake, deadline);
                                match select(handshake, deadline).await {
                                    Either::Left((Ok(mut stream), _)) => {
                                        // mTLS: `User:<subject DN>`, as Kafka names it,
                                        // unless SASL names the client next.
                                        let subject = stream
                                            .get_ref()
                                            .1
                                            .peer_certificates()
                                            .and_then(|chain| chain.first())
                                            .and_then(|leaf| {
                                                crate::auth::certificate::subject_dn(leaf)
                                            });
                                        if let Some(subject) = subject {
                                            *principal.borrow_mut() =
                                                Some(Principal::user(&subject));
                                        }
                                        closing(session.serve(&mut stream).await)
                                    }
                                    Either::Left((Err(error), _)) => {
                                        ConnectionEnd::Tls(format!("handshake failed: {error}"))
                                    }
                                    Either::Right(_) => ConnectionEnd::Tls(format!(
                                        "no handshake within {HANDSHAKE_TIMEOUT:?}"
                                    )),
                                }
                            };
                            futures::pin_mut!(serve);
                            let outcome = select(serve, drain_over).await;
                            let principal = principal.borrow().as_ref().map(ToString::to_string);
                            match outcome {
                                Either::Left((end, _)) if end.is_ordinary() => {
                                    tracing::debug!(?peer, ?principal, reason = %end, "connection closed");
                                }
                                Either::Left((end, _)) => {
                                    tracing::info!(?peer, ?principal, reason = %end, "connection closed");
                                }
                                Either::Right(_) => {
                                    // `serve`, pinned in this task, still holds the stream.
                                    if !answered.get() {
                                        reset_on_close(fd);
                                    }
                                    tracing::info!(
                                        ?peer,
                                        ?principal,
                                        "connection closed: agent stopping, requests still \
                                         unanswered after the drain timeout"
                                    )
                                }
                            }
                            drop(open);
                        });
                        match spawned {
                            Ok(task) => {
                                task.detach();
                            }
                            Err(error) => {
                                tracing::warn!(%error, ?peer, "cannot start connection task")
                            }
                        }
                    }
                    // The listening socket was shut down: nothing more to accept.
                    Err(_) if stopping.get() => break,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        };
        // On the stop: no new connections. shutdown() on a listening socket stops it accepting
        // (a connecting client is refused) and fails the pending accept, whoever else still
        // holds a reference to it; the accept loop goes on until then, so that a connection the
        // kernel handed to that accept meanwhile is served (and reset) rather than dropped.
        let stopped = async {
            let _ = stop.clone().await;
            stopping.set(true);
            // A rebalance waiting on members must not hold their requests until the drain
            // timeout: they are answered NOT_COORDINATOR and look the coordinator up again.
            dispatcher.release_parked_group_requests();
            if let Some(clone) = &listener_for_shutdown {
                let _ = socket2::SockRef::from(clone).shutdown(std::net::Shutdown::Both);
            }
            glommio::timer::sleep(ACCEPT_AFTER_STOP_MAX).await;
        };
        futures::pin_mut!(accept_loop, stopped);
        let _ = select(accept_loop, stopped).await;
    }
    drop(listener_for_shutdown);
    drop(listener);
    // Every connection task sees the same stop signal and ends at its next poll.
    if let Err(error) = connections.close().await {
        tracing::warn!(%error, "closing connections");
    }
}

/// Makes the close of the socket `fd` a reset (`SO_LINGER` 0): see the module docs.
fn reset_on_close(fd: RawFd) {
    // SAFETY: the caller's stream owns `fd` and outlives this call.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Err(error) = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "cannot set SO_LINGER 0; the connection closes with a FIN");
    }
}
