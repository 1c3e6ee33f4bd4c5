//! A process's gRPC endpoint: its control services, health and reflection, with every call
//! traced ([`crate::TraceLayer`]).

use mediahost_core::Readiness;
use std::convert::Infallible;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::{TraceLayer, health};

/// The gRPC services one process serves.
pub struct Services {
    /// The control services added so far (health and reflection join in [`Services::build`]).
    routes: Routes,
    /// Their names: each gets a health status.
    names: Vec<&'static str>,
}

impl Default for Services {
    fn default() -> Self {
        Self::new()
    }
}

impl Services {
    /// No control service yet.
    pub fn new() -> Self {
        Self {
            routes: Routes::default(),
            names: Vec::new(),
        }
    }

    /// Adds a control service (already wrapped in its [`crate::Keys`] interceptor).
    pub fn with<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Every service with health (following `readiness` in a task of its own until
    /// `shutdown`) and reflection added, as a router of their paths
    /// (`/<package.Service>/<rpc>`), plus the names of all the services it serves.
    pub fn build(
        self,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> (axum::Router, Vec<&'static str>) {
        let mut names = self.names;
        names.extend([HEALTH, REFLECTION]);
        let reporter = tonic_health::server::HealthReporter::new();
        let health_server = health::service(reporter.clone(), shutdown.clone());
        tokio::spawn(health::follow_readiness(
            reporter,
            readiness,
            names.clone(),
            shutdown,
        ));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            // The descriptor sets are compiled in (ours by build.rs, protox-checked): a bad one
            // is a build defect, not a runtime condition.
            .expect("the compiled-in descriptor sets are valid");
        let routes = self
            .routes
            .add_service(health_server)
            .add_service(reflection);
        (routes.into_axum_router().layer(TraceLayer), names)
    }
}

/// The health service's name.
pub const HEALTH: &str = "grpc.health.v1.Health";
/// The reflection service's name (v1).
pub const REFLECTION: &str = "grpc.reflection.v1.ServerReflection";

/// `router` with the gRPC `services` (their router and names from [`Services::build`]) routed
/// in by path: a listener that also serves HTTP keeps its own fallback (merging routers would
/// bring a second one).
pub fn mount(router: axum::Router, grpc: axum::Router, names: &[&'static str]) -> axum::Router {
    // Wrapped: axum refuses a `Router` as a route's service (it would have it nested, which
    // strips the path prefix that gRPC routing needs).
    let grpc = tower::ServiceExt::map_request(grpc, |request: axum::extract::Request| request);
    names.iter().fold(router, |router, name| {
        router.route_service(&format!("/{name}/{{*rest}}"), grpc.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    /// Asks `router` (in process, no socket) for the server's health until it answers
    /// `wanted`; the status changes within one [`health::REFRESH`].
    async fn wait_for(router: &axum::Router, wanted: ServingStatus) {
        for _ in 0..100 {
            let mut client = HealthClient::new(router.clone());
            let status = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status())
                .ok();
            if status == Some(wanted) {
                return;
            }
            tokio::time::sleep(health::REFRESH / 10).await;
        }
        panic!("health never became {wanted:?}");
    }

    #[tokio::test]
    async fn health_follows_readiness_and_goes_not_serving_at_shutdown() {
        let up = Arc::new(AtomicBool::new(true));
        let check = up.clone();
        let readiness = Readiness::default().with_check("database", move || {
            let up = check.load(Ordering::SeqCst);
            async move { if up { Ok(()) } else { Err("down".into()) } }
        });
        let shutdown = CancellationToken::new();
        let (router, names) = Services::new().build(readiness, shutdown.clone());
        assert_eq!(names, [HEALTH, REFLECTION]);
        wait_for(&router, ServingStatus::Serving).await;
        up.store(false, Ordering::SeqCst);
        wait_for(&router, ServingStatus::NotServing).await;
        up.store(true, Ordering::SeqCst);
        wait_for(&router, ServingStatus::Serving).await;
        shutdown.cancel();
        wait_for(&router, ServingStatus::NotServing).await;
    }
}
