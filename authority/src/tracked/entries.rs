//! [`Entries`]: account records held in memory (verified clients, users),
//! by id and by the name of the key Redis pushes when one changes; bounded.
//! No I/O, no locking: [`super::Tracked`] holds them under its lock.

use std::collections::HashMap;
use std::sync::Arc;

/// Records of type `R` by id, with the key name each lives under.
#[derive(Debug)]
pub(super) struct Entries<R> {
    capacity: usize,
    by_id: HashMap<String, (Vec<u8>, Arc<R>)>,
    by_key: HashMap<Vec<u8>, String>,
}

impl<R> Entries<R> {
    /// Empty, holding at most `capacity` records (0: none).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    /// The record `id`, if held.
    pub(super) fn get(&self, id: &str) -> Option<&Arc<R>> {
        self.by_id.get(id).map(|(_, record)| record)
    }

    /// Holds record `id`, stored under `key`; when full, another entry
    /// makes room.
    pub(super) fn insert(&mut self, id: &str, key: Vec<u8>, record: Arc<R>) {
        self.remove_id(id);
        if self.capacity == 0 {
            return;
        }
        if self.by_id.len() >= self.capacity {
            let victim = self.by_id.keys().next().cloned();
            if let Some(victim) = victim {
                self.remove_id(&victim);
            }
        }
        self.by_key.insert(key.clone(), id.to_owned());
        self.by_id.insert(id.to_owned(), (key, record));
    }

    /// Drops the record `id`.
    pub(super) fn remove_id(&mut self, id: &str) {
        if let Some((key, _)) = self.by_id.remove(id) {
            self.by_key.remove(&key);
        }
    }

    /// Drops the record stored under `key` (a pushed key name); answers
    /// whether one was held.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> bool {
        match self.by_key.remove(key) {
            Some(id) => {
                self.by_id.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        self.by_id.clear();
        self.by_key.clear();
    }

    /// How many are held.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(entries: &mut Entries<String>, id: &str, key: &str) {
        entries.insert(id, key.as_bytes().to_vec(), Arc::new(id.to_owned()));
    }

    /// Entries are found by id and dropped by id or by key name.
    #[test]
    fn by_id_and_by_key() {
        let mut entries = Entries::new(10);
        insert(&mut entries, "a", "k1");
        insert(&mut entries, "b", "k2");
        assert_eq!(entries.get("a").map(|a| a.as_str()), Some("a"));
        assert!(entries.remove_key(b"k1"));
        assert!(entries.get("a").is_none());
        assert!(!entries.remove_key(b"k1"));
        entries.remove_id("b");
        assert_eq!(entries.len(), 0);
        assert!(!entries.remove_key(b"k2"), "the key index follows the ids");
    }

    /// The size never passes the cap; the newest entry is kept.
    #[test]
    fn bounded() {
        let mut entries = Entries::new(3);
        for n in 0..10 {
            insert(&mut entries, &format!("c{n}"), &format!("k{n}"));
            assert!(entries.len() <= 3);
        }
        assert!(entries.get("c9").is_some());
        assert_eq!(entries.by_key.len(), entries.by_id.len());
        // Re-inserting a held client (a new key name) replaces it.
        insert(&mut entries, "c9", "other");
        assert!(!entries.remove_key(b"k9"));
        assert!(entries.remove_key(b"other"));
    }

    /// A capacity of 0 holds nothing.
    #[test]
    fn zero_capacity() {
        let mut entries = Entries::new(0);
        insert(&mut entries, "a", "k1");
        assert!(entries.get("a").is_none());
        assert_eq!(entries.len(), 0);
        assert!(!entries.remove_key(b"k1"));
    }
}
