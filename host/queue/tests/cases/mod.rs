//! The queue behaviour every backend must show, written once: each case takes a [`Backend`]
//! and is run by `tests/embedded.rs` (SQLite and PostgreSQL) and `tests/rabbitmq.rs`.

use mediahost_queue::{JobQueue, LeasedJob, QueueError, RetryOutcome, TranscodeJob};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Calls `$run! { case … }` with the name of every shared case below, so each backend's test
/// file turns the list into tests its own way.
macro_rules! all_cases {
    ($run:ident) => {
        $run! {
            a_job_is_leased_once_and_completed_for_good
            higher_priority_first_then_fifo
            a_failed_job_comes_back_after_its_backoff_with_the_next_attempt
            a_job_failing_max_attempts_times_is_dead_lettered_with_its_error
            a_released_job_comes_back_at_once_with_the_same_attempt
            depth_counts_the_jobs_waiting_for_a_worker
            wait_returns_when_a_job_arrives
            the_job_of_a_worker_that_died_goes_to_another_worker
        }
    };
}

/// Retry delays short enough for tests: 250 ms per attempt so far.
pub fn short_backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * u64::from(attempt))
}

/// One backend under test, on storage of its own (a scratch database, unique queue names).
pub trait Backend {
    /// Whether a job whose worker died comes back with its attempt counted (the embedded
    /// queue counts a lapsed lease; RabbitMQ redelivers the message unchanged).
    const CRASH_COUNTS_AS_ATTEMPT: bool;

    /// A worker process's queue, with `max_attempts` and [`short_backoff`]. Queues made by one
    /// backend share their jobs.
    async fn queue(&self, max_attempts: u32) -> Arc<dyn JobQueue>;
    /// The dead-lettered jobs with their last errors, oldest first.
    async fn dead_letters(&self) -> Vec<(TranscodeJob, String)>;
    /// Ends `worker` as a crash would, its leases unsettled, and returns once the jobs it held
    /// are available to other workers.
    async fn kill(&self, worker: Arc<dyn JobQueue>);
}

pub fn job(n: u32) -> TranscodeJob {
    // A fixed upload time, so a job compares equal to the same job after its trip through
    // the queue (which must keep the time).
    TranscodeJob {
        stored_at_ms: Some(1_700_000_000_000 + u64::from(n)),
        ..TranscodeJob::new("t", format!("v{n}"))
    }
}

/// The next job, waiting for it as a worker does (`lease`, else `wait`), for up to 10 s.
pub async fn next(q: &dyn JobQueue) -> LeasedJob {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(job) = q.lease().await.unwrap() {
            return job;
        }
        assert!(Instant::now() < deadline, "no job within 10 s");
        q.wait(Duration::from_millis(50)).await;
    }
}

/// Asserts that no job is delivered for `window`.
pub async fn nothing_for(q: &dyn JobQueue, window: Duration, why: &str) {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if let Some(job) = q.lease().await.unwrap() {
            panic!("{why}: got {job:?}");
        }
        q.wait(Duration::from_millis(25)).await;
    }
}

fn lost(result: Result<(), QueueError>) -> bool {
    matches!(result, Err(QueueError::LeaseLost(_)))
}

pub async fn a_job_is_leased_once_and_completed_for_good(b: &impl Backend) {
    let q = b.queue(3).await;
    q.enqueue(&job(1), 0).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1);
    let leased = next(&*q).await;
    assert_eq!((leased.job.clone(), leased.attempt), (job(1), 1));
    nothing_for(&*q, Duration::from_millis(300), "a leased job is invisible").await;
    q.renew(&leased).await.unwrap();
    q.complete(&leased).await.unwrap();
    assert!(lost(q.complete(&leased).await), "settled once only");
    assert!(lost(q.renew(&leased).await), "nothing left to renew");
    nothing_for(
        &*q,
        Duration::from_millis(300),
        "a completed job never returns",
    )
    .await;
    assert_eq!(q.depth().await.unwrap(), 0);
}

pub async fn higher_priority_first_then_fifo(b: &impl Backend) {
    let q = b.queue(3).await;
    for (n, priority) in [(1, 0), (2, 5), (3, 0), (4, -3), (5, 1)] {
        q.enqueue(&job(n), priority).await.unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        let leased = next(&*q).await;
        order.push(leased.job.video_id.clone());
        q.complete(&leased).await.unwrap();
    }
    assert_eq!(order, ["v2", "v5", "v1", "v3", "v4"]);
}

pub async fn a_failed_job_comes_back_after_its_backoff_with_the_next_attempt(b: &impl Backend) {
    let q = b.queue(3).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let first = next(&*q).await;
    let failed_at = Instant::now();
    assert_eq!(
        q.retry(&first, "disk full").await.unwrap(),
        RetryOutcome::Retrying(short_backoff(1))
    );
    assert!(
        lost(q.complete(&first).await),
        "the failed lease is settled"
    );
    let second = next(&*q).await;
    assert!(
        failed_at.elapsed() >= short_backoff(1),
        "back after {:?}, before its backoff",
        failed_at.elapsed()
    );
    assert_eq!((second.job.clone(), second.attempt), (job(1), 2));
    q.complete(&second).await.unwrap();
    nothing_for(&*q, Duration::from_millis(300), "completed after the retry").await;
    assert!(b.dead_letters().await.is_empty());
}

pub async fn a_job_failing_max_attempts_times_is_dead_lettered_with_its_error(b: &impl Backend) {
    let q = b.queue(2).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let first = next(&*q).await;
    assert_eq!(first.max_attempts, 2);
    q.retry(&first, "disk full").await.unwrap();
    let second = next(&*q).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(
        q.retry(&second, "disk still full").await.unwrap(),
        RetryOutcome::DeadLettered
    );
    nothing_for(
        &*q,
        Duration::from_millis(600),
        "dead jobs are never delivered",
    )
    .await;
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(
        b.dead_letters().await,
        [(job(1), "disk still full".to_owned())]
    );
}

pub async fn a_released_job_comes_back_at_once_with_the_same_attempt(b: &impl Backend) {
    let q = b.queue(3).await;
    q.enqueue(&job(1), 0).await.unwrap();
    // On its second attempt, so "unchanged" cannot pass by resetting to 1.
    let first = next(&*q).await;
    q.retry(&first, "flaky").await.unwrap();
    let second = next(&*q).await;
    assert_eq!(second.attempt, 2);
    let released_at = Instant::now();
    q.release(&second).await.unwrap();
    let again = next(&*q).await;
    assert!(released_at.elapsed() < short_backoff(1), "no backoff");
    assert_eq!((again.job.clone(), again.attempt), (job(1), 2));
    assert!(lost(q.release(&second).await), "the old lease is void");
    q.complete(&again).await.unwrap();
}

pub async fn depth_counts_the_jobs_waiting_for_a_worker(b: &impl Backend) {
    let q = b.queue(3).await;
    assert_eq!(q.depth().await.unwrap(), 0);
    for n in 0..3 {
        q.enqueue(&job(n), 0).await.unwrap();
    }
    assert_eq!(q.depth().await.unwrap(), 3);
    let leased = next(&*q).await;
    assert_eq!(q.depth().await.unwrap(), 2, "a leased job is not waiting");
    q.complete(&leased).await.unwrap();
    for _ in 0..2 {
        let leased = next(&*q).await;
        q.complete(&leased).await.unwrap();
    }
    assert_eq!(q.depth().await.unwrap(), 0);
}

pub async fn wait_returns_when_a_job_arrives(b: &impl Backend) {
    let q = b.queue(3).await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            q.wait(Duration::from_secs(30)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woken, waited {waited:?}");
    let leased = next(&*q).await;
    q.complete(&leased).await.unwrap();
}

pub async fn the_job_of_a_worker_that_died_goes_to_another_worker<B: Backend>(b: &B) {
    let dying = b.queue(3).await;
    let other = b.queue(3).await;
    dying.enqueue(&job(1), 0).await.unwrap();
    let held = next(&*dying).await;
    nothing_for(
        &*other,
        Duration::from_millis(300),
        "held by the first worker",
    )
    .await;
    b.kill(dying).await;
    let again = next(&*other).await;
    let attempt = if B::CRASH_COUNTS_AS_ATTEMPT { 2 } else { 1 };
    assert_eq!((again.job.clone(), again.attempt), (held.job, attempt));
    other.complete(&again).await.unwrap();
    nothing_for(
        &*other,
        Duration::from_millis(300),
        "delivered once more, not twice",
    )
    .await;
}
