//! `mediahost cluster status`: asks every process of a deployment for its `Node.Status` over
//! gRPC and prints a table (or JSON); also the status each `serve` process answers with.

use anyhow::Context;
use clap::{Args, Subcommand};
use mediahost_core::Readiness;
use mediahost_edge::Edge;
use mediahost_grpc::Outgoing;
use mediahost_grpc::node::{NodeService, StatusSource};
use mediahost_grpc::proto::control::StatusReply;
use mediahost_grpc::proto::control::node_client::NodeClient;
use mediahost_queue::JobQueue;
use mediahost_transcode::progress::Reporter;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;

use super::Common;

/// How long one process may take to answer, connecting included.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Commands about the deployment as a whole.
#[derive(Debug, Subcommand)]
pub enum Cluster {
    /// Ask every configured process (`cluster.api_urls`, `cluster.workers`, `[[cluster.edges]]`,
    /// or `--target`s) for its roles, version, health, uptime, queue and cache; exits non-zero
    /// when one is unreachable or unready.
    Status(Status),
}

/// `mediahost cluster status`.
#[derive(Debug, Args)]
pub struct Status {
    #[command(flatten)]
    common: Common,
    /// gRPC URL of a process to ask (repeatable), instead of the configured ones, e.g.
    /// `http://127.0.0.1:50051` (an api or worker's `grpc.listen`) or an edge's base URL.
    #[arg(long)]
    target: Vec<String>,
    /// Print JSON (one object per process) instead of a table.
    #[arg(long)]
    json: bool,
}

impl Cluster {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Cluster::Status(status) => status.run().await,
        }
    }
}

/// One process's answer, as printed.
#[derive(Debug, serde::Serialize)]
struct Row {
    target: String,
    /// `ready`, `unready` or `unreachable`.
    health: &'static str,
    /// Why it is unready (failing checks) or unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    roles: Vec<String>,
    version: String,
    uptime_seconds: Option<u64>,
    queue_depth: Option<u64>,
    jobs_running: Option<u64>,
    edge: Option<serde_json::Value>,
}

impl Status {
    async fn run(self) -> anyhow::Result<()> {
        let config = self.common.load()?;
        let targets = if self.target.is_empty() {
            let cluster = &config.cluster;
            let mut targets = cluster.api_urls.clone();
            targets.extend(cluster.workers.iter().cloned());
            targets.extend(cluster.edges.iter().map(|e| e.url.clone()));
            targets
        } else {
            self.target
        };
        anyhow::ensure!(
            !targets.is_empty(),
            "no process to ask: set cluster.api_urls, cluster.workers or [[cluster.edges]], or pass --target"
        );
        let outgoing =
            Outgoing::new(config.cluster.token(), "cluster.token").context("cluster.token")?;
        let rows =
            futures::future::join_all(targets.iter().map(|t| ask(t, outgoing.clone()))).await;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print_table(&rows);
        }
        let down = rows.iter().filter(|r| r.health != "ready").count();
        anyhow::ensure!(
            down == 0,
            "{down} of {} processes are unreachable or unready",
            rows.len()
        );
        Ok(())
    }
}

/// Asks the process at `target` for its status.
async fn ask(target: &str, outgoing: Outgoing) -> Row {
    let mut row = Row {
        target: target.to_owned(),
        health: "unreachable",
        error: None,
        roles: Vec::new(),
        version: String::new(),
        uptime_seconds: None,
        queue_depth: None,
        jobs_running: None,
        edge: None,
    };
    let reply = async {
        let channel = mediahost_grpc::endpoint(target, "[cluster] or --target", ASK_TIMEOUT)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        NodeClient::new(InterceptedService::new(channel, outgoing))
            .status(mediahost_grpc::proto::control::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    match reply.await {
        Err(e) => row.error = Some(e),
        Ok(reply) => {
            row.health = if reply.ready { "ready" } else { "unready" };
            if !reply.ready {
                row.error = Some(format!("failing: {}", reply.failing.join(", ")));
            }
            row.roles = reply.roles;
            row.version = reply.version;
            row.uptime_seconds = Some(reply.uptime_seconds);
            row.queue_depth = reply.queue_depth;
            row.jobs_running = reply.jobs_running;
            row.edge = reply.edge.map(|e| {
                let asked = e.hits + e.misses;
                serde_json::json!({
                    "group": e.group,
                    "memory_bytes": e.memory_bytes,
                    "disk_bytes": e.disk_bytes,
                    "hits": e.hits,
                    "misses": e.misses,
                    "hit_ratio": if asked == 0 { None } else { Some(e.hits as f64 / asked as f64) },
                })
            });
        }
    }
    row
}

fn print_table(rows: &[Row]) {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let cache = r.edge.as_ref().map_or("-".to_owned(), |e| {
                let ratio = e["hit_ratio"]
                    .as_f64()
                    .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0));
                format!(
                    "{} mem {} B, disk {} B, hits {ratio}",
                    e["group"].as_str().unwrap_or_default(),
                    e["memory_bytes"],
                    e["disk_bytes"]
                )
            });
            [
                r.target.clone(),
                r.roles.join(","),
                r.version.clone(),
                match &r.error {
                    Some(e) => format!("{} ({e})", r.health),
                    None => r.health.to_owned(),
                },
                r.uptime_seconds.map_or("-".to_owned(), |s| format!("{s}s")),
                opt(r.queue_depth),
                opt(r.jobs_running),
                cache,
            ]
        })
        .collect();
    let header = [
        "TARGET", "ROLES", "VERSION", "HEALTH", "UPTIME", "QUEUE", "JOBS", "CACHE",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.len());
        }
    }
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// What a `serve` process knows about itself, for `Node.Status`.
pub(super) struct Facts {
    /// The roles it runs.
    pub roles: Vec<&'static str>,
    /// Its backend checks (the same `/readyz` asks).
    pub readiness: Readiness,
    /// The job queue (api and worker roles).
    pub queue: Option<Arc<dyn JobQueue>>,
    /// The workers' reporter, which counts running transcodes (worker role).
    pub reporter: Option<Reporter>,
    /// The edge of the process once started (edge role).
    pub edge: Arc<OnceLock<Arc<Edge>>>,
    /// When the process started.
    pub started: Instant,
}

/// The `Node` service answering from `facts`, accepting `cluster_token`.
pub(super) fn node_service(facts: Facts, cluster_token: Option<&str>) -> NodeService {
    let facts = Arc::new(facts);
    let source: StatusSource = Arc::new(move || {
        let facts = facts.clone();
        Box::pin(async move {
            let report = facts.readiness.report().await;
            let queue_depth = match &facts.queue {
                Some(queue) => queue.depth().await.ok(),
                None => None,
            };
            StatusReply {
                roles: facts.roles.iter().map(|r| (*r).to_owned()).collect(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ready: report.ready,
                failing: report.body["failing"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
                uptime_seconds: facts.started.elapsed().as_secs(),
                queue_depth,
                jobs_running: facts.reporter.as_ref().map(Reporter::jobs_running),
                edge: facts.edge.get().map(|edge| edge.cache_figures()),
            }
        })
    });
    mediahost_grpc::node::node_service(source, cluster_token)
}
