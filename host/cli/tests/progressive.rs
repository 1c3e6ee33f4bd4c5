//! Progressive playback on the real binary: while a video is still `processing`, its master
//! playlist and the first segment of every rendition are served, the media playlists are
//! growing `EVENT` playlists a player (ffprobe) can read, and nothing caches them as final;
//! once `ready` they are `VOD` playlists with `EXT-X-ENDLIST` over the very same segments.

mod common;

use common::edge::{join, uris};
use common::{Client, Options, Server};
use mediahost_testkit::{Clip, generate_clip};
use std::time::Duration;

/// `GET url` with the client's key: (status, Cache-Control, body).
async fn get(client: &Client, url: &str) -> (u16, String, Vec<u8>) {
    let res = client
        .http
        .get(url)
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let cache_control = res
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache_control, res.bytes().await.unwrap().to_vec())
}

/// `GET url` with the key, asserting 200; the body as text and its Cache-Control.
async fn text(client: &Client, url: &str) -> (String, String) {
    let (status, cache_control, body) = get(client, url).await;
    assert_eq!(status, 200, "GET {url}");
    (String::from_utf8(body).unwrap(), cache_control)
}

/// The `URI="…"` of a media playlist's `EXT-X-MAP` (its init segment).
fn init_uri(playlist: &str) -> String {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-MAP:"))
        .unwrap_or_else(|| panic!("no EXT-X-MAP in\n{playlist}"));
    line.split('"').nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn playback_starts_while_processing_and_playlists_turn_vod_at_the_end() {
    let server = Server::start(Options::default());
    let client = Client::new(&server, &server.create_tenant("acme"));
    // 480p gives two video renditions (480p, 360p) and the audio-only one; 48 s keeps the
    // transcode running well after its first segments are stored.
    let source = server.data_path().join("long.mp4");
    generate_clip(
        &source,
        &Clip {
            seconds: 48.0,
            width: 854,
            height: 480,
            ..Clip::default()
        },
    );
    let id = client.upload("long", "long.mp4", &source).await;

    let video = client
        .wait_for(
            &id,
            Duration::from_secs(60),
            Duration::from_millis(50),
            "the video never became playable",
            |v| v["playable"] == true || v["status"] == "ready" || v["status"] == "failed",
        )
        .await;
    assert_eq!(video["status"], "processing", "{video}");
    assert_eq!(video["playable"], true);
    assert!(video["playback"]["signed_hls"].is_string(), "{video}");
    // DASH and the thumbnails come with the end of the job.
    assert!(video["playback"]["dash"].is_null(), "{video}");
    assert!(video["playback"]["poster"].is_null(), "{video}");
    let names: Vec<&str> = video["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["480p", "360p", "audio"], "{video}");

    // While processing: the master and, per rendition, its EVENT playlist, init segment and
    // first segment, none of them cached as final.
    let master_url = video["playback"]["hls"].as_str().unwrap().to_owned();
    let (master, cache_control) = text(&client, &master_url).await;
    assert_eq!(cache_control, "no-cache");
    let media = uris(&master);
    assert_eq!(
        media,
        ["480p/index.m3u8", "360p/index.m3u8", "audio/index.m3u8"],
        "{master}"
    );
    let mut early = Vec::new();
    for playlist in &media {
        let url = join(&master_url, playlist);
        let (text, cache_control) = text(&client, &url).await;
        assert_eq!(cache_control, "no-cache", "{url}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        let segments = uris(&text);
        assert!(!segments.is_empty(), "{text}");
        for file in [init_uri(&text), segments[0].clone()] {
            let file_url = join(&url, &file);
            let (status, cache_control, bytes) = get(&client, &file_url).await;
            assert_eq!(status, 200, "{file_url}");
            assert!(cache_control.contains("immutable"), "{cache_control}");
            assert!(!bytes.is_empty());
            early.push((file_url, bytes));
        }
    }
    // A player reads the partial stream: every rendition, H.264 and AAC.
    let headers = format!("Authorization: Bearer {}\r\n", client.key);
    let probe_url = master_url.clone();
    let streams = tokio::task::spawn_blocking(move || {
        mediahost_testkit::ffprobe(
            &probe_url,
            Some(&headers),
            &[
                "-show_entries",
                "stream=codec_name,height",
                "-of",
                "csv=p=0",
            ],
        )
    })
    .await
    .unwrap();
    for wanted in ["h264,480", "h264,360", "aac"] {
        assert!(
            streams.lines().any(|l| l.trim_end_matches(',') == wanted),
            "{wanted} not in\n{streams}"
        );
    }

    // At the end: VOD playlists over the same segments, cacheable.
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!(video["playable"], true);
    assert!(video["playback"]["dash"].is_string(), "{video}");
    for playlist in &media {
        let url = join(&master_url, playlist);
        let (text, cache_control) = text(&client, &url).await;
        assert_eq!(cache_control, "private, max-age=60", "{url}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(uris(&text).len() >= 10, "48 s in ~4 s segments: {text}");
    }
    for (url, bytes) in early {
        let (status, _, now) = get(&client, &url).await;
        assert_eq!(status, 200, "{url}");
        assert!(now == bytes, "{url} changed after it was first served");
    }

    let metrics = server.metrics().await;
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mediahost_time_to_first_segment_seconds_count "))
        .unwrap_or_else(|| panic!("no time-to-first-segment histogram in\n{metrics}"));
    assert_eq!(count.trim(), "1", "one video became playable once");
}
