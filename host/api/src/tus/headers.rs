//! Parsing and writing the tus request and response headers.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::checksum::{Expected, Hasher};
use crate::ApiError;

/// The protocol version this server speaks.
pub const TUS_VERSION: &str = "1.0.0";

/// Header names (lower case, as `HeaderName` requires).
pub mod names {
    use axum::http::HeaderName;
    pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
    pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
    pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
    pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
    pub const TUS_CHECKSUM_ALGORITHM: HeaderName =
        HeaderName::from_static("tus-checksum-algorithm");
    pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
    pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
    pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
    pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
    pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
    pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
    pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
    pub const VIDEO_ID: HeaderName = HeaderName::from_static("mediahost-video-id");
    pub const X_HTTP_METHOD_OVERRIDE: HeaderName =
        HeaderName::from_static("x-http-method-override");
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::trim)
                .map_err(|_| ApiError::BadRequest(format!("{name} is not ASCII text")))
        })
        .transpose()
}

/// A non-negative integer header (`Upload-Length`, `Upload-Offset`).
pub fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    text(headers, name)?
        .map(|v| {
            // u64::from_str accepts a leading '+'; the protocol does not.
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name} must be a non-negative integer, got {v:?}"
                    ))
                })
        })
        .transpose()
}

/// `Upload-Defer-Length: 1` (the only allowed value).
pub fn defer_length(headers: &HeaderMap) -> Result<bool, ApiError> {
    match text(headers, &names::UPLOAD_DEFER_LENGTH)? {
        None => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(ApiError::BadRequest(format!(
            "Upload-Defer-Length must be 1, got {v:?}"
        ))),
    }
}

/// One decoded `Upload-Metadata` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The header as sent (echoed on HEAD).
    pub raw: String,
    /// Decoded pairs in order; values are UTF-8 (lossily decoded).
    pub pairs: Vec<(String, String)>,
}

impl Metadata {
    /// The value of `key`, if present and non-empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

/// `Upload-Metadata: key base64,key2 base64,key3` (a value may be absent).
pub fn metadata(headers: &HeaderMap) -> Result<Metadata, ApiError> {
    parse_metadata(text(headers, &names::UPLOAD_METADATA)?.unwrap_or(""))
}

/// Parses an `Upload-Metadata` value (also the one stored with an upload).
pub fn parse_metadata(raw: &str) -> Result<Metadata, ApiError> {
    let mut pairs = Vec::new();
    if raw.is_empty() {
        return Ok(Metadata {
            raw: String::new(),
            pairs,
        });
    }
    for item in raw.split(',') {
        let mut parts = item.trim().split(' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next();
        if key.is_empty() || parts.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "malformed Upload-Metadata pair {item:?}: expected `key base64value`"
            )));
        }
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(ApiError::BadRequest(format!(
                "Upload-Metadata key {key:?} appears twice"
            )));
        }
        let value = match value {
            None | Some("") => String::new(),
            Some(v) => {
                let bytes = STANDARD.decode(v).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "Upload-Metadata value of {key:?} is not base64: {e}"
                    ))
                })?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        pairs.push((key.to_owned(), value));
    }
    Ok(Metadata {
        raw: raw.to_owned(),
        pairs,
    })
}

/// `Upload-Checksum: <algorithm> <base64>`: unknown algorithm or bad base64 → 400.
pub fn checksum(headers: &HeaderMap) -> Result<Option<Expected>, ApiError> {
    let Some(value) = text(headers, &names::UPLOAD_CHECKSUM)? else {
        return Ok(None);
    };
    let (algorithm, digest) = value.split_once(' ').ok_or_else(|| {
        ApiError::BadRequest("Upload-Checksum must be `<algorithm> <base64 digest>`".into())
    })?;
    let hasher = Hasher::new(algorithm).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unsupported checksum algorithm {algorithm:?}; supported: {}",
            super::checksum::ALGORITHMS
        ))
    })?;
    let digest = STANDARD
        .decode(digest.trim())
        .map_err(|e| ApiError::BadRequest(format!("Upload-Checksum digest is not base64: {e}")))?;
    Ok(Some(Expected {
        hasher,
        digest,
        algorithm: algorithm.to_owned(),
    }))
}

/// The concatenation role a creation request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ConcatRequest {
    /// No `Upload-Concat`.
    None,
    /// `Upload-Concat: partial`.
    Partial,
    /// `Upload-Concat: final;<url> <url>…`: the ids of the partial uploads, in order.
    Final(Vec<String>),
}

/// `Upload-Concat`; final URLs may be absolute or paths, ending in `/v1/uploads/{id}`.
pub fn concat(headers: &HeaderMap) -> Result<ConcatRequest, ApiError> {
    let Some(value) = text(headers, &names::UPLOAD_CONCAT)? else {
        return Ok(ConcatRequest::None);
    };
    if value == "partial" {
        return Ok(ConcatRequest::Partial);
    }
    let Some(urls) = value.strip_prefix("final;") else {
        return Err(ApiError::BadRequest(format!(
            "Upload-Concat must be `partial` or `final;<urls>`, got {value:?}"
        )));
    };
    let ids = urls
        .split_whitespace()
        .map(|url| {
            url.split_once("/v1/uploads/")
                .map(|(_, id)| id.trim_end_matches('/'))
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("Upload-Concat names {url:?}, not an upload URL"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(ApiError::BadRequest(
            "Upload-Concat: final names no partial uploads".into(),
        ));
    }
    Ok(ConcatRequest::Final(ids))
}

/// `Upload-Expires` as an RFC 7231 date, from ms since the epoch.
pub fn expires(ms: i64) -> HeaderValue {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("http dates are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn metadata_pairs() {
        let m = metadata(&map(&[(
            "upload-metadata",
            "filename Y2xpcC5tcDQ=,title,is_public dHJ1ZQ==",
        )]))
        .unwrap();
        assert_eq!(m.get("filename"), Some("clip.mp4"));
        assert_eq!(m.get("title"), None);
        assert_eq!(m.get("is_public"), Some("true"));
        assert!(metadata(&map(&[("upload-metadata", "a !!!")])).is_err());
        assert!(metadata(&map(&[("upload-metadata", "a eA==,a eA==")])).is_err());
        assert!(metadata(&map(&[("upload-metadata", "a eA== b")])).is_err());
    }

    #[test]
    fn numbers_checksums_concat() {
        let h = map(&[("upload-offset", "12")]);
        assert_eq!(number(&h, &names::UPLOAD_OFFSET).unwrap(), Some(12));
        assert!(number(&map(&[("upload-offset", "+1")]), &names::UPLOAD_OFFSET).is_err());
        assert!(number(&map(&[("upload-offset", "-1")]), &names::UPLOAD_OFFSET).is_err());
        assert!(checksum(&map(&[("upload-checksum", "crc32 AAAA")])).is_err());
        assert!(checksum(&map(&[("upload-checksum", "sha1 %%%")])).is_err());
        assert!(checksum(&map(&[("upload-checksum", "md5 XUFAKrxLKna5cZ2REBfFkg==")])).is_ok());
        assert_eq!(
            concat(&map(&[(
                "upload-concat",
                "final;/v1/uploads/a http://h/v1/uploads/b"
            )]))
            .unwrap(),
            ConcatRequest::Final(vec!["a".into(), "b".into()])
        );
        assert!(concat(&map(&[("upload-concat", "final;/x/y")])).is_err());
        assert!(defer_length(&map(&[("upload-defer-length", "2")])).is_err());
    }
}
