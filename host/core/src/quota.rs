//! Per-tenant quotas: how much one tenant may upload at once and keep.
//!
//! A deployment sets defaults (`[quotas]` in the config); a tenant's own values, set by the
//! operator (`mediahost tenant quota`, `PUT /v1/tenants/{tenant}/quota`), override them one by
//! one. A limit left unset means no limit.

use serde::{Deserialize, Serialize};

/// Upload and storage limits. `None` = unlimited (or, for a tenant, the deployment default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// Largest single upload in bytes (tus `Upload-Length`, or the body of
    /// `PUT /v1/videos/{id}/source`). Beyond it: 413 `too_large`.
    pub max_upload_bytes: Option<u64>,
    /// Source bytes the tenant may keep: stored sources plus what open uploads declared.
    /// Beyond it: 403 `quota_exceeded`.
    pub max_storage_bytes: Option<u64>,
    /// Uploads the tenant may have open at once: unfinished, unexpired tus uploads plus
    /// streaming `PUT` uploads in progress. Beyond it: 429 `too_many_uploads`.
    pub max_concurrent_uploads: Option<u32>,
}

impl Quota {
    /// This quota with each unset limit taken from `defaults`.
    pub fn or(self, defaults: &Quota) -> Quota {
        Quota {
            max_upload_bytes: self.max_upload_bytes.or(defaults.max_upload_bytes),
            max_storage_bytes: self.max_storage_bytes.or(defaults.max_storage_bytes),
            max_concurrent_uploads: self
                .max_concurrent_uploads
                .or(defaults.max_concurrent_uploads),
        }
    }
}

/// What a tenant uses of its quota right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Bytes of stored video sources.
    pub stored_bytes: u64,
    /// Bytes declared by uploads still open (their final size once complete).
    pub reserved_bytes: u64,
    /// Uploads open now.
    pub open_uploads: u32,
}

/// A size that is not a number of bytes with an optional binary unit.
#[derive(Debug, thiserror::Error)]
#[error("invalid size {0:?}: expected bytes, or a number with KiB, MiB, GiB or TiB (e.g. 2GiB)")]
pub struct InvalidSize(pub String);

/// Parses `1048576`, `512KiB`, `100 MiB`, `2GiB`, `1.5TiB` (also K/M/G/T and KB/MB/GB/TB,
/// taken as binary units, as operators mean them for disk sizes).
pub fn parse_size(text: &str) -> Result<u64, InvalidSize> {
    let invalid = || InvalidSize(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(invalid()),
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(1 << shift).ok_or_else(invalid);
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("100 MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5TiB").unwrap(), 3 << 39);
        for bad in ["", "GiB", "12 parsecs", "-1", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenants_own_limits_override_the_defaults_one_by_one() {
        let defaults = Quota {
            max_upload_bytes: Some(10),
            max_storage_bytes: Some(100),
            max_concurrent_uploads: None,
        };
        let own = Quota {
            max_storage_bytes: Some(1000),
            max_concurrent_uploads: Some(2),
            ..Quota::default()
        };
        assert_eq!(
            own.or(&defaults),
            Quota {
                max_upload_bytes: Some(10),
                max_storage_bytes: Some(1000),
                max_concurrent_uploads: Some(2),
            }
        );
    }
}
