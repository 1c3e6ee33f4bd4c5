//! Stores a running transcode's outputs as they are announced ([`Publish`]), off the encoder
//! thread.
//!
//! The encoder sends announcements into an unbounded channel and never waits on storage (they
//! are small: names and playlist texts; the bytes stay in files). This task takes whatever has
//! piled up as one batch and stores, in this order: the batch's files, a few at a time; the
//! latest text of each manifest announced in the batch, in the order they were first announced
//! (so the master playlist follows the media playlists it names, and an `EVENT` playlist that
//! changed three times while storage was slow is stored once); then playability, recorded on
//! the video. Every manifest names only files announced before it, so every stored playlist
//! names only stored files.

use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use mediahost_blob::Blobs;
use mediahost_core::Rendition;
use mediahost_store::Store;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Publish;
use crate::push::Pusher;
use crate::worker::JobError;

/// How many files of a batch are stored at once: enough to hide an S3 round trip, few enough
/// not to flood the store after a stall.
const PARALLEL_PUTS: usize = 8;

/// Where one transcode's outputs go.
pub(crate) struct Uploader {
    pub blobs: Blobs,
    /// Records the renditions once playable.
    pub store: Store,
    pub video_id: String,
    /// The transcode's output folder, which announced files are relative to.
    pub out_dir: PathBuf,
    /// Object key of the video's HLS root (no trailing slash).
    pub prefix: String,
    /// Where stored media files are pushed, with the video's edge group, when that group
    /// has push-mode edges.
    pub push: Option<(Pusher, String)>,
    /// When the source was stored (the upload completed), for
    /// `mediahost_time_to_first_segment_seconds`; unknown for jobs queued by older versions.
    pub stored_at: Option<SystemTime>,
}

impl Uploader {
    /// Stores announcements until the transcode drops its sender; returns the bytes of the
    /// files stored. Stops at the first storage failure (the caller then stops the transcode).
    pub async fn run(self, mut announced: UnboundedReceiver<Publish>) -> Result<u64, JobError> {
        let mut bytes = 0;
        while let Some(first) = announced.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = announced.try_recv() {
                batch.push(more);
            }
            bytes += self.store_batch(batch).await?;
        }
        Ok(bytes)
    }

    async fn store_batch(&self, batch: Vec<Publish>) -> Result<u64, JobError> {
        let mut files = Vec::new();
        let mut manifests: Vec<(String, String)> = Vec::new();
        let mut playable: Option<Vec<Rendition>> = None;
        for announcement in batch {
            match announcement {
                Publish::File(path) => files.push(path),
                Publish::Manifest { path, text } => {
                    match manifests.iter_mut().find(|(p, _)| *p == path) {
                        Some(entry) => entry.1 = text,
                        None => manifests.push((path, text)),
                    }
                }
                Publish::Playable(renditions) => playable = Some(renditions),
            }
        }
        let mut bytes = 0;
        for chunk in files.chunks(PARALLEL_PUTS) {
            let sizes = futures::future::try_join_all(chunk.iter().map(|f| self.put_file(f)));
            bytes += sizes.await?.into_iter().sum::<u64>();
        }
        for (path, text) in manifests {
            self.blobs
                .put_bytes(&self.key(&path), Bytes::from(text))
                .await?;
        }
        if let Some(renditions) = playable {
            self.store
                .set_renditions(&self.video_id, &renditions)
                .await?;
            let waited = self
                .stored_at
                .and_then(|at| SystemTime::now().duration_since(at).ok());
            if let Some(waited) = waited {
                metrics::histogram!("mediahost_time_to_first_segment_seconds")
                    .record(waited.as_secs_f64());
            }
            tracing::info!(video = %self.video_id, seconds_since_upload = waited.map(|w| w.as_secs_f64()), "first segments stored; playback can start");
        }
        Ok(bytes)
    }

    /// Stores the output file at `path` (hard-linked on local storage: a segment never changes
    /// once complete); returns its size.
    async fn put_file(&self, path: &str) -> Result<u64, JobError> {
        let local = self.out_dir.join(path);
        let size = tokio::fs::metadata(&local)
            .await
            .map_err(|e| JobError::Transient(format!("{}: {e}", local.display())))?
            .len();
        self.blobs
            .put_finished_file(&self.key(path), &local)
            .await?;
        if let Some((pusher, group)) = &self.push {
            // Read back from the local copy the store was given: pushing is best-effort, so
            // an unreadable file only goes unpushed.
            match tokio::fs::read(&local).await {
                Ok(body) => {
                    let url_path = format!("/v1/videos/{}/hls/{path}", self.video_id);
                    pusher.push(group, url_path, body.into());
                }
                Err(e) => {
                    tracing::warn!(file = %local.display(), error = %e, "cannot read a stored file to push it")
                }
            }
        }
        Ok(size)
    }

    fn key(&self, path: &str) -> String {
        format!("{}/{path}", self.prefix)
    }
}
