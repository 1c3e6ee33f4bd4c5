//! Appending to a local file on a thread of its own, hashing what is appended.
//!
//! Request bodies arrive as shared chunks ([`Bytes`]) of a few KiB to a few hundred KiB. The
//! async side hands each chunk over, without copying it, and goes back to receiving; the
//! appender's thread writes every chunk queued so far with one `write_vectored` call, straight
//! from the chunks, then adds them to the running sha256 (the most expensive thing done per
//! byte received, ~0.5 s of CPU per GiB here even with SHA-NI). So writing and hashing overlap
//! receiving, no byte is copied in user space on its way to the file, and a batch of chunks is
//! one system call instead of a trip to the blocking pool per buffer.
//!
//! At most [`QUEUED_BYTES`] wait for the thread: a client faster than the disk is slowed to
//! the disk's speed (backpressure), never buffered.

use bytes::Bytes;
use sha2::Sha256;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::BlobError;

/// Bytes an appender may hold queued for its thread.
const QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Chunks written by one system call at most (well under `IOV_MAX`).
const BATCH: usize = 64;

/// A file being appended to by a thread of its own, with the running sha256 of what was
/// appended when one was given. Errors of the thread are reported by the next [`Self::flush`]
/// or [`Self::set_len`]; chunks appended after a failure are dropped.
#[derive(Debug)]
pub(crate) struct Appender {
    jobs: mpsc::UnboundedSender<Job>,
    /// Permits are queued bytes.
    budget: Arc<Semaphore>,
    /// Set when the appender goes away without [`Self::close`]: chunks still queued are
    /// dropped rather than written behind the back of whoever opens the file next.
    abandoned: Arc<AtomicBool>,
    thread: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
enum Job {
    /// A chunk to append, holding its share of the queue budget until it is written.
    Append(Bytes, OwnedSemaphorePermit),
    /// Wants every chunk before written (and with `sync`, fdatasynced), and the digest of
    /// all appended so far.
    Flush {
        sync: bool,
        reply: oneshot::Sender<std::io::Result<Option<Sha256>>>,
    },
    /// Cuts (or extends) the file to `len` bytes and appends from there; the digest is not
    /// touched.
    SetLen {
        len: u64,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
}

impl Appender {
    /// Appends to `file` at its current position, continuing `digest` when given.
    pub(crate) fn start(file: std::fs::File, digest: Option<Sha256>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let thread = Thread {
            file,
            digest,
            failed: None,
            abandoned: abandoned.clone(),
        };
        Self {
            jobs,
            budget: Arc::new(Semaphore::new(QUEUED_BYTES)),
            abandoned,
            thread: Some(tokio::task::spawn_blocking(move || thread.run(queue))),
        }
    }

    /// Queues `bytes` to be appended (waits while the queue is full).
    pub(crate) async fn append(&self, bytes: Bytes) -> Result<(), BlobError> {
        if bytes.is_empty() {
            return Ok(());
        }
        // A chunk larger than the whole budget takes all of it.
        let share = bytes.len().min(QUEUED_BYTES) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(share)
            .await
            .map_err(|_| gone())?;
        self.jobs
            .send(Job::Append(bytes, permit))
            .map_err(|_| gone())
    }

    /// Waits until everything appended is written (`sync`: and fdatasynced); returns the
    /// digest of all appended so far, if one is kept.
    pub(crate) async fn flush(&self, sync: bool) -> Result<Option<Sha256>, BlobError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Flush { sync, reply })
            .map_err(|_| gone())?;
        Ok(answer.await.map_err(|_| gone())??)
    }

    /// Sets the file's length to `len` (after everything appended before) and appends from
    /// there.
    pub(crate) async fn set_len(&self, len: u64) -> Result<(), BlobError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::SetLen { len, reply })
            .map_err(|_| gone())?;
        Ok(answer.await.map_err(|_| gone())??)
    }

    /// Ends the thread, dropping what was appended and not flushed, and waits until it is
    /// gone, so nothing more is written to the file once this returns.
    pub(crate) async fn close(mut self) {
        let thread = self.thread.take();
        // With the sender gone the thread's loop ends (and `Drop` marks the rest abandoned).
        drop(self);
        if let Some(thread) = thread {
            let _ = thread.await;
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Release);
    }
}

fn gone() -> BlobError {
    BlobError::Io(std::io::Error::other("the file's writing thread ended"))
}

/// The appender's thread and what it owns.
struct Thread {
    file: std::fs::File,
    digest: Option<Sha256>,
    /// The first write error, reported to every later flush.
    failed: Option<(std::io::ErrorKind, String)>,
    abandoned: Arc<AtomicBool>,
}

impl Thread {
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let mut next = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let Some(job) = next.take().or_else(|| queue.blocking_recv()) else {
                return;
            };
            match job {
                Job::Append(bytes, permit) => {
                    batch.push((bytes, permit));
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(Job::Append(bytes, permit)) => batch.push((bytes, permit)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(&batch);
                    // Frees the chunks and their share of the budget.
                    batch.clear();
                }
                Job::Flush { sync, reply } => {
                    let _ = reply.send(self.flush(sync));
                }
                Job::SetLen { len, reply } => {
                    let _ = reply.send(self.set_len(len));
                }
            }
        }
    }

    fn append(&mut self, batch: &[(Bytes, OwnedSemaphorePermit)]) {
        if self.failed.is_some() || self.abandoned.load(Ordering::Acquire) {
            return;
        }
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|(b, _)| IoSlice::new(b)).collect();
        let mut slices = slices.as_mut_slice();
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => {
                    self.failed = Some((
                        std::io::ErrorKind::WriteZero,
                        "the file took no more bytes".into(),
                    ));
                    return;
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return;
                }
            }
        }
        if let Some(digest) = &mut self.digest {
            for (bytes, _) in batch {
                sha2::Digest::update(digest, bytes);
            }
        }
    }

    fn check(&self) -> std::io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(std::io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    fn flush(&mut self, sync: bool) -> std::io::Result<Option<Sha256>> {
        self.check()?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(self.digest.clone())
    }

    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[tokio::test]
    async fn appends_in_order_hashes_and_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let appender = Appender::start(file, Some(Sha256::new()));
        let mut expected = Vec::new();
        // More chunks than one batch, and more bytes than the queue budget.
        for i in 0..200u32 {
            let chunk = vec![(i % 251) as u8; 64 * 1024 + i as usize];
            expected.extend_from_slice(&chunk);
            appender.append(Bytes::from(chunk)).await.unwrap();
        }
        let digest = appender.flush(true).await.unwrap().unwrap();
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
        let appender = Appender::start(file, None);
        appender.append(Bytes::from_static(b"abc")).await.unwrap();
        assert!(appender.flush(false).await.is_err());
        assert!(appender.set_len(0).await.is_err());
        appender.close().await;
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[tokio::test]
    async fn nothing_queued_is_written_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let appender = Appender::start(std::fs::File::create(&path).unwrap(), None);
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
}
