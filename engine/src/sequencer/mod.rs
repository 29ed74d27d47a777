//! The metadata-log sequencer of a cluster: a small ordered log of commit records in PostgreSQL.
//!
//! # Why a database orders the log
//!
//! One agent orders its metadata log itself, with create-only PUTs at sequential keys
//! (`crate::log`). Several agents on one bucket would fence each other that way, so a cluster takes
//! the order from an existing database instead of a home-made protocol: each agent PUTs its
//! window's object under a key of its own, then appends one small commit record (that object's
//! index) here, and every agent replays the same ordered records through the same deterministic
//! state machine. The database stores positions and opaque bytes; no metadata rule lives in SQL.
//!
//! # Why positions come from one counter row
//!
//! A reader tails the log with `position > n`. PostgreSQL sequences are neither gap-free (a rolled
//! back transaction burns its values) nor commit-ordered (a transaction that took position 7 can
//! commit after one that took 8): a reader that saw 8 and moved on would never see 7. Here an append
//! is one statement, so one transaction: it increments the cluster's counter row
//! (`UPDATE … SET next_position = next_position + n RETURNING …`), inserts its records at the
//! positions it got, and commits. The row lock on the counter is held until commit, so the next
//! append gets its positions only after this one's rows are visible: positions are handed out in
//! commit order, and a failed append rolls its increment back with its rows — no gaps. The price is
//! that appends of one cluster commit one at a time (each waits for the previous commit's WAL flush);
//! `docs/cluster.md` has the measured rate and what to change when it is not enough. Readers check
//! what they rely on: rows come back contiguous from `after + 1`, or the read fails
//! ([`SequencerError::Truncated`], [`SequencerError::Inconsistent`]) — never a silent gap.
//!
//! # Waking tailers
//!
//! The append statement also calls `pg_notify` (delivered at commit, in commit order) and a
//! watcher connection that `LISTEN`s publishes the newest committed position on a
//! [`tokio::sync::watch`] channel ([`PgSequencer::subscribe`]), so an agent learns of another
//! agent's commit within milliseconds. Notifications are an optimisation, never needed for
//! correctness: the watcher also polls the head every `poll_interval_ms`, and after reconnecting.
//! Databases without `LISTEN`/`NOTIFY` (CockroachDB, YugabyteDB) run with `notify = false` and the
//! poll alone.
//!
//! # Membership and the cluster id
//!
//! Agents register with a lease whose expiry is computed by the database clock (`now()`), so agents'
//! clocks never matter; a registration of the same agent id bumps its incarnation, and a renewal of
//! an expired or superseded lease fails ([`SequencerError::LeaseLost`]): the agent must stop serving
//! until it registers again. The cluster id is a random UUID stored once, on the first connect of
//! a cluster name, and read back by everyone after.
//!
//! An agent's appends are fenced by its lease at commit ([`PgSequencer::append_fenced`]): the
//! append statement itself checks that the agent's registration (same incarnation) still holds an
//! unexpired lease and that the record's deadline, mapped to the database's clock ([`Fence`]),
//! has not passed — both by the database's `now()`, so a process paused between its own checks
//! and the send cannot commit late. A refused append commits nothing and says which check failed.
//!
//! # Failures
//!
//! Every call runs under `operation_timeout_ms`. A lost connection is
//! [`ErrorKind::Retriable`] and the next call reconnects (once, under `connect_timeout_ms`; the
//! caller owns the retry loop and its pause). An append that lost its connection after sending is
//! [`ErrorKind::OutcomeUnknown`]: its records may be in the log.
//!
//! The SQL is kept to what CockroachDB and YugabyteDB also accept (see `docs/cluster.md`): no
//! advisory locks, no sequences, no triggers, no stored procedures.

mod bridge;
mod error;
mod membership;
mod postgres;
mod session;
mod sql;
mod tls;

pub use bridge::SequencerClient;
pub use error::{ErrorKind, SequencerError};
pub use membership::{AgentInfo, AgentRegistration, Fence, Lease};
pub use postgres::PgSequencer;

use std::sync::Arc;

/// Settings of a [`PgSequencer`]. Every wait and size has a limit.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// `postgres://user:password@host:port/database?sslmode=…&application_name=…` (any URL or
    /// key=value string `tokio-postgres` accepts).
    pub url: String,
    /// The cluster's name: one database can hold several clusters. 1–64 of `[A-Za-z0-9_.-]`.
    pub cluster_name: String,
    /// TLS to the database. `None`: as the URL's libpq parameters say (`sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`; `docs/cluster.md`, "TLS to PostgreSQL"). A configuration given here is
    /// used instead (the URL must then name no TLS files), and the URL's `sslmode` decides:
    /// `prefer` (the default) falls back to plain text when the server has no TLS, `require`
    /// refuses to.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Call `pg_notify` in every append and `LISTEN` for other agents' appends.
    pub notify: bool,
    /// The watcher reads the head this often even without notifications (the safety net).
    pub poll_interval_ms: u64,
    /// Limit on establishing a connection (TCP, TLS, authentication), unless the URL sets one.
    pub connect_timeout_ms: u64,
    /// Limit on one call, including its wait for the connection (calls on one connection run one
    /// at a time) and a reconnect. A call that passes it drops its connection.
    pub operation_timeout_ms: u64,
    /// Records in one append.
    pub records_per_append_max: usize,
    /// Bytes of one record.
    pub record_bytes_max: usize,
    /// Records one `read_after` returns.
    pub read_records_max: usize,
}

impl SequencerConfig {
    /// The defaults, for `url` and `cluster_name`.
    pub fn new(url: impl Into<String>, cluster_name: impl Into<String>) -> Self {
        SequencerConfig {
            url: url.into(),
            cluster_name: cluster_name.into(),
            tls: None,
            notify: true,
            poll_interval_ms: 1_000,
            connect_timeout_ms: 5_000,
            operation_timeout_ms: 10_000,
            records_per_append_max: 4_096,
            record_bytes_max: 1 << 20,
            read_records_max: 4_096,
        }
    }
}

/// Longest cluster name; the name travels in every notification's payload (limit 8,000 bytes).
pub const CLUSTER_NAME_BYTES_MAX: usize = 64;

/// Whether `name` is a usable cluster name (1–64 of `[A-Za-z0-9_.-]`).
pub fn is_valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLUSTER_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}
