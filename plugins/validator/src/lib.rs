//! Reference validator plugin (world `validator` of `mediahost:plugin`).
//!
//! The checks live in [`rules`] as plain functions over plain types; `plugin` binds them to the
//! world with `mediahost-sdk`: it reads settings through the `config` import, calls the rules
//! and logs each rejection. `cargo test` runs both natively (the glue against the SDK's
//! `TestHost`).
//!
//! Settings (manifest `[config]` defaults, overridable per deployment):
//! - `max_size`: largest declared size in bytes; empty or absent means no limit.
//! - `allowed_extensions`: comma-separated, case-insensitive; empty or absent means any.
//! - `sniff`: `"true"` makes `check-head` reject bytes that are no known media container.
//!
//! Every rejection uses HTTP status 422 (the upload is well-formed but unacceptable).

pub mod rules;

pub mod plugin {
    //! The plugin bound to the `validator` world.

    use mediahost_sdk::{Rejection, UploadInfo, Validator, Verdict, config, log};

    use crate::rules::{self, Settings, Upload};

    /// The plugin as the host sees it.
    pub struct Plugin;

    /// Reads the settings; a malformed value is an operator error, so it is logged and the call
    /// traps, which the host reports as a plugin failure (and the binding decides fail-open or
    /// fail-closed) rather than silently accepting or rejecting uploads.
    fn settings() -> Settings {
        match Settings::from_lookup(config::get) {
            Ok(settings) => settings,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                panic!("invalid configuration: {e}");
            }
        }
    }

    fn verdict(info: &UploadInfo, outcome: Result<(), String>) -> Verdict {
        match outcome {
            Ok(()) => Verdict::Accept,
            Err(reason) => {
                log::info!(
                    "rejected upload of video {} (tenant {}): {reason}",
                    info.video_id,
                    info.tenant
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

    impl Validator for Plugin {
        fn check_upload(info: UploadInfo) -> Verdict {
            let outcome = rules::check_upload(&settings(), &upload(&info));
            verdict(&info, outcome)
        }

        fn check_head(info: UploadInfo, head: Vec<u8>) -> Verdict {
            let outcome = rules::check_head(&settings(), &head);
            verdict(&info, outcome)
        }
    }

    mediahost_sdk::export_validator!(Plugin);

    // The test host stands in for the real one on native targets only.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    mod tests {
        use super::*;
        use mediahost_sdk::testing::TestHost;

        fn info(filename: &str, size: u64) -> UploadInfo {
            UploadInfo {
                tenant: "acme".into(),
                video_id: "v1".into(),
                filename: Some(filename.into()),
                declared_size: Some(size),
                content_type: None,
                metadata: vec![],
            }
        }

        #[test]
        fn rejections_read_the_settings_and_are_logged() {
            let host = TestHost::new()
                .with_config("max_size", "1_000")
                .with_config("allowed_extensions", "mp4");
            assert_eq!(Plugin::check_upload(info("a.mp4", 1000)), Verdict::Accept);
            assert!(host.logs().is_empty());
            assert_eq!(
                Plugin::check_upload(info("a.mp4", 1001)),
                Verdict::Reject(Rejection {
                    status: 422,
                    reason: "file is 1001 bytes; the limit is 1000 bytes".into(),
                })
            );
            assert_eq!(
                host.messages(),
                [
                    "rejected upload of video v1 (tenant acme): file is 1001 bytes; the limit is 1000 bytes"
                ]
            );
            host.set_config("sniff", "true");
            assert!(matches!(
                Plugin::check_head(info("a.mp4", 1), b"plain text".to_vec()),
                Verdict::Reject(_)
            ));
        }

        #[test]
        #[should_panic(expected = "invalid configuration: sniff")]
        fn a_malformed_setting_traps_after_logging() {
            let _host = TestHost::new().with_config("sniff", "yes");
            Plugin::check_upload(info("a.mp4", 1));
        }
    }
}
