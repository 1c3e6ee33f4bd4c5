//! The disk tier: one file per object in a folder, within its own byte budget, least recently
//! used files deleted first.
//!
//! A file is `MHEDGE01`, a little-endian `u32` length, that many bytes of JSON ([`Header`]:
//! the cache key, the kept origin headers, when it was stored, how long it stays fresh) and
//! the body. Files are written under a `.tmp` name and renamed when complete, so a crash never
//! leaves a half file under an object's name. At start-up the folder is scanned and the index
//! rebuilt from the headers, which is what lets the cache survive a restart; recency is then
//! approximated by storage time.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{Cached, Meta};
use crate::lru::Lru;

const MAGIC: &[u8; 8] = b"MHEDGE01";
/// Largest header a file may carry (key, a few headers and numbers take far less).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// What precedes the body in an object's file.
#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    headers: Vec<(String, String)>,
    stored_unix_ms: u64,
    fresh_for_ms: u64,
    stale_for_ms: u64,
    /// Files written before the edge remembered signatures have none.
    #[serde(default)]
    signed_with: Option<String>,
    len: u64,
}

/// One object on disk.
#[derive(Debug)]
pub struct Entry {
    /// Its headers and freshness, as when it was stored.
    pub meta: Arc<Meta>,
    /// Body length in bytes.
    pub len: u64,
    file: PathBuf,
    /// Where the body starts in the file.
    body_offset: u64,
}

impl Entry {
    /// Opens the file, positioned at the start of the body. An open file keeps its bytes even
    /// if the entry is evicted (and the file deleted) meanwhile.
    pub async fn open(&self) -> std::io::Result<tokio::fs::File> {
        let mut file = tokio::fs::File::open(&self.file).await?;
        file.seek(SeekFrom::Start(self.body_offset)).await?;
        Ok(file)
    }
}

/// Reads the whole body from `file` positioned by [`Entry::open`].
pub async fn read(mut file: tokio::fs::File, len: u64) -> std::io::Result<Bytes> {
    let mut body = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact(&mut body).await?;
    Ok(body.into())
}

/// Body bytes `[start, end)` from `file` positioned by [`Entry::open`], as a stream.
pub async fn stream(
    mut file: tokio::fs::File,
    start: u64,
    end: u64,
) -> std::io::Result<tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>> {
    file.seek(SeekFrom::Current(start as i64)).await?;
    Ok(tokio_util::io::ReaderStream::new(file.take(end - start)))
}

/// The disk tier's index over its folder.
pub struct Disk {
    dir: PathBuf,
    index: Mutex<Lru<Arc<Entry>>>,
    /// Makes file names unique among the writes of this process (the write's time, also in
    /// the name, separates processes).
    seq: AtomicU64,
    /// Writes under way may not exceed [`WRITERS`]: each holds its object in memory and a
    /// blocking thread until done, so a burst of evictions must not queue without bound.
    writers: Arc<Semaphore>,
}

/// A turn to write to disk (see [`WRITERS`]).
pub struct Writer {
    /// Returned when the write is done (dropped).
    _permit: OwnedSemaphorePermit,
}

/// Disk writes at once. Evictions beyond that are not written (the object is simply no longer
/// cached, counted in `mediahost_edge_disk_skipped_total`); pushes wait for their turn.
pub const WRITERS: usize = 4;

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

fn report(bytes: u64) {
    metrics::gauge!("mediahost_edge_cache_bytes", "tier" => "disk").set(bytes as f64);
}

/// Deletes the files of entries that left the index; a file already gone is fine. Inline even
/// on async threads: unlinking takes microseconds, and doing it before returning means a
/// purge has freed the space (and a rescan cannot find the files) once it answers.
fn delete(gone: Vec<(String, Arc<Entry>)>) {
    for (key, entry) in gone {
        if let Err(e) = std::fs::remove_file(&entry.file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%key, file = %entry.file.display(), error = %e, "cannot delete cached file");
        }
    }
}

/// Reads the header of the object file at `path`; `None` when it is not a complete one.
fn read_header(path: &Path) -> Option<(Header, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut lead = [0u8; 12];
    file.read_exact(&mut lead).ok()?;
    if &lead[..8] != MAGIC {
        return None;
    }
    let json_len = u32::from_le_bytes(lead[8..].try_into().expect("4 bytes")) as u64;
    // A damaged length must not make the scan allocate gigabytes: headers are small.
    if json_len > MAX_HEADER_BYTES || 12 + json_len > size {
        return None;
    }
    let mut json = vec![0u8; usize::try_from(json_len).ok()?];
    file.read_exact(&mut json).ok()?;
    let header: Header = serde_json::from_slice(&json).ok()?;
    let body_offset = 12 + json_len;
    (size == body_offset + header.len).then_some((header, body_offset))
}

impl Disk {
    /// The disk tier over `dir` (created if needed) holding at most `budget` bytes of files;
    /// rebuilds the index from the files there, deleting unfinished, unreadable and expired
    /// ones and the oldest beyond the budget.
    pub fn open(dir: &Path, budget: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now();
        let mut found: Vec<(String, Arc<Entry>, u64)> = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            let header = match path.extension().and_then(|e| e.to_str()) {
                Some("obj") => read_header(&path),
                Some("tmp") => None,
                _ => continue,
            };
            let Some((header, body_offset)) = header else {
                tracing::info!(file = %path.display(), "deleting an incomplete cache file");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let mut headers = HeaderMap::new();
            for (name, value) in &header.headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(name, value);
                }
            }
            let entry = Entry {
                meta: Arc::new(
                    Meta::new(
                        headers,
                        UNIX_EPOCH + Duration::from_millis(header.stored_unix_ms),
                        Duration::from_millis(header.fresh_for_ms),
                        Duration::from_millis(header.stale_for_ms),
                    )
                    .with_signature(header.signed_with),
                ),
                len: header.len,
                file: path,
                body_offset,
            };
            if !entry.meta.is_usable(now) {
                let _ = std::fs::remove_file(&entry.file);
                continue;
            }
            found.push((header.key, Arc::new(entry), body_offset + header.len));
        }
        // Oldest first, so the index's recency order follows storage time.
        found.sort_by_key(|(_, entry, _)| entry.meta.stored);
        let mut index = Lru::new(budget);
        for (key, entry, cost) in found {
            if index.fits(cost) {
                // A key stored twice (a crash between writing a new version and deleting the
                // old) keeps the newer file.
                delete(index.insert(&key, entry, cost));
            } else {
                delete(vec![(key, entry)]);
            }
        }
        tracing::info!(dir = %dir.display(), bytes = index.bytes(), "disk cache opened");
        report(index.bytes());
        Ok(Self {
            dir: dir.to_owned(),
            index: Mutex::new(index),
            seq: AtomicU64::new(0),
            writers: Arc::new(Semaphore::new(WRITERS)),
        })
    }

    /// Whether an object of `len` body bytes under `key` can be kept at all.
    pub fn fits(&self, key: &str, len: u64) -> bool {
        // The header is small next to a budget worth having; 4 KiB covers it.
        self.index
            .lock()
            .expect("disk lock")
            .fits(len + key.len() as u64 + 4096)
    }

    /// The number of purges so far, to pass to [`Disk::write`].
    pub fn purges(&self) -> u64 {
        self.index.lock().expect("disk lock").purges()
    }

    /// Whether the disk already holds the version of `key` stored at `stored`, so evicting it
    /// from memory needs no write.
    pub fn holds(&self, key: &str, stored: SystemTime) -> bool {
        let index = self.index.lock().expect("disk lock");
        index.peek(key).is_some_and(|e| e.meta.stored == stored)
    }

    /// The entry for `key` while it may be served at `now`, marked most recently used; an
    /// entry past that is deleted.
    pub fn get(&self, key: &str, now: SystemTime) -> Option<Arc<Entry>> {
        let mut index = self.index.lock().expect("disk lock");
        let entry = index.get(key)?;
        if entry.meta.is_usable(now) {
            return Some(entry);
        }
        index.remove(key);
        report(index.bytes());
        drop(index);
        delete(vec![(key.to_owned(), entry)]);
        None
    }

    /// A turn to write now, if one is free.
    pub fn try_writer(&self) -> Option<Writer> {
        let permit = self.writers.clone().try_acquire_owned().ok()?;
        Some(Writer { _permit: permit })
    }

    /// A turn to write, once one is free.
    pub async fn writer(&self) -> Writer {
        let permit = self.writers.clone().acquire_owned().await;
        Writer {
            _permit: permit.expect("the semaphore is never closed"),
        }
    }

    /// Writes `entry` (with the turn `permit`) to a file and indexes it under `key`, deleting least recently used
    /// files beyond the budget; nothing is kept when a purge happened since [`Disk::purges`]
    /// returned `since`. Failures are logged: the object is then simply not on disk.
    pub async fn write(
        self: Arc<Self>,
        key: String,
        entry: Arc<Cached>,
        since: u64,
        permit: Writer,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let disk = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            disk.write_file(&key, &entry, seq).map(|e| (key, e))
        })
        .await
        .expect("disk write task");
        drop(permit);
        let (key, entry, cost) = match written {
            Ok((key, (entry, cost))) => (key, entry, cost),
            Err(e) => {
                metrics::counter!("mediahost_edge_disk_errors_total").increment(1);
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write to the disk cache");
                return;
            }
        };
        let mut index = self.index.lock().expect("disk lock");
        if index.purges() != since || !index.fits(cost) {
            drop(index);
            delete(vec![(key, entry)]);
            return;
        }
        let gone = index.insert(&key, entry, cost);
        report(index.bytes());
        drop(index);
        delete(gone);
    }

    fn write_file(
        &self,
        key: &str,
        cached: &Cached,
        seq: u64,
    ) -> std::io::Result<(Arc<Entry>, u64)> {
        let meta = &cached.meta;
        let header = Header {
            key: key.to_owned(),
            headers: meta
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            stored_unix_ms: millis(meta.stored.duration_since(UNIX_EPOCH).unwrap_or_default()),
            fresh_for_ms: millis(meta.fresh_for),
            stale_for_ms: millis(meta.stale_for),
            signed_with: meta.signed_with.clone(),
            len: cached.body.len() as u64,
        };
        let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "{}-{started:x}-{seq:x}",
            hex_prefix(&Sha256::digest(key.as_bytes()))
        );
        let tmp = self.dir.join(format!("{name}.tmp"));
        let file = self.dir.join(format!("{name}.obj"));
        let result = (|| {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            std::io::Write::write_all(&mut out, MAGIC)?;
            std::io::Write::write_all(&mut out, &(json.len() as u32).to_le_bytes())?;
            std::io::Write::write_all(&mut out, &json)?;
            std::io::Write::write_all(&mut out, &cached.body)?;
            std::io::Write::flush(&mut out)?;
            std::fs::rename(&tmp, &file)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let body_offset = 12 + json.len() as u64;
        let entry = Entry {
            meta: meta.clone(),
            len: header.len,
            file,
            body_offset,
        };
        Ok((Arc::new(entry), body_offset + header.len))
    }

    /// Removes `key` (and its file).
    pub fn remove(&self, key: &str) {
        let mut index = self.index.lock().expect("disk lock");
        let gone = index.remove(key);
        report(index.bytes());
        drop(index);
        delete(gone.map(|e| (key.to_owned(), e)).into_iter().collect());
    }

    /// Removes every entry whose key starts with `prefix`; returns their keys.
    pub fn purge(&self, prefix: &str) -> Vec<String> {
        let mut index = self.index.lock().expect("disk lock");
        let gone = index.purge(prefix);
        report(index.bytes());
        drop(index);
        let keys = gone.iter().map(|(key, _)| key.clone()).collect();
        delete(gone);
        keys
    }

    /// Bytes of files held now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().expect("disk lock").bytes()
    }
}

/// The first 8 bytes of a digest in hex: enough to spread names, the rest of the name makes
/// them unique.
fn hex_prefix(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn cached(body: &str, fresh_for: Duration) -> Arc<Cached> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        Arc::new(Cached::new(
            Meta::new(headers, SystemTime::now(), fresh_for, Duration::ZERO),
            Bytes::from(body.to_owned()),
        ))
    }

    async fn put(disk: &Arc<Disk>, key: &str, entry: Arc<Cached>, since: u64) {
        let turn = disk.writer().await;
        disk.clone().write(key.into(), entry, since, turn).await;
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn objects_survive_reopening_and_the_budget_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let disk = Arc::new(Disk::open(dir.path(), 1 << 20).unwrap());
        put(&disk, "/a", cached("first", hour), disk.purges()).await;
        // Reopening orders files by their storage time (ms): /b must be the younger.
        tokio::time::sleep(Duration::from_millis(5)).await;
        put(&disk, "/b", cached("second object", hour), disk.purges()).await;
        let a = disk.get("/a", SystemTime::now()).unwrap();
        assert_eq!(read(a.open().await.unwrap(), a.len).await.unwrap(), "first");
        let one_file = disk.bytes() / 2;

        // A leftover temp file and a truncated object are cleaned up when reopening.
        std::fs::write(dir.path().join("x.tmp"), b"partial").unwrap();
        std::fs::write(dir.path().join("y.obj"), b"MHEDGE01garbage").unwrap();
        std::fs::write(dir.path().join("z.obj"), b"MHEDGE01\xff\xff\xff\xff{}").unwrap();
        drop(disk);
        let disk = Disk::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(files(dir.path()), 2);
        let b = disk.get("/b", SystemTime::now()).unwrap();
        assert_eq!(
            read(b.open().await.unwrap(), b.len).await.unwrap(),
            "second object"
        );
        assert_eq!(b.meta.headers[header::CONTENT_TYPE], "video/mp4");
        let mut chunks = Vec::new();
        let mut stream = stream(b.open().await.unwrap(), 7, 13).await.unwrap();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            chunks.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(chunks, b"object");

        // Reopened with room for one file: the older one goes.
        drop(disk);
        let disk = Disk::open(dir.path(), one_file + 8).unwrap();
        assert!(disk.get("/a", SystemTime::now()).is_none());
        assert!(disk.get("/b", SystemTime::now()).is_some());
        assert_eq!(files(dir.path()), 1);
    }

    #[tokio::test]
    async fn purges_and_expiry_delete_files_and_late_writes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(Disk::open(dir.path(), 1 << 20).unwrap());
        let before = disk.purges();
        put(
            &disk,
            "/v/1/a",
            cached("a", Duration::from_secs(60)),
            before,
        )
        .await;
        put(&disk, "/v/2/a", cached("b", Duration::ZERO), before).await;
        assert!(disk.get("/v/2/a", SystemTime::now()).is_none(), "expired");
        assert_eq!(disk.purge("/v/1/"), vec!["/v/1/a".to_owned()]);
        put(
            &disk,
            "/v/1/b",
            cached("late", Duration::from_secs(60)),
            before,
        )
        .await;
        assert!(
            disk.get("/v/1/b", SystemTime::now()).is_none(),
            "written after the purge"
        );
        assert_eq!(disk.bytes(), 0);
        assert_eq!(files(dir.path()), 0);
        let reopened = Disk::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.bytes(), 0);
    }
}
