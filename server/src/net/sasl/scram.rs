//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), as Kafka speaks them.
//!
//! Two round trips: the client's first message names the user and brings its nonce; the server
//! answers with the combined nonce, the user's salt and iteration count; the client's final
//! message proves it knows the salted password (`ClientKey XOR HMAC(StoredKey, AuthMessage)`);
//! the server checks `H(ClientKey) == StoredKey` and answers with its own signature, which proves
//! to the client that the server knew the credential too.
//!
//! This module does no I/O and draws no randomness: the server nonce and the credentials come in
//! as arguments, so the RFC's test vector runs as a unit test. Channel binding is not offered
//! (`p=` is refused, as Kafka refuses it); `y` and `n` are accepted. An unknown user is not
//! refused at the first message: the caller passes a stand-in credential (a stable salt that
//! depends on the name), and the proof fails at the end like a wrong password, so the exchange
//! does not reveal which users exist.

use std::num::NonZeroU32;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Kafka's minimum (and our fixed) iteration count for SCRAM-SHA-256 and -512.
pub const ITERATIONS: u32 = 4096;

/// The two SCRAM mechanisms Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_bytes(self) -> usize {
        self.digest().output_len()
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }
}

/// What the server keeps of a password (RFC 5802 section 3): never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: NonZeroU32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Salts and hashes `password` (PBKDF2 with `iterations` rounds; ~ms per call).
    pub fn derive(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: NonZeroU32,
    ) -> ScramCredential {
        let mut salted = vec![0u8; mechanism.output_bytes()];
        pbkdf2::derive(mechanism.pbkdf2(), iterations, &salt, password, &mut salted);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential of a salted password (`Hi(password, salt, iterations)`, what a client sends
    /// in AlterUserScramCredentials): `StoredKey = H(HMAC(salted, "Client Key"))`,
    /// `ServerKey = HMAC(salted, "Server Key")` (RFC 5802 section 3). The salted password itself
    /// is not kept.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: NonZeroU32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac_of(salted, b"Client Key");
        let stored_key = digest::digest(mechanism.digest(), &client_key)
            .as_ref()
            .to_vec();
        let server_key = mechanism.hmac_of(salted, b"Server Key");
        ScramCredential {
            salt,
            iterations,
            stored_key,
            server_key,
        }
    }
}

/// Why an exchange failed. `Malformed` is a client speaking SCRAM wrongly; `BadProof` is the
/// wrong password (or an unknown user); both end the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("invalid credentials")]
    BadProof,
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// A credential for the exchange: the user's, or a stand-in for a user that does not exist.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub credential: ScramCredential,
    pub known: bool,
}

enum State {
    ClientFirst,
    ClientFinal(Box<Exchange>),
    Done,
}

/// What the final message is checked against.
struct Exchange {
    username: String,
    lookup: Lookup,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// One server-side SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// Undoes SCRAM's escaping of a user name (`=2C` is `,`, `=3D` is `=`; any other `=` is an error).
pub fn unescape_username(escaped: &str) -> Result<String, ScramError> {
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at..).unwrap_or_default();
        if let Some(tail) = after.strip_prefix("=2C") {
            name.push(',');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("=3D") {
            name.push('=');
            rest = tail;
        } else {
            return Err(ScramError::Malformed("bad escape in the user name"));
        }
    }
    name.push_str(rest);
    Ok(name)
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::ClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Reads the client's first message and answers the server's first. `server_nonce` must be
    /// fresh and unpredictable (the caller draws it from a CSPRNG) and hold no `,`; `lookup`
    /// gives the credential of the (unescaped) user name.
    pub fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Lookup,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::ClientFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done;
        let message =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind flag "," [authzid] ","
        let (flag, rest) = message
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if flag.starts_with("p=") {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        if flag != "n" && flag != "y" {
            return Err(ScramError::Malformed("bad channel-binding flag"));
        }
        let (authzid, client_first_bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let gs2_header = format!("{flag},{authzid},");
        let mut fields = client_first_bare.split(',');
        let username = fields
            .next()
            .and_then(|field| field.strip_prefix("n="))
            .ok_or(ScramError::Malformed("no user name"))?;
        let username = unescape_username(username)?;
        if username.is_empty() {
            return Err(ScramError::Malformed("empty user name"));
        }
        if !authzid.is_empty() {
            let authzid = authzid
                .strip_prefix("a=")
                .ok_or(ScramError::Malformed("bad authorization id"))?;
            // Kafka: an authorization id must be the user itself.
            if unescape_username(authzid)? != username {
                return Err(ScramError::BadProof);
            }
        }
        let client_nonce = fields
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramError::Malformed("bad nonce"));
        }
        // Extensions (Kafka's `tokenauth=true` for delegation tokens) are ignored: delegation
        // tokens do not exist here, so such a client fails on its proof.
        let lookup = lookup(&username);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&lookup.credential.salt),
            lookup.credential.iterations
        );
        let answer = server_first.clone().into_bytes();
        self.state = State::ClientFinal(Box::new(Exchange {
            username,
            lookup,
            gs2_header,
            client_first_bare: client_first_bare.to_owned(),
            server_first,
            nonce,
        }));
        Ok(answer)
    }

    /// Checks the client's final message; on success returns the user name and the server's
    /// final message (`v=` and the server signature).
    pub fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let State::ClientFinal(exchange) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ScramError::OutOfOrder);
        };
        let Exchange {
            username,
            lookup,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = *exchange;
        let message =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // The proof is the last attribute; everything before it is signed.
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|field| field.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        let final_nonce = fields
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if final_nonce != nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let mechanism = self.mechanism;
        if proof.len() != mechanism.output_bytes() {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let credential = &lookup.credential;
        let client_signature = mechanism.hmac_of(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(proof, signature)| proof ^ signature)
            .collect();
        let computed = digest::digest(mechanism.digest(), &client_key);
        let matches =
            constant_time::verify_slices_are_equal(computed.as_ref(), &credential.stored_key)
                .is_ok();
        if !matches || !lookup.known {
            return Err(ScramError::BadProof);
        }
        let server_signature = mechanism.hmac_of(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((username, server_final.into_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn iterations() -> NonZeroU32 {
        NonZeroU32::new(ITERATIONS).unwrap()
    }

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc_7677_test_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential =
            ScramCredential::derive(ScramMechanism::Sha256, b"pencil", salt, iterations());
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let server_first = server
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                |name| {
                    assert_eq!(name, "user");
                    Lookup {
                        credential: credential.clone(),
                        known: true,
                    }
                },
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    fn exchange(
        mechanism: ScramMechanism,
        stored_password: &[u8],
        client_password: &[u8],
        known: bool,
    ) -> Result<(String, Vec<u8>), ScramError> {
        let credential =
            ScramCredential::derive(mechanism, stored_password, b"salt".to_vec(), iterations());
        let mut server = ScramServer::new(mechanism);
        let first_bare = "n=al=2Cice=3D,r=clientnonce";
        let server_first = server
            .client_first(
                format!("n,,{first_bare}").as_bytes(),
                "servernonce",
                |name| {
                    assert_eq!(name, "al,ice=");
                    Lookup {
                        credential: credential.clone(),
                        known,
                    }
                },
            )
            .unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        // The client's side, from the password (what librdkafka and Java compute).
        let client =
            ScramCredential::derive(mechanism, client_password, b"salt".to_vec(), iterations());
        let mut salted = vec![0u8; mechanism.output_bytes()];
        pbkdf2::derive(
            mechanism.pbkdf2(),
            iterations(),
            b"salt",
            client_password,
            &mut salted,
        );
        let client_key = mechanism.hmac_of(&salted, b"Client Key");
        let without_proof = "c=biws,r=clientnonceservernonce";
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac_of(&client.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        server.client_final(format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes())
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let (user, _) = exchange(mechanism, b"secret", b"secret", true).unwrap();
            assert_eq!(user, "al,ice=");
            assert_eq!(
                exchange(mechanism, b"secret", b"Secret", true),
                Err(ScramError::BadProof)
            );
            // An unknown user fails at the proof, even with the stand-in's "password".
            assert_eq!(
                exchange(mechanism, b"secret", b"secret", false),
                Err(ScramError::BadProof)
            );
        }
    }

    #[test]
    fn malformed_and_out_of_order_messages_are_refused() {
        let lookup = |_: &str| Lookup {
            credential: ScramCredential::derive(
                ScramMechanism::Sha256,
                b"x",
                b"s".to_vec(),
                NonZeroU32::new(1).unwrap(),
            ),
            known: true,
        };
        for bad in [
            &b"p=tls-unique,,n=u,r=abc"[..],
            b"x,,n=u,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=u=41,r=abc",
            b"n,,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"\xff",
            b"",
        ] {
            let result = ScramServer::new(ScramMechanism::Sha256).client_first(bad, "s", lookup);
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{bad:?}: {result:?}"
            );
        }
        // An authorization id other than the user itself.
        assert_eq!(
            ScramServer::new(ScramMechanism::Sha256).client_first(b"n,a=bob,n=u,r=a", "s", lookup),
            Err(ScramError::BadProof)
        );
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert_eq!(server.client_final(b"c=biws"), Err(ScramError::OutOfOrder));
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        server.client_first(b"n,,n=u,r=a", "b", lookup).unwrap();
        assert_eq!(
            server.client_final(b"c=biws,r=WRONG,p=AAAA"),
            Err(ScramError::Malformed("nonce does not match"))
        );
        assert_eq!(
            server.client_first(b"n,,n=u,r=a", "b", lookup),
            Err(ScramError::OutOfOrder)
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, the exchange answers or refuses; it never panics.
        #[test]
        fn arbitrary_messages_are_answered_or_refused(
            first in "(n|y|p=x|[a-z]{0,2}),(a=[a-z=2CD]{0,4})?,(n=[a-z=2CD]{0,6})?,?(r=[!-~]{0,8})?(,[a-z]=[!-~]{0,4}){0,2}",
            last in "(c=[A-Za-z0-9+/=]{0,8})?,?(r=[!-~]{0,12})?(,[a-z]=[!-~]{0,4}){0,2}(,p=[A-Za-z0-9+/=]{0,48})?",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let credential = ScramCredential::derive(
                ScramMechanism::Sha256,
                b"x",
                b"s".to_vec(),
                NonZeroU32::new(1).unwrap(),
            );
            let lookup = |_: &str| Lookup { credential: credential.clone(), known: true };
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            if server.client_first(first.as_bytes(), "s", lookup).is_ok() {
                let _ = server.client_final(last.as_bytes());
            }
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            let _ = server.client_first(&raw, "s", lookup);
            let _ = server.client_final(&raw);
        }
    }

    #[test]
    fn usernames_unescape() {
        assert_eq!(unescape_username("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(unescape_username("plain").unwrap(), "plain");
        assert!(unescape_username("a=").is_err());
        assert!(unescape_username("a=2c").is_err());
    }
}
