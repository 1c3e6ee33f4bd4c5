//! The worker loop: lease a transcode job, run probe → route → transcode → store, settle the
//! job.
//!
//! Priority comes from the router plugin, which needs the probed source, so a fresh job is
//! queued at [`ROUTING_PRIORITY`] (every waiting video gets routed before the next transcode)
//! and the worker that routes it either transcodes at once (no other job waiting) or queues the
//! transcode again, plan included, at the plan's priority (see [`mediahost_queue::TranscodeJob`]).
//!
//! Outputs are stored while the transcode runs (see [`crate::Publish`]): segments as they
//! complete, `EVENT` media playlists over them, the master playlist once every rendition has
//! a segment (the video stays `processing` but lists its renditions, so clients can start
//! playing), and at the end the `VOD` playlists and the DASH manifest; then the video is
//! marked ready. Storing runs on a task of its own fed over a channel, so the encoder never
//! waits on storage; a storage failure stops the transcode and the job is retried.
//!
//! Delivery is at-least-once, so a job must be safe to run twice: outputs go to fixed keys
//! under the video's HLS prefix, which is cleared before the transcode starts (so an attempt
//! that died mid-way leaves nothing behind the next one does not replace), and a job for a
//! video that is already ready is settled without work. Failures are sorted in two: a permanent one (the input cannot be
//! transcoded) marks the video `failed` with the reason and settles the job, so bad input never
//! loops; a transient one (I/O, storage) is retried with backoff and, when out of attempts,
//! dead-lettered with the video marked `failed`. A failed video keeps no partial outputs. On shutdown a running transcode is stopped
//! between frames and its job released back to the queue without spending an attempt.

use mediahost_blob::Blobs;
use mediahost_core::config::TranscodeConfig;
use mediahost_core::video::keys;
use mediahost_core::{MediaInfo, Progress, Rendition, TraceParent, Video, VideoStatus};
use mediahost_queue::{
    JobPlan, JobQueue, LeasedJob, PlannedRendition, ROUTING_PRIORITY, RetryOutcome, TranscodeJob,
};
use mediahost_runtime::{ExtractInput, PluginHost, RouteInput};
use mediahost_store::Store;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::progress::{Reporter, in_current_trace};
use crate::push::Pusher;
use crate::upload::Uploader;
use crate::{Target, TranscodeError};

/// How a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// The input cannot be processed; retrying will not help.
    #[error("{0}")]
    Permanent(String),
    /// Something around the input failed; a later attempt may succeed.
    #[error("{0}")]
    Transient(String),
    /// The worker is shutting down; the job goes back to the queue for another worker.
    #[error("interrupted by shutdown")]
    Interrupted,
}

impl From<TranscodeError> for JobError {
    fn from(e: TranscodeError) -> Self {
        if matches!(e, TranscodeError::Cancelled) {
            Self::Interrupted
        } else if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::Transient(e.to_string())
        }
    }
}

macro_rules! transient_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JobError {
            fn from(e: $t) -> Self {
                Self::Transient(e.to_string())
            }
        }
    )*};
}
transient_from!(
    mediahost_blob::BlobError,
    mediahost_store::StoreError,
    mediahost_queue::QueueError,
    tokio::task::JoinError
);

/// How an attempt that did not fail ended.
enum Done {
    /// The outputs are stored (or there was nothing to do: the video is ready or gone).
    Finished,
    /// Routed while other jobs waited: the transcode went back to the queue at the plan's
    /// priority, as a job of its own.
    Deferred,
}

/// One job-processing loop; run several for concurrency.
pub struct Worker {
    store: Store,
    queue: Arc<dyn JobQueue>,
    blobs: Blobs,
    /// Metadata-extractor and router plugins run on every probed source.
    plugins: PluginHost,
    config: TranscodeConfig,
    /// How long to sleep between polls when the queue is empty and nothing wakes us.
    idle_poll: Duration,
    /// How often the lease of a running job is renewed (well inside the lease length).
    renew_every: Duration,
    /// Where progress and outcomes are reported (the store unless set with
    /// [`Worker::with_reporter`]).
    reporter: Reporter,
    /// Push-mode edges, sent each media file as it is stored (none unless set with
    /// [`Worker::with_pusher`]).
    pusher: Pusher,
}

/// A plugin failure that reached the worker: its binding is fail-closed (fail-open failures
/// are skipped and counted by the runtime), so the job fails for good with the plugin's error,
/// which names plugin, world, tenant, cause and budget.
fn fail_closed(video_id: &str, error: &mediahost_runtime::PluginError) -> JobError {
    tracing::warn!(video = %video_id, %error, "plugin failed (fail-closed); the job fails");
    JobError::Permanent(error.to_string())
}

/// How much of the source metadata extractors see (magic bytes, container headers).
const HEAD_BYTES: u64 = 64 * 1024;

impl Worker {
    /// A worker on these backends. `lease` is the queue's lease length.
    pub fn new(
        store: Store,
        queue: Arc<dyn JobQueue>,
        blobs: Blobs,
        plugins: PluginHost,
        config: TranscodeConfig,
        idle_poll: Duration,
        lease: Duration,
    ) -> Self {
        Self {
            reporter: Reporter::to_store(store.clone()),
            pusher: Pusher::default(),
            store,
            queue,
            blobs,
            plugins,
            config,
            idle_poll,
            renew_every: (lease / 3).max(Duration::from_millis(100)),
        }
    }

    /// Reports progress and outcomes through `reporter` (e.g. to the api over gRPC).
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Pushes each stored media file to the push-mode edges of the video's group.
    pub fn with_pusher(mut self, pusher: Pusher) -> Self {
        self.pusher = pusher;
        self
    }

    /// Processes jobs until `shutdown` is cancelled; a job running then is stopped and handed
    /// back to the queue, so shutdown never waits for a long transcode.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.queue.lease().await {
                Ok(Some(job)) => self.handle(job, &shutdown).await,
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.queue.wait(self.idle_poll) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot lease from the job queue; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(self.idle_poll) => {}
                    }
                }
            }
        }
    }

    /// Runs one job in the trace of the request that stored its source (a new trace for jobs
    /// queued without one), so every line it logs carries that request's id.
    async fn handle(&self, job: LeasedJob, shutdown: &CancellationToken) {
        let trace = TraceParent::continue_from(job.job.traceparent.as_deref());
        let span = tracing::info_span!("job", trace_id = %trace.trace_id());
        trace
            .scope(self.run_job(job, shutdown))
            .instrument(span)
            .await
    }

    async fn run_job(&self, job: LeasedJob, shutdown: &CancellationToken) {
        let started = Instant::now();
        let video_id = job.job.video_id.clone();
        tracing::info!(video = %video_id, job = job.id, attempt = job.attempt, "job started");

        let renewer = {
            let queue = self.queue.clone();
            let job = job.clone();
            let every = self.renew_every;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = queue.renew(&job).await {
                        tracing::warn!(job = job.id, error = %e, "lease renewal failed");
                    }
                }
            })
        };
        let result = if job.attempt > job.max_attempts {
            // Each earlier attempt died without settling (e.g. the worker crashed on it).
            Err(JobError::Transient(format!(
                "{} earlier attempts ended without finishing",
                job.attempt - 1
            )))
        } else {
            self.process(&job, shutdown).await
        };
        renewer.abort();

        let outcome = match self.settle(&job, result).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(video = %video_id, job = job.id, error = %e, "could not settle job; it will be redelivered");
                "unsettled"
            }
        };
        self.reporter.outcome(&video_id, outcome).await;
        let seconds = started.elapsed().as_secs_f64();
        metrics::counter!("mediahost_jobs_total", "outcome" => outcome).increment(1);
        metrics::histogram!("mediahost_job_duration_seconds", "outcome" => outcome).record(seconds);
        tracing::info!(video = %video_id, job = job.id, outcome, seconds, "job finished");
    }

    /// Records the result on the video and the queue; returns the outcome label for metrics.
    async fn settle(
        &self,
        job: &LeasedJob,
        result: Result<Done, JobError>,
    ) -> Result<&'static str, JobError> {
        let video_id = &job.job.video_id;
        match result {
            Ok(done) => {
                self.queue
                    .complete(job)
                    .await
                    .map_err(|e| JobError::Transient(e.to_string()))?;
                Ok(match done {
                    Done::Finished => "ready",
                    Done::Deferred => "deferred",
                })
            }
            Err(JobError::Permanent(reason)) => {
                tracing::info!(video = %video_id, %reason, "input cannot be transcoded");
                self.discard_outputs(job).await;
                self.store.set_failed(video_id, &reason).await?;
                self.queue
                    .complete(job)
                    .await
                    .map_err(|e| JobError::Transient(e.to_string()))?;
                Ok("failed")
            }
            Err(JobError::Interrupted) => {
                self.queue
                    .release(job)
                    .await
                    .map_err(|e| JobError::Transient(e.to_string()))?;
                self.store.set_status(video_id, VideoStatus::Queued).await?;
                Ok("released")
            }
            Err(JobError::Transient(error)) => {
                let outcome = self
                    .queue
                    .retry(job, &error)
                    .await
                    .map_err(|e| JobError::Transient(e.to_string()))?;
                match outcome {
                    RetryOutcome::Retrying(after) => {
                        tracing::warn!(video = %video_id, %error, retry_in_s = after.as_secs(), "job failed; will retry");
                        self.store.set_status(video_id, VideoStatus::Queued).await?;
                        Ok("retried")
                    }
                    RetryOutcome::DeadLettered => {
                        let reason =
                            format!("processing failed after {} attempts: {error}", job.attempt);
                        tracing::error!(video = %video_id, %reason, "job dead-lettered");
                        self.discard_outputs(job).await;
                        self.store.set_failed(video_id, &reason).await?;
                        Ok("dead_lettered")
                    }
                }
            }
        }
    }

    /// Removes what an attempt stored before failing for good, so a failed video serves no
    /// half-made playlists. Best effort: a leftover is logged, and replaced if the video is
    /// ever transcoded again.
    async fn discard_outputs(&self, job: &LeasedJob) {
        let prefix = hls_prefix(&job.job.tenant_id, &job.job.video_id);
        if let Err(e) = self.blobs.delete_prefix(&prefix).await {
            tracing::warn!(video = %job.job.video_id, error = %e, "could not remove the outputs of a failed job");
        }
    }

    async fn process(
        &self,
        job: &LeasedJob,
        shutdown: &CancellationToken,
    ) -> Result<Done, JobError> {
        let (tenant_id, video_id) = (&job.job.tenant_id, &job.job.video_id);
        let Some(mut video) = self.store.video_by_id(video_id).await? else {
            tracing::info!(video = %video_id, "video was deleted; nothing to do");
            return Ok(Done::Finished);
        };
        if video.status == VideoStatus::Ready {
            return Ok(Done::Finished);
        }
        self.store
            .set_status(video_id, VideoStatus::Processing)
            .await?;

        let work = self.blobs.temp_workdir()?;
        let source = work.path().join("source");
        self.blobs
            .fetch_for_reading(&keys::source(tenant_id, video_id), &source)
            .await?;

        let probe_path = source.clone();
        let info = tokio::task::spawn_blocking(move || crate::probe(&probe_path)).await??;
        self.store.set_source_info(video_id, &info).await?;
        let plan = match &job.job.plan {
            Some(plan) => plan.clone(),
            None => {
                let metadata = self.extract_metadata(&video, &info, &source).await?;
                let plan = self.route(&mut video, &info, &metadata).await?;
                // Jobs are waiting, some perhaps more urgent than this one: the transcode
                // queues at its own priority. With none waiting it runs now, saving a download.
                if self.queue.depth().await? > 0 {
                    let transcode = TranscodeJob {
                        plan: Some(plan.clone()),
                        ..job.job.clone()
                    };
                    self.queue.enqueue(&transcode, plan.priority).await?;
                    self.store.set_status(video_id, VideoStatus::Queued).await?;
                    tracing::info!(video = %video_id, priority = plan.priority, "routed; transcode queued at its priority");
                    return Ok(Done::Deferred);
                }
                plan
            }
        };
        let ladder: Vec<Target> = plan.renditions.into_iter().map(Target::from).collect();

        let out = work.path().join("hls");
        std::fs::create_dir_all(&out).map_err(|e| JobError::Transient(e.to_string()))?;
        // What an earlier attempt stored goes first: this one publishes from scratch.
        let prefix = hls_prefix(tenant_id, video_id);
        self.blobs.delete_prefix(&prefix).await?;
        let uploader = Uploader {
            blobs: self.blobs.clone(),
            store: self.store.clone(),
            video_id: video_id.clone(),
            out_dir: out.clone(),
            prefix,
            push: self
                .pusher
                .pushes_to(&video.edge_group)
                .then(|| (self.pusher.clone(), video.edge_group.clone())),
            stored_at: job
                .job
                .stored_at_ms
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        };
        let (renditions, bytes) = self
            .transcode(
                video_id,
                &source,
                &out,
                &ladder,
                info.duration_s,
                uploader,
                shutdown,
            )
            .await?;
        metrics::counter!("mediahost_rendition_bytes_total").increment(bytes);
        self.store.set_ready(video_id, &renditions).await?;
        // Deleted while it was being transcoded: the delete removed what existed then, so
        // what this job stored since is removed here.
        if self.store.video_by_id(video_id).await?.is_none() {
            tracing::info!(video = %video_id, "video deleted during its transcode; outputs removed");
            self.blobs
                .delete_prefix(&keys::video_prefix(tenant_id, video_id))
                .await?;
        }
        Ok(Done::Finished)
    }

    /// Runs the metadata-extractor plugins bound for the video's tenant, stores what they
    /// return and returns the video's metadata for the router. The world's default policy is
    /// fail-open (the runtime skips a failing extractor, because losing a video to a metadata
    /// bug would be worse than missing keys); a fail-closed binding fails the job.
    async fn extract_metadata(
        &self,
        video: &Video,
        info: &MediaInfo,
        source: &Path,
    ) -> Result<BTreeMap<String, String>, JobError> {
        let mut head = Vec::with_capacity(HEAD_BYTES as usize);
        tokio::fs::File::open(source)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?
            .take(HEAD_BYTES)
            .read_to_end(&mut head)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?;
        let input = ExtractInput {
            tenant: video.tenant_id.clone(),
            video_id: video.id.clone(),
            media: info.into(),
            head,
            user_metadata: vec![("title".into(), video.title.clone())],
        };
        let plugins = self.plugins.clone();
        let mut metadata = BTreeMap::from([("title".to_owned(), video.title.clone())]);
        let pairs = tokio::task::spawn_blocking(move || plugins.extract_metadata(&input))
            .await?
            .map_err(|e| fail_closed(&video.id, &e))?;
        let extracted = pairs.into_iter().collect();
        self.store.set_metadata(&video.id, &extracted).await?;
        metadata.extend(extracted);
        Ok(metadata)
    }

    /// Asks the routers bound for the video's tenant for the plan: its rendition ladder (empty
    /// means the built-in one) and the transcode's priority (0 without a router, and always
    /// below [`ROUTING_PRIORITY`]). A failing router is skipped under the world's default
    /// (fail-open), leaving the built-in plan; a fail-closed binding fails the job.
    async fn route(
        &self,
        video: &mut Video,
        info: &MediaInfo,
        metadata: &BTreeMap<String, String>,
    ) -> Result<JobPlan, JobError> {
        let input = RouteInput {
            tenant: video.tenant_id.clone(),
            video_id: video.id.clone(),
            media: info.into(),
            metadata: metadata.clone().into_iter().collect(),
        };
        let plugins = self.plugins.clone();
        let plan = match tokio::task::spawn_blocking(move || plugins.route(&input))
            .await?
            .map_err(|e| fail_closed(&video.id, &e))?
        {
            Some(plan) => plan,
            None => {
                return Ok(JobPlan {
                    priority: 0,
                    renditions: Vec::new(),
                });
            }
        };
        tracing::info!(
            video = %video.id,
            rungs = plan.renditions.len(),
            priority = plan.priority,
            storage_class = %plan.storage_class,
            edge_group = %plan.edge_group,
            "router planned the renditions"
        );
        self.store
            .set_edge_group(&video.id, &plan.edge_group)
            .await?;
        video.edge_group = plan.edge_group;
        Ok(JobPlan {
            priority: plan.priority.min(ROUTING_PRIORITY - 1),
            renditions: plan
                .renditions
                .into_iter()
                .map(|r| PlannedRendition {
                    name: r.name,
                    width: r.width,
                    height: r.height,
                    max_video_kbps: Some(r.video_bitrate),
                })
                .collect(),
        })
    }

    /// Transcodes `source` into `out` on a blocking thread while `uploader` stores what it
    /// announces; returns the renditions and the bytes stored once both are done. Shutdown
    /// and a storage failure both stop the transcode between frames.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    async fn transcode(
        &self,
        video_id: &str,
        source: &Path,
        out: &Path,
        ladder: &[Target],
        duration_s: Option<f64>,
        uploader: Uploader,
        shutdown: &CancellationToken,
    ) -> Result<(Vec<Rendition>, u64), JobError> {
        let (source, out, config) = (source.to_owned(), out.to_owned(), self.config.clone());
        let ladder = ladder.to_vec();
        let video = video_id.to_owned();
        // Cancelled on shutdown, or by the uploader when storing fails.
        let stop = shutdown.child_token();
        let (announce, announced) = tokio::sync::mpsc::unbounded_channel();
        let upload = AbortOnDropHandle::new(tokio::spawn({
            let stop = stop.clone();
            in_current_trace(
                async move {
                    let stored = uploader.run(announced).await;
                    if stored.is_err() {
                        stop.cancel();
                    }
                    stored
                }
                .in_current_span(),
            )
        }));
        let started = Instant::now();
        // The encoder thread only publishes the latest fraction; this task reports it (see
        // `progress`) at most once a second, so progress costs the encode nothing.
        let (report, mut latest) = tokio::sync::watch::channel(0.0f64);
        let recorder = {
            let (reporter, video) = (self.reporter.clone(), video_id.to_owned());
            tokio::spawn(in_current_trace(async move {
                let _running = reporter.running();
                while latest.changed().await.is_ok() {
                    let fraction = *latest.borrow_and_update();
                    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
                    let progress = Progress {
                        percent: (fraction * 1000.0).round() / 10.0,
                        speed: duration_s
                            .map_or(0.0, |d| (fraction * d / elapsed * 100.0).round() / 100.0),
                    };
                    reporter.progress(&video, &progress).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }))
        };
        // The encoder thread logs in the job's span too.
        let span = tracing::Span::current();
        let renditions = tokio::task::spawn_blocking(move || {
            let _in_job = span.enter();
            let mut last_logged = 0.0;
            let mut progress = |fraction: f64| {
                report.send_replace(fraction);
                if fraction - last_logged >= 0.25 {
                    last_logged = fraction;
                    tracing::info!(video = %video, percent = (fraction * 100.0).round(), "transcoding");
                }
                if stop.is_cancelled() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            // A send fails only once the uploader has given up, which also stops the transcode.
            let mut publish = |announcement| {
                let _ = announce.send(announcement);
            };
            crate::transcode_hls(&source, &out, &config, &ladder, &mut progress, &mut publish)
        })
        .await;
        // The sender went away with the encoder thread; let the recorder write the final value.
        let _ = recorder.await;
        let renditions = match renditions? {
            Ok(renditions) => renditions,
            // Stopped by the uploader: its error is the reason.
            Err(TranscodeError::Cancelled) if !shutdown.is_cancelled() => {
                upload.await??;
                return Err(JobError::Transient(
                    "the transcode stopped while its outputs were being stored".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        // The channel is closed: the uploader finishes what was announced and returns.
        let bytes = upload.await??;
        if let Some(d) = duration_s {
            metrics::histogram!("mediahost_transcode_realtime_factor")
                .record(d / started.elapsed().as_secs_f64().max(1e-3));
        }
        Ok((renditions, bytes))
    }
}

/// Object key of a video's HLS root, without the trailing slash.
fn hls_prefix(tenant_id: &str, video_id: &str) -> String {
    keys::hls(tenant_id, video_id, "")
        .trim_end_matches('/')
        .to_owned()
}
