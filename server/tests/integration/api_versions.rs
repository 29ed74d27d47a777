//! ApiVersions over a real socket: v0 and v3 round trips, and an unsupported version.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_server::protocol::apis::SUPPORTED_APIS;

fn advertised(response: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    response
        .api_keys
        .iter()
        .map(|api| (api.api_key, api.min_version, api.max_version))
        .collect()
}

fn table() -> Vec<(i16, i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .map(|api| (api.key as i16, api.version_min, api.version_max))
        .collect()
}

#[test]
fn v0_and_v3_round_trip_and_advertise_exactly_the_table() {
    let agent = common::start_agent(|_| {});
    let mut client = common::RawClient::connect(agent.addr());
    let v0: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(v0.error_code, 0);
    assert_eq!(advertised(&v0), table());

    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-raw-test"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    for version in [3, 4] {
        let response: ApiVersionsResponse = client.call(ApiKey::ApiVersions, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(advertised(&response), table(), "v{version}");
        // Exactly the table (checked above), which includes Produce and not share groups.
        assert!(
            response
                .api_keys
                .iter()
                .any(|api| api.api_key == ApiKey::Produce as i16)
        );
        assert!(
            response
                .api_keys
                .iter()
                .all(|api| api.api_key != ApiKey::ShareFetch as i16)
        );
    }
}

#[test]
fn unsupported_version_gets_error_35_and_the_supported_ranges_in_v0() {
    let agent = common::start_agent(|_| {});
    let mut client = common::RawClient::connect(agent.addr());
    // A version from the future: the request is framed as v4, with the version field rewritten.
    let mut frame = sluice_server::protocol::client_codec::encode_request(
        ApiKey::ApiVersions,
        4,
        42,
        Some("future-client"),
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("future"))
            .with_client_software_version(StrBytes::from_static_str("9")),
    )
    .unwrap()
    .to_vec();
    frame[6..8].copy_from_slice(&127_i16.to_be_bytes());
    client.send_raw(&frame);
    let response: ApiVersionsResponse = client.receive(ApiKey::ApiVersions, 0, 42);
    assert_eq!(response.error_code, 35);
    assert_eq!(advertised(&response), table());
    // The connection stays usable: the client retries with a version both know.
    let retry: ApiVersionsResponse = client.call(
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("future"))
            .with_client_software_version(StrBytes::from_static_str("9")),
    );
    assert_eq!(retry.error_code, 0);
}
