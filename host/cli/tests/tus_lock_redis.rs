//! The tus write lock held in Redis (`[tus] lock = "redis"`): two api processes sharing the
//! database and the Redis server exclude each other, the database row holds no lock, and the
//! lease of a killed process lapses by itself.
//!
//! Needs the Redis server of `MEDIAHOST_TEST_REDIS_URL` (`scripts/test` sets it); without it
//! the tests are skipped with a note, except under `CI=true`, where they fail, as they do
//! whenever the server named does not answer.

mod common;

use common::tus::{header, slow_body, upload_id};
use common::{Client, Options, Server};
use std::time::{Duration, Instant};

/// The Redis URL under test and a connection to it.
async fn redis() -> Option<(String, redis::aio::MultiplexedConnection)> {
    let url = mediahost_store::testing::redis_server_url()?;
    let conn = async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }
    .await
    .unwrap_or_else(|e| panic!("Redis at {url} (MEDIAHOST_TEST_REDIS_URL) does not answer: {e}"));
    Some((url, conn))
}

fn redis_options(url: &str, extra: &str) -> Options {
    Options {
        config: format!("[tus]\nlock = \"redis\"\nredis_url = {url:?}\n{extra}"),
        ..Options::default()
    }
}

/// Milliseconds left on upload `id`'s lease in Redis: -2 when there is none.
async fn lease_ms(conn: &mut redis::aio::MultiplexedConnection, id: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(format!("mediahost:tus-lock:{id}"))
        .query_async(conn)
        .await
        .unwrap()
}

/// Waits until upload `id` has a lease in Redis.
async fn wait_for_lease(conn: &mut redis::aio::MultiplexedConnection, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_ms(conn, id).await < 0 {
        assert!(Instant::now() < deadline, "no lease for {id} ever appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_processes_exclude_each_other_through_redis() {
    let Some((url, mut conn)) = redis().await else {
        return;
    };
    let a = Server::start(redis_options(&url, ""));
    let b = Server::start_sharing_database(redis_options(&url, ""), &a);
    let key = a.create_tenant("acme");
    let (on_a, on_b) = (Client::new(&a, &key), Client::new(&b, &key));
    let (location, _) = on_a.tus_create(64 * 1024, &[]).await;
    let id = upload_id(&location).to_owned();

    // A PATCH on process A that holds the lock until the test lets it finish.
    let (open, first) = on_a.gated_patch(&location);
    wait_for_lease(&mut conn, &id).await;

    // The lock is in Redis, not in the database row.
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&a.database_url()).await.unwrap();
    let in_row: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE id = $1 AND lock_token IS NOT NULL")
            .bind(&id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(in_row, 0);
    db.close().await;

    // Process B is refused while A holds the lease.
    on_b.assert_locked(&location).await;

    open.send(()).unwrap();
    let res = first.await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset"), (32 * 1024).to_string());
    // Released with the answer: the key is gone and B's stale offset is refused as such.
    assert_eq!(lease_ms(&mut conn, &id).await, -2);
    let res = on_b.tus_patch(&location, 0, vec![9; 10]).await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "offset_mismatch"
    );
    // A finishes the upload (its temp file is on A's disk).
    let res = on_a
        .tus_patch(&location, 32 * 1024, vec![3; 32 * 1024])
        .await;
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert_eq!(on_b.tus_offset(&location).await, 64 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_of_a_killed_process_lapses_and_the_upload_resumes() {
    let Some((url, mut conn)) = redis().await else {
        return;
    };
    let options = || redis_options(&url, "lock_seconds = 3\n");
    let mut a = Server::start(options());
    let b = Server::start_sharing_database(options(), &a);
    let key = a.create_tenant("acme");
    let (on_a, on_b) = (Client::new(&a, &key), Client::new(&b, &key));
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (location, video_id) = on_a
        .tus_create(bytes.len() as u64, &[("filename", "data.bin")])
        .await;
    let id = upload_id(&location).to_owned();

    // Stream slowly (8 KiB every 50 ms) and kill A while bytes are still arriving.
    let sending = {
        let req = on_a.tus_patch_request(&location, 0).body(slow_body(
            bytes.clone(),
            8 * 1024,
            Duration::from_millis(50),
        ));
        tokio::spawn(async move { req.send().await })
    };
    wait_for_lease(&mut conn, &id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!sending.is_finished(), "the PATCH must still be running");
    a.stop(); // SIGKILL: no release, the lease stays behind
    let _ = sending.await;

    // The dead process's lease outlives it: the other process is refused until it lapses.
    let left = lease_ms(&mut conn, &id).await;
    assert!(left > 0, "no lease left after the kill: {left}");
    let res = on_b.tus_patch(&location, 0, vec![0; 10]).await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "upload_locked"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease_ms(&mut conn, &id).await > 0 {
        assert!(Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back up, A resumes from the durable offset.
    a.start_again();
    let offset = on_a.tus_offset(&location).await;
    assert!(offset > 0, "some bytes were durable before the kill");
    assert!(offset < bytes.len() as u64);
    let res = on_a
        .tus_patch(&location, offset, bytes[offset as usize..].to_vec())
        .await;
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    let video = on_a.video(&video_id).await;
    assert_eq!(video["sha256"], common::tus::sha256_hex(&bytes), "{video}");
}
