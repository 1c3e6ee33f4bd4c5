//! Reference edge-transform plugin (world `edge-transform` of `mediahost:plugin`): signed,
//! expiring URL tokens, header injection and HLS manifest rewriting.
//!
//! The decisions live in [`rules`] as plain functions over plain types so that `cargo test`
//! runs them natively; `plugin` binds them to the world with `mediahost-sdk`.
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

pub mod plugin {
    //! The plugin bound to the `edge-transform` world.

    use mediahost_sdk::{
        EdgeTransform, RequestAction, RequestHead, Response, ResponseHead, ResponseUpdate, config,
        log,
    };

    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::rules::{self, Settings, Verified};

    /// The plugin as the host sees it.
    pub struct Plugin;

    thread_local! {
        /// The parsed settings and the tokens verified with them. An instance's settings never
        /// change (the host reuses an instance only for calls with the same settings), so
        /// with `instances = "reused"` they are read once per instance, and each token's HMAC
        /// computed once; a fresh instance starts empty.
        static STATE: RefCell<Option<(Rc<Settings>, Verified)>> = const { RefCell::new(None) };
    }

    fn settings() -> Rc<Settings> {
        STATE.with_borrow_mut(|state| {
            let (settings, _) =
                state.get_or_insert_with(|| (Rc::new(read_settings()), Verified::default()));
            settings.clone()
        })
    }

    fn read_settings() -> Settings {
        match Settings::from_lookup(config::get) {
            Ok(settings) => settings,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                panic!("invalid configuration: {e}");
            }
        }
    }

    /// [`rules::check_with`] against this instance's verified tokens.
    fn check(req: &RequestHead) -> Result<(), rules::Denial> {
        let settings = settings();
        STATE.with_borrow_mut(|state| {
            let (_, verified) = state.as_mut().expect("settings() filled the state");
            let query = req.query.as_deref();
            rules::check_with(&settings, &req.path, query, req.received_at, verified)
        })
    }

    impl EdgeTransform for Plugin {
        fn on_request(req: RequestHead) -> RequestAction {
            match check(&req) {
                Ok(()) => RequestAction::Continue(req),
                Err(denial) => {
                    log::info!("refused {} {}: {denial}", req.method, req.path);
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

    mediahost_sdk::export_edge_transform!(Plugin);

    // The test host stands in for the real one on native targets only.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    mod tests {
        use super::*;
        use mediahost_sdk::testing::TestHost;

        fn request(path: &str) -> RequestHead {
            RequestHead {
                method: "GET".into(),
                path: path.into(),
                query: None,
                headers: vec![],
                client_ip: None,
                tenant: Some("acme".into()),
                received_at: 1_700_000_000,
            }
        }

        #[test]
        fn a_request_without_token_is_answered_403_and_logged() {
            let host = TestHost::new()
                .with_config("secret", "s3cret")
                .with_config("public_prefixes", "/healthz");
            let RequestAction::Respond(resp) = Plugin::on_request(request("/v/a/hls/x.m3u8"))
            else {
                panic!("expected a 403 answer");
            };
            assert_eq!(resp.status, 403);
            assert_eq!(
                host.messages(),
                ["refused GET /v/a/hls/x.m3u8: a token is required"]
            );
            assert_eq!(
                Plugin::on_request(request("/healthz")),
                RequestAction::Continue(request("/healthz"))
            );
        }

        #[test]
        fn headers_from_the_settings_are_added() {
            let _host = TestHost::new()
                .with_config("secret", "s3cret")
                .with_config("add_headers", "X-A: 1");
            let head = ResponseHead {
                status: 200,
                headers: vec![],
            };
            let update = Plugin::on_response(request("/healthz"), head, None);
            assert_eq!(update.head.headers, [("x-a".to_owned(), "1".to_owned())]);
            assert_eq!(update.body, None);
        }
    }
}
