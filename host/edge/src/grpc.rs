//! The gRPC control service (`proto/edge.proto`): purge and push, for operators and push
//! workers, on the edge's own HTTP listener (gRPC is HTTP/2; the listener speaks both), beside
//! `grpc.health.v1` and reflection.
//!
//! Callers authenticate with the cluster token (`[cluster] token`, what api and worker
//! processes send) or the operator key (`[admin] operator_key`, what an operator purging by
//! hand holds): either is accepted.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use mediahost_grpc::Keys;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::Edge;
use crate::cache::{Cached, Meta, Stored};
use crate::proxy::{self, expired, purge_prefix};
use crate::signed::Signature;

/// The generated messages, service and client of `mediahost.edge.v1`.
pub use mediahost_grpc::proto::edge as proto;

use proto::edge_control_server::{EdgeControl, EdgeControlServer};
use proto::{PurgeReply, PurgeRequest, PushReply, PushRequest, purge_request};

/// Largest gRPC message the edge accepts: a pushed object travels in one, and segments run to
/// several MiB (tonic's default limit is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Headers a push may set besides `Content-Type`: the ones a hit serves again.
const PUSHABLE_HEADERS: &[HeaderName] =
    &[header::CACHE_CONTROL, header::ETAG, header::LAST_MODIFIED];

struct Control {
    edge: Arc<Edge>,
}

#[tonic::async_trait]
impl EdgeControl for Control {
    async fn purge(&self, request: Request<PurgeRequest>) -> Result<Response<PurgeReply>, Status> {
        let (video_id, prefix) = match request.into_inner().target {
            Some(purge_request::Target::VideoId(id)) => (Some(id), None),
            Some(purge_request::Target::PathPrefix(prefix)) => (None, Some(prefix)),
            None => (None, None),
        };
        let prefix = purge_prefix(video_id, prefix).map_err(Status::invalid_argument)?;
        let purged = self.edge.purge(&prefix);
        Ok(Response::new(PurgeReply {
            purged: purged as u64,
            prefix,
        }))
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushReply>, Status> {
        let push = request.into_inner();
        let key = playback_key(&push.path)?;
        if push.max_age_seconds == 0 {
            return Err(Status::invalid_argument("max_age_seconds must be positive"));
        }
        let headers = pushed_headers(&push)?;
        let bytes = push.body.len() as u64;
        let meta = Meta::new(
            headers,
            SystemTime::now(),
            Duration::from_secs(push.max_age_seconds),
            self.edge.stale_for(&key),
        );
        let entry = Cached::new(meta, push.body.into());
        let tier = match self.edge.cache.store(&key, entry).await {
            Stored::Memory => "memory",
            Stored::Disk => "disk",
            Stored::TooBig | Stored::Purged | Stored::Busy => {
                return Err(Status::resource_exhausted(format!(
                    "{bytes} bytes do not fit the edge's cache budgets (`[edge] cache_bytes`, `disk_cache_bytes`)"
                )));
            }
        };
        metrics::counter!("mediahost_edge_pushes_total").increment(1);
        tracing::info!(%key, bytes, tier, "pushed");
        Ok(Response::new(PushReply {
            tier: tier.into(),
            bytes,
        }))
    }
}

/// The cache key of a pushed path: it must be a playback URL the edge serves, not expired.
/// A media file is keyed without `exp` and `sig` (see [`crate::signed`]), a playlist by its
/// whole path and query.
fn playback_key(path: &str) -> Result<String, Status> {
    let invalid = || {
        Status::invalid_argument(format!(
            "path {path:?} is not a playback URL path (`/v1/videos/{{id}}/hls/…` or \
             `/v1/videos/{{id}}/{}`, with its query)",
            proxy::DASH_MANIFEST_PATH
        ))
    };
    let uri: Uri = path.parse().map_err(|_| invalid())?;
    let Some((video, _)) = proxy::playback_file(uri.path()).filter(|_| uri.scheme().is_none())
    else {
        return Err(invalid());
    };
    if expired(&uri) {
        return Err(Status::invalid_argument(format!(
            "path {path:?} has expired (`exp`): the edge would never serve it from the cache"
        )));
    }
    let whole = uri.path_and_query().map_or(path, |pq| pq.as_str());
    let media_key = || Signature::of(uri.path(), video, uri.query()).map(|s| s.key);
    if proxy::is_playlist(uri.path()) {
        Ok(whole.to_owned())
    } else {
        Ok(media_key().unwrap_or_else(|| whole.to_owned()))
    }
}

/// The headers a pushed object is served with.
fn pushed_headers(push: &PushRequest) -> Result<HeaderMap, Status> {
    let value = |name: &str, value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| Status::invalid_argument(format!("header {name}: invalid value")))
    };
    let mut headers = HeaderMap::new();
    if !push.content_type.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            value("content-type", &push.content_type)?,
        );
    }
    for (name, v) in &push.headers {
        let known = PUSHABLE_HEADERS
            .iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "header {name:?} cannot be pushed; allowed: cache-control, etag, last-modified (and content_type)"
                ))
            })?;
        headers.insert(known.clone(), value(name, v)?);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        let cache_control = format!("public, max-age={}", push.max_age_seconds);
        headers.insert(
            header::CACHE_CONTROL,
            value("cache-control", &cache_control)?,
        );
    }
    Ok(headers)
}

/// What a caller is told when the edge accepts no key.
const DISABLED: &str = "purge and push are disabled: set `[cluster] token` (MEDIAHOST_CLUSTER_TOKEN) \
     or `[admin] operator_key` (MEDIAHOST_OPERATOR_KEY) for the edge";

/// `router` with the gRPC endpoint added: the control service (cluster token or operator key),
/// health following the edge's readiness until `shutdown`, and reflection.
pub(crate) fn route(
    router: axum::Router,
    edge: Arc<Edge>,
    shutdown: CancellationToken,
) -> axum::Router {
    let keys = Keys::new(
        [edge.cluster_token.as_deref(), edge.operator_key.as_deref()],
        DISABLED,
    );
    let readiness = edge.readiness.clone();
    let node = edge.node.clone();
    let server =
        EdgeControlServer::new(Control { edge }).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let service = InterceptedService::new(server, keys);
    let mut services = mediahost_grpc::Services::new().with(service);
    if let Some(node) = node {
        services = services.with(node);
    }
    let (grpc, names) = services.build(readiness, shutdown);
    mediahost_grpc::mount(router, grpc, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unexpired_playback_paths_can_be_pushed() {
        // Media files are keyed without the signature, playlists with it.
        let segment = "/v1/videos/v/hls/720p/seg-1.m4s";
        assert_eq!(playback_key(segment).unwrap(), segment);
        let signed = format!("{segment}?exp=99999999999&sig=ab");
        assert_eq!(playback_key(&signed).unwrap(), segment);
        for ok in [
            "/v1/videos/v/hls/master.m3u8",
            "/v1/videos/v/hls/master.m3u8?exp=99999999999&sig=ab",
            "/v1/videos/v/dash/manifest.mpd",
        ] {
            assert_eq!(playback_key(ok).unwrap(), ok);
        }
        for bad in [
            "/v1/plugins",
            "/v1/videos//hls/a.m4s",
            "/v1/videos/v/hls/",
            "/v1/videos/v/hls/../w/hls/a.m4s",
            "/v1/videos/v/dash/a.m4s",
            "http://elsewhere/v1/videos/v/hls/a.m4s",
            "/v1/videos/v/hls/a.m4s?exp=1&sig=ab",
            "not a path",
        ] {
            let status = playback_key(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn pushed_headers_default_the_cache_control_and_refuse_others() {
        let mut push = PushRequest {
            content_type: "video/mp4".into(),
            max_age_seconds: 30,
            ..Default::default()
        };
        let headers = pushed_headers(&push).unwrap();
        assert_eq!(headers[header::CONTENT_TYPE], "video/mp4");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=30");
        push.headers.insert("ETag".into(), "\"v1\"".into());
        push.headers
            .insert("cache-control".into(), "public, max-age=5".into());
        let headers = pushed_headers(&push).unwrap();
        assert_eq!(headers[header::ETAG], "\"v1\"");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=5");
        push.headers.insert("set-cookie".into(), "a=b".into());
        let status = pushed_headers(&push).unwrap_err();
        assert!(status.message().contains("set-cookie"), "{status}");
    }
}
