//! Object storage for sources and renditions.
//!
//! Uploads are first streamed to a temp file under the data dir ([`Blobs::stage`]) while their
//! size and sha256 are computed, so nothing half-written ever appears in permanent storage and a
//! rejected upload is freed by dropping its [`Staged`] file. Promotion to permanent storage
//! streams the file to the object store, as one request for small files and as a multipart
//! upload of [`PART_SIZE`] pieces for large ones, so memory stays flat whatever the size.
//! `object_store` is used directly rather than wrapped: it already is the storage boundary.
//!
//! The object store is chosen by `[storage]` ([`Blobs::from_config`]): files under
//! `<data_dir>/objects` (the default) or an S3 bucket ([`s3`]: path-style requests, an optional
//! key prefix, a start-up check that names the setting to fix). Temp files stay on local disk
//! under `<data_dir>/tmp` either way: they are appended to and fsynced piece by piece.
//!
//! Resumable (tus) uploads keep their bytes across requests and restarts in a named temp file per
//! upload, or as piece objects in the object store so that any api process can take the next
//! request ([`parts`]: append at a durable offset, hash, concatenate, store).
//!
//! Tenants whose data must stay apart keep their objects in a store of their own
//! (`[storage.placements.<name>]`, [`placement`]): every key of a tenant starts with
//! `tenants/<id>/`, so [`Blobs`] picks the store from the key itself and no caller can put a
//! tenant's object in the wrong place.

mod appender;
mod direct;
mod parts;
pub mod placement;
mod s3;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use parts::{PartRef, PartWriter, SyncBehind, Synced};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use mediahost_core::config::{StorageBackend, StorageConfig};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appender::Appender;
use tokio::io::AsyncWriteExt;

/// Size of the pieces streamed to permanent storage (S3's minimum multipart part is 5 MiB).
/// Files smaller than this go up in one request.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one multipart upload in flight at once: bounds memory to this many parts while a
/// slow store applies backpressure to the reader.
const PARTS_IN_FLIGHT: usize = 4;

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
    /// The `[storage]` configuration cannot work as written.
    #[error("{setting}: {message}")]
    Config {
        /// The option to fix, e.g. `storage.s3.bucket`.
        setting: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The configured object store does not answer as it should (checked at start-up and by
    /// `/readyz`).
    #[error("{problem} (check {setting}): {cause}")]
    Unusable {
        /// The option(s) most likely wrong, e.g. `storage.s3.endpoint`.
        setting: String,
        /// What went wrong, naming the bucket and endpoint.
        problem: String,
        /// The store's own error, for the details.
        cause: String,
    },
    /// A tus part file is still open for writing by an earlier writer of the upload (one whose
    /// lease lapsed while a write of it was stalled): nobody else may write it until that ends.
    #[error("upload {0}: an earlier request's writes to it have not ended yet; retry shortly")]
    PartBusy(String),
    /// Where a tenant's objects are kept cannot be told (its placement is not configured in
    /// this process, or the tenant could not be looked up): nothing is read or written rather
    /// than risk the main store.
    #[error("{0}")]
    Placement(String),
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

/// The object stores plus the temp area uploads are staged in.
#[derive(Debug, Clone)]
pub struct Blobs {
    /// Permanent storage of sources and renditions (and plugin components).
    main: Arc<Target>,
    /// The stores of tenants placed elsewhere, and which tenant is where.
    placements: Arc<placement::Placements>,
    /// Where uploads are staged and workers download sources to; same filesystem as the data
    /// dir so local promotion is cheap.
    temp_dir: PathBuf,
    /// Where tus parts are kept ([`parts`]): files in `<temp_dir>/tus` unless set with
    /// [`Blobs::with_parts_dir`] (e.g. to a folder every api process of a deployment shares)
    /// or moved to the object store with [`Blobs::with_parts_in_object_storage`].
    parts: parts::PartsPlace,
    /// Running sha256 of each tus part's durable bytes, kept between the requests this process
    /// serves, so completing an upload need not read it all back to hash it ([`parts`]).
    digests: parts::Digests,
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

/// One object store and what is needed to use it well.
#[derive(Debug)]
pub(crate) struct Target {
    /// The objects.
    store: Arc<dyn ObjectStore>,
    /// The same store when it is local files: finished temp files are then hard-linked into
    /// place ([`Blobs::put_finished_file`]) rather than copied.
    local: Option<Arc<LocalFileSystem>>,
    /// How readiness checks reach the store: the same objects, but without retries and with
    /// short timeouts, so `/readyz` and start-up report an outage at once instead of retrying.
    probe: Probe,
}

impl Target {
    /// Files under `dir`.
    fn local(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true));
        Ok(Self {
            store: store.clone(),
            local: Some(store),
            probe: Probe::Local,
        })
    }

    /// The bucket of `config`, whose settings are in `section`.
    fn s3(
        config: &mediahost_core::config::S3Config,
        section: &s3::Section,
    ) -> Result<Self, BlobError> {
        let (store, probe) = s3::build(config, section)?;
        Ok(Self {
            store,
            local: None,
            probe: Probe::S3(Arc::new(probe)),
        })
    }

    /// Whether the store answers: a listing of a prefix that holds nothing, so a missing
    /// bucket or refused credentials fail it (a lookup of one key could not tell a missing
    /// bucket from a missing key). On S3 this is a real request, made without retries.
    async fn ping(&self) -> Result<(), BlobError> {
        let prefix = object_path(PROBE_KEY)?;
        match &self.probe {
            Probe::Local => match self.store.list(Some(&prefix)).next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e.into()),
            },
            Probe::S3(probe) => probe.check(&prefix).await,
        }
    }

    /// Where it is, for the start-up log.
    fn describe(&self) -> String {
        match &self.probe {
            Probe::Local => "local files".into(),
            Probe::S3(probe) => format!("S3 bucket {} at {}", probe.bucket, probe.endpoint),
        }
    }
}

/// The store readiness checks use, and how to explain its failures.
#[derive(Debug, Clone)]
enum Probe {
    /// Local files: the main store (there is nothing to retry).
    Local,
    /// An S3 bucket reached without retries.
    S3(Arc<s3::S3Probe>),
}

/// The key listed by readiness checks: no object has it, so the answer is an empty listing.
const PROBE_KEY: &str = "readyz-probe";

impl Blobs {
    /// Local storage: objects under `<data_dir>/objects`, temp files under `<data_dir>/tmp`.
    pub fn local(data_dir: &Path) -> Result<Self, BlobError> {
        Self::with_main(data_dir, Target::local(&data_dir.join("objects"))?)
    }

    /// The object stores `[storage]` names (the main one and every placement), each checked
    /// with a real request so a wrong endpoint, bucket or credentials stop the start-up with
    /// an error naming the setting to fix. Temp files go under `<data_dir>/tmp` whatever the
    /// backend. Until [`Blobs::with_placement_lookup`], every tenant's objects go to the main
    /// store.
    pub async fn from_config(data_dir: &Path, config: &StorageConfig) -> Result<Self, BlobError> {
        let main = match config.backend {
            StorageBackend::Local => Target::local(&data_dir.join("objects"))?,
            StorageBackend::S3 => Target::s3(&config.s3, &s3::Section::main())?,
        };
        main.ping().await?;
        tracing::info!(store = %main.describe(), "object storage");
        let mut blobs = Self::with_main(data_dir, main)?;
        let mut named = std::collections::BTreeMap::new();
        for (name, placement) in &config.placements {
            let target = match placement.backend {
                StorageBackend::Local => Target::local(
                    &placement
                        .dir
                        .clone()
                        .unwrap_or_else(|| data_dir.join("placements").join(name)),
                )?,
                StorageBackend::S3 => Target::s3(
                    &placement.s3,
                    &s3::Section(format!("storage.placements.{name}.s3")),
                )?,
            };
            target.ping().await?;
            tracing::info!(placement = %name, store = %target.describe(), "object storage placement");
            named.insert(name.clone(), Arc::new(target));
        }
        blobs.placements = Arc::new(placement::Placements::new(named));
        Ok(blobs)
    }

    fn with_main(data_dir: &Path, main: Target) -> Result<Self, BlobError> {
        let temp_dir = data_dir.join("tmp");
        std::fs::create_dir_all(&temp_dir)?;
        Ok(Self {
            main: Arc::new(main),
            placements: Default::default(),
            parts: parts::PartsPlace::Disk(temp_dir.join("tus")),
            temp_dir,
            digests: Default::default(),
        })
    }

    /// Tells the stores where each tenant's objects are kept: `lookup` answers a tenant id with
    /// its placement's name (`None`: the main store). Asked once per tenant (a placement never
    /// changes); a tenant in a placement this process lacks, or a failed lookup, fails the
    /// operation instead of using the main store.
    pub fn with_placement_lookup(mut self, lookup: placement::Lookup) -> Self {
        self.placements = Arc::new(self.placements.with_lookup(lookup));
        self
    }

    /// The names of the configured placements.
    pub fn placement_names(&self) -> Vec<String> {
        self.placements.names()
    }

    /// The store holding `key` (or every key under it, for a prefix).
    async fn target(&self, key: &str) -> Result<Arc<Target>, BlobError> {
        self.placements.target_for(key, &self.main).await
    }

    /// Keeps tus parts in `dir` (created on first use) instead of `<data_dir>/tmp/tus`.
    pub fn with_parts_dir(mut self, dir: PathBuf) -> Self {
        self.parts = parts::PartsPlace::Disk(dir);
        self
    }

    /// Keeps tus parts as piece objects in the object store (each tenant's in its own), so
    /// that no api process holds bytes another one needs.
    pub fn with_parts_in_object_storage(mut self) -> Self {
        self.parts = parts::PartsPlace::ObjectStorage;
        self
    }

    /// A fresh temp directory (deleted on drop) for work files such as transcoder output.
    pub fn temp_workdir(&self) -> Result<tempfile::TempDir, BlobError> {
        Ok(tempfile::Builder::new()
            .prefix("work-")
            .tempdir_in(&self.temp_dir)?)
    }

    /// Streams `body` into a temp file, hashing on the way (both on a thread of their own,
    /// [`appender`]). At most a few MiB of the body wait for the disk, so a fast client is
    /// slowed to disk speed rather than buffered.
    pub async fn stage<S, E>(&self, body: S) -> Result<Staged, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let temp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&self.temp_dir)?;
        let (file, path) = temp.into_parts();
        let file = Appender::start(
            file,
            Some(appender::kept(Sha256::new())),
            appender::Writeback::Early,
        );
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
            size += chunk.len() as u64;
            file.append(chunk).await?;
        }
        let promise = file.flush(true).await?.expect("started with a digest");
        let digest = appender::settle(promise).await?;
        Ok(Staged {
            file: path,
            size,
            sha256: hex::encode(digest.finalize()),
        })
    }

    /// Moves a staged upload to permanent storage under `key`; the temp file is removed.
    pub async fn promote(&self, staged: Staged, key: &str) -> Result<(), BlobError> {
        self.put_finished_file(key, &staged.file).await
    }

    /// Stores a fsynced local file that will not change any more under `key`, without copying
    /// it when it can: on local storage the file is hard-linked into place (the temp dir is on
    /// the data dir's filesystem), so a gigabyte source costs a link and a directory fsync
    /// instead of a second gigabyte of writes. On S3, or when linking fails (a data dir spread
    /// over filesystems), it is copied with [`Blobs::put_file`]. The caller may remove its temp
    /// name afterwards either way.
    pub async fn put_finished_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        if let Some(local) = &self.target(key).await?.local {
            let dest = local.path_to_filesystem(&object_path(key)?)?;
            let src = file.to_owned();
            match tokio::task::spawn_blocking(move || link_into_place(&src, &dest)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => tracing::debug!(key, error = %e, "hard link failed; copying instead"),
                Err(e) => return Err(BlobError::Io(std::io::Error::other(e))),
            }
        }
        self.put_file(key, file).await
    }

    /// Copies a local file to `key`: files under [`PART_SIZE`] in one request, larger ones as a
    /// multipart upload that never holds more than [`PARTS_IN_FLIGHT`] parts in memory and is
    /// aborted on failure, so no orphaned parts are left behind in the store.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), BlobError> {
        let src = tokio::fs::File::open(file).await?;
        let len = src.metadata().await?.len();
        let bytes = tokio_util::io::ReaderStream::with_capacity(src, 256 * 1024);
        self.put_stream(key, bytes.map_err(BlobError::from), len)
            .await
    }

    /// Stores the `len` bytes `body` yields under `key`, as [`Blobs::put_file`] does a file's.
    pub(crate) async fn put_stream(
        &self,
        key: &str,
        body: impl Stream<Item = Result<Bytes, BlobError>>,
        len: u64,
    ) -> Result<(), BlobError> {
        let path = object_path(key)?;
        let target = self.target(key).await?;
        let mut body = std::pin::pin!(body);
        if len < PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            while let Some(chunk) = body.try_next().await? {
                bytes.extend_from_slice(&chunk);
            }
            target
                .store
                .put(&path, PutPayload::from_bytes(bytes.into()))
                .await?;
            return Ok(());
        }
        let upload = target.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        match copy_parts(body, &mut writer).await {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "aborting a failed multipart upload failed");
                }
                Err(e)
            }
        }
    }

    /// Stores a small object held in memory (playlists).
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.target(key)
            .await?
            .store
            .put(&object_path(key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
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

    /// The object at `key` as a new local file at `dest`, **to be read only**: on local storage
    /// a hard link to the object (the temp dir is on the data dir's filesystem), so a gigabyte
    /// source costs nothing to fetch; objects are replaced by renaming, never rewritten in
    /// place, so the link keeps the bytes it was made with whatever happens to the key. On S3,
    /// or when linking fails, it is downloaded. Returns the size.
    pub async fn fetch_for_reading(&self, key: &str, dest: &Path) -> Result<u64, BlobError> {
        if let Some(local) = &self.target(key).await?.local {
            let src = local.path_to_filesystem(&object_path(key)?)?;
            let link = dest.to_owned();
            let linked = tokio::task::spawn_blocking(move || {
                std::fs::hard_link(&src, &link)?;
                std::fs::metadata(&link).map(|m| m.len())
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
            match linked {
                Ok(size) => return Ok(size),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BlobError::NotFound(key.to_owned()));
                }
                Err(e) => tracing::debug!(key, error = %e, "hard link failed; copying instead"),
            }
        }
        self.download(key, dest).await
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
            .target(key)
            .await?
            .store
            .get_opts(&object_path(key)?, options)
            .await
            .map_err(|e| not_found_as(key, e))?;
        let range = result.range.clone();
        let info = ObjectInfo::from(result.meta.clone());
        let body = result.into_stream().map_err(BlobError::from).boxed();
        Ok(Object { info, range, body })
    }

    /// Whether every object store (the main one and each placement's) answers: a listing of
    /// a prefix that holds nothing, so a missing bucket or refused credentials fail it. On S3
    /// this is a real request, made without retries.
    pub async fn ping(&self) -> Result<(), BlobError> {
        self.main.ping().await?;
        for target in self.placements.targets() {
            target.ping().await?;
        }
        Ok(())
    }

    /// Size and validators of the object at `key`, without its bytes.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, BlobError> {
        let meta = self
            .target(key)
            .await?
            .store
            .head(&object_path(key)?)
            .await
            .map_err(|e| not_found_as(key, e))?;
        Ok(meta.into())
    }

    /// The whole object at `key` in memory; for small objects (plugin components).
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, BlobError> {
        let object = self.get(key).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(object.info.size).unwrap_or(0));
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes.into())
    }

    /// Deletes the object at `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self
            .target(key)
            .await?
            .store
            .delete(&object_path(key)?)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes everything under `prefix` (idempotent). On S3 the keys go in bulk deletes of up
    /// to 1000 per request.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        let target = self.target(prefix).await?;
        let prefix = object_path(prefix)?;
        let locations = target
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = target.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Hard-links `src` at `dest`: a link under a temp name in `dest`'s folder renamed over `dest`,
/// so readers see the old object or the new one, never none; then the folder is fsynced so the
/// new name survives a crash (the file's bytes were fsynced by whoever wrote them).
fn link_into_place(src: &Path, dest: &Path) -> std::io::Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| std::io::Error::other("object path without a folder"))?;
    std::fs::create_dir_all(dir)?;
    let link = tempfile::Builder::new()
        .prefix(".link-")
        .make_in(dir, |path| std::fs::hard_link(src, path))?;
    link.persist(dest)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Feeds `body` into `writer` until it ends, waiting whenever [`PARTS_IN_FLIGHT`] parts are
/// still being uploaded.
async fn copy_parts(
    mut body: std::pin::Pin<&mut impl Stream<Item = Result<Bytes, BlobError>>>,
    writer: &mut WriteMultipart,
) -> Result<(), BlobError> {
    while let Some(chunk) = body.try_next().await? {
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.put(chunk);
    }
    Ok(())
}
