//! Authorization on the request path: who a connection is, and the ACL decisions it gets.
//!
//! The bindings live in the metadata state machine and the decision is the engine's pure
//! [`sluice_engine::metadata::authorize`]; this module only decides *where the bindings come from*
//! and *how often a decision is computed*, so that a Produce pays almost nothing for it:
//!
//! - [`AclBoard`], one per agent: the newest snapshot of the bindings (an `Arc` of the state's
//!   set, never copied), the log position it was read at, and its version, which moves only when
//!   the bindings did. Snapshots are published by the ACL handlers after their commands commit
//!   (so a change made through this agent is seen by every core before the CreateAcls or
//!   DeleteAcls response leaves), by the first check after a start (it reads the recovered
//!   state), and by one check a second in the whole agent ([`ACL_REFRESH_MS`]): in a cluster the
//!   bindings also change by other agents' records, and after a checkpoint is reloaded, which no
//!   handler here sees. A reader loads one atomic per check; the lock is taken only when the
//!   version moved.
//! - [`Authorizer`], one per network core: the policy (`super_users`,
//!   `allow_everyone_if_no_acl_found`) and the board.
//! - [`ConnectionAuth`], one per connection: the principal (`User:<SASL name>`, else
//!   `User:<certificate subject>` for an mTLS client ([`certificate`]), else `User:ANONYMOUS`),
//!   the client's address, and a cache of decisions keyed by (resource type, operation, name),
//!   dropped whole when the board's version moves and bounded by [`DECISIONS_CACHED_MAX`]. A
//!   producer writing to one topic computes one decision per ACL change.
//!
//! When no authorizer is configured the dispatcher holds none and no check runs at all.

pub mod certificate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sluice_engine::metadata::{
    AclOperation, AclResourceType, AclSet, AuthorizerPolicy, Requester, authorize, authorize_any,
};

use crate::metadata_core::CoreHandle;

/// The principal of a connection that did not authenticate (Kafka's `KafkaPrincipal.ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";
/// Decisions one connection caches; past it the cache starts over (a client naming thousands of
/// topics pays a decision per topic again, never unbounded memory). With names of at most 249
/// bytes that is under 400 KiB per connection at worst, a few KiB for an ordinary client.
pub const DECISIONS_CACHED_MAX: usize = 1_024;
/// How often one check in the agent reads the bindings again (a metadata query): the longest a
/// change made through another agent of a cluster takes to be enforced here, as for SCRAM
/// credentials and quotas.
pub const ACL_REFRESH_MS: u64 = 1_000;

/// The agent's newest snapshot of the ACL bindings. See the module docs.
#[derive(Debug)]
pub struct AclBoard {
    /// One past the log position the snapshot was read at; 0 before the first snapshot.
    position: AtomicU64,
    /// Moves by one each time the published bindings change (decisions cached under another
    /// version are stale); 0 before the first snapshot.
    version: AtomicU64,
    snapshot: RwLock<Arc<AclSet>>,
    /// When a check last claimed the periodic refresh, in ms since `started`.
    refreshed_ms: AtomicU64,
    started: std::time::Instant,
}

impl Default for AclBoard {
    fn default() -> AclBoard {
        AclBoard {
            position: AtomicU64::new(0),
            version: AtomicU64::new(0),
            snapshot: RwLock::default(),
            refreshed_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
}

impl AclBoard {
    pub fn new() -> AclBoard {
        AclBoard::default()
    }

    /// Publishes `acls`, read at log position `position`, unless a snapshot read later is already
    /// there (two readers may read the state in one order and publish in the other). The version
    /// moves only when the bindings are another set than the published one: the state replaces
    /// its `Arc` on every change while the board holds the old one, so the same pointer means the
    /// same bindings, and connections keep their cached decisions across a refresh that found
    /// nothing new.
    pub fn publish(&self, position: u64, acls: Arc<AclSet>) {
        let Ok(mut snapshot) = self.snapshot.write() else {
            return;
        };
        if position <= self.position.load(Ordering::Acquire) {
            return;
        }
        self.position.store(position, Ordering::Release);
        if self.version.load(Ordering::Acquire) == 0 || !Arc::ptr_eq(&snapshot, &acls) {
            *snapshot = acls;
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the caller should read the bindings again now: at most one caller per
    /// [`ACL_REFRESH_MS`] in the whole agent is told yes.
    fn claim_refresh(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.refreshed_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= ACL_REFRESH_MS
            && self
                .refreshed_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The snapshot and its version, read together.
    pub fn snapshot(&self) -> (u64, Arc<AclSet>) {
        match self.snapshot.read() {
            Ok(snapshot) => (self.version(), Arc::clone(&snapshot)),
            Err(_) => (0, Arc::new(AclSet::new())),
        }
    }
}

/// One network core's authorizer. See the module docs.
#[derive(Debug)]
pub struct Authorizer {
    policy: AuthorizerPolicy,
    board: Arc<AclBoard>,
    core: CoreHandle,
    /// This core's copy of the board's snapshot (an `Arc` clone), refreshed when the version moves.
    current: RefCell<(u64, Arc<AclSet>)>,
}

impl Authorizer {
    pub fn new(policy: AuthorizerPolicy, board: Arc<AclBoard>, core: CoreHandle) -> Authorizer {
        Authorizer {
            policy,
            board,
            core,
            current: RefCell::new((0, Arc::new(AclSet::new()))),
        }
    }

    /// Reads the bindings from the metadata core and publishes them (after an ACL change, and on
    /// the first check after a start).
    pub async fn refresh(&self) {
        let read = self
            .core
            .query(|state| {
                let version = state
                    .last_valid_seq()
                    .map_or(0, |seq| seq.0.saturating_add(1));
                (version.max(1), state.acls_shared())
            })
            .await;
        match read {
            Ok((version, acls)) => self.board.publish(version, acls),
            Err(error) => tracing::warn!(%error, "cannot read the ACL bindings"),
        }
    }

    /// The bindings this core decides with, and their version.
    async fn acls(&self) -> (u64, Arc<AclSet>) {
        let mut version = self.board.version();
        if version == 0 {
            self.refresh().await;
            version = self.board.version();
        }
        if self.current.borrow().0 != version {
            *self.current.borrow_mut() = self.board.snapshot();
        }
        let current = self.current.borrow();
        (current.0, Arc::clone(&current.1))
    }

    /// Whether the connection may perform `operation` on the resource.
    pub async fn allowed(
        &self,
        connection: &ConnectionAuth,
        operation: AclOperation,
        resource_type: AclResourceType,
        name: &str,
    ) -> bool {
        if self.board.claim_refresh() {
            self.refresh().await;
        }
        let version = self.board.version();
        if version != 0
            && let Some(decision) = connection.cached(version, resource_type, operation, name)
        {
            return decision;
        }
        let (version, acls) = self.acls().await;
        let decision = authorize(
            &acls,
            &self.policy,
            connection.requester(),
            operation,
            resource_type,
            name,
        );
        connection.remember(version, resource_type, operation, name, decision);
        decision
    }

    /// Whether the connection may perform `operation` on the cluster.
    pub async fn allowed_on_cluster(
        &self,
        connection: &ConnectionAuth,
        operation: AclOperation,
    ) -> bool {
        self.allowed(
            connection,
            operation,
            AclResourceType::Cluster,
            sluice_engine::metadata::acl::CLUSTER_RESOURCE_NAME,
        )
        .await
    }

    /// Kafka's `authorizeByResourceType`: `operation` on at least one resource of the type.
    pub async fn allowed_on_any(
        &self,
        connection: &ConnectionAuth,
        operation: AclOperation,
        resource_type: AclResourceType,
    ) -> bool {
        let (_, acls) = self.acls().await;
        authorize_any(
            &acls,
            &self.policy,
            connection.requester(),
            operation,
            resource_type,
        )
    }
}

/// Decisions by (resource type, operation), then name (looked up by `&str`, no allocation).
type Decisions = HashMap<(AclResourceType, AclOperation), HashMap<String, bool>>;

/// Who a connection is, and its cached decisions. See the module docs.
#[derive(Debug)]
pub struct ConnectionAuth {
    principal: String,
    host: String,
    cache: RefCell<DecisionCache>,
}

#[derive(Debug, Default)]
struct DecisionCache {
    version: u64,
    entries: usize,
    decisions: Decisions,
}

impl ConnectionAuth {
    /// `principal` as Kafka writes it (`User:alice`); `peer` the client's address, if known.
    pub fn new(principal: String, peer: Option<IpAddr>) -> ConnectionAuth {
        ConnectionAuth {
            principal,
            host: peer.map(|ip| ip.to_string()).unwrap_or_default(),
            cache: RefCell::new(DecisionCache::default()),
        }
    }

    /// A connection that did not authenticate.
    pub fn anonymous(peer: Option<IpAddr>) -> ConnectionAuth {
        ConnectionAuth::new(ANONYMOUS.to_owned(), peer)
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.host,
        }
    }

    fn cached(
        &self,
        version: u64,
        resource_type: AclResourceType,
        operation: AclOperation,
        name: &str,
    ) -> Option<bool> {
        let cache = self.cache.borrow();
        if cache.version != version {
            return None;
        }
        cache
            .decisions
            .get(&(resource_type, operation))?
            .get(name)
            .copied()
    }

    fn remember(
        &self,
        version: u64,
        resource_type: AclResourceType,
        operation: AclOperation,
        name: &str,
        decision: bool,
    ) {
        let mut cache = self.cache.borrow_mut();
        if cache.version != version || cache.entries >= DECISIONS_CACHED_MAX {
            *cache = DecisionCache {
                version,
                ..DecisionCache::default()
            };
        }
        let inserted = cache
            .decisions
            .entry((resource_type, operation))
            .or_default()
            .insert(name.to_owned(), decision)
            .is_none();
        if inserted {
            cache.entries += 1;
        }
    }
}

/// The authorizer of one request: the core's authorizer and the connection, or nothing when no
/// authorizer is configured (every check passes without work).
#[derive(Debug, Clone, Copy)]
pub struct RequestAuth<'a> {
    pub authorizer: Option<&'a Authorizer>,
    pub connection: &'a ConnectionAuth,
}

impl RequestAuth<'_> {
    /// Whether a check is made at all.
    pub fn enabled(&self) -> bool {
        self.authorizer.is_some()
    }

    pub async fn allowed(
        &self,
        operation: AclOperation,
        resource_type: AclResourceType,
        name: &str,
    ) -> bool {
        match self.authorizer {
            None => true,
            Some(authorizer) => {
                authorizer
                    .allowed(self.connection, operation, resource_type, name)
                    .await
            }
        }
    }

    pub async fn allowed_on_cluster(&self, operation: AclOperation) -> bool {
        match self.authorizer {
            None => true,
            Some(authorizer) => {
                authorizer
                    .allowed_on_cluster(self.connection, operation)
                    .await
            }
        }
    }

    pub async fn allowed_on_any(
        &self,
        operation: AclOperation,
        resource_type: AclResourceType,
    ) -> bool {
        match self.authorizer {
            None => true,
            Some(authorizer) => {
                authorizer
                    .allowed_on_any(self.connection, operation, resource_type)
                    .await
            }
        }
    }
}

/// A connection's auth state shared with its requests' tasks.
pub type SharedConnectionAuth = Rc<ConnectionAuth>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_the_newest_snapshot() {
        let board = AclBoard::new();
        assert_eq!(board.version(), 0);
        let newer = Arc::new(AclSet::new());
        board.publish(5, Arc::clone(&newer));
        board.publish(3, Arc::new(AclSet::new()));
        let (version, acls) = board.snapshot();
        assert_eq!(version, 1);
        assert!(Arc::ptr_eq(&acls, &newer));
        // Read again later, unchanged: cached decisions stay valid.
        board.publish(9, Arc::clone(&newer));
        assert_eq!(board.version(), 1);
        // Another set (a change applied from another agent's record): the version moves, and an
        // older read can no longer replace it.
        let changed = Arc::new(AclSet::new());
        board.publish(12, Arc::clone(&changed));
        assert_eq!(board.version(), 2);
        board.publish(10, Arc::clone(&newer));
        assert!(Arc::ptr_eq(&board.snapshot().1, &changed));
    }

    #[test]
    fn one_check_a_second_claims_the_refresh() {
        let board = AclBoard::new();
        assert!(!board.claim_refresh(), "the first second after the start");
        board
            .refreshed_ms
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let started = board.started;
        let board = AclBoard {
            started: started - std::time::Duration::from_millis(ACL_REFRESH_MS),
            ..board
        };
        assert!(board.claim_refresh());
        assert!(!board.claim_refresh(), "claimed once per period");
    }

    #[test]
    fn the_cache_is_dropped_when_the_version_moves_and_bounded() {
        let connection = ConnectionAuth::new("User:alice".to_owned(), None);
        let (topic, read) = (AclResourceType::Topic, AclOperation::Read);
        connection.remember(1, topic, read, "t", true);
        assert_eq!(connection.cached(1, topic, read, "t"), Some(true));
        assert_eq!(connection.cached(2, topic, read, "t"), None);
        assert_eq!(connection.cached(1, topic, AclOperation::Write, "t"), None);
        for n in 0..DECISIONS_CACHED_MAX + 10 {
            connection.remember(1, topic, read, &format!("t{n}"), false);
        }
        assert!(connection.cache.borrow().entries <= DECISIONS_CACHED_MAX);
        connection.remember(2, topic, read, "t", false);
        assert_eq!(connection.cached(2, topic, read, "t"), Some(false));
        assert_eq!(connection.cache.borrow().entries, 1);
    }
}
