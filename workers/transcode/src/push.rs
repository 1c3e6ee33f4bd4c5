//! Pre-warms push-mode edges (`[[cluster.edges]]` with `mode = "push"`) with a transcode's
//! media files as they are stored, so the first viewers of a new video hit a warm cache.
//!
//! Pushing never delays a job: the uploader hands each stored file to a bounded queue per
//! edge and moves on; a task per edge sends them over `EdgeControl.Push` (a few at a time,
//! with the cluster token and the job's trace). A file that finds its edge's queue full (an
//! edge slower than the encoder) is skipped, and one whose push fails is not retried: it is in
//! object storage, and the edge pulls it on demand like a pull-mode edge. Both are counted
//! (`mediahost_edge_push_skipped_total`, `mediahost_edge_push_failures_total`) and logged.
//!
//! Only media files are pushed (init files, segments, the poster and the storyboard):
//! playlists embed each viewer's signature, and the edge keys media files without it, so one
//! pushed copy serves everyone.

use bytes::Bytes;
use futures::StreamExt;
use mediahost_core::TraceParent;
use mediahost_core::config::{EdgeMode, EdgePeer};
use mediahost_grpc::proto::edge::PushRequest;
use mediahost_grpc::proto::edge::edge_control_client::EdgeControlClient;
use mediahost_grpc::{Outgoing, endpoint};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// How long one push may take, connecting included.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Files waiting for one edge: a few seconds of segments of a whole ladder, so a short stall
/// loses nothing, and a bounded amount of memory when an edge is down.
const QUEUE_FILES: usize = 64;

/// Pushes in flight to one edge at once: enough to hide a round trip.
const PARALLEL_PUSHES: usize = 4;

/// How long a pushed media file stays fresh at the edge, with the `Cache-Control` the origin
/// serves it with: media files never change once written.
const MAX_AGE_SECONDS: u64 = 31_536_000;

/// One file on its way to an edge.
struct Pushed {
    /// The playback URL path viewers request it by (no signature: see the module doc).
    path: String,
    body: Bytes,
    /// The job's trace, continued by the push.
    trace: Option<TraceParent>,
}

/// One push-mode edge.
struct PushEdge {
    url: String,
    group: String,
    queue: mpsc::Sender<Arc<Pushed>>,
}

/// The push-mode edges of the deployment; cheap to clone. Empty without any.
#[derive(Clone, Default)]
pub struct Pusher {
    edges: Arc<Vec<PushEdge>>,
}

impl Pusher {
    /// Starts a sender task for every edge of `peers` in push mode, calling with `token`.
    /// Must run inside the Tokio runtime.
    pub fn new(
        peers: &[EdgePeer],
        token: Option<&str>,
    ) -> Result<Self, mediahost_grpc::ClientError> {
        let outgoing = Outgoing::new(token, "cluster.token")?;
        let mut edges = Vec::new();
        for peer in peers.iter().filter(|p| p.mode == EdgeMode::Push) {
            let endpoint = endpoint(&peer.url, "[[cluster.edges]]", PUSH_TIMEOUT)?;
            let client = EdgeControlClient::new(InterceptedService::new(
                endpoint.connect_lazy(),
                outgoing.clone(),
            ))
            .max_encoding_message_size(usize::MAX);
            let (queue, files) = mpsc::channel(QUEUE_FILES);
            tokio::spawn(deliver(peer.url.clone(), client, files));
            edges.push(PushEdge {
                url: peer.url.clone(),
                group: peer.group.clone(),
                queue,
            });
        }
        Ok(Self {
            edges: Arc::new(edges),
        })
    }

    /// Whether any edge of `group` takes pushes.
    pub fn pushes_to(&self, group: &str) -> bool {
        self.edges.iter().any(|e| e.group == group)
    }

    /// Queues `body`, the media file viewers request at `path`, for every push edge of
    /// `group`; never waits.
    pub fn push(&self, group: &str, path: String, body: Bytes) {
        let pushed = Arc::new(Pushed {
            path,
            body,
            trace: mediahost_core::trace::current(),
        });
        for edge in self.edges.iter().filter(|e| e.group == group) {
            if edge.queue.try_send(pushed.clone()).is_err() {
                metrics::counter!("mediahost_edge_push_skipped_total", "edge" => edge.url.clone())
                    .increment(1);
                tracing::warn!(edge = %edge.url, path = %pushed.path, "push queue full; the edge will pull this file");
            }
        }
    }
}

type Client = EdgeControlClient<InterceptedService<Channel, Outgoing>>;

/// Sends what is queued for the edge at `url` until the pusher is dropped.
async fn deliver(url: String, client: Client, mut files: mpsc::Receiver<Arc<Pushed>>) {
    let queued = futures::stream::poll_fn(move |cx| files.poll_recv(cx));
    queued
        .for_each_concurrent(PARALLEL_PUSHES, |pushed| {
            let (mut client, url) = (client.clone(), url.clone());
            async move {
                let bytes = pushed.body.len() as u64;
                let request = PushRequest {
                    path: pushed.path.clone(),
                    body: pushed.body.to_vec(),
                    content_type: mediahost_core::video::content_type(&pushed.path).into(),
                    headers: [(
                        "cache-control".to_owned(),
                        format!("public, max-age={MAX_AGE_SECONDS}, immutable"),
                    )]
                    .into(),
                    max_age_seconds: MAX_AGE_SECONDS,
                };
                let call = client.push(request);
                let result = match pushed.trace {
                    Some(trace) => trace.scope(call).await,
                    None => call.await,
                };
                match result {
                    Ok(_) => {
                        metrics::counter!("mediahost_edge_pushes_sent_total", "edge" => url)
                            .increment(1);
                        metrics::counter!("mediahost_edge_pushed_bytes_total").increment(bytes);
                    }
                    Err(status) => {
                        metrics::counter!("mediahost_edge_push_failures_total", "edge" => url.clone())
                            .increment(1);
                        tracing::warn!(edge = %url, path = %pushed.path, code = ?status.code(), error = status.message(), "push failed; the edge will pull this file");
                    }
                }
            }
        })
        .await;
}
