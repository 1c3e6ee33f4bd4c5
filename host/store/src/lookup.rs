//! Cached video lookups for the hot read paths (playback at the origin, tenant resolution at
//! the edge): every segment request would otherwise cost a database round trip.
//!
//! [`LookupCache`] is the boundary; [`MemoryLookups`] (the default) keeps entries in this
//! process, [`RedisLookups`] in a Redis server shared by every process of a deployment. Entries
//! are invalidated by every [`Store`](crate::Store) method that changes or deletes the video, so
//! with Redis a change made by any process is seen by all at once; with the in-process cache
//! other processes see it after at most the TTL. Absent videos are cached too (a flood of
//! requests for an unknown id must not reach the database), and a cache that fails (Redis down)
//! is logged and bypassed: lookups then go to the database, never fail because of the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where cached lookups live. Values are opaque bytes (JSON written by the store).
#[async_trait::async_trait]
pub trait LookupCache: Send + Sync + std::fmt::Debug {
    /// The value under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Option<Arc<[u8]>>;
    /// Stores `value` under `key` for `ttl`.
    async fn put(&self, key: &str, value: Arc<[u8]>, ttl: Duration);
    /// Drops `key` (the looked-up row changed).
    async fn invalidate(&self, key: &str);
    /// Whether the cache's server answers (`/readyz`); an in-process cache always does.
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Values by key, with the instant each expires.
type Entries = HashMap<String, (Instant, Arc<[u8]>)>;

/// An in-process cache with at most `capacity` entries: when full, expired entries are
/// dropped, and if none had expired, everything (a rare, cheap reset rather than LRU
/// bookkeeping on every read of the hot path).
#[derive(Debug)]
pub struct MemoryLookups {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl MemoryLookups {
    /// An empty cache of at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl LookupCache for MemoryLookups {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let entries = self.lock();
        let (expires, value) = entries.get(key)?;
        (*expires > Instant::now()).then(|| value.clone())
    }

    async fn put(&self, key: &str, value: Arc<[u8]>, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), (now + ttl, value));
    }

    async fn invalidate(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Lookups in Redis, shared by every process (keys `mediahost:lookup:<key>`, with their TTL).
pub struct RedisLookups {
    connection: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLookups").finish_non_exhaustive()
    }
}

/// How long connecting to Redis may take at start-up.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the Redis lookup cache could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Redis lookup cache at {url} (`cache.redis_url`): {message}")]
pub struct RedisCacheError {
    /// The server's URL, password redacted.
    pub url: String,
    /// What failed.
    pub message: String,
}

impl RedisLookups {
    /// Connects to the Redis server at `url` (checked with a `PING`, so a wrong URL stops the
    /// start-up rather than every lookup).
    pub async fn connect(url: &str) -> Result<Self, RedisCacheError> {
        let failed = |message: String| RedisCacheError {
            url: mediahost_core::redact_url(url),
            message,
        };
        let client = redis::Client::open(url).map_err(|e| failed(e.to_string()))?;
        let mut connection = tokio::time::timeout(
            REDIS_CONNECT_TIMEOUT,
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| failed("no answer within 5 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self { connection })
    }

    fn key(key: &str) -> String {
        format!("mediahost:lookup:{key}")
    }
}

#[async_trait::async_trait]
impl LookupCache for RedisLookups {
    async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let mut connection = self.connection.clone();
        match redis::cmd("GET")
            .arg(Self::key(key))
            .query_async::<Option<Vec<u8>>>(&mut connection)
            .await
        {
            Ok(value) => value.map(Arc::from),
            Err(e) => {
                tracing::warn!(error = %e, "Redis lookup cache unavailable; reading the database");
                None
            }
        }
    }

    async fn put(&self, key: &str, value: Arc<[u8]>, ttl: Duration) {
        let mut connection = self.connection.clone();
        let result = redis::cmd("SET")
            .arg(Self::key(key))
            .arg(&*value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut connection)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "Redis lookup cache unavailable; entry not stored");
        }
    }

    async fn invalidate(&self, key: &str) {
        let mut connection = self.connection.clone();
        let result = redis::cmd("DEL")
            .arg(Self::key(key))
            .query_async::<()>(&mut connection)
            .await;
        if let Err(e) = result {
            // Other processes may serve the old entry until its TTL runs out.
            tracing::error!(error = %e, %key, "could not invalidate a Redis lookup entry");
        }
    }

    async fn ping(&self) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        let answer = ping.query_async::<String>(&mut connection);
        match tokio::time::timeout(REDIS_CONNECT_TIMEOUT, answer).await {
            Ok(answer) => answer.map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s",
                REDIS_CONNECT_TIMEOUT.as_secs()
            )),
        }
    }
}

/// The cache and TTL a [`Store`](crate::Store) uses for its cached lookups.
#[derive(Debug, Clone)]
pub(crate) struct Lookups {
    pub(crate) cache: Arc<dyn LookupCache>,
    pub(crate) ttl: Duration,
    /// Videos decoded from the cache's entries, so a hot entry is parsed once per version.
    pub(crate) videos: Arc<Decoded<Option<Arc<mediahost_core::Video>>>>,
}

/// Bytes of a cache entry and the value decoded from them.
type Seen<T> = (Arc<[u8]>, T);

/// The value last decoded from each key's cached bytes: a lookup that finds the same bytes
/// again (the same `Arc` in memory, equal bytes from Redis) reuses it instead of parsing
/// JSON on every request of a hot path. Keyed by the bytes themselves, so it can never
/// answer with a value the cache no longer holds.
pub(crate) struct Decoded<T> {
    /// Per key: the bytes last decoded and what they decoded to.
    entries: Mutex<HashMap<String, Seen<T>>>,
    /// Like [`MemoryLookups`]: at most this many keys, cleared when full.
    capacity: usize,
}

impl<T> std::fmt::Debug for Decoded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Decoded<T> {
    /// An empty memo of at most `capacity` keys (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// `bytes` (what the cache holds under `key`) decoded by `decode`, or the value decoded
    /// from the same bytes before.
    pub(crate) fn get<E>(
        &self,
        key: &str,
        bytes: Arc<[u8]>,
        decode: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, value)) = lock().get(key)
            && (Arc::ptr_eq(seen, &bytes) || **seen == *bytes)
        {
            return Ok(value.clone());
        }
        let value = decode(&bytes)?;
        self.remember(key, bytes, value.clone());
        Ok(value)
    }

    /// Records that `bytes` under `key` decode to `value`.
    pub(crate) fn remember(&self, key: &str, bytes: Arc<[u8]>, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(key.to_owned(), (bytes, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_values_follow_the_bytes() {
        let memo = Decoded::<String>::new(2);
        let calls = std::cell::Cell::new(0);
        let get = |key: &str, bytes: &[u8]| {
            memo.get(key, Arc::from(bytes), |b| -> Result<String, ()> {
                calls.set(calls.get() + 1);
                Ok(String::from_utf8_lossy(b).into_owned())
            })
        };
        let one: Arc<[u8]> = Arc::from(&b"one"[..]);
        let same = memo.get("k", one.clone(), |_| Err(())).err();
        assert_eq!(same, Some(()), "nothing remembered yet: decoded");
        assert_eq!(get("k", b"one"), Ok("one".into()));
        // Equal bytes in another allocation (as Redis returns them) are not parsed again.
        assert_eq!(get("k", b"one"), Ok("one".into()));
        assert_eq!(memo.get("k", one, |_| Err(())), Ok("one".into()));
        assert_eq!(calls.get(), 1);
        assert_eq!(get("k", b"two"), Ok("two".into()));
        assert_eq!(calls.get(), 2, "changed bytes are decoded afresh");
        for key in ["a", "b", "c"] {
            get(key, key.as_bytes()).unwrap();
        }
        assert!(memo.entries.lock().unwrap().len() <= 2, "bounded");
    }

    #[tokio::test]
    async fn memory_entries_expire_and_are_invalidated() {
        let cache = MemoryLookups::new(10);
        cache
            .put("a", Arc::from(&b"1"[..]), Duration::from_secs(60))
            .await;
        cache.put("b", Arc::from(&b"2"[..]), Duration::ZERO).await;
        assert_eq!(cache.get("a").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(cache.get("b").await, None, "expired");
        cache.invalidate("a").await;
        assert_eq!(cache.get("a").await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_entries_are_shared_so_a_change_by_one_process_is_seen_by_all() {
        use mediahost_core::VideoStatus;
        let Some(url) = crate::testing::redis_server_url() else {
            return;
        };
        let db = crate::testing::TestStore::sqlite().await;
        let ttl = Duration::from_secs(3600);
        // Two processes' views of one database, each with its own Redis connection.
        let connect = || async {
            Arc::new(RedisLookups::connect(&url).await.unwrap()) as Arc<dyn LookupCache>
        };
        let one = crate::Store::clone(&db).with_lookup_cache(connect().await, ttl);
        let two = crate::Store::clone(&db).with_lookup_cache(connect().await, ttl);
        let (tenant, _) = one.create_tenant("a").await.unwrap();
        let video = one
            .create_video(&tenant.id, &crate::NewVideo::default())
            .await
            .unwrap();
        let seen = two.video_by_id_cached(&video.id).await.unwrap().unwrap();
        assert_eq!(seen.status, VideoStatus::AwaitingUpload);
        assert!(one.mark_uploaded(&video.id, 1, "ab").await.unwrap());
        let seen = two.video_by_id_cached(&video.id).await.unwrap().unwrap();
        assert_eq!(
            seen.status,
            VideoStatus::Queued,
            "invalidated for every process"
        );
        one.delete_video(&tenant.id, &video.id).await.unwrap();
        assert_eq!(two.video_by_id_cached(&video.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_redis_names_the_setting() {
        let err = RedisLookups::connect("redis://127.0.0.1:9")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cache.redis_url"), "{err}");
    }

    #[tokio::test]
    async fn a_full_memory_cache_makes_room() {
        let cache = MemoryLookups::new(2);
        let ttl = Duration::from_secs(60);
        for key in ["a", "b", "c"] {
            cache.put(key, Arc::from(key.as_bytes()), ttl).await;
        }
        assert_eq!(cache.get("c").await.as_deref(), Some(&b"c"[..]));
        assert!(cache.lock().len() <= 2);
    }
}
