//! Appending to a local file on a thread of its own, hashing what is appended on another.
//!
//! Request bodies arrive as shared chunks ([`Bytes`]) of a few KiB to a few hundred KiB. The
//! async side hands each chunk over, without copying it, and goes back to receiving; the
//! writing thread writes every chunk queued so far with one `write_vectored` call, straight
//! from the chunks, so no byte is copied in user space on its way to the file and a batch of
//! chunks is one system call instead of a trip to the blocking pool per buffer (a file that
//! moved to direct I/O, below, gathers them in its aligned buffer instead: one copy, in place of
//! the page cache's). The hashing
//! thread adds the same chunks to the running sha256 (the most expensive thing done per byte
//! received, ~0.5 s of CPU per GiB here even with SHA-NI). A flush waits for the writes only:
//! the digest up to that point comes as a [`DigestPromise`], kept when the hashing thread gets
//! there, so a tus request is answered as soon as its bytes are durable while its hash is
//! still being finished (and the next request's hashing thread continues from that promise).
//!
//! At most [`QUEUED_BYTES`] wait for the two threads: a client faster than the disk (or the
//! hashing) is slowed to its speed (backpressure), never buffered.
//!
//! A file that will be fsynced has its bytes' writeback started every [`WRITEBACK_BYTES`] as
//! they are written (`sync_file_range`, as RocksDB's `bytes_per_sync` does). Left alone, the
//! kernel keeps a fast upload's bytes dirty in memory (its background writeback starts at a
//! tenth of RAM), so every fsync had to write all of a request's bytes at once while the
//! client waited for the answer: 3.4 ms of each 8 MiB tus PATCH on this project's test VM.
//!
//! Once a writer has appended [`DIRECT_AFTER`] bytes it moves to direct I/O where the file
//! system allows ([`crate::direct`]): on the test VM the kernel's writeback of dirty pages was
//! the slow part of every fsync, and direct writes also spare the page-cache CPU.
//!
//! A durable point in the middle of a request need not stop it either: [`Appender::sync_behind`]
//! fdatasyncs a second handle on the file on a thread of its own while the chunks after it keep
//! being written (an fdatasync covers what was written before it started).

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::BlobError;
use crate::direct::Direct;

/// Bytes an appender may hold queued for its threads. 3 MiB, beside the direct-I/O buffer: the
/// ingest bench's 4 uploads at once peaked at 98-100 MiB of RSS with 4 MiB and at 93-94 with 3,
/// at the same throughput (alternating runs).
const QUEUED_BYTES: usize = 3 * 1024 * 1024;

/// Chunks written by one system call at most (well under `IOV_MAX`).
const BATCH: usize = 64;

/// Bytes written to a file that will be fsynced before their writeback is started.
const WRITEBACK_BYTES: u64 = 1024 * 1024;

/// Bytes a writer appends through the page cache before it moves to direct I/O. A small
/// request stays buffered: opening the file for direct I/O and writing its last block out
/// padded cost a 1 KiB tus PATCH 1052-1090 µs against 778-871 buffered.
const DIRECT_AFTER: u64 = 1024 * 1024;

/// Whether the disk should get an appender's bytes as they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writeback {
    /// The file is fsynced at durable points: its writeback starts as bytes arrive, so an
    /// fsync waits only for the last of them; once a writer has appended [`DIRECT_AFTER`]
    /// bytes, the rest go with direct I/O ([`crate::direct`]) where the file system takes it.
    Early,
    /// The file is only a way station (a piece stored elsewhere, then deleted): the kernel
    /// decides, and bytes that go before it writes them never touch the disk.
    Lazy,
}

/// The sha256 of what was appended up to some point, once the hashing thread has got there;
/// a broken promise (the hashing thread ended, or its own starting digest was broken) means the
/// digest is unknown.
pub(crate) type DigestPromise = oneshot::Receiver<Sha256>;

/// A promise kept at once.
pub(crate) fn kept(digest: Sha256) -> DigestPromise {
    let (promise, kept) = oneshot::channel();
    let _ = promise.send(digest);
    kept
}

/// What a promise holds, or why it holds nothing.
pub(crate) async fn settle(promise: DigestPromise) -> Result<Sha256, BlobError> {
    promise.await.map_err(|_| {
        BlobError::Io(std::io::Error::other(
            "the digest of the bytes before was never completed",
        ))
    })
}

/// A chunk queued for both threads, holding its share of the queue budget until both are
/// done with it.
#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    _budget: OwnedSemaphorePermit,
}

/// A file being appended to by a thread of its own, with the running sha256 of what was
/// appended, when a starting digest was given, kept by another. Write errors are reported by
/// the next [`Self::flush`] or [`Self::set_len`]; chunks appended after a failure are dropped.
#[derive(Debug)]
pub(crate) struct Appender {
    jobs: mpsc::UnboundedSender<Job>,
    hashing: Option<mpsc::UnboundedSender<HashJob>>,
    /// Permits are queued bytes.
    budget: Arc<Semaphore>,
    /// Set when the appender goes away: chunks still queued are dropped rather than written
    /// behind the back of whoever opens the file next.
    abandoned: Arc<AtomicBool>,
    writing: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
enum Job {
    Append(Arc<Chunk>),
    /// Wants every chunk before written (and with `sync`, fdatasynced).
    Flush {
        sync: bool,
        reply: oneshot::Sender<Result<(), BlobError>>,
    },
    /// Wants every chunk before written, then fdatasynced off the writing thread, so the
    /// chunks after keep being written meanwhile.
    SyncBehind {
        reply: oneshot::Sender<Result<(), BlobError>>,
    },
    /// Cuts (or extends) the file to `len` bytes and appends from there; the digest is not
    /// touched.
    SetLen {
        len: u64,
        reply: oneshot::Sender<Result<(), BlobError>>,
    },
}

#[derive(Debug)]
enum HashJob {
    Add(Arc<Chunk>),
    /// The digest of everything added before, wanted.
    Snapshot(oneshot::Sender<Sha256>),
}

impl Appender {
    /// Appends to `file` at its current position, continuing the digest `digest` promises
    /// (of the bytes before), when given.
    pub(crate) fn start(
        file: std::fs::File,
        digest: Option<DigestPromise>,
        writeback: Writeback,
    ) -> Self {
        Self::opening(move || Ok(file), digest, writeback)
    }

    /// Like [`Self::start`], with the file `open` gives, called first thing on the writing
    /// thread: the caller goes on receiving meanwhile instead of waiting for a trip to the
    /// blocking pool. Its error is reported by every [`Self::flush`] and [`Self::set_len`].
    pub(crate) fn opening<F>(open: F, digest: Option<DigestPromise>, writeback: Writeback) -> Self
    where
        F: FnOnce() -> Result<std::fs::File, BlobError> + Send + 'static,
    {
        let (jobs, queue) = mpsc::unbounded_channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let hashing = digest.map(|start| {
            let (hashing, queue) = mpsc::unbounded_channel();
            tokio::task::spawn_blocking(move || hash(start, queue));
            hashing
        });
        let thread = {
            let abandoned = abandoned.clone();
            move || {
                let file = open();
                let on_disk = file
                    .as_ref()
                    .ok()
                    .and_then(|file| OnDisk::of(file, writeback));
                Writing {
                    file,
                    abandoned,
                    on_disk,
                    runtime,
                }
                .run(queue)
            }
        };
        Self {
            jobs,
            hashing,
            budget: Arc::new(Semaphore::new(QUEUED_BYTES)),
            abandoned,
            writing: Some(tokio::task::spawn_blocking(thread)),
        }
    }

    /// Queues `bytes` to be appended (waits while the queue is full).
    pub(crate) async fn append(&self, bytes: Bytes) -> Result<(), BlobError> {
        if bytes.is_empty() {
            return Ok(());
        }
        // A chunk larger than the whole budget takes all of it.
        let share = bytes.len().min(QUEUED_BYTES) as u32;
        let budget = self
            .budget
            .clone()
            .acquire_many_owned(share)
            .await
            .map_err(|_| gone())?;
        let chunk = Arc::new(Chunk {
            bytes,
            _budget: budget,
        });
        if let Some(hashing) = &self.hashing {
            // A hashing thread that ended breaks its promises: the digest becomes unknown.
            let _ = hashing.send(HashJob::Add(chunk.clone()));
        }
        self.jobs.send(Job::Append(chunk)).map_err(|_| gone())
    }

    /// Waits until everything appended is written (`sync`: and fdatasynced); returns the
    /// promise of the digest of all appended so far, if one is kept.
    pub(crate) async fn flush(&self, sync: bool) -> Result<Option<DigestPromise>, BlobError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Flush { sync, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())??;
        Ok(self.digest())
    }

    /// Starts making everything appended so far durable (written, then fdatasynced) without
    /// holding up what is appended after it: the fdatasync runs beside the writing thread.
    pub(crate) fn sync_behind(&self) -> Result<SyncingBehind, BlobError> {
        let (reply, synced) = oneshot::channel();
        self.jobs
            .send(Job::SyncBehind { reply })
            .map_err(|_| gone())?;
        Ok(SyncingBehind {
            synced,
            digest: self.digest(),
        })
    }

    /// The promise of the digest of all appended so far, if one is kept.
    pub(crate) fn digest(&self) -> Option<DigestPromise> {
        self.hashing.as_ref().map(|hashing| {
            let (reply, promise) = oneshot::channel();
            let _ = hashing.send(HashJob::Snapshot(reply));
            promise
        })
    }

    /// Sets the file's length to `len` (after everything appended before) and appends from
    /// there.
    pub(crate) async fn set_len(&self, len: u64) -> Result<(), BlobError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::SetLen { len, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Ends the writing thread, dropping what was appended and not flushed, and waits until it
    /// is gone, so nothing more is written to the file once this returns. (The hashing goes on
    /// until the promises given are kept.)
    pub(crate) async fn close(mut self) {
        let writing = self.writing.take();
        // With the senders gone the threads' loops end (and `Drop` marks the rest abandoned).
        drop(self);
        if let Some(writing) = writing {
            let _ = writing.await;
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Release);
    }
}

/// A sync started by [`Appender::sync_behind`].
#[derive(Debug)]
pub(crate) struct SyncingBehind {
    synced: oneshot::Receiver<Result<(), BlobError>>,
    /// The digest of what the sync covers, if one is kept.
    digest: Option<DigestPromise>,
}

impl SyncingBehind {
    /// Waits until the bytes are durable; returns the promise of their digest, if one is kept.
    pub(crate) async fn done(self) -> Result<Option<DigestPromise>, BlobError> {
        self.synced.await.map_err(|_| gone())??;
        Ok(self.digest)
    }
}

fn gone() -> BlobError {
    BlobError::Io(std::io::Error::other("the file's writing thread ended"))
}

/// The hashing thread: continues the digest `start` promises with what is added, answering
/// snapshots, until the appender goes.
fn hash(start: DigestPromise, mut queue: mpsc::UnboundedReceiver<HashJob>) {
    // Without the digest of the bytes before, nothing can be promised: every snapshot is
    // dropped unanswered.
    let Ok(mut digest) = start.blocking_recv() else {
        return;
    };
    while let Some(job) = queue.blocking_recv() {
        match job {
            HashJob::Add(chunk) => digest.update(&chunk.bytes),
            HashJob::Snapshot(reply) => {
                let _ = reply.send(digest.clone());
            }
        }
    }
}

/// The writing thread and what it owns.
struct Writing {
    /// The file, or the first error (opening it or writing), reported to every later flush
    /// (the file is closed then).
    file: Result<std::fs::File, BlobError>,
    abandoned: Arc<AtomicBool>,
    /// How the bytes get to the disk, unless left to the kernel ([`Writeback::Lazy`]).
    on_disk: Option<OnDisk>,
    /// Where a sync behind the writing runs.
    runtime: tokio::runtime::Handle,
}

/// How the bytes of a file that will be fsynced get to the disk.
enum OnDisk {
    /// Written with direct I/O, through a handle of its own.
    Direct(Direct),
    /// Written to the page cache, their writeback started early.
    Early(Started),
}

impl OnDisk {
    /// How `file`'s bytes get to the disk from its current position, as `writeback` asks.
    fn of(mut file: &std::fs::File, writeback: Writeback) -> Option<Self> {
        let position = file.stream_position().ok()?;
        match writeback {
            Writeback::Lazy => None,
            Writeback::Early => Some(Self::Early(Started {
                position,
                upto: position,
                direct_from: Some(position + DIRECT_AFTER),
            })),
        }
    }

    /// Moves to direct I/O once due (where the file system takes it: else never).
    fn go_direct_when_due(&mut self, file: &std::fs::File) {
        let Self::Early(started) = self else { return };
        if started
            .direct_from
            .is_none_or(|from| started.position < from)
        {
            return;
        }
        match Direct::open(file, started.position) {
            Some(direct) => *self = Self::Direct(direct),
            None => started.direct_from = None,
        }
    }
}

/// Where an early-writeback file stands.
struct Started {
    /// Where the next byte lands.
    position: u64,
    /// Bytes before this had their writeback started.
    upto: u64,
    /// Where the writer moves to direct I/O, unless it never does.
    direct_from: Option<u64>,
}

impl Started {
    /// `written` more bytes landed: starts the writeback of the ones not yet started once
    /// they are [`WRITEBACK_BYTES`].
    fn wrote(&mut self, file: &std::fs::File, written: u64) {
        self.position += written;
        if self.position - self.upto >= WRITEBACK_BYTES {
            start_writeback(file, self.upto, self.position - self.upto);
            self.upto = self.position;
        }
    }

    /// The file was cut (or extended) to `len` and is appended from there.
    fn moved_to(&mut self, len: u64) {
        self.position = len;
        self.upto = self.upto.min(len);
    }
}

/// Starts the writeback of `len` bytes of `file` from `offset` without waiting for it
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE` alone). Best effort: the fsync that follows
/// is what makes the bytes durable and reports errors; this only lets the disk begin sooner.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // FFI: neither std nor rustix nor nix wrap sync_file_range.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor stays open while `file` is borrowed, and the call takes no
    // pointers: it cannot touch this process's memory.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

impl Writing {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut next = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let Some(job) = next.take().or_else(|| queue.blocking_recv()) else {
                return;
            };
            match job {
                Job::Append(chunk) => {
                    batch.push(chunk);
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(Job::Append(chunk)) => batch.push(chunk),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(&batch);
                    batch.clear();
                }
                Job::Flush { sync, reply } => {
                    let _ = reply.send(self.flush(sync));
                }
                Job::SyncBehind { reply } => self.sync_behind(reply),
                Job::SetLen { len, reply } => {
                    let _ = reply.send(self.set_len(len));
                }
            }
        }
    }

    fn append(&mut self, batch: &[Arc<Chunk>]) {
        if self.abandoned.load(Ordering::Acquire) {
            return;
        }
        let Ok(file) = &mut self.file else { return };
        let written = match &mut self.on_disk {
            Some(OnDisk::Direct(direct)) => batch
                .iter()
                .try_for_each(|chunk| direct.append(&chunk.bytes))
                .map_err(BlobError::from),
            Some(on_disk) => write_all(file, batch).map(|written| {
                if let OnDisk::Early(started) = on_disk {
                    started.wrote(file, written);
                }
                on_disk.go_direct_when_due(file);
            }),
            None => write_all(file, batch).map(drop),
        };
        if let Err(e) = written {
            self.file = Err(e);
        }
    }

    /// The file, unless opening or an earlier write failed: then that error, again.
    fn file(&mut self) -> Result<&mut std::fs::File, BlobError> {
        self.file.as_mut().map_err(|failed| again(failed))
    }

    /// Writes out what direct I/O still holds (a failure is kept for every later flush).
    fn write_out(&mut self) -> Result<(), BlobError> {
        self.file()?;
        if let Some(OnDisk::Direct(direct)) = &mut self.on_disk
            && let Err(e) = direct.write_out()
        {
            let failed = BlobError::from(e);
            let reported = again(&failed);
            self.file = Err(failed);
            return Err(reported);
        }
        Ok(())
    }

    fn flush(&mut self, sync: bool) -> Result<(), BlobError> {
        self.write_out()?;
        let file = self.file()?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Everything before is written: fdatasyncs a second handle on the file on a thread of its
    /// own (what it covers is what was written before it started), and goes back to writing.
    fn sync_behind(&mut self, reply: oneshot::Sender<Result<(), BlobError>>) {
        let handle = self
            .write_out()
            .and_then(|()| self.file())
            .and_then(|file| Ok(file.try_clone()?));
        match handle {
            Ok(file) => {
                self.runtime.spawn_blocking(move || {
                    let synced = file.sync_data().map_err(BlobError::from);
                    // The handle shares the file's `flock`: closed before the answer, so the
                    // writer's end is the lock's end.
                    drop(file);
                    let _ = reply.send(synced);
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn set_len(&mut self, len: u64) -> Result<(), BlobError> {
        self.write_out()?;
        let file = self.file.as_mut().map_err(|failed| again(failed))?;
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        match &mut self.on_disk {
            Some(OnDisk::Direct(direct)) => direct.moved_to(len)?,
            Some(OnDisk::Early(started)) => started.moved_to(len),
            None => {}
        }
        Ok(())
    }
}

/// Writes every chunk of `batch`, in order, with as few system calls as the file takes;
/// returns how many bytes that was.
fn write_all(file: &mut std::fs::File, batch: &[Arc<Chunk>]) -> Result<u64, BlobError> {
    let total = batch.iter().map(|c| c.bytes.len() as u64).sum();
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|c| IoSlice::new(&c.bytes)).collect();
    let mut slices = slices.as_mut_slice();
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => {
                return Err(BlobError::Io(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the file took no more bytes",
                )));
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(total)
}

/// The error `failed` stands for, once more (for each flush after it).
fn again(failed: &BlobError) -> BlobError {
    match failed {
        BlobError::PartBusy(upload) => BlobError::PartBusy(upload.clone()),
        BlobError::Io(e) => BlobError::Io(std::io::Error::new(e.kind(), e.to_string())),
        other => BlobError::Io(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_in_order_hashes_and_cuts() {
        for writeback in [Writeback::Early, Writeback::Lazy] {
            appends_in_order_hashes_and_cuts_with(writeback).await;
        }
    }

    async fn appends_in_order_hashes_and_cuts_with(writeback: Writeback) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let appender = Appender::start(file, Some(kept(Sha256::new())), writeback);
        let mut expected = Vec::new();
        // More chunks than one batch, and more bytes than the queue budget; now and then a
        // chunk bigger than the whole budget.
        for i in 0..200u32 {
            let size = match i % 50 {
                49 => QUEUED_BYTES + 1000,
                _ => 64 * 1024 + i as usize,
            };
            let chunk = vec![(i % 251) as u8; size];
            expected.extend_from_slice(&chunk);
            appender.append(Bytes::from(chunk)).await.unwrap();
        }
        let promise = appender.flush(true).await.unwrap().unwrap();
        let digest = settle(promise).await.unwrap();
        assert_eq!(digest.finalize()[..], Sha256::digest(&expected)[..]);
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        appender.set_len(10).await.unwrap();
        appender.append(Bytes::from_static(b"tail")).await.unwrap();
        appender.flush(false).await.unwrap();
        appender.close().await;
        let mut cut = expected[..10].to_vec();
        cut.extend_from_slice(b"tail");
        assert_eq!(std::fs::read(&path).unwrap(), cut);
    }

    #[tokio::test]
    async fn a_write_error_is_reported_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        // Opened read-only: every write fails.
        let file = std::fs::File::open(&path).unwrap();
        let appender = Appender::start(file, None, Writeback::Early);
        appender.append(Bytes::from_static(b"abc")).await.unwrap();
        assert!(appender.flush(false).await.is_err());
        assert!(appender.set_len(0).await.is_err());
        appender.close().await;
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_fails_every_flush_and_takes_nothing() {
        let appender = Appender::opening(
            || Err(BlobError::PartBusy("u1".into())),
            None,
            Writeback::Early,
        );
        appender.append(Bytes::from_static(b"abc")).await.unwrap();
        for _ in 0..2 {
            assert!(matches!(
                appender.flush(true).await,
                Err(BlobError::PartBusy(id)) if id == "u1"
            ));
        }
        assert!(matches!(
            appender.set_len(0).await,
            Err(BlobError::PartBusy(_))
        ));
        appender.close().await;
    }

    #[tokio::test]
    async fn nothing_queued_is_written_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let appender =
            Appender::start(std::fs::File::create(&path).unwrap(), None, Writeback::Lazy);
        appender.append(Bytes::from_static(b"kept")).await.unwrap();
        appender.flush(false).await.unwrap();
        for _ in 0..100 {
            appender
                .append(Bytes::from(vec![b'z'; 64 * 1024]))
                .await
                .unwrap();
        }
        appender.close().await;
        let len = std::fs::metadata(&path).unwrap().len();
        // Whatever the thread had taken before the close may be written, never more after it.
        assert!(len >= 4);
        let after = len;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), after);
    }

    #[tokio::test]
    async fn hashing_continues_from_a_promise_kept_later_and_a_broken_one_breaks_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (keep, later) = oneshot::channel();
        let a = Appender::start(
            std::fs::File::create(dir.path().join("a")).unwrap(),
            Some(later),
            Writeback::Lazy,
        );
        a.append(Bytes::from_static(b"def")).await.unwrap();
        let promise = a.flush(false).await.unwrap().unwrap();
        let mut before = Sha256::new();
        before.update(b"abc");
        keep.send(before).unwrap();
        let digest = settle(promise).await.unwrap();
        assert_eq!(digest.finalize()[..], Sha256::digest(b"abcdef")[..]);
        a.close().await;

        let (broken, never) = oneshot::channel::<Sha256>();
        drop(broken);
        let b = Appender::start(
            std::fs::File::create(dir.path().join("b")).unwrap(),
            Some(never),
            Writeback::Lazy,
        );
        b.append(Bytes::from_static(b"ghi")).await.unwrap();
        let promise = b.flush(false).await.unwrap().unwrap();
        assert!(settle(promise).await.is_err());
        b.close().await;
    }
}
