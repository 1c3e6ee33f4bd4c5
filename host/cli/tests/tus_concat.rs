//! tus concatenation: partial uploads joined by a final upload that completes at once.

mod common;

use common::tus::{created, header, metadata, sha256_hex};
use common::{Client, Options, Server};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn two_partials_make_a_final_upload_that_transcodes() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let other = Client::new(&server, &server.create_tenant("other"));
    let clip = std::fs::read(common::clip(server.data_path(), "clip.mp4", 2.0)).unwrap();
    let half = clip.len() / 2;

    let mut partials = Vec::new();
    for piece in [&clip[..half], &clip[half..]] {
        let res = client
            .tus(Method::POST, "/v1/uploads")
            .header("Upload-Concat", "partial")
            .header("Upload-Length", piece.len())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert!(
            res.headers().get("mediahost-video-id").is_none(),
            "partials have no video"
        );
        let location = header(&res, "location");
        let head = client.tus(Method::HEAD, &location).send().await.unwrap();
        assert_eq!(header(&head, "upload-concat"), "partial");
        partials.push((location, piece.to_vec()));
    }

    // A final naming an incomplete partial is refused.
    let concat = format!("final;{} {}", partials[0].0, partials[1].0);
    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Concat", &concat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    for (location, bytes) in &partials {
        let res = client.tus_patch(location, 0, bytes.clone()).await;
        assert_eq!(res.status(), 204);
    }
    // Another tenant cannot use them.
    let res = other
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Concat", &concat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let res = client
        .tus(Method::POST, "/v1/uploads")
        .header("Upload-Concat", &concat)
        .header("Upload-Metadata", metadata(&[("filename", "joined.mp4")]))
        .send()
        .await
        .unwrap();
    let (location, video_id) = created(&res);
    let head = client.tus(Method::HEAD, &location).send().await.unwrap();
    assert_eq!(header(&head, "upload-offset"), clip.len().to_string());
    assert_eq!(header(&head, "upload-length"), clip.len().to_string());
    // A final upload takes no PATCH.
    let res = client.tus_patch(&location, clip.len() as u64, vec![]).await;
    assert_eq!(res.status(), 403);

    let video = client.wait_settled(&video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["sha256"], sha256_hex(&clip));
    assert_eq!(video["filename"], "joined.mp4");
}
