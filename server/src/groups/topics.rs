//! The topic metadata a KIP-848 group assigns from: name → (topic id, partition count).
//!
//! The group state machines do no I/O, so they never read the metadata state themselves. The
//! integration layer builds a `TopicsView` from the engine's metadata state (and refreshes it when
//! topics change) and passes it to every call that may compute an assignment. The view is a plain
//! value: two views with the same topics compare equal, which is how a group notices that the
//! metadata it assigned from has changed.

use std::collections::BTreeMap;

use uuid::Uuid;

/// Topic name → (topic id, partition count), with the reverse lookup by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsView {
    by_name: BTreeMap<String, (Uuid, u32)>,
    by_id: BTreeMap<Uuid, String>,
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
        if let Some((old_id, _)) = self.by_name.remove(&name) {
            self.by_id.remove(&old_id);
        }
        if let Some(old_name) = self.by_id.remove(&id) {
            self.by_name.remove(&old_name);
        }
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
}
