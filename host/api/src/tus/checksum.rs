//! The checksum extension: `Upload-Checksum: <algorithm> <base64 digest>` over one PATCH body.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Algorithms advertised in `Tus-Checksum-Algorithm`.
pub const ALGORITHMS: &str = "sha1,md5,sha256";

/// A running digest of a request body in one of the supported algorithms.
pub enum Hasher {
    /// `sha1`
    Sha1(Sha1),
    /// `md5`
    Md5(Md5),
    /// `sha256`
    Sha256(Sha256),
}

impl Hasher {
    /// A fresh hasher for the algorithm named in the header; `None` when unsupported.
    pub fn new(algorithm: &str) -> Option<Self> {
        match algorithm {
            "sha1" => Some(Self::Sha1(Sha1::new())),
            "md5" => Some(Self::Md5(Md5::new())),
            "sha256" => Some(Self::Sha256(Sha256::new())),
            _ => None,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Md5(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// What `Upload-Checksum` asks the server to verify.
pub struct Expected {
    /// Hashes the body as it streams.
    pub hasher: Hasher,
    /// The digest the client computed.
    pub digest: Vec<u8>,
    /// Algorithm name, for messages.
    pub algorithm: String,
}

impl Expected {
    /// Feeds body bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// True when the body matched the client's digest.
    pub fn matches(self) -> bool {
        self.hasher.finish() == self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let digest = |alg: &str| {
            let mut h = Hasher::new(alg).unwrap();
            h.update(b"hello");
            h.finish()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(digest("sha1"), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(digest("md5"), "5d41402abc4b2a76b9719d911017c592");
        assert!(digest("sha256").starts_with("2cf24dba"));
        assert!(Hasher::new("crc32").is_none());
    }
}
