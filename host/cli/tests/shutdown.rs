//! Graceful shutdown on the real binary: SIGTERM mid-transcode stops promptly, hands the job
//! back, and the restarted server finishes it; SIGTERM during a stalled upload cuts it after
//! the grace period, and the client resumes from its durable offset.

mod common;

use common::tus::{OFFSET_STREAM, created, header, sha256_hex};
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

/// SIGTERM while a tus PATCH is stalled mid-body: the server stops accepting at once, cuts the
/// PATCH after `shutdown_grace_seconds` instead of waiting on it forever, and exits cleanly;
/// after the restart HEAD reports a durable offset within what was sent, and the client
/// finishes the upload from there with the file's sha256.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cuts_a_stalled_upload_after_the_grace_period_and_it_resumes() {
    let mut server = Server::start(Options {
        top_level: "shutdown_grace_seconds = 2".into(),
        config: "[tus]\nlock_seconds = 3\n".into(),
        ..Options::default()
    });
    let key = server.create_tenant("acme");
    let http = reqwest::Client::new();
    let file: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let tus = |request: reqwest::RequestBuilder| {
        request.bearer_auth(&key).header("Tus-Resumable", "1.0.0")
    };
    let res = tus(http.post(server.url("/v1/uploads")))
        .header("Upload-Length", file.len())
        .send()
        .await
        .unwrap();
    let (location, id) = created(&res);
    let upload = server.url(&location);

    // Half the file in pieces a few hundred ms apart, then the body stalls, held open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }));
    let patch = tokio::spawn(
        tus(http.patch(&upload))
            .header("Content-Type", OFFSET_STREAM)
            .header("Upload-Offset", 0)
            .body(body)
            .send(),
    );
    let half = file.len() / 2;
    for piece in file[..half].chunks(half / 4) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let head_offset = || async {
        let res = tus(http.head(&upload)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        header(&res, "upload-offset").parse::<usize>().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while head_offset().await == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing of the PATCH became durable"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without the grace period the stalled PATCH would keep the process alive for good.
    let stopping = Instant::now();
    server.restart(Duration::from_secs(15));
    let stopped_in = stopping.elapsed();
    assert!(
        server
            .log()
            .contains("still running after shutdown_grace_seconds"),
        "{}",
        server.log()
    );
    eprintln!("stopped (grace 2 s) and restarted in {stopped_in:.2?}");
    drop(tx);
    let cut = patch.await.unwrap();
    assert!(
        !matches!(&cut, Ok(res) if res.status() == 204),
        "the cut PATCH cannot have completed: {cut:?}"
    );

    // Resume where the restarted server says, once the cut PATCH's lock has lapsed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let offset = head_offset().await;
        assert!(offset > 0 && offset <= half, "durable offset {offset}");
        let sent = tus(http.patch(&upload))
            .header("Content-Type", OFFSET_STREAM)
            .header("Upload-Offset", offset)
            .body(file[offset..].to_vec())
            .send()
            .await;
        match sent {
            Ok(res) if res.status() == 204 => break,
            Ok(res) => assert_eq!(res.status(), 409, "{}", res.text().await.unwrap()),
            // Refused (409) before the body was sent: the server closes the connection, so
            // the client may see the broken pipe instead of the answer.
            Err(e) => assert!(e.is_request(), "{e}"),
        }
        assert!(Instant::now() < deadline, "the upload stayed locked");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let video = Client::new(&server, &key).video(&id).await;
    assert_eq!(video["sha256"], sha256_hex(&file), "{video}");
}
