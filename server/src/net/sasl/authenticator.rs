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

use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

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
    /// Write this frame; the client is `principal` from now on.
    Authenticated {
        response: Bytes,
        principal: Principal,
    },
    /// Write the frame, if any, then close: `reason` is logged.
    Fail {
        response: Option<Bytes>,
        reason: String,
    },
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
    Done(Vec<u8>, Principal),
}

/// One connection's authenticator.
#[derive(Debug)]
pub struct Authenticator {
    settings: Arc<SaslSettings>,
    peer: Option<IpAddr>,
    state: State,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>, peer: Option<IpAddr>) -> Authenticator {
        Authenticator {
            settings,
            peer,
            state: State::Handshake,
        }
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
                match chosen {
                    Some(mechanism) => {
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
                    Ok(Token::Done(bytes, principal)) => {
                        let response =
                            Response::SaslAuthenticate(response.with_auth_bytes(bytes.into()));
                        match codec::encode_response(
                            correlation_id,
                            ApiKey::SaslAuthenticate,
                            version,
                            &response,
                        ) {
                            Ok(response) => Step::Authenticated {
                                response,
                                principal,
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
            Ok(Token::Done(bytes, principal)) => match bare(bytes) {
                Some(response) => Step::Authenticated {
                    response,
                    principal,
                },
                None => fail("final message too large".to_owned()),
            },
            Err(message) => fail(message),
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
        let outcome = match mechanism {
            Mechanism::Plain => match plain::parse(token) {
                Ok(message) if users.check_password(message.username, message.password) => {
                    Ok(Token::Done(Vec::new(), Principal::user(message.username)))
                }
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
                                    users.scram(scram_mechanism, name)
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
                        .map(|(name, last)| Token::Done(last, Principal::user(&name)))
                        .map_err(failed),
                }
            }
            Mechanism::OAuthBearer => match &self.settings.oauth {
                None => Err("Authentication failed: OAUTHBEARER is not configured".to_owned()),
                Some(validator) => oauthbearer::parse_initial_response(token)
                    .and_then(|(jwt, authzid)| {
                        let subject = validator.validate(jwt)?;
                        match authzid {
                            Some(authzid) if authzid != subject => Err(format!(
                                "the authorization id {authzid:?} is not the token's subject"
                            )),
                            _ => Ok(subject),
                        }
                    })
                    .map(|subject| Token::Done(Vec::new(), Principal::user(&subject)))
                    .map_err(|reason| format!("Authentication failed: {reason}")),
            },
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
