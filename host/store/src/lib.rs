//! The metadata store: tenants, API keys, videos and tus uploads (offsets, leases, expiry).
//!
//! Embedded default is one SQLite file under the data dir, opened in WAL mode so the server and
//! CLI commands (`mediahost tenant create`) can use it at the same time. The schema lives in
//! `migrations/sqlite/` at the repo root, embedded at compile time and applied on open. The
//! embedded job queue (crate `mediahost-queue`) shares this database through [`Store::pool`].
//!
//! Every video query that serves a client is scoped by tenant, so another tenant's video is
//! indistinguishable from a missing one.

mod quotas;
mod signing;
mod tenants;
mod uploads;
mod videos;

pub use tenants::{ApiKeyInfo, hash_api_key};
pub use uploads::{Concat, NewUpload, Upload, now_ms};
pub use videos::NewVideo;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// Handle to the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // Writers from several processes (server, CLI) wait for each other instead of failing.
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool, shared with the embedded job queue.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Cheap liveness check of the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stored value in `column` that could not be decoded.
pub(crate) fn corrupt(column: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        column,
        message: message.to_string(),
    }
}

/// A fresh database in a temp dir, for the modules' unit tests.
#[cfg(test)]
pub(crate) async fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    (dir, store)
}
