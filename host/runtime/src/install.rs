//! Plugins installed through the admin API (`PUT /v1/plugins/{name}`), beside those an operator
//! drops into the plugin folder by hand.
//!
//! An installed plugin is an ordinary plugin folder, `<dir>/<name>/`, holding the uploaded
//! `plugin.toml`, the component under the file name the manifest gives, and a marker file
//! ([`INSTALLED_MARKER`]) with the component's SHA-256. The marker is what tells the two kinds
//! apart: the API replaces and removes only folders it installed, and a catalog sync compares
//! markers with the catalog to see what changed. Hand-made folders are never touched.
//!
//! Writing is crash- and reload-safe: the files are written to a hidden staging folder
//! (`.installing-<name>`, which scans skip) and renamed into place while the reload lock is
//! held, so neither a concurrent rescan nor the folder watcher sees half a plugin.

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::Runtime;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::plugin::{Contents, PluginHost, PluginSummary, Source};

/// The marker file of an installed plugin's folder; holds the component's hex SHA-256.
pub const INSTALLED_MARKER: &str = ".mediahost-installed";

/// Longest plugin name the API accepts (it names a folder and an object-storage prefix).
const MAX_NAME_LEN: usize = 64;

/// A plugin as uploaded: its manifest text and component bytes.
#[derive(Debug, Clone)]
pub struct PluginPackage {
    /// `plugin.toml` as uploaded.
    pub manifest: String,
    /// The component's bytes.
    pub component: Vec<u8>,
}

impl PluginPackage {
    /// Hex SHA-256 of the component.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.component))
    }
}

/// What was checked about an uploaded plugin before it was installed.
#[derive(Debug, Clone)]
pub struct CheckedPlugin {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Hex SHA-256 of the component.
    pub sha256: String,
}

/// Why a plugin cannot be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The upload is not a loadable plugin: bad name, bad manifest, a component that does not
    /// compile or does not fit its declared world.
    #[error("{0}")]
    Invalid(String),
    /// The name belongs to a plugin the API did not install (files in the plugin folder).
    #[error(
        "plugin {name:?} is served from files in {} that were not installed through the API; change or remove them there",
        folder.display()
    )]
    NotInstalled {
        /// The plugin name.
        name: String,
        /// Its folder.
        folder: PathBuf,
    },
    /// This host has no plugin folder to install into.
    #[error("this process has no plugin folder; plugins cannot be installed here")]
    NoFolder,
    /// Writing or removing the plugin's files failed.
    #[error("cannot write plugin files under {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The engine could not be set up to check the component.
    #[error("{0}")]
    Runtime(#[from] crate::error::RuntimeError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks `name` can name a plugin folder and an object-storage prefix: 1–64 of `a-z`, `0-9`,
/// `-` and `_`, starting with a letter or digit.
pub fn check_plugin_name(name: &str) -> Result<(), InstallError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(InstallError::Invalid(format!(
            "invalid plugin name {name:?}: use 1 to {MAX_NAME_LEN} of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

/// Parses the package's manifest and checks it installs as `name`: same name, and a component
/// path that is a plain file name (the upload must not write outside its folder).
fn parse_manifest(name: &str, package: &PluginPackage) -> Result<Manifest, InstallError> {
    check_plugin_name(name)?;
    let manifest = Manifest::parse(&package.manifest)
        .map_err(|e| InstallError::Invalid(format!("{MANIFEST_FILE}: {e}")))?;
    if manifest.name != name {
        return Err(InstallError::Invalid(format!(
            "{MANIFEST_FILE} names the plugin {:?} but it is uploaded as {name:?}; the two must match",
            manifest.name
        )));
    }
    let plain = matches!(
        manifest.component.components().collect::<Vec<_>>().as_slice(),
        [PathPart::Normal(file)] if !file.to_string_lossy().starts_with('.')
    );
    if !plain {
        return Err(InstallError::Invalid(format!(
            "{MANIFEST_FILE}: component = {:?} must be a plain file name such as \"{name}.wasm\"",
            manifest.component.display()
        )));
    }
    Ok(manifest)
}

impl PluginHost {
    /// Checks `package` would load as plugin `name` on this host: the manifest parses, names
    /// `name` and stays within the host's limits, and the component compiles and implements
    /// the declared world. Nothing is written. Blocks while it compiles.
    pub fn check_package(
        &self,
        name: &str,
        package: &PluginPackage,
    ) -> Result<CheckedPlugin, InstallError> {
        let manifest = parse_manifest(name, package)?;
        let source = self.source().ok_or(InstallError::NoFolder)?.0;
        let runtime = match self.snapshot().runtime.clone() {
            Some(runtime) => runtime,
            None => Runtime::new(source.options.clone())?,
        };
        let contents = Contents {
            manifest: manifest.clone(),
            path: PathBuf::from(&manifest.component),
            bytes: package.component.clone(),
            sha256: package.sha256(),
        };
        let linker = runtime.linker()?;
        let (meta, _) = runtime
            .prepare(contents, &linker, &source.settings, None)
            .map_err(|(_, e)| InstallError::Invalid(e.to_string()))?;
        Ok(CheckedPlugin {
            manifest,
            sha256: meta.sha256.clone(),
        })
    }

    /// Checks `package` ([`PluginHost::check_package`]), writes it as `<dir>/<name>/` and
    /// reloads, so it serves when this returns (calls already running finish on the previous
    /// version). Refuses a name served from hand-made files. Blocks while it compiles.
    pub fn install(
        &self,
        name: &str,
        package: &PluginPackage,
    ) -> Result<PluginSummary, InstallError> {
        self.check_package(name, package)?;
        let (source, lock) = self.source().ok_or(InstallError::NoFolder)?;
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.refuse_hand_made(source, name)?;
        write_plugin_folder(&source.dir, name, package)?;
        self.rescan(source)?;
        self.plugins()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| InstallError::Invalid(format!("plugin {name:?} did not load")))
    }

    /// Removes the installed plugin `name` and reloads; `Ok(false)` when no plugin of that
    /// name was installed. Refuses a name served from hand-made files.
    pub fn uninstall(&self, name: &str) -> Result<bool, InstallError> {
        let (source, lock) = self.source().ok_or(InstallError::NoFolder)?;
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.refuse_hand_made(source, name)?;
        let removed = remove_plugin_folder(&source.dir, name)?;
        if removed {
            self.rescan(source)?;
        }
        Ok(removed)
    }

    /// The plugins installed through the API in this host's folder, by name, with their
    /// components' SHA-256 (empty without a folder).
    pub fn installed(&self) -> BTreeMap<String, String> {
        self.source()
            .map(|(source, _)| installed_plugins(&source.dir))
            .unwrap_or_default()
    }

    /// Fails when `name` is served (or was last seen) from a folder the API did not install.
    fn refuse_hand_made(&self, source: &Source, name: &str) -> Result<(), InstallError> {
        let own = source.dir.join(name);
        let snapshot = self.snapshot();
        let hand_made = snapshot
            .entries
            .iter()
            .find(|e| e.name == name && (e.folder != own || !own.join(INSTALLED_MARKER).is_file()))
            .map(|e| e.folder.clone())
            .or_else(|| {
                (own.exists() && !own.join(INSTALLED_MARKER).is_file()).then(|| own.clone())
            });
        match hand_made {
            Some(folder) => Err(InstallError::NotInstalled {
                name: name.to_owned(),
                folder,
            }),
            None => Ok(()),
        }
    }
}

/// Plugins installed through the API under `dir`: name → component SHA-256 from the marker.
pub fn installed_plugins(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            check_plugin_name(&name).ok()?;
            let sha256 = std::fs::read_to_string(entry.path().join(INSTALLED_MARKER)).ok()?;
            Some((name, sha256.trim().to_owned()))
        })
        .collect()
}

/// Writes `package` as the installed plugin folder `<dir>/<name>/`, replacing an installed
/// one: staged in a hidden folder, then renamed into place. Does not reload; callers that
/// serve hold the reload lock ([`PluginHost::install`]), start-up restores run before loading.
pub fn write_plugin_folder(
    dir: &Path,
    name: &str,
    package: &PluginPackage,
) -> Result<(), InstallError> {
    let manifest = parse_manifest(name, package)?;
    let staging = dir.join(format!(".installing-{name}"));
    let outgoing = dir.join(format!(".removing-{name}"));
    let target = dir.join(name);
    for leftover in [&staging, &outgoing] {
        remove_if_present(leftover)?;
    }
    std::fs::create_dir_all(&staging).map_err(io_error(&staging))?;
    let sha256 = package.sha256();
    let files = [
        (manifest.component.as_path(), package.component.as_slice()),
        (Path::new(MANIFEST_FILE), package.manifest.as_bytes()),
        (Path::new(INSTALLED_MARKER), sha256.as_bytes()),
    ];
    for (file, bytes) in files {
        let path = staging.join(file);
        std::fs::write(&path, bytes).map_err(io_error(&path))?;
    }
    if target.exists() {
        std::fs::rename(&target, &outgoing).map_err(io_error(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(io_error(&target))?;
    remove_if_present(&outgoing)
}

/// Removes the installed plugin folder `<dir>/<name>/`; `Ok(false)` when there is none.
/// Folders without the marker are left alone (and reported as absent).
pub fn remove_plugin_folder(dir: &Path, name: &str) -> Result<bool, InstallError> {
    check_plugin_name(name)?;
    let target = dir.join(name);
    if !target.join(INSTALLED_MARKER).is_file() {
        return Ok(false);
    }
    // Renamed away first so a rescan never sees a half-deleted folder.
    let outgoing = dir.join(format!(".removing-{name}"));
    remove_if_present(&outgoing)?;
    std::fs::rename(&target, &outgoing).map_err(io_error(&target))?;
    remove_if_present(&outgoing)?;
    Ok(true)
}

fn remove_if_present(path: &Path) -> Result<(), InstallError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}
