//! Temp files of resumable (tus) uploads: `<temp dir>/tus/<upload id>`.
//!
//! Unlike [`crate::Staged`], a part outlives requests and process restarts: its name is derived
//! from the upload id, so after a crash the next PATCH finds it again. The metadata store holds
//! the *durable offset*; this module promises that bytes before an offset reported by
//! [`PartWriter::sync`] are on disk, and [`Blobs::open_part`] cuts off anything written beyond
//! the durable offset (bytes a crashed or failed writer left unsynced or unacknowledged).
//!
//! Each writer hashes what it appends, continuing the digest the previous request of the same
//! upload left at its durable offset, so [`Blobs::hash_part`] on completion usually finalises
//! a digest instead of reading the whole file back. The digest is only trusted at exactly the
//! offset it covers (bytes before a durable offset never change; a writer that finds another
//! offset, e.g. after a restart, starts none), and the read-back stays the fallback.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{BlobError, Blobs, WRITE_BUFFER};

/// Appends to one upload's temp file. Writes are gathered into [`WRITE_BUFFER`]-sized pieces
/// and left to the OS until [`Self::sync`].
#[derive(Debug)]
pub struct PartWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// Bytes in the file (durable or not).
    position: u64,
    /// The upload whose part this is.
    id: String,
    /// sha256 of the bytes before `position`, when known from the start of the file.
    digest: Option<Sha256>,
    /// The digest as of the last sync, and the durable offset it covers: handed back to
    /// [`Digests`] when the writer is dropped.
    durable: (u64, Option<Sha256>),
    /// Where digests wait between requests.
    digests: Digests,
}

/// Running digests of parts at their durable offsets (upload id → offset, digest).
pub(crate) type Digests = Arc<Mutex<HashMap<String, (u64, Sha256)>>>;

impl Drop for PartWriter {
    fn drop(&mut self) {
        if let (offset, Some(digest)) = std::mem::take(&mut self.durable) {
            self.digests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.id.clone(), (offset, digest));
        }
    }
}

impl PartWriter {
    /// Appends `bytes` at the current position.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.file.write_all(bytes).await?;
        self.position += bytes.len() as u64;
        if let Some(digest) = self.digest.as_mut() {
            digest.update(bytes);
        }
        Ok(())
    }

    /// Flushes and fsyncs; returns the position up to which bytes are now durable.
    pub async fn sync(&mut self) -> Result<u64, BlobError> {
        self.file.flush().await?;
        self.file.get_ref().sync_data().await?;
        self.durable = (self.position, self.digest.clone());
        Ok(self.position)
    }

    /// Bytes in the file so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Drops everything after `offset` (a request whose checksum failed keeps nothing).
    pub async fn truncate(&mut self, offset: u64) -> Result<(), BlobError> {
        self.file.flush().await?;
        self.file.get_ref().set_len(offset).await?;
        self.file.seek(SeekFrom::Start(offset)).await?;
        self.file.get_ref().sync_data().await?;
        self.position = offset;
        // Rare (a failed checksum): the read-back on completion hashes instead.
        self.digest = None;
        self.durable = (offset, None);
        Ok(())
    }
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
    fn parts_dir(&self) -> PathBuf {
        self.parts_dir.clone()
    }

    /// Removes and returns the running digest kept for upload `id`.
    fn take_digest(&self, id: &str) -> Option<(u64, Sha256)> {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Where upload `id`'s bytes are kept until completion.
    pub fn part_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        valid_id(id)?;
        Ok(self.parts_dir().join(id))
    }

    /// Creates the empty temp file of upload `id` (and makes its name durable).
    pub async fn create_part(&self, id: &str) -> Result<(), BlobError> {
        let path = self.part_path(id)?;
        let dir = self.parts_dir();
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::File::create(&path).await?.sync_all().await?;
        tokio::fs::File::open(&dir).await?.sync_all().await?;
        Ok(())
    }

    /// Opens upload `id` for appending at its durable `offset`, discarding any bytes beyond.
    /// Call only while holding the upload's lock.
    pub async fn open_part(&self, id: &str, offset: u64) -> Result<PartWriter, BlobError> {
        let path = self.part_path(id)?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?;
        let len = file.metadata().await?.len();
        if len < offset {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "upload {id}: temp file holds {len} bytes, fewer than the durable offset {offset}"
            ))));
        }
        if len > offset {
            file.set_len(offset).await?;
        }
        file.seek(SeekFrom::Start(offset)).await?;
        let kept = self.take_digest(id);
        let digest = match kept {
            _ if offset == 0 => Some(Sha256::new()),
            Some((at, digest)) if at == offset => Some(digest),
            _ => None,
        };
        Ok(PartWriter {
            file: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            position: offset,
            id: id.to_owned(),
            durable: (offset, digest.clone()),
            digest,
            digests: self.digests.clone(),
        })
    }

    /// Up to `max` bytes from the front of upload `id` (what validators sniff).
    pub async fn read_part_head(&self, id: &str, max: usize) -> Result<Vec<u8>, BlobError> {
        let file = tokio::fs::File::open(self.part_path(id)?).await?;
        let mut head = Vec::with_capacity(max);
        file.take(max as u64).read_to_end(&mut head).await?;
        Ok(head)
    }

    /// Size and hex sha256 of upload `id`'s first `len` bytes, read back from disk (so the hash
    /// covers what was stored across every request and restart, not what one process saw).
    pub async fn hash_part(&self, id: &str, len: u64) -> Result<(u64, String), BlobError> {
        let kept = self.take_digest(id);
        if let Some((at, digest)) = kept
            && at == len
        {
            return Ok((len, hex::encode(digest.finalize())));
        }
        let file = tokio::fs::File::open(self.part_path(id)?).await?;
        let mut reader = file.take(len);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

    /// Writes the concatenation of the first `len` bytes of each source part into part `dest`
    /// (created or replaced) and fsyncs it; returns the total size.
    pub async fn concat_parts(
        &self,
        sources: &[(String, u64)],
        dest: &str,
    ) -> Result<u64, BlobError> {
        self.create_part(dest).await?;
        let mut writer = self.open_part(dest, 0).await?;
        for (id, len) in sources {
            let mut src = tokio::fs::File::open(self.part_path(id)?).await?.take(*len);
            let copied = tokio::io::copy(&mut src, &mut writer.file).await?;
            if copied != *len {
                return Err(BlobError::Io(std::io::Error::other(format!(
                    "partial upload {id} holds {copied} bytes, expected {len}"
                ))));
            }
            writer.position += copied;
        }
        // Copied past the writer's digest: the completion reads the result back instead.
        writer.digest = None;
        writer.sync().await
    }

    /// Streams upload `id` to permanent storage under `key`, then deletes the temp file.
    pub async fn promote_part(&self, id: &str, key: &str) -> Result<(), BlobError> {
        let path = self.part_path(id)?;
        self.put_finished_file(key, &path).await?;
        self.remove_part(id).await
    }

    /// Deletes upload `id`'s temp file (idempotent).
    pub async fn remove_part(&self, id: &str) -> Result<(), BlobError> {
        self.take_digest(id);
        match tokio::fs::remove_file(self.part_path(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_running_digest_continues_across_writers_and_matches_the_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        blobs.create_part("d").await.unwrap();
        let mut w = blobs.open_part("d", 0).await.unwrap();
        w.write(b"abc").await.unwrap();
        w.sync().await.unwrap();
        w.write(b"unsynced").await.unwrap();
        drop(w);
        let mut w = blobs.open_part("d", 3).await.unwrap();
        w.write(b"def").await.unwrap();
        w.sync().await.unwrap();
        drop(w);
        let kept = blobs.digests.lock().unwrap().get("d").map(|(at, _)| *at);
        assert_eq!(kept, Some(6));
        let expected = hex::encode(Sha256::digest(b"abcdef"));
        assert_eq!(
            blobs.hash_part("d", 6).await.unwrap(),
            (6, expected.clone())
        );
        // Finalised once; the read-back agrees.
        assert!(blobs.digests.lock().unwrap().is_empty());
        assert_eq!(blobs.hash_part("d", 6).await.unwrap(), (6, expected));
        // A digest of another offset is never continued: the writer keeps none.
        let mut w = blobs.open_part("d", 6).await.unwrap();
        w.write(b"g").await.unwrap();
        w.sync().await.unwrap();
        drop(w);
        assert!(blobs.digests.lock().unwrap().is_empty());
        let expected = hex::encode(Sha256::digest(b"abcdefg"));
        assert_eq!(blobs.hash_part("d", 7).await.unwrap(), (7, expected));
    }

    #[tokio::test]
    async fn append_resume_hash_concat_promote() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        blobs.create_part("a").await.unwrap();
        let mut w = blobs.open_part("a", 0).await.unwrap();
        w.write(b"hello ").await.unwrap();
        assert_eq!(w.sync().await.unwrap(), 6);
        w.write(b"junk").await.unwrap();
        drop(w);
        // Reopening at the durable offset drops the unacknowledged bytes.
        let mut w = blobs.open_part("a", 6).await.unwrap();
        w.write(b"world").await.unwrap();
        w.write(b"!!").await.unwrap();
        w.truncate(11).await.unwrap();
        assert_eq!(w.sync().await.unwrap(), 11);
        assert!(blobs.open_part("a", 12).await.is_err());
        assert_eq!(blobs.read_part_head("a", 5).await.unwrap(), b"hello");
        let (size, sha) = blobs.hash_part("a", 11).await.unwrap();
        assert_eq!(size, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );

        blobs.create_part("b").await.unwrap();
        let mut w = blobs.open_part("b", 0).await.unwrap();
        w.write(b" again").await.unwrap();
        w.sync().await.unwrap();
        let total = blobs
            .concat_parts(&[("a".into(), 11), ("b".into(), 6)], "c")
            .await
            .unwrap();
        assert_eq!(total, 17);
        blobs.promote_part("c", "t/v/source").await.unwrap();
        let back = dir.path().join("back");
        blobs.download("t/v/source", &back).await.unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), b"hello world again");
        assert!(!blobs.part_path("c").unwrap().exists());
        blobs.remove_part("a").await.unwrap();
        blobs.remove_part("a").await.unwrap();
        assert!(blobs.part_path("../x").is_err());
    }
}
