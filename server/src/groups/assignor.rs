//! Server-side assignors of KIP-848 consumer groups: `uniform` and `range`.
//!
//! An assignor turns the members' subscriptions (topic ids) and the partition counts of those topics
//! into a *target* assignment: which member should own which partitions once the group settles. It
//! does not decide when a member gets them — the reconciliation in `consumer.rs` does, never handing
//! a partition to a member before its previous owner has released it. So an assignor only has to be
//! correct (every partition of a subscribed topic goes to exactly one member subscribed to that
//! topic; nothing else is assigned), balanced, and preferably sticky, because every partition that
//! moves costs a revocation round trip and a pause in consumption.
//!
//! - **uniform** (Kafka's default): spreads all partitions as evenly as the subscriptions allow.
//!   Members keep what they had in the previous target as long as the result stays balanced; free
//!   partitions go to the least loaded eligible member; then partitions move, always from the most
//!   loaded member to the least loaded eligible one, while that one holds at least two fewer (so a
//!   joining member takes one surplus partition from each old member). With identical
//!   subscriptions this ends with every member holding ⌊P/N⌋ or ⌈P/N⌉ partitions; with different
//!   subscriptions it ends in a state no single move improves (as Kafka's heterogeneous builder,
//!   balanced within what the subscriptions allow).
//! - **range**: per topic, the members subscribed to it — static members first by instance id, then
//!   the others by member id, as Kafka sorts them — get contiguous ranges, the first `P mod N` one
//!   partition more. With identical subscriptions and partition counts the members get the same
//!   partition numbers of every topic (co-partitioning, for joins). It is sticky only through that
//!   order: static members keep their ranges across restarts.
//!
//! Both are deterministic (ordered maps everywhere): the same input gives the same target.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A member's partitions: topic id → partition numbers.
pub type Assignment = BTreeMap<Uuid, BTreeSet<u32>>;

/// What an assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// Static membership instance id (`group.instance.id`), which orders members for `range`.
    pub instance_id: Option<String>,
    /// Topic ids the member subscribes to (resolved from names and regex; only existing topics).
    pub subscribed: BTreeSet<Uuid>,
    /// The member's assignment in the previous target, which `uniform` tries to keep.
    pub current: Assignment,
}

/// The assignors a group can use, by their Kafka names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    /// Computes the target assignment of every member (each member of `members` gets an entry,
    /// possibly empty). `partitions` holds the partition count of every existing topic; subscribed
    /// topic ids missing from it are ignored.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSpec>,
        partitions: &BTreeMap<Uuid, u32>,
    ) -> BTreeMap<String, Assignment> {
        match self {
            Self::Uniform => uniform(members, partitions),
            Self::Range => range(members, partitions),
        }
    }
}

/// Topic id → indexes (into the member list) of the members subscribed to it, for topics that exist.
fn subscribers(
    specs: &[&MemberSpec],
    partitions: &BTreeMap<Uuid, u32>,
) -> BTreeMap<Uuid, Vec<usize>> {
    let mut by_topic: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (index, spec) in specs.iter().enumerate() {
        for topic in &spec.subscribed {
            if partitions.contains_key(topic) {
                by_topic.entry(*topic).or_default().push(index);
            }
        }
    }
    by_topic
}

fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, u32>,
) -> BTreeMap<String, Assignment> {
    let ids: Vec<&String> = members.keys().collect();
    let specs: Vec<&MemberSpec> = members.values().collect();
    let by_topic = subscribers(&specs, partitions);
    let mut owned: Vec<BTreeSet<(Uuid, u32)>> = vec![BTreeSet::new(); specs.len()];
    let mut taken: BTreeSet<(Uuid, u32)> = BTreeSet::new();

    // 1. Stickiness: keep what the previous target gave, where still valid.
    for (index, spec) in specs.iter().enumerate() {
        for (topic, current) in &spec.current {
            let Some(&count) = partitions.get(topic) else {
                continue;
            };
            if !spec.subscribed.contains(topic) {
                continue;
            }
            for &partition in current.range(..count) {
                if taken.insert((*topic, partition))
                    && let Some(set) = owned.get_mut(index)
                {
                    set.insert((*topic, partition));
                }
            }
        }
    }

    // 2. Free partitions go to the least loaded member subscribed to their topic.
    for (topic, eligible) in &by_topic {
        let count = partitions.get(topic).copied().unwrap_or(0);
        for partition in 0..count {
            if taken.contains(&(*topic, partition)) {
                continue;
            }
            if let Some(to) = least_loaded(eligible, &owned, None)
                && let Some(set) = owned.get_mut(to)
            {
                set.insert((*topic, partition));
                taken.insert((*topic, partition));
            }
        }
    }

    // 3. Balance: repeatedly move one partition from the most loaded member that can give one to the
    // least loaded eligible member, while that member holds two or more fewer. Taking from the top
    // and giving to the bottom moves each partition at most once in the common cases (a member
    // joins: each old member gives up its surplus; a member leaves: only its partitions move).
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    for _ in 0..total.saturating_mul(total).max(1) {
        let Some((from, topic_partition, to)) = best_move(&owned, &by_topic) else {
            break;
        };
        if let Some(set) = owned.get_mut(from) {
            set.remove(&topic_partition);
        }
        if let Some(set) = owned.get_mut(to) {
            set.insert(topic_partition);
        }
    }

    ids.into_iter()
        .zip(owned)
        .map(|(id, set)| {
            let mut assignment = Assignment::new();
            for (topic, partition) in set {
                assignment.entry(topic).or_default().insert(partition);
            }
            (id.clone(), assignment)
        })
        .collect()
}

/// The next balancing move `(from, partition, to)`: from the most loaded member that has a
/// partition some eligible member holding at least two fewer could take, to the least loaded such
/// member. `None` when no move lowers the imbalance.
fn best_move(
    owned: &[BTreeSet<(Uuid, u32)>],
    by_topic: &BTreeMap<Uuid, Vec<usize>>,
) -> Option<(usize, (Uuid, u32), usize)> {
    let mut order: Vec<usize> = (0..owned.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(owned.get(index).map_or(0, BTreeSet::len)));
    for from in order {
        let from_load = owned.get(from).map_or(0, BTreeSet::len);
        let mut best: Option<((Uuid, u32), usize, usize)> = None;
        for topic_partition in owned.get(from).into_iter().flatten() {
            let Some(eligible) = by_topic.get(&topic_partition.0) else {
                continue;
            };
            let Some(to) = least_loaded(eligible, owned, Some(from)) else {
                continue;
            };
            let to_load = owned.get(to).map_or(0, BTreeSet::len);
            if to_load + 1 < from_load && best.is_none_or(|(_, _, load)| to_load < load) {
                best = Some((*topic_partition, to, to_load));
            }
        }
        if let Some((topic_partition, to, _)) = best {
            return Some((from, topic_partition, to));
        }
    }
    None
}

/// The eligible member (other than `except`) holding the fewest partitions; ties go to the first.
fn least_loaded(
    eligible: &[usize],
    owned: &[BTreeSet<(Uuid, u32)>],
    except: Option<usize>,
) -> Option<usize> {
    eligible
        .iter()
        .copied()
        .filter(|&index| Some(index) != except)
        .min_by_key(|&index| owned.get(index).map_or(0, BTreeSet::len))
}

fn range(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, u32>,
) -> BTreeMap<String, Assignment> {
    // Static members first, by instance id; then dynamic ones by member id (Kafka's order).
    let mut order: Vec<(&String, &MemberSpec)> = members.iter().collect();
    order.sort_by(
        |(id_a, a), (id_b, b)| match (&a.instance_id, &b.instance_id) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| id_a.cmp(id_b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => id_a.cmp(id_b),
        },
    );
    let specs: Vec<&MemberSpec> = order.iter().map(|(_, spec)| *spec).collect();
    let by_topic = subscribers(&specs, partitions);

    let mut result: BTreeMap<String, Assignment> = members
        .keys()
        .map(|id| (id.clone(), Assignment::new()))
        .collect();
    for (topic, eligible) in &by_topic {
        let count = partitions.get(topic).copied().unwrap_or(0);
        let Ok(members_count) = u32::try_from(eligible.len()) else {
            continue;
        };
        if members_count == 0 {
            continue;
        }
        let quota = count / members_count;
        let extra = count % members_count;
        let mut start = 0u32;
        for (position, &index) in (0u32..).zip(eligible) {
            let size = quota + u32::from(position < extra);
            let end = start.saturating_add(size).min(count);
            if start < end
                && let Some((id, _)) = order.get(index)
                && let Some(assignment) = result.get_mut(*id)
            {
                assignment.insert(*topic, (start..end).collect());
            }
            start = end;
        }
    }
    result
}

#[cfg(test)]
#[path = "assignor_tests.rs"]
mod tests;
