//! DASH on the real binary: `GET /v1/videos/{id}/dash/manifest.mpd` describes the same CMAF
//! segments as the HLS playlists (ffprobe plays every rendition through it over HTTP, and its
//! timelines match the media playlists segment for segment), with the playback rules of HLS:
//! key or signed URL, ETag/304, Cache-Control, and caching at the edge.

mod common;

use common::{Client, Options, Server};

/// Video renditions of a 854x480 source under the default ladder.
const SIZES: [(u64, u64); 2] = [(854, 480), (640, 360)];
/// Every rendition of it: the video ones, then the audio-only one (no picture).
const RENDITIONS: [(&str, u64, u64); 3] = [("480p", 854, 480), ("360p", 640, 360), ("audio", 0, 0)];

/// A ready 3.5 s 854x480 video cut into 1 s segments (so the timeline has repeats and a
/// shorter last segment); returns the client and the video.
async fn ready_video(server: &Server) -> (Client, serde_json::Value) {
    let client = Client::new(server, &server.create_tenant("acme"));
    let clip = server.data_path().join("clip.mp4");
    mediahost_testkit::generate_clip(
        &clip,
        &mediahost_testkit::Clip {
            seconds: 3.5,
            width: 854,
            height: 480,
            ..mediahost_testkit::Clip::default()
        },
    );
    let id = client.upload("dash", "clip.mp4", &clip).await;
    let video = client.wait_settled(&id).await;
    assert_eq!(video["status"], "ready", "{video}");
    (client, video)
}

fn server() -> Server {
    Server::start(Options {
        config: "[transcode]\nsegment_seconds = 1\n".into(),
        ..Options::default()
    })
}

/// `(codec_type, width, height)` of every stream ffprobe finds at `url`, sending `headers`.
fn ffprobe_streams(url: &str, headers: Option<&str>) -> Vec<(String, u64, u64)> {
    let out = mediahost_testkit::ffprobe(
        url,
        headers,
        &[
            "-show_entries",
            "stream=codec_type,width,height",
            "-of",
            "json",
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_owned(),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// `(variant_bitrate, ["codec_type:codec_name", …])` of every program ffprobe finds at `url`:
/// one per variant of an HLS master playlist.
fn ffprobe_programs(url: &str, headers: Option<&str>) -> Vec<(u64, Vec<String>)> {
    let out = mediahost_testkit::ffprobe(
        url,
        headers,
        &[
            "-show_entries",
            "program_tags=variant_bitrate:program_stream=codec_type,codec_name",
            "-of",
            "json",
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let streams = p["streams"].as_array().unwrap().iter();
            (
                p["tags"]["variant_bitrate"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                streams.map(stream_kind).collect(),
            )
        })
        .collect()
}

/// `codec_type:codec_name` of a stream in ffprobe's JSON.
fn stream_kind(stream: &serde_json::Value) -> String {
    let field = |name: &str| stream[name].as_str().unwrap_or_default().to_owned();
    format!("{}:{}", field("codec_type"), field("codec_name"))
}

/// The video sizes among `streams`, sorted largest first, and whether audio was found.
fn video_sizes(streams: &[(String, u64, u64)]) -> (Vec<(u64, u64)>, bool) {
    let mut sizes: Vec<(u64, u64)> = streams
        .iter()
        .filter(|(kind, _, _)| kind == "video")
        .map(|(_, w, h)| (*w, *h))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    (sizes, streams.iter().any(|(kind, _, _)| kind == "audio"))
}

/// The value of attribute `name` in the first tag of `xml`.
fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let tag = &xml[..xml.find('>')?];
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// One `Representation` of an MPD: id, size, template and the segment durations (seconds)
/// its timeline spells.
#[derive(Debug)]
struct Representation {
    id: String,
    size: (u64, u64),
    media: String,
    initialization: String,
    start_number: u64,
    durations: Vec<f64>,
}

fn representations(mpd: &str) -> Vec<Representation> {
    mpd.split("<Representation ")
        .skip(1)
        .map(|chunk| {
            let chunk = format!(" {chunk}");
            let template = &chunk[chunk.find("<SegmentTemplate").unwrap()..];
            let timescale: f64 = attr(template, "timescale").unwrap().parse().unwrap();
            let mut durations = Vec::new();
            for s in template.split("<S ").skip(1) {
                let s = format!(" {s}");
                let d: f64 = attr(&s, "d").unwrap().parse().unwrap();
                let r: usize = attr(&s, "r").map_or(0, |r| r.parse().unwrap());
                durations.extend(std::iter::repeat_n(d / timescale, r + 1));
            }
            Representation {
                id: attr(&chunk, "id").unwrap().to_owned(),
                // The audio-only representation has no picture size.
                size: (
                    attr(&chunk, "width").map_or(0, |w| w.parse().unwrap()),
                    attr(&chunk, "height").map_or(0, |h| h.parse().unwrap()),
                ),
                media: attr(template, "media").unwrap().to_owned(),
                initialization: attr(template, "initialization").unwrap().to_owned(),
                start_number: attr(template, "startNumber").unwrap().parse().unwrap(),
                durations,
            }
        })
        .collect()
}

/// `(uri, EXTINF seconds)` of every segment of an HLS media playlist.
fn media_segments(playlist: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut pending = None;
    for line in playlist.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = rest.split(',').next().map(|d| d.parse::<f64>().unwrap());
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push((line.to_owned(), pending.take().unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mpd_plays_every_rendition_and_matches_the_hls_playlists() {
    let server = server();
    let (client, video) = ready_video(&server).await;
    let id = video["id"].as_str().unwrap();
    let dash = video["playback"]["dash"].as_str().unwrap().to_owned();
    assert_eq!(
        dash,
        server.url(&format!("/v1/videos/{id}/dash/manifest.mpd"))
    );
    let renditions = video["renditions"].as_array().unwrap();
    let listed: Vec<(&str, u64, u64)> = renditions
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["width"].as_u64().unwrap(),
                r["height"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, RENDITIONS);

    // Served like a playlist: its content type, private short caching, validators.
    let res = client
        .get(&format!("/v1/videos/{id}/dash/manifest.mpd"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/dash+xml");
    assert_eq!(headers["cache-control"], "private, max-age=60");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let mpd = res.text().await.unwrap();
    let not_modified = client
        .get(&format!("/v1/videos/{id}/dash/manifest.mpd"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let anonymous = reqwest::get(&dash).await.unwrap();
    assert_eq!(anonymous.status(), 401, "neither key nor signature");

    assert!(mpd.contains(r#"type="static""#), "{mpd}");
    assert!(
        mpd.contains("urn:mpeg:dash:profile:isoff-live:2011"),
        "{mpd}"
    );
    assert!(mpd.contains("<BaseURL>../hls/</BaseURL>"), "{mpd}");
    let reps = representations(&mpd);
    assert_eq!(
        reps.iter()
            .map(|r| (r.id.as_str(), r.size.0, r.size.1))
            .collect::<Vec<_>>(),
        RENDITIONS,
        "{mpd}"
    );
    // The audio-only representation is an audio set of its own, after the video set.
    let audio_set = mpd.split("<AdaptationSet ").nth(2).unwrap_or_default();
    assert!(
        audio_set.starts_with(r#"id="1" contentType="audio" mimeType="audio/mp4""#)
            && audio_set.contains(r#"<Representation id="audio" "#),
        "{mpd}"
    );
    let mut total = 0.0f64;
    for (rep, rendition) in reps.iter().zip(renditions) {
        let name = rendition["name"].as_str().unwrap();
        assert_eq!(rep.id, name);
        assert_eq!(rep.initialization, format!("{name}/init.mp4"));
        assert_eq!(rep.media, format!("{name}/seg_$Number%05d$.m4s"));
        let codecs = rendition["codecs"].as_str().unwrap();
        assert!(
            mpd.contains(&format!(r#"codecs="{codecs}""#)),
            "{codecs}: {mpd}"
        );
        if name == "audio" {
            assert_eq!(codecs, "mp4a.40.2");
        } else {
            assert!(
                codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
                "{codecs}"
            );
        }

        // Segment for segment what the HLS media playlist says.
        let playlist = client
            .text(&format!("/v1/videos/{id}/hls/{name}/index.m3u8"))
            .await;
        let segments = media_segments(&playlist);
        assert_eq!(segments.len(), 4, "3.5 s in 1 s segments: {playlist}");
        assert_eq!(rep.durations.len(), segments.len(), "{mpd}\n{playlist}");
        for (i, ((uri, extinf), d)) in segments.iter().zip(&rep.durations).enumerate() {
            let number = rep.start_number + i as u64;
            assert_eq!(uri, &format!("seg_{number:05}.m4s"));
            assert!((extinf - d).abs() < 1e-3, "segment {i}: {extinf} vs {d}");
        }
        total = total.max(rep.durations.iter().sum());
        // The template resolves (BaseURL ../hls/ from …/dash/) to the HLS segment route.
        let first = rep
            .media
            .replace("$Number%05d$", &format!("{:05}", rep.start_number));
        let segment = client
            .get(&format!("/v1/videos/{id}/hls/{first}"))
            .send()
            .await
            .unwrap();
        assert_eq!(segment.status(), 200);
        assert_eq!(segment.headers()["content-type"], "video/iso.segment");
    }
    // The video renditions are cut on the same frames (their ends may differ by the last
    // frames of sound), the audio-only one where they are.
    let cuts = reps[0].durations.len() - 1;
    assert_eq!(
        reps[0].durations[..cuts],
        reps[1].durations[..cuts],
        "{mpd}"
    );
    mediahost_testkit::assert_segments_aligned(&reps[0].durations, &reps[2].durations);
    assert!((total - 3.5).abs() < 0.3, "{total}");
    assert!(
        mpd.contains(&format!(r#"mediaPresentationDuration="PT{total:.3}S""#)),
        "{total}: {mpd}"
    );

    // A player reads every rendition through the manifest over HTTP.
    let headers = format!("Authorization: Bearer {}\r\n", client.key);
    let streams = tokio::task::spawn_blocking(move || ffprobe_streams(&dash, Some(&headers)))
        .await
        .unwrap();
    let (sizes, audio) = video_sizes(&streams);
    assert_eq!(sizes, SIZES, "{streams:?}");
    assert!(audio, "{streams:?}");

    // The audio rendition alone, as a player falling back to it reads it. From the master
    // playlist: its variant holds one AAC stream; the video variants H.264 and AAC, as before.
    let master = video["playback"]["hls"].as_str().unwrap().to_owned();
    let headers = format!("Authorization: Bearer {}\r\n", client.key);
    let programs = tokio::task::spawn_blocking(move || ffprobe_programs(&master, Some(&headers)))
        .await
        .unwrap();
    let muxed = || vec!["video:h264".to_owned(), "audio:aac".to_owned()];
    let bandwidth = |i: usize| renditions[i]["bandwidth"].as_u64().unwrap();
    assert_eq!(
        programs,
        [
            (bandwidth(0), muxed()),
            (bandwidth(1), muxed()),
            (bandwidth(2), vec!["audio:aac".to_owned()])
        ]
    );
    // From the MPD (signed, so ffprobe needs no key): the audio representation's init segment
    // and every segment its template numbers hold one AAC stream, and nothing else.
    let signed = video["playback"]["signed_dash"].as_str().unwrap();
    let signed_mpd = reqwest::get(signed).await.unwrap().text().await.unwrap();
    let rep = representations(&signed_mpd)
        .into_iter()
        .find(|r| r.id == "audio")
        .unwrap();
    // `<BaseURL>../hls/</BaseURL>` from …/dash/manifest.mpd.
    let base = format!("{}/hls/", signed.split_once("/dash/").unwrap().0);
    let numbered = (0..rep.durations.len() as u64).map(|i| {
        rep.media
            .replace("$Number%05d$", &format!("{:05}", rep.start_number + i))
    });
    let urls: Vec<String> = std::iter::once(rep.initialization.clone())
        .chain(numbered)
        .map(|u| format!("{base}{}", u.replace("&amp;", "&")))
        .collect();
    let input = format!("concat:{}", urls.join("|"));
    let probed = tokio::task::spawn_blocking(move || {
        mediahost_testkit::ffprobe(
            &input,
            None,
            &[
                "-protocol_whitelist",
                "concat,http,tcp",
                "-show_entries",
                "stream=codec_type,codec_name:format=duration",
                "-of",
                "json",
            ],
        )
    })
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&probed).unwrap();
    let streams: Vec<String> = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(stream_kind)
        .collect();
    assert_eq!(streams, ["audio:aac"], "{probed}");
    let seconds: f64 = doc["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((seconds - 3.5).abs() < 0.3, "{probed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_mpds_play_without_a_key_at_the_origin_and_the_edge() {
    let server = server();
    let (_client, video) = ready_video(&server).await;
    let signed = video["playback"]["signed_dash"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, query) = signed.split_once('?').unwrap();
    assert_eq!(url, video["playback"]["dash"].as_str().unwrap());
    assert_eq!(
        query,
        video["playback"]["signed_hls"]
            .as_str()
            .unwrap()
            .split_once('?')
            .unwrap()
            .1,
        "one signature for the whole video"
    );

    let res = reqwest::get(&signed).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/dash+xml");
    assert_eq!(res.headers()["cache-control"], "public, max-age=60");
    let mpd = res.text().await.unwrap();
    let escaped = query.replace('&', "&amp;");
    for rep in representations(&mpd) {
        assert!(rep.media.ends_with(&format!("?{escaped}")), "{}", rep.media);
        assert!(rep.initialization.ends_with(&format!("?{escaped}")));
    }
    let streams = {
        let signed = signed.clone();
        tokio::task::spawn_blocking(move || ffprobe_streams(&signed, None))
            .await
            .unwrap()
    };
    assert_eq!(video_sizes(&streams), (SIZES.to_vec(), true), "{streams:?}");

    // A forged or altered signature is refused, as for HLS.
    let forged = format!(
        "{}{}",
        &signed[..signed.len() - 1],
        if signed.ends_with('0') { '1' } else { '0' }
    );
    for bad in [forged, signed.replace("exp=", "exp=1")] {
        let res = reqwest::get(&bad).await.unwrap();
        assert_eq!(res.status(), 403, "{bad}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_signature", "{body}");
    }

    // The edge beside the api caches the MPD like a playlist, and plays through it.
    let via_edge = signed.replacen(&server.base, &server.edge_base, 1);
    let first = reqwest::get(&via_edge).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first.text().await.unwrap(), mpd);
    let second = reqwest::get(&via_edge).await.unwrap();
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(second.headers()["content-type"], "application/dash+xml");
    assert_eq!(second.text().await.unwrap(), mpd);
    let streams = tokio::task::spawn_blocking(move || ffprobe_streams(&via_edge, None))
        .await
        .unwrap();
    assert_eq!(video_sizes(&streams), (SIZES.to_vec(), true), "{streams:?}");
}
