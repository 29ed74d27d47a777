//! The authorization decision, with the semantics of Kafka's `StandardAuthorizer`: pure (the
//! bindings, the policy and the request in, allowed or not out), so it is tested exhaustively here
//! and the agent only has to cache its answers.
//!
//! For a principal, a host, an operation and a resource (type and name), the bindings that apply
//! are those whose pattern matches the resource — literal with the same name, literal `*`, or
//! prefixed with a prefix of the name — and whose principal (or `User:*`) and host (or `*`) match.
//! Then:
//!
//! 1. a super user is allowed everything;
//! 2. a matching DENY of the operation (or of ALL) denies, whatever else allows: deny wins;
//! 3. a matching ALLOW of the operation allows, and so does one that implies it — ALL implies
//!    everything, READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies
//!    DESCRIBE_CONFIGS (a DENY never implies: denying READ does not deny DESCRIBE);
//! 4. otherwise the request is denied, unless no binding at all (of any principal, host or
//!    operation) names the resource and `allow.everyone.if.no.acl.found` is set.
//!
//! [`authorize_any`] is Kafka's `authorizeByResourceType`, which InitProducerId uses for an
//! idempotent producer that may WRITE some topic: allowed if an ALLOW pattern of the type is not
//! wholly covered by a DENY pattern.

use super::acl::{
    AclEntry, AclOperation, AclPatternType, AclPermission, AclResourceType, AclSet, WILDCARD_HOST,
    WILDCARD_PRINCIPAL, WILDCARD_RESOURCE,
};

/// The authorizer's settings (Kafka's `super.users` and `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizerPolicy {
    /// Principals allowed everything, e.g. `User:admin`.
    pub super_users: Vec<String>,
    /// Allow a request on a resource no binding names. Off by default, as in Kafka.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerPolicy {
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|user| user == principal)
    }
}

/// Who asks: the connection's principal (`User:alice`) and its address as text (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// Whether `requester` may perform `operation` on the resource `resource_type`/`name`.
pub fn authorize(
    acls: &AclSet,
    policy: &AuthorizerPolicy,
    requester: Requester<'_>,
    operation: AclOperation,
    resource_type: AclResourceType,
    name: &str,
) -> bool {
    if policy.is_super_user(requester.principal) {
        return true;
    }
    let mut named = false;
    let mut allowed = false;
    for entries in applicable(acls, resource_type, name) {
        named = true;
        for entry in entries {
            if !applies_to(entry, requester) {
                continue;
            }
            match entry.permission {
                AclPermission::Deny if denies(entry.operation, operation) => return false,
                AclPermission::Deny => {}
                AclPermission::Allow => allowed |= implies(entry.operation, operation),
            }
        }
    }
    allowed || (!named && policy.allow_everyone_if_no_acl_found)
}

/// Kafka's `authorizeByResourceType`: whether `requester` may perform `operation` on at least one
/// resource of `resource_type` — some ALLOW pattern (of the operation or ALL) that no DENY pattern
/// covers: a DENY literal of the same name, a DENY prefix of its name, or DENY `*`.
pub fn authorize_any(
    acls: &AclSet,
    policy: &AuthorizerPolicy,
    requester: Requester<'_>,
    operation: AclOperation,
    resource_type: AclResourceType,
) -> bool {
    if policy.is_super_user(requester.principal) {
        return true;
    }
    let matching = |entries: &std::collections::BTreeSet<AclEntry>, permission| {
        entries.iter().any(|entry| {
            entry.permission == permission
                && applies_to(entry, requester)
                && denies(entry.operation, operation)
        })
    };
    let deny_literals: Vec<&str> = acls
        .names(resource_type, AclPatternType::Literal)
        .filter(|(_, entries)| matching(entries, AclPermission::Deny))
        .map(|(name, _)| name)
        .collect();
    let deny_prefixes: Vec<&str> = acls
        .names(resource_type, AclPatternType::Prefixed)
        .filter(|(_, entries)| matching(entries, AclPermission::Deny))
        .map(|(name, _)| name)
        .collect();
    if deny_literals.contains(&WILDCARD_RESOURCE) {
        return false;
    }
    let prefix_denied = |name: &str| deny_prefixes.iter().any(|prefix| name.starts_with(prefix));
    let literal_allowed = acls
        .names(resource_type, AclPatternType::Literal)
        .filter(|(_, entries)| matching(entries, AclPermission::Allow))
        .any(|(name, _)| {
            name == WILDCARD_RESOURCE || (!deny_literals.contains(&name) && !prefix_denied(name))
        });
    literal_allowed
        || acls
            .names(resource_type, AclPatternType::Prefixed)
            .filter(|(_, entries)| matching(entries, AclPermission::Allow))
            .any(|(name, _)| !prefix_denied(name))
}

/// The entry sets whose pattern matches the resource: literal `name`, literal `*`, and each
/// prefixed pattern that is a prefix of `name` (one map probe per prefix length).
fn applicable<'a>(
    acls: &'a AclSet,
    resource_type: AclResourceType,
    name: &'a str,
) -> impl Iterator<Item = &'a std::collections::BTreeSet<AclEntry>> + 'a {
    let literal = acls.entries(resource_type, AclPatternType::Literal, name);
    let wildcard = (name != WILDCARD_RESOURCE)
        .then(|| acls.entries(resource_type, AclPatternType::Literal, WILDCARD_RESOURCE))
        .flatten();
    let prefixes = (1..=name.len())
        .filter(|end| name.is_char_boundary(*end))
        .filter_map(move |end| {
            let prefix = name.get(..end)?;
            acls.entries(resource_type, AclPatternType::Prefixed, prefix)
        });
    literal.into_iter().chain(wildcard).chain(prefixes)
}

/// Whether the entry's principal and host match the requester.
fn applies_to(entry: &AclEntry, requester: Requester<'_>) -> bool {
    (entry.principal == requester.principal || entry.principal == WILDCARD_PRINCIPAL)
        && (entry.host == requester.host || entry.host == WILDCARD_HOST)
}

/// Whether a DENY of `granted` denies `asked` (no implication for denials).
fn denies(granted: AclOperation, asked: AclOperation) -> bool {
    granted == asked || granted == AclOperation::All
}

/// Whether an ALLOW of `granted` allows `asked`.
pub fn implies(granted: AclOperation, asked: AclOperation) -> bool {
    use AclOperation::{All, Alter, AlterConfigs, Delete, Describe, DescribeConfigs, Read, Write};
    granted == asked
        || granted == All
        || (asked == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (asked == DescribeConfigs && granted == AlterConfigs)
}
