//! Probe and transcode real media generated at test time with the ffmpeg CLI.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mediahost_core::Rendition;
use mediahost_core::config::TranscodeConfig;
use mediahost_testkit::{Clip, assert_segments_aligned, ffprobe_duration, generate_clip};
use mediahost_transcode::{Publish, Target, TranscodeError, probe, transcode_hls};

/// Writes a clip into `dir` and returns its path.
fn clip(dir: &Path, name: &str, clip: Clip) -> PathBuf {
    let path = dir.join(name);
    generate_clip(&path, &clip);
    path
}

/// Transcodes `src` into `dir/hls`, checking that progress only grows and ends at 1.0.
fn transcode(src: &Path, dir: &Path, cfg: &TranscodeConfig) -> (PathBuf, Vec<Rendition>) {
    let out = dir.join("hls");
    std::fs::create_dir_all(&out).unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    let renditions = transcode_hls(
        src,
        &out,
        cfg,
        &[],
        &mut |f| {
            seen.push(f);
            ControlFlow::Continue(())
        },
        &mut |_| {},
    )
    .unwrap();
    eprintln!("transcoded {} in {:.2?}", src.display(), started.elapsed());
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {seen:?}"
    );
    assert!(seen.iter().all(|f| (0.0..=1.0).contains(f)), "{seen:?}");
    assert_eq!(seen.last(), Some(&1.0));
    (out, renditions)
}

/// `codec_type:codec_name` of every stream ffprobe finds in `input`.
fn ffprobe_streams(input: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
        ])
        .args(["-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut streams: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // csv rows are `codec_name,codec_type`; the HLS program adds blank separator rows.
        .filter_map(|l| l.split_once(','))
        .map(|(name, kind)| format!("{kind}:{name}"))
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

/// EXTINF durations of a media playlist.
fn extinf(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| {
            d.trim_end_matches(',')
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn probe_describes_a_clip() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path(), "clip.mp4", Clip::default());
    let info = probe(&src).unwrap();
    assert!(info.container.contains("mp4"), "{}", info.container);
    let duration = info.duration_s.unwrap();
    assert!((duration - 10.0).abs() < 0.2, "{duration}");
    assert!(info.bitrate.unwrap() > 0);
    let video = info.video().unwrap();
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", Some(640), Some(360))
    );
    assert!((video.frame_rate.unwrap() - 25.0).abs() < 0.01);
    let audio = info.audio().unwrap();
    assert_eq!(
        (audio.codec.as_str(), audio.sample_rate),
        ("aac", Some(48_000))
    );
    assert_eq!(audio.channels, Some(1));
}

#[test]
fn probe_rejects_non_media() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    let line = "This is not a video, just some text that someone uploaded by mistake.\n";
    std::fs::write(&text, line.repeat(100 * 1024 / line.len())).unwrap();
    let err = probe(&text).unwrap_err();
    assert!(matches!(err, TranscodeError::Undecodable(_)), "{err:?}");
    assert!(err.is_permanent());
    assert!(
        err.to_string()
            .contains("not a recognised audio/video format"),
        "{err}"
    );

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let err = probe(&empty).unwrap_err();
    assert!(matches!(err, TranscodeError::Undecodable(_)), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn missing_source_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let err = probe(&dir.path().join("gone.mp4")).unwrap_err();
    assert!(matches!(err, TranscodeError::Io { .. }), "{err:?}");
    assert!(!err.is_permanent());
}

#[test]
fn transcodes_a_clip_to_hls() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path(), "clip.mp4", Clip::default());
    let (out, renditions) = transcode(&src, dir.path(), &TranscodeConfig::default());

    assert_eq!(renditions.len(), 2);
    let r = &renditions[0];
    assert_eq!((r.name.as_str(), r.width, r.height), ("360p", 640, 360));
    assert_eq!(r.playlist, "360p/index.m3u8");
    assert!(
        r.codecs.starts_with("avc1.") && r.codecs.ends_with(",mp4a.40.2"),
        "{}",
        r.codecs
    );
    assert!(r.bandwidth > 100_000, "{}", r.bandwidth);

    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    let mut lines = master.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"));
    assert!(
        master.contains("#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"),
        "{master}"
    );
    let inf: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(inf.len(), 2, "{master}");
    assert!(inf[0].contains("RESOLUTION=640x360"), "{master}");
    assert!(
        inf[0].contains(&format!("BANDWIDTH={},", r.bandwidth)),
        "{master}"
    );
    assert!(inf[0].contains("AVERAGE-BANDWIDTH="), "{master}");
    assert!(
        inf[0].contains(&format!("CODECS=\"{}\"", r.codecs)),
        "{master}"
    );
    assert!(inf[0].contains("FRAME-RATE=25.000"), "{master}");
    assert!(master.contains("\n360p/index.m3u8\n"), "{master}");
    // Then the audio-only rendition: no picture to describe.
    let audio = &renditions[1];
    assert_eq!(
        (
            audio.name.as_str(),
            audio.width,
            audio.height,
            audio.codecs.as_str()
        ),
        ("audio", 0, 0, "mp4a.40.2")
    );
    assert!(
        inf[1].starts_with(&format!("#EXT-X-STREAM-INF:BANDWIDTH={},", audio.bandwidth))
            && inf[1].ends_with(",CODECS=\"mp4a.40.2\"")
            && !inf[1].contains("RESOLUTION")
            && !inf[1].contains("FRAME-RATE"),
        "{master}"
    );
    assert!(master.ends_with("\naudio/index.m3u8\n"), "{master}");
    // 128 kbit/s AAC plus fMP4 overhead, well below the video rendition.
    assert!(
        (100_000..200_000).contains(&audio.bandwidth) && audio.bandwidth < r.bandwidth / 2,
        "{}",
        audio.bandwidth
    );

    let playlist = std::fs::read_to_string(out.join("360p/index.m3u8")).unwrap();
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""),
        "{playlist}"
    );
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(playlist.contains("seg_00000.m4s"), "{playlist}");
    assert!(out.join("360p/init.mp4").exists());
    // A one-second first segment, so a player can start early, then ~4 s ones: 1, 4, 4, 1.
    let durations = extinf(&playlist);
    assert_eq!(durations.len(), 4, "{playlist}");
    assert!((durations[0] - 1.0).abs() <= 0.05, "{playlist}");
    for d in &durations[1..durations.len() - 1] {
        assert!((d - 4.0).abs() <= 0.05, "segment of {d} s in\n{playlist}");
    }
    let total: f64 = durations.iter().sum();
    assert!((total - 10.0).abs() <= 0.5, "total {total} in\n{playlist}");

    let master_path = out.join("master.m3u8");
    let played = ffprobe_duration(master_path.to_str().unwrap(), None);
    assert!((played - 10.0).abs() <= 0.5, "ffprobe reads {played} s");
    assert_eq!(ffprobe_streams(&master_path), ["audio:aac", "video:h264"]);

    // The audio-only rendition is AAC alone, cut where the video is.
    let audio_playlist = out.join("audio/index.m3u8");
    assert_eq!(ffprobe_streams(&audio_playlist), ["audio:aac"]);
    let played = ffprobe_duration(audio_playlist.to_str().unwrap(), None);
    assert!((played - 10.0).abs() <= 0.5, "ffprobe reads {played} s");
    let audio_durations = extinf(&std::fs::read_to_string(&audio_playlist).unwrap());
    assert_segments_aligned(&durations, &audio_durations);
}

#[test]
fn the_audio_only_rendition_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let short = Clip {
        seconds: 2.0,
        ..Clip::default()
    };
    let src = clip(dir.path(), "clip.mp4", short);
    let cfg = TranscodeConfig {
        audio_only_rendition: false,
        ..TranscodeConfig::default()
    };
    let (out, renditions) = transcode(&src, dir.path(), &cfg);
    let names: Vec<_> = renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["360p"]);
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 1, "{master}");
    let mpd = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    assert_eq!(mpd.matches("<AdaptationSet ").count(), 1, "{mpd}");
    assert!(!out.join("audio").exists());
}

#[test]
fn downscales_to_max_height_but_never_upscales() {
    let dir = tempfile::tempdir().unwrap();
    let hd = Clip {
        seconds: 2.0,
        width: 1280,
        height: 720,
        ..Clip::default()
    };
    let src = clip(dir.path(), "hd.mp4", hd);
    let cfg = TranscodeConfig {
        max_height: 360,
        ..TranscodeConfig::default()
    };
    let (out, renditions) = transcode(&src, &dir.path().join("hd"), &cfg);
    assert_eq!((renditions[0].width, renditions[0].height), (640, 360));
    assert!(
        std::fs::read_to_string(out.join("master.m3u8"))
            .unwrap()
            .contains("640x360")
    );

    let small = Clip {
        seconds: 2.0,
        width: 320,
        height: 240,
        ..Clip::default()
    };
    let src = clip(dir.path(), "small.mp4", small);
    let (_, renditions) = transcode(&src, &dir.path().join("small"), &TranscodeConfig::default());
    let r = &renditions[0];
    assert_eq!((r.name.as_str(), r.width, r.height), ("240p", 320, 240));
}

#[test]
fn video_only_source_gives_video_only_rendition() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(
        dir.path(),
        "silent.mp4",
        Clip {
            seconds: 5.0,
            audio: false,
            ..Clip::default()
        },
    );
    let (out, renditions) = transcode(&src, dir.path(), &TranscodeConfig::default());
    assert_eq!(renditions.len(), 1, "no sound, no audio rendition");
    assert!(
        !renditions[0].codecs.contains("mp4a"),
        "{}",
        renditions[0].codecs
    );
    let master = out.join("master.m3u8");
    assert_eq!(ffprobe_streams(&master), ["video:h264"]);
    let played = ffprobe_duration(master.to_str().unwrap(), None);
    assert!((played - 5.0).abs() <= 0.5, "ffprobe reads {played} s");
}

#[test]
fn an_audio_track_without_sound_gets_no_audio_rendition() {
    let dir = tempfile::tempdir().unwrap();
    // Matroska keeps an audio track whose every packet was dropped.
    let src = dir.path().join("mute.mkv");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
            "-f",
            "lavfi",
        ])
        .args(["-i", "sine=sample_rate=48000:duration=2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .args(["-bsf:a", "noise=dropamount=1"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(probe(&src).unwrap().audio().is_some());
    let (out, renditions) = transcode(&src, dir.path(), &TranscodeConfig::default());
    let names: Vec<_> = renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["240p"]);
    let master = out.join("master.m3u8");
    assert!(
        !std::fs::read_to_string(&master).unwrap().contains("audio/"),
        "the master lists no empty rendition"
    );
    let played = ffprobe_duration(master.to_str().unwrap(), None);
    assert!((played - 2.0).abs() <= 0.5, "ffprobe reads {played} s");
}

#[test]
fn audio_only_source_gives_one_audio_rendition() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(
        dir.path(),
        "tone.m4a",
        Clip {
            seconds: 5.0,
            video: false,
            ..Clip::default()
        },
    );
    assert!(probe(&src).unwrap().video().is_none());
    let (out, renditions) = transcode(&src, dir.path(), &TranscodeConfig::default());
    let r = &renditions[0];
    assert_eq!(renditions.len(), 1);
    assert_eq!(
        (r.name.as_str(), r.width, r.height, r.codecs.as_str()),
        ("audio", 0, 0, "mp4a.40.2")
    );
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(
        master.contains(",CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"),
        "{master}"
    );
    assert!(!master.contains("RESOLUTION"), "{master}");
    let mpd = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    assert!(
        mpd.contains(r#"contentType="audio" mimeType="audio/mp4""#),
        "{mpd}"
    );
    assert!(!out.join(mediahost_transcode::POSTER).exists());
    let master = out.join("master.m3u8");
    assert_eq!(ffprobe_streams(&master), ["audio:aac"]);
    let played = ffprobe_duration(master.to_str().unwrap(), None);
    assert!((played - 5.0).abs() <= 0.5, "ffprobe reads {played} s");
}

#[test]
fn truncated_source_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    // Fragmented MP4 keeps its index up front, so a cut file still opens and decodes in part.
    let src = dir.path().join("full.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=320x240:rate=25:duration=6")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-movflags", "frag_keyframe+empty_moov"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&src).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("hls");
    match transcode_hls(
        &cut,
        &out,
        &TranscodeConfig::default(),
        &[],
        &mut |_| ControlFlow::Continue(()),
        &mut |_| {},
    ) {
        Ok(renditions) => {
            let played = ffprobe_duration(out.join("master.m3u8").to_str().unwrap(), None);
            assert!(played > 0.5 && played < 6.0, "{played} s from a half file");
            assert_eq!(renditions.len(), 1);
        }
        Err(e) => assert!(e.is_permanent(), "{e:?}"),
    }
}

#[test]
fn a_stop_request_cancels_the_transcode() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path(), "clip.mp4", Clip::default());
    let out = dir.path().join("hls");
    let mut calls = 0;
    let err = transcode_hls(
        &src,
        &out,
        &TranscodeConfig::default(),
        &[],
        &mut |_| {
            calls += 1;
            // Let a little work happen first, as a worker asked to shut down mid-job would.
            if calls < 5 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TranscodeError::Cancelled), "{err}");
    assert!(!err.is_permanent(), "a cancelled job is retried elsewhere");
    assert_eq!(calls, 5, "no progress is reported after the stop");
}

#[test]
fn a_given_ladder_is_encoded_with_aligned_segments_and_capped_bitrates() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(
        dir.path(),
        "hd.mp4",
        Clip {
            seconds: 9.0,
            width: 1280,
            height: 720,
            ..Clip::default()
        },
    );
    let ladder = [
        Target {
            name: "hd".into(),
            width: 1280,
            height: 720,
            max_video_kbps: Some(1200),
        },
        Target {
            name: "low".into(),
            width: 426,
            height: 240,
            max_video_kbps: Some(300),
        },
    ];
    let out = dir.path().join("hls");
    let renditions = transcode_hls(
        &src,
        &out,
        &TranscodeConfig::default(),
        &ladder,
        &mut |_| ControlFlow::Continue(()),
        &mut |_| {},
    )
    .unwrap();
    let sizes: Vec<_> = renditions
        .iter()
        .map(|r| (r.name.as_str(), r.width, r.height))
        .collect();
    // The given ladder, then the audio-only rendition the pipeline adds.
    assert_eq!(
        sizes,
        [("hd", 1280, 720), ("low", 426, 240), ("audio", 0, 0)]
    );

    let durations: Vec<Vec<f64>> = renditions
        .iter()
        .map(|r| extinf(&std::fs::read_to_string(out.join(&r.playlist)).unwrap()))
        .collect();
    assert_eq!(durations[0], durations[1], "segment boundaries are aligned");
    assert_segments_aligned(&durations[0], &durations[2]);
    for (r, cap) in renditions.iter().zip([1200u64, 300]) {
        // Video capped by VBV (peak over any 2 s buffer), plus 128 kbit/s AAC and fMP4 overhead.
        let ceiling = (cap * 3 / 2 + 128 + 64) * 1000;
        eprintln!("{}: bandwidth {} (ceiling {ceiling})", r.name, r.bandwidth);
        assert!(
            r.bandwidth <= ceiling,
            "{} peaks at {} bit/s",
            r.name,
            r.bandwidth
        );
    }
    let master = out.join("master.m3u8");
    let played = ffprobe_duration(master.to_str().unwrap(), None);
    assert!((played - 9.0).abs() <= 0.5, "ffprobe reads {played} s");
}

/// The URIs a playlist names: plain lines and `URI="…"` attributes.
fn named(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter_map(|l| match l.split_once("URI=\"") {
            Some((_, rest)) => rest.split('"').next(),
            None => (!l.is_empty() && !l.starts_with('#')).then_some(l),
        })
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn outputs_are_announced_as_they_complete_and_playlists_turn_vod_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path(), "clip.mp4", Clip::default());
    let out = dir.path().join("hls");
    let mut announced = Vec::new();
    transcode_hls(
        &src,
        &out,
        &TranscodeConfig::default(),
        &[],
        &mut |_| ControlFlow::Continue(()),
        &mut |p| announced.push(p),
    )
    .unwrap();

    // Every manifest names only what was announced before it.
    let mut files: Vec<String> = Vec::new();
    let mut manifests: Vec<String> = Vec::new();
    let mut event_playlists = 0;
    for p in &announced {
        match p {
            Publish::File(path) => {
                assert!(!files.contains(path), "{path} announced twice");
                files.push(path.clone());
            }
            Publish::Manifest { path, text } => {
                let folder = path.rsplit_once('/').map_or("", |(f, _)| f);
                // HLS playlists; the MPD names the same files through templates.
                let uris = if path.ends_with(".m3u8") {
                    named(text)
                } else {
                    Vec::new()
                };
                for uri in uris {
                    let full = if folder.is_empty() {
                        uri
                    } else {
                        format!("{folder}/{uri}")
                    };
                    assert!(
                        files.contains(&full) || manifests.contains(&full),
                        "{path} names {full} before it was announced:\n{text}"
                    );
                }
                if text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") {
                    assert!(!text.contains("ENDLIST"), "{text}");
                    event_playlists += 1;
                }
                manifests.push(path.clone());
            }
            Publish::Playable(renditions) => {
                assert_eq!(renditions.len(), 2);
                assert!(manifests.contains(&"master.m3u8".to_owned()));
            }
        }
    }
    // 10 s in ~4 s segments: the first two close while decoding goes on, so playback can
    // start (master + playable) before the last segment exists.
    assert!(event_playlists >= 2, "{announced:#?}");
    let position = |wanted: &Publish| announced.iter().position(|p| p == wanted).unwrap();
    let playable = announced
        .iter()
        .position(|p| matches!(p, Publish::Playable(_)))
        .unwrap();
    assert!(playable < position(&Publish::File("360p/seg_00002.m4s".into())));
    assert_eq!(
        announced
            .iter()
            .filter(|p| matches!(p, Publish::Playable(_)))
            .count(),
        1
    );

    // The last word on each manifest is what the folder holds, and the folder holds nothing
    // that was not announced.
    for path in [
        "360p/index.m3u8",
        "audio/index.m3u8",
        "master.m3u8",
        "manifest.mpd",
    ] {
        let last = announced
            .iter()
            .rev()
            .find_map(|p| match p {
                Publish::Manifest { path: p, text } if p == path => Some(text.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            last,
            std::fs::read_to_string(out.join(path)).unwrap(),
            "{path}"
        );
    }
    let playlist = std::fs::read_to_string(out.join("360p/index.m3u8")).unwrap();
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let mut all: Vec<String> = files.into_iter().chain(manifests).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, files_under(&out));
}

#[test]
fn a_rotated_source_is_turned_upright() {
    let dir = tempfile::tempdir().unwrap();
    let stored = clip(
        dir.path(),
        "stored.mp4",
        Clip {
            seconds: 1.0,
            ..Clip::default()
        },
    );
    // The same pictures, with a display matrix saying "turn 90°" (a phone held upright).
    let src = dir.path().join("rotated.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&stored)
        .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let (out, renditions) = transcode(&src, dir.path(), &TranscodeConfig::default());
    // A portrait ladder: the upright 360x640 capped to 720 lines keeps 640, then the rungs.
    let sizes: Vec<_> = renditions.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(sizes, [(360, 640), (270, 480), (202, 360), (0, 0)]);
    assert_eq!(
        ffprobe_size(&out.join(mediahost_transcode::POSTER)),
        "360,640"
    );
    // The renditions carry no display matrix of their own: they are upright as stored.
    let master = out.join("master.m3u8");
    let shown = ffprobe_size(&master);
    assert!(shown.starts_with("360,640"), "{shown}");
}

/// `width,height` of the first stream ffprobe finds in `image`.
fn ffprobe_size(image: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn poster_and_storyboard_come_from_the_same_pass() {
    let dir = tempfile::tempdir().unwrap();
    let nine_seconds = Clip {
        seconds: 9.0,
        ..Clip::default()
    };
    let src = clip(dir.path(), "clip.mp4", nine_seconds);
    let (out, _) = transcode(&src, dir.path(), &TranscodeConfig::default());
    let poster = out.join(mediahost_transcode::POSTER);
    assert_eq!(ffprobe_streams(&poster), ["video:mjpeg"]);
    assert_eq!(ffprobe_size(&poster), "640,360");

    // 9 s at one tile per 2 s: tiles at 0, 2, 4, 6, 8 s, 160x90 each, in one row.
    let vtt = std::fs::read_to_string(out.join(mediahost_transcode::STORYBOARD_VTT)).unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert_eq!(vtt.matches("storyboard.jpg#xywh=").count(), 5, "{vtt}");
    let first = "00:00:00.000 --> 00:00:02.000\nstoryboard.jpg#xywh=0,0,160,90";
    let last = "00:00:08.000 --> 00:00:09.000\nstoryboard.jpg#xywh=640,0,160,90";
    assert!(vtt.contains(first) && vtt.contains(last), "{vtt}");
    let sprite = out.join(mediahost_transcode::STORYBOARD_IMAGE);
    assert_eq!(ffprobe_size(&sprite), "800,90");
}

/// Every segment decodes with only the init segment before it: GOPs are closed, so no picture
/// refers to one of the segment before, as `EXT-X-INDEPENDENT-SEGMENTS` promises and switching
/// renditions mid-stream needs.
#[test]
fn every_segment_decodes_without_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path(), "clip.mp4", Clip::default());
    let (out, _) = transcode(&src, dir.path(), &TranscodeConfig::default());
    let rendition = out.join("360p");
    let init = std::fs::read(rendition.join("init.mp4")).unwrap();
    let playlist = std::fs::read_to_string(rendition.join("index.m3u8")).unwrap();
    let segments: Vec<String> = playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(segments.len() >= 2, "{playlist}");
    for segment in &segments[1..] {
        let alone = dir.path().join("alone.mp4");
        let mut bytes = init.clone();
        bytes.extend(std::fs::read(rendition.join(segment)).unwrap());
        std::fs::write(&alone, bytes).unwrap();
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
            .args(["-count_packets", "-show_entries"])
            .args(["stream=nb_read_frames,nb_read_packets", "-of", "csv=p=0"])
            .arg(&alone)
            .output()
            .expect("run ffprobe");
        let stderr = String::from_utf8_lossy(&probe.stderr);
        assert!(
            probe.status.success() && stderr.trim().is_empty(),
            "{segment}: {stderr}"
        );
        let counts = String::from_utf8(probe.stdout).unwrap();
        let counts: Vec<&str> = counts.trim().split(',').collect();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert_eq!(counts[0], counts[1], "{segment}: frames decoded vs packets");
        assert!(counts[0].parse::<u32>().unwrap() > 0, "{segment}");
    }
}
