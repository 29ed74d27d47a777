//! SASL PLAIN (RFC 4616): one message, `authzid NUL authcid NUL password`.
//!
//! The password crosses the wire as it is: on a listener without TLS anyone on the path reads
//! it (Kafka allows PLAIN on `SASL_PLAINTEXT` too; docs/operations.md says when that is
//! acceptable). Pure: parsing only; the comparison is the users table's.

/// A parsed PLAIN message.
#[derive(PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub username: &'a str,
    pub password: &'a [u8],
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PlainMessage")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlainError {
    #[error("malformed PLAIN message: {0}")]
    Malformed(&'static str),
    #[error("authorization id differs from the user name")]
    AuthorizationId,
}

/// Splits a PLAIN message. An authorization id is allowed only when it names the user itself
/// (Kafka's rule: no impersonation).
pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, PlainError> {
    let mut parts = message.splitn(3, |byte| *byte == 0);
    let (Some(authzid), Some(username), Some(password)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed(
            "expected authorization id, user name and password separated by NUL",
        ));
    };
    let username =
        std::str::from_utf8(username).map_err(|_| PlainError::Malformed("user name not UTF-8"))?;
    if username.is_empty() {
        return Err(PlainError::Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(PlainError::Malformed("empty password"));
    }
    if !authzid.is_empty() && authzid != username.as_bytes() {
        return Err(PlainError::AuthorizationId);
    }
    Ok(PlainMessage { username, password })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_an_authorization_id() {
        assert_eq!(
            parse(b"\0alice\0secret").unwrap(),
            PlainMessage {
                username: "alice",
                password: b"secret"
            }
        );
        assert_eq!(
            parse(b"alice\0alice\0se\0cret").unwrap().password,
            b"se\0cret"
        );
        assert_eq!(
            parse(b"bob\0alice\0secret"),
            Err(PlainError::AuthorizationId)
        );
    }

    #[test]
    fn refuses_malformed_messages() {
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0secret",
            b"\0alice\0",
            b"\0\xff\0secret",
        ] {
            assert!(
                matches!(parse(bad), Err(PlainError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        /// Any bytes are parsed or refused, never a panic; a parsed message is a split of them.
        #[test]
        fn arbitrary_messages_are_parsed_or_refused(
            message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            if let Ok(parsed) = parse(&message) {
                proptest::prop_assert!(message.ends_with(parsed.password));
                proptest::prop_assert!(!parsed.username.is_empty());
            }
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let message = parse(b"\0alice\0hunter2").unwrap();
        assert!(!format!("{message:?}").contains("hunter2"));
    }
}
