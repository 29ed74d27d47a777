#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::{Buf, Bytes};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::protocol::client_codec::{decode_response, encode_request};

/// A request frame without its size prefix, as the connection hands it to the decoder.
fn frame_body<R: Encodable>(api_key: ApiKey, version: i16, body: &R) -> Bytes {
    let mut frame = encode_request(api_key, version, 77, Some("test-client"), body).unwrap();
    frame.advance(4);
    frame
}

fn topics_request(names: &[&str]) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(
        names
            .iter()
            .map(|name| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
            })
            .collect(),
    ))
}

#[test]
fn every_supported_version_of_every_api_decodes() {
    for version in 0..=4 {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let Decoded::Request(decoded) =
            decode_request(frame_body(ApiKey::ApiVersions, version, &request)).unwrap()
        else {
            panic!("v{version} should be supported")
        };
        assert_eq!(decoded.header.correlation_id, 77);
        assert_eq!(decoded.api_version(), version);
        let Request::ApiVersions(body) = decoded.body else {
            panic!("wrong body")
        };
        if version >= 3 {
            assert_eq!(body.client_software_name.as_str(), "sluice-test");
            assert_eq!(body.client_software_version.as_str(), "1.0");
        }
    }
    for version in 0..=13 {
        let decoded = decode_request(frame_body(
            ApiKey::Metadata,
            version,
            &topics_request(&["a", "b"]),
        ))
        .unwrap();
        let Decoded::Request(DecodedRequest {
            body: Request::Metadata(body),
            header,
            ..
        }) = decoded
        else {
            panic!("v{version} should be supported")
        };
        assert_eq!(header.client_id.unwrap().as_str(), "test-client");
        let names: Vec<&str> = body
            .topics
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.name.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(names, ["a", "b"], "v{version}");
    }
}

#[test]
fn unsupported_api_versions_version_is_answered_not_closed() {
    let mut frame = frame_body(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default()).to_vec();
    frame[2..4].copy_from_slice(&99_i16.to_be_bytes());
    assert_eq!(
        decode_request(Bytes::from(frame)).unwrap(),
        Decoded::UnsupportedApiVersions {
            correlation_id: 77,
            version: 99
        }
    );
}

#[test]
fn requests_that_cannot_be_answered_are_refused_with_a_reason() {
    let metadata_v1 = frame_body(ApiKey::Metadata, 1, &topics_request(&["a"]));
    // Too short for api key + version + correlation id.
    assert_eq!(
        decode_request(metadata_v1.slice(..7)),
        Err(DecodeError::Truncated { frame_bytes: 7 })
    );
    // Unknown API key.
    let mut unknown = metadata_v1.to_vec();
    unknown[0..2].copy_from_slice(&i16::MAX.to_be_bytes());
    assert_eq!(
        decode_request(Bytes::from(unknown)),
        Err(DecodeError::UnknownApiKey { api_key: i16::MAX })
    );
    // Known API the agent does not implement (the legacy AlterConfigs), and a version above the
    // table.
    let alter_configs = frame_body(
        ApiKey::AlterConfigs,
        0,
        &kafka_protocol::messages::AlterConfigsRequest::default(),
    );
    assert!(matches!(
        decode_request(alter_configs),
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::AlterConfigs,
            ..
        })
    ));
    // Produce v13 (topic ids) is beyond the table.
    let produce = frame_body(
        ApiKey::Produce,
        13,
        &kafka_protocol::messages::ProduceRequest::default(),
    );
    assert!(matches!(
        decode_request(produce),
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            ..
        })
    ));
    let mut metadata_v14 = metadata_v1.to_vec();
    metadata_v14[2..4].copy_from_slice(&14_i16.to_be_bytes());
    assert!(matches!(
        decode_request(Bytes::from(metadata_v14)),
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::Metadata,
            version: 14
        })
    ));
    // A body cut short.
    let cut = metadata_v1.slice(..metadata_v1.len() - 1);
    assert!(
        matches!(decode_request(cut), Err(DecodeError::MalformedBody { .. })),
        "cut body"
    );
    // A header whose client id claims more bytes than the frame has.
    let mut header = metadata_v1.slice(..10).to_vec();
    header[8..10].copy_from_slice(&500_i16.to_be_bytes());
    assert!(matches!(
        decode_request(Bytes::from(header)),
        Err(DecodeError::MalformedHeader { .. })
    ));
}

#[test]
fn a_huge_topic_count_is_refused_before_any_allocation() {
    for version in [1_i16, 9, 12] {
        let mut frame = frame_body(
            ApiKey::Metadata,
            version,
            &MetadataRequest::default().with_topics(None),
        )
        .to_vec();
        // Header: 8 fixed bytes + client id (2 + 11) + (flexible: 1 tagged-field byte).
        let body_start = 8 + 2 + 11 + usize::from(version >= 9);
        let mut forged = frame[..body_start].to_vec();
        if version >= 9 {
            forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // u32::MAX as a varint
        } else {
            forged.extend_from_slice(&i32::MAX.to_be_bytes());
        }
        forged.extend_from_slice(&[0; 8]);
        frame = forged;
        let error = decode_request(Bytes::from(frame)).unwrap_err();
        assert!(
            matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("claims")),
            "v{version}: {error}"
        );
    }
}

fn delete_records_request() -> kafka_protocol::messages::DeleteRecordsRequest {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    kafka_protocol::messages::DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(7),
                    DeleteRecordsPartition::default()
                        .with_partition_index(1)
                        .with_offset(-1),
                ]),
        ])
}

#[test]
fn delete_records_decodes_at_every_version() {
    for version in 0..=2 {
        let frame = frame_body(ApiKey::DeleteRecords, version, &delete_records_request());
        let Decoded::Request(DecodedRequest {
            body: Request::DeleteRecords(body),
            ..
        }) = decode_request(frame).unwrap()
        else {
            panic!("v{version} should be supported")
        };
        assert_eq!(body, delete_records_request(), "v{version}");
    }
}

#[test]
fn a_delete_records_partition_count_beyond_the_frame_is_refused() {
    for version in [0_i16, 2] {
        let mut frame =
            frame_body(ApiKey::DeleteRecords, version, &delete_records_request()).to_vec();
        // Header: 8 fixed bytes + client id (2 + 11) + (flexible: 1 tagged-field byte); then the
        // topic count and the name "t".
        let flexible = version >= 2;
        let body_start = 8 + 2 + 11 + usize::from(flexible);
        let partitions_at = body_start + if flexible { 1 + 2 } else { 4 + 3 };
        let mut forged = frame[..partitions_at].to_vec();
        if flexible {
            forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        } else {
            forged.extend_from_slice(&i32::MAX.to_be_bytes());
        }
        forged.extend_from_slice(&[0; 16]);
        frame = forged;
        let error = decode_request(Bytes::from(frame)).unwrap_err();
        assert!(
            matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("claims")),
            "v{version}: {error}"
        );
    }
}

#[test]
fn topic_count_check_accepts_real_requests() {
    for version in 0..=13 {
        let body = topics_request(&["x"; 5]);
        let mut bytes = bytes::BytesMut::new();
        body.encode(&mut bytes, version).unwrap();
        check_metadata_topic_count(&bytes, version).unwrap();
    }
}

#[test]
fn an_unterminated_topic_count_is_refused_not_decoded() {
    // kafka-protocol reads five bytes of 0xce as a count of about 1.5 billion topics and asks the
    // allocator for ~280 GB (the kafka_request fuzz target's find); the check must refuse it.
    for version in 9..=13 {
        let mut frame = frame_body(ApiKey::Metadata, version, &topics_request(&[])).to_vec();
        let body_start = 8 + 2 + 11 + 1;
        frame.truncate(body_start);
        frame.extend_from_slice(&[0xce; 40]);
        let error = decode_request(Bytes::from(frame)).unwrap_err();
        assert!(
            matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("varint")),
            "v{version}: {error}"
        );
    }
    assert!(check_metadata_topic_count(&[0x80; 3], 12).is_err());
}

#[test]
fn unsigned_varint_reader_matches_the_protocol_crate() {
    for value in [0_u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
        // Encoded independently: LEB128, seven bits per byte, low bits first.
        let mut bytes = Vec::new();
        let mut rest = value;
        while rest >= 0x80 {
            bytes.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        bytes.push(rest as u8);
        assert_eq!(read_unsigned_varint(&bytes), Some((value, bytes.len())));
    }
    assert_eq!(read_unsigned_varint(&[0x80]), None);
    assert_eq!(read_unsigned_varint(&[0xff; 6]), None);
}

#[test]
fn api_versions_responses_use_header_v0_at_every_version() {
    for version in 0..=4 {
        assert_eq!(ApiKey::ApiVersions.response_header_version(version), 0);
        let response = Response::ApiVersions(ApiVersionsResponse::default());
        let frame = encode_response(5, ApiKey::ApiVersions, version, &response).unwrap();
        let (header, _body): (_, ApiVersionsResponse) =
            decode_response(frame, ApiKey::ApiVersions, version).unwrap();
        assert_eq!(header.correlation_id, 5);
    }
}

#[test]
fn metadata_responses_encode_at_every_version() {
    for version in 0..=13 {
        let response = Response::Metadata(MetadataResponse::default());
        let frame = encode_response(9, ApiKey::Metadata, version, &response).unwrap();
        let (header, _body): (_, MetadataResponse) =
            decode_response(frame, ApiKey::Metadata, version).unwrap();
        assert_eq!(header.correlation_id, 9, "v{version}");
    }
}

#[path = "codec_groups_tests.rs"]
mod groups;

fn create_acls_request() -> kafka_protocol::messages::CreateAclsRequest {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![
        AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("payments"))
            .with_resource_pattern_type(4)
            .with_principal(StrBytes::from_static_str("User:alice"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(4)
            .with_permission_type(3),
    ])
}

#[test]
fn acl_requests_decode_at_every_version_and_forged_counts_are_refused() {
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use kafka_protocol::messages::{DeleteAclsRequest, DescribeAclsRequest};
    let delete = DeleteAclsRequest::default().with_filters(vec![
        DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_principal_filter(Some(StrBytes::from_static_str("User:bob"))),
    ]);
    let describe = DescribeAclsRequest::default()
        .with_resource_type_filter(2)
        .with_pattern_type_filter(2)
        .with_host_filter(None);
    for version in 1..=3 {
        let decoded = |frame| match decode_request(frame).unwrap() {
            Decoded::Request(request) => request.body,
            other => panic!("{other:?}"),
        };
        let body = decoded(frame_body(
            ApiKey::CreateAcls,
            version,
            &create_acls_request(),
        ));
        assert_eq!(
            body,
            Request::CreateAcls(create_acls_request()),
            "v{version}"
        );
        let body = decoded(frame_body(ApiKey::DeleteAcls, version, &delete));
        assert_eq!(body, Request::DeleteAcls(delete.clone()), "v{version}");
        let body = decoded(frame_body(ApiKey::DescribeAcls, version, &describe));
        assert_eq!(
            body,
            Request::DescribeAcls(Box::new(describe.clone())),
            "v{version}"
        );
        // The creations array claims two billion entries in a few bytes.
        let frame = frame_body(ApiKey::CreateAcls, version, &create_acls_request()).to_vec();
        let flexible = version >= 2;
        let body_start = 8 + 2 + 11 + usize::from(flexible);
        let mut forged = frame[..body_start].to_vec();
        if flexible {
            forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        } else {
            forged.extend_from_slice(&i32::MAX.to_be_bytes());
        }
        forged.extend_from_slice(&[0; 16]);
        let error = decode_request(Bytes::from(forged)).unwrap_err();
        assert!(
            matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("claims")),
            "v{version}: {error}"
        );
    }
}
