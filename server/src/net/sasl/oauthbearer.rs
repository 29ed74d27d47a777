//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255 and KIP-768): the client's one message carries a
//! JWT; the agent checks its signature against the keys of a JWKS file and its claims, and the
//! connection's principal is the token's subject.
//!
//! What is checked, as Kafka's `OAuthBearerValidatorCallbackHandler` (the JWKS-backed validator)
//! checks it:
//! - the signature, by the JWKS key the header's `kid` names (or the only key, when the header
//!   names none and the set has one), with the algorithm the header names — which must be one the
//!   key allows (`alg` of the JWK, when given) and never `none`;
//! - `exp` (required) and `nbf` (when present), with a clock skew allowance;
//! - `iss` and `aud` when the agent is configured to expect them;
//! - the subject claim (`sub`, or another name) is present and not empty: it becomes the
//!   principal `User:SUBJECT`. An authorization id in the GS2 header must equal it.
//!
//! The token's scope is not checked (Kafka's validator does not either unless told to). With
//! re-authentication on (`connections_max_reauth_ms` > 0), the session ends when the token
//! expires if that comes first ([`TokenValidator::validate_with_lifetime`]), so the client must
//! re-authenticate with a fresh token; with it off, the token's expiry only matters at login
//! (Kafka ends such a session at the token's expiry all the same).
//!
//! The keys come from a JWKS file read when the agent starts, or from a JWKS endpoint
//! ([`super::jwks_endpoint`]) fetched at start and refreshed; a malformed set, a signing key the
//! crypto provider cannot use, or a set without signing keys refuses the start (keys for
//! encryption, `"use": "enc"` or an `alg` like `RSA-OAEP`, are skipped). Connections read the
//! endpoint's newest key set through a snapshot (an `Arc` swapped on refresh); a token whose
//! `kid` is not in it is refused and asks for an early refetch, so the client's next attempt
//! finds a rotated key (as Kafka's `RefreshingHttpsJwksVerificationKeyResolver` does).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Kafka's default `sasl.oauthbearer.sub.claim.name`.
pub const SUB_CLAIM_DEFAULT: &str = "sub";
/// Kafka's default `sasl.oauthbearer.clock.skew.seconds`.
pub const CLOCK_SKEW_SECONDS_DEFAULT: u64 = 30;
/// Keys a JWKS file may hold (a provider publishes a handful while it rotates).
pub const JWKS_KEYS_MAX: usize = 64;
/// Bytes a JWKS file may hold.
pub const JWKS_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Why the agent cannot use a JWKS file or endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the JWKS {path} is larger than {JWKS_FILE_BYTES_MAX} bytes")]
    TooLarge { path: String },
    #[error("the JWKS {path} is not a JWK set: {reason}")]
    Parse { path: String, reason: String },
    #[error("the JWKS {path} {reason}")]
    Keys { path: String, reason: String },
}

/// How tokens are checked (Kafka's `sasl.oauthbearer.*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// `iss` must be this, when set.
    pub expected_issuer: Option<String>,
    /// `aud` must hold one of these, when not empty.
    pub expected_audience: Vec<String>,
    /// The claim whose value is the principal's name.
    pub sub_claim_name: String,
    /// Leeway on `exp` and `nbf`.
    pub clock_skew_seconds: u64,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            expected_issuer: None,
            expected_audience: Vec::new(),
            sub_claim_name: SUB_CLAIM_DEFAULT.to_owned(),
            clock_skew_seconds: CLOCK_SKEW_SECONDS_DEFAULT,
        }
    }
}

/// One usable key of the set.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK pins, if it names one.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Keys of the document that are not for signatures.
    skipped: usize,
}

impl KeySet {
    /// The keys of a JWKS document (`path` names it in errors).
    pub fn from_jwks_json(json: &str, path: &str) -> Result<KeySet, JwksError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|error| JwksError::Parse {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        if set.keys.is_empty() {
            return Err(JwksError::Keys {
                path: path.to_owned(),
                reason: "holds no key".to_owned(),
            });
        }
        if set.keys.len() > JWKS_KEYS_MAX {
            return Err(JwksError::Keys {
                path: path.to_owned(),
                reason: format!("holds {} keys (at most {JWKS_KEYS_MAX})", set.keys.len()),
            });
        }
        // Providers publish encryption keys beside the signing keys (Keycloak's `RSA-OAEP`
        // key, say): those are skipped, a signing key that cannot be used refuses the set.
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            match not_for_signatures(jwk) {
                Some(reason) => skipped.push(format!("{:?} {reason}", jwk.common.key_id)),
                None => keys.push(usable_key(jwk, path)?),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::Keys {
                path: path.to_owned(),
                reason: format!(
                    "holds no key that verifies signatures (skipped: {})",
                    skipped.join(", ")
                ),
            });
        }
        Ok(KeySet {
            keys,
            skipped: skipped.len(),
        })
    }

    /// Keys of the document skipped as not for signatures.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Keys of the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key (never true of a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the set, in order (a key without one is `None`).
    pub fn kids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|key| key.kid.as_deref()).collect()
    }
}

/// Where a validator's keys come from.
#[derive(Debug)]
enum Keys {
    /// A JWKS file, read once.
    Fixed(KeySet),
    /// A JWKS endpoint, refreshed by its fetcher thread.
    Endpoint(Arc<super::jwks_endpoint::JwksBoard>),
}

/// Checks OAUTHBEARER tokens against a JWK set.
#[derive(Debug)]
pub struct TokenValidator {
    keys: Keys,
    settings: OAuthSettings,
}

impl TokenValidator {
    /// The validator of a JWKS document's keys.
    pub fn from_jwks_json(
        json: &str,
        settings: OAuthSettings,
        path: &str,
    ) -> Result<TokenValidator, JwksError> {
        Ok(TokenValidator {
            keys: Keys::Fixed(KeySet::from_jwks_json(json, path)?),
            settings,
        })
    }

    /// The validator of the keys `board` holds (a JWKS endpoint's, refreshed).
    pub fn from_board(
        board: Arc<super::jwks_endpoint::JwksBoard>,
        settings: OAuthSettings,
    ) -> TokenValidator {
        TokenValidator {
            keys: Keys::Endpoint(board),
            settings,
        }
    }

    /// Reads a JWKS file.
    pub fn load(path: &Path, settings: OAuthSettings) -> Result<TokenValidator, JwksError> {
        let shown = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|source| JwksError::Read {
                path: shown.clone(),
                source,
            })?
            .len();
        if size > JWKS_FILE_BYTES_MAX {
            return Err(JwksError::TooLarge { path: shown });
        }
        let json = std::fs::read_to_string(path).map_err(|source| JwksError::Read {
            path: shown.clone(),
            source,
        })?;
        TokenValidator::from_jwks_json(&json, settings, &shown)
    }

    /// Keys of the set (the endpoint's newest).
    pub fn key_count(&self) -> usize {
        match &self.keys {
            Keys::Fixed(set) => set.len(),
            Keys::Endpoint(board) => board.snapshot().len(),
        }
    }

    /// The subject of a valid token; `Err` says why the token is refused.
    pub fn validate(&self, token: &str) -> Result<String, String> {
        self.validate_with_lifetime(token)
            .map(|(subject, _)| subject)
    }

    /// The subject of a valid token and how long it stays valid (until `exp`, by the system
    /// clock, which the signature check reads too; zero for a token accepted within the clock
    /// skew after its expiry).
    pub fn validate_with_lifetime(&self, token: &str) -> Result<(String, Duration), String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| format!("the token's header cannot be read: {error}"))?;
        // An endpoint's set is a snapshot: a refresh swaps in a new one without waiting for this.
        let snapshot;
        let set = match &self.keys {
            Keys::Fixed(set) => set,
            Keys::Endpoint(board) => {
                snapshot = board.snapshot();
                &*snapshot
            }
        };
        let key = match header.kid.as_deref() {
            Some(kid) => match set.keys.iter().find(|key| key.kid.as_deref() == Some(kid)) {
                Some(key) => key,
                None => {
                    return Err(match &self.keys {
                        Keys::Fixed(_) => format!("no key of the JWKS has the token's kid {kid:?}"),
                        Keys::Endpoint(board) => {
                            // A rotated key: the fetcher refetches early (rate-limited), so a
                            // later attempt with this token can succeed.
                            board.request_refetch();
                            format!(
                                "no key of the JWKS has the token's kid {kid:?} (the JWKS is \
                                 being fetched again)"
                            )
                        }
                    });
                }
            },
            None => match set.keys.as_slice() {
                [only] => only,
                _ => {
                    return Err("the token names no kid and the JWKS holds several keys".to_owned());
                }
            },
        };
        if key.algorithm.is_some_and(|pinned| pinned != header.alg) {
            return Err(format!(
                "the token's algorithm {:?} is not its key's {:?}",
                header.alg, key.algorithm
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.settings.expected_issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        if self.settings.expected_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.expected_audience);
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|error| format!("the token is not valid: {error}"))?;
        let subject = data
            .claims
            .get(&self.settings.sub_claim_name)
            .and_then(serde_json::Value::as_str)
            .filter(|subject| !subject.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "the token has no {:?} claim naming its subject",
                    self.settings.sub_claim_name
                )
            })?;
        let expires_at_ms = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .map_or(0.0, |exp| exp * 1000.0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64() * 1000.0);
        // `as` saturates: a negative or absurd remainder is 0 or u64::MAX ms.
        let lifetime = Duration::from_millis((expires_at_ms - now_ms).max(0.0) as u64);
        Ok((subject.to_owned(), lifetime))
    }
}

/// Why `jwk` is not a key for signatures (`"use": "enc"`, or an encryption algorithm), if it
/// is not.
fn not_for_signatures(jwk: &Jwk) -> Option<String> {
    if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
        return Some("is for encryption (use enc)".to_owned());
    }
    let key_algorithm = jwk.common.key_algorithm?;
    Algorithm::try_from(key_algorithm)
        .is_err()
        .then(|| format!("is for {key_algorithm}, which does not sign tokens"))
}

fn usable_key(jwk: &Jwk, path: &str) -> Result<Key, JwksError> {
    let kid = jwk.common.key_id.clone();
    let algorithm = match jwk.common.key_algorithm {
        Some(key_algorithm) => {
            Some(
                Algorithm::try_from(key_algorithm).map_err(|_| JwksError::Keys {
                    path: path.to_owned(),
                    reason: format!(
                        "has key {kid:?} for {key_algorithm}, which does not sign tokens"
                    ),
                })?,
            )
        }
        None => None,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|error| JwksError::Keys {
        path: path.to_owned(),
        reason: format!("has key {kid:?} that cannot verify signatures: {error}"),
    })?;
    Ok(Key {
        kid,
        algorithm,
        key,
    })
}

/// The client's initial response (RFC 7628 §3.1): the GS2 header, then `auth=Bearer TOKEN`
/// among `\x01`-separated key-value pairs. Returns the token and the authorization id, if any.
pub fn parse_initial_response(message: &[u8]) -> Result<(&str, Option<&str>), String> {
    let text = std::str::from_utf8(message)
        .map_err(|_| "the OAUTHBEARER message is not UTF-8".to_owned())?;
    // gs2-header = gs2-cb-flag "," [ "a=" authzid ] "," ; only "n" (no channel binding) is valid.
    let rest = text.strip_prefix("n,").ok_or_else(|| {
        "the OAUTHBEARER message must start with the GS2 header \"n,\"".to_owned()
    })?;
    let (authzid, rest) = rest
        .split_once(',')
        .ok_or_else(|| "the OAUTHBEARER GS2 header is not terminated".to_owned())?;
    let authzid = match authzid {
        "" => None,
        other => Some(
            other
                .strip_prefix("a=")
                .filter(|name| !name.is_empty())
                .ok_or_else(|| format!("the OAUTHBEARER GS2 header has {other:?}"))?,
        ),
    };
    let pairs = rest
        .strip_prefix('\u{1}')
        .and_then(|pairs| pairs.strip_suffix("\u{1}\u{1}"))
        .ok_or_else(|| "the OAUTHBEARER key-value pairs are not framed by \\x01".to_owned())?;
    let mut token = None;
    for pair in pairs.split('\u{1}') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| "an OAUTHBEARER key-value pair has no '='".to_owned())?;
        if key == "auth" {
            let (scheme, bearer) = value
                .split_once(' ')
                .ok_or_else(|| "the OAUTHBEARER auth value is not \"Bearer TOKEN\"".to_owned())?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(format!(
                    "the OAUTHBEARER auth scheme is {scheme:?}, not Bearer"
                ));
            }
            token = Some(bearer.trim());
        }
    }
    let token = token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| "the OAUTHBEARER message carries no token".to_owned())?;
    Ok((token, authzid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    /// An ES256 signing key and its JWKS document (one key, `kid`).
    pub(crate) fn es256_key(kid: &str) -> (EncodingKey, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        (
            EncodingKey::from_ec_der(&pair.serialize_der()),
            jwks.to_string(),
        )
    }

    pub(crate) fn token(
        key: &EncodingKey,
        kid: Option<&str>,
        claims: &serde_json::Value,
    ) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    pub(crate) fn now_s() -> i64 {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    #[test]
    fn a_signed_token_gives_its_subject_and_a_bad_one_says_why() {
        let (key, jwks) = es256_key("k1");
        let settings = OAuthSettings {
            expected_issuer: Some("https://idp.example".to_owned()),
            expected_audience: vec!["sluice".to_owned()],
            ..OAuthSettings::default()
        };
        let validator = TokenValidator::from_jwks_json(&jwks, settings, "test").unwrap();
        let now = now_s();
        let good = json!({"sub": "alice", "exp": now + 600, "iat": now,
                          "iss": "https://idp.example", "aud": "sluice"});
        assert_eq!(
            validator.validate(&token(&key, Some("k1"), &good)).unwrap(),
            "alice"
        );
        // With no kid, the only key is used.
        assert_eq!(
            validator.validate(&token(&key, None, &good)).unwrap(),
            "alice"
        );

        let refused = |claims: serde_json::Value, kid: Option<&str>| {
            validator.validate(&token(&key, kid, &claims)).unwrap_err()
        };
        let mut expired = good.clone();
        expired["exp"] = json!(now - 3_600);
        assert!(refused(expired, Some("k1")).contains("Expired"));
        let mut early = good.clone();
        early["nbf"] = json!(now + 3_600);
        assert!(refused(early, Some("k1")).contains("Immature"));
        let mut issuer = good.clone();
        issuer["iss"] = json!("https://evil.example");
        assert!(refused(issuer, Some("k1")).contains("Issuer"));
        let mut audience = good.clone();
        audience["aud"] = json!("other");
        assert!(refused(audience, Some("k1")).contains("Audience"));
        let mut no_subject = good.clone();
        no_subject.as_object_mut().unwrap().remove("sub");
        assert!(refused(no_subject, Some("k1")).contains("\"sub\""));
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(refused(no_exp, Some("k1")).contains("not valid"));
        assert!(refused(good.clone(), Some("k2")).contains("kid"));

        // Another key's signature, under the right kid.
        let (other, _) = es256_key("k1");
        assert!(
            validator
                .validate(&token(&other, Some("k1"), &good))
                .unwrap_err()
                .contains("not valid")
        );
        // An unsigned token (alg none) and garbage.
        let unsigned = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(good.to_string())
        );
        assert!(validator.validate(&unsigned).is_err());
        assert!(validator.validate("not a token").is_err());
        assert!(validator.validate("").is_err());
    }

    #[test]
    fn the_subject_claim_and_skew_are_settings() {
        let (key, jwks) = es256_key("k1");
        let settings = OAuthSettings {
            sub_claim_name: "client_id".to_owned(),
            clock_skew_seconds: 120,
            ..OAuthSettings::default()
        };
        let validator = TokenValidator::from_jwks_json(&jwks, settings, "test").unwrap();
        let now = now_s();
        // Expired 60 s ago: within the skew. Any audience is fine when none is expected.
        let claims = json!({"client_id": "svc-fraud", "sub": "x", "exp": now - 60, "aud": "any"});
        assert_eq!(
            validator
                .validate(&token(&key, Some("k1"), &claims))
                .unwrap(),
            "svc-fraud"
        );
    }

    #[test]
    fn bad_jwks_files_are_refused_with_a_reason() {
        let settings = OAuthSettings::default;
        for (json, says) in [
            ("not json", "not a JWK set"),
            (r#"{"keys": []}"#, "no key"),
            (
                r#"{"keys": [{"kty": "RSA", "n": "not base64!", "e": "AQAB"}]}"#,
                "cannot verify",
            ),
            (
                r#"{"keys": [{"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}]}"#,
                "does not sign",
            ),
        ] {
            let error = TokenValidator::from_jwks_json(json, settings(), "f.json").unwrap_err();
            assert!(error.to_string().contains(says), "{json}: {error}");
        }
    }

    #[test]
    fn encryption_keys_beside_signing_keys_are_skipped() {
        let (key, jwks) = es256_key("sig");
        let mut set: serde_json::Value = serde_json::from_str(&jwks).unwrap();
        let mut encryption = set["keys"][0].clone();
        encryption["kid"] = json!("enc");
        encryption["use"] = json!("enc");
        let mut oaep = set["keys"][0].clone();
        oaep["kid"] = json!("oaep");
        oaep["alg"] = json!("RSA-OAEP");
        let keys = set["keys"].as_array_mut().unwrap();
        keys.push(encryption);
        keys.push(oaep);
        let parsed = KeySet::from_jwks_json(&set.to_string(), "test").unwrap();
        assert_eq!((parsed.len(), parsed.skipped()), (1, 2));
        assert_eq!(parsed.kids(), vec![Some("sig")]);
        let validator =
            TokenValidator::from_jwks_json(&set.to_string(), OAuthSettings::default(), "test")
                .unwrap();
        let claims = json!({"sub": "alice", "exp": now_s() + 600});
        assert_eq!(
            validator
                .validate(&token(&key, Some("sig"), &claims))
                .unwrap(),
            "alice"
        );
        assert!(
            validator
                .validate(&token(&key, Some("enc"), &claims))
                .unwrap_err()
                .contains("kid")
        );
    }

    #[test]
    fn initial_responses_parse_as_rfc_7628_writes_them() {
        assert_eq!(
            parse_initial_response(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            ("abc.def.ghi", None)
        );
        // Extensions (KIP-342) and an authorization id.
        assert_eq!(
            parse_initial_response(b"n,a=alice,\x01traceId=7\x01auth=bearer t.o.k\x01\x01")
                .unwrap(),
            ("t.o.k", Some("alice"))
        );
        for bad in [
            &b""[..],
            b"y,,\x01auth=Bearer t\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01\x01",
            b"n,,\x01noequals\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
            b"\xff\xfe",
        ] {
            assert!(parse_initial_response(bad).is_err(), "{bad:?}");
        }
    }
}
