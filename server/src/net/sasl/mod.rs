//! SASL authentication on a listener (Kafka's `SASL_PLAINTEXT` and `SASL_SSL`).
//!
//! As in Kafka (`SaslServerAuthenticator`), authentication belongs to the connection, not to a
//! request handler: on a listener that requires SASL, a new connection first runs
//! [`authenticate`], which reads one frame at a time (no pipelining: each answer decides what the
//! next frame may be), lets the dispatcher answer ApiVersions, and gives SaslHandshake and
//! SaslAuthenticate to the connection's [`Authenticator`]. Only once the client is a
//! [`Principal`] does the ordinary pipelined loop (`connection::serve`) start, with whatever
//! bytes the client already sent after its last token. Anything else before that closes the
//! connection. The dispatcher itself answers SaslHandshake and SaslAuthenticate with
//! ILLEGAL_SASL_STATE, as Kafka's request handler does: on a listener without SASL, or after
//! authentication.
//!
//! Limits: a frame before authentication holds at most [`SASL_FRAME_BYTES_MAX`] (Kafka's
//! `sasl.server.max.receive.size`), and the whole exchange must end within
//! [`AUTHENTICATION_TIMEOUT`], so an unauthenticated client holds a few hundred KiB for half a
//! minute at most. Failed logins are rate-limited per address ([`limiter`]).
//!
//! Mechanisms: PLAIN ([`plain`]) and SCRAM-SHA-256/512 ([`scram`]), users from a file
//! ([`users`]) and, for SCRAM, credentials managed with AlterUserScramCredentials and kept in the
//! metadata log ([`credentials`]: the log's credential wins over the file's); OAUTHBEARER
//! ([`oauthbearer`]), JWTs checked against a JWKS file or endpoint ([`jwks_endpoint`]).
//!
//! **Re-authentication** (KIP-368, Kafka's `connections.max.reauth.ms`, here
//! `connections_max_reauth_ms`, 0 = off). When on, a successful SaslAuthenticate (v1+) tells the
//! client its session lifetime (the setting, or less when its OAUTHBEARER token expires sooner),
//! and the client sends SaslHandshake and SaslAuthenticate again on the same connection before
//! then. The pipelined loop (`connection::serve_with_input`) hands such a SaslHandshake back here
//! once every request before it is answered, [`reauthenticate`] runs the same exchange (same
//! limits, same mechanism, and the principal must not change), and the loop resumes with the new
//! expiry. A connection whose session has expired is closed at its next request other than a
//! SaslHandshake, as Kafka does (`SocketServer` closes an expired channel).

pub mod authenticator;
pub mod credentials;
pub mod jwks_endpoint;
pub mod limiter;
pub mod oauthbearer;
pub mod plain;
pub mod scram;
pub mod users;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::ApiKey;

pub use authenticator::{Authenticator, Session, Step};
pub use credentials::ScramBoard;
pub use limiter::FailedLogins;
pub use scram::ScramMechanism;
pub use users::{Users, UsersError};

use super::connection::ConnectionEnd;
use crate::metadata_source::MetadataSource;
use crate::protocol::codec::{self, Decoded};
use crate::protocol::dispatch::CloseReason;
use crate::protocol::frame::split_frame;
use crate::protocol::{Dispatcher, FrameOutcome};

/// Largest frame accepted before authentication (Kafka's `sasl.server.max.receive.size`).
pub const SASL_FRAME_BYTES_MAX: u32 = 512 * 1024;
/// Longest an unauthenticated connection may take to authenticate.
pub const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Random bytes in a SCRAM server nonce.
const SERVER_NONCE_BYTES: usize = 24;
/// Bytes asked of the socket per read while authenticating (the frames are small).
const READ_CHUNK_BYTES: usize = 4096;

/// A SASL mechanism this agent can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism: those of the default `sasl_mechanisms` first, then OAUTHBEARER (which
    /// needs a JWKS file or endpoint, so it is offered only when named).
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::OAuthBearer,
    ];

    /// Whether the mechanism checks passwords of the users file (PLAIN and SCRAM).
    pub fn uses_passwords(self) -> bool {
        !matches!(self, Mechanism::OAuthBearer)
    }

    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(scram) => scram.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism called `name` (as Kafka spells it), if this agent has it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }
}

/// Who a connection authenticated as, in Kafka's form (`User:alice`); what ACLs will match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

impl Principal {
    pub fn user(name: &str) -> Principal {
        Principal(format!("User:{name}"))
    }

    /// The user name, without the `User:` type.
    pub fn name(&self) -> &str {
        self.0.strip_prefix("User:").unwrap_or(&self.0)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What a SASL listener needs: the enabled mechanisms, the users, and the agent's failed-login
/// table (shared by every core and listener).
#[derive(Debug)]
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// Shared by every listener's settings (see [`SaslSettings::with_mechanisms`]).
    pub users: Arc<Users>,
    pub failed_logins: Arc<Mutex<FailedLogins>>,
    /// Checks OAUTHBEARER tokens; `None` when the mechanism is not offered.
    pub oauth: Option<Arc<oauthbearer::TokenValidator>>,
    /// `connections_max_reauth_ms`: the longest a session lasts before the client must
    /// re-authenticate; `None` turns re-authentication off.
    pub session_lifetime_max: Option<Duration>,
    /// The SCRAM credentials of the metadata log (shared with the AlterUserScramCredentials
    /// handler, which publishes each change).
    pub scram_credentials: Arc<ScramBoard>,
}

impl SaslSettings {
    pub fn new(
        mechanisms: Vec<Mechanism>,
        users: Users,
        failed_logins: FailedLogins,
    ) -> SaslSettings {
        SaslSettings {
            mechanisms,
            users: Arc::new(users),
            failed_logins: Arc::new(Mutex::new(failed_logins)),
            oauth: None,
            session_lifetime_max: None,
            scram_credentials: Arc::new(ScramBoard::new()),
        }
    }

    /// Uses the agent's board of SCRAM credentials (see [`credentials`]).
    pub fn with_scram_credentials(mut self, board: Arc<ScramBoard>) -> SaslSettings {
        self.scram_credentials = board;
        self
    }

    /// Sessions last at most `lifetime` (`None`: no re-authentication).
    pub fn with_session_lifetime_max(mut self, lifetime: Option<Duration>) -> SaslSettings {
        self.session_lifetime_max = lifetime;
        self
    }

    /// Offers OAUTHBEARER tokens to `validator`.
    pub fn with_oauth(mut self, validator: oauthbearer::TokenValidator) -> SaslSettings {
        self.oauth = Some(Arc::new(validator));
        self
    }

    /// The same settings offering `mechanisms` instead (a listener's own list, Kafka's
    /// `listener.name.NAME.sasl.enabled.mechanisms`): the users, the OAUTHBEARER validator, the
    /// SCRAM credentials and the failed-login table stay shared.
    pub fn with_mechanisms(&self, mechanisms: Vec<Mechanism>) -> SaslSettings {
        SaslSettings {
            mechanisms,
            users: Arc::clone(&self.users),
            failed_logins: Arc::clone(&self.failed_logins),
            oauth: self.oauth.clone(),
            session_lifetime_max: self.session_lifetime_max,
            scram_credentials: Arc::clone(&self.scram_credentials),
        }
    }
}

/// A fresh SCRAM server nonce from the system CSPRNG (base64: no `,`).
fn server_nonce() -> Option<String> {
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

/// Runs the SASL exchange on a new connection (see the module doc). Returns the session and the
/// bytes already read past the exchange, or how the connection ended. The caller bounds it with
/// [`AUTHENTICATION_TIMEOUT`].
pub async fn authenticate<S, T>(
    stream: &mut T,
    dispatcher: &Dispatcher<S>,
    settings: &Arc<SaslSettings>,
    peer: Option<IpAddr>,
) -> Result<(Session, BytesMut), ConnectionEnd>
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
{
    settings.scram_credentials.refresh_if_stale().await;
    let authenticator = Authenticator::new(Arc::clone(settings), peer);
    let input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    exchange(stream, dispatcher, authenticator, input).await
}

/// Re-authenticates `session` (KIP-368) on its connection: `input` starts with the client's
/// SaslHandshake frame (size prefix included), every request before it answered. Returns the
/// renewed session (same principal and mechanism, new expiry) and the bytes read past the
/// exchange. The caller bounds it with [`AUTHENTICATION_TIMEOUT`].
pub async fn reauthenticate<S, T>(
    stream: &mut T,
    dispatcher: &Dispatcher<S>,
    settings: &Arc<SaslSettings>,
    peer: Option<IpAddr>,
    session: &Session,
    input: BytesMut,
) -> Result<(Session, BytesMut), ConnectionEnd>
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
{
    settings.scram_credentials.refresh_if_stale().await;
    let authenticator = Authenticator::reauthenticate(Arc::clone(settings), peer, session);
    exchange(stream, dispatcher, authenticator, input).await
}

async fn exchange<S, T>(
    stream: &mut T,
    dispatcher: &Dispatcher<S>,
    mut authenticator: Authenticator,
    mut input: BytesMut,
) -> Result<(Session, BytesMut), ConnectionEnd>
where
    S: MetadataSource,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let peer = authenticator.peer();
    loop {
        while let Some(frame) = split_frame(&mut input, SASL_FRAME_BYTES_MAX)? {
            let step = if authenticator.expects_bare_token() {
                authenticator.on_bare_token(&frame, Instant::now(), server_nonce)
            } else {
                let api_key = frame.first_chunk::<2>().map(|key| i16::from_be_bytes(*key));
                // A re-authenticating client has negotiated versions already.
                if api_key == Some(ApiKey::ApiVersions as i16)
                    && authenticator.accepts_api_versions()
                    && !authenticator.is_reauthentication()
                {
                    match dispatcher.handle_frame_from(frame, peer).await {
                        FrameOutcome::Respond(response) => write(stream, &response).await?,
                        FrameOutcome::NoResponse => {}
                        FrameOutcome::Close(reason) => return Err(ConnectionEnd::Refused(reason)),
                    }
                    continue;
                }
                match codec::decode_request(frame) {
                    Ok(Decoded::Request(request)) => {
                        authenticator.on_request(request, Instant::now(), server_nonce)
                    }
                    Ok(Decoded::UnsupportedApiVersions { .. }) => Step::Fail {
                        response: None,
                        reason: "ApiVersions request during SASL authentication".to_owned(),
                    },
                    Err(error) => {
                        return Err(ConnectionEnd::Refused(CloseReason::Decode(error)));
                    }
                }
            };
            match step {
                Step::Respond(response) => write(stream, &response).await?,
                Step::Authenticated { response, session } => {
                    write(stream, &response).await?;
                    return Ok((session, input));
                }
                Step::Fail { response, reason } => {
                    if let Some(response) = response {
                        // The client should see why; the connection closes either way.
                        let _ = write(stream, &response).await;
                    }
                    return Err(ConnectionEnd::Sasl(reason));
                }
            }
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
                return Err(if input.is_empty() {
                    ConnectionEnd::ClientClosed
                } else {
                    ConnectionEnd::ClosedMidFrame {
                        buffered_bytes: input.len(),
                    }
                });
            }
            Ok(bytes) => input.truncate(filled + bytes),
            Err(error) => return Err(error.into()),
        }
    }
}

async fn write<T: AsyncWrite + Unpin>(stream: &mut T, frame: &Bytes) -> std::io::Result<()> {
    stream.write_all(frame).await?;
    stream.flush().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for mechanism in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
        }
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert_eq!(Mechanism::from_name("plain"), None);
    }

    #[test]
    fn principals_read_as_kafka_writes_them() {
        let principal = Principal::user("alice");
        assert_eq!(principal.to_string(), "User:alice");
        assert_eq!(principal.name(), "alice");
    }

    #[test]
    fn server_nonces_are_fresh_and_comma_free() {
        let one = server_nonce().unwrap();
        assert_ne!(one, server_nonce().unwrap());
        assert!(one.len() >= 32 && !one.contains(','));
    }
}
