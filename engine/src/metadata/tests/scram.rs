//! SCRAM credentials: upserts and deletions through the log, Kafka's refusals, the cap, and the
//! v7 checkpoint.

use super::*;
use crate::metadata::kafka_code::{POLICY_VIOLATION, RESOURCE_NOT_FOUND, UNACCEPTABLE_CREDENTIAL};
use crate::metadata::scram::{SCRAM_CREDENTIALS_MAX, ScramCredentialSet, validate_iterations};

fn credential(mechanism: ScramMechanism, seed: u8, iterations: u32) -> ScramCredential {
    ScramCredential {
        salt: vec![seed; 24],
        iterations,
        stored_key: vec![seed.wrapping_add(1); mechanism.key_len()],
        server_key: vec![seed.wrapping_add(2); mechanism.key_len()],
    }
}

fn upsertion(user: &str, mechanism: ScramMechanism, seed: u8) -> ScramUpsertion {
    ScramUpsertion {
        user: user.to_owned(),
        mechanism,
        credential: credential(mechanism, seed, 8_192),
    }
}

fn upsert(upsertion: ScramUpsertion) -> Command {
    Command::UpsertScramCredential {
        upsertion: Box::new(upsertion),
    }
}

fn delete(user: &str, mechanism: ScramMechanism) -> Command {
    Command::DeleteScramCredential {
        deletion: Box::new(ScramDeletion {
            user: user.to_owned(),
            mechanism,
        }),
    }
}

/// The credentials behind `populated()` (and `fixtures/checkpoint_v7.bin`).
pub(super) fn sample_upsertions() -> Vec<ScramUpsertion> {
    vec![
        upsertion("alice", ScramMechanism::Sha256, 1),
        upsertion("alice", ScramMechanism::Sha512, 2),
        ScramUpsertion {
            user: "émile".to_owned(),
            mechanism: ScramMechanism::Sha512,
            credential: credential(ScramMechanism::Sha512, 3, 4_096),
        },
        ScramUpsertion {
            user: "bob".to_owned(),
            mechanism: ScramMechanism::Sha256,
            credential: credential(ScramMechanism::Sha256, 4, 16_384),
        },
    ]
}

#[test]
fn upserts_replace_and_deletes_remove_through_the_log() {
    let mut harness = Harness::new();
    for upsertion in sample_upsertions() {
        let event = harness.command(upsert(upsertion));
        assert!(
            matches!(event, Event::ScramCredentialAltered { .. }),
            "{event:?}"
        );
    }
    let credentials = harness.state.scram_credentials();
    assert_eq!(credentials.len(), 4);
    assert_eq!(credentials.users(), vec!["alice", "bob", "émile"]);
    assert_eq!(
        credentials.describe("alice"),
        vec![
            (ScramMechanism::Sha256, 8_192),
            (ScramMechanism::Sha512, 8_192)
        ]
    );
    assert_eq!(credentials.describe("nobody"), vec![]);
    assert_eq!(
        credentials.get("bob", ScramMechanism::Sha256),
        Some(&credential(ScramMechanism::Sha256, 4, 16_384))
    );
    assert_eq!(credentials.get("bob", ScramMechanism::Sha512), None);

    // An upsert of a stored credential replaces it.
    let replaced = upsertion("alice", ScramMechanism::Sha256, 9);
    harness.command(upsert(replaced.clone()));
    assert_eq!(
        harness
            .state
            .scram_credentials()
            .get("alice", ScramMechanism::Sha256),
        Some(&replaced.credential)
    );
    assert_eq!(harness.state.scram_credentials().len(), 4);

    // A deletion removes one mechanism; the user's other stays.
    let event = harness.command(delete("alice", ScramMechanism::Sha256));
    assert!(
        matches!(event, Event::ScramCredentialAltered { .. }),
        "{event:?}"
    );
    let credentials = harness.state.scram_credentials();
    assert_eq!(credentials.get("alice", ScramMechanism::Sha256), None);
    assert_eq!(
        credentials.describe("alice"),
        vec![(ScramMechanism::Sha512, 8_192)]
    );

    // Deleting it again is Kafka's RESOURCE_NOT_FOUND, and changes nothing.
    let before = harness.state.clone();
    let event = harness.command(delete("alice", ScramMechanism::Sha256));
    assert_eq!(rejected_code(&event), RESOURCE_NOT_FOUND);
    assert_eq!(
        harness.state.scram_credentials(),
        before.scram_credentials()
    );
}

#[test]
fn refusals_are_kafkas() {
    let mut harness = Harness::new();
    let mut empty_user = upsertion("", ScramMechanism::Sha256, 1);
    assert_eq!(
        rejected_code(&harness.command(upsert(empty_user.clone()))),
        UNACCEPTABLE_CREDENTIAL
    );
    empty_user.user = "x".repeat(1_025);
    assert_eq!(
        rejected_code(&harness.command(upsert(empty_user))),
        UNACCEPTABLE_CREDENTIAL
    );
    for iterations in [0, 4_095, 16_385, u32::MAX] {
        let mut refused = upsertion("alice", ScramMechanism::Sha256, 1);
        refused.credential.iterations = iterations;
        let event = harness.command(upsert(refused));
        assert_eq!(
            rejected_code(&event),
            UNACCEPTABLE_CREDENTIAL,
            "{iterations}"
        );
    }
    // Keys must match the mechanism's hash (a SHA-256 key under SHA-512 is a writer's bug).
    let mut wrong_keys = upsertion("alice", ScramMechanism::Sha512, 1);
    wrong_keys.credential.stored_key.truncate(32);
    assert_eq!(
        rejected_code(&harness.command(upsert(wrong_keys))),
        UNACCEPTABLE_CREDENTIAL
    );
    let mut no_salt = upsertion("alice", ScramMechanism::Sha256, 1);
    no_salt.credential.salt.clear();
    assert_eq!(
        rejected_code(&harness.command(upsert(no_salt))),
        UNACCEPTABLE_CREDENTIAL
    );
    assert_eq!(
        rejected_code(&harness.command(delete("", ScramMechanism::Sha256))),
        UNACCEPTABLE_CREDENTIAL
    );
    assert!(harness.state.scram_credentials().is_empty());
    // Kafka's words for the iteration bounds.
    assert_eq!(
        validate_iterations(4_095).unwrap_err().to_string(),
        "Too few iterations"
    );
    assert_eq!(
        validate_iterations(16_385).unwrap_err().to_string(),
        "Too many iterations"
    );
    assert_eq!(validate_iterations(4_096).unwrap(), 4_096);
    assert_eq!(validate_iterations(16_384).unwrap(), 16_384);
    // Kafka's mechanism codes; 0 is UNKNOWN.
    assert_eq!(ScramMechanism::from_code(1), Some(ScramMechanism::Sha256));
    assert_eq!(ScramMechanism::from_code(2), Some(ScramMechanism::Sha512));
    assert_eq!(ScramMechanism::from_code(0), None);
}

#[test]
fn the_cap_refuses_new_credentials_but_not_replacements() {
    let mut credentials = ScramCredentialSet::new();
    for n in 0..SCRAM_CREDENTIALS_MAX {
        credentials
            .upsert(&upsertion(&format!("user-{n}"), ScramMechanism::Sha256, 1))
            .unwrap();
    }
    let error = credentials
        .upsert(&upsertion("one-too-many", ScramMechanism::Sha256, 1))
        .unwrap_err();
    assert_eq!(error.kafka_error_code(), POLICY_VIOLATION);
    assert!(error.to_string().contains("100000"), "{error}");
    // A second mechanism of a stored user is a new credential too.
    assert!(
        credentials
            .upsert(&upsertion("user-0", ScramMechanism::Sha512, 1))
            .is_err()
    );
    credentials
        .upsert(&upsertion("user-0", ScramMechanism::Sha256, 7))
        .unwrap();
    credentials
        .delete(&ScramDeletion {
            user: "user-1".to_owned(),
            mechanism: ScramMechanism::Sha256,
        })
        .unwrap();
    credentials
        .upsert(&upsertion("one-more", ScramMechanism::Sha256, 1))
        .unwrap();
    assert_eq!(credentials.len(), SCRAM_CREDENTIALS_MAX);
}

#[test]
fn checkpoint_carries_credentials_and_refuses_broken_ones() {
    let state = super::checkpoint::populated();
    assert_eq!(state.scram_credentials().len(), sample_upsertions().len());
    let bytes = state.encode_checkpoint();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 7);
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.encode_checkpoint(), bytes);
    // The last credential is émile's SHA-512 one (users in byte order): its record ends the body
    // with a key length byte and two 64-byte keys.
    let body_end = bytes.len() - 4;
    let key_len_at = body_end - 2 * 64 - 1;
    assert_eq!(bytes[key_len_at], 64);
    let mut broken = bytes.clone();
    broken[key_len_at] = 32;
    reseal(&mut broken);
    assert!(MetadataState::decode_checkpoint(&broken).is_err());
    // Its mechanism code (after the 2-byte length and the name) set to UNKNOWN (0) is refused.
    let mechanism_at = key_len_at - 24 - 2 - 4 - 1;
    assert_eq!(bytes[mechanism_at], 2);
    let mut broken = bytes.clone();
    broken[mechanism_at] = 0;
    reseal(&mut broken);
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(error.to_string().contains("SCRAM mechanism"), "{error}");
    // Iterations out of Kafka's range are refused as the state machine refuses them.
    let mut broken = bytes.clone();
    broken[mechanism_at + 1..mechanism_at + 5].copy_from_slice(&100u32.to_le_bytes());
    reseal(&mut broken);
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(error.to_string().contains("Too few iterations"), "{error}");
    // Every truncation of the SCRAM section is refused, never a panic.
    for cut in 1..300 {
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

#[test]
fn credentials_out_of_order_in_a_checkpoint_are_refused() {
    let mut harness = Harness::new();
    harness.command(upsert(upsertion("a", ScramMechanism::Sha256, 1)));
    harness.command(upsert(upsertion("b", ScramMechanism::Sha256, 1)));
    let bytes = harness.state.encode_checkpoint();
    // Each record is 2 + 1 + 1 + 4 + 2 + 24 + 1 + 64 bytes; swap the two names.
    let record_len = 2 + 1 + 1 + 4 + 2 + 24 + 1 + 64;
    let body_end = bytes.len() - 4;
    let first_name = body_end - 2 * record_len + 2;
    let second_name = body_end - record_len + 2;
    assert_eq!(bytes[first_name], b'a');
    assert_eq!(bytes[second_name], b'b');
    let mut broken = bytes.clone();
    broken[first_name] = b'b';
    broken[second_name] = b'a';
    reseal(&mut broken);
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(error.to_string().contains("out of order"), "{error}");
    // The same name twice too.
    broken[second_name] = b'b';
    reseal(&mut broken);
    assert!(MetadataState::decode_checkpoint(&broken).is_err());
}

fn reseal(bytes: &mut [u8]) {
    let body_end = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// The SCRAM commands of `fixtures/commands_v1_scram.bin`.
fn fixture_scram_commands() -> Vec<Command> {
    sample_upsertions()
        .into_iter()
        .map(upsert)
        .chain([delete("alice", ScramMechanism::Sha512)])
        .collect()
}

/// Writes this build's fixtures when asked (`SLUICE_WRITE_SCRAM_FIXTURES=1`): how
/// `checkpoint_v7.bin` and `commands_v1_scram.bin` were made by the build that introduced them.
#[test]
fn write_fixtures_when_asked() {
    if std::env::var_os("SLUICE_WRITE_SCRAM_FIXTURES").is_none() {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metadata/tests/fixtures");
    std::fs::write(
        format!("{dir}/checkpoint_v7.bin"),
        super::checkpoint::populated().encode_checkpoint(),
    )
    .unwrap();
    std::fs::write(
        format!("{dir}/commands_v1_scram.bin"),
        encode_commands(&fixture_scram_commands()).unwrap(),
    )
    .unwrap();
}

/// A commands section of SCRAM commands encoded by the build that added them: later builds read
/// them as the same commands and write the same bytes.
#[test]
fn scram_commands_encoded_by_the_first_build_with_them_still_decode() {
    let bytes = include_bytes!("fixtures/commands_v1_scram.bin");
    assert_eq!(decode_commands(bytes).unwrap(), fixture_scram_commands());
    assert_eq!(
        encode_commands(&fixture_scram_commands()).unwrap(),
        bytes.to_vec()
    );
    // The commands before them still decode as they did (quota fixture, older builds).
    assert!(decode_commands(include_bytes!("fixtures/commands_v1_quotas.bin")).is_ok());
}

/// A v7 checkpoint (`populated`, SCRAM credentials included) written by the build that introduced
/// v7: this build reads it back to the same state and writes the same bytes; a later version keeps
/// decoding it (rename `populated` then, as `populated_before_scram` was).
#[test]
fn version_7_checkpoint_fixture_decodes() {
    let bytes = include_bytes!("fixtures/checkpoint_v7.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 7);
    let state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state, super::checkpoint::populated());
    assert_eq!(state.scram_credentials().len(), sample_upsertions().len());
    if CHECKPOINT_VERSION == 7 {
        assert_eq!(state.encode_checkpoint(), bytes.to_vec());
    }
}
