//! The bearer check of the control services, and the metadata every control call carries.
//!
//! A process accepts a set of keys ([`Keys`]): the cluster token on every control service,
//! and also the operator key on the edge's `EdgeControl` (operators purge by hand with the key
//! they already hold). Keys are compared as SHA-256 digests in constant time, so neither a key
//! nor its length leaks through timing.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::trace;

/// What a caller of a cluster-token service is told when the process has no token.
pub const CLUSTER_DISABLED: &str = "the control services are disabled: set `[cluster] token` \
     (MEDIAHOST_CLUSTER_TOKEN) on every process";

/// The bearer keys one service accepts.
#[derive(Clone)]
pub struct Keys {
    /// SHA-256 of each accepted key; empty: every call is refused.
    digests: Arc<[[u8; 32]]>,
    /// What a caller is told when no key is configured (names the setting to set).
    disabled: &'static str,
}

impl Keys {
    /// Accepts each of `keys` that is set and not blank; with none, refuses every call with
    /// PERMISSION_DENIED and `disabled` as the message.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = Option<&'a str>>,
        disabled: &'static str,
    ) -> Self {
        let digests = keys
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        Self { digests, disabled }
    }

    /// The interceptor check: lets `request` through when its `authorization: Bearer <key>`
    /// holds an accepted key; else UNAUTHENTICATED (PERMISSION_DENIED when none is configured).
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.digests.is_empty() {
            return Err(Status::permission_denied(self.disabled));
        }
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing token: send `authorization: Bearer <cluster token>` metadata",
                )
            })?;
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        // Every key is compared, whichever matches, so timing says nothing about which.
        let known = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&given));
        if bool::from(known) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("unknown token"))
        }
    }
}

/// Keys are the interceptor of the control services they guard.
impl Interceptor for Keys {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request)
    }
}

/// Why a token cannot be sent.
#[derive(Debug, thiserror::Error)]
#[error("the {setting} is not a valid header value (printable ASCII only)")]
pub struct InvalidToken {
    /// The setting it came from.
    pub setting: &'static str,
}

/// The client interceptor of every control call: `authorization: Bearer <token>` when a token
/// is set, and the running task's trace as `traceparent` (a child span: the callee is the next
/// hop of the same trace).
#[derive(Clone, Default)]
pub struct Outgoing {
    /// `Bearer <token>`, ready to send.
    authorization: Option<MetadataValue<Ascii>>,
}

impl Outgoing {
    /// Sends `token` (from the setting named `setting`, for the error) with every call.
    pub fn new(token: Option<&str>, setting: &'static str) -> Result<Self, InvalidToken> {
        let authorization = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| InvalidToken { setting })?;
        Ok(Self { authorization })
    }
}

impl Interceptor for Outgoing {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        trace::attach(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(keys: &Keys, authorization: Option<&str>) -> Result<(), Status> {
        let mut request = Request::new(());
        if let Some(a) = authorization {
            request
                .metadata_mut()
                .insert("authorization", a.parse().unwrap());
        }
        keys.check(request).map(drop)
    }

    #[test]
    fn any_configured_key_passes_and_nothing_else() {
        let keys = Keys::new([Some("cluster"), None, Some("  "), Some("operator")], "off");
        assert!(call(&keys, Some("Bearer cluster")).is_ok());
        assert!(call(&keys, Some("Bearer operator")).is_ok());
        for refused in [None, Some("cluster"), Some("Bearer other"), Some("Bearer ")] {
            let status = call(&keys, refused).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
        let none = Keys::new([None, Some("")], "set cluster.token");
        let status = call(&none, Some("Bearer cluster")).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "set cluster.token");
    }

    #[tokio::test]
    async fn outgoing_calls_carry_the_token_and_the_running_trace() {
        let mut outgoing = Outgoing::new(Some("t0k"), "cluster.token").unwrap();
        let request = outgoing.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer t0k"
        );
        assert!(request.metadata().get("traceparent").is_none());
        let trace = mediahost_core::TraceParent::new_root();
        let request = trace
            .scope(async { outgoing.call(Request::new(())).unwrap() })
            .await;
        let sent = request
            .metadata()
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap();
        let sent = mediahost_core::TraceParent::parse(sent).unwrap();
        assert_eq!(sent.trace_id(), trace.trace_id());
        assert_ne!(sent, trace, "the callee gets a span of its own");
        assert!(Outgoing::new(Some("bad\ntoken"), "cluster.token").is_err());
        let anonymous = Outgoing::new(None, "cluster.token").unwrap();
        assert!(
            anonymous
                .clone()
                .call(Request::new(()))
                .unwrap()
                .metadata()
                .get("authorization")
                .is_none()
        );
    }
}
