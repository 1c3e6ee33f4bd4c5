//! Graceful shutdown on the real binary: SIGTERM mid-transcode stops promptly, hands the job
//! back, and the restarted server finishes it.

mod common;

use common::{Client, Options, Server, clip};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_transcode_releases_the_job_and_a_restart_finishes_it() {
    let mut server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    // Long enough that the transcode is surely still running when SIGTERM arrives.
    let long = clip(server.data_path(), "long.mp4", 90.0);
    let id = client.upload("long", "long.mp4", &long).await;

    // Properly into the encode: progress is reported while the worker runs.
    let video = client
        .wait_for(
            &id,
            Duration::from_secs(60),
            Duration::from_millis(100),
            "never reported transcoding progress",
            |v| v["status"] == "processing" && v["progress"]["percent"].as_f64() > Some(0.0),
        )
        .await;
    let percent = video["progress"]["percent"].as_f64().unwrap();
    assert!(percent < 100.0, "{video}");
    assert!(
        video["progress"]["speed"].as_f64().unwrap() > 0.0,
        "{video}"
    );

    let stopping = Instant::now();
    server.restart(Duration::from_secs(10));
    eprintln!("stopped and restarted in {:.2?}", stopping.elapsed());
    assert!(
        server.log().contains("outcome=\"released\""),
        "{}",
        server.log()
    );

    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert!((video["duration_s"].as_f64().unwrap() - 90.0).abs() < 0.5);
    assert_eq!(video["progress"]["percent"], 100.0, "{video}");
}
