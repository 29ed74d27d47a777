//! Client quotas: Kafka's precedence, DescribeClientQuotas filters, alterations through the log,
//! the cap, and the v6 checkpoint.

use super::*;
use crate::metadata::quota::{validate_entity, validate_value};

fn name(name: &str) -> Option<QuotaName> {
    Some(QuotaName::Named(name.to_owned()))
}

const DEFAULT: Option<QuotaName> = Some(QuotaName::Default);

fn entity(user: Option<QuotaName>, client_id: Option<QuotaName>) -> QuotaEntity {
    QuotaEntity { user, client_id }
}

fn set(entity: QuotaEntity, key: QuotaKey, value: f64) -> QuotaAlteration {
    QuotaAlteration {
        entity,
        ops: vec![(key, Some(QuotaValue::new(value).unwrap()))],
    }
}

/// One entity at each of Kafka's eight levels, each with its own producer rate (its level).
fn every_level() -> Vec<QuotaAlteration> {
    let levels = [
        entity(name("alice"), name("app")),
        entity(name("alice"), DEFAULT),
        entity(name("alice"), None),
        entity(DEFAULT, name("app")),
        entity(DEFAULT, DEFAULT),
        entity(DEFAULT, None),
        entity(None, name("app")),
        entity(None, DEFAULT),
    ];
    levels
        .into_iter()
        .enumerate()
        .map(|(level, entity)| set(entity, QuotaKey::ProducerByteRate, (level + 1) as f64))
        .collect()
}

/// The alterations behind `populated_before_scram()`'s quotas (and `fixtures/checkpoint_v6.bin`).
pub(super) fn sample_alterations() -> Vec<QuotaAlteration> {
    let mut alterations = every_level();
    alterations.push(QuotaAlteration {
        entity: entity(name("émile"), None),
        ops: vec![
            (
                QuotaKey::RequestPercentage,
                Some(QuotaValue::new(12.5).unwrap()),
            ),
            (
                QuotaKey::ConsumerByteRate,
                Some(QuotaValue::new(1_048_576.0).unwrap()),
            ),
        ],
    });
    alterations
}

#[test]
fn precedence_is_kafkas_most_specific_first() {
    let mut quotas = QuotaSet::new();
    let alterations = every_level();
    for alteration in &alterations {
        quotas.alter(alteration).unwrap();
    }
    let key = QuotaKey::ProducerByteRate;
    // Remove the levels one by one, most specific first: each time the next level applies.
    let expected_groups = [
        ("alice", "app"),
        ("alice", "app"),
        ("alice", ""),
        ("alice", "app"),
        ("alice", "app"),
        ("alice", ""),
        ("", "app"),
        ("", "app"),
    ];
    for (level, alteration) in alterations.iter().enumerate() {
        let resolved = quotas.resolve(key, "alice", "app").unwrap();
        assert_eq!(resolved.limit, (level + 1) as f64, "level {level}");
        assert_eq!(resolved.entity, alteration.entity);
        let (user, client_id) = expected_groups[level];
        assert_eq!(
            (
                resolved.group.user.as_str(),
                resolved.group.client_id.as_str()
            ),
            (user, client_id),
            "level {level}"
        );
        quotas
            .alter(&QuotaAlteration {
                entity: alteration.entity.clone(),
                ops: vec![(key, None)],
            })
            .unwrap();
    }
    assert!(quotas.is_empty());
    assert_eq!(quotas.resolve(key, "alice", "app"), None);
}

#[test]
fn other_users_and_clients_fall_to_the_defaults() {
    let mut quotas = QuotaSet::new();
    for alteration in every_level() {
        quotas.alter(&alteration).unwrap();
    }
    let key = QuotaKey::ProducerByteRate;
    // Another user with the same client id: <default> user and client id (level 4).
    let bob = quotas.resolve(key, "bob", "app").unwrap();
    assert_eq!(bob.limit, 4.0);
    assert_eq!(bob.group.user, "bob");
    // alice with another client: her <default> client id (level 2), measured per client id.
    let other = quotas.resolve(key, "alice", "other").unwrap();
    assert_eq!(other.limit, 2.0);
    assert_eq!(other.group.client_id, "other");
    // Another user, another client: <default> user and <default> client id (level 5).
    assert_eq!(quotas.resolve(key, "bob", "other").unwrap().limit, 5.0);
    // Each key resolves on its own: no consumer quota anywhere.
    assert_eq!(
        quotas.resolve(QuotaKey::ConsumerByteRate, "alice", "app"),
        None
    );
    assert!(quotas.has_key(key) && !quotas.has_key(QuotaKey::RequestPercentage));
    // Only a client-id quota: users are not part of the measured group.
    let mut clients = QuotaSet::new();
    clients
        .alter(&set(entity(None, name("app")), key, 100.0))
        .unwrap();
    let resolved = clients.resolve(key, "ANONYMOUS", "app").unwrap();
    assert_eq!(resolved.group.user, "");
    assert_eq!(clients.resolve(key, "ANONYMOUS", "other"), None);
}

#[test]
fn values_and_entities_are_checked_as_kafka_checks_them() {
    assert!(validate_value(QuotaKey::ProducerByteRate, 1024.0).is_ok());
    assert_eq!(
        validate_value(QuotaKey::ProducerByteRate, 10.5).unwrap_err(),
        "Configuration producer_byte_rate must be a Long value"
    );
    assert!(validate_value(QuotaKey::RequestPercentage, 10.5).is_ok());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            validate_value(QuotaKey::RequestPercentage, bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        validate_entity(&entity(None, None)).unwrap_err(),
        "Invalid empty client quota entity"
    );
    assert_eq!(
        validate_entity(&entity(name(""), None)).unwrap_err(),
        "Empty user not supported"
    );
    assert!(validate_entity(&entity(name(&"x".repeat(2_000)), None)).is_err());
    assert_eq!(
        QuotaKey::from_name("producer_byte_rate"),
        Some(QuotaKey::ProducerByteRate)
    );
    assert_eq!(QuotaKey::from_name("controller_mutation_rate"), None);
}

#[test]
fn filters_match_as_describe_client_quotas_does() {
    let mut quotas = QuotaSet::new();
    for alteration in every_level() {
        quotas.alter(&alteration).unwrap();
    }
    let count = |filter: QuotaFilter| quotas.describe(&filter).len();
    assert_eq!(count(QuotaFilter::default()), 8);
    assert_eq!(
        count(QuotaFilter {
            strict: true,
            ..QuotaFilter::default()
        }),
        0
    );
    // Exact user alice: the three entities that name her (any client side).
    let alice = || QuotaFilter {
        user: Some(QuotaMatch::Exact("alice".to_owned())),
        ..QuotaFilter::default()
    };
    assert_eq!(count(alice()), 3);
    assert_eq!(
        count(QuotaFilter {
            strict: true,
            ..alice()
        }),
        1
    );
    // Users of any name, <default> included.
    let specified = QuotaFilter {
        user: Some(QuotaMatch::Specified),
        ..QuotaFilter::default()
    };
    assert_eq!(count(specified), 6);
    let default_clients = QuotaFilter {
        client_id: Some(QuotaMatch::Default),
        strict: true,
        ..QuotaFilter::default()
    };
    assert_eq!(count(default_clients), 1);
    let both = QuotaFilter {
        user: Some(QuotaMatch::Default),
        client_id: Some(QuotaMatch::Exact("app".to_owned())),
        strict: false,
    };
    assert_eq!(quotas.describe(&both)[0].0, &entity(DEFAULT, name("app")));
}

#[test]
fn alterations_through_the_log_and_their_refusals() {
    let mut harness = Harness::new();
    let alice = entity(name("alice"), None);
    let event = harness.command(Command::AlterClientQuotas {
        alteration: Box::new(set(alice.clone(), QuotaKey::ProducerByteRate, 1000.0)),
    });
    assert_eq!(event, Event::ClientQuotasAltered { index: 0 });
    let snapshot = harness.state.quotas_shared();
    // Twice the same key, or an empty entity: INVALID_REQUEST, nothing changes.
    let twice = QuotaAlteration {
        entity: alice.clone(),
        ops: vec![
            (QuotaKey::ProducerByteRate, None),
            (QuotaKey::ProducerByteRate, QuotaValue::new(5.0)),
        ],
    };
    for bad in [
        twice,
        set(entity(None, None), QuotaKey::ConsumerByteRate, 1.0),
    ] {
        let event = harness.command(Command::AlterClientQuotas {
            alteration: Box::new(bad),
        });
        assert_eq!(rejected_code(&event), 42);
    }
    assert!(std::sync::Arc::ptr_eq(
        &snapshot,
        &harness.state.quotas_shared()
    ));
    // Removing the last key removes the entity; the snapshot handed out keeps it.
    harness.command(Command::AlterClientQuotas {
        alteration: Box::new(QuotaAlteration {
            entity: alice.clone(),
            ops: vec![(QuotaKey::ProducerByteRate, None)],
        }),
    });
    assert!(harness.state.quotas().is_empty());
    assert_eq!(snapshot.len(), 1);
}

#[test]
fn the_cap_refuses_new_entities_but_not_changes() {
    let mut quotas = QuotaSet::new();
    for n in 0..QUOTA_ENTITIES_MAX {
        quotas
            .alter(&set(
                entity(None, name(&format!("client-{n}"))),
                QuotaKey::ProducerByteRate,
                1.0,
            ))
            .unwrap();
    }
    let error = quotas
        .alter(&set(
            entity(name("one-more"), None),
            QuotaKey::ProducerByteRate,
            1.0,
        ))
        .unwrap_err();
    assert_eq!(error.kafka_error_code(), 44);
    assert!(error.to_string().contains("limit 10000"), "{error}");
    // An existing entity still changes, and a removal frees room.
    let first = entity(None, name("client-0"));
    quotas
        .alter(&set(first.clone(), QuotaKey::ConsumerByteRate, 2.0))
        .unwrap();
    quotas
        .alter(&QuotaAlteration {
            entity: first,
            ops: vec![
                (QuotaKey::ConsumerByteRate, None),
                (QuotaKey::ProducerByteRate, None),
            ],
        })
        .unwrap();
    quotas
        .alter(&set(
            entity(name("one-more"), None),
            QuotaKey::ProducerByteRate,
            1.0,
        ))
        .unwrap();
    assert_eq!(quotas.len(), QUOTA_ENTITIES_MAX);
}

#[test]
fn checkpoint_carries_quotas_and_refuses_broken_ones() {
    let state = super::checkpoint::populated_before_scram();
    assert_eq!(state.quotas().len(), sample_alterations().len());
    let bytes = state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded, state);
    // The last value of the last entity ends the quota section, which the (empty, 4-byte) SCRAM
    // section follows: zero is refused.
    let body_end = bytes.len() - 4 - 4;
    let mut broken = bytes.clone();
    broken[body_end - 8..body_end].copy_from_slice(&0f64.to_bits().to_le_bytes());
    reseal(&mut broken);
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(error.to_string().contains("not above zero"), "{error}");
    // Every truncation of the quota section is refused, never a panic.
    for cut in 1..60 {
        let mut short = bytes[..body_end - cut].to_vec();
        let body_len = (short.len() - 20) as u64;
        short[12..20].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32c::crc32c(&short);
        short.extend_from_slice(&crc.to_le_bytes());
        assert!(
            MetadataState::decode_checkpoint(&short).is_err(),
            "cut {cut}"
        );
    }
}

fn reseal(bytes: &mut [u8]) {
    let body_end = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// The quota commands of `fixtures/commands_v1_quotas.bin`.
fn fixture_quota_commands() -> Vec<Command> {
    sample_alterations()
        .into_iter()
        .chain([QuotaAlteration {
            entity: entity(name("alice"), DEFAULT),
            ops: vec![(QuotaKey::ProducerByteRate, None)],
        }])
        .map(|alteration| Command::AlterClientQuotas {
            alteration: Box::new(alteration),
        })
        .collect()
}

/// Writes this build's fixtures when asked (`SLUICE_WRITE_QUOTA_FIXTURES=1`): how
/// `checkpoint_v6.bin` and `commands_v1_quotas.bin` were made by the build that introduced them.
#[test]
fn write_fixtures_when_asked() {
    if std::env::var_os("SLUICE_WRITE_QUOTA_FIXTURES").is_none() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metadata/tests/fixtures");
    std::fs::write(
        format!("{dir}/checkpoint_v6.bin"),
        super::checkpoint::populated_before_scram().encode_checkpoint(),
    )
    .unwrap();
    std::fs::write(
        format!("{dir}/commands_v1_quotas.bin"),
        encode_commands(&fixture_quota_commands()).unwrap(),
    )
    .unwrap();
}

/// A commands section of quota commands encoded by the build that added them: later builds read
/// them as the same commands and write the same bytes.
#[test]
fn quota_commands_encoded_by_the_first_build_with_them_still_decode() {
    let bytes = include_bytes!("fixtures/commands_v1_quotas.bin");
    assert_eq!(decode_commands(bytes).unwrap(), fixture_quota_commands());
    assert_eq!(
        encode_commands(&fixture_quota_commands()).unwrap(),
        bytes.to_vec()
    );
}

/// A v6 checkpoint (`populated_before_scram`, client quotas included) written by the build that
/// introduced v6: later builds read it back to the same state (no SCRAM credentials).
#[test]
fn version_6_checkpoint_fixture_decodes() {
    let bytes = include_bytes!("fixtures/checkpoint_v6.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 6);
    let state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state, super::checkpoint::populated_before_scram());
    assert_eq!(state.quotas().len(), sample_alterations().len());
    assert!(state.scram_credentials().is_empty());
}
