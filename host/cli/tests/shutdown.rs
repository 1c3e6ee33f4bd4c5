//! Graceful shutdown on the real binary: SIGTERM mid-transcode stops promptly, hands the job
//! back, and the restarted server finishes it.

mod common;

use common::{Client, Options, Server, file_body};
use mediahost_testkit::{Clip, generate_clip};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_transcode_releases_the_job_and_a_restart_finishes_it() {
    let mut server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let clip = server.data_path().join("long.mp4");
    // Long enough that the transcode is surely still running when SIGTERM arrives.
    generate_clip(
        &clip,
        &Clip {
            seconds: 90.0,
            ..Clip::default()
        },
    );
    let video = client.create_video("long", Some("long.mp4")).await;
    let id = video["id"].as_str().unwrap().to_owned();
    assert_eq!(
        client
            .put_source(&id, file_body(&clip, true).await)
            .await
            .status(),
        202
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = client
            .get(&format!("/v1/videos/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "processing" {
            break;
        }
        assert!(Instant::now() < deadline, "never started processing: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let it get properly into the encode.
    tokio::time::sleep(Duration::from_millis(800)).await;

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
}
