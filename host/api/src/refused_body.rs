//! Ends an HTTP/1.1 connection after a refused request that carried a body.
//!
//! An upload refused before its body was read (a validator's verdict on the declared size, a
//! quota, a tus precondition) leaves the rest of that body in flight on the connection. The
//! server cannot take another request from that connection without reading it all first, so
//! hyper closes it; saying `Connection: close` in the answer tells the client so up front,
//! instead of letting it pick the doomed connection from its pool for its next request and
//! fail there. HTTP/2 needs nothing: a refused stream is reset on its own.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, Version, header};
use axum::middleware::Next;
use axum::response::Response;

/// The middleware; wraps every `/v1` route.
pub(crate) async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let carries_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    let http1 = request.version() <= Version::HTTP_11;
    let mut response = next.run(request).await;
    if carries_body
        && http1
        && (response.status().is_client_error() || response.status().is_server_error())
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
