//! The asymmetric JWS algorithms (RFC 7518 §3, RFC 8037) by name: what a configuration
//! allows and `ferry-verify` verifies with. There is no `none` and no HMAC: a verifier
//! holding an issuer's public key must never treat it as a shared secret (RFC 8725
//! §2.1, §3.1). Names only; the cryptography is `ferry-verify`'s.

use crate::signing::SigningAlgorithm;

/// A JWS signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl From<SigningAlgorithm> for Algorithm {
    fn from(a: SigningAlgorithm) -> Self {
        match a {
            SigningAlgorithm::ES256 => Self::ES256,
            SigningAlgorithm::EdDSA => Self::EdDSA,
            SigningAlgorithm::RS256 => Self::RS256,
        }
    }
}

impl Algorithm {
    /// The algorithms Ferry signs its own tokens with ([`SigningAlgorithm`]):
    /// the only ones accepted on a Ferry token, revocation list or introspection JWT.
    pub fn ferry() -> Vec<Self> {
        SigningAlgorithm::ALL.into_iter().map(Self::from).collect()
    }

    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` value; unknown, `none` and HMAC algorithms give `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
