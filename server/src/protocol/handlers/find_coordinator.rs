//! FindCoordinator (v0-6): this agent coordinates every group and every transactional id.
//!
//! A Kafka broker hashes the key to a partition of `__consumer_offsets` (or
//! `__transaction_state`) and answers with that partition's leader. Sluice has one agent per
//! bucket, so the answer is always this agent; which of its cores owns a group is decided inside
//! it (`groups::router`), invisible to clients. Key types other than group (0) and transaction
//! (1) are INVALID_REQUEST, as the Java broker answers an unknown coordinator type (share groups,
//! type 2, are not implemented).

use kafka_protocol::messages::FindCoordinatorResponse;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::BrokerIdentity;

const INVALID_REQUEST: i16 = kafka_protocol::ResponseError::InvalidRequest.code();
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers a FindCoordinator request of `version`.
pub fn handle(
    request: &FindCoordinatorRequest,
    version: i16,
    broker: &BrokerIdentity,
) -> FindCoordinatorResponse {
    let known_type = matches!(request.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    let host = StrBytes::from_string(broker.host.clone());
    let port = i32::from(broker.port);
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let coordinator = Coordinator::default().with_key(key.clone());
                if known_type {
                    coordinator
                        .with_node_id(BrokerId(broker.node_id))
                        .with_host(host.clone())
                        .with_port(port)
                } else {
                    coordinator
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(INVALID_REQUEST)
                        .with_error_message(Some(unknown_type_message(request.key_type)))
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if !known_type {
        return FindCoordinatorResponse::default()
            .with_error_code(INVALID_REQUEST)
            .with_error_message(Some(unknown_type_message(request.key_type)))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(broker.node_id))
        .with_host(host)
        .with_port(port)
}

fn unknown_type_message(key_type: i8) -> StrBytes {
    StrBytes::from_string(format!("Unknown coordinator type: {key_type}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn broker() -> BrokerIdentity {
        BrokerIdentity {
            node_id: 3,
            host: "agent.example".to_owned(),
            port: 9093,
        }
    }

    #[test]
    fn single_key_versions_name_this_agent() {
        for version in 0..=3 {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("group-a"))
                .with_key_type(if version >= 1 { 1 } else { 0 });
            let response = handle(&request, version, &broker());
            assert_eq!(response.error_code, 0);
            assert_eq!(response.node_id, BrokerId(3));
            assert_eq!(response.host.as_str(), "agent.example");
            assert_eq!(response.port, 9093);
        }
        let share = FindCoordinatorRequest::default().with_key_type(2);
        let response = handle(&share, 3, &broker());
        assert_eq!(response.error_code, INVALID_REQUEST);
        assert_eq!(response.node_id, BrokerId(-1));
    }

    #[test]
    fn batched_keys_are_answered_one_by_one() {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("b"),
            ]);
        let response = handle(&request, 4, &broker());
        assert_eq!(response.coordinators.len(), 2);
        assert_eq!(response.coordinators[1].key.as_str(), "b");
        assert!(
            response
                .coordinators
                .iter()
                .all(|c| c.error_code == 0 && c.port == 9093)
        );
        let unknown = request.with_key_type(7);
        let response = handle(&unknown, 6, &broker());
        assert!(
            response
                .coordinators
                .iter()
                .all(|c| c.error_code == INVALID_REQUEST)
        );
    }
}
