//! Calls into the `validator` world: the tenant's effective chain of validators in order, the
//! first rejection wins.

use crate::bindings::validator::Validator;
use crate::call_input::{Bytes, CallInput};
use crate::chain::run_step;
use crate::error::PluginError;
use crate::host::HostState;
use crate::manifest::World;
use crate::plugin::PluginHost;
use crate::{Rejection, UploadInfo, Verdict};

impl PluginHost {
    /// Runs `check-upload` of the validators bound for the upload's tenant (`info.tenant`)
    /// when an upload is created. A failing validator whose binding is fail-closed stops the
    /// run with its error; a fail-open one is skipped.
    pub fn check_upload(&self, info: &UploadInfo) -> Result<Verdict, PluginError> {
        self.run_validators(
            info,
            |plugin, store| plugin.call_check_upload(store, info),
            || CallInput::CheckUpload { info: info.clone() },
        )
    }

    /// Runs `check-head` of the validators bound for the upload's tenant on the upload's first
    /// bytes (up to 64 KiB).
    pub fn check_head(&self, info: &UploadInfo, head: &[u8]) -> Result<Verdict, PluginError> {
        self.run_validators(
            info,
            |plugin, store| plugin.call_check_head(store, info, head),
            || CallInput::CheckHead {
                info: info.clone(),
                head: Bytes(head.to_vec()),
            },
        )
    }

    fn run_validators(
        &self,
        info: &UploadInfo,
        call: impl Fn(&Validator, &mut wasmtime::Store<HostState>) -> wasmtime::Result<Verdict>,
        input: impl Fn() -> CallInput,
    ) -> Result<Verdict, PluginError> {
        let Some((runtime, worlds)) = self.worlds() else {
            return Ok(Verdict::Accept);
        };
        let steps = self.steps(&worlds.validators, World::Validator, Some(&info.tenant));
        for step in &steps {
            // A fresh instance per call and plugin unless its manifest asks for reuse (and then
            // only within the tenant): nothing a plugin keeps in memory leaks to another tenant.
            let verdict = run_step(
                &runtime,
                step,
                World::Validator,
                &info.tenant,
                &call,
                Ok,
                &input,
            )?;
            if let Some(Verdict::Reject(rejection)) = verdict {
                let rejection = normalize(rejection);
                tracing::info!(
                    plugin = %step.binding.plugin,
                    tenant = %info.tenant,
                    video_id = %info.video_id,
                    status = rejection.status,
                    reason = %rejection.reason,
                    "upload rejected by plugin"
                );
                return Ok(Verdict::Reject(rejection));
            }
        }
        Ok(Verdict::Accept)
    }
}

/// The WIT contract: a status outside 400..=499 is answered as 422, so a plugin cannot make the
/// host claim success or a server fault.
/// Longest rejection reason passed on, in bytes: reasons go into logs and HTTP bodies, and a
/// plugin may otherwise return one as large as its memory limit.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

fn normalize(mut rejection: Rejection) -> Rejection {
    if !(400..=499).contains(&rejection.status) {
        rejection.status = 422;
    }
    if rejection.reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !rejection.reason.is_char_boundary(end) {
            end -= 1;
        }
        rejection.reason.truncate(end);
        rejection.reason.push_str(" [truncated]");
    }
    rejection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_outside_4xx_become_422() {
        let r = |status| Rejection {
            status,
            reason: "x".into(),
        };
        assert_eq!(normalize(r(413)).status, 413);
        assert_eq!(normalize(r(200)).status, 422);
        assert_eq!(normalize(r(503)).status, 422);
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let cut = normalize(Rejection {
            status: 422,
            reason,
        })
        .reason;
        assert!(cut.ends_with(" [truncated]"), "{cut}");
        assert!(cut.len() <= MAX_REASON_BYTES + " [truncated]".len());
        assert!(
            cut.trim_end_matches(" [truncated]")
                .chars()
                .all(|c| c == 'é')
        );
    }

    #[test]
    fn an_empty_host_accepts_everything() {
        let info = UploadInfo {
            tenant: "t".into(),
            video_id: "v".into(),
            filename: Some("x.exe".into()),
            declared_size: Some(u64::MAX),
            content_type: None,
            metadata: vec![],
        };
        let host = PluginHost::empty();
        assert!(matches!(host.check_upload(&info), Ok(Verdict::Accept)));
        assert!(matches!(host.check_head(&info, b"MZ"), Ok(Verdict::Accept)));
        assert!(host.plugins().is_empty());
    }
}
