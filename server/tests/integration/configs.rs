//! DescribeConfigs, IncrementalAlterConfigs and DescribeCluster over a real socket, plus
//! kafka-python's admin client when it is installed (see `kafka_python.rs` for how to enable it).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{RawClient, create_topics_request};
use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn create_topic_with(client: &mut RawClient, name: &str, configs: &[(&str, &str)]) {
    let mut request = create_topics_request(&[(name, 1)]);
    request.topics[0].configs = configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(text(name))
                .with_value(Some(text(value)))
        })
        .collect();
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
}

fn describe(
    client: &mut RawClient,
    version: i16,
    resources: &[(i8, &str, Option<&[&str]>)],
    include_synonyms: bool,
) -> Vec<DescribeConfigsResult> {
    let request = DescribeConfigsRequest::default()
        .with_resources(
            resources
                .iter()
                .map(|(kind, name, keys)| {
                    DescribeConfigsResource::default()
                        .with_resource_type(*kind)
                        .with_resource_name(text(name))
                        .with_configuration_keys(
                            keys.map(|keys| keys.iter().map(|key| text(key)).collect()),
                        )
                })
                .collect(),
        )
        .with_include_synonyms(include_synonyms);
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, version, &request);
    assert_eq!(response.results.len(), resources.len());
    response.results
}

/// name → (value, source) of a topic, all configs, at the newest version.
fn topic_configs(client: &mut RawClient, topic: &str) -> BTreeMap<String, (String, i8)> {
    let results = describe(client, 4, &[(TOPIC, topic, None)], false);
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    results[0]
        .configs
        .iter()
        .map(|config| {
            (
                config.name.as_str().to_owned(),
                (
                    config.value.as_ref().unwrap().as_str().to_owned(),
                    config.config_source,
                ),
            )
        })
        .collect()
}

/// (resource type, resource name, [(config name, operation, value)]).
type AlterResource<'a> = (i8, &'a str, &'a [(&'a str, i8, Option<&'a str>)]);

fn alter(
    client: &mut RawClient,
    version: i16,
    resources: &[AlterResource<'_>],
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(
            resources
                .iter()
                .map(|(kind, name, configs)| {
                    AlterConfigsResource::default()
                        .with_resource_type(*kind)
                        .with_resource_name(text(name))
                        .with_configs(
                            configs
                                .iter()
                                .map(|(name, operation, value)| {
                                    AlterableConfig::default()
                                        .with_name(text(name))
                                        .with_config_operation(*operation)
                                        .with_value(value.map(text))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
        .with_validate_only(validate_only);
    let response: IncrementalAlterConfigsResponse =
        client.call(ApiKey::IncrementalAlterConfigs, version, &request);
    assert_eq!(response.responses.len(), resources.len());
    for (answer, (kind, name, _)) in response.responses.iter().zip(resources) {
        assert_eq!(answer.resource_type, *kind);
        assert_eq!(answer.resource_name.as_str(), *name);
    }
    response
        .responses
        .iter()
        .map(|answer| {
            (
                answer.error_code,
                answer.error_message.as_ref().map(|m| m.as_str().to_owned()),
            )
        })
        .collect()
}

#[test]
fn describe_configs_marks_overrides_and_defaults() {
    let agent = common::start_agent(|config| config.default_partitions = 3);
    let mut client = RawClient::connect(agent.addr());
    create_topic_with(
        &mut client,
        "cfg",
        &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
    );

    let configs = topic_configs(&mut client, "cfg");
    assert_eq!(
        configs["retention.ms"],
        ("1000".to_owned(), SOURCE_TOPIC_CONFIG)
    );
    assert_eq!(
        configs["cleanup.policy"],
        ("compact".to_owned(), SOURCE_TOPIC_CONFIG)
    );
    assert_eq!(
        configs["segment.ms"],
        ("604800000".to_owned(), SOURCE_DEFAULT_CONFIG)
    );
    assert_eq!(configs["max.message.bytes"].1, SOURCE_DEFAULT_CONFIG);
    let overridden: Vec<&String> = configs
        .iter()
        .filter(|(_, (_, source))| *source == SOURCE_TOPIC_CONFIG)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(overridden, vec!["cleanup.policy", "retention.ms"]);

    // v3+: types; synonyms on request: the override, then the default it hides.
    let results = describe(
        &mut client,
        3,
        &[(TOPIC, "cfg", Some(&["retention.ms"]))],
        true,
    );
    let [row] = results[0].configs.as_slice() else {
        panic!("{:?}", results[0].configs)
    };
    assert_eq!(row.config_type, 5, "LONG");
    assert!(!row.read_only && !row.is_sensitive);
    assert!(row.documentation.is_none());
    let synonyms: Vec<(&str, i8)> = row
        .synonyms
        .iter()
        .map(|synonym| (synonym.value.as_ref().unwrap().as_str(), synonym.source))
        .collect();
    assert_eq!(
        synonyms,
        vec![
            ("1000", SOURCE_TOPIC_CONFIG),
            ("604800000", SOURCE_DEFAULT_CONFIG)
        ]
    );

    // v1: the key filter keeps known names only; an empty filter lists nothing.
    let results = describe(
        &mut client,
        1,
        &[
            (TOPIC, "cfg", Some(&["segment.ms", "no.such.config"])),
            (TOPIC, "cfg", Some(&[])),
            (TOPIC, "missing", None),
            (TOPIC, "bad name!", None),
            (BROKER, "0", None),
            (BROKER, "5", None),
            (BROKER, "", None),
            (16, "metrics", None),
        ],
        false,
    );
    let names: Vec<&str> = results[0].configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["segment.ms"]);
    assert!(results[0].configs[0].synonyms.is_empty());
    assert!(results[1].configs.is_empty());
    let codes: Vec<i16> = results.iter().map(|result| result.error_code).collect();
    assert_eq!(codes, vec![0, 0, 3, 17, 0, 42, 0, 42]);
    assert!(
        results[0].error_message.is_none(),
        "null on success, as Kafka sends"
    );
    assert!(results[2].error_message.is_some());
    assert!(results[2].configs.is_empty());

    // The broker: read-only rows from the agent's configuration.
    let broker: BTreeMap<&str, (&str, bool, i8)> = results[4]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                (
                    c.value.as_ref().unwrap().as_str(),
                    c.read_only,
                    c.config_source,
                ),
            )
        })
        .collect();
    assert_eq!(
        broker["num.partitions"],
        ("3", true, SOURCE_STATIC_BROKER_CONFIG)
    );
    assert_eq!(broker["node.id"].0, "0");
    assert_eq!(broker["auto.create.topics.enable"].0, "true");
    assert!(results[6].configs.is_empty(), "no dynamic cluster defaults");
}

#[test]
fn incremental_alter_configs_round_trips_and_survives_restart() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    create_topic_with(&mut client, "alt", &[]);
    create_topic_with(&mut client, "other", &[]);

    // SET and APPEND (v1, flexible); two resources in one request, one log entry.
    let answers = alter(
        &mut client,
        1,
        &[
            (
                TOPIC,
                "alt",
                &[
                    ("retention.ms", SET, Some("5000")),
                    ("cleanup.policy", APPEND, Some("compact")),
                ],
            ),
            (TOPIC, "other", &[("segment.ms", SET, Some("60000"))]),
        ],
        false,
    );
    assert_eq!(answers, vec![(0, None), (0, None)]);
    let configs = topic_configs(&mut client, "alt");
    assert_eq!(
        configs["retention.ms"],
        ("5000".to_owned(), SOURCE_TOPIC_CONFIG)
    );
    assert_eq!(configs["cleanup.policy"].0, "delete,compact");
    assert_eq!(topic_configs(&mut client, "other")["segment.ms"].0, "60000");

    // validate_only checks and changes nothing.
    let answers = alter(
        &mut client,
        0,
        &[(TOPIC, "alt", &[("segment.ms", SET, Some("7"))])],
        true,
    );
    assert_eq!(answers[0].0, 0);
    let answers = alter(
        &mut client,
        0,
        &[(TOPIC, "alt", &[("segment.ms", SET, Some("x"))])],
        true,
    );
    assert_eq!(answers[0].0, 40);
    assert_eq!(
        topic_configs(&mut client, "alt")["segment.ms"].1,
        SOURCE_DEFAULT_CONFIG
    );

    // Errors, each for its own resource; a failed resource changes nothing of itself.
    let answers = alter(
        &mut client,
        0,
        &[
            (
                TOPIC,
                "alt",
                &[
                    ("retention.ms", SET, Some("soon")),
                    ("segment.ms", SET, Some("9")),
                ],
            ),
            (TOPIC, "missing", &[("retention.ms", SET, Some("1"))]),
            (TOPIC, "other", &[("retention.ms", APPEND, Some("1"))]),
            (BROKER, "0", &[("num.partitions", SET, Some("4"))]),
        ],
        false,
    );
    let codes: Vec<i16> = answers.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, vec![40, 3, 42, 42]);
    assert!(
        answers[3].1.as_ref().unwrap().contains("not supported"),
        "{answers:?}"
    );
    let configs = topic_configs(&mut client, "alt");
    assert_eq!(configs["retention.ms"].0, "5000");
    assert_eq!(configs["segment.ms"].1, SOURCE_DEFAULT_CONFIG);

    // DELETE goes back to the default.
    let answers = alter(
        &mut client,
        1,
        &[(
            TOPIC,
            "alt",
            &[
                ("retention.ms", DELETE, None),
                ("segment.ms", SET, Some("1234")),
            ],
        )],
        false,
    );
    assert_eq!(answers[0].0, 0, "{answers:?}");
    let before_restart = topic_configs(&mut client, "alt");
    assert_eq!(
        before_restart["retention.ms"],
        ("604800000".to_owned(), SOURCE_DEFAULT_CONFIG)
    );
    assert_eq!(
        before_restart["segment.ms"],
        ("1234".to_owned(), SOURCE_TOPIC_CONFIG)
    );

    // A fresh agent on the same store replays the log to the same configs.
    drop(client);
    let data_dir = agent.stop().unwrap();
    let agent = common::start_agent_in(data_dir, |_| {});
    let mut client = RawClient::connect(agent.addr());
    assert_eq!(topic_configs(&mut client, "alt"), before_restart);
    assert_eq!(topic_configs(&mut client, "other")["segment.ms"].0, "60000");
}

#[test]
fn describe_cluster_reports_this_agent_like_metadata() {
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    let metadata: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    for version in 0..=2 {
        let response: DescribeClusterResponse = client.call(
            ApiKey::DescribeCluster,
            version,
            &DescribeClusterRequest::default(),
        );
        assert_eq!(response.error_code, 0);
        assert_eq!(Some(&response.cluster_id), metadata.cluster_id.as_ref());
        assert_eq!(response.controller_id, metadata.controller_id);
        assert_eq!(response.brokers.len(), 1);
        let broker = &response.brokers[0];
        assert_eq!(broker.broker_id, metadata.brokers[0].node_id);
        assert_eq!(broker.host, metadata.brokers[0].host);
        assert_eq!(broker.port, i32::from(agent.addr().port()));
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
    }
    let asked = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let response: DescribeClusterResponse = client.call(ApiKey::DescribeCluster, 1, &asked);
    assert!(response.cluster_authorized_operations > 0);
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let response: DescribeClusterResponse = client.call(ApiKey::DescribeCluster, 1, &controllers);
    assert_eq!(response.error_code, 115);
    assert_eq!(response.controller_id, BrokerId(-1));
}

#[test]
fn a_huge_claimed_array_closes_the_connection_not_the_agent() {
    let agent = common::start_agent(|_| {});
    for (api_key, version, body) in [
        // DescribeConfigs v1: resources claims i32::MAX entries.
        (
            ApiKey::DescribeConfigs as i16,
            1_i16,
            vec![0x7f, 0xff, 0xff, 0xff, 0],
        ),
        // IncrementalAlterConfigs v0: one resource whose configs claim i32::MAX entries.
        (
            ApiKey::IncrementalAlterConfigs as i16,
            0,
            vec![0, 0, 0, 1, 2, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0],
        ),
    ] {
        let mut client = RawClient::connect(agent.addr());
        // Header v1: api key, version, correlation id, client id (null).
        let mut frame = Vec::new();
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&7_i32.to_be_bytes());
        frame.extend_from_slice(&(-1_i16).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut sized = (frame.len() as i32).to_be_bytes().to_vec();
        sized.extend_from_slice(&frame);
        client.send_raw(&sized);
        assert!(client.is_closed_by_agent());
    }
    // The agent still answers.
    let mut client = RawClient::connect(agent.addr());
    let response: DescribeClusterResponse = client.call(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(response.error_code, 0);
}

#[test]
fn kafka_python_admin_describes_and_alters_configs() {
    let Some(python) = common::python_with(
        "kafka_python_admin_describes_and_alters_configs",
        "kafka",
        "kafka-python",
    ) else {
        return;
    };
    let agent = common::start_agent(|_| {});
    let mut client = RawClient::connect(agent.addr());
    create_topic_with(&mut client, "py-cfg", &[("retention.ms", "1000")]);
    let script = format!(
        "{}/tests/python/configs_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(&python)
        .arg(&script)
        .args([&agent.addr().to_string(), "py-cfg"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kafka-python did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kafka-python failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
    // What the script altered is visible to the raw client too.
    assert_eq!(
        topic_configs(&mut client, "py-cfg")["segment.ms"].0,
        "3600000"
    );
}
