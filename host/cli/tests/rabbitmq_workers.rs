//! Workers as processes of their own (`mediahost serve --role worker`) pulling jobs from
//! RabbitMQ: a worker killed with SIGKILL in the middle of a transcode loses nothing, the
//! broker redelivers its job to the other worker, and the video ends ready with exactly one
//! set of outputs; a job that fails on every attempt ends in `<queue>.dead` and the video
//! `failed` with the reason.
//!
//! Needs the broker of `MEDIAHOST_TEST_AMQP_URL` (`scripts/test` sets it); skipped with a note
//! without it, except under `CI=true`.

mod common;

use common::edge::{join, uris};
use common::{Client, Options, Server, TestQueue, free_port};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `mediahost serve --role worker` on the api server's data dir and config (so the same
/// database, object storage and queue), its stderr in `log`.
fn start_worker(server: &Server, log: &Path) -> Child {
    let data = server.data_path();
    let mut command = server.command();
    command
        .args([
            "serve",
            "--role",
            "worker",
            "--grpc-listen",
            "127.0.0.1:0",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(data.join("mediahost.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command.spawn().expect("start a worker process")
}

/// A worker process killed on drop, its log printed if the test fails.
struct WorkerProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl WorkerProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
    }
}

/// An api process (no worker: worker processes of the test take the jobs) queueing to a
/// RabbitMQ queue of its own on the broker of `MEDIAHOST_TEST_AMQP_URL`, with `config` added;
/// with that queue (deleted when dropped). `None` (after a note) without a broker.
fn api_on_rabbitmq(config: &str) -> Option<(Server, TestQueue)> {
    let queue = TestQueue::create()?;
    let server = Server::start(Options {
        config: format!("{}{config}", queue.config_toml()),
        args: vec!["--role".into(), "api,edge".into()],
        ..Options::default()
    });
    Some((server, queue))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_job_hands_it_to_the_other_worker_and_one_set_of_outputs_remains() {
    let Some((server, _queue)) = api_on_rabbitmq("") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let mut workers: Vec<WorkerProcess> = (0..2)
        .map(|n| {
            let log = logs.path().join(format!("worker-{n}.log"));
            WorkerProcess {
                child: start_worker(&server, &log),
                log,
            }
        })
        .collect();
    let client = Client::new(&server, &server.create_tenant("acme"));
    // Long enough that the transcode is still running when its worker is killed.
    let clip = common::clip(server.data_path(), "long.mp4", 20.0);
    let id = client.upload("long", "long.mp4", &clip).await;

    // Find the worker transcoding it and kill it mid-job.
    let deadline = Instant::now() + Duration::from_secs(120);
    let busy = loop {
        if let Some(n) = workers.iter().position(|w| {
            w.log()
                .lines()
                .any(|l| l.contains("job started") && l.contains(&id))
        }) {
            break n;
        }
        assert!(Instant::now() < deadline, "no worker started the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Mid-job: it has begun (the status says so) and is not done.
    client
        .wait_for(
            &id,
            Duration::from_secs(60),
            Duration::from_millis(50),
            "the job never started processing",
            |video| video["status"] == "processing",
        )
        .await;
    workers[busy].child.kill().unwrap();
    workers[busy].child.wait().unwrap();
    let survivor = &workers[1 - busy];

    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");
    let survivor_log = survivor.log();
    assert!(
        survivor_log.contains("job started") && survivor_log.contains(&id),
        "the other worker never took the job:\n{survivor_log}"
    );

    // Exactly one set of outputs: every stored file of a rendition is one its playlist names,
    // and each is served.
    let renditions = video["renditions"].as_array().unwrap();
    assert!(!renditions.is_empty(), "{video}");
    let master = client
        .text(&format!("/v1/videos/{id}/hls/master.m3u8"))
        .await;
    let master_url = server.url(&format!("/v1/videos/{id}/hls/master.m3u8"));
    for media in uris(&master) {
        let media_url = join(&master_url, &media);
        let playlist = client
            .text(media_url.trim_start_matches(&server.base))
            .await;
        let segments = uris(&playlist);
        assert!(!segments.is_empty(), "{playlist}");
        let rendition = media.split('/').next().unwrap();
        // Local storage: the files under the rendition's folder are exactly the playlist's
        // segments, its init segment and the playlist itself.
        if server.s3.is_none() {
            let dir = server
                .data_path()
                .join("objects/tenants")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join(format!("videos/{id}/hls/{rendition}"));
            let mut stored: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".m4s"))
                .collect();
            stored.sort();
            let mut listed: Vec<String> = segments
                .iter()
                .map(|s| s.rsplit('/').next().unwrap().to_owned())
                .collect();
            listed.sort();
            assert_eq!(stored, listed, "{}", dir.display());
        }
    }
}

/// Takes the next message of `queue` off the broker at `amqp`.
async fn take_one(amqp: &str, queue: &str) -> Option<lapin::message::Delivery> {
    use lapin::options::BasicGetOptions;
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .map(|m| m.delivery)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_keeps_failing_is_dead_lettered_and_the_video_says_why() {
    // Local storage, so the test can take the source away from under the queued job: every
    // attempt then fails to fetch it (a failure worth retrying, until the attempts run out).
    let Some((server, queue)) = api_on_rabbitmq("[storage]\nbackend = \"local\"\n") else {
        return;
    };
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = common::clip(server.data_path(), "clip.mp4", 1.0);
    let id = client.upload("poison", "clip.mp4", &clip).await;
    let tenants = server.data_path().join("objects/tenants");
    let tenant = std::fs::read_dir(&tenants)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let source = tenant.path().join(format!("videos/{id}/source"));
    std::fs::remove_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let worker = WorkerProcess {
        child: start_worker(&server, &log),
        log,
    };
    // Attempts 1, 2 and 3 (`worker.max_attempts`), 2 s and 4 s apart.
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "failed", "{video}");
    let error = video["error"].as_str().unwrap();
    assert!(
        error.starts_with("processing failed after 3 attempts:") && error.contains("source"),
        "{error}"
    );
    assert_eq!(
        worker.log().matches("job started").count(),
        3,
        "{}",
        worker.log()
    );

    let dead = format!("{}.dead", queue.name);
    let message = take_one(&queue.amqp, &dead)
        .await
        .unwrap_or_else(|| panic!("nothing in {dead}"));
    let job: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    assert_eq!(job["video_id"], id.as_str());
    let headers = message.properties.headers().clone().unwrap_or_default();
    let header = |name: &str| {
        headers
            .inner()
            .get(name)
            .map(|v| match v {
                lapin::types::AMQPValue::LongString(s) => {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                other => format!("{other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
    };
    let attempt = header("x-mediahost-attempt");
    assert!(attempt.contains('3'), "{attempt}");
    let error = header("x-mediahost-error");
    assert!(error.contains("source"), "{error}");
}
