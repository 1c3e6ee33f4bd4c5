//! The JSON form of one call into a plugin and of its answer: what `mediahost plugin run`
//! reads and prints, and what the conformance cases in `plugin-tests/` are written in.
//!
//! A call is an object with one key, the WIT function's name, holding its parameters by their
//! WIT names:
//!
//! ```json
//! {"check-upload": {"info": {"tenant": "acme", "video_id": "v1", "filename": "clip.mp4",
//!                            "declared_size": 1000, "content_type": "video/mp4",
//!                            "metadata": [["title", "Holiday"]]}}}
//! {"check-head": {"info": {...}, "head": {"hex": "000000206674797069736f6d"}}}
//! {"extract": {"input": {"tenant": ..., "video_id": ..., "media": {...}, "head": [], "user_metadata": []}}}
//! {"route": {"input": {"tenant": ..., "video_id": ..., "media": {...}, "metadata": []}}}
//! {"on-request": {"req": {"method": "GET", "path": "/v/x/hls/master.m3u8", "query": null,
//!                         "headers": [["accept", "*/*"]], "client_ip": null, "tenant": "acme",
//!                         "received_at": 1700000000}}}
//! {"on-response": {"req": {...}, "resp": {"status": 200, "headers": []}, "body": "#EXTM3U\n"}}
//! ```
//!
//! Records use the field names of the generated Rust types (the WIT names with `_` for `-`);
//! `option`s are a value or `null`; lists of pairs are arrays of two-element arrays; enum and
//! variant cases are their Rust names (`"Video"`, `{"Reject": {"status": 422, "reason": ".."}}`);
//! a `media` stream is `{"index", "kind", "codec", "width", "height", "frame_rate",
//! "sample_rate", "channels", "bitrate", "language", "rotation", "pix_fmt", "color_transfer"}`.
//! The byte parameters `head` and `body` ([`Bytes`]) take text, `{"hex": ".."}`,
//! `{"base64": ".."}`, `{"fill": byte, "len": n}` or an array of numbers.
//!
//! An answer ([`CallOutput`]) is printed the same way, tagged by what it is: `{"verdict": ..}`,
//! `{"metadata": {"Ok": [[k, v], ..]}}`, `{"plan": {"Ok": {..}}}`, `{"request_action": ..}` or
//! `{"response_update": ..}`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::manifest::World;
use crate::{
    ExtractInput, RequestAction, RequestHead, ResponseHead, ResponseUpdate, RouteInput, RoutePlan,
    UploadInfo, Verdict,
};

/// One call of one export of a world, with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum CallInput {
    /// `validator.check-upload`.
    CheckUpload {
        /// The upload.
        info: UploadInfo,
    },
    /// `validator.check-head`.
    CheckHead {
        /// The upload.
        info: UploadInfo,
        /// Its first bytes.
        head: Bytes,
    },
    /// `metadata-extractor.extract`.
    Extract {
        /// The probed source.
        input: ExtractInput,
    },
    /// `router.route`.
    Route {
        /// The video to plan.
        input: RouteInput,
    },
    /// `edge-transform.on-request`.
    OnRequest {
        /// The request head.
        req: RequestHead,
    },
    /// `edge-transform.on-response`.
    OnResponse {
        /// The request head.
        req: RequestHead,
        /// The response head.
        resp: ResponseHead,
        /// The body, for manifests.
        #[serde(default)]
        body: Option<Bytes>,
    },
}

impl CallInput {
    /// The world whose export this calls.
    pub fn world(&self) -> World {
        match self {
            CallInput::CheckUpload { .. } | CallInput::CheckHead { .. } => World::Validator,
            CallInput::Extract { .. } => World::MetadataExtractor,
            CallInput::Route { .. } => World::Router,
            CallInput::OnRequest { .. } | CallInput::OnResponse { .. } => World::EdgeTransform,
        }
    }

    /// The WIT name of the function called.
    pub fn function(&self) -> &'static str {
        match self {
            CallInput::CheckUpload { .. } => "check-upload",
            CallInput::CheckHead { .. } => "check-head",
            CallInput::Extract { .. } => "extract",
            CallInput::Route { .. } => "route",
            CallInput::OnRequest { .. } => "on-request",
            CallInput::OnResponse { .. } => "on-response",
        }
    }
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutput {
    /// From `check-upload` and `check-head`.
    Verdict(Verdict),
    /// From `extract`.
    Metadata(Result<Vec<(String, String)>, String>),
    /// From `route`.
    Plan(Result<RoutePlan, String>),
    /// From `on-request`.
    RequestAction(RequestAction),
    /// From `on-response`.
    ResponseUpdate(ResponseUpdate),
}

/// Bytes in a call's JSON: text is taken as UTF-8, or one of the forms below for binary data.
/// Printed as text when the bytes are UTF-8, else as `{"base64": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BytesForm", into = "BytesForm")]
pub struct Bytes(pub Vec<u8>);

/// The JSON spellings of [`Bytes`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum BytesForm {
    /// UTF-8 text.
    Text(String),
    /// Hex digits, two per byte.
    Hex { hex: String },
    /// Standard base64 with padding.
    Base64 { base64: String },
    /// `len` copies of `fill`: the large heads conformance cases need, without writing them out.
    Fill { fill: u8, len: usize },
    /// One number per byte.
    Array(Vec<u8>),
}

/// Largest `fill` accepted: 16 MiB is far above any head or manifest the host passes.
const MAX_FILL: usize = 16 << 20;

impl TryFrom<BytesForm> for Bytes {
    type Error = String;

    fn try_from(form: BytesForm) -> Result<Self, String> {
        Ok(Bytes(match form {
            BytesForm::Text(text) => text.into_bytes(),
            BytesForm::Hex { hex } => hex::decode(hex.replace(char::is_whitespace, ""))
                .map_err(|e| format!("invalid hex bytes: {e}"))?,
            BytesForm::Base64 { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64.trim())
                .map_err(|e| format!("invalid base64 bytes: {e}"))?,
            BytesForm::Fill { fill, len } if len <= MAX_FILL => vec![fill; len],
            BytesForm::Fill { len, .. } => {
                return Err(format!("fill of {len} bytes is over {MAX_FILL}"));
            }
            BytesForm::Array(bytes) => bytes,
        }))
    }
}

impl From<Bytes> for BytesForm {
    fn from(bytes: Bytes) -> Self {
        match String::from_utf8(bytes.0) {
            Ok(text) => BytesForm::Text(text),
            Err(e) => BytesForm::Base64 {
                base64: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_check_head_call_with_hex_bytes() {
        let json = r#"{"check-head": {"info": {"tenant": "acme", "video_id": "v1",
            "filename": "a.mp4", "declared_size": 10, "content_type": null, "metadata": [["k", "v"]]},
            "head": {"hex": "00 01 ff"}}}"#;
        let input: CallInput = serde_json::from_str(json).unwrap();
        assert_eq!(input.world(), World::Validator);
        assert_eq!(input.function(), "check-head");
        let CallInput::CheckHead { info, head } = input else {
            panic!("wrong call");
        };
        assert_eq!(head, Bytes(vec![0, 1, 255]));
        assert_eq!(info.metadata, [("k".to_owned(), "v".to_owned())]);
    }

    #[test]
    fn byte_forms() {
        let parse = |json: &str| serde_json::from_str::<Bytes>(json).map(|b| b.0);
        assert_eq!(parse(r#""hi""#).unwrap(), b"hi");
        assert_eq!(parse(r#"{"base64": "aGk="}"#).unwrap(), b"hi");
        assert_eq!(parse(r#"{"fill": 7, "len": 3}"#).unwrap(), [7, 7, 7]);
        assert_eq!(parse("[1, 2]").unwrap(), [1, 2]);
        assert!(parse(r#"{"hex": "zz"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Bytes(vec![0xff, 0])).unwrap(),
            r#"{"base64":"/wA="}"#
        );
        assert_eq!(
            serde_json::to_string(&Bytes(b"ok".to_vec())).unwrap(),
            r#""ok""#
        );
    }

    #[test]
    fn unknown_functions_and_fields_are_refused() {
        assert!(serde_json::from_str::<CallInput>(r#"{"check-everything": {}}"#).is_err());
        let extra = r#"{"on-request": {"req": {"method": "GET", "path": "/", "query": null,
            "headers": [], "client_ip": null, "tenant": null, "received_at": 0}, "x": 1}}"#;
        assert!(serde_json::from_str::<CallInput>(extra).is_err());
    }

    #[test]
    fn outputs_are_tagged() {
        let out = CallOutput::Verdict(Verdict::Accept);
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"verdict":"Accept"}"#
        );
    }
}
