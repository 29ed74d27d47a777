//! Errors of the sequencer, split by what the caller can do about them.

use tokio_postgres::error::{Severity, SqlState};

/// What the caller should do about a [`SequencerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database could not be reached or answered "not now" (connection lost or refused, timed
    /// out, shutting down, serialization conflict). Retry after a pause: the next call reconnects.
    Retriable,
    /// An append's connection failed after the statement may have reached the database: the records
    /// may or may not be in the log. Retriable, but only by a caller whose records are idempotent
    /// (the object key inside a commit record is unique, so the state machine can ignore a second
    /// copy) or after reading the log to see whether they landed.
    OutcomeUnknown,
    /// Retrying will not help: bad input, a schema or permission problem, the log contradicting
    /// itself. Stop, and say so.
    Fatal,
}

/// Errors of [`super::PgSequencer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    /// The database is unreachable or refused for now (see [`ErrorKind::Retriable`]).
    #[error("{operation}: database unavailable: {}", with_causes(source))]
    Unavailable {
        operation: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The operation did not finish within `operation_timeout_ms`; its connection was dropped.
    #[error("{operation}: no answer within {timeout_ms} ms")]
    TimedOut {
        operation: &'static str,
        timeout_ms: u64,
    },
    /// An append lost its connection after sending (see [`ErrorKind::OutcomeUnknown`]).
    #[error("append: outcome unknown, the records may be in the log: {source}")]
    AppendOutcomeUnknown {
        #[source]
        source: Box<SequencerError>,
    },
    /// The database rejected the statement for a reason a retry does not fix.
    #[error("{operation}: {}", with_causes(source))]
    Database {
        operation: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The caller passed something outside the sequencer's limits; nothing was sent.
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// The positions after `after` were deleted by `truncate_before` (a checkpoint covers them):
    /// load a checkpoint at or after `log_start - 1` and read from there.
    #[error("positions after {after} were truncated; the log starts at {log_start}")]
    Truncated { after: u64, log_start: u64 },
    /// The reader asked for positions after `after`, but the log ends at `head`: it is reading
    /// another cluster's log, or the database was restored from an older backup.
    #[error("read after {after}, but the log of this cluster ends at {head}")]
    BeyondHead { after: u64, head: u64 },
    /// The agent's lease expired or was taken over by a newer registration of the same agent id:
    /// the agent must stop serving and register again.
    #[error("lease of agent {agent_id} (incarnation {incarnation}) is no longer held")]
    LeaseLost { agent_id: String, incarnation: u64 },
    /// A fenced append reached the database at or after its record deadline, by the database's
    /// clock ([`super::Fence`]): it was refused, nothing was committed and the counter did not
    /// move. The same record can never be appended in time any more; the window fails.
    #[error(
        "append of agent {agent_id} (incarnation {incarnation}) refused: its record deadline had \
         passed by the database's clock; nothing was committed"
    )]
    RecordDeadlinePassed { agent_id: String, incarnation: u64 },
    /// The stored state contradicts the sequencer's invariants (a gap inside the log, a missing
    /// cluster row, an unparseable cluster id). Never retried, never papered over.
    #[error("inconsistent sequencer state: {reason}")]
    Inconsistent { reason: String },
    /// The TLS handshake with the database failed: the server has no TLS but the URL requires
    /// it, or its certificate is not trusted or not for the URL's host.
    #[error("TLS to the database ({settings}): {reason}")]
    Tls { settings: String, reason: String },
    /// The connection URL or the TLS settings are unusable.
    #[error("configuration: {reason}")]
    Config { reason: String },
}

impl SequencerError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SequencerError::Unavailable { .. } | SequencerError::TimedOut { .. } => {
                ErrorKind::Retriable
            }
            SequencerError::AppendOutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            SequencerError::Database { .. }
            | SequencerError::InvalidInput { .. }
            | SequencerError::Truncated { .. }
            | SequencerError::BeyondHead { .. }
            | SequencerError::LeaseLost { .. }
            | SequencerError::RecordDeadlinePassed { .. }
            | SequencerError::Inconsistent { .. }
            | SequencerError::Tls { .. }
            | SequencerError::Config { .. } => ErrorKind::Fatal,
        }
    }

    /// True for [`ErrorKind::Retriable`] and [`ErrorKind::OutcomeUnknown`]: the database may answer
    /// a later call (which reconnects first).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Retriable | ErrorKind::OutcomeUnknown
        )
    }

    /// Sorts a driver error into [`SequencerError::Unavailable`] or [`SequencerError::Database`].
    pub(crate) fn from_postgres(operation: &'static str, source: tokio_postgres::Error) -> Self {
        if is_transient(&source) {
            SequencerError::Unavailable { operation, source }
        } else {
            SequencerError::Database { operation, source }
        }
    }

    /// Whether the connection this error came from can still be used.
    pub(crate) fn connection_broken(&self) -> bool {
        match self {
            SequencerError::Unavailable { source, .. }
            | SequencerError::Database { source, .. } => {
                // A FATAL or PANIC error ends the session (a terminated backend answers 57P01
                // FATAL before it closes the socket, so `is_closed` may not be true yet).
                source.is_closed()
                    || source.as_db_error().is_none_or(|error| {
                        // `severity` is localized; the parsed one is not (PostgreSQL 9.6+).
                        matches!(
                            error.parsed_severity(),
                            Some(Severity::Fatal | Severity::Panic)
                        )
                    })
            }
            SequencerError::TimedOut { .. } => true,
            SequencerError::AppendOutcomeUnknown { source } => source.connection_broken(),
            _ => false,
        }
    }
}

/// `error` and its causes, `: `-separated. The driver's own `Display` is its kind alone ("error
/// performing TLS handshake"); the reason ("invalid peer certificate: UnknownIssuer") is its source.
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // A cause whose text is already there (a wrapper that prints its source) adds nothing.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A lost or refused connection, or a server state that passes: connection exceptions (class 08),
/// transaction rollbacks (class 40: serialization failure, deadlock — CockroachDB answers 40001 to
/// contended transactions and expects a retry), insufficient resources (class 53), operator
/// intervention (57P01 shutdown, 57P02 crash, 57P03 starting up, 57014 canceled), and
/// `lock_not_available`. Errors without a database error are I/O or protocol failures of the
/// connection itself.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(database_error) = error.as_db_error() else {
        // Not from the server. The driver's error kinds are private; its `Display` is the kind
        // alone, so these are I/O on the connection, a failed connect (refused, unreachable, the
        // connect timeout) and a timeout. A value that does not convert, a bad URL or failed
        // authentication is not transient.
        return matches!(
            error.to_string().as_str(),
            "error communicating with the server"
                | "error connecting to server"
                | "timeout waiting for server"
        );
    };
    let code = database_error.code();
    let class = code.code().get(..2).unwrap_or_default();
    matches!(class, "08" | "40" | "53")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::LOCK_NOT_AVAILABLE
}
