//! Resume state: one small JSON file per unfinished tus upload, so a later run of
//! `mediahost upload --resumable` on the same file continues where the last one stopped.
//!
//! The directory is `MEDIAHOST_STATE_DIR`, else `$XDG_STATE_HOME/mediahost`, else
//! `~/.local/state/mediahost`. A file is named `<key>.json`, where the key is the hex SHA-256 of
//! `server \n canonical path \n size \n mtime (ns since the epoch)`: a file that changed (size
//! or mtime) or another server gets a fresh upload. Files are written atomically (temp file +
//! rename) and deleted once the upload completes.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// What is kept about an unfinished upload.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    /// Full URL of the tus upload (`HEAD`/`PATCH` target).
    pub upload_url: String,
    /// The video the upload fills.
    pub video_id: String,
    /// The rest identify the file, for people reading the directory.
    pub server: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
}

/// The state file of one (server, file) pair.
pub struct Entry {
    path: PathBuf,
    /// The file's identity, copied into what is saved.
    pub server: String,
    pub file: PathBuf,
    pub size: u64,
    pub mtime_ns: u128,
}

/// The state directory from the environment.
fn dir() -> anyhow::Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("MEDIAHOST_STATE_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return Ok(Path::new(&dir).join("mediahost"));
    }
    let home = var("HOME")
        .context("no place for resume state: set MEDIAHOST_STATE_DIR, XDG_STATE_HOME or HOME")?;
    Ok(Path::new(&home).join(".local/state/mediahost"))
}

impl Entry {
    /// The entry of `file` (as it is now on disk) uploaded to `server`.
    pub fn for_file(server: &str, file: &Path) -> anyhow::Result<Self> {
        let file = std::fs::canonicalize(file)
            .with_context(|| format!("cannot resolve {}", file.display()))?;
        let meta = std::fs::metadata(&file)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = hex::encode(sha2::Sha256::digest(format!(
            "{server}\n{}\n{}\n{mtime_ns}",
            file.display(),
            meta.len()
        )));
        Ok(Self {
            path: dir()?.join(format!("{key}.json")),
            server: server.to_owned(),
            file,
            size: meta.len(),
            mtime_ns,
        })
    }

    /// The saved upload, if any (an unreadable file counts as none).
    pub fn load(&self) -> Option<Saved> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records the upload URL and video of this file.
    pub fn save(&self, upload_url: &str, video_id: &str) -> anyhow::Result<()> {
        let saved = Saved {
            upload_url: upload_url.to_owned(),
            video_id: video_id.to_owned(),
            server: self.server.clone(),
            path: self.file.clone(),
            size: self.size,
            mtime_ns: self.mtime_ns,
        };
        let dir = self.path.parent().expect("state files live in a directory");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state dir {}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&saved)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Forgets the upload (done, or gone on the server).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
