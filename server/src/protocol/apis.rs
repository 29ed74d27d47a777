//! The single table of implemented Kafka APIs and versions.
//!
//! Both the request decoder (what it accepts) and the ApiVersions handler (what it advertises)
//! read [`SUPPORTED_APIS`]; adding an API is adding a row here plus its handler, and a client can
//! never be told about a version the agent would then refuse.

use kafka_protocol::messages::ApiKey;

/// One implemented API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub version_min: i16,
    pub version_max: i16,
}

impl SupportedApi {
    pub fn supports(&self, version: i16) -> bool {
        (self.version_min..=self.version_max).contains(&version)
    }
}

/// Everything the agent implements, nothing more.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v3+ is flexible and carries the client's software name and version (KIP-511).
    SupportedApi {
        key: ApiKey::ApiVersions,
        version_min: 0,
        version_max: 4,
    },
    // v9+ is flexible, v10+ carries topic ids, v13 adds a top-level error code.
    SupportedApi {
        key: ApiKey::Metadata,
        version_min: 0,
        version_max: 13,
    },
    // v3 is the oldest Kafka 4 accepts; v9+ is flexible; v13 names topics by id (not yet).
    SupportedApi {
        key: ApiKey::Produce,
        version_min: 3,
        version_max: 12,
    },
    // v5+ returns partition counts and configs, v7 topic ids.
    SupportedApi {
        key: ApiKey::CreateTopics,
        version_min: 2,
        version_max: 7,
    },
    // v6 deletes by topic id as well as by name.
    SupportedApi {
        key: ApiKey::DeleteTopics,
        version_min: 1,
        version_max: 6,
    },
    SupportedApi {
        key: ApiKey::CreatePartitions,
        version_min: 0,
        version_max: 3,
    },
    // Raises log start offsets through the metadata log; v2 is flexible. Kafka 4.x serves 0-2.
    SupportedApi {
        key: ApiKey::DeleteRecords,
        version_min: 0,
        version_max: 2,
    },
    // v7+ sessions (KIP-227), v12+ flexible, v13+ topic ids, v15 drops the replica id (a
    // tagged field since), v17 a tagged replica directory id; v18 is for KRaft followers.
    SupportedApi {
        key: ApiKey::Fetch,
        version_min: 4,
        version_max: 17,
    },
    // v7 adds -3 (the record with the largest timestamp), v8 -4 (earliest local: the log start,
    // all data being in the store), v9 -5 (latest tiered: none, -1), v10 a timeout. v11 (-6,
    // earliest pending upload) is beyond kafka-protocol 0.18.
    SupportedApi {
        key: ApiKey::ListOffsets,
        version_min: 1,
        version_max: 10,
    },
    // Idempotent producers (on by default in Java 3+ and franz-go). v2+ flexible, v3+ carries the
    // producer's current id and epoch (KIP-360), v5 is what Kafka 3.x/4.x clients send; v6 (2PC)
    // is beyond kafka-protocol 0.18. Transactional ids are refused (no transactions yet).
    SupportedApi {
        key: ApiKey::InitProducerId,
        version_min: 0,
        version_max: 5,
    },
    // Topic configs with defaults and sources; v4 is flexible. Broker resources answer a few
    // read-only rows (see handlers/configs.rs).
    SupportedApi {
        key: ApiKey::DescribeConfigs,
        version_min: 1,
        version_max: 4,
    },
    // SET / DELETE / APPEND / SUBTRACT on topics, through the metadata log; v1 is flexible.
    SupportedApi {
        key: ApiKey::IncrementalAlterConfigs,
        version_min: 0,
        version_max: 1,
    },
    // This agent as broker and controller; v1 adds the endpoint type, v2 fenced brokers.
    SupportedApi {
        key: ApiKey::DescribeCluster,
        version_min: 0,
        version_max: 2,
    },
    // Kafka's admin tools (handlers/admin_tools.rs): the store as the one log directory
    // (LogDirsCommand), the metadata log as the quorum (MetadataQuorumCommand), and no leader to
    // elect (LeaderElectionCommand). v2+ of each is flexible; v4 of DescribeLogDirs adds the
    // volume's total and usable bytes, v2 of DescribeQuorum the voters' endpoints.
    SupportedApi {
        key: ApiKey::DescribeLogDirs,
        version_min: 1,
        version_max: 4,
    },
    SupportedApi {
        key: ApiKey::DescribeQuorum,
        version_min: 0,
        version_max: 2,
    },
    SupportedApi {
        key: ApiKey::ElectLeaders,
        version_min: 0,
        version_max: 2,
    },
    // Consumer groups (docs/agent.md, "Consumer groups"). This agent coordinates every group
    // and transaction key; v3+ is flexible, v4+ carries a batch of keys.
    SupportedApi {
        key: ApiKey::FindCoordinator,
        version_min: 0,
        version_max: 6,
    },
    // v4+ MEMBER_ID_REQUIRED first (KIP-394), v5+ static members (KIP-345), v6+ flexible, v8+
    // a reason, v9 skip_assignment for a rejoining static leader.
    SupportedApi {
        key: ApiKey::JoinGroup,
        version_min: 0,
        version_max: 9,
    },
    // v3+ static members, v4+ flexible, v5 protocol type and name.
    SupportedApi {
        key: ApiKey::SyncGroup,
        version_min: 0,
        version_max: 5,
    },
    SupportedApi {
        key: ApiKey::Heartbeat,
        version_min: 0,
        version_max: 4,
    },
    // v3+ a batch of members, v4+ flexible, v5 reasons.
    SupportedApi {
        key: ApiKey::LeaveGroup,
        version_min: 0,
        version_max: 5,
    },
    // v2 is the oldest Kafka 4 accepts; v6+ leader epochs, v7+ instance ids, v8+ flexible, v9
    // member epochs (KIP-848). v10 (topic ids) is beyond kafka-protocol 0.18.
    SupportedApi {
        key: ApiKey::OffsetCommit,
        version_min: 2,
        version_max: 9,
    },
    // v6+ flexible, v7 require_stable, v8+ many groups per request, v9 member id and epoch.
    SupportedApi {
        key: ApiKey::OffsetFetch,
        version_min: 1,
        version_max: 9,
    },
    SupportedApi {
        key: ApiKey::OffsetDelete,
        version_min: 0,
        version_max: 0,
    },
    // v3+ authorized operations, v5+ flexible, v6 GROUP_ID_NOT_FOUND for unknown groups.
    SupportedApi {
        key: ApiKey::DescribeGroups,
        version_min: 0,
        version_max: 6,
    },
    // v3+ flexible, v4 states filter, v5 types filter.
    SupportedApi {
        key: ApiKey::ListGroups,
        version_min: 0,
        version_max: 5,
    },
    SupportedApi {
        key: ApiKey::DeleteGroups,
        version_min: 0,
        version_max: 2,
    },
    // KIP-848; v1 has the members generate their own ids (KIP-1082).
    SupportedApi {
        key: ApiKey::ConsumerGroupHeartbeat,
        version_min: 0,
        version_max: 1,
    },
    SupportedApi {
        key: ApiKey::ConsumerGroupDescribe,
        version_min: 0,
        version_max: 1,
    },
    // ACLs (handlers/acls.rs): v1 is the oldest Kafka 4 serves (prefixed patterns), v2+ is
    // flexible, v3 adds the user resource type to filters. Answered SECURITY_DISABLED without an
    // authorizer, as Kafka does.
    SupportedApi {
        key: ApiKey::DescribeAcls,
        version_min: 1,
        version_max: 3,
    },
    SupportedApi {
        key: ApiKey::CreateAcls,
        version_min: 1,
        version_max: 3,
    },
    SupportedApi {
        key: ApiKey::DeleteAcls,
        version_min: 1,
        version_max: 3,
    },
    // Client quotas (handlers/quotas.rs): v1 is flexible; what Kafka 4 serves.
    SupportedApi {
        key: ApiKey::DescribeClientQuotas,
        version_min: 0,
        version_max: 1,
    },
    SupportedApi {
        key: ApiKey::AlterClientQuotas,
        version_min: 0,
        version_max: 1,
    },
    // SCRAM credentials (handlers/scram_credentials.rs): v0, flexible, the only version Kafka has.
    SupportedApi {
        key: ApiKey::DescribeUserScramCredentials,
        version_min: 0,
        version_max: 0,
    },
    SupportedApi {
        key: ApiKey::AlterUserScramCredentials,
        version_min: 0,
        version_max: 0,
    },
    // SASL (server/src/net/sasl): v1 means the tokens follow in SaslAuthenticate requests, v0
    // that they follow as bare size-prefixed frames. Advertised on every listener as Kafka does
    // (librdkafka uses SaslHandshake v1 only when SaslAuthenticate is listed); a listener without
    // SASL answers them ILLEGAL_SASL_STATE.
    SupportedApi {
        key: ApiKey::SaslHandshake,
        version_min: 0,
        version_max: 1,
    },
    // v1 adds the session lifetime (always 0: no re-authentication yet), v2 is flexible.
    SupportedApi {
        key: ApiKey::SaslAuthenticate,
        version_min: 0,
        version_max: 2,
    },
];

/// The table row for `key`, if the agent implements that API.
pub fn supported_api(key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED_APIS.iter().find(|api| api.key == key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn table_stays_inside_what_the_protocol_crate_can_decode() {
        for api in SUPPORTED_APIS {
            let crate_range = api.key.valid_versions();
            assert!(api.version_min <= api.version_max, "{:?}", api.key);
            assert!(crate_range.min <= api.version_min, "{:?}", api.key);
            assert!(api.version_max <= crate_range.max, "{:?}", api.key);
        }
    }

    #[test]
    fn each_api_appears_once() {
        for (index, api) in SUPPORTED_APIS.iter().enumerate() {
            assert_eq!(
                SUPPORTED_APIS.iter().position(|other| other.key == api.key),
                Some(index)
            );
        }
    }

    #[test]
    fn lookup_finds_rows_and_only_rows() {
        assert!(supported_api(ApiKey::Metadata).unwrap().supports(13));
        assert!(!supported_api(ApiKey::Metadata).unwrap().supports(14));
        assert!(!supported_api(ApiKey::ApiVersions).unwrap().supports(-1));
        assert!(supported_api(ApiKey::ShareFetch).is_none());
        assert!(!supported_api(ApiKey::Produce).unwrap().supports(13));
    }
}
