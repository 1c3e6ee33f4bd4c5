//! `grpc.health.v1` status from the process's readiness: every served service (and the
//! server as a whole, the empty name) is `SERVING` while every backend check of `/readyz`
//! passes, `NOT_SERVING` while one fails, and `NOT_SERVING` for good once shutdown starts, so
//! a balancer stops sending calls while in-flight ones finish; `Watch` streams end there.

use futures::{Stream, StreamExt};
use mediahost_core::Readiness;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// How often the backends are asked again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Keeps `reporter`'s status of `services` (and of the server, `""`) in step with `readiness`
/// until `shutdown`, then turns them all `NOT_SERVING`.
pub async fn follow_readiness(
    reporter: HealthReporter,
    readiness: Readiness,
    services: Vec<&'static str>,
    shutdown: CancellationToken,
) {
    let set = |status: ServingStatus| {
        let reporter = reporter.clone();
        let services = services.clone();
        async move {
            for service in std::iter::once("").chain(services) {
                reporter.set_service_status(service, status).await;
            }
        }
    };
    loop {
        let status = tokio::select! {
            _ = shutdown.cancelled() => break,
            report = readiness.report() => if report.ready {
                ServingStatus::Serving
            } else {
                tracing::warn!(failing = %report.body["failing"], "gRPC health: NOT_SERVING");
                ServingStatus::NotServing
            },
        };
        set(status).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
    set(ServingStatus::NotServing).await;
}

/// The health service over `reporter`'s statuses, whose `Watch` streams end at `shutdown`
/// with a last `NOT_SERVING`. Left open, a watcher (a balancer, `grpc_health_probe -watch`)
/// would hold its connection, and so the process, until the shutdown grace period ran out.
pub fn service(reporter: HealthReporter, shutdown: CancellationToken) -> HealthServer<EndingWatch> {
    HealthServer::new(EndingWatch {
        inner: HealthService::from_health_reporter(reporter),
        shutdown,
    })
}

/// [`HealthService`] with `Watch` streams that end at shutdown.
pub struct EndingWatch {
    inner: HealthService,
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl Health for EndingWatch {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let shutdown = self.shutdown.clone();
        let last = HealthCheckResponse {
            status: WireStatus::NotServing as i32,
        };
        let ending = statuses
            .take_until(async move { shutdown.cancelled().await })
            .chain(futures::stream::once(async move { Ok(last) }));
        Ok(Response::new(Box::pin(ending)))
    }
}
