//! Test support shared by the crates' integration tests.
//!
//! Test media is generated at test time with ffmpeg's lavfi sources, and guest plugins are
//! compiled from `plugins/` (Rust to wasm32-wasip2, C with the C SDK's tool), so no binary
//! fixture lives in git. The helpers panic with a message naming the missing tool, because a
//! test that cannot build its inputs must fail loudly rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root: the nearest folder above the crate under test holding `wit/` and
/// `plugins/Cargo.toml`.
///
/// Found at run time (cargo sets `CARGO_MANIFEST_DIR` for test processes), never with
/// `env!`: a build directory shared by several checkouts can hold a testkit compiled in
/// another checkout, and a baked-in path would then point the tests at the wrong tree.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("a current directory"));
    start
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("plugins/Cargo.toml").is_file())
        .unwrap_or_else(|| panic!("no mediahost checkout above {}", start.display()))
        .to_path_buf()
}

/// Builds the guest plugin crate `name` from `plugins/` for wasm32-wasip2 (release) and returns
/// the component's path. Cargo's own lock makes concurrent callers safe; the mutex only avoids
/// piling up cargo processes within one test binary.
pub fn build_plugin(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let manifest = root.join("plugins/Cargo.toml");
    let target_dir = root.join("plugins/target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer test run's flags (coverage, sanitizers) do not apply to guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo to build a guest plugin");
    assert!(
        status.success(),
        "building plugin {name} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(wasm.exists(), "plugin build produced no {}", wasm.display());
    wasm
}

/// Builds the C guest plugin in `plugins/<name>/` (every `.c` file of the folder) with the C
/// SDK's build tool, for the world its `plugin.toml` declares, and returns the component's
/// path: `plugins/target/c/<name with _ for ->.wasm`, the file name the manifest expects.
pub fn build_c_plugin(name: &str) -> PathBuf {
    let root = repo_root();
    let folder = root.join("plugins").join(name);
    let manifest = std::fs::read_to_string(folder.join("plugin.toml"))
        .unwrap_or_else(|e| panic!("read plugins/{name}/plugin.toml: {e}"));
    let world = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("world = "))
        .map(|w| w.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("plugins/{name}/plugin.toml names no world"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("list plugins/{name}: {e}"))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    // Sorted, so the build does not depend on the order of the directory listing.
    sources.sort();
    let output = root
        .join("plugins/target/c")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let options = mediahost_plugin_c::BuildOptions::new(&world, sources, output.clone());
    if let Err(e) = mediahost_plugin_c::build(&options) {
        panic!("building C plugin {name} failed: {e}");
    }
    output
}

/// Options for [`generate_clip`].
#[derive(Debug, Clone)]
pub struct Clip {
    /// Length in seconds.
    pub seconds: f64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Add a sine-wave audio track.
    pub audio: bool,
    /// Add the video track.
    pub video: bool,
}

impl Default for Clip {
    fn default() -> Self {
        Self {
            seconds: 10.0,
            width: 640,
            height: 360,
            fps: 25,
            audio: true,
            video: true,
        }
    }
}

/// Writes an MP4 (H.264 + AAC) made from lavfi `testsrc2` and `sine` to `out`.
pub fn generate_clip(out: &Path, clip: &Clip) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if clip.video {
        cmd.args(["-f", "lavfi", "-i"]).arg(format!(
            "testsrc2=size={}x{}:rate={}:duration={}",
            clip.width, clip.height, clip.fps, clip.seconds
        ));
    }
    if clip.audio {
        cmd.args(["-f", "lavfi", "-i"]).arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            clip.seconds
        ));
    }
    if clip.video {
        cmd.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ]);
    }
    if clip.audio {
        cmd.args(["-c:a", "aac", "-b:a", "96k"]);
    }
    let status = cmd
        .arg(out)
        .status()
        .expect("run ffmpeg (install Debian's ffmpeg package)");
    assert!(
        status.success(),
        "ffmpeg failed to generate {}",
        out.display()
    );
}

/// Duration in seconds that `ffprobe` reads from `input` (a file path or URL), passing `headers`
/// (CRLF-terminated lines) on every HTTP request it makes.
pub fn ffprobe_duration(input: &str, headers: Option<&str>) -> f64 {
    ffprobe(
        input,
        headers,
        &[
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
        ],
    )
    .trim()
    .parse()
    .unwrap_or_else(|e| panic!("ffprobe printed no duration for {input}: {e}"))
}

/// Asserts that the segments of an audio-only rendition (`audio`, durations in seconds) are
/// cut where those of a video rendition (`video`) are, give or take one AAC frame (1024
/// samples at the clips' 48 kHz): audio can only be cut between its frames. The ends are not
/// compared: the sound may outlast the picture by part of a frame, and sound going on past a
/// boundary the picture did not reach makes one more audio segment.
pub fn assert_segments_aligned(video: &[f64], audio: &[f64]) {
    let cuts = |durations: &[f64]| {
        let mut end = 0.0;
        let mut cuts: Vec<f64> = durations
            .iter()
            .map(|d| {
                end += d;
                end
            })
            .collect();
        cuts.pop();
        cuts
    };
    let (v, mut a) = (cuts(video), cuts(audio));
    let picture_ends: f64 = video.iter().sum();
    if a.len() == v.len() + 1 && a[v.len()] >= picture_ends - 1024.0 / 48_000.0 {
        a.pop();
    }
    assert_eq!(v.len(), a.len(), "{video:?} vs {audio:?}");
    for (v, a) in v.into_iter().zip(a) {
        assert!(
            (v - a).abs() <= 1024.0 / 48_000.0 + 1e-3,
            "a segment is cut at {v} s in video, {a} s in audio: {video:?} vs {audio:?}"
        );
    }
}

/// What `ffprobe -v error ARGS input` prints, passing `headers` (CRLF-terminated lines) on every
/// HTTP request it makes; panics with its stderr when it fails, or when it has not finished
/// after two minutes (a server that leaves a request unanswered fails the test, not CI's clock).
pub fn ffprobe(input: &str, headers: Option<&str>, args: &[&str]) -> String {
    // coreutils' `timeout` ends ffprobe as a whole; `-rw_timeout` (µs) ends a read or write
    // that waits longer than 30 s, naming the URL.
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", "120", "ffprobe", "-v", "error"]);
    cmd.args(["-rw_timeout", "30000000"]);
    if let Some(h) = headers {
        cmd.args(["-headers", h]);
    }
    let out = cmd
        .args(args)
        .arg(input)
        .output()
        .expect("run ffprobe (install Debian's ffmpeg package)");
    assert!(
        out.status.code() != Some(124),
        "ffprobe was still reading {input} after 120 s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "ffprobe could not read {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a `validator`-world component around `core`, a core module declared as
/// `(core module $m ...)` that exports `memory`, `cabi_realloc`, `check-upload` and
/// `check-head`: the world's types and the `canon lift` of both functions.
pub fn validator_component(core: &str) -> String {
    format!(
        r#"(component
  {core}
  (core instance $i (instantiate $m))
  (type $rejection' (record (field "status" u16) (field "reason" string)))
  (export $rejection "rejection" (type $rejection'))
  (type $verdict' (variant (case "accept") (case "reject" $rejection)))
  (export $verdict "verdict" (type $verdict'))
  (type $info' (record
    (field "tenant" string)
    (field "video-id" string)
    (field "filename" (option string))
    (field "declared-size" (option u64))
    (field "content-type" (option string))
    (field "metadata" (list (tuple string string)))))
  (export $info "upload-info" (type $info'))
  (func $check-upload (param "info" $info) (result $verdict)
    (canon lift (core func $i "check-upload") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (export "check-upload" (func $check-upload))
  (func $check-head (param "info" $info) (param "head" (list u8)) (result $verdict)
    (canon lift (core func $i "check-head") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (export "check-head" (func $check-head))
)"#
    )
}

/// A `validator` component whose `check-upload` accepts (`reject = None`) or rejects with the
/// given status and reason; `check-head` always accepts.
pub fn verdict_validator(reject: Option<(u16, &str)>) -> Vec<u8> {
    let (case, status, reason) = match reject {
        None => (0, 0, ""),
        Some((status, reason)) => (1, status, reason),
    };
    let len = reason.len();
    let core = format!(
        r#"(core module $m
    (memory (export "memory") 1)
    (data (i32.const 100) "{reason}")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    ;; The verdict goes to memory at 0: case (u8) at 0, status (u16) at 4, reason at 8/12.
    (func (export "check-upload")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const {case}))
      (i32.store16 (i32.const 4) (i32.const {status}))
      (i32.store (i32.const 8) (i32.const 100))
      (i32.store (i32.const 12) (i32.const {len}))
      (i32.const 0))
    (func (export "check-head")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.const 0)))"#
    );
    wat::parse_str(validator_component(&core)).expect("the verdict validator is valid WAT")
}

/// The component of hostile fixture `fixture` (`host/runtime/tests/hostile/<fixture>.wat`, a
/// core module holding one misbehaviour) as a `validator`-world component.
pub fn hostile_validator(fixture: &str) -> Vec<u8> {
    let path = repo_root()
        .join("host/runtime/tests/hostile")
        .join(format!("{fixture}.wat"));
    let core =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = validator_component(&core.replacen("(module", "(core module $m", 1));
    wat::parse_str(&text).unwrap_or_else(|e| panic!("fixture {fixture}: {e}"))
}

/// The text of an `edge-transform`-world component around `core`, a core module declared as
/// `(core module $m ...)` that exports `memory`, `cabi_realloc`, `on-request` (the request head
/// flattened into 15 `i32` and one `i64`, the action returned through a pointer) and
/// `on-response` (its arguments and result both through pointers).
pub fn edge_transform_component(core: &str) -> String {
    format!(
        r#"(component
  {core}
  (core instance $i (instantiate $m))
  (type $request-head' (record
    (field "method" string)
    (field "path" string)
    (field "query" (option string))
    (field "headers" (list (tuple string string)))
    (field "client-ip" (option string))
    (field "tenant" (option string))
    (field "received-at" u64)))
  (export $request-head "request-head" (type $request-head'))
  (type $response' (record
    (field "status" u16)
    (field "headers" (list (tuple string string)))
    (field "body" (list u8))))
  (export $response "response" (type $response'))
  (type $request-action' (variant (case "continue" $request-head) (case "respond" $response)))
  (export $request-action "request-action" (type $request-action'))
  (type $response-head' (record (field "status" u16) (field "headers" (list (tuple string string)))))
  (export $response-head "response-head" (type $response-head'))
  (type $response-update' (record (field "head" $response-head) (field "body" (option (list u8)))))
  (export $response-update "response-update" (type $response-update'))
  (func $on-request (param "req" $request-head) (result $request-action)
    (canon lift (core func $i "on-request") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (export "on-request" (func $on-request))
  (func $on-response (param "req" $request-head) (param "resp" $response-head)
    (param "body" (option (list u8))) (result $response-update)
    (canon lift (core func $i "on-response") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (export "on-response" (func $on-response))
)"#
    )
}

/// An `edge-transform` component whose calls never return (a loop without end), to show that
/// its limits cut it off on the edge's hot path.
pub fn looping_edge_transform() -> Vec<u8> {
    let core = r#"(core module $m
    (memory (export "memory") 1)
    ;; Every allocation of the host's arguments lands at 1024; nothing is ever read back.
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "on-request")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32)
      (loop $forever (br $forever))
      (unreachable))
    (func (export "on-response") (param i32) (result i32)
      (loop $forever (br $forever))
      (unreachable)))"#;
    wat::parse_str(edge_transform_component(core)).expect("the looping edge transform is valid WAT")
}
