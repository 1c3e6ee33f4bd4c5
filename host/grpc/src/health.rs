//! `grpc.health.v1` status from the process's readiness: every served service (and the
//! server as a whole, the empty name) is `SERVING` while every backend check of `/readyz`
//! passes, `NOT_SERVING` while one fails, and `NOT_SERVING` for good once shutdown starts, so
//! a balancer stops sending calls while in-flight ones finish.

use mediahost_core::Readiness;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

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
