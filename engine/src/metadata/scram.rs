//! SCRAM credentials as Kafka keeps them since KIP-554: per user and mechanism
//! (SCRAM-SHA-256, SCRAM-SHA-512), the salt, the iteration count, and RFC 5802's `StoredKey`
//! and `ServerKey` — never the password, nor the salted password a client sends in
//! AlterUserScramCredentials (the agent derives the two keys from it before the command is
//! written, so the log and the checkpoints never hold anything a client could log in with).
//!
//! The set is part of the metadata state machine, changed by
//! [`super::Command::UpsertScramCredential`] and [`super::Command::DeleteScramCredential`] and
//! carried by the checkpoint (v7). The SCRAM authenticator reads it from a snapshot; this module
//! only stores and checks.
//!
//! Kafka's rules (`ScramControlManager`): a user name must not be empty (UNACCEPTABLE_CREDENTIAL),
//! the mechanism must be one of the two (UNSUPPORTED_SASL_MECHANISM), iterations lie in
//! `4096..=16384` (UNACCEPTABLE_CREDENTIAL), and deleting a credential that does not exist is
//! RESOURCE_NOT_FOUND. Bounded here as well: at most [`SCRAM_CREDENTIALS_MAX`] credentials,
//! names of at most [`SCRAM_USER_LEN_MAX`] bytes, salts of at most [`SCRAM_SALT_LEN_MAX`].

use std::collections::BTreeMap;

use super::error::MetadataError;

/// Credentials stored (a user with both mechanisms counts twice). Kafka has no limit; each costs
/// about 200 bytes in every checkpoint and snapshot, so 100,000 stay under 20 MB.
pub const SCRAM_CREDENTIALS_MAX: usize = 100_000;
/// Longest user name stored (Kafka's are strings of at most `i16::MAX` bytes on the wire).
pub const SCRAM_USER_LEN_MAX: usize = 1_024;
/// Longest salt stored (Kafka's tools send 32 to 64 random bytes).
pub const SCRAM_SALT_LEN_MAX: usize = 1_024;
/// Kafka's minimum iteration count for both mechanisms (`ScramMechanism.minIterations`).
pub const SCRAM_ITERATIONS_MIN: u32 = 4_096;
/// Kafka's maximum (`ScramControlManager.MAX_ITERATIONS`).
pub const SCRAM_ITERATIONS_MAX: u32 = 16_384;

/// The two SCRAM mechanisms Kafka defines, with Kafka's type codes (`ScramMechanism.type`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's type code on the wire (0 is UNKNOWN), also the byte stored in a checkpoint.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.code() == code)
    }

    /// Bytes of the hash, hence of `StoredKey` and `ServerKey`.
    pub fn key_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }
}

/// What is kept of one user's password for one mechanism (RFC 5802 section 3).
#[derive(Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys let anyone who reads them impersonate the server; keep them out of logs.
        formatter
            .debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The payload of [`super::Command::UpsertScramCredential`]: creates or replaces one credential.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramUpsertion {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// The payload of [`super::Command::DeleteScramCredential`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramDeletion {
    pub user: String,
    pub mechanism: ScramMechanism,
}

/// Kafka's check of a user name (UNACCEPTABLE_CREDENTIAL), plus the length bound.
pub fn validate_user(user: &str) -> Result<(), MetadataError> {
    if user.is_empty() {
        return Err(MetadataError::UnacceptableScramCredential {
            reason: "Username must not be empty".to_owned(),
        });
    }
    if user.len() > SCRAM_USER_LEN_MAX {
        return Err(MetadataError::UnacceptableScramCredential {
            reason: format!(
                "user name of {} bytes (limit {SCRAM_USER_LEN_MAX})",
                user.len()
            ),
        });
    }
    Ok(())
}

/// Kafka's check of an iteration count (UNACCEPTABLE_CREDENTIAL, Kafka's words).
pub fn validate_iterations(iterations: i64) -> Result<u32, MetadataError> {
    if iterations < i64::from(SCRAM_ITERATIONS_MIN) {
        return Err(MetadataError::UnacceptableScramCredential {
            reason: "Too few iterations".to_owned(),
        });
    }
    u32::try_from(iterations)
        .ok()
        .filter(|iterations| *iterations <= SCRAM_ITERATIONS_MAX)
        .ok_or_else(|| MetadataError::UnacceptableScramCredential {
            reason: "Too many iterations".to_owned(),
        })
}

/// Checks a credential as stored: iterations in range, a salt of 1..=[`SCRAM_SALT_LEN_MAX`]
/// bytes, keys as long as the mechanism's hash.
pub fn validate_credential(
    mechanism: ScramMechanism,
    credential: &ScramCredential,
) -> Result<(), MetadataError> {
    validate_iterations(i64::from(credential.iterations))?;
    let unacceptable = |reason: String| MetadataError::UnacceptableScramCredential { reason };
    if credential.salt.is_empty() || credential.salt.len() > SCRAM_SALT_LEN_MAX {
        return Err(unacceptable(format!(
            "salt of {} bytes (1 to {SCRAM_SALT_LEN_MAX})",
            credential.salt.len()
        )));
    }
    for (what, key) in [
        ("stored key", &credential.stored_key),
        ("server key", &credential.server_key),
    ] {
        if key.len() != mechanism.key_len() {
            return Err(unacceptable(format!(
                "{what} of {} bytes ({} expected for {})",
                key.len(),
                mechanism.key_len(),
                mechanism.name()
            )));
        }
    }
    Ok(())
}

/// The stored credentials, in (user, mechanism) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScramCredentialSet {
    credentials: BTreeMap<(String, ScramMechanism), ScramCredential>,
}

impl ScramCredentialSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Credentials stored (user and mechanism pairs).
    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, ScramMechanism), &ScramCredential)> {
        self.credentials.iter()
    }

    /// The credential of `user` for `mechanism`, if one is stored.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.credentials.get(&(user.to_owned(), mechanism))
    }

    /// The mechanisms and iteration counts stored for `user` (DescribeUserScramCredentials).
    pub fn describe(&self, user: &str) -> Vec<(ScramMechanism, u32)> {
        ScramMechanism::ALL
            .into_iter()
            .filter_map(|mechanism| {
                self.get(user, mechanism)
                    .map(|credential| (mechanism, credential.iterations))
            })
            .collect()
    }

    /// Every user with at least one credential, in order.
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self
            .credentials
            .keys()
            .map(|(user, _)| user.as_str())
            .collect();
        users.dedup();
        users
    }

    /// Whether `upsertion` would apply: a valid user and credential, and room for a new one.
    pub fn check_upsert(&self, upsertion: &ScramUpsertion) -> Result<(), MetadataError> {
        validate_user(&upsertion.user)?;
        validate_credential(upsertion.mechanism, &upsertion.credential)?;
        if self.get(&upsertion.user, upsertion.mechanism).is_none()
            && self.credentials.len() >= SCRAM_CREDENTIALS_MAX
        {
            return Err(MetadataError::TooManyScramCredentials {
                limit: SCRAM_CREDENTIALS_MAX,
            });
        }
        Ok(())
    }

    /// Creates or replaces the credential (see [`Self::check_upsert`]).
    pub fn upsert(&mut self, upsertion: &ScramUpsertion) -> Result<(), MetadataError> {
        self.check_upsert(upsertion)?;
        self.credentials.insert(
            (upsertion.user.clone(), upsertion.mechanism),
            upsertion.credential.clone(),
        );
        Ok(())
    }

    /// Whether `deletion` would apply: the credential exists (Kafka: RESOURCE_NOT_FOUND).
    pub fn check_delete(&self, deletion: &ScramDeletion) -> Result<(), MetadataError> {
        validate_user(&deletion.user)?;
        if self.get(&deletion.user, deletion.mechanism).is_none() {
            return Err(MetadataError::ScramCredentialNotFound {
                user: deletion.user.clone(),
                mechanism: deletion.mechanism.name(),
            });
        }
        Ok(())
    }

    pub fn delete(&mut self, deletion: &ScramDeletion) -> Result<(), MetadataError> {
        self.check_delete(deletion)?;
        self.credentials
            .remove(&(deletion.user.clone(), deletion.mechanism));
        Ok(())
    }

    /// Inserts one decoded credential (checkpoint); refuses an invalid one, one past the cap, or
    /// one out of order (the caller feeds them in increasing order).
    pub(super) fn insert_decoded(
        &mut self,
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<(), String> {
        validate_user(&user).map_err(|error| error.to_string())?;
        validate_credential(mechanism, &credential).map_err(|error| error.to_string())?;
        if self.credentials.len() >= SCRAM_CREDENTIALS_MAX {
            return Err(format!(
                "more than {SCRAM_CREDENTIALS_MAX} SCRAM credentials"
            ));
        }
        let key = (user, mechanism);
        if self
            .credentials
            .last_key_value()
            .is_some_and(|(last, _)| *last >= key)
        {
            return Err(format!(
                "SCRAM credential of {:?} ({}) out of order",
                key.0,
                mechanism.name()
            ));
        }
        self.credentials.insert(key, credential);
        Ok(())
    }
}
