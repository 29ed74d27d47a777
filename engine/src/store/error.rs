//! The store's one error type. Callers branch on [`StoreError::kind`]; the variants carry the
//! operation and the object key so a log line names the object that failed.

use std::fmt;

/// The kind of store call, as errors report it and as fault injection counts it. `get_range` and
/// `get_tail` are [`Op::Get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Put,
    Get,
    List,
    Head,
    Delete,
}

impl Op {
    /// Every operation, in a fixed order (for per-op tables).
    pub const ALL: [Op; 5] = [Op::Put, Op::Get, Op::List, Op::Head, Op::Delete];

    /// Position in [`Op::ALL`].
    pub fn index(self) -> usize {
        match self {
            Op::Put => 0,
            Op::Get => 1,
            Op::List => 2,
            Op::Head => 3,
            Op::Delete => 4,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::List => "LIST",
            Op::Head => "HEAD",
            Op::Delete => "DELETE",
        })
    }
}

/// What went wrong in a store call.
///
/// After a write (`put_create`, `delete`) fails with anything but `AlreadyExists` or `NotFound`,
/// the write MAY OR MAY NOT have happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("object {key:?} not found")]
    NotFound { key: String },
    /// A create-only write found the key taken. Nothing was written by this call.
    #[error("object {key:?} already exists; create-only write refused")]
    AlreadyExists { key: String },
    /// No answer in time. Transient; the outcome of a write is unknown.
    #[error("{op} {key:?} timed out after {after_ms} ms")]
    Timeout { op: Op, key: String, after_ms: u64 },
    /// The store refused or dropped the call (5xx, throttling, connection reset, injected fault).
    /// Transient; the outcome of a write is unknown.
    #[error("{op} {key:?}: store unavailable: {message}")]
    Unavailable {
        op: Op,
        key: String,
        message: String,
    },
    /// The store could not be built from its configuration.
    #[error("invalid object store configuration: {message}")]
    InvalidConfig { message: String },
    /// Anything else (permission denied, invalid range, bad key): retrying will not help.
    #[error("{op} {key:?} failed: {message}")]
    Other {
        op: Op,
        key: String,
        message: String,
    },
}

/// What a caller does about a [`StoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    NotFound,
    AlreadyExists,
    Timeout,
    Unavailable,
    InvalidConfig,
    Other,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::AlreadyExists { .. } => StoreErrorKind::AlreadyExists,
            StoreError::Timeout { .. } => StoreErrorKind::Timeout,
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
            StoreError::InvalidConfig { .. } => StoreErrorKind::InvalidConfig,
            StoreError::Other { .. } => StoreErrorKind::Other,
        }
    }

    /// A retry may succeed (`Timeout`, `Unavailable`). For writes, the first attempt may also have
    /// succeeded: a retried create-only PUT that answers `AlreadyExists` must be read back.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            StoreErrorKind::Timeout | StoreErrorKind::Unavailable
        )
    }

    /// The object key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            StoreError::NotFound { key }
            | StoreError::AlreadyExists { key }
            | StoreError::Timeout { key, .. }
            | StoreError::Unavailable { key, .. }
            | StoreError::Other { key, .. } => Some(key),
            StoreError::InvalidConfig { .. } => None,
        }
    }

    pub(crate) fn invalid_config(message: impl Into<String>) -> StoreError {
        StoreError::InvalidConfig {
            message: message.into(),
        }
    }
}
