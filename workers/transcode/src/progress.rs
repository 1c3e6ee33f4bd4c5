//! Where a worker's progress and job outcomes go.
//!
//! With `[cluster] api_urls` set (workers in their own processes), progress is reported to the
//! api over gRPC (`mediahost.control.v1.Jobs`, balanced across the api processes), which
//! stores and counts it: the api is the one place that watches jobs live. Without (the api in
//! this same process, or none configured), it is written straight into the metadata store: a
//! loopback call would only add a hop and require a token for a single-process deployment.
//!
//! A report never decides a job. The worker stores the outcome itself before the job is
//! acknowledged (the ack-after-outputs-stored guarantee does not depend on the api), and a
//! progress report that fails over gRPC is written to the store directly instead, so a dead
//! api costs nothing but a log line and `mediahost_progress_report_failures_total`.

use mediahost_core::Progress;
use mediahost_grpc::proto::control::jobs_client::JobsClient;
use mediahost_grpc::proto::control::{Outcome, OutcomeReport, ProgressReport};
use mediahost_grpc::{Outgoing, endpoint};
use mediahost_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How long one report may take, connecting included: the encoder never waits on it, but
/// the job's end waits for the last one.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where progress and outcomes go; cheap to clone (one per worker loop).
#[derive(Clone)]
pub struct Reporter {
    /// Progress lands here when there is no api to report to, or reporting failed.
    store: Store,
    /// The api processes, when configured.
    api: Option<JobsClient<InterceptedService<Channel, Outgoing>>>,
    /// Transcodes running now in this process (shared by its worker loops), for `Node.Status`.
    running: Arc<AtomicU64>,
}

impl Reporter {
    /// Writes progress straight into `store`.
    pub fn to_store(store: Store) -> Self {
        Self {
            store,
            api: None,
            running: Arc::default(),
        }
    }

    /// Reports to the api processes at `urls` over gRPC with `token` (falling back on
    /// `store`); straight into `store` when `urls` is empty.
    pub fn new(
        store: Store,
        urls: &[String],
        token: Option<&str>,
    ) -> Result<Self, mediahost_grpc::ClientError> {
        if urls.is_empty() {
            return Ok(Self::to_store(store));
        }
        let endpoints = urls
            .iter()
            .map(|url| endpoint(url, "cluster.api_urls", REPORT_TIMEOUT))
            .collect::<Result<Vec<_>, _>>()?;
        let channel = Channel::balance_list(endpoints.into_iter());
        let outgoing = Outgoing::new(token, "cluster.token")?;
        let api = JobsClient::new(InterceptedService::new(channel, outgoing));
        Ok(Self {
            store,
            api: Some(api),
            running: Arc::default(),
        })
    }

    /// Counts a running transcode in `mediahost_transcode_jobs_running` until the returned
    /// guard drops.
    pub fn running(&self) -> Running {
        metrics::gauge!("mediahost_transcode_jobs_running").increment(1.0);
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self.running.clone())
    }

    /// Transcodes running now in this process.
    pub fn jobs_running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Records the latest progress of `video`.
    pub async fn progress(&self, video: &str, progress: &Progress) {
        if let Some(api) = &self.api {
            let report = ProgressReport {
                video_id: video.to_owned(),
                percent: progress.percent,
                speed: progress.speed,
            };
            match api.clone().report_progress(report).await {
                Ok(_) => return,
                Err(status) => {
                    metrics::counter!("mediahost_progress_report_failures_total").increment(1);
                    tracing::warn!(%video, code = ?status.code(), error = status.message(), "progress report to the api failed; storing it directly");
                }
            }
        }
        metrics::counter!("mediahost_progress_reports_total", "via" => "store").increment(1);
        if let Err(e) = self.store.set_progress(video, progress).await {
            tracing::warn!(%video, error = %e, "could not record progress");
        }
    }

    /// Tells the api how the job of `video` ended (`outcome`, the worker's metric label), once
    /// the worker has stored it; nothing for jobs that did not end (released, retried,
    /// deferred) or without an api.
    pub async fn outcome(&self, video: &str, outcome: &str) {
        let (Some(api), Some(kind)) = (&self.api, outcome_kind(outcome)) else {
            return;
        };
        let reason = match kind {
            Outcome::Failed => self
                .store
                .video_by_id(video)
                .await
                .ok()
                .flatten()
                .and_then(|v| v.error)
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut report = OutcomeReport {
            video_id: video.to_owned(),
            reason,
            ..Default::default()
        };
        report.set_outcome(kind);
        if let Err(status) = api.clone().report_outcome(report).await {
            metrics::counter!("mediahost_progress_report_failures_total").increment(1);
            tracing::warn!(%video, code = ?status.code(), error = status.message(), "outcome report to the api failed (the outcome is stored)");
        }
    }
}

/// The reported outcome of a job that ended with the worker's `outcome` label.
fn outcome_kind(outcome: &str) -> Option<Outcome> {
    match outcome {
        "ready" => Some(Outcome::Ready),
        "failed" | "dead_lettered" => Some(Outcome::Failed),
        _ => None,
    }
}

/// A transcode counted in `mediahost_transcode_jobs_running`.
pub struct Running(Arc<AtomicU64>);

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!("mediahost_transcode_jobs_running").decrement(1.0);
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `work` in the trace of the task calling this, so a task spawned for it reports in the
/// job's trace (task-local context does not follow `tokio::spawn` by itself).
pub fn in_current_trace<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    let trace = mediahost_core::trace::current();
    async move {
        match trace {
            Some(trace) => trace.scope(work).await,
            None => work.await,
        }
    }
}
