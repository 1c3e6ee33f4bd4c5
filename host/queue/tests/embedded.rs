//! The embedded queue against a real SQLite database created by the store's migrations.

use mediahost_queue::{EmbeddedQueue, JobQueue, RetryOutcome, TranscodeJob};
use mediahost_store::Store;
use std::time::Duration;

async fn queue(max_attempts: u32, lease: Duration) -> (tempfile::TempDir, EmbeddedQueue) {
    let (dir, _store, q) = queue_and_store(max_attempts, lease).await;
    (dir, q)
}

async fn queue_and_store(
    max_attempts: u32,
    lease: Duration,
) -> (tempfile::TempDir, Store, EmbeddedQueue) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    let q = EmbeddedQueue::new(store.pool().clone(), max_attempts, lease);
    (dir, store, q)
}

/// Makes every backed-off job due now instead of sleeping through its backoff.
async fn make_retries_due(store: &Store) {
    sqlx::query("UPDATE jobs SET available_at = 0 WHERE state = 'ready'")
        .execute(store.pool())
        .await
        .unwrap();
}

fn job(n: u32) -> TranscodeJob {
    TranscodeJob {
        tenant_id: "t".into(),
        video_id: format!("v{n}"),
    }
}

#[tokio::test]
async fn a_job_is_leased_once_and_completed_for_good() {
    let (_dir, q) = queue(3, Duration::from_secs(60)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1);
    let leased = q.lease().await.unwrap().expect("a job");
    assert_eq!((leased.job.clone(), leased.attempt), (job(1), 1));
    assert_eq!(q.lease().await.unwrap(), None, "a leased job is invisible");
    q.renew(&leased).await.unwrap();
    q.complete(&leased).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(q.lease().await.unwrap(), None);
}

#[tokio::test]
async fn higher_priority_first_then_fifo() {
    let (_dir, q) = queue(3, Duration::from_secs(60)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    q.enqueue(&job(2), 5).await.unwrap();
    q.enqueue(&job(3), 0).await.unwrap();
    let order: Vec<String> = [
        q.lease().await.unwrap().unwrap(),
        q.lease().await.unwrap().unwrap(),
        q.lease().await.unwrap().unwrap(),
    ]
    .into_iter()
    .map(|l| l.job.video_id)
    .collect();
    assert_eq!(order, ["v2", "v1", "v3"]);
}

#[tokio::test]
async fn an_expired_lease_is_redelivered_and_the_old_holder_loses_it() {
    let (_dir, q) = queue(3, Duration::from_millis(50)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let first = q.lease().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let second = q
        .lease()
        .await
        .unwrap()
        .expect("redelivered after the lease lapsed");
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert!(
        q.complete(&first).await.is_err(),
        "the dead worker's lease is void"
    );
    q.complete(&second).await.unwrap();
}

#[tokio::test]
async fn failures_back_off_then_dead_letter() {
    let (_dir, store, q) = queue_and_store(2, Duration::from_secs(60)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let first = q.lease().await.unwrap().unwrap();
    assert_eq!(
        q.retry(&first, "disk full").await.unwrap(),
        RetryOutcome::Retrying(Duration::from_secs(2))
    );
    assert_eq!(q.lease().await.unwrap(), None, "not before its backoff");
    make_retries_due(&store).await;
    let second = q.lease().await.unwrap().expect("retried");
    assert_eq!(second.attempt, 2);
    assert_eq!(
        q.retry(&second, "disk full").await.unwrap(),
        RetryOutcome::DeadLettered
    );
    make_retries_due(&store).await;
    assert_eq!(
        q.lease().await.unwrap(),
        None,
        "dead jobs are never delivered"
    );
    assert_eq!(q.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn wait_wakes_on_enqueue() {
    let (_dir, q) = queue(3, Duration::from_secs(60)).await;
    let q = std::sync::Arc::new(q);
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            q.wait(Duration::from_secs(30)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(
        waited < Duration::from_secs(5),
        "woken by enqueue, waited {waited:?}"
    );
}

#[tokio::test]
async fn a_released_job_comes_back_without_spending_an_attempt() {
    let (_dir, q) = queue(3, Duration::from_secs(60)).await;
    q.enqueue(&job(1), 0).await.unwrap();
    let first = q.lease().await.unwrap().unwrap();
    q.release(&first).await.unwrap();
    let again = q.lease().await.unwrap().expect("available at once");
    assert_eq!((again.id, again.attempt), (first.id, 1));
    assert!(q.release(&first).await.is_err(), "the old lease is void");
}
