//! Unit tests of `configs.rs`: operation planning, list edits, and the decoder under mutation.

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;

use super::*;

fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
    AlterableConfig::default()
        .with_name(StrBytes::from_string(name.to_owned()))
        .with_config_operation(operation)
        .with_value(value.map(|value| StrBytes::from_string(value.to_owned())))
}

fn defaults() -> Vec<ConfigEntry> {
    known_configs()
        .iter()
        .map(|spec| ConfigEntry {
            name: spec.name,
            value: spec.default.to_owned(),
            is_default: true,
        })
        .collect()
}

#[test]
fn list_edits_keep_order_and_skip_duplicates() {
    assert_eq!(edit_list("delete", "compact", true), "delete,compact");
    assert_eq!(
        edit_list("delete,compact", "compact", true),
        "delete,compact"
    );
    assert_eq!(edit_list("delete,compact", "delete", false), "compact");
    assert_eq!(edit_list("delete", "delete", false), "");
}

#[test]
fn plan_maps_operations_to_kafka_errors() {
    let set = plan_alter(
        &[
            op("retention.ms", OP_SET, Some("1000")),
            op("segment.ms", OP_DELETE, None),
            op("cleanup.policy", OP_APPEND, Some("compact")),
        ],
        &defaults(),
    )
    .unwrap();
    assert_eq!(
        set,
        vec![
            ("retention.ms".to_owned(), Some("1000".to_owned())),
            ("segment.ms".to_owned(), None),
            (
                "cleanup.policy".to_owned(),
                Some("delete,compact".to_owned())
            ),
        ]
    );
    let code = |ops: &[AlterableConfig]| plan_alter(ops, &defaults()).unwrap_err().0;
    assert_eq!(code(&[op("retention.ms", OP_SET, Some("soon"))]), 40);
    assert_eq!(code(&[op("no.such", OP_DELETE, None)]), 40);
    assert_eq!(code(&[op("retention.ms", OP_APPEND, Some("1"))]), 42);
    assert_eq!(code(&[op("retention.ms", OP_SET, None)]), 42);
    assert_eq!(code(&[op("retention.ms", 9, Some("1"))]), 42);
    assert_eq!(
        code(&[
            op("retention.ms", OP_SET, Some("1")),
            op("retention.ms", OP_DELETE, None)
        ]),
        42
    );
    // Subtracting the only policy leaves an empty list, which is not a valid value.
    assert_eq!(
        code(&[op("cleanup.policy", OP_SUBTRACT, Some("delete"))]),
        40
    );
}

#[test]
fn mutated_config_requests_never_panic_the_decoder() {
    use bytes::{Buf, Bytes};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
    use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest};

    use crate::protocol::client_codec::encode_request;
    use crate::protocol::codec::decode_request;

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
    ]);
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![op("retention.ms", OP_SET, Some("1"))]),
    ]);
    let mut frames = Vec::new();
    for version in 1..=4 {
        frames.push(encode_request(
            ApiKey::DescribeConfigs,
            version,
            1,
            None,
            &describe,
        ));
    }
    for version in 0..=1 {
        frames.push(encode_request(
            ApiKey::IncrementalAlterConfigs,
            version,
            1,
            None,
            &alter,
        ));
    }
    let frames: Vec<Vec<u8>> = frames
        .into_iter()
        .map(|frame| {
            let mut frame = frame.unwrap();
            frame.advance(4);
            frame.to_vec()
        })
        .collect();
    for frame in &frames {
        assert!(decode_request(Bytes::from(frame.clone())).is_ok());
    }
    // Deterministic xorshift so a failure reproduces; keep the header's first 4 bytes.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut frame = frames[(state % frames.len() as u64) as usize].clone();
        for shift in [8, 24, 40] {
            let position = 4 + ((state >> shift) as usize) % (frame.len() - 4);
            frame[position] = (state >> (shift + 8)) as u8;
        }
        let _ = decode_request(Bytes::from(frame));
    }
}

#[test]
fn every_engine_config_has_a_wire_type() {
    for entry in defaults() {
        assert_ne!(config_type(entry.name), 0, "{}", entry.name);
    }
}
