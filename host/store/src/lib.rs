//! The metadata store: tenants, API keys, videos, tus uploads (offsets, leases, expiry) and
//! plugin bindings (global and per tenant, one JSON chain per world).
//!
//! One code path serves two engines, chosen by the `database.url` scheme at run time through
//! sqlx's `Any` driver: the embedded default, one SQLite file under the data dir (WAL mode, so
//! the server and CLI commands such as `mediahost tenant create` use it at the same time), and
//! PostgreSQL for deployments with several api and worker processes. Queries are written once in
//! the SQL both understand (`$1` placeholders, `RETURNING`, `ON CONFLICT`, integers as BIGINT,
//! JSON as TEXT). The schemas live in `migrations/sqlite/` and `migrations/postgres/` at the
//! repo root, with the same numbered steps, embedded at compile time and applied on open. The
//! embedded job queue (crate `mediahost-queue`) shares this database through [`Store::pool`].
//!
//! Every video query that serves a client is scoped by tenant, so another tenant's video is
//! indistinguishable from a missing one.

mod bindings;
pub mod lookup;
mod plugin_catalog;
mod quotas;
mod signing;
mod tenants;
mod uploads;
mod videos;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use plugin_catalog::CatalogPlugin;
pub use tenants::{ApiKeyInfo, hash_api_key};
pub use uploads::{Concat, NewUpload, Upload, now_ms};
pub use videos::{DEFAULT_EDGE_GROUP, NewVideo};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no engine this build supports, or is malformed.
    #[error("unsupported database URL (expected sqlite:… or postgres://…): {0}")]
    BadUrl(String),
    /// The database server could not be reached or refused the connection.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The database could not be reached or a query failed.
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("metadata database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A tenant with this name already exists.
    #[error("a tenant named {0:?} already exists")]
    TenantExists(String),
    /// No tenant has this name.
    #[error("no tenant named {0:?}")]
    NoSuchTenant(String),
    /// No key of the tenant matches this id or prefix (or it is already revoked).
    #[error("tenant {tenant:?} has no active API key {key:?}")]
    NoSuchKey {
        /// The tenant's name.
        tenant: String,
        /// The id or prefix asked for.
        key: String,
    },
    /// Several active keys share this prefix; a longer prefix or the key id is needed.
    #[error("{0:?} matches several keys; give the key id instead")]
    AmbiguousKey(String),
    /// A stored JSON column could not be decoded (written by an incompatible version).
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// Which column.
        column: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file: the embedded default.
    Sqlite,
    /// A PostgreSQL server shared by every process of a deployment.
    Postgres,
}

impl Backend {
    /// The engine a database URL names by its scheme: `sqlite:` or `postgres:`/`postgresql:`.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(StoreError::BadUrl(mediahost_core::redact_url(url))),
        }
    }
}

/// Handle to the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Connections whose commits do not wait for the disk ([`Commits::Lazy`]), for the
    /// statements of an upload in progress: its lease and its durable offset (see
    /// `uploads.rs`). They are most of a tus PATCH's database writes, and an fsync each
    /// (~0.3 ms on the test VM's disk) was a third of a small PATCH's time.
    progress: AnyPool,
    /// Which dialect the few engine-specific statements (migrations) must use.
    backend: Backend,
    /// The cache of [`Store::video_by_id_cached`], if any.
    lookups: Option<lookup::Lookups>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long connecting may take before the server counts as unreachable (a firewall that drops
/// packets would otherwise hang start-up).
/// Videos kept decoded beside the lookup cache (see `lookup::Decoded`): the hot set of a
/// playback path, not every video, so a modest bound.
const LOOKUP_MEMO_ENTRIES: usize = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the readiness check waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Writers from several processes (server, CLI) wait this long for each other on SQLite
/// instead of failing with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// The `sqlite:` URL of the database file at `path` (created when missing).
pub fn sqlite_url(path: &Path) -> String {
    // Absolute, so the URL means the same file whatever the working directory of its reader.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy()
        .to_string()
}

/// How a pool's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commits {
    /// A commit returns once the disk has it (SQLite `synchronous = FULL`, PostgreSQL's
    /// default): what the server acknowledged survives a power loss.
    Durable,
    /// A commit returns before the disk has it (`synchronous = NORMAL` in SQLite's WAL mode,
    /// PostgreSQL's `synchronous_commit = off`). A crash of this process loses none of them.
    /// An OS crash or a power loss (and, on PostgreSQL, a crash of the database server) may
    /// undo the last ones: never corrupting anything, and never undoing one while keeping a
    /// later one (both engines write one log in order, and a durable commit makes everything
    /// before it durable too).
    Lazy,
}

/// A pool of at most `max` connections to `options` whose commits are `commits`.
async fn connect_pool(
    options: &AnyConnectOptions,
    backend: Backend,
    commits: Commits,
    max: u32,
) -> Result<AnyPool, StoreError> {
    let settings: Vec<String> = match backend {
        // All per connection (WAL also sticks to the file); the Any driver takes SQLite
        // options from the URL alone, which has no parameter for them.
        Backend::Sqlite => vec![
            "PRAGMA journal_mode = WAL".into(),
            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
            match commits {
                Commits::Durable => "PRAGMA synchronous = FULL".into(),
                Commits::Lazy => "PRAGMA synchronous = NORMAL".into(),
            },
        ],
        Backend::Postgres => match commits {
            Commits::Durable => vec![],
            Commits::Lazy => vec!["SET synchronous_commit = off".into()],
        },
    };
    let settings = Arc::new(settings);
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            let settings = settings.clone();
            Box::pin(async move {
                for setting in settings.iter() {
                    sqlx::query(setting).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?)
}

impl Store {
    /// Connects to the database at `url` (`sqlite:…` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", mediahost_core::redact_url(url))))?;
        // One direct connection first: the pool retries a refused connection until its acquire
        // timeout and then reports only "timed out", while an operator needs the cause.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            })?
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        probe.close().await?;
        let pool = connect_pool(&options, backend, Commits::Durable, 8).await?;
        let progress = connect_pool(&options, backend, Commits::Lazy, 4).await?;
        let store = Self {
            pool,
            progress,
            backend,
            lookups: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens (creating if needed) the SQLite database at `path` and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::connect(&sqlite_url(path)).await
    }

    /// Applies pending migrations (idempotent; on PostgreSQL several processes starting at
    /// once take turns under an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Serves [`Store::video_by_id_cached`] from `cache`, entries living `ttl`; every change to
    /// a video through this store invalidates its entry.
    pub fn with_lookup_cache(mut self, cache: Arc<dyn lookup::LookupCache>, ttl: Duration) -> Self {
        let videos = Arc::new(lookup::Decoded::new(LOOKUP_MEMO_ENTRIES));
        self.lookups = Some(lookup::Lookups { cache, ttl, videos });
        self
    }

    /// The lookup cache and its TTL, for callers caching what derives from a video (keyed by
    /// the video's `updated_at`, so a change makes old entries unreachable).
    pub fn lookup_cache(&self) -> Option<(&Arc<dyn lookup::LookupCache>, Duration)> {
        self.lookups.as_ref().map(|l| (&l.cache, l.ttl))
    }

    /// The connection pool, shared with the embedded job queue.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap liveness check of the database (for readiness), bounded in time so a hung server
    /// makes the process unready instead of hanging the probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map_err(|_| {
                StoreError::Unreachable(format!("no answer within {} s", PING_TIMEOUT.as_secs()))
            })??;
        Ok(())
    }
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A fresh unique id (UUID v7, time-ordered): row ids, and tokens of upload locks.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stored value in `column` that could not be decoded.
pub(crate) fn corrupt(column: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        column,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    /// Whether a commit on a connection of `pool` waits for the disk, in the engine's words.
    async fn commit_setting(store: &Store, pool: &AnyPool) -> String {
        match store.backend {
            Backend::Sqlite => {
                let row = sqlx::query("PRAGMA synchronous")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                match row.get::<i64, _>(0) {
                    1 => "normal".into(),
                    2 => "full".into(),
                    other => format!("synchronous = {other}"),
                }
            }
            Backend::Postgres => sqlx::query("SHOW synchronous_commit")
                .fetch_one(pool)
                .await
                .unwrap()
                .get(0),
        }
    }

    crate::backend_tests! {
        /// A power loss may undo an upload's last progress, never anything else acknowledged.
        async fn only_upload_progress_commits_lazily(store) {
            let (durable, lazy) = match store.backend {
                Backend::Sqlite => ("full", "normal"),
                Backend::Postgres => ("on", "off"),
            };
            assert_eq!(commit_setting(&store, &store.pool).await, durable);
            assert_eq!(commit_setting(&store, &store.progress).await, lazy);
        }
    }
}
