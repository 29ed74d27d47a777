//! A network core's main task: accept on this core's listener, serve each connection here.
//!
//! Connections are tasks on this core's executor, entered through a glommio `Gate`. Stopping
//! first closes the listener, then lets every connection drain (answer the requests it has read,
//! see `connection`) for at most [`DRAIN_TIMEOUT`], then closes whatever is left (the socket is
//! dropped with its task) and waits until all of them are gone, instead of abandoning tasks in an
//! executor that is about to disappear, which would leave their sockets open.

use std::cell::RefCell;
use std::net::IpAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
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
use futures_rustls::TlsAcceptor;

/// Pause after a failed accept (for example EMFILE) so a persistent error does not spin the core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How long a stopping core lets its connections answer the requests they have read. A produce
/// waits at most a flush window and its PUT; a Fetch long poll that asked for more than this is
/// cut short (its client fetches again from another agent or after the restart).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    tls: Option<TlsAcceptor>,
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
                            let session = Session {
                                dispatcher,
                                sasl,
                                request_bytes_max,
                                peer: peer_ip,
                                metrics: metrics.clone(),
                                stop,
                                principal: &principal,
                            };
                            let serve = async {
                                let Some(acceptor) = tls else {
                                    return session.serve(&mut stream).await;
                                };
                                let handshake = acceptor.accept(stream);
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
                                        session.serve(&mut stream).await
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
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        glommio::timer::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        };
        futures::pin_mut!(accept_loop);
        let _ = select(accept_loop, stop.clone()).await;
    }
    // No new connections while the open ones are closed. shutdown() on a listening socket stops
    // it accepting (and fails the pending accept) whoever else still holds a reference to it.
    if let Some(clone) = listener_for_shutdown {
        let _ = socket2::SockRef::from(&clone).shutdown(std::net::Shutdown::Both);
    }
    drop(listener);
    // Every connection task sees the same stop signal and ends at its next poll.
    if let Err(error) = connections.close().await {
        tracing::warn!(%error, "closing connections");
    }
}
