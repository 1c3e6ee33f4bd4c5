//! The operator key check shared by the HTTP purge and the gRPC control service.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a control call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The edge has no operator key: control calls are off.
    Disabled,
    /// No `Bearer` key was sent.
    Missing,
    /// A key was sent, but not the operator's.
    Wrong,
}

impl Refusal {
    /// What the caller is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Disabled => {
                "purge and push are disabled: set `[admin] operator_key` or MEDIAHOST_OPERATOR_KEY for the edge"
            }
            Refusal::Missing => "missing operator key: send `authorization: Bearer <operator key>`",
            Refusal::Wrong => "unknown operator key",
        }
    }
}

/// Checks an `authorization` value against the operator key. Compared as hashes in constant
/// time, so neither the key nor its length leaks through timing.
pub(crate) fn check(expected: Option<&str>, authorization: Option<&str>) -> Result<(), Refusal> {
    let expected = expected.ok_or(Refusal::Disabled)?;
    let given = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Refusal::Missing)?;
    let same: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into();
    if same { Ok(()) } else { Err(Refusal::Wrong) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_operator_bearer_key_passes() {
        assert_eq!(check(None, Some("Bearer k")), Err(Refusal::Disabled));
        assert_eq!(check(Some("k"), None), Err(Refusal::Missing));
        assert_eq!(check(Some("k"), Some("k")), Err(Refusal::Missing));
        assert_eq!(check(Some("k"), Some("Bearer x")), Err(Refusal::Wrong));
        assert_eq!(check(Some("k"), Some("Bearer k")), Ok(()));
    }
}
