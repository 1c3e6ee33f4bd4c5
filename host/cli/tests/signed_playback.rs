//! Signed playback URLs on the real binary: `playback.signed_hls` plays without a key, every
//! playlist carries the signature on to what it names, and expired, forged, another video's
//! and rotated signatures are refused with 403 `invalid_signature`.

mod common;

use common::{Client, Options, Server};
use hmac::{Hmac, Mac};
use std::time::{SystemTime, UNIX_EPOCH};

/// The documented scheme: hex HMAC-SHA256 of `<video id>/<exp>` with the tenant's secret.
fn sign(secret: &str, id: &str, exp: u64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}/{exp}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `mediahost tenant playback-secret NAME [--rotate]`: the secret is the last line.
fn playback_secret(server: &Server, tenant: &str, rotate: bool) -> String {
    let mut cmd = server.command();
    cmd.args(["tenant", "playback-secret", tenant, "--data-dir"])
        .arg(server.data_path());
    if rotate {
        cmd.arg("--rotate");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// 403 `invalid_signature`; returns the message.
async fn refused(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature", "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// The URI lines of a playlist (not tags, not blank).
fn uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_urls_play_without_a_key_and_bad_signatures_are_refused() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    let video = client.ready_clip(server.data_path()).await;
    let id = video["id"].as_str().unwrap().to_owned();
    let signed = video["playback"]["signed_hls"].as_str().unwrap().to_owned();
    let (master_url, query) = signed.split_once('?').unwrap();
    assert_eq!(master_url, video["playback"]["hls"].as_str().unwrap());
    let exp: u64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        exp > now() + 3000 && exp <= now() + 3600,
        "default TTL is 3600 s: {exp}"
    );

    // Valid: the master playlist, a media playlist and a segment, all without a key.
    let anon = reqwest::Client::new();
    let master = anon.get(&signed).send().await.unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["cache-control"], "public, max-age=60");
    let master = master.text().await.unwrap();
    let variants = uris(&master);
    assert!(!variants.is_empty(), "{master}");
    for uri in &variants {
        assert!(
            uri.ends_with(&format!("?{query}")),
            "{uri} lacks the signature"
        );
    }
    let base = master_url.trim_end_matches("master.m3u8");
    let media_url = format!("{base}{}", variants[0]);
    let media = anon.get(&media_url).send().await.unwrap();
    assert_eq!(media.status(), 200);
    let media = media.text().await.unwrap();
    assert!(
        media.contains(&format!(".mp4?{query}\"")),
        "EXT-X-MAP URI signed: {media}"
    );
    let segments = uris(&media);
    assert!(!segments.is_empty());
    assert!(segments.iter().all(|s| s.ends_with(&format!("?{query}"))));
    let dir = media_url[..media_url.rfind('/').unwrap() + 1].to_owned();
    let segment_url = format!("{dir}{}", segments[0]);
    let segment = anon.get(&segment_url).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(
        segment.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let segment = segment.bytes().await.unwrap();

    // The tenant key still works, privately, and gives the same bytes.
    let unsigned_segment = segment_url.split_once('?').unwrap().0;
    let keyed = client
        .http
        .get(unsigned_segment)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    assert_eq!(
        keyed.headers()["cache-control"],
        "private, max-age=31536000, immutable"
    );
    assert_eq!(keyed.bytes().await.unwrap(), segment);
    // Neither key nor signature: 401 as before.
    assert_eq!(
        anon.get(unsigned_segment).send().await.unwrap().status(),
        401
    );

    // Forged: one hex digit changed.
    let last = signed.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &signed[..signed.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let message = refused(anon.get(&forged).send().await.unwrap()).await;
    assert!(message.contains("not valid for this video"), "{message}");
    // The expiry moved without re-signing.
    let moved = signed.replace(&format!("exp={exp}"), &format!("exp={}", exp + 1));
    let message = refused(anon.get(&moved).send().await.unwrap()).await;
    assert!(message.contains("not valid for this video"), "{message}");
    // Another video's signature (same tenant).
    let other = client.create_video("other", None).await;
    let other_id = other["id"].as_str().unwrap();
    assert!(other["playback"]["signed_hls"].is_null());
    let message = refused(
        anon.get(server.url(&format!("/v1/videos/{other_id}/hls/master.m3u8?{query}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(message.contains("not valid for this video"), "{message}");
    // Half a signature.
    let message = refused(
        anon.get(format!("{master_url}?exp={exp}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(message.contains("both `exp` and `sig`"), "{message}");

    // Signed by hand with the tenant's secret: valid in the future, refused once past.
    let secret = playback_secret(&server, "acme", false);
    let future = now() + 60;
    let own = format!(
        "{master_url}?exp={future}&sig={}",
        sign(&secret, &id, future)
    );
    assert_eq!(anon.get(&own).send().await.unwrap().status(), 200);
    let past = now() - 10;
    let expired = format!("{master_url}?exp={past}&sig={}", sign(&secret, &id, past));
    let message = refused(anon.get(&expired).send().await.unwrap()).await;
    assert!(message.contains("expired"), "{message}");

    // Rotating the secret invalidates every URL signed before.
    let rotated = playback_secret(&server, "acme", true);
    assert_ne!(rotated, secret);
    let message = refused(anon.get(&signed).send().await.unwrap()).await;
    assert!(message.contains("not valid for this video"), "{message}");
    let fresh = client.video(&id).await["playback"]["signed_hls"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(anon.get(&fresh).send().await.unwrap().status(), 200);
}
