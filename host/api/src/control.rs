//! `mediahost.control.v1.Jobs` (`proto/control.proto`): what workers in other processes report
//! while they transcode. Progress is stored on the video (what `GET /v1/videos/{id}` shows)
//! and counted; outcomes are counted and logged, in the job's trace, since the worker stored
//! the outcome itself before reporting it (the job's acknowledgement waits on that write,
//! never on this process).

use mediahost_core::Progress;
use mediahost_grpc::Keys;
use mediahost_grpc::proto::control::jobs_server::{Jobs, JobsServer};
use mediahost_grpc::proto::control::{Outcome, OutcomeReport, ProgressReport, ReportReply};
use mediahost_store::Store;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// The Jobs service, behind the cluster-token check.
pub type JobsService = InterceptedService<JobsServer<JobReports>, Keys>;

/// Records worker reports in the metadata store.
pub struct JobReports {
    store: Store,
}

/// The Jobs service on `store`, accepting `cluster_token`.
pub fn jobs_service(store: Store, cluster_token: Option<&str>) -> JobsService {
    InterceptedService::new(
        JobsServer::new(JobReports { store }),
        Keys::new([cluster_token], mediahost_grpc::auth::CLUSTER_DISABLED),
    )
}

/// The store failed: the worker falls back to writing itself.
fn unavailable(e: mediahost_store::StoreError) -> Status {
    tracing::error!(error = %e, "could not record a worker report");
    Status::unavailable("the metadata store failed; try again")
}

impl JobReports {
    /// Whether the reported video exists (a report for a deleted one is accepted, not stored).
    async fn known(&self, video_id: &str) -> Result<bool, Status> {
        Ok(self
            .store
            .video_by_id(video_id)
            .await
            .map_err(unavailable)?
            .is_some())
    }
}

#[tonic::async_trait]
impl Jobs for JobReports {
    async fn report_progress(
        &self,
        request: Request<ProgressReport>,
    ) -> Result<Response<ReportReply>, Status> {
        let report = request.into_inner();
        // `contains` is false for NaN too.
        if !(0.0..=100.0).contains(&report.percent) || !(0.0..=f64::MAX).contains(&report.speed) {
            return Err(Status::invalid_argument(
                "percent must be within 0–100 and speed not negative",
            ));
        }
        let known = self.known(&report.video_id).await?;
        if known {
            let progress = Progress {
                percent: report.percent,
                speed: report.speed,
            };
            self.store
                .set_progress(&report.video_id, &progress)
                .await
                .map_err(unavailable)?;
        }
        metrics::counter!("mediahost_progress_reports_total", "via" => "grpc").increment(1);
        Ok(Response::new(ReportReply { known }))
    }

    async fn report_outcome(
        &self,
        request: Request<OutcomeReport>,
    ) -> Result<Response<ReportReply>, Status> {
        let report = request.into_inner();
        let outcome = match report.outcome() {
            Outcome::Ready => "ready",
            Outcome::Failed => "failed",
            Outcome::Unspecified => {
                return Err(Status::invalid_argument("outcome must be READY or FAILED"));
            }
        };
        let known = self.known(&report.video_id).await?;
        metrics::counter!("mediahost_job_outcome_reports_total", "outcome" => outcome).increment(1);
        tracing::info!(video = %report.video_id, outcome, reason = %report.reason, "worker reported a job outcome");
        Ok(Response::new(ReportReply { known }))
    }
}
