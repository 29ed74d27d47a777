//! Named Kafka listeners, with Kafka's names and rules: `listeners` (`NAME://HOST:PORT,...`),
//! `advertised_listeners` (the same names), `listener_security_protocol_map`
//! (`NAME:PROTOCOL,...`; `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` and `SASL_SSL` map to themselves)
//! and the per-listener table `[listener_name.NAME]` (Kafka's `listener.name.NAME.*`).
//!
//! The two older settings are shorthands for the same thing: `listen` is one listener named
//! `PLAINTEXT` (`SASL_PLAINTEXT` with `listen_sasl`), `tls_listen` one named `SSL` (`SASL_SSL` with
//! `tls_listen_sasl`). Mixing them with `listeners` is refused rather than merged: two ways of
//! naming the same port would leave an operator guessing which one won.
//!
//! Everything here is resolved once, at start, into a list of [`Listener`]s; the agent binds each
//! on every network core and the connections it accepts carry the listener's name, so Metadata
//! can answer with the advertised addresses of that listener (Kafka's rule).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Config, ConfigError, advertised, invalid, resolve};

/// Most listeners an agent may have: each is announced to the cluster as one registration role,
/// and a registration carries at most 16 roles (`sluice_engine::sequencer`).
pub const LISTENERS_MAX: usize = 8;

/// Longest listener name (Kafka's names are short words such as `INTERNAL`).
pub const LISTENER_NAME_BYTES_MAX: usize = 32;

/// The default of `listen`, which `listeners` replaces (see [`Config::listeners_resolved`]).
pub(super) const LISTEN_DEFAULT: &str = "127.0.0.1:9092";

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name of the protocol (`SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol Kafka calls `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        SecurityProtocol::ALL
            .into_iter()
            .find(|protocol| protocol.name().eq_ignore_ascii_case(name))
    }

    /// Whether connections speak TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections must authenticate with SASL first.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Kafka's `ssl.client.auth`, per listener. `requested` (a certificate asked for but optional) is
/// not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Clients must present a certificate chained to `tls_client_ca_file` (mTLS).
    Required,
    /// No client certificate is asked for.
    None,
}

/// The settings of one listener that differ from the agent-wide ones (Kafka's
/// `listener.name.NAME.*`), from the TOML table `[listener_name.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// Kafka's `listener.name.NAME.ssl.client.auth`: `required` or `none`. Unset: `required`
    /// when `tls_client_ca_file` is set, else `none`.
    pub ssl_client_auth: Option<ClientAuth>,
    /// Kafka's `listener.name.NAME.sasl.enabled.mechanisms`: the mechanisms this SASL listener
    /// offers, each one of `sasl_mechanisms`. Unset: `sasl_mechanisms`.
    pub sasl_enabled_mechanisms: Option<Vec<String>>,
    /// This TLS listener's own certificate chain (Kafka's `listener.name.NAME.ssl.keystore.*`),
    /// with `tls_key_file`. Unset: the agent-wide `tls_cert_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of this listener's `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// This TLS listener's own client CAs (Kafka's `listener.name.NAME.ssl.truststore.*`); set,
    /// its clients must present a certificate they signed unless `ssl_client_auth = "none"`.
    /// Unset: the agent-wide `tls_client_ca_file`.
    pub tls_client_ca_file: Option<PathBuf>,
}

/// A listener's own TLS files, from its `[listener_name.NAME]` table (each unset: the agent-wide
/// one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnTlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// One Kafka listener, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name, upper case (`CLIENT`).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where every network core binds (port 0: the kernel chooses, once).
    pub address: SocketAddr,
    /// `(host, port)` clients are told for this listener; port 0 means the port bound.
    pub advertised: (String, u16),
    /// For a TLS listener: whether clients must present a certificate.
    pub client_auth: ClientAuth,
    /// For a SASL listener with mechanisms of its own: those (else `sasl_mechanisms`).
    pub sasl_mechanisms: Option<Vec<crate::net::sasl::Mechanism>>,
    /// For a TLS listener with files of its own: those (else the agent-wide ones).
    pub own_tls: OwnTlsFiles,
}

impl Listener {
    /// The TLS files of this listener: its own certificate and key, else the agent-wide ones;
    /// its own client CAs, else the agent-wide ones, only when it asks for client certificates.
    /// `None` for a listener without TLS.
    pub fn tls_files(&self, config: &Config) -> Option<crate::net::tls::TlsFiles> {
        if !self.protocol.tls() {
            return None;
        }
        let own = &self.own_tls;
        let (cert_file, key_file) = match (&own.cert_file, &own.key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => (config.tls_cert_file.clone()?, config.tls_key_file.clone()?),
        };
        Some(crate::net::tls::TlsFiles {
            cert_file,
            key_file,
            client_ca_file: match self.client_auth {
                ClientAuth::Required => own
                    .client_ca_file
                    .clone()
                    .or_else(|| config.tls_client_ca_file.clone()),
                ClientAuth::None => None,
            },
        })
    }
}

/// A list given either as a TOML array of strings or as one comma-separated string (Kafka's
/// `server.properties` form).
pub(super) fn string_or_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::One(text) => split_list(&text),
        Form::Many(items) => items
            .iter()
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect(),
    })
}

/// `a, b,c` as `["a", "b", "c"]`.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `NAME://HOST:PORT` as `(NAME, HOST:PORT)`, the name checked and upper-cased. An empty host
/// (`PLAINTEXT://:9092`) is Kafka's "every interface".
fn name_and_address(key: &'static str, entry: &str) -> Result<(String, String), ConfigError> {
    let (name, address) = entry.split_once("://").ok_or_else(|| {
        invalid(
            key,
            format!("{entry:?} is not NAME://HOST:PORT (e.g. CLIENT://0.0.0.0:9092)"),
        )
    })?;
    let name = listener_name(key, name)?;
    let address = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    };
    Ok((name, address))
}

/// A listener name: 1–32 of `[A-Za-z0-9_]`, compared upper-cased (as Kafka normalises them).
fn listener_name(key: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > LISTENER_NAME_BYTES_MAX
        || !name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
    {
        return Err(invalid(
            key,
            format!(
                "{name:?} is not a listener name: 1 to {LISTENER_NAME_BYTES_MAX} letters, digits \
                 or underscores"
            ),
        ));
    }
    Ok(name.to_ascii_uppercase())
}

impl Config {
    /// Every Kafka listener of the agent, first the one `local_addr` reports (the first of
    /// `listeners`, or `listen`). Refuses (naming the key): `listeners` mixed with the older
    /// settings; a malformed entry; a name twice; a port twice; a name with no security protocol;
    /// an advertised name that is not a listener; an address clients cannot reach advertised;
    /// more than [`LISTENERS_MAX`]; a TLS listener without `tls_cert_file` and `tls_key_file`;
    /// TLS files without a TLS listener; `[listener_name.X]` for no listener X, or asking for
    /// client certificates on a listener without TLS or without `tls_client_ca_file`. The SASL
    /// settings are checked by [`Config::sasl_mechanisms`].
    pub fn listeners_resolved(&self) -> Result<Vec<Listener>, ConfigError> {
        let mut listeners = if self.listeners.is_empty() {
            self.shorthand_listeners()?
        } else {
            self.named_listeners()?
        };
        for (name, settings) in &self.listener_name {
            let upper = listener_name("listener_name", name)?;
            let Some(listener) = listeners.iter_mut().find(|listener| listener.name == upper)
            else {
                return Err(invalid(
                    "listener_name",
                    format!("[listener_name.{name}] names no listener of this agent"),
                ));
            };
            self.apply_own_tls(listener, settings)?;
            if let Some(client_auth) = settings.ssl_client_auth {
                if !listener.protocol.tls() {
                    return Err(invalid(
                        "listener_name",
                        format!(
                            "ssl_client_auth on listener {upper}, which is {} (no TLS)",
                            listener.protocol.name()
                        ),
                    ));
                }
                if client_auth == ClientAuth::Required
                    && listener.own_tls.client_ca_file.is_none()
                    && self.tls_client_ca_file.is_none()
                {
                    return Err(invalid(
                        "listener_name",
                        format!(
                            "listener {upper} requires client certificates but neither its \
                             tls_client_ca_file nor the agent's is set"
                        ),
                    ));
                }
                listener.client_auth = client_auth;
            }
            if let Some(names) = &settings.sasl_enabled_mechanisms {
                listener.sasl_mechanisms = Some(self.listener_mechanisms(listener, names)?);
            }
        }
        let tls_wanted = listeners.iter().any(|listener| listener.protocol.tls());
        let tls_files_set = self.tls_cert_file.is_some()
            || self.tls_key_file.is_some()
            || self.tls_client_ca_file.is_some();
        if !tls_wanted && tls_files_set {
            return Err(invalid(
                if self.listeners.is_empty() {
                    "tls_listen"
                } else {
                    "listeners"
                },
                "TLS files are set but no listener speaks TLS: set tls_listen (HOST:PORT), or \
                 name an SSL or SASL_SSL listener in listeners",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "tls_cert_file",
                "one of tls_cert_file and tls_key_file is set: set both (PEM)",
            ));
        }
        let agent_wide_certificate = self.tls_cert_file.is_some();
        let without_certificate: Vec<&str> = listeners
            .iter()
            .filter(|listener| {
                listener.protocol.tls()
                    && listener.own_tls.cert_file.is_none()
                    && !agent_wide_certificate
            })
            .map(|listener| listener.name.as_str())
            .collect();
        if !without_certificate.is_empty() {
            return Err(invalid(
                "tls_cert_file",
                format!(
                    "listener {} speaks TLS and needs tls_cert_file and tls_key_file (PEM), \
                     agent-wide or in its [listener_name.NAME] table",
                    without_certificate.join(", ")
                ),
            ));
        }
        Ok(listeners)
    }

    /// A listener's own TLS files from its table: only on a TLS listener, the certificate and its
    /// key together; its own client CAs make client certificates required unless its
    /// `ssl_client_auth` says otherwise.
    fn apply_own_tls(
        &self,
        listener: &mut Listener,
        settings: &ListenerSettings,
    ) -> Result<(), ConfigError> {
        let name = &listener.name;
        let any = settings.tls_cert_file.is_some()
            || settings.tls_key_file.is_some()
            || settings.tls_client_ca_file.is_some();
        if !any {
            return Ok(());
        }
        if !listener.protocol.tls() {
            return Err(invalid(
                "listener_name",
                format!(
                    "TLS files on listener {name}, which is {} (no TLS)",
                    listener.protocol.name()
                ),
            ));
        }
        if settings.tls_cert_file.is_some() != settings.tls_key_file.is_some() {
            return Err(invalid(
                "listener_name",
                format!("listener {name} sets one of tls_cert_file and tls_key_file: set both"),
            ));
        }
        listener.own_tls = OwnTlsFiles {
            cert_file: settings.tls_cert_file.clone(),
            key_file: settings.tls_key_file.clone(),
            client_ca_file: settings.tls_client_ca_file.clone(),
        };
        if settings.tls_client_ca_file.is_some() {
            listener.client_auth = ClientAuth::Required;
        }
        Ok(())
    }

    /// A SASL listener's own mechanisms: known, not empty, each offered agent-wide (so that the
    /// users file and JWKS checks of [`Config::sasl_mechanisms`] cover them).
    fn listener_mechanisms(
        &self,
        listener: &Listener,
        names: &[String],
    ) -> Result<Vec<crate::net::sasl::Mechanism>, ConfigError> {
        let name = &listener.name;
        if !listener.protocol.sasl() {
            return Err(invalid(
                "listener_name",
                format!(
                    "sasl_enabled_mechanisms on listener {name}, which is {} (no SASL)",
                    listener.protocol.name()
                ),
            ));
        }
        if names.is_empty() {
            return Err(invalid(
                "listener_name",
                format!("sasl_enabled_mechanisms of listener {name} is empty"),
            ));
        }
        let mut mechanisms = Vec::with_capacity(names.len());
        for mechanism in names {
            let offered = self
                .sasl_mechanisms
                .iter()
                .any(|agent_wide| agent_wide == mechanism);
            let parsed = crate::net::sasl::Mechanism::from_name(mechanism);
            let (true, Some(parsed)) = (offered, parsed) else {
                return Err(invalid(
                    "listener_name",
                    format!(
                        "listener {name} enables {mechanism:?}, which is not one of \
                         sasl_mechanisms {:?}",
                        self.sasl_mechanisms
                    ),
                ));
            };
            if !mechanisms.contains(&parsed) {
                mechanisms.push(parsed);
            }
        }
        Ok(mechanisms)
    }

    /// `listen` and `tls_listen` as the listeners they stand for.
    fn shorthand_listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        for (key, set) in [
            (
                "advertised_listeners",
                !self.advertised_listeners.is_empty(),
            ),
            (
                "listener_security_protocol_map",
                !self.listener_security_protocol_map.is_empty(),
            ),
        ] {
            if set {
                return Err(invalid(
                    key,
                    "is set but listeners is not: name the listeners in listeners \
                     (NAME://HOST:PORT,...)",
                ));
            }
        }
        let client_auth = if self.tls_client_ca_file.is_some() {
            ClientAuth::Required
        } else {
            ClientAuth::None
        };
        let protocol = if self.listen_sasl {
            SecurityProtocol::SaslPlaintext
        } else {
            SecurityProtocol::Plaintext
        };
        let mut listeners = vec![Listener {
            name: protocol.name().to_owned(),
            protocol,
            address: self.listen_address()?,
            advertised: self.advertised_address()?,
            client_auth: ClientAuth::None,
            sasl_mechanisms: None,
            own_tls: OwnTlsFiles::default(),
        }];
        if let Some(listen) = &self.tls_listen {
            let protocol = if self.tls_listen_sasl {
                SecurityProtocol::SaslSsl
            } else {
                SecurityProtocol::Ssl
            };
            listeners.push(Listener {
                name: protocol.name().to_owned(),
                protocol,
                address: resolve("tls_listen", listen)?,
                advertised: advertised(
                    "tls_advertised_listen",
                    self.tls_advertised_listen.as_deref(),
                    "tls_listen",
                    listen,
                )?,
                client_auth,
                sasl_mechanisms: None,
                own_tls: OwnTlsFiles::default(),
            });
        }
        Ok(listeners)
    }

    /// `listeners`, `advertised_listeners` and `listener_security_protocol_map`.
    fn named_listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        let older: [(&str, bool); 6] = [
            ("listen", self.listen != LISTEN_DEFAULT),
            ("advertised_listen", self.advertised_listen.is_some()),
            ("tls_listen", self.tls_listen.is_some()),
            (
                "tls_advertised_listen",
                self.tls_advertised_listen.is_some(),
            ),
            ("listen_sasl", self.listen_sasl),
            ("tls_listen_sasl", self.tls_listen_sasl),
        ];
        if let Some((key, _)) = older.iter().find(|(_, set)| *set) {
            return Err(invalid(
                "listeners",
                format!(
                    "listeners replaces listen, advertised_listen, tls_listen, \
                     tls_advertised_listen, listen_sasl and tls_listen_sasl, but {key} is set \
                     too: remove {key} and name every listener in listeners (its security \
                     protocol in listener_security_protocol_map)"
                ),
            ));
        }
        let mut protocols = BTreeMap::new();
        for entry in &self.listener_security_protocol_map {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                invalid(
                    "listener_security_protocol_map",
                    format!("{entry:?} is not NAME:PROTOCOL (e.g. CLIENT:SASL_SSL)"),
                )
            })?;
            let name = listener_name("listener_security_protocol_map", name)?;
            let protocol = SecurityProtocol::from_name(protocol.trim()).ok_or_else(|| {
                invalid(
                    "listener_security_protocol_map",
                    format!(
                        "{protocol:?} (for {name}) is not a security protocol: PLAINTEXT, SSL, \
                         SASL_PLAINTEXT or SASL_SSL"
                    ),
                )
            })?;
            if protocols.insert(name.clone(), protocol).is_some() {
                return Err(invalid(
                    "listener_security_protocol_map",
                    format!("{name} is mapped twice"),
                ));
            }
        }
        let mut advertised_by_name: BTreeMap<String, String> = BTreeMap::new();
        for entry in &self.advertised_listeners {
            let (name, address) = name_and_address("advertised_listeners", entry)?;
            if advertised_by_name.insert(name.clone(), address).is_some() {
                return Err(invalid(
                    "advertised_listeners",
                    format!("{name} is advertised twice"),
                ));
            }
        }
        if self.listeners.len() > LISTENERS_MAX {
            return Err(invalid(
                "listeners",
                format!(
                    "{} listeners; an agent has at most {LISTENERS_MAX}",
                    self.listeners.len()
                ),
            ));
        }
        let mut listeners: Vec<Listener> = Vec::with_capacity(self.listeners.len());
        for entry in &self.listeners {
            let (name, address_text) = name_and_address("listeners", entry)?;
            if listeners.iter().any(|listener| listener.name == name) {
                return Err(invalid("listeners", format!("{name} is listed twice")));
            }
            let protocol = protocols
                .get(&name)
                .copied()
                .or_else(|| SecurityProtocol::from_name(&name))
                .ok_or_else(|| {
                    invalid(
                        "listener_security_protocol_map",
                        format!(
                            "listener {name} has no security protocol: add {name}:PROTOCOL \
                             (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL) to \
                             listener_security_protocol_map"
                        ),
                    )
                })?;
            let address = resolve("listeners", &address_text)?;
            if let Some(other) = listeners
                .iter()
                .find(|listener| address.port() != 0 && listener.address.port() == address.port())
            {
                return Err(invalid(
                    "listeners",
                    format!(
                        "{name} and {} both use port {}; each listener needs a port of its own",
                        other.name,
                        address.port()
                    ),
                ));
            }
            let advertised_text = advertised_by_name.remove(&name);
            let advertised = advertised(
                "advertised_listeners",
                advertised_text.as_deref(),
                "listeners",
                &address_text,
            )?;
            listeners.push(Listener {
                name,
                protocol,
                address,
                advertised,
                client_auth: if protocol.tls() && self.tls_client_ca_file.is_some() {
                    ClientAuth::Required
                } else {
                    ClientAuth::None
                },
                sasl_mechanisms: None,
                own_tls: OwnTlsFiles::default(),
            });
        }
        if let Some(name) = advertised_by_name.keys().next() {
            return Err(invalid(
                "advertised_listeners",
                format!("{name} is advertised but is not in listeners"),
            ));
        }
        Ok(listeners)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::Overrides;

    fn with_tls(config: Config) -> Config {
        Config {
            tls_cert_file: Some(PathBuf::from("/server.pem")),
            tls_key_file: Some(PathBuf::from("/server-key.pem")),
            ..config
        }
    }

    fn named(listeners: &[&str], advertised: &[&str], map: &[&str]) -> Config {
        let list = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        Config {
            listeners: list(listeners),
            advertised_listeners: list(advertised),
            listener_security_protocol_map: list(map),
            ..Config::default()
        }
    }

    /// The error `config` is refused with, which must name `key` and say `words`.
    fn refused(config: &Config, key: &str, words: &str) {
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{key}: {error}");
        assert!(error.contains(words), "{words:?}: {error}");
    }

    #[test]
    fn a_tls_listener_may_have_its_own_certificate_and_client_cas() {
        let text = r#"
            listeners = "EXTERNAL://127.0.0.1:19094,INTERNAL://127.0.0.1:19092,PARTNER://127.0.0.1:19093"
            listener_security_protocol_map = "EXTERNAL:SSL,INTERNAL:PLAINTEXT,PARTNER:SSL"
            tls_cert_file = "/public.pem"
            tls_key_file = "/public-key.pem"

            [listener_name.PARTNER]
            tls_cert_file = "/partner.pem"
            tls_key_file = "/partner-key.pem"
            tls_client_ca_file = "/partner-ca.pem"
        "#;
        let config = Config::from_toml_str(text, Path::new("x.toml")).unwrap();
        config.validate().unwrap();
        let listeners = config.listeners_resolved().unwrap();
        let external = listeners[0].tls_files(&config).unwrap();
        assert_eq!(
            (
                external.cert_file,
                external.key_file,
                external.client_ca_file
            ),
            (
                PathBuf::from("/public.pem"),
                PathBuf::from("/public-key.pem"),
                None
            )
        );
        let partner = listeners[2].tls_files(&config).unwrap();
        assert_eq!(
            (partner.cert_file, partner.key_file, partner.client_ca_file),
            (
                PathBuf::from("/partner.pem"),
                PathBuf::from("/partner-key.pem"),
                Some(PathBuf::from("/partner-ca.pem"))
            )
        );
        assert_eq!(listeners[2].client_auth, ClientAuth::Required);

        // Its own certificate is enough without an agent-wide one, and `none` turns its CAs off.
        let alone = Config::from_toml_str(
            r#"
            listeners = "PARTNER://127.0.0.1:19093"
            listener_security_protocol_map = "PARTNER:SSL"
            [listener_name.PARTNER]
            tls_cert_file = "/partner.pem"
            tls_key_file = "/partner-key.pem"
            tls_client_ca_file = "/partner-ca.pem"
            ssl_client_auth = "none"
        "#,
            Path::new("x.toml"),
        )
        .unwrap();
        alone.validate().unwrap();
        let listeners = alone.listeners_resolved().unwrap();
        assert_eq!(listeners[0].client_auth, ClientAuth::None);
        assert_eq!(listeners[0].tls_files(&alone).unwrap().client_ca_file, None);
    }

    #[test]
    fn own_tls_files_are_checked() {
        let with = |table: &str| {
            Config::from_toml_str(
                &format!(
                    r#"
                    listeners = "A://127.0.0.1:19093,B://127.0.0.1:19094"
                    listener_security_protocol_map = "A:SSL,B:PLAINTEXT"
                    {table}
                "#
                ),
                Path::new("x.toml"),
            )
            .unwrap()
        };
        // A TLS listener with no certificate of its own and none agent-wide.
        refused(&with(""), "tls_cert_file", "listener A speaks TLS");
        refused(
            &with("[listener_name.A]\ntls_cert_file = \"/a.pem\""),
            "listener_name",
            "set both",
        );
        refused(
            &with(
                "[listener_name.A]\ntls_cert_file = \"/a.pem\"\ntls_key_file = \"/k.pem\"\n[listener_name.B]\ntls_client_ca_file = \"/ca.pem\"",
            ),
            "listener_name",
            "TLS files on listener B, which is PLAINTEXT",
        );
        refused(
            &with("tls_cert_file = \"/a.pem\""),
            "tls_cert_file",
            "set both",
        );
    }

    #[test]
    fn kafkas_three_listeners_from_toml_in_either_form() {
        let text = r#"
            listeners = "CLIENT://127.0.0.1:19094, INTERNAL://127.0.0.1:19092,replay://127.0.0.1:19093"
            advertised_listeners = ["CLIENT://kafka-1.example.com:9094", "REPLAY://replay-1.example.com:9093"]
            listener_security_protocol_map = "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,REPLAY:SSL"
            tls_cert_file = "/server.pem"
            tls_key_file = "/server-key.pem"
            tls_client_ca_file = "/ca.pem"
            sasl_users_file = "/users.toml"

            [listener_name.CLIENT]
            ssl_client_auth = "none"
        "#;
        let config = Config::from_toml_str(text, Path::new("x.toml")).unwrap();
        config.validate().unwrap();
        let listeners = config.listeners_resolved().unwrap();
        let summary: Vec<_> = listeners
            .iter()
            .map(|listener| {
                (
                    listener.name.as_str(),
                    listener.protocol,
                    listener.address.port(),
                    listener.advertised.0.as_str(),
                    listener.advertised.1,
                    listener.client_auth,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "CLIENT",
                    SecurityProtocol::SaslSsl,
                    19094,
                    "kafka-1.example.com",
                    9094,
                    ClientAuth::None
                ),
                (
                    "INTERNAL",
                    SecurityProtocol::Plaintext,
                    19092,
                    "127.0.0.1",
                    19092,
                    ClientAuth::None
                ),
                (
                    "REPLAY",
                    SecurityProtocol::Ssl,
                    19093,
                    "replay-1.example.com",
                    9093,
                    ClientAuth::Required
                ),
            ]
        );
        // The client CA goes only to the listener that asks for certificates.
        assert_eq!(
            listeners[0].tls_files(&config).unwrap().client_ca_file,
            None
        );
        assert_eq!(
            listeners[2].tls_files(&config).unwrap().client_ca_file,
            Some(PathBuf::from("/ca.pem"))
        );
        assert!(listeners[1].tls_files(&config).is_none());
    }

    #[test]
    fn environment_and_flags_take_kafkas_comma_strings() {
        let overrides = Overrides::from_environment(vec![
            (
                "SLUICE_LISTENERS".to_owned(),
                "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0".to_owned(),
            ),
            (
                "SLUICE_ADVERTISED_LISTENERS".to_owned(),
                "SSL://localhost:0".to_owned(),
            ),
        ])
        .unwrap();
        let mut config = with_tls(Config::default());
        config.apply(&overrides);
        let listeners = config.listeners_resolved().unwrap();
        assert_eq!(listeners.len(), 2, "two listeners on port 0 may share it");
        assert_eq!(listeners[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(listeners[1].advertised, ("localhost".to_owned(), 0));
    }

    #[test]
    fn the_older_settings_are_shorthands_for_named_listeners() {
        let config = with_tls(Config {
            listen: "127.0.0.1:9092".to_owned(),
            listen_sasl: true,
            tls_listen: Some("127.0.0.1:9093".to_owned()),
            tls_advertised_listen: Some("kafka.example.com:9093".to_owned()),
            tls_client_ca_file: Some(PathBuf::from("/ca.pem")),
            sasl_users_file: Some(PathBuf::from("/users.toml")),
            ..Config::default()
        });
        let listeners = config.listeners_resolved().unwrap();
        assert_eq!(listeners[0].name, "SASL_PLAINTEXT");
        assert_eq!(listeners[0].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(listeners[1].name, "SSL");
        assert_eq!(listeners[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(listeners[1].advertised.0, "kafka.example.com");
        assert_eq!(listeners[1].client_auth, ClientAuth::Required);
        let default = Config::default().listeners_resolved().unwrap();
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].name, "PLAINTEXT");
    }

    #[test]
    fn each_mistake_is_refused_naming_the_setting() {
        refused(
            &named(
                &["A://127.0.0.1:1", "a://127.0.0.1:2"],
                &[],
                &["A:PLAINTEXT"],
            ),
            "listeners",
            "A is listed twice",
        );
        refused(
            &named(
                &["PLAINTEXT://127.0.0.1:9", "CLIENT://127.0.0.1:9"],
                &[],
                &["CLIENT:PLAINTEXT"],
            ),
            "listeners",
            "both use port 9",
        );
        refused(
            &named(&["CLIENT://127.0.0.1:1"], &[], &[]),
            "listener_security_protocol_map",
            "CLIENT has no security protocol",
        );
        refused(
            &named(&["CLIENT://127.0.0.1:1"], &[], &["CLIENT:TLS"]),
            "listener_security_protocol_map",
            "not a security protocol",
        );
        refused(
            &named(&["PLAINTEXT://127.0.0.1:1"], &["OTHER://h:1"], &[]),
            "advertised_listeners",
            "OTHER is advertised but is not in listeners",
        );
        refused(
            &named(&["PLAINTEXT://0.0.0.0:1"], &[], &[]),
            "advertised_listeners",
            "not an address clients can reach",
        );
        refused(
            &named(&["PLAINTEXT://127.0.0.1:1"], &[], &[]).clone_with(|config| {
                config.tls_listen = Some("127.0.0.1:2".to_owned());
            }),
            "listeners",
            "tls_listen is set too",
        );
        refused(
            &named(&["PLAINTEXT://127.0.0.1:1"], &[], &[]).clone_with(|config| {
                config.listen = "127.0.0.1:5".to_owned();
            }),
            "listeners",
            "listen is set too",
        );
        refused(
            &named(&["no-scheme:1"], &[], &[]),
            "listeners",
            "not NAME://HOST:PORT",
        );
        refused(
            &named(&["BAD-NAME://127.0.0.1:1"], &[], &[]),
            "listeners",
            "not a listener name",
        );
        refused(
            &Config {
                advertised_listeners: vec!["PLAINTEXT://h:1".to_owned()],
                ..Config::default()
            },
            "advertised_listeners",
            "listeners is not",
        );
        let nine: Vec<String> = (1..=9)
            .map(|port| format!("L{port}://127.0.0.1:{port}"))
            .collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        refused(&named(&nine, &[], &[]), "listeners", "at most 8");
    }

    #[test]
    fn tls_and_sasl_listeners_need_their_settings() {
        // SSL without certificate settings.
        refused(
            &named(&["REPLAY://127.0.0.1:1"], &[], &["REPLAY:SSL"]),
            "tls_cert_file",
            "REPLAY speaks TLS",
        );
        // Certificate settings without a TLS listener.
        refused(
            &with_tls(named(&["PLAINTEXT://127.0.0.1:1"], &[], &[])),
            "listeners",
            "no listener speaks TLS",
        );
        // SASL without users (PLAIN and SCRAM are offered by default).
        refused(
            &named(&["CLIENT://127.0.0.1:1"], &[], &["CLIENT:SASL_PLAINTEXT"]),
            "sasl_users_file",
            "no users file",
        );
        // SASL without mechanisms.
        refused(
            &Config {
                sasl_mechanisms: Vec::new(),
                sasl_users_file: Some(PathBuf::from("/users.toml")),
                ..named(&["CLIENT://127.0.0.1:1"], &[], &["CLIENT:SASL_PLAINTEXT"])
            },
            "sasl_mechanisms",
            "empty",
        );
        // A users file and no SASL listener.
        refused(
            &Config {
                sasl_users_file: Some(PathBuf::from("/users.toml")),
                ..named(&["CLIENT://127.0.0.1:1"], &[], &["CLIENT:PLAINTEXT"])
            },
            "sasl_users_file",
            "no listener requires SASL",
        );
        named(&["CLIENT://127.0.0.1:1"], &[], &["CLIENT:SASL_PLAINTEXT"])
            .clone_with(|config| config.sasl_users_file = Some(PathBuf::from("/users.toml")))
            .validate()
            .unwrap();
    }

    #[test]
    fn per_listener_client_certificates_are_checked() {
        let settings = |auth| ListenerSettings {
            ssl_client_auth: Some(auth),
            ..ListenerSettings::default()
        };
        let base = with_tls(named(
            &["INTERNAL://127.0.0.1:1", "REPLAY://127.0.0.1:2"],
            &[],
            &["INTERNAL:PLAINTEXT", "REPLAY:SSL"],
        ));
        refused(
            &base.clone_with(|config| {
                config
                    .listener_name
                    .insert("REPLAY".to_owned(), settings(ClientAuth::Required));
            }),
            "listener_name",
            "neither its tls_client_ca_file nor the agent's is set",
        );
        refused(
            &base.clone_with(|config| {
                config
                    .listener_name
                    .insert("INTERNAL".to_owned(), settings(ClientAuth::None));
            }),
            "listener_name",
            "no TLS",
        );
        refused(
            &base.clone_with(|config| {
                config
                    .listener_name
                    .insert("ELSEWHERE".to_owned(), settings(ClientAuth::None));
            }),
            "listener_name",
            "names no listener",
        );
        let required = base.clone_with(|config| {
            config.tls_client_ca_file = Some(PathBuf::from("/ca.pem"));
            config
                .listener_name
                .insert("replay".to_owned(), settings(ClientAuth::Required));
        });
        required.validate().unwrap();
        assert_eq!(
            required.listeners_resolved().unwrap()[1].client_auth,
            ClientAuth::Required
        );
        let unknown =
            "listeners = \"A://127.0.0.1:1\"\n[listener_name.A]\nssl.client.auth = \"x\"\n";
        assert!(Config::from_toml_str(unknown, Path::new("x.toml")).is_err());
    }

    #[test]
    fn a_sasl_listener_may_offer_fewer_mechanisms() {
        use crate::net::sasl::Mechanism;
        let mechanisms = |names: &[&str]| ListenerSettings {
            sasl_enabled_mechanisms: Some(names.iter().map(|name| (*name).to_owned()).collect()),
            ..ListenerSettings::default()
        };
        let base = Config {
            sasl_users_file: Some(PathBuf::from("/users.toml")),
            ..named(
                &[
                    "CLIENT://127.0.0.1:1",
                    "LOCAL://127.0.0.1:2",
                    "TOOLS://127.0.0.1:3",
                ],
                &[],
                &[
                    "CLIENT:SASL_PLAINTEXT",
                    "LOCAL:SASL_PLAINTEXT",
                    "TOOLS:PLAINTEXT",
                ],
            )
        };
        let config = base.clone_with(|config| {
            config
                .listener_name
                .insert("CLIENT".to_owned(), mechanisms(&["SCRAM-SHA-512"]));
        });
        config.validate().unwrap();
        let listeners = config.listeners_resolved().unwrap();
        assert_eq!(
            listeners[0].sasl_mechanisms,
            Some(vec![Mechanism::Scram(
                crate::net::sasl::ScramMechanism::Sha512
            )])
        );
        assert_eq!(listeners[1].sasl_mechanisms, None, "the agent-wide list");
        for (listener, names, words) in [
            ("CLIENT", &["OAUTHBEARER"][..], "not one of sasl_mechanisms"),
            ("CLIENT", &["GSSAPI"][..], "not one of sasl_mechanisms"),
            ("CLIENT", &["plain"][..], "not one of sasl_mechanisms"),
            ("CLIENT", &[][..], "is empty"),
            ("TOOLS", &["PLAIN"][..], "no SASL"),
        ] {
            refused(
                &base.clone_with(|config| {
                    config
                        .listener_name
                        .insert(listener.to_owned(), mechanisms(names));
                }),
                "listener_name",
                words,
            );
        }
    }

    trait CloneWith {
        fn clone_with(&self, change: impl FnOnce(&mut Config)) -> Config;
    }

    impl CloneWith for Config {
        fn clone_with(&self, change: impl FnOnce(&mut Config)) -> Config {
            let mut config = self.clone();
            change(&mut config);
            config
        }
    }
}
