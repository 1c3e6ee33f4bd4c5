//! Hot reload: rescanning the plugin folder ([`PluginHost::reload`]) and watching it for changes
//! ([`PluginHost::watch`]).
//!
//! A rescan reads every plugin folder, skips those whose files did not change (same manifest
//! and component bytes), compiles the rest off the request path, checks each against its
//! world, and swaps the new set in at once. Per folder:
//!
//! | on disk | result |
//! | --- | --- |
//! | unchanged | the same compiled plugin, untouched |
//! | new component, loads | the new version serves; `reloads` + 1 |
//! | same component bytes, new manifest | the compiled component is reused with the new manifest |
//! | anything that fails (corrupt component, bad manifest, wrong world, duplicate name) | the old version keeps serving; status `error` with the reason |
//! | folder removed | the plugin is unloaded |
//!
//! Calls hold the snapshot they started with, so a call running during a swap finishes on the
//! old version. Start-up loading stays strict ([`PluginHost::load`] fails on any broken plugin);
//! only later changes are tolerated this way, because by then an old version is serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::engine::Runtime;
use crate::error::RuntimeError;
use crate::manifest::MANIFEST_FILE;
use crate::plugin::{Entry, PluginHost, Snapshot, Source, read_folder};

/// Quiet time after the last file event before a rescan: copying a component and its manifest
/// produces a burst of events, and one rescan should see the finished files.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

impl PluginHost {
    /// Rescans the plugin folder and swaps in what changed (see the module docs). Blocks while
    /// it compiles; calls keep running on the current set meanwhile. A host without a folder
    /// ([`PluginHost::empty`]) has nothing to reload.
    pub fn reload(&self) -> Result<(), RuntimeError> {
        let Some((source, lock)) = self.source() else {
            return Ok(());
        };
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.rescan(source)
    }

    /// The rescan of [`PluginHost::reload`]; the caller holds the reload lock.
    pub(crate) fn rescan(&self, source: &Source) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let current = self.snapshot();
        let folders = rescan_folders(&source.dir, &current.entries)?;
        let runtime = match (&current.runtime, folders.is_empty()) {
            (Some(runtime), _) => Some(runtime.clone()),
            (None, true) => None,
            (None, false) => Some(Runtime::new(source.options.clone())?),
        };
        let old: BTreeMap<&Path, &Entry> = current
            .entries
            .iter()
            .map(|e| (e.folder.as_path(), e))
            .collect();

        let mut entries = Vec::new();
        let mut changed = false;
        if let Some(runtime) = &runtime {
            let linker = runtime.linker()?;
            for folder in &folders {
                let prev = old.get(folder.as_path()).copied();
                let disk = read_folder(folder);
                if let Some(prev) = prev
                    && prev.seen == disk.fingerprint
                {
                    entries.push(prev.clone());
                    continue;
                }
                changed = true;
                let serving = prev.and_then(|p| p.serving.as_ref());
                let result = disk.contents.and_then(|contents| {
                    runtime.prepare(contents, &linker, &source.settings, serving)
                });
                let entry = match result {
                    Ok((meta, pre)) => {
                        let reused = serving.is_some_and(|s| s.meta.sha256 == meta.sha256);
                        tracing::info!(
                            plugin = %meta.name,
                            version = %meta.version,
                            world = %meta.world,
                            sha256 = %meta.sha256,
                            outcome = "ok",
                            recompiled = !reused,
                            "plugin reloaded"
                        );
                        metrics::counter!("mediahost_plugin_reloads_total", "plugin" => meta.name.clone(), "outcome" => "ok")
                            .increment(1);
                        Entry::loaded(
                            folder.clone(),
                            meta,
                            pre,
                            prev.map_or(0, |p| p.reloads + u64::from(p.serving.is_some())),
                            disk.fingerprint,
                        )
                    }
                    Err((name, source)) => {
                        let name = serving
                            .map(|s| s.meta.name.clone())
                            .or(name)
                            .unwrap_or_else(|| folder_name(folder));
                        let error = RuntimeError::Plugin {
                            folder: folder.clone(),
                            name: Some(name.clone()),
                            source,
                        };
                        tracing::warn!(
                            plugin = %name,
                            version = serving.map(|s| s.meta.version.as_str()),
                            sha256 = serving.map(|s| s.meta.sha256.as_str()),
                            outcome = "error",
                            error = %error,
                            "plugin reload failed; {}",
                            if serving.is_some() { "the previous version keeps serving" } else { "nothing serves" }
                        );
                        metrics::counter!("mediahost_plugin_reloads_total", "plugin" => name.clone(), "outcome" => "error")
                            .increment(1);
                        Entry {
                            folder: folder.clone(),
                            name,
                            serving: serving.cloned(),
                            last_error: Some(error.to_string()),
                            reloads: prev.map_or(0, |p| p.reloads),
                            seen: disk.fingerprint,
                        }
                    }
                };
                entries.push(entry);
            }
        }
        let kept: BTreeSet<&Path> = folders.iter().map(PathBuf::as_path).collect();
        for gone in current
            .entries
            .iter()
            .filter(|e| !kept.contains(e.folder.as_path()))
        {
            changed = true;
            tracing::info!(
                plugin = %gone.name,
                version = gone.serving.as_ref().map(|s| s.meta.version.as_str()),
                folder = %gone.folder.display(),
                outcome = "removed",
                "plugin unloaded: its folder is gone"
            );
        }
        if !changed {
            return Ok(());
        }
        refuse_duplicate_names(&mut entries);
        self.swap(Snapshot::new(runtime, entries));
        tracing::debug!(elapsed = ?started.elapsed(), "plugin set swapped");
        Ok(())
    }

    /// Watches the plugin folder (creating it if missing) and reloads after each burst of
    /// changes, on a thread of its own. Reloading stops when the returned [`Watcher`] is
    /// dropped.
    pub fn watch(&self) -> Result<Watcher, RuntimeError> {
        let Some((source, _)) = self.source() else {
            return Err(RuntimeError::Watch(
                "this plugin host was not loaded from a folder".into(),
            ));
        };
        let dir = source.dir.clone();
        let watch_error =
            |e: &dyn std::fmt::Display| RuntimeError::Watch(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(|e| watch_error(&e))?;

        let (tx, rx) = mpsc::channel();
        let events = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    // Our own rescans open and read the files; only finished writes matter.
                    Ok(e) => match e.kind {
                        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                        EventKind::Access(_) => false,
                        _ => true,
                    },
                    Err(_) => true,
                };
                if relevant {
                    let _ = events.send(Message::Changed);
                }
            })
            .map_err(|e| watch_error(&e))?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|e| watch_error(&e))?;

        let host = self.clone();
        let thread = std::thread::Builder::new()
            .name("mediahost-plugin-watch".into())
            .spawn(move || watch_loop(&host, &rx))
            .map_err(|e| watch_error(&e))?;
        // Catch what changed between loading and watching.
        let _ = tx.send(Message::Changed);
        tracing::info!(dir = %dir.display(), "watching the plugin folder for changes");
        Ok(Watcher {
            _watcher: watcher,
            tx,
            thread: Some(thread),
        })
    }
}

/// Reloads the plugins while alive; see [`PluginHost::watch`]. Dropping it stops watching and
/// waits for a reload in progress to finish.
pub struct Watcher {
    /// The OS watch (inotify on Linux); dropping it ends the events.
    _watcher: notify::RecommendedWatcher,
    /// Tells the reload thread to stop.
    tx: mpsc::Sender<Message>,
    /// Joined on drop, so no reload outlives the watcher.
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Message {
    /// Something under the plugin folder changed.
    Changed,
    /// The watcher was dropped.
    Stop,
}

fn watch_loop(host: &PluginHost, rx: &mpsc::Receiver<Message>) {
    loop {
        match rx.recv() {
            Ok(Message::Changed) => {}
            Ok(Message::Stop) | Err(_) => return,
        }
        // Debounce: wait until the folder has been quiet for a while.
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(Message::Changed) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if let Err(e) = host.reload() {
            tracing::warn!(error = %e, "plugin reload failed; the current plugins keep serving");
        }
    }
}

/// Folders a rescan visits: those holding a manifest, plus known plugin folders that still
/// exist (a missing manifest there is an error, not a removal).
fn rescan_folders(dir: &Path, known: &[Entry]) -> Result<Vec<PathBuf>, RuntimeError> {
    let mut folders: BTreeSet<PathBuf> = crate::plugin::plugin_folders(dir)?.into_iter().collect();
    folders.extend(
        known
            .iter()
            .filter(|e| e.folder.is_dir() && !e.folder.join(MANIFEST_FILE).is_file())
            .map(|e| e.folder.clone()),
    );
    Ok(folders.into_iter().collect())
}

fn folder_name(folder: &Path) -> String {
    folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Two folders serving the same name: the later folder (in path order) stops serving and
/// says why, so calls never depend on which folder happened to load last.
fn refuse_duplicate_names(entries: &mut [Entry]) {
    entries.sort_by(|a, b| a.folder.cmp(&b.folder));
    let mut taken: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in entries.iter_mut() {
        let Some(serving) = &entry.serving else {
            continue;
        };
        let name = serving.meta.name.clone();
        if let Some(first) = taken.get(&name) {
            let error = RuntimeError::DuplicateName {
                name: name.clone(),
                first: first.clone(),
                second: entry.folder.clone(),
            };
            tracing::warn!(plugin = %name, error = %error, "plugin not loaded");
            entry.serving = None;
            entry.last_error = Some(error.to_string());
        } else {
            taken.insert(name, entry.folder.clone());
        }
    }
}
