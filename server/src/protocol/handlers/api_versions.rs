//! ApiVersions: tells the client which APIs and versions this agent implements.
//!
//! The list is [`SUPPORTED_APIS`], the same table the decoder enforces. Since v3 the request
//! carries the client's software name and version (KIP-511); like the Java broker we check their
//! format and answer INVALID_REQUEST when it is wrong, because those strings end up in logs and
//! metrics labels.
//!
//! Since v3 the answer also carries the cluster's features (KIP-584), which Kafka's
//! `FeatureCommand` prints and clients read: `group.version` 1 (the KIP-848 consumer protocol is
//! served) and `transaction.version` 0 (no transactions yet, so a Java producer never tries the
//! transactions V2 protocol). KRaft's own features (`metadata.version`, `kraft.version`) are left
//! out: there is no KRaft log whose format they would describe.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::apis::SUPPORTED_APIS;

/// The version used to answer an ApiVersions request whose own version is not supported.
pub const UNSUPPORTED_RESPONSE_VERSION: i16 = 0;

fn supported_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.version_min)
                .with_max_version(api.version_max)
        })
        .collect()
}

/// `(name, supported min, supported max, finalized level)` of each feature the agent reports.
pub const FEATURES: &[(&str, i16, i16, i16)] =
    &[("group.version", 0, 1, 1), ("transaction.version", 0, 0, 0)];

/// The features' epoch: they never change while an agent runs.
const FEATURES_EPOCH: i64 = 0;

fn with_features(response: ApiVersionsResponse) -> ApiVersionsResponse {
    response
        .with_supported_features(
            FEATURES
                .iter()
                .map(|&(name, min, max, _)| {
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(FEATURES_EPOCH)
        .with_finalized_features(
            FEATURES
                .iter()
                .map(|&(name, _, _, level)| {
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version_level(level)
                        .with_max_version_level(level)
                })
                .collect(),
        )
}

/// The answer to a supported ApiVersions request.
pub fn handle(request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    if version >= 3
        && !(is_valid_software_field(request.client_software_name.as_str())
            && is_valid_software_field(request.client_software_version.as_str()))
    {
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let response = ApiVersionsResponse::default().with_api_keys(supported_versions());
    // Features are tagged fields of v3+.
    if version >= 3 {
        with_features(response)
    } else {
        response
    }
}

/// The answer to an ApiVersions request of a version we do not know: UNSUPPORTED_VERSION, with
/// the supported ranges so the client can pick a version (encode it at
/// [`UNSUPPORTED_RESPONSE_VERSION`]).
pub fn handle_unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(supported_versions())
}

/// KIP-511's rule for client software name and version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
pub fn is_valid_software_field(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn request(name: &str, version: &str) -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_string(name.to_owned()))
            .with_client_software_version(StrBytes::from_string(version.to_owned()))
    }

    #[test]
    fn advertises_exactly_the_table() {
        let response = handle(&request("kafka-python", "2.0.2"), 3);
        assert_eq!(response.error_code, 0);
        let advertised: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        let table: Vec<(i16, i16, i16)> = SUPPORTED_APIS
            .iter()
            .map(|api| (api.key as i16, api.version_min, api.version_max))
            .collect();
        assert_eq!(advertised, table);
        assert!(
            advertised
                .iter()
                .all(|(key, _, _)| *key != ApiKey::ShareFetch as i16)
        );
    }

    #[test]
    fn software_fields_are_validated_from_v3_only() {
        assert_eq!(
            handle(&request("bad name", "1"), 3).error_code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            handle(&request("ok", "-1"), 4).error_code,
            ResponseError::InvalidRequest.code()
        );
        // Before v3 the fields do not exist on the wire, so empty defaults must not be refused.
        assert_eq!(handle(&ApiVersionsRequest::default(), 2).error_code, 0);
    }

    #[test]
    fn software_field_rule_matches_kip_511() {
        for good in ["a", "librdkafka", "2.3.0", "apache-kafka-java", "a.b-c9"] {
            assert!(is_valid_software_field(good), "{good}");
        }
        for bad in ["", "-a", "a-", ".", "a b", "a_b", "ü"] {
            assert!(!is_valid_software_field(bad), "{bad}");
        }
    }

    #[test]
    fn unsupported_version_answer_lists_ranges() {
        let response = handle_unsupported_version();
        assert_eq!(response.error_code, 35);
        assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod feature_tests {
    use super::*;

    #[test]
    fn features_are_reported_from_v3_only() {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let v3 = handle(&request, 3);
        let finalized: Vec<(&str, i16)> = v3
            .finalized_features
            .iter()
            .map(|feature| (feature.name.as_str(), feature.max_version_level))
            .collect();
        assert_eq!(
            finalized,
            vec![("group.version", 1), ("transaction.version", 0)]
        );
        assert_eq!(v3.supported_features.len(), 2);
        assert_eq!(v3.finalized_features_epoch, 0);
        let v2 = handle(&request, 2);
        assert!(v2.finalized_features.is_empty() && v2.supported_features.is_empty());
    }
}
