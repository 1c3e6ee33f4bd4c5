//! Reference edge-transform plugin (world `edge-transform` of `mediahost:plugin`): signed,
//! expiring URL tokens, header injection and HLS manifest rewriting.
//!
//! The decisions live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; the WIT glue in `component` only exists on wasm32.
//!
//! - `on-request`: a request outside `public_prefixes` needs a valid `token` query parameter
//!   (format and signature in [`rules`]), checked against the host's `received-at` time (plugins
//!   have no wall clock). Otherwise it is answered with 403 and
//!   `{"error":{"code":"forbidden","message":...}}`. A valid request continues unchanged: the
//!   token stays in the query, because `on-response` needs it.
//! - `on-response`: sets the `add_headers` headers, and for an `.m3u8` request whose body the host
//!   passes, appends the request's token to every URI of the playlist so the player's follow-up
//!   requests carry it (and fixes `content-length`).
//!
//! Settings (manifest `[config]` defaults, overridable per deployment): `secret` (required),
//! `public_prefixes`, `scope_marker`, `add_headers`. A missing secret or malformed setting is
//! logged and the call traps: the host reports a plugin failure and the binding's fail-closed
//! policy refuses the request.

pub mod rules;

// The generated glue is the component ABI: raw exports and pointer juggling (hence unsafe), with
// one flat parameter per record field (hence many arguments).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, clippy::too_many_arguments)]
mod component {
    use crate::rules::{self, Settings};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "edge-transform",
    });

    use mediahost::plugin::http::Response;
    use mediahost::plugin::log::{Level, log};

    struct EdgeToken;

    fn settings() -> Settings {
        match Settings::from_lookup(mediahost::plugin::config::get) {
            Ok(settings) => settings,
            Err(e) => {
                log(Level::Error, &format!("invalid configuration: {e}"));
                panic!("invalid configuration: {e}");
            }
        }
    }

    impl Guest for EdgeToken {
        fn on_request(req: RequestHead) -> RequestAction {
            let settings = settings();
            match rules::check(&settings, &req.path, req.query.as_deref(), req.received_at) {
                Ok(()) => RequestAction::Continue(req),
                Err(denial) => {
                    log(
                        Level::Info,
                        &format!("refused {} {}: {denial}", req.method, req.path),
                    );
                    RequestAction::Respond(Response {
                        status: 403,
                        headers: vec![
                            ("content-type".into(), "application/json".into()),
                            ("cache-control".into(), "no-store".into()),
                        ],
                        body: rules::forbidden_body(denial),
                    })
                }
            }
        }

        fn on_response(
            req: RequestHead,
            mut resp: ResponseHead,
            body: Option<Vec<u8>>,
        ) -> ResponseUpdate {
            let settings = settings();
            rules::add_headers(&settings, &mut resp.headers);
            let token = rules::token_of(req.query.as_deref())
                .filter(|_| !rules::is_public(&settings, &req.path));
            let rewritten = match (body, token) {
                (Some(body), Some(token)) if rules::is_playlist(&req.path) => {
                    // A playlist that is not UTF-8 is not one we can rewrite safely.
                    String::from_utf8(body)
                        .ok()
                        .map(|text| rules::rewrite_playlist(&text, token).into_bytes())
                }
                _ => None,
            };
            if let Some(body) = &rewritten {
                for (name, value) in &mut resp.headers {
                    if name.eq_ignore_ascii_case("content-length") {
                        *value = body.len().to_string();
                    }
                }
            }
            ResponseUpdate {
                head: resp,
                body: rewritten,
            }
        }
    }

    export!(EdgeToken);
}
