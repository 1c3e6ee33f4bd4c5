//! The job queue between the API (which enqueues a transcode job when a source is stored) and
//! the workers (which lease, run and settle jobs).
//!
//! [`JobQueue`] is the boundary; [`EmbeddedQueue`] is the default backend, a durable queue in
//! the same database as the metadata (table `jobs`, in SQLite or PostgreSQL; on PostgreSQL
//! several worker processes lease from it safely with `FOR UPDATE SKIP LOCKED`). Delivery is
//! at-least-once:
//! a leased job is invisible to other workers until its lease runs out, the worker renews the
//! lease while it works, and a worker that dies simply lets the lease lapse so another worker
//! picks the job up again. Jobs must therefore be idempotent. A job that keeps failing is
//! retried with exponential backoff and, after `max_attempts`, parked as `dead` (the
//! dead-letter state) instead of looping forever.

mod embedded;

pub use embedded::EmbeddedQueue;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backing database failed.
    #[error("job queue database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored job payload could not be decoded.
    #[error("job {id} has an unreadable payload: {message}")]
    BadPayload {
        /// Job id.
        id: i64,
        /// Decoder message.
        message: String,
    },
    /// The job's lease was lost (it expired and another worker took the job).
    #[error("lease on job {0} was lost")]
    LeaseLost(i64),
}

/// The work item: transcode one uploaded video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscodeJob {
    /// Tenant owning the video.
    pub tenant_id: String,
    /// The video to transcode.
    pub video_id: String,
}

/// A job handed to one worker until it settles it or its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedJob {
    /// Queue-assigned id.
    pub id: i64,
    /// What to do.
    pub job: TranscodeJob,
    /// 1 on first delivery, 2 on the first retry, …
    pub attempt: u32,
    /// After this many failed attempts the job is dead-lettered.
    pub max_attempts: u32,
    /// Proves this worker still holds the lease when settling.
    pub lease_token: String,
}

/// What became of a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It will be delivered again after this delay.
    Retrying(Duration),
    /// It ran out of attempts and is parked in the dead-letter state.
    DeadLettered,
}

/// A durable job queue with at-least-once delivery.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Adds a job; higher `priority` is served first.
    async fn enqueue(&self, job: &TranscodeJob, priority: i32) -> Result<(), QueueError>;
    /// Leases the next available job, if any, without waiting.
    async fn lease(&self) -> Result<Option<LeasedJob>, QueueError>;
    /// Extends the lease of a job still being worked on.
    async fn renew(&self, job: &LeasedJob) -> Result<(), QueueError>;
    /// Settles a job as done (its outputs are stored, or it failed permanently and the video
    /// says so); it is never delivered again.
    async fn complete(&self, job: &LeasedJob) -> Result<(), QueueError>;
    /// Settles a failed attempt: retried later with backoff, or dead-lettered when out of attempts.
    async fn retry(&self, job: &LeasedJob, error: &str) -> Result<RetryOutcome, QueueError>;
    /// Hands a job back untouched (this worker is shutting down): it becomes available at once
    /// and the attempt does not count.
    async fn release(&self, job: &LeasedJob) -> Result<(), QueueError>;
    /// Waits until a job may be available: woken by an enqueue in this process, or after `idle`.
    async fn wait(&self, idle: Duration);
    /// Jobs waiting to be leased (ready or with an expired lease), for metrics.
    async fn depth(&self) -> Result<u64, QueueError>;
}

/// Delay before retry number `attempt` (1-based): 2 s, 4 s, 8 s … capped at 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 2u64.saturating_pow(attempt.min(16)).min(300);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
