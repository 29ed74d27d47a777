//! ACL bindings as Kafka defines them: a resource pattern (type, name, literal or prefixed) and an
//! access-control entry (principal, host, operation, allow or deny), with Kafka's numeric codes.
//!
//! The bindings live in the metadata state machine ([`AclSet`], created and deleted by commands of
//! the metadata log and kept in checkpoints), so every agent replaying the log holds the same set;
//! the decision itself is [`super::authorizer`]. The
//! set is ordered (resource type and pattern type, then name, then entry), which keeps listings
//! and checkpoints deterministic and makes the authorizer's lookups a handful of map probes
//! rather than a scan. Its size is capped by [`ACL_BINDINGS_MAX`]: past it a creation
//! is refused with a clear error, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};

use super::error::MetadataError;

/// Bindings the cluster may hold. A binding costs about 100 bytes in memory and in a checkpoint,
/// so the cap keeps both under a few megabytes.
pub const ACL_BINDINGS_MAX: usize = 10_000;
/// Longest resource name, principal or host accepted (bytes).
pub const ACL_STRING_LEN_MAX: usize = 1_000;
/// The name every cluster resource has (Kafka's `CLUSTER_NAME`).
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal that matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host that matches every host.
pub const WILDCARD_HOST: &str = "*";

/// `code()` and `from_code()` for a fieldless enum of Kafka codes.
macro_rules! kafka_codes {
    ($name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        impl $name {
            /// Kafka's code for this value.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// The value of a Kafka code; `None` for codes without one here (UNKNOWN, ANY, ...).
            pub fn from_code(code: i8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

/// What an ACL protects (Kafka's `ResourceType`; delegation tokens and users are not here).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

kafka_codes!(AclResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
});

/// How a binding's resource name matches (Kafka's `PatternType`; ANY and MATCH are filters).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum AclPatternType {
    Literal,
    Prefixed,
}

kafka_codes!(AclPatternType {
    Literal = 3,
    Prefixed = 4,
});

/// Kafka's `AclOperation` (ANY is a filter only; the token operations are not here).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

kafka_codes!(AclOperation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
});

/// Kafka's `AclPermissionType` (ANY is a filter only).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum AclPermission {
    Deny,
    Allow,
}

kafka_codes!(AclPermission {
    Deny = 2,
    Allow = 3,
});

/// A resource pattern: the key bindings are grouped by.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AclResource {
    pub resource_type: AclResourceType,
    pub pattern_type: AclPatternType,
    pub name: String,
}

/// Who may (or may not) do what from where, on a resource.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AclEntry {
    /// `Type:name`, e.g. `User:alice`; `User:*` matches every user.
    pub principal: String,
    /// An address as the client connects from, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// One ACL: a resource pattern and an entry.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AclBinding {
    pub resource: AclResource,
    pub entry: AclEntry,
}

/// Which resource types a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ResourceTypeFilter {
    Any,
    Is(AclResourceType),
}

/// Which patterns a filter matches (Kafka's `PatternType` as a filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PatternFilter {
    /// Any pattern type; a name must equal the pattern's name.
    Any,
    /// Every pattern that would match a resource of this name (literal equal or `*`, prefixed
    /// prefix of it).
    Match,
    Is(AclPatternType),
}

/// Which operations a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum OperationFilter {
    Any,
    Is(AclOperation),
}

/// Which permissions a filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PermissionFilter {
    Any,
    Is(AclPermission),
}

/// DescribeAcls and DeleteAcls select bindings with this (Kafka's `AclBindingFilter`): a `None`
/// field matches anything.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceTypeFilter,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: OperationFilter,
    pub permission: PermissionFilter,
}

impl AclBindingFilter {
    /// Matches every binding.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceTypeFilter::Any,
            name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: OperationFilter::Any,
            permission: PermissionFilter::Any,
        }
    }

    /// Kafka's `ResourcePatternFilter.matches`.
    pub fn matches_resource(&self, resource: &AclResource) -> bool {
        if let ResourceTypeFilter::Is(resource_type) = self.resource_type
            && resource_type != resource.resource_type
        {
            return false;
        }
        if let PatternFilter::Is(pattern_type) = self.pattern
            && pattern_type != resource.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        match self.pattern {
            PatternFilter::Any | PatternFilter::Is(_) => *name == resource.name,
            PatternFilter::Match => match resource.pattern_type {
                AclPatternType::Literal => {
                    *name == resource.name || resource.name == WILDCARD_RESOURCE
                }
                AclPatternType::Prefixed => name.starts_with(resource.name.as_str()),
            },
        }
    }

    /// Kafka's `AccessControlEntryFilter.matches`.
    pub fn matches_entry(&self, entry: &AclEntry) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|principal| *principal == entry.principal)
            && self.host.as_ref().is_none_or(|host| *host == entry.host)
            && match self.operation {
                OperationFilter::Any => true,
                OperationFilter::Is(operation) => operation == entry.operation,
            }
            && match self.permission {
                PermissionFilter::Any => true,
                PermissionFilter::Is(permission) => permission == entry.permission,
            }
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(&binding.resource) && self.matches_entry(&binding.entry)
    }
}

/// Checks a binding as Kafka's controller does before storing it: a name, a principal of the form
/// `Type:name`, a host, the cluster resource's fixed name, and the length limit.
pub fn validate_acl_binding(binding: &AclBinding) -> Result<(), MetadataError> {
    let invalid = |reason: String| Err(MetadataError::InvalidAcl { reason });
    let AclBinding { resource, entry } = binding;
    for (what, value) in [
        ("resource name", &resource.name),
        ("principal", &entry.principal),
        ("host", &entry.host),
    ] {
        if value.is_empty() {
            return invalid(format!("the {what} is empty"));
        }
        if value.len() > ACL_STRING_LEN_MAX {
            return invalid(format!(
                "the {what} is {} bytes (limit {ACL_STRING_LEN_MAX})",
                value.len()
            ));
        }
    }
    match entry.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return invalid(format!(
                "principal '{}' is not of the form Type:name",
                entry.principal
            ));
        }
    }
    if resource.resource_type == AclResourceType::Cluster && resource.name != CLUSTER_RESOURCE_NAME
    {
        return invalid(format!(
            "the cluster resource is named '{CLUSTER_RESOURCE_NAME}', not '{}'",
            resource.name
        ));
    }
    Ok(())
}

/// Names of one (resource type, pattern type) → their entries.
type NamedEntries = BTreeMap<String, BTreeSet<AclEntry>>;

/// The stored bindings, by (resource type, pattern type), then name, then entry; no name maps to
/// an empty set and no pair to an empty map. Two levels so that a lookup by name borrows a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclSet {
    by_kind: BTreeMap<(AclResourceType, AclPatternType), NamedEntries>,
    count: usize,
}

impl AclSet {
    pub fn new() -> AclSet {
        AclSet::default()
    }

    /// Bindings held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a binding (after [`validate_acl_binding`]); `Ok(false)` if it was already there (as
    /// Kafka, creating an existing binding succeeds and changes nothing). Refused past
    /// [`ACL_BINDINGS_MAX`].
    pub fn insert(&mut self, binding: AclBinding) -> Result<bool, MetadataError> {
        validate_acl_binding(&binding)?;
        if self.contains(&binding) {
            return Ok(false);
        }
        if self.count >= ACL_BINDINGS_MAX {
            return Err(MetadataError::TooManyAcls {
                limit: ACL_BINDINGS_MAX,
            });
        }
        let AclBinding { resource, entry } = binding;
        self.by_kind
            .entry((resource.resource_type, resource.pattern_type))
            .or_default()
            .entry(resource.name)
            .or_default()
            .insert(entry);
        self.count += 1;
        Ok(true)
    }

    pub fn contains(&self, binding: &AclBinding) -> bool {
        let resource = &binding.resource;
        self.entries(
            resource.resource_type,
            resource.pattern_type,
            &resource.name,
        )
        .is_some_and(|entries| entries.contains(&binding.entry))
    }

    /// Removes every binding the filter matches and returns them, in order.
    pub fn remove_matching(&mut self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let removed = self.matching(filter);
        for binding in &removed {
            let resource = &binding.resource;
            let kind = (resource.resource_type, resource.pattern_type);
            let Some(names) = self.by_kind.get_mut(&kind) else {
                continue;
            };
            if let Some(entries) = names.get_mut(&resource.name) {
                entries.remove(&binding.entry);
                if entries.is_empty() {
                    names.remove(&resource.name);
                }
            }
            if names.is_empty() {
                self.by_kind.remove(&kind);
            }
        }
        self.count = self.count.saturating_sub(removed.len());
        removed
    }

    /// Every binding the filter matches, in order.
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        self.iter()
            .filter(|(resource, entry)| {
                filter.matches_resource(resource) && filter.matches_entry(entry)
            })
            .map(|(resource, entry)| AclBinding {
                resource,
                entry: entry.clone(),
            })
            .collect()
    }

    /// Every binding, in order (resource type, pattern type, name, entry).
    pub fn iter(&self) -> impl Iterator<Item = (AclResource, &AclEntry)> + '_ {
        self.by_kind
            .iter()
            .flat_map(|((resource_type, pattern_type), names)| {
                names.iter().flat_map(move |(name, entries)| {
                    entries.iter().map(move |entry| {
                        (
                            AclResource {
                                resource_type: *resource_type,
                                pattern_type: *pattern_type,
                                name: name.clone(),
                            },
                            entry,
                        )
                    })
                })
            })
    }

    /// The entries of exactly this resource pattern.
    pub fn entries(
        &self,
        resource_type: AclResourceType,
        pattern_type: AclPatternType,
        name: &str,
    ) -> Option<&BTreeSet<AclEntry>> {
        self.by_kind.get(&(resource_type, pattern_type))?.get(name)
    }

    /// The names and entries of one (resource type, pattern type).
    pub fn names(
        &self,
        resource_type: AclResourceType,
        pattern_type: AclPatternType,
    ) -> impl Iterator<Item = (&str, &BTreeSet<AclEntry>)> + '_ {
        self.by_kind
            .get(&(resource_type, pattern_type))
            .into_iter()
            .flat_map(|names| names.iter().map(|(name, entries)| (name.as_str(), entries)))
    }
}
