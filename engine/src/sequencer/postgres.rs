//! [`PgSequencer`]: the log, the head watch and the connections behind them.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::{Severity, SqlState};
use uuid::Uuid;

use super::error::SequencerError;
use super::session::{Connector, HeadWatch, Session};
use super::{Fence, SequencerConfig, is_valid_cluster_name, sql};

/// Attempts at creating the schema when concurrent first connects race on `CREATE TABLE IF NOT
/// EXISTS` (PostgreSQL can answer one of them with a unique violation on its catalog).
const SCHEMA_ATTEMPTS_MAX: u32 = 5;

/// A cluster's ordered log of commit records in PostgreSQL, its membership and its id.
///
/// Two connections: the *writer* (appends, truncation, membership) and the *watcher* (`LISTEN`,
/// the head poll, reads). Each is reopened by the next call after it broke. Every method may be
/// called concurrently; calls on one connection run one at a time.
pub struct PgSequencer {
    shared: Arc<Shared>,
    cluster_id: Uuid,
    poller: JoinHandle<()>,
}

impl std::fmt::Debug for PgSequencer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PgSequencer")
            .field("cluster_name", &self.shared.config.cluster_name)
            .field("cluster_id", &self.cluster_id)
            .field("head", &*self.shared.head.subscribe().borrow())
            .finish()
    }
}

/// Which connection a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Watcher,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SequencerConfig,
    connector: Connector,
    pub(crate) head: HeadWatch,
    writer: Mutex<Option<Session>>,
    watcher: Mutex<Option<Session>>,
}

impl Shared {
    /// Runs `body` on the connection of `role`, opening it first if there is none or it closed,
    /// all within `operation_timeout_ms`. A connection whose call failed in a way that leaves it
    /// unusable (closed, I/O error, timeout) is dropped, so the next call reconnects.
    pub(crate) async fn run<R>(
        &self,
        role: Role,
        operation: &'static str,
        body: impl AsyncFnOnce(&mut Session) -> Result<R, SequencerError>,
    ) -> Result<R, SequencerError> {
        let slot = match role {
            Role::Writer => &self.writer,
            Role::Watcher => &self.watcher,
        };
        let attempt = async {
            let mut guard = slot.lock().await;
            let mut session = match guard.take() {
                Some(session) if !session.client.is_closed() => session,
                _ => self.open(role, operation).await?,
            };
            let result = body(&mut session).await;
            let broken = matches!(&result, Err(error) if error.connection_broken());
            if !broken && !session.client.is_closed() {
                *guard = Some(session);
            }
            result
        };
        let timeout_ms = self.config.operation_timeout_ms;
        // On timeout the attempt is dropped, and with it the session it held: the connection closes.
        tokio::time::timeout(Duration::from_millis(timeout_ms), attempt)
            .await
            .unwrap_or(Err(SequencerError::TimedOut {
                operation,
                timeout_ms,
            }))
    }

    /// Opens the connection of `role`. The watcher's `LISTEN`s first and then reads the head, so a
    /// commit made while it was away is seen either way.
    async fn open(&self, role: Role, operation: &'static str) -> Result<Session, SequencerError> {
        let notifications = (role == Role::Watcher).then(|| self.head.clone());
        let mut session = self
            .connector
            .open(notifications)
            .await
            .map_err(|error| self.connector.connect_error(operation, error))?;
        if role == Role::Watcher {
            if self.config.notify {
                session
                    .client
                    .batch_execute(sql::LISTEN)
                    .await
                    .map_err(|error| SequencerError::from_postgres("listen", error))?;
                // Registrations while the watcher was away were not heard: whoever listens for
                // them lists the live agents again.
                self.head.agents_may_have_changed();
            }
            let head = query_head(&mut session, &self.config.cluster_name).await?;
            self.head.advance(head);
        }
        Ok(session)
    }
}

impl PgSequencer {
    /// Connects with the default settings ([`SequencerConfig::new`]).
    pub async fn connect(url: &str, cluster_name: &str) -> Result<Self, SequencerError> {
        Self::connect_with(SequencerConfig::new(url, cluster_name)).await
    }

    /// Connects, creates the schema if missing, creates the cluster (and its id) if missing, and
    /// starts the watcher. Must run inside a tokio runtime (it spawns the connections' tasks).
    pub async fn connect_with(config: SequencerConfig) -> Result<Self, SequencerError> {
        if !is_valid_cluster_name(&config.cluster_name) {
            return Err(SequencerError::InvalidInput {
                reason: format!(
                    "cluster name {:?}: 1 to {} of [A-Za-z0-9_.-]",
                    config.cluster_name,
                    super::CLUSTER_NAME_BYTES_MAX
                ),
            });
        }
        if config.records_per_append_max == 0 || config.read_records_max == 0 {
            return Err(SequencerError::Config {
                reason: "records_per_append_max and read_records_max must be at least 1".into(),
            });
        }
        let shared = Arc::new(Shared {
            connector: Connector::new(&config)?,
            head: HeadWatch::new(&config.cluster_name),
            writer: Mutex::new(None),
            watcher: Mutex::new(None),
            config,
        });
        let cluster_name = shared.config.cluster_name.clone();
        let cluster_id = shared
            .run(Role::Writer, "connect", async |session| {
                create_schema(session).await?;
                create_cluster(session, &cluster_name).await
            })
            .await?;
        // Open the watcher now, so that a subscriber's first wait already has notifications.
        shared
            .run(Role::Watcher, "connect", async |_| Ok(()))
            .await?;
        let poller = tokio::spawn(poll_head(Arc::downgrade(&shared)));
        Ok(PgSequencer {
            shared,
            cluster_id,
            poller,
        })
    }

    /// The cluster's id: a random UUID stored by the first connect of this cluster name.
    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> &str {
        &self.shared.config.cluster_name
    }

    /// The limit on one call ([`SequencerConfig::operation_timeout_ms`]); the database runs a
    /// statement for at most as long (`statement_timeout`), so an append sent is in the log or
    /// failed within twice this.
    pub fn operation_timeout_ms(&self) -> u64 {
        self.shared.config.operation_timeout_ms
    }

    /// The newest committed position this sequencer knows of (0: none yet). It rises on this
    /// sequencer's appends, on notifications of other agents' appends, and on every poll; a tailer
    /// waits for `changed()` and then calls [`Self::read_after`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Changes whenever this sequencer's watcher hears that an agent of the cluster registered or
    /// deregistered (with `notify`; never without). A hint to list the live agents again
    /// ([`Self::live_agents`]) now rather than at the next renewal: notifications can be missed
    /// while the watcher reconnects, so the renewal's listing stays the safety net.
    pub fn subscribe_agents(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe_agents()
    }

    /// Appends `records` at consecutive positions, in one transaction, and returns them.
    ///
    /// Durable when it returns `Ok` (the commit's WAL flush, as the database is configured). The
    /// positions follow commit order and the log has no gaps: every position below the returned
    /// range's end is committed. On [`super::ErrorKind::OutcomeUnknown`] the records may or may not
    /// be in the log.
    ///
    /// Unfenced: for appenders that hold no lease (tests, the bench's simulated agents). An
    /// agent appends with [`Self::append_fenced`].
    pub async fn append(&self, records: Vec<Bytes>) -> Result<Range<u64>, SequencerError> {
        self.append_checked(records, None).await
    }

    /// [`Self::append`], committed only if `fence` still holds when the database runs it: the
    /// registration of `fence.agent_id` at `fence.incarnation` holds an unexpired lease and the
    /// database's `now()` is before `fence.deadline`, checked in the append's own statement (one
    /// lookup by `sluice_agents`' primary key). Otherwise nothing is inserted, the counter does
    /// not move, and the answer says why: [`SequencerError::LeaseLost`] (stop appending, register
    /// again) or [`SequencerError::RecordDeadlinePassed`] (this record can never be appended in
    /// time). Both are definite: the statement ran and committed nothing.
    pub async fn append_fenced(
        &self,
        records: Vec<Bytes>,
        fence: &Fence,
    ) -> Result<Range<u64>, SequencerError> {
        self.append_checked(records, Some(fence)).await
    }

    async fn append_checked(
        &self,
        records: Vec<Bytes>,
        fence: Option<&Fence>,
    ) -> Result<Range<u64>, SequencerError> {
        let config = &self.shared.config;
        if records.is_empty() || records.len() > config.records_per_append_max {
            return Err(SequencerError::InvalidInput {
                reason: format!(
                    "{} records in one append (1 to {})",
                    records.len(),
                    config.records_per_append_max
                ),
            });
        }
        if let Some(record) = records.iter().find(|r| r.len() > config.record_bytes_max) {
            return Err(SequencerError::InvalidInput {
                reason: format!(
                    "a record of {} bytes (at most {})",
                    record.len(),
                    config.record_bytes_max
                ),
            });
        }
        let count = to_signed(records.len() as u64, "record count")?;
        let payloads: Vec<&[u8]> = records.iter().map(Bytes::as_ref).collect();
        let fence_values = fence
            .map(|fence| {
                to_signed(fence.incarnation, "incarnation")
                    .map(|incarnation| (fence.agent_id.as_str(), incarnation, fence.deadline))
            })
            .transpose()?;
        let statement_sql = match (fence.is_some(), config.notify) {
            (false, false) => sql::APPEND,
            (false, true) => sql::APPEND_AND_NOTIFY,
            (true, false) => sql::APPEND_FENCED,
            (true, true) => sql::APPEND_FENCED_AND_NOTIFY,
        };
        let cluster_name = config.cluster_name.as_str();
        let result = self
            .shared
            .run(Role::Writer, "append", async |session| {
                let statement = session
                    .prepared(statement_sql)
                    .await
                    .map_err(|error| SequencerError::from_postgres("append", error))?;
                let answer = match &fence_values {
                    None => {
                        session
                            .client
                            .query(&statement, &[&cluster_name, &count, &payloads])
                            .await
                    }
                    Some((agent_id, incarnation, deadline)) => {
                        session
                            .client
                            .query(
                                &statement,
                                &[
                                    &cluster_name,
                                    &count,
                                    &payloads,
                                    agent_id,
                                    incarnation,
                                    deadline,
                                ],
                            )
                            .await
                    }
                };
                let rows = answer.map_err(|error| {
                    // Only an ERROR answer means the statement was rolled back. Without an
                    // answer, or with FATAL/PANIC (a terminated backend: the commit happens at
                    // Sync, after the rows were sent, and a termination can land between the
                    // two), the records may have been committed.
                    let rolled_back = error
                        .as_db_error()
                        .is_some_and(|error| error.parsed_severity() == Some(Severity::Error));
                    let error = SequencerError::from_postgres("append", error);
                    if !rolled_back && error.is_retriable() {
                        SequencerError::AppendOutcomeUnknown {
                            source: Box::new(error),
                        }
                    } else {
                        error
                    }
                })?;
                let Some(row) = rows.first() else {
                    return Err(missing_cluster(cluster_name));
                };
                let first: Option<i64> = column(row, 0, "append")?;
                let Some(first) = first else {
                    // Only a fenced append answers a row without a position: it was refused.
                    return Err(refusal(row, fence, cluster_name)?);
                };
                let inserted: i64 = column(row, 1, "append")?;
                if inserted != count {
                    return Err(SequencerError::Inconsistent {
                        reason: format!("append inserted {inserted} of {count} records"),
                    });
                }
                Ok(first)
            })
            .await;
        let first = match result {
            Ok(first) => to_position(first)?,
            // A timeout may have cut the statement after it reached the database.
            Err(error @ SequencerError::TimedOut { .. }) => {
                return Err(SequencerError::AppendOutcomeUnknown {
                    source: Box::new(error),
                });
            }
            Err(error) => return Err(error),
        };
        let end = first + records.len() as u64;
        // Committed, and so is everything below it.
        self.shared.head.advance(end - 1);
        Ok(first..end)
    }

    /// Up to `limit` (at most `read_records_max`) records after position `after`, in order, from
    /// `after + 1` without a gap; empty when there is nothing after `after` yet.
    ///
    /// Fails with [`SequencerError::Truncated`] when positions after `after` were deleted by
    /// [`Self::truncate_before`], and [`SequencerError::BeyondHead`] when `after` is past the log's
    /// end.
    pub async fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, SequencerError> {
        let config = &self.shared.config;
        let limit = limit.clamp(1, config.read_records_max);
        let after_signed = to_signed(after, "position")?;
        let limit_signed = to_signed(limit as u64, "limit")?;
        let cluster_name = config.cluster_name.as_str();
        let (head, records) = self
            .shared
            .run(Role::Watcher, "read", async |session| {
                let statement = session
                    .prepared(sql::READ_AFTER)
                    .await
                    .map_err(|error| SequencerError::from_postgres("read", error))?;
                let rows = session
                    .client
                    .query(&statement, &[&cluster_name, &after_signed, &limit_signed])
                    .await
                    .map_err(|error| SequencerError::from_postgres("read", error))?;
                let Some(first_row) = rows.first() else {
                    return Err(missing_cluster(cluster_name));
                };
                let head = to_position(column::<i64>(first_row, 0, "read")?)?;
                let mut records = Vec::with_capacity(rows.len());
                for row in &rows {
                    let position: Option<i64> = column(row, 1, "read")?;
                    let record: Option<Vec<u8>> = column(row, 2, "read")?;
                    if let (Some(position), Some(record)) = (position, record) {
                        records.push((to_position(position)?, Bytes::from(record)));
                    }
                }
                Ok((head, records))
            })
            .await?;
        check_contiguous(after, head, &records)?;
        self.shared.head.advance(head);
        Ok(records)
    }

    /// The last assigned (and committed) position; 0 while the log is empty.
    pub async fn head(&self) -> Result<u64, SequencerError> {
        let cluster_name = self.shared.config.cluster_name.as_str();
        let head = self
            .shared
            .run(Role::Watcher, "head", async |session| {
                query_head(session, cluster_name).await
            })
            .await?;
        self.shared.head.advance(head);
        Ok(head)
    }

    /// Deletes the records at positions below `position` (a checkpoint covers them) and returns
    /// how many it deleted. Readers after a position below it then get
    /// [`SequencerError::Truncated`]. Does not hold up appends: the counter row is not touched.
    pub async fn truncate_before(&self, position: u64) -> Result<u64, SequencerError> {
        let position = to_signed(position, "position")?;
        let cluster_name = self.shared.config.cluster_name.as_str();
        self.shared
            .run(Role::Writer, "truncate", async |session| {
                let statement = session
                    .prepared(sql::TRUNCATE_BEFORE)
                    .await
                    .map_err(|error| SequencerError::from_postgres("truncate", error))?;
                session
                    .client
                    .execute(&statement, &[&cluster_name, &position])
                    .await
                    .map_err(|error| SequencerError::from_postgres("truncate", error))
            })
            .await
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for PgSequencer {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// The records of one read must start at `after + 1` and be contiguous; an empty read must be at
/// the head.
fn check_contiguous(after: u64, head: u64, records: &[(u64, Bytes)]) -> Result<(), SequencerError> {
    let Some((first, _)) = records.first() else {
        return match after.cmp(&head) {
            std::cmp::Ordering::Less => Err(SequencerError::Truncated {
                after,
                log_start: head + 1,
            }),
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => Err(SequencerError::BeyondHead { after, head }),
        };
    };
    if *first != after + 1 {
        return Err(SequencerError::Truncated {
            after,
            log_start: *first,
        });
    }
    for (expected, (position, _)) in (after + 1..).zip(records) {
        if *position != expected || *position > head {
            return Err(SequencerError::Inconsistent {
                reason: format!(
                    "read after {after}: position {position} where {expected} was expected \
                     (head {head})"
                ),
            });
        }
    }
    Ok(())
}

/// The watcher's safety net: reads the head every `poll_interval_ms` (reconnecting if the
/// connection broke, which also re-`LISTEN`s). Ends when the sequencer is dropped.
async fn poll_head(shared: std::sync::Weak<Shared>) {
    let interval_ms = match shared.upgrade() {
        Some(shared) => shared.config.poll_interval_ms.max(1),
        None => return,
    };
    let mut failures: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let cluster_name = shared.config.cluster_name.clone();
        let result = shared
            .run(Role::Watcher, "poll", async |session| {
                query_head(session, &cluster_name).await
            })
            .await;
        match result {
            Ok(head) => {
                if failures > 0 {
                    tracing::info!(
                        failures,
                        "sequencer: the head poll reaches the database again"
                    );
                }
                failures = 0;
                shared.head.advance(head);
            }
            Err(error) => {
                failures += 1;
                // Once per streak at warn, the rest at debug: a database that is down for an hour
                // must not flood the log.
                if failures == 1 {
                    tracing::warn!(%error, "sequencer: the head poll failed; retrying every poll interval");
                } else {
                    tracing::debug!(%error, failures, "sequencer: the head poll failed again");
                }
            }
        }
    }
}

async fn query_head(session: &mut Session, cluster_name: &str) -> Result<u64, SequencerError> {
    let statement = session
        .prepared(sql::HEAD)
        .await
        .map_err(|error| SequencerError::from_postgres("head", error))?;
    let row = session
        .client
        .query_opt(&statement, &[&cluster_name])
        .await
        .map_err(|error| SequencerError::from_postgres("head", error))?
        .ok_or_else(|| missing_cluster(cluster_name))?;
    to_position(column(&row, 0, "head")?)
}

async fn create_schema(session: &mut Session) -> Result<(), SequencerError> {
    for statement in sql::SCHEMA {
        let mut attempt = 1;
        loop {
            match session.client.batch_execute(statement).await {
                Ok(()) => break,
                Err(error)
                    if attempt < SCHEMA_ATTEMPTS_MAX
                        && matches!(
                            error.code(),
                            Some(code) if *code == SqlState::UNIQUE_VIOLATION
                                || *code == SqlState::DUPLICATE_TABLE
                                || *code == SqlState::DUPLICATE_OBJECT
                        ) =>
                {
                    // Another agent created it at the same moment: the next IF NOT EXISTS sees it.
                    attempt += 1;
                }
                Err(error) => return Err(SequencerError::from_postgres("create schema", error)),
            }
        }
    }
    Ok(())
}

/// Creates the cluster's row with a fresh random id unless it exists, and returns the stored id.
async fn create_cluster(session: &mut Session, cluster_name: &str) -> Result<Uuid, SequencerError> {
    let candidate = Uuid::new_v4().to_string();
    session
        .client
        .execute(sql::CREATE_CLUSTER, &[&cluster_name, &candidate])
        .await
        .map_err(|error| SequencerError::from_postgres("create cluster", error))?;
    let row = session
        .client
        .query_opt(sql::SELECT_CLUSTER_ID, &[&cluster_name])
        .await
        .map_err(|error| SequencerError::from_postgres("read cluster id", error))?
        .ok_or_else(|| missing_cluster(cluster_name))?;
    let stored: String = column(&row, 0, "read cluster id")?;
    Uuid::parse_str(&stored).map_err(|error| SequencerError::Inconsistent {
        reason: format!("cluster {cluster_name}: stored id {stored:?} is not a UUID: {error}"),
    })
}

/// Column `index` of `row`, or an error (never a panic) when it is missing or of another type.
pub(crate) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    index: usize,
    operation: &'static str,
) -> Result<T, SequencerError> {
    row.try_get(index)
        .map_err(|error| SequencerError::from_postgres(operation, error))
}

/// Why a fenced append's answer `row` holds no position: the lease (checked first: an agent that
/// lost it must stop appending altogether), the deadline, or else the cluster row is missing.
fn refusal(
    row: &tokio_postgres::Row,
    fence: Option<&Fence>,
    cluster_name: &str,
) -> Result<SequencerError, SequencerError> {
    let Some(fence) = fence else {
        return Ok(SequencerError::Inconsistent {
            reason: "an unfenced append answered no position".to_owned(),
        });
    };
    let lease_held: bool = column(row, 2, "append")?;
    let in_time: bool = column(row, 3, "append")?;
    Ok(if !lease_held {
        SequencerError::LeaseLost {
            agent_id: fence.agent_id.clone(),
            incarnation: fence.incarnation,
        }
    } else if !in_time {
        SequencerError::RecordDeadlinePassed {
            agent_id: fence.agent_id.clone(),
            incarnation: fence.incarnation,
        }
    } else {
        missing_cluster(cluster_name)
    })
}

fn missing_cluster(cluster_name: &str) -> SequencerError {
    SequencerError::Inconsistent {
        reason: format!("the row of cluster {cluster_name} is missing from sluice_clusters"),
    }
}

pub(crate) fn to_signed(value: u64, what: &str) -> Result<i64, SequencerError> {
    i64::try_from(value).map_err(|_| SequencerError::InvalidInput {
        reason: format!("{what} {value} is above {}", i64::MAX),
    })
}

fn to_position(value: i64) -> Result<u64, SequencerError> {
    u64::try_from(value).map_err(|_| SequencerError::Inconsistent {
        reason: format!("negative position {value} in the database"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(positions: &[u64]) -> Vec<(u64, Bytes)> {
        positions.iter().map(|&p| (p, Bytes::new())).collect()
    }

    #[test]
    fn contiguous_reads_pass_and_gaps_fail() {
        assert!(check_contiguous(0, 3, &records(&[1, 2, 3])).is_ok());
        assert!(check_contiguous(5, 5, &[]).is_ok());
        assert!(matches!(
            check_contiguous(2, 9, &records(&[5, 6])),
            Err(SequencerError::Truncated {
                after: 2,
                log_start: 5
            })
        ));
        assert!(matches!(
            check_contiguous(2, 9, &[]),
            Err(SequencerError::Truncated {
                after: 2,
                log_start: 10
            })
        ));
        assert!(matches!(
            check_contiguous(9, 3, &[]),
            Err(SequencerError::BeyondHead { after: 9, head: 3 })
        ));
        assert!(matches!(
            check_contiguous(0, 9, &records(&[1, 3])),
            Err(SequencerError::Inconsistent { .. })
        ));
    }
}
