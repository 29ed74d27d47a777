//! Connections to the database: opening one (plain text or rustls), driving it on its own task, and
//! turning the notifications it receives into the head watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::SequencerError;
use super::{SequencerConfig, sql};

/// Opens connections with one parsed configuration.
pub(crate) struct Connector {
    postgres_config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration's Debug redacts the password.
        formatter
            .debug_struct("Connector")
            .field("postgres_config", &self.postgres_config)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    pub(crate) fn new(config: &SequencerConfig) -> Result<Self, SequencerError> {
        let mut postgres_config: tokio_postgres::Config =
            config.url.parse().map_err(|error| SequencerError::Config {
                reason: format!("the database URL does not parse: {error}"),
            })?;
        if postgres_config.get_connect_timeout().is_none() {
            postgres_config.connect_timeout(Duration::from_millis(config.connect_timeout_ms));
        }
        if postgres_config.get_application_name().is_none() {
            postgres_config.application_name("sluice");
        }
        // The database gives up on a statement when the agent does: an append the agent stopped
        // waiting for cannot commit long after (garbage collection of `data/` counts on it,
        // `log::data_gc`). A URL that sets its own options keeps them.
        if postgres_config.get_options().is_none() {
            postgres_config.options(format!(
                "-c statement_timeout={}",
                config.operation_timeout_ms
            ));
        }
        let tls = config
            .tls
            .as_ref()
            .map(|tls| MakeRustlsConnect::new(tls.as_ref().clone()));
        Ok(Connector {
            postgres_config,
            tls,
        })
    }

    /// Opens a connection; `head` (for the watcher) receives the notifications it delivers.
    pub(crate) async fn open(
        &self,
        head: Option<HeadWatch>,
    ) -> Result<Session, tokio_postgres::Error> {
        let (client, driver) = match &self.tls {
            None => {
                let (client, connection) = self.postgres_config.connect(NoTls).await?;
                (client, tokio::spawn(drive(connection, head)))
            }
            Some(tls) => {
                let (client, connection) = self.postgres_config.connect(tls.clone()).await?;
                (client, tokio::spawn(drive(connection, head)))
            }
        };
        Ok(Session {
            client,
            driver,
            statements: HashMap::new(),
        })
    }
}

/// One open connection and the statements prepared on it.
pub(crate) struct Session {
    pub(crate) client: Client,
    driver: JoinHandle<()>,
    statements: HashMap<&'static str, Statement>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Session")
            .field("closed", &self.client.is_closed())
            .field("statements", &self.statements.len())
            .finish()
    }
}

impl Session {
    /// `sql` prepared on this connection (once; later calls reuse it). Prepared statements let an
    /// append be one round trip: bind and execute, no parse.
    pub(crate) async fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the client ends the driver on its own once it notices; aborting closes the
        // socket now, so a connection that timed out does not linger.
        self.driver.abort();
    }
}

/// The newest position known to be committed, shared by the watcher, the appender and every
/// subscriber. It only moves forward.
#[derive(Debug, Clone)]
pub(crate) struct HeadWatch {
    sender: Arc<watch::Sender<u64>>,
    cluster_name: Arc<str>,
}

impl HeadWatch {
    pub(crate) fn new(cluster_name: &str) -> Self {
        HeadWatch {
            sender: Arc::new(watch::Sender::new(0)),
            cluster_name: Arc::from(cluster_name),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// Raises the head to `position` if that is newer; subscribers wake only on a change.
    pub(crate) fn advance(&self, position: u64) {
        self.sender.send_if_modified(|head| {
            let newer = position > *head;
            if newer {
                *head = position;
            }
            newer
        });
    }

    /// A notification's payload, `"{last position} {cluster name}"`; other clusters' and malformed
    /// payloads are ignored (the poll covers anything missed).
    fn observe_payload(&self, payload: &str) {
        let Some((position, cluster_name)) = payload.split_once(' ') else {
            return;
        };
        if cluster_name != &*self.cluster_name {
            return;
        }
        if let Ok(position) = position.parse::<u64>() {
            self.advance(position);
        }
    }
}

/// Drives a connection until it ends, handing notifications to `head`.
async fn drive<T>(mut connection: Connection<Socket, T>, head: Option<HeadWatch>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = poll_fn(|context| connection.poll_message(context)).await {
        match message {
            Ok(AsyncMessage::Notification(notification)) => {
                if notification.channel() == sql::NOTIFY_CHANNEL
                    && let Some(head) = &head
                {
                    head.observe_payload(notification.payload());
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "sequencer: database connection ended");
                break;
            }
        }
    }
}
