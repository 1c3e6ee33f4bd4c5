//! Reference validator plugin (world `validator` of `mediahost:plugin`).
//!
//! The checks live in [`rules`] as plain functions over plain types so that `cargo test` runs them
//! natively; the WIT glue in `component` only exists on wasm32, where it reads settings through
//! the `config` import, calls the rules and logs each rejection through the `log` import.
//!
//! Settings (manifest `[config]` defaults, overridable per deployment):
//! - `max_size`: largest declared size in bytes; empty or absent means no limit.
//! - `allowed_extensions`: comma-separated, case-insensitive; empty or absent means any.
//! - `sniff`: `"true"` makes `check-head` reject bytes that are no known media container.
//!
//! Every rejection uses HTTP status 422 (the upload is well-formed but unacceptable).

pub mod rules;

// The generated glue is the component ABI: raw exports and pointer juggling (hence unsafe), with
// one flat parameter per record field (hence many arguments).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, clippy::too_many_arguments)]
mod component {
    use crate::rules::{self, Settings, Upload};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "validator",
    });

    use mediahost::plugin::log::{Level, log};
    use mediahost::plugin::types::Rejection;

    struct Validator;

    /// Reads the settings; a malformed value is an operator error, so it is logged and the call
    /// traps, which the host reports as a plugin failure (and the binding decides fail-open or
    /// fail-closed) rather than silently accepting or rejecting uploads.
    fn settings() -> Settings {
        match Settings::from_lookup(mediahost::plugin::config::get) {
            Ok(settings) => settings,
            Err(e) => {
                log(Level::Error, &format!("invalid configuration: {e}"));
                panic!("invalid configuration: {e}");
            }
        }
    }

    fn verdict(info: &UploadInfo, outcome: Result<(), String>) -> Verdict {
        match outcome {
            Ok(()) => Verdict::Accept,
            Err(reason) => {
                log(
                    Level::Info,
                    &format!(
                        "rejected upload of video {} (tenant {}): {reason}",
                        info.video_id, info.tenant
                    ),
                );
                Verdict::Reject(Rejection {
                    status: rules::STATUS,
                    reason,
                })
            }
        }
    }

    fn upload(info: &UploadInfo) -> Upload<'_> {
        Upload {
            filename: info.filename.as_deref(),
            declared_size: info.declared_size,
        }
    }

    impl Guest for Validator {
        fn check_upload(info: UploadInfo) -> Verdict {
            let outcome = rules::check_upload(&settings(), &upload(&info));
            verdict(&info, outcome)
        }

        fn check_head(info: UploadInfo, head: Vec<u8>) -> Verdict {
            let outcome = rules::check_head(&settings(), &head);
            verdict(&info, outcome)
        }
    }

    export!(Validator);
}
