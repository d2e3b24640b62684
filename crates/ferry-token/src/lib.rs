//! Ferry's access-token profile: the claims of every token Ferry issues, as one typed
//! struct (RFC 9068 §2.2, RFC 8693 §4, RFC 9449 §6.1), the algorithms Ferry signs with
//! (and, by name, every algorithm it verifies) and the prefix of its reference tokens.
//!
//! Why a crate of its own: the minting code builds [`AccessClaims`], and everything that
//! reads a Ferry token back — the server's narrowing and revocation code, `ferry-verify`'s
//! derived tokens and relying-service verifier — reads the same type, so a claim's name
//! and shape are written down once. Serde only: no I/O, no keys, no configuration.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod alg;
mod claims;
mod scope;

#[cfg(test)]
mod tests;

pub use alg::Algorithm;
pub use claims::{AccessClaims, Act, Audience, Confirmation, DerivedClaims, MayAct, Provenance};
pub use scope::Scope;

/// Every reference token (an opaque handle standing for a JWT) starts with this, so a
/// handle is never mistaken for a JWT.
pub const HANDLE_PREFIX: &str = "ferry_ref_";

/// The JWS `typ` of Ferry's access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The algorithms Ferry signs its tokens with (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl SigningAlgorithm {
    /// Every algorithm Ferry signs with.
    pub const ALL: [Self; 3] = [Self::ES256, Self::EdDSA, Self::RS256];

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }
}
