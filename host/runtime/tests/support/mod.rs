//! Helpers shared by the per-world tests: building the reference plugins and installing them in
//! a plugin folder.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mediahost_runtime::{MediaInfo, PluginHost, StreamInfo, StreamKind, UploadInfo, Verdict};

/// Operator settings: plugin name → key → value.
pub type Settings = BTreeMap<String, BTreeMap<String, String>>;

/// The component of reference plugin `name` (a folder of `plugins/`), built once per test
/// binary.
pub fn wasm(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(name.to_owned())
        .or_insert_with(|| mediahost_testkit::build_plugin(name))
        .clone()
}

/// Installs reference plugin `name` with its own `plugin.toml` under `<dir>/<name>/`.
pub fn install(dir: &Path, name: &str) {
    let wasm = wasm(name);
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let manifest = mediahost_testkit::repo_root().join(format!("plugins/{name}/plugin.toml"));
    std::fs::copy(manifest, folder.join("plugin.toml")).unwrap();
    std::fs::copy(&wasm, folder.join(wasm.file_name().unwrap())).unwrap();
}

/// Writes `<dir>/<folder>/plugin.toml` and the component as `<dir>/<folder>/<file>`.
pub fn install_files(dir: &Path, folder: &str, manifest: &str, file: &str, component: &[u8]) {
    let folder = dir.join(folder);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
    std::fs::write(folder.join(file), component).unwrap();
}

/// An upload of `clip.mp4` by tenant `acme`.
pub fn upload() -> UploadInfo {
    UploadInfo {
        tenant: "acme".into(),
        video_id: "v1".into(),
        filename: Some("clip.mp4".into()),
        declared_size: Some(1_000),
        content_type: Some("video/mp4".into()),
        metadata: vec![],
    }
}

/// The status a call answers with: 0 for accept, the rejection's status otherwise.
pub fn answer(host: &PluginHost) -> u16 {
    match host.check_upload(&upload()).expect("no call may fail") {
        Verdict::Accept => 0,
        Verdict::Reject(r) => r.status,
    }
}

/// A plugin folder holding reference plugin `name`, loaded with `settings` for it.
pub fn host_with(name: &str, settings: &[(&str, &str)]) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), name);
    let mut all = Settings::new();
    all.insert(
        name.to_owned(),
        settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let host = PluginHost::load(dir.path(), &all).unwrap();
    (dir, host)
}

/// A video stream as the prober reports it.
pub fn video(codec: &str, width: u32, height: u32) -> StreamInfo {
    StreamInfo {
        index: 0,
        kind: StreamKind::Video,
        codec: codec.into(),
        width: Some(width),
        height: Some(height),
        frame_rate: Some(29.97),
        sample_rate: None,
        channels: None,
        bitrate: Some(4_500_000),
        language: None,
        rotation: None,
        pix_fmt: Some("yuv420p".into()),
        color_transfer: Some("bt709".into()),
    }
}

/// An audio stream as the prober reports it.
pub fn audio(index: u32, language: Option<&str>) -> StreamInfo {
    StreamInfo {
        index,
        kind: StreamKind::Audio,
        codec: "aac".into(),
        width: None,
        height: None,
        frame_rate: None,
        sample_rate: Some(48_000),
        channels: Some(2),
        bitrate: Some(128_000),
        language: language.map(Into::into),
        rotation: None,
        pix_fmt: None,
        color_transfer: None,
    }
}

/// An MP4 source with `streams`.
pub fn mp4(duration_s: f64, streams: Vec<StreamInfo>) -> MediaInfo {
    MediaInfo {
        container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
        duration_s: Some(duration_s),
        bitrate: Some(4_700_000),
        streams,
    }
}

/// `(key, value)` pairs from string slices.
pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
