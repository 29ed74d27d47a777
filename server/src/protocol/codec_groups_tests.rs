//! The group APIs' bodies: every supported version of a fully populated request decodes to what
//! was encoded (so the array guards in `group_shape` match the real layouts), and no forged
//! length anywhere in them can make the decoder allocate from it or panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::protocol::apis::supported_api;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group(value: &str) -> GroupId {
    GroupId(text(value))
}

fn topic(value: &str) -> TopicName {
    TopicName(text(value))
}

/// One request of `api_key` at `version` with every array non-empty and every field the version
/// has set; the decoded body must equal it.
fn populated(api_key: ApiKey, version: i16) -> Request {
    match api_key {
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::default();
            Request::FindCoordinator(match version {
                0 => request.with_key(text("g")),
                1..=3 => request.with_key(text("g")).with_key_type(1),
                _ => request
                    .with_key_type(0)
                    .with_coordinator_keys(vec![text("a"), text("bb")]),
            })
        }
        ApiKey::JoinGroup => {
            let mut request = JoinGroupRequest::default()
                .with_group_id(group("g"))
                .with_session_timeout_ms(10_000)
                .with_member_id(text("m"))
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(text("range"))
                        .with_metadata(Bytes::from_static(b"\x00\x01meta")),
                    JoinGroupRequestProtocol::default().with_name(text("roundrobin")),
                ]);
            if version >= 1 {
                request = request.with_rebalance_timeout_ms(20_000);
            }
            if version >= 5 {
                request = request.with_group_instance_id(Some(text("instance")));
            }
            if version >= 8 {
                request = request.with_reason(Some(text("why")));
            }
            Request::JoinGroup(Box::new(request))
        }
        ApiKey::SyncGroup => {
            let mut request = SyncGroupRequest::default()
                .with_group_id(group("g"))
                .with_generation_id(3)
                .with_member_id(text("m"))
                .with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text("m"))
                        .with_assignment(Bytes::from_static(b"assignment")),
                    SyncGroupRequestAssignment::default().with_member_id(text("n")),
                ]);
            if version >= 3 {
                request = request.with_group_instance_id(Some(text("instance")));
            }
            if version >= 5 {
                request = request
                    .with_protocol_type(Some(text("consumer")))
                    .with_protocol_name(Some(text("range")));
            }
            Request::SyncGroup(Box::new(request))
        }
        ApiKey::Heartbeat => {
            let mut request = HeartbeatRequest::default()
                .with_group_id(group("g"))
                .with_generation_id(4)
                .with_member_id(text("m"));
            if version >= 3 {
                request = request.with_group_instance_id(Some(text("instance")));
            }
            Request::Heartbeat(Box::new(request))
        }
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::default().with_group_id(group("g"));
            Request::LeaveGroup(Box::new(if version <= 2 {
                request.with_member_id(text("m"))
            } else {
                let member = |id: &str| {
                    let member = MemberIdentity::default()
                        .with_member_id(text(id))
                        .with_group_instance_id(Some(text("instance")));
                    if version >= 5 {
                        member.with_reason(Some(text("bye")))
                    } else {
                        member
                    }
                };
                request.with_members(vec![member("m"), member("n")])
            }))
        }
        ApiKey::OffsetCommit => {
            let partition = |index: i32| {
                let partition = OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(text("meta")));
                if version >= 6 {
                    partition.with_committed_leader_epoch(7)
                } else {
                    partition
                }
            };
            let mut request = OffsetCommitRequest::default()
                .with_group_id(group("g"))
                .with_generation_id_or_member_epoch(5)
                .with_member_id(text("m"))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(topic("t"))
                        .with_partitions(vec![partition(0), partition(1)]),
                    OffsetCommitRequestTopic::default()
                        .with_name(topic("u"))
                        .with_partitions(vec![partition(2)]),
                ]);
            if version <= 4 {
                request = request.with_retention_time_ms(60_000);
            }
            if version >= 7 {
                request = request.with_group_instance_id(Some(text("instance")));
            }
            Request::OffsetCommit(Box::new(request))
        }
        ApiKey::OffsetFetch => {
            let request = if version <= 7 {
                let request = OffsetFetchRequest::default()
                    .with_group_id(group("g"))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(topic("t"))
                            .with_partition_indexes(vec![0, 1, 2]),
                    ]));
                if version == 7 {
                    request.with_require_stable(true)
                } else {
                    request
                }
            } else {
                let fetch_group = |id: &str| {
                    let fetch_group = OffsetFetchRequestGroup::default()
                        .with_group_id(group(id))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopics::default()
                                .with_name(topic("t"))
                                .with_partition_indexes(vec![0, 1]),
                        ]));
                    if version >= 9 {
                        fetch_group
                            .with_member_id(Some(text("m")))
                            .with_member_epoch(3)
                    } else {
                        fetch_group
                    }
                };
                OffsetFetchRequest::default()
                    .with_groups(vec![fetch_group("g"), fetch_group("h")])
                    .with_require_stable(true)
            };
            Request::OffsetFetch(Box::new(request))
        }
        ApiKey::OffsetDelete => Request::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(group("g"))
                .with_topics(vec![
                    OffsetDeleteRequestTopic::default()
                        .with_name(topic("t"))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0),
                            OffsetDeleteRequestPartition::default().with_partition_index(3),
                        ]),
                ]),
        ),
        ApiKey::DescribeGroups => {
            let request =
                DescribeGroupsRequest::default().with_groups(vec![group("g"), group("h")]);
            Request::DescribeGroups(if version >= 3 {
                request.with_include_authorized_operations(true)
            } else {
                request
            })
        }
        ApiKey::ListGroups => {
            let mut request = ListGroupsRequest::default();
            if version >= 4 {
                request = request.with_states_filter(vec![text("Stable"), text("Empty")]);
            }
            if version >= 5 {
                request = request.with_types_filter(vec![text("classic")]);
            }
            Request::ListGroups(request)
        }
        ApiKey::DeleteGroups => Request::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![group("g"), group("h")]),
        ),
        ApiKey::ConsumerGroupHeartbeat => {
            let request = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group("g"))
                .with_member_id(text("m"))
                .with_member_epoch(2)
                .with_instance_id(Some(text("instance")))
                .with_rack_id(Some(text("rack")))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic("t"), topic("u")]))
                .with_server_assignor(Some(text("uniform")))
                .with_topic_partitions(Some(vec![
                    TopicPartitions::default()
                        .with_topic_id(uuid::Uuid::from_u128(9))
                        .with_partitions(vec![0, 1]),
                ]));
            Request::ConsumerGroupHeartbeat(Box::new(if version >= 1 {
                request.with_subscribed_topic_regex(Some(text("t.*")))
            } else {
                request
            }))
        }
        ApiKey::ConsumerGroupDescribe => Request::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![group("g")])
                .with_include_authorized_operations(true),
        ),
        other => panic!("no populated request for {other:?}"),
    }
}

const GROUP_APIS: [ApiKey; 13] = [
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::OffsetDelete,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

fn encode(api_key: ApiKey, version: i16, request: &Request) -> Bytes {
    match request {
        Request::FindCoordinator(body) => frame_body(api_key, version, body),
        Request::JoinGroup(body) => frame_body(api_key, version, body.as_ref()),
        Request::SyncGroup(body) => frame_body(api_key, version, body.as_ref()),
        Request::Heartbeat(body) => frame_body(api_key, version, body.as_ref()),
        Request::LeaveGroup(body) => frame_body(api_key, version, body.as_ref()),
        Request::OffsetCommit(body) => frame_body(api_key, version, body.as_ref()),
        Request::OffsetFetch(body) => frame_body(api_key, version, body.as_ref()),
        Request::OffsetDelete(body) => frame_body(api_key, version, body),
        Request::DescribeGroups(body) => frame_body(api_key, version, body),
        Request::ListGroups(body) => frame_body(api_key, version, body),
        Request::DeleteGroups(body) => frame_body(api_key, version, body),
        Request::ConsumerGroupHeartbeat(body) => frame_body(api_key, version, body.as_ref()),
        Request::ConsumerGroupDescribe(body) => frame_body(api_key, version, body),
        other => panic!("not a group request: {other:?}"),
    }
}

/// Every (api, version, frame) of the group APIs the agent advertises.
fn every_frame() -> Vec<(ApiKey, i16, Request, Bytes)> {
    let mut frames = Vec::new();
    for api_key in GROUP_APIS {
        let api = supported_api(api_key).unwrap();
        for version in api.version_min..=api.version_max {
            let request = populated(api_key, version);
            let frame = encode(api_key, version, &request);
            frames.push((api_key, version, request, frame));
        }
    }
    frames
}

#[test]
fn every_version_of_every_group_api_decodes_to_what_was_sent() {
    let frames = every_frame();
    assert_eq!(
        frames.len(),
        7 + 10 + 6 + 5 + 6 + 8 + 9 + 1 + 7 + 6 + 3 + 2 + 2
    );
    for (api_key, version, request, frame) in frames {
        let decoded = decode_request(frame).unwrap_or_else(|error| {
            panic!("{api_key:?} v{version}: {error}");
        });
        let Decoded::Request(decoded) = decoded else {
            panic!("{api_key:?} v{version}: not a request");
        };
        assert_eq!(decoded.api_key, api_key);
        assert_eq!(decoded.body, request, "{api_key:?} v{version}");
    }
}

#[test]
fn truncated_group_requests_are_refused() {
    for (api_key, version, _, frame) in every_frame() {
        // The header alone is 8 + 2 + 11 bytes; every cut inside the body must fail cleanly.
        for cut in 21..frame.len() {
            let result = decode_request(frame.slice(..cut));
            if let Ok(Decoded::Request(decoded)) = &result {
                // Only trailing tagged fields or optional trailing fields may be cut off and
                // still decode (never: every body here ends with a required field).
                panic!("{api_key:?} v{version} cut at {cut} decoded: {decoded:?}");
            }
        }
    }
}

#[test]
fn a_forged_length_anywhere_never_allocates_from_the_wire_or_panics() {
    // At every byte of every body, claim a huge length (as an i32, an i16 and a varint). An
    // array length the guards missed would make `Vec::with_capacity` abort the test process.
    let forgeries: [&[u8]; 3] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0x7f, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0x07],
    ];
    for (api_key, version, _, frame) in every_frame() {
        for position in 21..frame.len() {
            for forged in forgeries {
                let mut bytes = frame.to_vec();
                for (offset, byte) in forged.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(position + offset) {
                        *slot = *byte;
                    }
                }
                let _ = decode_request(Bytes::from(bytes));
            }
        }
        let _ = (api_key, version);
    }
}

#[test]
fn huge_group_arrays_are_refused_by_the_shape_check() {
    // OffsetCommit v2: group "g", generation, member "", retention, then the topic count.
    let mut body = vec![0, 1, b'g', 0, 0, 0, 1, 0, 0];
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    let mut frame = frame_body(ApiKey::OffsetCommit, 2, &OffsetCommitRequest::default())
        .slice(..21)
        .to_vec();
    frame.extend_from_slice(&body);
    let error = decode_request(Bytes::from(frame)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("claims")),
        "{error}"
    );
    // ConsumerGroupHeartbeat v0 (flexible): owned partitions claiming u32::MAX - 1 entries.
    let mut frame = frame_body(
        ApiKey::ConsumerGroupHeartbeat,
        0,
        &ConsumerGroupHeartbeatRequest::default(),
    )
    .slice(..22)
    .to_vec();
    // group "g", member "", epoch, instance null, rack null, timeout, names null, assignor null.
    frame.extend_from_slice(&[2, b'g', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]);
    let error = decode_request(Bytes::from(frame)).unwrap_err();
    assert!(
        matches!(&error, DecodeError::MalformedBody { message, .. } if message.contains("claims")),
        "{error}"
    );
}

#[test]
fn group_responses_encode_at_every_version() {
    use kafka_protocol::messages::*;
    for api_key in GROUP_APIS {
        let api = supported_api(api_key).unwrap();
        for version in api.version_min..=api.version_max {
            let response = match api_key {
                ApiKey::FindCoordinator => {
                    Response::FindCoordinator(FindCoordinatorResponse::default())
                }
                ApiKey::JoinGroup => Response::JoinGroup(JoinGroupResponse::default()),
                ApiKey::SyncGroup => Response::SyncGroup(SyncGroupResponse::default()),
                ApiKey::Heartbeat => Response::Heartbeat(HeartbeatResponse::default()),
                ApiKey::LeaveGroup => Response::LeaveGroup(LeaveGroupResponse::default()),
                ApiKey::OffsetCommit => Response::OffsetCommit(OffsetCommitResponse::default()),
                ApiKey::OffsetFetch => Response::OffsetFetch(OffsetFetchResponse::default()),
                ApiKey::OffsetDelete => Response::OffsetDelete(OffsetDeleteResponse::default()),
                ApiKey::DescribeGroups => {
                    Response::DescribeGroups(DescribeGroupsResponse::default())
                }
                ApiKey::ListGroups => Response::ListGroups(ListGroupsResponse::default()),
                ApiKey::DeleteGroups => Response::DeleteGroups(DeleteGroupsResponse::default()),
                ApiKey::ConsumerGroupHeartbeat => {
                    Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse::default())
                }
                _ => Response::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default()),
            };
            encode_response(1, api_key, version, &response)
                .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        }
    }
}
