//! The embedded backend: the `jobs` table of the metadata database (SQLite or PostgreSQL).

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyQueryResult;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

use crate::{JobQueue, LeasedJob, QueueError, RetryOutcome, TranscodeJob, backoff};

/// Durable queue in the metadata database. Works across processes sharing the database (one
/// SQLite file, or one PostgreSQL server for several worker processes); the in-process
/// [`Notify`] only shortens the wait of workers living in the enqueuing process.
#[derive(Debug)]
pub struct EmbeddedQueue {
    pool: AnyPool,
    /// What makes a lease exclusive: appended to the query picking the next job.
    pick_lock: &'static str,
    /// Attempts before a job is dead-lettered.
    max_attempts: u32,
    /// How long a lease hides a job from other workers.
    lease: Duration,
    /// Delay before a failed job's next attempt: [`backoff`] unless a test shortens it.
    backoff: fn(u32) -> Duration,
    /// Wakes idle workers of this process as soon as a job is enqueued.
    wake: Notify,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl EmbeddedQueue {
    /// A queue on `pool` (whose schema the metadata store's migrations created).
    pub fn new(pool: AnyPool, max_attempts: u32, lease: Duration) -> Self {
        let postgres = matches!(
            pool.connect_options().database_url.scheme(),
            "postgres" | "postgresql"
        );
        Self {
            // SQLite runs the whole leasing statement under its database write lock, so two
            // workers never pick the same job. PostgreSQL runs statements concurrently: without
            // a row lock two workers would read the same ready job and both lease it, and with a
            // plain FOR UPDATE the second would wait for the first and then lease nothing.
            // SKIP LOCKED makes each worker take the next job nobody else is taking.
            pick_lock: if postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            },
            pool,
            max_attempts: max_attempts.max(1),
            lease,
            backoff,
            wake: Notify::new(),
        }
    }

    /// Replaces the retry delays ([`backoff`] by default), e.g. with milliseconds in tests.
    pub fn with_backoff(mut self, backoff: fn(u32) -> Duration) -> Self {
        self.backoff = backoff;
        self
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }
}

/// A settling statement that touched no row means the lease had lapsed and another worker took
/// the job over.
fn held(job: &LeasedJob, done: AnyQueryResult) -> Result<(), QueueError> {
    if done.rows_affected() == 0 {
        return Err(QueueError::LeaseLost(job.id));
    }
    Ok(())
}

#[async_trait::async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, job: &TranscodeJob, priority: i32) -> Result<(), QueueError> {
        let payload = serde_json::to_string(job).expect("TranscodeJob serializes");
        let now = now_ms();
        sqlx::query(
            "INSERT INTO jobs (payload, priority, state, max_attempts, available_at, created_at) \
             VALUES ($1, $2, 'ready', $3, $4, $5)",
        )
        .bind(payload)
        .bind(priority)
        .bind(i64::from(self.max_attempts))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn lease(&self) -> Result<Option<LeasedJob>, QueueError> {
        let now = now_ms();
        let token = uuid::Uuid::now_v7().to_string();
        // One statement picks and leases, so two workers can never lease the same job (see
        // `pick_lock`).
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_token = $1, leased_until = $2 \
             WHERE id = (SELECT id FROM jobs \
                         WHERE (state = 'ready' AND available_at <= $3) OR (state = 'leased' AND leased_until < $3) \
                         ORDER BY priority DESC, id LIMIT 1{}) \
             RETURNING id, payload, attempts, max_attempts",
            self.pick_lock
        ))
        .bind(&token)
        .bind(self.lease_until())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.get("id");
        let payload: String = row.get("payload");
        let job = serde_json::from_str(&payload).map_err(|e| QueueError::BadPayload {
            id,
            message: e.to_string(),
        })?;
        Ok(Some(LeasedJob {
            id,
            job,
            attempt: row.get::<i64, _>("attempts") as u32,
            max_attempts: row.get::<i64, _>("max_attempts") as u32,
            lease_token: token,
        }))
    }

    async fn renew(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET leased_until = $1 WHERE id = $2 AND lease_token = $3 AND state = 'leased'",
        )
        .bind(self.lease_until())
        .bind(job.id)
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?;
        held(job, done)
    }

    async fn complete(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at = $1, lease_token = NULL \
             WHERE id = $2 AND lease_token = $3",
        )
        .bind(now_ms())
        .bind(job.id)
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?;
        held(job, done)
    }

    async fn retry(&self, job: &LeasedJob, error: &str) -> Result<RetryOutcome, QueueError> {
        let now = now_ms();
        let (state, available_at, finished_at, outcome) = if job.attempt >= job.max_attempts {
            ("dead", now, Some(now), RetryOutcome::DeadLettered)
        } else {
            let delay = (self.backoff)(job.attempt);
            (
                "ready",
                now + delay.as_millis() as i64,
                None,
                RetryOutcome::Retrying(delay),
            )
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, last_error = $2, available_at = $3, lease_token = NULL, \
             finished_at = $4 WHERE id = $5 AND lease_token = $6",
        )
        .bind(state)
        .bind(error)
        .bind(available_at)
        .bind(finished_at)
        .bind(job.id)
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?;
        held(job, done)?;
        Ok(outcome)
    }

    async fn release(&self, job: &LeasedJob) -> Result<(), QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'ready', attempts = attempts - 1, available_at = $1, \
             lease_token = NULL WHERE id = $2 AND lease_token = $3",
        )
        .bind(now_ms())
        .bind(job.id)
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?;
        held(job, done)?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn wait(&self, idle: Duration) {
        let _ = tokio::time::timeout(idle, self.wake.notified()).await;
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let now = now_ms();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state = 'ready' OR (state = 'leased' AND leased_until < $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}
