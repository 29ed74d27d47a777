//! The schema and every statement the sequencer sends, in one place, so that the subset of SQL it
//! relies on (listed in `docs/cluster.md`) can be read at a glance.
//!
//! Used: `CREATE TABLE IF NOT EXISTS`, `TEXT`/`BIGINT`/`BYTEA`/`TIMESTAMPTZ`/`TEXT[]`, composite
//! primary keys, `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE`, data-modifying CTEs with
//! `RETURNING`, `unnest(…) WITH ORDINALITY`, `EXISTS` and scalar subqueries, `LEFT JOIN … ON
//! true`, `now()` and interval arithmetic, and `pg_notify`/`LISTEN` only when notifications are on.

/// Tables, created idempotently at every connect. Several clusters can share one database; every
/// key starts with the cluster's name.
pub(crate) const SCHEMA: [&str; 3] = [
    // One row per cluster: its id and the counter that hands out log positions (the next position
    // to assign; the first is 1, so "after 0" means from the beginning).
    "CREATE TABLE IF NOT EXISTS sluice_clusters (
        cluster_name TEXT NOT NULL PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        next_position BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    // The log: positions `log start ..= next_position - 1`, contiguous.
    "CREATE TABLE IF NOT EXISTS sluice_log (
        cluster_name TEXT NOT NULL,
        position BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (cluster_name, position)
    )",
    // Agents and their leases (expiry by the database clock).
    "CREATE TABLE IF NOT EXISTS sluice_agents (
        cluster_name TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        address TEXT NOT NULL,
        zone TEXT NOT NULL,
        roles TEXT[] NOT NULL,
        incarnation BIGINT NOT NULL,
        lease_expires_at TIMESTAMPTZ NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (cluster_name, agent_id)
    )",
];

/// Creates the cluster's row if it is missing; the first connect's random id wins.
pub(crate) const CREATE_CLUSTER: &str =
    "INSERT INTO sluice_clusters (cluster_name, cluster_id, next_position)
     VALUES ($1, $2, 1)
     ON CONFLICT (cluster_name) DO NOTHING";

pub(crate) const SELECT_CLUSTER_ID: &str =
    "SELECT cluster_id FROM sluice_clusters WHERE cluster_name = $1";

/// The channel every append notifies; the payload is `"{last position} {cluster name}"`.
pub(crate) const NOTIFY_CHANNEL: &str = "sluice_log";

/// The channel registrations and deregistrations notify; the payload is the cluster's name.
pub(crate) const AGENTS_CHANNEL: &str = "sluice_agents";

pub(crate) const LISTEN: &str = "LISTEN sluice_log; LISTEN sluice_agents";

/// The counter and insert CTEs of [`APPEND`] and [`APPEND_AND_NOTIFY`], which differ only in
/// their final `SELECT`. A macro, not a constant, because `concat!` takes only literals.
macro_rules! append_ctes {
    () => {
        "WITH counter AS (
        UPDATE sluice_clusters SET next_position = next_position + $2::BIGINT
        WHERE cluster_name = $1
        RETURNING next_position - $2::BIGINT AS first_position
    ), inserted AS (
        INSERT INTO sluice_log (cluster_name, position, record)
        SELECT $1, counter.first_position + records.ordinality - 1, records.record
        FROM counter, unnest($3::BYTEA[]) WITH ORDINALITY AS records (record, ordinality)
        RETURNING 1
    )"
    };
}

/// One append, one statement, one transaction: take `$2` positions from the counter row (its lock
/// is held to commit, so positions follow commit order), insert the records `$3` at them, answer
/// the first position and the number of rows inserted. Without a cluster row nothing is inserted
/// and no row is returned. Unfenced: for appenders that hold no lease (tests, the bench's simulated
/// agents); an agent appends with [`APPEND_FENCED`].
pub(crate) const APPEND: &str = concat!(
    append_ctes!(),
    "
    SELECT counter.first_position, (SELECT count(*) FROM inserted) FROM counter"
);

/// [`APPEND`] that also notifies listeners, at commit, of the last position it took.
pub(crate) const APPEND_AND_NOTIFY: &str = concat!(
    append_ctes!(),
    "
    SELECT counter.first_position, (SELECT count(*) FROM inserted),
        pg_notify('sluice_log', (counter.first_position + $2::BIGINT - 1)::TEXT || ' ' || $1)
    FROM counter"
);

/// The fence, counter and insert CTEs of [`APPEND_FENCED`] and [`APPEND_FENCED_AND_NOTIFY`],
/// which differ only in their final `SELECT`.
macro_rules! append_fenced_ctes {
    () => {
        "WITH fence AS (
        SELECT EXISTS (
                SELECT 1 FROM sluice_agents
                WHERE cluster_name = $1 AND agent_id = $4 AND incarnation = $5::BIGINT
                    AND lease_expires_at > now()
            ) AS lease_held,
            now() < $6::TIMESTAMPTZ AS in_time
    ), counter AS (
        UPDATE sluice_clusters SET next_position = next_position + $2::BIGINT
        WHERE cluster_name = $1 AND (SELECT lease_held AND in_time FROM fence)
        RETURNING next_position - $2::BIGINT AS first_position
    ), inserted AS (
        INSERT INTO sluice_log (cluster_name, position, record)
        SELECT $1, counter.first_position + records.ordinality - 1, records.record
        FROM counter, unnest($3::BYTEA[]) WITH ORDINALITY AS records (record, ordinality)
        RETURNING 1
    )"
    };
}

/// [`APPEND`] fenced by the appender's lease and its record deadline, both decided by the
/// database in the same statement (`docs/cluster.md`, "The fence at commit"): the counter moves
/// and the records `$3` are inserted only if agent `$4`'s registration of incarnation `$5` is
/// still there with an unexpired lease, and the database's `now()` is before `$6`. `now()` is the
/// transaction's start, when the statement reached the database; the statement then runs for at
/// most `statement_timeout`. Always answers one row: the first position (NULL when nothing was
/// inserted), the rows inserted, whether the lease was held and whether the deadline was still
/// ahead — so a refusal says why, and NULL with both true means the cluster row is missing. The
/// lease check is one lookup by `sluice_agents`' primary key.
pub(crate) const APPEND_FENCED: &str = concat!(
    append_fenced_ctes!(),
    "
    SELECT counter.first_position, (SELECT count(*) FROM inserted), fence.lease_held,
        fence.in_time
    FROM fence LEFT JOIN counter ON true"
);

/// [`APPEND_FENCED`] that also notifies listeners, at commit, of the last position it took — only
/// when it took one (the notification is computed over the counter's row, of which a refused
/// append has none).
pub(crate) const APPEND_FENCED_AND_NOTIFY: &str = concat!(
    append_fenced_ctes!(),
    "
    SELECT counter.first_position, (SELECT count(*) FROM inserted), fence.lease_held,
        fence.in_time,
        (SELECT pg_notify('sluice_log', (notified.first_position + $2::BIGINT - 1)::TEXT || ' ' || $1)
            FROM counter AS notified)
    FROM fence LEFT JOIN counter ON true"
);

/// Up to `$3` records after position `$2`, with the head (last assigned position) read in the same
/// statement, hence the same snapshot: an empty answer with `after < head` means truncated, not
/// "nothing yet". The cluster row's absence gives no row at all.
pub(crate) const READ_AFTER: &str =
    "SELECT clusters.next_position - 1, records.position, records.record
    FROM sluice_clusters AS clusters
    LEFT JOIN (
        SELECT position, record FROM sluice_log
        WHERE cluster_name = $1 AND position > $2
        ORDER BY position
        LIMIT $3
    ) AS records ON true
    WHERE clusters.cluster_name = $1
    ORDER BY records.position";

/// The last assigned position (0 while the log is empty).
pub(crate) const HEAD: &str =
    "SELECT next_position - 1 FROM sluice_clusters WHERE cluster_name = $1";

/// Deletes the records a checkpoint covers. Touches only log rows (never the counter row), so it
/// does not hold up appends.
pub(crate) const TRUNCATE_BEFORE: &str =
    "DELETE FROM sluice_log WHERE cluster_name = $1 AND position < $2";

/// Registers (or re-registers, with the next incarnation) an agent with a lease of `$6` ms.
pub(crate) const REGISTER: &str = "INSERT INTO sluice_agents
        (cluster_name, agent_id, address, zone, roles, incarnation, lease_expires_at, registered_at)
    VALUES ($1, $2, $3, $4, $5, 1, now() + $6::FLOAT8 * INTERVAL '1 millisecond', now())
    ON CONFLICT (cluster_name, agent_id) DO UPDATE SET
        address = excluded.address,
        zone = excluded.zone,
        roles = excluded.roles,
        incarnation = sluice_agents.incarnation + 1,
        lease_expires_at = excluded.lease_expires_at,
        registered_at = excluded.registered_at
    RETURNING incarnation, lease_expires_at";

/// [`REGISTER`] that also tells the listening agents, at commit, that the live agents changed.
pub(crate) const REGISTER_AND_NOTIFY: &str = "WITH registered AS (
        INSERT INTO sluice_agents
            (cluster_name, agent_id, address, zone, roles, incarnation, lease_expires_at,
             registered_at)
        VALUES ($1, $2, $3, $4, $5, 1, now() + $6::FLOAT8 * INTERVAL '1 millisecond', now())
        ON CONFLICT (cluster_name, agent_id) DO UPDATE SET
            address = excluded.address,
            zone = excluded.zone,
            roles = excluded.roles,
            incarnation = sluice_agents.incarnation + 1,
            lease_expires_at = excluded.lease_expires_at,
            registered_at = excluded.registered_at
        RETURNING incarnation, lease_expires_at
    )
    SELECT incarnation, lease_expires_at, pg_notify('sluice_agents', $1) FROM registered";

/// Extends a lease that is still held (same incarnation, not expired) by `$4` ms.
pub(crate) const RENEW: &str = "UPDATE sluice_agents
    SET lease_expires_at = now() + $4::FLOAT8 * INTERVAL '1 millisecond'
    WHERE cluster_name = $1 AND agent_id = $2 AND incarnation = $3 AND lease_expires_at > now()
    RETURNING lease_expires_at";

pub(crate) const DEREGISTER: &str =
    "DELETE FROM sluice_agents WHERE cluster_name = $1 AND agent_id = $2 AND incarnation = $3";

/// [`DEREGISTER`] that also tells the listening agents, at commit; answers the rows deleted.
pub(crate) const DEREGISTER_AND_NOTIFY: &str = "WITH deleted AS (
        DELETE FROM sluice_agents WHERE cluster_name = $1 AND agent_id = $2 AND incarnation = $3
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM deleted), pg_notify('sluice_agents', $1)";

pub(crate) const LIVE_AGENTS: &str =
    "SELECT agent_id, address, zone, roles, incarnation, lease_expires_at
    FROM sluice_agents
    WHERE cluster_name = $1 AND lease_expires_at > now()
    ORDER BY agent_id";

/// Forgets agents whose lease expired more than `$2` ms ago (agent ids that never come back, such
/// as pods with random names, would otherwise accumulate).
pub(crate) const FORGET_EXPIRED_AGENTS: &str = "DELETE FROM sluice_agents
    WHERE cluster_name = $1 AND lease_expires_at < now() - $2::FLOAT8 * INTERVAL '1 millisecond'";
