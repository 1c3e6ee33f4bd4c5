//! The two-tier object cache: memory first, then disk, each within its own byte budget with
//! least-recently-used eviction.
//!
//! Objects enter memory; what memory evicts, and what is too big for it, is written to disk
//! (in the background, off the request path). A disk hit is read back into memory (promoted)
//! when it fits there; the disk keeps its copy, so evicting it again costs no write. An object
//! bigger than the memory budget is served straight from its file, ranges by seeking.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::disk::{self, Disk};
use crate::lru::Lru;

/// `X-Cache`: whether an answer came from the cache (`HIT`, `STALE`) or the origin (`MISS`).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What the cache knows about an object besides its bytes.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The origin's representation headers (type, caching, validators), served again on hits.
    pub headers: HeaderMap,
    /// The head of every answer from the cache, built once when the object is stored so a hit
    /// costs one map clone: `headers` plus `Accept-Ranges`, `X-Cache: HIT` and placeholders
    /// for `Age` and `Content-Length`, which each answer overwrites in place.
    served: HeaderMap,
    /// When the origin answered (or the object was pushed): wall-clock time, so `Age` stays
    /// right across tiers and restarts.
    pub stored: SystemTime,
    /// How long it may be served as fresh (the origin's `max-age`).
    pub fresh_for: Duration,
    /// How long after that it may still be served stale (playlists only; see
    /// `edge.stale_if_error_seconds`).
    pub stale_for: Duration,
    /// The signature (`<video>/<exp>/<sig>`) of the URL it was fetched with: the origin
    /// accepted it, so a request carrying it may read the object without asking again (see
    /// [`crate::signed`]). `None` for pushed objects and playlists.
    pub signed_with: Option<String>,
}

impl Meta {
    /// The meta of an object the origin answered with representation `headers` at `stored`.
    pub fn new(
        headers: HeaderMap,
        stored: SystemTime,
        fresh_for: Duration,
        stale_for: Duration,
    ) -> Self {
        let mut served = HeaderMap::with_capacity(headers.len() + 4);
        for (name, value) in &headers {
            served.append(name, value.clone());
        }
        let zero = HeaderValue::from_static("0");
        served.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        served.insert(X_CACHE, HeaderValue::from_static("HIT"));
        served.insert(header::AGE, zero.clone());
        served.insert(header::CONTENT_LENGTH, zero);
        Self {
            headers,
            served,
            stored,
            fresh_for,
            stale_for,
            signed_with: None,
        }
    }

    /// This meta, remembering that the origin answered the object to a URL signed with
    /// `verdict`.
    pub fn with_signature(mut self, verdict: Option<String>) -> Self {
        self.signed_with = verdict;
        self
    }

    /// The head of an answer from the cache (see `served`); the caller sets `Age` and
    /// `Content-Length`, and `X-Cache` unless it is a `HIT`.
    pub fn served_headers(&self) -> HeaderMap {
        self.served.clone()
    }

    /// Time since it was stored.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.stored).unwrap_or_default()
    }

    /// Whether it is still within its `max-age`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.age(now) < self.fresh_for
    }

    /// Whether it may be served at all, fresh or stale.
    pub fn is_usable(&self, now: SystemTime) -> bool {
        self.age(now) < self.fresh_for + self.stale_for
    }
}

/// One complete object kept for later requests.
#[derive(Debug)]
pub struct Cached {
    /// Headers and freshness, shared with every answer served from it.
    pub meta: Arc<Meta>,
    /// The whole body; ranges are slices of it.
    pub body: Bytes,
}

impl Cached {
    /// `body` described by `meta`.
    pub fn new(meta: Meta, body: Bytes) -> Self {
        Self {
            meta: Arc::new(meta),
            body,
        }
    }
}

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// From memory.
    Memory,
    /// From disk (promoted to memory on the way when it fits there).
    Disk,
}

/// A found object's bytes.
#[derive(Debug)]
pub enum Body {
    /// In memory.
    Bytes(Bytes),
    /// Only in a file (too big for memory), opened at the body's start.
    File(tokio::fs::File, u64),
}

/// An object found in the cache.
#[derive(Debug)]
pub struct Found {
    /// Headers and freshness.
    pub meta: Arc<Meta>,
    /// The bytes.
    pub body: Body,
    /// Which tier held it.
    pub tier: Tier,
}

impl Found {
    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, len) => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A memory hit.
    pub fn in_memory(hit: &Cached) -> Self {
        Self {
            meta: hit.meta.clone(),
            body: Body::Bytes(hit.body.clone()),
            tier: Tier::Memory,
        }
    }
}

/// Where [`Cache::store`] put an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// In memory.
    Memory,
    /// On disk only (too big for memory).
    Disk,
    /// Nowhere: bigger than every tier's budget.
    TooBig,
    /// Nowhere: a purge happened since the fetch started.
    Purged,
    /// Nowhere: the disk was busy with [`disk::WRITERS`] other writes.
    Busy,
}

/// Where an object goes, decided under the memory lock.
enum Placement {
    Done(Stored),
    Disk(Arc<Disk>, Arc<Cached>, u64),
}

/// Objects by cache key in memory and on disk.
pub struct Cache {
    memory: Mutex<Lru<Arc<Cached>>>,
    /// The second tier; `None` when `edge.disk_cache_bytes` is 0.
    disk: Option<Arc<Disk>>,
}

fn cost(key: &str, len: usize) -> u64 {
    // The key counts too, so many tiny objects cannot exceed the budget unnoticed.
    (len + key.len()) as u64
}

fn report_memory(bytes: u64) {
    metrics::gauge!("mediahost_edge_cache_bytes", "tier" => "memory").set(bytes as f64);
}

impl Cache {
    /// An empty memory tier of `memory_budget` bytes in front of `disk`.
    pub fn new(memory_budget: u64, disk: Option<Disk>) -> Self {
        report_memory(0);
        Self {
            memory: Mutex::new(Lru::new(memory_budget)),
            disk: disk.map(Arc::new),
        }
    }

    /// The object for `key` if it may be served at `now` (fresh, or stale within its window),
    /// from memory, else from disk. Objects past that are dropped.
    pub async fn get(&self, key: &str, now: SystemTime) -> Option<Found> {
        if let Some(hit) = self.get_memory(key, now) {
            return Some(Found::in_memory(&hit));
        }
        let disk = self.disk.as_ref()?;
        let purges = self.purges();
        let entry = disk.get(key, now)?;
        let fits = {
            let memory = self.memory.lock().expect("cache lock");
            memory.fits(cost(key, entry.len as usize))
        };
        let read = async {
            let file = entry.open().await?;
            if fits {
                disk::read(file, entry.len).await.map(Body::Bytes)
            } else {
                Ok(Body::File(file, entry.len))
            }
        };
        match read.await {
            Ok(body) => {
                if let Body::Bytes(bytes) = &body {
                    let promoted = Cached {
                        meta: entry.meta.clone(),
                        body: bytes.clone(),
                    };
                    self.insert(key, promoted, Some(purges));
                }
                Some(Found {
                    meta: entry.meta.clone(),
                    body,
                    tier: Tier::Disk,
                })
            }
            Err(e) => {
                // Deleted behind the cache's back, or a disk error: a miss, and forgotten.
                tracing::warn!(%key, error = %e, "cannot read a cached file");
                metrics::counter!("mediahost_edge_disk_errors_total").increment(1);
                disk.remove(key);
                None
            }
        }
    }

    /// The object for `key` in memory if it may be served at `now`, marked most recently
    /// used; one past that is dropped.
    pub fn get_memory(&self, key: &str, now: SystemTime) -> Option<Arc<Cached>> {
        let mut memory = self.memory.lock().expect("cache lock");
        let hit = memory.get(key)?;
        if hit.meta.is_usable(now) {
            return Some(hit);
        }
        memory.remove(key);
        report_memory(memory.bytes());
        None
    }

    /// The number of purges so far, to pass to [`Cache::insert`].
    pub fn purges(&self) -> u64 {
        self.memory.lock().expect("cache lock").purges()
    }

    /// Stores `entry` under `key`: in memory when it fits (what that evicts goes to disk in
    /// the background), else on disk in the background. Writes beyond [`disk::WRITERS`] at
    /// once are skipped rather than queued. Nothing is stored when a purge
    /// happened since [`Cache::purges`] returned `since` (`None`: always store), so an object
    /// fetched before a purge does not come back after it.
    pub fn insert(&self, key: &str, entry: Cached, since: Option<u64>) -> Stored {
        match self.place(key, entry, since) {
            Placement::Done(stored) => stored,
            Placement::Disk(disk, entry, purges) => match disk.try_writer() {
                Some(turn) => {
                    tokio::spawn(disk.write(key.to_owned(), entry, purges, turn));
                    Stored::Disk
                }
                None => {
                    metrics::counter!("mediahost_edge_disk_skipped_total").increment(1);
                    Stored::Busy
                }
            },
        }
    }

    /// Like [`Cache::insert`] (always storing), but returns only once an object bound for
    /// disk is there, so it is served from the next request on.
    pub async fn store(&self, key: &str, entry: Cached) -> Stored {
        match self.place(key, entry, None) {
            Placement::Done(stored) => stored,
            Placement::Disk(disk, entry, purges) => {
                let turn = disk.writer().await;
                disk.write(key.to_owned(), entry, purges, turn).await;
                Stored::Disk
            }
        }
    }

    fn place(&self, key: &str, entry: Cached, since: Option<u64>) -> Placement {
        let cost = cost(key, entry.body.len());
        let entry = Arc::new(entry);
        let mut memory = self.memory.lock().expect("cache lock");
        if since.is_some_and(|since| since != memory.purges()) {
            return Placement::Done(Stored::Purged);
        }
        // Taken under the memory lock: a purge clears memory, then disk, so a write that read
        // the disk's count before that purge reached the disk is dropped by it.
        let disk_purges = self.disk.as_ref().map(|disk| disk.purges());
        if !memory.fits(cost) {
            drop(memory);
            return match (&self.disk, disk_purges) {
                (Some(disk), Some(purges)) if disk.fits(key, entry.body.len() as u64) => {
                    Placement::Disk(disk.clone(), entry, purges)
                }
                _ => Placement::Done(Stored::TooBig),
            };
        }
        let gone = memory.insert(key, entry, cost);
        report_memory(memory.bytes());
        drop(memory);
        if let (Some(disk), Some(purges)) = (&self.disk, disk_purges) {
            let now = SystemTime::now();
            for (evicted, entry) in gone {
                // `gone` also holds the version `key` replaced, which must not be kept.
                let worth_keeping = evicted != key
                    && entry.meta.is_usable(now)
                    && !disk.holds(&evicted, entry.meta.stored)
                    && disk.fits(&evicted, entry.body.len() as u64);
                if !worth_keeping {
                    continue;
                }
                match disk.try_writer() {
                    Some(turn) => {
                        tokio::spawn(disk.clone().write(evicted, entry, purges, turn));
                    }
                    None => metrics::counter!("mediahost_edge_disk_skipped_total").increment(1),
                }
            }
        }
        Placement::Done(Stored::Memory)
    }

    /// Forgets `key` in every tier.
    pub fn remove(&self, key: &str) {
        let mut memory = self.memory.lock().expect("cache lock");
        memory.remove(key);
        report_memory(memory.bytes());
        drop(memory);
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
    }

    /// Removes every object whose key starts with `prefix` from every tier; returns how many
    /// distinct keys went.
    pub fn purge(&self, prefix: &str) -> usize {
        let mut memory = self.memory.lock().expect("cache lock");
        let mut keys: Vec<String> = memory.purge(prefix).into_iter().map(|(k, _)| k).collect();
        report_memory(memory.bytes());
        drop(memory);
        if let Some(disk) = &self.disk {
            keys.extend(disk.purge(prefix));
        }
        keys.sort();
        keys.dedup();
        keys.len()
    }

    /// Bytes held now in memory and on disk.
    pub fn bytes(&self) -> (u64, u64) {
        let memory = self.memory.lock().expect("cache lock").bytes();
        (memory, self.disk.as_ref().map_or(0, |disk| disk.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Cached {
        let meta = Meta::new(
            HeaderMap::new(),
            SystemTime::now(),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        Cached::new(meta, Bytes::from(vec![7u8; len]))
    }

    /// Waits until the disk holds more than `bytes` (memory evictions are written in the
    /// background); the deadline only keeps a broken build from hanging.
    async fn disk_exceeds(cache: &Cache, bytes: u64) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = cache.bytes().1;
            if now > bytes {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "disk stuck at {now}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn memory_evictions_go_to_disk_and_disk_hits_are_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        let cache = Cache::new(200, Some(disk));
        cache.insert("a", entry(99), None);
        cache.insert("b", entry(99), None);
        assert_eq!(cache.bytes(), (200, 0));
        cache.insert("c", entry(99), None); // evicts a to disk
        let with_a = disk_exceeds(&cache, 0).await;
        assert!(cache.get_memory("a", SystemTime::now()).is_none());
        let found = cache.get("a", SystemTime::now()).await.unwrap();
        assert_eq!(found.tier, Tier::Disk);
        assert!(matches!(&found.body, Body::Bytes(b) if b.len() == 99));
        // Promoted: now in memory (which evicted b to disk).
        let again = cache.get("a", SystemTime::now()).await.unwrap();
        assert_eq!(again.tier, Tier::Memory);
        disk_exceeds(&cache, with_a).await;
        let found = cache.get("b", SystemTime::now()).await.unwrap();
        assert_eq!(found.tier, Tier::Disk, "b went to disk when a was promoted");
    }

    #[tokio::test]
    async fn objects_too_big_for_memory_are_served_from_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        let cache = Cache::new(100, Some(disk));
        assert_eq!(cache.store("big", entry(500)).await, Stored::Disk);
        let found = cache.get("big", SystemTime::now()).await.unwrap();
        assert_eq!((found.tier, found.len()), (Tier::Disk, 500));
        assert!(matches!(found.body, Body::File(_, 500)));
        assert_eq!(cache.bytes().0, 0, "never promoted");
        let dir = tempfile::tempdir().unwrap();
        let busy = Cache::new(100, Some(Disk::open(dir.path(), 1 << 20).unwrap()));
        let disk = busy.disk.clone().unwrap();
        let mut turns = Vec::new();
        for _ in 0..disk::WRITERS {
            turns.push(disk.writer().await);
        }
        assert_eq!(busy.insert("big", entry(500), None), Stored::Busy);
        drop(turns);
        assert_eq!(busy.insert("big", entry(500), None), Stored::Disk);
        let without_disk = Cache::new(100, None);
        assert_eq!(without_disk.store("big", entry(500)).await, Stored::TooBig);
    }

    #[tokio::test]
    async fn purge_clears_both_tiers_and_late_fetches_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        let cache = Cache::new(100, Some(disk));
        cache.store("/v/1/big", entry(500)).await;
        cache.insert("/v/1/a", entry(10), None);
        cache.insert("/v/2/a", entry(10), None);
        let before = cache.purges();
        assert_eq!(cache.purge("/v/1/"), 2);
        assert!(cache.get("/v/1/big", SystemTime::now()).await.is_none());
        assert!(cache.get("/v/1/a", SystemTime::now()).await.is_none());
        assert!(cache.get("/v/2/a", SystemTime::now()).await.is_some());
        assert_eq!(
            cache.insert("/v/1/a", entry(10), Some(before)),
            Stored::Purged
        );
        assert!(cache.get("/v/1/a", SystemTime::now()).await.is_none());
    }

    #[tokio::test]
    async fn expired_objects_are_dropped_and_stale_ones_kept_within_their_window() {
        let cache = Cache::new(1000, None);
        let mut stale = entry(10);
        let meta = Arc::make_mut(&mut stale.meta);
        meta.stored -= Duration::from_secs(90);
        meta.stale_for = Duration::from_secs(60);
        cache.insert("playlist", stale, None);
        let found = cache.get("playlist", SystemTime::now()).await.unwrap();
        assert!(!found.meta.is_fresh(SystemTime::now()));
        assert!(found.meta.age(SystemTime::now()) >= Duration::from_secs(90));
        let later = SystemTime::now() + Duration::from_secs(31);
        assert!(cache.get("playlist", later).await.is_none());
        assert_eq!(cache.bytes().0, 0);
    }
}
