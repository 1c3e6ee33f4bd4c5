//! The gRPC control plane every mediahost process shares.
//!
//! - [`proto`]: the services and messages of `proto/*.proto` (generated here, once, for every
//!   crate: the edge serves `EdgeControl`, the api serves `Jobs`, workers and the api call them),
//!   and the descriptor set that [`Services`] answers reflection with.
//! - [`auth`]: the bearer check of the control services. Processes of one deployment share a
//!   secret, the cluster token (`[cluster] token`); every control call carries it and one
//!   interceptor checks it in constant time. Health and reflection need no token: they reveal
//!   nothing a port scan would not, and load balancers and `grpc_health_probe` hold no secret.
//! - [`trace`]: the request id across processes. Clients send the running task's W3C
//!   `traceparent` ([`mediahost_core::trace::current`]) as metadata; servers run each call in
//!   the continued trace, inside a span carrying `trace_id`. Both happen in one place
//!   ([`Outgoing`], [`TraceLayer`]) rather than in each call.
//! - [`node`]: `Node.Status`, served by every process for `mediahost cluster status`.
//! - [`Services`]: a process's gRPC endpoint: its control services plus `grpc.health.v1`
//!   (each service `SERVING` while the process's readiness checks pass, `NOT_SERVING` when a
//!   backend fails and from the moment shutdown starts) and `grpc.reflection.v1`.

pub mod auth;
pub mod client;
pub mod health;
pub mod node;
mod services;
pub mod trace;

pub use auth::{Keys, Outgoing};
pub use client::{BadUrl, ClientError, endpoint};
pub use services::{HEALTH, REFLECTION, Services, mount};
pub use trace::TraceLayer;

/// The generated code of `proto/`.
#[allow(missing_docs)] // generated; the .proto files document every item
pub mod proto {
    /// `mediahost.edge.v1`: purge and push on every edge.
    pub mod edge {
        tonic::include_proto!("mediahost.edge.v1");
    }
    /// `mediahost.control.v1`: what workers report to the api.
    pub mod control {
        tonic::include_proto!("mediahost.control.v1");
    }
    /// The encoded `FileDescriptorSet` of every file in `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
}
