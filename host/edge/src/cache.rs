//! The in-memory object cache: a byte budget with least-recently-used eviction.

use axum::http::HeaderMap;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One complete origin response kept for later requests.
#[derive(Debug)]
pub struct Cached {
    /// The origin's representation headers (type, caching, validators), served again on hits.
    pub headers: HeaderMap,
    /// The whole body; ranges are slices of it.
    pub body: Bytes,
    /// When it was stored, for `Age` and freshness.
    pub stored: Instant,
    /// How long it may be served from the cache (the origin's `max-age`).
    pub fresh_for: Duration,
}

impl Cached {
    /// Bytes this entry counts against the budget (its key included, so many tiny objects
    /// cannot exceed the budget unnoticed).
    fn cost(&self, key: &str) -> u64 {
        (self.body.len() + key.len()) as u64
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.stored) < self.fresh_for
    }
}

struct Slot {
    entry: std::sync::Arc<Cached>,
    /// Position in [`Inner::order`]; larger is more recently used.
    tick: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Recency order: tick → key, oldest first, so eviction pops the first entry.
    order: BTreeMap<u64, String>,
    bytes: u64,
    next_tick: u64,
    /// Purges so far: a fetch that started before a purge must not store what it fetched.
    purges: u64,
}

impl Inner {
    fn remove(&mut self, key: &str) -> bool {
        match self.slots.remove(key) {
            Some(slot) => {
                self.order.remove(&slot.tick);
                self.bytes -= slot.entry.cost(key);
                true
            }
            None => false,
        }
    }
}

/// Objects by cache key, within a byte budget.
pub struct Cache {
    inner: Mutex<Inner>,
    budget: u64,
}

impl Cache {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    /// The fresh entry for `key`, marking it most recently used; a stale entry is dropped.
    pub fn get(&self, key: &str) -> Option<std::sync::Arc<Cached>> {
        let mut inner = self.inner.lock().expect("cache lock");
        let fresh = inner.slots.get(key)?.entry.is_fresh(Instant::now());
        if !fresh {
            inner.remove(key);
            return None;
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        let slot = inner.slots.get_mut(key).expect("present");
        let old = std::mem::replace(&mut slot.tick, tick);
        let entry = slot.entry.clone();
        inner.order.remove(&old);
        inner.order.insert(tick, key.to_owned());
        Some(entry)
    }

    /// Stores `entry` under `key`, evicting least recently used entries to stay within the
    /// budget. An object larger than the whole budget is not stored.
    pub fn insert(&self, key: &str, entry: Cached) {
        self.insert_unless_purged(key, entry, None);
    }

    /// The number of purges so far, to pass to [`Cache::insert_unless_purged`].
    pub fn purges(&self) -> u64 {
        self.inner.lock().expect("cache lock").purges
    }

    /// Like [`Cache::insert`], but stores nothing when a purge happened since [`Cache::purges`]
    /// returned `since` (`None`: always store), so an object fetched before a purge does not
    /// come back after it.
    pub fn insert_unless_purged(&self, key: &str, entry: Cached, since: Option<u64>) {
        let cost = entry.cost(key);
        if cost > self.budget {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        if since.is_some_and(|since| since != inner.purges) {
            return;
        }
        inner.remove(key);
        while inner.bytes + cost > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            let slot = inner
                .slots
                .remove(&oldest)
                .expect("ordered keys are stored");
            inner.bytes -= slot.entry.cost(&oldest);
            tracing::debug!(key = %oldest, "evicted");
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key.to_owned());
        inner.slots.insert(
            key.to_owned(),
            Slot {
                entry: std::sync::Arc::new(entry),
                tick,
            },
        );
        inner.bytes += cost;
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    pub fn purge(&self, prefix: &str) -> usize {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.purges += 1;
        let keys: Vec<String> = inner
            .slots
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for key in &keys {
            inner.remove(key);
        }
        keys.len()
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().expect("cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Cached {
        Cached {
            headers: HeaderMap::new(),
            body: Bytes::from(vec![0u8; len]),
            stored: Instant::now(),
            fresh_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let cache = Cache::new(300);
        cache.insert("a", entry(99));
        cache.insert("b", entry(99));
        cache.insert("c", entry(99));
        assert!(cache.get("a").is_some()); // a is now newer than b
        cache.insert("d", entry(99));
        assert!(cache.get("b").is_none(), "b was least recently used");
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_some());
        assert!(cache.get("d").is_some());
        assert_eq!(cache.bytes(), 300);
    }

    #[test]
    fn too_big_objects_are_not_stored_and_purge_by_prefix() {
        let cache = Cache::new(100);
        cache.insert("huge", entry(200));
        assert_eq!(cache.bytes(), 0);
        cache.insert("/v/1/a", entry(10));
        cache.insert("/v/1/b", entry(10));
        cache.insert("/v/2/a", entry(10));
        assert_eq!(cache.purge("/v/1/"), 2);
        assert!(cache.get("/v/1/a").is_none());
        assert!(cache.get("/v/2/a").is_some());
        assert_eq!(cache.bytes(), 16);
    }

    #[test]
    fn fetches_started_before_a_purge_are_not_stored() {
        let cache = Cache::new(100);
        let before = cache.purges();
        cache.purge("/v/1/");
        cache.insert_unless_purged("/v/1/a", entry(10), Some(before));
        assert!(cache.get("/v/1/a").is_none());
        cache.insert_unless_purged("/v/1/a", entry(10), Some(cache.purges()));
        assert!(cache.get("/v/1/a").is_some());
    }

    #[test]
    fn stale_entries_are_dropped() {
        let cache = Cache::new(100);
        let mut stale = entry(10);
        stale.fresh_for = Duration::ZERO;
        cache.insert("k", stale);
        assert!(cache.get("k").is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
