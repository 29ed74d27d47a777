//! DescribeCluster: this agent is the whole cluster as the client sees it.
//!
//! Agents are symmetric and any agent serves any partition, so the answer has the same shape as
//! Metadata's: one broker (this agent, same identity) that is also the controller. Asking for
//! controller endpoints (`endpoint_type` 2, used by KRaft tooling) gets UNSUPPORTED_ENDPOINT_TYPE,
//! as a Kafka broker answers: there is no separate controller quorum to list.
//!
//! Without an authorizer, a client asking for the cluster's authorized operations is told every
//! operation Kafka defines on the cluster resource, as a Kafka broker without an authorizer
//! reports; with one, the dispatcher replaces them with the connection's (`protocol/guard/`).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::dispatch::BrokerIdentity;

/// Kafka's "authorized operations not requested" marker (`Integer.MIN_VALUE`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

const ENDPOINT_TYPE_BROKERS: i8 = 1;
const UNSUPPORTED_ENDPOINT_TYPE: i16 =
    kafka_protocol::ResponseError::UnsupportedEndpointType.code();

/// Kafka's `AclOperation` codes that apply to the cluster resource, as a bit set: CREATE (5),
/// ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11),
/// IDEMPOTENT_WRITE (12), CREATE_TOKENS (13), DESCRIBE_TOKENS (14).
pub const CLUSTER_OPERATIONS_ALL: i32 = (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14);

pub fn describe_cluster(
    request: &DescribeClusterRequest,
    version: i16,
    cluster_id: &str,
    broker: &BrokerIdentity,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(cluster_id.to_owned()))
        .with_controller_id(BrokerId(broker.node_id))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        });
    // v0 has no endpoint type: it always means brokers.
    let endpoint_type = if version >= 1 {
        request.endpoint_type
    } else {
        ENDPOINT_TYPE_BROKERS
    };
    if endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_endpoint_type(endpoint_type)
            .with_controller_id(BrokerId(-1))
            .with_error_code(UNSUPPORTED_ENDPOINT_TYPE)
            .with_error_message(Some(StrBytes::from_string(format!(
                "endpoint type {endpoint_type} is not supported: Sluice has no separate controllers"
            ))));
    }
    response
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node_id))
                .with_host(StrBytes::from_string(broker.host.clone()))
                .with_port(i32::from(broker.port))
                .with_rack(None)
                .with_is_fenced(false),
        ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn broker() -> BrokerIdentity {
        BrokerIdentity {
            node_id: 7,
            host: "agent.local".to_owned(),
            port: 9093,
        }
    }

    #[test]
    fn this_agent_is_broker_and_controller() {
        let response = describe_cluster(&DescribeClusterRequest::default(), 1, "c-1", &broker());
        assert_eq!(response.error_code, 0);
        assert_eq!(response.cluster_id.as_str(), "c-1");
        assert_eq!(response.controller_id, BrokerId(7));
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].host.as_str(), "agent.local");
        assert_eq!(response.brokers[0].port, 9093);
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
        let asked =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let response = describe_cluster(&asked, 0, "c-1", &broker());
        assert_eq!(response.cluster_authorized_operations & (1 << 10), 1 << 10);
    }

    #[test]
    fn controller_endpoints_are_refused() {
        let request = DescribeClusterRequest::default().with_endpoint_type(2);
        let response = describe_cluster(&request, 1, "c-1", &broker());
        assert_eq!(response.error_code, UNSUPPORTED_ENDPOINT_TYPE);
        assert!(response.brokers.is_empty());
        // v0 cannot ask for controllers: the field is ignored.
        let response = describe_cluster(&request, 0, "c-1", &broker());
        assert_eq!(response.error_code, 0);
    }
}
