//! Agents and their leases. The database's clock (`now()`) decides every expiry, so agents' clocks
//! never have to agree; an agent keeps a local deadline that is never later than the database's.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::error::SequencerError;
use super::postgres::{PgSequencer, Role, column, to_signed};
use super::sql;

/// Longest lease, and the bounds of what an agent registers.
pub const LEASE_MS_MAX: u64 = 24 * 60 * 60 * 1_000;
const AGENT_ID_BYTES_MAX: usize = 128;
const ADDRESS_BYTES_MAX: usize = 256;
const ZONE_BYTES_MAX: usize = 64;
const ROLES_MAX: usize = 16;
/// Room for a listener's role, `listener:NAME=HOST:PORT`, with a DNS name of up to 253 bytes.
const ROLE_BYTES_MAX: usize = 320;

/// What an agent says about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRegistration {
    /// Stable across restarts of the same agent (a restart registers again with the next
    /// incarnation). 1–128 bytes, no control characters.
    pub agent_id: String,
    /// Where clients reach it, `host:port`.
    pub address: String,
    /// Its zone (`--zone`); may be empty.
    pub zone: String,
    /// What it does (e.g. `broker`, `coordinator`).
    pub roles: Vec<String>,
}

/// A lease an agent holds until `valid_until` unless it renews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub agent_id: String,
    /// Bumped by every registration of this agent id: a fencing token. A renewal with an older
    /// incarnation fails.
    pub incarnation: u64,
    /// The expiry by the database's clock.
    pub expires_at: SystemTime,
    /// The expiry by this process's monotonic clock: the request's send time plus the lease. The
    /// database computed its expiry after that send, so this is never later than the database's
    /// (clock rate drift aside): an agent that stops serving at `valid_until` has stopped before
    /// the others see its lease expire.
    pub valid_until: Instant,
}

/// What the database checks when it commits an agent's append ([`PgSequencer::append_fenced`]),
/// in the append's own statement: the registration of `agent_id` at `incarnation` still holds an
/// unexpired lease, and the database's clock has not reached `deadline`. Otherwise nothing is
/// committed. The local checks an agent makes before sending stay the fast path; this is the check
/// a pause between them and the send cannot slip past (`docs/cluster.md`, "The fence at commit").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub agent_id: String,
    pub incarnation: u64,
    /// The record deadline by the database's clock.
    pub deadline: SystemTime,
}

impl Fence {
    /// The fence of a record that must be sent before `send_by` (this process's monotonic clock),
    /// appended under `lease`: the local deadline mapped to the database's clock through the
    /// lease's pair of expiries, `lease.expires_at - (lease.valid_until - send_by)`. Computed from
    /// values fixed before the send — never from "now plus what is left", which a pause between
    /// the computation and the send would stretch.
    ///
    /// Why the mapping is safe. The lease was taken by a request sent at local `t` (so
    /// `valid_until = t + lease`), which the database ran at its time `T` (so `expires_at = T +
    /// lease`) at some local instant `t + d`: `d` is the request's one-way delay, at least 0 (the
    /// database ran it after it was sent) and at most `operation_timeout_ms` (a renewal answered
    /// later is not used). The mapped deadline is `T + (send_by - t)`, which is the database's
    /// time at local `send_by + d`. So the database refuses the append from local `send_by + d`
    /// on: never before the local deadline (no append the local check lets through is refused
    /// for time, clock rate drift aside), and at most one renewal's one-way delay after it.
    pub fn for_send_by(
        lease: &Lease,
        send_by: std::time::Instant,
    ) -> Result<Fence, SequencerError> {
        let valid_until = lease.valid_until.into_std();
        let deadline = if send_by <= valid_until {
            lease.expires_at.checked_sub(valid_until - send_by)
        } else {
            lease.expires_at.checked_add(send_by - valid_until)
        };
        let Some(deadline) = deadline else {
            return Err(SequencerError::InvalidInput {
                reason: format!(
                    "a record deadline {:?} from the lease's local expiry is outside the clock's range",
                    send_by.saturating_duration_since(valid_until)
                ),
            });
        };
        Ok(Fence {
            agent_id: lease.agent_id.clone(),
            incarnation: lease.incarnation,
            deadline,
        })
    }
}

/// A live agent, as the database lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub address: String,
    pub zone: String,
    pub roles: Vec<String>,
    pub incarnation: u64,
    pub lease_expires_at: SystemTime,
}

impl PgSequencer {
    /// Registers `agent` with a lease of `lease_ms`, replacing any earlier registration of its id
    /// (whose lease is thereby lost: its incarnation is superseded).
    pub async fn register(
        &self,
        agent: &AgentRegistration,
        lease_ms: u64,
    ) -> Result<Lease, SequencerError> {
        validate_registration(agent)?;
        let lease = lease_milliseconds(lease_ms)?;
        let cluster_name = self.cluster_name().to_owned();
        // With notifications the other agents list the live agents at once, not at their next
        // renewal (up to a third of a lease later).
        let statement_sql = if self.shared().config.notify {
            sql::REGISTER_AND_NOTIFY
        } else {
            sql::REGISTER
        };
        let sent_at = Instant::now();
        let (incarnation, expires_at) = self
            .shared()
            .run(Role::Writer, "register", async |session| {
                let statement = session
                    .prepared(statement_sql)
                    .await
                    .map_err(|error| SequencerError::from_postgres("register", error))?;
                let row = session
                    .client
                    .query_one(
                        &statement,
                        &[
                            &cluster_name,
                            &agent.agent_id,
                            &agent.address,
                            &agent.zone,
                            &agent.roles,
                            &lease,
                        ],
                    )
                    .await
                    .map_err(|error| SequencerError::from_postgres("register", error))?;
                let incarnation: i64 = column(&row, 0, "register")?;
                let expires_at: SystemTime = column(&row, 1, "register")?;
                Ok((incarnation, expires_at))
            })
            .await?;
        Ok(Lease {
            agent_id: agent.agent_id.clone(),
            incarnation: incarnation_from(incarnation)?,
            expires_at,
            valid_until: sent_at + Duration::from_millis(lease_ms),
        })
    }

    /// Extends `lease` by `lease_ms` from now (the database's now). Fails with
    /// [`SequencerError::LeaseLost`] if it had expired or the agent id registered again since:
    /// the agent must stop serving, then [`Self::register`] again.
    pub async fn renew(&self, lease: &Lease, lease_ms: u64) -> Result<Lease, SequencerError> {
        let lease_value = lease_milliseconds(lease_ms)?;
        let incarnation = to_signed(lease.incarnation, "incarnation")?;
        let cluster_name = self.cluster_name().to_owned();
        let sent_at = Instant::now();
        let expires_at = self
            .shared()
            .run(Role::Writer, "renew", async |session| {
                let statement = session
                    .prepared(sql::RENEW)
                    .await
                    .map_err(|error| SequencerError::from_postgres("renew", error))?;
                let row = session
                    .client
                    .query_opt(
                        &statement,
                        &[&cluster_name, &lease.agent_id, &incarnation, &lease_value],
                    )
                    .await
                    .map_err(|error| SequencerError::from_postgres("renew", error))?;
                row.map(|row| column::<SystemTime>(&row, 0, "renew"))
                    .transpose()
            })
            .await?;
        let Some(expires_at) = expires_at else {
            return Err(SequencerError::LeaseLost {
                agent_id: lease.agent_id.clone(),
                incarnation: lease.incarnation,
            });
        };
        Ok(Lease {
            agent_id: lease.agent_id.clone(),
            incarnation: lease.incarnation,
            expires_at,
            valid_until: sent_at + Duration::from_millis(lease_ms),
        })
    }

    /// Leaves the cluster now (a graceful stop) instead of letting the lease run out. Returns
    /// whether the registration was still there.
    pub async fn deregister(&self, lease: &Lease) -> Result<bool, SequencerError> {
        let incarnation = to_signed(lease.incarnation, "incarnation")?;
        let cluster_name = self.cluster_name().to_owned();
        let notify = self.shared().config.notify;
        let deleted = self
            .shared()
            .run(Role::Writer, "deregister", async |session| {
                let statement_sql = if notify {
                    sql::DEREGISTER_AND_NOTIFY
                } else {
                    sql::DEREGISTER
                };
                let statement = session
                    .prepared(statement_sql)
                    .await
                    .map_err(|error| SequencerError::from_postgres("deregister", error))?;
                let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&cluster_name, &lease.agent_id, &incarnation];
                if !notify {
                    return session
                        .client
                        .execute(&statement, &parameters)
                        .await
                        .map_err(|error| SequencerError::from_postgres("deregister", error));
                }
                let row = session
                    .client
                    .query_one(&statement, &parameters)
                    .await
                    .map_err(|error| SequencerError::from_postgres("deregister", error))?;
                let deleted: i64 = column(&row, 0, "deregister")?;
                Ok(u64::try_from(deleted).unwrap_or(0))
            })
            .await?;
        Ok(deleted > 0)
    }

    /// Deletes the rows of agents whose lease expired more than `expired_for_ms` ago and returns
    /// how many. An agent id that registers again later simply starts at incarnation 1; call this
    /// now and then (e.g. with a day) so that ids that never return do not accumulate.
    pub async fn forget_expired_agents(&self, expired_for_ms: u64) -> Result<u64, SequencerError> {
        if expired_for_ms > LEASE_MS_MAX * 365 {
            return Err(SequencerError::InvalidInput {
                reason: format!("expired_for_ms {expired_for_ms} is above a year of leases"),
            });
        }
        // Exact: below 2^53.
        let expired_for = expired_for_ms as f64;
        let cluster_name = self.cluster_name().to_owned();
        self.shared()
            .run(Role::Writer, "forget expired agents", async |session| {
                let statement =
                    session
                        .prepared(sql::FORGET_EXPIRED_AGENTS)
                        .await
                        .map_err(|error| {
                            SequencerError::from_postgres("forget expired agents", error)
                        })?;
                session
                    .client
                    .execute(&statement, &[&cluster_name, &expired_for])
                    .await
                    .map_err(|error| SequencerError::from_postgres("forget expired agents", error))
            })
            .await
    }

    /// Every agent whose lease has not expired by the database's clock, by agent id.
    pub async fn live_agents(&self) -> Result<Vec<AgentInfo>, SequencerError> {
        let cluster_name = self.cluster_name().to_owned();
        self.shared()
            .run(Role::Watcher, "live agents", async |session| {
                let statement = session
                    .prepared(sql::LIVE_AGENTS)
                    .await
                    .map_err(|error| SequencerError::from_postgres("live agents", error))?;
                let rows = session
                    .client
                    .query(&statement, &[&cluster_name])
                    .await
                    .map_err(|error| SequencerError::from_postgres("live agents", error))?;
                rows.iter()
                    .map(|row| {
                        Ok(AgentInfo {
                            agent_id: column(row, 0, "live agents")?,
                            address: column(row, 1, "live agents")?,
                            zone: column(row, 2, "live agents")?,
                            roles: column(row, 3, "live agents")?,
                            incarnation: incarnation_from(column(row, 4, "live agents")?)?,
                            lease_expires_at: column(row, 5, "live agents")?,
                        })
                    })
                    .collect()
            })
            .await
    }
}

fn lease_milliseconds(lease_ms: u64) -> Result<f64, SequencerError> {
    if lease_ms == 0 || lease_ms > LEASE_MS_MAX {
        return Err(SequencerError::InvalidInput {
            reason: format!("lease of {lease_ms} ms (1 to {LEASE_MS_MAX})"),
        });
    }
    // Exact: at most 8.64e7, far below 2^53.
    Ok(lease_ms as f64)
}

fn incarnation_from(value: i64) -> Result<u64, SequencerError> {
    u64::try_from(value).map_err(|_| SequencerError::Inconsistent {
        reason: format!("negative incarnation {value} in the database"),
    })
}

fn validate_registration(agent: &AgentRegistration) -> Result<(), SequencerError> {
    let field = |name: &str, value: &str, bytes_max: usize, allow_empty: bool| {
        if (value.is_empty() && !allow_empty)
            || value.len() > bytes_max
            || value.chars().any(char::is_control)
        {
            Err(SequencerError::InvalidInput {
                reason: format!(
                    "{name} {value:?}: at most {bytes_max} bytes{}, no control characters",
                    if allow_empty { "" } else { ", not empty" }
                ),
            })
        } else {
            Ok(())
        }
    };
    field("agent id", &agent.agent_id, AGENT_ID_BYTES_MAX, false)?;
    field("address", &agent.address, ADDRESS_BYTES_MAX, false)?;
    field("zone", &agent.zone, ZONE_BYTES_MAX, true)?;
    if agent.roles.len() > ROLES_MAX {
        return Err(SequencerError::InvalidInput {
            reason: format!("{} roles (at most {ROLES_MAX})", agent.roles.len()),
        });
    }
    for role in &agent.roles {
        field("role", role, ROLE_BYTES_MAX, false)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            agent_id: "a".to_owned(),
            incarnation: 3,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            valid_until: Instant::now() + Duration::from_secs(30),
        }
    }

    #[test]
    fn a_local_deadline_maps_through_the_lease_pair() {
        let lease = lease();
        let valid_until = lease.valid_until.into_std();
        let before =
            Fence::for_send_by(&lease, valid_until - Duration::from_millis(2_500)).unwrap();
        assert_eq!(
            before,
            Fence {
                agent_id: "a".to_owned(),
                incarnation: 3,
                deadline: lease.expires_at - Duration::from_millis(2_500),
            }
        );
        let after = Fence::for_send_by(&lease, valid_until + Duration::from_millis(700)).unwrap();
        assert_eq!(
            after.deadline,
            lease.expires_at + Duration::from_millis(700)
        );
        let at = Fence::for_send_by(&lease, valid_until).unwrap();
        assert_eq!(at.deadline, lease.expires_at);
    }
}
