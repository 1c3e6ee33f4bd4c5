//! Scratch databases for tests, so every store and queue test runs on both backends.
//!
//! [`backend_tests!`](crate::backend_tests) turns each test body into two tests,
//! `<name>::sqlite` and `<name>::postgres`, each on a fresh database: a SQLite file in a temp
//! dir, or a uniquely named database created on the PostgreSQL server named by
//! `MEDIAHOST_TEST_POSTGRES_URL` and dropped afterwards (also when the test fails). Without that
//! variable the PostgreSQL variant is skipped with a note on stderr, except under `CI=true`,
//! where a missing or unreachable server fails the test: CI must never pass by skipping.
//!
//! Available to this crate's own tests and, with the `testing` feature, to the crates above.

use std::future::Future;
use std::ops::Deref;

use crate::Store;

/// The variable naming the PostgreSQL server tests create their scratch databases on, e.g.
/// `postgres://postgres@127.0.0.1:5432/test` (the database in it is only used to connect).
pub const POSTGRES_URL_VAR: &str = "MEDIAHOST_TEST_POSTGRES_URL";

/// The test PostgreSQL server's URL, or `None` (after printing why) when the PostgreSQL variant
/// of a test is to be skipped.
///
/// # Panics
/// When the variable is unset and `CI=true`.
pub fn postgres_server_url() -> Option<String> {
    service_url(
        POSTGRES_URL_VAR,
        "the PostgreSQL variants of the store, queue and end-to-end tests",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// The variable naming the Redis server of the Redis tests (tus locks, lookup cache), e.g.
/// `redis://127.0.0.1:6379`. Tests use keys of their own, so runs may share the server.
pub const REDIS_URL_VAR: &str = "MEDIAHOST_TEST_REDIS_URL";

/// The test Redis server's URL, or `None` (after printing why) when a Redis test is to be
/// skipped.
///
/// # Panics
/// When the variable is unset and `CI=true`.
pub fn redis_server_url() -> Option<String> {
    service_url(REDIS_URL_VAR, "the Redis tests", "redis://127.0.0.1:6379")
}

/// The URL in `var`; unset: `None` with a note, or a panic under `CI=true`, where `tests`
/// must run.
fn service_url(var: &str, tests: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "{var} is unset but CI=true: {tests} must run in CI (e.g. {var}={example}; \
             scripts/test sets it)"
        ),
        _ => {
            eprintln!("note: {var} is unset; skipping what needs it in this test");
            None
        }
    }
}

/// Runs `fut` to completion on a runtime of its own in a thread of its own, so it works from
/// synchronous code, from inside another runtime, and from `Drop`.
fn run_blocking<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start a runtime for the scratch database")
            .block_on(fut)
    })
    .join()
    .expect("scratch database thread panicked")
}

/// `server_url` with its database replaced by `database` (query parameters kept).
fn with_database(server_url: &str, database: &str) -> String {
    let (scheme, rest) = server_url
        .split_once("://")
        .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} is not a postgres:// URL"));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map(|q| &tail[q..]).unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// A uniquely named database on a PostgreSQL server, dropped (with any connections still open
/// to it) when this value is dropped.
#[derive(Debug)]
pub struct ScratchPostgres {
    /// Where to connect to create and drop it.
    server_url: String,
    /// `mh_test_<uuid>`: unique across parallel tests and test processes.
    name: String,
    /// The URL of the scratch database itself.
    url: String,
}

impl ScratchPostgres {
    /// Creates a fresh, empty database on the server at `server_url` (blocking).
    ///
    /// # Panics
    /// When the server cannot be reached or refuses: the test fails with the reason.
    pub fn create(server_url: &str) -> Self {
        let name = format!("mh_test_{}", uuid::Uuid::now_v7().simple());
        let (server, db) = (server_url.to_owned(), name.clone());
        run_blocking(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            // A name made of [a-z0-9_] only, so quoting is all the escaping it needs.
            sqlx::query(&format!("CREATE DATABASE \"{db}\""))
                .execute(&mut conn)
                .await?;
            conn.close().await
        })
        .unwrap_or_else(|e| {
            panic!(
                "cannot create a scratch database on {} ({POSTGRES_URL_VAR}): {e}",
                mediahost_core::redact_url(server_url)
            )
        });
        Self {
            url: with_database(server_url, &name),
            server_url: server_url.to_owned(),
            name,
        }
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let (server, db) = (self.server_url.clone(), self.name.clone());
        let dropped = run_blocking(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            // FORCE: pools of the test may still hold connections while they wind down.
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
        if let Err(e) = dropped {
            eprintln!("warning: scratch database {} not dropped: {e}", self.name);
        }
    }
}

/// What keeps a test's database alive until the test ends.
#[derive(Debug)]
enum Scratch {
    /// The temp dir holding the SQLite file.
    Sqlite {
        /// Deleted on drop.
        _dir: tempfile::TempDir,
    },
    /// The scratch PostgreSQL database.
    Postgres {
        /// Dropped on drop.
        _db: ScratchPostgres,
    },
}

/// A [`Store`] on a fresh database of one backend; derefs to the store, so a test reads like
/// code using one. The database is deleted when this is dropped.
#[derive(Debug)]
pub struct TestStore {
    /// Declared first so its pool closes before the database goes.
    store: Store,
    /// Its URL, for [`TestStore::reopen`].
    url: String,
    /// Dropped last: deletes the database.
    _scratch: Scratch,
}

impl TestStore {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the test database");
        let url = crate::sqlite_url(&dir.path().join("db.sqlite"));
        let store = Store::connect(&url)
            .await
            .expect("open the SQLite test store");
        Self {
            store,
            url,
            _scratch: Scratch::Sqlite { _dir: dir },
        }
    }

    /// A store on a fresh PostgreSQL database, or `None` when the PostgreSQL variant is
    /// skipped (see [`postgres_server_url`]).
    pub async fn postgres() -> Option<Self> {
        let server = postgres_server_url()?;
        let scratch = ScratchPostgres::create(&server);
        let url = scratch.url().to_owned();
        let store = Store::connect(&url)
            .await
            .expect("open the PostgreSQL test store");
        Some(Self {
            store,
            url,
            _scratch: Scratch::Postgres { _db: scratch },
        })
    }

    /// Another store (its own connection pool) on the same database, as a second process of
    /// the deployment would have.
    pub async fn reopen(&self) -> Store {
        Store::connect(&self.url)
            .await
            .expect("reopen the test store")
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Defines each test once and runs it on both backends: `async fn name(db) { … }` becomes the
/// module `name` with the tests `sqlite` and `postgres`, where `db` is a fresh
/// [`TestStore`](crate::testing::TestStore). The calling crate needs `tokio` (with the `macros`
/// and `rt-multi-thread` features).
#[macro_export]
macro_rules! backend_tests {
    ($($(#[doc = $doc:literal])* async fn $name:ident($db:ident) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::testing::TestStore::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($db) = $crate::testing::TestStore::postgres().await else {
                    return;
                };
                $body
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_url_keeps_the_server_and_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "mh_test_1"),
            "postgres://postgres@127.0.0.1:5432/mh_test_1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/test?sslmode=disable", "x"),
            "postgres://u:p@db/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db:5432", "x"),
            "postgres://db:5432/x"
        );
    }
}
