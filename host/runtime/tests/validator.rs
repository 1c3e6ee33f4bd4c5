//! The `validator` world end to end: the reference plugin built from `plugins/validator`, loaded
//! from a plugin folder, called through `PluginHost`; plus a hand-written component
//! (`fixtures.wat`) for isolation and time limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mediahost_runtime::{
    PluginError, PluginFailure, PluginHost, PluginStatus, Rejection, RuntimeError, UploadInfo,
    Verdict, World,
};

type Settings = BTreeMap<String, BTreeMap<String, String>>;

/// The reference validator's component, built once per test binary.
fn validator_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| mediahost_testkit::build_plugin("validator"))
}

fn reference_manifest() -> String {
    let path = mediahost_testkit::repo_root().join("plugins/validator/plugin.toml");
    std::fs::read_to_string(path).unwrap()
}

/// Writes `<dir>/<folder>/{plugin.toml, <component file>}`.
fn install(dir: &Path, folder: &str, manifest: &str, component: &[u8]) {
    let folder = dir.join(folder);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
    std::fs::write(folder.join("validator.wasm"), component).unwrap();
}

/// A plugin folder holding the reference validator, with `edit` applied to its manifest.
fn validator_dir(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(validator_wasm()).unwrap();
    install(dir.path(), "validator", &edit(reference_manifest()), &wasm);
    dir
}

fn load(dir: &Path, settings: &[(&str, &str)]) -> PluginHost {
    let mut all = Settings::new();
    if !settings.is_empty() {
        let own = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert("validator".into(), own);
    }
    PluginHost::load(dir, &all).unwrap()
}

fn upload(filename: Option<&str>, size: Option<u64>) -> UploadInfo {
    UploadInfo {
        tenant: "acme".into(),
        video_id: "v1".into(),
        filename: filename.map(Into::into),
        declared_size: size,
        content_type: Some("video/mp4".into()),
        metadata: vec![("title".into(), "Holiday".into())],
    }
}

fn rejection(verdict: Verdict) -> Rejection {
    match verdict {
        Verdict::Reject(r) => r,
        Verdict::Accept => panic!("expected a rejection, got accept"),
    }
}

const MP4_HEAD: &[u8] = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41\0\0\0\x08free";

#[test]
fn loads_and_summarises_the_reference_plugin() {
    let dir = validator_dir(|m| m);
    let host = load(dir.path(), &[]);
    let plugins = host.plugins();
    assert_eq!(plugins.len(), 1);
    let p = &plugins[0];
    assert_eq!(
        (p.status, &p.last_error, p.reloads),
        (PluginStatus::Loaded, &None, 0)
    );
    let v = p.serving.as_ref().expect("a loaded plugin serves");
    assert_eq!(
        (p.name.as_str(), v.version.as_str()),
        ("validator", "0.1.0")
    );
    assert_eq!(v.world, World::Validator);
    assert_eq!(v.sha256.len(), 64);
    assert_eq!(v.limits.timeout_ms, 100);
}

#[test]
fn accepts_a_good_upload() {
    let dir = validator_dir(|m| m);
    let host = load(dir.path(), &[]);
    let verdict = host.check_upload(&upload(Some("holiday.MP4"), Some(5_000_000)));
    assert!(matches!(verdict, Ok(Verdict::Accept)), "{verdict:?}");
    // No file name and no size: nothing to object to.
    assert!(matches!(
        host.check_upload(&upload(None, None)),
        Ok(Verdict::Accept)
    ));
}

#[test]
fn rejects_a_declared_size_over_the_limit() {
    let dir = validator_dir(|m| m);
    let host = load(dir.path(), &[]);
    let r = rejection(
        host.check_upload(&upload(Some("big.mp4"), Some(20 << 30)))
            .unwrap(),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.reason,
        "file is 21474836480 bytes; the limit is 10737418240 bytes"
    );
}

#[test]
fn rejects_an_exe() {
    let dir = validator_dir(|m| m);
    let host = load(dir.path(), &[]);
    let r = rejection(
        host.check_upload(&upload(Some("setup.exe"), Some(10)))
            .unwrap(),
    );
    assert_eq!(r.status, 422);
    assert!(r.reason.contains("\".exe\""), "{}", r.reason);
    assert!(r.reason.contains("mp4"), "{}", r.reason);
}

#[test]
fn settings_override_manifest_defaults() {
    let dir = validator_dir(|m| m);
    let host = load(
        dir.path(),
        &[("max_size", "1000"), ("allowed_extensions", "exe")],
    );
    let r = rejection(
        host.check_upload(&upload(Some("a.exe"), Some(5000)))
            .unwrap(),
    );
    assert_eq!(r.reason, "file is 5000 bytes; the limit is 1000 bytes");
    assert!(matches!(
        host.check_upload(&upload(Some("a.exe"), Some(1000))),
        Ok(Verdict::Accept)
    ));
    let r = rejection(host.check_upload(&upload(Some("a.mp4"), None)).unwrap());
    assert!(r.reason.contains("\".mp4\""), "{}", r.reason);
}

#[test]
fn check_head_sniffs_only_when_enabled() {
    let dir = validator_dir(|m| m);
    let info = upload(Some("clip.mp4"), None);
    let text = b"this is a plain text file, not a video at all";

    // The manifest default leaves non-video bytes to the server's own probe.
    let host = load(dir.path(), &[]);
    assert!(matches!(host.check_head(&info, text), Ok(Verdict::Accept)));

    let host = load(dir.path(), &[("sniff", "true")]);
    let r = rejection(host.check_head(&info, text).unwrap());
    assert_eq!(r.status, 422);
    assert!(
        r.reason.contains("does not look like a video"),
        "{}",
        r.reason
    );
    assert!(matches!(
        host.check_head(&info, MP4_HEAD),
        Ok(Verdict::Accept)
    ));
    let mut mkv = vec![0x1A, 0x45, 0xDF, 0xA3];
    mkv.resize(64 << 10, 0);
    assert!(matches!(host.check_head(&info, &mkv), Ok(Verdict::Accept)));
}

#[test]
fn a_missing_folder_means_no_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::load(&dir.path().join("nope"), &Settings::new()).unwrap();
    assert!(host.plugins().is_empty());
    assert!(matches!(
        host.check_upload(&upload(Some("x.exe"), None)),
        Ok(Verdict::Accept)
    ));
}

#[test]
fn a_garbage_component_is_a_load_error_naming_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "broken",
        &reference_manifest(),
        b"this is not webassembly",
    );
    let err = PluginHost::load(dir.path(), &Settings::new()).unwrap_err();
    assert!(matches!(err, RuntimeError::Plugin { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot load plugin validator"), "{msg}");
    assert!(msg.contains("broken"), "{msg}");
    assert!(msg.contains("cannot compile"), "{msg}");
}

#[test]
fn a_component_of_the_wrong_shape_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = wat::parse_str("(component)").unwrap();
    install(dir.path(), "empty", &reference_manifest(), &empty);
    let msg = PluginHost::load(dir.path(), &Settings::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not fit the validator world"), "{msg}");
    assert!(msg.contains("no export"), "{msg}");
}

#[test]
fn a_bad_manifest_is_a_load_error_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "odd", "name = 3", b"");
    let msg = PluginHost::load(dir.path(), &Settings::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("odd") && msg.contains("plugin.toml"), "{msg}");
}

#[test]
fn duplicate_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(validator_wasm()).unwrap();
    install(dir.path(), "a", &reference_manifest(), &wasm);
    install(dir.path(), "b", &reference_manifest(), &wasm);
    let err = PluginHost::load(dir.path(), &Settings::new()).unwrap_err();
    assert!(
        matches!(err, RuntimeError::DuplicateName { ref name, .. } if name == "validator"),
        "{err}"
    );
}

const FIXTURE_MANIFEST: &str = r#"
name = "fixture"
version = "0.1.0"
world = "validator"
component = "validator.wasm"
[limits]
timeout_ms = 50
fuel = 1_000_000_000_000_000
memory_bytes = 1_048_576
"#;

fn fixture_host() -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures.wat")).unwrap();
    install(dir.path(), "fixture", FIXTURE_MANIFEST, &wasm);
    let host = PluginHost::load(dir.path(), &Settings::new()).unwrap();
    (dir, host)
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let (_dir, host) = fixture_host();
    for _ in 0..3 {
        let r = rejection(host.check_upload(&upload(None, None)).unwrap());
        // The fixture says "state leaked" from its second call on in the same instance.
        assert_eq!((r.status, r.reason.as_str()), (409, "first call"));
    }
}

#[test]
fn a_runaway_plugin_hits_its_time_limit() {
    let (_dir, host) = fixture_host();
    let started = Instant::now();
    let err = host.check_head(&upload(None, None), b"x").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.cause, PluginFailure::Timeout { timeout_ms: 50 });
    assert!(
        err.to_string().starts_with(
            "plugin fixture 0.1.0 (validator world, tenant acme) exceeded its 50 ms time limit; \
             used wall time "
        ),
        "{err}"
    );
    // The host is still usable after a timeout.
    assert!(host.check_upload(&upload(None, None)).is_ok());
}

#[test]
fn fuel_and_memory_limits_become_plugin_errors() {
    let dir = validator_dir(|m| m.replace("fuel = 10_000_000", "fuel = 10"));
    let err: PluginError = load(dir.path(), &[])
        .check_upload(&upload(Some("a.mp4"), None))
        .unwrap_err();
    assert_eq!(err.cause, PluginFailure::OutOfFuel { fuel: 10 });
    assert!(
        err.to_string()
            .starts_with("plugin validator 0.1.0 (validator world, tenant acme) ran out of fuel")
    );

    let dir = validator_dir(|m| m.replace("memory_bytes = 16_777_216", "memory_bytes = 65_536"));
    let err = load(dir.path(), &[])
        .check_upload(&upload(Some("a.mp4"), None))
        .unwrap_err();
    assert_eq!(
        err.cause,
        PluginFailure::Memory {
            limit_bytes: 65_536
        }
    );
    assert!(
        err.to_string().starts_with(
            "plugin validator 0.1.0 (validator world, tenant acme) exceeded its 65536 byte \
             memory limit; used wall time "
        ),
        "{err}"
    );
}

#[test]
fn a_bad_setting_traps_with_the_guest_message() {
    let dir = validator_dir(|m| m);
    let err = load(dir.path(), &[("max_size", "lots")])
        .check_upload(&upload(None, Some(1)))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.cause, PluginFailure::Trap { .. }), "{msg}");
    assert!(msg.contains("max_size"), "{msg}");
}

#[test]
fn plugin_host_is_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<PluginHost>();
    let dir = validator_dir(|m| m);
    let host = load(dir.path(), &[]);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let host = host.clone();
            std::thread::spawn(move || {
                let name = if i % 2 == 0 { "a.mp4" } else { "a.exe" };
                host.check_upload(&upload(Some(name), None)).unwrap()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let verdict = t.join().unwrap();
        assert_eq!(matches!(verdict, Verdict::Accept), i % 2 == 0);
    }
}
