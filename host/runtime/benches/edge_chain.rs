//! Per-request cost of an edge-transform chain (`cargo bench -p mediahost-runtime --bench
//! edge_chain`): `on-request` then `on-response` for one segment request, through chains of 1
//! and 3 copies of the reference `edge-token` plugin, each call on a fresh instance
//! (`instances = "fresh"`) and then in warm instances (`"reused"`, what the plugin's manifest
//! says). The path is one of the plugin's public prefixes, so every plugin answers
//! `continue` and adds its response headers: the cost measured is the plugin round trip itself,
//! not HMAC work.
//!
//! Criterion reports means; after it a plain loop times 10,000 requests per chain and prints
//! percentiles per request and per plugin.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use mediahost_runtime::{PluginHost, RequestAction, RequestHead, ResponseHead};

/// Requests timed per chain for the percentile table.
const SAMPLES: usize = 10_000;
/// Untimed requests first, so the pool's slots and the caches are warm.
const WARMUP: usize = 1_000;

/// A host with `copies` folders of the reference edge-token plugin (named `edge-0`, `edge-1`,
/// ...) with `instances` as given, all public for `/v1/videos` so requests pass without a
/// token.
fn chain(copies: usize, instances: &str) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = mediahost_testkit::build_plugin("edge-token");
    let manifest = std::fs::read_to_string(
        mediahost_testkit::repo_root().join("plugins/edge-token/plugin.toml"),
    )
    .unwrap();
    let mut settings = BTreeMap::new();
    for n in 0..copies {
        let name = format!("edge-{n}");
        let folder = dir.path().join(&name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("plugin.toml"),
            manifest
                .replace("name = \"edge-token\"", &format!("name = \"{name}\""))
                .replace(
                    "instances = \"reused\"",
                    &format!("instances = \"{instances}\""),
                ),
        )
        .unwrap();
        std::fs::copy(&wasm, folder.join("edge_token.wasm")).unwrap();
        settings.insert(
            name,
            BTreeMap::from([
                ("secret".to_owned(), "bench-secret".to_owned()),
                ("public_prefixes".to_owned(), "/v1/videos".to_owned()),
            ]),
        );
    }
    let host = PluginHost::load(dir.path(), &settings).unwrap();
    (dir, host)
}

fn request() -> RequestHead {
    RequestHead {
        method: "GET".into(),
        path: "/v1/videos/0190b6f2-7c1e-7d3a-9a5e-5f1d2c3b4a59/hls/720p/seg_00042.m4s".into(),
        query: None,
        headers: vec![("user-agent".into(), "hls.js".into())],
        client_ip: Some("198.51.100.4".into()),
        tenant: Some("acme".into()),
        received_at: 1_750_000_000,
    }
}

/// One edge request through the chain: `on-request`, then `on-response` of a segment.
fn serve(host: &PluginHost, req: &RequestHead) -> usize {
    let RequestAction::Continue(req) = host.on_request(req).unwrap() else {
        panic!("a public path must pass");
    };
    let head = ResponseHead {
        status: 200,
        headers: vec![("content-type".into(), "video/iso.segment".into())],
    };
    host.on_response(&req, &head, None)
        .unwrap()
        .head
        .headers
        .len()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let chains: Vec<(usize, &str, (tempfile::TempDir, PluginHost))> =
        [(1, "fresh"), (3, "fresh"), (1, "reused"), (3, "reused")]
            .into_iter()
            .map(|(n, instances)| (n, instances, chain(n, instances)))
            .collect();
    let req = request();
    let mut criterion = Criterion::default().configure_from_args();
    for (n, instances, (_, host)) in &chains {
        // Every plugin of the chain ran: each added its headers.
        assert!(serve(host, &req) > 1);
        criterion.bench_function(&format!("edge_chain/{n}_plugins_{instances}"), |b| {
            b.iter(|| black_box(serve(host, &req)))
        });
    }
    criterion.final_summary();

    println!(
        "edge request (on-request + on-response), {SAMPLES} requests per chain after {WARMUP} \
         warm-up requests (µs):"
    );
    println!("| chain | instances | p50 | p90 | p99 | p99.9 | max | p50 per plugin |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (n, instances, (_, host)) in &chains {
        for _ in 0..WARMUP {
            black_box(serve(host, &req));
        }
        let mut times: Vec<f64> = (0..SAMPLES)
            .map(|_| {
                let started = Instant::now();
                black_box(serve(host, &req));
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let p50 = percentile(&times, 0.5);
        println!(
            "| {n} plugin(s) | {instances} | {p50:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            percentile(&times, 0.9),
            percentile(&times, 0.99),
            percentile(&times, 0.999),
            times[times.len() - 1],
            p50 / *n as f64
        );
    }
}
