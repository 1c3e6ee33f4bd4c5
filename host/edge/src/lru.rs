//! Least-recently-used bookkeeping within a byte budget, shared by the memory and disk tiers
//! (which differ only in what a slot holds: the bytes, or where the file is).

use std::collections::{BTreeMap, HashMap};

struct Slot<V> {
    value: V,
    /// What the entry counts against the budget.
    cost: u64,
    /// When it was last used; larger is more recent.
    tick: u64,
    /// The tick it is filed under in [`Lru::order`]: its `tick` when it was last (re)filed.
    /// A use only bumps `tick`, so a hit costs no reordering; eviction re-files entries used
    /// since they were filed, which keeps the order exactly least recently used.
    filed: u64,
}

/// Values by key, least recently used first out once `budget` bytes are exceeded.
pub(crate) struct Lru<V> {
    slots: HashMap<String, Slot<V>>,
    /// Filing order: tick → key, oldest first; eviction pops the first entry (see
    /// [`Slot::filed`]).
    order: BTreeMap<u64, String>,
    bytes: u64,
    budget: u64,
    next_tick: u64,
    /// Purges so far: work that started before a purge (a fetch, a disk write) must not
    /// store what it carries after it.
    purges: u64,
}

impl<V: Clone> Lru<V> {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
            budget,
            next_tick: 0,
            purges: 0,
        }
    }

    /// Whether an entry of `cost` bytes can be kept at all.
    pub(crate) fn fits(&self, cost: u64) -> bool {
        cost <= self.budget
    }

    /// The value of `key`, now the most recently used.
    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        let slot = self.slots.get_mut(key)?;
        slot.tick = self.next_tick;
        self.next_tick += 1;
        Some(slot.value.clone())
    }

    /// The value of `key` without touching its recency.
    pub(crate) fn peek(&self, key: &str) -> Option<&V> {
        self.slots.get(key).map(|slot| &slot.value)
    }

    /// Stores `value` under `key` (the caller checked [`Lru::fits`]); returns what left: the
    /// value it replaced and the least recently used entries evicted to make room.
    pub(crate) fn insert(&mut self, key: &str, value: V, cost: u64) -> Vec<(String, V)> {
        let mut gone: Vec<(String, V)> = self
            .remove(key)
            .map(|old| (key.to_owned(), old))
            .into_iter()
            .collect();
        while self.bytes + cost > self.budget {
            let Some((filed, oldest)) = self.order.pop_first() else {
                break;
            };
            let slot = self.slots.get_mut(&oldest).expect("filed keys are stored");
            if slot.tick != filed {
                // Used since it was filed: file it again under its last use.
                slot.filed = slot.tick;
                self.order.insert(slot.tick, oldest);
                continue;
            }
            let slot = self.slots.remove(&oldest).expect("filed keys are stored");
            self.bytes -= slot.cost;
            gone.push((oldest, slot.value));
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, key.to_owned());
        let slot = Slot {
            value,
            cost,
            tick,
            filed: tick,
        };
        self.slots.insert(key.to_owned(), slot);
        self.bytes += cost;
        gone
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let slot = self.slots.remove(key)?;
        self.order.remove(&slot.filed);
        self.bytes -= slot.cost;
        Some(slot.value)
    }

    /// Removes every entry whose key starts with `prefix` and counts a purge.
    pub(crate) fn purge(&mut self, prefix: &str) -> Vec<(String, V)> {
        self.purges += 1;
        let keys: Vec<String> = self
            .slots
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| self.remove(&key).map(|value| (key, value)))
            .collect()
    }

    /// The number of purges so far.
    pub(crate) fn purges(&self) -> u64 {
        self.purges
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut lru = Lru::new(300);
        for key in ["a", "b", "c"] {
            assert!(lru.insert(key, (), 100).is_empty());
        }
        assert!(lru.get("a").is_some()); // a is now newer than b
        let gone = lru.insert("d", (), 100);
        assert_eq!(
            gone,
            vec![("b".to_owned(), ())],
            "b was least recently used"
        );
        assert_eq!(lru.bytes(), 300);
        let gone = lru.insert("a", (), 50);
        assert_eq!(
            gone,
            vec![("a".to_owned(), ())],
            "a replaced, nothing evicted"
        );
        assert_eq!(lru.bytes(), 250);
        assert!(!lru.fits(301));
    }

    #[test]
    fn entries_used_after_filing_are_kept_over_older_ones() {
        let mut lru = Lru::new(300);
        for key in ["a", "b", "c"] {
            lru.insert(key, (), 100);
        }
        // Used in the order c, a, b: a and b must be re-filed behind c when d needs room.
        for key in ["c", "a", "b"] {
            assert!(lru.get(key).is_some());
        }
        assert_eq!(lru.insert("d", (), 100), vec![("c".to_owned(), ())]);
        assert_eq!(lru.insert("e", (), 100), vec![("a".to_owned(), ())]);
        lru.remove("b");
        assert_eq!(lru.bytes(), 200);
        assert_eq!(lru.insert("f", (), 200), vec![("d".to_owned(), ())]);
        assert!(lru.peek("e").is_some() && lru.peek("f").is_some());
    }

    #[test]
    fn purge_removes_by_prefix_and_counts() {
        let mut lru = Lru::new(100);
        for key in ["/v/1/a", "/v/1/b", "/v/2/a"] {
            lru.insert(key, (), 10);
        }
        assert_eq!(lru.purge("/v/1/").len(), 2);
        assert_eq!(lru.purges(), 1);
        assert!(lru.peek("/v/1/a").is_none());
        assert!(lru.peek("/v/2/a").is_some());
        assert_eq!(lru.bytes(), 10);
    }
}
