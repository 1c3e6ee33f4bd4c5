//! What every way of ingesting a source shares (`PUT /v1/videos/{id}/source` and tus):
//! running validator plugins and mapping their verdicts, and handing a stored source to the
//! transcode queue, with the upload metrics counted in one place.

use axum::http::StatusCode;
use mediahost_core::{Tenant, VideoStatus};
use mediahost_queue::{ROUTING_PRIORITY, TranscodeJob};
use mediahost_runtime::{PluginError, PluginHost, Verdict};

use crate::{ApiError, SharedState};

/// How much of the body validators see in `check-head` (magic-byte sniffing).
pub(crate) const HEAD_BYTES: usize = 64 * 1024;

/// Maps a validator chain's answer to the API's: a rejection carries the plugin's status
/// (4xx, else 422) and reason; a plugin failure fails closed with 503.
fn verdict_to_result(verdict: Result<Verdict, PluginError>) -> Result<(), ApiError> {
    match verdict {
        Ok(Verdict::Accept) => Ok(()),
        Ok(Verdict::Reject(r)) => Err(ApiError::Rejected {
            status: StatusCode::from_u16(r.status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            reason: r.reason,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "validator plugin failed; upload refused (fail-closed)");
            Err(ApiError::Unavailable(format!(
                "upload validation failed: {e}"
            )))
        }
    }
}

/// Runs a validator call off the async executor (plugin calls are synchronous and bounded by
/// their own time limits), counting refusals in `mediahost_uploads_total`.
pub(crate) async fn validate<F>(state: &SharedState, call: F) -> Result<(), ApiError>
where
    F: FnOnce(&PluginHost) -> Result<Verdict, PluginError> + Send + 'static,
{
    let plugins = state.plugins.clone();
    let verdict = tokio::task::spawn_blocking(move || call(&plugins))
        .await
        .map_err(|e| ApiError::Internal(format!("validator task panicked: {e}")))?;
    verdict_to_result(verdict).inspect_err(|e| {
        let outcome = match e {
            ApiError::Rejected { .. } => "rejected",
            _ => "validation_failed",
        };
        metrics::counter!("mediahost_uploads_total", "outcome" => outcome).increment(1);
    })
}

/// Records a source already in permanent storage (`size` bytes, hex `sha256`) on its video,
/// moving it to `queued`, and enqueues the transcode job. When the queue is down the video goes
/// back to `awaiting_upload` so the client can retry.
pub(crate) async fn queue_transcode(
    state: &SharedState,
    tenant: &Tenant,
    video_id: &str,
    size: u64,
    sha256: &str,
) -> Result<(), ApiError> {
    if !state.store.mark_uploaded(video_id, size, sha256).await? {
        return Err(ApiError::Conflict(format!(
            "video {video_id} received another source meanwhile"
        )));
    }
    // Routed (and so given its real priority) by the worker that leases it first.
    let job = TranscodeJob::new(&tenant.id, video_id);
    if let Err(e) = state.queue.enqueue(&job, ROUTING_PRIORITY).await {
        // Put the video back so the client can simply retry the upload.
        state
            .store
            .set_status(video_id, VideoStatus::AwaitingUpload)
            .await?;
        tracing::error!(error = %e, video = %video_id, "could not queue transcode job");
        return Err(ApiError::Unavailable(
            "the job queue is unavailable; retry the upload".into(),
        ));
    }
    metrics::counter!("mediahost_uploads_total", "outcome" => "stored").increment(1);
    metrics::counter!("mediahost_upload_bytes_total").increment(size);
    tracing::info!(tenant = %tenant.name, video = %video_id, size, %sha256, "source stored, job queued");
    Ok(())
}
