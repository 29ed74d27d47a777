//! The `single-client` scenario: what a user runs first. Apache Kafka's own
//! `ProducerPerformance` (`kafka-producer-perf-test`) and `ConsumerPerformance`
//! (`kafka-consumer-perf-test`), Java clients from Maven Central, one producer and then one
//! consumer against each target — once with the client's default settings and once with the
//! settings docs/clients.md recommends for Sluice ([`RECOMMENDED_PRODUCER`],
//! [`RECOMMENDED_CONSUMER`]), each on a topic of its own.
//!
//! A Java producer sends at most one batch per partition per request and keeps at most five
//! requests in flight per connection, so with default settings its throughput is bounded by
//! partitions × 5 × `batch.size` ÷ acknowledgement latency; the two rows per target show how much
//! of a gap is that bound and how much is the broker. The consumer reads right after the producer,
//! so a broker serves it from memory (Sluice's block cache, Kafka's page cache).
//!
//! Rows: `<target> default` and `<target> recommended`, each with the producer's records/s, MB/s
//! and latency percentiles as the tool prints them, and the consumer's MB/s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Env;
use crate::report::Status;
use crate::targets::{self, StartError};

/// Partitions of each topic: the measurement (and a small service's topic).
const PARTITIONS: u32 = 6;
const RECORD_BYTES: u32 = 1024;
/// A tool's own limit, JVM start included.
const TOOL_TIMEOUT: Duration = Duration::from_secs(900);

/// Client properties as `(name, value)` pairs.
type Properties = &'static [(&'static str, &'static str)];

/// Producer settings recommended for Sluice (docs/clients.md has the measurement behind them):
/// batches large enough that five in flight per connection cover a flush window and a PUT.
pub const RECOMMENDED_PRODUCER: Properties = &[("batch.size", "262144"), ("linger.ms", "10")];
/// Consumer settings recommended for Sluice: larger per-partition fetches.
pub const RECOMMENDED_CONSUMER: Properties = &[("max.partition.fetch.bytes", "4194304")];

#[derive(Clone, Copy, Debug)]
struct Plan {
    records: u64,
    /// ProducerPerformance's `--throughput` (records/s); `None`: as fast as it can (-1).
    rate: Option<u64>,
}

/// The `fraud-rate` row: the fraud scenario's rate and record size (5,000 records/s of 1 KiB)
/// for 20 s, with the client's default settings, so its latency percentiles are a produce P99 at
/// that load rather than at the client's top speed.
const FRAUD_RATE: u64 = 5_000;
const FRAUD_RATE_RECORDS: u64 = 100_000;

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            records: if quick { 200_000 } else { 2_000_000 },
            rate: None,
        }
    }

    fn settings(self) -> Map<String, Value> {
        let mut settings = Map::new();
        settings.insert("records".into(), json!(self.records));
        settings.insert("record_bytes".into(), json!(RECORD_BYTES));
        settings.insert("partitions".into(), json!(PARTITIONS));
        settings.insert("client".into(), json!("Apache Kafka 4.4 Java tools"));
        settings
    }
}

/// What ProducerPerformance printed in its final line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProducerResult {
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// What ConsumerPerformance printed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ConsumerResult {
    pub mb: f64,
    pub mb_per_sec: f64,
    pub records: f64,
    pub fetch_mb_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SingleClientRow {
    pub target: String,
    /// `default` or `recommended`.
    pub client_settings: String,
    pub status: Status,
    pub settings: Map<String, Value>,
    pub producer: Option<ProducerResult>,
    pub consumer: Option<ConsumerResult>,
}

#[derive(Debug, Serialize)]
struct SingleClientReport {
    scenario: String,
    quick: bool,
    command: String,
    machine: String,
    rows: Vec<SingleClientRow>,
}

/// Parses ProducerPerformance's final line: `N records sent, R records/sec (M MB/sec), A ms avg
/// latency, X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th.`
pub fn parse_producer(output: &str) -> Option<ProducerResult> {
    let line = output
        .lines()
        .rev()
        .find(|line| line.contains("records sent") && line.contains("99.9th"))?;
    let number_before = |suffix: &str| -> Option<f64> {
        let end = line.find(suffix)?;
        let head = line.get(..end)?.trim_end();
        let start = head.rfind([' ', '(']).map_or(0, |i| i + 1);
        head.get(start..)?.parse().ok()
    };
    Some(ProducerResult {
        records_per_sec: number_before(" records/sec")?,
        mb_per_sec: number_before(" MB/sec")?,
        avg_ms: number_before(" ms avg latency")?,
        max_ms: number_before(" ms max latency")?,
        p50_ms: number_before(" ms 50th")?,
        p95_ms: number_before(" ms 95th")?,
        p99_ms: number_before(" ms 99th")?,
        p999_ms: number_before(" ms 99.9th")?,
    })
}

/// Parses ConsumerPerformance's header and value lines (comma-separated, named columns).
pub fn parse_consumer(output: &str) -> Option<ConsumerResult> {
    let lines: Vec<&str> = output.lines().collect();
    let header_at = lines
        .iter()
        .position(|line| line.contains("data.consumed.in.MB"))?;
    let names: Vec<&str> = lines.get(header_at)?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines
        .get(header_at + 1)?
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| -> Option<f64> {
        let at = names.iter().position(|n| *n == name)?;
        values.get(at)?.parse().ok()
    };
    Some(ConsumerResult {
        mb: column("data.consumed.in.MB")?,
        mb_per_sec: column("MB.sec")?,
        records: column("data.consumed.in.nMsg")?,
        fetch_mb_per_sec: column("fetch.MB.sec")?,
    })
}

/// Kafka's jars (tools included), fetched by `scripts/kafka/fetch-kafka.sh`.
fn kafka_lib(env: &Env) -> Result<PathBuf, String> {
    let lib = env.repo.join("scripts/kafka/lib");
    if !lib.join(".complete").exists() {
        return Err("Kafka's tools are missing: run `bash scripts/kafka/fetch-kafka.sh`".into());
    }
    if Command::new("java").arg("-version").output().is_err() {
        return Err("java not found (apt-get install openjdk-17-jre-headless)".into());
    }
    Ok(lib)
}

/// Runs a Kafka tool; its output (stdout and stderr) is also kept in `log`.
fn run_tool(lib: &Path, class: &str, args: &[String], log: &Path) -> Result<String, String> {
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg(TOOL_TIMEOUT.as_secs().to_string())
        .arg("java")
        .args([
            "-Xmx1g",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
        ])
        .arg(format!("{}/*", lib.display()))
        .arg(class)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run java {class}: {error}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::write(log, &text);
    if !output.status.success() {
        return Err(format!(
            "{class} exited with {} after {:.1} s (output in {})",
            output.status,
            started.elapsed().as_secs_f64(),
            log.display()
        ));
    }
    Ok(text)
}

/// ProducerPerformance's `--command-property` takes every pair after one flag (argparse4j: a
/// second flag replaces the first one's pairs, so only the last property would apply).
fn producer_properties(pairs: &[(&str, &str)]) -> Vec<String> {
    if pairs.is_empty() {
        return Vec::new();
    }
    std::iter::once("--command-property".to_owned())
        .chain(pairs.iter().map(|(key, value)| format!("{key}={value}")))
        .collect()
}

/// ConsumerPerformance's `--command-property` (joptsimple) takes one pair per flag, repeated.
fn consumer_properties(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(key, value)| ["--command-property".to_owned(), format!("{key}={value}")])
        .collect()
}

/// One producer run and one consumer run on a fresh topic.
fn measure(
    lib: &Path,
    running: &targets::Running,
    plan: Plan,
    variant: &str,
    producer_props: &[(&str, &str)],
    consumer_props: &[(&str, &str)],
    logs: &Path,
) -> Result<(ProducerResult, ConsumerResult), String> {
    let bootstrap = running.bootstrap.as_str();
    let client_config = running.client_config.as_deref();
    // Kafka's tools each name the client configuration file differently.
    let config = |flag: &str| -> Vec<String> {
        client_config.map_or_else(Vec::new, |file| {
            vec![flag.to_owned(), file.display().to_string()]
        })
    };
    let topic = format!("single-client-{variant}");
    let mut create = [
        "--bootstrap-server",
        bootstrap,
        "--create",
        "--topic",
        &topic,
        "--partitions",
        &PARTITIONS.to_string(),
        "--replication-factor",
        "1",
    ]
    .map(str::to_owned)
    .to_vec();
    create.extend(config("--command-config"));
    run_tool(
        lib,
        "org.apache.kafka.tools.TopicCommand",
        &create,
        &logs.join(format!("{variant}-topic.log")),
    )?;
    let mut produce: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &topic,
        "--num-records",
        &plan.records.to_string(),
        "--record-size",
        &RECORD_BYTES.to_string(),
        "--throughput",
        &plan
            .rate
            .map_or_else(|| "-1".to_owned(), |rate| rate.to_string()),
    ]
    .map(str::to_owned)
    .to_vec();
    produce.extend(producer_properties(producer_props));
    produce.extend(config("--producer.config"));
    let producer_log = logs.join(format!("{variant}-producer.log"));
    let output = run_tool(
        lib,
        "org.apache.kafka.tools.ProducerPerformance",
        &produce,
        &producer_log,
    )?;
    let producer = parse_producer(&output).ok_or_else(|| {
        format!(
            "no final line in ProducerPerformance's output ({})",
            producer_log.display()
        )
    })?;
    let mut consume: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &topic,
        "--num-records",
        &plan.records.to_string(),
        "--timeout",
        "60000",
    ]
    .map(str::to_owned)
    .to_vec();
    consume.extend(consumer_properties(consumer_props));
    consume.extend(config("--consumer.config"));
    let consumer_log = logs.join(format!("{variant}-consumer.log"));
    let output = run_tool(
        lib,
        "org.apache.kafka.tools.ConsumerPerformance",
        &consume,
        &consumer_log,
    )?;
    let consumer = parse_consumer(&output).ok_or_else(|| {
        format!(
            "no result in ConsumerPerformance's output ({})",
            consumer_log.display()
        )
    })?;
    // Kafka's tool stops at its timeout with fewer records and still prints a line.
    if consumer.records < plan.records as f64 {
        return Err(format!(
            "ConsumerPerformance read {} of {} records ({})",
            consumer.records,
            plan.records,
            consumer_log.display()
        ));
    }
    Ok((producer, consumer))
}

pub fn run(env: &Env, target_names: &[String], quick: bool, out: &Path) -> anyhow::Result<i32> {
    let plan = Plan::new(quick);
    let load_at_start = crate::load_average();
    let mut rows = Vec::new();
    let variants: [(&str, Properties, Properties); 3] = [
        ("default", &[], &[]),
        ("recommended", RECOMMENDED_PRODUCER, RECOMMENDED_CONSUMER),
        ("fraud-rate", &[], &[]),
    ];
    for name in target_names {
        eprintln!("sluice-bench: {name}: starting");
        let mut settings = plan.settings();
        let lib = match kafka_lib(env) {
            Ok(lib) => lib,
            Err(hint) => {
                for (variant, _, _) in variants {
                    rows.push(SingleClientRow {
                        target: name.clone(),
                        client_settings: variant.to_owned(),
                        status: Status::NotInstalled(hint.clone()),
                        settings: settings.clone(),
                        producer: None,
                        consumer: None,
                    });
                }
                continue;
            }
        };
        match targets::start(name, env) {
            Ok(running) => {
                settings.extend(running.settings.clone());
                let logs = out.join(name);
                std::fs::create_dir_all(&logs)?;
                for (variant, producer_props, consumer_props) in variants {
                    let mut row_settings = settings.clone();
                    let props: BTreeMap<&str, &str> = producer_props
                        .iter()
                        .chain(consumer_props)
                        .copied()
                        .collect();
                    row_settings.insert("client_properties".into(), json!(props));
                    let plan = if variant == "fraud-rate" {
                        Plan {
                            records: FRAUD_RATE_RECORDS,
                            rate: Some(FRAUD_RATE),
                        }
                    } else {
                        plan
                    };
                    row_settings.insert("records".into(), json!(plan.records));
                    if let Some(rate) = plan.rate {
                        row_settings.insert("producer_records_per_sec".into(), json!(rate));
                    }
                    eprintln!("sluice-bench: {name} {variant}: producer, then consumer");
                    let (status, producer, consumer) = match measure(
                        &lib,
                        &running,
                        plan,
                        variant,
                        producer_props,
                        consumer_props,
                        &logs,
                    ) {
                        Ok((producer, consumer)) => (Status::Ran, Some(producer), Some(consumer)),
                        Err(reason) => (Status::Failed(reason), None, None),
                    };
                    rows.push(SingleClientRow {
                        target: name.clone(),
                        client_settings: variant.to_owned(),
                        status,
                        settings: row_settings,
                        producer,
                        consumer,
                    });
                }
            }
            Err(error) => {
                let status = match error {
                    StartError::NotInstalled(hint) => Status::NotInstalled(hint),
                    StartError::Failed(reason) => {
                        Status::Failed(format!("could not start: {reason}"))
                    }
                };
                for (variant, _, _) in variants {
                    rows.push(SingleClientRow {
                        target: name.clone(),
                        client_settings: variant.to_owned(),
                        status: status.clone(),
                        settings: settings.clone(),
                        producer: None,
                        consumer: None,
                    });
                }
            }
        }
        for suffix in ["", "-stderr"] {
            let log = env.work_dir.join(format!("{name}{suffix}.log"));
            let _ = std::fs::copy(&log, out.join(format!("{name}{suffix}.log")));
        }
        let _ = std::fs::remove_dir_all(env.work_dir.join(name));
    }
    let report = SingleClientReport {
        scenario: "single-client".to_owned(),
        quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: format!(
            "{}; load average {load_at_start} at the start",
            crate::machine()
        ),
        rows,
    };
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = render(&report);
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("sluice-bench: wrote {}", out.display());
    let failed: Vec<&SingleClientRow> = report
        .rows
        .iter()
        .filter(|row| matches!(row.status, Status::Failed(_)))
        .collect();
    for row in &failed {
        eprintln!(
            "sluice-bench: FAILED: {} {}: {:?}",
            row.target, row.client_settings, row.status
        );
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

fn render(report: &SingleClientReport) -> String {
    let mut text = format!(
        "# sluice-bench: single-client{}\n\n`{}`\n\n{}\n\n",
        if report.quick { " (quick)" } else { "" },
        report.command,
        report.machine
    );
    text.push_str(
        "| target | client settings | produce MB/s | records/s | produce avg / p50 / p99 / p99.9 / max (ms) | consume MB/s | fetch MB/s | status |\n|---|---|---:|---:|---|---:|---:|---|\n",
    );
    for row in &report.rows {
        let produce = row.producer.map_or_else(
            || ("—".to_owned(), "—".to_owned(), "—".to_owned()),
            |p| {
                (
                    format!("{:.1}", p.mb_per_sec),
                    format!("{:.0}", p.records_per_sec),
                    format!(
                        "{:.0} / {:.0} / {:.0} / {:.0} / {:.0}",
                        p.avg_ms, p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
                    ),
                )
            },
        );
        let (consume, fetch) = row.consumer.map_or_else(
            || ("—".to_owned(), "—".to_owned()),
            |c| {
                (
                    format!("{:.1}", c.mb_per_sec),
                    format!("{:.1}", c.fetch_mb_per_sec),
                )
            },
        );
        let status = match &row.status {
            Status::Ran => "ran".to_owned(),
            other => format!("{other:?}"),
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.target,
            row.client_settings,
            produce.0,
            produce.1,
            produce.2,
            consume,
            fetch,
            status
        ));
    }
    // Each target against Kafka on the same kind of listener, per client setting, when that
    // Kafka ran in the same run.
    let base_row = |base: &str, variant: &str| {
        report
            .rows
            .iter()
            .find(|row| row.target == base && row.client_settings == variant)
    };
    let mut ratios = String::new();
    for row in report.rows.iter().filter(|row| row.target != "kafka") {
        let base = kafka_base(&row.target);
        if let (Some(base_row), Some(p), Some(c)) = (
            base_row(base, &row.client_settings),
            row.producer,
            row.consumer,
        ) && let (Some(bp), Some(bc)) = (base_row.producer, base_row.consumer)
        {
            ratios.push_str(&format!(
                "- {} {}: produce {:.2}× `{base}`'s MB/s, consume {:.2}×\n",
                row.target,
                row.client_settings,
                p.mb_per_sec / bp.mb_per_sec,
                c.mb_per_sec / bc.mb_per_sec
            ));
        }
    }
    if !ratios.is_empty() {
        text.push_str(
            "\nAgainst Apache Kafka with the same client settings on the same kind of listener \
             (`kafka-tls-scram` against plaintext `kafka`), same run:\n\n",
        );
        text.push_str(&ratios);
    }
    text
}

/// The Kafka target a target is compared with: the TLS+SCRAM targets with `kafka-tls-scram`,
/// which itself (and every other target) with plaintext `kafka`.
fn kafka_base(target: &str) -> &'static str {
    if target.ends_with("-tls-scram") && target != "kafka-tls-scram" {
        "kafka-tls-scram"
    } else {
        "kafka"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secured_targets_are_compared_with_the_secured_kafka() {
        assert_eq!(kafka_base("sluice-file-tls-scram"), "kafka-tls-scram");
        assert_eq!(kafka_base("kafka-tls-scram"), "kafka");
        assert_eq!(kafka_base("sluice-file"), "kafka");
    }

    #[test]
    fn producer_final_line_is_parsed_and_progress_lines_are_not() {
        let output = "356881 records sent, 71376.2 records/sec (69.70 MB/sec), 286.7 ms avg latency, 495.0 ms max latency.\n\
            2000000 records sent, 72463.768116 records/sec (70.77 MB/sec), 412.34 ms avg latency, 1187.00 ms max latency, 36 ms 50th, 900 ms 95th, 1187 ms 99th, 1200 ms 99.9th.\n";
        let parsed = parse_producer(output).expect("final line");
        assert_eq!(parsed.records_per_sec, 72_463.768_116);
        assert_eq!(parsed.mb_per_sec, 70.77);
        assert_eq!(parsed.avg_ms, 412.34);
        assert_eq!(parsed.max_ms, 1187.0);
        assert_eq!(parsed.p50_ms, 36.0);
        assert_eq!(parsed.p95_ms, 900.0);
        assert_eq!(parsed.p99_ms, 1187.0);
        assert_eq!(parsed.p999_ms, 1200.0);
        assert_eq!(
            parse_producer("356881 records sent, 71376.2 records/sec (69.70 MB/sec).\n"),
            None
        );
    }

    #[test]
    fn producer_properties_follow_one_flag_and_consumer_properties_one_each() {
        let pairs = [("batch.size", "262144"), ("linger.ms", "10")];
        assert_eq!(
            producer_properties(&pairs),
            ["--command-property", "batch.size=262144", "linger.ms=10"]
        );
        assert!(producer_properties(&[]).is_empty());
        assert_eq!(
            consumer_properties(&pairs),
            [
                "--command-property",
                "batch.size=262144",
                "--command-property",
                "linger.ms=10"
            ]
        );
    }

    #[test]
    fn consumer_columns_are_read_by_name() {
        let output = "WARN something\n\
            start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
            2026-12-05 17:00:00:000, 2026-12-05 17:00:06:000, 1953.1250, 325.5208, 2000000, 333333.3333, 120, 5880, 332.1641, 340136.0544\n";
        let parsed = parse_consumer(output).expect("values");
        assert_eq!(parsed.mb, 1953.125);
        assert_eq!(parsed.mb_per_sec, 325.5208);
        assert_eq!(parsed.records, 2_000_000.0);
        assert_eq!(parsed.fetch_mb_per_sec, 332.1641);
        assert_eq!(parse_consumer("no header here\n"), None);
    }
}
