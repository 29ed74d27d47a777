//! Where each value of the effective configuration came from, and `sluice config`'s printout of
//! it.
//!
//! Provenance is recorded by the layering itself: the file layer notes the top-level keys its
//! TOML document holds, and each of the environment and flag layers the keys it set
//! ([`Config::apply`]). A value is shown with the last layer that set it, which is the one that
//! won (file < environment < flags). Values of settings declared `secret` (URLs that may carry a
//! password or keys) are redacted before they are printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Overrides, SETTINGS};

/// What a redacted part of a value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The variable, `SLUICE_KEY`.
    Environment(String),
    /// The flag, `--key`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => formatter.write_str("default"),
            Source::File(path) => write!(formatter, "file {}", path.display()),
            Source::Environment(variable) => write!(formatter, "env {variable}"),
            Source::Flag(flag) => write!(formatter, "flag {flag}"),
        }
    }
}

/// A valid configuration and the source of each setting that did not keep its default.
#[derive(Debug, Clone)]
pub struct Effective {
    pub config: Config,
    sources: BTreeMap<&'static str, Source>,
}

impl Effective {
    /// Reads the three layers as [`Config::load`] does, remembering where each value came from.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut sources = BTreeMap::new();
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let config = Config::from_toml_str(&text, path)?;
                // The document parsed as a Config, so it parses as a table of those keys.
                let keys = toml::from_str::<toml::Table>(&text).unwrap_or_default();
                for setting in SETTINGS {
                    if keys.contains_key(setting.key) {
                        sources.insert(setting.key, Source::File(path.to_owned()));
                    }
                }
                config
            }
            None => Config::default(),
        };
        let environment = Overrides::from_environment(environment)?;
        for key in config.apply(&environment) {
            sources.insert(key, Source::Environment(variable(key)));
        }
        for key in config.apply(flags) {
            sources.insert(key, Source::Flag(format!("--{}", key.replace('_', "-"))));
        }
        config.validate()?;
        Ok(Self { config, sources })
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// Every setting as TOML, in declaration order, each followed by its source as a comment;
    /// an unset optional setting as a comment; secrets redacted.
    pub fn render(&self) -> Result<String, ConfigError> {
        let table = toml::Table::try_from(&self.config).map_err(|error| ConfigError::Invalid {
            key: "config",
            reason: format!("cannot be shown as TOML: {error}"),
        })?;
        let mut lines: Vec<(String, Source)> = Vec::new();
        for setting in SETTINGS.iter().filter(|setting| setting.layered) {
            let line = match table.get(setting.key) {
                Some(value) if setting.secret => {
                    format!("{} = {}", setting.key, redact_value(value))
                }
                Some(value) => format!("{} = {value}", setting.key),
                None => format!("# {} is unset", setting.key),
            };
            lines.push((line, self.source(setting.key)));
        }
        let width = lines
            .iter()
            .map(|(line, _)| line.chars().count())
            .filter(|width| *width <= 60)
            .max()
            .unwrap_or(0);
        let mut text = String::from(
            "# The effective configuration: every setting, its value and where the value came \
             from\n# (default, file PATH, env SLUICE_KEY or flag --key). Secrets are shown as \
             <redacted>.\n",
        );
        for (line, source) in &lines {
            let padding = width.saturating_sub(line.chars().count());
            text.push_str(&format!("{line}{:padding$}  # {source}\n", ""));
        }
        // TOML tables come after every plain key.
        for setting in SETTINGS.iter().filter(|setting| !setting.layered) {
            let source = self.source(setting.key);
            match table.get(setting.key) {
                Some(toml::Value::Table(entries)) if !entries.is_empty() => {
                    let mut wrapper = toml::Table::new();
                    wrapper.insert(setting.key.to_owned(), toml::Value::Table(entries.clone()));
                    let shown =
                        toml::to_string(&wrapper).map_err(|error| ConfigError::Invalid {
                            key: "listener_name",
                            reason: format!("cannot be shown as TOML: {error}"),
                        })?;
                    text.push_str(&format!("\n# {}: {source}\n{shown}", setting.key));
                }
                _ => text.push_str(&format!("# [{}.NAME]: none  # {source}\n", setting.key)),
            }
        }
        Ok(text)
    }
}

/// `SLUICE_KEY`.
fn variable(key: &str) -> String {
    format!("SLUICE_{}", key.to_ascii_uppercase())
}

/// A secret setting's value as TOML, its secret parts redacted.
fn redact_value(value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::String(text) => toml::Value::String(redact(text)),
        toml::Value::Array(items) => toml::Value::Array(items.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

/// Whether a parameter named `name` holds a secret (`password`, `secret_access_key`,
/// `session_token`, `sslkey`...). Errs on the side of hiding.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "credential"]
        .iter()
        .any(|word| name.contains(word))
}

/// `text` with its secret parts replaced by [`REDACTED`]: a URL's password
/// (`postgres://user:PASSWORD@host`), the values of query parameters whose name says secret,
/// password, token or key (`?secret_access_key=…`), and the same in a `key=value` connection
/// string (`host=db password=…`).
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text
            .split(' ')
            .map(redact_parameter)
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_information, host)) => match user_information.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{user_information}@{host}"),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let query: Vec<String> = query.split('&').map(redact_parameter).collect();
            let mut path = format!("{before}?{}", query.join("&"));
            if let Some(fragment) = fragment {
                path.push('#');
                path.push_str(fragment);
            }
            path
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// `name=value` with the value redacted when the name says it is a secret.
fn redact_parameter(parameter: &str) -> String {
    match parameter.split_once('=') {
        Some((name, _value)) if secret_name(name) => format!("{name}={REDACTED}"),
        _ => parameter.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn passwords_keys_and_tokens_are_redacted_and_nothing_else() {
        assert_eq!(
            redact("postgres://sluice:hunter2@db:5432/sluice?sslmode=require"),
            "postgres://sluice:<redacted>@db:5432/sluice?sslmode=require"
        );
        assert_eq!(
            redact("postgres://sluice@db/sluice?password=hunter2"),
            "postgres://sluice@db/sluice?password=<redacted>"
        );
        assert_eq!(
            redact(
                "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&access_key_id=AK\
                 &secret_access_key=S%2Fk&session_token=T&region=eu"
            ),
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&access_key_id=<redacted>\
             &secret_access_key=<redacted>&session_token=<redacted>&region=eu"
        );
        assert_eq!(
            redact("host=db user=sluice password=hunter2"),
            "host=db user=sluice password=<redacted>"
        );
        for plain in [
            "file:///var/sluice",
            "./sluice-data",
            "memory://",
            "postgres://db/x",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }

    #[test]
    fn each_value_is_shown_with_the_layer_it_came_from() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("sluice.toml");
        std::fs::write(
            &path,
            "flush_interval_ms = 20\nzone = \"eu-1a\"\n\
             metadata = \"postgres://sluice:hunter2@db/sluice\"\n\
             [listener_name.PLAINTEXT]\nsasl_enabled_mechanisms = []\n",
        )
        .unwrap();
        let environment = vec![("SLUICE_FLUSH_INTERVAL_MS".to_owned(), "30".to_owned())];
        let flags = Overrides {
            zone: Some("eu-1b".to_owned()),
            ..Overrides::default()
        };
        // An empty mechanism list on a listener without SASL is refused: the same error as
        // `sluice serve`.
        let error = Effective::load(Some(&path), environment.clone(), &flags).unwrap_err();
        assert!(error.to_string().contains("listener_name"), "{error}");
        std::fs::write(
            &path,
            "flush_interval_ms = 20\nzone = \"eu-1a\"\n\
             metadata = \"postgres://sluice:hunter2@db/sluice\"\n\
             [listener_name.PLAINTEXT]\nssl_client_auth = \"none\"\n",
        )
        .unwrap();
        let error = Effective::load(Some(&path), environment.clone(), &flags).unwrap_err();
        assert!(error.to_string().contains("no TLS"), "{error}");
        std::fs::write(
            &path,
            "flush_interval_ms = 20\nzone = \"eu-1a\"\n\
             metadata = \"postgres://sluice:hunter2@db/sluice\"\n",
        )
        .unwrap();
        let effective = Effective::load(Some(&path), environment, &flags).unwrap();
        assert_eq!(effective.source("listen"), Source::Default);
        assert_eq!(effective.source("metadata"), Source::File(path.clone()));
        assert_eq!(
            effective.source("flush_interval_ms"),
            Source::Environment("SLUICE_FLUSH_INTERVAL_MS".to_owned())
        );
        assert_eq!(effective.source("zone"), Source::Flag("--zone".to_owned()));
        let text = effective.render().unwrap();
        let line = |key: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("no {key} in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("flush_interval_ms"),
            "flush_interval_ms = 30 # env SLUICE_FLUSH_INTERVAL_MS"
        );
        assert_eq!(line("zone"), "zone = \"eu-1b\" # flag --zone");
        assert_eq!(line("listen"), "listen = \"127.0.0.1:9092\" # default");
        assert_eq!(
            line("metadata"),
            format!(
                "metadata = \"postgres://sluice:<redacted>@db/sluice\" # file {}",
                path.display()
            )
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("# store is unset"), "{text}");
        // Every setting is shown.
        for setting in SETTINGS.iter().filter(|setting| setting.layered) {
            assert!(
                text.contains(&format!("{} = ", setting.key))
                    || text.contains(&format!("# {} is unset", setting.key)),
                "{} missing",
                setting.key
            );
        }
    }

    #[test]
    fn the_printout_is_a_config_file_for_the_same_configuration() {
        let flags = Overrides {
            listeners: Some(crate::config::NameList(vec![
                "PLAINTEXT://127.0.0.1:0".to_owned(),
                "SSL://127.0.0.1:0".to_owned(),
            ])),
            tls_cert_file: Some("/c.pem".into()),
            tls_key_file: Some("/k.pem".into()),
            cpus: Some(crate::config::CpuList(vec![0, 1])),
            log_retention_ms: Some(-1),
            ..Overrides::default()
        };
        let mut effective = Effective::load(None, Vec::new(), &flags).unwrap();
        effective.config.listener_name.insert(
            "SSL".to_owned(),
            crate::config::ListenerSettings {
                ssl_client_auth: Some(crate::config::ClientAuth::None),
                ..crate::config::ListenerSettings::default()
            },
        );
        let text = effective.render().unwrap();
        let again = Config::from_toml_str(&text, Path::new("printed.toml")).unwrap();
        assert_eq!(again, effective.config, "{text}");
    }

    #[test]
    fn listener_tables_are_shown_after_the_keys() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("sluice.toml");
        std::fs::write(
            &path,
            "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n\
             [listener_name.SSL]\nssl_client_auth = \"none\"\n",
        )
        .unwrap();
        let effective = Effective::load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        let text = effective.render().unwrap();
        let table = text.find("[listener_name.SSL]").unwrap();
        assert!(table > text.find("lease_ms = ").unwrap(), "{text}");
        assert!(text.contains("ssl_client_auth = \"none\""), "{text}");
        assert!(text.contains(&format!("# listener_name: file {}", path.display())));
    }
}
