//! The concatenation extension: `Upload-Concat: final;/v1/uploads/a /v1/uploads/b` builds a
//! new upload from completed partial uploads of the same tenant, in order, and completes it at
//! once (its video is queued). Partials stay until they expire, so a client may reuse them.

use mediahost_core::Tenant;
use mediahost_store::{Concat, Upload};

use super::create_upload;
use super::headers::Metadata;
use super::lock::Lock;
use super::write::{complete, terminate};
use crate::quota;
use crate::{ApiError, SharedState};

/// Creates and completes the final upload made of the partials `ids`.
pub(super) async fn create_final(
    state: &SharedState,
    tenant: &Tenant,
    metadata: &Metadata,
    ids: &[String],
) -> Result<Upload, ApiError> {
    let mut parts = Vec::with_capacity(ids.len());
    for id in ids {
        // Another tenant's partial is as unknown as a missing one.
        let part = state
            .store
            .upload(&tenant.id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no partial upload with id {id}")))?;
        if part.concat != Concat::Partial {
            return Err(ApiError::BadRequest(format!(
                "upload {id} is not a partial upload (Upload-Concat: partial)"
            )));
        }
        if part.completed_at.is_none() {
            return Err(ApiError::BadRequest(format!(
                "partial upload {id} is not complete ({} of {:?} bytes)",
                part.offset, part.length
            )));
        }
        parts.push((part.id, part.offset));
    }
    let total: u64 = parts.iter().map(|(_, len)| len).sum();
    if total == 0 {
        return Err(ApiError::BadRequest(
            "the partial uploads are empty; a video source cannot be".into(),
        ));
    }
    quota::admit_upload(state, tenant, Some(total)).await?;

    let upload = create_upload(state, tenant, metadata, Some(total), Concat::Final).await?;
    let built = async {
        let (lock, locked) = Lock::acquire_upload(state, tenant, &upload.id).await?;
        state
            .blobs
            .concat_parts(&tenant.id, &parts, &upload.id, lock.writer())
            .await?;
        if !state
            .store
            .advance_upload(&upload.id, lock.writer(), total, false, false)
            .await?
        {
            lock.check()?;
            return Err(ApiError::Internal(format!(
                "final upload {} moved while it was being built",
                upload.id
            )));
        }
        let full = Upload {
            offset: total,
            ..locked
        };
        complete(state, tenant, &full).await?;
        lock.release().await?;
        Ok::<_, ApiError>(full)
    }
    .await;
    match built {
        Ok(full) => Ok(full),
        Err(e) => {
            // A refusal by check-head already terminated it; anything else leaves nothing behind.
            if !matches!(e, ApiError::Rejected { .. }) {
                terminate(state, &upload).await?;
            }
            Err(e)
        }
    }
}
