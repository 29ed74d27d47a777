//! Client quotas over the wire: AlterClientQuotas and DescribeClientQuotas through the metadata
//! log (Kafka's refusals included), a Produce over its byte-rate quota answered with
//! `throttle_time_ms` and the connection muted for that long even when the client ignores it, a
//! Fetch over its quota answered empty, the quota series in `/metrics`, and the quotas back after
//! a restart.
//!
//! No wall-clock race: the only timing assertion is a lower bound (a muted connection cannot be
//! answered before its mute ends), and the window is 2 × 1 s so throttles are about a second.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::common::{self, RawClient};

/// The client id `RawClient` sends.
const CLIENT_ID: &str = "raw-test-client";
const TOPIC: &str = "metered";

fn string(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn alter(
    client: &mut RawClient,
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, f64, bool)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let request = AlterClientQuotasRequest::default()
        .with_validate_only(validate_only)
        .with_entries(vec![
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(entity_type, name)| {
                            EntityData::default()
                                .with_entity_type(string(entity_type))
                                .with_entity_name(name.map(string))
                        })
                        .collect(),
                )
                .with_ops(
                    ops.iter()
                        .map(|(key, value, remove)| {
                            OpData::default()
                                .with_key(string(key))
                                .with_value(*value)
                                .with_remove(*remove)
                        })
                        .collect(),
                ),
        ]);
    let response: AlterClientQuotasResponse = client.call(ApiKey::AlterClientQuotas, 1, &request);
    let entry = &response.entries[0];
    (
        entry.error_code,
        entry.error_message.as_ref().map(ToString::to_string),
    )
}

/// Every stored quota: `(entity as "type=name" pairs, key, value)`.
fn describe_all(client: &mut RawClient) -> Vec<(String, String, f64)> {
    let request =
        DescribeClientQuotasRequest::default().with_components(Vec::<ComponentData>::new());
    let response: DescribeClientQuotasResponse =
        client.call(ApiKey::DescribeClientQuotas, 1, &request);
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    let mut found = Vec::new();
    for entry in response.entries.unwrap() {
        let entity = entry
            .entity
            .iter()
            .map(|component| {
                format!(
                    "{}={}",
                    component.entity_type.as_str(),
                    component
                        .entity_name
                        .as_ref()
                        .map_or("<default>", |name| name.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        for value in entry.values {
            found.push((entity.clone(), value.key.to_string(), value.value));
        }
    }
    found.sort_by(|a, b| a.partial_cmp(b).unwrap());
    found
}

/// A produce of about 20 KB; its throttle time.
fn produce(client: &mut RawClient) -> i32 {
    let request =
        common::produce_request(-1, &[(TOPIC, 0, common::batch(1_000, common::now_ms()))]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    response.throttle_time_ms
}

/// `(throttle, record bytes)` of a Fetch of the whole partition.
fn fetch(client: &mut RawClient) -> (i32, usize) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(common::topic_name(TOPIC))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request);
    let bytes = response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.as_ref())
        .map(|records| records.len())
        .sum();
    (response.throttle_time_ms, bytes)
}

fn metrics(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn quotas_are_stored_enforced_with_throttles_and_survive_a_restart() {
    let configure = |config: &mut sluice_server::Config| {
        config.metrics_listen = Some("127.0.0.1:0".to_owned());
        config.quota_window_num = 2;
        config.quota_window_size_seconds = 1;
    };
    let agent = common::start_agent(configure);
    agent.create_topic(TOPIC, 1);
    let mut client = RawClient::connect(agent.addr());

    // Kafka's refusals: an unknown key, what Sluice does not enforce, a fractional LONG, IP.
    let user = [("user", Some("alice"))];
    let (code, message) = alter(&mut client, &user, &[("bogus", 1.0, false)], false);
    assert_eq!(
        (code, message.as_deref()),
        (42, Some("Invalid configuration key bogus"))
    );
    let (code, message) = alter(
        &mut client,
        &user,
        &[("controller_mutation_rate", 5.0, false)],
        false,
    );
    assert_eq!(code, 42);
    assert!(message.unwrap().contains("not enforced"));
    let (code, _) = alter(
        &mut client,
        &user,
        &[("producer_byte_rate", 1.5, false)],
        false,
    );
    assert_eq!(code, 42);
    let (code, message) = alter(
        &mut client,
        &[("ip", Some("127.0.0.1"))],
        &[("connection_creation_rate", 5.0, false)],
        false,
    );
    assert_eq!(code, 42);
    assert!(message.unwrap().contains("not enforced"));
    // validate_only checks and writes nothing; success has a null message, as in Kafka.
    let (code, message) = alter(
        &mut client,
        &[("user", None)],
        &[("consumer_byte_rate", 1e6, false)],
        true,
    );
    assert_eq!((code, message), (0, None));
    assert!(describe_all(&mut client).is_empty());

    // No quota yet: not throttled.
    assert_eq!(produce(&mut client), 0);
    let clients = [("client-id", Some(CLIENT_ID))];
    assert_eq!(
        alter(
            &mut client,
            &clients,
            &[("producer_byte_rate", 10_000.0, false)],
            false
        )
        .0,
        0
    );
    assert_eq!(
        alter(
            &mut client,
            &[("user", None)],
            &[("request_percentage", 1_000.0, false)],
            false
        )
        .0,
        0
    );
    assert_eq!(
        describe_all(&mut client),
        vec![
            (
                format!("client-id={CLIENT_ID}"),
                "producer_byte_rate".to_owned(),
                10_000.0
            ),
            (
                "user=<default>".to_owned(),
                "request_percentage".to_owned(),
                1_000.0
            ),
        ]
    );

    // About 20 KB against 10 KB/s over a window of at least one second: throttled.
    let throttle_ms = produce(&mut client);
    assert!(throttle_ms > 0, "throttle {throttle_ms}");
    // A client that ignores the throttle is not read from until it has passed.
    let sent = Instant::now();
    let _ = produce(&mut client);
    let waited_ms = sent.elapsed().as_millis();
    assert!(
        waited_ms * 2 >= throttle_ms as u128,
        "answered after {waited_ms} ms, throttled {throttle_ms} ms"
    );

    // A Fetch over its quota is answered empty, with the throttle.
    assert_eq!(
        alter(
            &mut client,
            &clients,
            &[("consumer_byte_rate", 1_000.0, false)],
            false
        )
        .0,
        0
    );
    let (fetch_throttle_ms, bytes) = fetch(&mut client);
    assert!(
        fetch_throttle_ms > 0 && bytes == 0,
        "{fetch_throttle_ms} {bytes}"
    );
    // Under a quota that allows a batch a window, the Fetch is capped to the window's worth (as
    // Kafka caps it) and delivers: uncapped, the ~60 KB response would be throttled, answered
    // empty and asked for again forever.
    assert_eq!(
        alter(
            &mut client,
            &clients,
            &[("consumer_byte_rate", 30_000.0, false)],
            false
        )
        .0,
        0
    );
    let (fetch_throttle_ms, bytes) = fetch(&mut client);
    assert!(
        fetch_throttle_ms == 0 && bytes > 0 && bytes <= 30_000,
        "{fetch_throttle_ms} {bytes}"
    );

    let endpoint = agent.agent.as_ref().unwrap().metrics_addr().unwrap();
    let text = metrics(endpoint);
    let labels = format!("{{quota=\"produce\",user=\"\",client_id=\"{CLIENT_ID}\"}}");
    let throttled = sample(
        &text,
        &format!("sluice_quota_throttle_time_seconds_total{labels}"),
    );
    assert!(throttled.unwrap() > 0.0, "{text}");
    let bytes = sample(&text, &format!("sluice_quota_bytes_total{labels}"));
    assert!(bytes.unwrap() > 20_000.0, "{text}");
    assert!(text.contains("sluice_quota_request_time_seconds_total{quota=\"request\",user=\"ANONYMOUS\",client_id=\"\"}"), "{text}");

    // Removing a key; then a restart: the quotas come back from the log, and the first produce
    // after the start is measured against them.
    assert_eq!(
        alter(
            &mut client,
            &clients,
            &[("consumer_byte_rate", 0.0, true)],
            false
        )
        .0,
        0
    );
    drop(client);
    let data_dir = agent.stop().unwrap();
    let agent = common::start_agent_in(data_dir, configure);
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(describe_all(&mut client).len(), 2);
    // The core read the quotas before accepting: the very first produce is measured.
    let first = produce(&mut client);
    assert!(first > 0, "{first}");

    // A request quota far below what any request costs (0.0001 % of a core: a microsecond a
    // second): the next request's own core time puts the client over, and it is throttled.
    assert_eq!(
        alter(
            &mut client,
            &[("user", None)],
            &[("request_percentage", 0.0001, false)],
            false
        )
        .0,
        0
    );
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        metadata.throttle_time_ms > 0,
        "{}",
        metadata.throttle_time_ms
    );
}

/// librdkafka (confluent-kafka) under a `producer_byte_rate`: it reports the responses'
/// `throttle_time_ms` through its `throttle_cb` and, throttled by itself and by the muted
/// connection, stays near the quota. Skipped (failed under `CI=true`) without `confluent_kafka`.
#[test]
fn librdkafka_sees_throttle_time_and_holds_the_quota() {
    let Some(python) = common::python_with(
        "librdkafka_sees_throttle_time_and_holds_the_quota",
        "confluent_kafka",
        "confluent-kafka",
    ) else {
        return;
    };
    const QUOTA: f64 = 100_000.0;
    let agent = common::start_agent(|config| {
        config.quota_window_num = 2;
        config.quota_window_size_seconds = 1;
    });
    agent.create_topic(TOPIC, 1);
    let mut client = RawClient::connect(agent.addr());
    let (code, message) = alter(
        &mut client,
        &[("client-id", Some("rdkafka-metered"))],
        &[("producer_byte_rate", QUOTA, false)],
        false,
    );
    assert_eq!(code, 0, "{message:?}");
    let script = format!(
        "{}/tests/python/rdkafka_quota_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    // 1,000 records of 1,000 bytes: about ten seconds at the quota (the first second free).
    let output = std::process::Command::new("timeout")
        .args(["120", &python, &script])
        .args([
            &agent.addr().to_string(),
            TOPIC,
            "rdkafka-metered",
            "1000",
            "1000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> f64 {
        stdout
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    let rate = field("bytes") / field("elapsed_s");
    println!("librdkafka under a {QUOTA} B/s quota: {stdout}rate {rate:.0} B/s");
    assert!(field("throttle_events") >= 1.0, "{stdout}");
    assert!(field("max_throttle_ms") > 0.0, "{stdout}");
    assert!(
        rate <= QUOTA * 1.5,
        "rate {rate:.0} B/s, quota {QUOTA}: {stdout}"
    );
}
