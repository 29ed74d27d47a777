//! Answers of an agent in a cluster (`--metadata`): Metadata lists the live agents as brokers and
//! names each partition's leader by rendezvous hashing (in the client's zone when it names one in
//! `client.id` as `sluice_az=ZONE`); FindCoordinator names the agent that coordinates the key;
//! and an agent that does not coordinate a group answers its group requests with
//! NOT_COORDINATOR, so a group is never coordinated by two agents at once (as far as the agents
//! agree on who is live: see `docs/cluster.md`).
//!
//! These rewrite the single-agent answers after the fact, so the handlers stay as they are.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupHeartbeatResponse, DescribeClusterResponse, FindCoordinatorResponse,
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, MetadataResponse,
    OffsetCommitResponse, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::codec::{Request, Response};
use crate::metadata_core::cluster_view::{ClusterView, client_zone};

/// Lists the live agents as brokers and names each partition's leader. A client that came in on
/// listener `listener` is told each agent's address on that listener, and agents without one are
/// left out (Kafka's rule), leaders included.
pub fn route_metadata(
    response: &mut MetadataResponse,
    view: &ClusterView,
    client_id: &str,
    listener: Option<&str>,
) {
    let reachable = view.reachable_on(listener);
    let view = reachable.as_ref().unwrap_or(view);
    if view.members().is_empty() {
        return;
    }
    let zone = client_zone(client_id);
    response.brokers = listed_brokers(view, listener)
        .map(|broker| {
            MetadataResponseBroker::default()
                .with_node_id(broker.node_id)
                .with_host(broker.host)
                .with_port(broker.port)
                .with_rack(broker.rack)
        })
        .collect();
    if let Some(controller) = controller(view) {
        response.controller_id = controller;
    }
    for topic in &mut response.topics {
        let Some(name) = topic.name.as_ref().map(|name| name.0.to_string()) else {
            continue;
        };
        for partition in &mut topic.partitions {
            if let Some(leader) = view.partition_leader(&name, partition.partition_index, zone) {
                partition.leader_id = BrokerId(leader.node_id);
                partition.replica_nodes = vec![BrokerId(leader.node_id)];
                partition.isr_nodes = vec![BrokerId(leader.node_id)];
            }
        }
    }
}

/// One live agent as a broker of an answer to a client of `listener`.
struct ListedBroker {
    node_id: BrokerId,
    host: StrBytes,
    port: i32,
    rack: Option<StrBytes>,
}

/// The live agents that have `listener`, as brokers, with their addresses on it (Kafka's rule:
/// a broker without the listener is left out).
fn listed_brokers<'a>(
    view: &'a ClusterView,
    listener: Option<&'a str>,
) -> impl Iterator<Item = ListedBroker> + 'a {
    view.members().iter().filter_map(move |member| {
        let (host, port) = member.address_on(listener)?;
        Some(ListedBroker {
            node_id: BrokerId(member.node_id),
            host: StrBytes::from_string(host.to_owned()),
            port: i32::from(port),
            rack: (!member.zone.is_empty()).then(|| StrBytes::from_string(member.zone.clone())),
        })
    })
}

/// The controller named to clients, to which admin requests go: this agent while it is a member,
/// else (its lease lost, it has left its own view) another one.
fn controller(view: &ClusterView) -> Option<BrokerId> {
    view.members()
        .iter()
        .find(|member| member.node_id == view.self_node_id())
        .or_else(|| view.members().first())
        .map(|member| BrokerId(member.node_id))
}

/// DescribeCluster in a cluster: the same brokers and controller as Metadata (the live agents
/// reachable on `listener`). An answer with an error (controller endpoints asked for) stays as
/// it is.
pub fn route_describe_cluster(
    response: &mut DescribeClusterResponse,
    view: &ClusterView,
    listener: Option<&str>,
) {
    let reachable = view.reachable_on(listener);
    let view = reachable.as_ref().unwrap_or(view);
    if response.error_code != 0 || view.members().is_empty() {
        return;
    }
    response.brokers = listed_brokers(view, listener)
        .map(|broker| {
            DescribeClusterBroker::default()
                .with_broker_id(broker.node_id)
                .with_host(broker.host)
                .with_port(broker.port)
                .with_rack(broker.rack)
                .with_is_fenced(false)
        })
        .collect();
    if let Some(controller) = controller(view) {
        response.controller_id = controller;
    }
}

/// Names the coordinating agent of every key answered without an error, at its address on
/// `listener`. `key` is the v0-3 request's single key. The coordinator is chosen over every live
/// agent whatever the listener (a group has one); one without a listener of that name is
/// COORDINATOR_NOT_AVAILABLE, as from Kafka.
pub fn route_find_coordinator(
    response: &mut FindCoordinatorResponse,
    key: &str,
    view: &ClusterView,
    listener: Option<&str>,
) {
    let unavailable = ResponseError::CoordinatorNotAvailable.code();
    for coordinator in &mut response.coordinators {
        if coordinator.error_code == 0
            && let Some(owner) = view.coordinator(coordinator.key.as_str())
        {
            coordinator.node_id = BrokerId(owner.node_id);
            match owner.address_on(listener) {
                Some((host, port)) => {
                    coordinator.host = StrBytes::from_string(host.to_owned());
                    coordinator.port = i32::from(port);
                }
                None => {
                    coordinator.error_code = unavailable;
                    coordinator.node_id = BrokerId(-1);
                    coordinator.host = StrBytes::default();
                    coordinator.port = -1;
                }
            }
        }
    }
    if response.coordinators.is_empty()
        && response.error_code == 0
        && let Some(owner) = view.coordinator(key)
    {
        response.node_id = BrokerId(owner.node_id);
        match owner.address_on(listener) {
            Some((host, port)) => {
                response.host = StrBytes::from_string(host.to_owned());
                response.port = i32::from(port);
            }
            None => {
                response.error_code = unavailable;
                response.node_id = BrokerId(-1);
                response.host = StrBytes::default();
                response.port = -1;
            }
        }
    }
}

/// NOT_COORDINATOR for a group request this agent does not coordinate; `None` for any other
/// request (answered as usual). The client looks the coordinator up again and retries there.
pub fn not_coordinator(request: &Request, view: &ClusterView) -> Option<Response> {
    let code = ResponseError::NotCoordinator.code();
    let group = match request {
        Request::JoinGroup(body) => body.group_id.as_str(),
        Request::SyncGroup(body) => body.group_id.as_str(),
        Request::Heartbeat(body) => body.group_id.as_str(),
        Request::LeaveGroup(body) => body.group_id.as_str(),
        Request::OffsetCommit(body) => body.group_id.as_str(),
        Request::ConsumerGroupHeartbeat(body) => body.group_id.as_str(),
        _ => return None,
    };
    if view.coordinates(group) {
        return None;
    }
    Some(match request {
        Request::JoinGroup(_) => Response::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1),
        ),
        Request::SyncGroup(_) => {
            Response::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        Request::Heartbeat(_) => {
            Response::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        Request::LeaveGroup(_) => {
            Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        Request::OffsetCommit(body) => Response::OffsetCommit(offset_commit_refused(body, code)),
        _ => Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
    })
}

/// OffsetCommit has no top-level error: every partition gets the code.
fn offset_commit_refused(
    request: &kafka_protocol::messages::OffsetCommitRequest,
    code: i16,
) -> OffsetCommitResponse {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{FindCoordinatorResponse, TopicName};

    use super::*;
    use crate::metadata_core::cluster_view::{
        ClusterMember, ListenerAddress, listeners_of_roles, node_id_of,
    };

    /// Agent `id` with listeners `(name, port)` on host `{id}.example`; none: an older agent's
    /// row, `{id}.old:9092` only.
    fn member(id: &str, listeners: &[(&str, u16)]) -> ClusterMember {
        ClusterMember {
            node_id: node_id_of(id),
            agent_id: id.to_owned(),
            host: format!("{id}.old"),
            port: 9092,
            zone: String::new(),
            listeners: listeners
                .iter()
                .map(|(name, port)| ListenerAddress {
                    name: (*name).to_owned(),
                    host: format!("{id}.example"),
                    port: *port,
                })
                .collect(),
        }
    }

    fn brokers(response: &MetadataResponse) -> Vec<(String, i32)> {
        let mut brokers: Vec<_> = response
            .brokers
            .iter()
            .map(|broker| (broker.host.to_string(), broker.port))
            .collect();
        brokers.sort();
        brokers
    }

    fn metadata_with_partitions() -> MetadataResponse {
        MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(
                    (0..50)
                        .map(|index| {
                            MetadataResponsePartition::default().with_partition_index(index)
                        })
                        .collect(),
                ),
        ])
    }

    #[test]
    fn each_listener_is_told_its_own_addresses_and_agents_without_it_are_left_out() {
        let view = ClusterView::new(
            vec![
                member("a", &[("INTERNAL", 9092), ("CLIENT", 9094)]),
                member("b", &[("INTERNAL", 9192)]),
                member("old", &[]),
            ],
            node_id_of("a"),
        );
        let mut client = metadata_with_partitions();
        route_metadata(&mut client, &view, "app", Some("CLIENT"));
        assert_eq!(
            brokers(&client),
            [("a.example".to_owned(), 9094), ("old.old".to_owned(), 9092)]
        );
        let b = BrokerId(node_id_of("b"));
        assert!(
            client.topics[0]
                .partitions
                .iter()
                .all(|partition| partition.leader_id != b),
            "a leader CLIENT cannot reach"
        );
        let mut internal = metadata_with_partitions();
        route_metadata(&mut internal, &view, "tool", Some("INTERNAL"));
        assert_eq!(
            brokers(&internal),
            [
                ("a.example".to_owned(), 9092),
                ("b.example".to_owned(), 9192),
                ("old.old".to_owned(), 9092)
            ]
        );
        assert!(
            internal.topics[0]
                .partitions
                .iter()
                .any(|partition| partition.leader_id == b),
            "b leads some partitions for INTERNAL clients"
        );
    }

    #[test]
    fn describe_cluster_lists_the_same_brokers_and_controller_as_metadata() {
        let mut b = member("b", &[("INTERNAL", 9192), ("CLIENT", 9194)]);
        b.zone = "eu-1b".to_owned();
        let view = ClusterView::new(
            vec![
                member("a", &[("INTERNAL", 9092), ("CLIENT", 9094)]),
                b,
                member("c", &[("INTERNAL", 9292)]),
            ],
            node_id_of("a"),
        );
        let mut metadata = metadata_with_partitions();
        route_metadata(&mut metadata, &view, "tool", Some("CLIENT"));
        let mut described = DescribeClusterResponse::default().with_brokers(vec![
            DescribeClusterBroker::default().with_host(StrBytes::from_static_str("self.only")),
        ]);
        route_describe_cluster(&mut described, &view, Some("CLIENT"));
        let mut listed: Vec<_> = described
            .brokers
            .iter()
            .map(|broker| {
                (
                    broker.broker_id,
                    broker.host.to_string(),
                    broker.port,
                    broker.rack.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        listed.sort();
        let mut expected: Vec<_> = metadata
            .brokers
            .iter()
            .map(|broker| {
                (
                    broker.node_id,
                    broker.host.to_string(),
                    broker.port,
                    broker.rack.as_ref().map(ToString::to_string),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(listed.len(), 2, "c has no CLIENT listener");
        assert!(
            listed
                .iter()
                .any(|broker| broker.3.as_deref() == Some("eu-1b"))
        );
        assert_eq!(described.controller_id, BrokerId(node_id_of("a")));
        assert_eq!(described.controller_id, metadata.controller_id);

        // Controller endpoints stay refused.
        let mut refused = DescribeClusterResponse::default().with_error_code(1);
        route_describe_cluster(&mut refused, &view, None);
        assert!(refused.brokers.is_empty());
    }

    #[test]
    fn a_coordinator_without_the_listener_is_not_available() {
        let view = ClusterView::new(
            vec![
                member("a", &[("INTERNAL", 9092), ("CLIENT", 9094)]),
                member("b", &[("INTERNAL", 9192)]),
            ],
            node_id_of("a"),
        );
        let key = (0..100)
            .map(|group| format!("g{group}"))
            .find(|key| view.coordinator(key).unwrap().agent_id == "b")
            .unwrap();
        let mut response = FindCoordinatorResponse::default();
        route_find_coordinator(&mut response, &key, &view, Some("CLIENT"));
        assert_eq!(
            response.error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        let mut response = FindCoordinatorResponse::default();
        route_find_coordinator(&mut response, &key, &view, Some("INTERNAL"));
        assert_eq!(
            (response.error_code, response.host.as_str(), response.port),
            (0, "b.example", 9192)
        );
        // The roles a registration carries are what the members are built from.
        assert_eq!(
            listeners_of_roles(&["listener:INTERNAL=b.example:9192".to_owned()]),
            member("b", &[("INTERNAL", 9192)]).listeners
        );
    }
}
