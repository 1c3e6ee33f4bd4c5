//! The job queue between the API (which enqueues a transcode job when a source is stored) and
//! the workers (which lease, run and settle jobs).
//!
//! [`JobQueue`] is the boundary, with two backends chosen by `[queue] backend`
//! ([`from_config`] builds the configured one):
//!
//! - [`EmbeddedQueue`], the default: a durable queue in the same database as the metadata
//!   (table `jobs`, in SQLite or PostgreSQL; on PostgreSQL several worker processes lease from
//!   it safely with `FOR UPDATE SKIP LOCKED`). A lease is a time window the worker renews while
//!   it works; a worker that dies lets it lapse and another worker picks the job up.
//! - [`RabbitQueue`]: a durable RabbitMQ queue with persistent messages, publisher confirms,
//!   job priorities and competing consumers. A lease is a delivery this process holds
//!   unacknowledged; a worker process that dies closes its connection and the broker hands its
//!   jobs to the other consumers. Retries wait out their backoff in TTL queues; dead letters go
//!   to `<name>.dead`. See the [`rabbitmq`] module for the message layout.
//!
//! Delivery is at-least-once on both, so jobs must be idempotent. A job that keeps failing is
//! retried with exponential backoff ([`backoff`]) and, after `max_attempts`, dead-lettered
//! instead of looping forever. A settle call (`complete`, `retry`, `release`) on a lease this
//! worker no longer holds fails with [`QueueError::LeaseLost`]: the job went (or goes) back to
//! another worker.

mod embedded;
pub mod rabbitmq;

pub use embedded::EmbeddedQueue;
pub use rabbitmq::{RabbitOptions, RabbitQueue};

use mediahost_core::config::{QueueBackend, QueueConfig, WorkerConfig};
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use std::sync::Arc;
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
    /// The job's lease was lost: it expired and another worker took the job (embedded), or the
    /// channel it was delivered on closed and the broker requeued it (RabbitMQ).
    #[error("lease on job {0} was lost")]
    LeaseLost(i64),
    /// RabbitMQ could not be reached or refused an operation. `context` says what was being
    /// done and where (the broker URL without its password, the queue) and what to check.
    #[error("{context}: {cause}")]
    Amqp {
        /// What failed, naming the setting or queue involved.
        context: String,
        /// The client library's error.
        cause: lapin::Error,
    },
    /// RabbitMQ answered a publish without taking the message (a negative publisher confirm,
    /// or the message came back unroutable).
    #[error("RabbitMQ did not take the message for queue {queue}: {reason}")]
    NotConfirmed {
        /// The queue published to.
        queue: String,
        /// What the broker said.
        reason: String,
    },
    /// The `[queue]` configuration cannot work; the message names the setting.
    #[error("{0}")]
    Config(String),
}

/// Priority of a job that no worker has routed yet: above every transcode, so each waiting
/// video is probed and routed (cheap next to encoding) before the next transcode starts, and
/// transcodes then run in the order the router's priorities say. See [`TranscodeJob::plan`].
pub const ROUTING_PRIORITY: i32 = i32::MAX;

/// The work item: transcode one uploaded video.
///
/// A job goes through the queue once or twice. The api enqueues it without a plan at
/// [`ROUTING_PRIORITY`]; the worker that leases it probes the source and asks the router
/// plugins for the plan, whose priority then orders the transcode: when other jobs are waiting,
/// the worker enqueues the same job again with the plan at the plan's priority (clamped below
/// [`ROUTING_PRIORITY`]) and settles this one; when none are, it transcodes at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscodeJob {
    /// Tenant owning the video.
    pub tenant_id: String,
    /// The video to transcode.
    pub video_id: String,
    /// The plan a worker made for this video; `None` until routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<JobPlan>,
    /// The W3C `traceparent` of the request that stored the source: the worker runs the job
    /// in the same trace, so its log lines carry the upload's request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When the source was stored (its upload completed), in Unix milliseconds by the api's
    /// clock: the start of the time to first playable segment the worker measures. `None` in
    /// jobs queued before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_ms: Option<u64>,
}

impl TranscodeJob {
    /// A job for a source stored just now, to be routed by the worker that leases it, in the
    /// trace of the task creating it.
    pub fn new(tenant_id: impl Into<String>, video_id: impl Into<String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            tenant_id: tenant_id.into(),
            video_id: video_id.into(),
            plan: None,
            traceparent: mediahost_core::trace::current().map(|t| t.to_string()),
            stored_at_ms: u64::try_from(now.as_millis()).ok(),
        }
    }
}

/// What routing decided for a video, carried by its transcode job so the worker that runs it
/// neither extracts metadata nor asks the routers again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// The priority the transcode was queued at.
    pub priority: i32,
    /// The renditions to make, best first; empty means the built-in ladder.
    pub renditions: Vec<PlannedRendition>,
}

/// One rendition of a [`JobPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRendition {
    /// Folder name of its playlist and segments.
    pub name: String,
    /// Output width, even.
    pub width: u32,
    /// Output height, even.
    pub height: u32,
    /// Peak video bitrate in kbit/s; `None` leaves CRF uncapped.
    pub max_video_kbps: Option<u32>,
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

/// The configured job queue (`[queue] backend`), connected and ready: the embedded queue on
/// `pool`, or RabbitMQ at `queue.amqp_url`, whose queues are declared here. An unreachable or
/// refusing broker is an error now, at start-up, naming `queue.amqp_url`; later outages are
/// retried (see [`RabbitQueue`]). `worker` gives `max_attempts`, the embedded lease length and
/// the default RabbitMQ prefetch (`worker.concurrency`).
pub async fn from_config(
    config: &QueueConfig,
    worker: &WorkerConfig,
    pool: AnyPool,
) -> Result<Arc<dyn JobQueue>, QueueError> {
    match config.backend {
        QueueBackend::Embedded => Ok(Arc::new(EmbeddedQueue::new(
            pool,
            worker.max_attempts,
            Duration::from_secs(worker.lease_seconds.max(1)),
        ))),
        QueueBackend::Rabbitmq => {
            let url = config.amqp_url().ok_or_else(|| {
                QueueError::Config(
                    "queue.backend = \"rabbitmq\" needs queue.amqp_url (or MEDIAHOST_AMQP_URL / \
                     AMQP_URL), e.g. amqp://user:password@host:5672/%2f"
                        .into(),
                )
            })?;
            let options = RabbitOptions {
                prefetch: config.prefetch(worker.concurrency),
                max_attempts: worker.max_attempts,
                ..RabbitOptions::new(url, &config.name)
            };
            Ok(Arc::new(RabbitQueue::connect(options).await?))
        }
    }
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
