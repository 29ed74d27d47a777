//! Command-line options and their validation into [`Settings`].
//!
//! Defaults follow librdkafka's own (`linger.ms` 5, `batch.size` 1,000,000) so that a run with no
//! tuning flags measures the client as people deploy it. MB means 1,048,576 bytes, as in Kafka's
//! `kafka-producer-perf-test`, so numbers compare directly with that tool's.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;
use thiserror::Error;

use crate::keys::KeySpec;
use crate::payload::HEADER_BYTES;

/// Bytes in the MB of `--mb-per-sec` and of the reported MB/s.
pub const BYTES_PER_MB: f64 = 1_048_576.0;

/// Open-loop Kafka load generator: fixed-rate producers, end-to-end latency measured from each
/// record's intended send time (no coordinated omission).
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-loadgen", version)]
pub struct Options {
    /// produce: fixed-rate producers, consumers at the live edge. replay: read the topic's
    /// existing history from its first offset to its end as fast as possible, and verify it.
    #[arg(long, value_enum, default_value_t = Mode::Produce)]
    pub mode: Mode,
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(
        long,
        env = "SLUICE_LOADGEN_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Topic to produce to and consume from.
    #[arg(long, default_value = "sluice-loadgen")]
    pub topic: String,
    /// Partitions to create the topic with if it does not exist.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Replication factor to create the topic with if it does not exist.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    /// Target rate in records per second, over all producers [default: 1000].
    #[arg(long, conflicts_with = "mb_per_sec")]
    pub rate: Option<f64>,
    /// Target rate in MB (1,048,576 bytes) of record values per second, over all producers.
    #[arg(long)]
    pub mb_per_sec: Option<f64>,
    /// Size of each record value in bytes (at least 24, the timestamp header).
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Key distribution: none, uniform:N or zipf:N:s.
    #[arg(long, default_value = "none")]
    pub keys: KeySpec,
    /// Producer acknowledgement level.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Producer compression codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Producer linger.ms: how long a batch may wait for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: u32,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Warm-up in seconds: records intended during it are sent but not measured.
    #[arg(long, default_value_t = 5)]
    pub warmup_s: u64,
    /// Producer clients (each its own connection set), sharing the rate.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consumer clients measuring end-to-end latency; partitions are split among them (0: none).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Directory for produce.hgrm, e2e.hgrm and summary.json (created if missing).
    #[arg(long, default_value = "loadgen-out")]
    pub out: PathBuf,
    /// Seed for keys and filler, so runs can be repeated.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Upper bound in seconds on waiting, after the schedule ends, for late sends, acks and
    /// consumption; what is still missing then is reported, not waited for.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_s: u64,
    /// Replay only: upper bound in seconds on reading the topic to its end; what is unread then
    /// is reported as missing.
    #[arg(long, default_value_t = 1_800)]
    pub replay_timeout_s: u64,
    /// librdkafka property key=value for every client (producer, consumer, admin), e.g. the
    /// security settings of a TLS+SCRAM broker (repeatable); applied before the per-client ones.
    #[arg(long = "client-property", value_name = "KEY=VALUE")]
    pub client_properties: Vec<String>,
    /// Extra librdkafka producer property key=value (repeatable); applied last.
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    pub producer_properties: Vec<String>,
    /// Extra librdkafka consumer property key=value (repeatable); applied last.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    pub consumer_properties: Vec<String>,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Produce at the fixed rate and measure produce and end-to-end latency.
    Produce,
    /// Read an existing topic from each partition's first offset to its end (the high watermark
    /// when the run starts), report MB/s and time to the first record, verify nothing is missing.
    Replay,
}

/// `acks`: how many replicas must have the batch before the produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Acks {
    /// Fire and forget: the produce is "acknowledged" when it leaves the client.
    #[value(name = "0")]
    #[serde(rename = "0")]
    None,
    /// The partition leader has it.
    #[value(name = "1")]
    #[serde(rename = "1")]
    Leader,
    /// Every in-sync replica has it.
    #[value(name = "all")]
    #[serde(rename = "all")]
    All,
}

impl Acks {
    /// The librdkafka `acks` value.
    pub fn as_config(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Leader => "1",
            Self::All => "all",
        }
    }
}

/// Producer compression codec (`compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_config(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Why the options do not describe a runnable load.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum OptionsError {
    /// The resolved rate is not a finite positive number.
    #[error("rate must be a finite positive number of records/s, got {0}")]
    Rate(f64),
    /// Records must hold at least the timestamp header.
    #[error("--record-bytes {0} is below the {HEADER_BYTES}-byte timestamp header")]
    RecordBytes(usize),
    /// A count that must be at least one was zero.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    /// More consumers than partitions would leave consumers idle and measure nothing extra.
    #[error("--consumers {consumers} exceeds --partitions {partitions}")]
    ConsumersExceedPartitions {
        /// Requested consumers.
        consumers: u32,
        /// Requested partitions.
        partitions: u32,
    },
    /// A `--*-property` was not `key=value`.
    #[error("property {0:?} is not key=value")]
    Property(String),
}

/// Validated settings of one run; echoed into `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Produce or replay.
    pub mode: Mode,
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Topic name.
    pub topic: String,
    /// Partitions requested (used if the topic is created).
    pub partitions: u32,
    /// Replication factor requested (used if the topic is created).
    pub replication_factor: u16,
    /// Target records per second over all producers.
    pub records_per_sec: f64,
    /// Target MB of values per second (derived from the record rate and size).
    pub mb_per_sec: f64,
    /// Bytes per record value.
    pub record_bytes: usize,
    /// Key distribution, as given.
    pub keys: String,
    /// Producer acks.
    pub acks: Acks,
    /// Producer compression.
    pub compression: Compression,
    /// Producer linger.ms.
    pub linger_ms: u32,
    /// Producer batch.size.
    pub batch_bytes: u32,
    /// Measured seconds.
    pub duration_s: u64,
    /// Warm-up seconds.
    pub warmup_s: u64,
    /// Producer clients.
    pub producers: u32,
    /// Consumer clients.
    pub consumers: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Seed.
    pub seed: u64,
    /// Bound on the drain after the schedule ends.
    pub drain_timeout_s: u64,
    /// Replay only: bound on reading the topic to its end.
    pub replay_timeout_s: u64,
    /// Properties of every client (security settings: kept out of the summary, which would
    /// otherwise hold a password).
    #[serde(skip)]
    pub client_properties: Vec<(String, String)>,
    /// Extra producer properties.
    pub producer_properties: Vec<(String, String)>,
    /// Extra consumer properties.
    pub consumer_properties: Vec<(String, String)>,
    /// Parsed key distribution (not serialised; `keys` holds its text).
    #[serde(skip)]
    pub key_spec: KeySpec,
}

/// Default rate when neither `--rate` nor `--mb-per-sec` is given.
pub const DEFAULT_RECORDS_PER_SEC: f64 = 1_000.0;

impl Options {
    /// Checks the options and resolves the rate.
    pub fn validate(&self) -> Result<Settings, OptionsError> {
        if self.record_bytes < HEADER_BYTES {
            return Err(OptionsError::RecordBytes(self.record_bytes));
        }
        let record_bytes_f64 = self.record_bytes as f64;
        let records_per_sec = match (self.rate, self.mb_per_sec) {
            (Some(rate), _) => rate,
            (None, Some(mb_per_sec)) => mb_per_sec * BYTES_PER_MB / record_bytes_f64,
            (None, None) => DEFAULT_RECORDS_PER_SEC,
        };
        if !records_per_sec.is_finite() || records_per_sec <= 0.0 {
            return Err(OptionsError::Rate(records_per_sec));
        }
        for (name, value) in [
            ("partitions", self.partitions),
            ("producers", self.producers),
        ] {
            if value == 0 {
                return Err(OptionsError::Zero(name));
            }
        }
        if self.duration_s == 0 {
            return Err(OptionsError::Zero("duration-s"));
        }
        if self.replication_factor == 0 {
            return Err(OptionsError::Zero("replication-factor"));
        }
        if self.mode == Mode::Replay && self.consumers == 0 {
            return Err(OptionsError::Zero("consumers"));
        }
        if self.replay_timeout_s == 0 {
            return Err(OptionsError::Zero("replay-timeout-s"));
        }
        // A replay reads the topic as it exists, whatever `--partitions` says; extra consumers
        // are then simply not started (see `split_partitions`).
        if self.mode == Mode::Produce && self.consumers > self.partitions {
            return Err(OptionsError::ConsumersExceedPartitions {
                consumers: self.consumers,
                partitions: self.partitions,
            });
        }
        Ok(Settings {
            mode: self.mode,
            bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            records_per_sec,
            mb_per_sec: records_per_sec * record_bytes_f64 / BYTES_PER_MB,
            record_bytes: self.record_bytes,
            keys: self.keys.to_string(),
            acks: self.acks,
            compression: self.compression,
            linger_ms: self.linger_ms,
            batch_bytes: self.batch_bytes,
            duration_s: self.duration_s,
            warmup_s: self.warmup_s,
            producers: self.producers,
            consumers: self.consumers,
            out: self.out.clone(),
            seed: self.seed,
            drain_timeout_s: self.drain_timeout_s,
            replay_timeout_s: self.replay_timeout_s,
            client_properties: parse_properties(&self.client_properties)?,
            producer_properties: parse_properties(&self.producer_properties)?,
            consumer_properties: parse_properties(&self.consumer_properties)?,
            key_spec: self.keys,
        })
    }
}

fn parse_properties(properties: &[String]) -> Result<Vec<(String, String)>, OptionsError> {
    properties
        .iter()
        .map(|property| match property.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(OptionsError::Property(property.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn parse(arguments: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("sluice-loadgen").chain(arguments.iter().copied()))
    }

    #[test]
    fn every_documented_option_parses() {
        let options = parse(&[
            "--bootstrap",
            "127.0.0.1:19092",
            "--topic",
            "t",
            "--partitions",
            "4",
            "--rate",
            "5000",
            "--record-bytes",
            "1024",
            "--keys",
            "zipf:100:1.1",
            "--acks",
            "1",
            "--compression",
            "zstd",
            "--linger-ms",
            "2",
            "--batch-bytes",
            "65536",
            "--duration-s",
            "20",
            "--warmup-s",
            "3",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--out",
            "/tmp/x",
            "--seed",
            "9",
            "--producer-property",
            "enable.idempotence=true",
            "--client-property",
            "security.protocol=SASL_SSL",
        ])
        .unwrap();
        let settings = options.validate().unwrap();
        assert_eq!(settings.records_per_sec, 5_000.0);
        assert_eq!(settings.acks, Acks::Leader);
        assert_eq!(settings.compression.as_config(), "zstd");
        assert_eq!(
            settings.key_spec,
            KeySpec::Zipf {
                keys: 100,
                exponent: 1.1
            }
        );
        assert_eq!(
            settings.producer_properties,
            vec![("enable.idempotence".to_owned(), "true".to_owned())]
        );
        assert_eq!(
            settings.client_properties,
            vec![("security.protocol".to_owned(), "SASL_SSL".to_owned())]
        );
        assert!((settings.mb_per_sec - 5_000.0 * 1_024.0 / BYTES_PER_MB).abs() < 1e-9);
    }

    #[test]
    fn mb_per_sec_resolves_to_a_record_rate() {
        let settings = parse(&["--mb-per-sec", "10", "--record-bytes", "1024"])
            .unwrap()
            .validate()
            .unwrap();
        assert!((settings.records_per_sec - 10_240.0).abs() < 1e-9);
        assert!(
            parse(&["--rate", "1", "--mb-per-sec", "1"]).is_err(),
            "the two rates conflict"
        );
        assert_eq!(
            parse(&[]).unwrap().validate().unwrap().records_per_sec,
            DEFAULT_RECORDS_PER_SEC
        );
    }

    #[test]
    fn replay_mode_reads_whatever_partitions_exist() {
        let settings = parse(&[
            "--mode",
            "replay",
            "--partitions",
            "2",
            "--consumers",
            "4",
            "--replay-timeout-s",
            "60",
        ])
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(settings.mode, Mode::Replay);
        assert_eq!(settings.replay_timeout_s, 60);
        assert_eq!(parse(&[]).unwrap().validate().unwrap().mode, Mode::Produce);
    }

    #[test]
    fn invalid_loads_are_rejected() {
        let check = |arguments: &[&str]| parse(arguments).unwrap().validate();
        assert_eq!(check(&["--rate", "0"]), Err(OptionsError::Rate(0.0)));
        assert_eq!(
            check(&["--record-bytes", "10"]),
            Err(OptionsError::RecordBytes(10))
        );
        assert_eq!(
            check(&["--producers", "0"]),
            Err(OptionsError::Zero("producers"))
        );
        assert_eq!(
            check(&["--duration-s", "0"]),
            Err(OptionsError::Zero("duration-s"))
        );
        assert!(matches!(
            check(&["--partitions", "2", "--consumers", "3"]),
            Err(OptionsError::ConsumersExceedPartitions { .. })
        ));
        assert!(matches!(
            check(&["--consumer-property", "nokey"]),
            Err(OptionsError::Property(_))
        ));
        assert_eq!(
            check(&["--mode", "replay", "--consumers", "0"]),
            Err(OptionsError::Zero("consumers"))
        );
        assert_eq!(
            check(&["--replay-timeout-s", "0"]),
            Err(OptionsError::Zero("replay-timeout-s"))
        );
        assert!(parse(&["--mode", "tail"]).is_err());
        assert!(parse(&["--acks", "2"]).is_err());
        assert!(parse(&["--keys", "zipf:0:1"]).is_err());
    }
}
