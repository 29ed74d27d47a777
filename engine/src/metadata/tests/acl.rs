//! ACL bindings, filters and the authorizer's decision (Kafka's `StandardAuthorizer` semantics),
//! case by case and against a linear reference model.

use proptest::prelude::*;

use super::super::acl::{
    OperationFilter, PatternFilter, PermissionFilter, ResourceTypeFilter, validate_acl_binding,
};
use super::super::authorizer::implies;
use super::*;

use AclOperation as Op;
use AclPatternType::{Literal, Prefixed};
use AclPermission::{Allow, Deny};
use AclResourceType::{Cluster, Group, Topic, TransactionalId};

pub(super) fn binding(
    resource_type: AclResourceType,
    pattern_type: AclPatternType,
    name: &str,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding {
        resource: AclResource {
            resource_type,
            pattern_type,
            name: name.to_owned(),
        },
        entry: AclEntry {
            principal: principal.to_owned(),
            host: host.to_owned(),
            operation,
            permission,
        },
    }
}

fn set(bindings: &[AclBinding]) -> AclSet {
    let mut acls = AclSet::new();
    for binding in bindings {
        acls.insert(binding.clone()).unwrap();
    }
    acls
}

const ALICE: Requester<'static> = Requester {
    principal: "User:alice",
    host: "10.0.0.1",
};
const BOB: Requester<'static> = Requester {
    principal: "User:bob",
    host: "10.0.0.2",
};

fn allowed(
    acls: &AclSet,
    requester: Requester<'_>,
    op: Op,
    kind: AclResourceType,
    name: &str,
) -> bool {
    authorize(
        acls,
        &AuthorizerPolicy::default(),
        requester,
        op,
        kind,
        name,
    )
}

#[test]
fn codes_are_kafkas() {
    assert_eq!(Topic.code(), 2);
    assert_eq!(TransactionalId.code(), 5);
    assert_eq!(Prefixed.code(), 4);
    assert_eq!(Op::All.code(), 2);
    assert_eq!(Op::IdempotentWrite.code(), 12);
    assert_eq!(Allow.code(), 3);
    assert_eq!(Deny.code(), 2);
    for code in -128..=127i8 {
        if let Some(op) = Op::from_code(code) {
            assert_eq!(op.code(), code);
        }
    }
    // ANY and UNKNOWN are filters or nothing, never a stored value.
    assert_eq!(Op::from_code(1), None);
    assert_eq!(AclResourceType::from_code(1), None);
    assert_eq!(AclPatternType::from_code(2), None);
    assert_eq!(AclPermission::from_code(0), None);
}

#[test]
fn literal_allow_and_nothing_else() {
    let acls = set(&[binding(
        Topic,
        Literal,
        "orders",
        "User:alice",
        "*",
        Op::Write,
        Allow,
    )]);
    assert!(allowed(&acls, ALICE, Op::Write, Topic, "orders"));
    assert!(!allowed(&acls, ALICE, Op::Read, Topic, "orders"));
    assert!(!allowed(&acls, ALICE, Op::Write, Topic, "orders2"));
    assert!(!allowed(&acls, ALICE, Op::Write, Group, "orders"));
    assert!(!allowed(&acls, BOB, Op::Write, Topic, "orders"));
}

#[test]
fn implied_operations() {
    for granted in [Op::Read, Op::Write, Op::Delete, Op::Alter] {
        let acls = set(&[binding(
            Topic,
            Literal,
            "t",
            "User:alice",
            "*",
            granted,
            Allow,
        )]);
        assert!(
            allowed(&acls, ALICE, Op::Describe, Topic, "t"),
            "{granted:?}"
        );
        assert!(!allowed(&acls, ALICE, Op::DescribeConfigs, Topic, "t"));
    }
    let acls = set(&[binding(
        Topic,
        Literal,
        "t",
        "User:alice",
        "*",
        Op::AlterConfigs,
        Allow,
    )]);
    assert!(allowed(&acls, ALICE, Op::DescribeConfigs, Topic, "t"));
    assert!(!allowed(&acls, ALICE, Op::Describe, Topic, "t"));
    let acls = set(&[binding(
        Topic,
        Literal,
        "t",
        "User:alice",
        "*",
        Op::All,
        Allow,
    )]);
    for code in 2..=12 {
        let op = Op::from_code(code).unwrap();
        assert!(allowed(&acls, ALICE, op, Topic, "t"), "{op:?}");
    }
    // Describe implies nothing.
    assert!(!implies(Op::Describe, Op::Read));
    assert!(!implies(Op::Create, Op::Describe));
}

#[test]
fn deny_wins_and_does_not_imply() {
    let acls = set(&[
        binding(Topic, Prefixed, "pay", "User:*", "*", Op::All, Allow),
        binding(
            Topic,
            Literal,
            "payments",
            "User:alice",
            "*",
            Op::Write,
            Deny,
        ),
    ]);
    assert!(!allowed(&acls, ALICE, Op::Write, Topic, "payments"));
    assert!(allowed(&acls, ALICE, Op::Read, Topic, "payments"));
    assert!(allowed(&acls, BOB, Op::Write, Topic, "payments"));
    assert!(allowed(&acls, ALICE, Op::Write, Topic, "payouts"));
    // Denying READ leaves DESCRIBE allowed by the ALL.
    let acls = set(&[
        binding(Topic, Literal, "t", "User:alice", "*", Op::All, Allow),
        binding(Topic, Literal, "t", "User:alice", "*", Op::Read, Deny),
    ]);
    assert!(allowed(&acls, ALICE, Op::Describe, Topic, "t"));
    assert!(!allowed(&acls, ALICE, Op::Read, Topic, "t"));
    // DENY ALL denies everything, a wildcard DENY everyone.
    let acls = set(&[
        binding(Group, Literal, "*", "User:*", "*", Op::Read, Allow),
        binding(Group, Literal, "g", "User:*", "*", Op::All, Deny),
    ]);
    assert!(allowed(&acls, ALICE, Op::Read, Group, "h"));
    assert!(!allowed(&acls, ALICE, Op::Read, Group, "g"));
    assert!(!allowed(&acls, ALICE, Op::Describe, Group, "g"));
}

#[test]
fn patterns_wildcards_and_hosts() {
    let acls = set(&[
        binding(
            Topic,
            Prefixed,
            "fraud-",
            "User:alice",
            "*",
            Op::Read,
            Allow,
        ),
        binding(Topic, Literal, "*", "User:bob", "10.0.0.2", Op::Read, Allow),
    ]);
    assert!(allowed(&acls, ALICE, Op::Read, Topic, "fraud-"));
    assert!(allowed(&acls, ALICE, Op::Read, Topic, "fraud-cards"));
    assert!(!allowed(&acls, ALICE, Op::Read, Topic, "fraud"));
    assert!(!allowed(&acls, ALICE, Op::Read, Topic, "xfraud-cards"));
    assert!(allowed(&acls, BOB, Op::Read, Topic, "anything"));
    let elsewhere = Requester {
        principal: "User:bob",
        host: "10.0.0.3",
    };
    assert!(!allowed(&acls, elsewhere, Op::Read, Topic, "anything"));
    // A prefix that cuts a multi-byte character is no prefix; names are matched as bytes of
    // whole characters.
    let acls = set(&[binding(
        Topic,
        Prefixed,
        "ü",
        "User:alice",
        "*",
        Op::Read,
        Allow,
    )]);
    assert!(allowed(&acls, ALICE, Op::Read, Topic, "über"));
}

#[test]
fn super_users_and_no_acl_found() {
    let acls = set(&[binding(
        Topic,
        Literal,
        "named",
        "User:bob",
        "*",
        Op::Read,
        Allow,
    )]);
    let policy = AuthorizerPolicy {
        super_users: vec!["User:alice".to_owned()],
        allow_everyone_if_no_acl_found: false,
    };
    assert!(authorize(
        &acls,
        &policy,
        ALICE,
        Op::Alter,
        Cluster,
        "kafka-cluster"
    ));
    assert!(!authorize(&acls, &policy, BOB, Op::Read, Topic, "unnamed"));
    let open = AuthorizerPolicy {
        super_users: Vec::new(),
        allow_everyone_if_no_acl_found: true,
    };
    assert!(authorize(&acls, &open, ALICE, Op::Read, Topic, "unnamed"));
    // A binding naming the resource, for anyone else, closes it.
    assert!(!authorize(&acls, &open, ALICE, Op::Read, Topic, "named"));
    assert!(authorize(&acls, &open, BOB, Op::Read, Topic, "named"));
}

#[test]
fn by_resource_type() {
    let policy = AuthorizerPolicy::default();
    let any = |acls: &AclSet, requester| authorize_any(acls, &policy, requester, Op::Write, Topic);
    assert!(!any(&AclSet::new(), ALICE));
    let acls = set(&[binding(
        Topic,
        Literal,
        "t",
        "User:alice",
        "*",
        Op::Write,
        Allow,
    )]);
    assert!(any(&acls, ALICE));
    assert!(!any(&acls, BOB));
    // Covered by a DENY of the same literal, of a prefix, or of `*`: nothing is left.
    for deny in [
        binding(Topic, Literal, "t", "User:alice", "*", Op::Write, Deny),
        binding(Topic, Prefixed, "", "User:alice", "*", Op::Write, Deny),
        binding(Topic, Literal, "*", "User:*", "*", Op::All, Deny),
    ] {
        if validate_acl_binding(&deny).is_err() {
            continue;
        }
        let acls = set(&[
            binding(Topic, Literal, "t", "User:alice", "*", Op::Write, Allow),
            deny,
        ]);
        assert!(!any(&acls, ALICE));
    }
    let acls = set(&[
        binding(Topic, Prefixed, "a", "User:alice", "*", Op::All, Allow),
        binding(Topic, Prefixed, "ab", "User:alice", "*", Op::Write, Deny),
    ]);
    assert!(any(&acls, ALICE));
    let acls = set(&[
        binding(Topic, Prefixed, "ab", "User:alice", "*", Op::All, Allow),
        binding(Topic, Prefixed, "a", "User:alice", "*", Op::Write, Deny),
    ]);
    assert!(!any(&acls, ALICE));
}

#[test]
fn validation_refuses_what_kafka_refuses() {
    let ok = binding(Topic, Literal, "t", "User:alice", "*", Op::Read, Allow);
    assert!(validate_acl_binding(&ok).is_ok());
    for bad in [
        binding(Topic, Literal, "", "User:alice", "*", Op::Read, Allow),
        binding(Topic, Literal, "t", "alice", "*", Op::Read, Allow),
        binding(Topic, Literal, "t", "User:", "*", Op::Read, Allow),
        binding(Topic, Literal, "t", "User:alice", "", Op::Read, Allow),
        binding(
            Cluster,
            Literal,
            "other",
            "User:alice",
            "*",
            Op::Alter,
            Allow,
        ),
        binding(
            Topic,
            Literal,
            &"x".repeat(1001),
            "User:alice",
            "*",
            Op::Read,
            Allow,
        ),
    ] {
        let error = validate_acl_binding(&bad).unwrap_err();
        assert_eq!(error.kafka_error_code(), 42, "{error}");
    }
}

#[test]
fn set_insert_is_idempotent_and_capped() {
    let mut acls = AclSet::new();
    let one = binding(Topic, Literal, "t", "User:alice", "*", Op::Read, Allow);
    assert_eq!(acls.insert(one.clone()), Ok(true));
    assert_eq!(acls.insert(one), Ok(false));
    assert_eq!(acls.len(), 1);
    for n in 1..ACL_BINDINGS_MAX {
        let name = format!("t{n}");
        acls.insert(binding(
            Topic,
            Literal,
            &name,
            "User:alice",
            "*",
            Op::Read,
            Allow,
        ))
        .unwrap();
    }
    assert_eq!(acls.len(), ACL_BINDINGS_MAX);
    let error = acls
        .insert(binding(
            Topic,
            Literal,
            "over",
            "User:alice",
            "*",
            Op::Read,
            Allow,
        ))
        .unwrap_err();
    assert_eq!(error.kafka_error_code(), 44);
    assert_eq!(
        acls.remove_matching(&AclBindingFilter::any()).len(),
        ACL_BINDINGS_MAX
    );
    assert!(acls.is_empty());
}

#[test]
fn filters_as_kafka_matches_them() {
    let acls = set(&[
        binding(Topic, Literal, "orders", "User:alice", "*", Op::Read, Allow),
        binding(Topic, Literal, "*", "User:bob", "*", Op::Read, Allow),
        binding(Topic, Prefixed, "ord", "User:bob", "*", Op::Write, Deny),
        binding(Group, Literal, "orders", "User:alice", "*", Op::Read, Allow),
    ]);
    let filter = |resource_type, name: Option<&str>, pattern| AclBindingFilter {
        resource_type,
        name: name.map(str::to_owned),
        pattern,
        ..AclBindingFilter::any()
    };
    let count = |filter: AclBindingFilter| acls.matching(&filter).len();
    assert_eq!(count(AclBindingFilter::any()), 4);
    assert_eq!(
        count(filter(
            ResourceTypeFilter::Is(Topic),
            None,
            PatternFilter::Any
        )),
        3
    );
    // ANY with a name: the exact name under any pattern type.
    assert_eq!(
        count(filter(
            ResourceTypeFilter::Any,
            Some("orders"),
            PatternFilter::Any
        )),
        2
    );
    // MATCH: every pattern that applies to a topic named "orders".
    assert_eq!(
        count(filter(
            ResourceTypeFilter::Is(Topic),
            Some("orders"),
            PatternFilter::Match
        )),
        3
    );
    assert_eq!(
        count(filter(
            ResourceTypeFilter::Is(Topic),
            Some("ord"),
            PatternFilter::Is(Prefixed)
        )),
        1
    );
    let entry_filter = AclBindingFilter {
        principal: Some("User:bob".to_owned()),
        operation: OperationFilter::Is(Op::Write),
        permission: PermissionFilter::Is(Deny),
        ..AclBindingFilter::any()
    };
    assert_eq!(count(entry_filter), 1);
}

// The reference model: every binding in a list, scanned linearly, the rules written from
// Kafka's documentation rather than from the implementation above.
fn model_authorize(
    bindings: &[AclBinding],
    policy: &AuthorizerPolicy,
    requester: Requester<'_>,
    op: Op,
    kind: AclResourceType,
    name: &str,
) -> bool {
    if policy
        .super_users
        .iter()
        .any(|user| user == requester.principal)
    {
        return true;
    }
    let on_resource: Vec<&AclBinding> = bindings
        .iter()
        .filter(|binding| {
            binding.resource.resource_type == kind
                && match binding.resource.pattern_type {
                    Literal => binding.resource.name == name || binding.resource.name == "*",
                    Prefixed => name.starts_with(&binding.resource.name),
                }
        })
        .collect();
    let mine: Vec<&&AclBinding> = on_resource
        .iter()
        .filter(|binding| {
            (binding.entry.principal == requester.principal || binding.entry.principal == "User:*")
                && (binding.entry.host == requester.host || binding.entry.host == "*")
        })
        .collect();
    let denied = mine.iter().any(|binding| {
        binding.entry.permission == Deny
            && (binding.entry.operation == op || binding.entry.operation == Op::All)
    });
    if denied {
        return false;
    }
    let describe_family = [Op::Read, Op::Write, Op::Delete, Op::Alter];
    let granted = mine.iter().any(|binding| {
        let granted = binding.entry.operation;
        binding.entry.permission == Allow
            && (granted == op
                || granted == Op::All
                || (op == Op::Describe && describe_family.contains(&granted))
                || (op == Op::DescribeConfigs && granted == Op::AlterConfigs))
    });
    granted || (on_resource.is_empty() && policy.allow_everyone_if_no_acl_found)
}

fn arb_binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![Topic, Group]),
        prop::sample::select(vec![Literal, Prefixed]),
        prop::sample::select(vec!["a", "ab", "abc", "b", "*"]),
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec!["*", "10.0.0.1"]),
        (2i8..=12).prop_map(|code| Op::from_code(code).unwrap()),
        prop::sample::select(vec![Allow, Deny]),
    )
        .prop_map(|(kind, pattern, name, principal, host, op, permission)| {
            binding(kind, pattern, name, principal, host, op, permission)
        })
}

proptest! {
    #[test]
    fn authorize_agrees_with_the_linear_model(
        bindings in prop::collection::vec(arb_binding(), 0..12),
        principal in prop::sample::select(vec!["User:alice", "User:bob", "User:carol"]),
        host in prop::sample::select(vec!["10.0.0.1", "10.0.0.9"]),
        name in prop::sample::select(vec!["a", "ab", "abc", "abd", "b", "c", "*"]),
        kind in prop::sample::select(vec![Topic, Group]),
        op in (2i8..=12).prop_map(|code| Op::from_code(code).unwrap()),
        super_user in any::<bool>(),
        open in any::<bool>(),
    ) {
        let acls = set(&bindings);
        let policy = AuthorizerPolicy {
            super_users: if super_user { vec!["User:carol".to_owned()] } else { Vec::new() },
            allow_everyone_if_no_acl_found: open,
        };
        let requester = Requester { principal, host };
        prop_assert_eq!(
            authorize(&acls, &policy, requester, op, kind, name),
            model_authorize(&bindings, &policy, requester, op, kind, name)
        );
    }

    #[test]
    fn delete_removes_exactly_the_matching_bindings(
        bindings in prop::collection::vec(arb_binding(), 0..16),
        name in prop::option::of(prop::sample::select(vec!["a", "ab", "abc", "*"])),
        pattern in prop::sample::select(vec![
            PatternFilter::Any, PatternFilter::Match,
            PatternFilter::Is(Literal), PatternFilter::Is(Prefixed),
        ]),
        principal in prop::option::of(prop::sample::select(vec!["User:alice", "User:*"])),
        permission in prop::sample::select(vec![
            PermissionFilter::Any, PermissionFilter::Is(Allow), PermissionFilter::Is(Deny),
        ]),
    ) {
        let mut acls = set(&bindings);
        let before: Vec<AclBinding> = acls.matching(&AclBindingFilter::any());
        let filter = AclBindingFilter {
            name: name.map(str::to_owned),
            pattern,
            principal: principal.map(str::to_owned),
            permission,
            ..AclBindingFilter::any()
        };
        let removed = acls.remove_matching(&filter);
        let after = acls.matching(&AclBindingFilter::any());
        prop_assert_eq!(removed.len() + after.len(), before.len());
        prop_assert_eq!(acls.len(), after.len());
        prop_assert!(removed.iter().all(|binding| filter.matches(binding)));
        prop_assert!(after.iter().all(|binding| !filter.matches(binding)));
        let mut rebuilt = after.clone();
        rebuilt.extend(removed);
        rebuilt.sort();
        prop_assert_eq!(rebuilt, before);
    }
}

/// Bindings of every resource type, pattern type, operation family and permission.
pub(super) fn sample_bindings() -> Vec<AclBinding> {
    vec![
        binding(
            Topic,
            Literal,
            "payments",
            "User:alice",
            "*",
            Op::Write,
            Allow,
        ),
        binding(
            Topic,
            Prefixed,
            "fraud-",
            "User:*",
            "10.0.0.1",
            Op::Read,
            Allow,
        ),
        binding(Topic, Literal, "*", "User:mallory", "*", Op::All, Deny),
        binding(Group, Prefixed, "billing", "User:bob", "*", Op::Read, Allow),
        binding(
            Cluster,
            Literal,
            "kafka-cluster",
            "User:ops",
            "*",
            Op::Alter,
            Allow,
        ),
        binding(
            TransactionalId,
            Literal,
            "tx",
            "User:alice",
            "*",
            Op::Describe,
            Allow,
        ),
        binding(
            Topic,
            Literal,
            "ü-topic",
            "User:émile",
            "::1",
            Op::IdempotentWrite,
            Allow,
        ),
    ]
}

fn create(harness: &mut Harness, binding: AclBinding) -> Event {
    harness.command(Command::CreateAcl {
        binding: Box::new(binding),
    })
}

fn delete(harness: &mut Harness, filter: AclBindingFilter) -> Vec<AclBinding> {
    match harness.command(Command::DeleteAcls {
        filter: Box::new(filter),
    }) {
        Event::AclsDeleted { deleted, .. } => deleted,
        other => panic!("{other:?}"),
    }
}

#[test]
fn commands_create_and_delete_in_the_state() {
    let mut harness = Harness::new();
    let one = binding(Topic, Literal, "t", "User:alice", "*", Op::Read, Allow);
    assert_eq!(
        create(&mut harness, one.clone()),
        Event::AclCreated {
            index: 0,
            created: true
        }
    );
    assert_eq!(
        create(&mut harness, one.clone()),
        Event::AclCreated {
            index: 0,
            created: false
        }
    );
    let bad = binding(Cluster, Literal, "c", "User:alice", "*", Op::Alter, Allow);
    assert_eq!(rejected_code(&create(&mut harness, bad)), 42);
    assert_eq!(harness.state.acls().len(), 1);
    let snapshot = harness.state.acls_shared();
    // Deleting with a filter that matches nothing leaves the shared set as it is.
    let nothing = AclBindingFilter {
        principal: Some("User:nobody".to_owned()),
        ..AclBindingFilter::any()
    };
    assert!(delete(&mut harness, nothing).is_empty());
    assert!(std::sync::Arc::ptr_eq(
        &snapshot,
        &harness.state.acls_shared()
    ));
    assert_eq!(delete(&mut harness, AclBindingFilter::any()), vec![one]);
    assert!(harness.state.acls().is_empty());
    // The snapshot handed out before is unchanged.
    assert_eq!(snapshot.len(), 1);
}

#[test]
fn the_cap_refuses_with_a_clear_error_and_replays_alike() {
    let mut harness = Harness::new();
    let mut commands = Vec::new();
    for n in 0..ACL_BINDINGS_MAX {
        let name = format!("t{n}");
        commands.push(Command::CreateAcl {
            binding: Box::new(binding(
                Topic,
                Literal,
                &name,
                "User:a",
                "*",
                Op::Read,
                Allow,
            )),
        });
        if commands.len() == COMMANDS_PER_ENTRY_MAX {
            harness.commands(&std::mem::take(&mut commands));
        }
    }
    let over = create(
        &mut harness,
        binding(Topic, Literal, "over", "User:a", "*", Op::Read, Allow),
    );
    assert_eq!(rejected_code(&over), 44);
    let Event::CommandRejected { error, .. } = over else {
        unreachable!()
    };
    assert!(
        error.to_string().contains("too many ACL bindings"),
        "{error}"
    );
    // The full set goes through a checkpoint too.
    let bytes = harness.state.encode_checkpoint();
    assert_eq!(
        MetadataState::decode_checkpoint(&bytes).unwrap(),
        harness.state
    );
}

#[test]
fn acl_commands_survive_the_commands_section() {
    let commands = vec![
        Command::CreateAcl {
            binding: Box::new(sample_bindings()[1].clone()),
        },
        Command::DeleteAcls {
            filter: Box::new(AclBindingFilter {
                resource_type: ResourceTypeFilter::Is(Topic),
                name: Some("fraud-x".to_owned()),
                pattern: PatternFilter::Match,
                principal: None,
                host: Some("*".to_owned()),
                operation: OperationFilter::Is(Op::Read),
                permission: PermissionFilter::Any,
            }),
        },
    ];
    let bytes = encode_commands(&commands).unwrap();
    assert_eq!(decode_commands(&bytes).unwrap(), commands);
}

#[test]
fn checkpoint_carries_acls_and_refuses_broken_ones() {
    let state = super::checkpoint::populated_before_quotas();
    assert_eq!(state.acls().len(), sample_bindings().len());
    let bytes = state.encode_checkpoint();
    let decoded = MetadataState::decode_checkpoint(&bytes).unwrap();
    assert_eq!(decoded.acls(), state.acls());
    // An unknown operation code under a valid CRC is refused: the last binding's operation is
    // the second-to-last byte of the ACL section, which the (empty, 4-byte) quota and SCRAM
    // sections follow.
    let body_end = bytes.len() - 4 - 4 - 4;
    let mut broken = bytes.clone();
    broken[body_end - 2] = 1; // ANY: a filter, never stored
    reseal(&mut broken);
    let error = MetadataState::decode_checkpoint(&broken).unwrap_err();
    assert!(error.to_string().contains("unknown operation"), "{error}");
    // A truncated ACL section is refused, never a panic.
    for cut in 1..40 {
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

/// A v4 checkpoint written by the build before ACLs (`populated_before_acls` encoded by that
/// build): it decodes to the same state with no bindings, ACLs can be created on top of it, and
/// it re-encodes as the current version.
#[test]
fn version_4_checkpoint_decodes_without_acls() {
    let bytes = include_bytes!("fixtures/checkpoint_v4.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 4);
    let state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state, super::checkpoint::populated_before_acls());
    assert!(state.acls().is_empty());
    let mut harness = Harness {
        next_seq: state.last_offered_seq().unwrap().0 + 1,
        state,
    };
    let event = create(&mut harness, sample_bindings()[0].clone());
    assert!(
        matches!(event, Event::AclCreated { created: true, .. }),
        "{event:?}"
    );
    let current = harness.state.encode_checkpoint();
    assert_eq!(
        u16::from_le_bytes([current[8], current[9]]),
        CHECKPOINT_VERSION
    );
    assert_eq!(CHECKPOINT_VERSION, 7);
    assert_eq!(
        MetadataState::decode_checkpoint(&current).unwrap(),
        harness.state
    );
}

/// The ACL commands of `fixtures/commands_v1_acls.bin`.
fn fixture_acl_commands() -> Vec<Command> {
    vec![
        Command::CreateAcl {
            binding: Box::new(sample_bindings()[1].clone()),
        },
        Command::CreateAcl {
            binding: Box::new(sample_bindings()[6].clone()),
        },
        Command::DeleteAcls {
            filter: Box::new(AclBindingFilter {
                resource_type: ResourceTypeFilter::Is(Topic),
                name: Some("fraud-cards".to_owned()),
                pattern: PatternFilter::Match,
                principal: None,
                host: Some("*".to_owned()),
                operation: OperationFilter::Is(Op::Read),
                permission: PermissionFilter::Is(Allow),
            }),
        },
        Command::DeleteAcls {
            filter: Box::new(AclBindingFilter::any()),
        },
    ]
}

/// A commands section of ACL commands encoded by the build that added them: rkyv stores enum
/// variants by position and structs field by field, so a later build must read these bytes as the
/// same commands (and write the same bytes for them), whatever variants it appends.
#[test]
fn acl_commands_encoded_by_the_first_build_with_them_still_decode() {
    let bytes = include_bytes!("fixtures/commands_v1_acls.bin");
    assert_eq!(decode_commands(bytes).unwrap(), fixture_acl_commands());
    assert_eq!(
        encode_commands(&fixture_acl_commands()).unwrap(),
        bytes.to_vec()
    );
}

/// A v5 checkpoint (`populated_before_quotas`, ACL bindings included) written by the build that
/// introduced v5: later builds read it back to the same state (no client quotas).
#[test]
fn version_5_checkpoint_fixture_decodes() {
    let bytes = include_bytes!("fixtures/checkpoint_v5.bin");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 5);
    let state = MetadataState::decode_checkpoint(bytes).unwrap();
    assert_eq!(state, super::checkpoint::populated_before_quotas());
    assert_eq!(state.acls().len(), sample_bindings().len());
    assert!(state.quotas().is_empty());
}
