//! The cryptography of each JWS algorithm ([`Algorithm`], named in `ferry-token`): its
//! key family and its `aws-lc-rs` verification parameters.

use aws_lc_rs::signature::{self, VerificationAlgorithm};

pub use ferry_token::Algorithm;

/// The key families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// What verifying with an algorithm takes.
pub(crate) trait Crypto {
    /// The key family it verifies with.
    fn family(self) -> Family;
    /// RSA parameters, for an RSA algorithm.
    fn rsa_params(self) -> Option<&'static signature::RsaParameters>;
    /// The verification algorithm, for an EC or Ed25519 algorithm.
    fn non_rsa_params(self) -> Option<&'static dyn VerificationAlgorithm>;
}

impl Crypto for Algorithm {
    fn family(self) -> Family {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                Family::Rsa
            }
            Self::ES256 => Family::P256,
            Self::ES384 => Family::P384,
            Self::EdDSA => Family::Ed25519,
        }
    }

    fn rsa_params(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    fn non_rsa_params(self) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match self {
            Self::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::EdDSA => &signature::ED25519,
            _ => return None,
        })
    }
}
