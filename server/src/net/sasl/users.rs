//! The users file: who may authenticate, with which password.
//!
//! ```toml
//! [users]
//! alice = "alice-secret"
//! ```
//!
//! Read once at start. SCRAM credentials are derived from each password then, with a random salt
//! per user and mechanism and [`scram::ITERATIONS`] rounds (so a large file costs a few
//! milliseconds per user at start, never at login). PLAIN compares against the password itself,
//! as Kafka's PLAIN callback does with its JAAS file. Neither the file nor a password is ever
//! logged: a parse error names the line and the problem, not the text (the TOML parser's own
//! message quotes the offending line, which may hold a password).
//!
//! SCRAM credentials managed by AlterUserScramCredentials are kept in the metadata log; for a user
//! and mechanism the log holds, the log's credential wins over this file's ([`super::credentials`]).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::Path;

use aws_lc_rs::{constant_time, hmac};

use super::scram::{self, Lookup, ScramCredential, ScramMechanism};

/// Bytes of each random salt.
const SALT_BYTES: usize = 24;

/// Why the users file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SASL users file {path}: {reason}")]
pub struct UsersError {
    pub path: String,
    pub reason: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, String>,
}

struct User {
    password: Vec<u8>,
    scram_sha_256: ScramCredential,
    scram_sha_512: ScramCredential,
}

/// Every user's credentials. `Debug` shows the user count only.
pub struct Users {
    users: HashMap<String, User>,
    /// Key of the stand-in salts given for unknown users (stable per name for this process, so
    /// asking twice does not reveal that a name is unknown).
    unknown_salt_key: hmac::Key,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Users")
            .field("count", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random source failed".to_owned())?;
    Ok(bytes)
}

impl Users {
    /// Reads and checks the users file (see the module doc for its form).
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let error = |reason: String| UsersError {
            path: path.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|io| error(format!("cannot read: {io}")))?;
        let users = Users::from_toml(&text).map_err(error)?;
        if let Ok(metadata) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = metadata.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the SASL users file holds passwords and other users may read it; chmod 600 it"
                );
            }
        }
        Ok(users)
    }

    /// [`Users::load`] from the file's text; the error is the reason only.
    pub fn from_toml(text: &str) -> Result<Users, String> {
        let file: UsersFile = toml::from_str(text).map_err(|parse| {
            let line = parse.span().map(|span| {
                text.get(..span.start)
                    .unwrap_or_default()
                    .lines()
                    .count()
                    .max(1)
            });
            let message = without_quotes(parse.message());
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        Users::from_passwords(
            file.users
                .into_iter()
                .map(|(name, password)| (name, password.into_bytes())),
        )
    }

    /// The table for these users and passwords, with fresh salts.
    pub fn from_passwords(
        passwords: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Users, String> {
        let iterations = NonZeroU32::new(scram::ITERATIONS).ok_or("zero iterations")?;
        let mut users = HashMap::new();
        for (name, password) in passwords {
            if name.is_empty() {
                return Err("a user has an empty name".to_owned());
            }
            if name.contains('\0') || name.chars().any(char::is_control) {
                return Err(format!("user {name:?}: control characters in the name"));
            }
            if password.is_empty() {
                return Err(format!("user {name:?} has an empty password"));
            }
            let derive = |mechanism| -> Result<ScramCredential, String> {
                Ok(ScramCredential::derive(
                    mechanism,
                    &password,
                    random_bytes::<SALT_BYTES>()?.to_vec(),
                    iterations,
                ))
            };
            let user = User {
                scram_sha_256: derive(ScramMechanism::Sha256)?,
                scram_sha_512: derive(ScramMechanism::Sha512)?,
                password,
            };
            users.insert(name, user);
        }
        if users.is_empty() {
            return Err(
                "no users: add a [users] table with `name = \"password\"` lines".to_owned(),
            );
        }
        let key = random_bytes::<32>()?;
        Ok(Users {
            users,
            unknown_salt_key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// No users: for an agent whose SASL mechanisms check no password (OAUTHBEARER only).
    pub fn none() -> Result<Users, String> {
        let key = random_bytes::<32>()?;
        Ok(Users {
            users: HashMap::new(),
            unknown_salt_key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `username` exists and `password` is its password (compared in constant time).
    pub fn check_password(&self, username: &str, password: &[u8]) -> bool {
        match self.users.get(username) {
            Some(user) => constant_time::verify_slices_are_equal(&user.password, password).is_ok(),
            None => {
                // The same comparison as for a user, so an unknown name answers no sooner.
                let _ = constant_time::verify_slices_are_equal(password, password);
                false
            }
        }
    }

    /// The SCRAM credential of `username`, or a stand-in with a stable salt when there is no such
    /// user (the exchange then fails at the proof, like a wrong password).
    pub fn scram(&self, mechanism: ScramMechanism, username: &str) -> Lookup {
        if let Some(user) = self.users.get(username) {
            let credential = match mechanism {
                ScramMechanism::Sha256 => &user.scram_sha_256,
                ScramMechanism::Sha512 => &user.scram_sha_512,
            };
            return Lookup {
                credential: credential.clone(),
                known: true,
            };
        }
        let tag = hmac::sign(
            &self.unknown_salt_key,
            format!("{}\0{username}", mechanism.name()).as_bytes(),
        );
        let salt = tag.as_ref().get(..SALT_BYTES).unwrap_or_default().to_vec();
        let iterations = NonZeroU32::new(scram::ITERATIONS).unwrap_or(NonZeroU32::MIN);
        Lookup {
            credential: ScramCredential {
                salt,
                iterations,
                stored_key: vec![0; 64],
                server_key: vec![0; 64],
            },
            known: false,
        }
    }
}

/// `message` with every quoted part (between backticks or double quotes, which is where the
/// parser puts values it quotes) replaced by `…`: the value may be a password.
fn without_quotes(message: &str) -> String {
    let mut kept = String::with_capacity(message.len());
    let mut closing: Option<char> = None;
    for character in message.chars() {
        match closing {
            Some(close) if character == close => closing = None,
            Some(_) => {}
            None if character == '`' || character == '"' => {
                closing = Some(character);
                kept.push('…');
            }
            None => kept.push(character),
        }
    }
    kept
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn loads_users_and_derives_salted_credentials() {
        let users = Users::from_toml("[users]\nalice = \"a-secret\"\n\"bob,=\" = \"b\"\n").unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.check_password("alice", b"a-secret"));
        assert!(!users.check_password("alice", b"a-secreT"));
        assert!(!users.check_password("alice", b"a-secret "));
        assert!(!users.check_password("carol", b"a-secret"));
        let first = users.scram(ScramMechanism::Sha256, "alice");
        assert!(first.known);
        assert_eq!(first.credential.salt.len(), SALT_BYTES);
        assert_eq!(first.credential.iterations.get(), 4096);
        assert_ne!(
            first.credential.salt,
            users.scram(ScramMechanism::Sha512, "alice").credential.salt
        );
        // Fresh salts on every load.
        let again = Users::from_toml("[users]\nalice = \"a-secret\"\n").unwrap();
        assert_ne!(
            again.scram(ScramMechanism::Sha256, "alice").credential.salt,
            first.credential.salt
        );
        assert!(!format!("{users:?}").contains("secret"));
    }

    #[test]
    fn unknown_users_get_a_stable_stand_in() {
        let users = Users::from_toml("[users]\nalice = \"x\"\n").unwrap();
        let one = users.scram(ScramMechanism::Sha256, "mallory");
        let two = users.scram(ScramMechanism::Sha256, "mallory");
        assert!(!one.known);
        assert_eq!(one.credential.salt, two.credential.salt);
        assert_eq!(one.credential.salt.len(), SALT_BYTES);
        assert_ne!(
            one.credential.salt,
            users.scram(ScramMechanism::Sha256, "eve").credential.salt
        );
    }

    #[test]
    fn bad_files_are_refused_without_quoting_them() {
        let error = Users::from_toml("[users]\nalice = 12345678\n")
            .err()
            .unwrap();
        assert!(error.starts_with("line 2"), "{error}");
        assert!(!error.contains("12345678"), "{error}");
        assert!(error.contains("invalid type"), "{error}");
        let error = Users::from_toml("users = \"hunter2\"\n").err().unwrap();
        assert!(!error.contains("hunter"), "{error}");
        let error = Users::from_toml("[users]\nalice = \"hunter2\"\nbroken \"hunter3\"\n")
            .err()
            .unwrap();
        assert!(!error.contains("hunter"), "{error}");
        assert!(
            Users::from_toml("[users]\n")
                .err()
                .unwrap()
                .contains("no users")
        );
        assert!(Users::from_toml("[users]\na = \"\"\n").is_err());
        assert!(Users::from_toml("[people]\na = \"x\"\n").is_err());
    }
}
