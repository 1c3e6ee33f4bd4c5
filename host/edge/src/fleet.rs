//! The edges a deployment's api purges when a video is deleted: the edge running in the same
//! process (purged directly) and the edge processes named in `[[cluster.edges]]` (purged over
//! their gRPC control service with the cluster token, or the operator key where no cluster
//! token is set, as deployments made before the token had). Only the edges of the video's group are
//! asked: the router plugin placed the video there, so no other edge has cached it.
//!
//! A failed purge does not undo the delete: it is logged, counted
//! (`mediahost_edge_purge_failures_total`) and reported to the caller. Such an edge may go on
//! serving cached objects of the video until they leave its cache; signed URLs bound that, as
//! an edge never answers a URL past its `exp` from the cache.

use mediahost_core::config::EdgePeer;
use mediahost_grpc::{ClientError, Outgoing, endpoint};
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::Edge;
use crate::grpc::proto::edge_control_client::EdgeControlClient;
use crate::grpc::proto::{PurgeRequest, purge_request::Target};

/// How long a remote purge may take, connecting included.
const PURGE_TIMEOUT: Duration = Duration::from_secs(5);

/// One edge process of the deployment.
struct Peer {
    url: String,
    group: String,
    /// Connects on first use and reconnects as needed.
    channel: Channel,
}

/// The edges to purge.
#[derive(Clone, Default)]
pub struct Fleet {
    local: Option<Arc<Edge>>,
    peers: Arc<Vec<Peer>>,
    /// Adds the token and the running trace to every call.
    outgoing: Outgoing,
}

/// What one edge answered to a purge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PurgeOutcome {
    /// `local` for the edge in this process, else its configured URL.
    pub edge: String,
    /// Its group.
    pub group: String,
    /// Cached objects dropped, when the purge succeeded.
    pub purged: Option<u64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl Fleet {
    /// The edge in this process (if any) and the configured edge processes, purged with
    /// `cluster_token`, else `operator_key` (which those edges must accept).
    pub fn new(
        local: Option<Arc<Edge>>,
        peers: &[EdgePeer],
        cluster_token: Option<&str>,
        operator_key: Option<&str>,
    ) -> Result<Self, ClientError> {
        let outgoing = match cluster_token.filter(|t| !t.trim().is_empty()) {
            Some(token) => Outgoing::new(Some(token), "cluster.token")?,
            None => Outgoing::new(operator_key, "admin.operator_key")?,
        };
        let peers = peers
            .iter()
            .map(|peer| {
                let endpoint = endpoint(&peer.url, "[[cluster.edges]]", PURGE_TIMEOUT)?;
                Ok(Peer {
                    url: peer.url.clone(),
                    group: peer.group.clone(),
                    channel: endpoint.connect_lazy(),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            local,
            peers: Arc::new(peers),
            outgoing,
        })
    }

    /// Purges every cached object of `video_id` from each edge of `group`, all at once.
    pub async fn purge_video(&self, group: &str, video_id: &str) -> Vec<PurgeOutcome> {
        let mut outcomes = Vec::new();
        if let Some(edge) = self.local.as_ref().filter(|e| e.group == group) {
            let purged = edge.purge(&format!("/v1/videos/{video_id}/"));
            outcomes.push(PurgeOutcome {
                edge: "local".into(),
                group: group.to_owned(),
                purged: Some(purged as u64),
                error: None,
            });
        }
        let remote = self
            .peers
            .iter()
            .filter(|peer| peer.group == group)
            .map(|peer| self.purge_remote(peer, video_id));
        outcomes.extend(futures::future::join_all(remote).await);
        for failed in outcomes.iter().filter(|o| o.error.is_some()) {
            metrics::counter!("mediahost_edge_purge_failures_total").increment(1);
            tracing::error!(edge = %failed.edge, group, video = video_id, error = ?failed.error, "edge purge failed");
        }
        outcomes
    }

    async fn purge_remote(&self, peer: &Peer, video_id: &str) -> PurgeOutcome {
        let request = PurgeRequest {
            target: Some(Target::VideoId(video_id.to_owned())),
        };
        let mut client = EdgeControlClient::new(InterceptedService::new(
            peer.channel.clone(),
            self.outgoing.clone(),
        ));
        let result = client.purge(request).await;
        PurgeOutcome {
            edge: peer.url.clone(),
            group: peer.group.clone(),
            purged: result.as_ref().ok().map(|r| r.get_ref().purged),
            error: result
                .err()
                .map(|status| format!("{:?}: {}", status.code(), status.message())),
        }
    }
}
