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

use super::error::{SequencerError, with_causes};
use super::tls::{SslMode, UrlTls, redacted};
use super::{SequencerConfig, sql};

/// Opens connections with one parsed configuration.
pub(crate) struct Connector {
    postgres_config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    /// What a failed handshake's error names: the TLS parameters and the URL (redacted).
    tls_settings: String,
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
        let url_tls = UrlTls::parse(&config.url)?;
        let mut postgres_config: tokio_postgres::Config =
            url_tls
                .url
                .parse()
                .map_err(|error| SequencerError::Config {
                    reason: format!(
                        "the database URL {} does not parse: {}",
                        redacted(&config.url),
                        with_causes(&error)
                    ),
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
        // TLS as the URL's libpq parameters say (`super::tls`), unless the caller configured it.
        let tls = match &config.tls {
            Some(_) if url_tls.names_files() => {
                return Err(SequencerError::Config {
                    reason: format!(
                        "the database URL {} names TLS files (sslrootcert, sslcert, sslkey) and \
                         a TLS configuration was given too: use one",
                        redacted(&config.url)
                    ),
                });
            }
            Some(tls) => Some(Arc::clone(tls)),
            None => {
                let mode = url_tls
                    .mode
                    .unwrap_or(match postgres_config.get_ssl_mode() {
                        tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                        tokio_postgres::config::SslMode::Require => SslMode::Require,
                        _ => SslMode::Prefer,
                    });
                url_tls.client_config(&config.url, mode)?
            }
        };
        let tls = tls.map(|tls| MakeRustlsConnect::new(tls.as_ref().clone()));
        let mut tls_settings = match url_tls.mode {
            Some(mode) => format!("sslmode={}", mode.name()),
            None => format!("sslmode={:?}", postgres_config.get_ssl_mode()).to_lowercase(),
        };
        for (key, value) in [
            ("sslrootcert", &url_tls.root_cert),
            ("sslcert", &url_tls.client_cert),
            ("sslkey", &url_tls.client_key),
        ] {
            if let Some(value) = value {
                tls_settings.push_str(&format!(" {key}={value}"));
            }
        }
        if config.tls.is_some() {
            tls_settings.push_str(" (and the TLS configuration given)");
        }
        tls_settings.push_str(&format!(" in {}", redacted(&config.url)));
        Ok(Connector {
            postgres_config,
            tls,
            tls_settings,
        })
    }

    /// A failed connect as a [`SequencerError`]; a failed TLS handshake names the TLS settings.
    pub(crate) fn connect_error(
        &self,
        operation: &'static str,
        error: tokio_postgres::Error,
    ) -> SequencerError {
        // The driver's error kinds are private; its `Display` is the kind alone.
        if error.to_string() == "error performing TLS handshake" {
            return SequencerError::Tls {
                settings: self.tls_settings.clone(),
                reason: with_causes(&error),
            };
        }
        SequencerError::from_postgres(operation, error)
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
/// subscriber. It only moves forward. Beside it, a count of the membership notifications seen
/// (registrations and deregistrations of this cluster's agents).
#[derive(Debug, Clone)]
pub(crate) struct HeadWatch {
    sender: Arc<watch::Sender<u64>>,
    agents_changed: Arc<watch::Sender<u64>>,
    cluster_name: Arc<str>,
}

impl HeadWatch {
    pub(crate) fn new(cluster_name: &str) -> Self {
        HeadWatch {
            sender: Arc::new(watch::Sender::new(0)),
            agents_changed: Arc::new(watch::Sender::new(0)),
            cluster_name: Arc::from(cluster_name),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    pub(crate) fn subscribe_agents(&self) -> watch::Receiver<u64> {
        self.agents_changed.subscribe()
    }

    /// A membership notification's payload, the cluster's name; other clusters' are ignored.
    fn observe_agents_payload(&self, payload: &str) {
        if payload == &*self.cluster_name {
            self.agents_may_have_changed();
        }
    }

    pub(crate) fn agents_may_have_changed(&self) {
        self.agents_changed
            .send_modify(|count| *count = count.wrapping_add(1));
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
                let Some(head) = &head else {
                    continue;
                };
                if notification.channel() == sql::NOTIFY_CHANNEL {
                    head.observe_payload(notification.payload());
                } else if notification.channel() == sql::AGENTS_CHANNEL {
                    head.observe_agents_payload(notification.payload());
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
