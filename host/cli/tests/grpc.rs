//! The gRPC control plane across processes: `grpc.health.v1` and reflection on the api's
//! `grpc.listen` and on the edge's listener, the cluster token on every control service, a
//! worker in its own process reporting progress and outcomes to the api over gRPC, and
//! `mediahost cluster status` asking every process.

mod common;

use common::{Client, Options, Server, free_port};
use mediahost_edge::grpc::proto::edge_control_client::EdgeControlClient;
use mediahost_edge::grpc::proto::{PurgeRequest, purge_request};
use mediahost_grpc::proto::control::ProgressReport;
use mediahost_grpc::proto::control::jobs_client::JobsClient;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const TOKEN: &str = "cluster-s3cret";

async fn channel(base: &str) -> Channel {
    Channel::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// What `grpc.health.v1.Health/Check` answers for `service` once the process has checked its
/// backends (the first check runs as it starts; until then a service is not yet known).
async fn health(base: &str, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(base).await);
    for _ in 0..100 {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        match client.check(request).await {
            Ok(reply) => return reply.into_inner().status(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{service:?}: {status:?}"),
        }
    }
    panic!("{service:?} never got a health status");
}

/// The services reflection lists, sorted.
async fn reflected_services(base: &str) -> Vec<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel(base).await)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a service list: {reply:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// `message` with `authorization: Bearer <key>` when `key` is given.
fn bearer<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

fn progress(video_id: &str) -> ProgressReport {
    ProgressReport {
        video_id: video_id.into(),
        percent: 50.0,
        speed: 1.5,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_serves_health_and_reflection_without_the_token() {
    let server = Server::start(Options {
        config: format!("[cluster]\ntoken = {TOKEN:?}\n"),
        ..Options::default()
    });
    // The api's own gRPC listener.
    for service in ["", "mediahost.control.v1.Jobs", "grpc.health.v1.Health"] {
        assert_eq!(
            health(&server.grpc_base, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    assert_eq!(
        reflected_services(&server.grpc_base).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "mediahost.control.v1.Jobs",
            "mediahost.control.v1.Node",
            "mediahost.edge.v1.EdgeControl",
        ]
    );
    // An unknown service is NOT_FOUND, as the health protocol says.
    let unknown = HealthClient::new(channel(&server.grpc_base).await)
        .check(HealthCheckRequest {
            service: "nope.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // The edge's listener, beside its HTTP routes.
    assert_eq!(
        health(&server.edge_base, "mediahost.edge.v1.EdgeControl").await,
        ServingStatus::Serving
    );
    assert!(
        reflected_services(&server.edge_base)
            .await
            .contains(&"mediahost.edge.v1.EdgeControl".to_owned())
    );
    let healthz = reqwest::get(format!("{}/healthz", server.edge_base))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn control_calls_need_the_cluster_token() {
    let server = Server::start(Options {
        config: format!("[cluster]\ntoken = {TOKEN:?}\n[admin]\noperator_key = \"op\"\n"),
        ..Options::default()
    });
    let mut jobs = JobsClient::new(channel(&server.grpc_base).await);
    for key in [None, Some("wrong"), Some("op")] {
        let refused = jobs
            .report_progress(bearer(progress("v"), key))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{key:?}");
    }
    let reply = jobs
        .report_progress(bearer(progress("no-such-video"), Some(TOKEN)))
        .await
        .unwrap();
    assert!(!reply.get_ref().known);
    let invalid = jobs
        .report_progress(bearer(
            ProgressReport {
                percent: 150.0,
                ..progress("v")
            },
            Some(TOKEN),
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // The edge takes the cluster token as well as the operator key.
    let mut edge = EdgeControlClient::new(channel(&server.edge_base).await);
    let purge = || PurgeRequest {
        target: Some(purge_request::Target::VideoId("v".into())),
    };
    for key in ["op", TOKEN] {
        edge.purge(bearer(purge(), Some(key))).await.unwrap();
    }
    let refused = edge
        .purge(bearer(purge(), Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // Without a token configured, the control services are off.
    let open = Server::start(Options::default());
    let mut jobs = JobsClient::new(channel(&open.grpc_base).await);
    let off = jobs
        .report_progress(bearer(progress("v"), Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(off.code(), tonic::Code::PermissionDenied);
    assert!(off.message().contains("cluster"), "{off:?}");
}

/// `mediahost serve --role worker` on `server`'s data dir and config (same database, storage
/// and queue), with its own gRPC listener.
fn start_worker(server: &Server, log: &std::path::Path) -> Child {
    let data = server.data_path();
    server
        .command()
        .args(["serve", "--role", "worker", "--grpc-listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(data.join("mediahost.toml"))
        .env("MEDIAHOST_CLUSTER_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start a worker process")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_in_another_process_reports_progress_and_outcome_to_the_api() {
    let grpc = format!("127.0.0.1:{}", free_port());
    // The token comes from the environment in the worker and from the file in the api.
    let server = Server::start(Options {
        config: format!(
            "[grpc]\nlisten = {grpc:?}\n[cluster]\ntoken = {TOKEN:?}\napi_urls = [\"http://{grpc}\"]\n"
        ),
        args: vec!["--role".into(), "api,edge".into()],
        ..Options::default()
    });
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let mut worker = start_worker(&server, &log);
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = common::clip(server.data_path(), "clip.mp4", 3.0);
    let id = client.upload("clip", "clip.mp4", &clip).await;
    let video = client.wait_settled(&id).await;
    // The api records what the worker sent over gRPC. The worker marks the video ready in
    // the database, then acknowledges the job, then reports the outcome: the report lands a
    // moment after the video shows ready, so the worker must live until it has.
    let counted = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let outcome = "mediahost_job_outcome_reports_total{outcome=\"ready\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = server.metrics().await;
        if counted(&metrics, outcome) >= 1.0 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = worker.kill();
    let _ = worker.wait();
    let worker_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(video["status"], "ready", "{video}\n{worker_log}");
    assert!(
        worker_log.contains("job started") && worker_log.contains(&id),
        "the worker process did not run the job:\n{worker_log}"
    );
    assert!(
        !worker_log.contains("report to the api failed"),
        "{worker_log}"
    );
    assert!(
        video["progress"]["percent"].as_f64().unwrap() > 0.0,
        "{video}"
    );
    assert!(
        counted(&metrics, "mediahost_progress_reports_total{via=\"grpc\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        counted(&metrics, outcome),
        1.0,
        "{metrics}\n--- worker log ---\n{worker_log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_status_asks_every_process_and_fails_when_one_is_down() {
    let server = Server::start(Options {
        config: format!("[cluster]\ntoken = {TOKEN:?}\n"),
        ..Options::default()
    });
    let status = |targets: &[&str], json: bool| {
        let mut command = server.command();
        command.args(["cluster", "status"]);
        for target in targets {
            command.args(["--target", target]);
        }
        if json {
            command.arg("--json");
        }
        command
            .env("MEDIAHOST_CLUSTER_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let out = status(&[&server.grpc_base, &server.edge_base], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        assert_eq!(row["health"], "ready", "{row}");
        assert_eq!(
            row["roles"],
            serde_json::json!(["api", "edge", "worker"]),
            "{row}"
        );
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(row["queue_depth"], 0, "{row}");
        assert_eq!(row["jobs_running"], 0, "{row}");
        assert_eq!(row["edge"]["group"], "default", "{row}");
    }

    // One process down (and one asked with the wrong token): rows saying so, exit non-zero.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = status(&[&server.grpc_base, &closed], false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.starts_with("TARGET"), "{stdout}");
    let row = |target: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(target))
            .unwrap_or_else(|| panic!("no row for {target}:\n{stdout}"))
            .to_owned()
    };
    assert!(row(&server.grpc_base).contains("ready"), "{stdout}");
    assert!(row(&closed).contains("unreachable"), "{stdout}");
    assert!(stderr.contains("1 of 2 processes"), "{stderr}");
    let wrong = server
        .command()
        .args(["cluster", "status", "--json", "--target", &server.grpc_base])
        .env("MEDIAHOST_CLUSTER_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("Unauthenticated"),
        "{rows}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_watch_ends_with_not_serving_at_shutdown_and_does_not_hold_the_process() {
    let mut server = Server::start(Options::default());
    assert_eq!(health(&server.grpc_base, "").await, ServingStatus::Serving);
    let mut client = HealthClient::new(channel(&server.grpc_base).await);
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let mut updates = client.watch(request).await.unwrap().into_inner();
    let first = updates.message().await.unwrap().expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);

    // SIGTERM: the process must exit well within its 30 s grace period although the watch
    // is open, and the watcher must see NOT_SERVING and a cleanly ended stream.
    let restarted = tokio::task::spawn_blocking(move || {
        server.restart(Duration::from_secs(10));
        server
    });
    let mut seen = Vec::new();
    while let Some(update) = updates.message().await.expect("the stream ends cleanly") {
        seen.push(update.status());
    }
    assert_eq!(seen.last(), Some(&ServingStatus::NotServing), "{seen:?}");
    let server = restarted.await.unwrap();
    assert_eq!(health(&server.grpc_base, "").await, ServingStatus::Serving);
}
