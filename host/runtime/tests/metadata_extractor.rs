//! The `metadata-extractor` world end to end: the reference plugin built from
//! `plugins/metadata-extractor`, loaded from a plugin folder, called through `PluginHost`.
//!
//! Decision documented here: `orientation` and `aspect_ratio` describe the picture as displayed,
//! so a 1920x1080 source rotated by 90° is `portrait` with aspect ratio `9:16`.

mod support;

use mediahost_runtime::{
    Binding, BindingSet, Chains, ExtractInput, FailurePolicy, MediaInfo, PluginFailure, PluginHost,
    World,
};
use support::{audio, host_with, mp4, pairs, video};

fn input(media: MediaInfo) -> ExtractInput {
    ExtractInput {
        tenant: "acme".into(),
        video_id: "v1".into(),
        media,
        head: b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec(),
        user_metadata: vec![("title".into(), "Holiday".into())],
    }
}

#[test]
fn loads_as_a_metadata_extractor() {
    let (_dir, host) = host_with("metadata-extractor", &[]);
    let plugins = host.plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].name, "metadata-extractor");
    let v = plugins[0].serving.as_ref().unwrap();
    assert_eq!(v.world, World::MetadataExtractor);
    assert_eq!(v.limits.timeout_ms, 50);
}

#[test]
fn a_phone_clip_rotated_by_90_degrees_is_portrait() {
    let (_dir, host) = host_with("metadata-extractor", &[]);
    let mut v = video("h264", 1920, 1080);
    v.rotation = Some(90);
    let media = mp4(42.0, vec![v, audio(1, Some("eng")), audio(2, Some("fra"))]);
    assert_eq!(
        host.extract_metadata(&input(media)).unwrap(),
        pairs(&[
            ("aspect_ratio", "9:16"),
            ("audio_only", "false"),
            ("hdr", "false"),
            ("languages", "eng,fra"),
            ("orientation", "portrait"),
            ("resolution_class", "fhd"),
        ])
    );
}

#[test]
fn an_hdr10_uhd_master() {
    let (_dir, host) = host_with("metadata-extractor", &[]);
    let mut v = video("hevc", 3840, 2160);
    v.pix_fmt = Some("yuv420p10le".into());
    v.color_transfer = Some("smpte2084".into());
    v.rotation = Some(180);
    let media = mp4(600.0, vec![v, audio(1, Some("und"))]);
    assert_eq!(
        host.extract_metadata(&input(media)).unwrap(),
        pairs(&[
            ("aspect_ratio", "16:9"),
            ("audio_only", "false"),
            ("hdr", "true"),
            ("orientation", "landscape"),
            ("resolution_class", "uhd"),
        ])
    );
    // HLG counts as HDR too; an SD 4:3 picture is `sd`.
    let mut v = video("h264", 640, 480);
    v.color_transfer = Some("arib-std-b67".into());
    let out = host.extract_metadata(&input(mp4(5.0, vec![v]))).unwrap();
    assert!(out.contains(&("hdr".into(), "true".into())), "{out:?}");
    assert!(
        out.contains(&("aspect_ratio".into(), "4:3".into())),
        "{out:?}"
    );
    assert!(
        out.contains(&("resolution_class".into(), "sd".into())),
        "{out:?}"
    );
}

#[test]
fn an_audio_only_upload() {
    let (_dir, host) = host_with("metadata-extractor", &[]);
    let media = mp4(180.0, vec![audio(0, Some("deu"))]);
    assert_eq!(
        host.extract_metadata(&input(media)).unwrap(),
        pairs(&[("audio_only", "true"), ("languages", "deu")])
    );
}

#[test]
fn takes_the_probe_result_from_mediahost_core() {
    let (_dir, host) = host_with("metadata-extractor", &[]);
    let core = mediahost_core::MediaInfo {
        container: "matroska,webm".into(),
        duration_s: Some(10.0),
        bitrate: None,
        streams: vec![mediahost_core::StreamInfo {
            index: 0,
            kind: "video".into(),
            codec: "vp9".into(),
            width: Some(1280),
            height: Some(720),
            frame_rate: Some(25.0),
            sample_rate: None,
            channels: None,
            bitrate: None,
            language: None,
        }],
    };
    let out = host
        .extract_metadata(&input(MediaInfo::from(&core)))
        .unwrap();
    assert_eq!(
        out,
        pairs(&[
            ("aspect_ratio", "16:9"),
            ("audio_only", "false"),
            ("hdr", "false"),
            ("orientation", "landscape"),
            ("resolution_class", "hd"),
        ])
    );
}

#[test]
fn extractors_run_in_name_order_and_later_keys_win() {
    // Two copies of the reference plugin under different names: the merged result has each key
    // once.
    let dir = tempfile::tempdir().unwrap();
    support::install(dir.path(), "metadata-extractor");
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("metadata-extractor/plugin.toml"))
        .unwrap()
        .replace("name = \"metadata-extractor\"", "name = \"zz-extractor\"");
    std::fs::write(second.join("plugin.toml"), manifest).unwrap();
    std::fs::copy(
        dir.path()
            .join("metadata-extractor/metadata_extractor.wasm"),
        second.join("metadata_extractor.wasm"),
    )
    .unwrap();
    let host = PluginHost::load(dir.path(), &support::Settings::new()).unwrap();
    let names: Vec<String> = host.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["metadata-extractor", "zz-extractor"]);
    let out = host
        .extract_metadata(&input(mp4(1.0, vec![audio(0, None)])))
        .unwrap();
    assert_eq!(out, pairs(&[("audio_only", "true")]));
}

#[test]
fn limits_apply_to_extractors() {
    let dir = tempfile::tempdir().unwrap();
    support::install(dir.path(), "metadata-extractor");
    let path = dir.path().join("metadata-extractor/plugin.toml");
    let manifest = std::fs::read_to_string(&path)
        .unwrap()
        .replace("fuel = 10_000_000", "fuel = 10");
    std::fs::write(&path, manifest).unwrap();
    let host = PluginHost::load(dir.path(), &support::Settings::new()).unwrap();
    // The world's default policy is fail-open: the starved extractor is skipped.
    assert_eq!(host.extract_metadata(&input(mp4(1.0, vec![]))), Ok(vec![]));

    // Bound fail-closed, its failure comes back, naming plugin, world, tenant and the limit.
    let mut binding = Binding::implicit("metadata-extractor", World::MetadataExtractor);
    binding.on_failure = FailurePolicy::FailClosed;
    host.set_bindings(BindingSet {
        global: Some(Chains {
            metadata_extractor: vec![binding],
            ..Chains::default()
        }),
        ..BindingSet::default()
    });
    let err = host.extract_metadata(&input(mp4(1.0, vec![]))).unwrap_err();
    assert_eq!(err.cause, PluginFailure::OutOfFuel { fuel: 10 });
    assert!(
        err.to_string().starts_with(
            "plugin metadata-extractor 0.1.0 (metadata-extractor world, tenant acme) ran out of fuel"
        ),
        "{err}"
    );
}
