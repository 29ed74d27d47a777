//! Starting an agent as a member of a cluster (`--metadata postgres://…`): connect to the
//! sequencer, register with a lease, and open the cluster's log (`docs/cluster.md`).
//!
//! The connection is made on the starting thread, before anything listens, so that a wrong URL
//! or an unreachable database fails the start with a clear error rather than an agent that
//! listens and cannot commit. The lease is taken before the log is opened: an agent appends only
//! while it holds one.

use std::sync::Arc;

use sluice_engine::log::data_gc::token_role;
use sluice_engine::log::{LogConfig, SequencedLog, SequencedRecovery, SequencedWriter};
use sluice_engine::sequencer::{AgentRegistration, Lease, SequencerClient, SequencerConfig};
use sluice_engine::store::ObjectStorage;

use super::agent::AgentError;
use crate::config::Config;
use crate::metadata_core::cluster::Membership;
use crate::metadata_core::cluster_view::{
    ClusterBoard, ClusterMember, ClusterView, ListenerAddress, listener_role,
};
use crate::protocol::BrokerIdentity;

/// A connected sequencer and what this agent registers as.
#[derive(Debug)]
pub(super) struct ClusterStart {
    sequencer: SequencerClient,
    membership: Membership,
}

/// This agent's id in the cluster: `agent_id`, else the address clients are told.
pub(super) fn agent_id(config: &Config, broker: &BrokerIdentity) -> String {
    config
        .agent_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", broker.host, broker.port))
}

/// The sequencer's settings from the agent's: the sequencer's defaults, with what the agent's
/// configuration sets (`metadata_notify`, `metadata_poll_interval_ms`).
fn sequencer_config(config: &Config, url: &str) -> SequencerConfig {
    SequencerConfig {
        notify: config.metadata_notify,
        poll_interval_ms: config.metadata_poll_interval_ms,
        ..SequencerConfig::new(url, config.cluster_name.clone())
    }
}

/// Connects to the cluster's database (creating its tables and cluster row if missing).
/// `broker` is the first listener's identity (the registration's one address, which agents of
/// older versions read); `listeners` every listener's advertised address, announced as roles so
/// that other agents answer a client with the address of the listener it came in on.
pub(super) fn connect(
    config: &Config,
    url: &str,
    broker: &BrokerIdentity,
    listeners: &[ListenerAddress],
) -> Result<ClusterStart, AgentError> {
    let address = format!("{}:{}", broker.host, broker.port);
    let mut roles = vec!["broker".to_owned()];
    roles.extend(
        listeners
            .iter()
            .map(|listener| listener_role(&listener.name, &listener.host, listener.port)),
    );
    let registration = AgentRegistration {
        agent_id: agent_id(config, broker),
        address,
        zone: config.zone.clone(),
        roles,
    };
    let sequencer_config = sequencer_config(config, url);
    let sequencer =
        SequencerClient::connect(sequencer_config).map_err(|error| AgentError::MetadataLog {
            message: format!("cannot connect to the cluster's metadata database: {error}"),
        })?;
    tracing::info!(
        cluster = %config.cluster_name,
        cluster_id = %sequencer.cluster_id(),
        agent = %registration.agent_id,
        zone = %registration.zone,
        "connected to the cluster's sequencer"
    );
    Ok(ClusterStart {
        sequencer,
        membership: Membership {
            // Until the first listing, the agent knows only itself: it answers for everything,
            // as a single agent does.
            board: Arc::new(ClusterBoard::new(ClusterView::new(
                vec![ClusterMember {
                    node_id: broker.node_id,
                    agent_id: registration.agent_id.clone(),
                    host: broker.host.clone(),
                    port: broker.port,
                    zone: registration.zone.clone(),
                    listeners: listeners.to_vec(),
                }],
                broker.node_id,
            ))),
            registration,
            lease_ms: config.lease_ms,
        },
    })
}

impl ClusterStart {
    /// The live agents as this agent last listed them.
    pub(super) fn board(&self) -> Arc<ClusterBoard> {
        Arc::clone(&self.membership.board)
    }

    /// The cluster's id, as Kafka clients are told it.
    pub(super) fn cluster_id(&self) -> String {
        self.sequencer.cluster_id().to_string()
    }

    /// Chooses this incarnation's object token, registers (takes the lease, announcing the token
    /// in its roles, for the collector of `data/`), then recovers the cluster's log: the newest
    /// checkpoint in `store` and every record after it. A window's record is sent at most one
    /// lease after its PUT started (the record deadline garbage collection counts on).
    pub(super) async fn open(
        mut self,
        store: Arc<dyn ObjectStorage>,
        config: LogConfig,
    ) -> Result<(SequencedLog, SequencedRecovery, (Membership, Lease)), String> {
        let writer = SequencedWriter::choose(store.as_ref(), self.membership.lease_ms)
            .await
            .map_err(|error| format!("cannot choose an object token: {error}"))?;
        self.membership
            .registration
            .roles
            .push(token_role(writer.token));
        let lease = self
            .sequencer
            .register(
                self.membership.registration.clone(),
                self.membership.lease_ms,
            )
            .await
            .map_err(|error| format!("cannot register with the cluster: {error}"))?;
        tracing::info!(
            agent = %lease.agent_id,
            incarnation = lease.incarnation,
            token = writer.token,
            lease_ms = self.membership.lease_ms,
            "registered with the cluster"
        );
        let (log, recovery) = SequencedLog::open_as(store, self.sequencer, config, writer)
            .await
            .map_err(|error| format!("cannot open the cluster's log: {error}"))?;
        Ok((log, recovery, (self.membership, lease)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_notify_and_poll_settings_reach_the_sequencer() {
        let defaults = sequencer_config(&Config::default(), "postgres://db/sluice");
        assert!(defaults.notify);
        assert_eq!(defaults.poll_interval_ms, 1_000);
        assert_eq!(defaults.cluster_name, "sluice");
        let config = Config {
            metadata_notify: false,
            metadata_poll_interval_ms: 50,
            cluster_name: "payments".to_owned(),
            ..Config::default()
        };
        let sequencer = sequencer_config(&config, "postgres://db/sluice");
        assert!(!sequencer.notify);
        assert_eq!(sequencer.poll_interval_ms, 50);
        assert_eq!(sequencer.cluster_name, "payments");
        assert_eq!(sequencer.url, "postgres://db/sluice");
    }
}
