//! Topic configs: Kafka's names, Kafka's defaults, Kafka's value checks.
//!
//! A topic stores only its *overrides*; defaults are filled in when configs are described. That
//! keeps checkpoints small and lets a future release change a default without rewriting state.
//! The table is closed: an unknown name is rejected rather than stored, because a setting we
//! would silently ignore is worse than a clear `INVALID_CONFIG`.

use std::collections::BTreeMap;

use super::error::MetadataError;

/// Longest accepted config value, in bytes.
pub const CONFIG_VALUE_LEN_MAX: usize = 1024;

/// How a config value is checked.
#[derive(Debug, Clone, Copy)]
enum ValueRule {
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// One of a fixed set of strings (Kafka's spelling, case-sensitive).
    OneOf(&'static [&'static str]),
}

/// One known topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigSpec {
    pub name: &'static str,
    pub default: &'static str,
    rule: ValueRule,
}

const I32_MAX: i64 = i32::MAX as i64;

/// Every topic config Sluice accepts, sorted by name.
const CONFIGS: &[ConfigSpec] = &[
    ConfigSpec {
        name: "cleanup.policy",
        default: "delete",
        rule: ValueRule::OneOf(&["delete", "compact", "compact,delete", "delete,compact"]),
    },
    ConfigSpec {
        name: "compression.type",
        default: "producer",
        rule: ValueRule::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    },
    ConfigSpec {
        name: "delete.retention.ms",
        default: "86400000",
        rule: ValueRule::Int {
            min: 0,
            max: i64::MAX,
        },
    },
    ConfigSpec {
        name: "max.message.bytes",
        default: "1048588",
        rule: ValueRule::Int {
            min: 0,
            max: I32_MAX,
        },
    },
    ConfigSpec {
        name: "message.timestamp.type",
        default: "CreateTime",
        rule: ValueRule::OneOf(&["CreateTime", "LogAppendTime"]),
    },
    ConfigSpec {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        rule: ValueRule::Int {
            min: 1,
            max: i64::MAX,
        },
    },
    ConfigSpec {
        name: "min.compaction.lag.ms",
        default: "0",
        rule: ValueRule::Int {
            min: 0,
            max: i64::MAX,
        },
    },
    ConfigSpec {
        name: "min.insync.replicas",
        default: "1",
        rule: ValueRule::Int {
            min: 1,
            max: I32_MAX,
        },
    },
    ConfigSpec {
        name: "retention.bytes",
        default: "-1",
        rule: ValueRule::Int {
            min: -1,
            max: i64::MAX,
        },
    },
    ConfigSpec {
        name: "retention.ms",
        default: "604800000",
        rule: ValueRule::Int {
            min: -1,
            max: i64::MAX,
        },
    },
    ConfigSpec {
        name: "segment.bytes",
        default: "1073741824",
        rule: ValueRule::Int {
            min: 14,
            max: I32_MAX,
        },
    },
    ConfigSpec {
        name: "segment.ms",
        default: "604800000",
        rule: ValueRule::Int {
            min: 1,
            max: i64::MAX,
        },
    },
];

/// The specs of every accepted topic config, sorted by name.
pub fn known_configs() -> &'static [ConfigSpec] {
    CONFIGS
}

fn spec(name: &str) -> Option<&'static ConfigSpec> {
    CONFIGS.iter().find(|spec| spec.name == name)
}

/// True for a config name Sluice accepts.
pub fn is_known_config(name: &str) -> bool {
    spec(name).is_some()
}

/// The error for a name not in the table (echoing at most a short prefix of it).
pub fn unknown_config(name: &str) -> MetadataError {
    MetadataError::UnknownConfig {
        name: truncated(name),
    }
}

/// Checks one `name = value` override.
pub fn validate_config(name: &str, value: &str) -> Result<(), MetadataError> {
    let spec = spec(name).ok_or_else(|| unknown_config(name))?;
    let invalid = |reason: String| MetadataError::InvalidConfig {
        name: spec.name.to_owned(),
        reason,
    };
    if value.len() > CONFIG_VALUE_LEN_MAX {
        return Err(invalid(format!(
            "value longer than {CONFIG_VALUE_LEN_MAX} bytes"
        )));
    }
    match spec.rule {
        ValueRule::Int { min, max } => match value.parse::<i64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(()),
            Ok(number) => Err(invalid(format!("{number} is outside {min}..={max}"))),
            Err(_) => Err(invalid(format!("'{}' is not an integer", truncated(value)))),
        },
        ValueRule::OneOf(allowed) if allowed.contains(&value) => Ok(()),
        ValueRule::OneOf(allowed) => Err(invalid(format!(
            "'{}' is not one of {}",
            truncated(value),
            allowed.join("|")
        ))),
    }
}

/// What an admin request may newly set: [`validate_config`], and only values the agent
/// enforces. The state machine itself stays with [`validate_config`], so a log written when a
/// value was still accepted replays unchanged.
///
/// Refused here: `compression.type` other than `producer` — the agent stores batches exactly as
/// the producer compressed them (the zero-copy write path) and does not recompress; set the
/// codec on the producer instead.
pub fn validate_new_config(name: &str, value: &str) -> Result<(), MetadataError> {
    validate_config(name, value)?;
    if name == "compression.type" && value != "producer" {
        return Err(MetadataError::InvalidConfig {
            name: name.to_owned(),
            reason: format!(
                "'{}' is not supported: batches are stored as the producer compressed them; set compression.type on the producer",
                truncated(value)
            ),
        });
    }
    Ok(())
}

/// Checks every override of a map.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    configs
        .iter()
        .try_for_each(|(name, value)| validate_config(name, value))
}

/// One row of DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    /// True when the topic has no override and `value` is the default.
    pub is_default: bool,
}

/// The overrides with every default filled in, sorted by name.
pub fn describe_configs(overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    CONFIGS
        .iter()
        .map(|spec| match overrides.get(spec.name) {
            Some(value) => ConfigEntry {
                name: spec.name,
                value: value.clone(),
                is_default: false,
            },
            None => ConfigEntry {
                name: spec.name,
                value: spec.default.to_owned(),
                is_default: true,
            },
        })
        .collect()
}

/// Error messages echo input; cap what they echo so an error never carries a megabyte.
fn truncated(text: &str) -> String {
    const ECHO_LEN_MAX: usize = 64;
    match text.char_indices().nth(ECHO_LEN_MAX) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}
