//! Plugins installed and removed through the runtime's install API (what `PUT` and `DELETE
//! /v1/plugins/{name}` use): a checked upload serves as soon as `install` returns, a bad one
//! changes nothing, calls running meanwhile never fail, and hand-made plugin folders are never
//! replaced or removed.

mod support;

use support::answer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mediahost_runtime::{INSTALLED_MARKER, InstallError, PluginHost, PluginPackage, PluginStatus};
use mediahost_testkit::verdict_validator;

fn manifest(name: &str, version: &str, world: &str, component: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\nworld = \"{world}\"\ncomponent = \"{component}\"\n"
    )
}

fn package(name: &str, version: &str, reject: Option<(u16, &str)>) -> PluginPackage {
    PluginPackage {
        manifest: manifest(name, version, "validator", "plugin.wasm"),
        component: verdict_validator(reject),
    }
}

fn empty_host() -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    (dir, host)
}

#[test]
fn an_installed_plugin_serves_when_install_returns_and_is_gone_after_uninstall() {
    let (dir, host) = empty_host();
    assert_eq!(answer(&host), 0, "no plugin: everything is accepted");

    let first = package("gate", "1.0.0", Some((451, "blocked")));
    let summary = host.install("gate", &first).unwrap();
    assert_eq!(summary.status, PluginStatus::Loaded);
    let serving = summary.serving.unwrap();
    assert_eq!(serving.version, "1.0.0");
    assert_eq!(serving.sha256, first.sha256());
    assert_eq!(answer(&host), 451);
    assert_eq!(
        host.installed(),
        BTreeMap::from([("gate".to_owned(), first.sha256())])
    );
    // No staging folder is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["gate"]);

    // A restart loads it like any plugin folder.
    let restarted = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();
    assert_eq!(answer(&restarted), 451);

    assert!(host.uninstall("gate").unwrap());
    assert_eq!(answer(&host), 0);
    assert!(host.plugins().is_empty());
    assert!(!dir.path().join("gate").exists());
    assert!(!host.uninstall("gate").unwrap(), "nothing left to remove");
}

#[test]
fn replacing_a_plugin_under_load_fails_no_call() {
    let (_dir, host) = empty_host();
    host.install("gate", &package("gate", "1", None)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let load = {
        let (host, stop, calls) = (host.clone(), stop.clone(), calls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                answer(&host);
                calls.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for round in 0..5u16 {
        let status = 400 + round;
        let summary = host
            .install(
                "gate",
                &package("gate", &format!("2.{round}"), Some((status, "v2"))),
            )
            .unwrap();
        assert_eq!(summary.serving.unwrap().version, format!("2.{round}"));
        assert_eq!(answer(&host), status, "the new version answers at once");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        load.join().is_ok(),
        "a call failed while plugins were replaced"
    );
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(host.plugins()[0].reloads, 5);
}

#[test]
fn a_bad_upload_is_refused_and_the_serving_version_stays() {
    let (dir, host) = empty_host();
    let good = package("gate", "1", Some((451, "v1")));
    host.install("gate", &good).unwrap();

    let mut corrupt = package("gate", "2", None);
    corrupt.component.truncate(corrupt.component.len() / 2);
    let cases = [
        ("gate", corrupt, "cannot compile"),
        ("other", package("gate", "2", None), "must match"),
        (
            "gate",
            PluginPackage {
                manifest: manifest("gate", "2", "router", "plugin.wasm"),
                component: verdict_validator(None),
            },
            "router world",
        ),
        (
            "gate",
            PluginPackage {
                manifest: manifest("gate", "2", "validator", "../escape.wasm"),
                component: verdict_validator(None),
            },
            "plain file name",
        ),
        (
            "gate",
            PluginPackage {
                manifest: "name = \"gate\"".into(),
                component: verdict_validator(None),
            },
            "plugin.toml",
        ),
        (
            "Bad Name",
            package("Bad Name", "2", None),
            "invalid plugin name",
        ),
    ];
    for (name, package, expected) in cases {
        match host.install(name, &package) {
            Err(InstallError::Invalid(message)) => {
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name} ({expected}): expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(answer(&host), 451, "version 1 still serves");
    assert_eq!(host.plugins()[0].status, PluginStatus::Loaded);
    assert!(!dir.path().join("escape.wasm").exists());
    assert!(!dir.path().join("other").exists());
}

#[test]
fn hand_made_plugin_folders_are_never_replaced_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    support::install_files(
        dir.path(),
        "by-hand",
        &manifest("gate", "1", "validator", "plugin.wasm"),
        "plugin.wasm",
        &verdict_validator(Some((403, "by hand"))),
    );
    let host = PluginHost::load(dir.path(), &BTreeMap::new()).unwrap();

    let error = host
        .install("gate", &package("gate", "2", None))
        .unwrap_err();
    assert!(
        matches!(&error, InstallError::NotInstalled { folder, .. } if folder.ends_with("by-hand")),
        "{error:?}"
    );
    assert!(error.to_string().contains("not installed through the API"));
    assert!(matches!(
        host.uninstall("gate"),
        Err(InstallError::NotInstalled { .. })
    ));
    assert_eq!(answer(&host), 403);
    assert!(host.installed().is_empty());
    assert!(!dir.path().join("gate").join(INSTALLED_MARKER).exists());
}

#[test]
fn the_folder_watcher_never_sees_half_an_installed_plugin() {
    let (_dir, host) = empty_host();
    let _watcher = host.watch().unwrap();
    for round in 0..5 {
        let summary = host
            .install(
                "gate",
                &package("gate", &format!("{round}"), Some((450, "x"))),
            )
            .unwrap();
        assert_eq!(summary.status, PluginStatus::Loaded);
        // Let the watcher's debounced rescan run over what was just written.
        std::thread::sleep(mediahost_runtime::DEBOUNCE * 2);
        let plugins = host.plugins();
        assert_eq!(plugins.len(), 1, "{plugins:?}");
        assert_eq!(plugins[0].status, PluginStatus::Loaded, "{plugins:?}");
        assert_eq!(plugins[0].last_error, None);
    }
}
