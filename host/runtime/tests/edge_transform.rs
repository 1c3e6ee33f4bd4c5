//! The `edge-transform` world end to end: the reference `edge-token` plugin built from
//! `plugins/edge-token`, loaded from a plugin folder, called through `PluginHost`.
//!
//! Tokens are made here independently of the plugin (HMAC-SHA256 written out over `sha2`), so a
//! change of the token format in the plugin shows up as a failure.

mod support;

use mediahost_runtime::{
    PluginFailure, PluginHost, RequestAction, RequestHead, Response, ResponseHead, World,
};
use sha2::{Digest, Sha256};
use support::host_with;

const SECRET: &str = "correct horse battery staple";
const NOW: u64 = 1_750_000_000;
const MASTER: &str = "/v1/videos/abc/hls/master.m3u8";

/// HMAC-SHA256 (RFC 2104) over `sha2`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A token for the scope `scope` (the path up to and including `/hls/`) valid until `exp`.
fn token(secret: &str, scope: &str, exp: u64) -> String {
    let sig = hmac_sha256(secret.as_bytes(), format!("{scope}\n{exp}").as_bytes());
    let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("{exp}.{hex}")
}

fn valid_token() -> String {
    token(SECRET, "/v1/videos/abc/hls/", NOW + 300)
}

fn request(path: &str, query: Option<&str>) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        path: path.into(),
        query: query.map(Into::into),
        headers: vec![("user-agent".into(), "hls.js".into())],
        client_ip: Some("198.51.100.4".into()),
        tenant: Some("acme".into()),
        received_at: NOW,
    }
}

fn edge() -> (tempfile::TempDir, PluginHost) {
    host_with(
        "edge-token",
        &[
            ("secret", SECRET),
            (
                "add_headers",
                "X-Served-By: mediahost; X-Frame-Options: DENY",
            ),
        ],
    )
}

fn forbidden(action: RequestAction) -> Response {
    match action {
        RequestAction::Respond(r) => r,
        RequestAction::Continue(head) => panic!("expected a 403, the request went on: {head:?}"),
    }
}

fn forbidden_json(message: &str) -> Response {
    Response {
        status: 403,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: format!(r#"{{"error":{{"code":"forbidden","message":"{message}"}}}}"#).into_bytes(),
    }
}

#[test]
fn loads_as_an_edge_transform() {
    let (_dir, host) = edge();
    let p = &host.plugins()[0];
    let v = p.serving.as_ref().unwrap();
    assert_eq!(
        (p.name.as_str(), v.world),
        ("edge-token", World::EdgeTransform)
    );
    assert_eq!(v.limits.timeout_ms, 25);
}

#[test]
fn a_valid_token_lets_the_request_through_unchanged() {
    let (_dir, host) = edge();
    let query = format!("token={}", valid_token());
    for path in [MASTER, "/v1/videos/abc/hls/720p/seg_00001.m4s"] {
        let req = request(path, Some(&query));
        assert_eq!(
            host.on_request(&req),
            Ok(RequestAction::Continue(req.clone()))
        );
    }
    // Valid through its last second.
    let mut req = request(MASTER, Some(&query));
    req.received_at = NOW + 300;
    assert!(matches!(
        host.on_request(&req),
        Ok(RequestAction::Continue(_))
    ));
}

#[test]
fn missing_forged_expired_and_foreign_tokens_get_403_json() {
    let (_dir, host) = edge();
    let cases = [
        (request(MASTER, None), "a token is required"),
        (
            request(MASTER, Some("token=garbage")),
            "the token is malformed",
        ),
        (
            request(
                MASTER,
                Some(&format!(
                    "token={}",
                    token("guessed", "/v1/videos/abc/hls/", NOW + 300)
                )),
            ),
            "the token is not valid for this path",
        ),
        (
            request(
                "/v1/videos/xyz/hls/master.m3u8",
                Some(&format!("token={}", valid_token())),
            ),
            "the token is not valid for this path",
        ),
        (
            request(
                MASTER,
                Some(&format!(
                    "token={}",
                    token(SECRET, "/v1/videos/abc/hls/", NOW - 1)
                )),
            ),
            "the token has expired",
        ),
        (
            request(
                "/v1/videos/abc/hls/../../xyz/hls/master.m3u8",
                Some(&format!("token={}", valid_token())),
            ),
            "the path has dot segments",
        ),
    ];
    for (req, message) in cases {
        let resp = forbidden(host.on_request(&req).unwrap());
        assert_eq!(resp, forbidden_json(message), "{req:?}");
    }
}

#[test]
fn public_prefixes_skip_the_token_check() {
    let (_dir, host) = host_with(
        "edge-token",
        &[
            ("secret", SECRET),
            ("public_prefixes", "/v1/public/,/healthz"),
        ],
    );
    let req = request("/v1/public/poster.jpg", None);
    assert_eq!(
        host.on_request(&req),
        Ok(RequestAction::Continue(req.clone()))
    );
    assert!(matches!(
        host.on_request(&request(MASTER, None)),
        Ok(RequestAction::Respond(_))
    ));
}

#[test]
fn responses_get_the_configured_headers() {
    let (_dir, host) = edge();
    let req = request(
        "/v1/videos/abc/hls/720p/seg_00001.m4s",
        Some(&format!("token={}", valid_token())),
    );
    let head = ResponseHead {
        status: 200,
        headers: vec![
            ("content-type".into(), "video/iso.segment".into()),
            ("x-frame-options".into(), "SAMEORIGIN".into()),
        ],
    };
    let update = host.on_response(&req, &head, None).unwrap();
    assert_eq!(
        update.head,
        ResponseHead {
            status: 200,
            headers: vec![
                ("content-type".into(), "video/iso.segment".into()),
                ("x-served-by".into(), "mediahost".into()),
                ("x-frame-options".into(), "DENY".into()),
            ],
        }
    );
    assert_eq!(update.body, None);
}

#[test]
fn playlists_carry_the_token_on_every_uri() {
    let (_dir, host) = edge();
    let t = valid_token();
    let req = request(MASTER, Some(&format!("token={t}")));
    let master = "#EXTM3U\n\
                  #EXT-X-VERSION:7\n\
                  #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",URI=\"audio/index.m3u8\"\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=2928000,RESOLUTION=1280x720,AUDIO=\"aud\"\n\
                  720p/index.m3u8\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=896000,RESOLUTION=640x360,AUDIO=\"aud\"\n\
                  360p/index.m3u8\n";
    let head = ResponseHead {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                "application/vnd.apple.mpegurl".into(),
            ),
            ("content-length".into(), master.len().to_string()),
        ],
    };
    let update = host
        .on_response(&req, &head, Some(master.as_bytes()))
        .unwrap();
    let expected = format!(
        "#EXTM3U\n\
         #EXT-X-VERSION:7\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",URI=\"audio/index.m3u8?token={t}\"\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2928000,RESOLUTION=1280x720,AUDIO=\"aud\"\n\
         720p/index.m3u8?token={t}\n\
         #EXT-X-STREAM-INF:BANDWIDTH=896000,RESOLUTION=640x360,AUDIO=\"aud\"\n\
         360p/index.m3u8?token={t}\n"
    );
    assert_eq!(
        String::from_utf8(update.body.clone().unwrap()).unwrap(),
        expected
    );
    assert_eq!(
        update.head.headers[..2],
        [
            (
                "content-type".to_owned(),
                "application/vnd.apple.mpegurl".to_owned()
            ),
            ("content-length".to_owned(), expected.len().to_string()),
        ]
    );

    let media_req = request(
        "/v1/videos/abc/hls/720p/index.m3u8",
        Some(&format!("token={t}")),
    );
    let media = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n\
                 #EXTINF:4.000,\nseg_00001.m4s\n#EXTINF:2.500,\nseg_00002.m4s\n#EXT-X-ENDLIST\n";
    let head = ResponseHead {
        status: 200,
        headers: vec![],
    };
    let update = host
        .on_response(&media_req, &head, Some(media.as_bytes()))
        .unwrap();
    assert_eq!(
        String::from_utf8(update.body.unwrap()).unwrap(),
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4?token={t}\"\n\
             #EXTINF:4.000,\nseg_00001.m4s?token={t}\n#EXTINF:2.500,\nseg_00002.m4s?token={t}\n#EXT-X-ENDLIST\n"
        )
    );
    // A segment body is never touched.
    let seg = request(
        "/v1/videos/abc/hls/720p/seg_00001.m4s",
        Some(&format!("token={t}")),
    );
    assert_eq!(
        host.on_response(&seg, &head, Some(b"\0\0\0\x18styp"))
            .unwrap()
            .body,
        None
    );
}

#[test]
fn a_missing_secret_fails_the_call() {
    let (_dir, host) = host_with("edge-token", &[]);
    let err = host.on_request(&request(MASTER, None)).unwrap_err();
    assert!(matches!(err.cause, PluginFailure::Trap { .. }), "{err}");
    assert!(err.to_string().contains("secret is not set"), "{err}");
}

#[test]
fn without_edge_plugins_requests_pass() {
    let dir = tempfile::tempdir().unwrap();
    support::install(dir.path(), "router");
    let host = PluginHost::load(dir.path(), &support::Settings::new()).unwrap();
    let req = request(MASTER, None);
    assert_eq!(
        host.on_request(&req),
        Ok(RequestAction::Continue(req.clone()))
    );
}
