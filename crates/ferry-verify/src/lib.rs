//! Verifying JWTs from a trusted issuer, strictly, per RFC 8725. Used by Ferry for
//! inbound subject tokens and meant for relying services verifying Ferry's own tokens.
//! It knows nothing of Ferry's configuration or policy.
//!
//! Keys are parsed once when a JWKS is loaded ([`KeySet`]) and never per request.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod alg;
#[cfg(feature = "access-boundary")]
pub mod boundary;
pub mod derive;
pub mod dpop;
mod error;
mod fetch;
mod jwks;
mod jws;
pub mod net;
mod relying;
mod remote;
pub mod revocation;
mod source;
pub mod time;
mod verifier;

pub use alg::Algorithm;
pub use error::VerifyError;
pub use fetch::{Bearer, BearerToken, FetchError};
pub use jwks::{JwksError, KeySet, VerifyingKey};
pub use jws::{Header, MAX_TOKEN_BYTES, Peeked, peek, peek_claims, peek_issuer};
#[cfg(feature = "axum")]
pub use relying::FerryAuth;
pub use relying::{FerryToken, FerryVerifier, RelyingError};
pub use remote::{CacheSettings, CacheStats, Endpoint, KeysError, RemoteKeys, Unavailable};
pub use source::{KeyFileError, KeySource, StaticKeys, verify_from, verify_peeked_from};
pub use verifier::{Rules, Verified, verify, verify_peeked};

#[cfg(test)]
mod remote_storm_tests;
#[cfg(test)]
mod remote_tests;
#[cfg(test)]
mod wycheproof_tests;
