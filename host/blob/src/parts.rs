//! The bytes of resumable (tus) uploads between requests, kept where `tus.parts` says:
//!
//! - **disk** (the default): one file per upload, `<parts dir>/<upload id>`, appended to and
//!   fsynced at each durable offset. Its name is derived from the upload id, so after a crash the
//!   next PATCH finds it again. Several api processes behind one load balancer must share the
//!   folder. A writer holds an exclusive `flock` on the file while its descriptor is open: a
//!   writer whose lease lapsed while one of its writes was stalled (a hung disk or network
//!   share) still has it, and its successor is refused ([`BlobError::PartBusy`]) instead of
//!   having its durable bytes overwritten when the stalled write lands. The lock dies with the
//!   descriptor, so a crashed process never leaves one behind.
//! - **object storage**: piece objects `tenants/<tenant>/uploads/<upload id>/<offset>.<writer>`
//!   (the upload offset where the piece starts, zero-padded to 20 digits, and the writer
//!   generation of the request that stored it) in the tenant's object store. A writer gathers
//!   what arrives in a local temp file and stores it as one piece at each sync, so the api
//!   process keeps nothing an upload needs: any process can take the next PATCH. A sync in the
//!   middle of a body ([`PartWriter::sync_behind`]) hands that file over to be stored and gathers
//!   the next piece in a new one meanwhile, so receiving does not wait for the upload. Which pieces
//!   make the upload follows from the durable offset alone: at offset 0, then where that piece
//!   ends, and so on up to the durable offset, the piece of the latest writer at each offset.
//!   That one is right because every writer takes a new generation with the upload's lock and
//!   moves the offset only while it is still the latest: a writer that advanced from an offset
//!   was the last to start there, and a writer it overtook (dead, or a lease lapsed in a long
//!   pause) only ever stores pieces of older generations, however late they land. Pieces never
//!   reached that way are deleted with the rest when the upload ends.
//!
//! The metadata store holds the *durable offset*; this module promises that bytes before an
//! offset reported by [`PartWriter::sync`] are stored, and ignores anything written beyond the
//! durable offset (bytes a crashed or failed writer left unsynced or unacknowledged).
//!
//! Each writer hashes what it appends, continuing the digest the previous request of the same
//! upload left at its durable offset *in this process*, so [`Blobs::store_part`] on completion
//! usually finalises a digest instead of reading the whole upload back. Digests are promised
//! ([`crate::appender`]): a request is answered once its bytes are durable, and the next one's
//! hashing continues when the previous hashing gets there. The digest is only trusted at exactly
//! the offset it covers (bytes before a durable offset never change; a writer that finds another
//! offset, e.g. after a restart or when another process took the previous PATCH, starts none),
//! and the read-back stays the fallback (also when a promise was broken).

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use mediahost_core::video::keys;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

use crate::appender::{self, Appender, DigestPromise, Writeback};
use crate::{BlobError, Blobs, object_path};

/// Where the parts of uploads in progress are kept.
#[derive(Debug, Clone)]
pub(crate) enum PartsPlace {
    /// A file per upload in this folder.
    Disk(PathBuf),
    /// Piece objects beside the tenant's videos.
    ObjectStorage,
}

/// Longest time written bytes stay unsynced while the body keeps arriving, on disk (a sync is
/// an fdatasync) and in object storage (a sync stores a piece, one more object to fetch on
/// completion, so they are spaced further apart; the 16 MiB a PATCH syncs at still apply).
const DISK_SYNC_INTERVAL: Duration = Duration::from_millis(500);
const PIECE_SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// Read size when streaming a part from disk.
const READ_SIZE: usize = 256 * 1024;

/// An upload in progress: its tenant (whose object store holds its pieces) and its id.
#[derive(Debug, Clone, Copy)]
pub struct PartRef<'a> {
    /// The tenant owning the upload.
    pub tenant: &'a str,
    /// The upload's id.
    pub upload: &'a str,
}

/// Appends to one upload's part, on a thread of its own ([`Appender`]): bytes are left to the
/// OS until [`Self::sync`].
#[derive(Debug)]
pub struct PartWriter {
    /// The upload's file on disk, or the pending bytes of its next piece.
    file: Appender,
    /// Set when the part is kept as pieces in object storage.
    pieces: Option<Pieces>,
    /// Bytes in the part (durable or not).
    position: u64,
    /// Whether the appender's digest covers the part from its start.
    hashed: bool,
    durable: DurableDigest,
}

/// The digest of a part as of its writer's last sync (promised: it may still be being
/// computed), and the durable offset it covers: handed back to [`Digests`] when the writer
/// goes, for the upload's next request.
#[derive(Debug)]
struct DurableDigest {
    /// The upload whose part this is.
    id: String,
    offset: u64,
    digest: Option<DigestPromise>,
    /// Where digests wait between requests.
    digests: Digests,
}

impl Drop for DurableDigest {
    fn drop(&mut self) {
        if let Some(digest) = self.digest.take() {
            self.digests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(std::mem::take(&mut self.id), (self.offset, digest));
        }
    }
}

/// The pieces of one upload: what has arrived since the last one was stored is in the
/// writer's file (a local temp file, removed on drop).
#[derive(Debug)]
struct Pieces {
    blobs: Blobs,
    /// `tenants/<tenant>/uploads/<upload id>`.
    prefix: String,
    /// The writer generation of the request storing them.
    writer: u64,
    pending_path: tempfile::TempPath,
    /// Upload offset of the first pending byte: the name of the next piece.
    start: u64,
}

impl Pieces {
    /// Stores the pending bytes (all written out) as the piece at `start`, then starts the
    /// next one at `end`.
    async fn store(&mut self, pending: &Appender, end: u64) -> Result<(), BlobError> {
        if end == self.start {
            return Ok(());
        }
        let key = piece_key(&self.prefix, self.start, self.writer);
        self.blobs.put_file(&key, &self.pending_path).await?;
        self.start = end;
        self.cut(pending, end).await
    }

    /// Ends the pending piece at upload offset `end`: its file is handed back, to be stored,
    /// and a new file (returned) takes the bytes of the next piece, from `end` on.
    fn start_next(&mut self, end: u64) -> Result<(std::fs::File, PendingPiece), BlobError> {
        let (file, path) = pending_file(&self.blobs.temp_dir)?.into_parts();
        let piece = PendingPiece {
            blobs: self.blobs.clone(),
            key: piece_key(&self.prefix, self.start, self.writer),
            path: std::mem::replace(&mut self.pending_path, path),
        };
        self.start = end;
        Ok((file, piece))
    }

    /// Drops the pending bytes from upload offset `offset` on (all of them when `offset` is
    /// before the first: the next piece then starts there).
    async fn cut(&mut self, pending: &Appender, offset: u64) -> Result<(), BlobError> {
        pending.set_len(offset.saturating_sub(self.start)).await?;
        self.start = self.start.min(offset);
        Ok(())
    }
}

/// A piece whose bytes wait in a file of their own to be stored (the file goes with it).
struct PendingPiece {
    blobs: Blobs,
    key: String,
    path: tempfile::TempPath,
}

impl PendingPiece {
    /// Stores the piece once `writing`, the appender of its file, has written all of it; done
    /// with the promise of the digest of everything appended up to the piece's end, if one is
    /// kept.
    async fn store(self, writing: Appender) -> Result<Option<DigestPromise>, BlobError> {
        let digest = writing.flush(false).await?;
        writing.close().await;
        self.blobs.put_file(&self.key, &self.path).await?;
        Ok(digest)
    }
}

/// A new file for the pending bytes of a piece, deleted with its path.
fn pending_file(temp_dir: &std::path::Path) -> Result<tempfile::NamedTempFile, BlobError> {
    Ok(tempfile::Builder::new()
        .prefix("tus-piece-")
        .tempfile_in(temp_dir)?)
}

/// The hash of a completed upload: known from the running digest, or computed from the bytes
/// passing by.
enum Sha256Of {
    Known(String),
    Passing(Sha256),
}

fn piece_key(prefix: &str, offset: u64, writer: u64) -> String {
    format!("{prefix}/{offset:020}.{writer}")
}

/// The start offset and writer generation a piece's name carries; a name without a generation
/// is a piece stored before generations existed (generation 0, older than any since).
fn parse_piece_name(name: &str) -> Option<(u64, u64)> {
    match name.split_once('.') {
        Some((offset, writer)) => Some((offset.parse().ok()?, writer.parse().ok()?)),
        None => Some((name.parse().ok()?, 0)),
    }
}

/// Running digests of parts at their durable offsets (upload id → offset, digest promised).
pub(crate) type Digests = Arc<Mutex<HashMap<String, (u64, DigestPromise)>>>;

impl PartWriter {
    /// Appends `bytes` at the current position.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.position += bytes.len() as u64;
        self.file.append(bytes).await
    }

    /// Makes everything written so far durable (fsync, or a stored piece); returns the
    /// position up to which bytes now are.
    pub async fn sync(&mut self) -> Result<u64, BlobError> {
        let digest = self.file.flush(self.pieces.is_none()).await?;
        if let Some(pieces) = &mut self.pieces {
            pieces.store(&self.file, self.position).await?;
        }
        self.durable.offset = self.position;
        self.durable.digest = digest.filter(|_| self.hashed);
        Ok(self.position)
    }

    /// Starts making everything written so far durable while writing goes on: the fdatasync
    /// of a part on disk runs beside its writing thread; the pending bytes of a part kept as
    /// pieces in object storage become a piece stored meanwhile, and the next piece starts in
    /// a file of its own. The returned sync must be polled (awaited, or raced with the writing)
    /// for a piece to be stored; dropped, it stores nothing more.
    pub fn sync_behind(&mut self) -> Result<SyncBehind, BlobError> {
        let done = match &mut self.pieces {
            None => self.file.sync_behind()?.done().boxed(),
            Some(pieces) => {
                let (next, piece) = pieces.start_next(self.position)?;
                let next = Appender::start(next, self.file.digest(), Writeback::Lazy);
                piece.store(std::mem::replace(&mut self.file, next)).boxed()
            }
        };
        Ok(SyncBehind {
            position: self.position,
            done,
        })
    }

    /// Records what a [`SyncBehind`] made durable, once the upload's durable offset was moved
    /// there (its digest is then handed to the upload's next request).
    pub fn synced(&mut self, synced: Synced) {
        self.durable.offset = synced.position;
        self.durable.digest = synced.digest.filter(|_| self.hashed);
    }

    /// Hands nothing on from the last [`Self::sync`]: moving the durable offset to it was
    /// refused or failed, so its digest must not be taken for the upload's at that offset.
    pub fn forget_last_sync(&mut self) {
        self.durable.digest = None;
    }

    /// Bytes in the part so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How long written bytes may wait for a sync while more keep arriving.
    pub fn sync_interval(&self) -> Duration {
        match self.pieces {
            None => DISK_SYNC_INTERVAL,
            Some(_) => PIECE_SYNC_INTERVAL,
        }
    }

    /// Drops everything after `offset` (a request whose checksum failed keeps nothing). In
    /// object storage, a piece this writer already stored beyond `offset` is replaced by the
    /// next writer's piece at `offset`.
    pub async fn truncate(&mut self, offset: u64) -> Result<(), BlobError> {
        match &mut self.pieces {
            None => {
                self.file.set_len(offset).await?;
                self.file.flush(true).await?;
            }
            Some(pieces) => pieces.cut(&self.file, offset).await?,
        }
        self.position = offset;
        // Rare (a failed checksum): the read-back on completion hashes instead.
        self.hashed = false;
        self.durable.offset = offset;
        self.durable.digest = None;
        Ok(())
    }

    /// Ends the writer once nothing more of it can reach the part: bytes not synced are
    /// dropped, and no write is still in flight when this returns (a writer merely dropped
    /// lets its thread skip what is queued, but a write under way finishes after), so the
    /// caller may release the upload's lock to the next writer.
    pub async fn close(self) {
        let Self { file, .. } = self;
        file.close().await;
    }
}

/// A sync of a part started by [`PartWriter::sync_behind`].
pub struct SyncBehind {
    position: u64,
    /// Done when the bytes are durable, with the promise of their digest if one is kept.
    done: BoxFuture<'static, Result<Option<DigestPromise>, BlobError>>,
}

impl SyncBehind {
    /// Waits until the bytes are durable.
    pub async fn done(self) -> Result<Synced, BlobError> {
        Ok(Synced {
            position: self.position,
            digest: self.done.await?,
        })
    }
}

/// Bytes of a part made durable behind its writing, for [`PartWriter::synced`].
#[derive(Debug)]
pub struct Synced {
    position: u64,
    digest: Option<DigestPromise>,
}

impl Synced {
    /// The position up to which the part's bytes are durable.
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// Opens the part file at `path` for appending at `offset`, cutting off any bytes beyond
/// (written but never made durable), and locks it for as long as the file stays open.
fn open_at(path: &std::path::Path, upload: &str, offset: u64) -> Result<std::fs::File, BlobError> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(BlobError::PartBusy(upload.to_owned()));
        }
        // A file system that cannot lock (a network share mounted without a lock service)
        // leaves the lease alone to keep writers apart: the lock is the second guard.
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(upload, error = %e, "cannot lock the tus part file; relying on the upload's lease alone");
        }
    }
    let len = file.metadata()?.len();
    if len < offset {
        return Err(BlobError::Io(std::io::Error::other(format!(
            "upload {upload}: temp file holds {len} bytes, fewer than the durable offset {offset}"
        ))));
    }
    if len > offset {
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

fn valid_id(id: &str) -> Result<(), BlobError> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(BlobError::BadKey(id.to_owned()))
    }
}

impl Blobs {
    /// Removes and returns the running digest kept for upload `id`.
    fn take_digest(&self, id: &str) -> Option<(u64, DigestPromise)> {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// The file of `part` in the folder `dir`.
    fn part_file(dir: &std::path::Path, part: PartRef<'_>) -> Result<PathBuf, BlobError> {
        valid_id(part.upload)?;
        Ok(dir.join(part.upload))
    }

    fn pieces_prefix(part: PartRef<'_>) -> Result<String, BlobError> {
        valid_id(part.upload)?;
        Ok(keys::upload_pieces(part.tenant, part.upload))
    }

    /// Creates the empty part of a new upload (on disk: its file, with a durable name).
    pub async fn create_part(&self, part: PartRef<'_>) -> Result<(), BlobError> {
        match &self.parts {
            PartsPlace::Disk(dir) => {
                let path = Self::part_file(dir, part)?;
                tokio::fs::create_dir_all(dir).await?;
                tokio::fs::File::create(&path).await?.sync_all().await?;
                tokio::fs::File::open(dir).await?.sync_all().await?;
            }
            // The first piece is stored by the first sync.
            PartsPlace::ObjectStorage => valid_id(part.upload)?,
        }
        Ok(())
    }

    /// Opens `part` for appending at its durable `offset`, discarding any bytes beyond, for
    /// the request of writer generation `writer`. Call only while holding the upload's lock
    /// (which gave that generation). A part file on disk is opened by the writer's own thread
    /// while the caller goes on (a trip to the blocking pool first was ~0.1-0.5 ms of every
    /// PATCH): what keeps it from being written (another writer still has it,
    /// [`BlobError::PartBusy`]; it is missing or shorter than `offset`) is reported by the
    /// first [`PartWriter::sync`] or [`PartWriter::truncate`], and nothing is written.
    pub async fn open_part(
        &self,
        part: PartRef<'_>,
        offset: u64,
        writer: u64,
    ) -> Result<PartWriter, BlobError> {
        type Open = Box<dyn FnOnce() -> Result<std::fs::File, BlobError> + Send>;
        let (open, pieces, writeback): (Open, _, _) = match &self.parts {
            PartsPlace::Disk(dir) => {
                let path = Self::part_file(dir, part)?;
                let upload = part.upload.to_owned();
                (
                    Box::new(move || open_at(&path, &upload, offset)),
                    None,
                    Writeback::Early,
                )
            }
            PartsPlace::ObjectStorage => {
                let (file, pending_path) = pending_file(&self.temp_dir)?.into_parts();
                let pieces = Pieces {
                    blobs: self.clone(),
                    prefix: Self::pieces_prefix(part)?,
                    writer,
                    pending_path,
                    start: offset,
                };
                (Box::new(move || Ok(file)), Some(pieces), Writeback::Lazy)
            }
        };
        let kept = self.take_digest(part.upload);
        let digest = match kept {
            _ if offset == 0 => Some(appender::kept(Sha256::new())),
            Some((at, digest)) if at == offset => Some(digest),
            _ => None,
        };
        let hashed = digest.is_some();
        let file = Appender::opening(open, digest, writeback);
        Ok(PartWriter {
            durable: DurableDigest {
                id: part.upload.to_owned(),
                offset,
                digest: file.digest(),
                digests: self.digests.clone(),
            },
            file,
            pieces,
            position: offset,
            hashed,
        })
    }

    /// Forgets what the writer of generation `writer` synced from upload offset `from` on,
    /// once moving the durable offset past `from` was refused (another writer took the upload
    /// over, or it is gone). Its piece in object storage is deleted: no other writer stores
    /// under its generation, and no chain can reach it, since whoever moves the offset on from
    /// `from` is of a later generation and stores its own piece there. Without this, a piece
    /// landing after the upload ended (and its pieces were deleted) would stay in the bucket.
    /// A running digest handed back for the upload is dropped too: it may cover those bytes
    /// rather than the ones accepted (completion then hashes what is stored).
    pub async fn forget_refused(
        &self,
        part: PartRef<'_>,
        from: u64,
        writer: u64,
    ) -> Result<(), BlobError> {
        self.take_digest(part.upload);
        match &self.parts {
            PartsPlace::Disk(_) => Ok(()),
            PartsPlace::ObjectStorage => {
                self.delete(&piece_key(&Self::pieces_prefix(part)?, from, writer))
                    .await
            }
        }
    }

    /// The pieces holding `part`'s first `len` bytes, in order, with how many bytes of each.
    async fn piece_chain(
        &self,
        part: PartRef<'_>,
        len: u64,
    ) -> Result<Vec<(String, u64)>, BlobError> {
        let prefix = Self::pieces_prefix(part)?;
        let target = self.target(&prefix).await?;
        // Start offset → the latest writer's piece there: (generation, key, size).
        let mut latest: HashMap<u64, (u64, String, u64)> = HashMap::new();
        let mut listing = target.store.list(Some(&object_path(&prefix)?));
        while let Some(meta) = listing.try_next().await? {
            let Some((offset, writer)) = meta.location.filename().and_then(parse_piece_name) else {
                continue;
            };
            let piece = (writer, meta.location.to_string(), meta.size);
            let slot = latest.entry(offset).or_insert_with(|| piece.clone());
            if writer > slot.0 {
                *slot = piece;
            }
        }
        let mut chain = Vec::new();
        let mut at = 0;
        while at < len {
            let Some((_, key, size)) = latest.get(&at).filter(|(_, _, size)| *size > 0) else {
                return Err(BlobError::NotFound(format!("{prefix}/{at:020}.*")));
            };
            let take = (*size).min(len - at);
            chain.push((key.clone(), take));
            at += take;
        }
        Ok(chain)
    }

    /// `part`'s first `len` bytes as a stream (fewer if a file on disk holds fewer).
    async fn part_bytes(
        &self,
        part: PartRef<'_>,
        len: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        match &self.parts {
            PartsPlace::Disk(dir) => {
                let file = tokio::fs::File::open(Self::part_file(dir, part)?).await?;
                let reader = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_SIZE);
                Ok(reader.map_err(BlobError::from).boxed())
            }
            PartsPlace::ObjectStorage => {
                let chain = self.piece_chain(part, len).await?;
                let blobs = self.clone();
                Ok(futures::stream::iter(chain)
                    .then(move |(key, take)| {
                        let blobs = blobs.clone();
                        async move { Ok::<_, BlobError>(blobs.get_range(&key, 0..take).await?.body) }
                    })
                    .try_flatten()
                    .boxed())
            }
        }
    }

    /// Up to `max` bytes from the front of `part` (what validators sniff); `max` must not
    /// exceed its durable bytes.
    pub async fn read_part_head(
        &self,
        part: PartRef<'_>,
        max: usize,
    ) -> Result<Vec<u8>, BlobError> {
        let mut bytes = self.part_bytes(part, max as u64).await?;
        let mut head = Vec::with_capacity(max);
        while let Some(chunk) = bytes.try_next().await? {
            head.extend_from_slice(&chunk);
        }
        Ok(head)
    }

    /// Writes the concatenation of the first `len` bytes of each source part (all of
    /// `tenant`) into the part `dest` (created or replaced) and makes it durable; returns the
    /// total size.
    pub async fn concat_parts(
        &self,
        tenant: &str,
        sources: &[(String, u64)],
        dest: &str,
        writer: u64,
    ) -> Result<u64, BlobError> {
        let dest = PartRef {
            tenant,
            upload: dest,
        };
        self.create_part(dest).await?;
        let mut writer = self.open_part(dest, 0, writer).await?;
        for (id, len) in sources {
            let source = PartRef { tenant, upload: id };
            let mut bytes = self.part_bytes(source, *len).await?;
            let mut copied = 0;
            while let Some(chunk) = bytes.try_next().await? {
                copied += chunk.len() as u64;
                writer.write(chunk).await?;
            }
            if copied != *len {
                return Err(BlobError::Io(std::io::Error::other(format!(
                    "partial upload {id} holds {copied} bytes, expected {len}"
                ))));
            }
        }
        writer.sync().await
    }

    /// Stores `part`'s first `len` bytes (all of them, the upload complete) as the object
    /// `key`; returns their size and hex sha256. The hash is this process's running digest
    /// when it covers exactly those bytes, else it is computed from what is stored (across
    /// every request, process and restart), on the way: a file on disk is read once to hash it,
    /// then linked or copied like any finished file; pieces are streamed once into one object
    /// and hashed as they pass, or copied within the store when a single piece holds it all
    /// and the digest is known.
    pub async fn store_part(
        &self,
        part: PartRef<'_>,
        len: u64,
        key: &str,
    ) -> Result<(u64, String), BlobError> {
        let known = match self.take_digest(part.upload) {
            Some((at, promise)) if at == len => appender::settle(promise).await.ok(),
            _ => None,
        };
        let mut sha256 = match known {
            Some(digest) => Sha256Of::Known(hex::encode(digest.finalize())),
            None => Sha256Of::Passing(Sha256::new()),
        };
        let mut size = 0u64;
        match &self.parts {
            PartsPlace::Disk(dir) => {
                if let Sha256Of::Passing(hasher) = &mut sha256 {
                    let mut bytes = self.part_bytes(part, len).await?;
                    while let Some(chunk) = bytes.try_next().await? {
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                    }
                }
                self.put_finished_file(key, &Self::part_file(dir, part)?)
                    .await?;
            }
            PartsPlace::ObjectStorage => {
                let chain = self.piece_chain(part, len).await?;
                if let (Sha256Of::Known(_), [(piece, whole)]) = (&sha256, chain.as_slice())
                    && self.head(piece).await?.size == *whole
                {
                    let target = self.target(key).await?;
                    target
                        .store
                        .copy(&object_path(piece)?, &object_path(key)?)
                        .await?;
                } else {
                    let bytes = self.part_bytes(part, len).await?.inspect_ok(|chunk| {
                        if let Sha256Of::Passing(hasher) = &mut sha256 {
                            hasher.update(chunk);
                        }
                        size += chunk.len() as u64;
                    });
                    self.put_stream(key, bytes, len).await?;
                }
            }
        }
        Ok(match sha256 {
            Sha256Of::Known(hex) => (len, hex),
            Sha256Of::Passing(hasher) => (size, hex::encode(hasher.finalize())),
        })
    }

    /// Deletes `part` (idempotent).
    pub async fn remove_part(&self, part: PartRef<'_>) -> Result<(), BlobError> {
        self.take_digest(part.upload);
        match &self.parts {
            PartsPlace::Disk(dir) => {
                match tokio::fs::remove_file(Self::part_file(dir, part)?).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            PartsPlace::ObjectStorage => self.delete_prefix(&Self::pieces_prefix(part)?).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str) -> PartRef<'_> {
        PartRef {
            tenant: "t1",
            upload: id,
        }
    }

    /// Writer generation `writer` of upload `id`, from `offset` on, syncing after each chunk.
    async fn write_synced(
        blobs: &Blobs,
        id: &str,
        offset: u64,
        writer: u64,
        chunks: &[&'static [u8]],
    ) {
        let mut w = blobs.open_part(part(id), offset, writer).await.unwrap();
        for chunk in chunks {
            w.write(Bytes::from_static(chunk)).await.unwrap();
            w.sync().await.unwrap();
        }
        w.close().await;
    }

    /// Local storage with parts on disk, and the same with parts in object storage.
    fn both(dir: &std::path::Path) -> [Blobs; 2] {
        let disk = Blobs::local(&dir.join("disk")).unwrap();
        let objects = Blobs::local(&dir.join("objects"))
            .unwrap()
            .with_parts_in_object_storage();
        [disk, objects]
    }

    #[tokio::test]
    async fn the_running_digest_continues_across_writers_and_matches_the_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for blobs in both(dir.path()) {
            blobs.create_part(part("d")).await.unwrap();
            let mut w = blobs.open_part(part("d"), 0, 1).await.unwrap();
            w.write(Bytes::from_static(b"abc")).await.unwrap();
            w.sync().await.unwrap();
            w.write(Bytes::from_static(b"unsynced")).await.unwrap();
            w.close().await;
            let mut w = blobs.open_part(part("d"), 3, 2).await.unwrap();
            w.write(Bytes::from_static(b"def")).await.unwrap();
            w.sync().await.unwrap();
            w.close().await;
            let kept = blobs.digests.lock().unwrap().get("d").map(|(at, _)| *at);
            assert_eq!(kept, Some(6));
            let expected = hex::encode(Sha256::digest(b"abcdef"));
            assert_eq!(
                blobs
                    .store_part(part("d"), 6, "tenants/t1/videos/d/source")
                    .await
                    .unwrap(),
                (6, expected.clone())
            );
            // Finalised once; the read-back agrees.
            assert!(blobs.digests.lock().unwrap().is_empty());
            assert_eq!(
                blobs
                    .store_part(part("d"), 6, "tenants/t1/videos/d/source")
                    .await
                    .unwrap(),
                (6, expected)
            );
            // A digest of another offset is never continued: the writer keeps none.
            let mut w = blobs.open_part(part("d"), 6, 3).await.unwrap();
            w.write(Bytes::from_static(b"g")).await.unwrap();
            w.sync().await.unwrap();
            w.close().await;
            assert!(blobs.digests.lock().unwrap().is_empty());
            let expected = hex::encode(Sha256::digest(b"abcdefg"));
            assert_eq!(
                blobs
                    .store_part(part("d"), 7, "tenants/t1/videos/d/source")
                    .await
                    .unwrap(),
                (7, expected)
            );
        }
    }

    #[tokio::test]
    async fn a_sync_behind_covers_what_came_before_it_while_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        for blobs in both(dir.path()) {
            blobs.create_part(part("b")).await.unwrap();
            let mut w = blobs.open_part(part("b"), 0, 1).await.unwrap();
            w.write(Bytes::from_static(b"dur")).await.unwrap();
            let first = w.sync_behind().unwrap();
            w.write(Bytes::from_static(b"able")).await.unwrap();
            let synced = first.done().await.unwrap();
            assert_eq!(synced.position(), 3);
            w.synced(synced);
            // The next one, in object storage a piece of its own, while a third fills.
            let second = w.sync_behind().unwrap();
            w.write(Bytes::from_static(b" and after")).await.unwrap();
            let synced = second.done().await.unwrap();
            assert_eq!(synced.position(), 7);
            assert_eq!(w.position(), 17);
            w.synced(synced);
            // Only what was recorded is handed on: the next writer continues from offset 7.
            w.close().await;
            let kept = blobs.digests.lock().unwrap().get("b").map(|(at, _)| *at);
            assert_eq!(kept, Some(7));
            let mut w = blobs.open_part(part("b"), 7, 2).await.unwrap();
            w.write(Bytes::from_static(b"!")).await.unwrap();
            w.sync().await.unwrap();
            w.close().await;
            assert_eq!(
                blobs
                    .store_part(part("b"), 8, "tenants/t1/videos/b/source")
                    .await
                    .unwrap(),
                (8, hex::encode(Sha256::digest(b"durable!")))
            );
            // No piece's pending file is left behind.
            let left: Vec<_> = std::fs::read_dir(&blobs.temp_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|name| name.to_string_lossy().starts_with("tus-piece-"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[tokio::test]
    async fn append_resume_hash_concat_store() {
        let dir = tempfile::tempdir().unwrap();
        for blobs in both(dir.path()) {
            blobs.create_part(part("a")).await.unwrap();
            let mut w = blobs.open_part(part("a"), 0, 1).await.unwrap();
            w.write(Bytes::from_static(b"hello ")).await.unwrap();
            assert_eq!(w.sync().await.unwrap(), 6);
            w.write(Bytes::from_static(b"junk")).await.unwrap();
            w.close().await;
            // Reopening at the durable offset drops the unacknowledged bytes.
            let mut w = blobs.open_part(part("a"), 6, 2).await.unwrap();
            w.write(Bytes::from_static(b"world")).await.unwrap();
            w.write(Bytes::from_static(b"!!")).await.unwrap();
            w.truncate(11).await.unwrap();
            assert_eq!(w.sync().await.unwrap(), 11);
            w.close().await;
            assert_eq!(blobs.read_part_head(part("a"), 5).await.unwrap(), b"hello");
            let (size, sha) = blobs
                .store_part(part("a"), 11, "tenants/t1/videos/a/source")
                .await
                .unwrap();
            assert_eq!(size, 11);
            assert_eq!(
                sha,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
            );

            blobs.create_part(part("b")).await.unwrap();
            let mut w = blobs.open_part(part("b"), 0, 1).await.unwrap();
            w.write(Bytes::from_static(b" again")).await.unwrap();
            w.sync().await.unwrap();
            w.close().await;
            let total = blobs
                .concat_parts("t1", &[("a".into(), 11), ("b".into(), 6)], "c", 1)
                .await
                .unwrap();
            assert_eq!(total, 17);
            blobs
                .store_part(part("c"), 17, "tenants/t1/videos/v/source")
                .await
                .unwrap();
            blobs.remove_part(part("c")).await.unwrap();
            assert_eq!(
                blobs.get_bytes("tenants/t1/videos/v/source").await.unwrap(),
                &b"hello world again"[..]
            );
            assert!(matches!(
                blobs.read_part_head(part("c"), 1).await,
                Err(BlobError::NotFound(_) | BlobError::Io(_))
            ));
            blobs.remove_part(part("a")).await.unwrap();
            blobs.remove_part(part("a")).await.unwrap();
            assert!(blobs.create_part(part("../x")).await.is_err());
        }
    }

    /// Each offset's piece is the latest writer's: a dead writer's leftovers, and pieces a
    /// writer that lost its lock stores after its successor's (a long pause, a partition), are
    /// passed over.
    #[tokio::test]
    async fn pieces_follow_the_durable_offset_past_dead_and_overtaken_writers() {
        let dir = tempfile::tempdir().unwrap();
        let [_, blobs] = both(dir.path());
        let write =
            async |offset, writer, chunks| write_synced(&blobs, "p", offset, writer, chunks).await;
        write(0, 1, &[b"0123"]).await;
        // Writer 2 at offset 4 stores pieces, then dies before its offset is recorded.
        write(4, 2, &[b"XXXXXXXX", b"YY"]).await;
        // Writer 3 starts again at the durable offset 4, in smaller pieces.
        write(4, 3, &[b"45", b"6789"]).await;
        // Writer 2 was only paused: its late pieces land after writer 3's, at the same offsets.
        write(4, 2, &[b"ZZ"]).await;
        write(6, 2, &[b"ZZZZ"]).await;
        blobs.digests.lock().unwrap().clear(); // as another process would find it
        let expected = hex::encode(Sha256::digest(b"0123456789"));
        assert_eq!(
            blobs
                .store_part(part("p"), 10, "tenants/t1/videos/p/source")
                .await
                .unwrap(),
            (10, expected)
        );
        assert_eq!(
            blobs.get_bytes("tenants/t1/videos/p/source").await.unwrap(),
            &b"0123456789"[..]
        );
        // A hole (no piece at the offset the chain reaches) is an error, not short data.
        assert!(matches!(
            blobs.store_part(part("p"), 13, "tenants/t1/videos/q/source").await,
            Err(BlobError::NotFound(key)) if key.ends_with("/00000000000000000010.*")
        ));
        blobs.remove_part(part("p")).await.unwrap();
        assert!(
            blobs
                .get_bytes("tenants/t1/uploads/p/00000000000000000000.1")
                .await
                .is_err()
        );
    }

    /// A writer taken over stores its last piece after the upload ended (its pieces deleted);
    /// its offset move is refused, and what it stored goes with it: nothing is left in the
    /// bucket, and its digest is not handed on.
    #[tokio::test]
    async fn what_a_refused_writer_stored_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        for blobs in both(dir.path()) {
            blobs.create_part(part("z")).await.unwrap();
            write_synced(&blobs, "z", 0, 1, &[b"0123"]).await;
            // The zombie (generation 2) took the upload at offset 4, with its digest, then
            // stalled while the upload was taken over and completed.
            let mut zombie = blobs.open_part(part("z"), 4, 2).await.unwrap();
            zombie.write(Bytes::from_static(b"late")).await.unwrap();
            blobs.remove_part(part("z")).await.unwrap();
            // On disk the sync may fail (the file went before the zombie opened it) or land in
            // the unlinked file: nothing is left either way.
            let synced = zombie.sync().await;
            // In the order a request meets it: the refusal, then the writer's end.
            blobs.forget_refused(part("z"), 4, 2).await.unwrap();
            zombie.forget_last_sync();
            zombie.close().await;
            assert!(blobs.digests.lock().unwrap().is_empty());
            if synced.is_ok() {
                assert!(
                    blobs
                        .get_bytes("tenants/t1/uploads/z/00000000000000000004.2")
                        .await
                        .is_err()
                );
            }
            let uploads = object_path("tenants/t1/uploads").unwrap();
            let left: Vec<_> = blobs
                .target("tenants/t1/uploads")
                .await
                .unwrap()
                .store
                .list(Some(&uploads))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .unwrap();
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }

    /// A part file on disk is written by one writer at a time, whatever the leases say: a
    /// writer whose descriptor is still open (its lease lapsed during a stalled write) keeps
    /// its successor out until it is gone.
    #[tokio::test]
    async fn a_part_file_open_for_writing_refuses_a_second_writer() {
        let dir = tempfile::tempdir().unwrap();
        let [blobs, _] = both(dir.path());
        blobs.create_part(part("f")).await.unwrap();
        let mut stalled = blobs.open_part(part("f"), 0, 1).await.unwrap();
        stalled.write(Bytes::from_static(b"abc")).await.unwrap();
        stalled.sync().await.unwrap();
        // Refused at its first sync, having written nothing.
        let mut refused = blobs.open_part(part("f"), 3, 2).await.unwrap();
        refused.write(Bytes::from_static(b"XYZ")).await.unwrap();
        assert!(matches!(
            refused.sync().await,
            Err(BlobError::PartBusy(id)) if id == "f"
        ));
        refused.close().await;
        // Another process (another `Blobs` on the same folder) is refused alike.
        let other = Blobs::local(&dir.path().join("disk")).unwrap();
        let mut refused = other.open_part(part("f"), 3, 2).await.unwrap();
        assert!(matches!(
            refused.truncate(3).await,
            Err(BlobError::PartBusy(_))
        ));
        refused.close().await;
        stalled.write(Bytes::from_static(b"def")).await.unwrap();
        assert_eq!(stalled.sync().await.unwrap(), 6);
        stalled.close().await;
        let mut next = other.open_part(part("f"), 6, 2).await.unwrap();
        next.write(Bytes::from_static(b"ghi")).await.unwrap();
        assert_eq!(next.sync().await.unwrap(), 9);
        next.close().await;
        assert_eq!(
            other.read_part_head(part("f"), 9).await.unwrap(),
            b"abcdefghi"
        );
    }

    #[test]
    fn piece_names_carry_offset_and_generation() {
        let key = piece_key("tenants/t/uploads/u", 10, 7);
        assert_eq!(key, "tenants/t/uploads/u/00000000000000000010.7");
        assert_eq!(parse_piece_name(&key[20..]), Some((10, 7)));
        // Pieces stored before generations existed are older than any since.
        assert_eq!(parse_piece_name("00000000000000000010"), Some((10, 0)));
        assert_eq!(parse_piece_name("notes.txt"), None);
        assert_eq!(parse_piece_name("10.x"), None);
    }
}
