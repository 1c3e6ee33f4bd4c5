//! Writing an upload: streaming a PATCH body to the temp file with durable
//! offsets, `check-head` on the first 64 KiB, and completion (store and hash → queue).
//!
//! Durability rule: the offset in the database only ever moves after the bytes before it were
//! made durable (fsynced, or stored as a piece object), so whatever HEAD reports after a crash
//! is kept. Without `Upload-Checksum` the offset advances every [`SYNC_BYTES`] or
//! [`PartWriter::sync_interval`] (also while the body stalls, and when it ends or breaks off),
//! so an interrupted PATCH keeps what arrived; with a checksum nothing of the request is kept
//! until the digest matched. Those in the middle of a body run behind it, one at a time: the
//! fdatasync (or the upload of the piece) and the row's update go on while the next bytes are
//! received and written.

use axum::body::Body;
use futures::StreamExt;
use mediahost_blob::{PartRef, PartWriter, SyncBehind, Synced};
use mediahost_core::Tenant;
use mediahost_core::video::keys;
use mediahost_runtime::UploadInfo;
use mediahost_store::{Concat, Upload};
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::checksum::Expected;
use super::headers::parse_metadata;
use super::lock::Lock;
use crate::ingest::{HEAD_BYTES, queue_transcode, validate};
use crate::quota;
use crate::{ApiError, SharedState};

/// Bytes written between syncs (and durable offset updates) of an unchecksummed body. Each
/// one is an fdatasync of the temp file (or a stored piece) plus a committed `UPDATE` (another
/// fsync on SQLite), so this trades the bytes an interrupted PATCH may have to resend (at most
/// this many, or [`PartWriter::sync_interval`]'s worth) against throughput: at 4 MiB a 1 GiB
/// upload made 512 of them.
const SYNC_BYTES: u64 = 16 * 1024 * 1024;

/// Where `upload`'s bytes are kept.
pub(crate) fn part_of(upload: &Upload) -> PartRef<'_> {
    PartRef {
        tenant: &upload.tenant_id,
        upload: &upload.id,
    }
}

/// What validators are told about an upload (`check-upload`, `check-head`).
pub(super) async fn upload_info(
    state: &SharedState,
    tenant: &Tenant,
    upload: &Upload,
) -> Result<UploadInfo, ApiError> {
    let video_id = upload.video_id.clone().unwrap_or_default();
    let filename = match &upload.video_id {
        Some(v) => state
            .store
            .video(&tenant.id, v)
            .await?
            .and_then(|v| v.filename),
        None => None,
    };
    let metadata = parse_metadata(&upload.metadata)?;
    Ok(UploadInfo {
        tenant: tenant.id.clone(),
        video_id,
        filename,
        declared_size: upload.length,
        content_type: metadata.get("filetype").map(str::to_owned),
        metadata: metadata.pairs,
    })
}

/// Deletes an upload everywhere: temp file, row, and its video unless that got a source.
pub(super) async fn terminate(state: &SharedState, upload: &Upload) -> Result<(), ApiError> {
    state.blobs.remove_part(part_of(upload)).await?;
    state.store.delete_upload(upload).await?;
    Ok(())
}

/// Runs `check-head` on the upload's first bytes; a refusal terminates the upload.
async fn check_head(
    state: &SharedState,
    tenant: &Tenant,
    upload: &Upload,
    available: u64,
) -> Result<(), ApiError> {
    let head = state
        .blobs
        .read_part_head(part_of(upload), HEAD_BYTES.min(available as usize))
        .await?;
    let info = upload_info(state, tenant, upload).await?;
    let verdict = validate(state, move |p| p.check_head(&info, &head)).await;
    // A refusal ends the upload and frees its storage; a plugin failure (503) lets the
    // client retry.
    if matches!(verdict, Err(ApiError::Rejected { .. })) {
        terminate(state, upload).await?;
    }
    verdict
}

/// Streams `body` into the upload at its durable offset (the caller holds `lock` and checked
/// the client's offset). Returns what the upload's row now says: the durable offset and
/// whether `check-head` ran (so the caller needs no re-read). Nothing of the request is written
/// any more once this returns, so the caller may release the lock; when the request leaves
/// the upload incomplete, the row's last write has released a lock held in the row already.
pub(super) async fn write_body(
    state: &SharedState,
    lock: &Lock,
    tenant: &Tenant,
    upload: &Upload,
    body: Body,
    checksum: Option<Expected>,
) -> Result<Written, ApiError> {
    let mut writer = state
        .blobs
        .open_part(part_of(upload), upload.offset, lock.writer())
        .await?;
    let streamed = stream_body(state, lock, tenant, upload, body, checksum, &mut writer).await;
    // Closed before the row's last write: the next request may start as soon as that lands,
    // and finds this one's running digest handed back.
    writer.close().await;
    let Streamed {
        durable,
        synced,
        head_checked,
    } = streamed?;
    if synced > durable || head_checked != upload.head_checked {
        // A request that completes the upload keeps its lock for the completion.
        let release = lock.in_row() && upload.length != Some(synced);
        advance(state, lock, upload, durable, synced, head_checked, release).await?;
    }
    Ok(Written {
        offset: synced,
        head_checked,
    })
}

/// Where [`stream_body`] left the part: the offset in the row, and the one up to which its
/// bytes are durable (the row is moved there last).
struct Streamed {
    durable: u64,
    synced: u64,
    head_checked: bool,
}

/// [`write_body`]'s loop over the body's chunks.
async fn stream_body(
    state: &SharedState,
    lock: &Lock,
    tenant: &Tenant,
    upload: &Upload,
    body: Body,
    mut checksum: Option<Expected>,
    writer: &mut PartWriter,
) -> Result<Streamed, ApiError> {
    let start = upload.offset;
    let limit = match upload.length {
        Some(length) => length,
        None => quota::upload_limit(state, tenant).await?,
    };
    // Partial uploads are not a file's head; the final upload's head is checked on completion.
    let mut head_checked = upload.head_checked || upload.concat != Concat::None;
    let head_at = upload.length.unwrap_or(u64::MAX).min(HEAD_BYTES as u64);
    let mut durable = start;
    let mut last_sync = Instant::now();
    let mut stream = body.into_data_stream();
    // At most one persist runs behind the writing at a time.
    let mut behind: Option<PersistBehind<'_>> = None;

    loop {
        // A body that stalls still gets what it sent made durable once the interval is up,
        // not only when its next bytes arrive (`next` is cancel-safe: nothing is lost).
        let due = (checksum.is_none() && behind.is_none() && writer.position() > durable)
            .then(|| tokio::time::Instant::from_std(last_sync + writer.sync_interval()));
        let next = tokio::select! {
            // A persist that finished is recorded before more bytes are taken.
            biased;
            persisted = async { behind.as_mut().expect("guarded by the condition").await },
                if behind.is_some() =>
            {
                behind = None;
                record(persisted?, writer, &mut durable);
                continue;
            }
            next = async {
                match due {
                    Some(due) => tokio::time::timeout_at(due, stream.next()).await.ok(),
                    None => Some(stream.next().await),
                }
            } => next,
        };
        let Some(next) = next else {
            persist(state, lock, writer, upload, &mut durable, head_checked).await?;
            last_sync = Instant::now();
            continue;
        };
        if !matches!(next, Some(Ok(_))) {
            settle(&mut behind, writer, &mut durable).await?;
        }
        let chunk = match next {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                // The client broke off: keep what is safely here (unless it must be verified).
                if checksum.is_some() {
                    writer.truncate(start).await?;
                } else if writer.position() > durable {
                    persist(state, lock, writer, upload, &mut durable, head_checked).await?;
                }
                return Err(ApiError::BadRequest(format!("upload interrupted: {e}")));
            }
            None => break,
        };
        lock.check()?;
        if writer.position() + chunk.len() as u64 > limit {
            settle(&mut behind, writer, &mut durable).await?;
            if checksum.is_some() {
                writer.truncate(start).await?;
            } else if writer.position() > durable {
                persist(state, lock, writer, upload, &mut durable, head_checked).await?;
            }
            return Err(ApiError::TooLarge(match upload.length {
                Some(l) => format!("the body goes beyond Upload-Length ({l} bytes)"),
                None => format!(
                    "uploads of tenant {} are limited to {limit} bytes (Tus-Max-Size or its quota)",
                    tenant.name
                ),
            }));
        }
        writer.write(chunk.clone()).await?;
        if let Some(c) = checksum.as_mut() {
            c.update(&chunk);
        }
        if !head_checked && writer.position() >= head_at {
            settle(&mut behind, writer, &mut durable).await?;
            writer.sync().await?;
            check_head(state, tenant, upload, writer.position()).await?;
            head_checked = true;
        }
        if checksum.is_none()
            && behind.is_none()
            && (writer.position() - durable >= SYNC_BYTES
                || last_sync.elapsed() >= writer.sync_interval())
        {
            // The fdatasync (or the piece's upload) and the row's update run while the body
            // keeps coming.
            let sync = writer.sync_behind()?;
            behind = Some(persist_behind(
                state,
                lock,
                upload,
                durable,
                sync,
                head_checked,
            ));
            last_sync = Instant::now();
        }
    }

    if let Some(c) = checksum {
        let algorithm = c.algorithm.clone();
        if !c.matches() {
            writer.truncate(start).await?;
            return Err(ApiError::ChecksumMismatch(format!(
                "the body's {algorithm} digest differs from Upload-Checksum; nothing was kept, \
                 resume from offset {start}"
            )));
        }
    }
    let synced = if writer.position() > durable {
        writer.sync().await?
    } else {
        durable
    };
    Ok(Streamed {
        durable,
        synced,
        head_checked,
    })
}

/// A persist running behind the writing: the part's bytes up to some position made durable,
/// then the row's durable offset moved there.
type PersistBehind<'a> = Pin<Box<dyn Future<Output = Result<Synced, ApiError>> + Send + 'a>>;

/// Starts persisting what `sync` covers, from the durable offset `from`.
fn persist_behind<'a>(
    state: &'a SharedState,
    lock: &'a Lock,
    upload: &'a Upload,
    from: u64,
    sync: SyncBehind,
    head_checked: bool,
) -> PersistBehind<'a> {
    Box::pin(async move {
        let synced = sync.done().await?;
        advance(
            state,
            lock,
            upload,
            from,
            synced.position(),
            head_checked,
            false,
        )
        .await?;
        Ok(synced)
    })
}

/// Waits for the persist running behind the writing, if any, and records where it left the
/// part; fails as it failed.
async fn settle(
    behind: &mut Option<PersistBehind<'_>>,
    writer: &mut PartWriter,
    durable: &mut u64,
) -> Result<(), ApiError> {
    if let Some(persisting) = behind.take() {
        record(persisting.await?, writer, durable);
    }
    Ok(())
}

/// Takes what a persist behind the writing made durable as the part's durable offset.
fn record(synced: Synced, writer: &mut PartWriter, durable: &mut u64) {
    *durable = synced.position();
    writer.synced(synced);
}

/// Where a PATCH left its upload, as persisted in the row.
pub(super) struct Written {
    /// The durable offset.
    pub offset: u64,
    /// Whether `check-head` has run on the upload.
    pub head_checked: bool,
}

/// Fsyncs what is written and moves the durable offset (`durable`, in the row and here) to it;
/// fails when the lock was lost.
async fn persist(
    state: &SharedState,
    lock: &Lock,
    writer: &mut PartWriter,
    upload: &Upload,
    durable: &mut u64,
    head_checked: bool,
) -> Result<(), ApiError> {
    let synced = writer.sync().await?;
    if let Err(e) = advance(state, lock, upload, *durable, synced, head_checked, false).await {
        writer.forget_last_sync();
        return Err(e);
    }
    *durable = synced;
    Ok(())
}

/// Moves the upload's durable offset from `from` to `to` (bytes already durable), releasing a
/// lock held in the row with it when `release`; fails when the lock was lost, and then forgets
/// what this writer stored from `from` on (nobody will ever read it).
async fn advance(
    state: &SharedState,
    lock: &Lock,
    upload: &Upload,
    from: u64,
    to: u64,
    head_checked: bool,
    release: bool,
) -> Result<(), ApiError> {
    if !state
        .store
        .advance_upload(&upload.id, lock.writer(), to, head_checked, release)
        .await?
    {
        if to > from
            && let Err(e) = state
                .blobs
                .forget_refused(part_of(upload), from, lock.writer())
                .await
        {
            tracing::warn!(upload = %upload.id, error = %e, "could not delete the piece of a writer that was taken over");
        }
        lock.check()?;
        return Err(ApiError::UploadLocked(format!(
            "upload {} lost its write lock",
            upload.id
        )));
    }
    if release {
        lock.released_by_row();
    }
    Ok(())
}

/// Finishes an upload whose bytes are all durable: partials are just marked complete (their
/// part waits for a final upload); others get `check-head` if still due, are stored as the
/// video's source (hashed from what was kept, unless this process's running digest covers it)
/// and queued for transcoding, then the part goes.
pub(super) async fn complete(
    state: &SharedState,
    tenant: &Tenant,
    upload: &Upload,
) -> Result<(), ApiError> {
    let length = upload.length.unwrap_or(upload.offset);
    let Some(video_id) = &upload.video_id else {
        state.store.complete_upload(&upload.id).await?;
        return Ok(());
    };
    if !upload.head_checked {
        check_head(state, tenant, upload, length).await?;
    }
    let part = part_of(upload);
    let (size, sha256) = state
        .blobs
        .store_part(part, length, &keys::source(&tenant.id, video_id))
        .await?;
    queue_transcode(state, tenant, video_id, size, &sha256).await?;
    state.store.complete_upload(&upload.id).await?;
    state.blobs.remove_part(part).await?;
    Ok(())
}
