//! `mediahost.control.v1.Node`: every process answers `Status` with what the process that
//! composes the roles reports (the figures live in the roles; this is only the service).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::Keys;
use crate::proto::control::node_server::{Node, NodeServer};
use crate::proto::control::{StatusReply, StatusRequest};

/// Gathers a process's status on each call.
pub type StatusSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = StatusReply> + Send>> + Send + Sync>;

/// The Node service, behind the cluster-token check.
pub type NodeService = InterceptedService<NodeServer<NodeStatus>, Keys>;

/// Answers `Status` from a [`StatusSource`].
pub struct NodeStatus {
    source: StatusSource,
}

/// The Node service answering from `source`, accepting `cluster_token`.
pub fn node_service(source: StatusSource, cluster_token: Option<&str>) -> NodeService {
    InterceptedService::new(
        NodeServer::new(NodeStatus { source }),
        Keys::new([cluster_token], crate::auth::CLUSTER_DISABLED),
    )
}

#[tonic::async_trait]
impl Node for NodeStatus {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new((self.source)().await))
    }
}
