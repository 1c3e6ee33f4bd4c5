//! Hot reload through the real watcher: a plugin folder is rewritten while calls run, and the
//! host swaps versions without failing a call, keeps the old version serving when the new files
//! are broken (saying why), and unloads a plugin whose folder is removed.
//!
//! The plugins are two hand-written `validator` components with different verdicts (`accept`
//! and `reject`, wrapped like `tests/hostile.rs`'s fixtures), so which version answered is
//! visible in every verdict.

mod support;

use support::{answer, upload};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mediahost_runtime::{PluginHost, PluginStatus, PluginSummary, UploadInfo, Verdict};

/// How long a change may take to show; the design's target is ≤ 1 s.
const BOUND: Duration = Duration::from_secs(5);

fn manifest(name: &str, version: &str, world: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\nworld = \"{world}\"\ncomponent = \"plugin.wasm\"\n"
    )
}

/// Writes `<dir>/<folder>/plugin.toml` and `plugin.wasm`.
fn install(dir: &Path, folder: &str, manifest: &str, component: &[u8]) {
    support::install_files(dir, folder, manifest, "plugin.wasm", component);
}

/// Polls `check` until it holds, returning how long that took; fails after [`BOUND`].
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < BOUND, "not within {BOUND:?}: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

fn only(host: &PluginHost) -> PluginSummary {
    let plugins = host.plugins();
    assert_eq!(plugins.len(), 1, "{plugins:?}");
    plugins.into_iter().next().unwrap()
}

/// Calls `check-upload` in a loop on another thread until dropped; every call must succeed.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(host: &PluginHost) -> Self {
        let (stop, calls) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (host, stop, calls) = (host.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let verdict = host.check_upload(&upload());
                    assert!(
                        verdict.is_ok(),
                        "a call failed during a reload: {verdict:?}"
                    );
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Self {
            stop,
            calls,
            thread: Some(thread),
        }
    }

    /// Stops the loop, asserting no call failed; returns how many ran.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.thread.take().unwrap().join();
        assert!(result.is_ok(), "the call loop panicked: a call failed");
        self.calls.load(Ordering::Relaxed)
    }
}

#[test]
fn swaps_versions_under_load_keeps_the_old_one_when_broken_and_unloads_removed_folders() {
    let dir = tempfile::tempdir().unwrap();
    let accept = mediahost_testkit::verdict_validator(None);
    let reject = mediahost_testkit::verdict_validator(Some((451, "version two")));
    install(
        dir.path(),
        "swap",
        &manifest("swap", "1.0.0", "validator"),
        &accept,
    );
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    let _watcher = host.watch().unwrap();
    let load = Load::start(&host);
    assert_eq!(answer(&host), 0);
    let first = only(&host);
    assert_eq!((first.status, first.reloads), (PluginStatus::Loaded, 0));

    // A new build: the new verdict shows within the bound.
    install(
        dir.path(),
        "swap",
        &manifest("swap", "2.0.0", "validator"),
        &reject,
    );
    let took = eventually("version 2 answers", || answer(&host) == 451);
    println!("reload latency (new component, file written → new verdict): {took:?}");
    let p = only(&host);
    let v2 = p.serving.clone().unwrap();
    assert_eq!(
        (p.status, v2.version.as_str(), p.reloads),
        (PluginStatus::Loaded, "2.0.0", 1)
    );
    assert!(v2.loaded_at > first.serving.unwrap().loaded_at);

    // Garbage as the component: version 2 keeps answering and the status says why.
    std::fs::write(
        dir.path().join("swap/plugin.wasm"),
        b"\0asm garbage, not a component",
    )
    .unwrap();
    eventually("the broken file shows as an error", || {
        only(&host).status == PluginStatus::Error
    });
    let p = only(&host);
    let error = p.last_error.clone().unwrap();
    assert!(
        error.contains("swap") && error.contains("compile"),
        "{error}"
    );
    assert_eq!(p.serving.as_ref().unwrap().sha256, v2.sha256);
    assert_eq!(p.reloads, 1);
    assert_eq!(answer(&host), 451, "the old version keeps serving");

    // A manifest declaring the wrong world, and a manifest that does not parse: the same.
    install(
        dir.path(),
        "swap",
        &manifest("swap", "2.1.0", "router"),
        &reject,
    );
    eventually("the wrong world shows as an error", || {
        only(&host)
            .last_error
            .is_some_and(|e| e.contains("router world"))
    });
    std::fs::write(dir.path().join("swap/plugin.toml"), "name = [").unwrap();
    eventually("the bad manifest shows as an error", || {
        only(&host)
            .last_error
            .is_some_and(|e| e.contains("plugin.toml"))
    });
    assert_eq!(only(&host).name, "swap");
    assert_eq!(answer(&host), 451, "the old version keeps serving");

    // Fixed again: a third version serves and the reload is counted.
    install(
        dir.path(),
        "swap",
        &manifest("swap", "3.0.0", "validator"),
        &accept,
    );
    eventually("version 3 answers", || answer(&host) == 0);
    eventually("the status recovers", || {
        only(&host).status == PluginStatus::Loaded
    });
    let p = only(&host);
    assert_eq!(
        (p.serving.unwrap().version.as_str(), p.reloads, p.last_error),
        ("3.0.0", 2, None)
    );

    // Same component, new manifest: the compiled component is reused under the new version.
    install(
        dir.path(),
        "swap",
        &manifest("swap", "3.0.1", "validator"),
        &accept,
    );
    eventually("version 3.0.1 is listed", || {
        only(&host).serving.unwrap().version == "3.0.1"
    });
    assert_eq!(only(&host).reloads, 3);

    // A new folder that never loads is listed as an error with nothing serving.
    install(
        dir.path(),
        "broken",
        &manifest("broken", "0.1.0", "validator"),
        b"garbage",
    );
    eventually("the broken plugin is listed", || host.plugins().len() == 2);
    let broken = host
        .plugins()
        .into_iter()
        .find(|p| p.name == "broken")
        .unwrap();
    assert_eq!(
        (broken.status, broken.serving, broken.reloads),
        (PluginStatus::Error, None, 0)
    );
    assert!(broken.last_error.unwrap().contains("broken"));
    std::fs::remove_dir_all(dir.path().join("broken")).unwrap();

    // Removing the folder unloads the plugin.
    install(
        dir.path(),
        "swap",
        &manifest("swap", "4.0.0", "validator"),
        &reject,
    );
    eventually("version 4 answers", || answer(&host) == 451);
    std::fs::remove_dir_all(dir.path().join("swap")).unwrap();
    eventually("the plugin is unloaded", || host.plugins().is_empty());
    assert_eq!(
        answer(&host),
        0,
        "no validator left: everything is accepted"
    );

    let calls = load.finish();
    assert!(calls > 100, "the call loop ran only {calls} calls");
    println!("{calls} calls during the reloads, none failed");
}

#[test]
fn a_plugin_added_to_an_empty_or_missing_folder_loads() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let host = PluginHost::load(&plugins, &BTreeMap::new()).unwrap();
    assert!(host.plugins().is_empty());
    let _watcher = host.watch().unwrap();
    assert!(plugins.is_dir(), "watch creates the folder");
    install(
        &plugins,
        "late",
        &manifest("late", "1.0.0", "validator"),
        &mediahost_testkit::verdict_validator(Some((415, "late"))),
    );
    eventually("the new plugin answers", || answer(&host) == 415);
    assert_eq!(only(&host).status, PluginStatus::Loaded);
}

/// File written → new version answering, over several swaps; printed for BENCHMARKS.md.
#[test]
fn reload_latency() {
    let dir = tempfile::tempdir().unwrap();
    install(
        dir.path(),
        "p",
        &manifest("p", "0", "validator"),
        &mediahost_testkit::verdict_validator(None),
    );
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    let _watcher = host.watch().unwrap();
    let mut samples = Vec::new();
    for round in 1..=10u16 {
        let status = 400 + round;
        let wasm = mediahost_testkit::verdict_validator(Some((status, "round")));
        let started = Instant::now();
        install(
            dir.path(),
            "p",
            &manifest("p", &round.to_string(), "validator"),
            &wasm,
        );
        eventually("the new round answers", || answer(&host) == status);
        samples.push(started.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "hot reload latency over {} swaps: min {:.0} ms, median {:.0} ms, max {:.0} ms (debounce {:?})",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        mediahost_runtime::DEBOUNCE,
    );
    assert!(samples[samples.len() - 1] < BOUND);
}

/// The same measure with the reference validator (built from `plugins/validator`), so the
/// figure includes compiling a real 60 KB component: each round appends a different custom
/// section, which changes the bytes (and so forces a compile) but not the behaviour; the new
/// version is seen answering when the listing shows it (the listing and the calls read the same
/// snapshot).
#[test]
fn reload_latency_of_the_reference_validator() {
    let wasm = std::fs::read(mediahost_testkit::build_plugin("validator")).unwrap();
    let reference = std::fs::read_to_string(
        mediahost_testkit::repo_root().join("plugins/validator/plugin.toml"),
    )
    .unwrap();
    let file = reference
        .lines()
        .find_map(|l| l.strip_prefix("component = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("validator");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("plugin.toml"), &reference).unwrap();
    std::fs::write(folder.join(&file), &wasm).unwrap();
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    let _watcher = host.watch().unwrap();
    let mut samples = Vec::new();
    for round in 1..=5u8 {
        // A custom section: id 0, size, name length, name, payload.
        let mut bytes = wasm.clone();
        bytes.extend_from_slice(&[0, 3, 1, b'r', round]);
        let version = format!("0.1.{round}");
        let manifest = reference.replacen(
            "version = \"0.1.0\"",
            &format!("version = \"{version}\""),
            1,
        );
        let started = Instant::now();
        std::fs::write(folder.join(&file), &bytes).unwrap();
        std::fs::write(folder.join("plugin.toml"), manifest).unwrap();
        eventually("the new build serves", || {
            only(&host).serving.is_some_and(|v| v.version == version)
        });
        samples.push(started.elapsed());
        let p = only(&host);
        assert_eq!(
            (p.status, p.reloads),
            (PluginStatus::Loaded, u64::from(round))
        );
        match host.check_upload(&UploadInfo {
            filename: Some("setup.exe".into()),
            ..upload()
        }) {
            Ok(Verdict::Reject(r)) => assert_eq!(r.status, 422),
            other => panic!("the reference validator should reject an .exe: {other:?}"),
        }
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "hot reload latency of the reference validator over {} rebuilds: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    );
}
