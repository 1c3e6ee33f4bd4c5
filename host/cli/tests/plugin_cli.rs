//! `mediahost plugin check` and `mediahost plugin run` on the real binary: the reference
//! plugins pass their world's conformance kit, a hostile component fails it with a clear
//! message, and `run` prints a call's answer and what it used (as text and as JSON).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::BIN;
use mediahost_testkit::{build_plugin, repo_root};

fn mediahost(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run mediahost")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn manifest(plugin: &str) -> String {
    repo_root()
        .join("plugins")
        .join(plugin)
        .join("plugin.toml")
        .display()
        .to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The case names of one world's kit in `plugin-tests/`.
fn kit(world: &str) -> Vec<String> {
    std::fs::read_dir(repo_root().join("plugin-tests").join(world))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The table line of `case` in `check`'s output.
fn row<'a>(stdout: &'a str, case: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(case))
        .unwrap_or_else(|| panic!("no row for {case} in:\n{stdout}"))
}

#[test]
fn every_reference_plugin_passes_its_world_kit() {
    let plugins: [(&str, &str, &[&str]); 4] = [
        ("validator", "validator", &[]),
        ("metadata-extractor", "metadata-extractor", &[]),
        ("router", "router", &[]),
        // Its secret has no default on purpose: without one every call traps.
        (
            "edge-token",
            "edge-transform",
            &["--config", "secret=conformance"],
        ),
    ];
    for (plugin, world, extra) in plugins {
        let wasm = build_plugin(plugin);
        let manifest = manifest(plugin);
        // A generous deadline: the kit checks answers, and a busy machine must not fail it.
        let mut args = vec![
            "plugin",
            "check",
            path(&wasm),
            "--manifest",
            &manifest,
            "--timeout-ms",
            "5000",
        ];
        args.extend_from_slice(extra);
        let out = mediahost(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{plugin}:\n{stdout}\n{}",
            text(&out.stderr)
        );
        assert!(stdout.contains(&format!("{world} world")), "{stdout}");
        let cases = kit(world);
        assert!(!cases.is_empty());
        for case in &cases {
            assert!(row(&stdout, case).contains(" pass "), "{case}:\n{stdout}");
        }
        assert!(
            stdout.contains(&format!(
                "{} cases: {} passed, 0 failed",
                cases.len(),
                cases.len()
            )),
            "{stdout}"
        );
    }
}

#[test]
fn the_edge_plugin_without_its_secret_fails_the_kit_naming_the_cause() {
    let wasm = build_plugin("edge-token");
    let out = mediahost(&[
        "plugin",
        "check",
        path(&wasm),
        "--manifest",
        &manifest("edge-token"),
    ]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("completes: trapped"), "{stdout}");
    assert!(stdout.contains("secret is not set"), "{stdout}");
}

/// A validator whose `check-upload` accepts and whose `check-head` traps.
fn traps_on_head() -> String {
    mediahost_testkit::validator_component(
        r#"(core module $m
    (memory (export "memory") 1)
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "check-upload")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.const 0))
    (func (export "check-head")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
      unreachable))"#,
    )
}

fn write_wat(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, wat::parse_str(wat).unwrap()).unwrap();
    file
}

#[test]
fn a_hostile_component_fails_the_kit_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_wat(dir.path(), "hostile.wasm", &traps_on_head());
    let out = mediahost(&["plugin", "check", path(&wasm)]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("validator world"), "{stdout}");
    let cases = kit("validator");
    let heads: Vec<_> = cases
        .iter()
        .filter(|c| c.starts_with("check-head"))
        .collect();
    assert!(!heads.is_empty());
    for case in &cases {
        let line = row(&stdout, case);
        let expected = if heads.contains(&case) {
            " FAIL "
        } else {
            " pass "
        };
        assert!(line.contains(expected), "{case}:\n{stdout}");
    }
    assert!(
        stdout.contains("- completes: trapped: wasm trap: wasm `unreachable` instruction executed"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {} of {} validator conformance cases failed",
            heads.len(),
            cases.len()
        )),
        "{stderr}"
    );
}

#[test]
fn a_component_of_no_world_is_refused_with_each_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_wat(dir.path(), "nothing.wasm", "(component)");
    let out = mediahost(&["plugin", "check", path(&wasm)]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("implements none of the plugin worlds"),
        "{stderr}"
    );
    for world in [
        "validator",
        "metadata-extractor",
        "router",
        "edge-transform",
    ] {
        assert!(
            stderr.contains(&format!("\n  {world}: ")),
            "{world}: {stderr}"
        );
    }
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    let out = mediahost(&["plugin", "check", path(&garbage)]);
    assert!(text(&out.stderr).contains("cannot compile the component"));
}

fn upload_call(filename: &str, size: u64) -> String {
    serde_json::json!({"check-upload": {"info": {
        "tenant": "acme", "video_id": "v1", "filename": filename, "declared_size": size,
        "content_type": "video/mp4", "metadata": [["title", "Holiday"]]
    }}})
    .to_string()
}

#[test]
fn run_prints_the_answer_and_what_the_call_used() {
    let wasm = build_plugin("validator");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("call.json");
    std::fs::write(&input, upload_call("clip.mp4", 2_000)).unwrap();
    let manifest = manifest("validator");
    let out = mediahost(&[
        "plugin",
        "run",
        path(&wasm),
        "--manifest",
        &manifest,
        "--config",
        "max_size=1000",
        "--input",
        path(&input),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("validator check-upload\n"), "{stdout}");
    assert!(stdout.contains("\"Reject\""), "{stdout}");
    assert!(
        stdout.contains("\"reason\": \"file is 2000 bytes; the limit is 1000 bytes\""),
        "{stdout}"
    );
    let used = stdout
        .lines()
        .find(|l| l.starts_with("used: "))
        .expect("a usage line");
    // The manifest's limits are the ones reported.
    assert!(used.contains(" of 100 ms wall time, "), "{used}");
    assert!(used.contains(" of 10000000 fuel, "), "{used}");
    assert!(used.contains(" of 16.0 MiB linear memory"), "{used}");

    // --json: one object that parses, with the figures as numbers.
    let out = Command::new(BIN)
        .args([
            "plugin",
            "run",
            path(&wasm),
            "--manifest",
            &manifest,
            "--input",
            "-",
            "--json",
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["world"], "validator");
    assert_eq!(report["function"], "check-upload");
    assert_eq!(report["output"], serde_json::json!({"verdict": "Accept"}));
    let usage = &report["budget"];
    assert!(usage["fuel_used"].as_u64().unwrap() > 0, "{usage}");
    assert!(
        usage["fuel_used"].as_u64() < usage["fuel_limit"].as_u64(),
        "{usage}"
    );
    assert_eq!(usage["fuel_limit"], 10_000_000);
    // The instance's memory: at least one 64 KiB page, within the 16 MiB cap.
    let peak = usage["peak_memory_bytes"].as_u64().unwrap();
    assert!((65_536..=16 << 20).contains(&peak), "{usage}");
    assert!(usage["wall_time_us"].is_u64(), "{usage}");
}

#[test]
fn run_reports_a_failed_call_and_refuses_a_call_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_wat(dir.path(), "hostile.wasm", &traps_on_head());
    let input = dir.path().join("head.json");
    std::fs::write(
        &input,
        r#"{"check-head": {"info": {"tenant": "t", "video_id": "v", "filename": null,
            "declared_size": null, "content_type": null, "metadata": []}, "head": {"hex": "00"}}}"#,
    )
    .unwrap();
    let out = mediahost(&[
        "plugin",
        "run",
        path(&wasm),
        "--input",
        path(&input),
        "--fuel",
        "5000",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success());
    assert!(stdout.contains("error: plugin hostile"), "{stdout}");
    assert!(stdout.contains(" of 5000 fuel"), "{stdout}");
    assert!(stderr.contains("the call failed: trapped"), "{stderr}");

    std::fs::write(
        &input,
        r#"{"on-request": {"req": {"method": "GET", "path": "/",
        "query": null, "headers": [], "client_ip": null, "tenant": null, "received_at": 0}}}"#,
    )
    .unwrap();
    let out = mediahost(&["plugin", "run", path(&wasm), "--input", path(&input)]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("on-request is a function of the edge-transform world, but the component implements validator"),
        "{stderr}"
    );
}
