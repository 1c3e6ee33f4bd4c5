//! The C reference validator (`plugins/validator-c`, built with the C SDK) through the real
//! runtime: on a table of settings, uploads and heads it decides exactly like the Rust one
//! (`plugins/validator`): same verdicts, statuses and reasons, and the same failures on
//! malformed settings.

mod support;

use std::path::Path;

use mediahost_runtime::{PluginFailure, PluginHost, UploadInfo, Verdict};

use support::{Settings, install};

/// Loads plugin folder `name` (already installed in `dir`) with `settings` for it.
fn load(dir: &Path, name: &str, settings: &[(&str, &str)]) -> PluginHost {
    let mut all = Settings::new();
    all.insert(
        name.to_owned(),
        settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
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

/// A head of `len` zero bytes with `bytes` written at each offset.
fn head(len: usize, at: &[(usize, &[u8])]) -> Vec<u8> {
    let mut h = vec![0; len];
    for (offset, bytes) in at {
        h[*offset..offset + bytes.len()].copy_from_slice(bytes);
    }
    h
}

/// An outcome both plugins can be compared on: the verdict, or the kind of failure.
fn outcome(result: Result<Verdict, mediahost_runtime::PluginError>) -> Result<Verdict, String> {
    result.map_err(|e| match &e.cause {
        PluginFailure::Trap { .. } => "trap".to_owned(),
        other => format!("{other}"),
    })
}

#[test]
fn decides_exactly_like_the_rust_validator() {
    let dir_c = tempfile::tempdir().unwrap();
    let c_wasm = mediahost_testkit::build_c_plugin("validator-c");
    let folder = dir_c.path().join("validator-c");
    std::fs::create_dir_all(&folder).unwrap();
    let manifest = mediahost_testkit::repo_root().join("plugins/validator-c/plugin.toml");
    std::fs::copy(manifest, folder.join("plugin.toml")).unwrap();
    std::fs::copy(&c_wasm, folder.join("validator_c.wasm")).unwrap();
    let dir_rust = tempfile::tempdir().unwrap();
    install(dir_rust.path(), "validator");

    let strict: &[(&str, &str)] = &[
        ("max_size", "1_000_000"),
        ("allowed_extensions", " mp4, .MOV,,mkv ,webm,ts"),
        ("sniff", "true"),
    ];
    let settings: [&[(&str, &str)]; 6] = [
        strict,
        &[],
        &[
            ("max_size", " "),
            ("allowed_extensions", ""),
            ("sniff", "false"),
        ],
        &[("max_size", "+42")],
        &[("max_size", "ten")],
        &[("sniff", "yes")],
    ];
    let uploads = [
        upload(Some("clip.mp4"), Some(1_000_000)),
        upload(Some("Clip.MOV"), Some(999)),
        upload(Some("dir.exe/a.mkv"), None),
        upload(Some("setup.EXE"), Some(10)),
        upload(Some("README"), Some(10)),
        upload(Some("trailing."), None),
        upload(Some(".webm"), None),
        upload(Some("C:\\videos\\x.ts"), None),
        upload(Some("we\"ird\\name\tx"), None),
        upload(Some("big.mp4"), Some(5_000_000)),
        upload(Some("big.exe"), Some(5_000_000)),
        upload(Some("ok.mp4"), Some(43)),
        upload(None, Some(u64::MAX)),
        upload(None, None),
    ];
    let heads = [
        b"\0\0\0\x20ftypisom\0\0\x02\0".to_vec(),
        b"\0\0\0\x08wide\0\0\0\0mdat".to_vec(),
        vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F],
        head(400, &[(0, &[0x47]), (188, &[0x47])]),
        head(400, &[(4, &[0x47]), (196, &[0x47])]),
        head(400, &[(0, &[0x47])]),
        b"RIFF\x10\0\0\0AVI LIST".to_vec(),
        b"FLV\x01\x05\0\0\0\x09".to_vec(),
        b"OggS\0\x02".to_vec(),
        vec![0, 0, 1, 0xBA, 0x44],
        b"MZ\x90\0 not a video".to_vec(),
        b"hello world, plain text".to_vec(),
        b"\0\0\0".to_vec(),
        Vec::new(),
    ];

    let (mut accepted, mut rejected, mut failed) = (0, 0, 0);
    for settings in settings {
        let c = load(dir_c.path(), "validator-c", settings);
        let rust = load(dir_rust.path(), "validator", settings);
        let mut compare =
            |what: String, c: Result<Verdict, String>, rust: Result<Verdict, String>| {
                assert_eq!(c, rust, "{what} with settings {settings:?}");
                match rust {
                    Ok(Verdict::Accept) => accepted += 1,
                    Ok(Verdict::Reject(_)) => rejected += 1,
                    Err(_) => failed += 1,
                }
            };
        for info in &uploads {
            compare(
                format!(
                    "check-upload of {:?} ({:?} bytes)",
                    info.filename, info.declared_size
                ),
                outcome(c.check_upload(info)),
                outcome(rust.check_upload(info)),
            );
        }
        for head in &heads {
            let info = &uploads[0];
            compare(
                format!("check-head of {head:?}"),
                outcome(c.check_head(info, head)),
                outcome(rust.check_head(info, head)),
            );
        }
    }
    // The table exercises every kind of outcome, so agreement is not agreement on one answer.
    assert!(
        accepted > 20 && rejected > 10 && failed > 10,
        "{accepted} {rejected} {failed}"
    );
}

#[test]
fn rejections_carry_the_reason_and_status_of_the_rust_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let c_wasm = mediahost_testkit::build_c_plugin("validator-c");
    let folder = dir.path().join("validator-c");
    std::fs::create_dir_all(&folder).unwrap();
    let manifest = mediahost_testkit::repo_root().join("plugins/validator-c/plugin.toml");
    std::fs::copy(manifest, folder.join("plugin.toml")).unwrap();
    std::fs::copy(&c_wasm, folder.join("validator_c.wasm")).unwrap();
    let host = load(dir.path(), "validator-c", &[("max_size", "100")]);
    let Verdict::Reject(r) = host
        .check_upload(&upload(Some("x.exe"), Some(101)))
        .unwrap()
    else {
        panic!("expected a rejection");
    };
    assert_eq!(r.status, 422);
    assert_eq!(r.reason, "file is 101 bytes; the limit is 100 bytes");
    // The manifest's default allow-list applies to names.
    let Verdict::Reject(r) = host.check_upload(&upload(Some("x.exe"), None)).unwrap() else {
        panic!("expected a rejection");
    };
    assert!(
        r.reason
            .starts_with("file extension \".exe\" is not allowed"),
        "{}",
        r.reason
    );
    // A malformed setting traps with the plugin's own message as detail.
    let host = load(dir.path(), "validator-c", &[("sniff", "maybe")]);
    let err = host.check_upload(&upload(None, None)).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid configuration: sniff \"maybe\""),
        "{err}"
    );
}
