//! The OpenAPI 3.1 document of the HTTP API, served at `GET /v1/openapi.json`.
//!
//! It is generated from the code: every `/v1` route is registered through utoipa-axum's
//! `routes!`, which takes the path and method from the same `#[utoipa::path]` attribute that
//! documents the handler, so a route cannot exist without its entry (the one exception, the
//! playback wildcard route, is listed in [`ApiDoc`] next to where it is routed). The types of
//! bodies derive their schemas.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// Tag of tenant-facing video routes.
pub(crate) const VIDEOS: &str = "videos";
/// Tag of the tus routes.
pub(crate) const UPLOADS: &str = "uploads (tus 1.0)";
/// Tag of playback.
pub(crate) const PLAYBACK: &str = "playback";
/// Tag of the operator's admin API.
pub(crate) const ADMIN: &str = "admin";

/// The parts of the document that no route contributes.
#[derive(OpenApi)]
#[openapi(
    paths(crate::playback::hls_file),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = VIDEOS, description = "Video records and single-request source uploads (tenant key)."),
        (name = UPLOADS, description = "Resumable uploads, tus 1.0.0 with the creation, creation-with-upload, creation-defer-length, expiration, checksum, termination and concatenation extensions (tenant key)."),
        (name = PLAYBACK, description = "HLS playback files and the DASH manifest over the same segments, with Range and conditional requests (tenant key or signed URL)."),
        (name = ADMIN, description = "The operator's admin API (operator key)."),
    )
)]
pub(crate) struct ApiDoc;

/// Security schemes: every `/v1` route names the key it takes.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "tenant_key",
            bearer("A tenant's API key (`mediahost tenant create` / `tenant key add`)."),
        );
        components.add_security_scheme(
            "operator_key",
            bearer("The operator key (`admin.operator_key` or MEDIAHOST_OPERATOR_KEY)."),
        );
    }
}

/// The finished document: the `/v1` routes' part under `/v1`, with the API's info.
pub(crate) fn document(v1: Document) -> Document {
    let mut doc = Document::new(
        InfoBuilder::new()
            .title("mediahost")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Upload, transcode and stream video. Errors answer \
                 `{\"error\": {\"code\", \"message\"}}` with a stable code.",
            ))
            .build(),
        utoipa::openapi::Paths::new(),
    );
    doc = doc.nest("/v1", v1);
    doc
}

/// `GET /v1/openapi.json`: this document. No key needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi_document",
    tag = ADMIN,
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"))
)]
pub(crate) async fn serve(Extension(doc): Extension<Arc<Document>>) -> Json<Arc<Document>> {
    Json(doc)
}
