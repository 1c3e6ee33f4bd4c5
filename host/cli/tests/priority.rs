//! Job priority from the router plugin on the real binary: a video the router ranks higher is
//! transcoded before one it ranks lower, even when uploaded after it.

mod common;

use common::{Client, Options, Server};
use mediahost_testkit::{Clip, build_plugin, generate_clip, repo_root};

#[tokio::test(flavor = "multi_thread")]
async fn the_routers_priority_orders_the_transcodes() {
    // The reference router ranks clips under a minute 10 and longer ones 5.
    let manifest = repo_root().join("plugins/router/plugin.toml");
    let server = Server::start(Options {
        plugins: vec![("router".into(), build_plugin("router"), manifest)],
        ..Options::default()
    });
    let client = Client::new(&server, &server.create_tenant("acme"));
    let dir = server.data_path();
    let clip = |name: &str, clip: Clip| {
        let path = dir.join(name);
        generate_clip(&path, &clip);
        path
    };
    // Keeps the one worker busy while the other two are uploaded.
    let busy = clip(
        "busy.mp4",
        Clip {
            seconds: 8.0,
            ..Clip::default()
        },
    );
    // Long but tiny, so it transcodes quickly once its turn comes.
    let tiny = Clip {
        width: 96,
        height: 54,
        fps: 5,
        ..Clip::default()
    };
    let long = clip(
        "long.mp4",
        Clip {
            seconds: 61.0,
            ..tiny.clone()
        },
    );
    let short = clip(
        "short.mp4",
        Clip {
            seconds: 2.0,
            ..tiny
        },
    );

    let busy = client.upload("busy", "busy.mp4", &busy).await;
    let long = client.upload("long", "long.mp4", &long).await;
    let short = client.upload("short", "short.mp4", &short).await;
    let mut finished = Vec::new();
    for id in [&busy, &long, &short] {
        let video = client.wait_settled(id).await;
        assert_eq!(video["status"], "ready", "{video}");
        finished.push(video["updated_at"].as_str().unwrap().to_owned());
    }
    // Both waited behind the first; the short one, uploaded last, was transcoded first.
    assert!(
        finished[2] < finished[1],
        "short finished at {}, long at {}\n{}",
        finished[2],
        finished[1],
        server.log()
    );
    let metrics = server.metrics().await;
    let deferred = metrics
        .lines()
        .find(|l| l.starts_with("mediahost_jobs_total{outcome=\"deferred\"}"))
        .unwrap_or_else(|| panic!("no deferred transcodes:\n{metrics}"));
    let deferred: f64 = deferred.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(deferred >= 2.0, "{deferred}");
}
