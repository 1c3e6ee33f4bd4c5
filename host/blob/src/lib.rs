//! Object storage for sources and renditions.
//!
//! Uploads are first streamed to a temp file under the data dir ([`Blobs::stage`]) while their
//! size and sha256 are computed, so nothing half-written ever appears in permanent storage and a
//! rejected upload is freed by dropping its [`Staged`] file. Promotion to permanent storage
//! streams the file through an `object_store` multipart upload, so memory stays flat whatever
//! the size and the same code writes to local files today and S3 tomorrow. `object_store` is
//! used directly rather than wrapped: it already is the storage boundary.
//!
//! Resumable (tus) uploads keep their bytes in a named temp file per upload across requests and
//! restarts instead ([`parts`]: append at a durable offset with fsync, hash, concatenate, promote).

mod parts;

pub use parts::PartWriter;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the pieces streamed to permanent storage (S3's minimum multipart part is 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Local disk I/O failed (temp files, downloads).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The object store failed.
    #[error("object storage error: {0}")]
    Store(#[from] object_store::Error),
    /// The object does not exist.
    #[error("object {0} not found")]
    NotFound(String),
    /// The client's body stream broke off before the end.
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// A key that is not a valid object path (e.g. contains `..`).
    #[error("invalid object key {0:?}")]
    BadKey(String),
}

/// A fully received upload waiting in temp storage. Dropping it deletes the temp file.
#[derive(Debug)]
pub struct Staged {
    /// The temp file (deleted on drop).
    file: tempfile::TempPath,
    /// Bytes received.
    pub size: u64,
    /// Hex sha256 of the bytes received.
    pub sha256: String,
}

/// The object store plus the temp area uploads are staged in.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Where uploads are staged and workers download sources to; same filesystem as the data
    /// dir so local promotion is cheap.
    temp_dir: PathBuf,
}

/// A stored object's bytes (all of them, or the range asked for) as a stream.
pub struct Object {
    /// What is known about the whole object.
    pub info: ObjectInfo,
    /// The bytes of `range` within the object.
    pub range: std::ops::Range<u64>,
    /// The content.
    pub body: futures::stream::BoxStream<'static, Result<Bytes, BlobError>>,
}

/// Size and validators of a stored object, for conditional and range requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Total size in bytes.
    pub size: u64,
    /// When the object was last written.
    pub last_modified: std::time::SystemTime,
    /// The store's entity tag (changes whenever the object is rewritten), when it has one.
    pub e_tag: Option<String>,
}

impl From<object_store::ObjectMeta> for ObjectInfo {
    fn from(meta: object_store::ObjectMeta) -> Self {
        Self {
            size: meta.size,
            last_modified: meta.last_modified.into(),
            e_tag: meta.e_tag,
        }
    }
}

fn object_path(key: &str) -> Result<ObjectPath, BlobError> {
    ObjectPath::parse(key).map_err(|_| BlobError::BadKey(key.to_owned()))
}

fn not_found_as(key: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_owned()),
        other => BlobError::Store(other),
    }
}

impl Blobs {
    /// Local storage: objects under `<data_dir>/objects`, temp files under `<data_dir>/tmp`.
    pub fn local(data_dir: &Path) -> Result<Self, BlobError> {
        let objects = data_dir.join("objects");
        let temp_dir = data_dir.join("tmp");
        std::fs::create_dir_all(&objects)?;
        std::fs::create_dir_all(&temp_dir)?;
        let store = LocalFileSystem::new_with_prefix(&objects)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            temp_dir,
        })
    }

    /// A fresh temp directory (deleted on drop) for work files such as transcoder output.
    pub fn temp_workdir(&self) -> Result<tempfile::TempDir, BlobError> {
        Ok(tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(&self.temp_dir)?)
    }

    /// Streams `body` into a temp file, hashing on the way. Only one chunk is in memory at a
    /// time, and the writer awaits the disk before pulling the next chunk, so a fast client is
    /// slowed to disk speed rather than buffered.
    pub async fn stage<S, E>(&self, body: S) -> Result<Staged, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.temp_dir)?;
        let (std_file, path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(Staged {
            file: path,
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Moves a staged upload to permanent storage under `key`; the temp file is removed.
    pub async fn promote(&self, staged: Staged, key: &str) -> Result<(), BlobError> {
        self.put_file(key, &staged.file).await
    }

    /// Streams a local file to `key` in parts, never holding more than one part in memory.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        let path = object_path(key)?;
        let mut src = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Bounds the parts in flight so a slow store applies backpressure.
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// Stores a small object held in memory (playlists).
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&object_path(key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Uploads every file under `dir` to `prefix/<relative path>`, in the order `order` sorts
    /// them (callers put playlists last so no playlist names a segment not yet stored).
    pub async fn put_dir(
        &self,
        dir: &Path,
        prefix: &str,
        order: impl Fn(&Path) -> u8,
    ) -> Result<u64, BlobError> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        files.sort_by_key(|p| (order(p), p.clone()));
        let mut bytes = 0;
        for file in &files {
            let rel = file.strip_prefix(dir).expect("walked under dir");
            let rel = rel.to_string_lossy().replace('\\', "/");
            self.put_file(&format!("{prefix}/{rel}"), file).await?;
            bytes += tokio::fs::metadata(file).await?.len();
        }
        Ok(bytes)
    }

    /// Streams the object at `key` into a new local file at `dest`.
    pub async fn download(&self, key: &str, dest: &Path) -> Result<u64, BlobError> {
        let object = self.get(key).await?;
        let mut out = tokio::fs::File::create(dest).await?;
        let mut body = object.body;
        let mut size = 0;
        while let Some(chunk) = body.try_next().await? {
            size += chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok(size)
    }

    /// The object at `key` as a stream.
    pub async fn get(&self, key: &str) -> Result<Object, BlobError> {
        self.get_opts(key, object_store::GetOptions::default())
            .await
    }

    /// Bytes `range` of the object at `key` (clamped by the store to the object's end).
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Object, BlobError> {
        let options = object_store::GetOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        self.get_opts(key, options).await
    }

    async fn get_opts(
        &self,
        key: &str,
        options: object_store::GetOptions,
    ) -> Result<Object, BlobError> {
        let result = self
            .store
            .get_opts(&object_path(key)?, options)
            .await
            .map_err(|e| not_found_as(key, e))?;
        let range = result.range.clone();
        let info = ObjectInfo::from(result.meta.clone());
        let body = result.into_stream().map_err(BlobError::from).boxed();
        Ok(Object { info, range, body })
    }

    /// Whether the object store answers: a lookup of a key that need not exist, where "not
    /// found" is a healthy answer.
    pub async fn ping(&self) -> Result<(), BlobError> {
        match self.head("readyz-probe").await {
            Ok(_) | Err(BlobError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Size and validators of the object at `key`, without its bytes.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, BlobError> {
        let meta = self
            .store
            .head(&object_path(key)?)
            .await
            .map_err(|e| not_found_as(key, e))?;
        Ok(meta.into())
    }

    /// Deletes everything under `prefix` (idempotent).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        let prefix = object_path(prefix)?;
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.try_next().await? {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn staged_upload_is_hashed_and_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let staged = blobs.stage(chunks(&[b"hello ", b"world"])).await.unwrap();
        assert_eq!(staged.size, 11);
        // sha256("hello world")
        assert_eq!(
            staged.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        blobs.promote(staged, "t/v/source").await.unwrap();
        let back = dir.path().join("back");
        assert_eq!(blobs.download("t/v/source", &back).await.unwrap(), 11);
        assert_eq!(std::fs::read(&back).unwrap(), b"hello world");
        let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "temp file removed after promotion");
    }

    #[tokio::test]
    async fn interrupted_or_dropped_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = blobs.stage(broken).await.unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        drop(blobs.stage(chunks(&[b"x"])).await.unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn ranges_and_validators() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        blobs
            .put_bytes("k", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let info = blobs.head("k").await.unwrap();
        assert_eq!(info.size, 10);
        assert!(info.e_tag.is_some());
        let part = blobs.get_range("k", 2..5).await.unwrap();
        assert_eq!((part.range.clone(), part.info.size), (2..5, 10));
        let bytes: Vec<Bytes> = part.body.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"234");
        blobs
            .put_bytes("k", Bytes::from_static(b"changed!!!"))
            .await
            .unwrap();
        assert_ne!(
            blobs.head("k").await.unwrap().e_tag,
            info.e_tag,
            "rewrites change the tag"
        );
    }

    #[tokio::test]
    async fn missing_object_and_prefix_delete() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        assert!(matches!(
            blobs.get("nope").await,
            Err(BlobError::NotFound(_))
        ));
        blobs
            .put_bytes("a/b/1", Bytes::from_static(b"1"))
            .await
            .unwrap();
        blobs
            .put_bytes("a/b/c/2", Bytes::from_static(b"2"))
            .await
            .unwrap();
        blobs
            .put_bytes("a/x", Bytes::from_static(b"3"))
            .await
            .unwrap();
        blobs.delete_prefix("a/b").await.unwrap();
        assert!(matches!(
            blobs.head("a/b/1").await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            blobs.get("a/b/1").await,
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(blobs.get("a/x").await.unwrap().info.size, 1);
    }
}
