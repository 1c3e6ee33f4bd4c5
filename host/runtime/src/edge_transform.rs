//! Calls into the `edge-transform` world: the effective chain of the request's tenant (the
//! global chain alone for requests of no tenant), in order.
//!
//! On a request, each `continue` hands its (possibly changed) head to the next plugin and the
//! first `respond` ends the chain. On a response, each plugin sees the head and body as the
//! previous one left them. A plugin that fails under a fail-open binding is skipped: the next
//! one sees what the previous one left. The host keeps the facts only it knows: `tenant` and
//! `received-at` are restored after every plugin, so no plugin can move a request to another
//! tenant or change the time later plugins check tokens against.

use crate::call_input::{Bytes, CallInput};
use crate::chain::run_step;
use crate::error::{PluginError, PluginFailure};
use crate::manifest::World;
use crate::plugin::PluginHost;
use crate::{RequestAction, RequestHead, ResponseHead, ResponseUpdate};

impl PluginHost {
    /// Whether a request for a video of `tenant` (`None`: of no tenant, or not resolved)
    /// would run any edge transform. With `tenant` `None` it answers for every tenant: whether
    /// any edge transform is loaded or any tenant binds one, so the edge resolves a request's
    /// tenant only when some tenant's chain could differ from the empty one.
    pub fn runs_edge_transforms(&self, tenant: Option<&str>) -> bool {
        let world = World::EdgeTransform;
        let Some((_, worlds)) = self.worlds() else {
            return false;
        };
        let bindings = self.bindings();
        match tenant {
            Some(_) => !self
                .steps(&worlds.edge_transforms, world, tenant)
                .is_empty(),
            None => {
                !worlds.edge_transforms.is_empty()
                    || bindings
                        .global
                        .iter()
                        .chain(bindings.tenants.values())
                        .any(|chains| !chains.get(world).is_empty())
            }
        }
    }

    /// Runs `on-request` of the edge transforms bound for the request's tenant. Returns the
    /// head to serve with ([`RequestAction::Continue`]) or the answer to send instead
    /// ([`RequestAction::Respond`]). A failure of a fail-closed binding (the world's default:
    /// token checks must not be skipped) stops the chain with the error.
    pub fn on_request(&self, req: &RequestHead) -> Result<RequestAction, PluginError> {
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(RequestAction::Continue(req.clone()));
        };
        let world = World::EdgeTransform;
        let tenant = req.tenant.as_deref().unwrap_or_default();
        let mut head = req.clone();
        for step in &self.steps(&worlds.edge_transforms, world, req.tenant.as_deref()) {
            let action = run_step(
                &runtime,
                step,
                world,
                tenant,
                |plugin, store| plugin.call_on_request(store, &head),
                |action| {
                    match &action {
                        RequestAction::Continue(next) => check_headers(&next.headers),
                        RequestAction::Respond(response) => check_status(response.status)
                            .and_then(|()| check_headers(&response.headers)),
                    }
                    .map_err(PluginFailure::Invalid)?;
                    Ok(action)
                },
                || CallInput::OnRequest { req: head.clone() },
            )?;
            match action {
                None => {}
                Some(RequestAction::Continue(mut next)) => {
                    next.tenant.clone_from(&req.tenant);
                    next.received_at = req.received_at;
                    head = next;
                }
                Some(RequestAction::Respond(response)) => {
                    tracing::debug!(
                        plugin = %step.binding.plugin,
                        tenant,
                        path = %req.path,
                        status = response.status,
                        "edge request answered by plugin"
                    );
                    return Ok(RequestAction::Respond(response));
                }
            }
        }
        Ok(RequestAction::Continue(head))
    }

    /// Runs `on-response` of the edge transforms bound for the request's tenant on a response
    /// about to be sent for `req`. `body` is the whole body for manifests and `None` otherwise.
    /// The result's `body` is `Some` only when a plugin replaced it.
    pub fn on_response(
        &self,
        req: &RequestHead,
        resp: &ResponseHead,
        body: Option<&[u8]>,
    ) -> Result<ResponseUpdate, PluginError> {
        let mut update = ResponseUpdate {
            head: resp.clone(),
            body: None,
        };
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(update);
        };
        let world = World::EdgeTransform;
        let tenant = req.tenant.as_deref().unwrap_or_default();
        for step in &self.steps(&worlds.edge_transforms, world, req.tenant.as_deref()) {
            let current = update.body.as_deref().or(body);
            let next = run_step(
                &runtime,
                step,
                world,
                tenant,
                |plugin, store| plugin.call_on_response(store, req, &update.head, current),
                |next| {
                    check_status(next.head.status)
                        .and_then(|()| check_headers(&next.head.headers))
                        .map_err(PluginFailure::Invalid)?;
                    Ok(next)
                },
                || CallInput::OnResponse {
                    req: req.clone(),
                    resp: update.head.clone(),
                    body: current.map(|b| Bytes(b.to_vec())),
                },
            )?;
            if let Some(next) = next {
                update.head = next.head;
                if next.body.is_some() {
                    update.body = next.body;
                }
            }
        }
        Ok(update)
    }
}

/// A status the HTTP layer can send.
pub(crate) fn check_status(status: u16) -> Result<(), String> {
    if (100..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status} is outside 100..=599"))
    }
}

/// Header names must be RFC 9110 tokens and values free of control characters other than tab:
/// a line break in a value would let a plugin smuggle headers or split the response.
pub(crate) fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (name, value) in headers {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("header name {name:?} is not a valid token"));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!(
                "header {name} has a control character in its value"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: "/v/abc/hls/master.m3u8".into(),
            query: None,
            headers: vec![("accept".into(), "*/*".into())],
            client_ip: Some("203.0.113.7".into()),
            tenant: Some("acme".into()),
            received_at: 1_700_000_000,
        }
    }

    #[test]
    fn an_empty_host_passes_everything_through() {
        let host = PluginHost::empty();
        assert_eq!(
            host.on_request(&head()),
            Ok(RequestAction::Continue(head()))
        );
        let resp = ResponseHead {
            status: 200,
            headers: vec![],
        };
        let update = host
            .on_response(&head(), &resp, Some(b"#EXTM3U\n"))
            .unwrap();
        assert_eq!(
            update,
            ResponseUpdate {
                head: resp,
                body: None
            }
        );
    }

    #[test]
    fn refuses_header_smuggling_and_odd_statuses() {
        let h = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
        assert_eq!(check_headers(&h("x-served-by", "mediahost\tedge")), Ok(()));
        assert!(check_headers(&h("x-a", "b\r\nset-cookie: x")).is_err());
        assert!(check_headers(&h("x a", "b")).is_err());
        assert!(check_headers(&h("", "b")).is_err());
        assert_eq!(check_status(403), Ok(()));
        assert!(check_status(99).is_err());
        assert!(check_status(600).is_err());
    }
}
