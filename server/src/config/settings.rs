//! One declaration per setting.
//!
//! [`settings!`] takes the list of settings in `declarations.rs` — for each its TOML key, type,
//! default, value name (its unit or shape: `MS`, `BYTES`, `HOST:PORT`), one-line help, full
//! documentation and whether it holds a secret — and generates from it everything that used to
//! be written once per setting by hand:
//!
//! - [`Config`](super::Config), the serde struct the TOML file is read into (`deny_unknown_fields`),
//!   and its `Default`;
//! - [`Overrides`](super::Overrides), every key optional: the `sluice serve` / `sluice config`
//!   flags (`--key-with-dashes`, clap) and the `SLUICE_KEY` environment parser, which reads an
//!   explicit list of `(name, value)` pairs so that tests never race on the process environment;
//! - the layering itself ([`Overrides::apply_to`](super::Overrides), which reports the keys it
//!   set, so that `sluice config` can say where each value came from);
//! - [`SETTINGS`](super::SETTINGS), the descriptors `docs/configuration.md`'s table is generated
//!   from (`config::docs`).
//!
//! Names follow from the key and are never written twice: the variable is `SLUICE_` and the key
//! in upper case, the flag `--` and the key with `_` as `-`. The reading of one layer's text into
//! a value is per type ([`Layered`]), not per setting.

use std::path::PathBuf;

use super::ConfigError;
use super::overrides::{CpuList, NameList};

/// What the reference documentation and `sluice config` know about one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The TOML key (and the field of [`Config`](super::Config)).
    pub key: &'static str,
    /// The full documentation, as written above the declaration (Markdown, one line per line).
    pub doc: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// What the flag and the variable take: the unit (`MS`, `BYTES`) or the shape (`HOST:PORT`).
    pub value_name: &'static str,
    /// The default in words, where the value alone does not say it (`None` shows the value).
    pub default_doc: Option<&'static str>,
    /// Holds a password, a token or key material (or a URL that may carry one): shown redacted.
    pub secret: bool,
    /// Settable by environment variable and flag too; `false` for TOML-only tables.
    pub layered: bool,
    /// The smallest value accepted, for a number with a declared range.
    pub min: Option<i128>,
    /// The largest value accepted, for a number with a declared range.
    pub max: Option<i128>,
}

impl Setting {
    /// `SLUICE_KEY`, or `None` for a TOML-only setting.
    pub fn environment_variable(&self) -> Option<String> {
        self.layered
            .then(|| format!("SLUICE_{}", self.key.to_ascii_uppercase()))
    }

    /// `--key-with-dashes`, or `None` for a TOML-only setting.
    pub fn flag(&self) -> Option<String> {
        self.layered
            .then(|| format!("--{}", self.key.replace('_', "-")))
    }

    /// The documentation as one paragraph.
    pub fn doc_paragraph(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The setting of `key`.
    pub fn find(key: &str) -> Option<&'static Setting> {
        super::SETTINGS.iter().find(|setting| setting.key == key)
    }

    /// The declared range in words (`1 to 1024`, `at least 1`), if there is one.
    pub fn range_words(&self) -> Option<String> {
        match (self.min, self.max) {
            (Some(min), Some(max)) => Some(format!("{min} to {max}")),
            (Some(min), None) => Some(format!("at least {min}")),
            (None, Some(max)) => Some(format!("at most {max}")),
            (None, None) => None,
        }
    }
}

/// A number a range can be declared for; an unset optional number is in every range.
pub trait Number {
    fn number(&self) -> Option<i128>;
}

macro_rules! numbers {
    ($($kind:ty),*) => {
        $(
            impl Number for $kind {
                fn number(&self) -> Option<i128> {
                    Some(*self as i128)
                }
            }
        )*
    };
}

numbers!(u32, u64, usize, i32, i64, i128);

impl<T: Number> Number for Option<T> {
    fn number(&self) -> Option<i128> {
        self.as_ref().and_then(Number::number)
    }
}

/// Refuses `value` when it is outside the range declared for `key`, naming the key.
pub(super) fn check_range(key: &'static str, value: &impl Number) -> Result<(), ConfigError> {
    let (Some(value), Some(setting)) = (value.number(), Setting::find(key)) else {
        return Ok(());
    };
    let below = setting.min.is_some_and(|min| value < min);
    let above = setting.max.is_some_and(|max| value > max);
    match setting.range_words() {
        Some(words) if below || above => Err(ConfigError::Invalid {
            key,
            reason: format!("{value} is out of range: must be {words}"),
        }),
        _ => Ok(()),
    }
}

/// The `--help` text of a flag: its help line and its variable.
pub(super) fn flag_help(help: &str, key: &str) -> String {
    format!("{help} [env SLUICE_{}]", key.to_ascii_uppercase())
}

/// The key a `SLUICE_*` variable names (`SLUICE_FLUSH_INTERVAL_MS` → `flush_interval_ms`), or
/// `None` for another variable. Only upper-case names count: `SLUICE_listen` names no setting.
pub(super) fn environment_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("SLUICE_")?;
    if rest.bytes().any(|byte| byte.is_ascii_lowercase()) {
        return Some(String::new());
    }
    Some(rest.to_ascii_lowercase())
}

/// A setting's type and the type its flag and variable are read as (`Vec<String>` from
/// `a,b`; `Option<u64>` from a number).
pub trait Layered: Sized {
    /// The value one layer gives.
    type Layer: Clone + FromEnvironment;

    fn from_layer(layer: Self::Layer) -> Self;
}

/// Reads a variable's text; the error says what was expected (the caller names the variable).
pub trait FromEnvironment: Sized {
    fn from_environment(text: &str) -> Result<Self, String>;
}

macro_rules! layered_as_itself {
    ($($kind:ty),*) => {
        $(
            impl Layered for $kind {
                type Layer = $kind;

                fn from_layer(layer: $kind) -> Self {
                    layer
                }
            }

            impl Layered for Option<$kind> {
                type Layer = $kind;

                fn from_layer(layer: $kind) -> Self {
                    Some(layer)
                }
            }
        )*
    };
}

layered_as_itself!(u32, u64, usize, i32, i64, bool, String, PathBuf);

impl Layered for Vec<String> {
    type Layer = NameList;

    fn from_layer(layer: NameList) -> Self {
        layer.0
    }
}

impl Layered for Option<Vec<usize>> {
    type Layer = CpuList;

    fn from_layer(layer: CpuList) -> Self {
        Some(layer.0)
    }
}

macro_rules! numbers_from_environment {
    ($($kind:ty),*) => {
        $(
            impl FromEnvironment for $kind {
                fn from_environment(text: &str) -> Result<Self, String> {
                    text.trim().parse().map_err(|_| "not a non-negative integer".to_owned())
                }
            }
        )*
    };
}

numbers_from_environment!(u32, u64, usize);

macro_rules! signed_from_environment {
    ($($kind:ty),*) => {
        $(
            impl FromEnvironment for $kind {
                fn from_environment(text: &str) -> Result<Self, String> {
                    text.trim().parse().map_err(|_| "not an integer".to_owned())
                }
            }
        )*
    };
}

signed_from_environment!(i32, i64);

impl FromEnvironment for bool {
    fn from_environment(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        }
    }
}

impl FromEnvironment for String {
    fn from_environment(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FromEnvironment for PathBuf {
    fn from_environment(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
}

impl FromEnvironment for NameList {
    fn from_environment(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

impl FromEnvironment for CpuList {
    fn from_environment(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

/// Declares every setting once; see the module documentation for what it generates.
///
/// Each entry: its documentation (`///`), `#[setting(value = "UNIT", help = "…")]` with an
/// optional `default = "in words"`, `secret = true` and range (`min = 1` or `min = 1, max = 99`,
/// checked by `Config::validate` and shown in the reference), any `#[serde(…)]` of the field, then
/// `key: Type = default expression,`. The entries after `toml_only` are TOML tables with no
/// variable or flag.
macro_rules! settings {
    (@option) => { None };
    (@option $text:literal) => { Some($text) };
    (@secret) => { false };
    (@secret $secret:literal) => { $secret };
    (@bound) => { None };
    (@bound $bound:expr) => { Some(($bound) as i128) };
    (
        $(
            $(#[doc = $doc:literal])+
            #[setting(value = $value:literal, help = $help:literal
                $(, default = $default_doc:literal)? $(, secret = $secret:literal)?
                $(, min = $min:expr $(, max = $max:expr)?)?)]
            $(#[serde($($serde:tt)*)])*
            $key:ident: $kind:ty = $default:expr,
        )*
        toml_only {
            $(
                $(#[doc = $table_doc:literal])+
                #[setting(help = $table_help:literal $(, default = $table_default_doc:literal)?)]
                $table_key:ident: $table_kind:ty = $table_default:expr,
            )*
        }
    ) => {
        /// The agent's settings. Field names are the TOML keys; each is declared once, in
        /// `config/declarations.rs`, and documented in `docs/configuration.md` from there.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)*)])*
                pub $key: $kind,
            )*
            $(
                $(#[doc = $table_doc])+
                pub $table_key: $table_kind,
            )*
        }

        impl Config {
            /// Refuses a number outside the range declared with its setting, naming the key.
            pub(super) fn check_declared_ranges(&self) -> Result<(), ConfigError> {
                $(
                    $(
                        let _ = stringify!($min);
                        $crate::config::settings::check_range(stringify!($key), &self.$key)?;
                    )?
                )*
                Ok(())
            }
        }

        impl Default for Config {
            fn default() -> Self {
                Self {
                    $($key: $default,)*
                    $($table_key: $table_default,)*
                }
            }
        }

        /// Settings given on top of the file, by environment or by flag (every key but the
        /// TOML-only tables). `None` leaves the setting as it is.
        #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
        pub struct Overrides {
            $(
                #[arg(
                    long,
                    value_name = $value,
                    help = $crate::config::settings::flag_help($help, stringify!($key)),
                    allow_negative_numbers = true
                )]
                pub $key: Option<<$kind as $crate::config::settings::Layered>::Layer>,
            )*
        }

        impl Overrides {
            /// Reads the `SLUICE_*` variables out of `environment`; other variables are
            /// ignored. An unknown `SLUICE_*` name is logged (not an error: wrappers and test
            /// harnesses set their own `SLUICE_` variables), a bad value is an error naming the
            /// variable.
            pub fn from_environment(
                environment: impl IntoIterator<Item = (String, String)>,
            ) -> Result<Self, ConfigError> {
                use $crate::config::settings::FromEnvironment as _;
                let mut overrides = Self::default();
                for (name, value) in environment {
                    let Some(key) = $crate::config::settings::environment_key(&name) else {
                        continue;
                    };
                    let parsed = |reason: String| ConfigError::InvalidValue {
                        source_name: name.clone(),
                        value: value.clone(),
                        reason,
                    };
                    match key.as_str() {
                        $(
                            stringify!($key) => {
                                overrides.$key = Some(
                                    <<$kind as $crate::config::settings::Layered>::Layer>::from_environment(&value)
                                        .map_err(parsed)?,
                                );
                            }
                        )*
                        _ => $crate::config::overrides::unknown_variable(&name),
                    }
                }
                Ok(overrides)
            }

            /// Overwrites every setting of `config` that these overrides carry; returns their
            /// keys.
            pub(super) fn apply_to(&self, config: &mut Config) -> Vec<&'static str> {
                use $crate::config::settings::Layered as _;
                let mut keys = Vec::new();
                $(
                    if let Some(value) = &self.$key {
                        config.$key = <$kind>::from_layer(value.clone());
                        keys.push(stringify!($key));
                    }
                )*
                keys
            }
        }

        /// Every setting, in declaration order (the TOML-only tables last).
        pub static SETTINGS: &[$crate::config::settings::Setting] = &[
            $(
                $crate::config::settings::Setting {
                    key: stringify!($key),
                    doc: concat!($($doc, "\n"),+),
                    help: $help,
                    value_name: $value,
                    default_doc: settings!(@option $($default_doc)?),
                    secret: settings!(@secret $($secret)?),
                    layered: true,
                    min: settings!(@bound $($min)?),
                    max: settings!(@bound $($($max)?)?),
                },
            )*
            $(
                $crate::config::settings::Setting {
                    key: stringify!($table_key),
                    doc: concat!($($table_doc, "\n"),+),
                    help: $table_help,
                    value_name: "TABLE",
                    default_doc: settings!(@option $($table_default_doc)?),
                    secret: false,
                    layered: false,
                    min: None,
                    max: None,
                },
            )*
        ];
    };
}

pub(super) use settings;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};
    use crate::config::{Config, Overrides, SETTINGS};

    /// A value every setting of this value name accepts.
    fn sample(setting: &super::Setting) -> &'static str {
        match setting.value_name {
            "BOOL" => "true",
            // Both a CPU list and a name list.
            "LIST" => "1",
            "MS" | "BYTES" | "COUNT" | "SECONDS" | "HOURS" | "CPU" | "PERCENT" => "7",
            _ => "text",
        }
    }

    #[test]
    fn each_field_is_declared_once_and_every_declaration_is_a_field() {
        let mut keys: Vec<&str> = SETTINGS.iter().map(|setting| setting.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SETTINGS.len(), "a key declared twice");
        // Serialized with every optional setting set, the struct's fields are the keys.
        let mut config = Config::default();
        for setting in SETTINGS.iter().filter(|setting| setting.layered) {
            let overrides = Overrides::from_environment([(
                setting.environment_variable().unwrap(),
                sample(setting).to_owned(),
            )])
            .unwrap();
            config.apply(&overrides);
        }
        let table = toml::Table::try_from(&config).unwrap();
        let mut fields: Vec<&str> = table.keys().map(String::as_str).collect();
        fields.push("listener_name");
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields, keys);
    }

    #[test]
    fn each_variable_and_each_flag_sets_its_setting_and_no_other() {
        for setting in SETTINGS.iter().filter(|setting| setting.layered) {
            let variable = setting.environment_variable().unwrap();
            let flag = setting.flag().unwrap();
            assert_eq!(variable, format!("SLUICE_{}", setting.key.to_uppercase()));
            assert_eq!(flag, format!("--{}", setting.key.replace('_', "-")));
            let from_environment =
                Overrides::from_environment([(variable.clone(), sample(setting).to_owned())])
                    .unwrap();
            assert_eq!(
                Config::default().apply(&from_environment),
                [setting.key],
                "{variable}"
            );
            let cli = Cli::try_parse_from(["sluice", "serve", &flag, sample(setting)])
                .unwrap_or_else(|error| panic!("{flag}: {error}"));
            let Command::Serve(args) = cli.command else {
                panic!("expected serve")
            };
            assert_eq!(from_environment, args.overrides, "{flag}");
        }
    }

    #[test]
    fn a_value_outside_a_declared_range_is_refused_naming_the_key() {
        let mut checked = 0;
        for setting in SETTINGS {
            let variable = match setting.environment_variable() {
                Some(variable) if setting.min.is_some() => variable,
                _ => continue,
            };
            let outside = [
                setting.min.map(|min| min - 1),
                setting.max.map(|max| max + 1),
            ];
            for value in outside.into_iter().flatten() {
                // A value the type cannot hold is refused by the parser already.
                let Ok(overrides) =
                    Overrides::from_environment([(variable.clone(), value.to_string())])
                else {
                    continue;
                };
                let mut config = Config::default();
                config.apply(&overrides);
                let error = config.validate().unwrap_err().to_string();
                assert!(error.contains(setting.key), "{variable}={value}: {error}");
                assert!(
                    error.contains("out of range"),
                    "{variable}={value}: {error}"
                );
                checked += 1;
            }
            for value in [setting.min, setting.max].into_iter().flatten() {
                assert!(
                    super::check_range(setting.key, &Some(value)).is_ok(),
                    "{}: {value} is in range",
                    setting.key
                );
            }
        }
        assert!(checked >= 30, "{checked} bounds checked");
    }

    #[test]
    fn only_upper_case_sluice_variables_name_settings() {
        assert_eq!(
            super::environment_key("SLUICE_FLUSH_INTERVAL_MS").as_deref(),
            Some("flush_interval_ms")
        );
        assert_eq!(super::environment_key("PATH"), None);
        let overrides =
            Overrides::from_environment([("SLUICE_listen".to_owned(), "x:1".to_owned())]).unwrap();
        assert_eq!(overrides, Overrides::default());
    }
}
