//! The embedded queue against real databases created by the store's migrations: every test runs
//! on SQLite and on PostgreSQL (see `mediahost_store::testing`).

use mediahost_queue::{EmbeddedQueue, JobQueue, RetryOutcome, TranscodeJob};
use mediahost_store::Store;
use std::time::Duration;

fn queue(store: &Store, max_attempts: u32, lease: Duration) -> EmbeddedQueue {
    EmbeddedQueue::new(store.pool().clone(), max_attempts, lease)
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

mediahost_store::backend_tests! {
    async fn a_job_is_leased_once_and_completed_for_good(db) {
        let q = queue(&db, 3, Duration::from_secs(60));
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

    async fn higher_priority_first_then_fifo(db) {
        let q = queue(&db, 3, Duration::from_secs(60));
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

    async fn an_expired_lease_is_redelivered_and_the_old_holder_loses_it(db) {
        let q = queue(&db, 3, Duration::from_millis(50));
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

    async fn failures_back_off_then_dead_letter(db) {
        let q = queue(&db, 2, Duration::from_secs(60));
        q.enqueue(&job(1), 0).await.unwrap();
        let first = q.lease().await.unwrap().unwrap();
        assert_eq!(
            q.retry(&first, "disk full").await.unwrap(),
            RetryOutcome::Retrying(Duration::from_secs(2))
        );
        assert_eq!(q.lease().await.unwrap(), None, "not before its backoff");
        make_retries_due(&db).await;
        let second = q.lease().await.unwrap().expect("retried");
        assert_eq!(second.attempt, 2);
        assert_eq!(
            q.retry(&second, "disk full").await.unwrap(),
            RetryOutcome::DeadLettered
        );
        make_retries_due(&db).await;
        assert_eq!(
            q.lease().await.unwrap(),
            None,
            "dead jobs are never delivered"
        );
        assert_eq!(q.depth().await.unwrap(), 0);
    }

    async fn wait_wakes_on_enqueue(db) {
        let q = queue(&db, 3, Duration::from_secs(60));
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

    async fn a_released_job_comes_back_without_spending_an_attempt(db) {
        let q = queue(&db, 3, Duration::from_secs(60));
        q.enqueue(&job(1), 0).await.unwrap();
        let first = q.lease().await.unwrap().unwrap();
        q.release(&first).await.unwrap();
        let again = q.lease().await.unwrap().expect("available at once");
        assert_eq!((again.id, again.attempt), (first.id, 1));
        assert!(q.release(&first).await.is_err(), "the old lease is void");
    }

    /// Several worker processes (each with its own pool) draining the queue at once: every job is
    /// leased exactly once.
    async fn competing_workers_never_lease_the_same_job(db) {
        let first = queue(&db, 3, Duration::from_secs(60));
        for n in 0..24 {
            first.enqueue(&job(n), 0).await.unwrap();
        }
        let second = db.reopen().await;
        let queues = [
            std::sync::Arc::new(first),
            std::sync::Arc::new(queue(&second, 3, Duration::from_secs(60))),
        ];
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(6));
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let (q, start) = (queues[i % 2].clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut leased = Vec::new();
                    while let Some(job) = q.lease().await.unwrap() {
                        leased.push(job.job.video_id.clone());
                        q.complete(&job).await.unwrap();
                    }
                    leased
                })
            })
            .collect();
        let mut leased = Vec::new();
        for worker in workers {
            leased.extend(worker.await.unwrap());
        }
        leased.sort();
        let mut expected: Vec<String> = (0..24).map(|n| job(n).video_id).collect();
        expected.sort();
        assert_eq!(leased, expected, "each job exactly once");
    }
}
