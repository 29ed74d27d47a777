//! Client quotas as Kafka stores them (KIP-13, KIP-55, KIP-124, KIP-546): quota values per
//! entity, where an entity is a user, a client id, or both, and either may be the `<default>`.
//!
//! The set is part of the metadata state machine, changed by [`super::Command::AlterClientQuotas`]
//! and carried by the checkpoint (v6). Which stored quota applies to a connection is Kafka's
//! precedence (`ClientQuotaManager`'s default callback, [`QuotaSet::resolve`]): the most specific
//! entity wins, user before client id, named before `<default>`. The entity that matched also
//! says who shares the quota: a quota set on a user is shared by all that user's client ids; one
//! set on `<default>` users gives every user their own. Enforcement (rates over windows, throttle
//! times) is the agent's; this module only answers "which quota, shared by whom".
//!
//! Everything is bounded: at most [`QUOTA_ENTITIES_MAX`] entities, names of at most
//! [`QUOTA_NAME_LEN_MAX`] bytes, three keys per entity.

use std::collections::BTreeMap;

use super::error::MetadataError;

/// Entities with at least one quota. Kafka has no limit; each entity here costs a few hundred
/// bytes in every checkpoint and in each core's snapshot, so the set is capped and a creation past
/// it is refused with a clear error.
pub const QUOTA_ENTITIES_MAX: usize = 10_000;
/// Longest user or client id name stored (Kafka's principal names and client ids are strings of
/// at most `i16::MAX` bytes on the wire; no real one comes near this).
pub const QUOTA_NAME_LEN_MAX: usize = 1_024;

/// One side of an entity: a named user or client id, or Kafka's `<default>` (null on the wire).
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
pub enum QuotaName {
    Default,
    Named(String),
}

impl QuotaName {
    /// The wire form: `None` for `<default>`.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            QuotaName::Default => None,
            QuotaName::Named(name) => Some(name),
        }
    }

    pub fn from_wire(name: Option<&str>) -> Self {
        name.map_or(QuotaName::Default, |name| QuotaName::Named(name.to_owned()))
    }
}

/// A quota entity: a user, a client id, or a user and a client id (at least one).
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
pub struct QuotaEntity {
    pub user: Option<QuotaName>,
    pub client_id: Option<QuotaName>,
}

/// The quota keys Sluice stores and enforces. Kafka's `controller_mutation_rate` (KIP-599) and
/// the IP entity's `connection_creation_rate` (KIP-612) are refused by the handler, not stored.
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
pub enum QuotaKey {
    /// Bytes per second of Produce requests (Kafka type LONG).
    ProducerByteRate,
    /// Bytes per second of Fetch responses (Kafka type LONG).
    ConsumerByteRate,
    /// Percent of one thread's time spent on the client's requests (Kafka type DOUBLE).
    RequestPercentage,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
    ];

    /// Kafka's name of the key.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The byte stored in a checkpoint.
    pub fn code(self) -> u8 {
        match self {
            QuotaKey::ProducerByteRate => 0,
            QuotaKey::ConsumerByteRate => 1,
            QuotaKey::RequestPercentage => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.code() == code)
    }

    /// Whether Kafka declares the key a LONG (whole numbers only) rather than a DOUBLE.
    pub fn is_whole(self) -> bool {
        !matches!(self, QuotaKey::RequestPercentage)
    }
}

/// A quota value: finite and above zero, stored as the bits of an `f64` (Kafka's quota values are
/// doubles) so commands and state keep `Eq` and encode byte for byte.
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
pub struct QuotaValue(u64);

impl QuotaValue {
    /// `None` unless `value` is finite and above zero.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && value > 0.0).then(|| QuotaValue(value.to_bits()))
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }

    pub fn to_bits(self) -> u64 {
        self.0
    }

    pub fn from_bits(bits: u64) -> Option<Self> {
        Self::new(f64::from_bits(bits))
    }
}

/// One AlterClientQuotas entry for one entity: each key set (`Some`) or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    /// At most one operation per key.
    pub ops: Vec<(QuotaKey, Option<QuotaValue>)>,
}

/// Why an entity or a value is refused; Kafka answers INVALID_REQUEST with these words.
pub fn validate_entity(entity: &QuotaEntity) -> Result<(), String> {
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err("Invalid empty client quota entity".to_owned());
    }
    for (what, name) in [("user", &entity.user), ("client-id", &entity.client_id)] {
        if let Some(QuotaName::Named(name)) = name {
            if name.is_empty() {
                return Err(format!("Empty {what} not supported"));
            }
            if name.len() > QUOTA_NAME_LEN_MAX {
                return Err(format!(
                    "{what} name of {} bytes (limit {QUOTA_NAME_LEN_MAX})",
                    name.len()
                ));
            }
        }
    }
    Ok(())
}

/// Kafka's check of a LONG key's value (`ClientQuotaControlManager.validateQuotaKeyValue`).
pub fn validate_value(key: QuotaKey, value: f64) -> Result<QuotaValue, String> {
    let stored = QuotaValue::new(value)
        .ok_or_else(|| format!("Quota {} must be greater than 0", key.name()))?;
    if key.is_whole() {
        let epsilon = 1e-6;
        #[expect(
            clippy::cast_possible_truncation,
            reason = "Kafka's own check: the value as a long, compared back"
        )]
        let whole = (value + epsilon) as i64;
        if (whole as f64 - value).abs() > epsilon {
            return Err(format!("Configuration {} must be a Long value", key.name()));
        }
    }
    Ok(stored)
}

/// Who shares a resolved quota: the user and client id the rate is measured for, each empty when
/// the matched entity did not name it (Kafka's metric tags `user` and `client-id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaGroup {
    pub user: String,
    pub client_id: String,
}

/// The quota that applies to a request, and who shares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuota {
    pub group: QuotaGroup,
    pub entity: QuotaEntity,
    pub limit: f64,
}

/// The stored quotas, in entity order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuotaSet {
    entities: BTreeMap<QuotaEntity, BTreeMap<QuotaKey, QuotaValue>>,
}

impl QuotaSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entities with at least one quota.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaEntity, &BTreeMap<QuotaKey, QuotaValue>)> {
        self.entities.iter()
    }

    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<QuotaKey, QuotaValue>> {
        self.entities.get(entity)
    }

    /// Whether `alteration` would apply: a valid entity, one operation per key, and room for a
    /// new entity. Nothing changes.
    pub fn check(&self, alteration: &QuotaAlteration) -> Result<(), MetadataError> {
        let invalid = |reason: String| MetadataError::InvalidQuota { reason };
        validate_entity(&alteration.entity).map_err(invalid)?;
        for (position, (key, _)) in alteration.ops.iter().enumerate() {
            if alteration
                .ops
                .iter()
                .take(position)
                .any(|(earlier, _)| earlier == key)
            {
                return Err(invalid(format!("{} altered twice", key.name())));
            }
        }
        let adds = alteration.ops.iter().any(|(_, value)| value.is_some());
        if adds
            && !self.entities.contains_key(&alteration.entity)
            && self.entities.len() >= QUOTA_ENTITIES_MAX
        {
            return Err(MetadataError::TooManyQuotaEntities {
                limit: QUOTA_ENTITIES_MAX,
            });
        }
        Ok(())
    }

    /// Applies `alteration` whole or not at all (see [`Self::check`]). An entity left without
    /// keys is removed, as Kafka removes it.
    pub fn alter(&mut self, alteration: &QuotaAlteration) -> Result<(), MetadataError> {
        self.check(alteration)?;
        let values = self.entities.entry(alteration.entity.clone()).or_default();
        for (key, value) in &alteration.ops {
            match value {
                Some(value) => values.insert(*key, *value),
                None => values.remove(key),
            };
        }
        if values.is_empty() {
            self.entities.remove(&alteration.entity);
        }
        Ok(())
    }

    /// Inserts one decoded entity (checkpoint); refuses a duplicate, an empty one or one past the
    /// cap.
    pub(super) fn insert_decoded(
        &mut self,
        entity: QuotaEntity,
        values: BTreeMap<QuotaKey, QuotaValue>,
    ) -> Result<(), String> {
        validate_entity(&entity)?;
        if values.is_empty() {
            return Err("quota entity without values".to_owned());
        }
        if self.entities.len() >= QUOTA_ENTITIES_MAX {
            return Err(format!("more than {QUOTA_ENTITIES_MAX} quota entities"));
        }
        if self.entities.insert(entity, values).is_some() {
            return Err("quota entity stored twice".to_owned());
        }
        Ok(())
    }

    /// The quota of `key` for a request from `user` (the principal's name, `ANONYMOUS` without
    /// authentication) with `client_id`, in Kafka's order of precedence (KIP-55):
    ///
    /// 1. user and client id; 2. user and `<default>` client id; 3. user;
    /// 4. `<default>` user and client id; 5. `<default>` user and `<default>` client id;
    /// 6. `<default>` user; 7. client id; 8. `<default>` client id.
    ///
    /// `None`: no quota (unlimited).
    pub fn resolve(&self, key: QuotaKey, user: &str, client_id: &str) -> Option<ResolvedQuota> {
        use QuotaName::{Default, Named};
        let named_user = || Some(Named(user.to_owned()));
        let named_client = || Some(Named(client_id.to_owned()));
        let candidates = [
            (named_user(), named_client()),
            (named_user(), Some(Default)),
            (named_user(), None),
            (Some(Default), named_client()),
            (Some(Default), Some(Default)),
            (Some(Default), None),
            (None, named_client()),
            (None, Some(Default)),
        ];
        candidates.into_iter().find_map(|(user_side, client_side)| {
            let entity = QuotaEntity {
                user: user_side,
                client_id: client_side,
            };
            let limit = self.entities.get(&entity)?.get(&key)?.get();
            Some(ResolvedQuota {
                group: QuotaGroup {
                    user: entity
                        .user
                        .as_ref()
                        .map_or_else(String::new, |_| user.to_owned()),
                    client_id: entity
                        .client_id
                        .as_ref()
                        .map_or_else(String::new, |_| client_id.to_owned()),
                },
                entity,
                limit,
            })
        })
    }

    /// Whether any quota of `key` is stored (a core skips all quota work for a key without one).
    pub fn has_key(&self, key: QuotaKey) -> bool {
        self.entities
            .values()
            .any(|values| values.contains_key(&key))
    }

    /// DescribeClientQuotas: the entities matching `filter` ([`QuotaFilter`]), in entity order.
    pub fn describe(
        &self,
        filter: &QuotaFilter,
    ) -> Vec<(&QuotaEntity, &BTreeMap<QuotaKey, QuotaValue>)> {
        self.entities
            .iter()
            .filter(|(entity, _)| filter.matches(entity))
            .collect()
    }
}

/// How one component of a DescribeClientQuotas filter matches its entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// MATCH_TYPE_EXACT (0): this name.
    Exact(String),
    /// MATCH_TYPE_DEFAULT (1): `<default>`.
    Default,
    /// MATCH_TYPE_SPECIFIED (2): any entity of this type, `<default>` included.
    Specified,
}

/// A DescribeClientQuotas filter with Kafka's semantics (`ClientQuotasImage.describe`): every
/// component must match; with `strict`, the entity has no other types; no component and not
/// strict matches everything, no component and strict nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuotaFilter {
    pub user: Option<QuotaMatch>,
    pub client_id: Option<QuotaMatch>,
    pub strict: bool,
}

impl QuotaFilter {
    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        let side = |component: &Option<QuotaMatch>, name: &Option<QuotaName>| match component {
            None => true,
            Some(QuotaMatch::Specified) => name.is_some(),
            Some(QuotaMatch::Default) => name == &Some(QuotaName::Default),
            Some(QuotaMatch::Exact(wanted)) => {
                matches!(name, Some(QuotaName::Named(name)) if name == wanted)
            }
        };
        let components = usize::from(self.user.is_some()) + usize::from(self.client_id.is_some());
        if components == 0 {
            return !self.strict;
        }
        let types = usize::from(entity.user.is_some()) + usize::from(entity.client_id.is_some());
        side(&self.user, &entity.user)
            && side(&self.client_id, &entity.client_id)
            && (!self.strict || types == components)
    }
}
