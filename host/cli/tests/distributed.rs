//! The distributed topology of `examples/distributed/`, started by its own `up.sh` and stopped
//! by its `down.sh`: 2 api processes behind nginx, 2 workers on RabbitMQ, 2 edges, all on
//! PostgreSQL, Redis and a local S3 server, scraped by Prometheus.
//!
//! One pass through it: plugins installed through one api reach every process; a tus upload
//! through nginx whose PATCHes are spread over both apis (nginx's log and each api's
//! `mediahost_tus_patches_total` say so) completes, with the stored source's sha256 equal to the
//! file's; a worker process transcodes it; both edges play it (playlist and segments, a second
//! request from cache); deleting it purges both edges, which then stop serving it; Prometheus
//! scraped every process, and every expression of the Grafana dashboard and of the alert rules
//! returns data from it, except those counting only failures (listed in [`FAILURE_ONLY`]: a
//! healthy run has none of these series).
//!
//! Needs the services `scripts/test` names (`MEDIAHOST_TEST_POSTGRES_URL`,
//! `MEDIAHOST_TEST_AMQP_URL`, `MEDIAHOST_TEST_REDIS_URL`, all on this machine at their default
//! ports, which the example's configs use), nginx and prometheus (up.sh installs them when
//! missing); skipped with a note without those variables, except under `CI=true`, where it
//! fails. Takes about a minute.

mod common;

use common::edge::{join, uris};
use common::tus::{OFFSET_STREAM, created, header, metadata, sha256_hex, upload_id};
use mediahost_blob::Blobs;
use mediahost_blob::test_support::TestS3;
use mediahost_store::testing::{amqp_server_url, postgres_server_url, redis_server_url};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The api processes (direct, not through nginx), as `prometheus.yml` names them.
const APIS: [(&str, &str); 2] = [
    ("api-1", "http://127.0.0.1:18181"),
    ("api-2", "http://127.0.0.1:18182"),
];
const EDGES: [(&str, &str); 2] = [
    ("edge-1", "http://127.0.0.1:18281"),
    ("edge-2", "http://127.0.0.1:18282"),
];
const WORKERS: [(&str, &str); 2] = [
    ("worker-1", "http://127.0.0.1:18391"),
    ("worker-2", "http://127.0.0.1:18392"),
];
/// `admin.operator_key` of the example's configs.
const OPERATOR_KEY: &str = "distributed-example-operator-key";
/// The plugins installed through the admin API: one called by the apis, two by the workers.
const PLUGINS: [&str; 3] = ["validator", "metadata-extractor", "router"];

/// Selectors of series that exist only once something failed (a failed or dead-lettered job,
/// a plugin trap or limit hit, an edge that could not reach the origin or missed a purge). A
/// dashboard or alert expression built on one of them has no data after a healthy run; every
/// other expression must.
const FAILURE_ONLY: [&str; 5] = [
    "mediahost_edge_origin_errors_total",
    "mediahost_edge_purge_failures_total",
    r#"outcome="dead_lettered""#,
    r#"outcome=~"trap|timeout|out_of_fuel|memory""#,
    r#"outcome=~"error|timeout|out_of_fuel|memory|trap""#,
];

fn example_dir() -> PathBuf {
    mediahost_testkit::repo_root().join("examples/distributed")
}

/// The running topology; `down.sh` on drop (the logs printed first when the test failed).
struct Topology {
    run: tempfile::TempDir,
    /// What up.sh wrote to `<run>/env`.
    env: HashMap<String, String>,
    stopped: bool,
}

impl Topology {
    fn up() -> Self {
        let run = tempfile::Builder::new()
            .prefix("mediahost-distributed-")
            .tempdir()
            .unwrap();
        let started = Instant::now();
        let output = script("up.sh", run.path());
        let mut topology = Self {
            env: HashMap::new(),
            run,
            stopped: false,
        };
        assert!(
            output.status.success(),
            "up.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("up.sh took {:.1} s", started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(topology.run.path().join("env")).unwrap();
        topology.env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        topology
    }

    fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("up.sh's env file lacks {name}"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.path().join(format!("logs/{name}.log")))
            .unwrap_or_default()
    }

    fn nginx_access_log(&self) -> String {
        std::fs::read_to_string(self.run.path().join("nginx/logs/access.log")).unwrap()
    }

    /// The pids up.sh recorded, by process name.
    fn pids(&self) -> Vec<(String, u32)> {
        std::fs::read_to_string(self.run.path().join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (name, pid) = l.split_once(' ')?;
                Some((name.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    fn down(&mut self) {
        let pids = self.pids();
        let output = script("down.sh", self.run.path());
        self.stopped = true;
        assert!(
            output.status.success(),
            "down.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for (name, pid) in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "{name} (pid {pid}) still runs after down.sh"
            );
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, _) in self.pids() {
                let log = self.log(&name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {name} (last lines) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if !self.stopped {
            let _ = script("down.sh", self.run.path());
        }
    }
}

/// Runs `examples/distributed/<name>` on the run dir `run` with this test's binary.
fn script(name: &str, run: &Path) -> std::process::Output {
    Command::new(example_dir().join(name))
        .env("MEDIAHOST_DIST_DIR", run)
        .env("MEDIAHOST_BIN", common::BIN)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// The value of the unlabelled sample `name` in a Prometheus text page, 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls until `check` returns `Some`, failing with `what` (and the last miss) after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(miss) => assert!(Instant::now() < deadline, "{what}: {miss}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `GET url` (with a Bearer `key`) as JSON; a failure as text, for [`eventually`].
async fn get_json(http: &reqwest::Client, url: String, key: Option<&str>) -> Result<Value, String> {
    let mut request = http.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let res = request.send().await.map_err(|e| e.to_string())?;
    res.json().await.map_err(|e| e.to_string())
}

/// `GET /api/v1/query` on Prometheus: the result vector of `expr`.
async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Vec<Value> {
    let res = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The query of an alert rule without its threshold: alerts.yml writes every `expr` as
/// `<query> <comparison> <number>`, and the query is what must have data.
fn without_threshold(rule: &str) -> String {
    let mut tokens: Vec<&str> = rule.split(' ').collect();
    let threshold = tokens.pop().unwrap();
    let comparison = tokens.pop().unwrap();
    assert!(
        threshold.parse::<f64>().is_ok()
            && ["==", "!=", ">", "<", ">=", "<="].contains(&comparison),
        "alert expression not of the form `<query> <comparison> <number>`: {rule}"
    );
    tokens.join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_topology_uploads_transcodes_plays_purges_and_is_observed() {
    let (Some(_), Some(_), Some(_)) =
        (postgres_server_url(), amqp_server_url(), redis_server_url())
    else {
        return;
    };
    let test_started = Instant::now();
    // The rules Prometheus will load are valid to promtool.
    let checked = Command::new("promtool")
        .args(["check", "rules"])
        .arg(example_dir().join("alerts.yml"))
        .output();
    // Guest plugins, built before the clock of the topology starts.
    let components: Vec<(&str, PathBuf)> = PLUGINS
        .iter()
        .map(|name| (*name, mediahost_testkit::build_plugin(name)))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let clip = common::clip(work.path(), "clip.mp4", 4.0);
    let file = std::fs::read(&clip).unwrap();

    let mut topology = Topology::up();
    let checked = checked.expect("run promtool (Debian's prometheus package; up.sh installs it)");
    assert!(
        checked.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let client = reqwest::Client::new();
    // References, so the polling closures below copy them.
    let (http, topology_ref) = (&client, &topology);
    let api = topology_ref.var("MEDIAHOST_DIST_API");
    let prometheus = topology_ref.var("MEDIAHOST_DIST_PROMETHEUS");

    // Every process reports each backend it uses as ready.
    for (name, base) in APIS.iter().chain(&WORKERS).chain(&EDGES) {
        let res = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{name}");
        let body: Value = res.json().await.unwrap();
        let mut expected = vec!["database", "object_storage", "redis"];
        if !name.starts_with("edge") {
            expected.push("queue");
        }
        for check in expected {
            assert_eq!(body["checks"][check], "ok", "{name}: {body}");
        }
    }

    // `mediahost cluster status` reaches all six processes over gRPC (the api's config names
    // them), each ready, with the figures of its roles.
    let status = Command::new(common::BIN)
        .args(["cluster", "status", "--json", "--config"])
        .arg(example_dir().join("api-1.toml"))
        .output()
        .unwrap();
    let rows: Value =
        serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}: {status:?}"));
    assert!(status.status.success(), "{rows:#}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in rows {
        assert_eq!(row["health"], "ready", "{row}");
        match row["roles"][0].as_str().unwrap() {
            "api" => assert!(row["queue_depth"].is_u64(), "{row}"),
            "worker" => assert_eq!(row["jobs_running"], 0, "{row}"),
            "edge" => assert_eq!(row["edge"]["group"], "default", "{row}"),
            other => panic!("unexpected role {other}: {row}"),
        }
    }

    // A tenant, and plugins installed through one api for the whole deployment.
    let created_tenant = Command::new(common::BIN)
        .args(["tenant", "create", "acme", "--database-url"])
        .arg(topology_ref.var("MEDIAHOST_DIST_DATABASE_URL"))
        .arg("--data-dir")
        .arg(work.path().join("cli-data"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(created_tenant.status.success(), "{created_tenant:?}");
    let stdout = String::from_utf8(created_tenant.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    let tenant_id = stdout
        .split("(id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("tenant id in the output")
        .to_owned();
    for (name, wasm) in &components {
        let folder = mediahost_testkit::repo_root().join("plugins").join(name);
        let manifest = std::fs::read(folder.join("plugin.toml")).unwrap();
        let file_name = wasm.file_name().unwrap().to_string_lossy().into_owned();
        let form = reqwest::multipart::Form::new()
            .part(
                "manifest",
                reqwest::multipart::Part::bytes(manifest).file_name("plugin.toml"),
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(std::fs::read(wasm).unwrap()).file_name(file_name),
            );
        let res = http
            .put(format!("{api}/v1/plugins/{name}"))
            .bearer_auth(OPERATOR_KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{name}: {}", res.text().await.unwrap());
    }
    // Both apis serve them (one installed them, the other synced from the catalog), and both
    // workers synced the worker-side ones, before anything is uploaded.
    for (name, base) in APIS {
        eventually(
            Duration::from_secs(30),
            &format!("{name} loads the plugins"),
            move || async move {
                let list = get_json(http, format!("{base}/v1/plugins"), Some(OPERATOR_KEY)).await?;
                let loaded = list["plugins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["status"] == "loaded")
                    .count();
                (loaded == PLUGINS.len())
                    .then_some(())
                    .ok_or(list.to_string())
            },
        )
        .await;
    }
    for (name, _) in WORKERS {
        eventually(
            Duration::from_secs(30),
            &format!("{name} syncs the plugins"),
            move || async move {
                let log = topology_ref.log(name);
                let synced = |plugin: &str| {
                    log.lines().any(|l| {
                        l.contains("plugin folder synced with the catalog")
                            && l.contains(&format!("plugin={plugin}"))
                    })
                };
                (synced("router") && synced("metadata-extractor"))
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            },
        )
        .await;
    }

    // A tus upload through nginx in six PATCHes, which round robin spreads over both apis.
    let res = http
        .post(format!("{api}/v1/uploads"))
        .bearer_auth(&key)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", file.len())
        .header(
            "Upload-Metadata",
            metadata(&[("filename", "clip.mp4"), ("title", "distributed")]),
        )
        .send()
        .await
        .unwrap();
    let (location, id) = created(&res);
    let chunk = file.len().div_ceil(6);
    let mut offset = 0;
    for piece in file.chunks(chunk) {
        let res = http
            .patch(format!("{api}{location}"))
            .bearer_auth(&key)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", OFFSET_STREAM)
            .header("Upload-Offset", offset)
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let new_offset = res.headers().get("upload-offset").cloned();
        assert_eq!(
            status,
            204,
            "PATCH at {offset}: {}",
            res.text().await.unwrap()
        );
        offset += piece.len();
        assert_eq!(new_offset.unwrap().to_str().unwrap(), offset.to_string());
    }
    let upload = upload_id(&location);
    let access = topology_ref.nginx_access_log();
    for (name, base) in APIS {
        let upstream = format!("upstream={}", base.trim_start_matches("http://"));
        let served = access
            .lines()
            .filter(|l| {
                l.contains(&format!("\"PATCH /v1/uploads/{upload} ")) && l.contains(&upstream)
            })
            .count();
        assert!(served >= 1, "nginx sent no PATCH to {name}:\n{access}");
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            sample(&metrics, "mediahost_tus_patches_total") >= 1.0,
            "{name} counts no PATCH:\n{metrics}"
        );
    }

    // A worker process transcodes it.
    let (id_ref, key_ref) = (&id, &key);
    let video: Value = eventually(
        Duration::from_secs(120),
        "the video becomes ready",
        move || async move {
            let video = get_json(http, format!("{api}/v1/videos/{id_ref}"), Some(key_ref)).await?;
            assert_ne!(video["status"], "failed", "{video}");
            (video["status"] == "ready")
                .then(|| video.clone())
                .ok_or(video.to_string())
        },
    )
    .await;
    let transcoded_by: Vec<&str> = WORKERS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            topology_ref
                .log(name)
                .lines()
                .any(|l| l.contains("job started") && l.contains(&id))
        })
        .collect();
    assert_eq!(
        transcoded_by.len(),
        1,
        "workers that ran the job: {transcoded_by:?}"
    );

    // The stored source is the file, byte for byte.
    let s3 = TestS3 {
        endpoint: topology_ref.var("MEDIAHOST_S3_ENDPOINT").to_owned(),
        region: topology_ref.var("AWS_REGION").to_owned(),
        access_key_id: topology_ref.var("AWS_ACCESS_KEY_ID").to_owned(),
        secret_access_key: topology_ref.var("AWS_SECRET_ACCESS_KEY").to_owned(),
    };
    let bucket = topology_ref.var("MEDIAHOST_S3_BUCKET");
    let blobs = Blobs::from_config(work.path(), &s3.storage_config(bucket))
        .await
        .unwrap();
    let source_key = mediahost_core::video::keys::source(&tenant_id, &id);
    let stored = blobs.get_bytes(&source_key).await.unwrap();
    assert_eq!(sha256_hex(&stored), sha256_hex(&file));
    assert_eq!(video["sha256"], sha256_hex(&file));

    // Played through each edge: the master playlist, a media playlist and its segments, each
    // a second time from the cache.
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let mut played = Vec::new();
    for (name, edge) in EDGES {
        let master = signed.replacen(api, edge, 1);
        assert_ne!(master, signed, "signed URL {signed} is not on {api}");
        let get = |url: String| {
            let http = http.clone();
            async move {
                let res = http.get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200, "{url}");
                let cache = header(&res, "x-cache");
                (cache, res.bytes().await.unwrap())
            }
        };
        let (_, body) = get(master.clone()).await;
        let media = join(&master, &uris(&String::from_utf8_lossy(&body))[0]);
        let (_, body) = get(media.clone()).await;
        let playlist = String::from_utf8_lossy(&body).into_owned();
        let mut urls = vec![master.clone(), media.clone()];
        if let Some(init) = playlist.lines().find_map(|l| {
            l.split_once("URI=\"")
                .map(|(_, rest)| rest.split('"').next().unwrap().to_owned())
        }) {
            let init = join(&media, &init);
            let (_, bytes) = get(init.clone()).await;
            assert!(!bytes.is_empty(), "{name}: empty init segment");
            urls.push(init);
        }
        let segment = join(&media, &uris(&playlist)[0]);
        let (cache, bytes) = get(segment.clone()).await;
        assert!(!bytes.is_empty(), "{name}: empty segment");
        // The workers push to edge-1 (`mode = "push"`): its first viewer is served the
        // segment from the cache; edge-2 pulls it.
        let expected = if name == "edge-1" { "HIT" } else { "MISS" };
        assert_eq!(cache, expected, "{name}: first request of {segment}");
        urls.push(segment);
        for url in &urls {
            let (cache, _) = get(url.clone()).await;
            assert_eq!(cache, "HIT", "{name}: {url}");
        }
        played.push((name, urls));
    }

    // Deleting the video purges both edges over gRPC; neither serves it any more.
    let res = http
        .delete(format!("{api}/v1/videos/{id}"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deleted: Value = res.json().await.unwrap();
    for (_, edge) in EDGES {
        let outcome = deleted["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["edge"] == edge)
            .unwrap_or_else(|| panic!("{edge} not purged: {deleted}"));
        assert!(outcome["purged"].as_u64().unwrap() >= 3, "{deleted}");
    }
    for (name, urls) in &played {
        for url in urls {
            let res = http.get(url).send().await.unwrap();
            let cache = res.headers().get("x-cache").cloned();
            assert_ne!(res.status(), 200, "{name} still serves {url}");
            assert_ne!(
                cache.as_ref().and_then(|c| c.to_str().ok()),
                Some("HIT"),
                "{url}"
            );
        }
    }

    // Prometheus scrapes every process...
    eventually(
        Duration::from_secs(30),
        "Prometheus scrapes every process",
        move || async move {
            let up = query(http, prometheus, r#"up{job=~"mediahost_.*"}"#).await;
            let healthy = up.iter().filter(|s| s["value"][1] == "1").count();
            (up.len() == 6 && healthy == 6)
                .then_some(())
                .ok_or(format!("{up:?}"))
        },
    )
    .await;

    // ...and every expression of the dashboard and of the alert rules has data from it, but
    // those counting failures only.
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(example_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(expressions.len() >= 20, "{expressions:?}");
    // The rules as Prometheus loaded them (so the file is loaded too), each evaluated cleanly.
    let rules = get_json(http, format!("{prometheus}/api/v1/rules"), None)
        .await
        .unwrap();
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(rules.len() >= 10, "{rules:?}");
    for rule in &rules {
        assert_ne!(rule["health"], "err", "{rule}");
        expressions.push(without_threshold(rule["query"].as_str().unwrap()));
    }
    let (mut with_data, mut failure_only) = (0, Vec::new());
    for expr in &expressions {
        let may_be_empty = FAILURE_ONLY.iter().any(|s| expr.contains(s));
        let limit = if may_be_empty {
            Duration::ZERO
        } else {
            Duration::from_secs(45)
        };
        let found = eventually(limit, &format!("no data for {expr}"), move || async move {
            let result = query(http, prometheus, expr).await;
            if !result.is_empty() || may_be_empty {
                Ok(!result.is_empty())
            } else {
                Err("an empty result".to_owned())
            }
        })
        .await;
        if found {
            with_data += 1;
        } else {
            failure_only.push(expr.clone());
        }
    }
    eprintln!(
        "{with_data} expressions with data; counting failures only, so empty: {failure_only:#?}"
    );

    // Last, as it takes api-1 away: it dies mid-PATCH and the uploads go on through nginx.
    uploads_survive_an_api_killed_mid_patch(&topology, http, api, &key, &file).await;

    topology.down();
    eprintln!("whole test: {:.1} s", test_started.elapsed().as_secs_f64());
}

/// Two tus uploads whose first PATCHes stream through nginx at once (round robin gives each api
/// one); api-1 is SIGKILLed while both are mid-body. The upload on api-2 finishes its PATCH;
/// the one on api-1 fails, and its client does what a tus client does: HEAD for the durable
/// offset and PATCH the rest, through nginx (now reaching api-2 only), retrying while the dead
/// process's write lock lapses. Both complete with the file's sha256.
async fn uploads_survive_an_api_killed_mid_patch(
    topology: &Topology,
    http: &reqwest::Client,
    api: &str,
    key: &str,
    file: &[u8],
) {
    let tus = |request: reqwest::RequestBuilder| {
        request.bearer_auth(key).header("Tus-Resumable", "1.0.0")
    };
    // Both uploads are created first, so the two PATCHes are consecutive requests to nginx.
    let mut created_uploads = Vec::new();
    for n in 0..2 {
        let res = tus(http.post(format!("{api}/v1/uploads")))
            .header("Upload-Length", file.len())
            .header(
                "Upload-Metadata",
                metadata(&[("filename", &format!("kill-{n}.mp4"))]),
            )
            .send()
            .await
            .unwrap();
        created_uploads.push(created(&res));
    }
    // Each body: the first half in pieces a few hundred ms apart (so the api makes some of it
    // durable), then held open until the kill.
    let half = file.len() / 2;
    let mut open_bodies = Vec::new();
    for (location, _) in &created_uploads {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
        let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|piece| (piece, rx))
        }));
        let patch = tokio::spawn(
            tus(http.patch(format!("{api}{location}")))
                .header("Content-Type", OFFSET_STREAM)
                .header("Upload-Offset", 0)
                .body(body)
                .send(),
        );
        open_bodies.push((tx, patch));
    }
    for piece in file[..half].chunks(half.div_ceil(4)) {
        for (tx, _) in &open_bodies {
            tx.send(Ok(piece.to_vec())).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A bad gateway is retried, as tus clients do: once api-1 is killed, nginx may try it
    // and then a keep-alive connection to api-2 that api-2 closed after refusing a PATCH
    // early (below), and has no upstream left to try.
    let head_offset = |location: String| async move {
        let res = tus(http.head(format!("{api}{location}")))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            200 => Ok(header(&res, "upload-offset").parse::<usize>().unwrap()),
            502 => Err(format!("HEAD {location}: 502 from nginx")),
            status => panic!("HEAD {location}: {status}"),
        }
    };
    for (location, _) in &created_uploads {
        let location = location.clone();
        eventually(
            Duration::from_secs(20),
            "the first PATCHes make bytes durable",
            move || {
                let location = location.clone();
                async move {
                    let offset = head_offset(location).await?;
                    (offset > 0).then_some(()).ok_or(format!("offset {offset}"))
                }
            },
        )
        .await;
    }

    let (_, pid) = topology
        .pids()
        .into_iter()
        .find(|(name, _)| name == "api-1")
        .expect("api-1's pid");
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.unwrap().success());

    // The PATCH on api-2 gets the rest of its body and completes; the one on api-1 broke off.
    let mut failed = Vec::new();
    for ((location, _), (tx, patch)) in created_uploads.iter().zip(open_bodies) {
        let _ = tx.send(Ok(file[half..].to_vec())).await;
        drop(tx);
        let answer = patch.await.unwrap();
        let completed = matches!(&answer, Ok(res) if res.status() == 204);
        if !completed {
            failed.push(location.clone());
        }
    }
    assert_eq!(failed.len(), 1, "exactly the PATCH on the killed api fails");

    // Its client resumes through nginx from the durable offset.
    let location = failed.pop().unwrap();
    let resumed = eventually(
        Duration::from_secs(60),
        "the interrupted upload resumes on the other api",
        || {
            let location = location.clone();
            async move {
                let offset = head_offset(location.clone()).await?;
                assert!(
                    offset <= half,
                    "durable offset {offset} beyond what was sent"
                );
                let sent = tus(http.patch(format!("{api}{location}")))
                    .header("Content-Type", OFFSET_STREAM)
                    .header("Upload-Offset", offset)
                    .body(file[offset..].to_vec())
                    .send()
                    .await;
                let res = match sent {
                    Ok(res) => res,
                    // Refused before the body was sent: the connection is closed, so the
                    // client may see that instead of the 409.
                    Err(e) if e.is_request() => return Err(e.to_string()),
                    Err(e) => panic!("resume PATCH: {e}"),
                };
                match res.status().as_u16() {
                    204 => Ok(offset),
                    // The dead process's write lock has not lapsed yet.
                    409 => Err(res.text().await.unwrap()),
                    // The same refusal, seen through nginx: the api answered 409 before the
                    // body was through and closed the connection under nginx, which reports
                    // that as a bad gateway. tus clients retry both.
                    502 => Err("502 from nginx".into()),
                    status => panic!("resume PATCH: {status} {}", res.text().await.unwrap()),
                }
            }
        },
    )
    .await;
    eprintln!("resumed from the durable offset {resumed} of {half} bytes sent");

    for (_, id) in &created_uploads {
        let video = get_json(http, format!("{api}/v1/videos/{id}"), Some(key))
            .await
            .unwrap();
        assert_eq!(video["sha256"], sha256_hex(file), "{video}");
    }
}
