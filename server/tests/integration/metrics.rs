//! The metrics and health endpoint (`metrics_listen`): `/readyz` and `/livez` answer 200 on a
//! serving agent, and `/metrics` counts what the agent did — requests by core and Kafka name,
//! bytes, connections, store calls by pool and op, appended log entries — in the Prometheus text
//! format. Scraped over real HTTP from the agent's own endpoint thread.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ProduceResponse};

/// `(status, body)` of `GET path`.
pub(crate) fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name{labels}` (exact label text), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_endpoint_reports_health_and_counts_requests_store_calls_and_log_entries() {
    let agent = common::start_agent(|config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
    });
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    assert_eq!(get(endpoint, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(get(endpoint, "/livez"), (200, "ok\n".to_owned()));
    assert_eq!(get(endpoint, "/nothing-here").0, 404);

    agent.create_topic("metered", 1);
    let mut client = common::RawClient::connect(agent.addr());
    for _ in 0..3 {
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &common::produce_request(-1, &[("metered", 0, common::batch(5, common::now_ms()))]),
        );
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }

    let (status, text) = get(endpoint, "/metrics");
    assert_eq!(status, 200);
    let produces = sample(
        &text,
        "sluice_requests_total{core=\"0\",request=\"Produce\"}",
    );
    assert_eq!(produces, Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "sluice_request_duration_seconds_count{core=\"0\",request=\"Produce\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_requests_total{core=\"0\",request=\"CreateTopics\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // This test's client is connected; create_topic's client has gone.
    assert_eq!(
        sample(&text, "sluice_connections{core=\"0\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "sluice_connections_accepted_total{core=\"0\"}").unwrap() >= 2.0);
    assert!(sample(&text, "sluice_bytes_in_total{core=\"0\"}").unwrap() > 0.0);
    assert!(sample(&text, "sluice_bytes_out_total{core=\"0\"}").unwrap() > 0.0);
    // A topic creation and three produces: at least four appended entries, each a PUT.
    let appended = sample(&text, "sluice_log_entries_appended_total").unwrap();
    assert!(appended >= 4.0, "{text}");
    let puts = sample(
        &text,
        "sluice_store_requests_total{pool=\"hot\",op=\"put\"}",
    )
    .unwrap();
    assert!(puts >= appended, "{text}");
    assert!(sample(&text, "sluice_log_position").unwrap() >= appended);
    assert_eq!(sample(&text, "sluice_log_fenced"), Some(0.0));
    assert_eq!(sample(&text, "sluice_ready"), Some(1.0));
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    // Every sample is `series value` with a number, every family has a TYPE.
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        let family = series.split('{').next().unwrap();
        let family = family
            .strip_suffix("_bucket")
            .or_else(|| family.strip_suffix("_sum"))
            .or_else(|| family.strip_suffix("_count"))
            .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
            .unwrap_or(family);
        assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
    }
}

/// Scrapes `/metrics` until `sluice_index_entries` is at least `wanted`, and returns it; fails
/// after 30 s (the gauge is refreshed every second).
fn wait_for_index_entries(endpoint: SocketAddr, wanted: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = get(endpoint, "/metrics");
        assert_eq!(status, 200);
        assert!(
            text.contains("# TYPE sluice_index_entries gauge\n"),
            "{text}"
        );
        // No sample until the recovered state was first counted.
        let entries = sample(&text, "sluice_index_entries");
        if let Some(entries) = entries
            && entries >= wanted
        {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "sluice_index_entries stayed at {entries:?}, not {wanted}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sluice_index_entries` counts the index entries of every partition: one per partition a
/// produce wrote, with compaction and retention off (the gauge does not ride on housekeeping),
/// and again from the recovered state right after a restart, before anything is produced.
#[test]
fn the_index_entries_gauge_counts_every_partitions_entries() {
    const PARTITIONS: i32 = 4;
    let configure = |config: &mut sluice_server::Config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
        config.compaction_interval_ms = 0;
    };
    let agent = common::start_agent(configure);
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    agent.create_topic("indexed", PARTITIONS);
    assert_eq!(wait_for_index_entries(endpoint, 0.0), 0.0);
    let mut client = common::RawClient::connect(agent.addr());
    // One acknowledged produce per partition: each is its own window, one entry each.
    for partition in 0..PARTITIONS {
        let response: ProduceResponse = client.call(
            ApiKey::Produce,
            9,
            &common::produce_request(
                -1,
                &[("indexed", partition, common::batch(5, common::now_ms()))],
            ),
        );
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let expected = f64::from(PARTITIONS);
    assert_eq!(wait_for_index_entries(endpoint, expected), expected);

    drop(client);
    let data_dir = agent.stop().unwrap();
    let agent = common::start_agent_in(data_dir, configure);
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    assert_eq!(wait_for_index_entries(endpoint, expected), expected);
}

/// `promtool check metrics` (Prometheus's own parser and linter) accepts the whole exposition of
/// an agent that has produced, fetched and used both store pools: every family once, with its
/// HELP and TYPE, names and labels as Prometheus wants them.
#[test]
fn promtool_accepts_the_exposition() {
    use sluice_tests::tools::{Tool, require};
    if !require("promtool_accepts_the_exposition", &[Tool::Promtool]) {
        return;
    }
    let agent = common::start_agent(|config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
    });
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    agent.create_topic("linted", 1);
    let mut client = common::RawClient::connect(agent.addr());
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &common::produce_request(-1, &[("linted", 0, common::batch(5, common::now_ms()))]),
    );
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let (status, text) = get(endpoint, "/metrics");
    assert_eq!(status, 200);
    // Both store pools report (the families must still appear once each).
    assert!(text.contains("pool=\"hot\""), "{text}");
    assert!(text.contains("pool=\"background\""), "{text}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every metric the Grafana dashboard (docs/grafana/sluice-dashboard.json) queries is one the
/// agent exports, so the dashboard cannot silently go stale.
#[test]
fn the_dashboard_queries_only_metrics_the_agent_exports() {
    let agent = common::start_agent(|config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
    });
    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    let (_, text) = get(endpoint, "/metrics");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/sluice-dashboard.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr
                .match_indices("sluice_")
                .chain(expr.match_indices("process_"))
            {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        let family = name
            .strip_suffix("_bucket")
            .filter(|base| families.contains(base))
            .unwrap_or(&name);
        assert!(
            families.contains(&family),
            "the dashboard queries {name}, which the agent does not export"
        );
    }
}
