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
pub mod registered;
mod scope;
mod signing;

#[cfg(test)]
mod tests;

pub use alg::Algorithm;
pub use claims::{AccessClaims, Act, Audience, Confirmation, DerivedClaims, MayAct, Provenance};
pub use scope::Scope;
pub use signing::SigningAlgorithm;

/// Every reference token (an opaque handle standing for a JWT) starts with this, so a
/// handle is never mistaken for a JWT.
pub const HANDLE_PREFIX: &str = "ferry_ref_";

/// The JWS `typ` of Ferry's access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
