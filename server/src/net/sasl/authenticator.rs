//! One connection's SASL exchange, as a state machine over decoded requests (no I/O, no clock:
//! the time and the server nonce come in as arguments).
//!
//! Kafka's `SaslServerAuthenticator` is the reference:
//! 1. Before the handshake, ApiVersions (answered by the dispatcher, any number of times) and
//!    SaslHandshake are allowed. A handshake naming an enabled mechanism is answered with the
//!    enabled list; any other gets UNSUPPORTED_SASL_MECHANISM with the list, and the connection
//!    closes.
//! 2. After SaslHandshake v1, the tokens come in SaslAuthenticate requests; after v0, as bare
//!    size-prefixed frames (clients from before Kafka 1.0), answered the same way.
//! 3. A failed authentication answers SASL_AUTHENTICATION_FAILED with a message and closes; a
//!    locked-out address ([`super::limiter`]) fails without its password being checked.
//! 4. Any other request before authentication closes the connection without an answer (Kafka's
//!    IllegalSaslStateException).
//! 5. Re-authentication (KIP-368, [`Authenticator::reauthenticate`]): the same exchange on an
//!    authenticated connection, started by its SaslHandshake. The mechanism and the principal must
//!    stay what they were: another mechanism is answered ILLEGAL_SASL_STATE, another principal
//!    SASL_AUTHENTICATION_FAILED ("Cannot change principals"), and either closes the connection.
//!    Tokens must come in SaslAuthenticate requests (handshake v1+), which carry the session
//!    lifetime.
//!
//! The session lifetime answered in SaslAuthenticate v1+ is `connections_max_reauth_ms`, or the
//! credential's remaining lifetime (an OAUTHBEARER token's `exp`) when that is shorter; with the
//! setting at 0 it is 0, "no expiry", whatever the credential.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::scram::{ScramError, ScramServer};
use super::{Mechanism, Principal, SaslSettings, oauthbearer, plain};
use crate::protocol::codec::{self, DecodedRequest, Request, Response};
use crate::protocol::frame::size_prefix;

/// What the connection does next.
#[derive(Debug)]
pub enum Step {
    /// Write this frame (size prefix included) and keep authenticating.
    Respond(Bytes),
    /// Write this frame; the client is `session.principal` from now on.
    Authenticated { response: Bytes, session: Session },
    /// Write the frame, if any, then close: `reason` is logged.
    Fail {
        response: Option<Bytes>,
        reason: String,
    },
}

/// An authenticated client: who it is, how it authenticated, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub mechanism: Mechanism,
    /// When the session ends unless the client re-authenticates; `None` when re-authentication
    /// is off (`connections_max_reauth_ms` = 0).
    pub expires_at: Option<Instant>,
}

#[derive(Debug)]
enum State {
    /// ApiVersions or SaslHandshake expected.
    Handshake,
    /// Tokens expected: in SaslAuthenticate requests (`framed`), or bare (handshake v0).
    Tokens {
        mechanism: Mechanism,
        framed: bool,
        /// Boxed: the exchange's messages, kept only while SCRAM runs.
        scram: Option<Box<ScramServer>>,
    },
    /// Authenticated or failed: nothing more to do here.
    Over,
}

/// The outcome of one token.
enum Token {
    Challenge(Vec<u8>),
    /// The final message, the principal, and how long the credential stays valid (`None`: no
    /// expiry of its own).
    Done(Vec<u8>, Principal, Option<Duration>),
}

/// One connection's authenticator.
#[derive(Debug)]
pub struct Authenticator {
    settings: Arc<SaslSettings>,
    peer: Option<IpAddr>,
    state: State,
    /// The session being renewed, when this is a re-authentication.
    previous: Option<(Principal, Mechanism)>,
    /// The mechanism the handshake chose.
    mechanism: Option<Mechanism>,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>, peer: Option<IpAddr>) -> Authenticator {
        Authenticator {
            settings,
            peer,
            state: State::Handshake,
            previous: None,
            mechanism: None,
        }
    }

    /// An authenticator for a re-authentication of `session` (KIP-368): its SaslHandshake comes
    /// next, and the mechanism and principal must stay the same.
    pub fn reauthenticate(
        settings: Arc<SaslSettings>,
        peer: Option<IpAddr>,
        session: &Session,
    ) -> Authenticator {
        Authenticator {
            previous: Some((session.principal.clone(), session.mechanism)),
            ..Authenticator::new(settings, peer)
        }
    }

    /// The client's address (for the failed-login limit).
    pub fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    /// Whether this is a re-authentication.
    pub fn is_reauthentication(&self) -> bool {
        self.previous.is_some()
    }

    /// When a session authenticated at `now` with a credential valid for `credential` ends, if
    /// re-authentication is on. At least 1 ms: 0 would tell the client "no expiry".
    fn session_lifetime(&self, credential: Option<Duration>) -> Option<Duration> {
        let lifetime_max = self.settings.session_lifetime_max?;
        let lifetime = credential.map_or(lifetime_max, |credential| credential.min(lifetime_max));
        Some(lifetime.max(Duration::from_millis(1)))
    }

    /// Whether an ApiVersions request may be answered now (before the handshake only).
    pub fn accepts_api_versions(&self) -> bool {
        matches!(self.state, State::Handshake)
    }

    /// Whether the next frame is a bare token (after SaslHandshake v0).
    pub fn expects_bare_token(&self) -> bool {
        matches!(self.state, State::Tokens { framed: false, .. })
    }

    /// Handles a request other than ApiVersions.
    pub fn on_request(
        &mut self,
        request: DecodedRequest,
        now: Instant,
        server_nonce: impl FnOnce() -> Option<String>,
    ) -> Step {
        let version = request.api_version();
        let correlation_id = request.header.correlation_id;
        let handshaking = matches!(self.state, State::Handshake);
        let framed_tokens = matches!(self.state, State::Tokens { framed: true, .. });
        match request.body {
            Request::SaslHandshake(handshake) if handshaking => {
                let enabled: Vec<StrBytes> = self
                    .settings
                    .mechanisms
                    .iter()
                    .map(|mechanism| StrBytes::from_static_str(mechanism.name()))
                    .collect();
                let wanted = handshake.mechanism.as_str();
                let chosen = self
                    .settings
                    .mechanisms
                    .iter()
                    .copied()
                    .find(|mechanism| mechanism.name() == wanted);
                let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
                let changed = match (&self.previous, chosen) {
                    (Some((_, previous)), Some(chosen)) if *previous != chosen || version < 1 => {
                        Some(format!(
                            "SASL mechanism {wanted:?} (handshake v{version}) cannot \
                             re-authenticate a session of mechanism {:?} (v1 or later needed)",
                            previous.name()
                        ))
                    }
                    _ => None,
                };
                if let Some(reason) = changed {
                    self.state = State::Over;
                    let response = Response::SaslHandshake(
                        response.with_error_code(ResponseError::IllegalSaslState.code()),
                    );
                    return Step::Fail {
                        response: codec::encode_response(
                            correlation_id,
                            ApiKey::SaslHandshake,
                            version,
                            &response,
                        )
                        .ok(),
                        reason,
                    };
                }
                match chosen {
                    Some(mechanism) => {
                        self.mechanism = Some(mechanism);
                        self.state = State::Tokens {
                            mechanism,
                            framed: version >= 1,
                            scram: None,
                        };
                        let response = Response::SaslHandshake(response);
                        self.respond(correlation_id, ApiKey::SaslHandshake, version, response)
                    }
                    None => {
                        self.state = State::Over;
                        let response = Response::SaslHandshake(
                            response
                                .with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                        );
                        let reason = format!("unsupported SASL mechanism {wanted:?}");
                        match codec::encode_response(
                            correlation_id,
                            ApiKey::SaslHandshake,
                            version,
                            &response,
                        ) {
                            Ok(frame) => Step::Fail {
                                response: Some(frame),
                                reason,
                            },
                            Err(error) => fail(error.to_string()),
                        }
                    }
                }
            }
            Request::SaslAuthenticate(authenticate) if framed_tokens => {
                let outcome = self.token(&authenticate.auth_bytes, now, server_nonce);
                let response = SaslAuthenticateResponse::default();
                match outcome {
                    Ok(Token::Challenge(bytes)) => self.respond(
                        correlation_id,
                        ApiKey::SaslAuthenticate,
                        version,
                        Response::SaslAuthenticate(response.with_auth_bytes(bytes.into())),
                    ),
                    Ok(Token::Done(bytes, principal, credential)) => {
                        let lifetime = self.session_lifetime(credential);
                        let mut response = response.with_auth_bytes(bytes.into());
                        // The field exists from v1; a v0 client is not told (and, as in
                        // Kafka, its session still ends).
                        if version >= 1
                            && let Some(lifetime) = lifetime
                        {
                            response.session_lifetime_ms =
                                i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
                        }
                        match codec::encode_response(
                            correlation_id,
                            ApiKey::SaslAuthenticate,
                            version,
                            &Response::SaslAuthenticate(response),
                        ) {
                            Ok(response) => Step::Authenticated {
                                response,
                                session: self.session(principal, lifetime, now),
                            },
                            Err(error) => fail(error.to_string()),
                        }
                    }
                    Err(message) => {
                        let response = Response::SaslAuthenticate(
                            response
                                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                                .with_error_message(Some(StrBytes::from_string(message.clone()))),
                        );
                        Step::Fail {
                            response: codec::encode_response(
                                correlation_id,
                                ApiKey::SaslAuthenticate,
                                version,
                                &response,
                            )
                            .ok(),
                            reason: message,
                        }
                    }
                }
            }
            _ if handshaking => {
                self.state = State::Over;
                fail(format!(
                    "{:?} request before SASL authentication (only ApiVersions, SaslHandshake \
                     and SaslAuthenticate are allowed)",
                    request.api_key
                ))
            }
            _ => {
                self.state = State::Over;
                fail(format!(
                    "unexpected {:?} request during SASL authentication",
                    request.api_key
                ))
            }
        }
    }

    /// Handles a bare token (after SaslHandshake v0): the answer is a bare token too; a failure
    /// closes without one (the v0 exchange has no way to carry an error).
    pub fn on_bare_token(
        &mut self,
        token: &[u8],
        now: Instant,
        server_nonce: impl FnOnce() -> Option<String>,
    ) -> Step {
        let bare = |bytes: Vec<u8>| -> Option<Bytes> {
            let prefix = size_prefix(bytes.len())?;
            let mut frame = BytesMut::with_capacity(prefix.len() + bytes.len());
            frame.put_slice(&prefix);
            frame.put_slice(&bytes);
            Some(frame.freeze())
        };
        match self.token(token, now, server_nonce) {
            Ok(Token::Challenge(bytes)) => match bare(bytes) {
                Some(frame) => Step::Respond(frame),
                None => fail("challenge too large".to_owned()),
            },
            Ok(Token::Done(bytes, principal, credential)) => match bare(bytes) {
                Some(response) => Step::Authenticated {
                    response,
                    session: self.session(principal, self.session_lifetime(credential), now),
                },
                None => fail("final message too large".to_owned()),
            },
            Err(message) => fail(message),
        }
    }

    fn session(&self, principal: Principal, lifetime: Option<Duration>, now: Instant) -> Session {
        Session {
            principal,
            // Tokens come only after a handshake chose the mechanism.
            mechanism: self.mechanism.unwrap_or(Mechanism::Plain),
            expires_at: lifetime.map(|lifetime| now + lifetime),
        }
    }

    fn respond(
        &mut self,
        correlation_id: i32,
        api_key: ApiKey,
        version: i16,
        response: Response,
    ) -> Step {
        match codec::encode_response(correlation_id, api_key, version, &response) {
            Ok(frame) => Step::Respond(frame),
            Err(error) => {
                self.state = State::Over;
                fail(error.to_string())
            }
        }
    }

    /// One token of the chosen mechanism; `Err` is the message for the client (and the log).
    fn token(
        &mut self,
        token: &[u8],
        now: Instant,
        server_nonce: impl FnOnce() -> Option<String>,
    ) -> Result<Token, String> {
        let State::Tokens {
            mechanism, scram, ..
        } = &mut self.state
        else {
            return Err("SASL token out of order".to_owned());
        };
        let mechanism = *mechanism;
        if let Some(peer) = self.peer
            && let Some(left) = self
                .settings
                .failed_logins
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .locked_for(peer, now)
        {
            self.state = State::Over;
            return Err(format!(
                "Authentication failed: too many failed logins from {peer}; retry in {} s",
                left.as_secs().max(1)
            ));
        }
        let users = &self.settings.users;
        let stored_scram = &self.settings.scram_credentials;
        let outcome = match mechanism {
            Mechanism::Plain => match plain::parse(token) {
                Ok(message) if users.check_password(message.username, message.password) => Ok(
                    Token::Done(Vec::new(), Principal::user(message.username), None),
                ),
                Ok(message) => Err(format!(
                    "Authentication failed: Invalid username or password (user {:?})",
                    message.username
                )),
                Err(error) => Err(format!("Authentication failed: {error}")),
            },
            Mechanism::Scram(scram_mechanism) => {
                let failed = |error: ScramError| match error {
                    ScramError::BadProof => format!(
                        "Authentication failed during authentication due to invalid credentials \
                         with SASL mechanism {}",
                        scram_mechanism.name()
                    ),
                    other => format!("Authentication failed: {other}"),
                };
                match scram {
                    None => {
                        let mut server = ScramServer::new(scram_mechanism);
                        match server_nonce() {
                            None => Err("Authentication failed: no random nonce".to_owned()),
                            Some(nonce) => server
                                .client_first(token, &nonce, |name| {
                                    super::credentials::lookup(
                                        &stored_scram.snapshot(),
                                        users,
                                        scram_mechanism,
                                        name,
                                    )
                                })
                                .map(|first| {
                                    *scram = Some(Box::new(server));
                                    Token::Challenge(first)
                                })
                                .map_err(failed),
                        }
                    }
                    Some(server) => server
                        .client_final(token)
                        .map(|(name, last)| Token::Done(last, Principal::user(&name), None))
                        .map_err(failed),
                }
            }
            Mechanism::OAuthBearer => match &self.settings.oauth {
                None => Err("Authentication failed: OAUTHBEARER is not configured".to_owned()),
                Some(validator) => oauthbearer::parse_initial_response(token)
                    .and_then(|(jwt, authzid)| {
                        let (subject, lifetime) = validator.validate_with_lifetime(jwt)?;
                        match authzid {
                            Some(authzid) if authzid != subject => Err(format!(
                                "the authorization id {authzid:?} is not the token's subject"
                            )),
                            _ => Ok((subject, lifetime)),
                        }
                    })
                    .map(|(subject, lifetime)| {
                        Token::Done(Vec::new(), Principal::user(&subject), Some(lifetime))
                    })
                    .map_err(|reason| format!("Authentication failed: {reason}")),
            },
        };
        // A re-authentication must not change who the connection is (Kafka's
        // `ensurePrincipalUnchanged`).
        let outcome = match (outcome, &self.previous) {
            (Ok(Token::Done(_, principal, _)), Some((previous, _))) if principal != *previous => {
                Err(format!(
                    "Authentication failed: Cannot change principals during re-authentication \
                     from {previous} to {principal}"
                ))
            }
            (outcome, _) => outcome,
        };
        match &outcome {
            Ok(Token::Done(..)) => self.state = State::Over,
            Ok(Token::Challenge(_)) => {}
            Err(_) => {
                self.state = State::Over;
                if let Some(peer) = self.peer {
                    self.settings
                        .failed_logins
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record_failure(peer, now);
                }
            }
        }
        outcome
    }
}

fn fail(reason: String) -> Step {
    Step::Fail {
        response: None,
        reason,
    }
}
