//! Where the SCRAM authenticator finds credentials: the metadata log's, then the users file's.
//!
//! The credentials managed with AlterUserScramCredentials live in the metadata state machine
//! ([`sluice_engine::metadata::scram`]). A login must not wait for the metadata core, and the
//! authenticator is a synchronous state machine, so — as [`crate::quota::QuotaBoard`] does for
//! client quotas — the agent keeps one [`ScramBoard`]: the newest snapshot of the credentials
//! (an `Arc` of the state's set, never copied) and the log position it was read at.
//!
//! - The AlterUserScramCredentials handler publishes a fresh snapshot after its commands commit
//!   and before it answers, so a credential created or deleted through this agent is what the
//!   next login on any core sees (no restart, no delay).
//! - A new SASL exchange reads the snapshot again from the metadata core when there is none yet
//!   (the first login after a start, which sees the recovered state) or when it is older than
//!   [`SCRAM_REFRESH_MS`] (one exchange in the whole agent does that read), so a change made
//!   through another agent of a cluster is used here within about a second of this agent applying
//!   it from the log.
//!
//! **Which wins.** For a user and mechanism the metadata log holds, that credential is used; the
//! users file's (`sasl_users_file`) only for pairs the log has none for. A password changed with
//! `kafka-configs.sh` therefore takes effect even for a user the file also names, and deleting the
//! log's credential falls back to the file's. PLAIN logins check the file only: the log keeps no
//! password to compare with.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use sluice_engine::metadata::ScramCredentialSet;
use sluice_engine::metadata::scram::ScramMechanism as StoredMechanism;

use super::scram::{Lookup, ScramCredential, ScramMechanism};
use super::users::Users;
use crate::metadata_core::CoreHandle;

/// How old the snapshot may be before a new exchange reads it again.
pub const SCRAM_REFRESH_MS: u64 = 1_000;

/// The agent's newest snapshot of the SCRAM credentials. See the module docs.
#[derive(Debug, Default)]
pub struct ScramBoard {
    /// One past the log position the snapshot was read at; 0 before the first snapshot.
    version: AtomicU64,
    snapshot: RwLock<Arc<ScramCredentialSet>>,
    /// When (on [`ScramBoard::clock_ms`]) the snapshot was last read or claimed for reading.
    refreshed_ms: AtomicU64,
    started: OnceLock<Instant>,
    /// The metadata core, once the agent has one (it starts after the SASL settings are read).
    core: OnceLock<CoreHandle>,
}

impl ScramBoard {
    pub fn new() -> ScramBoard {
        ScramBoard::default()
    }

    /// Lets exchanges read the credentials from `core`. Only the first call counts.
    pub fn attach(&self, core: CoreHandle) {
        let _ = self.core.set(core);
    }

    /// Publishes `credentials`, read at `version`, unless a newer snapshot is already there.
    pub fn publish(&self, version: u64, credentials: Arc<ScramCredentialSet>) {
        let Ok(mut snapshot) = self.snapshot.write() else {
            return;
        };
        if version > self.version.load(Ordering::Acquire) {
            *snapshot = credentials;
            self.version.store(version, Ordering::Release);
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The credentials logins use now.
    pub fn snapshot(&self) -> Arc<ScramCredentialSet> {
        match self.snapshot.read() {
            Ok(snapshot) => Arc::clone(&snapshot),
            Err(_) => Arc::new(ScramCredentialSet::new()),
        }
    }

    fn clock_ms(&self) -> u64 {
        let started = self.started.get_or_init(Instant::now);
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the caller should read the credentials again now: at most one caller per
    /// [`SCRAM_REFRESH_MS`] in the whole agent is told yes.
    fn claim_refresh(&self) -> bool {
        let now = self.clock_ms();
        let last = self.refreshed_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= SCRAM_REFRESH_MS
            && self
                .refreshed_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Reads the credentials from the metadata core and publishes them.
    pub async fn refresh(&self, core: &CoreHandle) {
        self.refreshed_ms.store(self.clock_ms(), Ordering::Relaxed);
        let read = core
            .query(|state| {
                let version = state
                    .last_valid_seq()
                    .map_or(0, |seq| seq.0.saturating_add(1));
                (version.max(1), state.scram_credentials_shared())
            })
            .await;
        match read {
            Ok((version, credentials)) => self.publish(version, credentials),
            Err(error) => tracing::warn!(%error, "cannot read the SCRAM credentials"),
        }
    }

    /// Before an exchange: reads the credentials again if there are none yet or they are older
    /// than [`SCRAM_REFRESH_MS`] (see the module docs). Without a metadata core, nothing.
    pub async fn refresh_if_stale(&self) {
        let Some(core) = self.core.get() else {
            return;
        };
        if self.version() == 0 || self.claim_refresh() {
            self.refresh(core).await;
        }
    }
}

/// The engine's name of a mechanism.
pub fn stored_mechanism(mechanism: ScramMechanism) -> StoredMechanism {
    match mechanism {
        ScramMechanism::Sha256 => StoredMechanism::Sha256,
        ScramMechanism::Sha512 => StoredMechanism::Sha512,
    }
}

/// The credential a SCRAM exchange uses for `username`: the metadata log's when it holds one for
/// the mechanism, else the users file's (a stand-in when neither knows the user; see
/// [`Users::scram`]).
pub fn lookup(
    stored: &ScramCredentialSet,
    users: &Users,
    mechanism: ScramMechanism,
    username: &str,
) -> Lookup {
    if let Some(credential) = stored.get(username, stored_mechanism(mechanism))
        && let Some(iterations) = NonZeroU32::new(credential.iterations)
    {
        return Lookup {
            credential: ScramCredential {
                salt: credential.salt.clone(),
                iterations,
                stored_key: credential.stored_key.clone(),
                server_key: credential.server_key.clone(),
            },
            known: true,
        };
    }
    users.scram(mechanism, username)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use sluice_engine::metadata::ScramUpsertion;

    fn stored(username: &str, mechanism: ScramMechanism, password: &[u8]) -> ScramCredentialSet {
        let derived = ScramCredential::derive(
            mechanism,
            password,
            b"salt-from-the-log".to_vec(),
            NonZeroU32::new(4_096).unwrap(),
        );
        let mut set = ScramCredentialSet::new();
        set.upsert(&ScramUpsertion {
            user: username.to_owned(),
            mechanism: stored_mechanism(mechanism),
            credential: sluice_engine::metadata::ScramCredential {
                salt: derived.salt,
                iterations: derived.iterations.get(),
                stored_key: derived.stored_key,
                server_key: derived.server_key,
            },
        })
        .unwrap();
        set
    }

    #[test]
    fn the_log_wins_over_the_file_and_the_file_fills_in() {
        let users =
            Users::from_toml("[users]\nalice = \"file-secret\"\nbob = \"bob-secret\"\n").unwrap();
        let set = stored("alice", ScramMechanism::Sha256, b"log-secret");
        let from_log = lookup(&set, &users, ScramMechanism::Sha256, "alice");
        assert!(from_log.known);
        assert_eq!(from_log.credential.salt, b"salt-from-the-log");
        // The other mechanism, and other users, come from the file.
        let from_file = lookup(&set, &users, ScramMechanism::Sha512, "alice");
        assert!(from_file.known);
        assert_ne!(from_file.credential.salt, b"salt-from-the-log");
        assert!(lookup(&set, &users, ScramMechanism::Sha256, "bob").known);
        assert!(!lookup(&set, &users, ScramMechanism::Sha256, "carol").known);
    }

    #[test]
    fn a_newer_snapshot_is_kept_over_an_older_one() {
        let board = ScramBoard::new();
        assert!(board.snapshot().is_empty());
        board.publish(5, Arc::new(stored("alice", ScramMechanism::Sha256, b"x")));
        board.publish(3, Arc::new(ScramCredentialSet::new()));
        assert_eq!(board.version(), 5);
        assert_eq!(board.snapshot().len(), 1);
        board.publish(6, Arc::new(ScramCredentialSet::new()));
        assert!(board.snapshot().is_empty());
    }
}
