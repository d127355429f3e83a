//! Bearer tokens as both daemons keep them: only a SHA-256 digest, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 digest of a token; the token itself is never kept.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(…)")
    }
}

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// A digest stored earlier as bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenDigest {
        TokenDigest(bytes)
    }

    /// The digest's bytes, to store.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Whether `other` is the same digest, in time that does not depend on where they differ.
    /// A `Choice`, so callers comparing against several digests can combine them without
    /// stopping early.
    pub fn matches(&self, other: &TokenDigest) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_matches_its_token_only() {
        let stored = TokenDigest::of("tly1_secret");
        assert!(bool::from(stored.matches(&TokenDigest::of("tly1_secret"))));
        assert!(!bool::from(stored.matches(&TokenDigest::of("tly1_secreT"))));
        assert!(!bool::from(stored.matches(&TokenDigest::of(""))));
        let again = TokenDigest::from_bytes(stored.to_bytes());
        assert!(bool::from(again.matches(&TokenDigest::of("tly1_secret"))));
        assert_eq!(format!("{stored:?}"), "TokenDigest(…)");
    }
}
