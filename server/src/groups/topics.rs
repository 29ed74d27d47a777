//! The topic metadata a KIP-848 group assigns from: name → (topic id, partition count).
//!
//! The group state machines do no I/O, so they never read the metadata state themselves. The
//! integration layer builds a `TopicsView` from the engine's metadata state (and refreshes it when
//! topics change) and passes it to every call that may compute an assignment. The view is a plain
//! value with a fingerprint of its content: a group remembers the fingerprint of the view it last
//! resolved its subscriptions against, so a heartbeat notices changed metadata (a new topic, added
//! partitions, a deleted or recreated topic) with one integer comparison, and only then re-resolves.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use uuid::Uuid;

/// Topic name → (topic id, partition count), with the reverse lookup by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsView {
    by_name: BTreeMap<String, (Uuid, u32)>,
    by_id: BTreeMap<Uuid, String>,
    /// XOR of one hash per topic, so inserting and replacing keep it up to date in O(1).
    fingerprint: u64,
}

fn entry_hash(name: &str, id: &Uuid, partitions: u32) -> u64 {
    // `DefaultHasher::new()` uses fixed keys: the same content gives the same fingerprint.
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    id.hash(&mut hasher);
    partitions.hash(&mut hasher);
    hasher.finish()
}

impl TopicsView {
    /// Builds a view from `(name, topic id, partition count)` triples. A later duplicate of a name
    /// or an id replaces the earlier one.
    pub fn new(topics: impl IntoIterator<Item = (String, Uuid, u32)>) -> Self {
        let mut view = Self::default();
        for (name, id, partitions) in topics {
            view.insert(name, id, partitions);
        }
        view
    }

    /// Adds or replaces one topic.
    pub fn insert(&mut self, name: String, id: Uuid, partitions: u32) {
        if let Some((old_id, old_partitions)) = self.by_name.remove(&name) {
            self.by_id.remove(&old_id);
            self.fingerprint ^= entry_hash(&name, &old_id, old_partitions);
        }
        if let Some(old_name) = self.by_id.remove(&id)
            && let Some((_, old_partitions)) = self.by_name.remove(&old_name)
        {
            self.fingerprint ^= entry_hash(&old_name, &id, old_partitions);
        }
        self.fingerprint ^= entry_hash(&name, &id, partitions);
        self.by_id.insert(id, name.clone());
        self.by_name.insert(name, (id, partitions));
    }

    /// The topic id and partition count of `name`.
    pub fn by_name(&self, name: &str) -> Option<(Uuid, u32)> {
        self.by_name.get(name).copied()
    }

    /// The name and partition count of the topic with id `id`.
    pub fn by_id(&self, id: &Uuid) -> Option<(&str, u32)> {
        let name = self.by_id.get(id)?;
        let (_, partitions) = self.by_name.get(name)?;
        Some((name.as_str(), *partitions))
    }

    /// Every topic name, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// A hash of the whole content: equal views have equal fingerprints, and a changed view almost
    /// surely a different one (a collision only delays noticing a change until the next one).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Number of topics in the view.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the view holds no topic.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_both_ways_and_replacement() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let mut view = TopicsView::new([("a".to_string(), a, 3), ("b".to_string(), b, 1)]);
        assert_eq!(view.by_name("a"), Some((a, 3)));
        assert_eq!(view.by_id(&b), Some(("b", 1)));
        assert_eq!(view.names().collect::<Vec<_>>(), ["a", "b"]);
        // Recreated topic: same name, new id; the old id no longer resolves.
        let a2 = Uuid::from_u128(3);
        view.insert("a".to_string(), a2, 5);
        assert_eq!(view.by_name("a"), Some((a2, 5)));
        assert_eq!(view.by_id(&a), None);
        assert_eq!(view.len(), 2);
    }

    #[test]
    fn fingerprint_follows_content_not_history() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let one = TopicsView::new([("a".to_string(), a, 3), ("b".to_string(), b, 1)]);
        let mut two = TopicsView::new([("b".to_string(), b, 1)]);
        assert_ne!(one.fingerprint(), two.fingerprint());
        two.insert("a".to_string(), a, 2);
        assert_ne!(one.fingerprint(), two.fingerprint());
        two.insert("a".to_string(), a, 3);
        assert_eq!(one, two);
        assert_eq!(one.fingerprint(), two.fingerprint());
        assert_eq!(
            TopicsView::default().fingerprint(),
            TopicsView::new([]).fingerprint()
        );
    }
}
