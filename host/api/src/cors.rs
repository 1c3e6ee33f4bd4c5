//! CORS for browser clients (tus-js-client, Uppy, players) on every `/v1` route.
//!
//! Any origin is allowed: requests authenticate with a Bearer key in a header, not cookies, so
//! an origin gains nothing it could not do without a browser. Preflights are answered by the
//! layer itself, before authentication.

use axum::http::{HeaderName, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "upload-concat",
    "upload-defer-length",
    "tus-resumable",
    "x-http-method-override",
    "x-requested-with",
    "traceparent",
];

const EXPOSE_HEADERS: &[&str] = &[
    "location",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "upload-concat",
    "upload-defer-length",
    "tus-version",
    "tus-resumable",
    "tus-max-size",
    "tus-extension",
    "tus-checksum-algorithm",
    "mediahost-video-id",
    "traceparent",
];

fn names(list: &[&'static str]) -> Vec<HeaderName> {
    list.iter().map(|h| HeaderName::from_static(h)).collect()
}

/// The `/v1` CORS policy.
pub(crate) fn layer() -> CorsLayer {
    let mut expose = names(EXPOSE_HEADERS);
    expose.extend([header::CONTENT_LENGTH, header::CONTENT_TYPE]);
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(names(ALLOW_HEADERS))
        .expose_headers(expose)
        .max_age(Duration::from_secs(86_400))
}
