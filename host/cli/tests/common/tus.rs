//! A small tus 1.0 client over reqwest for the `tus_*` tests.

use super::{Client, Server};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, RequestBuilder, Response};
use sha2::Digest;
use std::path::PathBuf;
use std::time::Duration;

pub const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// `Upload-Metadata` for these pairs.
pub fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {res:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The (location, video id) of a `POST /v1/uploads` answer, asserting 201 Created.
pub fn created(res: &Response) -> (String, String) {
    assert_eq!(res.status(), 201);
    (header(res, "location"), header(res, "mediahost-video-id"))
}

/// The upload id: the last segment of its location.
pub fn upload_id(location: &str) -> &str {
    location.rsplit('/').next().unwrap()
}

impl Server {
    /// Where the server keeps the bytes of the upload at `location` until it completes.
    pub fn tus_temp(&self, location: &str) -> PathBuf {
        self.data_path().join("tmp/tus").join(upload_id(location))
    }
}

/// A body that sends `bytes` in `chunk`-sized pieces, sleeping `pause` before each.
pub fn slow_body(bytes: Vec<u8>, chunk: usize, pause: Duration) -> reqwest::Body {
    let pieces: Vec<Vec<u8>> = bytes.chunks(chunk).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::io::Error>(piece)
    });
    reqwest::Body::wrap_stream(stream)
}

use futures::StreamExt;

/// A PATCH body that sends `first`, then waits for `gate` before sending `rest`.
pub fn gated_body(
    first: Vec<u8>,
    rest: Vec<u8>,
    gate: tokio::sync::oneshot::Receiver<()>,
) -> reqwest::Body {
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(first) });
    let tail = futures::stream::once(async move {
        let _ = gate.await;
        Ok(rest)
    });
    reqwest::Body::wrap_stream(head.chain(tail))
}

impl Client {
    /// A tus request to `path` with the key and `Tus-Resumable: 1.0.0`.
    pub fn tus(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Tus-Resumable", "1.0.0")
    }

    /// `POST /v1/uploads` with `Upload-Length`, asserting 201; returns (location, video id).
    pub async fn tus_create(&self, length: u64, meta: &[(&str, &str)]) -> (String, String) {
        let res = self
            .tus(Method::POST, "/v1/uploads")
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata(meta))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        assert_eq!(header(&res, "tus-resumable"), "1.0.0");
        (header(&res, "location"), header(&res, "mediahost-video-id"))
    }

    /// A `PATCH` at `offset` with the tus content type, to add a body (and headers) to.
    pub fn tus_patch_request(&self, location: &str, offset: u64) -> RequestBuilder {
        self.tus(Method::PATCH, location)
            .header("Content-Type", OFFSET_STREAM)
            .header("Upload-Offset", offset)
    }

    /// `PATCH` of `bytes` at `offset`.
    pub async fn tus_patch(&self, location: &str, offset: u64, bytes: Vec<u8>) -> Response {
        self.tus_patch_request(location, offset)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Uploads 40 MiB of varied bytes in two PATCHes of 24 and 16 MiB, longer than the
    /// server's durable step (16 MiB), checking each answer; returns the bytes and the video id.
    pub async fn tus_upload_in_long_patches(&self) -> (Vec<u8>, String) {
        let data: Vec<u8> = (0..40 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let (location, video_id) = self
            .tus_create(data.len() as u64, &[("filename", "long.bin")])
            .await;
        let split = 24 * 1024 * 1024;
        for (offset, piece) in [(0, &data[..split]), (split, &data[split..])] {
            let res = self
                .tus_patch(&location, offset as u64, piece.to_vec())
                .await;
            assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
            let end = (offset + piece.len()).to_string();
            assert_eq!(header(&res, "upload-offset"), end);
        }
        (data, video_id)
    }

    /// Starts a PATCH at offset 0 that sends 16 KiB, then holds the upload's lock until the
    /// returned sender fires (or is dropped) and sends 16 KiB more; returns the sender and the
    /// running request.
    pub fn gated_patch(
        &self,
        location: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Response>,
    ) {
        let (open, gate) = tokio::sync::oneshot::channel();
        let req = self.tus_patch_request(location, 0).body(gated_body(
            vec![1; 16 * 1024],
            vec![2; 16 * 1024],
            gate,
        ));
        (open, tokio::spawn(async move { req.send().await.unwrap() }))
    }

    /// Asserts that the upload at `location` is locked by another writer: a PATCH and a
    /// DELETE both answer 409 (the PATCH with `upload_locked`).
    pub async fn assert_locked(&self, location: &str) {
        let res = self.tus_patch(location, 0, vec![9; 1024]).await;
        assert_eq!(res.status(), 409);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upload_locked");
        let res = self.tus(Method::DELETE, location).send().await.unwrap();
        assert_eq!(res.status(), 409);
    }

    /// `HEAD`'s `Upload-Offset`, asserting 200.
    pub async fn tus_offset(&self, location: &str) -> u64 {
        let res = self.tus(Method::HEAD, location).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {location}");
        header(&res, "upload-offset").parse().unwrap()
    }
}
