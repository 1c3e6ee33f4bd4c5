//! The embedded queue against real databases created by the store's migrations: the shared
//! cases (`cases/`) and the embedded-only ones run on SQLite and on PostgreSQL (see
//! `mediahost_store::testing`).

#[macro_use]
mod cases;

use cases::{Backend, job, short_backoff};
use mediahost_queue::{EmbeddedQueue, JobQueue, RetryOutcome, TranscodeJob};
use mediahost_store::Store;
use std::sync::Arc;
use std::time::Duration;

fn queue(store: &Store, max_attempts: u32, lease: Duration) -> EmbeddedQueue {
    EmbeddedQueue::new(store.pool().clone(), max_attempts, lease)
}

/// The shared cases' view of a test database.
struct Embedded<'a>(&'a Store);

impl Backend for Embedded<'_> {
    const CRASH_COUNTS_AS_ATTEMPT: bool = true;

    async fn queue(&self, max_attempts: u32) -> Arc<dyn JobQueue> {
        Arc::new(queue(self.0, max_attempts, Duration::from_secs(60)).with_backoff(short_backoff))
    }

    async fn dead_letters(&self) -> Vec<(TranscodeJob, String)> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT payload, last_error FROM jobs WHERE state = 'dead' ORDER BY id")
                .fetch_all(self.0.pool())
                .await
                .unwrap();
        rows.into_iter()
            .map(|(payload, error)| (serde_json::from_str(&payload).unwrap(), error))
            .collect()
    }

    /// A dead worker stops renewing: its leases lapse (here at once rather than after
    /// `lease_seconds`).
    async fn kill(&self, worker: Arc<dyn JobQueue>) {
        drop(worker);
        sqlx::query("UPDATE jobs SET leased_until = 0 WHERE state = 'leased'")
            .execute(self.0.pool())
            .await
            .unwrap();
    }
}

/// Runs each shared case as `<case>::sqlite` and `<case>::postgres`.
macro_rules! shared_cases {
    ($($case:ident)*) => {
        mediahost_store::backend_tests! {$(
            async fn $case(db) {
                cases::$case(&Embedded(&db)).await;
            }
        )*}
    };
}

all_cases!(shared_cases);

mediahost_store::backend_tests! {
    /// The production delays, without sleeping through them.
    async fn the_default_backoff_starts_at_two_seconds(db) {
        let q = queue(&db, 3, Duration::from_secs(60));
        q.enqueue(&job(1), 0).await.unwrap();
        let first = q.lease().await.unwrap().unwrap();
        assert_eq!(
            q.retry(&first, "disk full").await.unwrap(),
            RetryOutcome::Retrying(Duration::from_secs(2))
        );
        assert_eq!(q.lease().await.unwrap(), None, "not before its backoff");
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
