//! Appending to a file with direct I/O (`O_DIRECT`): bytes go from an aligned buffer of the
//! writing thread to the disk, past the page cache.
//!
//! Why: a file that is fsynced at every durable point pays, with buffered writes, for the
//! kernel's writeback of its dirty pages at each fsync. On this project's test VM that path
//! wrote 339 MB/s (`dd conv=fsync`) where direct writes reach 1.6 GB/s, and the closing
//! fdatasync of an 8 MiB tus PATCH took 1.5-1.9 ms, a quarter of the request. Direct writes are
//! on the device when they return, so an fsync only commits the file's metadata and flushes the
//! device's cache; and no CPU goes to page-cache pages nobody reads again.
//!
//! Direct I/O wants file offsets, lengths and buffer addresses aligned to the device's logical
//! block ([`ALIGN`] covers 512- and 4096-byte blocks). Bytes gather in the buffer and go out
//! [`BUFFER`] at a time; at a flush the last, partial block is written padded with zeros and the
//! file cut back to its true length, and that block stays in the buffer to be completed and
//! written again by the bytes that follow. A writer that starts in the middle of a block reads
//! that block's head from the file first.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Alignment of direct I/O here: offsets, lengths and memory.
const ALIGN: usize = 4096;

/// Bytes gathered before one direct write.
const BUFFER: usize = 1024 * 1024;

/// A file being appended to with direct I/O.
pub(crate) struct Direct {
    /// The file, opened anew with `O_DIRECT`.
    file: File,
    /// [`BUFFER`] aligned bytes from `aligned_at` on.
    memory: Vec<u8>,
    aligned_at: usize,
    /// File offset of the buffer's first byte (aligned).
    start: u64,
    /// Bytes in the buffer.
    len: usize,
    /// Whether the buffer holds bytes not yet written.
    dirty: bool,
}

impl Direct {
    /// Direct appending to `file` (open for writing) from `position`, or `None` where the file
    /// system refuses direct I/O (tmpfs) or the block before `position` cannot be read back:
    /// then buffered writes do.
    pub(crate) fn open(file: &File, position: u64) -> Option<Self> {
        let direct = reopen(file, true)?;
        let memory = vec![0u8; BUFFER + ALIGN];
        let aligned_at = memory.as_ptr().align_offset(ALIGN);
        let mut this = Self {
            file: direct,
            memory,
            aligned_at,
            start: 0,
            len: 0,
            dirty: false,
        };
        this.moved_to(position).ok()?;
        Some(this)
    }

    fn buffer(&mut self) -> &mut [u8] {
        &mut self.memory[self.aligned_at..self.aligned_at + BUFFER]
    }

    /// Appends `bytes` (written once the buffer is full).
    pub(crate) fn append(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = (BUFFER - self.len).min(bytes.len());
            let at = self.len;
            self.buffer()[at..at + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            self.dirty = true;
            bytes = &bytes[n..];
            if self.len == BUFFER {
                let start = self.start;
                self.file
                    .write_all_at(&self.memory[self.aligned_at..][..BUFFER], start)?;
                self.start += BUFFER as u64;
                self.len = 0;
                self.dirty = false;
            }
        }
        Ok(())
    }

    /// Writes what the buffer holds, so the file ends at the last byte appended; keeps the
    /// last partial block for the bytes that follow.
    pub(crate) fn write_out(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let (len, start) = (self.len, self.start);
        let padded = len.next_multiple_of(ALIGN);
        self.buffer()[len..padded].fill(0);
        self.file
            .write_all_at(&self.memory[self.aligned_at..][..padded], start)?;
        if padded > len {
            self.file.set_len(start + len as u64)?;
        }
        let whole = len - len % ALIGN;
        self.buffer().copy_within(whole..len, 0);
        self.start += whole as u64;
        self.len -= whole;
        self.dirty = false;
        Ok(())
    }

    /// Appends from `position` on (the file was cut or extended there): reads the head of the
    /// block `position` falls in, to be written again.
    pub(crate) fn moved_to(&mut self, position: u64) -> std::io::Result<()> {
        self.start = position - position % ALIGN as u64;
        self.len = (position - self.start) as usize;
        self.dirty = false;
        if self.len == 0 {
            return Ok(());
        }
        let (start, len) = (self.start, self.len);
        let reader = reopen(&self.file, false).ok_or_else(|| {
            std::io::Error::other("cannot read back the head of the file's last block")
        })?;
        reader.read_exact_at(&mut self.buffer()[..len], start)
    }
}

/// `file` opened once more: for writing with `O_DIRECT` (`direct`, where the file system
/// takes it), or for buffered reading.
#[cfg(target_os = "linux")]
fn reopen(file: &File, direct: bool) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    match direct {
        true => options.write(true).custom_flags(libc::O_DIRECT),
        false => options.read(true),
    };
    options
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn reopen(_file: &File, _direct: bool) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends from an unaligned start across whole buffers, writes out at odd places, cuts
    /// back and appends again: the file always holds exactly what was appended.
    #[test]
    fn the_file_holds_exactly_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut expected: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &expected).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let Some(mut direct) = Direct::open(&file, expected.len() as u64) else {
            // A file system without direct I/O (tmpfs): buffered writes are used there.
            eprintln!("no direct I/O in {}", dir.path().display());
            return;
        };
        for (i, size) in [1, 4095, 4096, 70_000, BUFFER, 3 * BUFFER + 17, 5]
            .iter()
            .enumerate()
        {
            let chunk = vec![i as u8 + 1; *size];
            direct.append(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            if i % 2 == 1 {
                direct.write_out().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expected, "after chunk {i}");
            }
        }
        direct.write_out().unwrap();
        direct.write_out().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        let cut = 6001;
        file.set_len(cut).unwrap();
        expected.truncate(cut as usize);
        direct.moved_to(cut).unwrap();
        direct.append(b"after the cut").unwrap();
        expected.extend_from_slice(b"after the cut");
        direct.write_out().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
