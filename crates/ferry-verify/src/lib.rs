//! Verifying JWTs from a trusted issuer, strictly, per RFC 8725. Used by Ferry for
//! inbound subject tokens and meant for relying services verifying Ferry's own tokens.
//! It knows nothing of Ferry's configuration or policy.
//!
//! Keys are parsed once when a JWKS is loaded ([`KeySet`]) and never per request.
//!
//! One path: [`parse`] a token, choose [`Rules`] and keys by its unverified issuer,
//! then [`Unverified::verify`] it. [`Rules`] are strict by default and loosened only
//! through methods named for what they loosen.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod alg;
#[cfg(feature = "access-boundary")]
pub mod boundary;
pub mod cert_header;
#[doc(hidden)]
pub mod derive;
pub mod dpop;
mod error;
mod fetch;
mod jwks;
mod jws;
mod keys_error;
pub mod net;
mod relying;
mod remote;
mod replay_cache;
pub mod revocation;
mod rules;
#[cfg(feature = "saml")]
pub mod saml;
mod service_account;
mod source;
pub mod time;
#[cfg(feature = "tls-client-cert")]
pub mod tls_client_cert;
mod unverified;
mod verifier;
#[cfg(feature = "x509")]
pub mod x509;

pub use alg::Algorithm;
pub use error::VerifyError;
pub use fetch::{Bearer, BearerToken, FetchError};
pub use jwks::{JwkError, JwksError, KeySet, VerifyingKey};
pub use jws::{Header, MAX_TOKEN_BYTES};
#[cfg(feature = "axum")]
pub use relying::FerryAuth;
pub use relying::{ClientCertificate, DiscoverError, FerryToken, FerryVerifier, RelyingError};
pub use remote::{CacheSettings, CacheStats, Endpoint, KeysError, RemoteKeys, Unavailable};
pub use rules::Rules;
#[cfg(feature = "axum")]
pub use service_account::{ServiceAccountAuth, refusal as service_account_refusal};
pub use service_account::{
    ServiceAccountError, ServiceAccountToken, ServiceAccountVerifier, ShapeError, account_jwks_url,
    self_signed_shape,
};
pub use source::{KeyFileError, KeyFormat, KeySource, StaticKeys};
pub use unverified::{Unverified, parse};
pub use verifier::Verified;

#[cfg(test)]
mod remote_storm_tests;
#[cfg(test)]
mod remote_tests;
#[cfg(test)]
mod wycheproof_tests;
