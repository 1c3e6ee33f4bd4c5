//! The write lock of one upload: a lease, renewed in the background while a request writes,
//! released when it ends, and lapsing by itself when the process holding it dies.
//!
//! Two backends behind [`UploadLocks`], chosen by `[tus] lock`:
//! - [`DatabaseLocks`] (default): the lease is in the upload's row of the metadata DB
//!   (`lock_token`, `locked_until`), so every api process sharing the database sees it.
//! - [`RedisLocks`]: the lease is a key per upload in Redis, `SET key token NX PX lease`; renewal
//!   and release are Lua scripts that act only while the key still holds this holder's token, so
//!   a holder whose lease lapsed can never extend or delete its successor's. Redis's own clock
//!   times the lease, so the api processes' clocks do not matter.
//!
//! Fencing: a request that lost its lease (a long pause, a partition) must not move the upload
//! on. Whoever takes the lock, with either backend, also takes the next *writer generation* in
//! the upload's row ([`Upload::writer`]), and every offset move names its own: a holder that
//! was taken over changes nothing, even before its successor moved anything, and pieces it
//! stores late in object storage lose to its successor's. A writer also stops at its next chunk
//! once renewal reports the lease lost.

use async_trait::async_trait;
use mediahost_core::Tenant;
use mediahost_core::config::{TusConfig, TusLock};
use mediahost_store::{Store, StoreError, Upload};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{ApiError, SharedState, auth};

/// Why a lock operation failed (not: the lock is held, which is an answer, not an error).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The metadata database failed.
    #[error(transparent)]
    Database(#[from] StoreError),
    /// The Redis server failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `[tus]` cannot work as written.
    #[error("{setting}: {message}")]
    Config {
        /// The option to fix.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Redis(e) => {
                tracing::error!(error = %e, "upload lock server (Redis) failed");
                ApiError::Unavailable(
                    "the upload lock service is unavailable; retry the request".into(),
                )
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Where upload write locks are held: leases keyed by upload id, each identified by a token.
#[async_trait]
pub trait UploadLocks: Send + Sync {
    /// Takes the lock of `tenant_id`'s upload `id` for `lease` unless a live lease holds it,
    /// with the upload's next writer generation, and reads its row under the lock. Nobody
    /// takes the lock of an upload that is not theirs.
    async fn acquire_upload(
        &self,
        store: &Store,
        tenant_id: &str,
        id: &str,
        lease: Duration,
    ) -> Result<Acquired, LockError>;
    /// Extends the lease `token` holds; false when it was lost (lapsed, maybe taken over).
    async fn renew(&self, id: &str, token: &str, lease: Duration) -> Result<bool, LockError>;
    /// Releases the lock if `token` still holds it.
    async fn release(&self, id: &str, token: &str) -> Result<(), LockError>;
    /// Whether the lease is in the upload's row, so the write that moves the row on can
    /// release it too.
    fn in_row(&self) -> bool {
        false
    }
    /// Whether a lock server of its own answers (`/readyz`); backends without one (the
    /// database's rows, checked as the database) have nothing to ask.
    async fn ping(&self) -> Result<(), LockError> {
        Ok(())
    }
}

/// What asking for the lock of a tenant's upload came to.
#[derive(Debug)]
pub enum Acquired {
    /// Locked by the caller: the token, and the row as it stands under the lock.
    Locked {
        /// This holder's token.
        token: String,
        /// The upload's row.
        upload: Upload,
    },
    /// Another live lease holds it.
    Busy,
    /// No such upload for this tenant.
    Unknown,
}

/// Leases in the upload rows of the metadata database.
pub struct DatabaseLocks {
    /// The metadata store holding the rows.
    store: Store,
}

impl DatabaseLocks {
    /// Locks in `store`'s upload rows.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn millis(lease: Duration) -> i64 {
    lease.as_millis().min(i64::MAX as u128) as i64
}

#[async_trait]
impl UploadLocks for DatabaseLocks {
    async fn renew(&self, id: &str, token: &str, lease: Duration) -> Result<bool, LockError> {
        Ok(self
            .store
            .renew_upload_lock(id, token, millis(lease))
            .await?)
    }

    async fn release(&self, id: &str, token: &str) -> Result<(), LockError> {
        Ok(self.store.unlock_upload(id, token).await?)
    }

    fn in_row(&self) -> bool {
        true
    }

    /// One statement locks, checks the tenant and reads the row; a second, only when that
    /// found nothing, tells a busy upload from an unknown one.
    async fn acquire_upload(
        &self,
        _store: &Store,
        tenant_id: &str,
        id: &str,
        lease: Duration,
    ) -> Result<Acquired, LockError> {
        let locked = self
            .store
            .lock_upload_of(tenant_id, id, millis(lease))
            .await?;
        Ok(locked_or_why_not(&self.store, tenant_id, id, locked).await?)
    }
}

/// What a locking `UPDATE` that returned `locked` came to: when it found nothing, a read tells
/// a busy upload from one the tenant does not have.
async fn locked_or_why_not(
    store: &Store,
    tenant_id: &str,
    id: &str,
    locked: Option<(String, Upload)>,
) -> Result<Acquired, StoreError> {
    if let Some((token, upload)) = locked {
        return Ok(Acquired::Locked { token, upload });
    }
    Ok(match store.upload(tenant_id, id).await? {
        Some(_) => Acquired::Busy,
        None => Acquired::Unknown,
    })
}

/// Extends the lease only while the key holds the caller's token.
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the key only while it holds the caller's token.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Leases as Redis keys `mediahost:tus-lock:<upload id>`.
pub struct RedisLocks {
    /// A multiplexed connection that reconnects by itself after the server restarts.
    conn: ConnectionManager,
    /// [`RENEW`], sent by hash after its first use.
    renew: redis::Script,
    /// [`RELEASE`], likewise.
    release: redis::Script,
}

impl RedisLocks {
    /// The key prefix, so the locks are recognisable on a Redis server shared with others.
    pub const KEY_PREFIX: &'static str = "mediahost:tus-lock:";

    /// The Redis key holding upload `id`'s lease.
    pub fn key(id: &str) -> String {
        format!("{}{id}", Self::KEY_PREFIX)
    }

    /// Connects to the Redis server at `url` and checks it answers, so a wrong URL stops the
    /// start-up instead of failing every PATCH.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let client = redis::Client::open(url)?;
        // Bounded waits: a PATCH waiting on a dead lock server answers 503 instead of hanging.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(Self {
            conn,
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        })
    }

    /// Takes upload `id`'s lease for `lease` unless a live one holds it; returns the token, or
    /// `None` when the upload is locked.
    pub async fn acquire(&self, id: &str, lease: Duration) -> Result<Option<String>, LockError> {
        let token = mediahost_store::new_id();
        // `SET … NX` answers nil when the key exists: someone else's live lease.
        let set: Option<String> = redis::cmd("SET")
            .arg(Self::key(id))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease).max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.map(|_| token))
    }
}

#[async_trait]
impl UploadLocks for RedisLocks {
    /// Looks the upload up first, so that nobody takes the lock of an upload that is not
    /// theirs, then takes the lease and, under it, the row's next writer generation.
    async fn acquire_upload(
        &self,
        store: &Store,
        tenant_id: &str,
        id: &str,
        lease: Duration,
    ) -> Result<Acquired, LockError> {
        if store.upload(tenant_id, id).await?.is_none() {
            return Ok(Acquired::Unknown);
        }
        let Some(token) = self.acquire(id, lease).await? else {
            return Ok(Acquired::Busy);
        };
        let claimed = store.claim_upload(tenant_id, id).await;
        match claimed {
            Ok(Some(upload)) => Ok(Acquired::Locked { token, upload }),
            // Deleted in between.
            Ok(None) => {
                self.release(id, &token).await?;
                Ok(Acquired::Unknown)
            }
            Err(e) => {
                let _ = self.release(id, &token).await;
                Err(e.into())
            }
        }
    }

    async fn renew(&self, id: &str, token: &str, lease: Duration) -> Result<bool, LockError> {
        let renewed: i64 = self
            .renew
            .key(Self::key(id))
            .arg(token)
            .arg(millis(lease).max(1))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(renewed == 1)
    }

    async fn release(&self, id: &str, token: &str) -> Result<(), LockError> {
        let _deleted: i64 = self
            .release
            .key(Self::key(id))
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), LockError> {
        // The connection's response timeout (5 s) bounds the wait.
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// The lock backend `[tus]` names: the database's rows by default, or Redis (connected and
/// checked here, with an error naming `tus.redis_url` when it does not answer).
pub async fn from_config(
    config: &TusConfig,
    store: &Store,
) -> Result<Arc<dyn UploadLocks>, LockError> {
    match config.lock {
        TusLock::Database => Ok(Arc::new(DatabaseLocks::new(store.clone()))),
        TusLock::Redis => {
            let url = config.redis_url().ok_or_else(|| LockError::Config {
                setting: "tus.redis_url",
                message: "tus.lock = \"redis\" needs the server's URL: set tus.redis_url, \
                          MEDIAHOST_REDIS_URL or REDIS_URL (e.g. redis://127.0.0.1:6379)"
                    .into(),
            })?;
            let locks = RedisLocks::connect(url)
                .await
                .map_err(|e| LockError::Config {
                    setting: "tus.redis_url",
                    message: format!(
                        "{}: cannot use the Redis server: {e}",
                        mediahost_core::redact_url(url)
                    ),
                })?;
            tracing::info!(redis = %mediahost_core::redact_url(url), "tus upload locks in Redis");
            Ok(Arc::new(locks))
        }
    }
}

/// A held write lock of one upload, renewed in the background until released or dropped (a
/// handler cancelled by a client disconnect drops it).
pub(super) struct Lock {
    /// The backend holding the lease.
    locks: Arc<dyn UploadLocks>,
    /// The upload.
    id: String,
    /// This holder's token.
    token: String,
    /// This holder's writer generation ([`Upload::writer`]): the fence of its writes.
    writer: u64,
    /// Set by the renewal task when the lease was lost; writers stop at the next chunk.
    lost: Arc<AtomicBool>,
    /// The renewal task, stopped on release or drop.
    renew: tokio::task::JoinHandle<()>,
    /// Released already (explicitly, or by the write that last moved the row), so drop has
    /// nothing to do.
    released: AtomicBool,
}

fn busy(id: &str) -> ApiError {
    ApiError::UploadLocked(format!(
        "upload {id} is being written by another request; retry when it ends"
    ))
}

impl Lock {
    /// Takes the lock of `tenant`'s upload `id` and returns it with the upload as it stands
    /// under the lock; 404 when the tenant has no such upload, 409 `upload_locked`.
    pub(super) async fn acquire_upload(
        state: &SharedState,
        tenant: &Tenant,
        id: &str,
    ) -> Result<(Self, Upload), ApiError> {
        let lease = lease(state);
        let acquired = state
            .upload_locks
            .acquire_upload(&state.store, &tenant.id, id, lease)
            .await?;
        Self::held(state, id, acquired, lease)
    }

    /// Authenticates the API key `key` and takes the lock of its tenant's upload `id`: the
    /// tenant, the lock and the upload as it stands under it; 401 for an unknown or revoked
    /// key, else as [`Self::acquire_upload`]. With leases in the upload rows, the key's lookup
    /// and the locking `UPDATE` (which checks the key itself) run side by side on two database
    /// connections: a PATCH waits for one round trip before its body, not two in a row.
    pub(super) async fn acquire_with_key(
        state: &SharedState,
        key: &str,
        id: &str,
    ) -> Result<(Tenant, Self, Upload), ApiError> {
        if !state.upload_locks.in_row() {
            let tenant = auth::known_tenant(state.store.tenant_for_key(key).await?)?;
            let (lock, upload) = Self::acquire_upload(state, &tenant, id).await?;
            return Ok((tenant, lock, upload));
        }
        let lease = lease(state);
        let (tenant, locked) = tokio::join!(
            state.store.tenant_for_key(key),
            state.store.lock_upload_by_key(key, id, millis(lease)),
        );
        let tenant = match tenant.map_err(ApiError::from).and_then(auth::known_tenant) {
            Ok(tenant) => tenant,
            Err(e) => {
                // The key was revoked between the two statements, or the lookup failed: the
                // lock its UPDATE may have taken goes.
                if let Ok(Some((token, _))) = &locked {
                    state.upload_locks.release(id, token).await?;
                }
                return Err(e);
            }
        };
        let acquired = locked_or_why_not(&state.store, &tenant.id, id, locked?).await?;
        let (lock, upload) = Self::held(state, id, acquired, lease)?;
        Ok((tenant, lock, upload))
    }

    /// The lock `acquired` holds, or why there is none (404, 409 `upload_locked`).
    fn held(
        state: &SharedState,
        id: &str,
        acquired: Acquired,
        lease: Duration,
    ) -> Result<(Self, Upload), ApiError> {
        match acquired {
            Acquired::Locked { token, upload } => Ok((
                Self::hold(state.upload_locks.clone(), id, token, upload.writer, lease),
                upload,
            )),
            Acquired::Busy => Err(busy(id)),
            Acquired::Unknown => Err(ApiError::NotFound(format!("no upload with id {id}"))),
        }
    }

    /// Holds the lease `token` took, renewing it every third of `lease`.
    fn hold(
        locks: Arc<dyn UploadLocks>,
        id: &str,
        token: String,
        writer: u64,
        lease: Duration,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renew = tokio::spawn({
            let (locks, id, token, lost) =
                (locks.clone(), id.to_owned(), token.clone(), lost.clone());
            async move {
                let mut tick = tokio::time::interval(lease / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match locks.renew(&id, &token, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(upload = %id, error = %e, "could not renew upload lock")
                        }
                    }
                }
            }
        });
        Self {
            locks,
            id: id.to_owned(),
            token,
            writer,
            lost,
            renew,
            released: AtomicBool::new(false),
        }
    }

    /// 409 `upload_locked` once the lease was lost.
    pub(super) fn check(&self) -> Result<(), ApiError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(ApiError::UploadLocked(format!(
                "upload {} lost its write lock (lease lapsed); resume from HEAD's offset",
                self.id
            )));
        }
        Ok(())
    }

    /// This holder's writer generation, which its writes of the upload's row and its pieces
    /// name.
    pub(super) fn writer(&self) -> u64 {
        self.writer
    }

    /// Whether the lease is in the upload's row, so the write that moves the row on can
    /// release it too.
    pub(super) fn in_row(&self) -> bool {
        self.locks.in_row()
    }

    /// Records that a write of the row released the lock.
    pub(super) fn released_by_row(&self) {
        self.renew.abort();
        self.released.store(true, Ordering::SeqCst);
    }

    /// Releases the lock now (unless the row's last write did).
    pub(super) async fn release(self) -> Result<(), ApiError> {
        self.renew.abort();
        if !self.released.swap(true, Ordering::SeqCst) {
            self.locks.release(&self.id, &self.token).await?;
        }
        Ok(())
    }
}

fn lease(state: &SharedState) -> Duration {
    Duration::from_secs(state.tus.lock_seconds.max(1))
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renew.abort();
        if !self.released.load(Ordering::SeqCst) {
            let (locks, id, token) = (self.locks.clone(), self.id.clone(), self.token.clone());
            tokio::spawn(async move {
                if let Err(e) = locks.release(&id, &token).await {
                    tracing::warn!(upload = %id, error = %e, "could not release upload lock; it lapses with its lease");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mediahost_store::testing::redis_server_url as redis_url;

    #[tokio::test]
    async fn redis_leases_exclude_renew_release_and_lapse() {
        let Some(url) = redis_url() else { return };
        let locks = RedisLocks::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} (MEDIAHOST_TEST_REDIS_URL): {e}"));
        // Two processes' worth of connections to one server.
        let other = RedisLocks::connect(&url).await.unwrap();
        let id = mediahost_store::new_id();
        let lease = Duration::from_secs(30);

        let token = locks.acquire(&id, lease).await.unwrap().expect("free");
        assert_eq!(other.acquire(&id, lease).await.unwrap(), None);
        assert!(locks.renew(&id, &token, lease).await.unwrap());
        assert!(!other.renew(&id, "stale", lease).await.unwrap());
        // Someone else's release leaves the lease in place.
        other.release(&id, "stale").await.unwrap();
        assert_eq!(other.acquire(&id, lease).await.unwrap(), None);
        locks.release(&id, &token).await.unwrap();
        let second = other.acquire(&id, lease).await.unwrap().expect("released");
        // The first holder lost it: it can neither renew nor release the new lease.
        assert!(!locks.renew(&id, &token, lease).await.unwrap());
        locks.release(&id, &token).await.unwrap();
        assert_eq!(locks.acquire(&id, lease).await.unwrap(), None);
        other.release(&id, &second).await.unwrap();

        // A lease nobody renews lapses by itself (a crashed holder).
        let short = locks
            .acquire(&id, Duration::from_millis(200))
            .await
            .unwrap()
            .expect("free");
        assert_eq!(other.acquire(&id, lease).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let taken = other.acquire(&id, lease).await.unwrap().expect("lapsed");
        assert_ne!(taken, short);
        other.release(&id, &taken).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_redis_names_the_setting() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = TusConfig {
            lock: TusLock::Redis,
            redis_url: Some(format!("redis://:secret@127.0.0.1:{port}")),
            ..TusConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let err = from_config(&config, &store).await.err().expect("refused");
        let message = err.to_string();
        assert!(
            message.starts_with("tus.redis_url: redis://:***@127.0.0.1:"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
        let missing = TusConfig {
            lock: TusLock::Redis,
            ..TusConfig::default()
        };
        let err = from_config(&missing, &store).await.err().expect("refused");
        assert!(err.to_string().contains("tus.redis_url"), "{err}");
    }
}
