//! Server-side assignors for KIP-848 consumer groups (being written).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A member's partitions: topic id → partition numbers.
pub type Assignment = BTreeMap<Uuid, BTreeSet<u32>>;

/// What an assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// Topic ids the member subscribes to (resolved from names and regex; only existing topics).
    pub subscribed: BTreeSet<Uuid>,
    /// The member's assignment in the previous target, which the assignors try to keep.
    pub current: Assignment,
}

/// The assignors a group can use, by their Kafka names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignorKind {
    /// Kafka's `uniform`: balanced across all members, sticky.
    Uniform,
    /// Kafka's `range`: per topic, ranges of partitions over the members subscribed to it.
    Range,
}

impl AssignorKind {
    /// The assignor with this Kafka name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(Self::Uniform),
            "range" => Some(Self::Range),
            _ => None,
        }
    }

    /// The Kafka name of this assignor.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }

    /// Computes the target assignment of every member. `partitions` holds the partition count of
    /// every topic any member subscribes to.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSpec>,
        partitions: &BTreeMap<Uuid, u32>,
    ) -> BTreeMap<String, Assignment> {
        let _ = partitions;
        members
            .keys()
            .map(|id| (id.clone(), Assignment::new()))
            .collect()
    }
}
