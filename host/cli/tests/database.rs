//! The metadata database setting (`database.url`): start-up errors that name it (and the job
//! queue's `queue.amqp_url`, the other backend a process connects to first), and several api
//! processes sharing one database (PostgreSQL with `MEDIAHOST_TEST_DATABASE=postgres`, else
//! one SQLite file).

mod common;

use common::tus::{OFFSET_STREAM, header};
use common::{BIN, Client, Options, Server};
use reqwest::Method;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A local port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `mediahost ARGS…` with a fresh data dir and no ambient database settings, expected to fail
/// at start; returns its stderr.
fn failing(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("MEDIAHOST_DATABASE_URL")
        .env_remove("DATABASE_URL")
        // The edge beside the API would otherwise take the default port 8081.
        .env("MEDIAHOST_EDGE_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started anyway: {stderr}");
    stderr
}

#[test]
fn an_unreachable_database_stops_start_up_with_the_setting_named() {
    let port = closed_port();
    let url = format!("postgres://mh:s3cret@127.0.0.1:{port}/mediahost");
    let listen = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let stderr = failing(&["serve", "--listen", &listen, "--database-url", &url], &[]);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains(&format!(
            "database.url postgres://mh:***@127.0.0.1:{port}/mediahost: cannot connect"
        )),
        "{line}"
    );
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
    // It fails on the first refusal instead of retrying until a pool timeout.
    assert!(started.elapsed() < Duration::from_secs(20), "{line}");
}

#[test]
fn an_unreachable_rabbitmq_stops_start_up_with_the_setting_named() {
    let port = closed_port();
    let url = format!("amqp://mh:s3cret@127.0.0.1:{port}/%2f");
    let listen = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    for role in ["api", "worker"] {
        let stderr = failing(
            &[
                "serve",
                "--role",
                role,
                "--grpc-listen",
                "127.0.0.1:0",
                "--listen",
                &listen,
            ],
            &[
                ("MEDIAHOST_QUEUE_BACKEND", "rabbitmq"),
                ("MEDIAHOST_AMQP_URL", url.as_str()),
            ],
        );
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(
            errors[0].contains("cannot connect to RabbitMQ")
                && errors[0].contains("(queue.amqp_url)"),
            "{role}: {}",
            errors[0]
        );
        assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn database_url_env_fallback_and_unknown_schemes_are_named() {
    // `DATABASE_URL` is read when `MEDIAHOST_DATABASE_URL` and the flag are unset.
    let stderr = failing(&["migrate"], &[("DATABASE_URL", "mysql://db/mh")]);
    assert!(
        stderr.contains("error: database.url mysql://db/mh: unsupported database URL"),
        "{stderr}"
    );
    // `MEDIAHOST_DATABASE_URL` wins over it.
    let port = closed_port();
    let stderr = failing(
        &["tenant", "create", "acme"],
        &[
            ("DATABASE_URL", "mysql://db/mh"),
            (
                "MEDIAHOST_DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:{port}/x"),
            ),
        ],
    );
    assert!(
        stderr.contains(&format!(
            "database.url postgres://postgres@127.0.0.1:{port}/x:"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_processes_share_the_upload_lock_and_offset() {
    let a = Server::start(Options::default());
    let b = Server::start_sharing_database(Options::default(), &a);
    let key = a.create_tenant("acme");
    let (on_a, on_b) = (Client::new(&a, &key), Client::new(&b, &key));
    let (location, _) = on_a.tus_create(64 * 1024, &[]).await;
    let id = common::tus::upload_id(&location).to_owned();

    // A PATCH on process A that holds the lock until the test lets it finish.
    let (open, first) = on_a.gated_patch(&location);
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&a.database_url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let locked: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM uploads WHERE id = $1 AND lock_token IS NOT NULL",
        )
        .bind(&id)
        .fetch_one(&db)
        .await
        .unwrap();
        if locked == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "process A never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Process B sees the lock held in the shared database.
    on_b.assert_locked(&location).await;

    open.send(()).unwrap();
    let res = first.await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "upload-offset"), (32 * 1024).to_string());
    // B answers from the shared row: A's durable offset, and a stale offset is refused.
    assert_eq!(on_b.tus_offset(&location).await, 32 * 1024);
    let res = on_b
        .tus(Method::PATCH, &location)
        .header("Content-Type", OFFSET_STREAM)
        .header("Upload-Offset", 0)
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "the lock is free, the offset is not 0");
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "offset_mismatch"
    );
    db.close().await;
}
