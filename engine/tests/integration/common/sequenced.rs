//! The cluster's metadata log (`SequencedLog`) driven as an agent drives it: opened on a sequencer
//! client of its own (one per agent), each append acknowledged by the catch-ups its tailer runs on
//! every move of the sequencer's head, and a lease held as a registered agent holds one.

use std::sync::Arc;

use futures::executor::block_on;
use sluice_engine::log::{AppendOutcome, EntryContent, LogConfig, LogError, SequencedLog};
use sluice_engine::sequencer::{AgentRegistration, Lease, SequencerClient, SequencerConfig};
use sluice_engine::store::ObjectStorage;

/// A log of cluster `cluster` on the PostgreSQL at `url` and `store`, with a sequencer client
/// of its own.
pub fn open_sequenced(
    url: &str,
    cluster: &str,
    store: &Arc<dyn ObjectStorage>,
    config: LogConfig,
) -> SequencedLog {
    let sequencer = SequencerClient::connect(SequencerConfig::new(url, cluster)).unwrap();
    block_on(SequencedLog::open(Arc::clone(store), sequencer, config))
        .unwrap()
        .0
}

/// What `agent_id` registers as before its log's first window, as an agent does (its appends are
/// then fenced by the lease).
pub fn registration(agent_id: &str) -> AgentRegistration {
    AgentRegistration {
        agent_id: agent_id.to_owned(),
        address: format!("{agent_id}.local:9092"),
        zone: String::new(),
        roles: vec!["broker".to_owned()],
    }
}

/// Registers `agent_id` with a lease of a minute and holds it on `log`.
pub fn hold_a_lease(log: &SequencedLog, agent_id: &str) -> Lease {
    let lease = block_on(log.sequencer().register(registration(agent_id), 60_000)).unwrap();
    log.hold_lease(&lease);
    lease
}

/// Appends `content` and drives the catch-ups that acknowledge it, on every move of the
/// sequencer's head (a tailer's job in the agent).
pub async fn append(log: &SequencedLog, content: EntryContent) -> AppendOutcome {
    append_result(log, content).await.unwrap()
}

/// [`append`], answering the append's result.
pub async fn append_result(
    log: &SequencedLog,
    content: EntryContent,
) -> Result<AppendOutcome, LogError> {
    let mut head = log.sequencer().subscribe();
    let append = log.append(content);
    let tail = async {
        loop {
            log.catch_up().await.unwrap();
            if head.changed().await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
    };
    futures::pin_mut!(append, tail);
    match futures::future::select(append, tail).await {
        futures::future::Either::Left((outcome, _)) => outcome,
        futures::future::Either::Right(((), _)) => unreachable!("the tail loop never ends"),
    }
}
